"""Spectral tilts: random colouring of noise for training augmentation.

A tilt of ``s`` dB per octave multiplies the spectrum by
``(f / pivot_hz) ** (s / (20 log10 2))``: 0 leaves white noise white, -3 makes
it pink, -6 brown, +3 blue. Frequencies below ``min_hz`` get the gain of
``min_hz``, so a negative tilt does not blow up the lowest bins.

Authors
-------
speechbrain-cmcr contributors
"""

import math

import torch


def tilt_gains(
    n_bins, sample_rate, db_per_octave, pivot_hz=1000.0, min_hz=50.0
):
    """Amplitude gains of a spectral tilt on the bins of an rfft.

    Arguments
    ---------
    n_bins : int
        Number of rfft bins (``n // 2 + 1`` for ``n`` samples).
    sample_rate : int
        Sampling rate in Hz.
    db_per_octave : float
        Slope of the tilt.
    pivot_hz : float
        Frequency of unit gain.
    min_hz : float
        Frequencies below it get its gain.

    Returns
    -------
    torch.Tensor
        Gains [n_bins].

    Example
    -------
    >>> gains = tilt_gains(5, 8000, -6.0)  # bins at 0, 1, 2, 3, 4 kHz
    >>> [round(g, 2) for g in gains.tolist()]
    [19.8, 1.0, 0.5, 0.33, 0.25]
    """
    freqs = torch.linspace(0.0, sample_rate / 2, n_bins).clamp(min=min_hz)
    exponent = db_per_octave / (20.0 * math.log10(2.0))
    return (freqs / pivot_hz).pow(exponent)


def spectral_tilt(signal, db_per_octave, sample_rate, pivot_hz=1000.0):
    """Tilts a waveform's spectrum, keeping its RMS level.

    Arguments
    ---------
    signal : torch.Tensor
        Waveform [L].
    db_per_octave : float
        Slope of the tilt.
    sample_rate : int
        Sampling rate in Hz.
    pivot_hz : float
        Frequency of unit gain before the level is restored.

    Returns
    -------
    torch.Tensor
        Tilted waveform [L], same RMS as ``signal``.

    Example
    -------
    >>> white = torch.randn(16000)
    >>> brown = spectral_tilt(white, -6.0, 16000)
    >>> bool(torch.isclose(brown.pow(2).mean(), white.pow(2).mean()))
    True
    >>> spec = torch.fft.rfft(brown).abs()  # [8001], 1 Hz bins
    >>> bool(spec[100:1000].mean() > 10 * spec[6000:7000].mean())
    True
    """
    spec = torch.fft.rfft(signal)  # [L // 2 + 1]
    gains = tilt_gains(spec.shape[0], sample_rate, db_per_octave, pivot_hz)
    tilted = torch.fft.irfft(spec * gains, n=signal.shape[0])  # [L]
    rms = signal.pow(2).mean().sqrt()
    return tilted * (rms / tilted.pow(2).mean().sqrt().clamp(min=1e-10))


def colored_noise(length, db_per_octave, sample_rate):
    """Gaussian noise of unit RMS with a spectral tilt.

    Arguments
    ---------
    length : int
        Number of samples.
    db_per_octave : float
        Slope of the tilt (0 white, -3 pink, -6 brown).
    sample_rate : int
        Sampling rate in Hz.

    Returns
    -------
    torch.Tensor
        Noise [length], drawn with torch's global generator.

    Example
    -------
    >>> noise = colored_noise(8000, -3.0, 16000)
    >>> noise.shape, round(noise.pow(2).mean().item(), 3)
    (torch.Size([8000]), 1.0)
    """
    white = torch.randn(length)
    white = white / white.pow(2).mean().sqrt()
    return spectral_tilt(white, db_per_octave, sample_rate)
