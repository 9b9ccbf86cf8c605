"""ONNX export of CMCR-Net: onnxruntime gives PyTorch's outputs, and the
runner enhances a file without importing torch."""

import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import soundfile as sf
import torch
from conftest import SAMPLE_RATE, TINY, harmonic_speech, mix_at_snr

from speechbrain_cmcr.inference.framing import padded_window
from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
from speechbrain_cmcr.onnx_export import (
    StreamingStep,
    export_offline,
    export_onnx,
    export_streaming_step,
)
from speechbrain_cmcr.onnx_runner import OnnxEnhancer

TOLERANCE = 1e-4


def tiny_model(causal, seed=0, **overrides):
    """A tiny model with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = CMCRNet(**{**TINY, "num_modules": 2, "causal": causal, **overrides})
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def causal_graphs(tmp_path_factory):
    """A causal model and its two exported graphs."""
    model = tiny_model(causal=True)
    folder = tmp_path_factory.mktemp("onnx")
    offline, stream = export_onnx(model, folder)
    return model, offline, stream


def noisy_signal(seconds=0.4, seed=1):
    clean = harmonic_speech(int(seconds * SAMPLE_RATE), seed=seed)
    return mix_at_snr(clean, 0.0, seed=seed)[0]


def test_streaming_step_matches_pytorch_frame_by_frame(causal_graphs):
    """One frame at a time, the graph's enhanced frame and every state
    tensor it returns are PyTorch's."""
    model, _, stream_path = causal_graphs
    session = onnxruntime.InferenceSession(str(stream_path))
    step = StreamingStep(model)
    names = [node.name for node in session.get_inputs()]
    assert names == ["noisy_spec"] + step.state_names
    outputs = [node.name for node in session.get_outputs()]
    assert outputs[1:] == [f"{name}_next" for name in step.state_names]
    spec = model.spectrum(noisy_signal()[None])  # [1, T, F, 2]
    torch_state = step.initial_state()
    onnx_state = [tensor.numpy() for tensor in torch_state]
    largest = 0.0
    for frame in spec.split(1, dim=1):
        with torch.no_grad():
            expected = step(frame, *torch_state)
        got = session.run(None, dict(zip(names, [frame.numpy()] + onnx_state)))
        for mine, theirs in zip(got, expected):
            largest = max(largest, float(np.abs(mine - theirs.numpy()).max()))
        torch_state, onnx_state = list(expected[1:]), got[1:]
    assert largest < TOLERANCE
    assert onnx_state[0][0] == spec.shape[1]  # frames seen


@pytest.mark.parametrize(
    "causal, options, output",
    [
        (causal, options, output)
        for causal, options in [
            (False, {}),
            (True, {}),
            (False, {"level_norm": True}),
        ]
        for output in ["mask", "mapping"]
    ]
    + [(True, {"mask_bound": 1.5}, "mask")],
)
def test_offline_graph_matches_pytorch_for_any_length(
    tmp_path, causal, options, output
):
    model = tiny_model(causal, output=output, **options)
    path = export_offline(model, tmp_path / "offline.onnx")
    session = onnxruntime.InferenceSession(str(path))
    for samples in (700, 3001):  # the graph was traced on 11 frames
        spec = model.spectrum(torch.randn(2, samples))
        with torch.no_grad():
            expected = model.enhance_spectrum(spec).numpy()
        (got,) = session.run(None, {"noisy_spec": spec.numpy()})
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < TOLERANCE


@pytest.mark.parametrize("graph", ["offline", "stream"])
def test_runner_enhances_like_pytorch(causal_graphs, graph):
    """The NumPy + onnxruntime path from samples to samples gives
    ``CMCRNet.enhance``."""
    model, offline_path, stream_path = causal_graphs
    enhancer = OnnxEnhancer(offline_path if graph == "offline" else stream_path)
    noisy = noisy_signal()
    with torch.no_grad():
        expected = model.enhance(noisy[None])[0].numpy()
    got = enhancer.enhance(noisy.numpy())
    assert got.shape == expected.shape
    assert np.abs(expected).max() > 0.1
    assert np.abs(got - expected).max() < TOLERANCE


