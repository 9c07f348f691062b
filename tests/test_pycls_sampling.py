"""The design spaces sample as pycls's sweep code and the paper's text say.

The references below are written in the test from reading pycls (pycls/sweep/random.py, pycls/sweep/samplers.py
``regnet_sampler`` and ``check_regnet_constraints``, pycls/models/regnet.py ``generate_regnet``) and the paper
(Section 3.1: "log-uniform sampling of d_i <= 16, w_i <= 1024 and divisible by 8, b_i in {1, 2, 4} and g_i in
{1, 2, ..., 32}"; AnyNetXD/XE constrain widths/depths to be non-decreasing). They use NumPy's legacy global-style
``RandomState`` as pycls does, so they share no code or random stream with the package.
"""

import math
from decimal import Decimal

import numpy as np
import pytest
from scipy import stats

from keras_regnet import design
from keras_regnet.design_space import Regime, get_space

# ---------------------------------------------------------------------------------- pycls, re-implemented


def _quantize(f, q, op):
    return type(q)(Decimal(op(f / q)) * Decimal(str(q)))


def _uniform(rs, low, high, q):
    return _quantize(rs.uniform(low, high + q), q, np.floor)


def _log_uniform(rs, low, high, q):
    f = np.exp(-rs.uniform(-np.log(high), -np.log(low - min(q, low / 2))))
    return _quantize(f, q, np.ceil)


def _power2_uniform(rs, low, high, q):
    f2 = np.floor(rs.uniform(np.log2(low), np.log2(high) + 1))
    return _quantize(2**f2, q, np.floor)


def _power2_or_log_uniform(rs, low, high, q):
    f = type(q)(_power2_uniform(rs, low, high, low))
    return _log_uniform(rs, max(low, q), high, min(high, q)) if f >= q else f


def _generate_regnet(wa, w0, wm, d, q=8):
    """(num_stages, total_stages, stage widths, stage depths) as pycls's generate_regnet."""
    ws_cont = np.arange(d) * wa + w0
    ks = np.round(np.log(ws_cont / w0) / np.log(wm))
    ws_all = np.round(np.divide(w0 * np.power(wm, ks), q)).astype(int) * q
    ws, ds = np.unique(ws_all, return_counts=True)
    return len(ws), ks.max() + 1, ws.tolist(), ds.tolist()


def _pycls_keeps(wa, w0, wm, d, num_stages=(4, 4)):
    """check_regnet_constraints."""
    num_s, max_s, _, _ = _generate_regnet(wa, w0, wm, d)
    return num_s == max_s and num_stages[0] <= num_s <= num_stages[1]


def _pycls_regnet_population(n, seed, depth, w0, wa, wm, group_w, bot_mul):
    """n configs from regnet_sampler that pass check_regnet_constraints (no complexity constraint)."""
    rs = np.random.RandomState(seed)
    out = []
    while len(out) < n:
        d = _uniform(rs, *depth, 1)
        w0_ = _log_uniform(rs, *w0, 8)
        wa_ = _log_uniform(rs, *wa, 0.1)
        wm_ = _log_uniform(rs, *wm, 0.001)
        gw = _power2_or_log_uniform(rs, *group_w, 8)
        bm = _power2_uniform(rs, *bot_mul, 1 / 128)
        if _pycls_keeps(wa_, w0_, wm_, d):
            out.append((d, w0_, wa_, wm_, gw, 1 / bm))
    return out


def _regnet_features(rows):
    """Marginals compared: d, w0, wa, wm, g, b, and each stage's width and depth."""
    feats = {k: [] for k in ("d", "log w0", "log wa", "wm", "g", "b")}
    for s in range(4):
        feats[f"stage {s + 1} log width"] = []
        feats[f"stage {s + 1} depth"] = []
    for d, w0, wa, wm, g, b in rows:
        _, _, ws, ds = _generate_regnet(wa, w0, wm, d)
        for k, v in zip(("d", "log w0", "log wa", "wm", "g", "b"), (d, math.log(w0), math.log(wa), wm, g, b)):
            feats[k].append(v)
        for s in range(4):
            feats[f"stage {s + 1} log width"].append(math.log(ws[s]))
            feats[f"stage {s + 1} depth"].append(ds[s])
    return feats


