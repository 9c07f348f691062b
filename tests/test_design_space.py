"""Design spaces, regime filter, results file, EDF/KS/bootstrap maths and fits (no Keras needed)."""

import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_regnet
from keras_regnet import design, specs
from keras_regnet.design_space import analysis, results, spaces
from keras_regnet.design_space.spaces import Regime, RegimeUnreachableError, get_space

ANYNET = ["AnyNetXA", "AnyNetXB", "AnyNetXC", "AnyNetXD", "AnyNetXE"]
PAPER_REGIME = Regime(flops=(360e6, 400e6))


def _stage_checks(p, name):
    """The paper's AnyNetX constraints, written out independently of DesignSpace.violations."""
    assert len(p["depths"]) == 4
    for d, w, b, g in zip(p["depths"], p["widths"], p["bottleneck_ratios"], p["group_widths"]):
        assert 1 <= d <= 16
        assert w % 8 == 0 and 8 <= w <= 1024
        assert b in (1, 2, 4)
        wb = round(w / b)
        assert wb % g == 0  # the group conv is valid
        assert g in (1, 2, 4, 8, 16, 32) or g == wb  # a drawn g, or pycls's cap at the bottleneck width
    if name >= "AnyNetXB":
        assert len(set(p["bottleneck_ratios"])) == 1
    if name >= "AnyNetXC":
        g = max(p["group_widths"])
        assert all(gi == g or gi == round(w / b) < g
                   for gi, w, b in zip(p["group_widths"], p["widths"], p["bottleneck_ratios"]))
    if name >= "AnyNetXD":
        assert p["widths"] == sorted(p["widths"])
    if name >= "AnyNetXE":
        assert p["depths"] == sorted(p["depths"])


@pytest.mark.parametrize("name", ANYNET)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_anynet_constraints_hold(name, seed):
    space = get_space(name)
    for p in space.sample(25, seed=seed):
        assert p["type"] == "anynet" and p["se_ratio"] == 0 and p["stem"] == "imagenet"
        _stage_checks(p, name)
        assert space.violations(p) == []
        specs.params_from_dict(p)  # the builders' validation accepts it


@pytest.mark.parametrize("name", ["RegNetX", "RegNetY"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1))
def test_regnet_constraints_hold(name, seed):
    space = get_space(name)
    for p in space.sample(25, seed=seed):
        assert p["type"] == "regnet"
        assert 1 <= p["depth"] < 64 and p["w0"] % 8 == 0 and 8 <= p["w0"] <= 256
        assert 8 <= p["wa"] <= 256 and 1.5 <= p["wm"] <= 3
        assert round(p["wa"], 1) == p["wa"] and round(p["wm"], 3) == p["wm"]
        # g follows pycls's power2_or_log_uniform over [1, 32]: 1, 2, 4, or a multiple of 8 (sampler version 3).
        assert p["bottleneck_ratio"] in (1, 2, 4) and p["group_width"] in (1, 2, 4, 8, 16, 24, 32)
        assert p["se_ratio"] == (0.25 if name == "RegNetY" else 0.0)
        widths, depths = keras_regnet.generate_regnet(p["w0"], p["wa"], p["wm"], p["depth"])
        assert len(widths) == 4 and sum(depths) == p["depth"]
        assert space.violations(p) == []


def test_samplers_cover_their_ranges():
    xa = get_space("AnyNetXA").sample(1500, seed=1)
    assert {d for p in xa for d in p["depths"]} == set(range(1, 17))
    assert {b for p in xa for b in p["bottleneck_ratios"]} == {1, 2, 4}
    assert {1, 2, 4, 8, 16, 32} <= {g for p in xa for g in p["group_widths"]}
    widths = np.array([w for p in xa for w in p["widths"]])
    assert widths.min() == 8 and widths.max() == 1024
    # log-uniform widths: about as many samples in [8, 90] as in [90, 1024] (equal log lengths).
    assert 0.4 < np.mean(widths < 90) < 0.6
    rx = get_space("RegNetX").sample(1500, seed=1)
    wm = np.array([p["wm"] for p in rx])
    assert wm.min() < 1.6 and wm.max() > 2.9
    assert len({p["depth"] for p in rx}) > 30


