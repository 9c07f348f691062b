"""Sweeps and analysis under hostile conditions: concurrent runs on one file, short writes, damaged records,
signals mid-training, results swept with different settings."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from keras_regnet import cli
from keras_regnet.design_space import analysis, results, sweep
from keras_regnet.design_space.spaces import Regime, get_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = dict(space="RegNetX", samples=6, epochs=2, flops=(2e6, 6e6), batch_size=32)


def _fake_data():
    return sweep.ProxyData(train=None, eval=None, num_classes=10, num_train=1437, num_eval=360, image_size=32,
                           stem="cifar", augment="none", eval_split="test", steps_per_epoch=11)


def _fake_train(calls):
    def train(spec, data, *, epochs, lr, weight_decay, momentum, seed, stop=None):
        calls.append(seed)
        return {"error": float(len(json.dumps(spec)) % 50), "train_time_s": 0.0}

    return train


def _records(space, n, seed, **extra):
    rng = np.random.default_rng(seed)
    regime = Regime(flops=(2e6, 6e6), resolution=32, classes=10)
    out = []
    for i, (spec, cx) in enumerate(get_space(space, stem="cifar").iter_samples(seed, regime)):
        if i == n:
            return out
        out.append({"index": i, "space": space, "seed": seed, "spec": spec, **cx, "error": float(rng.uniform(5, 40)),
                    **extra})


def _run(script, *args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# ---------------------------------------------------------------------------------------------- concurrent runs

_CONCURRENT = """
    import json, os, sys, time
    from keras_regnet.design_space import sweep

    out, log = sys.argv[1], sys.argv[2]
    data = sweep.ProxyData(train=None, eval=None, num_classes=10, num_train=1437, num_eval=360, image_size=32,
                           stem="cifar", augment="none", eval_split="test", steps_per_epoch=11)

    def train(spec, data, *, epochs, lr, weight_decay, momentum, seed, stop=None):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {seed}\\n")
        time.sleep(0.4)
        return {"error": float(seed % 50), "train_time_s": 0.4}

    sweep.train_proxy = train
    open(f"{out}.ready{os.getpid()}", "w").close()
    while not os.path.exists(out + ".go"):  # start both runs together
        time.sleep(0.01)
    cfg = sweep.SweepConfig(space="RegNetX", samples=8, epochs=2, flops=(2e6, 6e6), batch_size=32)
    sweep.run_sweep(cfg, out, progress=False, data=data, log=lambda *a: None)
