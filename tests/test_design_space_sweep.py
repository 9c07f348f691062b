"""Proxy-training sweeps (resume, shards, mismatches), plots checked by content, the CLI, an end-to-end sweep."""

import json
import os
import re

import numpy as np
import pytest

import keras_regnet
from keras_regnet import cli
from keras_regnet.design_space import analysis, plots, results, sweep
from keras_regnet.design_space.spaces import Regime, get_space


def _fake_data():
    """ProxyData with the digits' settings but no pipelines (training is replaced in these tests)."""
    return sweep.ProxyData(train=None, eval=None, num_classes=10, num_train=1437, num_eval=360, image_size=32,
                           stem="cifar", augment="none", eval_split="test", steps_per_epoch=11)


def _fake_train(calls, kill_at=None):
    """A deterministic stand-in for train_proxy; raises KeyboardInterrupt (a kill) on call number ``kill_at``."""

    def train(spec, data, *, epochs, lr, weight_decay, momentum, seed, stop=None):
        calls.append(seed)
        if kill_at is not None and len(calls) == kill_at:
            raise KeyboardInterrupt
        return {"error": float(len(json.dumps(spec)) % 50), "train_time_s": 0.0}

    return train


CFG = dict(space="RegNetX", samples=6, epochs=2, flops=(2e6, 6e6), batch_size=32)


