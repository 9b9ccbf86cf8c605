"""EnhanceSpeech: loading, chunked file enhancement, bounded memory, bad
inputs and refusal of checkpoints that would run code."""

import math
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY

from speechbrain_cmcr.inference.enhancement import (
    AudioTypeError,
    CheckpointError,
    ClippedOutputWarning,
    EnhanceSpeech,
    InvalidAudioError,
    ModelSourceError,
    SilentInputWarning,
)
from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LOAD_HOOK = "speechbrain_cmcr.inference.enhancement.load_checkpoint"
HPARAMS = f"""\
sample_rate: 16000
enhance_model: !new:speechbrain_cmcr.lobes.models.cmcr_net.CMCRNet
    n_fft: 64
    win_length: 4
    hop_length: 2
    encoder_channels: [4, 8]
    num_modules: 1
    attention_dim: 8
modules:
    enhance_model: !ref <enhance_model>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        enhance_model: !ref <enhance_model>
    custom_hooks:
        enhance_model: !name:{LOAD_HOOK}
"""


class LocalSmoother(torch.nn.Module):
    """A stand-in model with a 9-sample receptive field, so that chunked
    and whole-file outputs must agree exactly away from chunk edges."""

    def enhance(self, noisy, lengths=None):
        """Moving average of 9 samples, [B, L] -> [B, L]."""
        return torch.nn.functional.avg_pool1d(noisy[:, None], 9, 1, 4)[:, 0]


class Payload:
    """Unpickling this touches ``marker``: code hidden in a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def make_enhancer(model, sample_rate=16000):
    """EnhanceSpeech around ``model`` on the CPU, eval mode."""
    return EnhanceSpeech(
        modules={"enhance_model": model},
        hparams={"sample_rate": sample_rate},
        run_opts={"device": "cpu"},
    )


def sine(seconds, sample_rate=16000, freq=220.0):
    """A smooth test signal, peak 0.5."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    return 0.5 * torch.sin(2 * math.pi * freq * t)


