"""Weights: registry data, exactness against timm's PyTorch RegNet (committed fixtures), strict loading, Keras 2."""

import json
import os
import re

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import keras_regnet
from keras_regnet import specs
from keras_regnet.errors import WeightsMismatchError
from keras_regnet.weights import files, naming
from keras_regnet.weights import registry

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture(kind):
    """(reference arrays, RegNet kwargs, safetensors path) of the tiny timm RegNet{X,Y} made by make_fixtures.py."""
    ref = np.load(os.path.join(FIXTURES, f"tiny_regnet{kind}_ref.npz"))
    spec = json.loads(str(ref["spec"]))
    return ref, spec, os.path.join(FIXTURES, f"tiny_regnet{kind}_timm.safetensors")


def tiny_model(spec, **kwargs):
    kwargs.setdefault("input_shape", (64, 64, 3))
    kwargs.setdefault("classifier_activation", None)
    kwargs.setdefault("classes", spec["classes"])
    return keras_regnet.RegNet(**{k: v for k, v in spec.items() if k != "classes"}, **kwargs)


# ------------------------------------------------------------------------------------------------------- registry

def test_registry_covers_all_24_models_with_the_paper_weights_first():
    assert set(registry.REGISTRY) == set(specs.MODEL_NAMES)
    for name in specs.MODEL_NAMES:
        entries = keras_regnet.list_weights(name)
        first = entries[0]
        assert first["tag"] == "pycls_in1k" and first["weights"] == "imagenet" and first["default"]
        assert first["repo"] == f"timm/{registry.timm_arch(name)}.pycls_in1k"
        assert first["url"].endswith(f"/{first['repo']}/resolve/main/model.safetensors")
        # top-1 of the paper's checkpoint = 100 - the paper's published error
        assert first["top1"] == pytest.approx(100 - specs.PAPER_FIGURES[name][3], abs=1e-3)
        for e in entries:
            assert e["size"] in (224, 288, 384) and 0 < e["crop_pct"] <= 1 and e["interpolation"] == "bicubic"
            assert e["license"] and e["origin"].startswith("https://")
            assert keras_regnet.get_weights_info(name, e["weights"]) == e
        assert len({e["tag"] for e in entries}) == len(entries)


def test_registry_excludes_weights_of_other_architectures():
    repos = {e.get("repo") for entries in registry.REGISTRY.values() for e in entries}
    # torchvision's _tv variants use different widths than the paper's RegNetX-400MF / Y-800MF / Y-8.0GF
    assert not any("_tv." in (r or "") for r in repos)
    assert "timm/regnety_008.tv2_in1k" not in repos and "timm/regnetx_004.tv2_in1k" not in repos
    assert "timm/regnetx_008.tv2_in1k" in repos
    # tf_keras builds RegNetX-8.0GF's first stage with groups=0: no Keras 2 weights for it
    assert "keras2" not in [e["tag"] for e in keras_regnet.list_weights("RegNetX-8.0GF")]
    k2 = keras_regnet.get_weights_info("RegNetY600MF", "imagenet:keras2")
    assert k2["url"] == "https://storage.googleapis.com/tensorflow/keras-applications/regnet/regnety006.h5"
    assert re.fullmatch("[0-9a-f]{64}", k2["sha256"]) and re.fullmatch("[0-9a-f]{64}", k2["sha256_notop"])
    assert k2["architecture"] == {"padding": "same", "normalization": "unit"}
    quoted = keras_regnet.get_weights_info("RegNetY-8.0GF", "imagenet:ra3_in1k")
    assert quoted["top1"] == 83.926 and quoted["size"] == 288 and quoted["crop_pct"] == 1.0
    assert keras_regnet.get_weights_info("RegNetY-600MF")["top1_timm"] == 75.27  # timm's eval, as in issue #3
    assert all(e["top1"] for entries in registry.REGISTRY.values() for e in entries if e["tag"] != "keras2")


