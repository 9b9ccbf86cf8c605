"""Parameter count and multiply-accumulates (MACs) per second of 16 kHz audio
of CMCR-Net, default (paper) configuration unless a yaml says otherwise.

MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one
forward pass of ``enhance`` (the inference path: no noise decoder) and of the
full training forward (both decoders), over 10 s of audio, divided by 10.
FLOPs are counted as 2 per MAC by PyTorch; we halve them.

Usage::

    python benchmarks/model_cost.py
    python benchmarks/model_cost.py \
        --hparams recipes/VoiceBank/enhance/CMCRNet/hparams/cmcr.yaml
"""

import argparse
import tempfile

import torch
from torch.utils.flop_counter import FlopCounterMode

from speechbrain_cmcr.lobes.models.cmcr_net import CMCRNet
from speechbrain_cmcr.utils.hparams import load_hparams

SECONDS = 10.0


def count_macs(fn, *args):
    """Multiply-accumulates of ``fn(*args)``."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops() / 2


def model_from_hparams(path):
    """Builds the ``model`` of a recipe yaml (one that extends another
    through ``base_hparams`` included). Its folders point into a temporary
    directory, removed on return: nothing is written where it runs."""
    with tempfile.TemporaryDirectory() as scratch:
        hparams, _, _ = load_hparams(
            path, {"data_folder": scratch, "output_folder": scratch}
        )
    return hparams["model"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hparams", help="recipe yaml with a `model` key")
    args = parser.parse_args()
    model = model_from_hparams(args.hparams) if args.hparams else CMCRNet()
    model.eval()
    noisy = torch.randn(1, int(SECONDS * model.sample_rate))
    params = sum(p.numel() for p in model.parameters())
    inference = count_macs(model.enhance, noisy) / SECONDS
    training = count_macs(model, noisy) / SECONDS
    print(f"parameters: {params / 1e6:.2f} M")
    print("MACs per second of audio:")
    print(f"  enhance (speech decoder only): {inference / 1e9:.2f} G")
    print(f"  training forward (both decoders): {training / 1e9:.2f} G")


if __name__ == "__main__":
    main()
