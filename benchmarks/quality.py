"""Scores speech-enhancement systems on folders of real noisy/clean pairs
with the full metric suite, and prints one Markdown table.

Each pair set is a folder with ``clean/`` and ``noisy/`` holding mono files
of the same names at 16 kHz. The systems scored on every set are:

- the noisy input itself;
- the peers of ``benchmarks/peers.py`` (``--peers``, default all four);
- each ``--model``: an exported CMCR-Net folder, a Hugging Face Hub id, or
  a training output folder (``save/CKPT+*``), exported to a temporary
  folder first;
- every other subfolder of the pair set holding audio files (for example
  ``crcnet_enhanced`` or ``mpsenet``): outputs published by others, resampled
  to the clean rate if needed.

Every output is delay-aligned to its clean reference before scoring: its
integer lag is estimated by FFT cross-correlation within ``--max-lag-ms``,
undone by a zero-filled shift, and both signals are trimmed to their common
length. Columns are wide-band PESQ, CSIG, CBAK, COVL, SSNR, STOI and SI-SDR
against the clean file, DNSMOS SIG/BAK/OVRL/P.808 of the aligned output
alone (``--no-dnsmos`` skips them), and the median lag removed, in samples
(positive: the output was late). Each set gets its rows, then an "all sets"
block gives file-weighted means over every set. ``--csv`` writes one row
per (set, system, file) for other scripts to aggregate.

Usage::

    python benchmarks/quality.py --model cmcr=pretrained/cmcr-dns-small \\
        ../shared/devdata/vbd_train_p287 ../shared/devdata/dns2020 \\
        ../shared/devdata/crcnet
"""

import argparse
import csv
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import scipy.fft
import soundfile as sf
import torch
from tqdm import tqdm

BENCHMARKS = str(Path(__file__).resolve().parent)
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

from peers import DNSMOS, PEERS, load_peer, resample  # noqa: E402

from speechbrain_cmcr.processing.metrics import evaluate_pair  # noqa: E402

SAMPLE_RATE = 16000  # wide-band PESQ and every peer need it
AUDIO_SUFFIXES = (".wav", ".flac")
PAIR_FOLDERS = ("clean", "noisy")
NOISY_LABEL = "noisy input"
ALL_SETS = "all sets"
METRICS = ["pesq", "csig", "cbak", "covl", "ssnr", "stoi", "si_sdr"]
DNSMOS_METRICS = ["dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"]
# Metric -> (column title, decimals).
COLUMNS = {
    "pesq": ("PESQ", 2),
    "csig": ("CSIG", 2),
    "cbak": ("CBAK", 2),
    "covl": ("COVL", 2),
    "ssnr": ("SSNR (dB)", 2),
    "stoi": ("STOI", 3),
    "si_sdr": ("SI-SDR (dB)", 2),
    "dnsmos_sig": ("DNSMOS SIG", 2),
    "dnsmos_bak": ("DNSMOS BAK", 2),
    "dnsmos_ovrl": ("DNSMOS OVRL", 2),
    "dnsmos_p808": ("DNSMOS P808", 2),
}
LAG_TITLE = "delay (samples)"
CSV_FIELDS = ["set", "system", "file", *METRICS, *DNSMOS_METRICS, "lag"]


# ---------------------------------------------------------------------------
# Audio files and pair sets
# ---------------------------------------------------------------------------


def read_mono(path):
    """Reads a mono audio file as float64.

    Arguments
    ---------
    path : Path
        Audio file (anything soundfile reads).

    Returns
    -------
    tuple
        (samples float64 [L], sample rate).
    """
    audio, rate = sf.read(path, dtype="float64", always_2d=True)  # [L, C]
    if audio.shape[1] != 1:
        raise ValueError(
            f"{path}: {audio.shape[1]} channels; only mono files are scored"
        )
    if audio.shape[0] == 0:
        raise ValueError(f"{path}: empty audio file")
    return audio[:, 0], rate


def audio_names(folder):
    """Sorted names of the audio files directly in ``folder``."""
    return sorted(
        path.name
        for path in folder.iterdir()
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES
    )


@dataclass
class PairSet:
    """A folder of noisy/clean pairs and the published outputs in it.

    Attributes
    ----------
    folder : Path
        Holds ``clean/``, ``noisy/`` and the published-output folders.
    names : list of str
        File names present in both ``clean/`` and ``noisy/``.
    published : list of Path
        Other subfolders, each holding a file for every name.
    """

    folder: Path
    names: List[str]
    published: List[Path] = field(default_factory=list)

    @property
    def name(self):
        """The set's label: its folder's name."""
        return self.folder.name