def write(path, signal, sample_rate=16000, subtype="FLOAT"):
    """Writes ``signal`` ([L] or [L, C]) and returns the path."""
    sf.write(path, np.asarray(signal), sample_rate, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return CMCRNet(**TINY).eval()


@pytest.fixture(scope="module")
def enhancer(tiny_model):
    return make_enhancer(tiny_model)


@pytest.fixture
def model_folder(tmp_path, tiny_model):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(HPARAMS)
    torch.save(tiny_model.state_dict(), folder / "enhance_model.ckpt")
    return folder


def test_from_hparams_local_folder(model_folder, tiny_model, tmp_path):
    loaded = EnhanceSpeech.from_hparams(
        source=str(model_folder),
        savedir=str(tmp_path / "save"),
        run_opts={"device": "cpu"},
    )
    noisy = torch.randn(2, 3000)
    lengths = torch.tensor([1.0, 0.6])
    expected = tiny_model.enhance(noisy, lengths)
    torch.testing.assert_close(loaded.enhance_batch(noisy, lengths), expected)
    torch.testing.assert_close(loaded(noisy, lengths), expected)


@pytest.mark.parametrize("force_unsafe_env", [False, True])
def test_checkpoint_with_code_is_refused(
    model_folder, tmp_path, monkeypatch, force_unsafe_env
):
    if force_unsafe_env:  # torch's switch to turn its safe default off
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "code_was_run"
    checkpoint = model_folder / "enhance_model.ckpt"
    torch.save({"weight": Payload(marker)}, checkpoint)
    with pytest.raises(CheckpointError, match="refused to load"):
        EnhanceSpeech.from_hparams(
            source=str(model_folder), savedir=str(tmp_path / "save")
        )
    assert not marker.exists()
    # The payload is live: an unsafe load does run it.
    torch.load(checkpoint, weights_only=False)
    assert marker.exists()


def test_unreadable_checkpoint(model_folder, tmp_path):
    (model_folder / "enhance_model.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="enhance_model.ckpt"):
        EnhanceSpeech.from_hparams(
            source=str(model_folder), savedir=str(tmp_path / "save")
        )


def test_chunked_equals_whole_for_local_model(tmp_path):
    enhancer = make_enhancer(LocalSmoother())
    generator = torch.Generator().manual_seed(0)
    stereo = 0.1 * torch.randn(int(44100 * 3.3), 2, generator=generator)
    path = write(tmp_path / "in.wav", stereo, 44100)
    for rate in [None, "input"]:
        whole = enhancer.enhance_file(
            path,
            output_sample_rate=rate,
            chunk_seconds=100.0,
            overlap_seconds=0,
        )
        chunked = enhancer.enhance_file(
            path,
            output_sample_rate=rate,
            chunk_seconds=0.5,
            overlap_seconds=0.1,
        )
        assert chunked.shape == whole.shape
        torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)


def test_no_click_at_seams(enhancer, tmp_path):
    path = write(tmp_path / "sine.wav", sine(3.0))
    whole = enhancer.enhance_file(path, chunk_seconds=100.0, overlap_seconds=0)
    chunked = enhancer.enhance_file(
        path, chunk_seconds=0.5, overlap_seconds=0.1
    )
    hard_cut = enhancer.enhance_file(path, chunk_seconds=0.5, overlap_seconds=0)
    # Seams sit in the middle of each 0.1 s overlap (0.4 s hop).
    seams = [int(16000 * (0.4 * k + 0.05)) for k in range(1, 7)]
    cuts = [8000 * k for k in range(1, 6)]

    def jump_ratio(signal, where):
        """Largest sample-to-sample step near ``where`` over elsewhere."""
        step = signal.diff().abs()
        near = torch.zeros_like(step, dtype=torch.bool)
        for index in where:
            near[index - 800 : index + 800] = True
        return float(step[near].max() / step[~near].max())

    assert jump_ratio(chunked, seams) < 1.02
    assert jump_ratio(hard_cut, cuts) > 1.1  # the check does see clicks
    torch.testing.assert_close(chunked, whole, atol=1e-3, rtol=0)


def test_resampling_and_mixdown(enhancer, tmp_path):
    mono = 0.2 * sine(1.0, 8000, 300.0)
    stereo = torch.stack([0.5 * mono, 1.5 * mono], dim=1)
    from_stereo = write(tmp_path / "stereo.wav", stereo, 8000)
    from_mono = write(tmp_path / "mono.wav", mono, 8000)
    at_model_rate = enhancer.enhance_file(from_stereo)
    assert at_model_rate.shape == (16000,)
    torch.testing.assert_close(
        at_model_rate, enhancer.enhance_file(from_mono), atol=1e-6, rtol=0
    )
    assert enhancer.enhance_file(
        from_stereo, output_sample_rate="input"
    ).shape == (8000,)
    assert enhancer.enhance_file(
        from_stereo, output_sample_rate=22050
    ).shape == (22050,)


def test_output_file_matches_returned_waveform(enhancer, tmp_path):
    path = write(tmp_path / "in.flac", 0.3 * sine(1.3), subtype="PCM_16")
    expected = enhancer.enhance_file(
        path, chunk_seconds=0.5, overlap_seconds=0.2
    )
    out = enhancer.enhance_file(
        path,
        tmp_path / "sub" / "out.wav",
        chunk_seconds=0.5,
        overlap_seconds=0.2,
    )
    written, rate = sf.read(out, dtype="float32")
    assert rate == 16000
    torch.testing.assert_close(
        torch.from_numpy(written), expected, atol=2 / 32768, rtol=0
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.wav"]


def test_memory_does_not_grow_with_length(tmp_path):
    """Peak RSS growth from a 10 s to a 100 s file (48 kHz stereo) stays far
    below what holding the long file would take (77 MB as float32)."""
    pytest.importorskip("resource")
    script = textwrap.dedent(
        f"""
        import resource, sys
        import numpy as np, soundfile as sf, torch
        sys.path.insert(0, {str(REPO_ROOT / "tests")!r})
        from test_inference import LocalSmoother, make_enhancer

        def write_noise(path, seconds):
            rng = np.random.default_rng(0)
            with sf.SoundFile(path, "w", 48000, 2, subtype="PCM_16") as f:
                for _ in range(seconds):
                    f.write(0.1 * rng.standard_normal((48000, 2)))

        def peak_mb():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        enhancer = make_enhancer(LocalSmoother())
        peaks = []
        for seconds in (10, 100):
            path = {str(tmp_path)!r} + f"/in{{seconds}}.wav"
            write_noise(path, seconds)
            enhancer.enhance_file(path, {str(tmp_path / "out.wav")!r},
                                  chunk_seconds=2.0, overlap_seconds=0.5)
            peaks.append(peak_mb())
        print(peaks[1] - peaks[0])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
    )
    growth_mb = float(result.stdout.split()[-1])
    assert growth_mb < 20, result.stdout


def test_all_zero_input_gives_zero_output_with_warning(enhancer, tmp_path):
    path = write(tmp_path / "zeros.wav", np.zeros(5000), subtype="PCM_16")
    with pytest.warns(SilentInputWarning, match="zeros.wav"):
        out = enhancer.enhance_file(
            path, chunk_seconds=0.1, overlap_seconds=0.02
        )
    assert out.shape == (5000,) and not out.any()
    with pytest.warns(SilentInputWarning):
        batch = enhancer.enhance_batch(torch.zeros(1, 100))
    assert not batch.any()


def test_partly_silent_batch_keeps_silent_rows_zero(enhancer):
    noisy = torch.stack([torch.zeros(800), sine(0.05)])
    with pytest.warns(SilentInputWarning):
        out = enhancer.enhance_batch(noisy)
    assert not out[0].any() and out[1].any()


def test_truncated_wav_is_enhanced_up_to_its_end(enhancer, tmp_path):
    path = write(tmp_path / "full.wav", 0.3 * sine(1.0), subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[: 44 + 2 * 10000])
    assert enhancer.enhance_file(cut).shape == (10000,)


def bad_files(folder):
    """(path, expected exception, message part) for each kind of bad file."""
    folder.mkdir()
    junk = folder / "junk.wav"
    junk.write_bytes(b"this is not audio" * 20)
    empty_bytes = folder / "empty_bytes.wav"
    empty_bytes.write_bytes(b"")
    header_only = folder / "header_only.wav"
    write(header_only, np.zeros(100), subtype="PCM_16")
    header_only.write_bytes(header_only.read_bytes()[:30])
    no_samples = write(folder / "no_samples.wav", np.zeros(0))
    nan = write(folder / "nan.wav", np.r_[np.zeros(10), np.nan, np.zeros(9)])
    late_inf = np.zeros(40000)
    late_inf[35000] = np.inf
    inf = write(folder / "late_inf.wav", late_inf)
    return [
        (folder / "missing.wav", FileNotFoundError, "audio file not found"),
        (folder, InvalidAudioError, "is a folder"),
        (junk, InvalidAudioError, "not a readable audio file"),
        (empty_bytes, InvalidAudioError, "not a readable audio file"),
        (header_only, InvalidAudioError, "not a readable audio file"),
        (no_samples, InvalidAudioError, "contains no samples"),
        (nan, InvalidAudioError, r"NaN or Inf samples \(first at sample 10,"),
        (inf, InvalidAudioError, r"NaN or Inf samples \(first at sample 35000"),
    ]


def test_bad_files_raise_clear_errors(enhancer, tmp_path):
    out = tmp_path / "out" / "enhanced.wav"
    for path, error, message in bad_files(tmp_path / "bad"):
        with pytest.raises(error, match=message) as info:
            enhancer.enhance_file(
                path, out, chunk_seconds=1.0, overlap_seconds=0.25
            )
        assert str(path) in str(info.value)
        assert not out.exists()
        assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda e: e.enhance_file(3), AudioTypeError, "file path"),
        (lambda e: e.enhance_file(None), AudioTypeError, "file path"),
        (lambda e: e.enhance_batch([0.0, 1.0]), AudioTypeError, "list"),
        (
            lambda e: e.enhance_batch(np.zeros((1, 100))),
            AudioTypeError,
            "ndarray",
        ),
        (
            lambda e: e.enhance_batch(torch.zeros(1, 100, dtype=torch.int16)),
            AudioTypeError,
            "int16",
        ),
        (lambda e: e.enhance_batch(torch.zeros(100)), InvalidAudioError, "[1"),
        (lambda e: e.enhance_batch(torch.zeros(1, 0)), InvalidAudioError, "no"),
        (
            lambda e: e.enhance_batch(torch.tensor([[0.0, math.inf]])),
            InvalidAudioError,
            "NaN or Inf",
        ),
        (
            lambda e: e.enhance_batch(torch.zeros(2, 9), torch.ones(3)),
            InvalidAudioError,
            "lengths",
        ),
        (
            lambda e: e.enhance_batch(torch.zeros(2, 9), [1.0, 1.0]),
            InvalidAudioError,
            "lengths",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(enhancer, call, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[")):
        call(enhancer)


def test_bad_file_options_are_refused_before_reading(enhancer, tmp_path):
    path = write(tmp_path / "in.wav", sine(0.1))
    with pytest.raises(InvalidAudioError, match="unknown audio format"):
        enhancer.enhance_file(path, tmp_path / "out.xyz")
    with pytest.raises(ValueError, match="output_sample_rate"):
        enhancer.enhance_file(path, output_sample_rate="model")
    with pytest.raises(ValueError, match="overlap_seconds"):
        enhancer.enhance_file(path, chunk_seconds=1.0, overlap_seconds=0.6)
    assert not (tmp_path / "out.xyz").exists()


def test_type_errors_are_also_type_errors():
    assert issubclass(AudioTypeError, TypeError)
    assert issubclass(AudioTypeError, ValueError)


def model_folder_of(folder, model):
    """Writes ``model`` as a model folder (the tiny configuration)."""
    folder.mkdir(parents=True)
    (folder / "hyperparams.yaml").write_text(HPARAMS)
    torch.save(model.state_dict(), folder / "enhance_model.ckpt")
    return folder


@pytest.fixture
def other_model():
    torch.manual_seed(1)
    return CMCRNet(**TINY).eval()


def load(source, savedir=None):
    """``from_hparams`` on the CPU, paths as strings."""
    return EnhanceSpeech.from_hparams(
        source=str(source),
        savedir=None if savedir is None else str(savedir),
        run_opts={"device": "cpu"},
    )


def contents(folder):
    """File name -> bytes of the files in ``folder``."""
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_reused_savedir_serves_the_model_asked_for(
    model_folder, tiny_model, other_model, tmp_path
):
    other = model_folder_of(tmp_path / "other", other_model)
    sources = contents(model_folder), contents(other)
    noisy = torch.randn(1, 2000, generator=torch.Generator().manual_seed(0))
    for source, model in [
        (model_folder, tiny_model),
        (other, other_model),
        (model_folder, tiny_model),
    ]:
        enhanced = load(source, tmp_path / "savedir").enhance_batch(noisy)
        torch.testing.assert_close(enhanced, model.enhance(noisy))
    assert (contents(model_folder), contents(other)) == sources


def test_unknown_source_is_refused_even_with_a_filled_savedir(
    model_folder, tmp_path
):
    load(model_folder, tmp_path / "savedir")
    with pytest.raises(ModelSourceError, match="no-such-model: no such model"):
        load("no-such-model", tmp_path / "savedir")


def test_savedir_holding_another_models_files_is_refused(
    model_folder, other_model, tmp_path
):
    other = model_folder_of(tmp_path / "other", other_model)
    before = contents(other)
    with pytest.raises(ModelSourceError, match="not fetched from"):
        load(model_folder, savedir=other)
    assert contents(other) == before


def test_savedir_that_is_the_source_is_used_in_place(model_folder):
    before = contents(model_folder)
    load(model_folder, savedir=model_folder)
    assert contents(model_folder) == before


def test_mistyped_local_paths_are_not_taken_for_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_folder_of(tmp_path / "models" / "good", CMCRNet(**TINY))
    with pytest.raises(ModelSourceError) as info:
        load("models/godo")
    assert str(info.value) == (
        "models/godo: no such model folder (models holds: good)"
    )
    with pytest.raises(ModelSourceError, match="form user/name"):
        load("good")
    assert load("models/good").hparams.sample_rate == 16000


def test_paths_whose_first_folder_exists_are_not_taken_for_hub_files(
    enhancer, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "takes").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        enhancer.enhance_file("takes/day1/noisy.wav")
    assert str(info.value) == (
        "[Errno 2] audio file not found: 'takes/day1/noisy.wav'"
    )
    (tmp_path / "takes" / "day1").mkdir()
    sf.write(tmp_path / "takes/day1/noisy.wav", np.zeros(800) + 0.1, 16000)
    assert enhancer.enhance_file("takes/day1/noisy.wav").shape == (800,)


def test_training_output_folder_is_refused_before_loading(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "hyperparams.yaml").write_text(
        "output_folder: results/x\n"
        "made: !apply:os.makedirs [!ref <output_folder>/save]\n"
    )
    with pytest.raises(ModelSourceError, match="export it first"):
        load(run)
    assert not (tmp_path / "results").exists()
    (run / "hyperparams.yaml").unlink()
    (run / "save").mkdir()  # a run that has not copied its yaml
    with pytest.raises(ModelSourceError, match="export it first"):
        load(run)


def test_enhance_file_never_overwrites_its_input(enhancer, tmp_path):
    path = write(tmp_path / "in.wav", sine(0.2), subtype="PCM_16")
    before = path.read_bytes()
    (tmp_path / "link.wav").symlink_to(path)
    for output in [path, tmp_path / "sub" / ".." / "in.wav", "link.wav"]:
        with pytest.raises(InvalidAudioError, match="is the input file"):
            enhancer.enhance_file(path, tmp_path / output)
    assert path.read_bytes() == before


def test_float64_batch_is_converted_to_float32(enhancer):
    noisy = torch.randn(2, 1600, dtype=torch.float64)
    enhanced = enhancer.enhance_batch(noisy)
    assert enhanced.dtype == torch.float32
    torch.testing.assert_close(enhanced, enhancer.enhance_batch(noisy.float()))


def test_time_by_channels_batch_is_refused(enhancer):
    stereo = torch.randn(16000, 2)  # what soundfile.read gives, as a tensor
    with pytest.raises(InvalidAudioError, match=r"\[time, channels\]"):
        enhancer.enhance_batch(stereo)


def test_silent_file_warning_points_at_the_caller(enhancer, tmp_path):
    path = write(tmp_path / "zeros.wav", np.zeros(1600), subtype="PCM_16")
    for output in [None, tmp_path / "out.wav"]:
        with pytest.warns(SilentInputWarning) as caught:
            enhancer.enhance_file(path, output)
        assert [w.filename for w in caught] == [__file__]


def test_output_keeps_the_input_sample_format(enhancer, tmp_path):
    loud = 2.0 * sine(0.3)  # float input beyond full scale
    for name, subtype in [("f.wav", "FLOAT"), ("i.flac", "PCM_24")]:
        path = write(tmp_path / name, loud / (2 if "PCM" in subtype else 1),
                     subtype=subtype)  # fmt: skip
        out = enhancer.enhance_file(path, tmp_path / "out" / name)
        assert sf.info(out).subtype == subtype
    written, _ = sf.read(tmp_path / "out" / "f.wav", dtype="float32")
    expected = enhancer.enhance_file(tmp_path / "f.wav")
    assert np.abs(written).max() > 1
    torch.testing.assert_close(torch.from_numpy(written), expected)


def test_clipping_in_an_integer_output_is_warned(enhancer, tmp_path):
    path = write(tmp_path / "loud.wav", 40.0 * sine(0.3))  # float wav
    with pytest.warns(ClippedOutputWarning, match="samples beyond full sc"):
        out = enhancer.enhance_file(path, tmp_path / "out.flac")
    assert sf.info(out).subtype == "PCM_16"


def test_truncated_checkpoint_is_called_truncated(model_folder, tmp_path):
    checkpoint = model_folder / "enhance_model.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError) as info:
        load(model_folder)
    assert "truncated or corrupt" in str(info.value)
    assert "run code" not in str(info.value)


def test_write_errors_name_the_output(enhancer, tmp_path):
    path = write(tmp_path / "in.wav", sine(0.1))
    (tmp_path / "taken.wav").mkdir()
    (tmp_path / "file").write_text("")
    for output in ["taken.wav", "file/out.wav"]:
        with pytest.raises(OSError) as info:
            enhancer.enhance_file(path, tmp_path / output)
        assert str(info.value).startswith(f"{tmp_path / output}: cannot")
        assert ".partial" not in str(info.value)