def test_unknown_tags_and_names_are_clear_errors():
    with pytest.raises(ValueError, match="Available: 'imagenet', 'imagenet:pycls_in1k'"):
        keras_regnet.get_weights_info("RegNetX-200MF", "imagenet:ra3_in1k")
    with pytest.raises(ValueError, match="unknown model name"):
        keras_regnet.list_weights("RegNetZ-1GF")
    with pytest.raises(ValueError, match="no weights 'imagenet:nope'"):
        keras_regnet.RegNetX200MF(weights="imagenet:nope")


# -------------------------------------------------------------------------------- exactness vs timm (PyTorch)

@pytest.mark.parametrize("kind", ["x", "y"])
def test_timm_weights_give_timm_logits_and_features(kind):
    ref, spec, path = fixture(kind)
    images = ref["images"].astype("float32")
    model = tiny_model(spec, weights=path)
    assert np.abs(model.predict(images, verbose=0) - ref["logits"]).max() <= 1e-4
    backbone = tiny_model(spec, include_top=False, input_shape=None, weights=path)
    feats = backbone.predict(images, verbose=0)
    assert feats.shape == ref["features"].shape
    assert np.abs(feats - ref["features"]).max() <= 1e-4 * max(1.0, np.abs(ref["features"]).max())


def timm_to_pycls(path):
    """A timm-format fixture rewritten with pycls's key names and BGR stem, as pycls checkpoints are."""
    inverse = naming.TIMM_TO_PYCLS
    pycls = {}
    for key, value in load_file(path).items():
        m = re.match(r"^(s\d+\.b\d+)\.(.+)\.(\w+)$", key)
        if m and m.group(2) in inverse:
            key = f"{m.group(1)}.{inverse[m.group(2)]}.{m.group(3)}"
        if key == "stem.conv.weight":
            value = value[:, ::-1].copy()  # pycls checkpoints take BGR
        pycls[key] = value
    return pycls


def test_pycls_format_with_bgr_stem_loads_to_the_same_logits(tmp_path):
    ref, spec, path = fixture("y")
    pycls = timm_to_pycls(path)
    assert "s1.b1.f.se.f_ex.0.weight" in pycls and "s1.b1.proj.weight" in pycls and "s1.b1.f.c_bn.running_var" in pycls
    save_file(pycls, str(tmp_path / "pycls.safetensors"))
    model = tiny_model(spec, weights=str(tmp_path / "pycls.safetensors"))
    assert np.abs(model.predict(ref["images"].astype("float32"), verbose=0) - ref["logits"]).max() <= 1e-4


def test_export_state_dict_round_trips_to_identical_tensors():
    _, spec, path = fixture("y")
    model = tiny_model(spec, weights=path)
    exported = files.export_state_dict(model)
    original = load_file(path)
    assert set(exported) == {k for k in original if not k.endswith("num_batches_tracked")}
    for key, value in exported.items():
        np.testing.assert_array_equal(value, original[key].astype("float32"), err_msg=key)


# ------------------------------------------------------------------------------------------ strict loading

def test_weights_of_another_model_are_refused_naming_the_first_tensor():
    _, spec, x_path = fixture("x")
    _, _, y_path = fixture("y")
    with pytest.raises(WeightsMismatchError, match=r"no tensor 's1\.b1\.se\.fc1\.weight' for layer 's1_b1_se_reduce'"):
        tiny_model(dict(spec, se_ratio=0.25), weights=x_path)
    with pytest.raises(WeightsMismatchError, match=r"tensor 's1\.b1\.se\.fc1\.(weight|bias)' .* has no place in the model \(24 unused"):
        tiny_model(spec, weights=y_path)
    with pytest.raises(WeightsMismatchError, match=r"'stem\.conv\.weight' .* shape \(16, 3, 3, 3\).*stem_conv"):
        tiny_model(dict(spec, stem_width=24), weights=x_path)
    with pytest.raises(WeightsMismatchError, match=r"'stem\.conv\.weight' .* shape \(16, 3, 3, 3\), which does not fit"):
        keras_regnet.RegNetX200MF(weights=x_path)


