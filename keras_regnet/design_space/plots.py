"""Figures in the paper's style: error EDFs of design spaces, error-vs-parameter scatters, fit error vs error.

Uses matplotlib's Agg backend (files only, no display). Every function returns the figure and, given a path,
saves a PNG of exactly ``figsize * dpi`` pixels.
"""

from __future__ import annotations

import os

import numpy as np

from keras_regnet.design_space import analysis

__all__ = ["plot_edf", "plot_scatter", "plot_fit", "COLORS", "edf_label"]

# The paper's (MATLAB-like) palette, one colour per design space.
COLORS = ("#0072bd", "#d95319", "#edb120", "#7e2f8e", "#77ac30", "#4dbeee", "#a2142f", "#4d4d4d")


def _pyplot():
    from keras_regnet._extras import require

    matplotlib = require("matplotlib", "design", "design-space plots")

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, dpi):
    if path is not None:
        folder = os.path.dirname(os.path.abspath(os.fspath(path)))
        os.makedirs(folder, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def edf_label(label, errors) -> str:
    """Legend text of one EDF: 'name [min|mean]' with errors in % to one decimal, as in the paper."""
    s = analysis.summarize(errors)
    return f"{label} [{s['min']:.1f}|{s['mean']:.1f}]"


def plot_edf(groups, path=None, title=None, figsize=(5.0, 3.75), dpi=100):
    """One error EDF per design space on one axis; the legend gives [min|mean] error of each population."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    lo, hi = np.inf, -np.inf
    for i, (label, values) in enumerate(groups.items()):
        e, f = analysis.edf(values)
        lo, hi = min(lo, e[0]), max(hi, e[-1])
        # F(e) = fraction with error < e: 0 up to the first error, then steps of 1/n at each error.
        xs = np.concatenate([[e[0]], e])
        ys = np.concatenate([[0.0], f])
        ax.step(xs, ys, where="post", color=COLORS[i % len(COLORS)], linewidth=2, label=edf_label(label, values))
    pad = max((hi - lo) * 0.05, 0.5)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("error (%)")
    ax.set_ylabel("cumulative prob.")
    ax.grid(alpha=0.4)
    ax.legend(loc="lower right", title="[min|mean]", fontsize=8, title_fontsize=8)
    ax.set_title(title or "error EDF", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_scatter(groups, path=None, metrics=analysis.METRICS, dpi=100, panel=(2.4, 2.0)):
    """Error vs each design parameter (rows: spaces, columns: d, w0, wa, wm, g, b, flops) with a trend line."""
    plt = _pyplot()
    rows, cols = len(groups), len(metrics)
    fig, axes = plt.subplots(rows, cols, figsize=(panel[0] * cols, panel[1] * rows), squeeze=False, sharey=True)
    for r, (label, records) in enumerate(groups.items()):
        values = [analysis.design_metrics(rec) for rec in records]
        errs = np.asarray([rec["error"] for rec in records], float)
        color = COLORS[r % len(COLORS)]
        for c, (key, name, log_x) in enumerate(metrics):
            ax = axes[r][c]
            x = np.asarray([v[key] for v in values], float)
            ax.scatter(x, errs, s=14, color=color, alpha=0.8)
            # A log axis (and a line in log x) only when every value is positive (a fitted wa can be 0).
            log_x = log_x and bool(np.all(x > 0))
            fit = analysis.trend_line(x, errs, log_x)
            if fit is not None:
                t = np.log(x) if log_x else x
                xs = np.linspace(t.min(), t.max(), 50)
                ax.plot(np.exp(xs) if log_x else xs, fit[0] * xs + fit[1], color="k", linewidth=1.2)
            if log_x:
                from matplotlib import ticker

                ax.set_xscale("log")
                # Powers of two as plain numbers (g, b, widths are powers of two or multiples of 8); the default
                # minor labels (2x10^0, 3x10^0 ...) would overlap.
                ax.xaxis.set_major_locator(ticker.LogLocator(base=2))
                ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.grid(alpha=0.4)
            ax.set_xlabel(name, fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel(f"{label}\nerror (%)", fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_fit(groups, path=None, figsize=(5.0, 3.75), dpi=100):
    """Figure 7 style: error vs the quantized-linear fit error of each sample's block widths."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    for i, (label, records) in enumerate(groups.items()):
        fit = [analysis.design_metrics(r)["fit_error"] for r in records]
        ax.scatter(fit, [r["error"] for r in records], s=16, color=COLORS[i % len(COLORS)], alpha=0.8, label=label)
    ax.set_xlabel("quantized linear fit error $e_{fit}$")
    ax.set_ylabel("error (%)")
    ax.grid(alpha=0.4)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi)
