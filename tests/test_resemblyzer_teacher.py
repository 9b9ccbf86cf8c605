"""Tests of the Resemblyzer teacher: frozen, faithful to the wheel, and a
usable contrastive regularization for CMCR-Net.

They need the ``resemblyzer`` wheel (``pip install --no-deps
resemblyzer==0.1.4``) and fail, rather than skip, without it.
"""

import importlib.util
import math
import sys
import types

import pytest
import torch
from conftest import TINY

from speechbrain_cmcr.lobes import resemblyzer_teacher
from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
from speechbrain_cmcr.lobes.resemblyzer_teacher import ResemblyzerTeacher
from speechbrain_cmcr.nnet.losses import ContrastiveRegularization

SAMPLE_RATE = 16000

# Per-band sums over the 51 frames of librosa 0.11.0's
# melspectrogram(y=chirp, sr=16000, n_fft=400, hop_length=160, n_mels=40,
# pad_mode="reflect") of the chirp made by `chirp()` below.
LIBROSA_BAND_SUMS = (
    0.636684, 0.682713, 1.37185, 0.972533, 0.946534, 1.01416, 0.939262,
    0.984256, 0.920472, 0.99496, 0.905887, 1.03453, 0.917258, 0.994038,
    0.909509, 1.02633, 0.91785, 0.975776, 0.963538, 0.957346, 0.966394,
    0.952026, 0.967457, 0.964671, 0.952246, 0.966541, 0.966558, 0.955084,
    0.963965, 0.961869, 0.958551, 0.963608, 0.963476, 0.958194, 0.963844,
    0.960763, 0.961387, 0.961838, 0.96136, 0.970097,
)  # fmt: skip


def chirp(seconds=0.5, low=100.0, high=7900.0):
    """Linear chirp of amplitude 0.1 sweeping all mel bands [L]."""
    t = torch.arange(int(seconds * SAMPLE_RATE), dtype=torch.float64)
    t = t / SAMPLE_RATE
    rate = (high - low) / (2 * seconds)
    return (0.1 * torch.sin(2 * math.pi * (low * t + rate * t**2))).float()