# ------------------------------------------------------------------------------------------- RegNet rule


@pytest.mark.parametrize("ranges", [
    {},  # the paper's RegNetX ranges: d 1-63, wm 1.5-3
    {"depth": (12, 28), "wm": (2.0, 3.0)},  # pycls's REGNET_SAMPLER defaults
])
def test_stage_rule_agrees_with_pycls_on_every_draw(ranges):
    space = get_space("RegNetX", **ranges)
    d, w0, wa, wm, _, _ = space.draw_parameters(np.random.default_rng(1), 20_000)
    keep = space.stage_rule(d, w0, wa, wm)
    ref = np.array([_pycls_keeps(float(wa[i]), int(w0[i]), float(wm[i]), int(d[i])) for i in range(d.size)])
    assert np.array_equal(keep, ref)
    assert 0.1 < keep.mean() < 0.3
    # Candidates with 4 distinct widths that pycls still rejects (merged or skipped stages) exist and are refused:
    four = np.array([_generate_regnet(float(wa[i]), int(w0[i]), float(wm[i]), int(d[i]))[0] == 4
                     for i in range(d.size)])
    rejected = np.flatnonzero(four & ~ref)
    assert rejected.size > 0.1 * four.sum()  # about 16% of the 4-width candidates
    for i in rejected[:50]:
        spec = space._params(d[i], w0[i], wa[i], wm[i], 1.0, 8).to_dict()
        assert any("quantization has" in v for v in space.violations(spec))


def test_sampled_regnets_pass_pycls_constraints():
    space = get_space("RegNetY", stem="cifar")
    for p in space.sample(300, seed=2, regime=Regime(flops=(2e6, 6e6), resolution=32, classes=10)):
        assert _pycls_keeps(p["wa"], p["w0"], p["wm"], p["depth"])


def test_merged_stage_example():
    # w0 = 8, wm = 1.5: 8 * 1.5 = 12 and 8 * 1.5^2 = 18 both round to 16, so exponents 1 and 2 share one width.
    num, total, ws, _ = _generate_regnet(5.0, 8, 1.5, 8)
    assert num < total
    spec = get_space("RegNetX")._params(8, 8, 5.0, 1.5, 1.0, 1).to_dict()
    assert any("merged" in v for v in get_space("RegNetX").violations(spec))


@pytest.mark.parametrize("ranges,pycls_ranges", [
    ({"depth": (12, 28), "wm": (2.0, 3.0), "group_width": (8, 128), "bottleneck_ratios": (1,)},
     dict(depth=(12, 28), w0=(8, 256), wa=(8.0, 256.0), wm=(2.0, 3.0), group_w=(8, 128), bot_mul=(1.0, 1.0))),
    ({}, dict(depth=(1, 63), w0=(8, 256), wa=(8.0, 256.0), wm=(1.5, 3.0), group_w=(1, 32), bot_mul=(0.25, 1.0))),
])
def test_regnet_marginals_match_pycls_sampler(ranges, pycls_ranges):
    """Two-sample KS tests of every marginal: the package's sampler vs pycls's (re-implemented) sampler."""
    n = 3000
    ref = _regnet_features(_pycls_regnet_population(n, 0, **pycls_ranges))
    space = get_space("RegNetX", **ranges)
    ours = _regnet_features([(p["depth"], p["w0"], p["wa"], p["wm"], p["group_width"], p["bottleneck_ratio"])
                             for p in space.sample(n, seed=0)])
    for key in ref:
        p = stats.ks_2samp(ref[key], ours[key]).pvalue
        assert p > 0.01, (key, p)


# ------------------------------------------------------------------------------------------------ AnyNet


def _log_uniform_rows(rs, low, high, q, size):
    """pycls's log_uniform for integer q, many values at once (the same formula as _log_uniform)."""
    f = np.exp(-rs.uniform(-np.log(high), -np.log(low - min(q, low / 2)), size=size))
    return (np.ceil(f / q) * q).astype(int)


