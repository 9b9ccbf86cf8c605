"""VoiceBank+DEMAND download and data preparation for the CMCR-Net recipe.

The corpus (Valentini-Botinhao et al., 28-speaker version) lives on the
University of Edinburgh DataShare, https://datashare.ed.ac.uk/handle/10283/2791,
as four zip archives (about 2.3 GB clean and 2.6 GB noisy training speech,
147 MB and 163 MB for the test set, as DataShare lists them; the exact byte
counts are not published, so downloads are checked against the server's
Content-Length, or against ``expected_sizes`` when given).

``prepare_voicebank`` reads the four folders (48 kHz originals, or the
16 kHz ``*_16k`` copies made by SpeechBrain's ``download_vctk``), checks that
every noisy file has a mono clean twin of the same length, resamples files
that are not at the target rate once into ``save_folder`` and writes
SpeechBrain JSON manifests::

    {"p226_001": {"noisy_wav": "/abs/path/p226_001.wav",
                  "clean_wav": "/abs/path/p226_001.wav",
                  "length": 2.53}}   # seconds

``valid.json`` holds the training speakers p226 and p287, held out as in
SpeechBrain's VoiceBank recipes; ``test.json`` the test speakers.

Command line::

    python voicebank_prepare.py download DEST_FOLDER
    python voicebank_prepare.py prepare DATA_FOLDER SAVE_FOLDER

Authors
 * CMCR-Net SpeechBrain port contributors
"""

import argparse
import functools
import http.client
import json
import math
import os
import re
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch
from speechbrain.augment.time_domain import Resample
from speechbrain.dataio.dataio import read_audio, read_audio_info, write_audio
from speechbrain.utils.logger import get_logger
from speechbrain.utils.parallel import get_available_cpu_count, parallel_map
from tqdm import tqdm

logger = get_logger(__name__)

# (noisy, clean) folder names of each split in the official corpus.
SUBFOLDERS = {
    "train": ("noisy_trainset_28spk_wav", "clean_trainset_28spk_wav"),
    "test": ("noisy_testset_wav", "clean_testset_wav"),
}
RESAMPLED_SUFFIX = "_16k"  # SpeechBrain's download_vctk names its copies so
VALID_SPEAKERS = ("p226", "p287")
DATASHARE_URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/2791/"
ARCHIVES = tuple(f"{name}.zip" for pair in SUBFOLDERS.values() for name in pair)
OPTIONS_FILE = "voicebank_prepare.json"
CACHE_SOURCE_FILE = "source.json"
MANIFESTS = ("train.json", "valid.json", "test.json")
MAX_REPORTED = 10
RETRYABLE_ERRORS = (
    ConnectionError,
    TimeoutError,
    http.client.HTTPException,
    urllib.error.URLError,
)
CHUNK_BYTES = 1 << 20
PCM16_MAX = 32767 / 32768


class DownloadError(RuntimeError):
    """A download that cannot be completed by retrying (size, HTTP error)."""


@dataclass(frozen=True)
class Pair:
    """A noisy file and its clean twin.

    Arguments
    ---------
    split : str
        ``"train"`` or ``"test"``.
    utt_id : str
        File name without extension, e.g. ``p226_001``.
    noisy : str
        Path of the noisy file.
    clean : str
        Path of the clean file.
    """

    split: str
    utt_id: str
    noisy: str
    clean: str


@dataclass(frozen=True)
class PairInfo:
    """What ``check_pair`` learns about a valid pair.

    Arguments
    ---------
    noisy_rate : int
        Sampling rate of the noisy file.
    clean_rate : int
        Sampling rate of the clean file.
    length : int
        Number of samples of both files at the target rate.
    """

    noisy_rate: int
    clean_rate: int
    length: int