def clean_and_noisy(batch=2, seconds=1.0, snr_db=0.0, seed=0):
    """Voiced-speech-like harmonic tones (gliding f0, 4 Hz syllable
    envelope) and the same plus white noise, both [B, L]."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 120 + 40 * torch.arange(batch)[:, None] + 15 * torch.sin(3 * t)
    phase = 2 * math.pi * torch.cumsum(f0, dim=1) / SAMPLE_RATE
    harmonics = sum(torch.sin(k * phase) / k for k in range(1, 16))
    envelope = 0.5 * (1 - torch.cos(2 * math.pi * 4 * t))
    clean = 0.05 * harmonics * envelope
    noise = torch.randn(clean.shape, generator=generator)
    gain = clean.pow(2).mean(1, keepdim=True).sqrt() / 10 ** (snr_db / 20)
    return clean, clean + gain * noise


@pytest.fixture(scope="module")
def teacher():
    return ResemblyzerTeacher()


@pytest.fixture
def wheel_voice_encoder():
    """The wheel's own ``resemblyzer.voice_encoder`` module, imported
    without the package's ``__init__`` and ``audio`` modules (which need
    librosa and webrtcvad, not installed)."""
    spec = importlib.util.find_spec("resemblyzer")
    assert spec is not None, "resemblyzer is not installed"
    saved = {
        name: module
        for name, module in sys.modules.items()
        if name.split(".")[0] == "resemblyzer"
    }
    package = types.ModuleType("resemblyzer")
    package.__path__ = list(spec.submodule_search_locations)
    package.audio = types.ModuleType("resemblyzer.audio")
    sys.modules["resemblyzer"] = package
    sys.modules["resemblyzer.audio"] = package.audio
    try:
        yield importlib.import_module("resemblyzer.voice_encoder")
    finally:
        for name in list(sys.modules):
            if name.split(".")[0] == "resemblyzer":
                del sys.modules[name]
        sys.modules.update(saved)


def test_cr_trains_the_model_not_the_teacher(teacher):
    torch.manual_seed(0)
    model = CMCRNet(**TINY)
    cr = ContrastiveRegularization(teacher, layer_groups=[[1], [2], [3]])
    cr.train()
    model.train()
    clean, noisy = clean_and_noisy()
    enhanced = model(noisy).enhanced_wav
    cr(enhanced, clean, noisy).backward()
    # The noise decoder only shapes the noise estimate, which CR never sees.
    for name, param in model.named_parameters():
        if name.startswith("noise_decoder."):
            assert param.grad is None, name
        else:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert not teacher.training
    for name, param in teacher.named_parameters():
        assert not param.requires_grad, name
        assert param.grad is None, name


def test_front_end_matches_librosa(teacher):
    band_sums = teacher.features(chirp()[None])[0].sum(0)
    expected = torch.tensor(LIBROSA_BAND_SUMS)
    torch.testing.assert_close(band_sums, expected, rtol=1e-4, atol=0)


def test_front_end_raises_quiet_signals_to_minus_30_dbfs(teacher):
    loud = chirp()[None]  # -23 dBFS: left alone
    quiet = 0.01 * loud  # -63 dBFS: raised to -30 dBFS
    gain = 10 ** (-30 / 20) / loud.pow(2).mean().sqrt()
    torch.testing.assert_close(
        teacher.features(quiet), teacher.features(gain * loud)
    )
    torch.testing.assert_close(teacher.features(loud), teacher.mel(loud).mT)


def test_matches_the_wheels_voice_encoder(teacher, wheel_voice_encoder):
    encoder = wheel_voice_encoder.VoiceEncoder("cpu", verbose=False)
    clean, noisy = clean_and_noisy(seconds=3.5)
    layers = teacher(torch.cat([clean, noisy]))
    mels = layers[0]
    assert mels.shape == (4, 351, 40)  # 100 frames per second, centred
    partials = [mels[:, start : start + 160] for start in (0, 160, 320)]
    full_partials = torch.cat(partials[:2])  # two 1.6 s partial utterances
    with torch.no_grad():
        expected_embeds = encoder(full_partials)
        expected_last_layer = torch.cat(
            [encoder.lstm(partial)[0] for partial in partials], dim=1
        )
    torch.testing.assert_close(
        teacher.embed(full_partials), expected_embeds, rtol=0, atol=1e-5
    )
    torch.testing.assert_close(
        layers[3], expected_last_layer, rtol=0, atol=1e-5
    )


def test_cr_grows_with_the_residual_noise(teacher):
    cr = ContrastiveRegularization(teacher, layer_groups=[[1], [2], [3]])
    clean, noisy = clean_and_noisy(snr_db=5.0)
    values = [
        float(cr(clean + alpha * (noisy - clean), clean, noisy))
        for alpha in (0.0, 0.2, 0.5, 0.8)
    ]
    assert values[0] < 1e-5 * values[1]  # batching noise, not zero
    assert values == sorted(values) and len(set(values)) == len(values)


def test_frozen_and_never_checkpointed(teacher):
    assert teacher.state_dict() == {}
    params = list(teacher.parameters())
    assert len(params) == 3 * 4 + 2
    assert not any(param.requires_grad for param in params)
    assert not teacher.train().training


def test_weights_path_or_a_clear_error_without_the_wheel(monkeypatch):
    path = resemblyzer_teacher.find_resemblyzer_weights()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps"):
        ResemblyzerTeacher()
    layers = ResemblyzerTeacher(weights_path=str(path))(chirp()[None])
    assert [layer.shape[-1] for layer in layers] == [40, 256, 256, 256]


def test_random_teacher_keeps_the_front_end_and_loses_the_weights(teacher):
    torch.manual_seed(0)
    random_teacher = ResemblyzerTeacher(pretrained=False)
    wav = 0.1 * torch.randn(1, SAMPLE_RATE)
    trained, random = teacher(wav), random_teacher(wav)
    assert torch.equal(trained[0], random[0])
    for layer in range(1, 4):
        assert not torch.allclose(trained[layer], random[layer], atol=1e-3)
    assert not any(p.requires_grad for p in random_teacher.parameters())
    assert not random_teacher.training
