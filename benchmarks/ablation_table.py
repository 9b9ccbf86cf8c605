"""Summarises an ablation scored by ``quality.py --csv``: for every variant,
the mean and the spread (sample standard deviation, and min..max) over its
seeds of each metric, where a seed's score is its mean over all files.

Systems are labelled ``VARIANT/SEED`` (as ``benchmarks/ablation.sh`` and the
commands in ``benchmarks/README.md`` name them); other rows (noisy input,
peers) are shown as single values for reference.

Usage::

    python benchmarks/ablation_table.py ablation.csv
"""

import argparse
import csv
import statistics
from collections import defaultdict

METRICS = [
    "pesq",
    "csig",
    "cbak",
    "covl",
    "ssnr",
    "stoi",
    "si_sdr",
    "dnsmos_ovrl",
]


def seed_means(rows):
    """Mean of each metric over the files of each system.

    Arguments
    ---------
    rows : list of dict
        Per-file rows of ``quality.py --csv``.

    Returns
    -------
    dict
        System label to {metric: mean}.

    Example
    -------
    >>> rows = [{"system": "a/1", "pesq": "1"}, {"system": "a/1", "pesq": "2"}]
    >>> seed_means(rows)
    {'a/1': {'pesq': 1.5}}
    """
    values = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for metric in METRICS:
            if row.get(metric) not in (None, ""):
                values[row["system"]][metric].append(float(row[metric]))
    return {
        system: {m: statistics.fmean(v) for m, v in metrics.items()}
        for system, metrics in values.items()
    }


def variant_summary(means):
    """Groups ``VARIANT/SEED`` systems by variant.

    Returns
    -------
    dict
        Label to {metric: list of per-seed values}; systems without a seed
        keep their own label and one value.

    Example
    -------
    >>> variant_summary({"a/1": {"pesq": 1.0}, "a/2": {"pesq": 2.0}})
    {'a': {'pesq': [1.0, 2.0]}}
    """
    grouped = defaultdict(lambda: defaultdict(list))
    for system, metrics in means.items():
        variant = system.rsplit("/", 1)[0]
        for metric, value in metrics.items():
            grouped[variant][metric].append(value)
    return {v: dict(metrics) for v, metrics in grouped.items()}


def cell(values):
    """'mean ± sd (min..max)' over seeds, or the single value.

    Example
    -------
    >>> cell([1.0, 2.0])
    '1.50 ± 0.71 (1.00..2.00)'
    >>> cell([1.0])
    '1.00'
    """
    if len(values) == 1:
        return f"{values[0]:.2f}"
    mean, spread = statistics.fmean(values), statistics.stdev(values)
    return f"{mean:.2f} ± {spread:.2f} ({min(values):.2f}..{max(values):.2f})"


def main(argv=None):
    """Prints the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", help="per-file rows from quality.py --csv")
    args = parser.parse_args(argv)
    with open(args.csv, newline="", encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    summary = variant_summary(seed_means(rows))
    present = [m for m in METRICS if any(m in s for s in summary.values())]
    print("| system | seeds | " + " | ".join(present) + " |")
    print("|---|---|" + "---|" * len(present))
    for label, metrics in summary.items():
        seeds = len(next(iter(metrics.values())))
        cells = " | ".join(cell(metrics[m]) for m in present if m in metrics)
        print(f"| {label} | {seeds} | {cells} |")


if __name__ == "__main__":
    main()
