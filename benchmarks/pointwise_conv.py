"""Times the 1 x 1 convolutions of a CMCR-Net training step three ways.

Single-threaded, PyTorch runs CMCR-Net's 1 x 1 ``Conv2d`` calls (the gated
skips' projections) through ``_slow_conv2d`` rather than oneDNN, on purpose
(its heuristic says the plain path wins on one thread). This measures
whether writing them as a matrix product would make the step faster: forward
and backward of ``F.conv2d`` against ``torch.matmul`` and ``torch.einsum``
on the same tensors, for the encoder's shapes of the small dynamic-mixing
configuration (batch 8 x 2 s, 126 frames), interleaved so that the ratios
hold on a loaded machine.

    python benchmarks/pointwise_conv.py [--threads 1] [--repeats 20]
"""

import argparse
import time

import torch
import torch.nn.functional as F

# (channels, frequency bins) of the skips of encoder_channels
# [8, 16, 32, 64, 128] on a 257-bin spectrum.
SHAPES = [(8, 128), (16, 63), (32, 31), (64, 15), (128, 7)]


def as_conv(x, weight, bias):
    """The 1 x 1 convolution as the model runs it."""
    return F.conv2d(x, weight, bias)  # [B, C, F, T]


def as_matmul(x, weight, bias):
    """The same map as a batched matrix product over the channels."""
    batch, channels, bins, frames = x.shape
    flat = x.reshape(batch, channels, bins * frames)  # [B, C, F*T]
    out = torch.matmul(weight[:, :, 0, 0], flat) + bias[:, None]
    return out.reshape(batch, -1, bins, frames)  # [B, C, F, T]


def as_einsum(x, weight, bias):
    """The same map as an einsum."""
    out = torch.einsum("oc,bcft->boft", weight[:, :, 0, 0], x)
    return out + bias[:, None, None]  # [B, C, F, T]


WAYS = {"conv2d": as_conv, "matmul": as_matmul, "einsum": as_einsum}


def step_seconds(way, x, weight, bias, repeats):
    """Mean seconds of one forward and backward pass."""
    way(x, weight, bias).sum().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        way(x, weight, bias).sum().backward()
    return (time.perf_counter() - start) / repeats


def main(argv=None):
    """Prints one row per shape: milliseconds per way, and conv2d's time
    over the fastest alternative's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--frames", type=int, default=126)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        "| channels x bins | conv2d ms | matmul ms | einsum ms "
        "| conv2d / best other |"
    )
    print("|---|---|---|---|---|")
    for channels, bins in SHAPES:
        x = torch.randn(
            args.batch, channels, bins, args.frames, requires_grad=True
        )
        weight = torch.randn(channels, channels, 1, 1, requires_grad=True)
        bias = torch.randn(channels, requires_grad=True)
        reference = as_conv(x, weight, bias)
        for way in WAYS.values():
            torch.testing.assert_close(
                way(x, weight, bias), reference, atol=1e-4, rtol=1e-4
            )
        times = {name: 0.0 for name in WAYS}
        for _ in range(2):  # interleaved rounds
            for name, way in WAYS.items():
                times[name] += step_seconds(way, x, weight, bias, args.repeats)
        best_other = min(times["matmul"], times["einsum"])
        print(
            f"| {channels} x {bins} | "
            + " | ".join(f"{times[n] / 2 * 1e3:.2f}" for n in WAYS)
            + f" | {times['conv2d'] / best_other:.2f} |"
        )


if __name__ == "__main__":
    main()
