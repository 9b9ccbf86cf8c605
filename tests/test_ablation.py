"""``benchmarks/ablation.sh``: usage, and checks before any training run.

The script is run from a copy in a scratch repository root, with a stand-in
python that records each call, so that nothing is trained here whatever the
script does."""

import os
import pathlib
import shutil
import subprocess

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$@" >> "$(dirname "$0")/calls.txt"
"""


@pytest.fixture
def root(tmp_path):
    """A scratch repository root with the script and a recording python."""
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(
        REPO_ROOT / "benchmarks" / "ablation.sh", tmp_path / "benchmarks"
    )
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return tmp_path


def ablation(root, *args, env=None):
    """Runs the copy of the script; returns the completed process."""
    return subprocess.run(
        ["bash", str(root / "benchmarks" / "ablation.sh"), *args],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
    )


def started_nothing(root):
    """No python call and no run folder."""
    return (
        not (root / ".venv" / "bin" / "calls.txt").exists()
        and not (root / "recipes").exists()
    )


@pytest.mark.parametrize("option", ["--help", "-h"])
def test_help_prints_usage_and_starts_nothing(root, option):
    result = ablation(root, option)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: bash benchmarks/ablation.sh")
    assert started_nothing(root)


def test_no_arguments_gives_usage(root):
    result = ablation(root)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: bash benchmarks/ablation.sh")
    assert "unbound variable" not in result.stderr
    assert started_nothing(root)


def test_missing_training_folder_is_named(root):
    result = ablation(root, str(root / "nope"))
    assert result.returncode == 2
    assert f"{root / 'nope'}: no such folder" in result.stderr
    assert started_nothing(root)


def test_missing_python_is_named(root):
    shutil.rmtree(root / ".venv")
    result = ablation(root, str(root))
    assert result.returncode == 2
    assert f"no python at {root}/.venv/bin/python" in result.stderr
    assert not (root / "recipes").exists()


def calls(root):
    """The recorded python calls, one list of arguments each."""
    lines = (root / ".venv" / "bin" / "calls.txt").read_text().splitlines()
    return [line.split() for line in lines]


def test_runs_use_the_checked_python(root):
    (root / "recipes" / "VoiceBank" / "enhance" / "CMCRNet").mkdir(parents=True)
    result = ablation(root, str(root), "1", "7")
    assert result.returncode == 0, result.stderr
    recorded = calls(root)
    assert len(recorded) == 16  # 8 variants x 1 seed: train, then export
    trains = [call for call in recorded if call[0] == "train.py"]
    assert len(trains) == 8
    runs = root / "recipes/VoiceBank/enhance/CMCRNet/results/ablation"
    for variant, option in [
        ("full", None),
        ("no_cr", "--cr_weight=0.0"),
        ("no_cm", "--num_modules=0"),
        ("no_cr_no_cm", "--cr_weight=0.0 --num_modules=0"),
        ("random_teacher", "--teacher_pretrained=False"),
        ("stream", "--stream_weight=0.1"),
        ("cr_0.03", "--cr_weight=0.03"),
        ("cr_0.3", "--cr_weight=0.3"),
    ]:
        (train,) = [
            call
            for call in trains
            if f"--output_folder={runs}/{variant}/7" in call
        ]
        assert "--seed=7" in train and "--number_of_epochs=20" in train
        assert "--test_checkpoint=last" in train
        assert option is None or set(option.split()) <= set(train)
        assert ["-m", "speechbrain_cmcr.export"] + [
            f"{runs}/{variant}/7",
            f"{runs}/{variant}/7/exported",
            "--last",
        ] in recorded


def test_environment_picks_variants_folder_and_validation(root, tmp_path):
    (root / "recipes" / "VoiceBank" / "enhance" / "CMCRNet").mkdir(parents=True)
    pairs = tmp_path / "pairs"
    (pairs / "noisy").mkdir(parents=True)
    env = dict(
        os.environ,
        VARIANTS="no_cm cr_0.3",
        RUNS=str(tmp_path / "runs"),
        VALID_PAIRS=str(pairs),
        EPOCHS="3",
    )
    result = ablation(root, str(root), "1", "1", "2", env=env)
    assert result.returncode == 0, result.stderr
    trains = [call for call in calls(root) if call[0] == "train.py"]
    folders = sorted(
        arg for call in trains for arg in call if "--output_folder" in arg
    )
    assert folders == [
        f"--output_folder={tmp_path}/runs/{variant}/{seed}"
        for variant, seed in [("cr_0.3", 1), ("cr_0.3", 2)]
        + [("no_cm", 1), ("no_cm", 2)]
    ]
    for train in trains:
        assert f"--valid_pairs={pairs}" in train
        assert "--number_of_epochs=3" in train


@pytest.mark.parametrize(
    "env, message",
    [
        ({"VARIANTS": "full no_such"}, "unknown variant 'no_such'"),
        ({"VALID_PAIRS": "/no/such/pairs"}, "/no/such/pairs: no noisy/"),
    ],
)
def test_bad_environment_is_named_before_any_run(root, env, message):
    result = ablation(root, str(root), env=dict(os.environ, **env))
    assert result.returncode == 2
    assert message in result.stderr
    assert started_nothing(root)
