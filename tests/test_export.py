"""Export: SavedModel signatures and parity, versioned layout, BN folding, TFLite (4 variants) and ONNX parity, errors.

One tiny RegNet (TINY_SE, dynamic input) is trained for a few epochs on the embedded digits data so its outputs are
decisive (top-1 agreement of quantized files is then meaningful), exported once per module with every format, and
the artifacts are re-run here independently (loaded from disk) against the Keras model.
"""

import base64
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY, TINY_SE

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_regnet  # noqa: E402
from keras_regnet.cli import main as cli_main  # noqa: E402
from keras_regnet.datasets import digits_arrays  # noqa: E402
from keras_regnet.export import ExportError, export_model, fold_batchnorm, foldable_pairs  # noqa: E402
from keras_regnet.export import savedmodel as sm_lib  # noqa: E402
from keras_regnet.preprocessing import resize_and_center_crop  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def digits():
    train_x, train_y = digits_arrays("train")
    test_x, test_y = digits_arrays("test")
    return train_x.astype("float32"), train_y, test_x.astype("float32"), test_y


@pytest.fixture(scope="module")
def trained(digits):
    """A tiny RegNet (dynamic spatial size) trained on digits: decisive softmax outputs, real BatchNorm statistics."""
    keras.utils.set_random_seed(0)
    model = keras_regnet.AnyNet(**TINY_SE, input_shape=(None, None, 3), classes=10, name="tiny")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train_x, train_y, test_x, test_y = digits
    model.fit(train_x, train_y, batch_size=64, epochs=4, verbose=0)
    accuracy = model.evaluate(test_x, test_y, verbose=0)[1]
    assert accuracy > 0.8, accuracy  # a real classifier, else agreement figures mean nothing
    return model