def find_voicebank_folders(data_folder):
    """Locates the four corpus folders, at 48 kHz or as ``*_16k`` copies.

    Arguments
    ---------
    data_folder : str
        Folder holding the unpacked corpus.

    Returns
    -------
    dict
        Official folder name -> existing folder path.

    Raises
    ------
    FileNotFoundError
        Naming the missing folders and how to get them.
    ValueError
        Naming the folders that hold no wav file.

    Example
    -------
    >>> find_voicebank_folders(str(getfixture("tmpdir")))
    Traceback (most recent call last):
    ...
    FileNotFoundError: ... lacks noisy_trainset_28spk_wav, ...
    """
    found, missing = {}, []
    for name in (n for pair in SUBFOLDERS.values() for n in pair):
        candidates = [os.path.join(data_folder, name + s) for s in ("", "_16k")]
        existing = [c for c in candidates if os.path.isdir(c)]
        if existing:
            found[name] = existing[0]
        else:
            missing.append(name)
    if missing:
        raise FileNotFoundError(
            f"{data_folder} lacks {', '.join(missing)} (also looked for "
            f"'{RESAMPLED_SUFFIX}' copies). Download VoiceBank+DEMAND with "
            f"`python voicebank_prepare.py download {data_folder}` "
            "(or by hand from https://datashare.ed.ac.uk/handle/10283/2791), "
            "or make the demo corpus with "
            f"`python -m speechbrain_cmcr.dataio.demo_corpus {data_folder}`."
        )
    empty = [folder for folder in found.values() if not _wav_names(folder)]
    if empty:
        raise ValueError(
            f"no .wav files in {', '.join(empty)}: put the corpus there, or "
            "delete them and run `python voicebank_prepare.py download "
            f"{data_folder}`"
        )
    return found


def _wav_names(folder):
    """Names of the wav files directly inside ``folder``."""
    return {n for n in os.listdir(folder) if n.lower().endswith(".wav")}


def list_pairs(folders):
    """Lists (noisy, clean) pairs, including names present on one side only.

    Arguments
    ---------
    folders : dict
        As returned by ``find_voicebank_folders``.

    Returns
    -------
    list of Pair
        Sorted by split then name; a missing twin has a path that does not
        exist (``check_pair`` reports it).

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> folders = {n: str(tmp.mkdir(n)) for p in SUBFOLDERS.values() for n in p}
    >>> _ = tmp.join("noisy_testset_wav", "p232_001.wav").write("")
    >>> [(p.split, p.utt_id) for p in list_pairs(folders)]
    [('test', 'p232_001')]
    """
    pairs = []
    for split, (noisy_name, clean_name) in SUBFOLDERS.items():
        noisy_dir, clean_dir = folders[noisy_name], folders[clean_name]
        names = _wav_names(noisy_dir) | _wav_names(clean_dir)
        pairs += [
            Pair(
                split,
                os.path.splitext(n)[0],
                os.path.join(noisy_dir, n),
                os.path.join(clean_dir, n),
            )
            for n in sorted(names)
        ]
    return pairs


def _short(path):
    """``folder/file`` part of a path, for messages."""
    return os.path.join(
        os.path.basename(os.path.dirname(path)), os.path.basename(path)
    )


