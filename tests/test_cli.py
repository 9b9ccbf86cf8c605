"""The ``cmcr-enhance`` command on folders, with failures and skipping,
and ``--stream`` from standard input to standard output."""

import io
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SAMPLE_RATE, harmonic_speech, mix_at_snr
from test_export import exported_tiny_model, make_run_folder

from speechbrain_cmcr import cli
from speechbrain_cmcr.export import export_model
from speechbrain_cmcr.inference.streaming import StreamingEnhancer

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


def test_silent_files_warn_each_time_in_one_line(model, tmp_path, capsys):
    for name in ["s1.wav", "s2.wav"]:
        sf.write(tmp_path / name, np.zeros(1600), 16000)
    args = [str(tmp_path / "s1.wav"), str(tmp_path / "s2.wav")]
    status = cli.main(args + ["-o", str(tmp_path / "o"), "--model", model])
    assert status == 0
    lines = capsys.readouterr().err.splitlines()
    for name in ["s1.wav", "s2.wav"]:
        assert (
            f"WARNING {tmp_path / name}: all-zero input; the output is all "
            "zero" in lines
        )


def test_run_cannot_start(tmp_path, inputs, monkeypatch, capsys):
    out = str(tmp_path / "enhanced")
    monkeypatch.setattr(cli, "DEFAULT_MODEL", "no-such-shipped-model")
    assert cli.main([str(inputs), "-o", out]) == 2
    assert (
        "the default model folder no-such-shipped-model is missing from this "
        "installation" in capsys.readouterr().err
    )
    assert cli.main([str(inputs), "-o", out, "--model", "./nope"]) == 2
    assert "./nope: no such model folder" in capsys.readouterr().err
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


def one_error_line(capsys):
    """The only stderr line, checked to be a ``cmcr-enhance: error:``."""
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cmcr-enhance: error: ")
    return lines[0]


def training_output_folder(folder):
    """A recipe's output folder (not exported) of a fabricated run; its
    hyperparams.yaml, loaded, would make results/cmcr/1/save here."""
    make_run_folder(folder, {0: 2.0})
    (folder / "hyperparams.yaml").write_text(
        "output_folder: !ref results/cmcr/1\n"
        "save_folder: !ref <output_folder>/save\n"
        "checkpointer: !new:speechbrain.utils.checkpoints.Checkpointer\n"
        "    checkpoints_dir: !ref <save_folder>\n"
    )
    return folder


@pytest.mark.parametrize(
    "options, message",
    [
        (["--device", "cuda"], "--device cuda: no CUDA GPU is available"),
        (["--device", "gpu"], "--device gpu: not a device here"),
        (["--model", "{run}"], "a training output folder, not an exported"),
        (["-o", "{file}"], "notes.txt is a file, not a folder"),
        (["-o", "{file}/sub"], "notes.txt is a file, not a folder"),
    ],
    ids=["no-gpu", "bad-device", "training-folder", "file", "under-a-file"],
)
def test_start_up_errors_exit_2_in_one_line(
    model, inputs, tmp_path, monkeypatch, capsys, options, message
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    (tmp_path / "notes.txt").write_text("")
    run = training_output_folder(tmp_path / "run")
    places = {"run": run, "file": tmp_path / "notes.txt"}
    options = [option.format(**places) for option in options]
    args = [str(inputs), "-o", str(tmp_path / "out"), "--model", model]
    assert cli.main(args + options) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "out").exists()


def test_reused_savedir_serves_the_model_asked_for(model, tmp_path):
    make_run_folder(tmp_path / "run", {5: 2.0})
    other = export_model(tmp_path / "run", tmp_path / "other")
    clip = tmp_path / "in" / "clip.wav"
    clip.parent.mkdir()
    sf.write(clip, noise(0.2, 16000), 16000)
    outputs = {}
    for name, source in [("first", model), ("other", str(other))]:
        out = tmp_path / name
        args = [str(clip), "--model", source]
        savedir = ["--savedir", str(tmp_path / "sd")]
        assert cli.main(args + ["-o", str(out)] + savedir) == 0
        assert cli.main(args + ["-o", str(out / "no_savedir")]) == 0
        outputs[name] = sf.read(out / "clip.wav")[0]
        np.testing.assert_array_equal(
            outputs[name], sf.read(out / "no_savedir" / "clip.wav")[0]
        )
    assert not np.array_equal(outputs["first"], outputs["other"])


