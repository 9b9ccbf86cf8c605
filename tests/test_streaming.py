"""Streaming a causal CMCR-Net: blocks of any size give the offline output,
a fixed latency later."""

import numpy as np
import pytest
import torch
from conftest import TINY

from speechbrain_cmcr.inference.framing import (
    SpectralStream,
    istft,
    padded_window,
    stft,
)
from speechbrain_cmcr.inference.streaming import StreamingEnhancer
from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet

# n_fft 64 with a 48-sample window and a 20-sample hop: frames overlap more
# than twice, and a frame's centre is not on a hop of the input blocks.
ODD_FRAMING = dict(TINY, win_length=3, hop_length=1.25)


def causal_model(seed=0, **overrides):
    """A tiny causal model with non-trivial BatchNorm statistics, so that
    folding them matters."""
    torch.manual_seed(seed)
    model = CMCRNet(**{**TINY, "causal": True, **overrides})
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def stream_in_blocks(enhancer, signal, seed, largest):
    """The enhancer's output for ``signal`` cut into random blocks (empty
    and one-sample blocks included), then flushed."""
    rng = np.random.default_rng(seed)
    pieces, start = [], 0
    while start < len(signal):
        size = int(rng.choice([0, 1, rng.integers(2, largest)]))
        block = signal[start : start + size]
        out = enhancer(block)
        assert out.shape == block.shape
        pieces.append(out)
        start += size
    tail = enhancer.flush()
    assert len(tail) == enhancer.latency_samples
    return torch.cat(pieces + [tail])


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        dict(num_modules=2, output="mapping"),
        dict(num_modules=0),
        ODD_FRAMING,
    ],
    ids=["tiny", "two-modules-mapping", "no-modules", "odd-framing"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_output_is_the_offline_output_after_the_latency(
    overrides, seed
):
    model = causal_model(seed, **overrides)
    generator = torch.Generator().manual_seed(seed)
    noisy = 0.3 * torch.randn(3001 + 37 * seed, generator=generator)
    with torch.no_grad():
        offline = model.enhance(noisy[None])[0]
    enhancer = StreamingEnhancer(model)
    latency = enhancer.latency_samples
    assert latency == model.config["n_fft"] - 1
    streamed = stream_in_blocks(enhancer, noisy, seed, largest=200)
    assert streamed.shape == (len(noisy) + latency,)
    assert torch.equal(streamed[:latency], torch.zeros(latency))
    assert offline.abs().max() > 0.1  # the comparison is not of zeros
    torch.testing.assert_close(streamed[latency:], offline, atol=1e-5, rtol=0)


def test_latency_of_the_default_configuration_is_one_window():
    model = CMCRNet(
        encoder_channels=[4, 8], num_modules=1, attention_dim=8, causal=True
    )
    enhancer = StreamingEnhancer(model)
    assert enhancer.latency_samples == 511
    assert enhancer.latency_ms == pytest.approx(31.9375)


def test_frame_by_frame_model_equals_the_whole_signal():
    """``CMCRNet.stream`` one frame at a time, and in uneven groups of
    frames, carries the same state as one pass over all frames."""
    model = causal_model(num_modules=2)
    noisy = torch.randn(1, 2000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        spec = model.spectrum(noisy)  # [1, T, F, 2]
        whole = model.forward(noisy).enhanced_spec
        assert torch.allclose(model.enhance_spectrum(spec), whole, atol=1e-6)
        state = model.stream_state()
        pieces = []
        for start, stop in [(0, 1), (1, 2), (2, 7), (7, spec.shape[1])]:
            out, state = model.stream(spec[:, start:stop], state)
            pieces.append(out)
    assert torch.allclose(torch.cat(pieces, dim=1), whole, atol=1e-5)
    assert state.frames.item() == spec.shape[1]


def test_models_that_cannot_stream_are_refused():
    with pytest.raises(ValueError, match="causal=True"):
        StreamingEnhancer(CMCRNet(**TINY))
    with pytest.raises(ValueError, match="attention_axis"):
        StreamingEnhancer(CMCRNet(**TINY, causal=True, attention_axis="time"))
    with pytest.raises(ValueError, match="does not stream"):
        model = CMCRNet(**TINY, causal=True, attention_axis="time")
        model.stream(torch.zeros(1, 1, 33, 2), model.stream_state())


def test_a_flushed_stream_takes_no_more_input():
    enhancer = StreamingEnhancer(causal_model())
    enhancer(torch.randn(100))
    enhancer.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        enhancer(torch.randn(10))


def test_numpy_transforms_are_the_models():
    """The NumPy STFT and iSTFT that streaming (and the onnxruntime runner)
    use give the model's torch transforms."""
    model = CMCRNet(**ODD_FRAMING)
    window = padded_window(model.stft.window.numpy(), 64)
    signal = torch.randn(1, 999, generator=torch.Generator().manual_seed(4))
    spec = stft(signal[0].numpy(), window, model.hop_samples)
    expected = model.spectrum(signal)[0]
    assert np.allclose(spec, expected.numpy(), atol=1e-5)
    again = istft(spec, window, model.hop_samples, 999)
    reference = model._to_wav(expected[None], 999, torch.ones(1))[0]
    assert np.allclose(again, reference.numpy(), atol=1e-5)
    assert np.allclose(again, signal[0].numpy(), atol=1e-5)


def test_identity_stream_delays_the_signal_by_the_latency():
    """Without a model, the stream is a pure delay of ``n_fft - 1``."""
    window = padded_window(np.hamming(48), 64)
    stream = SpectralStream(lambda frame: frame, window, hop_length=20)
    signal = np.random.default_rng(5).standard_normal(777).astype("float32")
    out = np.concatenate(
        [stream(signal[:5]), stream(signal[5:400]), stream(signal[400:])]
        + [stream.flush()]
    )
    assert stream.latency == 63
    assert np.allclose(out[63:], signal, atol=1e-5)
    assert not out[:63].any()


def test_enhancer_from_an_exported_causal_model_folder(tmp_path):
    """``StreamingEnhancer.from_hparams`` loads a model folder as
    ``EnhanceSpeech.from_hparams`` does."""
    from speechbrain_cmcr.export import hyperparams_yaml

    model = causal_model()
    (tmp_path / "hyperparams.yaml").write_text(
        hyperparams_yaml(model.config, "# test model")
    )
    torch.save(model.state_dict(), tmp_path / "enhance_model.ckpt")
    enhancer = StreamingEnhancer.from_hparams(str(tmp_path))
    noisy = torch.randn(1500, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        offline = model.enhance(noisy[None])[0]
    streamed = torch.cat([enhancer(noisy), enhancer.flush()])
    assert torch.allclose(streamed[63:], offline, atol=1e-5)
