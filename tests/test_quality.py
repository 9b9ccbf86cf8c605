"""Tests of benchmarks/quality.py: delay alignment, scoring and the table,
on pair sets generated here (harmonic speech-like signals in white noise,
and "published" outputs that are the clean signals delayed)."""

import contextlib
import csv
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SAMPLE_RATE, harmonic_speech, mix_at_snr
from test_export import exported_tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import quality  # noqa: E402

DELAY = 37  # samples, of the published outputs made here
SECONDS = 1.5
# Set -> file -> (f0 in Hz, seed).
FILES = {
    "alpha": {"a1.wav": (120.0, 0), "a2.wav": (200.0, 1)},
    "beta": {"b1.wav": (160.0, 2)},
}
CORE_COLUMNS = ["PESQ", "CSIG", "CBAK", "COVL", "SSNR (dB)", "STOI"]
CORE_COLUMNS += ["SI-SDR (dB)"]
DNSMOS_COLUMNS = ["DNSMOS SIG", "DNSMOS BAK", "DNSMOS OVRL", "DNSMOS P808"]


def clean_signal(f0, seed, seconds=SECONDS):
    """Speech-like clean signal [L], float64."""
    num_samples = int(seconds * SAMPLE_RATE)
    return harmonic_speech(num_samples, f0, seed).double().numpy()


def noisy_signal(clean, seed, snr_db=5.0):
    """``clean`` [L] in white noise at ``snr_db``, float64."""
    noisy, _ = mix_at_snr(torch.from_numpy(clean), snr_db, seed)
    return noisy.numpy()


def delayed(signal, delay, extra=0):
    """``signal`` [L] delayed by ``delay`` samples, zero-filled, with
    ``extra`` trailing zeros (published outputs may be longer)."""
    shifted = np.concatenate([np.zeros(delay), signal[: len(signal) - delay]])
    return np.pad(shifted, (0, extra))  # [L + extra]


def write_pair_set(folder, files, published=None, published_rate=None):
    """Writes ``clean/`` and ``noisy/`` for ``files`` (name -> (f0, seed)),
    and, if ``published`` is a folder name, the clean signals delayed by
    ``DELAY`` there (at ``published_rate`` if given)."""
    for sub in ["clean", "noisy"] + ([published] if published else []):
        (folder / sub).mkdir(parents=True)
    for index, (name, (f0, seed)) in enumerate(files.items()):
        clean = clean_signal(f0, seed)
        sf.write(folder / "clean" / name, clean, SAMPLE_RATE)
        noisy = noisy_signal(clean, seed + 10)
        sf.write(folder / "noisy" / name, noisy, SAMPLE_RATE)
        if published:
            output = delayed(clean, DELAY, extra=40 * index)
            rate = published_rate or SAMPLE_RATE
            output = quality.resample(output, SAMPLE_RATE, rate)
            sf.write(folder / published / name, output, rate, "FLOAT")
    return folder


def run_main(argv):
    """Runs ``quality.main(argv)``; returns (printed text, rows)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rows = quality.main([str(arg) for arg in argv])
    return printed.getvalue(), rows


def parse_table(text):
    """The printed Markdown table as (column titles, {(set, system): row})."""
    lines = [line for line in text.splitlines() if line.startswith("|")]

    def cells(line):
        return [cell.strip() for cell in line.strip("|").split("|")]

    titles = cells(lines[0])
    rows = {}
    for line in lines[2:]:
        row = dict(zip(titles, cells(line)))
        rows[(row["set"], row["system"])] = row
    return titles, rows


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One run over two generated sets, with a tiny exported model given
    both as its export and as its training run folder, no peers and no
    DNSMOS; returns the table, the rows and the CSV rows."""
    root = tmp_path_factory.mktemp("quality")
    alpha = write_pair_set(root / "alpha", FILES["alpha"], "delayed_clean")
    beta = write_pair_set(root / "beta", FILES["beta"], "delayed_8k", 8000)
    export, _ = exported_tiny_model(root / "model")
    csv_path = root / "scores.csv"
    argv = ["--peers", "none", "--no-dnsmos", "--csv", csv_path]
    argv += ["--model", f"tiny={export}", "--model", root / "model" / "run"]
    text, rows = run_main(argv + [alpha, beta])
    with open(csv_path, newline="") as stream:
        csv_rows = list(csv.DictReader(stream))
    titles, table = parse_table(text)
    return dict(text=text, rows=rows, csv=csv_rows, titles=titles, table=table)


# ---------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [DELAY, -23, 0])
def test_estimate_lag_finds_the_delay_of_a_noisy_output(delay):
    clean = clean_signal(140.0, 0)
    output = np.roll(noisy_signal(clean, 3, snr_db=0.0), delay)
    assert quality.estimate_lag(clean, output, max_lag=800) == delay


