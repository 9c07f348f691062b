"""The committed design-space study (docs/study/) re-analysed offline from its results files: EDFs, KS tests,
bootstrap intervals and RegNet trends give the numbers docs/design-spaces.md publishes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from keras_regnet import cli
from keras_regnet.commands import compare, edf
from keras_regnet.design_space import analysis

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "study"
SPACES = [s for s in compare.STUDY["spaces"] if (STUDY / f"{s}.jsonl").exists()]


def _summary():
    return json.loads((STUDY / "summary.json").read_text())


def _groups():
    return analysis.load_groups([STUDY / f"{s}.jsonl" for s in SPACES], log=lambda m: None)


def test_the_study_files_are_complete_sweeps_of_one_setting():
    groups = _groups()
    assert list(groups)[0] == "AnyNetXA" and "RegNetX" in groups
    settings = set()
    for space, recs in groups.items():
        indices = [r["index"] for r in recs]
        assert len(set(indices)) == len(indices) and max(indices) < len(indices) + 2  # each sample once, in order
        assert all(r["sampler_version"] == 3 for r in recs)
        settings |= {json.dumps({k: v for k, v in r["sweep"].items() if k != "space"}, sort_keys=True) for r in recs}
    assert len(settings) == 1
    s = json.loads(settings.pop())
    assert (s["epochs"], s["train_split"], s["eval_split"], s["batch_size"]) == (3, "train[:40%]", "train[40%:]", 32)


def test_summary_is_reproduced_from_the_committed_results():
    published = _summary()
    again = analysis.study_summary(_groups(), alpha=published["alpha"], confidence=published["confidence"],
                                   n_resamples=published["n_resamples"], seed=published["seed"])
    assert json.loads(json.dumps(again, sort_keys=True)) == published


def test_the_published_findings():
    s = _summary()
    rows = {r["space"]: r for r in s["spaces"]}
    rx = rows["RegNetX"]
    # RegNetX's EDF lies left of AnyNetXA's: both tests agree at the 0.01 level.
    assert rx["significant"] and rx["p_value"] < 0.01 and rx["diff_high"] < 0
    assert rx["mean"] < rows["AnyNetXA"]["mean"] and rx["min"] <= rows["AnyNetXA"]["min"]
    # Every EDF point of RegNetX is at or above AnyNetXA's (left of it) over the errors observed.
    groups = _groups()
    grid = np.linspace(0, 100, 1001)
    assert np.mean(analysis.edf_at(groups["RegNetX"], grid) >= analysis.edf_at(groups["AnyNetXA"], grid)) > 0.95
    for step in s["steps"]:  # AnyNetXA -> XB -> XC: no step is significantly worse
        assert step["outcome"] in ("no worse", "significantly better")


def test_docs_quote_the_summary():
    text = (ROOT / "docs" / "design-spaces.md").read_text()
    s = _summary()
    rows = analysis.compare_groups(_groups(), confidence=s["confidence"], n_resamples=s["n_resamples"], seed=s["seed"])
    for line in edf.format_table(rows, s["confidence"]).splitlines():
        assert line in text, line
    for line in analysis.format_study(s).splitlines():
        assert line in text.replace("\n", " ") or line in text, line


def test_compare_report_only_rewrites_the_same_summary(tmp_path, capsys):
    for space in SPACES:
        shutil.copy(STUDY / f"{space}.jsonl", tmp_path / f"{space}.jsonl")
    assert cli.main(["compare", "--study", "--report-only", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "significant at 0.01" in out
    assert json.loads((tmp_path / "summary.json").read_text()) == _summary()
    for png in ("edf.png", "scatter.png", "fit.png", "trends.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_report_only_needs_the_results(tmp_path, capsys):
    assert cli.main(["compare", "--report-only", "--out-dir", str(tmp_path)]) == 2
    assert "no results file" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["wm", "d", "w0"])
def test_trends_are_those_published(key):
    t = analysis.regnet_trends([r for recs in _groups().values() for r in recs])
    published = _summary()["trends"]["params"][key]
    assert t["params"][key]["spearman"] == pytest.approx(published["spearman"], abs=1e-6)
    assert t["params"][key]["best_median"] == pytest.approx(published["best_median"], abs=1e-6)
