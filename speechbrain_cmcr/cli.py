"""``cmcr-enhance``: enhance audio files and folders with a CMCR-Net model.

Example::

    cmcr-enhance noisy/ extra.flac --output-dir enhanced/ \\
        --model someuser/cmcr-model

Folders are searched recursively for .wav, .flac and .ogg files and their
layout is kept under the output folder; outputs keep the input's name and
format (sample format too, where the format allows it). Files already
enhanced are skipped unless ``--overwrite``. A file that fails is reported
and the others go on; the exit status is 1 if any file failed, 2 if nothing
could start (bad model, device or output folder, no inputs), after one line
on stderr.

With ``--stream`` and a causal model, it enhances in real time instead: raw
16-bit little-endian mono PCM at the model's rate (16 kHz) from standard
input to standard output, block by block::

    arecord -f S16_LE -r 16000 -c 1 -t raw \\
        | cmcr-enhance --stream --model causal-model/ \\
        | aplay -f S16_LE -r 16000 -c 1 -t raw

Authors
-------
speechbrain-cmcr contributors
"""

import argparse
import contextlib
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import List, NamedTuple, Tuple

import numpy as np
from tqdm import tqdm

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
# The default model, by name: the folder pretrained/<name> of the
# repository, which a wheel carries inside the package (setup.py reads this
# line); see speechbrain_cmcr.inference.enhancement.shipped_model.
DEFAULT_MODEL = "cmcr-dns-small"
# --stream: PCM read and written, one hop of the default STFT a block.
PCM_DTYPE = np.dtype("<i2")
PCM_SCALE = 32768.0
DEFAULT_BLOCK_MS = 16.0
# Options of the file mode, refused with --stream, as ``(dest, flag)``.
FILE_OPTIONS = [
    ("inputs", "input files"),
    ("output_dir", "--output-dir"),
    ("overwrite", "--overwrite"),
    ("input_rate", "--input-rate"),
    ("device", "--device"),
]


class Job(NamedTuple):
    """One input file and where its enhanced version goes."""

    source: Path
    output: Path


class Report(NamedTuple):
    """What happened to the files."""

    enhanced: int
    skipped: int
    failures: List[Tuple[Path, str]]


class UsageError(Exception):
    """A problem that stops the whole run before any file."""


def build_parser():
    """The ``cmcr-enhance`` argument parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser.

    Example
    -------
    >>> args = build_parser().parse_args(["in.wav", "-o", "out"])
    >>> args.inputs, args.output_dir, args.overwrite, args.stream
    (['in.wav'], 'out', False, False)
    """
    parser = argparse.ArgumentParser(
        prog="cmcr-enhance",
        description=(
            "Remove noise from speech recordings with a CMCR-Net model. "
            "Inputs of any sample rate and channel count are resampled to "
            "the model's rate and mixed down to mono; long recordings are "
            "processed in overlapping chunks with bounded memory."
        ),
        epilog=(
            "Exit status: 0 if every file was enhanced or skipped, 1 if some "
            "file failed (the others are still written), 2 if the run could "
            "not start. With --stream: 0 at the end of the input or when the "
            "reader closes the pipe, 130 on Ctrl-C."
        ),
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        help="audio files, or folders searched recursively for "
        + ", ".join(AUDIO_SUFFIXES)
        + " files",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        help="folder for the enhanced files (same names, formats and "
        "sub-folders as the inputs); needed with inputs",
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="exported model folder, Hugging Face Hub repository id "
        "(user/name) or name of a model shipped with the package; default: "
        "%(default)s (shipped)",
    )
    parser.add_argument(
        "--savedir",
        help="folder to link the model files into (default: none; a local "
        "folder is used in place, a Hub model from the Hugging Face cache)",
    )
    parser.add_argument(
        "--device",
        help="torch device: cpu, cuda or cuda:N (default: cuda if available)",
    )
    parser.add_argument(
        "--input-rate",
        action="store_true",
        help="write each output at its input's sample rate (default: the "
        "model's rate)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="enhance again files whose output exists (default: skip them)",
    )
    stream = parser.add_argument_group(
        "real time",
        "--stream takes no inputs or --output-dir: it reads raw 16-bit "
        "little-endian mono PCM at the model's rate (16 kHz) from standard "
        "input and writes the enhanced PCM to standard output, block by "
        "block, on one CPU thread. It needs a causal model (--model). Its "
        "output is one STFT window behind the input (n_fft - 1 samples: 511, "
        "31.9 ms, for the default 512-point FFT), plus up to one block.",
    )
    stream.add_argument(
        "--stream",
        action="store_true",
        help="enhance standard input to standard output in real time",
    )
    stream.add_argument(
        "--block-ms",
        type=positive_float,
        help="block read and written at a time, in ms (default: "
        f"{DEFAULT_BLOCK_MS:g}, one 256-sample hop at 16 kHz)",
    )
    stream.add_argument(
        "--delayed",
        action="store_true",
        help="keep the latency in the output: n_fft - 1 zero samples first "
        "(the output is that much longer than the input), so that each "
        "block read gives a block written at once (default: they are left "
        "out, and output sample i is input sample i enhanced)",
    )
    return parser