def test_lag_search_stays_within_max_lag():
    clean = clean_signal(140.0, 0)
    lag = quality.estimate_lag(clean, delayed(clean, DELAY), max_lag=20)
    assert abs(lag) <= 20
    # A silent output has no correlation peak: nothing is shifted.
    assert quality.estimate_lag(clean, np.zeros(len(clean)), 800) == 0


@pytest.mark.parametrize("extra", [-100, 0, 100])
def test_align_undoes_the_delay_and_trims_to_the_common_length(extra):
    clean = clean_signal(140.0, 0)
    output = delayed(clean, DELAY, extra=max(extra, 0))
    output = output[: len(output) + min(extra, 0)]
    reference, aligned, lag = quality.align(clean, output, max_lag=800)
    assert lag == DELAY
    assert len(reference) == len(aligned) == min(len(clean), len(output))
    valid = len(aligned) - DELAY  # the end is zero-filled by the shift
    np.testing.assert_allclose(aligned[:valid], clean[:valid])


def test_score_pair_is_near_perfect_on_a_delayed_copy():
    clean = clean_signal(140.0, 0)
    max_lag = quality.max_lag_samples(50.0)
    assert max_lag == 800
    scores = quality.score_pair(clean, delayed(clean, DELAY), max_lag)
    assert scores["lag"] == DELAY
    assert scores["pesq"] > 4.0
    assert scores["si_sdr"] > 30.0
    assert scores["stoi"] > 0.99
    unaligned = quality.score_pair(clean, delayed(clean, DELAY), max_lag=0)
    assert unaligned["lag"] == 0
    assert unaligned["si_sdr"] < scores["si_sdr"] - 20


# ---------------------------------------------------------------------------
# The table and the CSV
# ---------------------------------------------------------------------------


def test_table_has_every_column_and_the_all_sets_block(report):
    expected = ["set", "system", "files", *CORE_COLUMNS, "delay (samples)"]
    assert report["titles"] == expected
    systems = ["noisy input", "tiny", "run"]
    for set_label in ["alpha (2)", "beta (1)", "all sets"]:
        for system in systems:
            assert (set_label, system) in report["table"]
    assert ("alpha (2)", "delayed_clean (published)") in report["table"]
    assert ("beta (1)", "delayed_8k (published)") in report["table"]
    assert ("alpha (2)", "delayed_8k (published)") not in report["table"]
    # The all-sets block comes last.
    last_rows = report["text"].strip().splitlines()[-5:]
    assert all(line.startswith("| all sets |") for line in last_rows)


def test_published_output_is_aligned_and_beats_the_noisy_input(report):
    published = report["table"][("alpha (2)", "delayed_clean (published)")]
    noisy = report["table"][("alpha (2)", "noisy input")]
    assert published["delay (samples)"] == str(DELAY)
    assert noisy["delay (samples)"] == "0"
    assert float(published["PESQ"]) > 4.0
    assert float(published["SI-SDR (dB)"]) > 30.0
    for column in CORE_COLUMNS:
        assert float(published[column]) > float(noisy[column]), column


def test_published_output_at_another_rate_is_resampled(report):
    label = "delayed_8k (published)"
    rows = [row for row in report["csv"] if row["system"] == label]
    assert [row["lag"] for row in rows] == [str(DELAY)]
    assert float(rows[0]["pesq"]) > 3.5


def test_csv_rows_match_the_files(report):
    rows = report["csv"]
    assert list(rows[0]) == quality.CSV_FIELDS
    # alpha: noisy, 2 models, 1 published; beta: the same.
    assert len(rows) == 4 * 2 + 4 * 1 == len(report["rows"])
    for set_name, files in FILES.items():
        for system in ["noisy input", "tiny", "run"]:
            names = [
                row["file"]
                for row in rows
                if row["set"] == set_name and row["system"] == system
            ]
            assert names == list(files)
    for row in rows:
        assert all(row[metric] != "" for metric in quality.METRICS)
        assert all(row[m] == "" for m in quality.DNSMOS_METRICS)
        assert float(row["pesq"]) >= 1.0


def test_all_sets_block_is_file_weighted(report):
    noisy = [row for row in report["rows"] if row["system"] == "noisy input"]
    assert len(noisy) == 3
    mean_pesq = np.mean([row["pesq"] for row in noisy])
    overall = report["table"][("all sets", "noisy input")]
    assert overall["files"] == "3"
    assert float(overall["PESQ"]) == pytest.approx(mean_pesq, abs=0.005)


