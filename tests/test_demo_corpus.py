"""Tests of the synthetic VoiceBank-like demo corpus."""

import json
import os

import pytest
import soundfile as sf

from speechbrain_cmcr.dataio import demo_corpus
from speechbrain_cmcr.dataio.demo_corpus import (
    MARKER_FILE,
    SPLITS,
    TEST_SNRS,
    TEST_SPEAKERS,
    TRAIN_SNRS,
    TRAIN_SPEAKERS,
    make_demo_corpus,
    snr_db,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A corpus generated once with the default options."""
    return make_demo_corpus(str(tmp_path_factory.mktemp("demo")))


def _names(folder, subfolder):
    return sorted(os.listdir(os.path.join(folder, subfolder)))


def _pairs(folder):
    for split, (clean_dir, noisy_dir) in SPLITS.items():
        for name in _names(folder, noisy_dir):
            yield (
                split,
                name,
                os.path.join(folder, clean_dir, name),
                os.path.join(folder, noisy_dir, name),
            )


def _read_bytes(folder):
    return {
        os.path.join(d, n): open(os.path.join(folder, d, n), "rb").read()
        for d in sum(SPLITS.values(), ())
        for n in _names(folder, d)
    }


def test_layout_and_default_counts(corpus):
    assert sorted(os.listdir(corpus)) == sorted(
        [MARKER_FILE, *sum(SPLITS.values(), ())]
    )
    clean_train, noisy_train = SPLITS["train"]
    clean_test, noisy_test = SPLITS["test"]
    assert len(_names(corpus, clean_train)) == 48
    assert len(_names(corpus, clean_test)) == 12
    assert _names(corpus, clean_train) == _names(corpus, noisy_train)
    assert _names(corpus, clean_test) == _names(corpus, noisy_test)


def test_file_names_and_speakers(corpus):
    train = _names(corpus, SPLITS["train"][0])
    test = _names(corpus, SPLITS["test"][0])
    assert {n.split("_")[0] for n in train} == set(TRAIN_SPEAKERS)
    assert {n.split("_")[0] for n in test} == set(TEST_SPEAKERS)
    assert {"p226", "p287"} <= set(TRAIN_SPEAKERS)
    assert len(TRAIN_SPEAKERS) >= 4
    assert set(TEST_SPEAKERS) == {"p232", "p257"}
    assert "p226_001.wav" in train and "p226_008.wav" in train
    assert "p232_001.wav" in test and "p257_006.wav" in test


def test_lengths_rate_and_level(corpus):
    for _, _, clean_path, noisy_path in _pairs(corpus):
        clean_info, noisy_info = sf.info(clean_path), sf.info(noisy_path)
        assert clean_info.samplerate == noisy_info.samplerate == 16000
        assert clean_info.channels == noisy_info.channels == 1
        assert clean_info.frames == noisy_info.frames
        assert 1.5 <= clean_info.duration <= 3.0
        clean, _ = sf.read(clean_path)
        noisy, _ = sf.read(noisy_path)
        assert 0.3 < abs(clean).max() <= 0.501
        assert abs(noisy).max() < 1.0


def test_snr_of_each_pair(corpus):
    with open(os.path.join(corpus, MARKER_FILE), encoding="utf-8") as f:
        intended = json.load(f)["utterances"]
    seen = {"train": set(), "test": set()}
    for split, name, clean_path, noisy_path in _pairs(corpus):
        target = intended[name[: -len(".wav")]]["snr_db"]
        measured = snr_db(sf.read(clean_path)[0], sf.read(noisy_path)[0])
        assert abs(measured - target) < 0.1, (name, measured, target)
        seen[split].add(target)
    assert seen == {"train": set(TRAIN_SNRS), "test": set(TEST_SNRS)}


def test_all_noise_types_used(corpus):
    with open(os.path.join(corpus, MARKER_FILE), encoding="utf-8") as f:
        utterances = json.load(f)["utterances"]
    noises = {u["noise"] for u in utterances.values()}
    assert noises == set(demo_corpus.NOISE_TYPES)


def test_deterministic_given_seed(tmp_path):
    first = make_demo_corpus(str(tmp_path / "a"), n_train=6, n_test=2, seed=7)
    again = make_demo_corpus(str(tmp_path / "b"), n_train=6, n_test=2, seed=7)
    other = make_demo_corpus(str(tmp_path / "c"), n_train=6, n_test=2, seed=8)
    assert _read_bytes(first) == _read_bytes(again)
    first_bytes, other_bytes = _read_bytes(first), _read_bytes(other)
    assert first_bytes.keys() == other_bytes.keys()
    assert all(first_bytes[k] != other_bytes[k] for k in first_bytes)


def test_skips_complete_corpus(tmp_path):
    folder = make_demo_corpus(str(tmp_path / "demo"), n_train=6, n_test=2)
    path = os.path.join(folder, SPLITS["test"][1], "p232_001.wav")
    before = os.stat(path).st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    make_demo_corpus(folder, n_train=6, n_test=2)
    assert os.stat(path).st_mtime_ns == before - 10**9


def test_regenerates_when_options_change(tmp_path):
    folder = make_demo_corpus(str(tmp_path / "demo"), n_train=12, n_test=4)
    make_demo_corpus(folder, n_train=6, n_test=2)
    assert len(_names(folder, SPLITS["train"][0])) == 6
    assert len(_names(folder, SPLITS["test"][1])) == 2
    with open(os.path.join(folder, MARKER_FILE), encoding="utf-8") as f:
        assert json.load(f)["options"]["n_train"] == 6


def test_regenerates_missing_files(tmp_path):
    folder = make_demo_corpus(str(tmp_path / "demo"), n_train=6, n_test=2)
    path = os.path.join(folder, SPLITS["train"][0], "p226_001.wav")
    os.remove(path)
    make_demo_corpus(folder, n_train=6, n_test=2)
    assert os.path.isfile(path)


def test_refuses_to_overwrite_other_data(tmp_path):
    os.makedirs(tmp_path / "clean_testset_wav")
    with pytest.raises(FileExistsError, match="demo corpus"):
        make_demo_corpus(str(tmp_path), n_train=6, n_test=2)


def test_too_few_utterances(tmp_path):
    with pytest.raises(ValueError, match="at least 6"):
        make_demo_corpus(str(tmp_path), n_train=5, n_test=2)


def test_command_line_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo_corpus.main(["--help"])
    assert exit_info.value.code == 0
    assert "--n-train" in capsys.readouterr().out