@pytest.fixture(scope="module")
def exported(trained, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    report = export_model(
        trained, str(out), "tiny", onnx=True, tflite=("fp32", "fp16", "dynamic", "int8", "int8_uint8in"),
        representative=digits[2][:160], calibration_images=128,
        verify_images=32, size=SIZE, min_agreement=0.9, latency_runs=3, progress=False,
    )
    return out, report


def _pixels(n=3, size=SIZE, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


# ---------------------------------------------------------------------------------------------------------------
# SavedModel


def test_versioned_layout_and_metadata(exported, trained):
    out, report = exported
    path = os.path.join(out, "tiny", "1")
    assert report["version"] == 1 and report["path"] == path
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert os.path.isdir(os.path.join(path, "variables"))
    assert not [d for d in os.listdir(os.path.join(out, "tiny")) if d != "1"]  # no staging leftovers
    with open(os.path.join(path, "assets.extra", "keras_regnet_export.json")) as f:
        meta = json.load(f)
    assert meta["fingerprint"] == report["fingerprint"]
    assert meta["eval"] == {"size": SIZE, "crop_pct": 0.875, "interpolation": "bicubic"}
    extra = sorted(os.listdir(os.path.join(path, "assets.extra")))
    assert extra == ["keras_regnet_export.json", "tiny.onnx", "tiny_dynamic.tflite", "tiny_fp16.tflite",
                     "tiny_fp32.tflite", "tiny_int8.tflite", "tiny_int8_uint8in.tflite"]
    assert meta["max_pixels"] == 40_000_000


def test_signatures_names_dtypes_shapes(exported):
    out, report = exported
    loaded = tf.saved_model.load(report["path"])
    assert set(loaded.signatures) == {"serving_default", "serving_bytes"}
    sigs = sm_lib.describe_signatures(loaded)
    assert sigs == report["savedmodel"]["signatures"]
    outputs = {"probabilities": ["float32", [None, 10]], "top_k_classes": ["int32", [None, 5]],
               "top_k_scores": ["float32", [None, 5]]}
    if report["labels"]:  # the model's own class names (keras_regnet.models.class_names)
        outputs["top_k_labels"] = ["string", [None, 5]]
    assert sigs["serving_default"] == {"inputs": {"images": ["float32", [None, None, None, 3]]}, "outputs": outputs}
    assert sigs["serving_bytes"] == {"inputs": {"image_bytes": ["string", [None]]}, "outputs": outputs}


@pytest.mark.parametrize("batch,size", [(1, 32), (5, 32), (2, 48)])
def test_savedmodel_parity_any_batch_and_size(exported, trained, batch, size):
    loaded = tf.saved_model.load(exported[1]["path"])
    x = _pixels(batch, size)
    out = loaded.signatures["serving_default"](images=tf.constant(x))
    ref = trained.predict(x, verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=1e-5, rtol=0)
    order = np.argsort(-ref, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(out["top_k_classes"].numpy(), order)
    np.testing.assert_allclose(out["top_k_scores"].numpy(), np.take_along_axis(ref, order, 1), atol=1e-5)
    assert exported[1]["savedmodel"]["max_abs_diff"] <= 1e-5


def test_no_xla_must_compile_functions(exported, tmp_path):
    assert sm_lib.xla_must_compile_functions(exported[1]["path"]) == []
    # The detector finds them when they exist: Keras's own grouped Conv2D is forced through XLA on TensorFlow.
    inputs = keras.Input((8, 8, 4))
    plain = keras.Model(inputs, keras.layers.Conv2D(4, 3, groups=2)(inputs))
    archive = keras.export.ExportArchive()
    archive.track(plain)
    archive.add_endpoint("serve", lambda x: plain(x), input_signature=[tf.TensorSpec((None, 8, 8, 4), tf.float32)])
    archive.write_out(str(tmp_path / "xla"), verbose=False)
    assert sm_lib.xla_must_compile_functions(str(tmp_path / "xla"))


def _encoded(images, fmt):
    encode = tf.io.encode_png if fmt == "png" else lambda x: tf.io.encode_jpeg(x, quality=95)
    return [encode(tf.cast(img, tf.uint8)).numpy() for img in images]


def test_bytes_signature_runs_the_eval_transform(exported, trained):
    loaded = tf.saved_model.load(exported[1]["path"])
    images = np.random.default_rng(3).uniform(0, 255, (2, 45, 60, 3)).astype("uint8")  # not square, not 32 px
    for fmt in ("png", "jpeg"):
        data = _encoded(images, fmt)
        got = loaded.signatures["serving_bytes"](image_bytes=tf.constant(data))["probabilities"].numpy()
        decoded = np.stack([tf.io.decode_image(d, channels=3).numpy() for d in data])
        ref = trained.predict(resize_and_center_crop(decoded, SIZE, 0.875, "bicubic").numpy(), verbose=0)
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_bad_image_bytes_is_an_error_and_serving_continues(exported):
    loaded = tf.saved_model.load(exported[1]["path"])
    fn = loaded.signatures["serving_bytes"]
    for junk in (b"not an image", b"", b"\xff\xd8\xff\xe0 truncated jpeg"):
        with pytest.raises(tf.errors.InvalidArgumentError):
            fn(image_bytes=tf.constant([junk]))
    good = _encoded(_pixels(1), "png")
    assert fn(image_bytes=tf.constant(good))["probabilities"].shape == (1, 10)
    assert exported[1]["savedmodel"]["bad_bytes_error"]


def test_rest_bodies_of_the_readme(exported, trained):
    """The JSON bodies the README shows for TF Serving's REST API, through the loaded signatures."""
    loaded = tf.saved_model.load(exported[1]["path"])
    x = np.round(_pixels(2))
    body = json.loads(json.dumps({"instances": x.tolist()}))
    response = sm_lib.call_rest_body(loaded, body)
    ref = trained.predict(x, verbose=0)
    np.testing.assert_allclose([p["probabilities"] for p in response["predictions"]], ref, atol=1e-5)
    assert [p["top_k_classes"][0] for p in response["predictions"]] == ref.argmax(1).tolist()

    png = _encoded(x, "png")
    body = {"signature_name": "serving_bytes",
            "instances": [{"b64": base64.b64encode(d).decode()} for d in png]}
    response = sm_lib.call_rest_body(loaded, json.loads(json.dumps(body)))
    ref = trained.predict(resize_and_center_crop(x, SIZE, 0.875, "bicubic").numpy(), verbose=0)
    np.testing.assert_allclose([p["probabilities"] for p in response["predictions"]], ref, atol=1e-5)
    assert sm_lib.call_rest_body(loaded, json.dumps(body)) == response  # the JSON text itself (as curl -d sends)
    for bad in ("{not json", [1, 2], {"inputs": []}):
        with pytest.raises(ValueError, match="JSON|instances"):
            sm_lib.call_rest_body(loaded, bad)


@pytest.mark.slow  # TensorFlow's saved_model_cli in a fresh process
def test_saved_model_cli_show_and_run(exported, trained, tmp_path):
    path = exported[1]["path"]
    show = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir", path,
                           "--all"], capture_output=True, text=True, timeout=600)
    assert show.returncode == 0, show.stderr[-2000:]
    for text in ("signature_def['serving_default']", "signature_def['serving_bytes']", "images", "image_bytes",
                 "probabilities", "top_k_classes", "DT_STRING", "(-1, -1, -1, 3)"):
        assert text in show.stdout
    x = _pixels(2)
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run", "--dir", path,
                          "--tag_set", "serve", "--signature_def", "serving_default",
                          "--inputs", f"images={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "probabilities.npy"), trained.predict(x, verbose=0),
                               atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# TFLite and ONNX, re-run from disk


def _tflite_outputs(path, images):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = Interpreter(model_path=path)
        interpreter.allocate_tensors()
    except RuntimeError:  # XNNPACK refused the graph: builtin kernels (the export report says so too)
        interpreter = Interpreter(model_path=path,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert list(inp["shape"]) == [1, SIZE, SIZE, 3] and inp["dtype"] in (np.float32, np.uint8)
    if inp["dtype"] == np.uint8:
        images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    results = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    ops = {d["op_name"] for d in interpreter._get_ops_details()}
    return np.stack(results), ops, interpreter._get_ops_details()


def test_tflite_variants_parity_from_disk(exported, trained, digits):
    out, report = exported
    images = digits[2][200:264]  # digits the export never saw
    ref = trained.predict(images, verbose=0)
    n_convs = sum(isinstance(layer, keras.layers.Conv2D) for layer in trained.layers)
    sizes = {}
    for variant, min_agree, max_diff in (("fp32", 1.0, 1e-4), ("fp16", 0.98, 1e-2), ("dynamic", 0.9, 0.2),
                                         ("int8", 0.9, 0.3), ("int8_uint8in", 0.9, 0.3)):
        path = os.path.join(report["path"], "assets.extra", f"tiny_{variant}.tflite")
        got, ops, details = _tflite_outputs(path, images)
        assert np.all(np.isfinite(got))
        agreement = np.mean(got.argmax(1) == ref.argmax(1))
        assert agreement >= min_agree, (variant, agreement)
        assert np.max(np.abs(got - ref)) <= max_diff, variant
        assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
        # every Keras conv, the grouped 3x3 ones included, is one native CONV_2D op
        assert sum(d["op_name"] == "CONV_2D" for d in details) == n_convs, variant
        r = report["tflite"][variant]
        assert r["top1_agreement"] >= 0.9 and set(r["latency_ms"]) == {"1", "2", "4"}
        assert r["logit_rel_error"] <= 0.35 and r["decisive_agreement"] >= 0.9
        deleg = r["delegation"]  # XNNPACK coverage: every op inside a partition or counted outside
        n_ops = sum(d["op_name"] != "DELEGATE" for d in details)  # allocated: XNNPACK partitions are extra nodes
        assert deleg["ops"] == n_ops and deleg["delegated"] + sum(deleg["outside"].values()) == deleg["ops"]
        assert all(ms > 0 for ms in r["latency_ms"].values())
        sizes[variant] = os.path.getsize(path)
        assert sizes[variant] == r["bytes"]
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"] and sizes["dynamic"] < sizes["fp32"]
    int8_ops = {d["op_name"] for d in _tflite_outputs(os.path.join(report["path"], "assets.extra",
                                                                    "tiny_int8.tflite"), images[:1])[2]}
    assert "QUANTIZE" in int8_ops and "DEQUANTIZE" in int8_ops  # float I/O around an integer graph


def test_int8_accuracy_on_held_out_digits(exported, trained, digits):
    """The quantized files classify digits the export never saw about as well as the float model."""
    out, report = exported
    images, labels = digits[2][200:], digits[3][200:]
    float_acc = np.mean(trained.predict(images, verbose=0).argmax(1) == labels)
    assert float_acc > 0.8
    for variant in ("fp16", "dynamic", "int8", "int8_uint8in"):
        got = _tflite_outputs(os.path.join(report["path"], "assets.extra", f"tiny_{variant}.tflite"), images)[0]
        acc = np.mean(got.argmax(1) == labels)
        assert acc >= float_acc - 0.03, (variant, acc, float_acc)


def test_uint8_input_variant_takes_raw_pixels(exported, trained, digits):
    from ai_edge_litert.interpreter import Interpreter

    path = os.path.join(exported[1]["path"], "assets.extra", "tiny_int8_uint8in.tflite")
    interpreter = Interpreter(model_path=path)
    inp = interpreter.get_input_details()[0]
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)  # pixel value in = pixel value meant
    assert exported[1]["tflite"]["int8_uint8in"]["input"] == {"dtype": "uint8", "scale": 1.0, "zero_point": 0}
    assert interpreter.get_output_details()[0]["dtype"] == np.float32


def test_onnx_parity_from_disk(exported, trained):
    import onnxruntime

    path = os.path.join(exported[1]["path"], "assets.extra", "tiny.onnx")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "images"
    x = _pixels(4)
    got = session.run(["probabilities"], {"images": x})[0]
    np.testing.assert_allclose(got, trained.predict(x, verbose=0), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# BatchNorm folding


def _random_bn_stats(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.5, n),
                               rng.uniform(0.5, 2, n)])


