"""The ablation's reports as a reader runs them: ``ablation_table.py`` on a
``quality.py --csv`` file and ``learning_curves.py`` on run folders."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
FIELDS = ["set", "system", "file", "pesq", "csig"]


def script(name, *args):
    """Runs a benchmarks script; returns the finished process."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *map(str, args)],
        capture_output=True,
        text=True,
    )


@pytest.fixture
def scores(tmp_path):
    """Per-file scores of two variants x three seeds on 8 files of set a
    and 2 of set b: 'better' is 0.2 PESQ above 'full' on every file, 'same'
    differs from it by noise around zero."""
    path = tmp_path / "scores.csv"
    with open(path, "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, FIELDS)
        writer.writeheader()
        for pair_set, files in [("a", 8), ("b", 2)]:
            for index in range(files):
                base = 1.5 + 0.05 * index
                writer.writerow(
                    dict(zip(FIELDS, [pair_set, "noisy input", index, 1.2, 2]))
                )
                for seed in (1, 2, 3):
                    noise = 0.01 * ((index + seed) % 3 - 1)
                    for system, pesq in [
                        ("full", base),
                        ("better", base + 0.2 + noise),
                        ("same", base + noise),
                    ]:
                        writer.writerow(
                            dict(
                                zip(
                                    FIELDS,
                                    [pair_set, f"{system}/{seed}", index]
                                    + [pesq, pesq + 1],
                                )
                            )
                        )
    return path


def table_rows(stdout):
    """Markdown table rows by system label."""
    rows = [line.split(" | ") for line in stdout.splitlines()[2:]]
    return {row[0].lstrip("| "): row for row in rows}


def test_table_gives_spread_and_paired_tests_per_set(scores):
    result = script("ablation_table.py", scores, "--set", "a")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert "pesq vs full" in header and "csig vs full" in header
    rows = table_rows(result.stdout)
    assert rows["full"][1] == "3"
    better = rows["better"]
    assert better[-2].startswith("+0.20 (p = ")
    assert "n = 24)" in better[-2]  # 8 files x 3 seeds, set b left out
    assert float(better[-2].split("p = ")[1].split(",")[0]) < 0.001
    same = float(rows["same"][-2].split("p = ")[1].split(",")[0])
    assert same > 0.05
    assert rows["noisy input"][1] == "1"


def test_table_refuses_an_unknown_set(scores):
    result = script("ablation_table.py", scores, "--set", "nope")
    assert result.returncode == 2
    assert "no rows of the sets ['nope']" in result.stderr


def write_log(folder, values, steps_per_epoch=38):
    """A recipe train log with one validation line per value."""
    folder.mkdir(parents=True)
    lines = [
        f"epoch: {epoch}, lr: 1.00e-03, steps: {epoch * steps_per_epoch} - "
        f"train loss: 0.5 - valid loss: 0.4, valid pesq: {value}, "
        "valid csig: 2.0"
        for epoch, value in enumerate(values, start=1)
    ]
    lines.append("Epoch loaded: 3 - test loss: 0.4, test pesq: 1.5")
    (folder / "train_log.txt").write_text("\n".join(lines) + "\n")


def test_curves_of_an_ablation_folder_become_a_png(tmp_path):
    runs = tmp_path / "ablation"
    for seed in (1, 2):
        write_log(runs / "full" / str(seed), [1.3, 1.4, 1.5])
        write_log(runs / "no_cr" / str(seed), [1.2, 1.3, 1.35])
    extra = tmp_path / "shipped"
    write_log(extra, [1.5, 1.6])
    output = tmp_path / "curves.png"
    result = script(
        "learning_curves.py",
        "--ablation",
        runs,
        f"shipped={extra}",
        "--output",
        output,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{output}: 5 runs"
    with Image.open(output) as picture:
        assert picture.format == "PNG" and picture.width > 500


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "no runs given"),
        (["full"], "expected LABEL=FOLDER, got 'full'"),
        (["x=/no/such/run"], "/no/such/run/train_log.txt: no such train log"),
        (["--metric", "nope", "x={run}"], "no validation nope logged"),
    ],
)
def test_curves_name_what_is_wrong(tmp_path, args, message):
    run = tmp_path / "run"
    write_log(run, [1.3])
    args = [arg.format(run=run) for arg in args]
    output = tmp_path / "curves.png"
    result = script("learning_curves.py", *args, "--output", output)
    assert result.returncode == 2
    assert message in result.stderr
    assert not output.exists()
