"""Ready-to-use CMCR-Net speech enhancement: tensors or audio files of any
length, sample rate and channel count.

``EnhanceSpeech.from_hparams(source=...)`` loads a model folder written by
``speechbrain_cmcr.export`` (or a Hugging Face Hub repository holding one).
Without a ``savedir`` the files are used where they are (a local folder in
place, a Hub model from the Hugging Face cache); a ``savedir`` remembers the
model it holds (in ``.cmcr-savedir.json``) and never serves another one.

Files are enhanced in overlapping chunks: the input is read block by block,
every chunk goes through the model on its own, and consecutive chunks are
cross-faded with complementary windows before being written out, so memory
does not grow with the length of the recording. The collaboration modules
of CMCR-Net attend over the whole input, so a chunk's output depends a little
on where the chunk starts; 10 s chunks with 1 s overlap (the defaults) keep
that context longer than a typical utterance.

Trust: checkpoints are loaded as data only (:func:`load_checkpoint`), but a
``hyperparams.yaml`` is HyperPyYAML, which can call any Python function, so
load model folders and Hub repositories from trusted sources only.

Authors
-------
speechbrain-cmcr contributors
"""

import contextlib
import json
import math
import os
import pickle
import re
import warnings
from pathlib import Path

import soundfile as sf
import torch
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.data_utils import split_path
from speechbrain.utils.fetching import fetch
from torchaudio.transforms import Resample

DEFAULT_CHUNK_SECONDS = 10.0
DEFAULT_OVERLAP_SECONDS = 1.0
# What a savedir holds: the source it was filled from and the files fetched.
SAVEDIR_RECORD = ".cmcr-savedir.json"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# A file of a Hub repository, as SpeechBrain names it: user/name/file.wav.
HUB_FILE = re.compile(HUB_ID.pattern + r"/[^/]+")
# Most channels a [time, channels] array has (soundfile's layout).
MAX_CHANNELS = 8
# Output sample formats that keep samples beyond full scale.
UNCLIPPED_SUBTYPES = ("FLOAT", "DOUBLE", "VORBIS", "OPUS")


class InvalidAudioError(ValueError):
    """An input signal or audio file that cannot be enhanced."""


class AudioTypeError(InvalidAudioError, TypeError):
    """An input of the wrong type (also a ``TypeError``)."""


class CheckpointError(ValueError):
    """A checkpoint that is unreadable or not a plain state dict."""


class ModelSourceError(ValueError):
    """A source that names no model folder or Hub repository, or a savedir
    that holds another model's files."""


class SilentInputWarning(UserWarning):
    """The input is digital silence; the output is silence too."""


class ClippedOutputWarning(UserWarning):
    """Samples beyond full scale were clipped in an integer output format."""


