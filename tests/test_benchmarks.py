"""The benchmark scripts run and print well-formed results (never timed assertions: the machine is shared)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, env_extra=None, timeout=900):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env_extra or {}))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _check_spread(entry):
    assert 0 < entry["min"] <= entry["median"] <= entry["max"]


@pytest.mark.slow
def test_gpu_benchmark_quick_runs_on_the_installed_backend(tmp_path):
    backend = "jax" if importlib.util.find_spec("jax") else "tensorflow"
    if importlib.util.find_spec(backend) is None:
        pytest.skip("neither jax nor tensorflow is installed")
    out = tmp_path / "gpu.json"
    # Two of the three stand-ins (an SE RegNet and the EfficientNet the ratio is taken against): XLA compiles
    # every training step on CPU under jax, which takes minutes per model on 2 cores.
    r = _run(["benchmarks/gpu.py", "--quick", "--models", "RegNetY-200MF,EfficientNet-B0", "--json", str(out)],
             {"KERAS_BACKEND": backend}, timeout=2400)
    assert r.returncode == 0, r.stderr[-3000:]
    text = r.stdout
    assert "device:" in text and "model" in text and "train img/s" in text
    for label in ("RegNetY-200MF", "EfficientNet-B0"):
        assert any(line.startswith(label) for line in text.splitlines()), text
    assert "ratios vs EfficientNet-B0" in text
    data = json.loads(out.read_text())
    assert data["versions"]["backend"] == backend
    assert [r["model"] for r in data["results"]] == ["RegNetY-200MF", "EfficientNet-B0"]
    for res in data["results"]:
        _check_spread(res["train_img_s"])
        _check_spread(res["infer_img_s"])
    if data["gpu"] is None:
        assert "no GPU" in text


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs tensorflow")
def test_inference_benchmark_quick_prints_machine_versions_spread_and_ratios(tmp_path):
    out = tmp_path / "inf.json"
    r = _run(["benchmarks/inference.py", "--quick", "--models", "ours,ours-predict,ours-keras", "--json", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    text = r.stdout
    for needle in ("machine:", "versions:", "tensorflow", "load average", "threads ours: TF intra-op 2",
                   "threads ours-keras: TF intra-op 2", "ratios (medians, this run)"):
        assert needle in text, (needle, text)
    data = json.loads(out.read_text())
    assert data["machine"]["cores"] == os.cpu_count()
    assert set(data["models"]) == {"ours", "ours-predict", "ours-keras"}
    for label, entry in data["models"].items():
        _check_spread(entry["throughput_img_s"])
        assert entry["latency_ms"]["q1"] <= entry["latency_ms"]["median"] <= entry["latency_ms"]["q3"]
    assert "train_step_s" in data["models"]["ours-keras"]  # the plain Keras model trains; the inference mode not
    assert "train_step_s" not in data["models"]["ours"]
    assert "latency ours-predict/timm" not in data["ratios"]  # no timm in this run: no ratio against it


def test_inference_benchmark_rejects_unknown_model_labels():
    r = _run(["benchmarks/inference.py", "--models", "ours,resnet"], timeout=120)
    assert r.returncode != 0
    assert "unknown model label" in r.stderr and "resnet" in r.stderr


def _inference_module():
    spec = importlib.util.spec_from_file_location("bench_inference", ROOT / "benchmarks" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # stdlib only at import: no TensorFlow, no torch
    return module


def test_inference_benchmark_summarises_ratios_and_checks_across_runs():
    bench = _inference_module()
    runs = [{"ratios": {"latency ours-default/timm": a, "throughput ours/effnet": b, "only in one": 1.0}}
            for a, b in ((0.9, 1.6), (1.2, 1.4), (0.8, 1.7))]
    del runs[1]["ratios"]["only in one"], runs[2]["ratios"]["only in one"]
    across = bench.across_runs(runs)
    assert set(across["ratios"]) == {"latency ours-default/timm", "throughput ours/effnet"}
    lat = across["ratios"]["latency ours-default/timm"]
    assert (lat["median"], lat["min"], lat["max"], lat["runs"]) == (0.9, 0.8, 1.2, [0.9, 1.2, 0.8])
    checks = {c["ratio"]: (c["held_in"], c["runs"]) for c in across["checks"]}
    assert checks == {"latency ours-default/timm": (2, 3), "throughput ours/effnet": (2, 3)}
    # Every label the benchmark offers is described and the bfloat16 peers need torch + timm.
    assert {"ours-default", "ours-predict", "ours-bf16", "timm-bf16"} <= set(bench.MODELS)
    assert bench.REQUIRES["timm-bf16"] == ("torch", "timm")


@pytest.mark.slow
def test_train_profile_splits_the_step_by_layer_role(tmp_path):
    out = tmp_path / "profile.json"
    r = _run(["benchmarks/train_profile.py", "--model", "RegNetY200MF", "--batch", "2", "--size", "64", "--steps",
              "1", "--json", str(out)], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for needle in ("machine:", "grouped 3x3 conv (conv_b)", "BatchNorm", "Squeeze-and-Excitation",
                   "optimizer (SGD update)"):
        assert needle in r.stdout, (needle, r.stdout)
    data = json.loads(out.read_text())
    groups = {group for group, _, _, _ in data["parts"]}
    assert {"grouped 3x3 conv (conv_b)", "1x1 conv conv_a", "BatchNorm (+ fused ReLU)"} <= groups
    assert abs(sum(ms for *_, ms in data["parts"]) - data["op_ms_per_step"]) < 1e-6
    other = sum(ms for group, *_, ms in data["parts"] if group == "other")
    assert other < 0.2 * data["op_ms_per_step"], data  # nearly every op is attributed to a layer role
    filters = [ms for group, direction, part, ms in data["parts"] if group.startswith("grouped") and part == "filter"]
    assert filters and filters[0] > 0  # the conv's gradient is split into filter and input parts