def check_pair_folders(folder):
    """Raises a clear error unless ``folder`` has ``clean/`` and ``noisy/``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"pair set {folder}: no such folder")
    missing = [sub for sub in PAIR_FOLDERS if not (folder / sub).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"pair set {folder}: no {' or '.join(missing)} subfolder (a pair "
            "set holds clean/ and noisy/ with files of the same names)"
        )


def check_twins(folder, names, subfolder, role):
    """Raises a clear error if ``folder/subfolder`` lacks any of ``names``."""
    missing = [n for n in names if not (folder / subfolder / n).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"pair set {folder}: {len(missing)} file(s) of noisy/ have no "
            f"{role} twin in {subfolder}/: {shown}"
        )


def find_published(folder, names):
    """Subfolders of a pair set, other than clean/ and noisy/, holding audio
    files: each must hold a file for every name of the set."""
    published = []
    for sub in sorted(folder.iterdir()):
        if not sub.is_dir() or sub.name in PAIR_FOLDERS:
            continue
        if sub.name.startswith(".") or not audio_names(sub):
            continue
        check_twins(folder, names, sub.name, "published")
        published.append(sub)
    return published


def find_pair_set(folder):
    """Lists and checks a pair set.

    Arguments
    ---------
    folder : str or Path
        Holds ``clean/`` and ``noisy/`` (and maybe published outputs).

    Returns
    -------
    PairSet
        Its file names (those of ``noisy/``) and published folders.
    """
    folder = Path(folder)
    check_pair_folders(folder)
    names = audio_names(folder / "noisy")
    if not names:
        raise FileNotFoundError(f"pair set {folder}: noisy/ holds no audio")
    check_twins(folder, names, "clean", "clean")
    return PairSet(folder, names, find_published(folder, names))


def read_pair(pair_set, name):
    """Reads one (clean, noisy) pair, checking mono and the 16-kHz rate.

    Arguments
    ---------
    pair_set : PairSet
        The set.
    name : str
        File name.

    Returns
    -------
    tuple
        (clean [L], noisy [L]) float64 arrays.
    """
    clean, clean_rate = read_mono(pair_set.folder / "clean" / name)
    noisy, noisy_rate = read_mono(pair_set.folder / "noisy" / name)
    for role, rate in (("clean", clean_rate), ("noisy", noisy_rate)):
        if rate != SAMPLE_RATE:
            raise ValueError(
                f"{pair_set.folder / role / name}: {rate} Hz; pairs must be "
                f"at {SAMPLE_RATE} Hz (wide-band PESQ), resample them first"
            )
    return clean, noisy


# ---------------------------------------------------------------------------
# Delay alignment
# ---------------------------------------------------------------------------


def cross_correlation(reference, output, max_lag):
    """FFT cross-correlation of ``output`` with ``reference`` at the lags
    -max_lag..max_lag: value k is ``sum_n output[n + k] * reference[n]``.

    Arguments
    ---------
    reference : np.ndarray
        [N] signal.
    output : np.ndarray
        [M] signal.
    max_lag : int
        Largest lag, with ``max_lag < min(N, M)``.

    Returns
    -------
    np.ndarray
        [2 * max_lag + 1] correlations, lag -max_lag first.

    Example
    -------
    >>> cross_correlation(np.array([0.0, 1, 0]), np.array([0.0, 0, 1]), 1)
    array([0., 0., 1.])
    """
    size = scipy.fft.next_fast_len(len(reference) + len(output) - 1)
    spectrum = scipy.fft.rfft(output, size) * np.conj(
        scipy.fft.rfft(reference, size)
    )  # [size // 2 + 1]
    circular = scipy.fft.irfft(spectrum, size)  # [size], lag k at k % size
    lags = np.arange(-max_lag, max_lag + 1)  # [2 * max_lag + 1]
    return circular[lags % size]


def estimate_lag(reference, output, max_lag):
    """Integer delay of ``output`` relative to ``reference``: the lag of the
    cross-correlation peak within +-max_lag (0 if nothing correlates).

    Arguments
    ---------
    reference : np.ndarray
        [N] clean signal.
    output : np.ndarray
        [M] signal to align.
    max_lag : int
        Largest delay searched, in samples (clipped to the lengths).

    Returns
    -------
    int
        Positive if ``output`` is late (``output[n + lag] ~ reference[n]``).

    Example
    -------
    >>> x = np.random.default_rng(0).normal(size=1000)
    >>> estimate_lag(x, np.concatenate([np.zeros(7), x]), 50)
    7
    """
    max_lag = max(0, min(max_lag, len(reference) - 1, len(output) - 1))
    correlation = cross_correlation(reference, output, max_lag)
    if not np.any(correlation > 0):
        return 0
    return int(np.argmax(correlation)) - max_lag


def undo_delay(output, lag):
    """Shifts ``output`` [M] earlier by ``lag`` samples (later if negative),
    zero-filling the vacated end and keeping its length.

    Example
    -------
    >>> undo_delay(np.array([0.0, 0, 1, 2]), 2)
    array([1., 2., 0., 0.])
    >>> undo_delay(np.array([1.0, 2, 3, 4]), -1)
    array([0., 1., 2., 3.])
    """
    shifted = np.zeros_like(output)
    if lag >= 0:
        shifted[: len(output) - lag] = output[lag:]
    else:
        shifted[-lag:] = output[: len(output) + lag]
    return shifted


def align(reference, output, max_lag):
    """Delay-aligns ``output`` to ``reference`` and trims both to their
    common length.

    Arguments
    ---------
    reference : np.ndarray
        [N] clean signal.
    output : np.ndarray
        [M] output; M may differ from N.
    max_lag : int
        Largest delay searched, in samples.

    Returns
    -------
    tuple
        (reference [K], aligned output [K], lag), K = min(N, M).
    """
    lag = estimate_lag(reference, output, max_lag)
    shifted = undo_delay(output, lag)  # [M]
    length = min(len(reference), len(shifted))
    return reference[:length], shifted[:length], lag


def max_lag_samples(max_lag_ms, rate=SAMPLE_RATE):
    """``max_lag_ms`` milliseconds in samples at ``rate``."""
    return int(round(max_lag_ms * rate / 1000))


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


def score_pair(clean, output, max_lag, dnsmos=None):
    """Aligns one output to its clean reference and scores it.

    Arguments
    ---------
    clean : np.ndarray
        [N] clean reference at 16 kHz.
    output : np.ndarray
        [M] system output at 16 kHz.
    max_lag : int
        Largest delay searched, in samples.
    dnsmos : callable, optional
        A ``peers.DNSMOS``; scores the aligned output alone.

    Returns
    -------
    dict
        ``METRICS``, ``DNSMOS_METRICS`` if ``dnsmos`` is given, and ``lag``
        (the delay removed, in samples).
    """
    reference, aligned, lag = align(clean, output, max_lag)
    scores = evaluate_pair(reference, aligned, SAMPLE_RATE)
    if dnsmos is not None:
        scores.update(dnsmos(aligned, sample_rate=SAMPLE_RATE))
    scores["lag"] = lag
    return scores


@dataclass
class System:
    """One row of the table: something that turns a noisy file into an
    output, or a folder of published outputs.

    Attributes
    ----------
    label : str
        Row label.
    enhance : callable, optional
        float32 [L] noisy at 16 kHz -> [L] output; None for published ones.
    folder : Path, optional
        The published outputs, by file name.
    """

    label: str
    enhance: Optional[Callable] = None
    folder: Optional[Path] = None


def read_published(path, rate):
    """A published output [M] as float64 at ``rate`` (resampled if not)."""
    output, output_rate = read_mono(path)
    return resample(output, output_rate, rate)


def enhance_with(system, noisy, name):
    """The output of ``system`` for one noisy file.

    Arguments
    ---------
    system : System
        Enhancer or published folder.
    noisy : np.ndarray
        [L] noisy input at 16 kHz.
    name : str
        Its file name (to find a published output).

    Returns
    -------
    np.ndarray
        [M] float64 output at 16 kHz.
    """
    if system.folder is not None:
        return read_published(system.folder / name, SAMPLE_RATE)
    output = system.enhance(noisy.astype(np.float32))
    return np.asarray(output, dtype=np.float64)


def set_systems(pair_set, shared):
    """The systems scored on one pair set: the noisy input, the shared
    enhancers (peers and models), then the set's published folders."""
    noisy_input = System(NOISY_LABEL, enhance=lambda noisy: noisy)
    published = [
        System(f"{folder.name} (published)", folder=folder)
        for folder in pair_set.published
    ]
    return [noisy_input, *shared, *published]


