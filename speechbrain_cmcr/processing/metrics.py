"""Speech-enhancement metrics: PESQ, STOI, SI-SDR, SSNR and CSIG/CBAK/COVL.

Every function takes two 1-D float numpy signals, the clean reference first
and the enhanced (or noisy) signal second, and returns plain Python floats.

Conventions
-----------
* Signals are floats at the scale MATLAB's ``audioread``/``wavread`` gives,
  i.e. 16-bit PCM divided by 32768 so that full scale is [-1, 1]. This is what
  ``soundfile.read`` returns. Integer arrays are refused so that nobody feeds
  int16 samples (or, worse, float samples divided by 32768 a second time).
* Both signals must have the same number of samples: nothing is trimmed
  silently, a mismatch raises ``ValueError`` (align or trim them first).
* Every metric is undefined for a digitally silent (all-zero) reference and
  raises ``ValueError`` for one. Signals too short for a metric raise
  ``ValueError`` naming its minimum: 0.25 s for PESQ (and so for the
  composite measures), 0.41 s of reference that is not silent for STOI
  (30 frames of 25.6 ms, hop 12.8 ms, after pystoi drops the frames more
  than 40 dB below the loudest), 37.5 ms for SSNR, LLR and WSS (one 30 ms
  frame and a hop).
* PESQ is ITU-T P.862.2 wide band (MOS-LQO) from the ``pesq`` package, so
  PESQ and the composite measures need ``fs == 16000``.
* STOI is the classic measure of Taal et al. (2011) from ``pystoi``.
* SI-SDR follows Le Roux et al. (2019): both signals are made zero-mean.
* SSNR and CSIG/CBAK/COVL follow Loizou's MATLAB ``composite.m`` (Hu and
  Loizou 2008, "Evaluation of objective quality measures for speech
  enhancement"), including its quirks:

  - MATLAB's ``eps`` (2.2e-16) is added to both signals;
  - frames are ``round(30 ms * fs)`` samples long (480 at 16 kHz) with a hop of
    ``floor(len / 4)`` (75 % overlap) and a ``0.5 * (1 - cos(2 pi n / (len +
    1)))`` window, and there are ``floor(N / hop - len / hop)`` of them,
    i.e. one fewer than would fit;
  - WSS uses 25 Gaussian critical bands below 4 kHz on a
    ``2 ** nextpow2(2 * len)`` point FFT, band energies floored at 1e-10
    before the dB conversion, Klatt's weights with ``Kmax = 20`` and
    ``Klocmax = 1`` and MATLAB's local-peak search (which, when searching to
    the right, takes the band just before the peak);
  - LLR uses LPC order 16 above 10 kHz (10 below) from the autocorrelation
    method;
  - the mean of LLR and of WSS keeps the ``round(0.95 * n)`` lowest frame
    values, rounding halves up as MATLAB does (Python's ``round`` would round
    them to even);
  - SSNR clips each frame to [-10, 35] dB and averages all frames;
  - CSIG, CBAK and COVL are clipped to [1, 5].

  The 1e-10 floor is the one place where the signal scale matters. At the
  [-1, 1] scale used here it only touches digital silence. A popular Python
  port (CMGAN's ``compute_metrics.py``) divides its float input by 32768 again
  inside WSS, which pushes quiet band energies onto the floor and inflates
  CSIG/CBAK/COVL (by 0.1 to 0.4 on real noisy or enhanced clips); composite
  scores printed by papers that used it are not comparable with these. The
  same port also skips the ``eps``, so digitally silent frames break its LLR.

  Loizou's MATLAB code feeds the composite with the raw narrow-band P.862
  score; like most recent work on VoiceBank+DEMAND this module feeds it with
  the wide-band PESQ score instead.
"""

import math
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import pesq as pesq_package
import pystoi