def positive_float(text):
    """An ``argparse`` type: a float above zero.

    Arguments
    ---------
    text : str
        The option's value.

    Returns
    -------
    float
        The value.

    Example
    -------
    >>> positive_float("16")
    16.0
    """
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not above zero")
    return value


def check_mode(parser, args):
    """Refuses options of the other mode (files or ``--stream``), and file
    mode without inputs or output folder, as ``argparse`` errors (exit 2).

    Arguments
    ---------
    parser : argparse.ArgumentParser
        The parser (from :func:`build_parser`).
    args : argparse.Namespace
        Its parsed arguments.

    Example
    -------
    >>> parser = build_parser()
    >>> check_mode(parser, parser.parse_args(["--stream"]))
    """
    if args.stream:
        given = [flag for dest, flag in FILE_OPTIONS if getattr(args, dest)]
        if given:
            parser.error(
                "--stream reads standard input and writes standard output, "
                f"on the CPU: leave out {', '.join(given)}"
            )
        return
    if args.block_ms is not None or args.delayed:
        parser.error("--block-ms and --delayed need --stream")
    if not args.inputs or args.output_dir is None:
        parser.error(
            "give input files or folders and --output-dir, or --stream"
        )


def model_source(model):
    """Checks ``--model`` and returns it as a source for ``from_hparams``.

    Arguments
    ---------
    model : str
        Folder, Hub repository id or name of a shipped model.

    Returns
    -------
    str
        The absolute folder path or the Hub id (see ``resolve_source``).

    Raises
    ------
    UsageError
        If it is neither a model folder nor a Hub id.

    Example
    -------
    >>> model_source("someuser/cmcr-model")
    'someuser/cmcr-model'
    >>> try:
    ...     model_source("./no/such/folder")
    ... except UsageError as error:
    ...     print(error)
    --model ./no/such/folder: no such model folder
    """
    from speechbrain_cmcr.inference.enhancement import (
        ModelSourceError,
        resolve_source,
        shipped_model,
    )

    if (
        model == DEFAULT_MODEL
        and not Path(model).is_dir()
        and shipped_model(model) is None
    ):
        raise UsageError(
            f"the default model folder {DEFAULT_MODEL} is missing from this "
            "installation; pass --model with an exported model folder or a "
            "Hub repository id"
        )
    try:
        return resolve_source(model)
    except ModelSourceError as error:
        raise UsageError(f"--model {error}") from error