def test_violations_flag_broken_samples():
    xe = get_space("AnyNetXE")
    good = xe.sample(1, seed=3)[0]
    bad = dict(good, depths=good["depths"][::-1]) if good["depths"] != sorted(good["depths"], reverse=True) else None
    if bad is not None and bad["depths"] != sorted(bad["depths"]):
        assert any("depths" in v for v in xe.violations(bad))
    assert any("stages" in v for v in xe.violations(dict(good, depths=[1] * 3, widths=[8] * 3,
                                                            bottleneck_ratios=[1] * 3, group_widths=[1] * 3)))
    assert any("bottleneck" in v for v in get_space("AnyNetXB").violations(
        dict(good, bottleneck_ratios=[1, 2, 1, 1], group_widths=[1, 1, 1, 1])))
    rx = get_space("RegNetX")
    assert any("wm" in v for v in rx.violations(dict(rx.sample(1)[0], wm=3.5)))
    assert rx.violations(get_space("AnyNetXA").sample(1)[0])


@pytest.mark.parametrize("name", list(spaces.SPACES))
def test_sampling_is_deterministic_and_prefix_stable(name):
    space = get_space(name)
    a = space.sample(12, seed=7, regime=PAPER_REGIME)
    assert a == get_space(name).sample(12, seed=7, regime=PAPER_REGIME)
    assert a[:5] == space.sample(5, seed=7, regime=PAPER_REGIME)  # resuming a sweep can re-draw sample i
    assert a != space.sample(12, seed=8, regime=PAPER_REGIME)
    assert json.loads(json.dumps(a)) == a  # plain JSON


@pytest.mark.parametrize("name", ["AnyNetXA", "AnyNetXE", "RegNetX", "RegNetY"])
def test_regime_filter_keeps_only_models_in_range(name):
    space = get_space(name)
    kept = space.sample(30, seed=0, regime=PAPER_REGIME)
    flops = [keras_regnet.complexity(p)["flops"] for p in kept]  # independent call, 224 px, 1000 classes
    assert all(360e6 <= f <= 400e6 for f in flops)
    free = [keras_regnet.complexity(p)["flops"] for p in space.sample(200, seed=0)]
    assert np.mean([360e6 <= f <= 400e6 for f in free]) < 0.2  # the filter is doing the work
    small = Regime(flops=(2e6, 6e6), params=(0, 0.5e6), resolution=32, classes=10)
    for p in get_space(name, stem="cifar").sample(10, seed=1, regime=small):
        cx = keras_regnet.complexity(p, resolution=32, classes=10)
        assert 2e6 <= cx["flops"] <= 6e6 and cx["params"] <= 0.5e6 and p["stem"] == "cifar"


def test_unreachable_regime_fails_fast_with_a_clear_error():
    with pytest.raises(RegimeUnreachableError, match="no AnyNetXA sample satisfied .* in 300 tries; candidates had"):
        get_space("AnyNetXA").sample(1, regime=Regime(flops=(1, 2)), max_tries=300)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown design space 'AnyNetXZ'; choose one of AnyNetXA"):
        get_space("AnyNetXZ")
    assert get_space("regnetx").name == "RegNetX"
    with pytest.raises(ValueError, match="0 <= min <= max"):
        Regime(flops=(400e6, 360e6))
    with pytest.raises(ValueError, match=r"\(min, max\) pair"):
        Regime(flops=5)
    with pytest.raises(ValueError, match="seed"):
        get_space("RegNetX").sample(1, seed=-1)
    with pytest.raises(ValueError, match="stem"):
        get_space("RegNetX", stem="tiny")


# ---------------------------------------------------------------------------------------------- results file


def _rec(i, err, space="RegNetX"):
    return {"index": i, "space": space, "error": err, "spec": get_space(space).sample(i + 1)[-1], "flops": 1e6}


