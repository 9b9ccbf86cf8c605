"""Tests of speechbrain_cmcr.processing.metrics.

Most tests make their own audio (harmonic tones with a syllable-like
envelope, plus white noise). ``test_devdata_matches_pysepm`` scores the real
pairs in ``shared/devdata`` and compares them with an independent public
implementation.

Where the reference numbers come from
-------------------------------------
* PESQ, CSIG, CBAK, COVL, SSNR and STOI: pysepm (github.com/schmiph2/pysepm,
  commit 7ef88aff2c56201a2d0470aaeb58e77e47a914d2, 2025-02-15), run outside
  this project in a separate virtual environment (numpy 2.4.6, scipy 1.17.1,
  numba 0.68.1, pesq 0.0.4, pystoi 0.4.1). Each WAV was read with
  ``soundfile.read(path, dtype="float64")``, i.e. at MATLAB ``audioread``
  scale, and scored with ``pysepm.qualityMeasures.composite(ref, deg, 16000)``
  (CSIG, CBAK, COVL), ``SNRseg(ref, deg, 16000)``, ``pesq(ref, deg, 16000)``
  (its wide-band MOS-LQO) and ``pystoi.stoi(ref, deg, 16000, extended=False)``
  (which is what ``pysepm.stoi`` is). pysepm follows Loizou's MATLAB
  conventions and has no second division by 32768, so nothing was rescaled.
  Only two shims were needed, neither touching its code: ``np.NaN = np.nan``
  (pysepm predates NumPy 2) and importing ``pysepm.qualityMeasures`` without
  the package ``__init__`` (which wants the unrelated SRMRpy).
* SI-SDR: ``-speechbrain.nnet.losses.cal_si_snr(ref, deg)`` of speechbrain
  1.1.2 on float64 tensors of shape ``(T, 1, 1)``.

Known differences, all below the 0.01 tolerance: pysepm trims LLR and WSS
with Python's ``round`` (halves to even) where MATLAB and this module round
halves up (p287_002 has 430 frames, 0.95 * 430 = 408.5, so CSIG differs by
0.006); LLR frames where the reference is digitally silent are numerically
ill-conditioned in any implementation (crcnet_enhanced differs by up to
0.0025 in LLR); pysepm's SSNR does not add ``eps`` (3e-13 dB). PESQ and STOI
agree exactly, SI-SDR to 1e-7 dB.

Running CMGAN's ``compute_metrics.py`` (ruizhecao96/CMGAN, commit 39946005)
on the same float arrays reproduces these numbers once its input is
multiplied by 32768 (its WSS divides by 32768 again), except on
dns2020/fileid_170 whose digital silence breaks its LLR (no ``eps``); fed
the arrays as they are, it inflates CSIG/CBAK/COVL by 0.1 to 0.4.
"""

from pathlib import Path

import numpy as np
import pytest
import soundfile

from speechbrain_cmcr.processing import metrics

FS = 16000
DEVDATA = Path(__file__).resolve().parents[2] / "shared" / "devdata"
METRICS = ("pesq", "csig", "cbak", "covl", "ssnr", "stoi", "si_sdr")