def test_bn_folding_is_exact_and_removes_batchnorm():
    model = keras_regnet.AnyNet(**TINY_SE, input_shape=(48, 48, 3), classes=7, classifier_activation=None)
    _random_bn_stats(model)
    pairs = foldable_pairs(model)
    assert pairs["s1_b1_bn_b"] == "s1_b1_conv_b"  # the grouped conv
    assert pairs["s2_b1_proj_bn"] == "s2_b1_proj_conv" and pairs["stem_bn"] == "stem_conv"
    n_bn = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    before = [w.copy() for w in model.get_weights()]
    folded, count = fold_batchnorm(model)
    assert count == n_bn == len(pairs)
    assert not [layer for layer in folded.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # input model untouched
    assert folded.get_layer("s1_b1_conv_b").use_bias and folded.get_layer("s1_b1_conv_b").groups == 1
    x = _pixels(3, 48)
    ref = model.predict(x, verbose=0)
    got = folded.predict(x, verbose=0)
    assert np.max(np.abs(got - ref)) <= 1e-5 * max(1.0, np.max(np.abs(ref)))
    assert np.max(np.abs(ref)) > 1e-3  # the comparison is not between two zero vectors


def test_bn_folding_leaves_unfoldable_batchnorm():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    b = keras.layers.BatchNormalization(name="bn_shared_input")(a)  # conv output also used below: not foldable
    y = keras.layers.Add()([a, b])
    y = keras.layers.Conv2D(4, 1, activation="relu", name="c2")(y)
    y = keras.layers.BatchNormalization(name="bn_after_relu")(y)  # conv has an activation: not foldable
    model = keras.Model(inputs, y)
    _random_bn_stats(model)
    folded, count = fold_batchnorm(model)
    assert count == 0 and foldable_pairs(model) == {}
    x = _pixels(2, 8)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# versions and bad input


def _quick(model, out, name="m", **kwargs):
    kwargs = {"tflite": (), "verify_images": 4, "calibration_images": 4, "progress": False, **kwargs}
    return export_model(model, str(out), name, **kwargs)


def test_next_version_never_overwrites(tmp_path):
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    first = _quick(model, tmp_path)
    pb = os.path.join(first["path"], "saved_model.pb")
    stamp = (os.path.getmtime(pb), open(pb, "rb").read())
    model.get_layer("head_fc").kernel.assign(model.get_layer("head_fc").kernel * 2)  # "retrained" weights
    second = _quick(model, tmp_path)
    assert (first["version"], second["version"]) == (1, 2)
    assert (os.path.getmtime(pb), open(pb, "rb").read()) == stamp
    assert sorted(os.listdir(tmp_path / "m")) == ["1", "2"]

    other = keras_regnet.AnyNet(**TINY_SE, input_shape=(32, 32, 3), classes=3)
    with pytest.raises(ExportError, match="another model"):
        _quick(other, tmp_path)
    assert sorted(os.listdir(tmp_path / "m")) == ["1", "2"]  # nothing half-written

    os.makedirs(tmp_path / "foreign" / "1")
    (tmp_path / "foreign" / "1" / "saved_model.pb").write_bytes(b"another tool's model")
    with pytest.raises(ExportError, match="not exported by keras-regnet"):
        _quick(model, tmp_path, "foreign")


def test_failed_verification_is_loud_and_leaves_nothing(tmp_path, monkeypatch):
    """A broken int8 file (here: another model's) fails the logit check; no model directory is left behind."""
    from keras_regnet.export import tflite as tfl

    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=10)
    other = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=10)
    real_convert = tfl.convert
    monkeypatch.setattr(tfl, "convert", lambda m, variant, rep=None: real_convert(other, variant, rep))
    with pytest.raises(ExportError, match="logits differ"):
        _quick(model, tmp_path, tflite=("int8",), verify_images=16, calibration_images=8)
    assert not os.path.exists(tmp_path / "m")