def _probe(path):
    """Sampling rate and frame count of a mono audio file.

    Raises ValueError describing the problem otherwise.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{_short(path)}: missing twin")
    try:
        info = read_audio_info(path)
    except RuntimeError as error:
        raise ValueError(f"{_short(path)}: unreadable ({error})") from error
    if info.num_channels != 1:
        raise ValueError(
            f"{_short(path)}: {info.num_channels} channels, expected mono"
        )
    return info.sample_rate, info.num_frames


def target_length(frames, rate, sample_rate):
    """Number of samples of ``frames`` samples at ``rate`` once resampled.

    Arguments
    ---------
    frames : int
        Number of samples at the original rate.
    rate : int
        Original sampling rate.
    sample_rate : int
        Target sampling rate.

    Returns
    -------
    int

    Example
    -------
    >>> target_length(48001, 48000, 16000)
    16001
    """
    return math.ceil(frames * sample_rate / rate)


def check_pair(pair, sample_rate):
    """Checks that a noisy file has a mono clean twin of the same length.

    Arguments
    ---------
    pair : Pair
        The pair to check.
    sample_rate : int
        Target rate, at which the lengths are compared.

    Returns
    -------
    PairInfo or str
        The pair's rates and length, or a description of the problem.

    Example
    -------
    >>> pair = Pair("test", "p232_001", "/a/p232_001.wav", "/b/p232_001.wav")
    >>> check_pair(pair, sample_rate=16000)
    'a/p232_001.wav: missing twin'
    """
    try:
        noisy_rate, noisy_frames = _probe(pair.noisy)
        clean_rate, clean_frames = _probe(pair.clean)
    except ValueError as problem:
        return str(problem)
    length = target_length(noisy_frames, noisy_rate, sample_rate)
    if length != target_length(clean_frames, clean_rate, sample_rate):
        return (
            f"{_short(pair.noisy)}: length mismatch (noisy {noisy_frames} "
            f"frames at {noisy_rate} Hz, clean {clean_frames} frames at "
            f"{clean_rate} Hz)"
        )
    return PairInfo(noisy_rate, clean_rate, length)


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
                chunk_size=16,
                executor=pool,
                progress_bar_kwargs={"desc": desc},
            )
        )


def check_pairs(pairs, data_folder, sample_rate, num_workers):
    """Checks all pairs in parallel and stops on any problem.

    Arguments
    ---------
    pairs : list of Pair
        From ``list_pairs``.
    data_folder : str
        Corpus folder (for the error message).
    sample_rate : int
        Target sampling rate.
    num_workers : int
        Number of worker processes.

    Returns
    -------
    list of PairInfo
        One per pair.

    Raises
    ------
    ValueError
        Listing the first ``MAX_REPORTED`` offenders.

    Example
    -------
    >>> check_pairs([], "/vb", 16000, 1)
    Traceback (most recent call last):
    ...
    ValueError: No wav files found in /vb
    """
    if not pairs:
        raise ValueError(f"No wav files found in {data_folder}")
    check = functools.partial(check_pair, sample_rate=sample_rate)
    infos = _map(check, pairs, num_workers, "Checking VoiceBank files")
    problems = [info for info in infos if isinstance(info, str)]
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems[:MAX_REPORTED])
        raise ValueError(
            f"{len(problems)} problem(s) in {data_folder} (first "
            f"{min(len(problems), MAX_REPORTED)} listed):\n{listed}"
        )
    return infos


@functools.lru_cache(maxsize=8)
def _resampler(orig_freq, new_freq):
    """Cached SpeechBrain resampler between two rates."""
    return Resample(orig_freq=orig_freq, new_freq=new_freq)


def _is_converted(path, length, sample_rate):
    """Whether ``path`` already holds a finished conversion."""
    if not os.path.isfile(path):
        return False
    info = read_audio_info(path)
    return info.sample_rate == sample_rate and info.num_frames == length


def resample_file(job, sample_rate):
    """Resamples one file into the cache (atomically), unless already done.

    Arguments
    ---------
    job : tuple
        ``(source_path, dest_path, source_rate, length)``, with ``length``
        the expected number of output samples.
    sample_rate : int
        Target sampling rate.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> write_audio(str(tmp / "a.wav"), torch.zeros(4800), 48000)
    >>> job = (str(tmp / "a.wav"), str(tmp / "b.wav"), 48000, 1600)
    >>> resample_file(job, sample_rate=16000)
    >>> read_audio_info(str(tmp / "b.wav")).num_frames
    1600
    """
    source, dest, rate, length = job
    if _is_converted(dest, length, sample_rate):
        return
    signal = read_audio(source).unsqueeze(0)
    resampled = _resampler(rate, sample_rate)(signal).squeeze(0)
    partial = dest + ".partial.wav"
    write_audio(partial, resampled.clamp(-1.0, PCM16_MAX), sample_rate)
    os.replace(partial, dest)


def _open_cache(save_folder, sample_rate, data_folder):
    """Cache folder of resampled files; emptied if made from other data."""
    cache = os.path.join(save_folder, f"wav_{sample_rate}")
    marker = os.path.join(cache, CACHE_SOURCE_FILE)
    source = {"data_folder": os.path.abspath(data_folder)}
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            if json.load(f) == source:
                return cache
        shutil.rmtree(cache)
    os.makedirs(cache, exist_ok=True)
    with open(marker, "w", encoding="utf-8") as f:
        json.dump(source, f)
    return cache


def _output_path(source, rate, sample_rate, cache):
    """Where the file at the target rate is: in place, or in the cache."""
    if rate == sample_rate:
        return os.path.abspath(source)
    folder = os.path.basename(os.path.dirname(source))
    return os.path.join(cache, folder, os.path.basename(source))


def convert_pairs(pairs, infos, sample_rate, cache, num_workers):
    """Resamples the files that are not at ``sample_rate`` into ``cache``.

    Arguments
    ---------
    pairs : list of Pair
        From ``list_pairs``.
    infos : list of PairInfo
        From ``check_pairs``.
    sample_rate : int
        Target sampling rate.
    cache : str
        Folder for the resampled files.
    num_workers : int
        Number of worker processes.

    Returns
    -------
    list of tuple
        ``(noisy_path, clean_path)`` at the target rate, one per pair.

    Example
    -------
    >>> pair = Pair("test", "p232_001", "/n/p232_001.wav", "/c/p232_001.wav")
    >>> convert_pairs([pair], [PairInfo(16000, 16000, 5)], 16000, "/c", 1)
    [('/n/p232_001.wav', '/c/p232_001.wav')]
    """
    outputs, jobs = [], []
    for pair, info in zip(pairs, infos):
        files = ((pair.noisy, info.noisy_rate), (pair.clean, info.clean_rate))
        paths = tuple(_output_path(p, r, sample_rate, cache) for p, r in files)
        jobs += [
            (source, dest, rate, info.length)
            for (source, rate), dest in zip(files, paths)
            if rate != sample_rate
        ]
        outputs.append(paths)
    for folder in {os.path.dirname(job[1]) for job in jobs}:
        os.makedirs(folder, exist_ok=True)
    if jobs:
        resample = functools.partial(resample_file, sample_rate=sample_rate)
        _map(resample, jobs, num_workers, f"Resampling to {sample_rate} Hz")
    return outputs


def split_manifests(pairs, infos, outputs, sample_rate, valid_speakers):
    """Builds the train, valid and test manifests.

    Arguments
    ---------
    pairs : list of Pair
        From ``list_pairs``.
    infos : list of PairInfo
        From ``check_pairs``.
    outputs : list of tuple
        From ``convert_pairs``.
    sample_rate : int
        Target sampling rate.
    valid_speakers : sequence of str
        Training speakers held out for validation.

    Returns
    -------
    dict
        ``{"train": {...}, "valid": {...}, "test": {...}}`` keyed by
        utterance id, each ``{"noisy_wav", "clean_wav", "length"}``.

    Example
    -------
    >>> pair = Pair("train", "p226_001", "/n/p226_001.wav", "/c/p226_001.wav")
    >>> outputs = [(pair.noisy, pair.clean)]
    >>> infos = [PairInfo(16000, 16000, 8000)]
    >>> sets = split_manifests([pair], infos, outputs, 16000, ["p226"])
    >>> sets["valid"]["p226_001"]["length"], sets["train"]
    (0.5, {})
    """
    manifests = {"train": {}, "valid": {}, "test": {}}
    for pair, info, (noisy, clean) in zip(pairs, infos, outputs):
        speaker = pair.utt_id.split("_")[0]
        held_out = pair.split == "train" and speaker in valid_speakers
        manifests["valid" if held_out else pair.split][pair.utt_id] = {
            "noisy_wav": noisy,
            "clean_wav": clean,
            "length": info.length / sample_rate,
        }
    return manifests


def _check_valid_speakers(pairs, valid_speakers):
    """Raises ValueError if a held-out speaker has no training file."""
    speakers = {p.utt_id.split("_")[0] for p in pairs if p.split == "train"}
    missing = sorted(set(valid_speakers) - speakers)
    if missing:
        raise ValueError(
            f"Validation speakers {missing} have no training files; "
            f"training speakers are {sorted(speakers)}"
        )


def _options(data_folder, valid_speakers, sample_rate):
    """The options that define the prepared data."""
    return {
        "data_folder": os.path.abspath(data_folder),
        "valid_speakers": sorted(valid_speakers),
        "sample_rate": sample_rate,
    }


def _is_prepared(save_folder, options):
    """Whether the manifests exist and were made with ``options``."""
    paths = [os.path.join(save_folder, n) for n in (OPTIONS_FILE, *MANIFESTS)]
    if not all(os.path.isfile(p) for p in paths):
        return False
    with open(paths[0], encoding="utf-8") as f:
        return json.load(f) == options


def _write_json(path, content):
    """Writes ``content`` as indented JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=2)


