"""Figures in the paper's style: error EDFs of design spaces, error-vs-parameter scatters, fit error vs error.

Uses matplotlib's Agg backend (files only, no display). Every function returns the figure and, given a path,
saves a PNG of exactly ``figsize * dpi`` pixels.
"""

from __future__ import annotations

import math
import os

import numpy as np

from keras_regnet.design_space import analysis

__all__ = ["plot_edf", "plot_scatter", "plot_fit", "plot_trends", "COLORS", "edf_label", "log_ticks"]

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
    """Legend text of one EDF: 'name [min|mean]' with errors in % to one decimal, as in the paper, then the sample
    count and, for sweep records, the proxy epochs: 'RegNetX [15.2|24.8] n=20, 3 ep'."""
    s = analysis.summarize(errors)
    text = f"{label} [{s['min']:.1f}|{s['mean']:.1f}] n={s['n']}"
    epochs = _epochs(errors)
    return f"{text}, {epochs} ep" if epochs else text


def _epochs(values):
    """The proxy epochs of sweep records ('3' or '3/10' when mixed), None for plain error values."""
    found = set()
    for v in values:
        if isinstance(v, dict):
            sweep = v.get("sweep") if isinstance(v.get("sweep"), dict) else {}
            e = sweep.get("epochs", v.get("epochs"))
            if e is not None:
                found.add(e)
    return "/".join(str(e) for e in sorted(found, key=str)) or None


def _eval_split(groups):
    splits = {str(v["sweep"].get("eval_split")) for vals in groups.values() for v in vals
              if isinstance(v, dict) and isinstance(v.get("sweep"), dict) and v["sweep"].get("eval_split")}
    data = {str(v["sweep"].get("dataset")) for vals in groups.values() for v in vals
            if isinstance(v, dict) and isinstance(v.get("sweep"), dict) and v["sweep"].get("dataset")}
    if len(splits) == 1 and len(data) == 1:
        return f" on {data.pop()} {splits.pop()}"
    return ""


def plot_edf(groups, path=None, title=None, figsize=(5.0, 3.75), dpi=100):
    """One error EDF per design space on one axis; the legend gives [min|mean] error, sample count and epochs
    of each population; the axes say what they measure and that a curve further left is better."""
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
    ax.set_xlabel(f"top-1 error (%) after proxy training{_eval_split(groups)}\n"
                  "(left / higher curve = better design space)", fontsize=8)
    ax.set_ylabel("F(e): fraction of models\nwith error < e", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.4)
    ax.legend(loc="lower right", title="space [min|mean error] samples, epochs", fontsize=7, title_fontsize=7)
    sizes = {len(v) for v in groups.values()}
    n = f"{sizes.pop()} samples per space" if len(sizes) == 1 else "samples per space in the legend"
    ax.set_title(title or f"Error EDFs of the design spaces ({n})", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi)


def log_ticks(lo, hi, count=4) -> list:
    """About ``count`` readable tick values for a log axis over [lo, hi]: powers of two when the range spans
    several, else values spread evenly in log scale rounded to two significant digits."""
    if not (lo > 0 and hi > 0) or hi <= lo:
        return [lo] if lo > 0 else []
    p2 = [2.0**k for k in range(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1) if lo <= 2.0**k <= hi]
    if len(p2) >= 3:
        step = max(1, math.ceil(len(p2) / (count + 1)))
        return p2[::step]
    vals = np.geomspace(lo, hi, count)
    out = []
    for v in vals:
        r = float(f"{v:.2g}")
        if r not in out:
            out.append(r)
    return out


# AnyNet samples have no w0/wa/wm/g/b of their own: the scatter shows fitted or block-weighted values.
_ANYNET_NOTE = {"w0": "w0 (fitted)", "wa": "wa (fitted)", "wm": "wm (fitted)", "g": "g (block-weighted mean)",
                "b": "b (block-weighted mean)", "d": "depth d (blocks)"}


