"""RegNetModel: every constructor returns it; it carries spec, feature taps and eval config through .keras files;
peers' names work; weights files are checked against the architecture and load all or nothing."""

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import keras  # noqa: E402
import keras_regnet  # noqa: E402
from keras_regnet import specs  # noqa: E402
from keras_regnet.errors import WeightsMismatchError  # noqa: E402
from keras_regnet.model import RegNetModel  # noqa: E402
from conftest import TINY, TINY_SE  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code, timeout=300, env=None):
    """Run ``code`` in a fresh Python process (the repository on the path); return its stdout."""
    full_env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _x(n=2, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _snapshot(model):
    return [np.array(v.numpy()) for v in model.weights]


# ------------------------------------------------------------------------------------------------ the class

def test_every_constructor_returns_the_model_class():
    built = [
        keras_regnet.RegNetX200MF(weights=None, input_shape=(32, 32, 3)),
        keras_regnet.RegNetY006(weights=None, include_top=False),  # tf_keras / kimm alias
        keras_regnet.get_model("regnetx_002", weights=None, include_top=False, pooling="avg"),  # timm name
        keras_regnet.RegNet(depth=6, w0=16, wa=8.0, wm=2.0, group_width=8, input_shape=(32, 32, 3), classes=5),
        keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3),
        keras_regnet.models.build_model(dict(TINY, type="anynet"), include_top=False),
    ]
    built.append(keras_regnet.feature_extractor(built[4]))
    built.append(keras_regnet.replace_head(built[5], classes=4, dropout=0.1))
    built.append(keras_regnet.transfer_model(dict(TINY, type="anynet"), classes=2, weights=None))
    for model in built:
        assert isinstance(model, RegNetModel) and isinstance(model, keras.Model), model
        assert model.feature_info and model.layer_roles
    assert built[1].spec == specs.get_params("RegNetY-600MF")
    assert built[1].build_options["arch"] == "RegNetY-600MF"
    assert isinstance(built[3].spec, specs.RegNetParams) and isinstance(built[4].spec, specs.AnyNetParams)


def test_feature_info_and_pyramid_are_recorded_while_building():
    model = keras_regnet.AnyNet(**TINY, include_top=False)
    info = model.feature_info
    assert list(info) == ["stem", "s1", "s2", "s3", "s4"]
    assert [i.stride for i in info.values()] == [2, 4, 8, 16, 32]
    assert [i.channels for i in info.values()] == [32, 8, 16, 24, 32]
    assert list(model.pyramid_outputs) == ["P1", "P2", "P3", "P4", "P5"]
    # The pyramid tensors are the model's own: a detector built on them shares its layers.
    detector = keras.Model(model.inputs, model.pyramid_outputs)
    out = detector(_x(1, 64))
    assert out["P3"].shape == (1, 8, 8, 16) and out["P5"].shape == (1, 2, 2, 32)
    roles = model.layer_roles
    assert roles["s2_b1_conv_b"] == keras_regnet.blocks.LayerRole("s2", 1, "conv_b", 8)
    assert roles["s2_b1_conv_a"].stride == 4  # before the block's stride
    assert roles["stem_conv"].stage == "stem" and roles["preprocessing"].stage == "preprocessing"


def test_repr_and_summary_state_the_spec_in_one_line():
    model = keras_regnet.RegNetY200MF(weights=None, input_shape=(64, 64, 3), classes=7)
    line = repr(model)
    assert "\n" not in line
    for part in ("RegNetY-200MF", "d=13", "w0=24", "wa=36.44", "wm=2.49", "g=8", "se=0.25", "64x64x3", "7 classes"):
        assert part in line, part
    lines = []
    model.summary(print_fn=lambda s, *a, **k: lines.append(s))
    assert lines[0] == model.describe()


def test_config_rebuilds_the_same_architecture():
    model = keras_regnet.RegNet(depth=6, w0=16, wa=8.0, wm=2.0, group_width=8, se_ratio=0.25,
                                input_shape=(32, 32, 3), classes=5, classifier_activation=None)
    config = json.loads(json.dumps(model.get_config()))  # JSON-serialisable
    clone = RegNetModel.from_config(config)
    assert clone.spec == model.spec and clone.build_options == model.build_options
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert [v.shape for v in clone.weights] == [v.shape for v in model.weights]
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(_x()), model(_x()), rtol=1e-6, atol=1e-6)