def test_untrained_model_int8_check_is_meaningful(tmp_path):
    """Random weights, 1000 classes: near-uniform probabilities that int8's 1/256 output steps cannot resolve.

    The check compares the logits inside the file instead: it passes, with a small error, and leaves a version.
    """
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=1000)
    report = _quick(model, tmp_path, tflite=("int8",), verify_images=16, calibration_images=16, latency_runs=1,
                    latency_threads=(1,))
    r = report["tflite"]["int8"]
    assert r["logit_rel_error"] < 0.2 and r["logit_top1_agreement"] >= 0.5
    assert r["top1_agreement"] < 0.5  # the served probabilities alone cannot tell (what the old check used)
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]


def test_non_image_model_and_bad_representative_data(tmp_path):
    inputs = keras.Input((20,))
    dense = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    with pytest.raises(ExportError, match="not an image tensor"):
        _quick(dense, tmp_path)
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    with pytest.raises(ExportError, match=r"height is 16, expected 32"):
        _quick(model, tmp_path, representative=np.zeros((4, 16, 16, 3)))
    with pytest.raises(ExportError, match="channels is 1, expected 3"):
        _quick(model, tmp_path, representative=np.zeros((4, 32, 32, 1)))
    with pytest.raises(ExportError, match="batch of images"):
        _quick(model, tmp_path, representative=np.zeros((32, 32, 3)))
    assert not os.path.exists(tmp_path / "m") or os.listdir(tmp_path / "m") == []