def _anynet_reference(name, n, seed):
    """The paper's AnyNetX rules with pycls's samplers: per stage d log_uniform(1, 16, 1), w log_uniform(8, 1024,
    8), b = 1 / power2_uniform(1/4, 1), g power2_uniform(1, 32, 1); XB/XC share b / b and g; XD/XE reject rows
    whose widths / depths decrease; then pycls's compatibility adjustment."""
    rs = np.random.RandomState(seed)
    out = []
    while len(out) < n:
        ds = _log_uniform_rows(rs, 1, 16, 1, (20_000, 4))
        ws = _log_uniform_rows(rs, 8, 1024, 8, (20_000, 4))
        ok = np.ones(len(ds), bool)
        if name in ("AnyNetXD", "AnyNetXE"):
            ok &= np.all(np.diff(ws, axis=1) >= 0, axis=1)
        if name == "AnyNetXE":
            ok &= np.all(np.diff(ds, axis=1) >= 0, axis=1)
        for d, w in zip(ds[ok], ws[ok]):
            bs = [1 / _power2_uniform(rs, 0.25, 1.0, 1 / 128) for _ in range(4)]
            gs = [int(_power2_uniform(rs, 1, 32, 1)) for _ in range(4)]
            if name != "AnyNetXA":
                bs = [bs[0]] * 4
            if name not in ("AnyNetXA", "AnyNetXB"):
                gs = [gs[0]] * 4
            w, bs, gs = design.adjust_block_compatibility(w.tolist(), bs, gs)
            out.append((d.tolist(), w, bs, gs))
            if len(out) == n:
                break
    return out


def _anynet_features(rows):
    feats = {}
    for ds, ws, bs, gs in rows:
        for s in range(4):
            feats.setdefault(f"stage {s + 1} depth", []).append(ds[s])
            feats.setdefault(f"stage {s + 1} log width", []).append(math.log(ws[s]))
            feats.setdefault(f"stage {s + 1} b", []).append(bs[s])
            feats.setdefault(f"stage {s + 1} g", []).append(gs[s])
        feats.setdefault("total depth", []).append(sum(ds))
    return feats


@pytest.mark.parametrize("name", ["AnyNetXA", "AnyNetXC", "AnyNetXD", "AnyNetXE"])
@pytest.mark.slow  # statistics over many samples (~25 s on 2 cores)
def test_anynet_marginals_match_the_papers_rules(name):
    n = 2000
    ref = _anynet_features(_anynet_reference(name, n, 0))
    ours = _anynet_features([(p["depths"], p["widths"], p["bottleneck_ratios"], p["group_widths"])
                             for p in get_space(name).sample(n, seed=0)])
    for key in ref:
        p = stats.ks_2samp(ref[key], ours[key]).pvalue
        assert p > 0.01, (key, p)


def test_depths_are_log_uniform():
    """P(d = 1) = log 2 / log 32 = 0.2 and P(d = 16) = log(16/15) / log 32 = 0.019 (pycls's log_uniform(1, 16, 1))."""
    depths = np.array([d for p in get_space("AnyNetXA").sample(5000, seed=4) for d in p["depths"]])
    assert abs(np.mean(depths == 1) - 0.2) < 0.015
    assert abs(np.mean(depths == 16) - math.log(16 / 15) / math.log(32)) < 0.006


@pytest.mark.slow  # statistics over many samples (~35 s on 2 cores)
def test_ordered_spaces_follow_the_conditioned_law_not_sorted_draws():
    """Rejecting unordered rows keeps each ordered row with its product probability; sorting i.i.d. draws would
    weight a row by its number of orderings (24 for distinct depths, fewer with ties). The package matches the
    rejection law, which has many more rows with tied depths."""
    ref = _anynet_reference("AnyNetXE", 3000, 1)
    ours = [p["depths"] for p in get_space("AnyNetXE").sample(3000, seed=1)]
    rs = np.random.RandomState(2)
    sorted_iid = [sorted(int(_log_uniform(rs, 1, 16, 1)) for _ in range(4)) for _ in range(3000)]
    ties = [np.mean([len(set(ds)) < 4 for ds in rows]) for rows in ([r[0] for r in ref], ours, sorted_iid)]
    assert abs(ties[0] - ties[1]) < 0.04, ties
    assert ties[0] - ties[2] > 0.1, ties
