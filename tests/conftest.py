"""Shared fixtures: generated audio and a tiny wav2vec2 teacher, no files
from outside the tests."""

import math

import pytest
import torch

from speechbrain_cmcr.lobes.teachers import save_random_ssl_teacher

SAMPLE_RATE = 16000
# The smallest CMCRNet that has every block: fast for the tests.
TINY = dict(
    n_fft=64,
    win_length=4,
    hop_length=2,
    encoder_channels=[4, 8],
    num_modules=1,
    attention_dim=8,
)


def harmonic_speech(num_samples, f0=140.0, seed=0):
    """A voiced, speech-like test signal: harmonics of a gliding pitch under
    a syllable-rate envelope, peak 0.5."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples) / SAMPLE_RATE
    pitch = f0 * (1 + 0.1 * torch.sin(2 * math.pi * 0.7 * t))
    phase = 2 * math.pi * torch.cumsum(pitch, 0) / SAMPLE_RATE
    amps = torch.rand(8, generator=generator) + 0.2
    wave = sum(
        a / (k + 1) * torch.sin((k + 1) * phase) for k, a in enumerate(amps)
    )
    envelope = 0.5 * (1 - torch.cos(2 * math.pi * 4.0 * t)).clamp(min=0.05)
    wave = wave * envelope
    return 0.5 * wave / wave.abs().max()


def mix_at_snr(clean, snr_db, seed=1):
    """Adds white noise to ``clean`` at ``snr_db``; returns (noisy, noise)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(clean.shape, generator=generator)
    scale = clean.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt()
    noise = noise * scale * 10 ** (-snr_db / 20)
    return clean + noise, noise


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory):
    """A randomly initialised 4-layer wav2vec2 saved like a Hub model."""
    folder = tmp_path_factory.mktemp("tiny_wav2vec2")
    save_random_ssl_teacher(str(folder), hidden_size=32, num_hidden_layers=4)
    return str(folder)


@pytest.fixture
def pair():
    """One second of clean speech-like signal and its 0 dB noisy mixture."""
    clean = harmonic_speech(SAMPLE_RATE)
    noisy, _ = mix_at_snr(clean, 0.0)
    return clean, noisy