def prepare_voicebank(
    data_folder,
    save_folder,
    valid_speakers=VALID_SPEAKERS,
    sample_rate=16000,
    skip_prep=False,
    num_workers=None,
):
    """Writes ``train.json``, ``valid.json`` and ``test.json`` manifests.

    Work is skipped when ``save_folder`` already holds manifests made with
    the same options (stored in ``voicebank_prepare.json``) and redone when
    they change. Resampled files go to ``save_folder/wav_<sample_rate>``;
    files already at ``sample_rate`` are referenced in place.

    Arguments
    ---------
    data_folder : str
        Folder with ``clean_trainset_28spk_wav``, ``noisy_trainset_28spk_wav``,
        ``clean_testset_wav`` and ``noisy_testset_wav`` (or their ``_16k``
        copies), at any sampling rate.
    save_folder : str
        Where the manifests and resampled files are written.
    valid_speakers : sequence of str
        Training speakers held out for validation (SpeechBrain's choice by
        default).
    sample_rate : int
        Sampling rate of the prepared audio.
    skip_prep : bool
        If True, do nothing.
    num_workers : int, optional
        Worker processes for checking and resampling (default: all CPUs).

    Raises
    ------
    FileNotFoundError
        If a corpus folder is missing.
    ValueError
        If files are missing a twin, unreadable, not mono or of unequal
        length, or a validation speaker has no files.

    Example
    -------
    >>> from speechbrain_cmcr.dataio.demo_corpus import make_demo_corpus
    >>> tmp = getfixture("tmpdir")
    >>> data = make_demo_corpus(str(tmp / "demo"), n_train=6, n_test=2)
    >>> prepare_voicebank(data, str(tmp / "prep"), num_workers=1)
    >>> with open(tmp / "prep" / "valid.json") as f:
    ...     sorted(json.load(f))
    ['p226_001', 'p287_001']
    """
    if skip_prep:
        return
    options = _options(data_folder, valid_speakers, sample_rate)
    if _is_prepared(save_folder, options):
        logger.info(f"VoiceBank manifests in {save_folder} are up to date")
        return
    workers = num_workers or get_available_cpu_count()
    pairs = list_pairs(find_voicebank_folders(data_folder))
    _check_valid_speakers(pairs, valid_speakers)
    infos = check_pairs(pairs, data_folder, sample_rate, workers)
    os.makedirs(save_folder, exist_ok=True)
    cache = _open_cache(save_folder, sample_rate, data_folder)
    outputs = convert_pairs(pairs, infos, sample_rate, cache, workers)
    manifests = split_manifests(
        pairs, infos, outputs, sample_rate, valid_speakers
    )
    for name, manifest in manifests.items():
        _write_json(os.path.join(save_folder, f"{name}.json"), manifest)
    _write_json(os.path.join(save_folder, OPTIONS_FILE), options)
    sizes = ", ".join(f"{k}: {len(v)}" for k, v in manifests.items())
    logger.info(f"VoiceBank manifests written to {save_folder} ({sizes})")


