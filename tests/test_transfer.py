"""Transfer learning helpers: stage freezing (BatchNorm in inference mode), head replacement, one-call builder."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import keras_regnet  # noqa: E402
from keras_regnet import transfer  # noqa: E402


def stage_of(layer_name):
    """The stage a layer belongs to, read off the naming convention: an oracle independent of the model's record."""
    import re

    if layer_name.startswith("stem_"):
        return "stem"
    m = re.match(r"^(s\d+)_b\d+_", layer_name)
    if m:
        return m.group(1)
    return "head" if layer_name.startswith(("head_", "predictions")) else None
from conftest import TINY, TINY_SE  # noqa: E402

DEEPER = dict(TINY_SE, depths=(1, 2, 1, 1))


def _tiny(**kwargs):
    kwargs.setdefault("input_shape", (32, 32, 3))
    return keras_regnet.AnyNet(**DEEPER, **kwargs)


def _snapshot(model):
    """{variable path: value} of every weight, trainable or not (BatchNorm moving statistics included)."""
    return {w.path: np.array(w.numpy()) for w in model.weights}


def _changed_stages(before, after):
    """Which stages had any variable change, and which kept all of them (per variable's layer name)."""
    changed, kept = set(), set()
    for path, value in before.items():
        layer = path.split("/")[-2]
        stage = stage_of(layer)
        (changed if not np.array_equal(value, after[path]) else kept).add(stage)
    return changed, kept - changed


def _fit_one_epoch(model, classes=3, n=16):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, classes, n)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def _bn_variables(model, stage, kind):
    return {
        w.path: np.array(w.numpy())
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization) and stage_of(layer.name) == stage
        for w in layer.weights
        if kind in w.path
    }


def test_freeze_until_keeps_frozen_stages_and_their_bn_statistics_fixed():
    model = transfer.freeze_until(_tiny(classes=3), "s2")
    assert transfer.trainable_stages(model) == {
        "stem": False, "s1": False, "s2": False, "s3": True, "s4": True, "head": True,
    }
    before = _snapshot(model)
    _fit_one_epoch(model)
    changed, kept = _changed_stages(before, _snapshot(model))
    assert changed == {"s3", "s4", "head"}
    assert kept == {"stem", "s1", "s2"}
    # The unfrozen stages' BatchNorm really trained: moving statistics moved.
    after_s3 = _bn_variables(model, "s3", "moving_mean")
    assert after_s3 and all(not np.array_equal(v, before[p]) for p, v in after_s3.items())


def test_frozen_batchnorm_runs_in_inference_mode_even_with_training_true():
    model = _tiny(include_top=False)
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    # Trainable BatchNorm uses batch statistics under training=True, so outputs differ from inference...
    assert not np.allclose(model(x, training=True), model(x, training=False), atol=1e-4)
    # ...frozen BatchNorm uses its moving statistics, as the Keras fine-tuning guide requires.
    transfer.freeze_until(model, "backbone")
    np.testing.assert_allclose(model(x, training=True), model(x, training=False), rtol=1e-5, atol=1e-5)
    assert model.trainable_weights == []


def test_freeze_batchnorm_keeps_every_batchnorm_fixed_but_trains_convs():
    model = transfer.freeze_until(_tiny(classes=3), "s1", freeze_batchnorm=True)
    before = _snapshot(model)
    _fit_one_epoch(model)
    after = _snapshot(model)
    bn_paths = [p for p in before if "bn" in p.split("/")[-2]]
    assert bn_paths and all(np.array_equal(before[p], after[p]) for p in bn_paths)
    conv = "s3_b1_conv_a"
    assert not np.array_equal(model.get_layer(conv).kernel.numpy(), before[model.get_layer(conv).kernel.path])


def test_linear_probe_trains_only_the_head_parameter_count():
    model = transfer.replace_head(_tiny(include_top=False), classes=7)
    transfer.freeze_until(model, "backbone")
    n_trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert n_trainable == 32 * 7 + 7  # head_fc only: last width 32 -> 7 classes, plus bias


