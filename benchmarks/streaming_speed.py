"""Per-frame speed of streaming CMCR-Net on one thread, in PyTorch and in
onnxruntime, next to the real-time peers in the same run.

CMCR-Net: a causal model (random weights: speed does not depend on them)
streams a noise signal one hop (16 ms, 256 samples) per call, which is one
STFT frame per call: ``StreamingEnhancer`` (PyTorch) and the exported
streaming step in ``OnnxEnhancer.stream()`` (NumPy + onnxruntime), both
with the NumPy STFT around the model. Each call is timed; the table gives
the median and 99th percentile of the time per frame and the streaming
real-time factor (total time / audio duration), after a warm-up of
``WARMUP`` frames on a separate stream.

Peers (``benchmarks/peers.py``, one thread): the real-time factor of their
``enhance`` on the same signal, which runs them frame by frame inside
(RNNoise and DeepFilterNet3 on 10 ms frames at 48 kHz, including the
resampling to and from 48 kHz; GTCRN on 16 ms frames with its streaming
ONNX graph; NSNet2 offline), one warm-up call first.

Usage::

    python benchmarks/streaming_speed.py              # small config, peers
    python benchmarks/streaming_speed.py --config paper --peers
    python benchmarks/streaming_speed.py --output measured/streaming.md
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BENCHMARKS = Path(__file__).resolve().parent
SAMPLE_RATE = 16000
WARMUP = 50
# Causal counterparts of the shipped model's configuration and the paper's.
CONFIGS = {
    "small": dict(
        encoder_channels=[8, 16, 32, 64, 128], num_modules=2, attention_dim=32
    ),
    "paper": {},
}
PEERS = ["rnnoise", "nsnet2", "gtcrn", "deepfilternet3"]


def summarise(times, hop_seconds):
    """Median and 99th percentile (ms) of per-frame ``times`` (s), and the
    real-time factor of frames ``hop_seconds`` long.

    Arguments
    ---------
    times : Sequence[float]
        Seconds per frame.
    hop_seconds : float
        Audio duration of one frame.

    Returns
    -------
    dict
        ``median_ms``, ``p99_ms`` and ``rtf``.

    Example
    -------
    >>> summarise([0.001] * 99 + [0.002], 0.016)
    {'median_ms': 1.0, 'p99_ms': 1.01, 'rtf': 0.063125}
    """
    times = np.asarray(times)
    return {
        "median_ms": round(float(np.median(times)) * 1000, 6),
        "p99_ms": round(float(np.percentile(times, 99)) * 1000, 6),
        "rtf": round(float(times.sum()) / (len(times) * hop_seconds), 6),
    }


def time_frames(make_stream, signal, hop):
    """Seconds per call of a fresh stream from ``make_stream()`` fed
    ``signal`` one ``hop`` at a time, after a warm-up stream."""
    warm = make_stream()
    for start in range(0, WARMUP * hop, hop):
        warm(signal[start : start + hop])
    stream = make_stream()
    times = []
    for start in range(0, len(signal) - hop + 1, hop):
        block = signal[start : start + hop]
        began = time.perf_counter()
        stream(block)
        times.append(time.perf_counter() - began)
    return times


def cmcr_rows(config, signal):
    """Per-frame timings of the causal model of ``config``, in PyTorch and
    in onnxruntime."""
    from speechbrain_cmcr.inference.streaming import StreamingEnhancer
    from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
    from speechbrain_cmcr.onnx_export import export_streaming_step
    from speechbrain_cmcr.onnx_runner import OnnxEnhancer

    torch.manual_seed(0)
    model = CMCRNet(causal=True, **CONFIGS[config]).eval()
    hop = model.hop_samples
    hop_seconds = hop / SAMPLE_RATE
    rows = []
    torch_times = time_frames(
        lambda: StreamingEnhancer(model), torch.from_numpy(signal), hop
    )
    rows.append(
        (f"CMCR-Net causal ({config}), PyTorch stream", hop_seconds)
        + tuple(summarise(torch_times, hop_seconds).values())
    )
    with tempfile.TemporaryDirectory() as folder:
        path = export_streaming_step(model, Path(folder) / "stream.onnx")
        enhancer = OnnxEnhancer(path, threads=1)
        onnx_times = time_frames(enhancer.stream, signal, hop)
    rows.append(
        (f"CMCR-Net causal ({config}), onnxruntime stream", hop_seconds)
        + tuple(summarise(onnx_times, hop_seconds).values())
    )
    return rows


def peer_rows(signal):
    """Real-time factor of each peer's ``enhance`` on ``signal``."""
    sys.path.insert(0, str(BENCHMARKS))
    import peers

    rows = []
    for key in PEERS:
        try:
            peer = peers.load_peer(key)
        except peers.MissingPackageError as error:
            print(f"skipping {key}: {error}", file=sys.stderr)
            continue
        peer.enhance(signal[:SAMPLE_RATE])
        if hasattr(peer, "prepare"):
            peer.prepare()  # a fresh state, outside the timing
        began = time.perf_counter()
        peer.enhance(signal)
        elapsed = time.perf_counter() - began
        rtf = round(elapsed * SAMPLE_RATE / len(signal), 6)
        rows.append((f"{peer.name}, enhance", None, None, None, rtf))
    return rows


def markdown(rows, seconds):
    """The results table."""
    lines = [
        f"One thread, {seconds:g} s of audio at 16 kHz.",
        "",
        "| system | frame (ms) | median per frame (ms) | p99 per frame (ms) "
        "| real-time factor |",
        "|---|---|---|---|---|",
    ]
    for name, hop, median, p99, rtf in rows:
        cells = [
            f"{1000 * hop:g}" if hop else "",
            f"{median:.3f}" if median is not None else "",
            f"{p99:.3f}" if p99 is not None else "",
            f"{rtf:.3f}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Runs the benchmark and prints (and optionally writes) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-peers", action="store_true", help="CMCR-Net only")
    parser.add_argument("--output", type=Path, help="also write the table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    samples = int(args.seconds * SAMPLE_RATE)
    signal = (0.1 * rng.standard_normal(samples)).astype(np.float32)
    rows = cmcr_rows(args.config, signal)
    if not args.no_peers:
        rows += peer_rows(signal)
    table = markdown(rows, args.seconds)
    print(table, end="")
    if args.output:
        args.output.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