"""


def test_two_identical_sweeps_on_one_file_train_each_sample_once(tmp_path):
    out, log = tmp_path / "r.jsonl", tmp_path / "trained.txt"
    procs = [_run(_CONCURRENT, out, log) for _ in range(2)]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("r.jsonl.ready*"))) < 2:  # both processes waiting at the start line
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a sweep process did not start"
        time.sleep(0.01)
    (tmp_path / "r.jsonl.go").write_text("")
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    trained = [line.split() for line in log.read_text().splitlines()]
    seeds = [s for _, s in trained]
    assert len(seeds) == 8 and len(set(seeds)) == 8  # every sample trained exactly once...
    assert len({pid for pid, _ in trained}) == 2  # ...by the two processes together
    recs = results.read_results(out).records
    assert sorted(r["index"] for r in recs) == list(range(8))
    assert not os.path.exists(str(out) + ".claims")  # finished claims are released


def test_claims_of_dead_processes_are_free_and_live_ones_are_respected(tmp_path):
    out = tmp_path / "r.jsonl"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        host = socket.gethostname()
        claims = [{"index": 0, "tag": "t", "pid": dead.pid, "host": host, "start": None, "time": time.time()},
                  {"index": 1, "tag": "t", "pid": live.pid, "host": host, "start": None, "time": time.time()},
                  {"index": 2, "tag": "other sweep", "pid": live.pid, "host": host, "start": None, "time": time.time()},
                  {"index": 3, "tag": "t", "pid": 1, "host": "elsewhere", "start": None, "time": time.time() - 1e6}]
        (tmp_path / "r.jsonl.claims").write_text("".join(json.dumps(c) + "\n" for c in claims))
        got = [results.claim_index(out, range(5), lambda r: None, tag="t") for _ in range(4)]
        # 0: its process is gone; 1: live, skipped; 2: another sweep's claim; 3: another host's, expired; 4: free.
        assert got == [0, 2, 3, 4]
        assert results.read_claims(out)[0]["pid"] == os.getpid()
        results.release_claim(out, 0)
        assert 0 not in results.read_claims(out) and 1 in results.read_claims(out)
    finally:
        live.kill()
        live.wait()


def test_analysis_counts_a_sample_recorded_twice_once(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    recs = _records("RegNetX", 3, 0)
    for r in recs + recs:  # what two sweeps on one file wrote before claims existed
        results.append_result(path, r)
    logged = []
    groups = analysis.load_groups([path], log=logged.append)
    assert len(groups["RegNetX"]) == 3
    assert any("3 duplicate record(s)" in m and "(space, seed, index)" in m for m in logged)
    assert cli.main(["edf", str(path), "--out", str(tmp_path / "e.png"), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n"] == 3 and "duplicate" in out.err


# ---------------------------------------------------------------------------------------------- short writes


def test_a_short_write_is_undone_and_raised(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    results.append_result(path, {"index": 0, "error": 1.0})
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):  # the disk fills: half of the line, then nothing
        if len(data) > 8:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "write", half_then_full)
    with pytest.raises(results.ResultsWriteError, match=r"could not append a result to .*r\.jsonl: wrote \d+ of \d+ "
                                                        r"bytes .*No space left.*left as it was"):
        results.append_result(path, {"index": 1, "error": 2.0, "spec": "x" * 100})
    assert path.read_bytes() == before

    monkeypatch.setattr(results.os, "write", lambda fd, data: 0)  # a write that makes no progress
    with pytest.raises(results.ResultsWriteError, match="wrote 0 of"):
        results.append_result(path, {"index": 1, "error": 2.0})
    assert path.read_bytes() == before
    monkeypatch.undo()
    assert [r["index"] for r in results.read_results(path).records] == [0]


def test_a_sweep_stops_on_a_failed_append_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    calls = []
    monkeypatch.setattr(sweep, "train_proxy", _fake_train(calls))
    real_write = os.write

    def flaky(fd, data):  # sample 2's line: 10 bytes land, then the disk is full
        if data.startswith(b"{") and b'"index": 2' in data:
            return real_write(fd, data[:10])
        if not data.startswith(b"{"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(results.os, "write", flaky)
    with pytest.raises(OSError, match="could not append"):
        sweep.run_sweep(sweep.SweepConfig(**CFG), out, progress=False, data=_fake_data(), log=lambda *a: None)
    assert results.read_results(out).damaged == [] and len(results.read_results(out).records) == 2
    monkeypatch.setattr(results.os, "write", real_write)
    recs = sweep.run_sweep(sweep.SweepConfig(**CFG), out, progress=False, data=_fake_data(), log=lambda *a: None)
    assert [r["index"] for r in recs] == list(range(6)) and len(results.read_results(out).records) == 6


# ---------------------------------------------------------------------------------------------- damaged records


def test_a_sweep_line_without_index_names_the_file_and_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.jsonl"
    monkeypatch.setattr(sweep, "train_proxy", _fake_train([]))
    sweep.run_sweep(sweep.SweepConfig(**dict(CFG, samples=2)), out, progress=False, data=_fake_data())
    lines = out.read_text().splitlines()
    rec = json.loads(lines[1])
    del rec["index"]
    out.write_text(lines[0] + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:2: a sweep record needs a non-negative integer 'index', got None"):
        sweep.run_sweep(sweep.SweepConfig(**dict(CFG, samples=2)), out, progress=False, data=_fake_data())


def test_edf_on_a_non_numeric_error_names_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    recs = _records("RegNetX", 3, 0)
    recs[1]["error"] = "abc"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert cli.main(["edf", str(path), "--out", str(tmp_path / "e.png"), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n"] == 2
    assert f"{path}:2: 'error' is not a finite number: 'abc'" in out.err
    path.write_text(json.dumps(dict(recs[0], error="abc")) + "\n")
    assert cli.main(["edf", str(path), "--out", str(tmp_path / "e.png")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:1: 'error' is not a finite number" in err and "holds no finished results" in err


# ---------------------------------------------------------------------------------------------- settings


def test_edf_warns_when_files_were_swept_with_different_settings(tmp_path, capsys):
    base = {"epochs": 3, "batch_size": 32, "lr": 0.2, "dataset": "digits", "flops": [2e6, 6e6], "space": "x"}
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    a.write_text("".join(json.dumps(dict(r, sweep=dict(base, space="AnyNetXA"))) + "\n"
                         for r in _records("AnyNetXA", 4, 0)))
    b.write_text("".join(json.dumps(dict(r, sweep=dict(base, space="RegNetX", epochs=10, lr=0.1))) + "\n"
                         for r in _records("RegNetX", 4, 1)))
    c.write_text("".join(json.dumps(dict(r, sweep=dict(base, space="RegNetX"))) + "\n"
                         for r in _records("RegNetX", 4, 1)))
    assert cli.main(["edf", str(a), str(b), "--out", str(tmp_path / "e.png"), "--resamples", "200"]) == 0
    err = capsys.readouterr().err
    assert "swept with different settings" in err
    assert "epochs: a.jsonl: 3; b.jsonl: 10" in err and "lr: a.jsonl: 0.2; b.jsonl: 0.1" in err
    listed = [line.split(":")[0].strip() for line in err.splitlines() if line.startswith("  ")]
    assert listed == ["epochs", "lr"]  # not the space, not the settings they share
    assert cli.main(["edf", str(a), str(c), "--out", str(tmp_path / "e.png"), "--resamples", "200"]) == 0
    assert "different settings" not in capsys.readouterr().err  # only the space differs: no warning


# ---------------------------------------------------------------------------------------------- default regime


def test_default_regime_fits_the_data_and_is_shown(tmp_path, monkeypatch):
    out = tmp_path / "r.jsonl"
    monkeypatch.setattr(sweep, "train_proxy", _fake_train([]))
    logged = []
    cfg = sweep.SweepConfig(space="RegNetX", samples=5, epochs=1, batch_size=32)  # no regime given
    recs = sweep.run_sweep(cfg, out, progress=False, data=_fake_data(), log=logged.append)
    assert all(2e6 <= r["flops"] <= 6e6 for r in recs)
    assert recs[0]["sweep"]["flops"] == [2e6, 6e6]
    assert any("flops 2-6 M at 32 px, 10 classes (default for this image size" in m for m in logged)
    assert all("[2-6MF@32px]" in m for m in logged if m.startswith("RegNetX #"))
    assert sweep.default_flops(64) == (8e6, 24e6) and sweep.default_flops(224) == (360e6, 400e6)
    # --no-flops keeps the spaces' full ranges.
    free = sweep.run_sweep(sweep.SweepConfig(space="RegNetX", samples=5, epochs=1, batch_size=32, flops=None),
                           tmp_path / "free.jsonl", progress=False, data=_fake_data(), log=lambda *a: None)
    assert max(r["flops"] for r in free) > 6e6


# ---------------------------------------------------------------------------------------------- signals

_SIGNALLED = """
    import os, sys
    import numpy as np
    import tensorflow as tf
    from keras_regnet.design_space import sweep

    out = sys.argv[1]
    x = np.random.default_rng(0).uniform(0, 255, (64, 32, 32, 3)).astype("float32")
    y = np.arange(64) % 10
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    data = sweep.ProxyData(train=lambda seed: ds.shuffle(64, seed=seed).batch(16), eval=ds.batch(32),
                           num_classes=10, num_train=64, num_eval=64, image_size=32, stem="cifar", augment="none",
                           eval_split="test", steps_per_epoch=4)
    real = sweep.train_proxy

    def train(spec, data, **kw):
        print("training", flush=True)
        return real(spec, data, **kw)

    sweep.train_proxy = train
    cfg = sweep.SweepConfig(space="AnyNetXA", samples=3, epochs=100000, flops=(0.5e6, 2e6), batch_size=16, lr=0.05)
    try:
        sweep.run_sweep(cfg, out, progress=False, data=data)
    except sweep.SweepInterrupted:
        sys.exit(130)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow  # kill-and-resume of a training sweep