# fmt: off
# Degraded file (its clean reference is <set>/clean/<same name>), then
# pysepm's PESQ, CSIG, CBAK, COVL, SSNR, STOI and speechbrain's SI-SDR.
REFERENCE = [
    ("vbd_train_p287/noisy/p287_001.wav",
     1.7623, 2.8228, 2.2622, 2.2278, 1.9587, 0.8458, 12.7524),
    ("vbd_train_p287/noisy/p287_002.wav",
     1.3397, 2.6782, 2.0837, 1.9362, 2.6079, 0.8624, 8.9818),
    ("vbd_train_p287/noisy/p287_003.wav",
     1.1676, 2.3005, 1.7192, 1.6380, -0.8395, 0.7725, 4.2361),
    ("vbd_train_p287/noisy/p287_004.wav",
     1.1227, 1.9043, 1.4419, 1.4037, -4.2659, 0.6751, -0.8078),
    ("vbd_train_p287/noisy/p287_005.wav",
     1.5964, 3.1385, 2.5812, 2.3362, 6.7356, 0.9354, 14.5464),
    ("vbd_train_p287/noisy/p287_006.wav",
     1.4879, 2.9945, 2.3280, 2.2086, 3.5921, 0.9100, 9.4984),
    ("dns2020/noisy/fileid_170.wav",
     1.1952, 2.5047, 1.8852, 1.7706, 0.8298, 0.8920, 1.0327),
    ("dns2020/noisy/fileid_44.wav",
     1.2099, 2.6850, 2.0381, 1.8814, 2.5437, 0.8875, 2.0080),
    ("dns2020/noisy/fileid_58.wav",
     1.0964, 1.9609, 1.2110, 1.3266, -3.6753, 0.7959, 0.0011),
    ("dns2020/mpsenet/fileid_170.wav",
     3.4368, 4.6668, 3.8074, 4.0784, 9.9282, 0.9814, 16.1932),
    ("dns2020/mpsenet/fileid_44.wav",
     4.0474, 5.0000, 4.5652, 4.6722, 16.7441, 0.9900, 23.3812),
    ("dns2020/mpsenet/fileid_58.wav",
     3.3247, 4.7230, 3.6609, 4.0435, 8.7251, 0.9665, 14.1239),
    ("crcnet/noisy/s1.wav",
     1.0827, 2.4783, 1.3206, 1.6505, -5.0662, 0.8116, -2.5741),
    ("crcnet/noisy/s2.wav",
     1.1620, 2.7847, 1.6573, 1.8821, -2.0430, 0.7835, 2.3854),
    ("crcnet/noisy/s3.wav",
     1.0510, 2.1395, 1.1103, 1.3771, -4.2498, 0.6652, -2.6864),
    ("crcnet/noisy/s4.wav",
     1.2622, 2.7154, 1.9321, 1.9554, -0.9638, 0.7609, 4.8770),
    ("crcnet/noisy/s5.wav",
     1.1999, 3.0399, 1.8977, 2.0890, -1.1944, 0.7921, -2.5624),
    ("crcnet/noisy/s6.wav",
     1.1934, 2.6865, 1.9372, 1.8486, 2.1787, 0.8821, 2.5157),
    ("crcnet/noisy/s7.wav",
     1.0719, 1.8230, 1.3824, 1.3151, -3.8331, 0.7722, -0.0696),
    ("crcnet/noisy/s8.wav",
     1.1427, 2.8594, 1.6736, 1.9253, -2.3336, 0.8739, 2.4961),
    ("crcnet/noisy/s9.wav",
     1.0548, 1.9000, 1.9253, 1.4400, 0.7178, 0.8309, 5.0096),
    ("crcnet/crcnet_enhanced/s1.wav",
     1.2744, 1.0000, 1.9999, 1.0000, 3.4084, 0.8551, 5.9280),
    ("crcnet/crcnet_enhanced/s2.wav",
     1.1377, 1.0000, 1.9738, 1.0000, 3.9676, 0.7355, 7.4202),
    ("crcnet/crcnet_enhanced/s3.wav",
     1.1164, 1.2807, 1.7685, 1.0273, 3.7424, 0.6852, 2.5119),
    ("crcnet/crcnet_enhanced/s4.wav",
     1.3310, 1.0000, 2.0186, 1.0000, 3.4571, 0.8098, 8.5767),
    ("crcnet/crcnet_enhanced/s5.wav",
     1.2202, 1.7683, 2.1952, 1.4223, 5.3194, 0.8058, 7.7985),
    ("crcnet/crcnet_enhanced/s6.wav",
     1.7006, 1.2078, 2.6915, 1.4300, 7.6121, 0.9231, 10.8706),
    ("crcnet/crcnet_enhanced/s7.wav",
     1.1987, 1.0000, 2.0164, 1.0000, 5.2603, 0.8792, 8.8828),
    ("crcnet/crcnet_enhanced/s8.wav",
     1.4323, 1.8499, 2.3552, 1.5473, 7.2546, 0.9244, 12.0802),
    ("crcnet/crcnet_enhanced/s9.wav",
     1.2609, 1.0000, 2.2276, 1.0000, 7.5843, 0.8814, 10.8218),
]
# fmt: on