def _response_range(response, offset):
    """Start offset and total size the server will send.

    A 206 answer continues at ``offset`` (checked); any other answer
    restarts from 0. The total is None when the server does not say.
    """
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        match = re.fullmatch(r"bytes (\d+)-\d+/(\d+)", content_range)
        if match is None or int(match.group(1)) != offset:
            raise DownloadError(
                f"Unexpected Content-Range {content_range!r} when resuming "
                f"at byte {offset}"
            )
        return offset, int(match.group(2))
    length = response.headers.get("Content-Length")
    return 0, int(length) if length is not None else None


def _unsatisfiable_total(error):
    """Remote size from a 416 answer's ``Content-Range: bytes */N``."""
    match = re.fullmatch(
        r"bytes \*/(\d+)", error.headers.get("Content-Range", "")
    )
    return int(match.group(1)) if match else None


def _check_announced(url, total, expected_size):
    """Fails before downloading if the server announces the wrong size."""
    if None not in (total, expected_size) and total != expected_size:
        raise DownloadError(
            f"{url} is {total} bytes on the server, expected {expected_size}"
        )


def _fetch(url, partial, expected_size, timeout):
    """Downloads ``url`` into ``partial``, resuming it; returns total size."""
    offset = os.path.getsize(partial) if os.path.isfile(partial) else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:
            raise DownloadError(f"{url}: HTTP error {error.code}") from error
        total = _unsatisfiable_total(error)
        if total == offset:
            return total  # the partial file is already complete
        os.remove(partial)
        return _fetch(url, partial, expected_size, timeout)
    with response:
        offset, total = _response_range(response, offset)
        _check_announced(url, total, expected_size)
        with open(partial, "ab" if offset else "wb") as f:
            _copy(response, f, total, offset, os.path.basename(url))
    return total


