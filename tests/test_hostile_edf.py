"""`edf` and `fit` on hostile results files: same file names in different folders, out-of-range errors, odd
fields, bad flags, and populations large enough that the bootstrap must work in bounded memory."""

import json
import os
import tracemalloc

import numpy as np
import pytest

from keras_regnet import cli, specs
from keras_regnet.design_space import analysis, results

SPEC = specs.get_params("RegNetX-200MF").to_dict()


def _rec(i, error, space="RegNetX", **extra):
    return {"index": i, "space": space, "seed": 0, "spec": SPEC, "flops": 199e6, "error": error} | extra


def _write(path, recs):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_same_file_name_in_two_folders_stays_two_populations(tmp_path, capsys):
    # two sweeps (other seeds: not shards of one sweep, which edf merges on purpose) in files of the same name
    a = _write(tmp_path / "run1" / "results.jsonl", [_rec(i, 10.0 + i) for i in range(4)])
    b = _write(tmp_path / "run2" / "results.jsonl", [_rec(i, 30.0 + i, seed=1) for i in range(4)])
    groups = analysis.load_groups([a, b], log=lambda *_: None)
    assert list(groups) == ["RegNetX (run1/results.jsonl)", "RegNetX (run2/results.jsonl)"]
    assert [len(v) for v in groups.values()] == [4, 4]
    assert cli.main(["edf", str(a), str(b), "--out", str(tmp_path / "e.png"), "--json", "--resamples", "200"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["n"] for r in rows] == [4, 4] and rows[1]["mean_diff"] == pytest.approx(20.0)


def test_the_same_file_given_twice_is_refused(tmp_path):
    a = _write(tmp_path / "r.jsonl", [_rec(i, 10.0 + i) for i in range(3)])
    with pytest.raises(ValueError, match="given more than once"):
        analysis.load_groups([a, str(a)], log=lambda *_: None)


def test_labels_use_the_shortest_unique_path_suffix():
    assert analysis._path_labels(["x/a.jsonl", "y/b.jsonl"]) == ["a.jsonl", "b.jsonl"]
    assert analysis._path_labels(["/d/run1/r.jsonl", "/d/run2/r.jsonl", "/e/run2/r.jsonl"]) == [
        "run1/r.jsonl", "d/run2/r.jsonl", "e/run2/r.jsonl"]


@pytest.mark.parametrize("bad", [-5, 1e308, 100.5, -1e-9])
def test_an_error_outside_0_100_is_a_damaged_line_with_its_number(tmp_path, capsys, bad):
    path = _write(tmp_path / "r.jsonl", [_rec(0, 12.0), _rec(1, bad), _rec(2, 14.0)])
    got = results.read_results(path)
    assert [r["index"] for r in got.records] == [0, 2]
    assert [(n, reason) for n, _, reason in got.damaged] == [(2, f"'error' must be a percentage in [0, 100], got {bad!r}")]
    assert cli.main(["edf", str(path), "--out", str(tmp_path / "e.png"), "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["n"] == 2 and f"{path}:2: 'error' must be a percentage in [0, 100]" in cap.err


def test_errors_of_0_and_100_are_results():
    assert analysis.summarize([0, 100])["mean"] == 50
    with pytest.raises(ValueError, match=r"in \[0, 100\]"):
        analysis.summarize([1.0, 101.0])


@pytest.mark.parametrize("space", [["RegNetX"], {"a": 1}, 7, None])
def test_a_record_whose_space_is_not_a_name_is_reported_with_its_line(tmp_path, capsys, space):
    path = _write(tmp_path / "r.jsonl", [_rec(0, 12.0), _rec(1, 13.0, space=space), _rec(2, 14.0)])
    logged = []
    groups = analysis.load_groups([path], log=logged.append)
    assert [len(v) for v in groups.values()] == [2]
    assert any(f"{path}:2: 'space' must be a design space name" in m for m in logged)
    for command in (["edf", str(path), "--out", str(tmp_path / "e.png"), "--json"], ["fit", str(path), "--json"]):
        assert cli.main(command) == 0
        cap = capsys.readouterr()
        assert f"{path}:2: 'space' must be a design space name" in cap.err and "Traceback" not in cap.err


def test_fit_top_must_be_positive(tmp_path, capsys):
    path = _write(tmp_path / "r.jsonl", [_rec(0, 12.0)])
    for top in ("-1", "0", "x"):
        with pytest.raises(SystemExit) as e:
            cli.main(["fit", str(path), "--top", top])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--top" in err and "positive integer" in err
    assert cli.main(["fit", str(path), "--top", "1", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.parametrize("resamples", ["0", "-3", "x"])
def test_edf_resamples_must_be_positive(tmp_path, capsys, resamples):
    a = _write(tmp_path / "a.jsonl", [_rec(i, 10.0 + i, "RegNetX") for i in range(3)])
    b = _write(tmp_path / "b.jsonl", [_rec(i, 10.0 + i, "RegNetY") for i in range(3)])
    with pytest.raises(SystemExit) as e:
        cli.main(["edf", str(a), str(b), "--out", str(tmp_path / "e.png"), "--resamples", resamples])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--resamples" in err and "positive integer" in err and "n_resamples" not in err
    assert not os.path.exists(tmp_path / "e.png")
    with pytest.raises(ValueError, match="n_resamples must be a positive integer"):
        analysis.bootstrap_mean_difference([1, 2, 3], [2, 3, 4], n_resamples=0)


def test_bootstrap_memory_is_bounded_and_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(30, 4, 200_000), rng.normal(31, 4, 150_000)
    tracemalloc.start()
    try:
        res = analysis.bootstrap_mean_difference(a, b, n_resamples=200)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Today's scipy bootstrap holds n_resamples x n values at once (200 x 200k x 8 B = 320 MB here).
    assert peak < 80e6, f"bootstrap peaked at {peak / 1e6:.0f} MB"
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    diff = a.mean() - b.mean()
    assert res["diff"] == pytest.approx(diff)
    assert res["low"] == pytest.approx(diff - 1.96 * se, abs=0.5 * se)
    assert res["high"] == pytest.approx(diff + 1.96 * se, abs=0.5 * se)


def test_bootstrap_is_reproducible_and_chunking_does_not_change_it(monkeypatch):
    rng = np.random.default_rng(2)
    a, b = rng.normal(30, 2, 500), rng.normal(32, 2, 400)
    first = analysis.bootstrap_mean_difference(a, b, n_resamples=300, seed=5)
    assert analysis.bootstrap_mean_difference(a, b, n_resamples=300, seed=5) == first
    monkeypatch.setattr(analysis, "_BOOTSTRAP_CHUNK_VALUES", 1000)  # many small chunks
    assert analysis.bootstrap_mean_difference(a, b, n_resamples=300, seed=5) == pytest.approx(first)
