"""Exports a trained CMCR-Net run as a SpeechBrain inference folder.

Usage::

    python -m speechbrain_cmcr.export <training output folder> \\
        <export folder> [--example noisy.wav] [--repo-id user/name] [--onnx]

The training output folder is the recipe's ``output_folder``: the best
checkpoint by validation PESQ is taken from ``save/CKPT+*/model.ckpt`` and
the test metrics, if any, from ``test_summary.json``. The export folder gets
what a SpeechBrain model repository on the Hugging Face Hub holds, and
nothing else is needed to load it with
``EnhanceSpeech.from_hparams(source=<folder or repo id>)``:

- ``hyperparams.yaml``: inference only (model, chunking, pretrainer);
- ``enhance_model.ckpt``: the model's state dict;
- ``custom_interface.py`` and ``custom_interface.yaml``: the same model and
  interface in one file, and its hyperparameters, so that SpeechBrain alone
  loads the folder, without this package:
  ``foreign_class(source=..., pymodule_file="custom_interface.py",
  classname="EnhanceSpeech", hparams_file="custom_interface.yaml")``.
  The file is assembled from the source of the package's modules
  (:func:`interface_source`), so it cannot drift from them;
- ``example.wav``: a noisy example;
- ``README.md``: the model card;
- with ``--onnx``, ``cmcr_offline.onnx`` and, for a causal model,
  ``cmcr_stream.onnx``: the graphs of :mod:`speechbrain_cmcr.onnx_export`,
  which ``python -m speechbrain_cmcr.onnx_runner`` runs without PyTorch.

Files are replaced, never written through: exporting into a folder of
symbolic links (such as a ``from_hparams`` savedir) replaces the links and
leaves the files they point to alone.

Authors
-------
speechbrain-cmcr contributors
"""

import argparse
import ast
import importlib
import inspect
import json
import math
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_cmcr import __version__
from speechbrain_cmcr.cli import error_message
from speechbrain_cmcr.inference.enhancement import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    SAVEDIR_RECORD,
    EnhanceSpeech,
    load_checkpoint,
    open_audio,
    read_state_dict,
    replacing,
)
from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
from speechbrain_cmcr.nnet.weight_average import averaged_state_dict

BEST_KEY = "pesq"
RECOVERABLE = "model"
# The recipe's average of the model's weights (validated and tested), which
# export prefers to the last step's weights when a checkpoint holds it.
AVERAGE_RECOVERABLE = "ema"
# This module's name also under ``python -m``, where __name__ is __main__.
MODULE = __spec__.name if __spec__ else __name__
PACKAGE = MODULE.split(".")[0]
# The self-contained model and interface (custom_interface.py), its
# hyperparameters (custom_interface.yaml) and what it is assembled from:
# the modules of these objects and the package modules they import.
INTERFACE_MODULE = "custom_interface"
INTERFACE_ROOTS = (CMCRNet, EnhanceSpeech)
OUTPUT_NAMES = {"mask": "complex ratio mask", "mapping": "complex mapping"}
# The files of speechbrain_cmcr.onnx_export (imported for --onnx only: it
# needs the onnx package) and what the model card says of each.
GRAPH_NOTES = {
    "cmcr_offline.onnx": "a whole spectrum at once",
    "cmcr_stream.onnx": "one frame in, one frame out, the state as explicit "
    "inputs and outputs",
}
# (summary key, name in the model card, decimals)
METRICS = [
    ("pesq", "PESQ (wide-band)", 2),
    ("csig", "CSIG", 2),
    ("cbak", "CBAK", 2),
    ("covl", "COVL", 2),
    ("ssnr", "SSNR (dB)", 2),
    ("stoi", "STOI", 3),
    ("si_sdr", "SI-SDR (dB)", 2),
]


def find_best_checkpoint(run_folder, key=BEST_KEY, last=False):
    """Finds the checkpoint of a training run with the highest ``key``, or
    the last one saved.

    Arguments
    ---------
    run_folder : str or os.PathLike
        Training output folder, holding ``save/CKPT+*``.
    key : str
        Meta entry to maximise (and that every candidate must have).
    last : bool
        Take the most recent checkpoint holding ``key`` instead (the recipe
        keeps the best and the last one).

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
        The checkpoint (``path``, ``meta``, ``paramfiles``).

    Example
    -------
    >>> run = getfixture("tmp_path")
    >>> checkpointer = Checkpointer(run / "save", {"m": torch.nn.Linear(1, 1)})
    >>> for pesq in [2.0, 3.0, 2.5]:
    ...     _ = checkpointer.save_checkpoint(meta={"pesq": pesq})
    >>> find_best_checkpoint(run).meta["pesq"]
    3.0
    >>> find_best_checkpoint(run, last=True).meta["pesq"]
    2.5
    """
    if not Path(run_folder).is_dir():
        raise FileNotFoundError(
            2, "no such training output folder", str(run_folder)
        )
    save_folder = Path(run_folder) / "save"
    if not save_folder.is_dir():
        raise FileNotFoundError(
            2,
            "no checkpoint folder in the training output (is it the "
            "recipe's output_folder?)",
            str(save_folder),
        )
    checkpointer = Checkpointer(save_folder)
    if last:
        best = checkpointer.find_checkpoint(
            ckpt_predicate=lambda ckpt: key in ckpt.meta
        )
    else:
        best = checkpointer.find_checkpoint(max_key=key)
    if best is None:
        raise ValueError(f"{save_folder}: no checkpoint with '{key}' in meta")
    return best