def _copy(response, file, total, offset, name):
    """Copies the response body to ``file`` with a progress bar."""
    with tqdm(
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
    ) as bar:
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            file.write(chunk)
            bar.update(len(chunk))


def _check_size(path, size, url):
    """Checks a finished download against the size it must have."""
    actual = os.path.getsize(path)
    if size is None or actual == size:
        return
    if actual < size:
        raise ConnectionError(f"{url}: got {actual} of {size} bytes")
    os.remove(path)
    raise DownloadError(f"{url}: got {actual} bytes, expected {size}; removed")


# Not speechbrain.utils.data_utils.download_file (SpeechBrain 1.1.2): measured
# against a server that drops the connection halfway through a 3 MB file, it
# raised ContentTooShortError but left the 1.5 MB half at the destination,
# and the next call printed "exists. Skipping download" and kept it (nor can
# it resume: a 2.3 GB archive would start over). This one downloads to
# ``.part``, resumes with Range requests and checks the size before renaming.
def download_file(url, path, expected_size=None, timeout=60.0, retries=3):
    """Downloads ``url`` to ``path``, resuming a previous partial download.

    Data goes to ``path + ".part"`` and is renamed when its size matches
    the server's Content-Length (and ``expected_size``, if given).
    Interrupted transfers are resumed with HTTP Range requests, up to
    ``retries`` times; the partial file is kept for a later run otherwise.

    Arguments
    ---------
    url : str
        Address of the file (http, https or file).
    path : str
        Destination file.
    expected_size : int, optional
        Exact size in bytes, if known.
    timeout : float
        Socket timeout in seconds.
    retries : int
        How many times an interrupted transfer is resumed.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    DownloadError
        On an HTTP error or a size mismatch.
    ConnectionError
        If the transfer kept failing (the partial file is kept).

    Example
    -------
    >>> import pathlib
    >>> tmp = pathlib.Path(getfixture("tmpdir"))
    >>> _ = (tmp / "remote.bin").write_bytes(b"0123456789")
    >>> url = (tmp / "remote.bin").as_uri()
    >>> path = download_file(url, str(tmp / "local.bin"))
    >>> pathlib.Path(path).read_bytes()
    b'0123456789'
    """
    if os.path.isfile(path):
        _check_size(path, expected_size, url)
        return path
    partial = path + ".part"
    for _ in range(retries + 1):
        try:
            total = _fetch(url, partial, expected_size, timeout)
            _check_size(partial, total, url)
            break
        except RETRYABLE_ERRORS as error:
            last_error = error
        logger.warning(
            f"Download of {url} interrupted ({last_error}), resuming"
        )
    else:
        raise ConnectionError(
            f"Could not download {url} after {retries + 1} attempts "
            f"({last_error}); run again to resume from {partial}"
        ) from last_error
    _check_size(partial, expected_size, url)
    os.replace(partial, path)
    return path


