"""Optional extras: each extra's entry points, with the extra's packages hidden, fail with keras_regnet's one-line
MissingExtraError naming ``pip install 'keras-regnet[EXTRA]'`` (never a raw ModuleNotFoundError)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import BLOCKER  # a fresh interpreter's finder that hides the BLOCKED packages

from keras_regnet import _extras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Each entry point's call; run one after the other in one process, each outcome recorded.
RUNNER = """
import json, traceback
import numpy as np

results = {}
def attempt(name, fn):
    try:
        fn()
        results[name] = ["ok", ""]
    except BaseException as e:
        results[name] = [type(e).__name__, str(e)]
"""


def _run(blocked, body, env=None):
    code = f"BLOCKED = {set(blocked)!r}\n" + BLOCKER + RUNNER + textwrap.dedent(body) + "\nprint(json.dumps(results))\n"
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_one_line_naming(results, expected):
    for name, extra in expected.items():
        kind, message = results[name]
        assert kind == "MissingExtraError", (name, kind, message)
        assert len(message.splitlines()) == 1, (name, message)
        assert message.endswith(f"install it with: pip install 'keras-regnet[{extra}]'"), (name, message)


def test_every_optional_extra_entry_point_names_its_extra(tmp_path):
    """TensorFlow present, every other optional package hidden."""
    config = tmp_path / "run.yaml"
    config.write_text("epochs: 1\n")
    checkpoint = tmp_path / "model.pyth"
    checkpoint.write_bytes(b"not read")
    results = _run(
        {"tf_keras_vis", "matplotlib", "scipy", "ai_edge_litert", "tf2onnx", "onnx", "onnxruntime",
         "tensorflow_datasets", "yaml", "torch"},
        f"""
        import keras_regnet
        from keras_regnet import datasets, explanations
        from keras_regnet.design_space import analysis, plots
        from keras_regnet.export import onnx, tflite
        from keras_regnet.training import presets
        from keras_regnet.weights import files

        model = keras_regnet.AnyNet(depths=(1, 1, 1, 1), widths=(8, 16, 24, 32), bottleneck_ratios=(1, 1, 1, 1),
                                    group_widths=(8, 8, 8, 8), input_shape=(32, 32, 3), classes=3, weights=None)
        image = np.zeros((32, 32, 3), "float32")
        attempt("explain", lambda: keras_regnet.explain(model, image))
        attempt("overlay_heatmap", lambda: explanations.overlay_heatmap(image, np.zeros((32, 32))))
        attempt("plot_explanations", lambda: explanations.plot_explanations([image], [np.zeros((32, 32))]))
        attempt("plot_edf", lambda: plots.plot_edf({{"A": [1.0, 2.0, 3.0]}}))
        attempt("ks_test", lambda: analysis.ks_test([1.0, 2.0], [2.0, 3.0]))
        attempt("tflite", lambda: tflite.latency_ms(b"not a model", threads=(1,), runs=1))
        attempt("onnx_convert", lambda: onnx.convert(model, "probabilities"))
        attempt("onnx_evaluate", lambda: onnx.evaluate(b"", image[None], np.zeros((1, 3))))
        attempt("tfds", lambda: datasets.load_dataset("cifar10", "train"))
        attempt("yaml", lambda: presets.load_config_file({str(config)!r}))
        attempt("torch", lambda: files.read_state_dict({str(checkpoint)!r}))
        """)
    _assert_one_line_naming(results, {
        "explain": "explain", "overlay_heatmap": "explain", "plot_explanations": "explain",
        "plot_edf": "design", "ks_test": "design",
        "tflite": "export", "onnx_convert": "export", "onnx_evaluate": "export",
        "tfds": "train", "yaml": "train", "torch": "torch",
    })


def test_tensorflow_entry_points_on_a_jax_only_install(tmp_path):
    """KERAS_BACKEND=jax without TensorFlow: the models work; export, training and inference mode name [tensorflow]."""
    pytest.importorskip("jax")
    results = _run({"tensorflow"}, f"""
        import keras_regnet
        model = keras_regnet.AnyNet(depths=(1, 1, 1, 1), widths=(8, 16, 24, 32), bottleneck_ratios=(1, 1, 1, 1),
                                    group_widths=(8, 8, 8, 8), input_shape=(32, 32, 3), classes=3, weights=None)
        attempt("model", lambda: model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0))
        from keras_regnet.export import export_model
        attempt("export", lambda: export_model(model, {str(tmp_path / "exported")!r}, "tiny"))
        from keras_regnet.training.presets import make_config
        from keras_regnet.training.trainer import train
        attempt("train", lambda: train(make_config("imagenet", model="RegNetX200MF", dataset="digits", epochs=1,
                                                   output_dir={str(tmp_path / "run")!r})))
        from keras_regnet.inference import InferenceModel
        attempt("inference", lambda: InferenceModel(model))
        import sys
        results["imported"] = ["", str(sorted(m for m in ("tensorflow",) if m in sys.modules))]
    """, env={"KERAS_BACKEND": "jax"})
    assert results["model"][0] == "ok", results["model"]
    _assert_one_line_naming(results, {"export": "tensorflow", "train": "tensorflow", "inference": "tensorflow"})
    assert not (tmp_path / "exported").exists() and not (tmp_path / "run").exists()


def test_one_table_names_the_extra_of_every_optional_module():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        declared = set(tomllib.load(f)["project"]["optional-dependencies"])
    assert set(_extras.EXTRA_OF_MODULE.values()) - {"keras-hub"} <= declared | {"all"}
    assert _extras.extra_of("tf_keras_vis.gradcam") == "explain" and _extras.extra_of("numpy") is None
    with pytest.raises(_extras.MissingExtraError, match=r"^x needs 'keras_regnet_nope', which is not installed; "
                                                        r"install it with: pip install 'keras-regnet\[design\]'$"):
        _extras.check(["json", "keras_regnet_nope"], feature="x", extra="design")
    _extras.check(["json", "os.path"])  # installed: nothing happens