def load_trained_model(checkpoint_folder, recoverable=RECOVERABLE):
    """Rebuilds the CMCRNet of a checkpoint from its state dict alone (the
    configuration is in the state dict's ``_extra_state``): the averaged
    weights (``ema.ckpt``, the ones the recipe validates and tests) where
    the checkpoint has them, else the model's own.

    Arguments
    ---------
    checkpoint_folder : str or os.PathLike
        A ``CKPT+*`` folder.
    recoverable : str
        Name of the model's recoverable (its file is ``<name>.ckpt``),
        used when the checkpoint holds no ``ema.ckpt``.

    Returns
    -------
    CMCRNet
        The trained model, in eval mode.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8)
    >>> torch.save(model.state_dict(), folder / "model.ckpt")
    >>> load_trained_model(folder).config == model.config
    True
    """
    path = Path(checkpoint_folder) / f"{AVERAGE_RECOVERABLE}.ckpt"
    if path.is_file():
        state_dict = averaged_state_dict(read_state_dict(path))
    else:
        path = Path(checkpoint_folder) / f"{recoverable}.ckpt"
        state_dict = read_state_dict(path)
    config = state_dict.get("_extra_state", {}).get("config")
    if config is None:
        raise ValueError(
            f"{path}: no model configuration (_extra_state) in the state dict"
        )
    model = CMCRNet(**config)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def hyperparams_yaml(config, header, module=None):
    """Inference-only ``hyperparams.yaml`` text for a CMCRNet.

    Arguments
    ---------
    config : dict
        CMCRNet constructor arguments (``model.config``).
    header : str
        Comment lines put at the top (without ``#``).
    module : str, optional
        Module that holds ``CMCRNet`` and ``load_checkpoint``: None for this
        package's (``EnhanceSpeech.from_hparams``), ``INTERFACE_MODULE`` for
        the self-contained file (``foreign_class``).

    Returns
    -------
    str
        The YAML text.

    Example
    -------
    >>> text = hyperparams_yaml(CMCRNet().config, "CMCR-Net")
    >>> print(text.splitlines()[4])
    sample_rate: 16000
    >>> text = hyperparams_yaml(CMCRNet().config, "", INTERFACE_MODULE)
    >>> "!new:custom_interface.CMCRNet" in text
    True
    """
    model_class = f"{module or CMCRNet.__module__}.{CMCRNet.__name__}"
    hook = f"{module or load_checkpoint.__module__}.{load_checkpoint.__name__}"
    model_args = "\n".join(
        f"    {key}: {json.dumps(value)}"
        for key, value in config.items()
        if key != "sample_rate"
    )
    comments = "\n".join(f"# {line}".rstrip() for line in header.splitlines())
    return f"""\
# {"#" * 76}
{comments}
# {"#" * 76}

sample_rate: {config["sample_rate"]}

# Files are enhanced in overlapping chunks (bounded memory); see
# speechbrain_cmcr.inference.enhancement.
chunk_seconds: {DEFAULT_CHUNK_SECONDS}
chunk_overlap_seconds: {DEFAULT_OVERLAP_SECONDS}

enhance_model: !new:{model_class}
    sample_rate: !ref <sample_rate>
{model_args}

modules:
    enhance_model: !ref <enhance_model>

# enhance_model.ckpt is fetched from the same folder or Hub repository as
# this file, and loaded as plain tensors (weights_only), strictly.
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        enhance_model: !ref <enhance_model>
    custom_hooks:
        enhance_model: !name:{hook}
"""


