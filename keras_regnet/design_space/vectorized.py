"""Vectorised design maths for samplers: block compatibility, RegNet stage generation and analytic complexity
of whole batches of candidates in NumPy.

These are batch forms of :func:`keras_regnet.design.adjust_block_compatibility`,
:func:`keras_regnet.design.generate_regnet` and :func:`keras_regnet.complexity.anynet_complexity` (the exact
references). Integer results are computed in int64 with the same operations, so they are equal to the references,
not approximations (the tests check equality on thousands of candidates). The only transcendental step, the
RegNet generator's ``log``/``power``, is guarded: candidates whose rounding decisions fall within 1e-6 of a tie
are reported so the caller can recompute them with the scalar reference.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "adjust_block_compatibility", "regnet_stages", "regnet_stage_count", "regnet_stage_counts", "regnet_stage_arrays",
    "anynet_complexity",
]

_TIE = 1e-6


def adjust_block_compatibility(widths, bottleneck_ratios, group_widths):
    """Element-wise pycls compatibility of (w, b, g) arrays (any equal shapes); returns (widths, group widths).

    Same operations as :func:`keras_regnet.design.adjust_block_compatibility`, one entry at a time.
    """
    w = np.asarray(widths, dtype=np.float64)
    b = np.asarray(bottleneck_ratios, dtype=np.float64)
    g = np.asarray(group_widths, dtype=np.int64)
    m = 1.0 / b  # pycls's bot_mul
    v = np.maximum(1, np.floor(w * m)).astype(np.int64)  # int(max(1, w * m)) for positive w
    gs = np.minimum(g, v)
    big = m > 1
    ms = np.where(big, np.lcm(gs, np.floor(np.where(big, m, 1)).astype(np.int64)), gs)
    vs = np.maximum(ms, (np.rint(v / ms) * ms).astype(np.int64))  # round half to even, as Python's round
    ws = np.floor(vs / m).astype(np.int64)
    return ws, gs


def regnet_stages(d, w0, wa, wm, max_depth, q=8, return_total=False):
    """Stage structure of a batch of RegNets (arrays d, w0, wa, wm of shape (B,)).

    Returns ``(starts, widths, near_tie)``: ``starts`` (B, max_depth) marks the first block of each stage among
    the first ``d`` blocks, ``widths`` (B, max_depth) the quantized per-block widths, ``near_tie`` (B,) the
    candidates whose ``round`` calls were within 1e-6 of a tie (recompute those with the scalar generator).
    With ``return_total``, also the quantization's stage count max(s) + 1 of each candidate (pycls's
    ``total_stages``; ``starts.sum(1)`` is its ``num_stages``, fewer when stages merge or are skipped).
    """
    d = np.asarray(d)
    B = d.shape[0]
    starts = np.zeros((B, max_depth), dtype=bool)
    widths = np.zeros((B, max_depth), dtype=np.int64)
    near_tie = np.zeros(B, dtype=bool)
    total = np.zeros(B, dtype=np.int64)
    j = np.arange(max_depth, dtype=np.float64)[None, :]
    for c in range(0, B, 256):  # chunks keep the temporaries in cache
        sl = slice(c, c + 256)
        w0f = np.asarray(w0[sl], dtype=np.float64)[:, None]
        u = j * np.asarray(wa[sl], dtype=np.float64)[:, None] + w0f  # the reference's np.arange(d) * wa + w0
        r = np.log(u / w0f)
        r /= np.log(np.asarray(wm[sl], dtype=np.float64)[:, None])
        s = np.round(r)
        x = np.power(np.asarray(wm[sl], dtype=np.float64)[:, None], s)
        x *= w0f
        x /= q
        w = np.round(x).astype(np.int64) * q
        valid = j < d[sl, None]
        r -= s
        x -= w / q
        tie = (np.abs(np.abs(r) - 0.5) < _TIE) | (np.abs(np.abs(x) - 0.5) < _TIE)
        near_tie[sl] = np.any(tie & valid, axis=1)
        st = np.ones_like(valid)
        st[:, 1:] = w[:, 1:] != w[:, :-1]
        starts[sl] = st & valid
        widths[sl] = w
        total[sl] = np.max(np.where(valid, s, 0), axis=1).astype(np.int64) + 1
    if return_total:
        return starts, widths, near_tie, total
    return starts, widths, near_tie


def regnet_stage_count(d, w0, wa, wm):
    """Number of stages of a batch of RegNets without per-block arrays; returns ``(count, unsure)``.

    Block j has s_j = round(log(1 + wa j / w0) / log(wm)), non-decreasing in j, so s reaches k >= 1 at block
    ceil(t_k), t_k = w0 (wm^(k - 1/2) - 1) / wa, and value k occurs iff ceil(t_k) < min(d, ceil(t_(k+1))). Distinct
    s give distinct quantized widths (consecutive ones differ by a factor wm >= 1.5 before rounding to 8, which
    merges them only when w0 is small: 8 x 1.5 and 8 x 2.25 both round to 16), so the count of occurring k is the
    number of distinct exponents, the stage count unless widths merge. Rows with some t_k within 1e-6 of an
    integer are ``unsure`` (use :func:`regnet_stages` for them); rows with wm < 1.5 are always unsure.
    """
    d = np.asarray(d, dtype=np.int64)
    w0 = np.asarray(w0, dtype=np.float64)[:, None]
    wa = np.asarray(wa, dtype=np.float64)[:, None]
    wm = np.asarray(wm, dtype=np.float64)
    lwm = np.log(wm)[:, None]
    if d.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    # k runs to one past the largest s any row reaches (s_max = round(r_max) <= r_max + 1/2).
    r_max = np.log1p((d - 1) * wa[:, 0] / w0[:, 0]) / lwm[:, 0]
    kmax = int(np.ceil(np.max(r_max) + 0.5)) + 1
    k = np.arange(1, kmax + 1, dtype=np.float64)[None, :]
    t = w0 * np.expm1((k - 0.5) * lwm) / wa  # (B, K): first block index with s >= k is ceil(t)
    j = np.ceil(t)
    dd = d[:, None]
    unsure = np.any((np.abs(t - np.round(t)) < _TIE) & (t < dd), axis=1) | (wm < 1.5)
    present = j[:, :-1] < np.minimum(dd, j[:, 1:])
    return 1 + present.sum(axis=1), unsure


def regnet_stage_counts(d, w0, wa, wm):
    """``(count, total, unsure)`` for a batch of RegNets without per-block arrays: ``count`` the distinct
    exponents s_j (an upper bound of the distinct quantized widths, pycls's ``num_stages``), ``total`` the
    quantization's stage count max(s) + 1 (pycls's ``total_stages``) and the rows near a rounding tie (see
    :func:`regnet_stage_count`). pycls keeps a candidate only when the distinct widths equal ``total``, so
    ``count == total`` is a necessary condition (exponents skipped by a large step make ``count < total``).
    """
    d = np.asarray(d, dtype=np.int64)
    count, unsure = regnet_stage_count(d, w0, wa, wm)
    if d.size == 0:
        return count, np.zeros(0, np.int64), unsure
    lwm = np.log(np.asarray(wm, dtype=np.float64))
    r_last = np.log1p((d - 1) * np.asarray(wa, dtype=np.float64) / np.asarray(w0, dtype=np.float64)) / lwm
    total = np.round(r_last).astype(np.int64) + 1
    unsure = unsure | (np.abs(np.abs(r_last - np.round(r_last)) - 0.5) < _TIE)
    return count, total, unsure


def regnet_stage_arrays(d, starts, widths, max_stages):
    """Stage depths and widths (B, max_stages) from :func:`regnet_stages` output; unused stages have depth 0."""
    B, D = starts.shape
    in_d = np.arange(D)[None, :] < np.asarray(d)[:, None]
    sid = np.cumsum(starts, axis=1) - 1
    rows = np.broadcast_to(np.arange(B)[:, None], (B, D))
    depths = np.zeros((B, max_stages), dtype=np.int64)
    np.add.at(depths, (rows[in_d], sid[in_d]), 1)
    stage_w = np.full((B, max_stages), 8, dtype=np.int64)  # placeholder width for unused stages
    stage_w[rows[starts], sid[starts]] = widths[starts]
    return depths, stage_w


def anynet_complexity(depths, widths, bottleneck_ratios, group_widths, se_ratio=0.0, stem_width=32,
                      stem="imagenet", resolution=224, classes=1000, input_channels=3, include_top=True):
    """Flops, params and acts (int64 arrays of shape (B,)) of a batch of AnyNets given as (B, S) stage arrays.

    Stages of depth 0 are skipped (padding for batches with different stage counts; they must come last).
    ``widths``, ``bottleneck_ratios`` and ``group_widths`` must already be compatible. Equal to
    :func:`keras_regnet.complexity.anynet_complexity` for every row.
    """
    dep = np.asarray(depths, dtype=np.int64)
    ws = np.asarray(widths, dtype=np.int64)
    bs = np.asarray(bottleneck_ratios, dtype=np.float64)
    gs = np.asarray(group_widths, dtype=np.int64)
    B, S = dep.shape
    if isinstance(resolution, (int, np.integer)):
        resolution = (resolution, resolution)
    ih, iw = int(resolution[0]), int(resolution[1])
    flops = np.zeros(B, np.int64)
    params = np.zeros(B, np.int64)
    acts = np.zeros(B, np.int64)
    # Stem: 3x3 conv + BN.
    stride = 2 if stem == "imagenet" else 1
    ih, iw = (ih - 1) // stride + 1, (iw - 1) // stride + 1
    flops += 9 * input_channels * stem_width * ih * iw
    params += 9 * input_channels * stem_width + 2 * stem_width
    acts += stem_width * ih * iw
    h = np.full(B, ih, np.int64)
    w = np.full(B, iw, np.int64)
    w_in = np.full(B, stem_width, np.int64)
    for s in range(S):
        d, wo, g = dep[:, s], ws[:, s], gs[:, s]
        on = d > 0
        ho, wo_ = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        wb = np.rint(wo / bs[:, s]).astype(np.int64)
        groups = np.where(on, wb // np.maximum(g, 1), 1)
        groups = np.maximum(groups, 1)
        hw_in, hw_out = h * w, ho * wo_
        conv_b_params = 9 * wb * wb // groups
        # First block: projection (stride 2), a (1x1 at the input size), b (3x3 grouped, stride 2), SE, c.
        f1 = (w_in * wo * hw_out + w_in * wb * hw_in + 9 * wb * wb * hw_out // groups + wb * wo * hw_out)
        p1 = w_in * wo + 2 * wo + w_in * wb + 2 * wb + conv_b_params + 2 * wb + wb * wo + 2 * wo
        a1 = wo * hw_out + wb * hw_in + wb * hw_out + wo * hw_out
        # Later blocks: a, b (stride 1), SE, c, all at the output size.
        fr = wo * wb * hw_out + 9 * wb * wb * hw_out // groups + wb * wo * hw_out
        pr = wo * wb + 2 * wb + conv_b_params + 2 * wb + wb * wo + 2 * wo
        ar = wb * hw_out + wb * hw_out + wo * hw_out
        if se_ratio:
            for w_blk, (ff, pp, aa) in ((w_in, (f1, p1, a1)), (wo, (fr, pr, ar))):
                w_se = np.rint(w_blk * se_ratio).astype(np.int64)
                has = w_se > 0  # an SE whose width rounds to 0 is not built (as the scalar reference)
                se = np.where(has, 2 * wb * w_se + w_se + wb, 0)
                ff += se
                pp += se
                aa += np.where(has, w_se + wb, 0)
        rep = np.maximum(d - 1, 0)
        flops += np.where(on, f1 + rep * fr, 0)
        params += np.where(on, p1 + rep * pr, 0)
        acts += np.where(on, a1 + rep * ar, 0)
        h, w = np.where(on, ho, h), np.where(on, wo_, w)
        w_in = np.where(on, wo, w_in)
    if include_top:
        flops += w_in * classes + classes
        params += w_in * classes + classes
        acts += classes
    return {"flops": flops, "params": params, "acts": acts}