def score_pair_sets(pair_sets, shared, max_lag, dnsmos=None):
    """Scores every system on every file of every pair set.

    Arguments
    ---------
    pair_sets : list of PairSet
        The sets.
    shared : list of System
        Enhancers run on every set (peers, models).
    max_lag : int
        Largest delay searched, in samples.
    dnsmos : callable, optional
        DNSMOS scorer, or None to skip it.

    Returns
    -------
    list of dict
        One row per (set, system, file): ``set``, ``system``, ``file``, the
        scores and ``lag``.
    """
    rows = []
    total = sum(len(pair_set.names) for pair_set in pair_sets)
    with tqdm(total=total, desc="files", unit="file") as progress:
        for pair_set in pair_sets:
            systems = set_systems(pair_set, shared)
            for name in pair_set.names:
                progress.set_postfix_str(f"{pair_set.name}/{name}")
                clean, noisy = read_pair(pair_set, name)
                for system in systems:
                    output = enhance_with(system, noisy, name)
                    scores = score_pair(clean, output, max_lag, dnsmos)
                    labels = dict(set=pair_set.name, system=system.label)
                    rows.append({**labels, "file": name, **scores})
                progress.update()
    return rows


# ---------------------------------------------------------------------------
# Systems: peers and CMCR-Net models
# ---------------------------------------------------------------------------


