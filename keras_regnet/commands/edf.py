"""``keras-regnet edf``: compare design spaces from sweep results: error EDFs, KS statistic, bootstrap intervals."""

from __future__ import annotations

import json
import math
import sys


def positive_int(text):
    """argparse type: an integer >= 1 (a flag of 0 or below is refused with the flag's name by argparse)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser):
    """Register the command's flags."""
    parser.description = (
        "Read sweep results (JSON lines from `keras-regnet sweep`), plot each design space's error EDF "
        "F(e) = fraction of models with error < e on one figure, and print a table: n, min/mean/median error, and "
        "against the first space the Kolmogorov-Smirnov statistic and a bootstrap interval of the mean difference."
    )
    parser.add_argument("results", nargs="+", help="results files; the first file's space is the reference")
    parser.add_argument("--out", default="edf.png", help="EDF figure (PNG; default edf.png)")
    parser.add_argument("--scatter", help="also write error vs d, w0, wa, wm, g, b, flops scatter plots here (PNG)")
    parser.add_argument("--fit-plot", help="also write error vs quantized-linear fit error (Figure 7) here (PNG)")
    parser.add_argument("--confidence", type=float, default=0.95, help="bootstrap interval level (default 0.95)")
    parser.add_argument("--resamples", type=positive_int, default=10_000,
                        help="bootstrap resamples (default 10000; memory stays bounded for any value)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON lines")


def format_table(rows, confidence=0.95) -> str:
    """The comparison table as text."""
    ref = rows[0]["space"]
    pct = int(round(confidence * 100))
    head = f"{'space':<22}{'n':>4}{'min':>8}{'mean':>8}{'median':>8}{'KS':>7}{'p':>8}   mean diff vs {ref} [{pct}% CI]"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = f"{r['space']:<22}{r['n']:>4}{r['min']:>8.2f}{r['mean']:>8.2f}{r['median']:>8.2f}"
        if "ks" in r:
            ci = "" if math.isnan(r["diff_low"]) else f" [{r['diff_low']:+.2f}, {r['diff_high']:+.2f}]"
            line += f"{r['ks']:>7.2f}{r['p_value']:>8.3f}   {r['mean_diff']:+.2f}{ci}"
        else:
            line += f"{'-':>7}{'-':>8}   (reference)"
        lines.append(line)
    return "\n".join(lines)


def report(paths, out, scatter=None, fit_plot=None, confidence=0.95, resamples=10_000, as_json=False):
    """Load results, write the figures, print the table; returns the table rows."""
    from keras_regnet.design_space import analysis, plots

    groups = analysis.load_groups(paths, log=lambda m: print(m, file=sys.stderr))
    groups = analysis.merge_shards(groups, log=lambda m: print(m, file=sys.stderr))  # sweep --shard parts
    rows = analysis.compare_groups(groups, confidence=confidence, n_resamples=resamples)
    plots.plot_edf(groups, out)
    written = [out]
    if scatter:
        plots.plot_scatter(groups, scatter)
        written.append(scatter)
    if fit_plot:
        plots.plot_fit(groups, fit_plot)
        written.append(fit_plot)
    if as_json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(format_table(rows, confidence))
        print(f"errors in % (top-1); wrote {', '.join(written)}")
    return rows


def run(args):
    """Compare the given results files."""
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must be in (0, 1), got {args.confidence}.")
    report(args.results, args.out, args.scatter, args.fit_plot, args.confidence, args.resamples, args.json)
    return 0
