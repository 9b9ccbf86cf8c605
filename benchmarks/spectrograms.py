"""Draws the spectrograms of one clip, noisy, enhanced by CMCR-Net and
clean, one above the other, into a PNG.

Usage::

    python benchmarks/spectrograms.py --model pretrained/cmcr-dns-small \\
        --noisy noisy.wav --clean clean.wav --output spectrograms.png
"""

import argparse
import tempfile

import matplotlib
import numpy as np
import soundfile as sf
import torch

from speechbrain_cmcr.inference.enhancement import EnhanceSpeech

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

N_FFT = 512
HOP = 128


def log_spectrogram(signal):
    """Power spectrogram in dB (unnormalised), [F, T]."""
    spec = torch.stft(
        torch.as_tensor(signal, dtype=torch.float32),
        N_FFT,
        HOP,
        window=torch.hann_window(N_FFT),
        return_complex=True,
    )
    return 10 * np.log10(spec.abs().pow(2).numpy() + 1e-10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="folder or Hub id")
    parser.add_argument("--noisy", required=True)
    parser.add_argument("--clean", required=True)
    parser.add_argument("--output", required=True, help="PNG file")
    parser.add_argument("--title", default="")
    args = parser.parse_args()

    model = EnhanceSpeech.from_hparams(
        source=args.model, savedir=tempfile.mkdtemp()
    )
    noisy, rate = sf.read(args.noisy, dtype="float32")
    clean, _ = sf.read(args.clean, dtype="float32")
    enhanced = model.enhance_batch(torch.from_numpy(noisy)[None])[0].numpy()
    panels = [("noisy", noisy), ("enhanced (CMCR-Net)", enhanced)]
    panels.append(("clean", clean))

    spectrograms = [log_spectrogram(signal) for _, signal in panels]
    reference = spectrograms[0].max()  # 0 dB: the loudest noisy bin
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    extent = [0, len(noisy) / rate, 0, rate / 2000]
    for axis, (label, _), spec in zip(axes, panels, spectrograms):
        image = axis.imshow(
            spec - reference,
            origin="lower",
            aspect="auto",
            extent=extent,
            vmin=-80,
            vmax=0,
            cmap="magma",
        )
        axis.set_ylabel("kHz")
        axis.set_title(label)
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes, label="dB")
    if args.title:
        fig.suptitle(args.title)
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