def test_mismatch_leaves_the_model_untouched():
    _, spec, x_path = fixture("x")
    model = tiny_model(dict(spec, se_ratio=0.25))
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightsMismatchError):
        files.load_file_into_model(model, x_path)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_truncated_and_garbage_files_are_clear_errors(tmp_path):
    _, spec, path = fixture("x")
    data = open(path, "rb").read()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsMismatchError, match="truncated or not a safetensors file"):
        tiny_model(spec, weights=str(tmp_path / "cut.safetensors"))
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(WeightsMismatchError, match="damaged or not HDF5"):
        tiny_model(spec, weights=str(tmp_path / "junk.weights.h5"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tiny_model(spec, weights=str(tmp_path / "missing.safetensors"))
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported weights file"):
        tiny_model(spec, weights=str(tmp_path / "w.npz"))


def test_keras_weights_of_a_different_architecture_are_refused(tmp_path):
    _, spec, path = fixture("x")
    other = tiny_model(dict(spec, stem_width=24))
    other.save_weights(str(tmp_path / "other.weights.h5"))
    with pytest.raises(WeightsMismatchError, match="holds weights of .* but the model is .*spec differ"):
        tiny_model(spec, weights=str(tmp_path / "other.weights.h5"))


def test_other_class_count_keeps_the_backbone_and_skips_the_head():
    ref, spec, path = fixture("x")
    with pytest.warns(UserWarning, match="10 classes and the model's 5"):
        model = tiny_model(spec, classes=5, weights=path)
    import keras

    feats = keras.Model(model.input, model.get_layer("head_pool").output).predict(ref["images"].astype("float32"), verbose=0)
    np.testing.assert_allclose(feats, ref["features"].mean(axis=(1, 2)), atol=1e-4, rtol=1e-5)


def test_imagenet_weights_with_ten_classes_is_refused():
    with pytest.raises(ValueError, match="classes=1000"):
        keras_regnet.RegNetY600MF(weights="imagenet", classes=10)


# ---------------------------------------------------------------------------------- Keras 2 (tf_keras) migration

@pytest.mark.parametrize("name, ctor", [("RegNetX-200MF", "RegNetX002"), ("RegNetY-200MF", "RegNetY002")])
@pytest.mark.slow  # builds tf_keras's own RegNets (~15 s each)
def test_keras2_h5_matches_tf_keras_own_model(tmp_path, name, ctor):
    tf_keras = pytest.importorskip("tf_keras")
    ref = getattr(tf_keras.applications.regnet, ctor)(weights=None, input_shape=(64, 64, 3))
    rng = np.random.RandomState(0)
    new = []
    for w in ref.weights:  # random, non-trivial values everywhere (BN statistics included)
        shape = tuple(w.shape)
        if "moving_variance" in w.name:
            new.append(rng.uniform(0.5, 2.0, shape))
        elif "moving_mean" in w.name or len(shape) == 1:
            new.append(rng.normal(0, 0.2, shape) + (1.0 if "gamma" in w.name else 0.0))
        else:
            new.append(rng.normal(0, (2.0 / np.prod(shape[:-1])) ** 0.5, shape))
    ref.set_weights([a.astype("float32") for a in new])
    path = str(tmp_path / f"{ctor}.h5")
    ref.save_weights(path)
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = ref.predict(images, verbose=0)  # tf_keras's head returns logits
    ours = keras_regnet.build_model(
        name, padding="same", normalization="unit", weights=path, input_shape=(64, 64, 3), classifier_activation=None
    )
    assert np.abs(ours.predict(images, verbose=0) - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    # a whole-model .h5 (model.save) loads the same way
    ref.save(str(tmp_path / "whole.h5"))
    again = keras_regnet.build_model(name, padding="same", normalization="unit", weights=str(tmp_path / "whole.h5"),
                                     input_shape=(64, 64, 3), classifier_activation=None)
    np.testing.assert_array_equal(again.get_layer("s1_b1_conv_b").kernel.numpy(), ours.get_layer("s1_b1_conv_b").kernel.numpy())
    # without the explicit options the outputs would be silently shifted: refused
    with pytest.raises(WeightsMismatchError, match="padding='same', normalization='unit'"):
        getattr(keras_regnet, specs.constructor_name(name))(weights=path, input_shape=(64, 64, 3))
    with pytest.raises(WeightsMismatchError, match="normalization='unit'"):
        keras_regnet.build_model(name, padding="same", weights=path, input_shape=(64, 64, 3))
    # a Keras 2 file of another architecture is refused too
    with pytest.raises(WeightsMismatchError, match="different"):
        keras_regnet.build_model("RegNetX-400MF", padding="same", normalization="unit", weights=path)
    # and PyTorch-trained weights are refused by a model built with Keras 2's padding
    _, spec, x_path = fixture("x")
    params = specs.RegNetParams(**{k: v for k, v in spec.items() if k != "classes"})
    with pytest.raises(WeightsMismatchError, match="'symmetric' padding"):
        keras_regnet.build_model(params, classes=10, padding="same", weights=x_path)


def test_keras2_tag_selects_the_keras2_architecture_and_conflicts_are_refused():
    with pytest.raises(ValueError, match="need padding='same'"):
        keras_regnet.build_model("RegNetY-600MF", padding="symmetric", weights="imagenet:keras2")
    with pytest.raises(ValueError, match="padding must be one of"):
        keras_regnet.build_model("RegNetY-600MF", padding="valid")
    m = keras_regnet.build_model("RegNetX-200MF", weights=None, padding="same", normalization="unit", input_shape=(64, 64, 3))
    names = {layer.name for layer in m.layers}
    assert "stem_pad" not in names and m.get_layer("stem_conv").padding == "same"
    assert np.allclose(m.get_layer("preprocessing").scale, 1 / 255.0)


def test_pycls_pyth_checkpoint_loads_when_torch_is_installed(tmp_path):
    torch = pytest.importorskip("torch")  # .pyth needs torch; CI without it skips this format only
    ref, spec, path = fixture("x")
    state = {key: torch.from_numpy(value) for key, value in timm_to_pycls(path).items()}
    torch.save({"epoch": 99, "model_state": state}, str(tmp_path / "model.pyth"))  # pycls's checkpoint layout
    model = tiny_model(spec, weights=str(tmp_path / "model.pyth"))
    assert np.abs(model.predict(ref["images"].astype("float32"), verbose=0) - ref["logits"]).max() <= 1e-4


def test_keras_files_load_through_weights_path(tmp_path):
    ref, spec, path = fixture("y")
    model = tiny_model(spec, weights=path)
    model.save(str(tmp_path / "m.keras"))
    model.save_weights(str(tmp_path / "m.weights.h5"))
    images = ref["images"].astype("float32")
    for f in ("m.keras", "m.weights.h5"):
        again = tiny_model(spec, weights=str(tmp_path / f))
        np.testing.assert_array_equal(again.predict(images, verbose=0), model.predict(images, verbose=0))


@pytest.mark.slow  # Keras 2 parity (tf_keras model)
def test_fine_tuned_keras2_model_with_its_own_head_loads(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    base = tf_keras.applications.regnet.RegNetX002(weights=None, include_top=False, input_shape=(64, 64, 3))
    x = tf_keras.layers.GlobalAveragePooling2D()(base.output)
    fine_tuned = tf_keras.Model(base.input, tf_keras.layers.Dense(5, name="my_head")(x))
    rng = np.random.RandomState(3)
    fine_tuned.set_weights([
        rng.uniform(0.5, 2.0, w.shape) if "moving_variance" in w.name else rng.normal(0, 0.3, w.shape)
        for w in fine_tuned.weights
    ])
    fine_tuned.save(str(tmp_path / "ft.h5"))  # the whole model, the RegNet nested inside
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    ours = keras_regnet.build_model("RegNetX-200MF", padding="same", normalization="unit", classes=5,
                                    weights=str(tmp_path / "ft.h5"), input_shape=(64, 64, 3), classifier_activation=None)
    expected = fine_tuned.predict(images, verbose=0)
    assert np.abs(ours.predict(images, verbose=0) - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
