"""The wheel works alone: built from the repository's files, it carries the
default model, and its ``cmcr-enhance`` and ``EnhanceSpeech`` enhance a file
in a folder outside the checkout, offline, with the package imported from
the wheel. (CI also installs the wheel into a fresh virtual environment,
with its dependencies: see ``.ci/run``.)"""

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest
import soundfile as sf
from conftest import harmonic_speech, mix_at_snr

from speechbrain_cmcr.cli import DEFAULT_MODEL

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = REPO_ROOT / "pretrained" / DEFAULT_MODEL
IN_WHEEL = f"speechbrain_cmcr/pretrained/{DEFAULT_MODEL}"
# Run with the unpacked wheel first on sys.path: the package comes from
# there, not from the checkout (installed editable in the venv).
RUN_SCRIPT = """
import sys

site, noisy = sys.argv[1:]
sys.path.insert(0, site)
import speechbrain_cmcr
from speechbrain_cmcr import EnhanceSpeech
from speechbrain_cmcr.cli import DEFAULT_MODEL, main

assert speechbrain_cmcr.__file__.startswith(site), speechbrain_cmcr.__file__
status = main([noisy, "-o", "by_cli"])
enhancer = EnhanceSpeech.from_hparams(source=DEFAULT_MODEL)
enhancer.enhance_file(noisy, output_filename="by_interface.wav")
sys.exit(status)
"""


def repository_files():
    """The files a clone of the repository would have (tracked, and new
    ones that git does not ignore), relative to its root."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    names = [name for name in os.fsdecode(listed).split("\0") if name]
    return [name for name in names if (REPO_ROOT / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel ``pip wheel .`` builds from a copy of the repository."""
    root = tmp_path_factory.mktemp("wheel")
    for name in repository_files():
        (root / "source" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, root / "source" / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
    subprocess.run(
        command + ["-w", str(root / "dist"), str(root / "source")], check=True
    )
    (wheel,) = (root / "dist").glob("speechbrain_cmcr-*.whl")
    return wheel


def test_wheel_carries_the_default_model(wheel):
    with zipfile.ZipFile(wheel) as archive:
        shipped = sorted(path.name for path in SHIPPED.iterdir())
        inside = sorted(
            name.rsplit("/", 1)[1]
            for name in archive.namelist()
            if name.startswith(IN_WHEEL + "/")
        )
        assert inside == shipped
        for name in shipped:
            content = archive.read(f"{IN_WHEEL}/{name}")
            assert content == (SHIPPED / name).read_bytes()
        (entry_points,) = [
            name
            for name in archive.namelist()
            if name.endswith(".dist-info/entry_points.txt")
        ]
        assert "cmcr-enhance = speechbrain_cmcr.cli:main" in (
            archive.read(entry_points).decode()
        )


def test_unpacked_wheel_enhances_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    noisy, _ = mix_at_snr(harmonic_speech(16000), 5.0)
    sf.write(work / "noisy.wav", noisy.numpy(), 16000)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT, str(site), "noisy.wav"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 enhanced, 0 skipped (already done), 0 failed" in result.stdout
    by_cli, rate = sf.read(work / "by_cli" / "noisy.wav")
    by_interface, _ = sf.read(work / "by_interface.wav")
    assert rate == 16000 and by_cli.shape == noisy.shape
    assert (by_cli == by_interface).all()