def plot_scatter(groups, path=None, metrics=analysis.METRICS, dpi=100, panel=(2.4, 2.1), title=None):
    """Error vs each design parameter (rows: spaces, columns: d, w0, wa, wm, g, b, flops) with a trend line.

    AnyNet rows label the values that are fitted (w0, wa, wm of the quantized linear fit of the block widths)
    or averaged (g, b weighted by blocks); log axes get several readable tick labels.
    """
    from matplotlib import ticker

    plt = _pyplot()
    rows, cols = len(groups), len(metrics)
    fig, axes = plt.subplots(rows, cols, figsize=(panel[0] * cols, panel[1] * rows + 0.6), squeeze=False,
                             sharey=True)
    for r, (label, records) in enumerate(groups.items()):
        values = [analysis.design_metrics(rec) for rec in records]
        errs = np.asarray([rec["error"] for rec in records], float)
        color = COLORS[r % len(COLORS)]
        anynet = any(rec.get("spec", {}).get("type") == "anynet" for rec in records)
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
                ax.set_xscale("log")
                finite = x[np.isfinite(x)]
                ticks = log_ticks(float(finite.min()), float(finite.max())) if finite.size else []
                ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
                ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_locator(ticker.NullLocator())
                ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.grid(alpha=0.4)
            ax.set_xlabel(_ANYNET_NOTE.get(key, name) if anynet else name, fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel(f"{label}\nerror (%)", fontsize=8)
    fig.suptitle(title or "Error vs design parameters (one point per model; black: least-squares trend; "
                 "AnyNet w0/wa/wm are fitted to its block widths)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_fit(groups, path=None, figsize=(5.0, 3.75), dpi=100):
    """Figure 7 style: error vs the quantized-linear fit error of each sample's block widths."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    for i, (label, records) in enumerate(groups.items()):
        fit = [analysis.design_metrics(r)["fit_error"] for r in records]
        ax.scatter(fit, [r["error"] for r in records], s=16, color=COLORS[i % len(COLORS)], alpha=0.8,
                   label=f"{label} (n={len(records)})")
    ax.set_xlabel("quantized linear fit error $e_{fit}$ of the block widths\n(0: widths follow a RegNet generator)",
                  fontsize=9)
    ax.set_ylabel("error (%)")
    ax.grid(alpha=0.4)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Error vs quantized linear fit (paper's Figure 7)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_trends(records, path=None, top=None, dpi=100, panel=(3.2, 2.6), title=None):
    """The paper's Figure 9-11 style view of one RegNet population: error vs d, w0, wa, wm, g, b with the best
    models (:func:`analysis.regnet_trends`' top fraction) highlighted and their range shaded, plus w0 vs wa
    and the block widths' growth (wm) vs depth for the best models."""
    from matplotlib import ticker

    plt = _pyplot()
    trends = analysis.regnet_trends(records, top=top)
    panels = len(analysis.TREND_PARAMS) + 1
    cols = math.ceil(panels / 2)
    fig, grid = plt.subplots(2, cols, figsize=(panel[0] * cols, 2 * panel[1] + 0.8), squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[panels:]:
        ax.set_visible(False)
    axes = axes[:panels]
    best = set(trends["best_indices"])
    errs = np.asarray([r["error"] for r in trends["records"]], float)
    for c, (key, name, log_x) in enumerate(analysis.TREND_PARAMS):
        ax = axes[c]
        x = np.asarray([r["spec"][analysis.TREND_SPEC_KEYS[key]] for r in trends["records"]], float)
        is_best = np.array([i in best for i in range(len(x))])
        ax.scatter(x[~is_best], errs[~is_best], s=12, color="#9a9a9a", alpha=0.7, label="all")
        ax.scatter(x[is_best], errs[is_best], s=18, color=COLORS[0], label=f"best {len(best)}")
        t = trends["params"][key]
        ax.axvspan(t["best_min"], t["best_max"], color=COLORS[0], alpha=0.08)
        fit = analysis.trend_line(x, errs, log_x)
        if fit is not None:
            tt = np.log(x) if log_x else x
            xs = np.linspace(tt.min(), tt.max(), 50)
            ax.plot(np.exp(xs) if log_x else xs, fit[0] * xs + fit[1], color="k", linewidth=1.0)
        if log_x and np.all(x > 0):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.FixedLocator(log_ticks(float(x.min()), float(x.max()))))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.set_xlabel(f"{name}\nSpearman {t['spearman']:+.2f} (p {t['spearman_p']:.2g})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.4)
        if c % cols == 0:
            ax.set_ylabel("error (%)", fontsize=8)
        if c == 0:
            ax.legend(fontsize=7, loc="upper right")
    ax = axes[panels - 1]
    w0 = np.asarray([r["spec"]["w0"] for r in trends["records"]], float)
    wa = np.asarray([r["spec"]["wa"] for r in trends["records"]], float)
    is_best = np.array([i in best for i in range(len(w0))])
    ax.scatter(w0[~is_best], wa[~is_best], s=12, color="#9a9a9a", alpha=0.7)
    ax.scatter(w0[is_best], wa[is_best], s=18, color=COLORS[0])
    lim = [min(w0.min(), wa.min()) * 0.9, max(w0.max(), wa.max()) * 1.1]
    ax.plot(lim, lim, "k--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(ticker.FixedLocator(log_ticks(lim[0], lim[1])))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_locator(ticker.NullLocator())
    rel = trends["relations"]
    ax.set_xlabel(f"w0 (dashed: wa = w0)\nbest: median wa/w0 {rel['best_wa_over_w0_median']:.2f}", fontsize=8)
    ax.set_ylabel("wa", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.4)
    label = trends["space"]
    fig.suptitle(title or f"{label}: error vs RegNet parameters, {len(errs)} models, best {len(best)} in blue\n"
                 "(shaded: their range; black: least-squares trend over all models)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi)