def test_resume_after_a_kill_has_no_duplicates_and_loses_nothing(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    calls = []
    monkeypatch.setattr(sweep, "train_proxy", _fake_train(calls, kill_at=4))
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(sweep.SweepConfig(**CFG), out, progress=False, data=_fake_data(), log=lambda *_: None)
    assert [r["index"] for r in results.read_results(out).records] == [0, 1, 2]
    with open(out, "ab") as f:
        f.write(b'{"index": 3, "space": "RegNetX", "err')  # and a line cut short by the kill
    calls.clear()
    logged = []
    monkeypatch.setattr(sweep, "train_proxy", _fake_train(calls))
    recs = sweep.run_sweep(sweep.SweepConfig(**CFG), out, progress=False, data=_fake_data(), log=logged.append)
    assert len(calls) == 3  # only samples 3, 4, 5 were trained again
    assert [r["index"] for r in recs] == list(range(6))
    on_disk = results.read_results(out)
    assert on_disk.damaged == [] and sorted(r["index"] for r in on_disk.records) == list(range(6))
    assert "moved 1 damaged line(s)" in logged[0] and os.path.exists(str(out) + ".damaged")
    # The records are the seeded samples, inside the regime, with their analytic complexity at 32 px.
    expected = get_space("RegNetX", stem="cifar").sample(6, seed=0, regime=Regime((2e6, 6e6), resolution=32, classes=10))
    assert [r["spec"] for r in recs] == expected
    for r in recs:
        assert r["flops"] == keras_regnet.complexity(r["spec"], resolution=32, classes=10)["flops"]
    # Extending the sweep keeps the first samples and trains only the new ones.
    calls.clear()
    recs = sweep.run_sweep(sweep.SweepConfig(**dict(CFG, samples=8)), out, progress=False, data=_fake_data())
    assert len(calls) == 2 and [r["index"] for r in recs] == list(range(8))


def test_resume_with_other_settings_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    monkeypatch.setattr(sweep, "train_proxy", _fake_train([]))
    sweep.run_sweep(sweep.SweepConfig(**dict(CFG, samples=2)), out, progress=False, data=_fake_data())
    before = out.read_bytes()
    with pytest.raises(sweep.SweepMismatchError, match="epochs: 2 there vs 3 now"):
        sweep.run_sweep(sweep.SweepConfig(**dict(CFG, epochs=3)), out, progress=False, data=_fake_data())
    with pytest.raises(sweep.SweepMismatchError, match="space: 'RegNetX' there vs 'AnyNetXA' now"):
        sweep.run_sweep(sweep.SweepConfig(**dict(CFG, space="AnyNetXA")), out, progress=False, data=_fake_data())
    assert out.read_bytes() == before


def test_shards_share_one_file(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    calls = []
    monkeypatch.setattr(sweep, "train_proxy", _fake_train(calls))
    for k in range(3):
        sweep.run_sweep(sweep.SweepConfig(**CFG), out, shard=(k, 3), progress=False, data=_fake_data())
    assert len(calls) == 6
    assert sorted(r["index"] for r in results.read_results(out).records) == list(range(6))
    with pytest.raises(ValueError, match="shard"):
        sweep.run_sweep(sweep.SweepConfig(**CFG), out, shard=(3, 3), data=_fake_data())


def test_config_validation():
    with pytest.raises(ValueError, match="unknown design space"):
        sweep.SweepConfig(space="ResNet", samples=1)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        sweep.SweepConfig(space="RegNetX", samples=1, epochs=0)
    # Large data: the paper's lr 0.1 at batch 128, scaled linearly with the batch size.
    assert sweep.SweepConfig(space="RegNetX", samples=1, batch_size=32).resolved_lr(1_281_167) == pytest.approx(0.025)


def test_proxy_defaults_are_sized_to_the_data_and_shared_by_sweep_and_compare():
    from keras_regnet.commands import compare
    from keras_regnet.commands import sweep as sweep_cmd

    small = sweep.SweepConfig(space="RegNetX", samples=1)
    assert (small.resolved_batch_size(1437), small.resolved_lr(1437)) == (32, pytest.approx(0.2))
    assert (small.resolved_batch_size(1_281_167), small.resolved_lr(1_281_167)) == (128, pytest.approx(0.1))
    assert sweep.SweepConfig(space="RegNetX", samples=1, batch_size=64).resolved_lr(1437) == pytest.approx(0.4)
    assert sweep.SweepConfig(space="RegNetX", samples=1, lr=0.05).resolved_lr(1437) == 0.05
    key = small.key(_fake_data())
    assert (key["batch_size"], key["lr"]) == (32, pytest.approx(0.2))  # resolved values are what a resume checks
    # The same flags, parsed by both commands, give the same sweep settings.
    cfgs = []
    for mod, argv in ((sweep_cmd, ["--space", "RegNetX", "--out", "x.jsonl", "--epochs", "3"]), (compare, ["--epochs", "3"])):
        parser = cli.argparse.ArgumentParser() if hasattr(cli, "argparse") else __import__("argparse").ArgumentParser()
        mod.add_arguments(parser)
        args = parser.parse_args(argv)
        cfgs.append(sweep_cmd.config_from_args(args, "RegNetX"))
    assert cfgs[0].key(_fake_data()) == cfgs[1].key(_fake_data())


# ---------------------------------------------------------------------------------------------- plots


def _png(path):
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.dtype == np.float32 and img.ndim == 3
    return img[..., :3]


def _has_color(img, hex_color, min_pixels=30, alpha=1.0):
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    rgb = alpha * rgb + (1 - alpha)  # drawn with transparency over the white background
    return int(np.sum(np.all(np.abs(img - rgb) < 0.02, axis=-1))) >= min_pixels


def test_edf_plot_content(tmp_path):
    rng = np.random.default_rng(0)
    groups = {"AnyNetXA": list(rng.uniform(20, 60, 25)), "RegNetX": list(rng.uniform(15, 40, 30))}
    path = tmp_path / "edf.png"
    fig = plots.plot_edf(groups, path)
    img = _png(path)
    assert img.shape == (375, 500, 3)  # figsize (5, 3.75) at 100 dpi
    assert img.std() > 0.05 and np.mean(img.min(axis=-1) < 0.9) > 0.02  # not blank
    for i in range(2):
        assert _has_color(img, plots.COLORS[i])  # both EDF curves are drawn
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for (label, errs), text in zip(groups.items(), texts):
        # 'name [min|mean] n=30' (plus ', 3 ep' for sweep records): the paper's legend, with the sample count.
        name, low, mean, n = re.fullmatch(r"(\S+) \[([\d.]+)\|([\d.]+)\] n=(\d+)", text).groups()
        assert int(n) == len(errs)
        assert name == label
        assert float(low) == round(min(errs), 1) and float(mean) == round(float(np.mean(errs)), 1)
    # The drawn steps are the EDF: y values 0, 1/n, ..., 1 at the sorted errors.
    xs, ys = fig.axes[0].get_lines()[1].get_data()
    assert np.allclose(xs[1:], np.sort(groups["RegNetX"])) and np.allclose(ys[1:], np.arange(1, 31) / 30)


def _records(space, n, seed):
    rng = np.random.default_rng(seed)
    regime = Regime(flops=(2e6, 6e6), resolution=32, classes=10)
    out = []
    for i, (spec, cx) in enumerate(get_space(space, stem="cifar").iter_samples(seed, regime)):
        if i == n:
            return out
        out.append({"index": i, "space": space, "spec": spec, **cx, "error": float(rng.uniform(5, 40))})


def test_scatter_and_fit_plot_content(tmp_path):
    groups = {"AnyNetXA": _records("AnyNetXA", 12, 0), "RegNetX": _records("RegNetX", 12, 1)}
    fig = plots.plot_scatter(groups, tmp_path / "s.png")
    img = _png(tmp_path / "s.png")
    assert img.shape == (480, 1680, 3)  # 2 rows x 7 panels of 2.4 x 2.1 in, + 0.6 in for the title, at 100 dpi
    # Says what it shows, which AnyNet values are fitted, and log axes carry several labels.
    assert "least-squares trend" in fig._suptitle.get_text()
    labels = [ax.get_xlabel() for ax in fig.axes[:7]]
    assert "w0 (fitted)" in labels and "wm (fitted)" in labels and "g (block-weighted mean)" in labels
    assert "w0" in [ax.get_xlabel() for ax in fig.axes[7:]]  # RegNet values are its own parameters
    for ax in fig.axes:
        if ax.get_xscale() == "log":
            assert len([t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]) >= 3
    assert _has_color(img, plots.COLORS[0], alpha=0.8) and _has_color(img, plots.COLORS[1], alpha=0.8)
    assert len(fig.axes) == 14
    offsets = fig.axes[7].collections[0].get_offsets()  # RegNetX row, depth column
    assert np.allclose(offsets[:, 0], [r["spec"]["depth"] for r in groups["RegNetX"]])
    assert np.allclose(offsets[:, 1], [r["error"] for r in groups["RegNetX"]])
    plots.plot_fit(groups, tmp_path / "f.png")
    assert _png(tmp_path / "f.png").shape == (375, 500, 3)


# ---------------------------------------------------------------------------------------------- CLI


def _write(path, recs):
    for r in recs:
        results.append_result(path, r)


def test_edf_and_fit_commands(tmp_path, capsys):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write(a, _records("AnyNetXA", 10, 0))
    _write(b, _records("RegNetX", 10, 1))
    png, scatter = tmp_path / "e.png", tmp_path / "s.png"
    assert cli.main(["edf", str(a), str(b), "--out", str(png), "--scatter", str(scatter), "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert "(reference)" in out and f"wrote {png}, {scatter}" in out
    row = next(line for line in out.splitlines() if line.startswith("RegNetX"))
    ks = analysis.ks_test([r["error"] for r in _records("RegNetX", 10, 1)], [r["error"] for r in _records("AnyNetXA", 10, 0)])
    assert f"{ks['ks']:.2f}" in row.split()
    assert _png(png).shape == (375, 500, 3)
    assert cli.main(["edf", str(a), "--out", str(png), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 10
    assert cli.main(["fit", "--widths", "24", "56", "152", "152", "152", "152", "368"]) == 0
    assert "w0=" in capsys.readouterr().out
    assert cli.main(["fit", str(a), "--top", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 3


def test_cli_bad_input(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("")
    assert cli.main(["edf", str(tmp_path / "empty.jsonl")]) == 2
    assert "holds no finished results" in capsys.readouterr().err
    assert cli.main(["edf", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", "--space", "AnyNetXZ", "--out", str(tmp_path / "x.jsonl")])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--space", "RegNetX", "--out", "x", "--flops", "abc"])
    assert "expected MIN,MAX in millions" in capsys.readouterr().err
    assert cli.main(["fit"]) == 2


# ---------------------------------------------------------------------------------------------- end to end


def _shallow_seed(space, regime, max_blocks=10, n=2):
    """A seed whose first n samples are shallow, so the end-to-end test trains small graphs quickly."""
    for seed in range(200):
        specs = get_space(space, stem="cifar").sample(n, seed=seed, regime=regime)
        blocks = [s["depth"] if s["type"] == "regnet" else sum(s["depths"]) for s in specs]
        if max(blocks) <= max_blocks:
            return seed
    raise AssertionError("no shallow seed found")


@pytest.mark.slow
def test_end_to_end_tiny_sweep_on_embedded_digits(tmp_path, capsys, monkeypatch):
    regime = Regime(flops=(1e6, 4e6), resolution=32, classes=10)
    seed = _shallow_seed("AnyNetXA", regime, max_blocks=16, n=1)
    seed_rx = _shallow_seed("RegNetX", regime, max_blocks=10, n=2)
    for space, s, n in (("AnyNetXA", seed, 1), ("RegNetX", seed_rx, 2)):
        args = ["sweep", "--space", space, "--samples", str(n), "--epochs", "2", "--batch-size", "64", "--lr", "0.2",
                "--flops", "1,4", "--seed", str(s), "--out", str(tmp_path / f"{space}.jsonl"), "--no-progress"]
        assert cli.main(args) == 0
    capsys.readouterr()
    recs = {space: results.read_results(tmp_path / f"{space}.jsonl").records for space in ("AnyNetXA", "RegNetX")}
    for space, rs in recs.items():
        assert [r["index"] for r in rs] == ([0] if space == "AnyNetXA" else [0, 1])
        for r in rs:
            assert 0 <= r["error"] <= 100 and r["train_time_s"] > 0 and not r["diverged"]
            assert r["dataset"] == "digits" and r["image_size"] == 32 and r["spec"]["stem"] == "cifar"
            cx = keras_regnet.complexity(r["spec"], resolution=32, classes=10)
            assert 1e6 <= r["flops"] == cx["flops"] <= 4e6
            assert r["trainable_params"] == cx["params"]  # the trained Keras model is the sampled spec
    best = min(r["error"] for rs in recs.values() for r in rs)
    assert best < 60  # learned something in two short epochs (chance is 90%)
    # Training a sample again (fresh pipelines, other process history) gives the recorded result: what a
    # resumed sweep trains equals what an uninterrupted one would have.
    cfg = sweep.SweepConfig(space="RegNetX", samples=2, epochs=2, batch_size=64, lr=0.2, flops=(1e6, 4e6),
                            seed=seed_rx)
    rec = recs["RegNetX"][1]
    again = sweep.train_proxy(rec["spec"], sweep.load_proxy_data(cfg), epochs=2, lr=0.2, seed=rec["model_seed"])
    assert again["error"] == rec["error"] and again["train_loss"] == pytest.approx(rec["train_loss"], rel=1e-4)
    # Re-running the finished sweep trains nothing; the EDF report reads both files.
    monkeypatch.setattr(sweep, "train_proxy", lambda *a, **k: pytest.fail("a finished sample was retrained"))
    assert cli.main(["sweep", "--space", "RegNetX", "--samples", "2", "--epochs", "2", "--batch-size", "64",
                     "--lr", "0.2", "--flops", "1,4", "--seed", str(seed_rx), "--out", str(tmp_path / "RegNetX.jsonl"),
                     "--no-progress"]) == 0
    png = tmp_path / "edf.png"
    assert cli.main(["edf", str(tmp_path / "AnyNetXA.jsonl"), str(tmp_path / "RegNetX.jsonl"), "--out", str(png)]) == 0
    assert _png(png).shape == (375, 500, 3)


@pytest.mark.slow
def test_two_worker_processes_share_one_file(tmp_path, capsys):
    """`--workers 2`: two spawned processes train the samples of one sweep, each sample once."""
    regime = Regime(flops=(1e6, 4e6), resolution=32, classes=10)
    seed = _shallow_seed("RegNetX", regime, max_blocks=8, n=3)
    out = tmp_path / "r.jsonl"
    args = ["sweep", "--space", "RegNetX", "--samples", "3", "--epochs", "1", "--batch-size", "64", "--lr", "0.2",
            "--flops", "1,4", "--seed", str(seed), "--out", str(out), "--no-progress", "--workers", "2"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "2 worker processes" in printed
    recs = results.read_results(out).records
    assert sorted(r["index"] for r in recs) == [0, 1, 2]  # each sample trained once
    for r in recs:  # the parent prints each model the workers finish, as one process does
        assert re.search(rf"RegNetX #{r['index']} \[.*\]: error {r['error']:.2f}%", printed), printed
    assert len({r["model_seed"] for r in recs}) == 3 and not os.path.exists(str(out) + ".claims")
    expected = get_space("RegNetX", stem="cifar").sample(3, seed=seed, regime=regime)
    assert [r["spec"] for r in sorted(recs, key=lambda r: r["index"])] == expected


@pytest.mark.parametrize("decay_on", ["all", "kernels"])
def test_proxy_momentum_update_equals_decay_sgd_apply_gradients(decay_on):
    """The fused per-variable update of the proxy step is DecaySGD's own update (schedule, coupled decay, momentum):
    equal up to float rounding (a small lr keeps 4 steps of BatchNorm training from amplifying 1-ulp differences)."""
    import keras
    import tensorflow as tf

    from keras_regnet.training.optim import DecaySGD
    from keras_regnet.training.schedules import WarmupCosine

    def setup():
        keras.utils.set_random_seed(3)
        model = keras_regnet.AnyNet(
            depths=[1, 1, 1, 1], widths=[8, 16, 16, 24], group_widths=[4, 8, 8, 8], bottleneck_ratios=[1, 2, 1, 1],
            stem="cifar", stem_width=8, input_shape=(32, 32, 3), classes=5, classifier_activation=None,
        )
        opt = DecaySGD(learning_rate=WarmupCosine(0.02, 2, 2, warmup_epochs=0), momentum=0.9, nesterov=False,
                       l2_decay=0.05, decay_on=decay_on)
        return model, opt

    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(4, 32, 32, 3)).astype("float32"), rng.integers(0, 5, 4)) for _ in range(4)]
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    finals = []
    for fused in (False, True):
        model, opt = setup()
        variables = model.trainable_variables
        apply = sweep.momentum_update(opt, variables) if fused else (
            lambda grads: opt.apply_gradients(zip(grads, variables)))

        @tf.function(autograph=False)
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = ce(y, model(x, training=True))
            apply(tape.gradient(loss, variables))
            return loss

        for x, y in batches:
            step(x, y)
        assert int(opt.iterations.numpy()) == len(batches)
        finals.append([v.numpy() for v in variables] + [m.numpy() for m in opt.momentums])
    moved = max(float(np.abs(a - b).max()) for a, b in zip(finals[0], [v.numpy() for v in setup()[0].trainable_variables]))
    assert moved > 1e-4  # the steps did change the weights
    for a, b in zip(*finals):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------- readable figures, verdicts, shards, trends


def test_edf_figure_says_what_it_shows(tmp_path):
    recs = {"AnyNetXA": _records("AnyNetXA", 8, 0), "RegNetX": _records("RegNetX", 6, 1)}
    for r in recs["AnyNetXA"] + recs["RegNetX"]:
        r["sweep"] = {"epochs": 3, "dataset": "digits", "eval_split": "test"}
    fig = plots.plot_edf(recs, tmp_path / "e.png")
    ax = fig.axes[0]
    assert "left" in ax.get_xlabel() and "error" in ax.get_xlabel() and "digits test" in ax.get_xlabel()
    assert "fraction of models" in ax.get_ylabel()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0].endswith("n=8, 3 ep") and texts[1].endswith("n=6, 3 ep")
    assert "samples per space" in ax.get_title()


def test_log_ticks_give_several_labels():
    assert plots.log_ticks(8, 256) == [8, 16, 32, 64, 128, 256] or len(plots.log_ticks(8, 256)) >= 3
    ticks = plots.log_ticks(2.04, 5.9)  # a flops axis of the demo regime: one power of two inside
    assert len(ticks) >= 3 and ticks[0] >= 2.0 and ticks[-1] <= 5.9


def test_verdicts_say_whether_a_difference_is_significant():
    rng = np.random.default_rng(0)
    far = analysis.compare_groups({"A": rng.uniform(30, 60, 40), "B": rng.uniform(10, 30, 40)}, n_resamples=2000)
    (line,) = analysis.verdicts(far)
    assert "significant at 0.01" in line and "lower (better)" in line and "not significant" not in line
    near = analysis.compare_groups({"A": rng.uniform(3, 8, 6), "B": rng.uniform(3, 8, 6)}, n_resamples=2000)
    (line,) = analysis.verdicts(near)
    assert "not significant" in line and "n = 6 vs 6" in line


def test_study_schedule_leads_with_the_main_pair_and_stays_balanced():
    from keras_regnet.commands.compare import study_schedule

    steps = study_schedule(4, 40, 10)
    assert steps[:4] == [(0, 10), (3, 10), (0, 20), (3, 20)]
    assert {k: max(t for kk, t in steps if kk == k) for k in range(4)} == {0: 40, 1: 40, 2: 40, 3: 40}
    for n in range(1, len(steps) + 1):  # stopped anywhere: no space more than two rounds ahead of another
        done = {k: max([t for kk, t in steps[:n] if kk == k] or [0]) for k in range(4)}
        assert max(done.values()) - min(done.values()) <= 20
    assert study_schedule(2, 6) == [(0, 6), (1, 6)]  # the demo: each space at once


def test_shard_files_merge_in_edf_and_fit(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(sweep, "train_proxy", _fake_train(calls))
    files = [tmp_path / f"rx.shard{k}.jsonl" for k in range(3)]
    for k, out in enumerate(files):  # three machines, each writing its own file
        sweep.run_sweep(sweep.SweepConfig(**CFG), out, shard=(k, 3), progress=False, data=_fake_data(),
                        log=lambda *a: None)
    assert [len(results.read_results(f).records) for f in files] == [2, 2, 2]
    groups = analysis.merge_shards(analysis.load_groups(files, log=lambda m: None), log=lambda m: None)
    assert list(groups) == ["RegNetX"] and sorted(r["index"] for r in groups["RegNetX"]) == list(range(6))
    assert cli.main(["edf", *map(str, files), "--out", str(tmp_path / "e.png"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n"] == 6 and "merged" in captured.err
    assert cli.main(["fit", *map(str, files), "--trends", "--plot", str(tmp_path / "t.png")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("RegNetX: 6 models, best 5") and _png(tmp_path / "t.png").ndim == 3


def test_regnet_trends_recover_a_planted_relation():
    recs = _records("RegNetX", 60, 3)
    for r in recs:  # error falls with wm and rises with depth
        r["error"] = 50 - 10 * r["spec"]["wm"] + 0.5 * r["spec"]["depth"]
    t = analysis.regnet_trends(recs, top=10)
    assert t["params"]["wm"]["spearman"] < -0.5 and t["params"]["wm"]["slope"] < 0
    assert t["params"]["d"]["spearman"] > 0
    best = sorted(recs, key=lambda r: r["error"])[:10]
    assert t["params"]["wm"]["best_min"] == min(r["spec"]["wm"] for r in best)
    assert "wm" in analysis.format_trends(t)
    with pytest.raises(ValueError, match="RegNet samples"):
        analysis.regnet_trends(_records("AnyNetXA", 5, 0))


def test_results_of_an_older_sampler_are_refused_with_the_reason(tmp_path, monkeypatch):
    out = tmp_path / "rx.jsonl"
    monkeypatch.setattr(sweep, "train_proxy", _fake_train([]))
    sweep.run_sweep(sweep.SweepConfig(**dict(CFG, samples=2)), out, progress=False, data=_fake_data(),
                    log=lambda *a: None)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    out.write_text("".join(json.dumps(dict(r, sampler_version=2)) + "\n" for r in lines))
    with pytest.raises(sweep.SweepMismatchError, match=r"sampler version 2 and this is version 3.*merged or skipped"):
        sweep.run_sweep(sweep.SweepConfig(**dict(CFG, samples=3)), out, progress=False, data=_fake_data(),
                        log=lambda *a: None)
    assert len(out.read_text().splitlines()) == 2  # nothing appended
    # The records stay readable by the analysis.
    assert len(analysis.load_groups([out], log=lambda m: None)["RegNetX"]) == 2


def test_compare_reports_significance_and_study_runs_in_rounds(tmp_path, monkeypatch, capsys):
    trained = []

    def train(spec, data, *, epochs, lr, weight_decay, momentum, seed, stop=None):
        trained.append((spec["type"], epochs, lr))
        base = 10.0 if spec["type"] == "regnet" else 40.0
        return {"error": base + len(json.dumps(spec)) % 7, "train_time_s": 0.0}

    monkeypatch.setattr(sweep, "train_proxy", train)
    monkeypatch.setattr(sweep, "load_proxy_data", lambda cfg: _fake_data())
    demo = tmp_path / "demo"
    assert cli.main(["compare", "--out-dir", str(demo), "--samples", "3", "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "RegNetX vs AnyNetXA (n = 3 vs 3)" in out and "not significant at 0.01" in out  # KS cannot reject at n = 3
    assert {(e, lr) for _, e, lr in trained} == {(3, 0.2)}  # the demo: 3 epochs, small-data lr
    study = tmp_path / "study"
    trained.clear()
    assert cli.main(["compare", "AnyNetXA", "AnyNetXB", "RegNetX", "--study", "--samples", "20", "--out-dir",
                     str(study), "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "significant at 0.01, RegNetX's errors are lower (better)" in out
    assert "AnyNetXA -> AnyNetXB" in out
    summary = json.loads((study / "summary.json").read_text())
    assert [r["n"] for r in summary["spaces"]] == [20, 20, 20]
    assert (study / "trends.png").exists()
    # The reference and RegNetX led: their first 20 models were trained before AnyNetXB's 11th.
    kinds = [k for k, _, _ in trained]
    assert kinds[:20].count("regnet") == 10