PESQ_RATE = 16000
PESQ_MIN_SECONDS = 0.25
# pystoi works at 10 kHz and needs 30 STFT frames (256 samples, hop 128):
# more than 4096 samples left once its silent frames are removed.
STOI_MIN_SECONDS = 0.41
_STOI_RATE = 10000
_STOI_MAX_TOO_SHORT = 4096
_MATLAB_EPS = np.finfo(np.float64).eps
_TRIM_FRACTION = 0.95
_SSNR_RANGE = (-10.0, 35.0)
_WSS_ENERGY_FLOOR = 1e-10
_WSS_KMAX = 20.0
_WSS_KLOCMAX = 1.0
_CRIT_CENTER_HZ = np.array(
    [50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372,
     703.378, 798.717, 904.128, 1020.38, 1148.30, 1288.72, 1442.54, 1610.70,
     1794.16, 1993.93, 2211.08, 2446.71, 2701.97, 2978.04, 3276.17, 3597.63]
)  # fmt: skip
_CRIT_BANDWIDTH_HZ = np.array(
    [70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398,
     105.411, 116.256, 127.914, 140.423, 153.823, 168.154, 183.457, 199.776,
     217.153, 235.631, 255.255, 276.072, 298.126, 321.465, 346.136]
)  # fmt: skip


