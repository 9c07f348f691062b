"""The batched sampler: NumPy complexity and compatibility equal the scalar references exactly, RegNet sample
sequences are those of the one-by-one sampler, AnyNet samples keep the per-candidate rules' distribution."""

import math

import numpy as np
import pytest

from keras_regnet import design, specs
from keras_regnet.complexity import anynet_complexity
from keras_regnet.design_space import spaces, vectorized
from keras_regnet.design_space.spaces import Regime, get_space

ALL = list(spaces.SPACES)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("stem,resolution,classes", [("imagenet", 224, 1000), ("cifar", 32, 10), ("imagenet", 57, 7)])
def test_batched_complexity_equals_the_scalar_reference(name, stem, resolution, classes):
    space = get_space(name, stem=stem)
    regime = Regime(resolution=resolution, classes=classes)
    batches = space.batches(np.random.default_rng(3), regime)
    checked = 0
    while checked < 300:
        make, cx = next(batches)
        for i in range(0, len(cx["flops"]), 2):  # every second candidate: 300+ per space and setting
            p = make(i)
            a = p.to_anynet() if isinstance(p, specs.RegNetParams) else p
            ref = anynet_complexity(a, resolution=resolution, classes=classes)
            assert {k: int(cx[k][i]) for k in ref} == ref, p
            checked += 1


def test_batched_complexity_on_hand_made_stages_with_padding():
    rng = np.random.default_rng(0)
    depths = rng.integers(0, 5, size=(300, 5))
    depths[:, 0] = np.maximum(depths[:, 0], 1)
    depths = -np.sort(-depths, axis=1)  # padding stages (depth 0) last
    widths = rng.integers(1, 60, size=(300, 5)) * 8
    bs = rng.choice([0.5, 1.0, 2.0, 4.0], size=(300, 5))
    gs = rng.choice([1, 2, 4, 8, 16, 32], size=(300, 5))
    ws, gs = vectorized.adjust_block_compatibility(widths, bs, gs)
    for se in (0.0, 0.25):
        cx = vectorized.anynet_complexity(depths, ws, bs, gs, se, 24, "imagenet", 96, 5)
        for i in range(300):
            n = int((depths[i] > 0).sum())
            p = specs.AnyNetParams(depths[i, :n].tolist(), ws[i, :n].tolist(), bs[i, :n].tolist(), gs[i, :n].tolist(),
                                   se_ratio=se, stem_width=24)
            assert {k: int(v[i]) for k, v in cx.items()} == anynet_complexity(p, resolution=96, classes=5)


def test_vectorised_compatibility_equals_the_reference():
    rng = np.random.default_rng(1)
    w = rng.integers(1, 200, size=4000) * rng.choice([1, 4, 8], size=4000)
    b = rng.choice([0.25, 0.5, 1.0, 2.0, 3.0, 4.0], size=4000)
    g = rng.choice([1, 2, 3, 4, 8, 16, 32, 64], size=4000)
    ws, gs = vectorized.adjust_block_compatibility(w, b, g)
    for i in range(4000):
        rw, _, rg = design.adjust_block_compatibility([int(w[i])], [float(b[i])], [int(g[i])])
        assert (int(ws[i]), int(gs[i])) == (rw[0], rg[0]), (w[i], b[i], g[i])


def test_regnet_stages_equal_the_generator_and_flag_ties():
    # wm=2.5 with w0/8 odd gives exact .5 ties in the width rounding: flagged, so the caller uses the reference.
    d = np.array([20, 20, 13, 63, 1])
    w0 = np.array([24.0, 48.0, 8.0, 256.0, 8.0])
    wa = np.array([36.0, 27.3, 8.0, 256.0, 8.0])
    wm = np.array([2.5, 2.137, 1.5, 3.0, 2.0])
    starts, widths, tie = vectorized.regnet_stages(d, w0, wa, wm, 63)
    assert tie[0] and not tie[1]
    for i in range(5):
        if tie[i]:
            continue
        ref_w, ref_d = design.generate_regnet(int(w0[i]), float(wa[i]), float(wm[i]), int(d[i]))
        got_w = widths[i][starts[i]].tolist()
        assert got_w == ref_w and len(ref_d) == int(starts[i].sum())


def _regnet_one_by_one(space, seed, regime, n):
    """The RegNet sampler one candidate at a time with the scalar generator: the reference sequence (the same raw
    draws, then pycls's stage rule and the regime per candidate)."""
    rng = np.random.default_rng(seed)
    out = []
    while True:
        d, w0, wa, wm, b, g = space.draw_parameters(rng, 4096)
        for i in range(len(d)):
            u = np.arange(int(d[i])) * float(wa[i]) + int(w0[i])
            ks = np.round(np.log(u / int(w0[i])) / np.log(float(wm[i])))
            widths, _ = design.generate_regnet(int(w0[i]), float(wa[i]), float(wm[i]), int(d[i]))
            if len(widths) != 4 or ks.max() + 1 != 4:
                continue
            p = specs.RegNetParams(int(d[i]), int(w0[i]), float(wa[i]), float(wm[i]), int(g[i]), float(b[i]),
                                   space.se_ratio, space.stem_width, space.stem)
            if regime.contains(regime.measure(p)):
                out.append(p.to_dict())
                if len(out) == n:
                    return out


