"""Synthetic noisy/clean speech corpus laid out like VoiceBank+DEMAND.

The corpus lets the CMCR-Net recipe run end to end in a few minutes without
downloading anything. Every "utterance" is synthesised here: a harmonic
voice source with a per-speaker pitch range and a declining, wandering pitch
contour, shaped by time-varying formant resonances (vowel-like syllables
with syllable-rate amplitude envelopes), plus noise-excited fricatives and
short pauses. Each clean file has a noisy twin of identical length, mixed
with one of several synthetic noises at the VoiceBank SNRs (0/5/10/15 dB
for training, 2.5/7.5/12.5/17.5 dB for testing). The SNR is the energy
ratio of the clean signal and the added noise over the whole file.

Layout (as the official corpus, file names ``<speaker>_<utterance>.wav``)::

    FOLDER/clean_trainset_28spk_wav/p226_001.wav ...
    FOLDER/noisy_trainset_28spk_wav/p226_001.wav ...
    FOLDER/clean_testset_wav/p232_001.wav ...
    FOLDER/noisy_testset_wav/p232_001.wav ...
    FOLDER/demo_corpus.json   (options, and the SNR and noise of each file)

Training speakers are ``TRAIN_SPEAKERS`` (p226 and p287 are the two that
SpeechBrain's VoiceBank recipes hold out for validation), test speakers are
p232 and p257, as in VoiceBank.

Command line::

    python -m speechbrain_cmcr.dataio.demo_corpus FOLDER [--n-train 48]

Authors
 * CMCR-Net SpeechBrain port contributors
"""

import argparse
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from speechbrain.dataio.dataio import write_audio
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

logger = get_logger(__name__)

TRAIN_SPEAKERS = ("p226", "p287", "p227", "p228", "p230", "p231")
TEST_SPEAKERS = ("p232", "p257")
FEMALE_SPEAKERS = ("p228", "p230", "p231", "p257")  # as in VoiceBank
TRAIN_SNRS = (0.0, 5.0, 10.0, 15.0)
TEST_SNRS = (2.5, 7.5, 12.5, 17.5)
NOISE_TYPES = (
    "white",
    "pink",
    "brown",
    "babble",
    "hum",
    "modulated",
    "intermittent",
)
SPLITS = {
    "train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
    "test": ("clean_testset_wav", "noisy_testset_wav"),
}
MARKER_FILE = "demo_corpus.json"
FORMAT_VERSION = 1

CLEAN_PEAK = 0.5  # VoiceBank files peak around half of full scale
MAX_PEAK = 0.99  # noisy mixtures louder than this are scaled down
# Median pitch range (Hz) and formant scale range, keyed by "is female".
VOICE_RANGES = {
    False: ((100, 135), (0.95, 1.03)),
    True: ((190, 230), (1.12, 1.2)),
}
FRAME_HOP = 0.005  # seconds between control points of pitch and formants
# (F1, F2, F3, F4) in Hz for an adult male vocal tract.
VOWELS = np.array(
    [
        [730, 1090, 2440, 3400],  # a
        [530, 1840, 2480, 3500],  # e
        [270, 2290, 3010, 3700],  # i
        [570, 840, 2410, 3300],  # o
        [300, 870, 2240, 3300],  # u
        [660, 1720, 2410, 3400],  # ae
        [490, 1350, 1690, 3300],  # er
    ],
    dtype=float,
)
FORMANT_BANDWIDTHS = np.array([70.0, 100.0, 140.0, 220.0])
# (centre, bandwidth) in Hz of the noise band of s, sh, f and h.
FRICATIVES = (
    (6000.0, 1200.0),
    (3000.0, 700.0),
    (5500.0, 2500.0),
    (1500.0, 1000.0),
)


@dataclass(frozen=True)
class Speaker:
    """Voice parameters of one synthetic speaker.

    Arguments
    ---------
    f0_low : float
        Lowest pitch in Hz.
    f0_high : float
        Highest pitch in Hz.
    formant_scale : float
        Formant frequency factor (shorter vocal tract: higher).
    syllable_rate : float
        Speaking rate in syllables per second.
    """

    f0_low: float
    f0_high: float
    formant_scale: float
    syllable_rate: float