@pytest.mark.slow  # a fresh process; test_design's plain-import load stays in the fast tier
def test_keras_round_trip_in_a_fresh_process_keeps_spec_features_and_pretrained_cfg(tmp_path):
    base = keras_regnet.AnyNet(**TINY_SE, include_top=False, input_shape=(None, None, 3))
    model = keras_regnet.replace_head(base, classes=3, dropout=0.2)
    keras_regnet.freeze_until(model, "s2")
    model.set_pretrained_cfg(class_names=["cat", "dog", "fox"], size=48, crop_pct=1.0, interpolation="bilinear")
    path = tmp_path / "tuned.keras"
    model.save(path)
    x = _x(2, 48)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    out = _run(f"""
        import json, numpy as np
        import keras_regnet, keras
        m = keras.saving.load_model({str(path)!r})
        from keras_regnet.pretrained import class_names, eval_config
        y = m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)
        print(json.dumps({{
            "cls": type(m).__name__, "spec": m.spec.to_dict(), "opts": m.build_options,
            "features": {{k: list(v) for k, v in m.feature_info.items()}}, "cfg": m.pretrained_cfg,
            "names": class_names(m), "eval": list(eval_config(m)),
            "frozen": sorted({{m.layer_roles[l.name].stage for l in m.layers if l.weights and not l.trainable}}),
            "diff": float(np.abs(y - np.load({str(tmp_path / 'y.npy')!r})).max()),
        }}))
    """)
    got = json.loads(out.strip().splitlines()[-1])
    assert got["cls"] == "RegNetModel"
    assert got["spec"] == model.spec.to_dict()
    assert got["opts"] == json.loads(json.dumps(model.build_options))
    assert got["opts"]["head_dropout"] == 0.2 and got["opts"]["classes"] == 3
    assert got["features"] == {k: list(v) for k, v in model.feature_info.items()}
    assert got["names"] == ["cat", "dog", "fox"] and got["cfg"]["class_names"] == ["cat", "dog", "fox"]
    assert got["eval"] == [48, 1.0, "bilinear"]
    assert got["frozen"] == ["s1", "s2", "stem"]
    assert got["diff"] < 1e-6


_IMPORTS = {
    "keras_regnet first": "import keras_regnet, keras",
    "keras first": "import keras, keras_regnet",
    # TensorFlow looks keras up before importing it (the CLI imports TensorFlow first): registration must survive.
    "keras_regnet, then tensorflow": "import keras_regnet, tensorflow, keras",
}


@pytest.mark.parametrize("order", list(_IMPORTS))
@pytest.mark.slow  # three fresh processes; test_design's plain-import case stays in the fast tier
def test_keras_files_load_after_import_keras_regnet_in_any_order(tmp_path, order):
    from keras_regnet.training.optim import DecaySGD

    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=2)
    model.compile(DecaySGD(0.1), "sparse_categorical_crossentropy")  # the trainer's optimizer is restored too
    path = tmp_path / "m.keras"
    model.save(path)
    out = _run(f"""
        {_IMPORTS[order]}
        m = keras.saving.load_model({str(path)!r})
        print(type(m).__name__, type(m.optimizer).__name__, m.feature_info['s4'].channels)
    """)
    assert out.split()[-3:] == ["RegNetModel", "DecaySGD", "32"]


def test_import_keras_regnet_loads_neither_keras_nor_tensorflow():
    out = _run("""
        import sys, time
        t = time.perf_counter()
        import keras_regnet
        keras_regnet.complexity("RegNetY-600MF"); keras_regnet.generate_regnet(24, 36.44, 2.49, 13)
        print("keras" in sys.modules, "tensorflow" in sys.modules, "jax" in sys.modules, time.perf_counter() - t)
    """)
    keras_loaded, tf_loaded, jax_loaded, seconds = out.split()
    assert (keras_loaded, tf_loaded, jax_loaded) == ("False", "False", "False")


# ------------------------------------------------------------------------------------------------ names

def test_peer_names_and_list_models():
    assert keras_regnet.RegNetY006 is not keras_regnet.RegNetY600MF  # its own constructor, documented as an alias
    for alias in ("RegNetX002", "RegNetX016", "RegNetX160", "RegNetY032", "RegNetY320"):
        assert callable(getattr(keras_regnet, alias))
    assert specs.canonical_name("RegNetX016") == "RegNetX-1.6GF"
    assert specs.canonical_name("RegNetX160") == "RegNetX-16GF"
    assert specs.canonical_name("regnety_006") == "RegNetY-600MF"
    assert specs.split_model_name("regnety_080.ra3_in1k") == ("RegNetY-8.0GF", "ra3_in1k")
    names = keras_regnet.list_models()
    assert len(names) == 24 and names[0] == "RegNetX200MF"
    assert keras_regnet.list_models("regnety_0*") == [
        "RegNetY200MF", "RegNetY400MF", "RegNetY600MF", "RegNetY800MF", "RegNetY1_6GF", "RegNetY3_2GF",
        "RegNetY4_0GF", "RegNetY6_4GF", "RegNetY8_0GF"]
    tagged = keras_regnet.list_models("regnety_080*", pretrained=True)
    assert "regnety_080.pycls_in1k" in tagged and "regnety_080.ra3_in1k" in tagged
    assert all(n.startswith("regnety_080.") for n in tagged)


