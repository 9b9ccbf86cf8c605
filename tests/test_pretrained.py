"""The shipped model loads offline from the repository and is the default of
``cmcr-enhance``."""

import re
from pathlib import Path

import soundfile as sf
import torch

from speechbrain_cmcr import EnhanceSpeech
from speechbrain_cmcr.cli import DEFAULT_MODEL, main

SHIPPED = Path(__file__).resolve().parents[1] / "pretrained" / "cmcr-dns-small"


def test_cli_default_is_the_shipped_model():
    assert DEFAULT_MODEL == SHIPPED
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


def test_cli_without_model_uses_the_shipped_one(tmp_path):
    assert main([str(SHIPPED / "example.wav"), "-o", str(tmp_path)]) == 0
    out, rate = sf.read(tmp_path / "example.wav")
    assert rate == 16000 and out.shape[0] > 0


def test_card_usage_lines_load_the_shipped_model(monkeypatch, tmp_path):
    monkeypatch.chdir(SHIPPED.parents[1])  # the repository root
    card = (SHIPPED / "README.md").read_text()
    (source,) = re.findall(r'source="([^"]+)"', card)
    (model,) = re.findall(r"cmcr-enhance .* --model (\S+)", card)
    assert source == model
    assert EnhanceSpeech.from_hparams(source=source).hparams.sample_rate
    example = str(SHIPPED / "example.wav")
    assert main([example, "-o", str(tmp_path), "--model", model]) == 0