@dataclass(frozen=True)
class Utterance:
    """Recipe of one clean/noisy pair.

    Arguments
    ---------
    utt_id : str
        VoiceBank-style name, e.g. ``p226_001``.
    split : str
        ``"train"`` or ``"test"``.
    snr_db : float
        Signal-to-noise ratio of the noisy twin.
    noise : str
        One of ``NOISE_TYPES``.
    seed : tuple
        Seed sequence of this utterance's random generator.
    """

    utt_id: str
    split: str
    snr_db: float
    noise: str
    seed: tuple


def make_speaker(rng, female):
    """Draws a speaker: pitch range, vocal tract length and speaking rate.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random generator.
    female : bool
        Whether to draw a female (higher pitch, shorter tract) voice.

    Returns
    -------
    Speaker

    Example
    -------
    >>> spk = make_speaker(np.random.default_rng(0), female=True)
    >>> 150 < spk.f0_low < spk.f0_high < 300
    True
    """
    (f0_low, f0_high), (scale_low, scale_high) = VOICE_RANGES[female]
    f0_center = rng.uniform(f0_low, f0_high)
    return Speaker(
        f0_low=f0_center * rng.uniform(0.75, 0.85),
        f0_high=f0_center * rng.uniform(1.2, 1.35),
        formant_scale=rng.uniform(scale_low, scale_high),
        syllable_rate=rng.uniform(3.5, 5.5),
    )


def corpus_speaker(name, seed):
    """Returns the fixed voice of a corpus speaker such as ``p226``.

    Arguments
    ---------
    name : str
        Speaker name, ``p`` followed by a number.
    seed : int
        Corpus seed.

    Returns
    -------
    Speaker

    Example
    -------
    >>> corpus_speaker("p226", 1) == corpus_speaker("p226", 1)
    True
    >>> corpus_speaker("p226", 1) == corpus_speaker("p287", 1)
    False
    """
    rng = np.random.default_rng([seed, int(name[1:])])
    return make_speaker(rng, female=name in FEMALE_SPEAKERS)


def _smooth(x, width):
    """Moving average of ``x`` with a Hann window of ``width`` samples."""
    window = np.hanning(width + 2)[1:-1]
    return np.convolve(x, window / window.sum(), mode="same")


def _plan_syllables(speaker, duration, rng):
    """Lays out vowels, fricatives and pauses over ``duration`` seconds.

    Returns a list of ``(kind, start, end, label, gain)`` tuples where kind
    is ``"vowel"`` (label: row of ``VOWELS``) or ``"fricative"`` (label:
    index in ``FRICATIVES``), times in seconds.
    """
    t = rng.uniform(0.08, 0.2)
    end = duration - rng.uniform(0.08, 0.2)
    mean_length = 1.0 / speaker.syllable_rate
    events = []
    while t + 0.1 < end:
        if events and rng.random() < 0.15:
            t += rng.uniform(0.06, 0.2)  # pause between "words"
        if rng.random() < 0.35:
            length = rng.uniform(0.05, 0.11)
            label = int(rng.integers(len(FRICATIVES)))
            events.append(
                ("fricative", t, t + length, label, rng.uniform(0.5, 1))
            )
            t += length
        length = min(mean_length * rng.uniform(0.6, 1.3), end - t)
        label = int(rng.integers(len(VOWELS)))
        events.append(("vowel", t, t + length, label, rng.uniform(0.45, 1)))
        t += length + rng.uniform(-0.02, 0.03)
    return [e for e in events if e[2] - e[1] > 0.03]


def _envelope(windows, n, sample_rate, ramp=0.025):
    """Sum of raised-cosine-edged ``(start, end, gain)`` windows (seconds)."""
    env = np.zeros(n)
    for start, end, gain in windows:
        a, b = int(start * sample_rate), min(int(end * sample_rate), n)
        edge = min(int(ramp * sample_rate), (b - a) // 2)
        window = np.ones(b - a)
        taper = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / max(edge, 1))
        window[:edge], window[b - a - edge :] = taper, taper[::-1]
        env[a:b] += gain * window
    return env


def _windows(events, kind):
    """``(start, end, gain)`` of the events of one kind."""
    return [(e[1], e[2], e[4]) for e in events if e[0] == kind]