def test_results_append_and_read_back(tmp_path):
    path = tmp_path / "r.jsonl"
    for i in range(3):
        results.append_result(path, _rec(i, 10.0 + i))
    got = results.read_results(path)
    assert [r["index"] for r in got.records] == [0, 1, 2] and got.damaged == []
    assert path.read_bytes().count(b"\n") == 3


def test_truncated_last_line_is_reported_and_repaired_without_loss(tmp_path):
    path = tmp_path / "r.jsonl"
    for i in range(2):
        results.append_result(path, _rec(i, 5.0))
    good = path.read_bytes()
    partial = json.dumps(_rec(2, 7.0))[:40]
    with open(path, "ab") as f:
        f.write(partial.encode())  # killed mid-write
    got = results.read_results(path)
    assert len(got.records) == 2
    assert got.damaged == [(3, partial, "truncated last line (the writer was killed mid-line)")]
    assert "r.jsonl:3: truncated last line" in got.damage_report()
    assert results.repair_results(path) == got.damaged
    assert path.read_bytes() == good  # good lines kept byte for byte
    moved = [json.loads(line) for line in open(str(path) + ".damaged")]
    assert moved == [{"line": 3, "reason": got.damaged[0][2], "text": partial}]
    assert results.repair_results(path) == []  # healthy now
    results.append_result(path, _rec(2, 7.0))
    assert [r["index"] for r in results.read_results(path).records] == [0, 1, 2]


def test_malformed_lines_anywhere_are_skipped(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_rec(0, 1.0)) + "\nnot json\n[1, 2]\n{\"index\": 5}\n" + json.dumps(_rec(1, 2.0)) + "\n")
    got = results.read_results(path)
    assert [r["index"] for r in got.records] == [0, 1]
    assert [(n, reason) for n, _, reason in got.damaged] == [
        (2, "not valid JSON"), (3, "not a JSON object"), (4, "missing keys ['error']")]