def interface_source(roots=INTERFACE_ROOTS):
    """The text of ``custom_interface.py``: the source of the modules that
    define ``roots``, and of the package modules they import, in one file
    that imports nothing from this package.

    Each module is copied whole, less its docstring and imports; the imports
    are merged at the top. The package modules a module imports from come
    before it, and those imports are dropped (their names are defined in
    the same file).

    Arguments
    ---------
    roots : Sequence
        Classes or functions whose modules the file holds.

    Returns
    -------
    str
        Python source.

    Raises
    ------
    ValueError
        If a module imports the package in a way that cannot be inlined
        (``import speechbrain_cmcr...``, aliases, inside code), or two
        modules bind one name differently.

    Example
    -------
    >>> source = interface_source()
    >>> "class EnhanceSpeech(Pretrained):" in source
    True
    >>> any(map(_imports_package, ast.walk(ast.parse(source))))
    False
    """
    modules = []
    for root in roots:
        _add_with_dependencies(inspect.getmodule(root), modules)
    parts = [_module_parts(module) for module in modules]
    bindings = {}
    for module, (imports, body, _) in zip(modules, parts):
        for name, origin in _bindings(module, imports, body):
            if bindings.setdefault(name, origin) != origin:
                raise ValueError(
                    f"{module.__name__}: binds {name} as {origin}, another "
                    f"module as {bindings[name]}; rename one of them"
                )
    generated = textwrap.fill(
        f"Generated by {PACKAGE} {__version__} (python -m {MODULE}) from "
        f"the source of its modules "
        f"{', '.join(module.__name__ for module in modules)}, whose "
        "documentation follows; do not edit it: export again, or call "
        f"{MODULE}.write_interface on the model folder. Needs torch, "
        "torchaudio, soundfile and speechbrain.",
        width=79,
    )
    sections = [
        f"# {'-' * 76}\n# From {module.__name__}\n# {'-' * 76}\n\n{body}\n"
        for module, (_, body, _) in zip(modules, parts)
    ]
    return "\n\n".join(
        [
            INTERFACE_DOCSTRING.format(generated=generated),
            _import_block([node for part in parts for node in part[0]]),
            *sections,
        ]
    )


INTERFACE_DOCSTRING = '''\
"""CMCR-Net speech enhancement for SpeechBrain in one file: the model and its
inference interface, to load this model folder or Hub repository where
SpeechBrain is installed but not the speechbrain_cmcr package::

    from speechbrain.inference.interfaces import foreign_class

    enhancer = foreign_class(
        source="<this folder or Hub repository>",
        pymodule_file="custom_interface.py",
        classname="EnhanceSpeech",
        hparams_file="custom_interface.yaml",
    )
    enhancer.enhance_file("noisy.wav", output_filename="enhanced.wav")

{generated}

Like the hyperparameter files, this is code that runs when the model is
loaded: load models from trusted sources only.
"""'''


def _in_package(module_name):
    """Whether ``module_name`` is this package or one of its modules."""
    return module_name.split(".")[0] == PACKAGE


def _add_with_dependencies(module, modules, importers=()):
    """Appends to ``modules`` the package modules that ``module`` imports
    from (recursively, each once), then ``module`` itself; ``importers``
    are the modules on the way here (an import cycle stops there)."""
    if module in modules or module in importers:
        return
    for dependency in _module_parts(module)[2]:
        _add_with_dependencies(dependency, modules, (*importers, module))
    modules.append(module)


def _module_parts(module):
    """Splits the source of a package module.

    Arguments
    ---------
    module : module
        A module of this package.

    Returns
    -------
    imports : list of ast.Import or ast.ImportFrom
        Its top-level imports of other packages.
    body : str
        Its source without the docstring and top-level imports.
    dependencies : list of module
        The package modules it imports names from.
    """
    source = inspect.getsource(module)
    tree = ast.parse(source)
    dropped, imports, dependencies = set(), [], []
    for index, node in enumerate(tree.body):
        docstring = (
            index == 0
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        if not docstring and not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        dropped.update(range(node.lineno, node.end_lineno + 1))
        if docstring:
            continue
        if not _imports_package(node):
            imports.append(node)
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module != PACKAGE
            and not any(alias.asname for alias in node.names)
        ):
            dependencies.append(importlib.import_module(node.module))
        else:
            raise ValueError(
                f"{module.__name__}, line {node.lineno}: {ast.unparse(node)} "
                f"cannot be inlined into {INTERFACE_MODULE}.py; import "
                f"names from a {PACKAGE} module, without 'as'"
            )
    for node in ast.walk(tree):
        top_level = getattr(node, "lineno", 0) in dropped
        if not top_level and _imports_package(node):
            raise ValueError(
                f"{module.__name__}, line {node.lineno}: imports {PACKAGE} "
                f"inside code, which {INTERFACE_MODULE}.py cannot inline"
            )
    lines = source.splitlines(keepends=True)
    body = "".join(
        line for number, line in enumerate(lines, 1) if number not in dropped
    )
    return imports, body.strip("\n"), dependencies


def _imports_package(node):
    """Whether the ast ``node`` imports (from) this package."""
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or _in_package(node.module)
    if isinstance(node, ast.Import):
        return any(_in_package(alias.name) for alias in node.names)
    return False