def test_a_timm_tagged_name_selects_that_weights_eval_config():
    model = keras_regnet.get_model("regnety_080.ra3_in1k", weights=None, include_top=False)
    assert model.spec == specs.get_params("RegNetY-8.0GF")
    cfg = model.pretrained_cfg
    assert (cfg["size"], cfg["crop_pct"], cfg["weights"]) == (288, 1.0, None)  # weights=None: the eval config only
    with pytest.raises(ValueError, match="weights of RegNetY-8.0GF, not of RegNetY-600MF"):
        keras_regnet.RegNetY600MF(weights="regnety_080.ra3_in1k")


# ------------------------------------------------------------------------------------------------ hostile input

def test_another_models_weights_file_changes_nothing(tmp_path):
    """Keras's loader assigns layer by layer: before, a wrong file overwrote 17-44 variables before failing."""
    other = keras_regnet.AnyNet(depths=(1, 1, 1, 2), widths=(8, 16, 24, 48), bottleneck_ratios=(1,) * 4,
                                group_widths=(8,) * 4, input_shape=(32, 32, 3), classes=10)
    path = str(tmp_path / "other.weights.h5")
    other.save_weights(path)
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=10)
    before = _snapshot(model)
    for load in (model.load_weights, lambda p: keras_regnet.weights.load_weights(model, p)):
        with pytest.raises(WeightsMismatchError, match="depths"):
            load(path)
        assert all(np.array_equal(a, b) for a, b in zip(before, _snapshot(model)))
    # A plain Keras file records no architecture: the structural check still refuses it whole.
    import h5py

    with h5py.File(path, "a") as f:
        del f.attrs["keras_regnet_architecture"]
    with pytest.raises(WeightsMismatchError):
        model.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(before, _snapshot(model)))


def test_keras2_architecture_weights_do_not_load_into_a_default_model(tmp_path):
    """Before: a padding='same', normalization='unit' file loaded silently (features off by 139%)."""
    keras2 = keras_regnet.models.build_model(dict(TINY, type="anynet"), padding="same", normalization="unit",
                                             input_shape=(32, 32, 3))
    path = str(tmp_path / "k2.weights.h5")
    keras2.save_weights(path)
    default = keras_regnet.models.build_model(dict(TINY, type="anynet"), input_shape=(32, 32, 3))
    before = _snapshot(default)
    with pytest.raises(WeightsMismatchError, match=r"padding=same.*padding=symmetric|padding and normalization"):
        default.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(before, _snapshot(default)))
    same = keras_regnet.models.build_model(dict(TINY, type="anynet"), padding="same", normalization="unit",
                                           input_shape=(32, 32, 3), weights=path)
    np.testing.assert_allclose(same(_x()), keras2(_x()), rtol=1e-6, atol=1e-6)


def test_a_keras_file_of_another_spec_is_refused_naming_both(tmp_path):
    path = str(tmp_path / "x.keras")
    keras_regnet.AnyNet(**TINY_SE, input_shape=(32, 32, 3)).save(path)
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3))
    with pytest.raises(WeightsMismatchError, match=r"se_ratio=0\.25.*se_ratio=0\.0"):
        model.load_weights(path)


