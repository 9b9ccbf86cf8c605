"""Export of a training run to an inference folder, and its round trip
through ``EnhanceSpeech.from_hparams``; the self-contained
``custom_interface.py`` and the package model in step."""

import hashlib
import json
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SAMPLE_RATE, TINY, harmonic_speech, mix_at_snr
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.superpowers import import_from_path

from speechbrain_cmcr.export import (
    card_metadata,
    export_model,
    interface_source,
    main,
)
from speechbrain_cmcr.inference.enhancement import (
    EnhanceSpeech,
    read_state_dict,
)
from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPORTED_FILES = [
    "README.md",
    "custom_interface.py",
    "custom_interface.yaml",
    "enhance_model.ckpt",
    "example.wav",
    "hyperparams.yaml",
]
SUMMARY = {
    "pesq": 2.91,
    "noisy_pesq": 1.97,
    "csig": 4.12,
    "noisy_csig": 3.35,
    "stoi": 0.941,
    "noisy_stoi": 0.921,
}


def tiny_model(seed, **config):
    """A tiny CMCRNet (``TINY`` updated with ``config``) with seeded random
    weights and BatchNorm statistics."""
    torch.manual_seed(seed)
    model = CMCRNet(**{**TINY, **config})
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def make_run_folder(folder, pesq_by_seed, summary=None, **config):
    """A training output folder as the recipe leaves it: one checkpoint per
    ``seed: pesq`` (a different tiny model each, ``TINY`` updated with
    ``config``), optional test summary.

    Returns the model of the best checkpoint.
    """
    models = {}
    for seed, pesq in pesq_by_seed.items():
        models[pesq] = tiny_model(seed, **config)
        checkpointer = Checkpointer(folder / "save", {"model": models[pesq]})
        checkpointer.save_checkpoint(meta={"pesq": pesq, "stoi": 0.9})
    if summary is not None:
        (folder / "test_summary.json").write_text(json.dumps(summary))
    return models[max(models)]


def exported_tiny_model(folder):
    """Exports a fabricated run into ``folder / "export"``; returns
    (export folder, model of the best checkpoint)."""
    best = make_run_folder(folder / "run", {0: 2.0, 1: 3.0, 2: 2.5}, SUMMARY)
    return export_model(folder / "run", folder / "export"), best


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return exported_tiny_model(tmp_path_factory.mktemp("exported"))


