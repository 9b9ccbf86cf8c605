"""Training data mixed on the fly from clean speech and noise (DNS style).

Two parts:

``prepare_dynamic_mixing`` (run once, on the main process) checks the
sources, holds out speakers for validation and test, cuts every noise file
into a training part (its first ``1 - heldout_noise_fraction``) and a
held-out part (the rest), and writes into ``save_folder``::

    train.json          {utt_id: {"clean_wav", "length", "speaker"}}
    noise_train.csv     training noise parts, SpeechBrain AddNoise CSV
    noise_heldout.csv   held-out noise parts, same format
    rir.csv             room impulse responses for AddReverb (optional)
    valid.json          fixed mixtures of the validation speakers
    test.json           fixed mixtures of the test speakers
    dynamic_mixing.json the options the files were made with
    dynamic_mixing_audio/{noise_train,noise_heldout,valid,test}/...

``valid.json`` and ``test.json`` have the VoiceBank manifest format
(``noisy_wav``, ``clean_wav``, ``length`` in seconds) plus ``speaker``,
``snr_db`` and ``level_db`` (measured on the mixture). Their wavs are
generated once, from the seed, with ``DynamicMixer`` and the held-out
noise, so that metrics compare across epochs and runs.

``DynamicMixer`` (used in the training data pipeline, also in DataLoader
worker processes) turns one clean utterance into a random ``(noisy, clean)``
training pair: random crop, optional reverberation, level normalisation,
noise at a random SNR, and a peak limit.

The CSV files follow SpeechBrain's extended CSV format that ``AddNoise`` and
``AddReverb`` read (``speechbrain.dataio.legacy.ExtendedCSVDataset``)::

    ID,duration,wav,wav_format,wav_opts
    cafe,12.5,/abs/path/cafe.wav,wav,

``wav_opts`` is ignored by that reader for audio (whole files are loaded),
which is why the noise parts are cut into their own files. AddNoise draws
noise files uniformly (one shuffled pass over the files after another),
whatever their durations.

Use in a recipe (train set from ``train.json``; valid and test sets from
``valid.json`` and ``test.json`` with the usual noisy/clean pipeline)::

    mixer = DynamicMixer(
        os.path.join(save_folder, "noise_train.csv"), crop_samples=64000
    )

    @sb.utils.data_pipeline.takes("clean_wav")
    @sb.utils.data_pipeline.provides("noisy_sig", "clean_sig")
    def mixing_pipeline(clean_wav):
        noisy, clean = mixer(sb.dataio.dataio.read_audio(clean_wav))
        yield noisy
        yield clean

Authors
 * CMCR-Net SpeechBrain port contributors
"""

import collections
import copy
import csv
import functools
import json
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch
from speechbrain.augment.time_domain import AddNoise, AddReverb
from speechbrain.dataio.dataio import read_audio, read_audio_info, write_audio
from speechbrain.utils.logger import get_logger
from speechbrain.utils.parallel import get_available_cpu_count, parallel_map
from tqdm import tqdm

from speechbrain_cmcr.augment.spectral_tilt import colored_noise, spectral_tilt

logger = get_logger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac")
PATH_COLUMNS = ("wav", "path")
CSV_HEADER = ("ID", "duration", "wav", "wav_format", "wav_opts")
OPTIONS_FILE = "dynamic_mixing.json"
AUDIO_FOLDER = "dynamic_mixing_audio"
NOISE_PARTS = ("noise_train", "noise_heldout")
SPLITS = ("valid", "test")
FORMAT_VERSION = 1
MAX_REPORTED = 10
PCM16_MAX = 32767 / 32768
# Built by AddNoise / AddReverb on their first call; cannot be pickled.
LAZY_ATTRIBUTES = ("data_loader", "noise_data", "rir_data")


@dataclass(frozen=True)
class AudioFile:
    """One source file.

    Arguments
    ---------
    path : str
        Absolute path.
    speaker : str
        Speaker label (the parent folder name unless a CSV gives one).
    """

    path: str
    speaker: str


@dataclass(frozen=True)
class MixtureJob:
    """What ``make_mixture`` needs to write one fixed mixture.

    Arguments
    ---------
    utt_id : str
        Identifier of the mixture.
    source : AudioFile
        Clean utterance.
    folder : str
        Folder receiving ``noisy/<utt_id>.wav`` and ``clean/<utt_id>.wav``.
    seed : int
        Seed of the random draws of this mixture.
    """

    utt_id: str
    source: AudioFile
    folder: str
    seed: int


def rms_db(signal):
    """Root-mean-square level of a signal in dB relative to full scale.

    Arguments
    ---------
    signal : torch.Tensor
        Waveform, any shape.

    Returns
    -------
    float

    Example
    -------
    >>> round(rms_db(torch.full((100,), 0.1)), 1)
    -20.0
    """
    power = signal.double().pow(2).mean().clamp(min=1e-20)
    return 10.0 * torch.log10(power).item()


def snr_db(noisy, clean):
    """Signal-to-noise ratio of a mixture in dB, the noise being
    ``noisy - clean``, over the whole signal.

    Arguments
    ---------
    noisy : torch.Tensor
        Mixture.
    clean : torch.Tensor
        Speech it contains, same shape.

    Returns
    -------
    float

    Example
    -------
    >>> clean = torch.ones(10)
    >>> round(snr_db(clean + 0.1, clean), 1)
    20.0
    """
    return rms_db(clean) - rms_db(noisy - clean)