def test_missing_and_empty_results_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; run `keras-regnet sweep"):
        results.read_results(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="holds no finished results"):
        analysis.load_groups([tmp_path / "empty.jsonl"], log=lambda *_: None)


# ---------------------------------------------------------------------------------------------- EDF maths


def test_edf_on_hand_made_data():
    e, f = analysis.edf([3.0, 1.0, 2.0, 2.0])
    assert e.tolist() == [1.0, 2.0, 2.0, 3.0] and f.tolist() == [0.25, 0.5, 0.75, 1.0]
    # F(e) = fraction with error strictly below e.
    assert analysis.edf_at([3.0, 1.0, 2.0, 2.0], [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]).tolist() == [
        0, 0, 0.25, 0.25, 0.75, 0.75, 1.0]
    s = analysis.summarize([3.0, 1.0, 2.0, 2.0])
    assert (s["n"], s["min"], s["mean"], s["median"]) == (4, 1.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="at least one"):
        analysis.edf([])


def test_ks_statistic_equals_the_largest_edf_gap():
    a, b = [1.0, 2.0, 3.0, 4.0], [3.5, 4.5, 5.0, 6.0]
    grid = np.linspace(0, 7, 7001)
    gap = np.max(np.abs(analysis.edf_at(a, grid) - analysis.edf_at(b, grid)))
    res = analysis.ks_test(a, b)
    assert res["ks"] == pytest.approx(gap) == pytest.approx(0.75)
    assert analysis.ks_test(a, a)["ks"] == 0 and analysis.ks_test(a, a)["p_value"] == pytest.approx(1.0)


def test_bootstrap_interval_of_the_mean_difference():
    rng = np.random.default_rng(0)
    base = rng.normal(30, 2, size=60)
    res = analysis.bootstrap_mean_difference(base + 5, base, n_resamples=2000)
    assert res["diff"] == pytest.approx(5.0)
    assert res["low"] < 5.0 < res["high"] and res["high"] - res["low"] < 3.0
    same = analysis.bootstrap_mean_difference(base, rng.permutation(base), n_resamples=2000)
    assert same["low"] < 0 < same["high"]
    rows = analysis.compare_groups({"A": list(base), "B": list(base + 5)}, n_resamples=500)
    assert "ks" not in rows[0] and rows[1]["mean_diff"] == pytest.approx(5.0) and rows[1]["ks"] > 0.5


# ---------------------------------------------------------------------------------------------- fits


def test_fit_recovers_the_generator_of_sampled_regnets():
    wm_err, wa_err = [], []
    # A wm grid holding every value the sampler draws (step 0.001): the default grid's step of 0.01 cannot reach
    # fit errors < 0.01 for every sample (wm = 1.794 fitted as 1.80 gives 0.011).
    grid = np.round(np.arange(1.5, 3.0 + 1e-9, 0.001), 3)
    for p in get_space("RegNetX").sample(60, seed=3):
        if p["depth"] < 6:
            continue
        ws, _ = design.quantized_linear_widths(p["w0"], p["wa"], p["wm"], p["depth"])
        fit = keras_regnet.fit_quantized_linear(ws, wm_grid=grid)
        assert fit["w0"] == p["w0"]
        assert fit["fit_error"] < 0.01
        regenerated, _ = design.quantized_linear_widths(fit["w0"], fit["wa"], fit["wm"], p["depth"])
        assert np.mean(np.abs(np.log(regenerated) - np.log(ws))) == pytest.approx(fit["fit_error"], abs=1e-9)
        wm_err.append(abs(fit["wm"] - p["wm"]))
        wa_err.append(abs(math.log(fit["wa"] / p["wa"])))
    assert len(wm_err) >= 40
    # With 4 stages (wm, wa) are only identified up to the quantization, so typical errors are checked.
    assert np.median(wm_err) < 0.05 and np.median(wa_err) < 0.1


def test_design_metrics_of_regnet_and_anynet_records():
    rx = {"spec": specs.get_params("RegNetX-200MF").to_dict(), "flops": 199e6, "error": 1.0}
    m = analysis.design_metrics(rx)
    assert (m["d"], m["w0"], m["wa"], m["wm"], m["g"], m["b"], m["flops"]) == (13, 24, 36.44, 2.49, 8, 1.0, 199.0)
    assert m["fit_error"] < 0.01
    # The RegNetX-200MF as an AnyNet: its fitted parameters reproduce it.
    an = {"spec": specs.get_params("RegNetX-200MF").to_anynet().to_dict(), "flops": 199e6, "error": 1.0}
    m = analysis.design_metrics(an)
    assert m["d"] == 13 and m["fit_error"] < 0.01 and m["g"] == 8 and m["b"] == 1
    irregular = {"spec": specs.AnyNetParams([1, 1, 1, 1], [512, 16, 256, 8], [1] * 4, [8] * 4).to_dict(), "flops": 1}
    assert analysis.design_metrics(irregular)["fit_error"] > 0.5


def test_trend_line():
    assert analysis.trend_line([1, 2, 3], [2, 4, 6]) == pytest.approx((2.0, 0.0))
    slope, _ = analysis.trend_line([1, 10, 100], [1, 2, 3], log_x=True)
    assert slope == pytest.approx(1 / math.log(10))
    assert analysis.trend_line([2, 2], [1, 3]) is None


def test_load_groups_labels_and_damage_report(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for i in range(3):
        results.append_result(a, _rec(i, 1.0 + i, "AnyNetXA"))
        results.append_result(b, _rec(i, 2.0 + i, "AnyNetXA"))
    with open(b, "a") as f:
        f.write('{"index": 9, "err')
    logged = []
    groups = analysis.load_groups([a, b], log=logged.append)
    assert list(groups) == ["AnyNetXA (a.jsonl)", "AnyNetXA (b.jsonl)"]
    assert [len(v) for v in groups.values()] == [3, 3]
    assert "1 damaged line(s) skipped" in logged[0] and os.path.basename(b) in logged[0]