def test_model_rows_from_export_and_from_training_run_agree(report):
    tiny = [row for row in report["rows"] if row["system"] == "tiny"]
    run = [row for row in report["rows"] if row["system"] == "run"]
    assert len(tiny) == len(run) == 3
    for from_export, from_run in zip(tiny, run):
        for metric in quality.METRICS:
            assert from_export[metric] == pytest.approx(from_run[metric])
    noisy = [row for row in report["rows"] if row["system"] == "noisy input"]
    # An untrained tiny model changes the signal.
    assert [row["si_sdr"] for row in tiny] != [row["si_sdr"] for row in noisy]


def test_dnsmos_and_a_peer_in_the_table(tmp_path):
    pair_set = write_pair_set(tmp_path / "gamma", FILES["beta"])
    text, rows = run_main(["--peers", "noisereduce", pair_set])
    titles, table = parse_table(text)
    assert titles[3:-1] == CORE_COLUMNS + DNSMOS_COLUMNS
    peer = table[("gamma (1)", "Spectral gating (noisereduce)")]
    noisy = table[("gamma (1)", "noisy input")]
    for column in DNSMOS_COLUMNS:
        assert 1.0 <= float(peer[column]) <= 5.0
        assert 1.0 <= float(noisy[column]) <= 5.0
    # Spectral gating removes stationary white noise.
    assert float(peer["DNSMOS BAK"]) > float(noisy["DNSMOS BAK"])
    assert abs(int(peer["delay (samples)"])) <= 2
    assert set(quality.DNSMOS_METRICS) <= set(rows[0])


def test_deepfilternet3_row_is_aligned_and_beats_the_noisy_input(tmp_path):
    pair_set = write_pair_set(tmp_path / "delta", FILES["alpha"])
    text, _ = run_main(["--peers", "deepfilternet3", "--no-dnsmos", pair_set])
    _, table = parse_table(text)
    peer = table[("delta (2)", "DeepFilterNet3")]
    noisy = table[("delta (2)", "noisy input")]
    # Its 30-ms delay is removed by the peer, not by the alignment.
    assert abs(float(peer["delay (samples)"])) <= 2
    for column in ["PESQ", "SSNR (dB)", "SI-SDR (dB)"]:
        assert float(peer[column]) > float(noisy[column])


# ---------------------------------------------------------------------------
# Arguments and errors
# ---------------------------------------------------------------------------


def test_model_specs_and_peer_lists():
    assert quality.parse_model_spec("a=b/c") == ("a", "b/c")
    assert quality.parse_model_spec("runs/full/1/") == ("1", "runs/full/1/")
    assert quality.parse_peers("NSNet2,gtcrn") == ["nsnet2", "gtcrn"]
    assert quality.parse_peers("all") == list(quality.PEERS)
    with pytest.raises(SystemExit):
        quality.parse_args(["--peers", "rnnoise,dfn", "somewhere"])


def test_missing_clean_twin_is_a_clear_error(tmp_path):
    pair_set = write_pair_set(tmp_path / "set", FILES["alpha"])
    (pair_set / "clean" / "a2.wav").unlink()
    with pytest.raises(FileNotFoundError, match="no clean twin.*a2.wav"):
        quality.main(["--peers", "none", "--no-dnsmos", str(pair_set)])


def test_folder_without_pairs_is_a_clear_error(tmp_path):
    (tmp_path / "set" / "noisy").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no clean subfolder"):
        quality.find_pair_set(tmp_path / "set")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        quality.find_pair_set(tmp_path / "elsewhere")


def test_published_folder_missing_a_file_is_a_clear_error(tmp_path):
    pair_set = write_pair_set(tmp_path / "set", FILES["alpha"], "theirs")
    (pair_set / "theirs" / "a1.wav").unlink()
    with pytest.raises(FileNotFoundError, match="no published twin in thei"):
        quality.find_pair_set(pair_set)


def test_stereo_and_wrong_rate_are_refused(tmp_path):
    pair_set = write_pair_set(tmp_path / "set", FILES["beta"])
    found = quality.find_pair_set(pair_set)
    clean = clean_signal(160.0, 2)
    sf.write(pair_set / "noisy" / "b1.wav", clean, 8000)
    with pytest.raises(ValueError, match="8000 Hz; pairs must be at 16000"):
        quality.read_pair(found, "b1.wav")
    stereo = np.stack([clean, clean], axis=1)  # [L, 2]
    sf.write(pair_set / "noisy" / "b1.wav", stereo, SAMPLE_RATE)
    with pytest.raises(ValueError, match="2 channels; only mono"):
        quality.read_pair(found, "b1.wav")
