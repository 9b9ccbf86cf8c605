"""``benchmarks/ablation.sh``: usage, and checks before any training run.

The script is run from a copy in a scratch repository root, with a stand-in
python that records each call, so that nothing is trained here whatever the
script does."""

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


def test_runs_use_the_checked_python(root):
    (root / "recipes" / "VoiceBank" / "enhance" / "CMCRNet").mkdir(parents=True)
    result = ablation(root, str(root), "1", "7")
    assert result.returncode == 0, result.stderr
    calls = (root / ".venv" / "bin" / "calls.txt").read_text().splitlines()
    assert len(calls) == 8  # 4 variants x 1 seed: train, then export
    assert sum(call.startswith("train.py") for call in calls) == 4