def _bindings(module, imports, body):
    """(name, origin) of the top-level names a module binds: its imports
    (origin: the import) and definitions (origin: the module)."""
    for node in imports:
        for alias in node.names:
            if isinstance(node, ast.ImportFrom):
                origin = f"from {node.module} import {alias.name}"
            elif alias.asname:
                origin = f"import {alias.name}"
            else:  # import a.b binds a
                origin = f"import {alias.name.split('.')[0]}"
            yield (alias.asname or alias.name.split(".")[0]), origin
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in ast.parse(body).body:
        if isinstance(node, definitions):
            yield node.name, module.__name__
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = getattr(node, "targets", None) or [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        yield name.id, module.__name__


def _import_block(nodes):
    """Merged import statements, sorted the way ruff's isort sorts them:
    the standard library, then third-party packages; ``import x`` before
    ``from x import y``; names ordered constants, classes, then others."""
    sections = []
    for standard in (True, False):
        straight, froms = set(), {}
        for node in nodes:
            top = (
                node.module if isinstance(node, ast.ImportFrom) else None
            ) or node.names[0].name
            if (top.split(".")[0] in sys.stdlib_module_names) != standard:
                continue
            for alias in node.names:
                name = alias.name
                if alias.asname:
                    name += f" as {alias.asname}"
                if isinstance(node, ast.ImportFrom):
                    froms.setdefault(node.module, set()).add(name)
                else:
                    straight.add(name)
        lines = [f"import {name}" for name in sorted(straight)]
        for module_name in sorted(froms):
            names = sorted(froms[module_name], key=_name_order)
            line = f"from {module_name} import {', '.join(names)}"
            if len(line) > 80:
                wrapped = "".join(f"    {name},\n" for name in names)
                line = f"from {module_name} import (\n{wrapped})"
            lines.append(line)
        if lines:
            sections.append("\n".join(lines))
    return "\n\n".join(sections)


def _name_order(name):
    """isort's order of imported names: constants, classes, then others."""
    if name.isupper() and len(name) > 1:
        return 0, name
    return (1 if name[0].isupper() else 2), name


def write_interface(folder):
    """Writes ``custom_interface.py`` into a model folder from this
    package's current source: an export does it, and so can a call on an
    exported folder alone, to bring its code up to date.

    Arguments
    ---------
    folder : str or os.PathLike
        The model folder.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> write_interface(folder)
    >>> [path.name for path in folder.iterdir()]
    ['custom_interface.py']
    """
    with replacing(Path(folder) / f"{INTERFACE_MODULE}.py") as partial:
        partial.write_text(interface_source(), encoding="utf-8")


def write_example(path, sample_rate, source=None):
    """Writes the noisy example: ``source`` converted to wav, or 3 s of a
    generated voiced signal in white noise at 5 dB SNR.

    Arguments
    ---------
    path : str or os.PathLike
        Where to write the wav file.
    sample_rate : int
        Rate of the generated example.
    source : str or os.PathLike, optional
        A noisy recording to ship instead.

    Example
    -------
    >>> path = getfixture("tmp_path") / "example.wav"
    >>> write_example(path, 16000)
    >>> sf.info(path).duration
    3.0
    """
    if source is not None:
        with open_audio(source) as audio:
            signal, sample_rate = audio.read(dtype="float32"), audio.samplerate
    else:
        signal = generated_noisy_speech(sample_rate)
    sf.write(path, signal, sample_rate)


def generated_noisy_speech(sample_rate, seconds=3.0, snr_db=5.0):
    """A speech-like signal (harmonics of a gliding pitch under a syllable
    envelope) in white noise, peak below 1.

    Arguments
    ---------
    sample_rate : int
        Sample rate in Hz.
    seconds : float
        Duration.
    snr_db : float
        Signal-to-noise ratio.

    Returns
    -------
    numpy.ndarray
        The signal, float32.

    Example
    -------
    >>> generated_noisy_speech(8000, seconds=0.5).shape
    (4000,)
    """
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 140.0 * (1 + 0.1 * np.sin(2 * math.pi * 0.7 * t))
    phase = 2 * math.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 9))
    speech = voiced * np.maximum(np.sin(math.pi * 3.0 * t) ** 2, 0.05)
    noise = rng.standard_normal(len(t))
    noise *= np.std(speech) / np.std(noise) * 10 ** (-snr_db / 20)
    noisy = speech + noise
    return (0.5 * noisy / np.abs(noisy).max()).astype(np.float32)