def unpack_zip(archive, dest_folder):
    """Unpacks ``name.zip`` as ``dest_folder/name``, all or nothing.

    Works whether the archive holds a top folder ``name/`` or bare files.
    Nothing is done when ``dest_folder/name`` already exists.

    Arguments
    ---------
    archive : str
        Path of the zip file.
    dest_folder : str
        Folder receiving the unpacked folder.

    Returns
    -------
    str
        The unpacked folder.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> with zipfile.ZipFile(tmp / "x_wav.zip", "w") as z:
    ...     z.writestr("a.wav", b"")
    >>> folder = unpack_zip(str(tmp / "x_wav.zip"), str(tmp))
    >>> os.listdir(folder)
    ['a.wav']
    """
    name = os.path.splitext(os.path.basename(archive))[0]
    target = os.path.join(dest_folder, name)
    if os.path.isdir(target):
        return target
    staging = os.path.join(dest_folder, f".{name}.unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.namelist() if not m.startswith("__MACOSX")]
            for member in tqdm(members, desc=f"Unpacking {name}"):
                zf.extract(member, staging)
    except zipfile.BadZipFile as error:
        raise DownloadError(
            f"{archive} is not a valid zip file ({error}); delete it and "
            "download again"
        ) from error
    inner = os.path.join(staging, name)
    os.replace(inner if os.path.isdir(inner) else staging, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def download_voicebank(
    dest_folder,
    base_url=DATASHARE_URL,
    archives=ARCHIVES,
    expected_sizes=None,
    remove_archives=False,
    timeout=60.0,
    retries=3,
):
    """Downloads and unpacks VoiceBank+DEMAND (28 speakers) into a folder.

    Archives whose folder is already unpacked are skipped; partial
    downloads are resumed.

    Arguments
    ---------
    dest_folder : str
        Folder receiving the archives and the unpacked corpus; pass it as
        ``data_folder`` to ``prepare_voicebank``.
    base_url : str
        Address the archive names are appended to (DataShare by default).
    archives : sequence of str
        Archive file names.
    expected_sizes : dict, optional
        Archive name -> exact size in bytes, checked when given.
    remove_archives : bool
        Delete each archive once unpacked.
    timeout : float
        Socket timeout in seconds.
    retries : int
        How many times an interrupted transfer is resumed.

    Returns
    -------
    str
        ``dest_folder``.

    Example
    -------
    >>> import pathlib
    >>> tmp = pathlib.Path(getfixture("tmpdir"))
    >>> (tmp / "server").mkdir()
    >>> archive = tmp / "server" / "clean_testset_wav.zip"
    >>> with zipfile.ZipFile(archive, "w") as z:
    ...     z.writestr("clean_testset_wav/p232_001.wav", b"")
    >>> out = download_voicebank(
    ...     str(tmp / "vb"),
    ...     base_url=(tmp / "server").as_uri() + "/",
    ...     archives=["clean_testset_wav.zip"],
    ... )
    >>> os.listdir(os.path.join(out, "clean_testset_wav"))
    ['p232_001.wav']
    """
    os.makedirs(dest_folder, exist_ok=True)
    for archive in archives:
        if os.path.isdir(
            os.path.join(dest_folder, os.path.splitext(archive)[0])
        ):
            logger.info(f"{archive} already unpacked in {dest_folder}")
            continue
        path = os.path.join(dest_folder, archive)
        size = (expected_sizes or {}).get(archive)
        download_file(base_url + archive, path, size, timeout, retries)
        unpack_zip(path, dest_folder)
        if remove_archives:
            os.remove(path)
    return dest_folder


def _parser():
    """Command-line parser with ``download`` and ``prepare`` sub-commands."""
    parser = argparse.ArgumentParser(
        description="Download and prepare VoiceBank+DEMAND for CMCR-Net."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    download = commands.add_parser(
        "download", help="download and unpack the four corpus archives"
    )
    download.add_argument("dest_folder", help="where to put the corpus")
    download.add_argument(
        "--base-url", default=DATASHARE_URL, help="mirror of the archives"
    )
    download.add_argument(
        "--remove-archives",
        action="store_true",
        help="delete each zip file once unpacked",
    )
    prepare = commands.add_parser(
        "prepare", help="check, resample and write the JSON manifests"
    )
    prepare.add_argument("data_folder", help="folder with the corpus folders")
    prepare.add_argument("save_folder", help="where manifests are written")
    prepare.add_argument(
        "--valid-speakers",
        nargs="+",
        default=list(VALID_SPEAKERS),
        help="training speakers held out for validation (default: %(default)s)",
    )
    prepare.add_argument(
        "--sample-rate", type=int, default=16000, help="Hz (default: 16000)"
    )
    prepare.add_argument(
        "--num-workers", type=int, help="processes (default: all CPUs)"
    )
    return parser


def main(argv=None):
    """Runs the command line.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 (after one line on stderr) if the
        corpus is missing or faulty or the download failed.

    Example
    -------
    >>> main(["prepare", "/vb", "/out", "--sample-rate", "8000"])
    2
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            download_voicebank(
                args.dest_folder,
                args.base_url,
                remove_archives=args.remove_archives,
            )
        else:
            prepare_voicebank(
                args.data_folder,
                args.save_folder,
                args.valid_speakers,
                args.sample_rate,
                num_workers=args.num_workers,
            )
    except (OSError, ValueError, DownloadError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
