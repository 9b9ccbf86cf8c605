"""The ``cmcr-enhance`` command on folders, with failures and skipping."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from test_export import exported_tiny_model

from speechbrain_cmcr import cli

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder, _ = exported_tiny_model(tmp_path_factory.mktemp("cli_model"))
    return str(folder)


def noise(seconds, sample_rate, channels=1, seed=0):
    """Quiet white noise, [L, C]."""
    rng = np.random.default_rng(seed)
    return 0.1 * rng.standard_normal((int(seconds * sample_rate), channels))


@pytest.fixture
def inputs(tmp_path):
    """A folder of good files (wav, nested flac, ogg), a corrupt wav and a
    file that is not audio."""
    folder = tmp_path / "noisy"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", noise(0.3, 16000), 16000)
    sf.write(folder / "sub" / "b.flac", noise(0.2, 44100, 2), 44100)
    sf.write(folder / "c.ogg", noise(0.2, 8000), 8000, format="OGG")
    (folder / "bad.wav").write_bytes(b"RIFF but not really a wav file")
    (folder / "notes.txt").write_text("not audio")
    return folder


GOOD_OUTPUTS = ["a.wav", "c.ogg", "sub/b.flac"]


def outputs(folder):
    """Relative paths of the files under ``folder``."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.*"))


def test_folder_with_a_corrupt_file(model, inputs, tmp_path, capsys):
    out = tmp_path / "enhanced"
    status = cli.main([str(inputs), "-o", str(out), "--model", model])
    assert status == 1
    assert outputs(out) == GOOD_OUTPUTS
    captured = capsys.readouterr()
    assert "3 enhanced, 0 skipped (already done), 1 failed" in captured.out
    assert "bad.wav: not a readable audio file" in captured.err
    assert sf.info(out / "sub" / "b.flac").samplerate == 16000


def test_done_files_are_skipped_unless_overwrite(model, inputs, tmp_path):
    (inputs / "bad.wav").unlink()
    out = tmp_path / "enhanced"
    args = [str(inputs), "-o", str(out), "--model", model]
    assert cli.main(args) == 0
    sf.write(out / "a.wav", np.zeros(10), 16000)  # marks a.wav as done
    assert cli.main(args) == 0
    assert sf.info(out / "a.wav").frames == 10
    assert cli.main(args + ["--overwrite", "--input-rate"]) == 0
    assert sf.info(out / "a.wav").frames == 4800
    assert sf.info(out / "sub" / "b.flac").samplerate == 44100


def test_files_missing_and_colliding(model, inputs, tmp_path, capsys):
    out = tmp_path / "enhanced"
    other = tmp_path / "other"
    other.mkdir()
    sf.write(other / "a.wav", noise(0.1, 16000), 16000)
    status = cli.main(
        [
            str(inputs / "a.wav"),
            str(other / "a.wav"),
            str(tmp_path / "missing.wav"),
            "-o",
            str(out),
            "--model",
            model,
        ]
    )
    assert status == 1
    assert outputs(out) == ["a.wav"]
    err = capsys.readouterr().err
    assert f"same output name as {inputs / 'a.wav'}" in err
    assert "missing.wav" in err and "audio file not found" in err


def test_silent_files_warn_each_time(model, tmp_path):
    for name in ["s1.wav", "s2.wav"]:
        sf.write(tmp_path / name, np.zeros(1600), 16000)
    args = [str(tmp_path / "s1.wav"), str(tmp_path / "s2.wav")]
    with pytest.warns(UserWarning) as caught:
        status = cli.main(args + ["-o", str(tmp_path / "o"), "--model", model])
    assert status == 0
    assert sum("all-zero input" in str(w.message) for w in caught) == 2


def test_run_cannot_start(tmp_path, inputs, monkeypatch, capsys):
    out = str(tmp_path / "enhanced")
    monkeypatch.setattr(cli, "DEFAULT_MODEL", tmp_path / "no_model")
    assert cli.main([str(inputs), "-o", out]) == 2
    assert "default model folder" in capsys.readouterr().err
    assert cli.main([str(inputs), "-o", out, "--model", "./nope"]) == 2
    assert "not a Hub repository id" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main([str(tmp_path / "empty"), "-o", out]) == 2
    assert "no audio files" in capsys.readouterr().err


def test_help_in_a_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "speechbrain_cmcr.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
    )
    assert "usage: cmcr-enhance" in result.stdout
    assert "--output-dir" in result.stdout