def speech_like(seconds=3.0, seed=0):
    """Harmonic tone gliding around 140 Hz, cut into 3 Hz syllables.

    Arguments
    ---------
    seconds : float
        Duration.
    seed : int
        Seed of the random phases and of the faint background noise.

    Returns
    -------
    numpy.ndarray
        The signal at 16 kHz, peak about 0.3.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(pitch) / FS
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    syllables = np.sin(2 * np.pi * 3.3 * t + rng.uniform(0, 2 * np.pi))
    envelope = np.clip(syllables, 0, None) ** 2
    return 0.1 * envelope * voiced + 1e-4 * rng.standard_normal(t.size)


def add_noise(clean, snr_db, seed=1):
    """Adds white noise at a given SNR.

    Arguments
    ---------
    clean : numpy.ndarray
        Clean signal.
    snr_db : float
        Signal-to-noise ratio in dB.
    seed : int
        Seed of the noise.

    Returns
    -------
    numpy.ndarray
        The noisy signal.
    """
    noise = np.random.default_rng(seed).standard_normal(clean.size)
    gain = np.sqrt(np.sum(clean**2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return clean + gain * noise


@pytest.fixture(scope="module")
def clean():
    """Three seconds of synthetic speech-like audio."""
    return speech_like()


def test_identical_signals_get_best_scores(clean):
    scores = metrics.evaluate_pair(clean, clean, FS)
    assert scores["pesq"] == pytest.approx(4.64, abs=0.01)
    assert (scores["csig"], scores["cbak"], scores["covl"]) == (5.0, 5.0, 5.0)
    assert scores["ssnr"] == 35.0
    assert scores["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert 150 < scores["si_sdr"] < np.inf
    assert all(type(value) is float for value in scores.values())


def test_more_noise_gives_lower_scores(clean):
    rows = [
        metrics.evaluate_pair(clean, add_noise(clean, snr), FS)
        for snr in (30, 20, 10, 5)
    ]
    for name in METRICS:
        values = [row[name] for row in rows]
        assert values == sorted(values, reverse=True), name
        assert len(set(values)) == len(values), name


def test_si_sdr_of_orthogonal_noise_is_its_energy_ratio(clean):
    noise = np.random.default_rng(3).standard_normal(clean.size)
    noise -= noise.mean()
    centered = clean - clean.mean()
    noise -= (noise @ centered) / (centered @ centered) * centered
    noise *= np.sqrt((centered @ centered) / (noise @ noise) / 10)
    assert metrics.si_sdr(clean, clean + noise) == pytest.approx(10.0)


def test_si_sdr_ignores_gain_and_offset(clean):
    noisy = add_noise(clean, 5)
    expected = metrics.si_sdr(clean, noisy)
    assert metrics.si_sdr(clean, 3 * noisy + 0.2) == pytest.approx(expected)
    assert metrics.si_sdr(0.1 * clean, noisy) == pytest.approx(expected)


def test_composite_reuses_a_given_pesq(clean):
    noisy = add_noise(clean, 10)
    pesq = metrics.pesq_wb(clean, noisy, FS)
    scores = metrics.evaluate_pair(clean, noisy, FS)
    assert scores["pesq"] == pesq
    given = metrics.composite(clean, noisy, FS, pesq_score=pesq)
    assert given == metrics.composite(clean, noisy, FS)
    assert given == (scores["csig"], scores["cbak"], scores["covl"])
    assert scores["ssnr"] == metrics.ssnr(clean, noisy, FS)
    assert scores["stoi"] == metrics.stoi(clean, noisy, FS)


def test_wss_floor_only_bites_on_wrongly_scaled_input(clean):
    """The 1e-10 band-energy floor is inactive at [-1, 1] scale, so a gain
    leaves WSS alone; dividing by 32768 again (the bug of a popular port)
    pushes quiet bands onto the floor and changes it."""
    noisy = add_noise(clean, 10)
    expected = metrics.wss(clean, noisy, FS)
    assert metrics.wss(0.1 * clean, 0.1 * noisy, FS) == pytest.approx(expected)
    rescaled = metrics.wss(clean / 32768, noisy / 32768, FS)
    assert abs(rescaled - expected) > 1.0


def test_llr_and_wss_are_zero_for_identical_signals(clean):
    assert metrics.llr(clean, clean, FS) == 0.0
    assert metrics.wss(clean, clean, FS) == 0.0


def test_frame_count_follows_matlab():
    """floor(N / 120 - 480 / 120) frames: 600 samples give one, 599 none."""
    x = speech_like(seconds=1.0)[:600]
    assert metrics.ssnr(x, x, FS) == 35.0
    with pytest.raises(ValueError, match="too short"):
        metrics.ssnr(x[:599], x[:599], FS)


@pytest.mark.parametrize(
    "func", [metrics.pesq_wb, metrics.composite, metrics.evaluate_pair]
)
def test_pesq_based_metrics_need_16_khz(clean, func):
    with pytest.raises(ValueError, match="16000"):
        func(clean, clean, 8000)


@pytest.mark.parametrize(
    ("ref", "deg", "message"),
    [
        (np.zeros(100), np.zeros(99), "length mismatch"),
        (np.zeros(0), np.zeros(0), "empty"),
        (np.array([0.1, np.nan, 0.2]), np.zeros(3), "NaN"),
        (np.zeros(3), np.array([0.1, np.inf, 0.2]), "NaN"),
        (np.zeros((2, 100)), np.zeros((2, 100)), "1-D"),
        (np.zeros(100, dtype=np.int16), np.zeros(100), "float"),
    ],
)
@pytest.mark.parametrize(
    "func",
    [
        metrics.pesq_wb,
        metrics.stoi,
        metrics.ssnr,
        metrics.llr,
        metrics.wss,
        metrics.composite,
        metrics.evaluate_pair,
    ],
)
def test_bad_input_is_refused(func, ref, deg, message):
    with pytest.raises(ValueError, match=message):
        func(ref, deg, FS)


def test_si_sdr_refuses_bad_input(clean):
    with pytest.raises(ValueError, match="length mismatch"):
        metrics.si_sdr(clean, clean[:-1])
    with pytest.raises(ValueError, match="constant"):
        metrics.si_sdr(np.full(100, 0.3), np.ones(100))
    with pytest.raises(ValueError, match="constant"):
        metrics.si_sdr(clean, np.zeros(clean.size))


def test_pesq_errors_become_value_errors(clean):
    with pytest.raises(ValueError, match="all zeros"):
        metrics.pesq_wb(np.zeros(clean.size), clean, FS)
    with pytest.raises(ValueError, match="NoUtterancesError"):
        metrics.pesq_wb(clean[:4000], clean[:4000], FS)


def read_wav(path):
    """Reads a WAV file as float64 at [-1, 1] scale.

    Arguments
    ---------
    path : pathlib.Path
        The file.

    Returns
    -------
    numpy.ndarray
        The samples.
    """
    samples, rate = soundfile.read(path, dtype="float64")
    assert rate == FS
    return samples


@pytest.mark.skipif(
    not DEVDATA.is_dir(), reason=f"shared dev data not found at {DEVDATA}"
)
@pytest.mark.parametrize(
    ("deg_name", "expected"),
    [(row[0], row[1:]) for row in REFERENCE],
    ids=[row[0] for row in REFERENCE],
)
def test_devdata_matches_pysepm(deg_name, expected):
    corpus, _, name = deg_name.split("/")
    ref = read_wav(DEVDATA / corpus / "clean" / name)
    scores = metrics.evaluate_pair(ref, read_wav(DEVDATA / deg_name), FS)
    for metric, value in zip(METRICS, expected):
        assert scores[metric] == pytest.approx(value, abs=0.01), metric


@pytest.mark.parametrize(
    "func",
    [
        metrics.pesq_wb,
        metrics.stoi,
        metrics.ssnr,
        metrics.llr,
        metrics.wss,
        metrics.composite,
        metrics.evaluate_pair,
    ],
)
def test_silent_reference_is_refused_by_every_metric(clean, func):
    with pytest.raises(ValueError, match="undefined: ref is all zeros"):
        func(np.zeros(clean.size), clean, FS)


def test_si_sdr_refuses_a_silent_reference(clean):
    with pytest.raises(ValueError, match="undefined for a constant ref"):
        metrics.si_sdr(np.zeros(clean.size), clean)


@pytest.mark.parametrize("seconds", [100 / FS, 0.3, 0.409])
def test_stoi_of_too_short_signals_names_the_minimum(clean, seconds):
    x = clean[: int(seconds * FS)]
    with pytest.raises(ValueError, match=r"STOI needs at least 0\.41 s"):
        metrics.stoi(x, add_noise(x, 10.0), FS)


def test_stoi_minimum_length_is_exact():
    x = np.random.default_rng(0).normal(0, 0.1, 6554)  # 0.41 s, no silence
    assert metrics.stoi(x, add_noise(x, 10.0), FS) > 0.5
    with pytest.raises(ValueError, match="6554 samples at 16000 Hz"):
        metrics.stoi(x[:-1], add_noise(x[:-1], 10.0), FS)


def test_stoi_of_mostly_silent_reference_names_the_minimum(clean):
    x = np.zeros(FS)
    x[:4000] = clean[:4000]  # 0.25 s of speech in one second
    with pytest.raises(ValueError, match="within 40 dB of its loudest"):
        metrics.stoi(x, add_noise(x, 10.0), FS)


def test_evaluate_pair_on_short_speech_raises(clean):
    x = clean[: int(0.3 * FS)]  # long enough for PESQ, not for STOI
    with pytest.raises(ValueError, match=r"STOI needs at least 0\.41 s"):
        metrics.evaluate_pair(x, add_noise(x, 10.0), FS)


def test_pesq_of_too_short_signals_names_the_minimum(clean):
    with pytest.raises(ValueError, match=r"PESQ needs at least 0\.25 s"):
        metrics.pesq_wb(clean[:3999], clean[:3999], FS)
