"""Tests of dynamic mixing: preparation (sources, speaker split, fixed
mixtures) and the on-the-fly mixer, on audio written by the tests."""

import csv
import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from conftest import SAMPLE_RATE, harmonic_speech
from speechbrain.dataio.dataio import read_audio, write_audio

from speechbrain_cmcr.dataio.dynamic_mixing import (
    DynamicMixer,
    prepare_dynamic_mixing,
    rms_db,
    snr_db,
)

SPEAKERS = [f"spk{i}" for i in range(6)]
SNR_LOW, SNR_HIGH = 0.0, 15.0
# Noise recordings at very different levels, one shorter than the crops.
NOISES = {"loud": (0.3, 2.0), "quiet": (0.001, 3.0), "short": (0.05, 0.25)}
FAST = {"num_workers": 1, "valid_mixtures": 3, "test_mixtures": 3}


def _noise(level, seconds, seed):
    """Low-passed random noise of a given standard deviation."""
    generator = torch.Generator().manual_seed(seed)
    white = torch.randn(int(seconds * SAMPLE_RATE), generator=generator)
    coloured = white + torch.roll(white, 1)
    return level * coloured / coloured.std()


def _rir():
    """A direct path followed by an exponentially decaying tail."""
    generator = torch.Generator().manual_seed(3)
    t = torch.arange(int(0.2 * SAMPLE_RATE)) / SAMPLE_RATE
    rir = 0.3 * torch.randn(len(t), generator=generator) * torch.exp(-t / 0.05)
    rir[0] = 1.0
    return rir


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Speech of six speakers (two utterances each), noise and one RIR."""
    root = tmp_path_factory.mktemp("dm_sources")
    for i, speaker in enumerate(SPEAKERS):
        for j in range(2):
            path = root / "speech" / "corpus" / speaker / f"{speaker}_{j}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            signal = harmonic_speech(
                SAMPLE_RATE + 4000 * j, f0=100 + 20 * i, seed=i * 2 + j
            )
            write_audio(str(path), signal, SAMPLE_RATE)
    (root / "noise").mkdir()
    for seed, (name, (level, seconds)) in enumerate(NOISES.items()):
        noise = _noise(level, seconds, seed)
        write_audio(str(root / "noise" / f"{name}.wav"), noise, SAMPLE_RATE)
    (root / "rirs").mkdir()
    write_audio(str(root / "rirs" / "room.wav"), _rir(), SAMPLE_RATE)
    return root


def _prepare(sources, folder, noise=None, **options):
    """Runs the preparation on the test sources into ``folder``."""
    kwargs = {"valid_speakers": 1, "test_speakers": 1, **FAST, **options}
    noise = noise or sources / "noise"
    prepare_dynamic_mixing(
        str(sources / "speech"), str(noise), str(folder), **kwargs
    )
    return folder


def _load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _mixture_bytes(folder):
    """Content of every fixed mixture file, keyed by manifest and id."""
    return {
        (split, utt_id, key): open(entry[key], "rb").read()
        for split in ("valid", "test")
        for utt_id, entry in _load(folder / f"{split}.json").items()
        for key in ("noisy_wav", "clean_wav")
    }


@pytest.fixture(scope="module")
def prepared(sources, tmp_path_factory):
    """A preparation with impulse responses."""
    folder = tmp_path_factory.mktemp("dm_prep")
    return _prepare(
        sources,
        folder,
        rir_source=str(sources / "rirs"),
        mixture_seconds=0.5,
        valid_mixtures=4,
    )


def test_folder_sources_and_speaker_split(prepared):
    train = _load(prepared / "train.json")
    held = {
        split: {
            e["speaker"] for e in _load(prepared / f"{split}.json").values()
        }
        for split in ("valid", "test")
    }
    train_speakers = {e["speaker"] for e in train.values()}
    assert len(held["valid"]) == len(held["test"]) == 1
    assert held["valid"].isdisjoint(held["test"])
    assert train_speakers.isdisjoint(held["valid"] | held["test"])
    assert train_speakers | held["valid"] | held["test"] == set(SPEAKERS)
    assert len(train) == 2 * len(train_speakers)
    for utt_id, entry in train.items():
        assert os.path.basename(entry["clean_wav"]) == f"{utt_id}.wav"
        assert entry["length"] in (1.0, 1.25)
    with open(prepared / "noise_train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["ID", "duration", "wav", "wav_format", "wav_opts"]
    assert {r["ID"] for r in rows} == set(NOISES)
    with open(prepared / "rir.csv", newline="") as f:
        assert [r["ID"] for r in csv.DictReader(f)] == ["room"]


def test_noise_parts_partition_each_file(prepared, sources):
    for name in NOISES:
        whole = read_audio(str(sources / "noise" / f"{name}.wav"))
        parts = [
            read_audio(
                str(prepared / "dynamic_mixing_audio" / p / f"{name}.wav")
            )
            for p in ("noise_train", "noise_heldout")
        ]
        assert torch.equal(torch.cat(parts), whole)
        assert len(parts[1]) == round(0.2 * len(whole))


def test_csv_sources(sources, tmp_path):
    speech_csv = tmp_path / "speech.csv"
    files = sorted((sources / "speech").rglob("*.wav"))
    with open(speech_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["wav", "speaker"])
        for path in files:
            rel = os.path.relpath(path, tmp_path)
            writer.writerow([rel, "S" + path.parent.name])
    noise_csv = tmp_path / "noise.csv"
    with open(noise_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "kind"])
        for path in sorted((sources / "noise").glob("*.wav")):
            writer.writerow([str(path), "noise"])
    prepare_dynamic_mixing(
        str(speech_csv),
        str(noise_csv),
        str(tmp_path / "prep"),
        valid_speakers=["Sspk1"],
        test_speakers=["Sspk2", "Sspk3"],
        **FAST,
    )
    train = _load(tmp_path / "prep" / "train.json")
    test = _load(tmp_path / "prep" / "test.json")
    assert {e["speaker"] for e in train.values()} == {"Sspk0", "Sspk4", "Sspk5"}
    assert {e["speaker"] for e in test.values()} <= {"Sspk2", "Sspk3"}


def test_fixed_mixtures_are_reproducible(sources, tmp_path):
    first = _prepare(sources, tmp_path / "a", num_workers=2)
    again = _prepare(sources, tmp_path / "b")
    assert _mixture_bytes(first) == _mixture_bytes(again)
    other = _prepare(sources, tmp_path / "c", seed=99)
    assert set(_mixture_bytes(other).values()).isdisjoint(
        _mixture_bytes(first).values()
    )


def test_preparation_skipped_or_redone(sources, tmp_path):
    folder = _prepare(sources, tmp_path / "p")
    manifest = folder / "valid.json"
    stamp = os.stat(manifest).st_mtime_ns
    _prepare(sources, folder)
    assert os.stat(manifest).st_mtime_ns == stamp
    _prepare(sources, folder, valid_mixtures=2)
    assert len(_load(manifest)) == 2
    assert _load(folder / "dynamic_mixing.json")["valid_mixtures"] == 2


def test_fixed_mixture_snr_level_and_peak(prepared):
    for split in ("valid", "test"):
        for entry in _load(prepared / f"{split}.json").values():
            noisy = read_audio(entry["noisy_wav"])
            clean = read_audio(entry["clean_wav"])
            assert noisy.shape == clean.shape == (SAMPLE_RATE // 2,)
            assert SNR_LOW - 0.05 <= snr_db(noisy, clean) <= SNR_HIGH + 0.05
            assert snr_db(noisy, clean) == pytest.approx(
                entry["snr_db"], abs=0.05
            )
            assert rms_db(clean) <= -15.0 + 0.05
            assert noisy.abs().max() <= 0.99 and clean.abs().max() <= 0.99


def _mixer(prepared, **options):
    return DynamicMixer(str(prepared / "noise_train.csv"), **options)


def test_mixer_shapes_and_crop(prepared):
    torch.manual_seed(0)
    mixer = _mixer(prepared, crop_samples=8000)
    long_speech = harmonic_speech(20000)
    noisy, clean = mixer(long_speech)
    assert noisy.shape == clean.shape == (8000,)
    # The target is a crop of the input, only rescaled.
    windows = long_speech.unfold(0, 8000, 1)
    cosine = windows @ clean / (windows.norm(dim=1) * clean.norm())
    assert cosine.max() > 1 - 1e-6
    noisy, clean = mixer(harmonic_speech(5000))
    assert noisy.shape == clean.shape == (5000,)
    noisy, _ = _mixer(prepared, crop_samples=None)(long_speech)
    assert noisy.shape == (20000,)


def test_mixer_snr_level_and_difference(prepared):
    torch.manual_seed(0)
    mixer = _mixer(prepared, crop_samples=8000, level_high_db=-25.0)
    snrs = []
    for seed in range(12):
        noisy, clean = mixer(harmonic_speech(12000, seed=seed))
        snrs.append(snr_db(noisy, clean))
        assert -35.0 - 1e-3 <= rms_db(clean) <= -25.0 + 1e-3
        assert not torch.allclose(noisy, clean)
    assert min(snrs) >= SNR_LOW - 1e-3 and max(snrs) <= SNR_HIGH + 1e-3
    assert max(snrs) - min(snrs) > 3.0


def _high_band_share(noise):
    """Share of a signal's energy above 4 kHz."""
    power = torch.fft.rfft(noise).abs().pow(2)  # [L // 2 + 1]
    return (power[len(power) // 2 :].sum() / power.sum()).item()


def test_mixer_noise_augmentation_colours_the_noise(prepared):
    """The test noises are low-passed: tilting them and adding coloured
    noise gives training mixtures noise in the high band too."""
    speech = harmonic_speech(12000)
    shares = {}
    for name, options in {
        "plain": {},
        "augmented": {"noise_tilt_prob": 1.0, "colored_noise_prob": 1.0},
    }.items():
        torch.manual_seed(0)
        mixer = _mixer(prepared, crop_samples=None, **options)
        pairs = [mixer(speech) for _ in range(8)]
        shares[name] = [_high_band_share(n - c) for n, c in pairs]
        for noisy, _ in pairs:
            assert torch.isfinite(noisy).all()
            assert noisy.abs().max() <= 0.99 + 1e-6
    assert max(shares["plain"]) < 0.3
    assert sum(shares["augmented"]) / 8 > sum(shares["plain"]) / 8 + 0.05


def test_mixer_noise_tilt_range_sets_the_direction(prepared):
    """A tilt range of one sign moves the noise's power that way: toward
    the high band for positive slopes, away from it for negative ones."""
    speech = harmonic_speech(12000)
    shares = {}
    for low, high in ((-6.0, -6.0), (0.0, 0.0), (6.0, 6.0)):
        torch.manual_seed(0)
        mixer = _mixer(
            prepared,
            crop_samples=None,
            noise_tilt_prob=1.0,
            noise_tilt_low_db=low,
            noise_tilt_high_db=high,
        )
        pairs = [mixer(speech) for _ in range(8)]
        shares[low] = sum(_high_band_share(n - c) for n, c in pairs) / 8
    assert shares[-6.0] < shares[0.0] < shares[6.0]


def test_mixer_augmentation_off_draws_nothing(prepared):
    """With both probabilities at 0, the augmentation draws no random
    number: the mixtures equal those of a mixer without the options."""
    speech = harmonic_speech(12000)
    outputs = []
    for options in ({}, {"noise_tilt_prob": 0.0, "colored_noise_prob": 0.0}):
        torch.manual_seed(5)
        mixer = _mixer(prepared, crop_samples=8000, **options)
        outputs.append([mixer(speech) for _ in range(3)] + [torch.rand(1)])
    assert torch.equal(outputs[0][-1], outputs[1][-1])


@pytest.mark.parametrize("name", sorted(NOISES))
def test_mixer_scales_and_loops_each_noise(sources, tmp_path, name):
    torch.manual_seed(0)
    noise_csv = tmp_path / "one.csv"
    path = sources / "noise" / f"{name}.wav"
    seconds = NOISES[name][1]
    noise_csv.write_text(
        f"ID,duration,wav,wav_format,wav_opts\n{name},{seconds},{path},wav,\n"
    )
    mixer = DynamicMixer(str(noise_csv), 5.0, 5.0, crop_samples=16000)
    noisy, clean = mixer(harmonic_speech(16000))
    assert snr_db(noisy, clean) == pytest.approx(5.0, abs=1e-3)
    # The short noise is looped: every quarter of the mixture has noise.
    residual = (noisy - clean).view(4, -1).pow(2).mean(dim=1)
    assert (residual > 0.1 * residual.mean()).all()


def test_mixer_peak_limit(prepared):
    torch.manual_seed(0)
    mixer = _mixer(prepared, level_low_db=-8.0, level_high_db=-5.0)
    for seed in range(4):
        noisy, clean = mixer(harmonic_speech(8000, seed=seed))
        peak = torch.maximum(noisy.abs().max(), clean.abs().max())
        assert peak == pytest.approx(0.99, abs=1e-5)
        assert SNR_LOW - 1e-3 <= snr_db(noisy, clean) <= SNR_HIGH + 1e-3


def test_mixer_reverberation(prepared):
    torch.manual_seed(0)
    speech = harmonic_speech(12000)
    dry = _mixer(prepared, crop_samples=None)
    wet = _mixer(
        prepared,
        crop_samples=None,
        rir_csv=str(prepared / "rir.csv"),
        reverb_prob=1.0,
    )
    _, dry_clean = dry(speech)
    noisy, wet_clean = wet(speech)
    assert wet_clean.shape == speech.shape
    # Dry targets are the input up to a gain; reverberant ones are not.
    gain = torch.dot(wet_clean, speech) / torch.dot(speech, speech)
    residual = (wet_clean - gain * speech).pow(2).sum()
    assert residual > 0.01 * wet_clean.pow(2).sum()
    gain = torch.dot(dry_clean, speech) / torch.dot(speech, speech)
    assert torch.allclose(dry_clean, gain * speech, atol=1e-5)
    assert SNR_LOW - 1e-3 <= snr_db(noisy, wet_clean) <= SNR_HIGH + 1e-3
    with pytest.raises(ValueError, match="rir_csv"):
        _mixer(prepared, reverb_prob=0.5)


class _Utterances(torch.utils.data.Dataset):
    """Clean utterances mixed by a DynamicMixer."""

    def __init__(self, mixer):
        self.mixer = mixer

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return self.mixer(harmonic_speech(10000, seed=index))


def test_mixer_in_dataloader_workers(prepared):
    torch.manual_seed(0)
    mixer = _mixer(prepared, crop_samples=8000)
    mixer(harmonic_speech(10000))  # builds AddNoise's loader in this process
    pickle.loads(pickle.dumps(mixer))
    loader = torch.utils.data.DataLoader(
        _Utterances(mixer), batch_size=2, num_workers=2
    )
    batches = list(loader)
    assert len(batches) == 4
    for noisy, clean in batches:
        assert noisy.shape == clean.shape == (2, 8000)
        for n, c in zip(noisy, clean):
            assert SNR_LOW - 1e-3 <= snr_db(n, c) <= SNR_HIGH + 1e-3


def test_mixer_rebuilds_noise_loader_in_another_process(prepared, monkeypatch):
    mixer = _mixer(prepared, crop_samples=8000)
    mixer(harmonic_speech(10000))
    loader = mixer.add_noise.noise_data
    mixer(harmonic_speech(10000))
    assert mixer.add_noise.noise_data is loader
    # As in a DataLoader worker forked after the mixer was used.
    monkeypatch.setattr(os, "getpid", lambda: -1)
    mixer(harmonic_speech(10000))
    assert mixer.add_noise.noise_data is not loader


def test_error_empty_folder(sources, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No audio file"):
        prepare_dynamic_mixing(
            str(tmp_path / "empty"), str(sources / "noise"), str(tmp_path / "p")
        )


def test_error_missing_source(sources, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_dynamic_mixing(
            str(sources / "speech"), str(tmp_path / "nowhere"), str(tmp_path)
        )


def test_error_stereo_and_wrong_rate(sources, tmp_path):
    noise = tmp_path / "noise"
    noise.mkdir()
    write_audio(str(noise / "stereo.wav"), torch.zeros(800, 2), SAMPLE_RATE)
    write_audio(str(noise / "fast.wav"), torch.zeros(800), 8000)
    with pytest.raises(ValueError) as error:
        _prepare(sources, tmp_path / "p", noise)
    message = str(error.value)
    assert "2 problem(s) with the noise files" in message
    assert "stereo.wav: 2 channels, expected mono" in message
    assert "fast.wav: 8000 Hz, expected 16000 Hz" in message


def test_error_csv_without_path_column(sources, tmp_path):
    speech_csv = tmp_path / "speech.csv"
    speech_csv.write_text("file,speaker\na.wav,s\n")
    with pytest.raises(ValueError, match="'wav' or 'path' column"):
        prepare_dynamic_mixing(
            str(speech_csv), str(sources / "noise"), str(tmp_path / "p")
        )


def test_error_silent_noise(sources, tmp_path):
    noise = tmp_path / "noise"
    noise.mkdir()
    write_audio(str(noise / "silence.wav"), torch.zeros(1600), SAMPLE_RATE)
    with pytest.raises(ValueError, match="silence.wav: the training part"):
        _prepare(sources, tmp_path / "p", noise)


def test_manifests_hold_absolute_paths(sources, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _prepare(sources, Path("relative_prep"))
    for name in ("train.json", "valid.json", "test.json"):
        for entry in _load(tmp_path / "relative_prep" / name).values():
            for key in ("clean_wav", "noisy_wav"):
                if key in entry:
                    assert os.path.isabs(entry[key]), entry[key]