def _pitch_contour(speaker, n_frames, rng):
    """Declining pitch with a slow random wander, in Hz per control frame."""
    start = rng.uniform(0.55, 0.9)
    line = np.linspace(start, start - rng.uniform(0.25, 0.5), n_frames)
    wander = _smooth(rng.standard_normal(n_frames + 80), 40)[40:-40]
    wander *= 0.15 / (wander.std() + 1e-9)
    position = np.clip(line + wander, 0.0, 1.0)
    return speaker.f0_low * (speaker.f0_high / speaker.f0_low) ** position


def _formant_tracks(events, speaker, frame_times):
    """Formant frequencies gliding between vowel targets, per frame."""
    vowels = [e for e in events if e[0] == "vowel"]
    centers = [(e[1] + e[2]) / 2 for e in vowels]
    targets = VOWELS[[e[3] for e in vowels]] * speaker.formant_scale
    return np.stack(
        [np.interp(frame_times, centers, targets[:, i]) for i in range(4)],
        axis=1,
    )


def _formant_gain(freqs, formants):
    """Magnitude response of cascaded formant resonators (1 at 0 Hz)."""
    gain = np.ones_like(freqs)
    for i, bandwidth in enumerate(FORMANT_BANDWIDTHS):
        ratio = freqs / formants[:, i : i + 1]
        damping = freqs * bandwidth / formants[:, i : i + 1] ** 2
        gain /= np.sqrt((1 - ratio**2) ** 2 + damping**2)
    return gain


def _voiced(events, speaker, n, sample_rate, rng):
    """Harmonic voice through time-varying formants, normalised to peak 1."""
    frame_times = np.arange(0, n / sample_rate + FRAME_HOP, FRAME_HOP)
    sample_times = np.arange(n) / sample_rate
    f0 = _pitch_contour(speaker, len(frame_times), rng)
    formants = _formant_tracks(events, speaker, frame_times)
    n_harmonics = int(0.45 * sample_rate / f0.min())
    harmonics = np.arange(1, n_harmonics + 1)
    freqs = f0[:, None] * harmonics[None, :]
    amps = _formant_gain(freqs, formants) / harmonics
    amps[freqs > 0.45 * sample_rate] = 0.0
    phase = 2 * np.pi * np.cumsum(np.interp(sample_times, frame_times, f0))
    phase /= sample_rate
    voice = np.zeros(n)
    for k in harmonics:
        amp = np.interp(sample_times, frame_times, amps[:, k - 1])
        voice += amp * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    voice *= _envelope(_windows(events, "vowel"), n, sample_rate)
    return voice / (np.abs(voice).max() + 1e-9)


def _band_noise(n, sample_rate, center, bandwidth, rng):
    """White noise filtered by a Gaussian band, normalised to unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    center = min(center, 0.4 * sample_rate)
    noise = np.fft.irfft(
        spectrum * np.exp(-0.5 * ((freqs - center) / bandwidth) ** 2), n
    )
    return noise / (noise.std() + 1e-9)


def _fricatives(events, n, sample_rate, rng):
    """Noise-excited fricative segments (unit-RMS bands times envelopes)."""
    out = np.zeros(n)
    for kind, start, end, label, _ in events:
        if kind == "fricative":
            env = _envelope([(start, end, 1.0)], n, sample_rate)
            out += env * _band_noise(n, sample_rate, *FRICATIVES[label], rng)
    return out


def synthesize_speech(speaker, n, sample_rate, rng):
    """Synthesises ``n`` samples of speech-like signal, peak normalised to 1.

    Arguments
    ---------
    speaker : Speaker
        Voice parameters.
    n : int
        Number of samples.
    sample_rate : int
        Sampling rate in Hz.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        Signal of shape ``(n,)``, silent at both ends.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = synthesize_speech(corpus_speaker("p226", 0), 16000, 16000, rng)
    >>> x.shape, float(np.abs(x).max())
    ((16000,), 1.0)
    """
    events = _plan_syllables(speaker, n / sample_rate, rng)
    voice = _voiced(events, speaker, n, sample_rate, rng)
    gain = rng.uniform(0.08, 0.15)
    speech = voice + gain * _fricatives(events, n, sample_rate, rng)
    return speech / np.abs(speech).max()


def _colored_noise(n, sample_rate, exponent, rng):
    """Noise with a ``1 / f**exponent`` power spectrum above 20 Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    weights = np.where(
        freqs < 20, 0.0, np.maximum(freqs, 20) ** (-exponent / 2)
    )
    return np.fft.irfft(spectrum * weights, n)