def test_freeze_until_depends_only_on_its_arguments():
    model = _tiny()
    transfer.freeze_until(model, "s4")
    transfer.freeze_until(model, "stem")
    assert transfer.trainable_stages(model) == {
        "stem": False, "s1": True, "s2": True, "s3": True, "s4": True, "head": True,
    }
    model.trainable = False
    transfer.freeze_until(model, None)
    assert all(transfer.trainable_stages(model).values())
    assert len(model.trainable_weights) == len([w for w in model.weights if "moving" not in w.path])


def test_freeze_until_finds_a_backbone_nested_in_a_user_model():
    backbone = _tiny(include_top=False, pooling="avg")
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(2, name="my_head")(backbone(inputs))
    model = keras.Model(inputs, outputs)
    transfer.freeze_until(model, "s3")
    assert backbone.get_layer("s3_b1_conv_a").trainable is False
    assert backbone.get_layer("s4_b1_conv_a").trainable is True
    assert model.get_layer("my_head").trainable is True


def test_freeze_until_errors():
    with pytest.raises(ValueError, match=r"unknown stage 's5'.*stem, s1, s2, s3, s4"):
        transfer.freeze_until(_tiny(), "s5")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not a keras_regnet model"):
        transfer.freeze_until(plain, "s1")


@pytest.mark.parametrize("source", ["classifier", "avg_backbone", "features"])
def test_replace_head_shares_the_backbone_and_gives_new_classes(source):
    if source == "classifier":
        old = _tiny(classes=10)
    elif source == "avg_backbone":
        old = _tiny(include_top=False, pooling="avg")
    else:
        old = keras_regnet.feature_extractor(_tiny(include_top=False), stages=("s2", "s4"))
    new = transfer.replace_head(old, classes=5, dropout=0.3)
    names = [layer.name for layer in new.layers]
    assert names[-4:] == ["head_pool", "head_dropout", "head_fc", "predictions"]
    assert new.output.shape == (None, 5)
    x = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    probs = np.asarray(new(x))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # The head is a real function of the shared backbone: recompute it from the old model's last stage.
    features = keras.Model(old.input, old.get_layer("s4_b1_out").output)(x)
    fc = new.get_layer("head_fc")
    logits = np.asarray(features).mean(axis=(1, 2)) @ fc.kernel.numpy() + fc.bias.numpy()
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    assert new.get_layer("s4_b1_conv_a") is old.get_layer("s4_b1_conv_a")


def test_replace_head_dropout_only_in_training_and_logits_option():
    model = transfer.replace_head(_tiny(include_top=False), classes=4, dropout=0.5, activation=None)
    transfer.freeze_until(model, "backbone")  # BN fixed, so dropout is the only train/infer difference
    x = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model(x), model(x))
    assert not np.allclose(model(x, training=True), model(x, training=False))
    assert np.asarray(model(x)).sum(axis=1) != pytest.approx(1.0)  # logits, not probabilities


def test_replace_head_keras_round_trip_keeps_outputs_and_frozen_stages(tmp_path):
    model = transfer.freeze_until(transfer.replace_head(_tiny(include_top=False), classes=3, dropout=0.1), "s2")
    path = tmp_path / "tl.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-6)
    assert transfer.trainable_stages(loaded) == transfer.trainable_stages(model)


def test_replace_head_errors():
    model = _tiny()
    with pytest.raises(ValueError, match="classes must be a positive integer"):
        transfer.replace_head(model, 0)
    with pytest.raises(ValueError, match="dropout must be a rate"):
        transfer.replace_head(model, 3, dropout=1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        transfer.replace_head(model, 3, activation="nope")


def test_transfer_model_builds_loads_weights_and_freezes(tmp_path):
    backbone = keras_regnet.AnyNet(**TINY, include_top=False)
    path = str(tmp_path / "backbone.weights.h5")
    backbone.save_weights(path)
    model = transfer.transfer_model(TINY_SPEC, classes=2, weights=path, freeze_until="s1", dropout=0.0)
    x = np.random.default_rng(5).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.Model(model.input, model.get_layer("s4_b1_out").output)(x), backbone(x), rtol=1e-5, atol=1e-5
    )
    assert transfer.trainable_stages(model)["s1"] is False and transfer.trainable_stages(model)["s2"] is True
    assert model.output.shape == (None, 2)
    with pytest.raises(ValueError, match="replace_head"):
        transfer.transfer_model(backbone, classes=2)


TINY_SPEC = dict(TINY, type="anynet")