def test_sigterm_and_sigint_stop_training_promptly_and_the_file_resumes(tmp_path, monkeypatch, sig):
    out = tmp_path / "r.jsonl"
    p = _run(_SIGNALLED, out)
    try:
        line = ""
        while "training" not in line:
            line = p.stdout.readline()
            assert line or p.poll() is None, p.stderr.read()[-3000:]
        time.sleep(3.0)  # inside model building, tracing or the training steps of sample 0
        assert p.poll() is None
        sent = time.monotonic()
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr[-3000:]
    assert took < 10, f"stopping took {took:.1f} s"  # typically 1-2 s, most of it interpreter shutdown
    assert f"stopped ({signal.Signals(sig).name}): 0 of 3 samples finished in {out}; run the same command" in stdout
    assert not os.path.exists(out) or results.read_results(out).records == []
    assert results.read_claims(out) == {}  # the claim was released
    # The same sweep resumes and trains every sample once.
    calls = []
    monkeypatch.setattr(sweep, "train_proxy", _fake_train(calls))
    cfg = sweep.SweepConfig(space="AnyNetXA", samples=3, epochs=100000, flops=(0.5e6, 2e6), batch_size=16, lr=0.05)
    data = sweep.ProxyData(train=None, eval=None, num_classes=10, num_train=64, num_eval=64, image_size=32,
                           stem="cifar", augment="none", eval_split="test", steps_per_epoch=4)
    recs = sweep.run_sweep(cfg, out, progress=False, data=data, log=lambda *a: None)
    assert [r["index"] for r in recs] == [0, 1, 2] and len(calls) == 3


def test_stop_event_ends_training_at_the_next_batch():
    import threading

    import tensorflow as tf

    x = np.zeros((32, 32, 32, 3), "float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(32) % 10))
    seen = []

    def train(seed):
        for i, batch in enumerate(ds.batch(8)):
            seen.append(i)
            if i == 1:
                stop.set()
            yield batch

    stop = threading.Event()
    data = sweep.ProxyData(train=train, eval=ds.batch(32), num_classes=10, num_train=32, num_eval=32, image_size=32,
                           stem="cifar", augment="none", eval_split="test", steps_per_epoch=4)
    candidates = get_space("RegNetX", stem="cifar").sample(30, seed=0, regime=Regime((0.5e6, 3e6), resolution=32,
                                                                                   classes=10))
    spec = min(candidates, key=lambda p: p["depth"])  # a shallow net: quick to build and trace
    with pytest.raises(sweep.SweepInterrupted):
        sweep.train_proxy(spec, data, epochs=3, lr=0.1, stop=stop)
    assert seen == [0, 1]  # stopped before training batch 1, the first batch after the request