def _babble(n, sample_rate, rng):
    """Sum of three to five unit-RMS synthetic voices."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(3, 6))):
        voice = synthesize_speech(
            make_speaker(rng, rng.random() < 0.5), n, sample_rate, rng
        )
        out += voice / (voice.std() + 1e-9)
    return out


def _hum(n, sample_rate, rng):
    """Mains hum (50 or 60 Hz) with decaying harmonics and a hiss floor."""
    t = np.arange(n) / sample_rate
    mains = rng.choice([50.0, 60.0])
    decay = rng.uniform(0.5, 1.5)
    out = 0.01 * rng.standard_normal(n)
    for h in range(1, 9):
        out += (
            np.sin(2 * np.pi * h * mains * t + rng.uniform(0, 2 * np.pi))
            / h**decay
        )
    return out


def _modulated(n, sample_rate, rng):
    """Pink noise with a slow sinusoidal amplitude modulation."""
    t = np.arange(n) / sample_rate
    depth = rng.uniform(0.5, 0.9)
    rate = rng.uniform(0.3, 4.0)
    gain = 1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    return gain * _colored_noise(n, sample_rate, 1.0, rng)


def _intermittent(n, sample_rate, rng):
    """White noise bursts of 0.1 to 0.5 s over a quiet floor."""
    gate = np.full(n, 0.05)
    t = rng.uniform(0, 0.3 * n / sample_rate)
    while t < n / sample_rate:
        length = rng.uniform(0.1, 0.5)
        gate += _envelope([(t, t + length, 1.0)], n, sample_rate)
        t += length + rng.uniform(0.1, 0.6)
    return gate * rng.standard_normal(n)


def synthesize_noise(kind, n, sample_rate, rng):
    """Synthesises ``n`` samples of one noise type (arbitrary scale).

    Arguments
    ---------
    kind : str
        One of ``NOISE_TYPES``.
    n : int
        Number of samples.
    sample_rate : int
        Sampling rate in Hz.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        Noise of shape ``(n,)``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> [synthesize_noise(k, 800, 16000, rng).shape for k in ("pink", "hum")]
    [(800,), (800,)]
    """
    generators = {
        "white": lambda: rng.standard_normal(n),
        "pink": lambda: _colored_noise(n, sample_rate, 1.0, rng),
        "brown": lambda: _colored_noise(n, sample_rate, 2.0, rng),
        "babble": lambda: _babble(n, sample_rate, rng),
        "hum": lambda: _hum(n, sample_rate, rng),
        "modulated": lambda: _modulated(n, sample_rate, rng),
        "intermittent": lambda: _intermittent(n, sample_rate, rng),
    }
    return generators[kind]()


def mix_at_snr(clean, noise, snr_db):
    """Adds ``noise`` to ``clean`` scaled to the given whole-file SNR.

    Arguments
    ---------
    clean : numpy.ndarray
        Clean signal.
    noise : numpy.ndarray
        Noise of the same shape.
    snr_db : float
        Target ``10 * log10(sum(clean**2) / sum(scaled_noise**2))``.

    Returns
    -------
    numpy.ndarray
        The noisy mixture.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> clean, noise = rng.standard_normal((2, 1000))
    >>> noisy = mix_at_snr(clean, noise, 5.0)
    >>> round(float(snr_db(clean, noisy)), 6)
    5.0
    """
    scale = np.sqrt(np.sum(clean**2) / (np.sum(noise**2) * 10 ** (snr_db / 10)))
    return clean + scale * noise


def snr_db(clean, noisy):
    """Whole-file SNR in dB of ``noisy`` with respect to ``clean``.

    Arguments
    ---------
    clean : numpy.ndarray or torch.Tensor
        Clean signal.
    noisy : numpy.ndarray or torch.Tensor
        Noisy twin of the same length.

    Returns
    -------
    float

    Example
    -------
    >>> round(snr_db(np.ones(4), np.full(4, 1.1)), 1)
    20.0
    """
    clean, noisy = np.asarray(clean, float), np.asarray(noisy, float)
    return float(10 * np.log10(np.sum(clean**2) / np.sum((noisy - clean) ** 2)))


def plan_split(split, n_utterances, seed):
    """Assigns speakers, file names, SNRs and noise types of one split.

    Speakers take turns; the split's four SNRs and the ``NOISE_TYPES`` are
    used equally often (up to one), in a seeded random order.

    Arguments
    ---------
    split : str
        ``"train"`` or ``"test"``.
    n_utterances : int
        Number of utterances, at least the number of the split's speakers.
    seed : int
        Corpus seed.

    Returns
    -------
    list of Utterance

    Example
    -------
    >>> plan = plan_split("test", 4, seed=0)
    >>> [u.utt_id for u in plan]
    ['p232_001', 'p257_001', 'p232_002', 'p257_002']
    >>> sorted(u.snr_db for u in plan)
    [2.5, 7.5, 12.5, 17.5]
    """
    speakers = TRAIN_SPEAKERS if split == "train" else TEST_SPEAKERS
    if n_utterances < len(speakers):
        raise ValueError(
            f"{split} needs at least {len(speakers)} utterances "
            f"(one per speaker {speakers}), got {n_utterances}"
        )
    snrs = TRAIN_SNRS if split == "train" else TEST_SNRS
    split_id = list(SPLITS).index(split)
    rng = np.random.default_rng([seed, split_id])
    snr_ids = rng.permutation(np.resize(np.arange(len(snrs)), n_utterances))
    noise_ids = rng.permutation(
        np.resize(np.arange(len(NOISE_TYPES)), n_utterances)
    )
    n_spk = len(speakers)
    return [
        Utterance(
            utt_id=f"{speakers[i % n_spk]}_{i // n_spk + 1:03d}",
            split=split,
            snr_db=snrs[snr_ids[i]],
            noise=NOISE_TYPES[noise_ids[i]],
            seed=(seed, split_id, i),
        )
        for i in range(n_utterances)
    ]


def render_pair(utterance, corpus_seed, sample_rate):
    """Synthesises the clean signal and its noisy twin for one utterance.

    Arguments
    ---------
    utterance : Utterance
        What to render.
    corpus_seed : int
        Corpus seed (selects the speakers' voices).
    sample_rate : int
        Sampling rate in Hz.

    Returns
    -------
    clean : numpy.ndarray
        Clean speech peaking at ``CLEAN_PEAK`` (less if the noisy twin
        had to be scaled down to fit under ``MAX_PEAK``).
    noisy : numpy.ndarray
        Noisy twin, same length, at ``utterance.snr_db``.

    Example
    -------
    >>> utt = plan_split("test", 2, seed=0)[0]
    >>> clean, noisy = render_pair(utt, 0, 16000)
    >>> clean.shape == noisy.shape
    True
    >>> abs(snr_db(clean, noisy) - utt.snr_db) < 1e-6
    True
    """
    rng = np.random.default_rng(list(utterance.seed))
    speaker = corpus_speaker(utterance.utt_id.split("_")[0], corpus_seed)
    n = int(rng.uniform(1.5, 3.0) * sample_rate)
    clean = CLEAN_PEAK * synthesize_speech(speaker, n, sample_rate, rng)
    noise = synthesize_noise(utterance.noise, n, sample_rate, rng)
    noisy = mix_at_snr(clean, noise, utterance.snr_db)
    headroom = min(1.0, MAX_PEAK / np.abs(noisy).max())
    return headroom * clean, headroom * noisy


def _options(n_train, n_test, sample_rate, seed):
    """Options that define a corpus, as stored in the marker file."""
    return {
        "version": FORMAT_VERSION,
        "n_train": n_train,
        "n_test": n_test,
        "sample_rate": sample_rate,
        "seed": seed,
    }


def _wav_paths(folder, utterance):
    """Clean and noisy file paths of one utterance."""
    clean_dir, noisy_dir = SPLITS[utterance.split]
    name = utterance.utt_id + ".wav"
    return os.path.join(folder, clean_dir, name), os.path.join(
        folder, noisy_dir, name
    )


def _read_marker(folder):
    """Contents of the marker file, or None if there is none."""
    path = os.path.join(folder, MARKER_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _is_complete(folder, options, plan):
    """Whether ``folder`` holds the full corpus generated with ``options``."""
    marker = _read_marker(folder)
    if marker is None or marker["options"] != options:
        return False
    return all(os.path.isfile(p) for u in plan for p in _wav_paths(folder, u))


def _clear_previous(folder):
    """Removes a previous demo corpus; refuses to touch any other data."""
    existing = [
        os.path.join(folder, d)
        for d in sum(SPLITS.values(), ())
        if os.path.isdir(os.path.join(folder, d))
    ]
    if not existing:
        return
    if _read_marker(folder) is None:
        raise FileExistsError(
            f"{folder} already has {existing} but no {MARKER_FILE}: it does "
            "not look like a demo corpus, refusing to overwrite it"
        )
    for directory in existing:
        for name in os.listdir(directory):
            if name.endswith(".wav"):
                os.remove(os.path.join(directory, name))
    os.remove(os.path.join(folder, MARKER_FILE))


def _write_pair(folder, utterance, seed, sample_rate):
    """Renders one utterance and writes both wav files (16-bit PCM)."""
    clean, noisy = render_pair(utterance, seed, sample_rate)
    for path, signal in zip(_wav_paths(folder, utterance), (clean, noisy)):
        write_audio(
            path, torch.from_numpy(signal.astype(np.float32)), sample_rate
        )


def make_demo_corpus(
    folder, n_train=48, n_test=12, sample_rate=16000, seed=1234
):
    """Generates the demo corpus in ``folder`` unless it is already there.

    Generation is skipped when ``folder`` already holds a complete corpus
    made with the same options; a demo corpus made with other options is
    replaced. The output is deterministic given the options.

    Arguments
    ---------
    folder : str
        Output folder (created if needed), usable as the recipe's
        ``data_folder``.
    n_train : int
        Number of training utterances, spread over ``TRAIN_SPEAKERS``.
    n_test : int
        Number of test utterances, spread over ``TEST_SPEAKERS``.
    sample_rate : int
        Sampling rate in Hz.
    seed : int
        Random seed.

    Returns
    -------
    str
        ``folder``.

    Example
    -------
    >>> folder = str(getfixture("tmpdir") / "demo")
    >>> _ = make_demo_corpus(folder, n_train=6, n_test=2)
    >>> sorted(os.listdir(os.path.join(folder, "noisy_testset_wav")))
    ['p232_001.wav', 'p257_001.wav']
    """
    options = _options(n_train, n_test, sample_rate, seed)
    plan = plan_split("train", n_train, seed) + plan_split("test", n_test, seed)
    if _is_complete(folder, options, plan):
        logger.info(f"Demo corpus already in {folder}, skipping generation")
        return folder
    _clear_previous(folder)
    for directory in sum(SPLITS.values(), ()):
        os.makedirs(os.path.join(folder, directory), exist_ok=True)
    for utterance in tqdm(plan, desc="Synthesising demo corpus"):
        _write_pair(folder, utterance, seed, sample_rate)
    marker = {
        "options": options,
        "utterances": {
            u.utt_id: {"snr_db": u.snr_db, "noise": u.noise} for u in plan
        },
    }
    with open(os.path.join(folder, MARKER_FILE), "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=2)
    return folder


def main(argv=None):
    """Command-line entry: ``python -m speechbrain_cmcr.dataio.demo_corpus``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Example
    -------
    >>> folder = str(getfixture("tmpdir") / "demo_cli")
    >>> main([folder, "--n-train", "6", "--n-test", "2"])
    >>> len(os.listdir(os.path.join(folder, "clean_trainset_28spk_wav")))
    6
    """
    parser = argparse.ArgumentParser(
        description="Synthesise a small noisy/clean speech corpus laid out "
        "like VoiceBank+DEMAND (no download needed)."
    )
    parser.add_argument("folder", help="output folder")
    parser.add_argument(
        "--n-train",
        type=int,
        default=48,
        help="training utterances (default: 48)",
    )
    parser.add_argument(
        "--n-test", type=int, default=12, help="test utterances (default: 12)"
    )
    parser.add_argument(
        "--sample-rate", type=int, default=16000, help="Hz (default: 16000)"
    )
    parser.add_argument(
        "--seed", type=int, default=1234, help="random seed (default: 1234)"
    )
    args = parser.parse_args(argv)
    make_demo_corpus(
        args.folder, args.n_train, args.n_test, args.sample_rate, args.seed
    )


if __name__ == "__main__":
    main()
