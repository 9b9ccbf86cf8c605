"""Offline tests of the VoiceBank download and preparation script."""

import http.server
import io
import json
import math
import os
import re
import sys
import threading
import zipfile

import pytest
import soundfile as sf
import torch
from speechbrain.dataio.dataio import write_audio

RECIPE_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "recipes",
    "VoiceBank",
    "enhance",
    "CMCRNet",
)
sys.path.insert(0, RECIPE_DIR)
import voicebank_prepare as vp  # noqa: E402

TRAIN = {"p226": 2, "p287": 1, "p227": 2, "p228": 1}
TEST = {"p232": 1, "p257": 2}
# (noisy folder, clean folder, rate, speakers): 48 kHz originals for
# training, SpeechBrain-style 16 kHz copies for testing.
LAYOUT = (
    ("noisy_trainset_28spk_wav", "clean_trainset_28spk_wav", 48000, TRAIN),
    ("noisy_testset_wav_16k", "clean_testset_wav_16k", 16000, TEST),
)
TONE_HZ = 1000.0


def _frames(rate, index):
    """An odd, rate-dependent length (not a multiple of 3)."""
    return int(0.2 * rate) + 7 * index + 1


def _write(path, signal, rate):
    write_audio(str(path), signal, rate)


def make_fake_voicebank(root):
    """Writes a tiny VoiceBank-like tree of tones plus noise."""
    generator = torch.Generator().manual_seed(0)
    for noisy_dir, clean_dir, rate, speakers in LAYOUT:
        os.makedirs(root / noisy_dir)
        os.makedirs(root / clean_dir)
        for speaker, count in speakers.items():
            for i in range(1, count + 1):
                n = _frames(rate, i)
                clean = 0.5 * torch.sin(
                    2 * math.pi * TONE_HZ * torch.arange(n) / rate
                )
                noise = 0.05 * torch.randn(n, generator=generator)
                name = f"{speaker}_{i:03d}.wav"
                _write(root / clean_dir / name, clean, rate)
                _write(root / noisy_dir / name, clean + noise, rate)
    return str(root)