def _check_signal(x, name):
    """Returns ``x`` as a float64 1-D array after checking that it is valid.

    Arguments
    ---------
    x : array_like
        Float signal, full scale [-1, 1].
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        The signal as float64.

    Example
    -------
    >>> _check_signal(np.zeros(3, dtype=np.float32), "ref").dtype
    dtype('float64')
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{name} must be a float array at [-1, 1] full scale, got dtype "
            f"{x.dtype} (divide int16 samples by 32768 once)"
        )
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.astype(np.float64)


def _check_pair(ref, deg):
    """Checks both signals and that their lengths match.

    Arguments
    ---------
    ref : array_like
        Clean reference signal.
    deg : array_like
        Enhanced or degraded signal.

    Returns
    -------
    tuple of numpy.ndarray
        ``ref`` and ``deg`` as float64.

    Example
    -------
    >>> _check_pair(np.zeros(4), np.zeros(5))
    Traceback (most recent call last):
    ...
    ValueError: length mismatch: ref has 4 samples, deg has 5; align ...
    """
    ref = _check_signal(ref, "ref")
    deg = _check_signal(deg, "deg")
    if ref.size != deg.size:
        raise ValueError(
            f"length mismatch: ref has {ref.size} samples, deg has "
            f"{deg.size}; align or trim them first"
        )
    return ref, deg


def _check_not_silent(x, name, metric):
    """Raises ``ValueError`` if ``x`` is all zeros, for which ``metric`` is
    undefined.

    Arguments
    ---------
    x : numpy.ndarray
        Checked signal.
    name : str
        Its name in the message.
    metric : str
        The metric's name in the message.

    Example
    -------
    >>> _check_not_silent(np.zeros(3), "ref", "SSNR")
    Traceback (most recent call last):
    ...
    ValueError: SSNR is undefined: ref is all zeros
    """
    if not np.any(x):
        raise ValueError(f"{metric} is undefined: {name} is all zeros")


def _check_pesq_rate(fs):
    """Raises ``ValueError`` unless ``fs`` is the wide-band PESQ rate.

    Arguments
    ---------
    fs : int
        Sample rate in Hz.

    Example
    -------
    >>> _check_pesq_rate(8000)
    Traceback (most recent call last):
    ...
    ValueError: wide-band PESQ needs fs=16000 Hz, got 8000; resample first
    """
    if fs != PESQ_RATE:
        raise ValueError(
            f"wide-band PESQ needs fs={PESQ_RATE} Hz, got {fs}; resample first"
        )


def _matlab_round(x):
    """Rounds a non-negative number half up, as MATLAB's ``round`` does.

    Arguments
    ---------
    x : float
        Non-negative number.

    Returns
    -------
    int
        The rounded value.

    Example
    -------
    >>> _matlab_round(28.5), round(28.5)
    (29, 28)
    """
    return int(np.floor(x + 0.5))


def _trimmed_mean(values):
    """Mean of the ``round(0.95 n)`` lowest values (NaN sorts last).

    Arguments
    ---------
    values : numpy.ndarray
        Per-frame values.

    Returns
    -------
    float
        The trimmed mean.

    Example
    -------
    >>> _trimmed_mean(np.arange(30.0)[::-1])  # keeps 29 of 30 values
    14.0
    """
    kept = _matlab_round(values.size * _TRIM_FRACTION)
    return float(np.mean(np.sort(values)[:kept]))


def _frame_geometry(fs):
    """Frame length and hop of Loizou's code: 30 ms frames, 75 % overlap.

    Arguments
    ---------
    fs : int
        Sample rate in Hz.

    Returns
    -------
    tuple of int
        Frame length and hop in samples.

    Example
    -------
    >>> _frame_geometry(16000)
    (480, 120)
    """
    length = _matlab_round(30 * fs / 1000)
    return length, length // 4


def _frames(x, fs):
    """Cuts ``x + eps`` into windowed frames exactly as Loizou's code does.

    Arguments
    ---------
    x : numpy.ndarray
        1-D float64 signal.
    fs : int
        Sample rate in Hz.

    Returns
    -------
    numpy.ndarray
        Windowed frames, shape ``(n_frames, frame_length)``.

    Example
    -------
    >>> _frames(np.ones(1000), 16000).shape
    (4, 480)
    """
    length, hop = _frame_geometry(fs)
    n_frames = int(np.floor(x.size / hop - length / hop))
    if n_frames < 1:
        raise ValueError(
            f"signal too short for 30 ms framing: {x.size} samples, need at "
            f"least {length + hop} at {fs} Hz"
        )
    window = 0.5 * (
        1 - np.cos(2 * np.pi * np.arange(1, length + 1) / (length + 1))
    )
    windows = np.lib.stride_tricks.sliding_window_view(x + _MATLAB_EPS, length)
    return windows[::hop][:n_frames] * window


def _segmental_snrs(ref_frames, deg_frames):
    """Per-frame SNR in dB, clipped to [-10, 35] dB.

    Arguments
    ---------
    ref_frames : numpy.ndarray
        Windowed reference frames, ``(n_frames, frame_length)``.
    deg_frames : numpy.ndarray
        Windowed degraded frames, same shape.

    Returns
    -------
    numpy.ndarray
        One SNR per frame.

    Example
    -------
    >>> frames = np.ones((2, 4))
    >>> _segmental_snrs(frames, 0.5 * frames)
    array([6.02059991, 6.02059991])
    """
    signal = np.sum(ref_frames**2, axis=1)
    noise = np.sum((ref_frames - deg_frames) ** 2, axis=1)
    snr = 10 * np.log10(signal / (noise + _MATLAB_EPS) + _MATLAB_EPS)
    return np.clip(snr, *_SSNR_RANGE)


def _critical_band_filters(fs, n_fft):
    """Gaussian critical-band weights of the WSS measure on FFT bins.

    Arguments
    ---------
    fs : int
        Sample rate in Hz.
    n_fft : int
        FFT size.

    Returns
    -------
    numpy.ndarray
        Filter weights, shape ``(25, n_fft // 2)``.

    Example
    -------
    >>> _critical_band_filters(16000, 1024).shape
    (25, 512)
    """
    half = n_fft // 2
    center = np.floor(_CRIT_CENTER_HZ / (fs / 2) * half)[:, None]
    width = (_CRIT_BANDWIDTH_HZ / (fs / 2) * half)[:, None]
    gain = np.log(_CRIT_BANDWIDTH_HZ[0]) - np.log(_CRIT_BANDWIDTH_HZ)[:, None]
    bins = np.arange(half)[None, :]
    weights = np.exp(-11 * ((bins - center) / width) ** 2 + gain)
    min_weight = np.exp(-30.0 / (2.0 * 2.303))  # -30 dB point of a filter
    return weights * (weights > min_weight)


def _band_energies_db(frames, fs):
    """Critical-band energies of each frame in dB, floored at -100 dB.

    Arguments
    ---------
    frames : numpy.ndarray
        Windowed frames, ``(n_frames, frame_length)``.
    fs : int
        Sample rate in Hz.

    Returns
    -------
    numpy.ndarray
        Band energies, ``(n_frames, 25)``.

    Example
    -------
    >>> _band_energies_db(np.zeros((3, 480)), 16000).max()
    np.float64(-100.0)
    """
    n_fft = 2 ** (2 * frames.shape[1] - 1).bit_length()  # 2^nextpow2(2 len)
    power = np.abs(np.fft.rfft(frames, n_fft)[:, : n_fft // 2]) ** 2
    energy = power @ _critical_band_filters(fs, n_fft).T
    return 10 * np.log10(np.maximum(energy, _WSS_ENERGY_FLOOR))


def _local_peak_indices(slope):
    """Band index of the "nearest peak" of each band, as in MATLAB's WSS.

    For a rising slope MATLAB walks right to the first non-rising slope and
    takes the band before it; otherwise it walks left to the last rising
    slope and takes the band after it.

    Arguments
    ---------
    slope : numpy.ndarray
        Band-to-band slopes in dB, ``(n_frames, n_bands - 1)``.

    Returns
    -------
    numpy.ndarray
        Integer band indices, same shape as ``slope``.

    Example
    -------
    >>> _local_peak_indices(np.array([[1.0, 1.0, -1.0, -1.0]]))
    array([[1, 1, 2, 2]])
    """
    rising = slope > 0
    n_frames, n_slopes = slope.shape
    first_fall = np.empty(slope.shape, dtype=int)
    last_rise = np.empty(slope.shape, dtype=int)
    fall = np.full(n_frames, n_slopes)
    rise = np.full(n_frames, -1)
    for band in range(n_slopes):
        rise = np.where(rising[:, band], band, rise)
        last_rise[:, band] = rise
    for band in reversed(range(n_slopes)):
        fall = np.where(rising[:, band], fall, band)
        first_fall[:, band] = fall
    return np.where(rising, first_fall - 1, last_rise + 1)


def _wss_weights(energy_db):
    """Klatt's per-band weights (global and local peak terms) of one signal.

    Arguments
    ---------
    energy_db : numpy.ndarray
        Band energies in dB, ``(n_frames, n_bands)``.

    Returns
    -------
    numpy.ndarray
        Weights of the first ``n_bands - 1`` bands.

    Example
    -------
    >>> _wss_weights(np.array([[0.0, 10.0, 0.0]]))
    array([[0.66666667, 1.        ]])
    """
    peaks = np.take_along_axis(
        energy_db, _local_peak_indices(np.diff(energy_db, axis=1)), axis=1
    )
    lower = energy_db[:, :-1]
    global_max = energy_db.max(axis=1, keepdims=True)
    w_max = _WSS_KMAX / (_WSS_KMAX + global_max - lower)
    w_local = _WSS_KLOCMAX / (_WSS_KLOCMAX + peaks - lower)
    return w_max * w_local


def _wss_frames(ref_frames, deg_frames, fs):
    """Weighted spectral slope distance of each frame.

    Arguments
    ---------
    ref_frames : numpy.ndarray
        Windowed reference frames, ``(n_frames, frame_length)``.
    deg_frames : numpy.ndarray
        Windowed degraded frames, same shape.
    fs : int
        Sample rate in Hz.

    Returns
    -------
    numpy.ndarray
        One distance per frame.

    Example
    -------
    >>> frames = _frames(np.random.default_rng(0).normal(size=9000), 16000)
    >>> float(np.abs(_wss_frames(frames, frames, 16000)).max())
    0.0
    """
    ref_db = _band_energies_db(ref_frames, fs)
    deg_db = _band_energies_db(deg_frames, fs)
    weights = (_wss_weights(ref_db) + _wss_weights(deg_db)) / 2
    slope_error = np.diff(ref_db, axis=1) - np.diff(deg_db, axis=1)
    return np.sum(weights * slope_error**2, axis=1) / np.sum(weights, axis=1)


def _lpc(frames, order):
    """Autocorrelation lags and LPC polynomials (Levinson-Durbin) per frame.

    Arguments
    ---------
    frames : numpy.ndarray
        Windowed frames, ``(n_frames, frame_length)``.
    order : int
        LPC order.

    Returns
    -------
    tuple of numpy.ndarray
        Lags ``(n_frames, order + 1)`` and polynomials ``[1, -a_1, ...]`` of
        the same shape.

    Example
    -------
    >>> x = 0.9 ** np.arange(400)
    >>> lags, poly = _lpc(x[None, :], 1)
    >>> poly.round(3)
    array([[ 1. , -0.9]])
    """
    length = frames.shape[1]
    lags = np.stack(
        [np.sum(frames[:, : length - k] * frames[:, k:], axis=1)
         for k in range(order + 1)],
        axis=1,
    )  # fmt: skip
    coeffs = np.zeros((frames.shape[0], order))
    error = lags[:, 0]
    for i in range(order):
        past = coeffs[:, :i].copy()
        reflection = (
            lags[:, i + 1] - np.sum(past * lags[:, i:0:-1], axis=1)
        ) / error
        coeffs[:, :i] = past - reflection[:, None] * past[:, ::-1]
        coeffs[:, i] = reflection
        error = (1 - reflection**2) * error
    return lags, np.concatenate(
        [np.ones((frames.shape[0], 1)), -coeffs], axis=1
    )


def _llr_frames(ref_frames, deg_frames, fs):
    """Log-likelihood ratio of each frame (NaN where it is undefined).

    Arguments
    ---------
    ref_frames : numpy.ndarray
        Windowed reference frames, ``(n_frames, frame_length)``.
    deg_frames : numpy.ndarray
        Windowed degraded frames, same shape.
    fs : int
        Sample rate in Hz.

    Returns
    -------
    numpy.ndarray
        One LLR per frame.

    Example
    -------
    >>> frames = _frames(np.random.default_rng(0).normal(size=9000), 16000)
    >>> float(np.abs(_llr_frames(frames, frames, 16000)).max())
    0.0
    """
    order = 10 if fs < 10000 else 16
    lag_index = np.abs(
        np.subtract.outer(np.arange(order + 1), np.arange(order + 1))
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ref_lags, ref_poly = _lpc(ref_frames, order)
        _, deg_poly = _lpc(deg_frames, order)
        toeplitz = ref_lags[:, lag_index]
        numerator = np.einsum("fi,fij,fj->f", deg_poly, toeplitz, deg_poly)
        denominator = np.einsum("fi,fij,fj->f", ref_poly, toeplitz, ref_poly)
        return np.log(numerator / denominator)


def _composite_parts(ref, deg, fs):
    """Trimmed LLR, trimmed WSS and SSNR of a checked pair.

    Arguments
    ---------
    ref : numpy.ndarray
        Checked reference signal.
    deg : numpy.ndarray
        Checked degraded signal.
    fs : int
        Sample rate in Hz.

    Returns
    -------
    tuple of float
        LLR, WSS and SSNR (dB).

    Example
    -------
    >>> x = np.random.default_rng(0).normal(0, 0.1, 16000)
    >>> [round(v, 3) for v in _composite_parts(x, x, 16000)]
    [0.0, 0.0, 35.0]
    """
    ref_frames, deg_frames = _frames(ref, fs), _frames(deg, fs)
    return (
        _trimmed_mean(_llr_frames(ref_frames, deg_frames, fs)),
        _trimmed_mean(_wss_frames(ref_frames, deg_frames, fs)),
        float(np.mean(_segmental_snrs(ref_frames, deg_frames))),
    )


def _composite_scores(pesq_score, llr_value, wss_value, ssnr_value):
    """Hu and Loizou's (2008) regressions, each clipped to [1, 5].

    Arguments
    ---------
    pesq_score : float
        PESQ score.
    llr_value : float
        Trimmed mean LLR.
    wss_value : float
        Trimmed mean WSS.
    ssnr_value : float
        Segmental SNR in dB.

    Returns
    -------
    tuple of float
        CSIG, CBAK and COVL.

    Example
    -------
    >>> _composite_scores(4.64, 0.0, 0.0, 35.0)
    (5.0, 5.0, 5.0)
    """
    csig = 3.093 - 1.029 * llr_value + 0.603 * pesq_score - 0.009 * wss_value
    cbak = 1.634 + 0.478 * pesq_score - 0.007 * wss_value + 0.063 * ssnr_value
    covl = 1.594 + 0.805 * pesq_score - 0.512 * llr_value - 0.007 * wss_value
    return tuple(
        float(np.clip(score, 1.0, 5.0)) for score in (csig, cbak, covl)
    )


def _pesq_checked(ref, deg):
    """Wide-band PESQ of a checked 16 kHz pair, errors as ``ValueError``.

    Arguments
    ---------
    ref : numpy.ndarray
        Checked reference signal.
    deg : numpy.ndarray
        Checked degraded signal.

    Returns
    -------
    float
        PESQ (MOS-LQO).

    Example
    -------
    >>> _pesq_checked(np.zeros(16000), np.zeros(16000))
    Traceback (most recent call last):
    ...
    ValueError: PESQ is undefined: ref is all zeros
    >>> _pesq_checked(np.ones(3999), np.ones(3999))
    Traceback (most recent call last):
    ...
    ValueError: PESQ needs at least 0.25 s (4000 samples at 16000 Hz), got ...
    """
    for name, x in (("ref", ref), ("deg", deg)):
        _check_not_silent(x, name, "PESQ")
    needed = math.ceil(PESQ_MIN_SECONDS * PESQ_RATE)
    if ref.size < needed:
        raise ValueError(
            f"PESQ needs at least {PESQ_MIN_SECONDS} s ({needed} samples at "
            f"{PESQ_RATE} Hz), got {ref.size} samples "
            f"({ref.size / PESQ_RATE:.3f} s)"
        )
    try:
        return float(pesq_package.pesq(PESQ_RATE, ref, deg, "wb"))
    except pesq_package.PesqError as error:
        raise ValueError(
            f"PESQ failed with {type(error).__name__}: are the signals long "
            "enough and do they contain speech?"
        ) from error


def pesq_wb(ref, deg, fs: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO) via the ``pesq`` package.

    Arguments
    ---------
    ref : array_like
        Clean reference, 1-D float, full scale [-1, 1].
    deg : array_like
        Enhanced or degraded signal, same length.
    fs : int
        Sample rate; must be 16000.

    Returns
    -------
    float
        PESQ between about 1.04 and 4.64.

    Example
    -------
    >>> x = np.random.default_rng(0).normal(0, 0.1, 32000)
    >>> round(pesq_wb(x, x, 16000), 2)
    4.64
    """
    ref, deg = _check_pair(ref, deg)
    _check_pesq_rate(fs)
    return _pesq_checked(ref, deg)


def stoi(ref, deg, fs: int) -> float:
    """Classic (not extended) STOI via ``pystoi``.

    Arguments
    ---------
    ref : array_like
        Clean reference, 1-D float.
    deg : array_like
        Enhanced or degraded signal, same length.
    fs : int
        Sample rate in Hz (resampled to 10 kHz internally).

    Returns
    -------
    float
        STOI, at most 1.

    Raises
    ------
    ValueError
        If ``ref`` is silent, or has less than 0.41 s that is not (pystoi
        would return 1e-5 or fail).

    Example
    -------
    >>> x = np.random.default_rng(0).normal(0, 0.1, 32000)
    >>> round(stoi(x, x, 16000), 3)
    1.0
    >>> stoi(x[:100], x[:100], 16000)
    Traceback (most recent call last):
    ...
    ValueError: STOI needs at least 0.41 s (6554 samples at 16000 Hz), got ...
    """
    ref, deg = _check_pair(ref, deg)
    _check_not_silent(ref, "ref", "STOI")
    # pystoi's resampling to 10 kHz rounds the length up.
    needed = math.floor(_STOI_MAX_TOO_SHORT * fs / _STOI_RATE) + 1
    if ref.size < needed:
        raise ValueError(
            f"STOI needs at least {STOI_MIN_SECONDS} s ({needed} samples at "
            f"{fs} Hz), got {ref.size} samples ({ref.size / fs:.3f} s)"
        )
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "error", "Not enough STFT frames", RuntimeWarning
        )
        try:
            return float(pystoi.stoi(ref, deg, fs, extended=False))
        except RuntimeWarning as warning:
            raise ValueError(
                f"STOI needs at least {STOI_MIN_SECONDS} s of ref within 40 "
                "dB of its loudest frame, ref has less "
                f"({ref.size / fs:.3f} s in all)"
            ) from warning