def test_cli_keras_file_and_errors(tmp_path, capsys):
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    model.save(tmp_path / "mine.keras")
    code = cli_main(["export", str(tmp_path / "mine.keras"), "--output-dir", str(tmp_path / "out"),
                     "--tflite", "none", "--verify-images", "4", "--quiet"])
    assert code == 0
    assert "exported mine version 1" in capsys.readouterr().out
    loaded = tf.saved_model.load(str(tmp_path / "out" / "mine" / "1"))
    x = _pixels(2)
    np.testing.assert_allclose(loaded.signatures["serving_default"](images=tf.constant(x))["probabilities"],
                               model.predict(x, verbose=0), atol=1e-5)

    (tmp_path / "corrupt.keras").write_bytes(b"PK\x03\x04 not really a zip")
    assert cli_main(["export", str(tmp_path / "corrupt.keras"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert ("cannot load" in err or "not a Keras model file" in err) and len(err.strip().splitlines()) == 1
    assert cli_main(["export", str(tmp_path / "missing.keras")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["export", "RegNetZ999MF"]) == 2
    assert "unknown model name" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "mine.keras"), "--tflite", "int4"]) == 2
    assert "unknown --tflite" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((2, 32, 32, 4), "float32"))
    assert cli_main(["export", str(tmp_path / "mine.keras"), "--output-dir", str(tmp_path / "out"),
                     "--representative", str(tmp_path / "bad.npy"), "--tflite", "none"]) == 2
    assert "channels is 4, expected 3" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "out" / "mine")) == ["1"]