def parse_peers(text):
    """Peer keys from a comma list, ``none`` or ``all``.

    Example
    -------
    >>> parse_peers("gtcrn, rnnoise"), parse_peers("none")
    (['gtcrn', 'rnnoise'], [])
    """
    text = text.strip().lower()
    if text == "none":
        return []
    if text == "all":
        return list(PEERS)
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = [key for key in keys if key not in PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {', '.join(unknown)}; known: "
            f"{', '.join(PEERS)}, or none"
        )
    return keys


def peer_label(key, peer):
    """Row label of a peer: its name, with its key if the name hides it."""
    if key in peer.name.lower():
        return peer.name
    return f"{peer.name} ({key})"


def load_peers(keys):
    """The peers ``keys`` as systems."""
    systems = []
    for key in keys:
        peer = load_peer(key)
        systems.append(System(peer_label(key, peer), enhance=peer.enhance))
    return systems


def parse_model_spec(spec):
    """``LABEL=PATH`` or ``PATH`` -> (label, path); the default label is the
    last part of the path (or Hub id).

    Example
    -------
    >>> parse_model_spec("small=pretrained/cmcr-dns-small")
    ('small', 'pretrained/cmcr-dns-small')
    >>> parse_model_spec("user/cmcr-net/")
    ('cmcr-net', 'user/cmcr-net/')
    """
    if "=" in spec:
        label, source = spec.split("=", 1)
        return label.strip(), source.strip()
    return Path(spec.rstrip("/")).name, spec


def is_training_run(folder):
    """Whether ``folder`` is a training output folder (``save/`` with
    checkpoints) rather than an exported one (``enhance_model.ckpt``)."""
    folder = Path(folder)
    exported = (folder / "enhance_model.ckpt").is_file()
    return (folder / "save").is_dir() and not exported


def model_source(source, workdir):
    """Where ``EnhanceSpeech.from_hparams`` finds a model: a training run
    is exported to ``workdir`` first; folders and Hub ids are kept."""
    if not is_training_run(source):
        return str(source)
    from speechbrain_cmcr.export import export_model

    target = Path(tempfile.mkdtemp(prefix="export-", dir=workdir))
    return str(export_model(source, target))


class ModelEnhancer:
    """A CMCR-Net model behind the peers' ``enhance(wav)`` interface.

    Arguments
    ---------
    source : str
        Exported folder, Hub id or training output folder.
    workdir : str or Path
        Scratch folder (exports, SpeechBrain's savedir).
    device : str
        Torch device to run on.
    """

    def __init__(self, source, workdir, device="cpu"):
        from speechbrain_cmcr.inference.enhancement import EnhanceSpeech

        savedir = tempfile.mkdtemp(prefix="savedir-", dir=workdir)
        self._model = EnhanceSpeech.from_hparams(
            source=model_source(source, workdir),
            savedir=savedir,
            run_opts={"device": device},
        )
        self.rate = int(self._model.hparams.sample_rate)

    def enhance(self, wav):
        """float32 [L] at 16 kHz -> float32 [L], whole-file inference."""
        inputs = resample(wav, SAMPLE_RATE, self.rate)  # [L']
        batch = torch.tensor(inputs, dtype=torch.float32)[None]  # [1, L']
        enhanced = self._model.enhance_batch(batch)[0].cpu().numpy()
        output = resample(enhanced, self.rate, SAMPLE_RATE)
        length = len(wav)
        return np.pad(output[:length], (0, length - len(output[:length])))


def load_models(specs, workdir, device="cpu"):
    """The ``--model`` specs as systems."""
    systems = []
    for spec in specs:
        label, source = parse_model_spec(spec)
        model = ModelEnhancer(source, workdir, device)
        systems.append(System(label, enhance=model.enhance))
    return systems