def test_round_trip_reproduces_best_checkpoint(exported, tmp_path):
    export, best = exported
    assert sorted(p.name for p in export.iterdir()) == EXPORTED_FILES
    # Only the export folder is needed, wherever it is.
    copy = shutil.copytree(export, tmp_path / "copy")
    enhancer = EnhanceSpeech.from_hparams(
        source=str(copy),
        savedir=str(tmp_path / "savedir"),
        run_opts={"device": "cpu"},
    )
    noisy = torch.randn(2, 4000, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([1.0, 0.7])
    expected = best.enhance(noisy, lengths)
    torch.testing.assert_close(enhancer.enhance_batch(noisy, lengths), expected)
    assert not torch.allclose(tiny_model(0).enhance(noisy, lengths), expected)


def test_exported_files_are_inference_only(exported):
    export, best = exported
    text = (export / "hyperparams.yaml").read_text()
    for training_only in ["teacher", "data_folder", "output_folder", "lr"]:
        assert training_only not in text
    assert "!new:speechbrain.utils.parameter_transfer.Pretrainer" in text
    state_dict = read_state_dict(export / "enhance_model.ckpt")
    assert state_dict["_extra_state"] == {"config": best.config}
    assert state_dict.keys() == best.state_dict().keys()


def test_model_card(exported):
    export, _ = exported
    card = (export / "README.md").read_text()
    metadata = card_metadata(card)
    assert metadata["library_name"] == "speechbrain"
    assert metadata["license"] == "apache-2.0"
    assert metadata["language"] == "en"
    assert "speech-enhancement" in metadata["tags"]
    assert metadata["metrics"] == ["PESQ", "CSIG", "STOI"]
    sections = re.findall(r"^## (.+)$", card, re.M)
    assert sections == [
        "Results",
        "Use it",
        "Training data",
        "Limitations",
        "Citation",
    ]
    assert "| PESQ (wide-band) | 1.97 | 2.91 |" in card
    assert "| STOI | 0.921 | 0.941 |" in card
    for needed in [
        "EnhanceSpeech.from_hparams",
        "foreign_class(",
        'pymodule_file="custom_interface.py"',
        'hparams_file="custom_interface.yaml"',
        "cmcr-enhance",
        "@article{xu2023cmcr",
        "journal = {arXiv preprint arXiv:2304.13439}",
        "@misc{speechbrain",
    ]:
        assert needed in card


def test_model_card_leaves_out_the_test_of_another_checkpoint(tmp_path):
    """A run tested at its last checkpoint, exported at its best: the
    card must not show the last one's scores as the export's."""
    summary = {**SUMMARY, "checkpoint": "CKPT+another"}
    make_run_folder(tmp_path / "run", {0: 2.0, 1: 3.0}, summary)
    export = export_model(tmp_path / "run", tmp_path / "export")
    card = (export / "README.md").read_text()
    assert "Not measured" in card
    assert "| PESQ (wide-band) |" not in card


def test_model_card_shows_the_test_of_the_exported_checkpoint(tmp_path):
    make_run_folder(tmp_path / "run", {0: 2.0, 1: 3.0})
    saved = Checkpointer(tmp_path / "run" / "save")
    best = saved.find_checkpoint(max_key="pesq").path.name
    summary = {**SUMMARY, "checkpoint": best}
    (tmp_path / "run" / "test_summary.json").write_text(json.dumps(summary))
    export = export_model(tmp_path / "run", tmp_path / "export")
    assert "| PESQ (wide-band) |" in (export / "README.md").read_text()


def test_model_card_without_test_summary(tmp_path):
    make_run_folder(tmp_path / "run", {0: 2.0})
    export = export_model(tmp_path / "run", tmp_path / "export", repo_id="u/m")
    card = (export / "README.md").read_text()
    assert "Not measured" in card
    assert "metrics" not in card_metadata(card)
    assert set(re.findall(r'source="([^"]+)"', card)) == {"u/m"}
    assert '"u/m/example.wav"' in card


def test_model_card_notes_come_after_usage(tmp_path):
    make_run_folder(tmp_path / "run", {0: 2.0})
    notes = (
        "---\ndatasets:\n- LibriSpeech\n---\n"
        "## Training data\n\nLibriSpeech (CC BY 4.0)."
    )
    export = export_model(tmp_path / "run", tmp_path / "export", notes=notes)
    card = (export / "README.md").read_text()
    assert card_metadata(card)["datasets"] == ["LibriSpeech"]
    assert card_metadata(card)["library_name"] == "speechbrain"
    assert card.count("---\n") == 2  # the notes' front matter was merged
    use, data = card.index("## Use it"), card.index("## Training data")
    assert use < data < card.index("## Limitations")
    assert "LibriSpeech (CC BY 4.0)." in card


def test_example_is_given_file_or_generated(tmp_path):
    make_run_folder(tmp_path / "run", {0: 2.0})
    generated = export_model(tmp_path / "run", tmp_path / "generated")
    info = sf.info(generated / "example.wav")
    assert (info.samplerate, info.channels, info.duration) == (16000, 1, 3.0)
    noisy = np.random.default_rng(0).uniform(-0.5, 0.5, (22050, 2))
    sf.write(tmp_path / "noisy.flac", noisy, 44100)
    main(
        [
            str(tmp_path / "run"),
            str(tmp_path / "given"),
            "--example",
            str(tmp_path / "noisy.flac"),
        ]
    )
    example, rate = sf.read(tmp_path / "given" / "example.wav")
    assert rate == 44100
    np.testing.assert_allclose(example, noisy, atol=1e-4)


def test_export_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such training output"):
        export_model(tmp_path / "nothing", tmp_path / "export")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        export_model(tmp_path / "nothing", tmp_path / "export")
    Checkpointer(tmp_path / "run" / "save").save_checkpoint(meta={"loss": 1})
    with pytest.raises(ValueError, match="no checkpoint with 'pesq'"):
        export_model(tmp_path / "run", tmp_path / "export")
    linear = torch.nn.Linear(2, 2)
    Checkpointer(tmp_path / "run2" / "save", {"model": linear}).save_checkpoint(
        meta={"pesq": 1.0}
    )
    with pytest.raises(ValueError, match="no model configuration"):
        export_model(tmp_path / "run2", tmp_path / "export")


def digests(folder):
    """File name -> sha256 of the files in ``folder``."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.iterdir()
    }


def test_export_into_a_savedir_leaves_the_source_alone(exported, tmp_path):
    source, _ = exported
    before = digests(source)
    savedir = tmp_path / "savedir"
    EnhanceSpeech.from_hparams(source=str(source), savedir=str(savedir))
    assert (savedir / "enhance_model.ckpt").is_symlink()
    new = make_run_folder(tmp_path / "run", {7: 2.0})
    assert main([str(tmp_path / "run"), str(savedir)]) == 0
    assert digests(source) == before
    assert not any(path.is_symlink() for path in savedir.iterdir())
    noisy = torch.randn(1, 2000, generator=torch.Generator().manual_seed(0))
    loaded = EnhanceSpeech.from_hparams(source=str(savedir))
    torch.testing.assert_close(loaded.enhance_batch(noisy), new.enhance(noisy))
    # Now a model folder of its own, it is not taken over as a savedir.
    with pytest.raises(ValueError, match="not fetched from"):
        EnhanceSpeech.from_hparams(source=str(source), savedir=str(savedir))
    assert digests(source) == before


def test_card_usage_lines_load_the_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_run_folder(tmp_path / "run", {0: 2.0})
    export = export_model(tmp_path / "run", tmp_path / "models" / "mine")
    card = (export / "README.md").read_text()
    sources = re.findall(r'source="([^"]+)"', card)
    (model,) = re.findall(r"cmcr-enhance .* --model (\S+)", card)
    assert sources == [model] * 2 and model == "models/mine"
    EnhanceSpeech.from_hparams(source=model)
    (example,) = re.findall(r'enhance_file\("([^"]+/example.wav)"', card)
    assert pathlib.Path(example).is_file()


def test_command_line_errors_are_one_line(tmp_path, capsys):
    export = tmp_path / "export"
    assert main([str(tmp_path / "no_run"), str(export)]) == 2
    assert capsys.readouterr().err == (
        f"export: error: {tmp_path / 'no_run'}: no such training output "
        "folder\n"
    )
    (tmp_path / "run").mkdir()
    assert main([str(tmp_path / "run"), str(export)]) == 2
    assert "no checkpoint folder" in capsys.readouterr().err
    assert not export.exists()


def runner_command(card):
    """The arguments of the ONNX runner's command line in a model card."""
    (line,) = re.findall(
        r"^python -m (speechbrain_cmcr\.onnx_runner .+)$", card, re.M
    )
    return line.split()


def test_onnx_export_runs_without_pytorch_as_the_model_does(tmp_path):
    """``--onnx`` writes both graphs of a causal model; the card's runner
    command, in a copy of the folder, enhances a file as ``EnhanceSpeech``
    does."""
    make_run_folder(tmp_path / "run", {0: 2.0}, causal=True)
    export = tmp_path / "export"
    assert main([str(tmp_path / "run"), str(export), "--onnx"]) == 0
    assert sorted(p.name for p in export.iterdir()) == sorted(
        EXPORTED_FILES + ["cmcr_offline.onnx", "cmcr_stream.onnx"]
    )
    card = (export / "README.md").read_text()
    assert (
        "| Causal | yes: streams, 63 samples (3.9 ms) behind the input |"
        in (card)
    )
    assert f"cmcr-enhance --stream --model {export}" in card
    assert "- `cmcr_stream.onnx`: one frame in, one frame out" in card
    module, graph, noisy, enhanced = runner_command(card)
    assert (module, graph) == (
        "speechbrain_cmcr.onnx_runner",
        "cmcr_stream.onnx",
    )
    copy = shutil.copytree(export, tmp_path / "downloaded")
    signal = mix_at_snr(harmonic_speech(SAMPLE_RATE // 2), 0.0)[0]
    sf.write(copy / noisy, signal.numpy(), SAMPLE_RATE, subtype="FLOAT")
    subprocess.run(
        [sys.executable, "-m", module, graph, noisy, enhanced],
        cwd=copy,
        check=True,
    )
    expected = EnhanceSpeech.from_hparams(source=str(export)).enhance_file(
        copy / noisy
    )
    got, rate = sf.read(copy / enhanced, dtype="float32")
    assert rate == SAMPLE_RATE and got.shape == tuple(expected.shape)
    assert expected.abs().max() > 0.1
    assert np.abs(got - expected.numpy()).max() < 1e-4


def test_onnx_graphs_follow_the_model(tmp_path):
    """An offline model gets the offline graph alone; exporting again
    without ``--onnx`` removes the graphs, and the card no longer names
    them."""
    make_run_folder(tmp_path / "run", {0: 2.0})
    export = tmp_path / "export"
    assert main([str(tmp_path / "run"), str(export), "--onnx"]) == 0
    card = (export / "README.md").read_text()
    assert "| Causal | no: an offline model |" in card
    assert "--stream" not in card
    assert runner_command(card)[1] == "cmcr_offline.onnx"
    assert (export / "cmcr_offline.onnx").is_file()
    assert not (export / "cmcr_stream.onnx").exists()
    assert main([str(tmp_path / "run"), str(export)]) == 0
    assert sorted(p.name for p in export.iterdir()) == EXPORTED_FILES
    card = (export / "README.md").read_text()
    assert "onnx_runner" not in card and ".onnx`" not in card


def load_interface(folder):
    """The ``custom_interface`` module of an exported folder, imported from
    its file (as ``foreign_class`` does), not from the package."""
    return import_from_path(folder / "custom_interface.py")


def assert_interface_matches_package(interface, config, state_dict):
    """The interface file's CMCRNet and the package's, built from
    ``config``, have the same state-dict keys and, with ``state_dict``
    loaded, give the same output on a random input."""
    theirs, ours = interface.CMCRNet(**config), CMCRNet(**config)
    assert theirs.state_dict().keys() == ours.state_dict().keys()
    for model in (theirs, ours):
        model.load_state_dict(state_dict, strict=True)
        model.eval()
    noisy = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([1.0, 0.6])
    with torch.no_grad():
        torch.testing.assert_close(
            theirs.enhance(noisy, lengths), ours.enhance(noisy, lengths)
        )


def test_interface_is_the_package_model(exported):
    export, best = exported
    interface = load_interface(export)
    assert interface.__file__ == str(export / "custom_interface.py")
    assert interface.CMCRNet is not CMCRNet
    assert_interface_matches_package(
        interface, best.config, read_state_dict(export / "enhance_model.ckpt")
    )
    # Another configuration, other weights: the same code.
    other = tiny_model(4, num_modules=2, output="mapping")
    assert_interface_matches_package(
        interface, other.config, other.state_dict()
    )


def test_interface_file_passes_the_linter(exported):
    export, _ = exported
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--config"]
        + [str(REPO_ROOT / "pyproject.toml"), "custom_interface.py"],
        cwd=export,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def module_file(monkeypatch, folder, name, source):
    """Imports ``source`` as module ``name`` from a file in ``folder``,
    known to ``sys.modules`` for the test."""
    path = folder / f"{name}.py"
    path.write_text(source)
    module = import_from_path(path)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_interface_inlines_the_package_modules_it_imports(
    tmp_path, monkeypatch
):
    user = module_file(
        monkeypatch,
        tmp_path,
        "user",
        "from speechbrain_cmcr.inference.enhancement import same_file\n\n\n"
        "def describe(a, b):\n    return same_file(a, b)\n",
    )
    source = interface_source(roots=(user.describe,))
    assert not any(
        line.startswith(("import speechbrain_cmcr", "from speechbrain_cmcr"))
        for line in source.splitlines()
    )
    assert source.index("def same_file(") < source.index("def describe(")
    namespace = {}
    exec(compile(source, "custom_interface.py", "exec"), namespace)
    assert namespace["describe"]("a/x.wav", "a/b/../x.wav")


@pytest.mark.parametrize(
    "source, message",
    [
        ("import speechbrain_cmcr.cli\n", "cannot be inlined"),
        ("from speechbrain_cmcr.cli import main as run\n", "without 'as'"),
        (
            "def f():\n    from speechbrain_cmcr import cli\n",
            "inside code",
        ),
        ("Path = None\n", "binds Path"),
    ],
    ids=["import", "alias", "inside-code", "name-clash"],
)
def test_interface_refuses_what_it_cannot_inline(
    tmp_path, monkeypatch, source, message
):
    source += "\n\ndef g():\n    pass\n"
    module = module_file(monkeypatch, tmp_path, "bad", source)
    with pytest.raises(ValueError, match=message):
        interface_source(roots=(module.g, EnhanceSpeech))