def test_mistyped_model_path_is_not_taken_for_a_hub_id(
    model, inputs, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(pathlib.Path(model).parent.parent)
    typo = f"{pathlib.Path(model).parent.name}/exprot"
    args = [str(inputs), "-o", str(tmp_path / "out"), "--model", typo]
    assert cli.main(args) == 2
    assert one_error_line(capsys).endswith(
        f"--model {typo}: no such model folder "
        f"({pathlib.Path(model).parent.name} holds: export)"
    )


def test_same_file_twice_is_enhanced_once(model, inputs, tmp_path, capsys):
    (inputs / "bad.wav").unlink()
    out = tmp_path / "enhanced"
    a = str(inputs / "a.wav")
    args = [a, a, str(inputs), "-o", str(out), "--model", model]
    assert cli.main(args) == 0
    assert "3 enhanced, 0 skipped" in capsys.readouterr().out


def test_inputs_inside_the_output_folder_are_explained(model, inputs, capsys):
    assert cli.main([str(inputs), "-o", str(inputs), "--model", model]) == 2
    assert one_error_line(capsys) == (
        "cmcr-enhance: error: no audio files found in the inputs (4 left out "
        f"as they are inside the output folder {inputs}: choose an output "
        "folder outside the inputs)"
    )


def test_failure_lines_name_the_file_once(model, inputs, tmp_path, capsys):
    out = tmp_path / "enhanced"
    missing = tmp_path / "missing.wav"
    args = [str(inputs / "bad.wav"), str(missing), "-o", str(out)]
    assert cli.main(args + ["--model", model]) == 1
    err = capsys.readouterr().err
    assert f"  {missing}: audio file not found\n" in err
    assert f"  {inputs / 'bad.wav'}: not a readable audio file" in err
    assert err.count(str(missing)) == 2  # as it fails, and in the summary


def test_outputs_keep_the_sample_format(model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    loud = 3.0 * noise(0.3, 16000)  # beyond full scale
    sf.write(folder / "float.wav", loud, 16000, subtype="FLOAT")
    sf.write(folder / "int24.flac", loud / 4, 16000, subtype="PCM_24")
    out = tmp_path / "out"
    assert cli.main([str(folder), "-o", str(out), "--model", model]) == 0
    assert sf.info(out / "float.wav").subtype == "FLOAT"
    assert sf.info(out / "int24.flac").subtype == "PCM_24"
    assert np.abs(sf.read(out / "float.wav")[0]).max() > 1


@pytest.fixture(scope="module")
def causal_model(tmp_path_factory):
    """An exported tiny causal model: (folder, the model)."""
    folder = tmp_path_factory.mktemp("causal_model")
    best = make_run_folder(folder / "run", {0: 2.0}, causal=True)
    return str(export_model(folder / "run", folder / "export")), best


def noisy_pcm(samples, seed=0):
    """Speech-like signal in noise as 16-bit PCM samples, peak 0.9."""
    clean = harmonic_speech(samples, seed=seed)
    noisy = mix_at_snr(clean, 5.0, seed=seed)[0]
    return np.round(0.9 * 32767 * noisy.numpy() / noisy.abs().max().item())


def offline_pcm(model, pcm):
    """The model's offline output for PCM samples, as 16-bit samples."""
    noisy = torch.from_numpy(pcm / 32768).float()
    with torch.no_grad():
        enhanced = model.enhance(noisy[None])[0].double().numpy()
    return np.clip(np.round(enhanced * 32768), -32768, 32767)


def stream_command(model, *options):
    """``cmcr-enhance --stream --model model *options`` in a subprocess."""
    command = [sys.executable, "-m", "speechbrain_cmcr.cli", "--stream"]
    return command + ["--model", model, *options]


def test_stream_pipe_gives_the_offline_output(causal_model):
    """PCM through the pipe: as long as the input, and the causal model's
    offline output within a rounding step."""
    folder, model = causal_model
    pcm = noisy_pcm(8037)
    result = subprocess.run(
        stream_command(folder, "--block-ms", "5"),
        input=pcm.astype("<i2").tobytes(),
        capture_output=True,
        check=True,
    )
    assert result.stderr.decode().splitlines() == [
        "cmcr-enhance: streaming 16000 Hz 16-bit mono PCM in blocks of 80 "
        "samples; latency 63 samples (3.9 ms) plus up to one block"
    ]
    got = np.frombuffer(result.stdout, "<i2")
    expected = offline_pcm(model, pcm)
    assert got.shape == pcm.shape
    assert np.abs(expected).max() > 3000
    assert np.abs(got - expected).max() <= 1


def test_stream_output_comes_block_by_block(causal_model, tmp_path):
    """Before the input ends, all but the latency is out; Ctrl-C then ends
    the stream without a traceback."""
    folder, model = causal_model
    pcm = noisy_pcm(SAMPLE_RATE, seed=1)  # 200 blocks of 80 samples
    # stderr goes to a file: a pipe nobody reads could fill up and block it.
    stderr = (tmp_path / "stderr.txt").open("w+b")
    process = subprocess.Popen(
        stream_command(folder, "--block-ms", "5"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        # As from a terminal: a shell's background job (CI's, say) would
        # hand the command an ignored SIGINT, which Python keeps ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    process.stdin.write(pcm.astype("<i2").tobytes())
    process.stdin.flush()  # and left open: no end of input yet
    ready = process.stdout.read(2 * (SAMPLE_RATE - 63))
    expected = offline_pcm(model, pcm)[: SAMPLE_RATE - 63]
    assert np.abs(np.frombuffer(ready, "<i2") - expected).max() <= 1
    process.send_signal(signal.SIGINT)
    assert process.wait() == 130
    process.stdin.close()
    assert process.stdout.read() == b""
    process.stdout.close()
    stderr.seek(0)
    assert b"Traceback" not in stderr.read()
    stderr.close()


def test_stream_ends_quietly_when_the_reader_stops(causal_model, tmp_path):
    """A reader that closes the pipe early (as ``head -c`` does) stops the
    stream with status 0 and no error."""
    folder, _ = causal_model
    source = tmp_path / "noisy.raw"
    source.write_bytes(noisy_pcm(4 * SAMPLE_RATE).astype("<i2").tobytes())
    with source.open("rb") as stdin:
        process = subprocess.Popen(
            stream_command(folder),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert len(process.stdout.read(100)) == 100
        process.stdout.close()  # the rest (more than a pipe holds) is refused
        assert process.wait() == 0
    err = process.stderr.read().decode()
    process.stderr.close()
    assert err.startswith("cmcr-enhance: streaming") and err.count("\n") == 1


def test_stream_delayed_keeps_the_latency_in_the_output(causal_model):
    """``--delayed``: the latency's zeros first, then the aligned output;
    any block size, and a last odd byte left out."""
    folder, model = causal_model
    data = noisy_pcm(1001).astype("<i2").tobytes() + b"\x01"
    outputs = {}
    for aligned, block in [(True, 7), (True, 500), (False, 64)]:
        sink = io.BytesIO()
        written = cli.stream_pcm(
            StreamingEnhancer(model), io.BytesIO(data), sink, block, aligned
        )
        outputs[aligned, block] = np.frombuffer(sink.getvalue(), "<i2")
        assert written == len(outputs[aligned, block])
    aligned, delayed = outputs[True, 7], outputs[False, 64]
    assert aligned.shape == (1001,) and delayed.shape == (1001 + 63,)
    np.testing.assert_array_equal(aligned, outputs[True, 500])
    assert not delayed[:63].any()
    np.testing.assert_array_equal(delayed[63:], aligned)


class Terminal(io.BytesIO):
    """A standard stream that is a terminal."""

    def isatty(self):
        return True


@pytest.mark.parametrize(
    "stdin, message",
    [
        (io.BytesIO, "streaming needs a causal CMCRNet (causal=True)"),
        (Terminal, "--stream: the standard input is a terminal"),
    ],
    ids=["offline-model", "terminal"],
)
def test_stream_start_up_errors_exit_2_in_one_line(
    model, monkeypatch, capsys, stdin, message
):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin()))
    sink = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(sink))
    assert cli.main(["--stream", "--model", model]) == 2
    assert message in one_error_line(capsys)
    assert sink.getvalue() == b""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stream", "a.wav"], "--stream reads standard input"),
        (["--stream", "-o", "out", "--device", "cpu"], "leave out --output"),
        (["a.wav", "-o", "out", "--delayed"], "--delayed need --stream"),
        (["a.wav"], "give input files or folders and --output-dir"),
        (["--stream", "--block-ms", "-1"], "-1 is not above zero"),
    ],
    ids=["stream-input", "stream-output", "delayed", "no-output", "block"],
)
def test_options_of_the_other_mode_are_refused(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
