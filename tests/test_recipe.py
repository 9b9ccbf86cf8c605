"""The VoiceBank recipe end to end on the demo data: training, test outputs,
resuming after a kill, --debug, DDP with two CPU processes, yaml hygiene."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

RECIPE = (
    Path(__file__).resolve().parents[1] / "recipes/VoiceBank/enhance/CMCRNet"
)
TRAIN = RECIPE / "train.py"
DEMO = RECIPE / "hparams/demo.yaml"
PAPER = RECIPE / "hparams/cmcr.yaml"
METRICS = ["pesq", "csig", "cbak", "covl", "ssnr", "stoi", "si_sdr"]


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """The demo corpus and teacher, made once for all recipe tests."""
    root = tmp_path_factory.mktemp("demo")
    return {
        "data_folder": str(root / "voicebank_demo"),
        "teacher_source": str(root / "tiny_wav2vec2"),
    }


def tiny_args(demo_data, output_folder, **extra):
    """Command-line overrides for a short demo run."""
    args = {
        **demo_data,
        "output_folder": str(output_folder),
        "demo_train_utterances": 12,
        "demo_test_utterances": 4,
        "number_of_epochs": 1,
        "batch_size": 2,
        "train_crop_seconds": 1.0,
        "valid_metrics_subset": 2,
        "encoder_channels": "[4, 8, 8, 8, 8]",
        "num_modules": 1,
        "attention_dim": 8,
        **extra,
    }
    return [f"--{key}={value}" for key, value in args.items()]


def run(args, **kwargs):
    """Runs train.py with the demo hparams; returns the finished process."""
    return subprocess.run(
        [sys.executable, str(TRAIN), str(DEMO), *args],
        capture_output=True,
        text=True,
        **kwargs,
    )


def test_demo_run_trains_and_writes_test_results(demo_data, tmp_path):
    out = tmp_path / "run"
    proc = run(tiny_args(demo_data, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "test_summary.json").read_text())
    for metric in METRICS:
        assert metric in summary and f"noisy_{metric}" in summary
    rows = (out / "test_metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4
    assert len(list((out / "enhanced").glob("*.wav"))) == 4
    assert (out / "hyperparams.yaml").exists()
    checkpoints = list((out / "save").glob("CKPT+*"))
    assert len(checkpoints) == 1
    saved = {p.name for p in checkpoints[0].iterdir()}
    assert "model.ckpt" in saved
    assert not any("teacher" in name for name in saved)
    # The summary names the checkpoint it scored (the export checks it).
    assert summary["checkpoint"] == checkpoints[0].name
    # The verdict a newcomer reads: every metric against the noisy input.
    output = proc.stdout + proc.stderr
    assert "Test set, means over 4 utterances:" in output
    table = output.split("metric     noisy  enhanced  change\n")[1]
    for metric, line in zip(METRICS, table.splitlines()):
        name, noisy, enhanced, change = line.split()
        assert name == metric
        assert float(noisy) == pytest.approx(
            summary[f"noisy_{metric}"], abs=1e-3
        )
        assert float(enhanced) == pytest.approx(summary[metric], abs=1e-3)
        assert float(change) == pytest.approx(
            float(enhanced) - float(noisy), abs=2e-3
        )


def test_killed_run_resumes_from_its_last_checkpoint(demo_data, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(
        demo_data,
        out,
        number_of_epochs=2,
        demo_train_utterances=24,
        ckpt_interval_minutes=0,
    ) + ["--ckpt_interval_steps=2"]
    proc = subprocess.Popen(
        [sys.executable, str(TRAIN), str(DEMO), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    intra_epoch = None
    while intra_epoch is None and proc.poll() is None:
        for meta in (out / "save").glob("CKPT+*/CKPT.yaml"):
            if "end-of-epoch: false" in meta.read_text():
                intra_epoch = meta.parent
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert intra_epoch is not None, (
        "training ended before an intra-epoch checkpoint"
    )
    assert not (out / "test_summary.json").exists()

    resumed = run(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Loading a checkpoint from" in resumed.stdout + resumed.stderr
    assert (out / "test_summary.json").exists()
    log = (out / "train_log.txt").read_text()
    assert len(re.findall(r"^epoch: 2", log, flags=re.M)) == 1


def test_finished_run_continues_with_more_epochs(demo_data, tmp_path):
    out = tmp_path / "run"
    assert run(tiny_args(demo_data, out)).returncode == 0
    more = run(tiny_args(demo_data, out, number_of_epochs=2))
    assert more.returncode == 0, more.stderr[-3000:]
    log = (out / "train_log.txt").read_text()
    assert len(re.findall(r"^epoch: 1,", log, flags=re.M)) == 1
    assert len(re.findall(r"^epoch: 2,", log, flags=re.M)) == 1


def test_cr_warmup_keeps_cr_out_of_the_first_steps(demo_data, tmp_path):
    def train_losses(**extra):
        out = tmp_path / "_".join(map(str, extra.values()))
        proc = run(tiny_args(demo_data, out, **extra))
        assert proc.returncode == 0, proc.stderr[-3000:]
        log = (out / "train_log.txt").read_text()
        return {
            key: float(value)
            for key, value in re.findall(r"train (loss_\w+): ([^, ]+)", log)
        }

    # CR is computed in both runs; in the first 6 of a million warm-up
    # steps its weight is at most 6e-7 of cr_weight.
    for losses, cr_weight in [
        (train_losses(cr_warmup_steps=1000000), 0.0),
        (train_losses(cr_warmup_steps=0), 0.1),
    ]:
        assert losses["loss_cr"] > 0
        expected = (
            losses["loss_speech"]
            + losses["loss_noise"]
            + cr_weight * losses["loss_cr"]
        )
        assert losses["loss_total"] == pytest.approx(expected, rel=0.01)


def test_perceptual_weight_adds_the_pesq_term_to_the_training_loss(
    demo_data, tmp_path
):
    out = tmp_path / "perceptual"
    proc = run(tiny_args(demo_data, out, cr_weight=0.0, perceptual_weight=0.5))
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "train_log.txt").read_text()
    losses = {
        key: float(value)
        for key, value in re.findall(r"train (loss_\w+): ([^, ]+)", log)
    }
    assert losses["loss_perceptual"] > 0
    assert losses["loss_total"] == pytest.approx(
        losses["loss_speech"]
        + losses["loss_noise"]
        + 0.5 * losses["loss_perceptual"],
        rel=0.01,
    )


def test_debug_flag_runs_a_few_batches(demo_data, tmp_path):
    proc = run(tiny_args(demo_data, tmp_path / "run") + ["--debug"])
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_unknown_yaml_key_is_refused(demo_data, tmp_path):
    proc = run(tiny_args(demo_data, tmp_path / "run", not_a_key=1))
    assert proc.returncode != 0
    assert "not_a_key" in proc.stderr


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the fallback without CUDA"
)
def test_two_process_ddp_on_cpu_picks_gloo_by_itself(demo_data, tmp_path):
    """``torchrun`` as the README writes it, without --distributed_backend:
    with no CUDA device the recipe switches to gloo and says so."""
    out = tmp_path / "run"
    # The first process prepares the data and teacher alone, then both train.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            str(TRAIN),
            str(DEMO),
            *tiny_args(demo_data, out),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gloo backend" in proc.stdout + proc.stderr
    assert len(list((out / "save").glob("CKPT+*"))) == 1
    assert (out / "test_summary.json").exists()


def _top_level_keys(path):
    return re.findall(r"^([A-Za-z_]\w*):", path.read_text(), flags=re.M)


def test_every_yaml_key_is_used():
    """A key is used when another key refers to it, train.py reads it, or
    SpeechBrain's Brain reads it as a run option."""
    yaml_text = PAPER.read_text()
    code = TRAIN.read_text()
    brain_run_options = {"max_grad_norm", "ckpt_interval_minutes"}
    unused = [
        key
        for key in _top_level_keys(PAPER)
        if not key.startswith("__")  # applied while loading
        and f"<{key}>" not in yaml_text
        and f'"{key}"' not in code
        and f"hparams.{key}" not in code
        and key not in brain_run_options
    ]
    assert unused == []
    for extending in (RECIPE / "hparams").glob("*.yaml"):
        keys = set(_top_level_keys(extending)) - {"base_hparams"}
        assert keys <= set(_top_level_keys(PAPER)), extending.name