def metrics_table(summary):
    """Markdown table of test metrics (noisy input vs enhanced).

    Arguments
    ---------
    summary : dict or None
        Mean metrics with ``noisy_`` prefixed input scores, or None.

    Returns
    -------
    str
        A sentence and the table, or a "not measured" sentence.

    Example
    -------
    >>> print(metrics_table({"pesq": 2.91, "noisy_pesq": 1.97}))
    Means over the test set of the run (test_summary.json):
    <BLANKLINE>
    | Metric | Noisy input | Enhanced |
    |---|---|---|
    | PESQ (wide-band) | 1.97 | 2.91 |
    >>> metrics_table(None)
    'Not measured (the run has no test_summary.json of this checkpoint).'
    """
    rows = [
        f"| {name} | {_cell(summary.get('noisy_' + key), digits)} "
        f"| {_cell(summary[key], digits)} |"
        for key, name, digits in METRICS
        if summary and key in summary
    ]
    if not rows:
        return (
            "Not measured (the run has no test_summary.json of this "
            "checkpoint)."
        )
    header = [
        "Means over the test set of the run (test_summary.json):",
        "",
        "| Metric | Noisy input | Enhanced |",
        "|---|---|---|",
    ]
    return "\n".join(header + rows)


def _cell(value, digits):
    """A table cell: ``value`` rounded, or "-" if missing."""
    return "-" if value is None else f"{value:.{digits}f}"