def read_state_dict(path):
    """Reads a state dict without running code hidden in ``path``.

    ``torch.load(..., weights_only=True)`` refuses any pickled object other
    than tensors and plain containers, whatever
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says.

    Arguments
    ---------
    path : str or os.PathLike
        A file written by ``torch.save(module.state_dict(), path)``.

    Returns
    -------
    dict
        The state dict, on the CPU.

    Raises
    ------
    CheckpointError
        If the file is truncated or corrupt, or not a plain state dict (e.g.
        it would execute code).

    Example
    -------
    >>> path = getfixture("tmp_path") / "linear.ckpt"
    >>> torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    >>> sorted(read_state_dict(path))
    ['bias', 'weight']
    >>> _ = path.write_bytes(path.read_bytes()[:100])  # a cut download
    >>> try:
    ...     read_state_dict(path)
    ... except CheckpointError as error:
    ...     print("truncated or corrupt" in str(error))
    True
    """
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except pickle.UnpicklingError as error:
        # torch's message ends with advice on loading it unsafely: cut.
        detail = str(error).split("WeightsUnpickler error:")[-1]
        detail = detail.split("Check the documentation")[0]
        reason = " ".join(detail.split()).split(". ")[0]
        raise CheckpointError(
            f"{path}: refused to load, not a plain state dict of tensors "
            f"(loading it could run code hidden in the file): {reason}"
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        reason = str(error).split(". ")[0] or "no data"
        raise CheckpointError(
            f"{path}: unreadable, truncated or corrupt (download or copy it "
            f"again): {reason}"
        ) from error
    if not isinstance(state_dict, dict):
        raise CheckpointError(
            f"{path}: holds a {type(state_dict).__name__}, not a state dict"
        )
    return state_dict


def load_checkpoint(module, path):
    """Pretrainer hook (``custom_hooks`` in an exported ``hyperparams.yaml``)
    that loads ``path`` with :func:`read_state_dict`, strictly.

    Arguments
    ---------
    module : torch.nn.Module
        Receives the parameters.
    path : str or os.PathLike
        A file written by ``torch.save(module.state_dict(), path)``.

    Example
    -------
    >>> path = getfixture("tmp_path") / "linear.ckpt"
    >>> torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    >>> load_checkpoint(torch.nn.Linear(2, 2), path)
    """
    module.load_state_dict(read_state_dict(path), strict=True)


def crossfade_ramp(overlap):
    """Fade-in weights of a chunk over the ``overlap`` samples it shares with
    the previous chunk; the previous chunk fades out with ``1 - ramp``.

    The first and last quarters are 0 and 1, dropping the chunk edges (where
    padding effects live); the middle half is a raised cosine, so the seam
    keeps a continuous slope.

    Arguments
    ---------
    overlap : int
        Number of shared samples.

    Returns
    -------
    torch.Tensor
        Weights in [0, 1], shape ``[overlap]``.

    Example
    -------
    >>> crossfade_ramp(8)
    tensor([0.0000, 0.0000, 0.0381, 0.3087, 0.6913, 0.9619, 1.0000, 1.0000])
    """
    margin = overlap // 4
    width = overlap - 2 * margin
    phase = (torch.arange(width) + 0.5) / max(width, 1)
    rise = torch.sin(0.5 * math.pi * phase) ** 2
    return torch.cat([torch.zeros(margin), rise, torch.ones(margin)])


def crossfade_chunks(chunks, overlap):
    """Joins consecutive chunks that share ``overlap`` samples, yielding the
    signal piece by piece (only one chunk is held at a time).

    Arguments
    ---------
    chunks : Iterable[torch.Tensor]
        1-D chunks; all but the last at least ``2 * overlap`` long.
    overlap : int
        Number of samples shared by consecutive chunks.

    Yields
    ------
    torch.Tensor
        Consecutive pieces of the joined signal.

    Example
    -------
    >>> chunks = [torch.ones(8), torch.ones(8), torch.ones(5)]
    >>> torch.cat(list(crossfade_chunks(chunks, 4)))
    tensor([1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1.])
    """
    ramp = crossfade_ramp(overlap)
    tail = None
    for chunk in chunks:
        if tail is not None:
            head = tail * (1 - ramp) + chunk[:overlap] * ramp
            chunk = torch.cat([head, chunk[overlap:]])
        split = max(len(chunk) - overlap, 0)
        yield chunk[:split]
        tail = chunk[split:]
    if tail is not None:
        yield tail


def chunk_plan(input_rate, rates, chunk_seconds, overlap_seconds):
    """Chunk and overlap lengths, in input samples, that resample to whole
    numbers of samples at each of ``rates`` (so chunks stay aligned).

    Arguments
    ---------
    input_rate : int
        Sample rate of the input.
    rates : Sequence[int]
        Rates the chunks get resampled to.
    chunk_seconds : float
        Chunk duration (rounded to the alignment unit).
    overlap_seconds : float
        Overlap duration, at most half the chunk.

    Returns
    -------
    tuple of int
        ``(chunk, overlap)`` in input samples.

    Example
    -------
    >>> chunk_plan(44100, [16000], 10.0, 1.0)
    (441000, 44100)
    >>> chunk_plan(16000, [16000], 0.001, 0.0)
    (16, 0)
    """
    if not 0 <= 2 * overlap_seconds <= chunk_seconds or chunk_seconds <= 0:
        raise ValueError(
            "need chunk_seconds > 0 and 0 <= overlap_seconds <= "
            f"chunk_seconds / 2, got {chunk_seconds} and {overlap_seconds}"
        )
    unit = math.lcm(*(input_rate // math.gcd(input_rate, r) for r in rates))
    units = max(1, round(chunk_seconds * input_rate / unit))
    overlap_units = min(round(overlap_seconds * input_rate / unit), units // 2)
    return units * unit, overlap_units * unit


def open_audio(path):
    """Opens an audio file for block reading, with clear errors.

    Arguments
    ---------
    path : str or os.PathLike
        The file.

    Returns
    -------
    soundfile.SoundFile
        The open file (a context manager), holding at least one sample.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    InvalidAudioError
        If it is a folder, not readable as audio, or empty.

    Example
    -------
    >>> open_audio("no/such.wav")
    Traceback (most recent call last):
    ...
    FileNotFoundError: [Errno 2] audio file not found: 'no/such.wav'
    """
    path = check_path(path)
    if not path.exists():
        raise FileNotFoundError(2, "audio file not found", str(path))
    if path.is_dir():
        raise InvalidAudioError(f"{path}: is a folder, not an audio file")
    try:
        audio = sf.SoundFile(path)
    except sf.LibsndfileError as error:
        raise InvalidAudioError(
            f"{path}: not a readable audio file ({error.error_string})"
        ) from error
    if audio.frames == 0:
        audio.close()
        raise InvalidAudioError(f"{path}: contains no samples")
    return audio


def check_path(path):
    """Returns ``path`` as a Path, refusing what is not a path.

    Arguments
    ---------
    path : str or os.PathLike
        A file path.

    Returns
    -------
    pathlib.Path
        The same path.

    Example
    -------
    >>> try:
    ...     check_path(3)
    ... except AudioTypeError as error:
    ...     print(error)
    expected a file path (str or os.PathLike), got int
    """
    if not isinstance(path, (str, os.PathLike)):
        raise AudioTypeError(
            "expected a file path (str or os.PathLike), got "
            f"{type(path).__name__}"
        )
    return Path(path)


def fetch_audio(path):
    """The local file that an audio input names: ``path`` itself, or, for a
    file of a Hugging Face Hub repository (``"user/name/file.wav"``, as
    SpeechBrain's ``Pretrained.load_audio`` takes it), its copy fetched into
    the Hugging Face cache. A path whose first folder exists here is always
    local.

    Arguments
    ---------
    path : str or os.PathLike
        A local file or ``user/name/file`` of a Hub repository.

    Returns
    -------
    pathlib.Path
        The local file (a missing local file too: :func:`open_audio` says so).

    Raises
    ------
    FileNotFoundError
        If it is neither here nor in that Hub repository (or the Hub cannot
        be reached).

    Example
    -------
    >>> fetch_audio("noisy.wav")
    PosixPath('noisy.wav')
    """
    local = check_path(path)
    text = os.fspath(path)
    if (
        local.exists()
        or not HUB_FILE.fullmatch(text)
        or Path(text.split("/")[0]).is_dir()
    ):
        return local
    source, filename = split_path(text)
    try:
        return Path(fetch(filename, source=source))
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split()).split(". ")[0]
        raise FileNotFoundError(
            2,
            "audio file not found, neither here nor in Hugging Face Hub "
            f"repository {source} ({reason})",
            text,
        ) from error


def check_output_format(filename):
    """Refuses output names whose extension soundfile cannot write.

    Arguments
    ---------
    filename : str or os.PathLike
        Output file name.

    Returns
    -------
    pathlib.Path
        The same path.

    Example
    -------
    >>> try:
    ...     check_output_format("out.xyz")
    ... except InvalidAudioError as error:
    ...     print(error)
    out.xyz: unknown audio format '.xyz' (use .wav, .flac or .ogg)
    """
    filename = check_path(filename)
    if filename.suffix[1:].upper() not in sf.available_formats():
        raise InvalidAudioError(
            f"{filename}: unknown audio format '{filename.suffix}' "
            "(use .wav, .flac or .ogg)"
        )
    return filename


def check_finite(signal, where, first_sample=0, sample_rate=None):
    """Refuses a signal holding NaN or Inf.

    Arguments
    ---------
    signal : torch.Tensor
        Samples, last axis time.
    where : str
        Name of the input, for the message.
    first_sample : int
        Index of the first sample of ``signal`` in the input.
    sample_rate : int, optional
        Sample rate, to give the position in seconds too.

    Raises
    ------
    InvalidAudioError
        If a sample is not finite.

    Example
    -------
    >>> signal = torch.tensor([0.0, float("inf")])
    >>> try:
    ...     check_finite(signal, "x.wav", 16000, 8000)
    ... except InvalidAudioError as error:
    ...     print(error)
    x.wav: contains NaN or Inf samples (first at sample 16001, 2.000 s)
    """
    bad = ~torch.isfinite(signal)
    if bad.any():
        first = first_sample + int(bad.nonzero()[0, -1])
        place = f"sample {first}"
        if sample_rate:
            place += f", {first / sample_rate:.3f} s"
        raise InvalidAudioError(
            f"{where}: contains NaN or Inf samples (first at {place})"
        )


def same_file(first, second):
    """Whether two paths name the same file (after links, ``..``, hard
    links); the second one need not exist.

    Arguments
    ---------
    first : str or os.PathLike
        A path.
    second : str or os.PathLike
        Another path.

    Returns
    -------
    bool
        True if writing ``second`` would overwrite ``first``.

    Example
    -------
    >>> same_file("a/x.wav", "a/b/../x.wav"), same_file("x.wav", "y.wav")
    (True, False)
    """
    first, second = Path(first), Path(second)
    if first.resolve() == second.resolve():
        return True
    return first.exists() and second.exists() and first.samefile(second)


@contextlib.contextmanager
def write_errors_name(path):
    """Turns an error while writing ``path`` into an ``OSError`` naming
    ``path`` (not a temporary name used on the way).

    Arguments
    ---------
    path : pathlib.Path
        The file being written.

    Example
    -------
    >>> try:
    ...     with write_errors_name(Path("out.wav")):
    ...         raise PermissionError(13, "Permission denied", ".out.tmp")
    ... except OSError as error:
    ...     print(error)
    out.wav: cannot write it (Permission denied)
    """
    try:
        yield
    except (OSError, sf.LibsndfileError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise OSError(f"{path}: cannot write it ({reason})") from error


@contextlib.contextmanager
def replacing(path):
    """Yields a temporary name next to ``path`` to write the new file under;
    on success it is renamed over ``path``. So the file appears complete or
    not at all, and a symbolic link at ``path`` is replaced by the new file
    instead of being written through (the file it points to is untouched).

    Arguments
    ---------
    path : pathlib.Path
        The file to write; parent folders are created.

    Yields
    ------
    pathlib.Path
        The temporary name, with the same extension.

    Raises
    ------
    OSError
        Naming ``path`` if it is a folder or its folder cannot be made.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> _ = (folder / "source.txt").write_text("model")
    >>> (folder / "link.txt").symlink_to(folder / "source.txt")
    >>> with replacing(folder / "link.txt") as partial:
    ...     _ = partial.write_text("export")
    >>> (folder / "link.txt").read_text(), (folder / "source.txt").read_text()
    ('export', 'model')
    """
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        with write_errors_name(path):
            if path.is_dir():
                raise IsADirectoryError(21, "it is a folder", str(path))
            path.parent.mkdir(parents=True, exist_ok=True)
        yield partial
        with write_errors_name(path):
            os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def write_pieces(pieces, filename, sample_rate, subtype=None):
    """Writes mono pieces one after the other into an audio file; the file
    appears complete or not at all (see :func:`replacing`).

    Arguments
    ---------
    pieces : Iterable[torch.Tensor]
        Consecutive 1-D pieces of the signal.
    filename : str or os.PathLike
        Output file; the format follows the extension, parent folders are
        created.
    sample_rate : int
        Sample rate of the pieces.
    subtype : str, optional
        Sample format (e.g. ``"PCM_24"``, ``"FLOAT"``); default: the
        format's default (16-bit for wav and flac).

    Returns
    -------
    int
        How many samples were beyond full scale and clipped to [-1, 1] (an
        integer sample format cannot hold them).

    Example
    -------
    >>> path = getfixture("tmp_path") / "out.wav"
    >>> write_pieces([torch.zeros(5), torch.ones(3) / 2], path, 8000)
    0
    >>> sf.read(path)[0]
    array([0. , 0. , 0. , 0. , 0. , 0.5, 0.5, 0.5])
    >>> write_pieces([torch.tensor([1.5, -2.0, 0.5])], path, 8000)
    2
    """
    filename = check_output_format(filename)
    clipped = 0
    with replacing(filename) as partial:
        with write_errors_name(filename):
            out = sf.SoundFile(
                partial, "w", sample_rate, channels=1, subtype=subtype
            )
        with out:
            clips = out.subtype not in UNCLIPPED_SUBTYPES
            for piece in pieces:
                if clips:
                    clipped += int((piece.abs() > 1).sum())
                with write_errors_name(filename):
                    out.write(piece.numpy())
    return clipped


def output_subtype(filename, audio):
    """The input's sample format if the output's format can hold it (24-bit
    stays 24-bit, float stays float), else None (the format's default).

    Arguments
    ---------
    filename : pathlib.Path
        Output file (its extension gives the format).
    audio : soundfile.SoundFile
        The open input.

    Returns
    -------
    str or None
        A soundfile subtype.

    Example
    -------
    >>> path = getfixture("tmp_path") / "in.wav"
    >>> sf.write(path, [0.0, 0.5], 8000, subtype="PCM_24")
    >>> with sf.SoundFile(path) as audio:
    ...     output_subtype(Path("o.flac"), audio), output_subtype(
    ...         Path("o.ogg"), audio)
    ('PCM_24', None)
    """
    if sf.check_format(filename.suffix[1:].upper(), audio.subtype):
        return audio.subtype
    return None


def resolve_source(source, hparams_file="hyperparams.yaml"):
    """The model that ``source`` names: an exported model folder (returned
    as an absolute path) or a Hugging Face Hub repository id.

    ``user/name`` is taken for a Hub id unless a folder ``user`` exists
    here (then it is a mistyped path); an ``http(s)://`` address is kept
    for SpeechBrain to fetch; a bare name that is no folder here can be a
    model shipped with the package (:func:`shipped_model`, such as
    ``cmcr-enhance``'s default); anything else must be a folder.

    Arguments
    ---------
    source : str or os.PathLike
        Folder, Hub repository id or name of a shipped model.
    hparams_file : str
        Name of the hyperparameters file a model folder holds.

    Returns
    -------
    str
        The absolute folder path, or the Hub id or address.

    Raises
    ------
    ModelSourceError
        If it names no model folder (also a training output folder, which
        must be exported first) and is not a Hub id.

    Example
    -------
    >>> resolve_source("someuser/cmcr-model")
    'someuser/cmcr-model'
    >>> try:
    ...     resolve_source("no-such-model")
    ... except ModelSourceError as error:
    ...     print(error)  # doctest: +NORMALIZE_WHITESPACE
    no-such-model: no such model folder (a Hugging Face Hub repository id
    has the form user/name)
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        check_model_folder(path, hparams_file)
        return str(path.resolve())
    if path.exists():
        raise ModelSourceError(
            f"{text}: is a file, not a model folder (pass the folder that "
            f"holds {hparams_file})"
        )
    if HUB_ID.fullmatch(text) and not Path(text.split("/")[0]).is_dir():
        return text
    if text.startswith(("http://", "https://")):
        return text
    shipped = shipped_model(text, hparams_file)
    if shipped is not None:
        check_model_folder(shipped, hparams_file)
        return str(shipped)
    hints = []
    parent = path.parent
    if parent.is_dir() and parent != Path("."):
        models = sorted(
            child.name
            for child in parent.iterdir()
            if (child / hparams_file).is_file()
        )
        hints.append(f"{parent} holds: {', '.join(models) or 'no model'}")
    if len(path.parts) == 1:
        hints.append("a Hugging Face Hub repository id has the form user/name")
    hint = f" ({'; '.join(hints)})" if hints else ""
    raise ModelSourceError(f"{text}: no such model folder{hint}")


def shipped_model(name, hparams_file="hyperparams.yaml"):
    """The folder of a model shipped with the package, or None.

    The repository keeps its models in ``pretrained/<name>``; a wheel carries
    the default one (``speechbrain_cmcr.cli.DEFAULT_MODEL``) inside the
    package as ``speechbrain_cmcr/pretrained/<name>`` (see ``setup.py``).
    Both places are looked at, the installed package first.

    Arguments
    ---------
    name : str
        Name of the model folder.
    hparams_file : str
        Name of the hyperparameters file a model folder holds.

    Returns
    -------
    pathlib.Path or None
        The model folder, if there is one of that name.

    Example
    -------
    >>> from speechbrain_cmcr.cli import DEFAULT_MODEL
    >>> shipped_model(DEFAULT_MODEL).name == DEFAULT_MODEL
    True
    >>> shipped_model("no-such-model") is None
    True
    """
    if Path(name).name != name or name in ("", ".", ".."):
        return None
    package = Path(__file__).resolve().parent.parent
    for models in (package / "pretrained", package.parent / "pretrained"):
        if (models / name / hparams_file).is_file():
            return models / name
    return None


def check_model_folder(folder, hparams_file="hyperparams.yaml"):
    """Refuses a folder that is not an exported model, before its
    hyperparameters are loaded (a training run's would create folders).

    Arguments
    ---------
    folder : pathlib.Path
        The candidate model folder.
    hparams_file : str
        Name of its hyperparameters file.

    Raises
    ------
    ModelSourceError
        If it has no ``hparams_file``, or it is a training output folder
        (its yaml sets ``output_folder``, or it has only ``save/``).

    Example
    -------
    >>> run = getfixture("tmp_path")
    >>> _ = (run / "hyperparams.yaml").write_text("output_folder: results")
    >>> try:
    ...     check_model_folder(run)
    ... except ModelSourceError as error:
    ...     print(str(error).split(": ", 1)[1])  # doctest: +ELLIPSIS
    a training output folder, not an exported model: export it first ...
    """
    hparams = folder / hparams_file
    text = hparams.read_text("utf-8") if hparams.is_file() else None
    if text is None and not (folder / "save").is_dir():
        raise ModelSourceError(
            f"{folder}: no {hparams_file}, not a model folder"
        )
    if text is None or re.search(r"^output_folder:", text, re.M):
        raise ModelSourceError(
            f"{folder}: a training output folder, not an exported model: "
            "export it first (python -m speechbrain_cmcr.export "
            f"{folder} <export folder>) and pass the export folder"
        )


def claim_savedir(savedir, key):
    """Readies ``savedir`` to serve the model ``key`` describes: if it
    already does (its :data:`SAVEDIR_RECORD` says so), nothing changes;
    otherwise what was fetched into it for another model is removed: the
    recorded files, and links named like fetched files (removing a link
    loses no data).

    Arguments
    ---------
    savedir : pathlib.Path
        The savedir (may not exist yet).
    key : dict
        ``source``, ``hparams_file`` and ``revision`` of the model.

    Returns
    -------
    set of str
        Names of the files already fetched for this model.

    Raises
    ------
    ModelSourceError
        If it holds a hyperparameters or checkpoint file that no fetch put
        there (another model's folder?): nothing is removed then.

    Example
    -------
    >>> savedir = getfixture("tmp_path")
    >>> (savedir / "enhance_model.ckpt").symlink_to("/other/model.ckpt")
    >>> key = {"source": "/a", "hparams_file": "hyperparams.yaml",
    ...        "revision": None}
    >>> claim_savedir(savedir, key), list(savedir.iterdir())
    (set(), [])
    """
    if not savedir.is_dir():
        return set()
    try:
        record = json.loads((savedir / SAVEDIR_RECORD).read_text("utf-8"))
    except (OSError, ValueError):
        record = {}
    if {name: record.get(name) for name in key} == key:
        return set(record.get("files", []))
    fetched = set(record.get("files", []))
    stale = []
    for entry in savedir.iterdir():
        if entry.name == SAVEDIR_RECORD:
            continue
        model_file = entry.name == key["hparams_file"] or (
            entry.suffix == ".ckpt"
        )
        if entry.name in fetched or (model_file and entry.is_symlink()):
            stale.append(entry)
        elif model_file:
            raise ModelSourceError(
                f"savedir {savedir} holds {entry.name}, which was not "
                f"fetched from {key['source']} (another model's folder?); "
                "pass an empty or new savedir, or none"
            )
    for entry in stale:
        entry.unlink()
    (savedir / SAVEDIR_RECORD).unlink(missing_ok=True)
    return set()


class EnhanceSpeech(Pretrained):
    """A ready-to-use CMCR-Net speech enhancer.

    The hparams need ``sample_rate`` (the model's rate) and may set
    ``chunk_seconds`` / ``chunk_overlap_seconds`` for long files; the modules
    need ``enhance_model`` with an ``enhance(noisy, lengths)`` method.

    Inputs at any sample rate are resampled to the model's rate; multichannel
    files are mixed down to mono by averaging the channels. Silent (all-zero)
    inputs come back as silence, with a :class:`SilentInputWarning`; NaN/Inf
    samples, empty or unreadable inputs raise :class:`InvalidAudioError`
    (a ``ValueError``) naming the input. Tensors of any float dtype are
    converted to float32, the model's.

    Arguments
    ---------
    See ``speechbrain.inference.interfaces.Pretrained``.

    Example
    -------
    >>> from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8)
    >>> enhancer = EnhanceSpeech(
    ...     modules={"enhance_model": model},
    ...     hparams={"sample_rate": 16000},
    ...     run_opts={"device": "cpu"},
    ... )
    >>> enhancer.enhance_batch(torch.randn(2, 1000)).shape
    torch.Size([2, 1000])

    From an exported folder or Hub repository (see
    ``speechbrain_cmcr.export``)::

        enhancer = EnhanceSpeech.from_hparams(source="folder-or-repo-id")
        enhancer.enhance_file("noisy.wav", output_filename="enhanced.wav")
    """

    HPARAMS_NEEDED = ["sample_rate"]
    MODULES_NEEDED = ["enhance_model"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        missing = [
            name for name in self.MODULES_NEEDED if name not in self.mods
        ]
        if missing:
            raise ValueError(f"Need modules {missing} in the hparams")

    @classmethod
    def from_hparams(
        cls, source, hparams_file="hyperparams.yaml", savedir=None, **kwargs
    ):
        """Loads a model folder or Hub repository, checking first that
        ``source`` names one (:func:`resolve_source`) and that ``savedir``
        serves no other model (:func:`claim_savedir`).

        Arguments
        ---------
        source : str or os.PathLike
            Exported model folder or Hub repository id (``user/name``).
        hparams_file : str
            Name of the hyperparameters file in ``source``.
        savedir : str or os.PathLike, optional
            Folder to link (or copy) the model's files into. Default: none,
            the files are used in place (local folder) or from the Hugging
            Face cache (Hub). A savedir filled from another source is
            emptied of what was fetched into it, then filled again.
        **kwargs : dict
            Passed to SpeechBrain's ``Pretrained.from_hparams``
            (``run_opts``, ``local_strategy``, ``fetch_config``, ...).

        Returns
        -------
        EnhanceSpeech
            The loaded enhancer.

        Raises
        ------
        ModelSourceError
            If ``source`` names no model, or ``savedir`` holds files of
            another model that it did not fetch.
        """
        source = resolve_source(source, hparams_file)
        local = Path(source).is_absolute()
        if savedir is not None and local and same_file(savedir, source):
            savedir = None  # the model folder itself: use it in place
        if savedir is None:
            return super().from_hparams(source, hparams_file, **kwargs)
        fetch_config = kwargs.get("fetch_config")
        key = {
            "source": source,
            "hparams_file": hparams_file,
            "revision": getattr(fetch_config, "revision", None),
        }
        savedir = Path(savedir)
        known = claim_savedir(savedir, key)
        before = set(os.listdir(savedir)) if savedir.is_dir() else set()
        try:
            return super().from_hparams(
                source, hparams_file, savedir=savedir, **kwargs
            )
        finally:
            if savedir.is_dir():
                fetched = {
                    entry.name
                    for entry in savedir.iterdir()
                    if entry.name not in before | {SAVEDIR_RECORD}
                    and (entry.is_symlink() or not entry.is_dir())
                }
                record = {**key, "files": sorted(known | fetched)}
                (savedir / SAVEDIR_RECORD).write_text(
                    json.dumps(record, indent=2), encoding="utf-8"
                )

    def enhance_batch(self, noisy, lengths=None):
        """Enhances a batch of waveforms at the model's sample rate, whole
        (no chunking: memory grows with the length).

        Arguments
        ---------
        noisy : torch.Tensor
            Float waveforms ``[batch, time]``; float64 (what
            ``torch.from_numpy(soundfile.read(path)[0])`` gives) and other
            float dtypes are converted to float32.
        lengths : torch.Tensor, optional
            Relative lengths in (0, 1], shape ``[batch]``.

        Returns
        -------
        torch.Tensor
            Enhanced waveforms, float32, same shape, on the model's device.
        """
        check_batch(noisy)
        noisy = noisy.float()
        lengths = check_lengths(lengths, noisy)
        if (noisy.abs().amax(dim=1) == 0).any():
            warnings.warn(
                "noisy: all-zero signal(s) in the batch; their output is "
                "all zero",
                SilentInputWarning,
                stacklevel=2,
            )
        return self._enhance(noisy.to(self.device), lengths.to(self.device))

    def enhance_file(
        self,
        path,
        output_filename=None,
        output_sample_rate=None,
        chunk_seconds=None,
        overlap_seconds=None,
    ):
        """Enhances an audio file in overlapping chunks.

        Arguments
        ---------
        path : str or os.PathLike
            Input file, any format soundfile reads (wav, flac, ogg, ...), any
            sample rate and number of channels (mixed down to mono); or a
            file of a Hugging Face Hub repository, ``"user/name/file.wav"``,
            fetched into the Hugging Face cache (see :func:`fetch_audio`).
        output_filename : str or os.PathLike, optional
            Where to write the result (format from the extension; never the
            input file). The output is written as it is computed, so memory
            stays bounded for any length; without it, the whole waveform is
            returned. It keeps the input's sample format (24-bit, float, ...)
            where the output format allows it, else the format's default
            (16-bit for wav and flac), warning with
            :class:`ClippedOutputWarning` if samples beyond full scale had to
            be clipped.
        output_sample_rate : int or "input", optional
            Rate of the result: None for the model's rate (default),
            ``"input"`` for the input file's rate, or a rate in Hz.
        chunk_seconds : float, optional
            Chunk duration; default ``hparams.chunk_seconds`` or 10 s.
        overlap_seconds : float, optional
            Cross-faded overlap of consecutive chunks, at most half a chunk;
            default ``hparams.chunk_overlap_seconds`` or 1 s.

        Returns
        -------
        torch.Tensor or pathlib.Path
            The enhanced waveform ``[time]`` (CPU) without
            ``output_filename``, else the path of the written file.

        Example
        -------
        >>> from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
        >>> enhancer = EnhanceSpeech(
        ...     modules={"enhance_model": CMCRNet(
        ...         n_fft=64, win_length=4, hop_length=2,
        ...         encoder_channels=[4, 8], num_modules=1, attention_dim=8)},
        ...     hparams={"sample_rate": 16000},
        ...     run_opts={"device": "cpu"},
        ... )
        >>> noisy = getfixture("tmp_path") / "noisy.wav"
        >>> sf.write(noisy, 0.1 * torch.randn(4410, 2).numpy(), 44100)
        >>> enhancer.enhance_file(noisy).shape
        torch.Size([1600])
        >>> out = enhancer.enhance_file(noisy, noisy.with_name("out.flac"),
        ...                             output_sample_rate="input")
        >>> sf.info(out).frames, sf.info(out).samplerate
        (4410, 44100)
        """
        path = fetch_audio(path)
        if output_filename is not None:
            output_filename = check_output_format(output_filename)
            if same_file(path, output_filename):
                raise InvalidAudioError(
                    f"{output_filename}: is the input file; writing the "
                    "output there would overwrite it"
                )
        peaks, clipped = [], 0
        with open_audio(path) as audio:
            rate = self._output_rate(output_sample_rate, audio.samplerate)
            pieces = self._enhance_audio(
                audio,
                rate,
                self._chunk_setting("chunk_seconds", chunk_seconds),
                self._chunk_setting("chunk_overlap_seconds", overlap_seconds),
                peaks,
            )
            if output_filename is None:
                result = torch.cat(list(pieces))
            else:
                clipped = write_pieces(
                    pieces,
                    output_filename,
                    rate,
                    output_subtype(output_filename, audio),
                )
                result = output_filename
        if max(peaks) == 0:
            warnings.warn(
                f"{path}: all-zero input; the output is all zero",
                SilentInputWarning,
                stacklevel=2,
            )
        if clipped:
            warnings.warn(
                f"{output_filename}: {clipped} samples beyond full scale "
                "clipped to [-1, 1] (write a float .wav to keep them)",
                ClippedOutputWarning,
                stacklevel=2,
            )
        return result

    def forward(self, noisy, lengths=None):
        """Same as :meth:`enhance_batch`."""
        return self.enhance_batch(noisy, lengths)

    def _enhance(self, noisy, lengths):
        """Runs the model; all-zero rows stay exactly zero."""
        silent = noisy.abs().amax(dim=1) == 0
        if silent.all():
            return torch.zeros_like(noisy)
        with torch.no_grad():
            enhanced = self.mods.enhance_model.enhance(noisy, lengths)
        return enhanced.masked_fill(silent[:, None], 0.0)

    def _enhance_audio(
        self, audio, output_rate, chunk_seconds, overlap_seconds, peaks
    ):
        """Yields the enhanced, cross-faded pieces of an open file; appends
        the peak of each input block to ``peaks``."""
        chunk, overlap = chunk_plan(
            audio.samplerate,
            [self.hparams.sample_rate, output_rate],
            chunk_seconds,
            overlap_seconds,
        )
        chunks = self._enhanced_chunks(
            audio, chunk, overlap, output_rate, peaks
        )
        return crossfade_chunks(
            chunks, overlap * output_rate // audio.samplerate
        )

    def _enhanced_chunks(self, audio, chunk, overlap, output_rate, peaks):
        """Yields the enhanced overlapping chunks of an open file, resampled
        to ``output_rate``; appends the peak of each block to ``peaks``."""
        to_model = Resample(audio.samplerate, self.hparams.sample_rate)
        to_output = Resample(self.hparams.sample_rate, output_rate)
        ratio = output_rate / audio.samplerate  # trims resampling round-up
        blocks = audio.blocks(chunk, overlap, dtype="float32", always_2d=True)
        for index, block in enumerate(blocks):
            mono = torch.from_numpy(block).mean(dim=1)
            check_finite(
                mono, audio.name, index * (chunk - overlap), audio.samplerate
            )
            peaks.append(float(mono.abs().max()))
            noisy = to_model(mono)[None].to(self.device)
            enhanced = to_output(self._enhance(noisy, None)[0].cpu())
            yield enhanced[: math.ceil(len(mono) * ratio)]

    def _output_rate(self, output_sample_rate, input_rate):
        """Resolves the ``output_sample_rate`` argument to Hz."""
        if output_sample_rate is None:
            return self.hparams.sample_rate
        if output_sample_rate == "input":
            return input_rate
        if (
            isinstance(output_sample_rate, int)
            and not isinstance(output_sample_rate, bool)
            and output_sample_rate > 0
        ):
            return output_sample_rate
        raise ValueError(
            "output_sample_rate must be None, 'input' or a positive int, "
            f"got {output_sample_rate!r}"
        )

    def _chunk_setting(self, name, value):
        """An explicit value, else the hparams', else the default."""
        if value is not None:
            return value
        defaults = {
            "chunk_seconds": DEFAULT_CHUNK_SECONDS,
            "chunk_overlap_seconds": DEFAULT_OVERLAP_SECONDS,
        }
        return getattr(self.hparams, name, defaults[name])


def check_batch(noisy):
    """Refuses what is not a finite float ``[batch, time]`` tensor.

    Arguments
    ---------
    noisy : torch.Tensor
        The candidate batch.

    Raises
    ------
    AudioTypeError
        If it is not a floating point tensor.
    InvalidAudioError
        If it has another shape (also ``[time, channels]``, soundfile's
        layout: more rows than columns and at most ``MAX_CHANNELS``
        columns), no samples, or NaN/Inf.

    Example
    -------
    >>> try:
    ...     check_batch(torch.zeros(2, 0))
    ... except InvalidAudioError as error:
    ...     print(error)
    noisy: contains no samples
    >>> try:
    ...     check_batch(torch.zeros(16000, 2))
    ... except InvalidAudioError as error:
    ...     print(error)  # doctest: +NORMALIZE_WHITESPACE
    noisy: shape [16000, 2] looks like [time, channels] (soundfile's
    layout), expected [batch, time]: pass noisy.mean(dim=1)[None] to
    enhance its mono mix
    """
    if not isinstance(noisy, torch.Tensor) or not noisy.is_floating_point():
        kind = type(noisy).__name__
        if isinstance(noisy, torch.Tensor):
            kind = f"a tensor of {noisy.dtype}"
        raise AudioTypeError(
            f"noisy: expected a float torch.Tensor [batch, time], got {kind}"
        )
    if noisy.dim() != 2:
        raise InvalidAudioError(
            f"noisy: expected shape [batch, time], got {list(noisy.shape)} "
            "(use noisy[None] for a single signal)"
        )
    if noisy.numel() == 0:
        raise InvalidAudioError("noisy: contains no samples")
    if noisy.shape[1] < noisy.shape[0] and noisy.shape[1] <= MAX_CHANNELS:
        raise InvalidAudioError(
            f"noisy: shape {list(noisy.shape)} looks like [time, channels] "
            "(soundfile's layout), expected [batch, time]: pass "
            "noisy.mean(dim=1)[None] to enhance its mono mix"
        )
    check_finite(noisy, "noisy")


def check_lengths(lengths, noisy):
    """Returns valid relative lengths for ``noisy`` (all ones if None).

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative lengths in (0, 1], shape ``[batch]``.
    noisy : torch.Tensor
        The batch ``[batch, time]``.

    Returns
    -------
    torch.Tensor
        The lengths.

    Example
    -------
    >>> check_lengths(None, torch.zeros(2, 5))
    tensor([1., 1.])
    >>> try:
    ...     check_lengths(torch.tensor([1.5, 1.0]), torch.zeros(2, 5))
    ... except InvalidAudioError as error:
    ...     print(error)
    lengths: expected relative lengths in (0, 1] of shape [2]
    """
    if lengths is None:
        return torch.ones(noisy.shape[0])
    if (
        not isinstance(lengths, torch.Tensor)
        or lengths.shape != noisy.shape[:1]
        or not ((lengths > 0) & (lengths <= 1)).all()
    ):
        raise InvalidAudioError(
            "lengths: expected relative lengths in (0, 1] of shape "
            f"[{noisy.shape[0]}]"
        )
    return lengths
