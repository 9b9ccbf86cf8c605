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

Authors
-------
speechbrain-cmcr contributors
"""

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import List, NamedTuple, Tuple

from tqdm import tqdm

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
# The default model, by name: the folder pretrained/<name> of the
# repository, which a wheel carries inside the package (setup.py reads this
# line); see speechbrain_cmcr.inference.enhancement.shipped_model.
DEFAULT_MODEL = "cmcr-dns-small"


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
    >>> args.inputs, args.output_dir, args.overwrite
    (['in.wav'], 'out', False)
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
            "not start."
        ),
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        help="audio files, or folders searched recursively for "
        + ", ".join(AUDIO_SUFFIXES)
        + " files",
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        required=True,
        help="folder for the enhanced files (same names, formats and "
        "sub-folders as the inputs)",
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
    return parser


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
        start.

    Example
    -------
    >>> main(["noisy.wav", "-o", "enhanced", "--model", "./no/model"])
    2
    """
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