# ---------------------------------------------------------------------------
# Summaries and output
# ---------------------------------------------------------------------------


def group_rows(rows, key):
    """Rows grouped by ``key(row)``, in order of first appearance."""
    groups = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


def summarise(rows, metrics):
    """Mean of each metric and the median lag over ``rows``.

    Example
    -------
    >>> summarise([{"pesq": 2.0, "lag": 3}, {"pesq": 3.0, "lag": 5}],
    ...           ["pesq"])
    {'files': 2, 'pesq': 2.5, 'lag': 4.0}
    """
    summary = {"files": len(rows)}
    for metric in metrics:
        summary[metric] = float(np.mean([row[metric] for row in rows]))
    summary["lag"] = float(np.median([row["lag"] for row in rows]))
    return summary


def summary_rows(rows, metrics):
    """Per-set summaries, then file-weighted ones over all sets.

    Returns
    -------
    list of tuple
        (set label, system, summary dict).
    """
    summaries = []
    by_set = group_rows(rows, lambda row: row["set"])
    for set_name, set_rows in by_set.items():
        files = len({row["file"] for row in set_rows})
        by_system = group_rows(set_rows, lambda row: row["system"])
        for system, system_rows in by_system.items():
            summary = summarise(system_rows, metrics)
            summaries.append((f"{set_name} ({files})", system, summary))
    by_system = group_rows(rows, lambda row: row["system"])
    for system, system_rows in by_system.items():
        summary = summarise(system_rows, metrics)
        summaries.append((ALL_SETS, system, summary))
    return summaries


def format_lag(lag):
    """A median lag: an integer unless it is a half.

    Example
    -------
    >>> format_lag(37.0), format_lag(-0.5)
    ('37', '-0.5')
    """
    return f"{lag:g}"


def format_table(rows, metrics):
    """The Markdown table of per-set and all-sets summaries.

    Arguments
    ---------
    rows : list of dict
        Per-file rows of ``score_pair_sets``.
    metrics : list of str
        Metric columns to show (keys of ``COLUMNS``).

    Returns
    -------
    str
        The table.
    """
    titles = ["set", "system", "files"]
    titles += [COLUMNS[metric][0] for metric in metrics] + [LAG_TITLE]
    lines = ["| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]
    for set_label, system, summary in summary_rows(rows, metrics):
        cells = [set_label, system, str(summary["files"])]
        for metric in metrics:
            cells.append(f"{summary[metric]:.{COLUMNS[metric][1]}f}")
        cells.append(format_lag(summary["lag"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows, path):
    """Writes the per-file rows to ``path`` (empty cells for metrics that
    were not computed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, CSV_FIELDS, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in CSV_FIELDS})


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parse_args(argv=None):
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "pair_sets",
        nargs="+",
        type=Path,
        help="folders holding clean/ and noisy/ (and published outputs)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[LABEL=]PATH",
        help="CMCR-Net to score: exported folder, Hub id or training "
        "output folder (repeatable)",
    )
    parser.add_argument(
        "--peers",
        type=parse_peers,
        default=list(PEERS),
        help=f"comma list of {', '.join(PEERS)}, or none (default: all)",
    )
    parser.add_argument(
        "--max-lag-ms",
        type=float,
        default=50.0,
        help="largest delay searched when aligning outputs (default 50)",
    )
    parser.add_argument(
        "--no-dnsmos", action="store_true", help="skip the DNSMOS columns"
    )
    parser.add_argument("--csv", type=Path, help="write per-file rows here")
    parser.add_argument(
        "--device", default="cpu", help="torch device of the models"
    )
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's)"
    )
    return parser.parse_args(argv)


def main(argv=None):
    """Scores the systems and prints the table.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    list of dict
        The per-file rows (as written by ``--csv``).
    """
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pair_sets = [find_pair_set(folder) for folder in args.pair_sets]
    metrics = METRICS if args.no_dnsmos else METRICS + DNSMOS_METRICS
    dnsmos = None if args.no_dnsmos else DNSMOS()
    max_lag = max_lag_samples(args.max_lag_ms)
    with tempfile.TemporaryDirectory(prefix="quality-") as workdir:
        shared = load_peers(args.peers)
        shared += load_models(args.model, workdir, args.device)
        rows = score_pair_sets(pair_sets, shared, max_lag, dnsmos)
    print(format_table(rows, metrics))
    if args.csv:
        write_csv(rows, args.csv)
    return rows


if __name__ == "__main__":
    main()