@pytest.mark.parametrize("name,stem,regime", [
    ("RegNetX", "imagenet", Regime(flops=(360e6, 400e6))),
    ("RegNetY", "cifar", Regime(flops=(2e6, 6e6), resolution=32, classes=10)),
])
def test_regnet_sequences_are_those_of_the_unbatched_sampler(name, stem, regime):
    space = get_space(name, stem=stem)
    for seed in (0, 5):
        assert space.sample(40, seed=seed, regime=regime) == _regnet_one_by_one(space, seed, regime, 40)


@pytest.mark.parametrize("name", ["AnyNetXA", "AnyNetXC", "AnyNetXE"])
def test_anynet_batches_keep_the_per_candidate_distribution(name):
    """Batched draws vs the readable one-candidate rules (draw()): same distribution (two-sample KS tests)."""
    from scipy import stats

    space = get_space(name)
    rng = np.random.default_rng(11)
    one = [space.draw(rng) for _ in range(1500)]
    make, _ = next(space.batches(np.random.default_rng(12), Regime()))
    batched = [make(i) for i in range(1024)]

    def features(ps):
        return {
            "total depth": [sum(p.depths) for p in ps],
            "first depth": [p.depths[0] for p in ps],
            "log last width": [math.log(p.widths[-1]) for p in ps],
            "log first width": [math.log(p.widths[0]) for p in ps],
            "b": [p.bottleneck_ratios[1] for p in ps],
            "g": [p.group_widths[2] for p in ps],
            "log flops": [math.log(anynet_complexity(p)["flops"]) for p in ps],
        }

    fa, fb = features(one), features(batched)
    for key in fa:
        assert stats.ks_2samp(fa[key], fb[key]).pvalue > 1e-3, key
    for p in batched:
        assert space.violations(p.to_dict()) == []


def test_max_tries_counts_consecutive_rejections_across_batches():
    space = get_space("AnyNetXA")
    regime = Regime(flops=(360e6, 400e6))
    first = space.sample(3, seed=0, regime=regime)
    # The longest run of rejections before each of those samples decides which max_tries still succeed.
    make_cx = space.batches(np.random.default_rng(0), regime)
    inside = np.concatenate([regime.contains_batch(cx) for _, cx in (next(make_cx) for _ in range(3))])
    hits = np.flatnonzero(inside)[:3]
    gaps = np.diff(np.concatenate([[-1], hits])) - 1
    assert space.sample(3, seed=0, regime=regime, max_tries=int(gaps.max()) + 1) == first
    with pytest.raises(spaces.RegimeUnreachableError, match=f"in {int(gaps.max())} tries"):
        space.sample(3, seed=0, regime=regime, max_tries=int(gaps.max()))


def test_closed_form_stage_count_equals_the_per_block_count():
    rng = np.random.default_rng(4)
    n = 50_000
    d = rng.integers(1, 64, size=n)
    w0 = spaces._log_uniform(rng, 8, 256, 8, size=n)
    wa = np.round(spaces._log_uniform(rng, 8, 256, 0.1, size=n), 1)
    wm = np.round(spaces._log_uniform(rng, 1.5, 3, 0.001, size=n), 3)
    count, unsure = vectorized.regnet_stage_count(d, w0, wa, wm)
    starts, _, tie = vectorized.regnet_stages(d, w0, wa, wm, 63)
    sure = ~unsure & ~tie
    assert sure.mean() > 0.99
    assert np.array_equal(count[sure], starts[sure].sum(axis=1))
    for i in np.flatnonzero(sure)[:300]:  # and the scalar generator agrees
        assert count[i] == len(design.generate_regnet(int(w0[i]), float(wa[i]), float(wm[i]), int(d[i]))[0])


def test_stage_counts_give_pycls_total_stages():
    rng = np.random.default_rng(7)
    space = get_space("RegNetX")
    d, w0, wa, wm, _, _ = space.draw_parameters(rng, 20_000)
    count, total, unsure = vectorized.regnet_stage_counts(d, w0, wa, wm)
    starts, _, tie, total_b = vectorized.regnet_stages(d, w0, wa, wm, 63, return_total=True)
    sure = ~unsure & ~tie
    assert sure.mean() > 0.99
    assert np.array_equal(total[sure], total_b[sure])
    assert np.all(starts[sure].sum(axis=1) <= count[sure]) and np.all(count[sure] <= total[sure])
    for i in np.flatnonzero(sure)[:300]:
        u = np.arange(int(d[i])) * float(wa[i]) + int(w0[i])
        assert total[i] == np.round(np.log(u / int(w0[i])) / np.log(float(wm[i]))).max() + 1