def export(run_folder, folder):
    """Exports a run with the export command; returns the folder."""
    result = subprocess.run(
        [sys.executable, "-m", "speechbrain_cmcr.export", run_folder, folder],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Run with -m, the module is __main__: the generated file must still
    # name the package and the module to call.
    header = (Path(folder) / "custom_interface.py").read_text()[:2000]
    assert "__main__" not in header
    assert "speechbrain_cmcr.export.write_interface" in " ".join(header.split())
    return folder


def _parameters(state_dict_path, model_keys):
    state = torch.load(state_dict_path, map_location="cpu", weights_only=True)
    return {key: state[key] for key in model_keys}


def _trained_weights(run_folder):
    """The state dict of a run's one checkpoint, and the names of its
    trained tensors (BatchNorm statistics move even at learning rate 0)."""
    (checkpoint,) = (run_folder / "save").glob("CKPT+*/model.ckpt")
    trained = torch.load(checkpoint, map_location="cpu", weights_only=True)
    names = [
        key
        for key, value in trained.items()
        if torch.is_tensor(value)
        and not key.endswith(("running_mean", "running_var", "tracked"))
    ]
    return trained, names


def test_init_from_loads_an_exported_model_before_the_first_step(
    demo_data, tmp_path
):
    """A run with ``init_from`` starts from the exported weights: with a
    learning rate of 0, its parameters after one epoch are the exported
    ones (a random start would differ everywhere)."""
    first = tmp_path / "first"
    assert run(tiny_args(demo_data, first)).returncode == 0
    exported = export(first, tmp_path / "exported")

    second = tmp_path / "second"
    proc = run(
        tiny_args(
            demo_data, second, init_from=exported, lr=0.0, seed=7, cr_weight=0
        )
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Model initialised from {exported}" in proc.stdout + proc.stderr
    trained, names = _trained_weights(second)
    exported_weights = _parameters(exported / "enhance_model.ckpt", names)
    assert len(names) > 10
    for key in names:
        assert torch.equal(trained[key], exported_weights[key]), key

    # The same output folder, its checkpoint gone, started from another
    # model: the new one is loaded, not the one collected the first time.
    other = tmp_path / "other"
    shutil.copytree(exported, other)
    state = torch.load(other / "enhance_model.ckpt", weights_only=True)
    doubled = {k: v * 2 if k in names else v for k, v in state.items()}
    torch.save(doubled, other / "enhance_model.ckpt")
    for checkpoint in (second / "save").glob("CKPT+*"):
        shutil.rmtree(checkpoint)
    args = tiny_args(demo_data, second, lr=0.0, seed=7, cr_weight=0)
    proc = run(args + [f"--init_from={other}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained, _ = _trained_weights(second)
    for key in names:
        assert torch.equal(trained[key], doubled[key]), key


def test_init_from_fine_tunes_offline_weights_as_causal_only(
    demo_data, tmp_path
):
    """``init_from`` loads offline weights into a causal run (the switch is
    logged) and refuses weights of another architecture with the
    configuration difference in the message."""
    offline = tmp_path / "offline"
    assert run(tiny_args(demo_data, offline)).returncode == 0
    exported = export(offline, tmp_path / "exported")

    causal = tmp_path / "causal"
    args = tiny_args(demo_data, causal, init_from=exported, lr=0.0, cr_weight=0)
    proc = run(args + ["--causal=True"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "Fine-tuning weights trained with causal=False as causal=True" in (
        output
    )
    trained, names = _trained_weights(causal)
    assert trained["_extra_state"]["config"]["causal"] is True
    saved = _parameters(exported / "enhance_model.ckpt", names)
    for key in names:
        assert torch.equal(trained[key], saved[key]), key

    wider = tiny_args(
        demo_data, tmp_path / "wider", init_from=exported, attention_dim=16
    )
    proc = run(wider)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "another CMCRNet configuration" in output
    assert "'attention_dim': (8, 16)" in output


def test_freeze_batchnorm_keeps_the_initial_statistics(demo_data, tmp_path):
    """Fine-tuned with ``freeze_batchnorm``, a run changes its weights but
    keeps the BatchNorm statistics it started from; without it, training
    moves them."""
    first = tmp_path / "first"
    assert run(tiny_args(demo_data, first)).returncode == 0
    exported = export(first, tmp_path / "exported")
    start = torch.load(exported / "enhance_model.ckpt", weights_only=True)
    statistics = [
        k for k in start if k.endswith(("running_mean", "running_var"))
    ]
    assert len(statistics) > 10

    for freeze in (True, False):
        folder = tmp_path / f"freeze_{freeze}"
        args = tiny_args(
            demo_data,
            folder,
            init_from=exported,
            cr_weight=0,
            freeze_batchnorm=freeze,
        )
        proc = run(args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        trained, names = _trained_weights(folder)
        assert any(not torch.equal(trained[k], start[k]) for k in names)
        kept = [torch.equal(trained[k], start[k]) for k in statistics]
        assert all(kept) if freeze else not any(kept)


@pytest.mark.parametrize("decay", [0.5, 0.0])
def test_validation_and_export_use_the_weight_average(
    demo_data, tmp_path, decay
):
    """The checkpoint holds the moving average of the weights (one update
    per step) beside the model; export ships the average, which with decay
    0 is the last step's weights."""
    out = tmp_path / "run"
    proc = run(tiny_args(demo_data, out, ema_decay=decay))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (checkpoint,) = (out / "save").glob("CKPT+*")
    model = torch.load(checkpoint / "model.ckpt", weights_only=True)
    average = torch.load(checkpoint / "ema.ckpt", weights_only=True)
    brain = yaml.safe_load((checkpoint / "brain.ckpt").read_text())
    assert brain["optimizer_step"] > 1
    assert average["n_averaged"] == brain["optimizer_step"]
    exported = export(out, tmp_path / "exported")
    names = [key for key in model if key.endswith("weight")]
    shipped = _parameters(exported / "enhance_model.ckpt", names)
    for key in names:
        assert torch.equal(shipped[key], average[f"module.{key}"]), key
    differs = [not torch.equal(shipped[k], model[k]) for k in names]
    assert all(differs) if decay else not any(differs)


def test_an_option_given_twice_keeps_its_last_value(demo_data, tmp_path):
    """As on any command line (and as wrapper scripts that pass extra
    arguments after their own rely on): the last value wins, with a
    warning, instead of yaml's duplicate-key error."""
    out = tmp_path / "run"
    args = tiny_args(demo_data, out, number_of_epochs=3)
    proc = run(args + ["--number_of_epochs=1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "number_of_epochs given 2 times (3, 1): the last, 1, is used"
        in proc.stderr
    )
    log = (out / "train_log.txt").read_text()
    assert re.findall(r"^epoch: (\d+),", log, flags=re.M) == ["1"]