@pytest.mark.slow
def test_named_model_end_to_end_cli(tmp_path, capsys):
    """RegNetX200MF (random weights: no download in CI) through the command line, SavedModel + fp32/int8 + ONNX."""
    code = cli_main(["export", "RegNetX200MF", "--weights", "none", "--output-dir", str(tmp_path),
                     "--tflite", "fp32,int8", "--onnx", "--min-agreement", "0", "--verify-images", "8",
                     "--calibration-images", "16", "--latency-runs", "3", "--threads", "2", "--json", "--quiet"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    path = tmp_path / "regnetx200mf" / "1"
    assert report["path"] == str(path) and (path / "saved_model.pb").is_file()
    assert report["savedmodel"]["max_abs_diff"] <= 1e-5 and report["savedmodel"]["xla_must_compile"] == []
    assert report["bn_fold"]["folded"] == 1 + 13 * 3 + 4 and report["bn_fold"]["max_abs_diff"] < 1e-4
    assert report["tflite"]["fp32"]["top1_agreement"] == 1.0 and report["tflite"]["fp32"]["max_abs_diff"] < 1e-4
    assert report["tflite"]["fp32"]["ops"]["CONV_2D"] == 1 + 13 * 3 + 4  # stem, 3 per block, 4 projections
    assert report["onnx"]["max_abs_diff"] < 1e-4
    assert report["eval"] == {"size": 224, "crop_pct": 0.875, "interpolation": "bicubic"}
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant(_encoded(_pixels(1, 300), "jpeg")))
    assert out["top_k_labels"].shape == (1, 5) and out["probabilities"].shape == (1, 1000)


@pytest.mark.skipif(not hasattr(keras_regnet, "RegNetModel"), reason="needs the RegNetModel class")
def test_fine_tuned_keras_file_serves_its_own_class_names_and_eval(tmp_path, capsys):
    """A .keras file of a fine-tuned model: export reads its class names and eval transform, flags override."""
    model = keras_regnet.AnyNet(**TINY, input_shape=(None, None, 3), classes=3)
    names = ["cat", "dog", "fox"]
    model.set_pretrained_cfg(class_names=names, size=40, crop_pct=1.0, interpolation="bilinear")
    model.save(tmp_path / "pets.keras")
    code = cli_main(["export", str(tmp_path / "pets.keras"), "--output-dir", str(tmp_path / "out"), "--tflite",
                     "none", "--verify-images", "4", "--quiet", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["eval"] == {"size": 40, "crop_pct": 1.0, "interpolation": "bilinear"}
    assert report["model"] == "pets" and report["labels"] == "own"
    loaded = tf.saved_model.load(report["path"])
    image = np.random.default_rng(5).uniform(0, 255, (50, 60, 3)).astype("uint8")
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant(_encoded(image[None], "png")))
    ref = model.predict(resize_and_center_crop(image[None].astype("float32"), 40, 1.0, "bilinear").numpy(),
                        verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=1e-5)
    assert out["top_k_labels"].numpy()[0].astype(str).tolist() == [names[i] for i in np.argsort(-ref[0])]

    code = cli_main(["export", str(tmp_path / "pets.keras"), "--output-dir", str(tmp_path / "out"), "--tflite",
                     "none", "--verify-images", "4", "--quiet", "--json", "--crop-pct", "0.5"])
    assert code == 0 and json.loads(capsys.readouterr().out)["eval"]["crop_pct"] == 0.5


def test_export_options_are_one_object(tmp_path):
    from keras_regnet.export import ExportOptions

    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    options = ExportOptions(tflite=(), verify_images=4, calibration_images=4, progress=False, top_k=2)
    report = export_model(model, str(tmp_path), "m", options)
    assert report["savedmodel"]["signatures"]["serving_default"]["outputs"]["top_k_classes"] == ["int32", [None, 2]]
    with pytest.raises(ExportError, match="top_k must be a positive integer"):
        export_model(model, str(tmp_path), "m", options, top_k=0)
    with pytest.raises(TypeError):
        export_model(model, str(tmp_path), "m", options, no_such_option=1)