def model_card(
    model, checkpoint, summary, source, notes=None, graphs=(), last=False
):
    """The README.md model card of an exported model, laid out as the Hub's
    SpeechBrain model cards are: metadata, results, how to use it, training
    data, limitations and citations.

    Arguments
    ---------
    model : CMCRNet
        The exported model.
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
        The checkpoint it comes from.
    summary : dict or None
        Test metrics (``test_summary.json``), if measured.
    source : str
        Hub repository id or folder to show in the usage examples.
    notes : str, optional
        Markdown put after the usage (training, training data and their
        licences, ...). A YAML front matter block at its top (between
        ``---`` lines) is merged into the card's metadata (e.g.
        ``datasets``).
    graphs : Sequence[str]
        File names of the ONNX graphs exported beside the model (see
        :data:`GRAPH_NOTES`), shown with the command that runs them.
    last : bool
        The checkpoint is the last one saved, not the best.

    Returns
    -------
    str
        Markdown with YAML front matter.

    Example
    -------
    >>> from speechbrain.utils.checkpoints import Checkpoint
    >>> ckpt = Checkpoint(Path("CKPT+x"), {"pesq": 2.5}, {})
    >>> notes = "---\\ndatasets:\\n- LibriSpeech\\n---\\n## Training data"
    >>> card = model_card(CMCRNet(), ckpt, None, "user/cmcr", notes)
    >>> card.splitlines()[1]
    'library_name: speechbrain'
    >>> card_metadata(card)["datasets"]
    ['LibriSpeech']
    """
    config = model.config
    parameters = sum(p.numel() for p in model.parameters())
    output = OUTPUT_NAMES[config["output"]]
    causal, usage, limitation = _real_time(config, source, graphs)
    choice = (
        "the last one saved, validation PESQ"
        if last
        else "the best by validation PESQ"
    )
    extra, notes = _split_front_matter(notes or "")
    metadata = {
        "library_name": "speechbrain",
        "license": "apache-2.0",
        "language": "en",
        "pipeline_tag": "audio-to-audio",
        "tags": [
            "speechbrain",
            "speech-enhancement",
            "denoising",
            "audio-to-audio",
            "CMCR-Net",
            "pytorch",
        ],
        "metrics": [
            name.split(" (")[0]
            for key, name, _ in METRICS
            if summary and key in summary
        ],
        **extra,
    }
    front_matter = yaml.safe_dump(
        {key: value for key, value in metadata.items() if value},
        sort_keys=False,
        allow_unicode=True,
    )
    notes = notes.strip() or (
        "## Training data\n\nNot documented by this export: name the "
        "training data and their licences in a Markdown file given to "
        "`python -m speechbrain_cmcr.export ... --notes`."
    )
    example_args = f'"{source}/example.wav", output_filename="enhanced.wav"'
    example_call = f"enhancer.enhance_file({example_args})"
    if len(example_call) > 80:  # wrapped as ruff (line length 80) would
        example_call = f"enhancer.enhance_file(\n    {example_args}\n)"
    return f"""\
---
{front_matter}---

# CMCR-Net speech enhancement

CMCR-Net (collaboration module and contrastive regularization, Xu et al.,
[arXiv 2304.13439](https://arxiv.org/abs/2304.13439)) removes noise from
speech: waveform in, waveform out. Trained with the speechbrain-cmcr recipe
and exported by speechbrain_cmcr {__version__} from checkpoint
`{checkpoint.path.name}`, {choice}
{checkpoint.meta[BEST_KEY]:.2f}.

| Setting | Value |
|---|---|
| Sample rate | {config["sample_rate"]} Hz, mono |
| STFT | {config["n_fft"]}-point FFT, {config["win_length"]} ms \
{config["window"]} window, {config["hop_length"]} ms hop |
| Encoder channels | {config["encoder_channels"]} |
| Collaboration modules | {config["num_modules"]} (attention over \
{config["attention_axis"]}, dim {config["attention_dim"]}) |
| Output | {output} |
| Causal | {causal} |
| Parameters | {parameters:,} |

## Results

{metrics_table(summary)}

## Use it

With the `speechbrain_cmcr` package (`pip install` its wheel, or `.` in its
repository; it brings SpeechBrain):

```python
from speechbrain_cmcr import EnhanceSpeech

enhancer = EnhanceSpeech.from_hparams(source="{source}")
# Any sample rate and channel count; long files are processed in chunks.
enhancer.enhance_file("noisy.wav", output_filename="enhanced.wav")
# noisy: a float tensor [batch, time] at {config["sample_rate"]} Hz
enhanced = enhancer.enhance_batch(noisy)
```

With SpeechBrain alone (`pip install speechbrain soundfile`), through
`custom_interface.py`, which holds the same model and interface:

```python
from speechbrain.inference.interfaces import foreign_class

enhancer = foreign_class(
    source="{source}",
    pymodule_file="custom_interface.py",
    classname="EnhanceSpeech",
    hparams_file="custom_interface.yaml",
)
{example_call}
```

`example.wav` is a noisy example to try; `enhance_file` takes a local file
or a file of a Hub repository, `"user/name/file.wav"`, which it fetches.
Add `run_opts={{"device": "cuda"}}` to either call to run on a GPU.

From the command line (files or folders, skips files already done):

```bash
cmcr-enhance noisy_folder/ --output-dir enhanced/ --model {source}
```
{usage}
{notes}

## Limitations

- Quality is only known on the test set above; other noise types,
  reverberation, overlapping speakers or music may be handled poorly.
- The model works at {config["sample_rate"]} Hz mono: inputs are resampled
  and multichannel inputs averaged to mono; the output comes back at
  {config["sample_rate"]} Hz unless `output_sample_rate="input"` is given.
- {limitation}
- Enhanced speech can contain artifacts; do not rely on it where the exact
  content of a recording matters (e.g. evidence).
- `hyperparams.yaml` and `custom_interface.yaml` are HyperPyYAML, which can
  run Python code, and `custom_interface.py` is Python code: load models
  from trusted sources only. The checkpoint itself is loaded as plain
  tensors.

## Citation

```bibtex
@article{{xu2023cmcr,
  title   = {{All Information is Necessary: Integrating Speech Positive and
             Negative Information by Contrastive Learning for Speech
             Enhancement}},
  author  = {{Xu, Xinmeng and Tu, Weiping and Han, Chang and Yang, Yuhong}},
  journal = {{arXiv preprint arXiv:2304.13439}},
  year    = {{2023}}
}}

@misc{{speechbrain,
  title         = {{{{SpeechBrain}}: A General-Purpose Speech Toolkit}},
  author        = {{Mirco Ravanelli and Titouan Parcollet and Peter Plantinga
                   and Aku Rouhe and Samuele Cornell and Loren Lugosch and
                   Cem Subakan and Nauman Dawalatabad and Abdelwahab Heba and
                   Jianyuan Zhong and Ju-Chieh Chou and Sung-Lin Yeh and
                   Szu-Wei Fu and Chien-Feng Liao and Elena Rastorgueva and
                   Fran\\c{{c}}ois Grondin and William Aris and Hwidong Na and
                   Yan Gao and Renato De Mori and Yoshua Bengio}},
  year          = {{2021}},
  eprint        = {{2106.04624}},
  archivePrefix = {{arXiv}},
  primaryClass  = {{eess.AS}}
}}
```
"""


def _real_time(config, source, graphs):
    """The model card's texts on causality, streaming and ONNX: the
    ``Causal`` row, the usage added after ``cmcr-enhance`` (streaming, the
    ONNX runner; may be empty) and the limitation on real time."""
    rate = config["sample_rate"]
    latency = config["n_fft"] - 1
    latency = f"{latency} samples ({1000 * latency / rate:.1f} ms)"
    causal, usage = "no: an offline model", ""
    limitation = (
        "It is an offline model: attention spans each whole chunk (10 s "
        "chunks,\n  1 s cross-faded overlap), so it is not meant for "
        "real-time streaming."
    )
    if config["causal"]:
        causal = "yes, but its attention over time does not stream"
        limitation = (
            "It is causal, but its attention over time keeps the whole "
            "past,\n  so it does not stream; files are processed in 10 s "
            "chunks."
        )
    if config["causal"] and config["attention_axis"] == "frequency":
        causal = f"yes: streams, {latency} behind the input"
        limitation = (
            "Its attention statistics are running means over the whole "
            "past:\n  in a long stream they follow a change of noise ever "
            "more slowly."
        )
        pcm = f"-f S16_LE -r {rate} -c 1 -t raw"
        usage = f"""
In real time, raw 16-bit mono PCM at {rate} Hz in (standard input) and out
(standard output), {latency} behind; here from the microphone to
the speakers:

```bash
arecord {pcm} | cmcr-enhance --stream --model {source} | aplay {pcm}
```
"""
    if graphs:
        listed = "\n".join(
            f"- `{name}`: {GRAPH_NOTES[name]};" for name in graphs
        )
        usage += f"""
Without PyTorch, through ONNX (onnxruntime):

{listed[:-1]}.

The package's runner (NumPy, soundfile and onnxruntime only; it never
imports torch) enhances a file at {rate} Hz with a graph, in the model's
folder (for a Hub repository, a downloaded copy):

```bash
python -m speechbrain_cmcr.onnx_runner {graphs[-1]} noisy.wav enhanced.wav
```
"""
    return causal, usage, limitation