def si_sdr(ref, deg) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), zero-mean signals.

    The target and residual energies are floored at ``eps`` times the energy
    of ``deg`` so that identical signals give a large finite value (about
    156.5 dB) instead of infinity.

    Arguments
    ---------
    ref : array_like
        Clean reference, 1-D float, not constant.
    deg : array_like
        Enhanced or degraded signal, same length, not constant.

    Returns
    -------
    float
        SI-SDR in dB.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x, noise = rng.normal(0, 0.1, (2, 16000))
    >>> round(si_sdr(x, 0.5 * x + 0.1 * noise), 1)
    14.0
    >>> round(si_sdr(x, x), 1)
    156.5
    """
    ref, deg = _check_pair(ref, deg)
    ref, deg = ref - ref.mean(), deg - deg.mean()
    ref_energy, deg_energy = ref @ ref, deg @ deg
    if ref_energy == 0 or deg_energy == 0:
        raise ValueError("SI-SDR is undefined for a constant ref or deg")
    target = (deg @ ref / ref_energy) * ref
    residual = deg - target
    floor = _MATLAB_EPS * deg_energy
    ratio = max(target @ target, floor) / max(residual @ residual, floor)
    return float(10 * np.log10(ratio))


def ssnr(ref, deg, fs: int) -> float:
    """Segmental SNR in dB as in Loizou's ``composite.m``.

    Frames of 30 ms with 75 % overlap, each frame's SNR clipped to
    [-10, 35] dB, mean over all frames.

    Arguments
    ---------
    ref : array_like
        Clean reference, 1-D float.
    deg : array_like
        Enhanced or degraded signal, same length.
    fs : int
        Sample rate in Hz.

    Returns
    -------
    float
        Segmental SNR in dB.

    Example
    -------
    >>> x = np.random.default_rng(0).normal(0, 0.1, 16000)
    >>> ssnr(x, x, 16000)
    35.0
    """
    ref, deg = _check_pair(ref, deg)
    _check_not_silent(ref, "ref", "SSNR")
    return float(np.mean(_segmental_snrs(_frames(ref, fs), _frames(deg, fs))))


def llr(ref, deg, fs: int) -> float:
    """Log-likelihood ratio, mean of the 95 % lowest frames (``composite.m``).

    Arguments
    ---------
    ref : array_like
        Clean reference, 1-D float.
    deg : array_like
        Enhanced or degraded signal, same length.
    fs : int
        Sample rate in Hz.

    Returns
    -------
    float
        Trimmed mean LLR (0 for identical signals).

    Example
    -------
    >>> x, noise = np.random.default_rng(0).normal(0, 0.1, (2, 16000))
    >>> llr(x, x, 16000)
    0.0
    >>> llr(x, x + noise, 16000) > 0
    True
    """
    ref, deg = _check_pair(ref, deg)
    _check_not_silent(ref, "ref", "LLR")
    frames = _frames(ref, fs), _frames(deg, fs)
    return _trimmed_mean(_llr_frames(*frames, fs))


def wss(ref, deg, fs: int) -> float:
    """Weighted spectral slope, mean of the 95 % lowest frames (composite.m).

    Arguments
    ---------
    ref : array_like
        Clean reference, 1-D float, full scale [-1, 1].
    deg : array_like
        Enhanced or degraded signal, same length.
    fs : int
        Sample rate in Hz.

    Returns
    -------
    float
        Trimmed mean WSS (0 for identical signals).

    Example
    -------
    >>> x, noise = np.random.default_rng(0).normal(0, 0.1, (2, 16000))
    >>> wss(x, x, 16000)
    0.0
    >>> wss(x, x + noise, 16000) > 0
    True
    """
    ref, deg = _check_pair(ref, deg)
    _check_not_silent(ref, "ref", "WSS")
    frames = _frames(ref, fs), _frames(deg, fs)
    return _trimmed_mean(_wss_frames(*frames, fs))


def composite(
    ref, deg, fs: int, pesq_score: Optional[float] = None
) -> Tuple[float, float, float]:
    """CSIG, CBAK and COVL of Hu and Loizou (2008), as in ``composite.m``.

    Arguments
    ---------
    ref : array_like
        Clean reference, 1-D float, full scale [-1, 1].
    deg : array_like
        Enhanced or degraded signal, same length.
    fs : int
        Sample rate; must be 16000 (wide-band PESQ).
    pesq_score : float, optional
        Wide-band PESQ of the pair if already known; computed otherwise.

    Returns
    -------
    tuple of float
        CSIG, CBAK and COVL, each in [1, 5].

    Example
    -------
    >>> x = np.random.default_rng(0).normal(0, 0.1, 32000)
    >>> composite(x, x, 16000)
    (5.0, 5.0, 5.0)
    """
    ref, deg = _check_pair(ref, deg)
    _check_pesq_rate(fs)
    _check_not_silent(ref, "ref", "CSIG/CBAK/COVL")
    if pesq_score is None:
        pesq_score = _pesq_checked(ref, deg)
    return _composite_scores(pesq_score, *_composite_parts(ref, deg, fs))


def evaluate_pair(ref, deg, fs: int) -> Dict[str, float]:
    """All metrics of one (clean, enhanced) pair; PESQ is computed once.

    Arguments
    ---------
    ref : array_like
        Clean reference, 1-D float, full scale [-1, 1].
    deg : array_like
        Enhanced or degraded signal, same length.
    fs : int
        Sample rate; must be 16000.

    Returns
    -------
    dict
        Floats under ``pesq``, ``csig``, ``cbak``, ``covl``, ``ssnr`` (dB),
        ``stoi`` and ``si_sdr`` (dB).

    Example
    -------
    >>> x, noise = np.random.default_rng(0).normal(0, 0.1, (2, 32000))
    >>> scores = evaluate_pair(x, x + 0.1 * noise, 16000)
    >>> sorted(scores)
    ['cbak', 'covl', 'csig', 'pesq', 'si_sdr', 'ssnr', 'stoi']
    """
    ref, deg = _check_pair(ref, deg)
    _check_pesq_rate(fs)
    pesq_score = _pesq_checked(ref, deg)
    llr_value, wss_value, ssnr_value = _composite_parts(ref, deg, fs)
    csig, cbak, covl = _composite_scores(
        pesq_score, llr_value, wss_value, ssnr_value
    )
    return {
        "pesq": pesq_score,
        "csig": csig,
        "cbak": cbak,
        "covl": covl,
        "ssnr": ssnr_value,
        "stoi": stoi(ref, deg, fs),
        "si_sdr": si_sdr(ref, deg),
    }
