"""Summarises an ablation scored by ``quality.py --csv``: for every variant,
the mean and the spread (sample standard deviation, and min..max) over its
seeds of each metric, where a seed's score is its mean over all files; and,
for every variant against the reference variant, the mean paired difference
and the two-sided Wilcoxon signed-rank p-value over (file, seed) pairs of
PESQ and CSIG: seed s of a variant is paired with seed s of the reference
on the same file.

Systems are labelled ``VARIANT/SEED`` (as ``benchmarks/ablation.sh`` and the
commands in ``benchmarks/README.md`` name them); other rows (noisy input,
peers) are shown as single values for reference.

Usage::

    python benchmarks/ablation_table.py ablation.csv [--set vbd_test_extra]
        [--reference full]
"""

import argparse
import csv
import statistics
from collections import defaultdict

from scipy.stats import wilcoxon

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


# The metrics of the paired tests.
TESTED = ["pesq", "csig"]


def paired_differences(rows, variant, reference, metric):
    """Per-file differences ``variant - reference`` of one metric, seed by
    seed, over the files and seeds both have.

    Arguments
    ---------
    rows : list of dict
        Per-file rows of ``quality.py --csv`` (``set``, ``system``,
        ``file`` and the metrics).
    variant, reference : str
        Variant labels (systems ``VARIANT/SEED``).
    metric : str
        The metric compared.

    Returns
    -------
    list of float
        One difference per (set, file, seed) present in both.

    Example
    -------
    >>> rows = [
    ...     {"set": "s", "system": "a/1", "file": "f", "pesq": "2.0"},
    ...     {"set": "s", "system": "b/1", "file": "f", "pesq": "1.5"},
    ...     {"set": "s", "system": "b/2", "file": "f", "pesq": "1.0"},
    ... ]
    >>> paired_differences(rows, "a", "b", "pesq")
    [0.5]
    """
    scores = defaultdict(dict)
    for row in rows:
        label, _, seed = row["system"].rpartition("/")
        if label in (variant, reference) and row.get(metric) not in (None, ""):
            key = (row.get("set", ""), row["file"], seed)
            scores[key][label] = float(row[metric])
    return [
        pair[variant] - pair[reference]
        for pair in scores.values()
        if variant in pair and reference in pair
    ]


def paired_test(differences):
    """'mean difference (p = ...)' by the two-sided Wilcoxon signed-rank
    test of the differences.

    Example
    -------
    >>> paired_test([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    '+0.45 (p = 0.0078, n = 8)'
    >>> paired_test([])
    'n/a'
    """
    if not differences or not any(differences):
        return "n/a"
    p_value = wilcoxon(differences).pvalue
    mean = statistics.fmean(differences)
    return f"{mean:+.2f} (p = {p_value:.2g}, n = {len(differences)})"


def main(argv=None):
    """Prints the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", help="per-file rows from quality.py --csv")
    parser.add_argument(
        "--set",
        action="append",
        dest="sets",
        help="only the files of this pair set (repeatable; default: all)",
    )
    parser.add_argument(
        "--reference",
        default="full",
        help="the variant the others are tested against (default: full)",
    )
    args = parser.parse_args(argv)
    with open(args.csv, newline="", encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    if args.sets:
        rows = [row for row in rows if row["set"] in args.sets]
        if not rows:
            parser.error(f"no rows of the sets {args.sets} in {args.csv}")
    summary = variant_summary(seed_means(rows))
    present = [m for m in METRICS if any(m in s for s in summary.values())]
    tested = [f"{m} vs {args.reference}" for m in TESTED]
    print("| system | seeds | " + " | ".join(present + tested) + " |")
    print("|---|---|" + "---|" * len(present + tested))
    for label, metrics in summary.items():
        seeds = len(next(iter(metrics.values())))
        cells = [cell(metrics[m]) for m in present if m in metrics]
        if label != args.reference and any(
            row["system"].startswith(f"{label}/") for row in rows
        ):
            cells += [
                paired_test(
                    paired_differences(rows, label, args.reference, metric)
                )
                for metric in TESTED
            ]
        else:
            cells += [""] * len(TESTED)
        print(f"| {label} | {seeds} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