def card_metadata(card):
    """The metadata (YAML front matter) of a model card.

    Arguments
    ---------
    card : str
        Markdown starting with a ``---`` block.

    Returns
    -------
    dict
        The metadata; empty if there is none.

    Example
    -------
    >>> card_metadata("---\\nlicense: apache-2.0\\n---\\n# Model")
    {'license': 'apache-2.0'}
    """
    return _split_front_matter(card)[0]


def _split_front_matter(text):
    """(metadata dict, rest of the text) of Markdown that may start with a
    YAML front matter block."""
    match = re.match(r"---\n(.*?\n)?---\n", text, re.S)
    if match is None:
        return {}, text
    return yaml.safe_load(match.group(1) or "") or {}, text[match.end() :]


def read_summary(run_folder):
    """The run's ``test_summary.json``, or None if it has none.

    Arguments
    ---------
    run_folder : str or os.PathLike
        Training output folder.

    Returns
    -------
    dict or None
        Mean test metrics.

    Example
    -------
    >>> read_summary(getfixture("tmp_path")) is None
    True
    """
    path = Path(run_folder) / "test_summary.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _check_reload(export_folder, model):
    """Loads the export as a user would and checks that it reproduces
    ``model`` on half a second of noise.

    Arguments
    ---------
    export_folder : str or os.PathLike
        The exported folder.
    model : CMCRNet
        The model that was exported.

    Raises
    ------
    RuntimeError
        If the loaded model's output differs.
    """
    loaded = EnhanceSpeech.from_hparams(
        source=str(export_folder), run_opts={"device": "cpu"}
    )
    generator = torch.Generator().manual_seed(0)
    probe = 0.1 * torch.randn(
        1, model.config["sample_rate"] // 2, generator=generator
    )
    with torch.no_grad():
        expected = model.enhance(probe)
    if not torch.allclose(loaded.enhance_batch(probe), expected, atol=1e-6):
        raise RuntimeError(f"{export_folder}: reloaded model differs")


