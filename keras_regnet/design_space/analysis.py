"""Comparing design spaces from sweep results: error EDFs, KS statistic, bootstrap intervals, design fits.

The error EDF of a population is F(e) = fraction of its models with error < e (the paper's Figure 2 style).
Two spaces are compared numerically by the two-sample Kolmogorov-Smirnov statistic (sup |F_A - F_B|) and a
bootstrap interval of the difference of their mean errors. Any sample's per-block widths can be fitted by the
quantized linear generator (w0, wa, wm, fit error), the paper's Figure 7 analysis.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import math
import os

import numpy as np

from keras_regnet import design, specs
from keras_regnet.design_space import results as results_lib

__all__ = [
    "load_groups",
    "edf",
    "edf_at",
    "summarize",
    "ks_test",
    "bootstrap_mean_difference",
    "compare_groups",
    "design_metrics",
    "trend_line",
    "verdict",
    "verdicts",
    "regnet_trends",
    "merge_shards",
    "study_summary",
    "format_study",
    "format_trends",
    "TREND_PARAMS",
    "METRICS",
]

# Scatter-plot metrics: (key, axis label, log-scale x).
METRICS = (
    ("d", "depth d", False),
    ("w0", "w0", True),
    ("wa", "wa", True),
    ("wm", "wm", False),
    ("g", "group width g", True),
    ("b", "bottleneck ratio b", True),
    ("flops", "flops (M)", True),
)


# Sweep settings that may differ between compared files: the space (and what follows from it) and bookkeeping.
_SETTINGS_IGNORED = {"space", "samples", "data_dir", "manual_dir", "max_tries", "seed"}


def _path_labels(paths) -> list:
    """The shortest trailing part of each path (file name, then parent folders) that no other path ends with."""
    parts = [os.path.normpath(os.path.abspath(os.fspath(p))).split(os.sep) for p in paths]
    labels = []
    for i, p in enumerate(parts):
        k = 1
        while k < len(p) and any(q[-k:] == p[-k:] for j, q in enumerate(parts) if j != i):
            k += 1
        labels.append("/".join(p[-k:]))
    return labels


def load_groups(paths, log=print) -> "collections.OrderedDict[str, list]":
    """Read results files into {design-space label: records}, reporting damaged lines through ``log``.

    Records are grouped by their ``space``; when several files hold the same space, each file's records get
    the label ``space (path)``, the path cut to its shortest unique suffix (``run1/results.jsonl``), so they
    stay separate. A sample recorded more than once in a file (same space, seed and index: two runs of one sweep
    on the file) counts once, and ``log`` says so. A record whose ``space`` is not a name is reported with its
    line and skipped (as damaged lines are). Files swept with different settings (anything but the space and
    seed: epochs, batch, lr, data set, regime...) are compared with a warning that lists the differences.
    Raises ValueError when nothing usable is found or a file is given twice.
    """
    seen_files = {}
    for path in paths:
        real = os.path.realpath(os.fspath(path))
        if real in seen_files:
            raise ValueError(f"{path} is given more than once (also as {seen_files[real]}); give each results file "
                             "once.")
        seen_files[real] = path
    per_file, shared = [], {}
    for path in paths:
        res = results_lib.read_results(path)
        if res.damaged:
            log(f"warning: {len(res.damaged)} damaged line(s) skipped:\n{res.damage_report()}")
        records, seen, dups, odd, last_sweep = [], set(), 0, [], None
        for n, r in enumerate(res.records):
            space = r.get("space", "?")
            if not isinstance(space, str) or not space:
                odd.append(f"{res.where(n)}: 'space' must be a design space name (a string), got {space!r}")
                continue
            ident = (space, r.get("seed"), r.get("index")) if "index" in r else None
            if ident is not None:
                try:
                    hash(ident)
                except TypeError:  # a list or object as seed/index: the record is not deduplicated
                    ident = None
            if ident is not None and ident in seen:
                dups += 1
                continue
            seen.add(ident)
            sweep = r.get("sweep")
            if isinstance(sweep, dict):  # one object for equal settings: less memory, faster checks
                if sweep != last_sweep:
                    last_sweep = shared.setdefault(json.dumps(sweep, sort_keys=True), sweep)
                r["sweep"] = last_sweep
            records.append(r)
        if odd:
            log(f"warning: {len(odd)} record(s) skipped:\n" + "\n".join(odd))
        if not records:
            raise ValueError(f"{path} holds no finished results (run `keras-regnet sweep --out {path}`).")
        if dups:
            log(f"note: {path}: {dups} duplicate record(s) of the same sample (space, seed, index) ignored; each "
                "sample counts once.")
        per_file.append((path, records))
    _warn_on_different_settings(per_file, log)
    count = collections.Counter(space for _, recs in per_file for space in {r.get("space", "?") for r in recs})
    names = _path_labels([path for path, _ in per_file])
    groups = collections.OrderedDict()
    for (path, recs), name in zip(per_file, names):
        for r in recs:
            space = r.get("space", "?")
            label = space if count[space] == 1 else f"{space} ({name})"
            groups.setdefault(label, []).append(r)
    return groups


def merge_shards(groups, log=print) -> "collections.OrderedDict[str, list]":
    """Merge the groups of :func:`load_groups` that are parts of one sweep: files of the same space whose records
    share one seed and one set of sweep settings (``sweep --shard K/N`` on several machines, each shard writing
    its own file). A sample present in several parts counts once. Other groups are returned unchanged."""
    parts = collections.OrderedDict()
    for label, recs in groups.items():
        keys = {(r.get("space"), json.dumps(r.get("seed")), json.dumps(r.get("sweep"), sort_keys=True))
                for r in recs if isinstance(r, dict)}
        key = keys.pop() if len(keys) == 1 and isinstance(groups[label][0], dict) else ("label", label, "")
        parts.setdefault(key, []).append(label)
    spaces = collections.Counter(key[0] for key in parts)
    out = collections.OrderedDict()
    for key, labels in parts.items():
        if len(labels) == 1:
            out[labels[0]] = groups[labels[0]]
            continue
        merged, seen = [], set()
        for label in labels:
            for r in groups[label]:
                i = r.get("index")
                if i is not None and i in seen:
                    continue
                seen.add(i)
                merged.append(r)
        name = key[0] if spaces[key[0]] == 1 else f"{key[0]} (seed {json.loads(key[1])}, {len(labels)} files)"
        log(f"note: {len(labels)} files hold parts of one {key[0]} sweep (same seed and settings), merged into "
            f"{len(merged)} samples: {', '.join(labels)}")
        out[name] = merged
    return out


def _settings(records) -> dict:
    """{setting: set of JSON values} over a file's records (from each record's ``sweep`` settings)."""
    out = collections.defaultdict(set)
    shared = set()  # ids of settings dicts already counted (load_groups makes equal ones one object)
    for r in records:
        sweep = r.get("sweep")
        if isinstance(sweep, dict):
            if id(sweep) in shared:
                continue
            shared.add(id(sweep))
        else:
            sweep = {k: r[k] for k in ("epochs", "dataset", "image_size", "num_classes") if k in r}
        for k, v in sweep.items():
            if k not in _SETTINGS_IGNORED:
                out[k].add(json.dumps(v, sort_keys=True))
    return out


def _warn_on_different_settings(per_file, log):
    """Warn, listing the differences, when the files were swept with settings other than the space that differ."""
    settings = [(path, _settings(recs)) for path, recs in per_file]
    keys = sorted({k for _, s in settings for k in s})
    diffs = []
    for k in keys:
        values = [s.get(k, {json.dumps(None)}) for _, s in settings]
        if any(v != values[0] for v in values[1:]) or any(len(v) > 1 for v in values):
            shown = "; ".join(f"{os.path.basename(p)}: {' | '.join(sorted(v))}" for (p, _), v in zip(settings, values))
            diffs.append(f"  {k}: {shown}")
    if diffs:
        log("warning: these results were swept with different settings, so their error differences are not only "
            "the design spaces'; rerun the sweeps with the same settings to compare spaces:\n" + "\n".join(diffs))


def _errors(values):
    if isinstance(values, np.ndarray):
        e = values.astype(float, copy=False)
    else:
        e = np.asarray([v["error"] if isinstance(v, dict) else v for v in values], dtype=float)
    if e.ndim != 1 or e.size == 0:
        raise ValueError("need at least one error value.")
    if not np.all(np.isfinite(e)):
        raise ValueError("errors must be finite numbers.")
    if e.min() < 0 or e.max() > 100:
        bad = e[(e < 0) | (e > 100)][0]
        raise ValueError(f"errors are percentages in [0, 100]; got {bad!r}.")
    return e


def edf(errors):
    """(sorted errors, F) with F[i] = (i + 1) / n: the EDF just after each sorted error (a right-continuous step)."""
    e = np.sort(_errors(errors))
    return e, np.arange(1, e.size + 1) / e.size


def edf_at(errors, e):
    """F(e) = fraction of models with error strictly below ``e`` (``e`` may be an array)."""
    errs = np.sort(_errors(errors))
    return np.searchsorted(errs, np.asarray(e, dtype=float), side="left") / errs.size


def summarize(errors) -> dict:
    """n, min, mean, median, std and the 25th percentile of the errors."""
    e = _errors(errors)
    return {
        "n": int(e.size), "min": float(e.min()), "mean": float(e.mean()), "median": float(np.median(e)),
        "q25": float(np.percentile(e, 25)), "std": float(e.std(ddof=1)) if e.size > 1 else 0.0,
    }


def ks_test(a, b) -> dict:
    """Two-sample Kolmogorov-Smirnov test of two error populations: statistic sup|F_a - F_b| and p-value."""
    from keras_regnet._extras import require

    stats = require("scipy.stats", "design", "the KS test of design-space errors")

    res = stats.ks_2samp(_errors(a), _errors(b))
    return {"ks": float(res.statistic), "p_value": float(res.pvalue)}


# Resampled values drawn at once by each of the bootstrap's two threads (a chunk: resamples x population size):
# 2M int32 indices and 2M float64 values, 24 MB per thread.
_BOOTSTRAP_CHUNK_VALUES = 2_000_000


def _bootstrap_means(values, n_resamples, rng):
    """Means of ``n_resamples`` resamples (with replacement) of ``values``, drawn in chunks of bounded memory."""
    n = values.size
    per_chunk = max(1, _BOOTSTRAP_CHUNK_VALUES // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, per_chunk):  # one resample per chunk beyond the budget: O(n), as the data
        stop = min(n_resamples, start + per_chunk)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int32 if n < 2**31 else np.int64)
        means[start:stop] = values[idx].mean(axis=1)
    return means


def bootstrap_mean_difference(a, b, confidence=0.95, n_resamples=10_000, seed=0) -> dict:
    """mean(a) - mean(b) with a percentile bootstrap interval (each population resampled independently).

    The resamples are drawn in chunks of about ``_BOOTSTRAP_CHUNK_VALUES`` values, so memory stays bounded
    (tens of MB) for any population size and number of resamples; the result does not depend on the chunking.
    """
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    a, b = _errors(a), _errors(b)
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return {"diff": diff, "low": math.nan, "high": math.nan}
    rng_a, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    # The two populations are resampled in two threads (NumPy releases the GIL while drawing and gathering).
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        means_a = pool.submit(_bootstrap_means, a, int(n_resamples), rng_a)
        means_b = pool.submit(_bootstrap_means, b, int(n_resamples), rng_b)
        dist = means_a.result() - means_b.result()
    alpha = (1 - confidence) / 2
    low, high = np.percentile(dist, [100 * alpha, 100 * (1 - alpha)])
    return {"diff": diff, "low": float(low), "high": float(high)}


def compare_groups(groups, confidence=0.95, n_resamples=10_000, seed=0) -> list:
    """One row per group: summary plus KS and bootstrap mean difference against the first group (the reference)."""
    labels = list(groups)
    if not labels:
        raise ValueError("no design spaces to compare.")
    ref = _errors(groups[labels[0]])
    rows = []
    for label in labels:
        e = _errors(groups[label])
        row = {"space": label, **summarize(e)}
        if label != labels[0]:
            row.update(ks_test(e, ref))
            boot = bootstrap_mean_difference(e, ref, confidence, n_resamples, seed)
            row.update(mean_diff=boot["diff"], diff_low=boot["low"], diff_high=boot["high"])
        rows.append(row)
    return rows


def verdict(row: dict, reference: str, alpha=0.01) -> str:
    """One line saying whether a :func:`compare_groups` row differs significantly from the reference.

    Significant means both tests agree: the KS p-value is below ``alpha`` and the bootstrap interval of the mean
    difference excludes 0. Otherwise the line says the difference is not significant at this sample size.
    """
    if "ks" not in row:
        return f"{row['space']}: reference"
    lo, hi = row.get("diff_low", math.nan), row.get("diff_high", math.nan)
    ci_excludes_0 = not (math.isnan(lo) or math.isnan(hi)) and (lo > 0 or hi < 0)
    ks_rejects = row["p_value"] < alpha
    ci = "no interval (n < 2)" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
    facts = (f"{row['space']} vs {reference} (n = {row['n']} vs {row['n_reference']}): KS {row['ks']:.2f}, "
             f"p = {row['p_value']:.2g}; mean error difference {row['mean_diff']:+.2f} points, CI {ci}")
    if ks_rejects and ci_excludes_0:
        side = "lower (better)" if row["mean_diff"] < 0 else "higher (worse)"
        return f"{facts}: significant at {alpha:g}, {row['space']}'s errors are {side}."
    if ks_rejects or ci_excludes_0:
        which = "the KS test rejects equal distributions" if ks_rejects else "the mean-difference interval excludes 0"
        return (f"{facts}: not significant at {alpha:g} (only {which}); more samples per space would decide "
                "(`keras-regnet compare --study`).")
    return (f"{facts}: not significant at this sample size; the difference may be noise "
            "(more samples: `keras-regnet compare --study`).")


def verdicts(rows, alpha=0.01) -> list:
    """:func:`verdict` for every non-reference row of :func:`compare_groups`."""
    ref = rows[0]
    return [verdict(dict(r, n_reference=ref["n"]), ref["space"], alpha) for r in rows[1:]]


def study_summary(groups, alpha=0.01, confidence=0.95, n_resamples=10_000, seed=0) -> dict:
    """The numbers a design-space study publishes, recomputable from its results files alone.

    ``groups`` as :func:`load_groups` returns them, the reference first. ``spaces``: each space's summary with KS
    and the bootstrap interval of the mean difference against the reference and the verdict (significant when the
    KS p-value is below ``alpha`` and the interval excludes 0). ``steps``: each space against the one before it
    (AnyNetXA -> XB -> XC: "no worse" unless the next space is significantly worse by that rule). ``trends``: the
    RegNet trends (:func:`regnet_trends`) of the RegNet samples, when there are at least 3.
    """
    rows = compare_groups(groups, confidence=confidence, n_resamples=n_resamples, seed=seed)
    ref = rows[0]["space"]
    spaces = []
    for r in rows:
        row = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}
        if "ks" in r:
            row["significant"] = bool(r["p_value"] < alpha and (r["diff_low"] > 0 or r["diff_high"] < 0))
            row["verdict"] = verdict(dict(r, n_reference=rows[0]["n"]), ref, alpha)
        spaces.append(row)
    steps = []
    labels = list(groups)
    anynet = [label for label in labels if str(label).startswith("AnyNetX")]
    for prev, nxt in zip(anynet, anynet[1:]):  # the AnyNetX progression (XA -> XB -> XC ...)
        ks = ks_test(groups[nxt], groups[prev])
        boot = bootstrap_mean_difference(groups[nxt], groups[prev], confidence, n_resamples, seed)
        worse = ks["p_value"] < alpha and boot["low"] > 0
        better = ks["p_value"] < alpha and boot["high"] < 0
        steps.append({
            "from": prev, "to": nxt, "ks": round(ks["ks"], 6), "p_value": round(ks["p_value"], 6),
            "mean_diff": round(boot["diff"], 6), "diff_low": round(boot["low"], 6), "diff_high": round(boot["high"], 6),
            "outcome": "significantly better" if better else ("significantly worse" if worse else "no worse"),
        })
    records = [r for recs in groups.values() for r in recs if isinstance(r, dict)]
    trends = None
    if sum(1 for r in records if isinstance(r.get("spec"), dict) and r["spec"].get("type") == "regnet") >= 3:
        t = regnet_trends(records)
        trends = {k: v for k, v in t.items() if k != "records"}
        trends = json.loads(json.dumps(trends, default=float), parse_float=lambda x: round(float(x), 6))
    return {"alpha": alpha, "confidence": confidence, "n_resamples": n_resamples, "seed": seed, "reference": ref,
            "spaces": spaces, "steps": steps, "trends": trends}


def format_study(summary) -> str:
    """A study summary as text: verdict per space against the reference, then each step of the progression."""
    lines = [s["verdict"] for s in summary["spaces"] if "verdict" in s]
    for st in summary["steps"]:
        lines.append(f"{st['from']} -> {st['to']}: mean error {st['mean_diff']:+.2f} points "
                     f"[{st['diff_low']:+.2f}, {st['diff_high']:+.2f}], KS p = {st['p_value']:.2g}: {st['outcome']}")
    return "\n".join(lines)


def block_widths(spec: dict) -> list:
    """Per-block widths of a spec (RegNet or AnyNet), after compatibility adjustment, first block first."""
    p = specs.params_from_dict(spec)
    if isinstance(p, specs.RegNetParams):
        p = p.to_anynet()
    return [w for d, w in zip(p.depths, p.widths) for _ in range(d)]


def design_metrics(record: dict) -> dict:
    """The paper's design parameters of a sample: d, w0, wa, wm, g, b, flops (M) and the quantized-linear fit.

    RegNet samples report their generating parameters; AnyNet samples report the fitted w0, wa, wm and the
    block-weighted mean g and b. ``fit_error`` is the Figure 7 fit error of the sample's block widths.
    """
    spec = record["spec"]
    p = specs.params_from_dict(spec)
    widths = block_widths(spec)
    fit = design.fit_quantized_linear(widths)
    out = {"flops": record.get("flops", math.nan) / 1e6, "fit_error": fit["fit_error"]}
    if isinstance(p, specs.RegNetParams):
        out.update(d=p.depth, w0=p.w0, wa=p.wa, wm=p.wm, g=p.group_width, b=p.bottleneck_ratio)
    else:
        n = sum(p.depths)
        out.update(
            d=n, w0=fit["w0"], wa=fit["wa"], wm=fit["wm"],
            g=sum(d * g for d, g in zip(p.depths, p.group_widths)) / n,
            b=sum(d * b for d, b in zip(p.depths, p.bottleneck_ratios)) / n,
        )
    return out


# The RegNet parameters whose trends the paper reports (Figures 9-11): (key, axis label, log scale).
TREND_PARAMS = (
    ("d", "depth d", False),
    ("w0", "initial width w0", True),
    ("wa", "slope wa", True),
    ("wm", "width multiplier wm", False),
    ("g", "group width g", True),
    ("b", "bottleneck ratio b", True),
)
TREND_SPEC_KEYS = {"d": "depth", "w0": "w0", "wa": "wa", "wm": "wm", "g": "group_width", "b": "bottleneck_ratio"}


def regnet_trends(records, top=None) -> dict:
    """The paper's Figure 9-11 analysis of one RegNet population: how d, w0, wa, wm, g, b relate to error.

    ``top`` best models (default: the best quarter, at least 5) are the "good" region. For each parameter:
    Spearman rank correlation with error over all models (and its p-value), the least-squares slope of error on
    the parameter (on log2 of it for w0, wa, g, b: points of error per doubling), the median over all models and
    the best models' median and range. ``relations``: the best models' median wa / w0 (the paper finds w0 ~ wa),
    the rank correlation of w0 and wa among them, and their median stage count and flops.
    Raises ValueError when the records hold fewer than 3 RegNet samples.
    """
    from scipy import stats

    regnets = [r for r in records if isinstance(r, dict) and isinstance(r.get("spec"), dict)
               and r["spec"].get("type") == "regnet" and "error" in r]
    if len(regnets) < 3:
        raise ValueError(f"trends need at least 3 RegNet samples (RegNetX/RegNetY sweeps), got {len(regnets)}.")
    errs = _errors(regnets)
    n = errs.size
    if top is None:
        top = max(5, int(round(n / 4)))
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}.")
    top = min(int(top), n)
    order = np.argsort(errs, kind="stable")
    best = order[:top]
    params = {}
    for key, _, log_x in TREND_PARAMS:
        x = np.asarray([r["spec"][TREND_SPEC_KEYS[key]] for r in regnets], float)
        if np.unique(x).size > 1:
            rho, p = stats.spearmanr(x, errs)
            rho, p = float(rho), float(p)
        else:
            rho, p = 0.0, 1.0
        t = np.log2(x) if log_x else x
        slope = float(np.polyfit(t, errs, 1)[0]) if np.unique(t).size > 1 else 0.0
        params[key] = {
            "spearman": rho, "spearman_p": p, "slope": slope, "slope_per": "doubling" if log_x else "unit",
            "median": float(np.median(x)), "best_median": float(np.median(x[best])),
            "best_min": float(x[best].min()), "best_max": float(x[best].max()),
        }
    w0 = np.asarray([r["spec"]["w0"] for r in regnets], float)
    wa = np.asarray([r["spec"]["wa"] for r in regnets], float)
    stages = [len(specs.params_from_dict(r["spec"]).to_anynet().depths) for r in regnets]
    rho_wa = stats.spearmanr(w0[best], wa[best])[0] if top > 2 and np.unique(w0[best]).size > 1 else math.nan
    flops = np.asarray([r.get("flops", math.nan) for r in regnets], float)
    relations = {
        "best_wa_over_w0_median": float(np.median(wa[best] / w0[best])),
        "wa_over_w0_median": float(np.median(wa / w0)),
        "best_w0_wa_spearman": float(rho_wa),
        "best_stages_median": float(np.median(np.asarray(stages)[best])),
        "best_flops_median_M": float(np.nanmedian(flops[best]) / 1e6) if np.isfinite(flops[best]).any() else math.nan,
    }
    spaces = sorted({str(r.get("space", "RegNet")) for r in regnets})
    return {
        "space": "/".join(spaces), "n": int(n), "top": top, "best_indices": [int(i) for i in best],
        "best_errors": [float(e) for e in errs[best]], "params": params, "relations": relations,
        "records": regnets,
    }


def format_trends(trends) -> str:
    """:func:`regnet_trends` as a text table, one parameter per line."""
    head = (f"{trends['space']}: {trends['n']} models, best {trends['top']} (errors "
            f"{min(trends['best_errors']):.2f}-{max(trends['best_errors']):.2f}%)")
    cols = f"{'param':<6}{'spearman':>9}{'p':>9}{'slope':>9}  {'per':<9}{'median':>8}{'best median':>12}  best range"
    lines = [head, cols, "-" * len(cols)]
    for key, *_ in TREND_PARAMS:
        t = trends["params"][key]
        lines.append(f"{key:<6}{t['spearman']:>+9.2f}{t['spearman_p']:>9.2g}{t['slope']:>+9.2f}  {t['slope_per']:<9}"
                     f"{t['median']:>8.4g}{t['best_median']:>12.4g}  [{t['best_min']:g}, {t['best_max']:g}]")
    rel = trends["relations"]
    lines.append(f"best models: median wa/w0 {rel['best_wa_over_w0_median']:.2f} (all: {rel['wa_over_w0_median']:.2f}), "
                 f"w0-wa rank correlation {rel['best_w0_wa_spearman']:+.2f}, median {rel['best_stages_median']:g} "
                 f"stages, median {rel['best_flops_median_M']:.3g} MF")
    lines.append("slope: error points per unit (d, wm) or per doubling (w0, wa, g, b); negative = larger is better")
    return "\n".join(lines)


def trend_line(x, y, log_x=False):
    """Least-squares line of y on x (or on log x): returns (slope, intercept), or None with < 2 distinct x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log_x else True)
    x, y = x[ok], y[ok]
    if log_x:
        x = np.log(x)
    if np.unique(x).size < 2:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)
