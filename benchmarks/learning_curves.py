"""Draws validation learning curves of training runs as one PNG: a metric
(validation PESQ by default) against the optimizer step, one thin line per
run and, for runs labelled ``VARIANT/SEED``, a thick line of each variant's
mean over its seeds, so that a reader sees whether the runs have converged.

The curves come from each run's ``train_log.txt`` (the recipe logs ``steps``
with every epoch).

Usage::

    python benchmarks/learning_curves.py --output curves.png \\
        full/1=runs/full/1 full/2=runs/full/2 no_cr/1=runs/no_cr/1
    python benchmarks/learning_curves.py --output curves.png \\
        --ablation recipes/VoiceBank/enhance/CMCRNet/results/ablation
"""

import argparse
import re
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# "key: value" items of a SpeechBrain train log line.
ITEM = re.compile(r"\s*(\w[\w ]*?): ([-+.\deE]+)(?:,|$)")


def read_curve(train_log, metric="pesq"):
    """The (step, validation ``metric``) points of one run's train log.

    Arguments
    ---------
    train_log : str or os.PathLike
        The run's ``train_log.txt``.
    metric : str
        Validation metric (as logged: ``valid <metric>``).

    Returns
    -------
    list of tuple
        ``(steps, value)`` per logged epoch, in order.

    Example
    -------
    >>> log = getfixture("tmp_path") / "train_log.txt"
    >>> _ = log.write_text(
    ...     "epoch: 1, lr: 1.00e-03, steps: 38 - train loss: 0.5 - "
    ...     "valid loss: 0.4, valid pesq: 1.36, valid csig: 2.50\\n"
    ...     "epoch: 2, lr: 1.00e-03, steps: 76 - train loss: 0.4 - "
    ...     "valid loss: 0.3, valid pesq: 1.41, valid csig: 2.61\\n"
    ... )
    >>> read_curve(log)
    [(38, 1.36), (76, 1.41)]
    """
    points = []
    for line in Path(train_log).read_text(encoding="utf-8").splitlines():
        parts = [dict(ITEM.findall(part)) for part in line.split(" - ")]
        meta = parts[0]
        valid = next((p for p in parts if "valid loss" in p), None)
        if "steps" not in meta or valid is None:
            continue  # a test line, or a log from before steps were logged
        points.append((int(meta["steps"]), float(valid[f"valid {metric}"])))
    return points


def ablation_runs(root):
    """``VARIANT/SEED`` labels of an ablation folder's runs.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> for run in ["full/1", "full/2", "no_cr/1"]:
    ...     (root / run).mkdir(parents=True)
    ...     _ = (root / run / "train_log.txt").write_text("")
    >>> sorted(ablation_runs(root))
    ['full/1', 'full/2', 'no_cr/1']
    """
    return {
        f"{log.parent.parent.name}/{log.parent.name}": log.parent
        for log in sorted(Path(root).glob("*/*/train_log.txt"))
    }


def mean_curve(curves):
    """Mean over runs at the steps all of them reached.

    Example
    -------
    >>> mean_curve([[(1, 1.0), (2, 2.0)], [(1, 3.0)]])
    [(1, 2.0)]
    """
    by_step = defaultdict(list)
    for curve in curves:
        for step, value in curve:
            by_step[step].append(value)
    return [
        (step, statistics.fmean(values))
        for step, values in sorted(by_step.items())
        if len(values) == len(curves)
    ]


def draw(curves, output, metric="pesq", title=None):
    """Draws the curves (label to points) into the PNG ``output``."""
    variants = defaultdict(dict)
    for label, points in curves.items():
        variant, _, seed = label.rpartition("/")
        variants[variant or label][seed] = points
    figure, axes = plt.subplots(figsize=(8, 5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (variant, runs) in enumerate(sorted(variants.items())):
        colour = colours[index % len(colours)]
        for points in runs.values():
            axes.plot(*zip(*points), color=colour, alpha=0.3, linewidth=0.8)
        mean = mean_curve(list(runs.values()))
        if mean:
            axes.plot(
                *zip(*mean),
                color=colour,
                linewidth=2,
                label=f"{variant} (mean of {len(runs)})",
            )
    axes.set_xlabel("optimizer step")
    axes.set_ylabel(f"validation {metric.upper()}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)


def main(argv=None):
    """Reads the runs and writes the picture."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs",
        nargs="*",
        metavar="LABEL=FOLDER",
        help="a run's output folder (with train_log.txt) and its label",
    )
    parser.add_argument(
        "--ablation",
        metavar="FOLDER",
        help="every VARIANT/SEED run under FOLDER (benchmarks/ablation.sh)",
    )
    parser.add_argument("--output", required=True, help="the PNG to write")
    parser.add_argument("--metric", default="pesq", help="default: pesq")
    parser.add_argument("--title", help="the picture's title")
    args = parser.parse_args(argv)
    runs = ablation_runs(args.ablation) if args.ablation else {}
    for item in args.runs:
        label, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"expected LABEL=FOLDER, got {item!r}")
        runs[label] = Path(folder)
    if not runs:
        parser.error("no runs given (LABEL=FOLDER or --ablation)")
    curves = {}
    for label, folder in runs.items():
        log = folder / "train_log.txt"
        if not log.is_file():
            parser.error(f"{log}: no such train log")
        try:
            points = read_curve(log, args.metric)
        except KeyError:
            parser.error(f"{log}: no validation {args.metric} logged")
        if points:
            curves[label] = points
    if not curves:
        parser.error("no run has logged a validation epoch with its steps")
    draw(curves, args.output, args.metric, args.title)
    print(f"{args.output}: {len(curves)} runs")


if __name__ == "__main__":
    main()