def _load(save_folder, name):
    with open(os.path.join(save_folder, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)


def _speakers(manifest):
    return {utt.split("_")[0] for utt in manifest}


@pytest.fixture
def data_folder(tmp_path):
    return make_fake_voicebank(tmp_path / "vb")


@pytest.fixture
def prepared(data_folder, tmp_path):
    save_folder = str(tmp_path / "save")
    vp.prepare_voicebank(data_folder, save_folder, num_workers=1)
    return save_folder


def test_manifest_format_and_split(prepared):
    train, valid, test = (
        _load(prepared, n) for n in ("train", "valid", "test")
    )
    assert _speakers(train) == {"p227", "p228"}
    assert _speakers(valid) == {"p226", "p287"}
    assert _speakers(test) == {"p232", "p257"}
    assert sorted(valid) == ["p226_001", "p226_002", "p287_001"]
    for manifest in (train, valid, test):
        for utt_id, entry in manifest.items():
            assert set(entry) == {"noisy_wav", "clean_wav", "length"}
            for key in ("noisy_wav", "clean_wav"):
                assert os.path.isabs(entry[key]) and os.path.isfile(entry[key])
                assert os.path.basename(entry[key]) == f"{utt_id}.wav"
            frames = sf.info(entry["clean_wav"]).frames
            assert entry["length"] == pytest.approx(frames / 16000)


def test_resampled_rate_and_lengths(prepared, data_folder):
    for utt_id, entry in {
        **_load(prepared, "train"),
        **_load(prepared, "valid"),
    }.items():
        index = int(utt_id.split("_")[1])
        expected = math.ceil(_frames(48000, index) / 3)
        for key in ("noisy_wav", "clean_wav"):
            assert entry[key].startswith(os.path.join(prepared, "wav_16000"))
            info = sf.info(entry[key])
            assert (info.samplerate, info.frames, info.channels) == (
                16000,
                expected,
                1,
            )


def test_resampling_keeps_the_signal(prepared):
    entry = _load(prepared, "valid")["p226_001"]
    signal, rate = sf.read(entry["clean_wav"])
    t = torch.arange(len(signal)) / rate
    reference = 0.5 * torch.sin(2 * math.pi * TONE_HZ * t).numpy()
    middle = slice(100, len(signal) - 100)  # away from the edges
    assert abs(signal[middle] - reference[middle]).max() < 0.01


def test_files_at_target_rate_are_used_in_place(prepared, data_folder):
    for utt_id, entry in _load(prepared, "test").items():
        assert entry["noisy_wav"] == os.path.join(
            data_folder, "noisy_testset_wav_16k", f"{utt_id}.wav"
        )
    assert not os.path.isdir(
        os.path.join(prepared, "wav_16000", "noisy_testset_wav_16k")
    )


def _age(paths):
    """Sets the mtimes one second back and returns them."""
    times = {}
    for path in paths:
        old = os.stat(path).st_mtime_ns - 10**9
        os.utime(path, ns=(old, old))
        times[path] = old
    return times


def _outputs(save_folder):
    manifests = [
        os.path.join(save_folder, f"{n}.json")
        for n in ("train", "valid", "test")
    ]
    resampled = [e["noisy_wav"] for e in _load(save_folder, "train").values()]
    return manifests + resampled


def test_skips_when_done(prepared, data_folder):
    times = _age(_outputs(prepared))
    vp.prepare_voicebank(data_folder, prepared, num_workers=1)
    assert {p: os.stat(p).st_mtime_ns for p in times} == times


def test_redoes_when_valid_speakers_change(prepared, data_folder):
    vp.prepare_voicebank(
        data_folder, prepared, valid_speakers=["p227"], num_workers=1
    )
    assert _speakers(_load(prepared, "valid")) == {"p227"}
    assert _speakers(_load(prepared, "train")) == {"p226", "p287", "p228"}
    with open(os.path.join(prepared, vp.OPTIONS_FILE), encoding="utf-8") as f:
        assert json.load(f)["valid_speakers"] == ["p227"]


def test_redoes_when_sample_rate_changes(prepared, data_folder):
    vp.prepare_voicebank(data_folder, prepared, sample_rate=8000, num_workers=1)
    for name in ("train", "valid", "test"):
        for entry in _load(prepared, name).values():
            assert entry["clean_wav"].startswith(
                os.path.join(prepared, "wav_8000")
            )
            frames = sf.info(entry["clean_wav"]).frames
            assert sf.info(entry["noisy_wav"]).frames == frames
            assert entry["length"] == pytest.approx(frames / 8000)


def test_parallel_workers_give_the_same_manifests(
    prepared, data_folder, tmp_path
):
    other = str(tmp_path / "parallel")
    vp.prepare_voicebank(data_folder, other, num_workers=2)
    for name in ("train", "valid", "test"):
        serial, parallel = _load(prepared, name), _load(other, name)
        assert serial.keys() == parallel.keys()
        for utt_id, entry in serial.items():
            assert entry["length"] == parallel[utt_id]["length"]
            a, _ = sf.read(entry["noisy_wav"])
            b, _ = sf.read(parallel[utt_id]["noisy_wav"])
            assert (a == b).all()


def test_length_mismatch_is_reported(data_folder, tmp_path):
    path = os.path.join(data_folder, "clean_trainset_28spk_wav", "p227_002.wav")
    _write(path, torch.zeros(4800), 48000)
    with pytest.raises(ValueError) as error:
        vp.prepare_voicebank(data_folder, str(tmp_path / "save"), num_workers=1)
    message = str(error.value)
    assert "1 problem(s)" in message
    assert "noisy_trainset_28spk_wav/p227_002.wav: length mismatch" in message
    assert not os.path.exists(tmp_path / "save" / "train.json")


def test_missing_twin_is_reported(data_folder, tmp_path):
    os.remove(
        os.path.join(data_folder, "clean_testset_wav_16k", "p257_002.wav")
    )
    os.remove(
        os.path.join(data_folder, "noisy_trainset_28spk_wav", "p228_001.wav")
    )
    with pytest.raises(ValueError) as error:
        vp.prepare_voicebank(data_folder, str(tmp_path / "save"), num_workers=1)
    message = str(error.value)
    assert "2 problem(s)" in message
    assert "clean_testset_wav_16k/p257_002.wav: missing twin" in message
    assert "noisy_trainset_28spk_wav/p228_001.wav: missing twin" in message


def test_stereo_and_unreadable_files_are_reported(data_folder, tmp_path):
    folder = os.path.join(data_folder, "noisy_testset_wav_16k")
    n = _frames(16000, 1)
    _write(os.path.join(folder, "p232_001.wav"), torch.zeros(n, 2), 16000)
    with open(os.path.join(folder, "p257_001.wav"), "wb") as f:
        f.write(b"not a wav file")
    with pytest.raises(ValueError) as error:
        vp.prepare_voicebank(data_folder, str(tmp_path / "save"), num_workers=1)
    message = str(error.value)
    assert "p232_001.wav: 2 channels, expected mono" in message
    assert "p257_001.wav: unreadable" in message


def test_only_the_first_offenders_are_listed(
    data_folder, tmp_path, monkeypatch
):
    monkeypatch.setattr(vp, "MAX_REPORTED", 1)
    for name in ("p232_001.wav", "p257_001.wav"):
        os.remove(os.path.join(data_folder, "clean_testset_wav_16k", name))
    with pytest.raises(ValueError) as error:
        vp.prepare_voicebank(data_folder, str(tmp_path / "save"), num_workers=1)
    message = str(error.value)
    assert "2 problem(s)" in message and "first 1 listed" in message
    assert "p232_001" in message and "p257_001" not in message


def test_missing_folders_are_named(tmp_path):
    os.makedirs(tmp_path / "vb" / "clean_testset_wav")
    with pytest.raises(FileNotFoundError) as error:
        vp.prepare_voicebank(str(tmp_path / "vb"), str(tmp_path / "save"))
    message = str(error.value)
    assert "noisy_trainset_28spk_wav, clean_trainset_28spk_wav" in message
    assert "noisy_testset_wav" in message
    assert "clean_testset_wav," not in message and "download" in message


def test_unknown_valid_speaker(data_folder, tmp_path):
    with pytest.raises(ValueError, match="p999"):
        vp.prepare_voicebank(
            data_folder, str(tmp_path / "save"), valid_speakers=["p999"]
        )


def test_skip_prep(tmp_path):
    vp.prepare_voicebank(
        str(tmp_path / "nowhere"), str(tmp_path / "save"), skip_prep=True
    )
    assert not os.path.exists(tmp_path / "save")


def test_cache_from_other_data_is_discarded(prepared, data_folder, tmp_path):
    stale = os.path.join(prepared, "wav_16000", "stale.wav")
    open(stale, "wb").close()
    copy = make_fake_voicebank(tmp_path / "other")
    vp.prepare_voicebank(copy, prepared, num_workers=1)
    assert not os.path.exists(stale)
    assert _load(prepared, "test")["p232_001"]["noisy_wav"].startswith(copy)


def test_command_line(data_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        vp.main(["--help"])
    assert exit_info.value.code == 0
    assert "download" in capsys.readouterr().out
    vp.main(
        ["prepare", data_folder, str(tmp_path / "save"), "--num-workers", "1"]
    )
    assert _speakers(_load(str(tmp_path / "save"), "valid")) == {"p226", "p287"}


def test_empty_corpus_folders_are_named(tmp_path):
    data = tmp_path / "vb"
    for noisy, clean in vp.SUBFOLDERS.values():
        os.makedirs(data / noisy)
        os.makedirs(data / clean)
    with pytest.raises(ValueError, match="no .wav files in") as info:
        vp.prepare_voicebank(str(data), str(tmp_path / "save"))
    for folder in vp.ARCHIVES:
        assert str(data / folder.removesuffix(".zip")) in str(info.value)
    assert "speakers" not in str(info.value)
    assert not os.path.exists(tmp_path / "save")


def test_command_line_errors_are_one_line(tmp_path, capsys):
    missing = str(tmp_path / "missing")
    assert vp.main(["prepare", missing, str(tmp_path / "save")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{os.path.basename(sys.argv[0])}: error: ")
    assert f"{missing} lacks noisy_trainset_28spk_wav" in lines[0]


def test_unpack_zip_without_top_folder(tmp_path):
    with zipfile.ZipFile(tmp_path / "clean_testset_wav.zip", "w") as zf:
        zf.writestr("p232_001.wav", b"x")
        zf.writestr("__MACOSX/._p232_001.wav", b"x")
    folder = vp.unpack_zip(
        str(tmp_path / "clean_testset_wav.zip"), str(tmp_path)
    )
    assert os.listdir(folder) == ["p232_001.wav"]
    assert sorted(os.listdir(tmp_path)) == [
        "clean_testset_wav",
        "clean_testset_wav.zip",
    ]


def test_unpack_rejects_a_corrupt_zip(tmp_path):
    (tmp_path / "noisy_testset_wav.zip").write_bytes(b"PK garbage")
    with pytest.raises(vp.DownloadError, match="not a valid zip"):
        vp.unpack_zip(str(tmp_path / "noisy_testset_wav.zip"), str(tmp_path))


# ---------------------------------------------------------------------------
# Downloads from a local HTTP server with Range support.

MAX_REQUESTS = 20


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` with ``Range: bytes=N-`` support.

    ``server.truncate`` lists paths whose next full answer stops halfway;
    ``server.ignore_range`` makes it answer every request in full.
    """

    def do_GET(self):
        """Answers 200, 206, 404, 416 or (past MAX_REQUESTS) 503."""
        self.server.requests.append((self.path, self.headers.get("Range")))
        data = self.server.files.get(self.path)
        if len(self.server.requests) > MAX_REQUESTS:
            self.send_error(503)
        elif data is None:
            self.send_error(404)
        elif self.headers.get("Range") and not self.server.ignore_range:
            self._send_range(data)
        else:
            self._send(200, data, {})

    def _send_range(self, data):
        start = int(
            re.fullmatch(r"bytes=(\d+)-", self.headers["Range"]).group(1)
        )
        if start >= len(data):
            self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        else:
            content_range = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(206, data[start:], {"Content-Range": content_range})

    def _send(self, status, body, headers):
        self.send_response(status)
        for key, value in {**headers, "Content-Length": len(body)}.items():
            self.send_header(key, str(value))
        self.end_headers()
        if self.path in self.server.truncate and status == 200:
            self.server.truncate.remove(self.path)
            body = body[: len(body) // 2]
        self.wfile.write(body)

    def log_message(self, *args):
        """Keeps the test output quiet."""


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.files, httpd.requests, httpd.truncate = {}, [], set()
    httpd.ignore_range = False
    httpd.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/vb/"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _zip_folder(folder, name):
    """Zip archive bytes of ``folder`` stored under ``name/``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for file in sorted(os.listdir(folder)):
            zf.write(os.path.join(folder, file), f"{name}/{file}")
    return buffer.getvalue()


@pytest.fixture
def archive(server, data_folder):
    """Serves clean_testset_wav.zip; returns its name and bytes."""
    data = _zip_folder(
        os.path.join(data_folder, "clean_testset_wav_16k"), "clean_testset_wav"
    )
    server.files["/vb/clean_testset_wav.zip"] = data
    return "clean_testset_wav.zip", data


def _download(server, dest, archive_name, **kwargs):
    return vp.download_voicebank(
        str(dest), base_url=server.base_url, archives=[archive_name], **kwargs
    )


def test_full_download(server, archive, tmp_path):
    name, data = archive
    _download(server, tmp_path / "dl", name)
    assert (tmp_path / "dl" / name).read_bytes() == data
    assert sorted(os.listdir(tmp_path / "dl" / "clean_testset_wav")) == [
        "p232_001.wav",
        "p257_001.wav",
        "p257_002.wav",
    ]
    assert server.requests == [("/vb/" + name, None)]


def test_resumes_a_partial_file(server, archive, tmp_path):
    name, data = archive
    os.makedirs(tmp_path / "dl")
    (tmp_path / "dl" / (name + ".part")).write_bytes(data[:100])
    _download(server, tmp_path / "dl", name, remove_archives=True)
    assert server.requests == [("/vb/" + name, "bytes=100-")]
    assert not os.path.exists(tmp_path / "dl" / name)
    assert len(os.listdir(tmp_path / "dl" / "clean_testset_wav")) == 3


def test_resumes_an_interrupted_transfer(server, archive, tmp_path):
    name, data = archive
    server.truncate.add("/vb/" + name)
    path = vp.download_file(server.base_url + name, str(tmp_path / name))
    assert open(path, "rb").read() == data
    assert server.requests == [
        ("/vb/" + name, None),
        ("/vb/" + name, f"bytes={len(data) // 2}-"),
    ]


def test_restarts_when_the_server_ignores_ranges(server, archive, tmp_path):
    name, data = archive
    server.ignore_range = True
    (tmp_path / (name + ".part")).write_bytes(b"stale bytes")
    vp.download_file(server.base_url + name, str(tmp_path / name))
    assert (tmp_path / name).read_bytes() == data
    assert server.requests == [("/vb/" + name, "bytes=11-")]


def test_finishes_a_complete_partial_file(server, archive, tmp_path):
    name, data = archive
    (tmp_path / (name + ".part")).write_bytes(data)
    vp.download_file(server.base_url + name, str(tmp_path / name))
    assert (tmp_path / name).read_bytes() == data
    assert server.requests == [("/vb/" + name, f"bytes={len(data)}-")]


def test_size_mismatch_is_an_error(server, archive, tmp_path):
    name, data = archive
    with pytest.raises(vp.DownloadError, match=f"expected {len(data) + 1}"):
        _download(
            server, tmp_path / "dl", name, expected_sizes={name: len(data) + 1}
        )
    assert not os.path.exists(tmp_path / "dl" / name)
    assert not os.path.exists(tmp_path / "dl" / "clean_testset_wav")


def test_existing_file_of_wrong_size_is_an_error(server, archive, tmp_path):
    name, data = archive
    (tmp_path / name).write_bytes(data + b"extra")
    with pytest.raises(vp.DownloadError, match="expected"):
        vp.download_file(
            server.base_url + name, str(tmp_path / name), len(data)
        )
    assert server.requests == []


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(vp.DownloadError, match="HTTP error 404"):
        vp.download_file(
            server.base_url + "missing.zip", str(tmp_path / "x.zip")
        )


def test_download_skips_unpacked_archives(server, archive, tmp_path):
    name, _ = archive
    os.makedirs(tmp_path / "dl" / "clean_testset_wav")
    _download(server, tmp_path / "dl", name)
    assert server.requests == []


def test_downloaded_tree_is_prepared(server, data_folder, tmp_path):
    for noisy_dir, clean_dir, _, _ in LAYOUT:
        for folder in (noisy_dir, clean_dir):
            name = folder.replace("_16k", "")
            server.files[f"/vb/{name}.zip"] = _zip_folder(
                os.path.join(data_folder, folder), name
            )
    dest = vp.download_voicebank(str(tmp_path / "dl"), base_url=server.base_url)
    assert len(server.requests) == len(vp.ARCHIVES)
    vp.prepare_voicebank(dest, str(tmp_path / "save"), num_workers=1)
    assert _speakers(_load(str(tmp_path / "save"), "valid")) == {"p226", "p287"}
    assert len(_load(str(tmp_path / "save"), "test")) == 3