def _uniform(low, high):
    """A float drawn uniformly in [low, high] with torch's generator."""
    return low + (high - low) * torch.rand(()).item()


def _happens(probability):
    """True with ``probability``; draws nothing when it is 0."""
    return probability > 0 and torch.rand(()).item() < probability


def _drop_loader(module):
    """Removes the data loader an AddNoise / AddReverb built."""
    for name in LAZY_ATTRIBUTES:
        module.__dict__.pop(name, None)
    return module


class DynamicMixer(torch.nn.Module):
    """Makes a random ``(noisy, clean)`` training pair from clean speech.

    Steps, each drawn anew per call with torch's global generator (which
    SpeechBrain seeds, and DataLoader seeds per worker):

    1. random crop of ``crop_samples`` (whole signal if shorter, or if
       ``crop_samples`` is None);
    2. with probability ``reverb_prob``, reverberation with a random room
       impulse response through SpeechBrain's ``AddReverb``. The target is
       then the reverberant speech: this trains denoising of reverberant
       speech, not dereverberation;
    3. level normalisation: the speech is scaled to an RMS level drawn
       uniformly in [``level_low_db``, ``level_high_db``] dB full scale
       (over the whole crop, pauses included). VoiceBank's clean files
       peak near 0.5 and sit around -23 to -27 dBFS RMS, inside the
       default range;
    4. noise from ``noise_csv`` through SpeechBrain's ``AddNoise``: a random
       file (shuffled), a random offset, looped when shorter than the speech
       (``pad_noise=True``), scaled so that the speech-to-noise RMS ratio is
       an SNR drawn uniformly in [``snr_low``, ``snr_high``] dB, whatever the
       noise file's own level. AddNoise also scales the speech down by
       ``1 - 1 / (10 ** (snr / 20) + 1)``; that factor is undone on the
       mixture, so the target keeps the level of step 3;
    5. with probability ``noise_tilt_prob``, the noise's spectrum is tilted
       by a slope drawn in [``noise_tilt_low_db``, ``noise_tilt_high_db``]
       dB per octave, its level kept (``spectral_tilt``): positive slopes
       make noise that leans toward low-frequency ambience teach the high
       band, negative ones make noise lean that way (as DEMAND's does);
    6. with probability ``colored_noise_prob``, Gaussian noise with a slope
       drawn in [``colored_slope_low_db``, ``colored_slope_high_db``] dB
       per octave is added too, at its own SNR drawn like the first
       (broadband hiss, fans, DEMAND-like rooms);
    7. one gain on both signals so that neither peaks above ``max_peak``
       (this may bring the level below ``level_low_db``).

    Steps 5 and 6 are off by default (and then draw no random numbers, so
    the fixed validation and test mixtures do not depend on them).

    A crop that is digitally silent stays silent, and noise-free.

    ``AddNoise`` and ``AddReverb`` build their data loaders lazily, on the
    first call. Pickling drops them, and so does a call in another process
    than the one that built them, so the mixer can be handed to DataLoader
    worker processes (fork or spawn) even after being used: each worker
    builds its own, with its own random noise order (in-process, no extra
    workers).

    Arguments
    ---------
    noise_csv : str
        AddNoise CSV of the noise files (``noise_train.csv`` written by
        ``prepare_dynamic_mixing``), at ``sample_rate``.
    snr_low : float
        Lowest SNR in dB.
    snr_high : float
        Highest SNR in dB.
    crop_samples : int, optional
        Length of the random crop; None keeps the whole signal.
    level_low_db : float
        Lowest RMS level of the clean speech, dB full scale.
    level_high_db : float
        Highest RMS level of the clean speech, dB full scale.
    rir_csv : str, optional
        AddReverb CSV of room impulse responses (``rir.csv``).
    reverb_prob : float
        Probability of reverberating an example (needs ``rir_csv``).
    sample_rate : int
        Sampling rate of the speech, the noise and the impulse responses.
    max_peak : float
        Largest absolute sample value of both outputs.
    noise_tilt_prob : float
        Probability of tilting the noise's spectrum.
    noise_tilt_low_db : float
        Lowest tilt, dB per octave (negative: toward low frequencies).
    noise_tilt_high_db : float
        Highest tilt, dB per octave.
    colored_noise_prob : float
        Probability of adding coloured Gaussian noise.
    colored_slope_low_db : float
        Lowest slope of that noise, dB per octave (-6: brown).
    colored_slope_high_db : float
        Highest slope, dB per octave (0: white).

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> write_audio(str(tmp / "hum.wav"), 0.01 * torch.randn(8000), 16000)
    >>> write_audio_csv(str(tmp / "noise.csv"), [("hum", str(tmp / "hum.wav"))])
    >>> mixer = DynamicMixer(str(tmp / "noise.csv"), crop_samples=16000)
    >>> noisy, clean = mixer(0.1 * torch.randn(20000))
    >>> noisy.shape, clean.shape
    (torch.Size([16000]), torch.Size([16000]))
    >>> 0.0 <= snr_db(noisy, clean) <= 15.0
    True
    """

    def __init__(
        self,
        noise_csv,
        snr_low=0.0,
        snr_high=15.0,
        crop_samples=64000,
        level_low_db=-35.0,
        level_high_db=-15.0,
        rir_csv=None,
        reverb_prob=0.0,
        sample_rate=16000,
        max_peak=0.99,
        noise_tilt_prob=0.0,
        noise_tilt_low_db=-6.0,
        noise_tilt_high_db=6.0,
        colored_noise_prob=0.0,
        colored_slope_low_db=-6.0,
        colored_slope_high_db=0.0,
    ):
        super().__init__()
        if reverb_prob > 0 and rir_csv is None:
            raise ValueError("reverb_prob > 0 needs a rir_csv")
        self.snr_low = snr_low
        self.snr_high = snr_high
        self.crop_samples = crop_samples
        self.level_low_db = level_low_db
        self.level_high_db = level_high_db
        self.reverb_prob = reverb_prob
        self.max_peak = max_peak
        self.sample_rate = sample_rate
        self.noise_tilt_prob = noise_tilt_prob
        self.noise_tilt_low_db = noise_tilt_low_db
        self.noise_tilt_high_db = noise_tilt_high_db
        self.colored_noise_prob = colored_noise_prob
        self.colored_slope_low_db = colored_slope_low_db
        self.colored_slope_high_db = colored_slope_high_db
        self.owner_pid = os.getpid()
        self.add_noise = AddNoise(
            csv_file=noise_csv,
            sorting="random",
            pad_noise=True,
            noise_sample_rate=sample_rate,
            clean_sample_rate=sample_rate,
        )
        self.add_reverb = (
            AddReverb(
                rir_csv,
                sorting="random",
                reverb_sample_rate=sample_rate,
                clean_sample_rate=sample_rate,
            )
            if rir_csv is not None
            else None
        )

    def forward(self, clean):
        """Mixes one clean waveform with noise.

        Arguments
        ---------
        clean : torch.Tensor
            Clean speech, shape ``[L]``.

        Returns
        -------
        noisy : torch.Tensor
            Mixture, shape ``[min(L, crop_samples)]``.
        clean : torch.Tensor
            Training target (the speech in the mixture), same shape.
        """
        self._own_loaders()
        speech = self._crop(clean.float())
        if self.add_reverb is not None and torch.rand(()) < self.reverb_prob:
            speech = self.add_reverb(speech.unsqueeze(0)).squeeze(0)
        speech = self._normalise_level(speech)
        noise = self._add_noise(speech) - speech
        if _happens(self.noise_tilt_prob):
            slope = _uniform(self.noise_tilt_low_db, self.noise_tilt_high_db)
            noise = spectral_tilt(noise, slope, self.sample_rate)
        if _happens(self.colored_noise_prob):
            noise = noise + self._colored_noise(speech)
        noisy = speech + noise
        gain = self._peak_gain(noisy, speech)
        return noisy * gain, speech * gain

    def __getstate__(self):
        """Pickled state, without the data loaders that AddNoise and
        AddReverb built on earlier calls (they cannot be pickled; every
        process builds its own on its first call)."""
        state = super().__getstate__()
        state["_modules"] = {
            name: _drop_loader(copy.copy(module))
            for name, module in self._modules.items()
        }
        return state

    def _own_loaders(self):
        """Drops data loaders built by another process: a DataLoader worker
        forked after the mixer was used must not replay its noise order."""
        if self.owner_pid != os.getpid():
            for module in self.children():
                _drop_loader(module)
            self.owner_pid = os.getpid()

    def _crop(self, signal):
        """A random crop of ``crop_samples`` (or the whole signal)."""
        excess = len(signal) - (self.crop_samples or len(signal))
        if excess <= 0:
            return signal
        start = torch.randint(excess + 1, ()).item()
        return signal[start : start + self.crop_samples]

    def _normalise_level(self, speech):
        """Scales the speech to a random RMS level."""
        level = _uniform(self.level_low_db, self.level_high_db)
        rms = speech.pow(2).mean().sqrt().clamp(min=1e-10)
        return speech * (10 ** (level / 20) / rms)

    def _add_noise(self, speech):
        """Adds noise at a random SNR with AddNoise; speech level unchanged."""
        snr = _uniform(self.snr_low, self.snr_high)
        self.add_noise.snr_low = self.add_noise.snr_high = snr
        noisy = self.add_noise(speech.unsqueeze(0), torch.ones(1)).squeeze(0)
        # AddNoise multiplies the speech by a / (a + 1), a = 10 ** (snr / 20).
        return noisy * (1 + 10 ** (-snr / 20))

    def _colored_noise(self, speech):
        """Coloured Gaussian noise at a random SNR against ``speech``."""
        slope = _uniform(self.colored_slope_low_db, self.colored_slope_high_db)
        snr = _uniform(self.snr_low, self.snr_high)
        rms = speech.pow(2).mean().sqrt() * 10 ** (-snr / 20)
        return rms * colored_noise(len(speech), slope, self.sample_rate)

    def _peak_gain(self, noisy, speech):
        """Gain keeping both signals' peaks at most ``max_peak``."""
        peak = torch.maximum(noisy.abs().max(), speech.abs().max())
        return (self.max_peak / peak.clamp(min=1e-10)).clamp(max=1.0)


