"""Speed and memory of CMCR-Net next to other enhancement systems, and the
cost of a training step with and without contrastive regularization (CR).

Inference: for each system, input duration and thread count, in a fresh
process, one warm-up call then ``--runs`` timed calls on the same input:
real-time factor (median processing time / audio duration), peak memory
(the process's peak resident set, and its growth during the calls, i.e.
what processing took beyond loading; on a GPU, the peak of allocated GPU
memory), parameters and multiply-accumulates (MACs) per second of audio.
Systems:

- ``cmcr``: CMCR-Net, paper configuration (``CMCRNet()``), ``enhance``;
- ``cmcr-file``: the same model through what users run,
  ``EnhanceSpeech.enhance_file`` (10 s chunks with 1 s overlap, reading and
  writing wav files), whose memory does not grow with the input's length;
- ``metricgan``: SpeechBrain's MetricGAN+ generator
  (``speechbrain.lobes.models.MetricGAN.EnhancementGenerator``) in its
  recipe's pipeline (STFT, log1p magnitude, mask, noisy-phase resynthesis);
- ``rnnoise``, ``noisereduce``, ``nsnet2``, ``gtcrn``, ``deepfilternet3``:
  the peers of ``benchmarks/peers.py`` (always on the CPU; RNNoise,
  noisereduce and DeepFilterNet3 use one thread whatever ``--threads``
  says). A system's ``prepare()``, where it has one, runs before each call,
  outside the timing: DeepFilterNet3's runtime cannot be reset, so each
  call gets a new state built from the model file, the counterpart of the
  other peers' sessions built once at load.

Weights are random where speed does not depend on them (CMCR-Net,
MetricGAN+); the peers run their shipped models.

Training: one optimisation step of CMCR-Net (paper configuration, Adam,
reconstruction + noise losses; batch ``--train-batch`` x
``--train-seconds``), median over ``--runs`` steps after a warm-up, without
CR, with CR on a wav2vec2-base-sized teacher (the paper's teacher size,
built from ``Wav2Vec2Config()`` with random weights), and with the offline
Resemblyzer teacher. The CR overhead is the step time with CR divided by the
step time without.

Usage::

    python benchmarks/speed.py                      # everything (long)
    python benchmarks/speed.py --systems cmcr --durations 10 --threads 2
    python benchmarks/speed.py --no-training --device cuda
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))

SAMPLE_RATE = 16000
SYSTEMS = {
    "cmcr": "CMCR-Net (paper config)",
    "cmcr-file": "CMCR-Net, enhance_file",
    "metricgan": "MetricGAN+ generator",
    "rnnoise": "RNNoise",
    "noisereduce": "noisereduce",
    "nsnet2": "NSNet2",
    "gtcrn": "GTCRN",
    "deepfilternet3": "DeepFilterNet3",
}
TORCH_SYSTEMS = ("cmcr", "cmcr-file", "metricgan")  # the others run on CPU
TEACHERS = {
    "none": "no CR",
    "wav2vec2-base": "CR, wav2vec2-base size",
    "resemblyzer": "CR, Resemblyzer",
}


# Systems #####################################################################


class TorchSystem:
    """A torch model behind the ``enhance(wav)`` interface of the peers.

    Arguments
    ---------
    model : torch.nn.Module
        Has ``enhance(wavs [B, L]) -> [B, L]``.
    device : str
        Where it runs.
    count_macs : callable
        Returns the model's multiply-accumulates per second of audio; called
        only when asked, after the timed runs, so that counting does not
        add to the measured peak memory.
    """

    def __init__(self, model, device, count_macs):
        self.model = model.to(device).eval()
        self.device = device
        self.num_parameters = sum(p.numel() for p in model.parameters())
        self._count_macs = count_macs

    @property
    def macs_per_second(self):
        """Multiply-accumulates per second of audio."""
        return self._count_macs(self.model.cpu())

    def enhance(self, wav):
        """Enhances ``wav`` np.float32 [L]."""
        with torch.inference_mode():
            batch = torch.from_numpy(wav)[None].to(self.device)  # [1, L]
            out = self.model.enhance(batch)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            return out[0].cpu().numpy()


class FileEnhancer:
    """CMCR-Net behind ``EnhanceSpeech.enhance_file``, wav file in and out,
    as ``cmcr-enhance`` runs it.

    Arguments
    ---------
    model : torch.nn.Module
        The ``CMCRNet``.
    device : str
        Where it runs.
    """

    def __init__(self, model, device):
        from speechbrain_cmcr.inference.enhancement import EnhanceSpeech

        self.enhancer = EnhanceSpeech(
            modules={"enhance_model": model},
            hparams={
                "sample_rate": SAMPLE_RATE,
                "chunk_seconds": 10.0,
                "chunk_overlap_seconds": 1.0,
            },
            run_opts={"device": device},
        )
        self.num_parameters = sum(p.numel() for p in model.parameters())
        self._scratch = tempfile.TemporaryDirectory()  # removed with self

    @property
    def macs_per_second(self):
        """Multiply-accumulates per second of audio (the model's)."""
        return cmcr_macs_per_second(self.enhancer.mods.enhance_model.cpu())

    def enhance(self, wav):
        """Enhances ``wav`` np.float32 [L] through wav files."""
        import soundfile as sf

        noisy = os.path.join(self._scratch.name, "noisy.wav")
        enhanced = os.path.join(self._scratch.name, "enhanced.wav")
        sf.write(noisy, wav, SAMPLE_RATE)
        self.enhancer.enhance_file(noisy, output_filename=enhanced)
        return sf.read(enhanced, dtype="float32")[0]


class MetricGANPlus(torch.nn.Module):
    """SpeechBrain's MetricGAN+ generator in the pipeline of its VoiceBank
    recipe: 512-point STFT (32 ms, hop 16 ms, Hamming), log1p of the
    magnitude, a mask from the BLSTM generator, resynthesis with the noisy
    phase.

    Example
    -------
    >>> MetricGANPlus().enhance(torch.randn(1, 8000)).shape
    torch.Size([1, 8000])
    """

    def __init__(self):
        super().__init__()
        from speechbrain.lobes.models.MetricGAN import EnhancementGenerator
        from speechbrain.processing.features import ISTFT, STFT

        stft_args = dict(
            sample_rate=SAMPLE_RATE,
            n_fft=512,
            win_length=32,
            hop_length=16,
            window_fn=torch.hamming_window,
        )
        self.stft = STFT(**stft_args)
        self.istft = ISTFT(**stft_args)
        self.generator = EnhancementGenerator()

    def enhance(self, wavs):
        """Enhances ``wavs`` [B, L]."""
        from speechbrain.processing.features import spectral_magnitude
        from speechbrain.processing.signal_processing import resynthesize

        feats = torch.log1p(spectral_magnitude(self.stft(wavs), power=0.5))
        lengths = torch.ones(wavs.shape[0], device=wavs.device)
        mask = self.generator(feats, lengths=lengths)  # [B, T, F]
        enhanced = torch.expm1(mask * feats)
        out = resynthesize(enhanced, wavs, self.stft, self.istft, False)
        return out[:, : wavs.shape[1]]


def lstm_macs_per_frame(lstm):
    """MACs of one frame through a ``torch.nn.LSTM`` (all layers and
    directions): 4 gates, each a matrix on the input and on the state."""
    directions = 2 if lstm.bidirectional else 1
    total, size = 0, lstm.input_size
    for _ in range(lstm.num_layers):
        total += directions * 4 * lstm.hidden_size * (size + lstm.hidden_size)
        size = directions * lstm.hidden_size
    return total


def cmcr_macs_per_second(model, seconds=10):
    """MACs per second of audio of ``CMCRNet.enhance``, counted by PyTorch's
    FLOP counter on ``seconds`` of audio (as ``model_cost.py``)."""
    from model_cost import count_macs

    noisy = torch.randn(1, int(seconds * SAMPLE_RATE))
    return count_macs(model.enhance, noisy) / seconds


def metricgan_macs_per_second(model):
    """MACs per second of audio of the MetricGAN+ generator: its BLSTM
    (which PyTorch's FLOP counter does not count) and linear layers."""
    per_frame = sum(
        lstm_macs_per_frame(m)
        for m in model.modules()
        if isinstance(m, torch.nn.LSTM)
    ) + sum(
        m.in_features * m.out_features
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    )
    frames_per_second = SAMPLE_RATE / (SAMPLE_RATE * 16 // 1000)
    return per_frame * frames_per_second


def build_system(key, device, threads):
    """The system named ``key`` (see ``SYSTEMS``) on ``device``."""
    if key == "cmcr":
        from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet

        return TorchSystem(CMCRNet(), device, cmcr_macs_per_second)
    if key == "cmcr-file":
        from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet

        return FileEnhancer(CMCRNet(), device)
    if key == "metricgan":
        return TorchSystem(MetricGANPlus(), device, metricgan_macs_per_second)
    from peers import PEERS

    peer_class = PEERS[key]
    if key in ("nsnet2", "gtcrn"):
        return peer_class(num_threads=threads)
    return peer_class()


# Measurement #################################################################


def peak_rss_mb():
    """Peak resident set of this process so far, in MB (Linux: KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb():
    """Resident set of this process now, in MB."""
    with open("/proc/self/statm", encoding="ascii") as fin:
        pages = int(fin.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_inference(key, seconds, threads, runs, device):
    """One row of the inference table (run inside a fresh process)."""
    system = build_system(key, device, threads)
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(
        np.float32
    )
    loaded_rss = current_rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    prepare = getattr(system, "prepare", lambda: None)
    prepare()
    system.enhance(wav)  # warm-up
    times = []
    for _ in range(runs):
        prepare()
        start = time.perf_counter()
        system.enhance(wav)
        times.append(time.perf_counter() - start)
    row = {
        "rtf": statistics.median(times) / seconds,
        "peak_mb": peak_rss_mb(),
        "working_mb": peak_rss_mb() - loaded_rss,
    }
    if device.startswith("cuda") and key in TORCH_SYSTEMS:
        row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    row["params"] = system.num_parameters
    row["macs"] = system.macs_per_second
    return row


def make_teacher(kind, folder):
    """The CR teacher ``kind`` (see ``TEACHERS``), or None."""
    if kind == "none":
        return None
    if kind == "resemblyzer":
        from speechbrain_cmcr.lobes.resemblyzer_teacher import (
            ResemblyzerTeacher,
        )

        return ResemblyzerTeacher()
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    from speechbrain_cmcr.lobes.teachers import HuggingFaceSSLTeacher

    # Wav2Vec2Config's defaults are wav2vec2-base: 12 layers of 768, 7 conv
    # layers of 512 (95 M parameters), as facebook/wav2vec2-base-960h.
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return HuggingFaceSSLTeacher(folder)


def measure_training(teacher_kind, batch, seconds, runs, device):
    """Time and memory of one CMCR-Net training step (fresh process)."""
    from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
    from speechbrain_cmcr.nnet.losses import (
        CMCRLoss,
        ContrastiveRegularization,
        SpectralReconstructionLoss,
    )

    with tempfile.TemporaryDirectory() as folder:
        teacher = make_teacher(teacher_kind, folder)
    model = CMCRNet().to(device).train()
    contrastive = None
    if teacher is not None:
        groups = (
            [[1], [2], [3]]
            if teacher_kind == "resemblyzer"
            else [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]
        )
        contrastive = ContrastiveRegularization(teacher.to(device), groups)
    objective = CMCRLoss(
        SpectralReconstructionLoss(),
        contrastive=contrastive,
        cr_weight=0.1 if contrastive is not None else 0.0,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    clean = 0.1 * torch.randn(batch, int(seconds * SAMPLE_RATE), generator=gen)
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=gen)
    clean, noisy = clean.to(device), noisy.to(device)

    def step():
        optimizer.zero_grad()
        terms = objective(model(noisy), clean, noisy, model)
        terms["total"].backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    row = {"step_s": statistics.median(times), "peak_mb": peak_rss_mb()}
    if device.startswith("cuda"):
        row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def run_worker(job):
    """Runs one measurement in this process and prints it as JSON."""
    torch.set_num_threads(job["threads"])
    if job["kind"] == "inference":
        row = measure_inference(
            job["system"],
            job["seconds"],
            job["threads"],
            job["runs"],
            job["device"],
        )
    else:
        row = measure_training(
            job["teacher"],
            job["batch"],
            job["seconds"],
            job["runs"],
            job["device"],
        )
    print(json.dumps(row))


def in_fresh_process(job):
    """Runs ``job`` in a new Python process so that its peak memory is its
    own; returns the measured row (or the error)."""
    threads = str(job["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Tables ######################################################################


def fmt(value, spec):
    """Formats a number, or '-' for None."""
    return "-" if value is None else format(value, spec)


def inference_table(args):
    """Measures every system, duration and thread count; Markdown lines."""
    lines = [
        f"Inference ({args.device}; median of {args.runs} runs after a "
        "warm-up; peak = process peak resident set, working = its growth "
        "while enhancing)",
        "",
        "| system | params | MACs/s | input | threads | RTF | peak MB "
        "| working MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in args.systems:
        for seconds in args.durations:
            for threads in args.threads:
                job = dict(
                    kind="inference",
                    system=key,
                    seconds=seconds,
                    threads=threads,
                    runs=args.runs,
                    device=args.device,
                )
                row = in_fresh_process(job)
                print(f"{key} {seconds}s {threads}t: {row}", file=sys.stderr)
                if "error" in row:
                    lines.append(
                        f"| {SYSTEMS[key]} | | | {seconds:g} s | {threads} "
                        f"| failed: {row['error']} | | |"
                    )
                    continue
                params = row["params"] and row["params"] / 1e6
                macs = row["macs"] and row["macs"] / 1e9
                peak = row.get("gpu_peak_mb", row["peak_mb"])
                lines.append(
                    f"| {SYSTEMS[key]} | {fmt(params, '.2f')} M "
                    f"| {fmt(macs, '.3f')} G | {seconds:g} s | {threads} "
                    f"| {row['rtf']:.4f} | {peak:.0f} "
                    f"| {row['working_mb']:.0f} |"
                )
    return lines


def training_table(args):
    """Measures a training step with each teacher; Markdown lines."""
    threads = max(args.threads)
    lines = [
        f"Training step of CMCR-Net, batch {args.train_batch} x "
        f"{args.train_seconds:g} s ({args.device}, {threads} threads, median "
        f"of {args.runs} steps after a warm-up)",
        "",
        "| loss | step s | overhead vs no CR | peak MB |",
        "|---|---|---|---|",
    ]
    baseline = None
    for kind in args.teachers:
        job = dict(
            kind="training",
            teacher=kind,
            batch=args.train_batch,
            seconds=args.train_seconds,
            threads=threads,
            runs=args.runs,
            device=args.device,
        )
        row = in_fresh_process(job)
        print(f"train {kind}: {row}", file=sys.stderr)
        if "error" in row:
            lines.append(f"| {TEACHERS[kind]} | failed: {row['error']} | | |")
            continue
        if kind == "none":
            baseline = row["step_s"]
        ratio = baseline and row["step_s"] / baseline
        peak = row.get("gpu_peak_mb", row["peak_mb"])
        lines.append(
            f"| {TEACHERS[kind]} | {row['step_s']:.2f} | {fmt(ratio, '.2f')} "
            f"| {peak:.0f} |"
        )
    return lines


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument(
        "--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS)
    )
    parser.add_argument("--durations", nargs="+", type=float, default=[10, 60])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=5, help="timed runs")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--teachers", nargs="+", default=list(TEACHERS), choices=list(TEACHERS)
    )
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-seconds", type=float, default=4.0)
    parser.add_argument(
        "--no-training", action="store_true", help="skip the training table"
    )
    parser.add_argument(
        "--no-inference", action="store_true", help="skip inference"
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def main(argv=None):
    """Prints (and optionally writes) the Markdown tables."""
    args = parse_args(argv)
    if args.worker:
        run_worker(json.loads(args.worker))
        return
    lines = [f"CPU: {os.cpu_count()} cores visible; torch {torch.__version__}"]
    if not args.no_inference:
        lines += [""] + inference_table(args)
    if not args.no_training:
        lines += [""] + training_table(args)
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