def export_model(
    run_folder,
    export_folder,
    example=None,
    repo_id=None,
    notes=None,
    onnx=False,
    last=False,
):
    """Exports the best checkpoint of a training run for inference.

    Arguments
    ---------
    run_folder : str or os.PathLike
        Training output folder (``save/CKPT+*``, ``test_summary.json``).
    export_folder : str or os.PathLike
        Folder to write (created if needed; our files are overwritten).
    example : str or os.PathLike, optional
        Noisy recording to ship as ``example.wav`` (else one is generated).
    repo_id : str, optional
        Hub repository id to show in the model card's usage examples.
    notes : str, optional
        Markdown added to the model card after the usage (training data and
        their licences, the command that trained it, ...), optionally with a
        YAML front matter of card metadata (see :func:`model_card`).
    onnx : bool
        Also write the ONNX graphs (:func:`speechbrain_cmcr.onnx_export.
        export_onnx`; needs the onnx package): ``cmcr_offline.onnx``, and
        ``cmcr_stream.onnx`` for a model that streams. Graphs of an earlier
        export are removed in any case.
    last : bool
        Export the last checkpoint saved instead of the best.

    Returns
    -------
    pathlib.Path
        The export folder.

    Raises
    ------
    FileNotFoundError
        If the run folder or its checkpoints are missing.
    ValueError
        If no checkpoint has a validation PESQ or a model configuration.

    Example
    -------
    >>> run = getfixture("tmp_path") / "run"
    >>> model = CMCRNet(n_fft=64, win_length=4, hop_length=2,
    ...                 encoder_channels=[4, 8], num_modules=1,
    ...                 attention_dim=8)
    >>> Checkpointer(run / "save", {"model": model}).save_checkpoint(
    ...     meta={"pesq": 2.5})  # doctest: +ELLIPSIS
    Checkpoint(...)
    >>> folder = export_model(run, run.parent / "export")
    >>> for name in sorted(p.name for p in folder.iterdir()):
    ...     print(name)
    README.md
    custom_interface.py
    custom_interface.yaml
    enhance_model.ckpt
    example.wav
    hyperparams.yaml
    """
    checkpoint = find_best_checkpoint(run_folder, last=last)
    model = load_trained_model(checkpoint.path)
    folder = Path(export_folder)
    folder.mkdir(parents=True, exist_ok=True)
    header = (
        "Model: CMCR-Net speech enhancement (inference only)\n"
        f"Exported from {checkpoint.path.name}{' (the last)' if last else ''} "
        f"({BEST_KEY}={checkpoint.meta[BEST_KEY]:.3f})\n"
        "Paper: Xu, Tu, Han, Yang, arXiv 2304.13439 (2023)"
    )
    # A from_hparams savedir becomes a model folder of its own.
    (folder / SAVEDIR_RECORD).unlink(missing_ok=True)
    with replacing(folder / "hyperparams.yaml") as partial:
        partial.write_text(
            hyperparams_yaml(model.config, header), encoding="utf-8"
        )
    write_interface(folder)
    with replacing(folder / f"{INTERFACE_MODULE}.yaml") as partial:
        partial.write_text(
            hyperparams_yaml(
                model.config,
                f"{header}\nFor SpeechBrain's foreign_class, with "
                f"{INTERFACE_MODULE}.py (see README.md)",
                INTERFACE_MODULE,
            ),
            encoding="utf-8",
        )
    with replacing(folder / "enhance_model.ckpt") as partial:
        torch.save(model.state_dict(), partial)
    with replacing(folder / "example.wav") as partial:
        write_example(partial, model.config["sample_rate"], example)
    for name in GRAPH_NOTES:  # stale, or links of a savedir: not written to
        (folder / name).unlink(missing_ok=True)
    graphs = []
    if onnx:
        from speechbrain_cmcr.onnx_export import export_onnx

        graphs = [path.name for path in export_onnx(model, folder)]
    summary = read_summary(run_folder)
    tested = (summary or {}).get("checkpoint", checkpoint.path.name)
    if tested != checkpoint.path.name:
        summary = None  # the run's test stage scored another checkpoint
    card = model_card(
        model,
        checkpoint,
        summary,
        repo_id or _path(folder),
        notes,
        graphs,
        last,
    )
    with replacing(folder / "README.md") as partial:
        partial.write_text(card, encoding="utf-8")
    _check_reload(folder, model)
    return folder


def _path(folder):
    """``folder`` as the model card's usage examples name it: relative to
    the current folder when it is inside it, else absolute."""
    folder = Path(folder).resolve()
    if folder.is_relative_to(Path.cwd()):
        return folder.relative_to(Path.cwd()).as_posix() or "."
    return folder.as_posix()


def _parse_args(argv=None):
    """Command-line arguments of ``python -m speechbrain_cmcr.export``."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_cmcr.export",
        description=(
            "Export the best checkpoint (max validation PESQ) of a CMCR-Net "
            "training run as a SpeechBrain inference folder: "
            "hyperparams.yaml, enhance_model.ckpt, custom_interface.py and "
            ".yaml (for SpeechBrain alone), example.wav, README.md."
        ),
    )
    parser.add_argument("run_folder", help="training output folder")
    parser.add_argument("export_folder", help="folder to write")
    parser.add_argument(
        "--example", help="noisy recording to ship as example.wav"
    )
    parser.add_argument(
        "--repo-id", help="Hub repository id for the model card's examples"
    )
    parser.add_argument(
        "--notes",
        help="Markdown file added to the model card (training data, "
        "attributions, command)",
    )
    parser.add_argument(
        "--last",
        action="store_true",
        help="export the last checkpoint saved instead of the best",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also write the ONNX graphs, cmcr_offline.onnx and (causal "
        "model) cmcr_stream.onnx, for python -m speechbrain_cmcr.onnx_runner",
    )
    return parser.parse_args(argv)


def main(argv=None):
    """Runs the export from the command line.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 (after one line on stderr) if nothing
        could be exported.

    Example
    -------
    >>> main(["/no/such/run", "export"])
    2
    """
    args = _parse_args(argv)
    try:
        notes = None
        if args.notes:
            notes = Path(args.notes).read_text(encoding="utf-8")
        folder = export_model(
            args.run_folder,
            args.export_folder,
            args.example,
            args.repo_id,
            notes,
            args.onnx,
            args.last,
        )
    except (OSError, ValueError, ImportError) as error:  # --onnx: onnx
        print(f"export: error: {error_message(error)}", file=sys.stderr)
        return 2
    print(f"Exported to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