@pytest.mark.parametrize("poison", ["nan", "inf", "int32"])
def test_non_finite_or_non_float_tensors_are_refused_naming_the_tensor(tmp_path, poison):
    from safetensors.numpy import save_file

    from keras_regnet.weights.files import export_state_dict

    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3))
    state = export_state_dict(model)
    key = "s2.b1.conv2.conv.weight"
    if poison == "int32":
        state[key] = state[key].astype("int32")
    else:
        state[key][0, 0, 0, 0] = np.nan if poison == "nan" else np.inf
    path = str(tmp_path / "bad.safetensors")
    save_file(state, path)
    fresh = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3))
    before = _snapshot(fresh)
    with pytest.raises(WeightsMismatchError, match=key.replace(".", r"\.")):
        keras_regnet.weights.load_weights(fresh, path)
    assert all(np.array_equal(a, b) for a, b in zip(before, _snapshot(fresh)))
    # The same in a Keras weights file.
    h5 = str(tmp_path / "bad.weights.h5")
    model.save_weights(h5)
    import h5py

    with h5py.File(h5, "a") as f:
        name = next(n for n in _datasets(f) if n.startswith("layers/") and "conv2d" in n)
        data = f[name][()]
        del f[name]
        if poison == "int32":
            f[name] = data.astype("int32")
        else:
            data.flat[0] = np.nan if poison == "nan" else np.inf
            f[name] = data
    with pytest.raises(WeightsMismatchError, match=name.split("/")[1]):
        fresh.load_weights(h5)


def _datasets(f):
    import h5py

    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def test_weights_argument_errors_are_one_clear_line(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        keras_regnet.AnyNet(**TINY, weights=str(tmp_path))
    fake = tmp_path / "notes.keras"
    fake.write_text("not a model")
    with pytest.raises(WeightsMismatchError, match="not a .keras file"):
        keras_regnet.AnyNet(**TINY, weights=str(fake))
    with pytest.raises(ValueError, match="not a Keras model file"):
        keras_regnet.load_model(str(fake))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        keras_regnet.load_model(str(tmp_path / "missing.keras"))


def test_absurd_sizes_are_refused_before_building():
    """Before: RegNet(w0=10**9) ran for 10 s and died with ResourceExhaustedError."""
    start = time.perf_counter()
    with pytest.raises(ValueError, match="billion parameters"):
        keras_regnet.RegNet(depth=13, w0=10**9, wa=36.44, wm=2.49, group_width=8)
    assert time.perf_counter() - start < 5


def test_export_name_is_the_one_the_model_carries(tmp_path):
    """`keras-regnet export runs/x/best.keras` exports under the name `train` recorded (its run's export name),
    so a re-export adds a version next to train's export instead of creating saved_models/best."""
    from keras_regnet.export import load_model_source
    from keras_regnet.pretrained import export_name

    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    model.save(tmp_path / "best.keras")
    assert load_model_source(str(tmp_path / "best.keras"))[1] == "best"  # nothing carried: the file's name
    assert export_name(model) == "custom" and export_name(arch="RegNetY-600MF") == "regnety600mf"
    model.set_pretrained_cfg(export_name=export_name(run="RegNetY600MF-shapes"))  # what train records
    model.save(tmp_path / "best.keras")
    _, name, _ = load_model_source(str(tmp_path / "best.keras"))
    assert name == "RegNetY600MF-shapes" == export_name(run="RegNetY600MF-shapes")
    assert export_name(run="my run/../x") == "my_run_.._x"  # one safe directory name


def test_one_loader_dispatches_files_presets_and_names(tmp_path, monkeypatch):
    """keras_regnet.load_model / get_model: .keras files here, presets (a folder with config.json or
    metadata.json, hf:// URIs) through keras_regnet.hub.load_preset, names through the constructors."""
    from keras_regnet import hub, loading

    calls = []
    monkeypatch.setattr(hub, "load_preset", lambda source, compile=False: calls.append(source) or "preset")
    for marker in ("config.json", "metadata.json"):
        folder = tmp_path / marker.split(".")[0]
        folder.mkdir()
        (folder / marker).write_text("{}")
        assert keras_regnet.load_model(str(folder)) == "preset" and keras_regnet.get_model(folder) == "preset"
    assert keras_regnet.load_model("hf://owner/name@v1") == "preset"
    assert calls[-1] == "hf://owner/name@v1" and len(calls) == 5
    with pytest.raises(ValueError, match="is a directory"):
        keras_regnet.load_model(str(tmp_path))  # a folder that is no preset
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    model.save(tmp_path / "m.keras")
    assert keras_regnet.get_model(str(tmp_path / "m.keras")).spec == model.spec
    assert keras_regnet.get_model("regnetx_002", weights=None, input_shape=(32, 32, 3)).build_options["arch"] \
        == "RegNetX-200MF"
    with pytest.raises(ValueError, match="holds its own"):
        loading.load_source(str(tmp_path / "m.keras"), weights="imagenet")
    source = loading.load_source(json.dumps(dict(TINY, type="anynet")), input_size=32, classes=3)
    assert (source.kind, source.arch) == ("spec", None) and source.model.output.shape[-1] == 3