def check_device(device):
    """Refuses a ``--device`` that torch does not know or that is absent.

    Arguments
    ---------
    device : str or None
        The option (None: the CPU).

    Raises
    ------
    UsageError
        If it is not ``cpu``, ``cuda`` or ``cuda:N`` of a present GPU.

    Example
    -------
    >>> try:
    ...     check_device("gpu")
    ... except UsageError as error:
    ...     print(error)
    --device gpu: not a device here (use cpu, cuda or cuda:N)
    """
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise UsageError(
            f"--device {device}: not a device here (use cpu, cuda or cuda:N)"
        )
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"--device {device}: no CUDA GPU is available here; use "
            "--device cpu"
        )
    if parsed.type == "cuda" and (parsed.index or 0) >= (
        count := torch.cuda.device_count()
    ):
        raise UsageError(
            f"--device {device}: there are {count} CUDA GPU(s), numbered from 0"
        )


def check_output_dir(output_dir):
    """Refuses an output folder that cannot be made or written, before the
    model is loaded (nothing is created here).

    Arguments
    ---------
    output_dir : str or os.PathLike
        The ``--output-dir``.

    Raises
    ------
    UsageError
        If it, or the folder it would be made in, is a file or not writable.

    Example
    -------
    >>> file = getfixture("tmp_path") / "notes.txt"
    >>> _ = file.write_text("")
    >>> try:
    ...     check_output_dir(file / "enhanced")
    ... except UsageError as error:
    ...     print(error)  # doctest: +ELLIPSIS
    --output-dir ...enhanced: ...notes.txt is a file, not a folder
    """
    existing = Path(output_dir).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(
            f"--output-dir {output_dir}: {existing} is a file, not a folder"
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UsageError(
            f"--output-dir {output_dir}: cannot write in {existing} "
            f"({error.strerror})"
        ) from error


def plan_jobs(inputs, output_dir):
    """Lists the files to enhance and their outputs.

    Arguments
    ---------
    inputs : list of str
        Files or folders (searched recursively for audio files; anything
        under ``output_dir`` is left out). A file named twice is done once.
    output_dir : str or os.PathLike
        Output folder.

    Returns
    -------
    list of Job
        One job per input file, in a stable order.

    Raises
    ------
    UsageError
        If there is no file to enhance.

    Example
    -------
    >>> plan_jobs(["a/x.wav", "a/../a/x.wav"], "out")
    [Job(source=PosixPath('a/x.wav'), output=PosixPath('out/x.wav'))]
    """
    output_dir = Path(output_dir)
    jobs, planned, left_out = [], set(), 0
    for item in map(Path, inputs):
        candidates = [Job(item, output_dir / item.name)]
        if item.is_dir():
            found = [
                source
                for source in sorted(item.rglob("*"))
                if source.suffix.lower() in AUDIO_SUFFIXES and source.is_file()
            ]
            candidates = [
                Job(source, output_dir / source.relative_to(item))
                for source in found
                if not source.resolve().is_relative_to(output_dir.resolve())
            ]
            left_out += len(found) - len(candidates)
        for job in candidates:
            key = (job.source.resolve(), job.output.resolve())
            if key not in planned:
                planned.add(key)
                jobs.append(job)
    if not jobs:
        reason = "no audio files found in the inputs"
        if left_out:
            reason += (
                f" ({left_out} left out as they are inside the output folder "
                f"{output_dir}: choose an output folder outside the inputs)"
            )
        raise UsageError(reason)
    return jobs


def conflict(job, earlier_outputs):
    """Why ``job`` must not run, or None.

    Arguments
    ---------
    job : Job
        The job.
    earlier_outputs : dict
        Output path -> source of the jobs before it.

    Returns
    -------
    str or None
        The reason.

    Example
    -------
    >>> conflict(Job(Path("a.wav"), Path("a.wav")), {})
    'the output would overwrite the input'
    """
    from speechbrain_cmcr.inference.enhancement import same_file

    if same_file(job.source, job.output):
        return "the output would overwrite the input"
    if job.output in earlier_outputs:
        return f"same output name as {earlier_outputs[job.output]}"
    return None


def enhance_all(enhancer, jobs, overwrite=False, output_sample_rate=None):
    """Enhances each job's file, skipping done ones and collecting failures;
    failures and warnings are printed as they come, one line each.

    Arguments
    ---------
    enhancer : EnhanceSpeech
        The model.
    jobs : list of Job
        What to enhance.
    overwrite : bool
        Enhance again when the output exists.
    output_sample_rate : "input" or None
        Passed to ``enhance_file``.

    Returns
    -------
    Report
        Counts and ``(file, error message)`` failures.

    Example
    -------
    >>> import soundfile as sf, torch
    >>> from speechbrain_cmcr import EnhanceSpeech
    >>> from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
    >>> enhancer = EnhanceSpeech(
    ...     modules={"enhance_model": CMCRNet(
    ...         n_fft=64, win_length=4, hop_length=2,
    ...         encoder_channels=[4, 8], num_modules=1, attention_dim=8)},
    ...     hparams={"sample_rate": 16000},
    ...     run_opts={"device": "cpu"},
    ... )
    >>> folder = getfixture("tmp_path")
    >>> sf.write(folder / "in.wav", torch.rand(800).numpy() - 0.5, 16000)
    >>> jobs = plan_jobs([folder / "in.wav", folder / "gone.wav"], folder / "o")
    >>> report = enhance_all(enhancer, jobs)
    >>> report.enhanced, report.skipped, len(report.failures)
    (1, 0, 1)
    >>> enhance_all(enhancer, jobs).skipped
    1
    """
    enhanced, skipped, failures, outputs = 0, 0, [], {}
    for job in tqdm(jobs, desc="cmcr-enhance", unit="file"):
        error = conflict(job, outputs)
        outputs[job.output] = job.source
        if error is None and job.output.exists() and not overwrite:
            skipped += 1
            continue
        if error is None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                error = _enhance_one(enhancer, job, output_sample_rate)
            for warning in caught:
                message = _about(job.source, str(warning.message))
                tqdm.write(f"WARNING {job.source}: {message}", file=sys.stderr)
        if error is None:
            enhanced += 1
        else:
            failures.append((job.source, error))
            tqdm.write(f"FAILED {job.source}: {error}", file=sys.stderr)
    return Report(enhanced, skipped, failures)


def _enhance_one(enhancer, job, output_sample_rate):
    """Enhances one file; returns None, or the error message if it failed.

    Arguments
    ---------
    enhancer : EnhanceSpeech
        The model.
    job : Job
        The file and its output.
    output_sample_rate : "input" or None
        Passed to ``enhance_file``.

    Returns
    -------
    str or None
        The error message (without the input's name).
    """
    try:
        enhancer.enhance_file(
            job.source, job.output, output_sample_rate=output_sample_rate
        )
    except (ValueError, OSError, RuntimeError) as error:
        return _about(job.source, error_message(error))
    return None


def error_message(error):
    """An error as one line: ``path: reason`` for a file system error.

    Arguments
    ---------
    error : Exception
        The error.

    Returns
    -------
    str
        Its message.

    Example
    -------
    >>> error_message(FileNotFoundError(2, "audio file not found", "a.wav"))
    'a.wav: audio file not found'
    """
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{os.fsdecode(error.filename)}: {error.strerror}"
    return str(error)


def _about(source, message):
    """``message`` without the ``source: `` it starts with, if it does."""
    return message.removeprefix(f"{source}: ")


def print_report(report):
    """Prints the summary line, and the failures on stderr.

    Arguments
    ---------
    report : Report
        What happened.

    Example
    -------
    >>> print_report(Report(2, 1, []))
    2 enhanced, 1 skipped (already done), 0 failed
    """
    print(
        f"{report.enhanced} enhanced, {report.skipped} skipped (already "
        f"done), {len(report.failures)} failed"
    )
    for source, message in report.failures:
        print(f"  {source}: {message}", file=sys.stderr)


def _load_enhancer(source, savedir=None, device=None):
    """Loads the model (imported here so that ``--help`` stays fast).

    Arguments
    ---------
    source : str
        Model folder or Hub id.
    savedir : str, optional
        Where to keep the fetched files.
    device : str, optional
        Torch device.

    Returns
    -------
    EnhanceSpeech
        The loaded enhancer.
    """
    from speechbrain_cmcr.inference.enhancement import EnhanceSpeech

    run_opts = {"device": device} if device else None
    return EnhanceSpeech.from_hparams(
        source=source, savedir=savedir, run_opts=run_opts
    )


def main(argv=None):
    """Runs ``cmcr-enhance``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 success, 1 some file failed, 2 the run could not
        start (and see :func:`stream_main`).

    Example
    -------
    >>> main(["noisy.wav", "-o", "enhanced", "--model", "./no/model"])
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    check_mode(parser, args)
    if args.stream:
        return stream_main(args)
    try:
        jobs = plan_jobs(args.inputs, args.output_dir)
        check_output_dir(args.output_dir)
        check_device(args.device)
        enhancer = _load_enhancer(
            model_source(args.model), args.savedir, args.device
        )
    except (UsageError, ValueError, OSError, RuntimeError) as error:
        print(f"cmcr-enhance: error: {error_message(error)}", file=sys.stderr)
        return 2
    report = enhance_all(
        enhancer,
        jobs,
        overwrite=args.overwrite,
        output_sample_rate="input" if args.input_rate else None,
    )
    print_report(report)
    return 1 if report.failures else 0


def pcm_blocks(source, block_samples):
    """Reads raw 16-bit little-endian PCM in blocks.

    Arguments
    ---------
    source : io.BufferedIOBase
        Binary input (standard input); each read waits for a whole block.
    block_samples : int
        Samples a block (the last one may be shorter; a last odd byte is
        left out).

    Yields
    ------
    numpy.ndarray
        float32 samples in [-1, 1).

    Example
    -------
    >>> import io
    >>> data = io.BytesIO(np.array([0, 16384, -32768], "<i2").tobytes())
    >>> [block.tolist() for block in pcm_blocks(data, 2)]
    [[0.0, 0.5], [-1.0]]
    """
    pending = b""
    while data := source.read(PCM_DTYPE.itemsize * block_samples):
        data = pending + data
        whole = len(data) - len(data) % PCM_DTYPE.itemsize
        pending = data[whole:]
        pcm = np.frombuffer(data[:whole], PCM_DTYPE)
        yield pcm.astype(np.float32) / np.float32(PCM_SCALE)


def to_pcm(samples):
    """Float samples as raw 16-bit little-endian PCM, rounded and clipped to
    full scale.

    Arguments
    ---------
    samples : numpy.ndarray
        The samples.

    Returns
    -------
    bytes
        The PCM.

    Example
    -------
    >>> np.frombuffer(to_pcm(np.array([0.5, -2.0, 1.0])), "<i2")
    array([ 16384, -32768,  32767], dtype=int16)
    """
    scaled = np.round(np.asarray(samples, np.float64) * PCM_SCALE)
    info = np.iinfo(PCM_DTYPE)
    return np.clip(scaled, info.min, info.max).astype(PCM_DTYPE).tobytes()


def stream_pcm(enhancer, source, sink, block_samples, aligned=True):
    """Enhances raw PCM from ``source`` into ``sink`` block by block,
    flushing ``sink`` after each block, until ``source`` ends.

    Arguments
    ---------
    enhancer : speechbrain_cmcr.inference.streaming.StreamingEnhancer
        A new stream of a causal model (PCM at its sample rate).
    source : io.BufferedIOBase
        Binary input of 16-bit little-endian mono PCM.
    sink : io.BufferedIOBase
        Binary output, the enhanced PCM.
    block_samples : int
        Samples read at a time.
    aligned : bool
        Leave out the first ``enhancer.latency_samples`` output samples
        (zeros), so that the output has the input's length and its sample
        i is input sample i enhanced; if False, each block read gives a
        block written at once, and the output is the latency longer.

    Returns
    -------
    int
        Samples written.

    Example
    -------
    >>> import io
    >>> from speechbrain_cmcr.inference.streaming import StreamingEnhancer
    >>> from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8, causal=True)
    >>> noisy = io.BytesIO(to_pcm(0.1 * np.random.randn(1000)))
    >>> stream_pcm(StreamingEnhancer(model), noisy, io.BytesIO(), 32)
    1000
    """
    skip = enhancer.latency_samples if aligned else 0
    written = 0
    for block in pcm_blocks(source, block_samples):
        skip, count = _write_pcm(sink, enhancer(block).numpy(), skip)
        written += count
    skip, count = _write_pcm(sink, enhancer.flush().numpy(), skip)
    return written + count


def _write_pcm(sink, samples, skip):
    """Writes ``samples`` but the first ``skip`` ones and flushes; returns
    (samples still to skip, samples written)."""
    kept = samples[skip:]
    sink.write(to_pcm(kept))
    sink.flush()
    return skip - (len(samples) - len(kept)), len(kept)


def stream_main(args):
    """Runs ``cmcr-enhance --stream``: standard input to standard output.
    Anything printed goes to stderr, so that standard output holds the PCM
    alone. A reader that closes the pipe (``aplay`` stopped) ends the
    stream quietly (exit status 0), and so does Ctrl-C (130).

    Arguments
    ---------
    args : argparse.Namespace
        Parsed ``--stream`` arguments (see :func:`build_parser`).

    Returns
    -------
    int
        Exit status: 0, 2 if the stream could not start, 130 if interrupted.
    """
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    with contextlib.redirect_stdout(sys.stderr):
        try:
            for stream, name in [(source, "input"), (sink, "output")]:
                if stream.isatty():
                    raise UsageError(
                        f"--stream: the standard {name} is a terminal; pipe "
                        "raw 16-bit PCM through cmcr-enhance --stream"
                    )
            enhancer = _load_stream(model_source(args.model), args.savedir)
        except (UsageError, ValueError, OSError, RuntimeError) as error:
            print(
                f"cmcr-enhance: error: {error_message(error)}", file=sys.stderr
            )
            return 2
        block_ms = args.block_ms or DEFAULT_BLOCK_MS
        block = max(1, round(block_ms * enhancer.sample_rate / 1000))
        print(
            f"cmcr-enhance: streaming {enhancer.sample_rate} Hz 16-bit mono "
            f"PCM in blocks of {block} samples; latency "
            f"{enhancer.latency_samples} samples "
            f"({enhancer.latency_ms:.1f} ms) plus up to one block",
            file=sys.stderr,
        )
        try:
            stream_pcm(enhancer, source, sink, block, not args.delayed)
        except BrokenPipeError:  # the reader is gone: nothing left to do
            return 0
        except KeyboardInterrupt:
            return 130
    return 0


def _load_stream(source, savedir=None):
    """Loads a causal model as a new stream on the CPU, on one thread.

    Arguments
    ---------
    source : str
        Model folder or Hub id.
    savedir : str, optional
        Where to keep the fetched files.

    Returns
    -------
    speechbrain_cmcr.inference.streaming.StreamingEnhancer
        The stream (ValueError if the model is not causal).
    """
    import torch

    from speechbrain_cmcr.inference.streaming import StreamingEnhancer

    # One frame (a hop) at a time is too little work to share: on 2 cores,
    # 2 threads made the default model 14 times slower than 1.
    torch.set_num_threads(1)
    return StreamingEnhancer.from_hparams(
        source=source, savedir=savedir, run_opts={"device": "cpu"}
    )


if __name__ == "__main__":
    sys.exit(main())
