"""Every yaml in the recipe's ``hparams/`` through ``train.py``, end to end,
on data made here: the VoiceBank layout (the demo corpus) for the paper
configuration, speech and noise folders for dynamic mixing, the demo's own
synthesis for the demo. A yaml added later is picked up without editing
this file: its data path is chosen from what it loads (``demo_data``,
``dynamic_mixing``, else VoiceBank)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SAMPLE_RATE, harmonic_speech
from speechbrain.dataio.dataio import write_audio

from speechbrain_cmcr.dataio.demo_corpus import make_demo_corpus
from speechbrain_cmcr.utils.hparams import load_hparams

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes/VoiceBank/enhance/CMCRNet"
TRAIN = RECIPE / "train.py"
HPARAMS = sorted((RECIPE / "hparams").glob("*.yaml"))
METRICS = ["pesq", "csig", "cbak", "covl", "ssnr", "stoi", "si_sdr"]
# The smallest model and run that still go through every stage.
TINY_RUN = {
    "number_of_epochs": 1,
    "batch_size": 2,
    "train_crop_seconds": 1.0,
    "valid_metrics_subset": 2,
    "encoder_channels": "[4, 8, 8, 8, 8]",
    "num_modules": 1,
    "attention_dim": 8,
    "prep_workers": 1,
}


def _ids(paths):
    return [path.name for path in paths]


def data_path(hparams_file, tmp_path):
    """Which data a yaml trains on: "demo", "dynamic_mixing" or
    "voicebank" (loaded with throwaway folders, nothing else)."""
    hparams, _, _ = load_hparams(
        str(hparams_file),
        {"data_folder": str(tmp_path), "output_folder": str(tmp_path)},
    )
    if hparams["demo_data"]:
        return "demo"
    if hparams["dynamic_mixing"]:
        return "dynamic_mixing"
    return "voicebank"


@pytest.fixture(scope="module")
def voicebank_folder(tmp_path_factory):
    """A small folder in the official VoiceBank+DEMAND layout."""
    folder = tmp_path_factory.mktemp("voicebank")
    make_demo_corpus(str(folder), n_train=12, n_test=2, seed=3)
    return str(folder)


@pytest.fixture(scope="module")
def speech_and_noise(tmp_path_factory):
    """speech/<speaker>/*.wav and noise/*.wav for dynamic mixing."""
    folder = tmp_path_factory.mktemp("trainsrc")
    for s, speaker in enumerate(["spk1", "spk2", "spk3", "spk4"]):
        for u in range(3):
            wav = folder / "speech" / speaker / f"{speaker}_{u}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            speech = harmonic_speech(SAMPLE_RATE, f0=110 + 20 * s, seed=u)
            write_audio(str(wav), speech, SAMPLE_RATE)
    generator = torch.Generator().manual_seed(0)
    for n in range(2):
        wav = folder / "noise" / f"noise_{n}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        noise = 0.05 * torch.randn(3 * SAMPLE_RATE, generator=generator)
        write_audio(str(wav), noise, SAMPLE_RATE)
    return str(folder)


def tiny_overrides(
    kind, tmp_path, voicebank_folder, speech_and_noise, tiny_teacher_dir
):
    """Overrides that make a run of this data path take seconds."""
    args = {**TINY_RUN, "output_folder": str(tmp_path / "run")}
    if kind == "demo":
        args.update(
            data_folder=str(tmp_path / "demo_corpus"),
            teacher_source=str(tmp_path / "demo_teacher"),
            demo_train_utterances=12,
            demo_test_utterances=4,
        )
    elif kind == "dynamic_mixing":
        args.update(
            data_folder=speech_and_noise,
            dm_valid_speakers=1,
            dm_test_speakers=1,
            dm_valid_mixtures=2,
            dm_test_mixtures=2,
            dm_mixture_seconds=1.0,
        )
    else:
        args.update(data_folder=voicebank_folder)
    return args


def train(hparams_file, args, cwd):
    """Runs ``python train.py <yaml> --key=value ...`` from ``cwd``."""
    return subprocess.run(
        [
            sys.executable,
            str(TRAIN),
            str(hparams_file),
            *[f"--{key}={value}" for key, value in args.items()],
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


@pytest.mark.parametrize("hparams_file", HPARAMS, ids=_ids(HPARAMS))
def test_every_hparams_file_trains_validates_and_tests(
    hparams_file, tmp_path, voicebank_folder, speech_and_noise, tiny_teacher_dir
):
    kind = data_path(hparams_file, tmp_path / "probe")
    args = tiny_overrides(
        kind, tmp_path, voicebank_folder, speech_and_noise, tiny_teacher_dir
    )
    as_yaml = "\n".join(f"{key}: {value}" for key, value in args.items())
    hparams, _, _ = load_hparams(str(hparams_file), as_yaml)
    if hparams["teacher_type"] == "huggingface" and kind != "demo":
        # A local 4-layer wav2vec2 in place of the Hub model.
        args.update(
            teacher_source=tiny_teacher_dir,
            cr_layer_groups="[[1, 2], [3, 4]]",
            cr_layer_weights="[0.5, 0.5]",
        )
    proc = train(hparams_file, args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "run"
    summary = json.loads((out / "test_summary.json").read_text())
    for metric in METRICS:
        assert metric in summary and f"noisy_{metric}" in summary
    assert len(list((out / "save").glob("CKPT+*"))) == 1
    assert list((out / "enhanced").glob("*.wav"))
    assert "epoch: 1" in (out / "train_log.txt").read_text()


def test_paper_configuration_without_overrides_beyond_the_data(
    tmp_path, voicebank_folder, tiny_teacher_dir
):
    """The README's paper command, as written, with only the data folder
    and a local teacher: it must get past loading and preparation (the
    first training step would take minutes on a CPU, so --debug)."""
    paper = RECIPE / "hparams/cmcr.yaml"
    args = {
        "data_folder": voicebank_folder,
        "teacher_source": tiny_teacher_dir,
        "cr_layer_groups": "[[1, 2], [3, 4]]",
        "cr_layer_weights": "[0.5, 0.5]",
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(TRAIN),
            str(paper),
            *[f"--{key}={value}" for key, value in args.items()],
            "--debug",
            "--debug_batches=1",
            "--debug_epochs=1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "results/cmcr/4234/train_log.txt").exists()


@pytest.mark.parametrize("hparams_file", HPARAMS, ids=_ids(HPARAMS))
def test_seed_changes_the_output_folder(hparams_file, tmp_path):
    folders = {
        seed: load_hparams(
            str(hparams_file), {"seed": seed, "data_folder": str(tmp_path)}
        )[0]["output_folder"]
        for seed in (1, 2)
    }
    assert folders[1] != folders[2]
    assert "1" in os.path.basename(folders[1])


@pytest.mark.parametrize("hparams_file", HPARAMS, ids=_ids(HPARAMS))
def test_model_cost_reads_every_hparams_file_and_writes_nothing(
    hparams_file, tmp_path
):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/model_cost.py"),
            "--hparams",
            str(hparams_file),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parameters:" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_extending_file_keeps_tags_and_command_line_wins(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(
        "seed: 1\nout: !ref r/<seed>\nsum: !apply:sum [[1, 2]]\nlr: 0.1\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text("base_hparams: base.yaml\nout: !ref c/<seed>\nlr: 0.2\n")
    hparams, loaded, _ = load_hparams(str(child), "lr: 0.3\nseed: 5")
    assert loaded == str(base)
    assert hparams["out"] == "c/5"
    assert hparams["lr"] == 0.3
    assert hparams["sum"] == 3


def test_extending_file_with_an_unknown_key_is_refused(tmp_path):
    (tmp_path / "base.yaml").write_text("lr: 0.1\n")
    child = tmp_path / "child.yaml"
    child.write_text("base_hparams: base.yaml\nlr_typo: 0.2\n")
    with pytest.raises(KeyError, match="lr_typo"):
        load_hparams(str(child))


def test_missing_base_file_names_it(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base_hparams: gone.yaml\nlr: 0.2\n")
    with pytest.raises(FileNotFoundError, match="gone.yaml"):
        load_hparams(str(child))
