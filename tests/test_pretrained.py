"""The shipped model: it loads offline, by folder or by name, is the default
of ``cmcr-enhance``, its card follows the Hub's conventions, and its
``custom_interface.py`` is in step with the package."""

import os
import re
from pathlib import Path

import soundfile as sf
import torch
from test_export import assert_interface_matches_package, load_interface
from test_hub import probe_file, run_without_package

from speechbrain_cmcr import EnhanceSpeech
from speechbrain_cmcr.cli import DEFAULT_MODEL, main
from speechbrain_cmcr.export import card_metadata
from speechbrain_cmcr.inference.enhancement import (
    read_state_dict,
    resolve_source,
    shipped_model,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = REPO_ROOT / "pretrained" / DEFAULT_MODEL
REGENERATE = (
    "regenerate it: python -c 'from speechbrain_cmcr.export import "
    f'write_interface; write_interface("pretrained/{DEFAULT_MODEL}")\''
)


def test_cli_default_is_the_shipped_model():
    assert shipped_model(DEFAULT_MODEL) == SHIPPED
    assert (SHIPPED / "enhance_model.ckpt").exists()


def test_shipped_model_enhances_its_example(tmp_path):
    enhancer = EnhanceSpeech.from_hparams(
        source=str(SHIPPED), savedir=str(tmp_path / "model")
    )
    noisy, rate = sf.read(SHIPPED / "example.wav", dtype="float32")
    enhanced = enhancer.enhance_batch(torch.from_numpy(noisy)[None])[0]
    assert enhanced.shape[0] == noisy.shape[0]
    assert torch.isfinite(enhanced).all()
    # It removes something: the output differs from, and is quieter than,
    # the noisy input.
    assert enhanced.pow(2).mean() < torch.from_numpy(noisy).pow(2).mean()


def test_shipped_model_loads_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_source(DEFAULT_MODEL) == str(SHIPPED)
    noisy = torch.randn(1, 4000, generator=torch.Generator().manual_seed(0))
    by_name = EnhanceSpeech.from_hparams(source=DEFAULT_MODEL)
    by_folder = EnhanceSpeech.from_hparams(source=str(SHIPPED))
    torch.testing.assert_close(
        by_name.enhance_batch(noisy), by_folder.enhance_batch(noisy)
    )


def test_cli_without_model_uses_the_shipped_one(tmp_path):
    assert main([str(SHIPPED / "example.wav"), "-o", str(tmp_path)]) == 0
    out, rate = sf.read(tmp_path / "example.wav")
    assert rate == 16000 and out.shape[0] > 0


def test_card_usage_lines_load_the_shipped_model(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO_ROOT)
    card = (SHIPPED / "README.md").read_text()
    sources = re.findall(r'source="([^"]+)"', card)
    (model,) = re.findall(r"cmcr-enhance .* --model (\S+)", card)
    assert sources == [model] * 2
    assert EnhanceSpeech.from_hparams(source=model).hparams.sample_rate
    example = str(SHIPPED / "example.wav")
    assert main([example, "-o", str(tmp_path), "--model", model]) == 0


def test_card_follows_the_hub_conventions():
    card = (SHIPPED / "README.md").read_text()
    metadata = card_metadata(card)
    assert metadata["library_name"] == "speechbrain"
    assert metadata["language"] == "en"
    assert metadata["license"] == "apache-2.0"
    assert {"speechbrain", "speech-enhancement"} <= set(metadata["tags"])
    assert metadata["datasets"] == ["LibriSpeech", "VCTK"]
    assert metadata["metrics"][:2] == ["PESQ", "CSIG"]
    sections = re.findall(r"^## (.+)$", card, re.M)
    for section in [
        "Results",
        "Use it",
        "Training data and attributions",
        "Limitations",
        "Citation",
    ]:
        assert section in sections
    assert "| PESQ (wide-band) | 1.36 | 1.86 |" in card
    assert "foreign_class(" in card and "EnhanceSpeech.from_hparams(" in card
    assert "LibriSpeech, CC BY 4.0" in card
    assert "@article{xu2023cmcr" in card and "@misc{speechbrain" in card


def test_shipped_interface_is_in_step_with_the_package():
    interface = load_interface(SHIPPED)
    state_dict = read_state_dict(SHIPPED / "enhance_model.ckpt")
    config = state_dict["_extra_state"]["config"]
    try:
        assert_interface_matches_package(interface, config, state_dict)
    except AssertionError as error:
        raise AssertionError(
            f"{SHIPPED}/custom_interface.py differs from the package's "
            f"model; {REGENERATE}"
        ) from error


def test_shipped_interface_loads_without_the_package(tmp_path):
    probe_path, probe = probe_file(tmp_path)
    example = SHIPPED / "example.wav"
    results = run_without_package(
        [SHIPPED, example, probe_path, tmp_path / "out.pt"],
        {**os.environ, "HF_HUB_OFFLINE": "1"},
        tmp_path,
    )
    local = EnhanceSpeech.from_hparams(source=str(SHIPPED))
    torch.testing.assert_close(results["batch"], local.enhance_batch(probe))
    torch.testing.assert_close(results["file"], local.enhance_file(example))