def test_graphs_carry_what_a_runner_needs(causal_graphs):
    model, offline_path, stream_path = causal_graphs
    window = padded_window(model.stft.window.numpy(), TINY["n_fft"])
    for path, graph in [(offline_path, "offline"), (stream_path, "stream")]:
        enhancer = OnnxEnhancer(path)
        assert enhancer.graph == graph
        assert enhancer.sample_rate == SAMPLE_RATE
        assert enhancer.hop_length == model.hop_samples
        assert np.array_equal(enhancer.window, window)
        assert enhancer.config == json.loads(json.dumps(model.config))
    assert OnnxEnhancer(stream_path).latency_samples == TINY["n_fft"] - 1
    with pytest.raises(ValueError, match="does not stream"):
        OnnxEnhancer(offline_path).stream()


def test_offline_model_exports_only_the_offline_graph(tmp_path):
    written = export_onnx(tiny_model(causal=False), tmp_path)
    assert [path.name for path in written] == ["cmcr_offline.onnx"]
    with pytest.raises(ValueError, match="causal"):
        export_streaming_step(tiny_model(causal=False), tmp_path / "s.onnx")


def test_runner_enhances_a_file_without_importing_torch(
    causal_graphs, tmp_path
):
    model, _, stream_path = causal_graphs
    noisy = noisy_signal()
    stereo = torch.stack([noisy, noisy], dim=1).numpy()  # averaged to mono
    sf.write(tmp_path / "noisy.wav", stereo, SAMPLE_RATE, subtype="FLOAT")
    enhanced = tmp_path / "enhanced.wav"
    script = (
        "import sys\n"
        "from speechbrain_cmcr.onnx_runner import main\n"
        f"main([{str(stream_path)!r}, {str(tmp_path / 'noisy.wav')!r}, "
        f"{str(enhanced)!r}])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stdout
    got, rate = sf.read(enhanced, dtype="float32")
    with torch.no_grad():
        expected = model.enhance(noisy[None])[0].numpy()
    assert rate == SAMPLE_RATE and got.shape == expected.shape
    assert np.abs(got - expected).max() < TOLERANCE


def test_runner_refuses_another_sample_rate(causal_graphs, tmp_path):
    _, offline_path, _ = causal_graphs
    sf.write(tmp_path / "noisy.wav", np.zeros(800), 8000)
    with pytest.raises(ValueError, match="8000 Hz"):
        OnnxEnhancer(offline_path).enhance_file(
            tmp_path / "noisy.wav", tmp_path / "out.wav"
        )


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no such audio file"),
        ("corrupt", "not readable audio"),
        ("empty", "no samples"),
        ("nan", "holds NaN or infinite samples"),
        ("no_graph", "no such ONNX graph"),
        ("not_onnx", "not an ONNX graph"),
    ],
)
def test_runner_command_names_bad_input_in_one_line(
    causal_graphs, tmp_path, case, message
):
    """As a user runs it: exit status 2 and one error line, no traceback."""
    _, offline_path, _ = causal_graphs
    graph, noisy = offline_path, tmp_path / "noisy.wav"
    if case == "corrupt":
        noisy.write_bytes(b"RIFF not really a wav file")
    elif case == "empty":
        sf.write(noisy, np.zeros(0), SAMPLE_RATE)
    elif case == "nan":
        sf.write(noisy, np.full(800, np.nan), SAMPLE_RATE, subtype="FLOAT")
    elif case == "no_graph":
        graph = tmp_path / "gone.onnx"
        sf.write(noisy, np.zeros(800), SAMPLE_RATE)
    elif case == "not_onnx":
        graph = tmp_path / "fake.onnx"
        graph.write_bytes(b"not a protobuf")
        sf.write(noisy, np.zeros(800), SAMPLE_RATE)
    result = subprocess.run(
        [sys.executable, "-m", "speechbrain_cmcr.onnx_runner", graph, noisy]
        + [tmp_path / "out.wav"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("python -m speechbrain_cmcr.onnx_runner: error")
    assert message in lines[0]
    assert not (tmp_path / "out.wav").exists()
