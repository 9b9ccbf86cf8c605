"""Scores CMCR-Net on folders of real noisy/clean pairs with the full metric
suite, next to the noisy input and any folder of published outputs.

Each pair set is a folder with ``clean/`` and ``noisy/`` holding files of the
same names; any other subfolder of wavs with those names (for example
``crcnet_enhanced`` or ``mpsenet``) is scored as a published system. Prints
one Markdown table of per-set means.

Usage::

    python benchmarks/quality.py --model pretrained/cmcr-dns-small \\
        ../shared/devdata/vbd_train_p287 ../shared/devdata/dns2020 \\
        ../shared/devdata/crcnet
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from speechbrain_cmcr.inference.enhancement import EnhanceSpeech
from speechbrain_cmcr.processing.metrics import evaluate_pair

METRICS = ["pesq", "csig", "cbak", "covl", "ssnr", "stoi", "si_sdr"]


def read(path):
    """Reads a mono wav as float64."""
    audio, rate = sf.read(path, dtype="float64")
    return audio, rate


def score_folder(pair_set, system_folder, names, enhance=None):
    """Mean metrics of one system on one pair set.

    Arguments
    ---------
    pair_set : Path
        Folder with ``clean/`` (and ``noisy/``).
    system_folder : Path
        Folder of the system's outputs (``noisy/`` for the input itself).
    names : list
        File names to score.
    enhance : callable
        If given, enhances each file of ``system_folder`` first.

    Returns
    -------
    dict
        Metric name to mean value.
    """
    rows = []
    for name in names:
        clean, rate = read(pair_set / "clean" / name)
        output, _ = read(system_folder / name)
        if enhance is not None:
            output = enhance(output)
        n = min(len(clean), len(output))
        rows.append(evaluate_pair(clean[:n], output[:n], rate))
    return {m: float(np.mean([row[m] for row in rows])) for m in METRICS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pair_sets", nargs="+", type=Path)
    parser.add_argument("--model", help="exported CMCR-Net folder or Hub id")
    parser.add_argument("--name", default="CMCR-Net", help="row label")
    args = parser.parse_args()

    enhance = None
    if args.model:
        model = EnhanceSpeech.from_hparams(
            source=args.model, savedir=tempfile.mkdtemp()
        )

        def enhance(noisy):
            batch = torch.tensor(noisy, dtype=torch.float32)[None]
            return model.enhance_batch(batch)[0].numpy().astype("float64")

    header = "| set | system | " + " | ".join(METRICS) + " |"
    lines = [header, "|" + "---|" * (len(METRICS) + 2)]
    for pair_set in tqdm(args.pair_sets, desc="pair sets"):
        names = sorted(p.name for p in (pair_set / "noisy").glob("*.wav"))
        systems = [("noisy input", pair_set / "noisy", None)]
        if enhance is not None:
            systems.append((args.name, pair_set / "noisy", enhance))
        for folder in sorted(pair_set.iterdir()):
            if folder.is_dir() and folder.name not in ("clean", "noisy"):
                systems.append((folder.name, folder, None))
        for label, folder, fn in systems:
            means = score_folder(pair_set, folder, names, fn)
            values = " | ".join(f"{means[m]:.2f}" for m in METRICS)
            lines.append(
                f"| {pair_set.name} ({len(names)}) | {label} | {values} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
