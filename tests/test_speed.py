"""benchmarks/speed.py: its tables come out whole, from real measurements."""

import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import pointwise_conv  # noqa: E402
import speed  # noqa: E402


def test_lstm_macs_count_every_layer_and_direction():
    lstm = torch.nn.LSTM(10, 4, num_layers=2, bidirectional=True)
    # layer 1: 2 directions x 4 gates x 4 x (10 + 4); layer 2 reads 8.
    assert speed.lstm_macs_per_frame(lstm) == 2 * 16 * 14 + 2 * 16 * 12


def test_metricgan_pipeline_keeps_the_length():
    model = speed.MetricGANPlus().eval()
    with torch.no_grad():
        assert model.enhance(torch.randn(2, 12345)).shape == (2, 12345)


def test_inference_and_training_tables(capsys, tmp_path):
    out = tmp_path / "speed.md"
    speed.main(
        [
            "--systems",
            "metricgan",
            "noisereduce",
            "--durations",
            "1",
            "--threads",
            "1",
            "--runs",
            "1",
            "--teachers",
            "none",
            "resemblyzer",
            "--train-batch",
            "1",
            "--train-seconds",
            "0.5",
            "--output",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert out.read_text() == text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    inference = [r for r in rows if "| 1 s | 1 |" in r]
    assert len(inference) == 2 and not any("failed" in r for r in rows)
    for row in inference:
        rtf = float(row.split("|")[6])
        assert rtf > 0
    training = {
        r.split("|")[1].strip(): r
        for r in rows
        if "CR" in r and not r.startswith("| loss")
    }
    assert set(training) == {"no CR", "CR, Resemblyzer"}
    assert float(training["CR, Resemblyzer"].split("|")[3]) > 0
    assert float(training["no CR"].split("|")[3]) == 1.0
    assert re.search(r"MetricGAN\+ generator \| 1\.\d\d M", text)


def test_pointwise_ways_agree_and_every_shape_is_timed(capsys):
    x = torch.randn(2, 4, 3, 5)
    weight, bias = torch.randn(6, 4, 1, 1), torch.randn(6)
    for way in pointwise_conv.WAYS.values():
        torch.testing.assert_close(
            way(x, weight, bias), pointwise_conv.as_conv(x, weight, bias)
        )
    pointwise_conv.main(["--repeats", "1", "--frames", "4", "--batch", "1"])
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == len(pointwise_conv.SHAPES)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(float(c) > 0 for c in cells[1:])