def write_audio_csv(path, entries):
    """Writes an AddNoise / AddReverb CSV (SpeechBrain extended CSV).

    Arguments
    ---------
    path : str
        CSV file to write.
    entries : list of tuple
        ``(ID, wav_path)`` pairs; durations are read from the files.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> write_audio(str(tmp / "n.wav"), torch.zeros(8000), 16000)
    >>> write_audio_csv(str(tmp / "n.csv"), [("n", str(tmp / "n.wav"))])
    >>> print(open(tmp / "n.csv").read().split()[1].split(",")[:2])
    ['n', '0.5']
    """
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for utt_id, wav in entries:
            info = read_audio_info(wav)
            duration = info.num_frames / info.sample_rate
            fmt = os.path.splitext(wav)[1][1:].lower()
            writer.writerow((utt_id, duration, wav, fmt, ""))


def _list_folder(folder):
    """Audio files under ``folder``, speaker = parent folder name."""
    files = []
    for root, dirs, names in os.walk(os.path.abspath(folder)):
        dirs.sort()
        files += [
            AudioFile(os.path.join(root, n), os.path.basename(root))
            for n in sorted(names)
            if n.lower().endswith(AUDIO_EXTENSIONS)
        ]
    return files


def _list_csv(csv_path):
    """Audio files listed in a CSV with a ``wav`` or ``path`` column."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        columns = [c for c in PATH_COLUMNS if c in (reader.fieldnames or ())]
        if not columns:
            raise ValueError(
                f"{csv_path} needs a 'wav' or 'path' column; it has "
                f"{reader.fieldnames}"
            )
        rows = list(reader)
    base = os.path.dirname(os.path.abspath(csv_path))
    paths = [os.path.join(base, row[columns[0]] or "") for row in rows]
    return [
        AudioFile(
            os.path.abspath(path),
            row.get("speaker") or os.path.basename(os.path.dirname(path)),
        )
        for row, path in zip(rows, paths)
    ]


def list_audio(source):
    """Lists the audio files of a source: a folder or a CSV file.

    A folder is searched recursively for .wav and .flac files; the speaker
    of a file is its parent folder name. A CSV file needs a ``wav`` or
    ``path`` column (absolute paths, or relative to the CSV's folder) and
    may have a ``speaker`` column.

    Arguments
    ---------
    source : str
        Folder or CSV file.

    Returns
    -------
    list of AudioFile

    Raises
    ------
    FileNotFoundError
        If the source does not exist.
    ValueError
        If it lists no file, or the CSV has no path column.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> _ = tmp.mkdir("spk1").join("a.wav").write("")
    >>> [(os.path.basename(f.path), f.speaker) for f in list_audio(str(tmp))]
    [('a.wav', 'spk1')]
    """
    if os.path.isdir(source):
        files = _list_folder(source)
    elif os.path.isfile(source):
        files = _list_csv(source)
    else:
        raise FileNotFoundError(f"Audio source {source} does not exist")
    if not files:
        raise ValueError(
            f"No audio file ({', '.join(AUDIO_EXTENSIONS)}) in {source}"
        )
    return files


def probe_audio(path, sample_rate, min_frames=1):
    """Number of samples of a mono file at ``sample_rate``.

    Arguments
    ---------
    path : str
        Audio file.
    sample_rate : int
        Required sampling rate.
    min_frames : int
        Fewest samples accepted.

    Returns
    -------
    int or str
        The number of samples, or a description of the problem.

    Example
    -------
    >>> probe_audio("/no/such.wav", 16000)
    '/no/such.wav: missing'
    """
    if not os.path.isfile(path):
        return f"{path}: missing"
    try:
        info = read_audio_info(path)
    except RuntimeError as error:
        return f"{path}: unreadable ({error})"
    if info.num_channels != 1:
        return f"{path}: {info.num_channels} channels, expected mono"
    if info.sample_rate != sample_rate:
        return (
            f"{path}: {info.sample_rate} Hz, expected {sample_rate} Hz "
            "(resample it first)"
        )
    if info.num_frames < min_frames:
        return f"{path}: {info.num_frames} samples, too short"
    return info.num_frames


def _map(fn, items, num_workers, desc):
    """``[fn(x) for x in items]`` with a progress bar, on worker processes."""
    if num_workers <= 1:
        return [fn(item) for item in tqdm(items, desc=desc)]
    with ProcessPoolExecutor(
        num_workers, initializer=torch.set_num_threads, initargs=(1,)
    ) as pool:
        return list(
            parallel_map(
                fn,
                items,
                chunk_size=8,
                executor=pool,
                progress_bar_kwargs={"desc": desc},
            )
        )


def _raise_problems(problems, what):
    """Raises ValueError listing the first problems, if any."""
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems[:MAX_REPORTED])
        raise ValueError(
            f"{len(problems)} problem(s) with the {what} files (first "
            f"{min(len(problems), MAX_REPORTED)} listed):\n{listed}"
        )


def check_audio(files, sample_rate, num_workers, what, min_frames=1):
    """Checks that every file is readable, mono and at ``sample_rate``.

    Arguments
    ---------
    files : list of AudioFile
        From ``list_audio``.
    sample_rate : int
        Required sampling rate.
    num_workers : int
        Number of worker processes.
    what : str
        Name of the source, for messages and the progress bar.
    min_frames : int
        Fewest samples accepted per file.

    Returns
    -------
    list of int
        Number of samples of each file.

    Raises
    ------
    ValueError
        Listing the first offenders.

    Example
    -------
    >>> check_audio([AudioFile("/no/a.wav", "a")], 16000, 1, "speech")
    Traceback (most recent call last):
    ...
    ValueError: 1 problem(s) with the speech files (first 1 listed):
      - /no/a.wav: missing
    """
    probe = functools.partial(
        probe_audio, sample_rate=sample_rate, min_frames=min_frames
    )
    paths = [f.path for f in files]
    frames = _map(probe, paths, num_workers, f"Checking {what} files")
    _raise_problems([f for f in frames if isinstance(f, str)], what)
    return frames


def _check_listed(listed, speakers):
    """Raises ValueError for unknown or doubly held-out listed speakers."""
    unknown = sorted(set().union(*listed.values()) - set(speakers))
    if unknown:
        raise ValueError(f"Held-out speakers {unknown} have no utterance")
    both = sorted(set(listed.get("valid", ())) & set(listed.get("test", ())))
    if both:
        raise ValueError(f"Speakers {both} are both valid and test speakers")


def _draw(left, count, rng, name):
    """``count`` speakers drawn from ``left``."""
    if count > len(left):
        raise ValueError(
            f"Cannot hold out {count} {name} speakers: only {len(left)} left"
        )
    return sorted(rng.sample(left, count))


def split_speakers(speakers, valid_speakers, test_speakers, seed):
    """Assigns every speaker to train, valid or test.

    Arguments
    ---------
    speakers : iterable of str
        All speakers.
    valid_speakers : int or list of str
        How many speakers to hold out for validation (drawn with ``seed``
        among those not listed for test), or which.
    test_speakers : int or list of str
        The same for test (drawn after the validation speakers).
    seed : int
        Seed of the draws.

    Returns
    -------
    dict
        ``{"train": [...], "valid": [...], "test": [...]}``, sorted.

    Raises
    ------
    ValueError
        If a listed speaker is unknown or listed twice, or no speaker is
        left for training.

    Example
    -------
    >>> split = split_speakers(["a", "b", "c", "d"], 1, ["d"], seed=1)
    >>> split["test"], len(split["valid"]), len(split["train"])
    (['d'], 1, 2)
    """
    everyone = sorted(set(speakers))
    wanted = {"valid": valid_speakers, "test": test_speakers}
    split = {k: sorted(v) for k, v in wanted.items() if not isinstance(v, int)}
    _check_listed(split, everyone)
    held = set().union(*split.values())
    left = [s for s in everyone if s not in held]
    rng = random.Random(seed)
    for name in ("valid", "test"):
        if name not in split:
            split[name] = _draw(left, wanted[name], rng, name)
            left = [s for s in left if s not in split[name]]
    if not left:
        raise ValueError("No speaker is left for training")
    return {"train": left, "valid": split["valid"], "test": split["test"]}


def unique_ids(paths):
    """Identifiers from file names, numbered where names repeat.

    Arguments
    ---------
    paths : list of str
        Audio files.

    Returns
    -------
    list of str
        One identifier per path, in order.

    Example
    -------
    >>> unique_ids(["/a/x.wav", "/b/x.wav", "/b/y.flac"])
    ['x_1', 'x_2', 'y']
    """
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    counts = collections.Counter(stems)
    seen = collections.Counter()
    ids = []
    for stem in stems:
        seen[stem] += 1
        ids.append(f"{stem}_{seen[stem]}" if counts[stem] > 1 else stem)
    return ids


def noise_split_point(frames, fraction):
    """Index where the held-out part of a noise file starts.

    Both parts keep at least one sample.

    Arguments
    ---------
    frames : int
        Number of samples of the file (at least 2).
    fraction : float
        Share of the file held out, at its end.

    Returns
    -------
    int

    Example
    -------
    >>> noise_split_point(1000, 0.2)
    800
    """
    held = min(max(round(frames * fraction), 1), frames - 1)
    return frames - held


def cut_noise(job, sample_rate):
    """Writes the training and held-out parts of one noise file.

    Arguments
    ---------
    job : tuple
        ``(source_path, split_point, train_path, heldout_path)``.
    sample_rate : int
        Sampling rate of the file.

    Returns
    -------
    str or None
        A description of the problem (a digitally silent part), or None.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> write_audio(str(tmp / "n.wav"), torch.rand(100) - 0.5, 16000)
    >>> paths = str(tmp / "a.wav"), str(tmp / "b.wav")
    >>> cut_noise((str(tmp / "n.wav"), 80, *paths), 16000)
    >>> read_audio_info(paths[1]).num_frames
    20
    """
    source, split_point, *destinations = job
    signal = read_audio(source)
    parts = signal[:split_point], signal[split_point:]
    for part, name in zip(parts, ("training", "held-out")):
        if not part.abs().max() > 0:
            return f"{source}: the {name} part is digitally silent"
    for part, dest in zip(parts, destinations):
        write_audio(dest, part.clamp(-1.0, PCM16_MAX), sample_rate)
    return None


def prepare_noise(
    files, frames, fraction, audio_folder, save_folder, sample_rate, num_workers
):
    """Cuts the noise files and writes ``noise_train.csv`` and
    ``noise_heldout.csv``.

    Arguments
    ---------
    files : list of AudioFile
        Noise files.
    frames : list of int
        Their numbers of samples.
    fraction : float
        Share of each file held out (at its end) for the fixed mixtures.
    audio_folder : str
        Folder receiving ``noise_train/`` and ``noise_heldout/``.
    save_folder : str
        Folder receiving the CSV files.
    sample_rate : int
        Sampling rate of the files.
    num_workers : int
        Number of worker processes.

    Returns
    -------
    dict
        ``{"noise_train": csv_path, "noise_heldout": csv_path}``.

    Raises
    ------
    ValueError
        If a part of a file is digitally silent.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> write_audio(str(tmp / "n.wav"), torch.rand(100) - 0.5, 16000)
    >>> csvs = prepare_noise(
    ...     [AudioFile(str(tmp / "n.wav"), "")], [100], 0.2,
    ...     str(tmp / "audio"), str(tmp), 16000, num_workers=1
    ... )
    >>> print(open(csvs["noise_heldout"]).read().split()[1].split(",")[:2])
    ['n', '0.00125']
    """
    ids = unique_ids([f.path for f in files])
    outputs = {}
    for part in NOISE_PARTS:
        os.makedirs(os.path.join(audio_folder, part), exist_ok=True)
        outputs[part] = [
            os.path.join(audio_folder, part, f"{i}.wav") for i in ids
        ]
    jobs = [
        (f.path, noise_split_point(n, fraction), *paths)
        for f, n, paths in zip(files, frames, zip(*outputs.values()))
    ]
    cut = functools.partial(cut_noise, sample_rate=sample_rate)
    problems = _map(cut, jobs, num_workers, "Cutting noise files")
    _raise_problems([p for p in problems if p], "noise")
    csvs = {}
    for part, paths in outputs.items():
        csvs[part] = os.path.join(save_folder, f"{part}.csv")
        write_audio_csv(csvs[part], list(zip(ids, paths)))
    return csvs


def make_mixture(job, mixer_options):
    """Generates and writes one fixed mixture, reproducibly from its seed.

    The global random generators are left as they were.

    Arguments
    ---------
    job : MixtureJob
        The mixture to make.
    mixer_options : dict
        Keyword arguments of ``DynamicMixer``.

    Returns
    -------
    dict
        Manifest entry: ``noisy_wav``, ``clean_wav``, ``length`` (seconds),
        ``speaker``, and the measured ``snr_db`` and ``level_db``.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> write_audio(str(tmp / "n.wav"), 0.1 * torch.randn(8000), 16000)
    >>> write_audio(str(tmp / "s.wav"), 0.1 * torch.randn(8000), 16000)
    >>> write_audio_csv(str(tmp / "n.csv"), [("n", str(tmp / "n.wav"))])
    >>> for kind in ("noisy", "clean"):
    ...     _ = tmp.mkdir(kind)
    >>> job = MixtureJob("m", AudioFile(str(tmp / "s.wav"), "s"), str(tmp), 7)
    >>> entry = make_mixture(job, {"noise_csv": str(tmp / "n.csv")})
    >>> entry["length"], entry["speaker"]
    (0.5, 's')
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(job.seed)
        mixer = DynamicMixer(**mixer_options)
        noisy, clean = mixer(read_audio(job.source.path))
    sample_rate = mixer_options.get("sample_rate", 16000)
    entry = {}
    for kind, signal in (("noisy", noisy), ("clean", clean)):
        entry[f"{kind}_wav"] = os.path.join(
            job.folder, kind, f"{job.utt_id}.wav"
        )
        write_audio(entry[f"{kind}_wav"], signal, sample_rate)
    entry["length"] = len(clean) / sample_rate
    entry["speaker"] = job.source.speaker
    entry["snr_db"] = round(snr_db(noisy, clean), 2)
    entry["level_db"] = round(rms_db(clean), 2)
    return entry


def mixture_jobs(name, utterances, count, folder, seed):
    """The fixed mixtures of one split, cycling through its utterances.

    Arguments
    ---------
    name : str
        Split name, the prefix of the mixture identifiers.
    utterances : list of tuple
        ``(utt_id, AudioFile)`` of the split's speakers, in a fixed order.
    count : int
        Number of mixtures.
    folder : str
        Folder of the split's mixtures.
    seed : int
        Seed, from which each mixture gets its own.

    Returns
    -------
    list of MixtureJob

    Example
    -------
    >>> utts = [(u, AudioFile(f"/{u}.wav", u)) for u in ("u1", "u2")]
    >>> [j.utt_id for j in mixture_jobs("valid", utts, 3, "/v", seed=1)]
    ['valid_0000_u1', 'valid_0001_u2', 'valid_0002_u1']
    """
    if count and not utterances:
        raise ValueError(f"No {name} utterance to make {count} mixtures from")
    jobs = []
    for index in range(count):
        utt_id, source = utterances[index % len(utterances)]
        rng = random.Random(f"{seed}/{name}/{index}")
        jobs.append(
            MixtureJob(
                f"{name}_{index:04d}_{utt_id}",
                source,
                folder,
                rng.getrandbits(63),
            )
        )
    return jobs


def write_mixtures(jobs, mixer_options, num_workers, desc):
    """Makes the fixed mixtures and returns their manifest.

    Arguments
    ---------
    jobs : list of MixtureJob
        From ``mixture_jobs``.
    mixer_options : dict
        Keyword arguments of ``DynamicMixer``.
    num_workers : int
        Number of worker processes (the result does not depend on it).
    desc : str
        Progress bar label.

    Returns
    -------
    dict
        ``{utt_id: entry}`` as returned by ``make_mixture``.

    Example
    -------
    >>> write_mixtures([], {}, 1, "Mixing")
    {}
    """
    for folder in {job.folder for job in jobs}:
        for kind in ("noisy", "clean"):
            os.makedirs(os.path.join(folder, kind), exist_ok=True)
    make = functools.partial(make_mixture, mixer_options=mixer_options)
    entries = _map(make, jobs, num_workers, desc)
    return {job.utt_id: entry for job, entry in zip(jobs, entries)}


def _write_json(path, content):
    """Writes ``content`` as indented JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2)


def _output_names(options):
    """Files that a finished preparation with ``options`` leaves."""
    names = [OPTIONS_FILE, "train.json", "valid.json", "test.json"]
    names += [f"{part}.csv" for part in NOISE_PARTS]
    return names + (["rir.csv"] if options["rir_source"] else [])


def _is_prepared(save_folder, options):
    """Whether ``save_folder`` holds everything made with ``options``."""
    paths = [os.path.join(save_folder, n) for n in _output_names(options)]
    if not all(os.path.isfile(p) for p in paths):
        return False
    with open(paths[0], encoding="utf-8") as f:
        return json.load(f) == options


def _abspath(source):
    """Absolute path of a source, None kept."""
    return os.path.abspath(source) if source else None


def _speakers_option(speakers):
    """A held-out speaker option as stored: a count or a sorted list."""
    return speakers if isinstance(speakers, int) else sorted(speakers)


def _train_manifest(files, ids, frames, speakers, sample_rate):
    """``train.json`` content: the utterances of the training speakers."""
    return {
        utt_id: {
            "clean_wav": f.path,
            "length": n / sample_rate,
            "speaker": f.speaker,
        }
        for f, utt_id, n in zip(files, ids, frames)
        if f.speaker in speakers
    }


def prepare_dynamic_mixing(
    speech_source,
    noise_source,
    save_folder,
    sample_rate=16000,
    rir_source=None,
    valid_speakers=8,
    test_speakers=8,
    valid_mixtures=100,
    test_mixtures=200,
    snr_low=0.0,
    snr_high=15.0,
    level_low_db=-35.0,
    level_high_db=-15.0,
    max_peak=0.99,
    heldout_noise_fraction=0.2,
    seed=1234,
    mixture_seconds=4.0,
    skip_prep=False,
    num_workers=None,
):
    """Prepares dynamic mixing: manifests, noise CSVs and fixed mixtures.

    See the module description for the files written. All work is skipped
    when ``save_folder`` already holds them made with the same options
    (stored in ``dynamic_mixing.json``), and redone, after deleting the
    audio of ``save_folder/dynamic_mixing_audio``, when an option changes.
    Speech and impulse responses are referenced in place; all audio must be
    mono at ``sample_rate`` (resample it beforehand otherwise).

    Arguments
    ---------
    speech_source : str
        Folder of clean speech (``<speaker>/*.wav``, searched recursively,
        speaker = parent folder name) or CSV file (``wav`` or ``path``
        column, optional ``speaker`` column).
    noise_source : str
        Folder or CSV file of noise recordings.
    save_folder : str
        Where everything is written.
    sample_rate : int
        Sampling rate of all audio.
    rir_source : str, optional
        Folder or CSV file of room impulse responses, listed in ``rir.csv``
        for ``DynamicMixer``'s reverberation.
    valid_speakers : int or list of str
        Number of speakers held out for validation (drawn with ``seed``), or
        the speakers.
    test_speakers : int or list of str
        The same for test.
    valid_mixtures : int
        Number of fixed validation mixtures (cycling through the validation
        utterances, each time with another crop, noise and SNR).
    test_mixtures : int
        Number of fixed test mixtures.
    snr_low : float
        Lowest SNR of the fixed mixtures, dB.
    snr_high : float
        Highest SNR of the fixed mixtures, dB.
    level_low_db : float
        Lowest RMS level of the fixed mixtures' clean speech, dBFS.
    level_high_db : float
        Highest RMS level of the fixed mixtures' clean speech, dBFS.
    max_peak : float
        Largest absolute sample value of the fixed mixtures.
    heldout_noise_fraction : float
        Share of each noise file, at its end, kept for the fixed mixtures;
        training noise comes from the rest.
    seed : int
        Seed of the speaker split and of the fixed mixtures.
    mixture_seconds : float, optional
        Length of the fixed mixtures (random crops); None keeps whole
        utterances.
    skip_prep : bool
        If True, do nothing.
    num_workers : int, optional
        Worker processes (default: all CPUs); results do not depend on it.

    Raises
    ------
    FileNotFoundError
        If a source does not exist.
    ValueError
        If a source is empty, a file is unreadable, not mono, at another
        rate or too short, a noise part is silent, or the speaker split is
        impossible.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> for spk in ("s1", "s2", "s3"):
    ...     folder = tmp.ensure_dir("speech", spk)
    ...     wav = str(folder / f"{spk}_u.wav")
    ...     write_audio(wav, 0.1 * torch.randn(8000), 16000)
    >>> noise = tmp.ensure_dir("noise")
    >>> write_audio(str(noise / "n.wav"), 0.1 * torch.randn(8000), 16000)
    >>> prepare_dynamic_mixing(
    ...     str(tmp / "speech"), str(noise), str(tmp / "prep"),
    ...     valid_speakers=["s1"], test_speakers=1, valid_mixtures=2,
    ...     test_mixtures=1, num_workers=1,
    ... )
    >>> with open(tmp / "prep" / "valid.json") as f:
    ...     sorted(json.load(f))
    ['valid_0000_s1_u', 'valid_0001_s1_u']
    """
    if skip_prep:
        return
    if not 0 < heldout_noise_fraction < 1:
        raise ValueError("heldout_noise_fraction must be in (0, 1)")
    options = {
        "version": FORMAT_VERSION,
        "speech_source": _abspath(speech_source),
        "noise_source": _abspath(noise_source),
        "rir_source": _abspath(rir_source),
        "sample_rate": sample_rate,
        "valid_speakers": _speakers_option(valid_speakers),
        "test_speakers": _speakers_option(test_speakers),
        "valid_mixtures": valid_mixtures,
        "test_mixtures": test_mixtures,
        "snr_low": snr_low,
        "snr_high": snr_high,
        "level_low_db": level_low_db,
        "level_high_db": level_high_db,
        "max_peak": max_peak,
        "heldout_noise_fraction": heldout_noise_fraction,
        "seed": seed,
        "mixture_seconds": mixture_seconds,
    }
    if _is_prepared(save_folder, options):
        logger.info(f"Dynamic mixing files in {save_folder} are up to date")
        return
    _prepare(options, save_folder, num_workers or get_available_cpu_count())


def _clear(save_folder):
    """Deletes the files and audio of an earlier preparation."""
    for name in _output_names({"rir_source": True}):
        path = os.path.join(save_folder, name)
        if os.path.isfile(path):
            os.remove(path)
    shutil.rmtree(os.path.join(save_folder, AUDIO_FOLDER), ignore_errors=True)


def _fixed_mixer_options(options, noise_csv):
    """``DynamicMixer`` arguments of the fixed mixtures."""
    seconds = options["mixture_seconds"]
    rate = options["sample_rate"]
    return {
        "noise_csv": noise_csv,
        "snr_low": options["snr_low"],
        "snr_high": options["snr_high"],
        "crop_samples": round(seconds * rate) if seconds else None,
        "level_low_db": options["level_low_db"],
        "level_high_db": options["level_high_db"],
        "sample_rate": rate,
        "max_peak": options["max_peak"],
    }


def _checked_sources(options, num_workers):
    """Lists and checks the sources: speech, noise and RIR files with
    their numbers of samples."""
    rate = options["sample_rate"]
    sources = {}
    for kind, what, min_frames in (
        ("speech", "speech", 1),
        ("noise", "noise", 2),
        ("rir", "impulse response", 1),
    ):
        path = options[f"{kind}_source"]
        files = list_audio(path) if path else []
        frames = []
        if files:
            frames = check_audio(files, rate, num_workers, what, min_frames)
        sources[kind] = files, frames
    return sources


def _prepare(options, save_folder, num_workers):
    """Does the work of ``prepare_dynamic_mixing``; manifests and CSVs hold
    absolute paths, so they work from any working directory."""
    save_folder = os.path.abspath(save_folder)
    sources = _checked_sources(options, num_workers)
    speech, speech_frames = sources["speech"]
    split = split_speakers(
        [f.speaker for f in speech],
        options["valid_speakers"],
        options["test_speakers"],
        options["seed"],
    )
    os.makedirs(save_folder, exist_ok=True)
    _clear(save_folder)
    audio_folder = os.path.join(save_folder, AUDIO_FOLDER)
    rate = options["sample_rate"]
    csvs = prepare_noise(
        *sources["noise"],
        options["heldout_noise_fraction"],
        audio_folder,
        save_folder,
        sample_rate=rate,
        num_workers=num_workers,
    )
    rirs = [f.path for f in sources["rir"][0]]
    if rirs:
        rir_csv = os.path.join(save_folder, "rir.csv")
        write_audio_csv(rir_csv, list(zip(unique_ids(rirs), rirs)))
    ids = unique_ids([f.path for f in speech])
    train = _train_manifest(speech, ids, speech_frames, split["train"], rate)
    _write_json(os.path.join(save_folder, "train.json"), train)
    mixer_options = _fixed_mixer_options(options, csvs["noise_heldout"])
    for name in SPLITS:
        utterances = [
            (i, f) for i, f in zip(ids, speech) if f.speaker in split[name]
        ]
        jobs = mixture_jobs(
            name,
            utterances,
            options[f"{name}_mixtures"],
            os.path.join(audio_folder, name),
            options["seed"],
        )
        manifest = write_mixtures(
            jobs, mixer_options, num_workers, f"Mixing the {name} set"
        )
        _write_json(os.path.join(save_folder, f"{name}.json"), manifest)
    _write_json(os.path.join(save_folder, OPTIONS_FILE), options)
    logger.info(
        f"Dynamic mixing prepared in {save_folder}: {len(train)} training "
        f"utterances of {len(split['train'])} speakers, "
        f"{len(sources['noise'][0])} noise files, "
        f"{len(split['valid'])}/{len(split['test'])} valid/test speakers"
    )
