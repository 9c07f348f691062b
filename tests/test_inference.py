"""keras_regnet.inference: the fast inference mode computes what the Keras model computes (within 1e-5)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import keras_regnet  # noqa: E402
from keras_regnet.inference import InferenceModel, inference_function  # noqa: E402

from conftest import TINY, TINY_SE  # noqa: E402


def _randomize(model, seed=0):
    """Non-trivial BatchNorm statistics and biases, so that folding really changes the weights."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, c).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.2, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.2, tuple(layer.bias.shape)).astype("float32"))
    return model


def _images(n=3, size=48, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


@pytest.mark.parametrize("spec", [TINY, TINY_SE], ids=["X", "Y-SE"])
def test_outputs_equal_keras_model(spec):
    model = _randomize(keras_regnet.AnyNet(**spec, input_shape=(48, 48, 3), classes=10, classifier_activation=None))
    x = _images()
    ref = model(x, training=False).numpy()
    fast = InferenceModel(model)
    out = fast(x).numpy()
    assert out.shape == ref.shape == (3, 10)
    assert np.abs(ref).max() > 0.1  # logits of a real magnitude, so 1e-5 is a meaningful bound
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    # Every layer became plain TF ops (no Keras layer called), every BN was folded away and so was the input
    # normalisation (its Rescaling is one more Identity; the stem's zero padding pads with the normalised zero).
    assert fast.report["keras_layers"] == {}
    assert fast.report["input_folded"] and fast.report["emitted"]["ValuePad2D"] == 1
    assert fast.report["emitted"]["Identity"] == 1 + sum(
        isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers
    )
    assert "Rescaling" not in fast.report["emitted"]
    graph_ops = {op.type for op in fast.function.get_concrete_function().graph.get_operations()}
    assert "ReadVariableOp" not in graph_ops  # weights are constants
    if spec is TINY_SE:
        assert "MatMul" in graph_ops  # SE's 1x1-on-1x1 convs run as matmuls


def test_named_model_softmax_and_predict_batches():
    model = _randomize(keras_regnet.RegNetY200MF(weights=None, input_shape=(64, 64, 3)))
    x = _images(5, 64)
    ref = model.predict(x, verbose=0)
    fast = InferenceModel(model)
    np.testing.assert_allclose(fast.predict(x, batch_size=2), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fast.predict(x, batch_size=2).sum(axis=1), 1.0, atol=1e-5)


def test_dynamic_shape_features_and_pooling():
    model = _randomize(keras_regnet.AnyNet(**TINY_SE, include_top=False, pooling="avg"))
    fast = inference_function(model)
    for size in (32, 56):
        x = _images(2, size)
        np.testing.assert_allclose(fast(x).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)


def test_unknown_layers_fall_back_to_keras():
    inputs = keras.Input((40, 40, 3))
    backbone = _randomize(keras_regnet.AnyNet(**TINY, include_top=False, input_shape=(40, 40, 3)))
    y = backbone(inputs)
    y = keras.layers.GlobalMaxPooling2D()(y)
    y = keras.layers.Dropout(0.5)(y)  # must be inactive at inference
    y = keras.layers.Dense(4, activation="tanh")(y)  # tanh: not emitted, called as the Keras layer
    model = keras.Model(inputs, y)
    x = _images(2, 40)
    fast = InferenceModel(model)
    np.testing.assert_allclose(fast(x).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    assert fast.report["keras_layers"].get("Dense") == 1
    assert fast.report["keras_layers"].get("Dropout") == 1


def test_snapshot_does_not_follow_later_weight_changes():
    model = _randomize(keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3, classifier_activation=None))
    x = _images(2, 32)
    fast = InferenceModel(model)
    before = fast(x).numpy()
    model.get_layer("head_fc").bias.assign(np.full(3, 100.0, "float32"))
    np.testing.assert_array_equal(fast(x).numpy(), before)
    np.testing.assert_allclose(InferenceModel(model)(x).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)


def test_bad_inputs():
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    fast = InferenceModel(model)
    with pytest.raises(ValueError, match="batch_size"):
        fast.predict(_images(2, 32), batch_size=0)
    with pytest.raises(ValueError, match="shape"):
        fast.predict(np.zeros((32, 32, 3), "float32"))
    with pytest.raises(ValueError, match="empty"):
        fast.predict(np.zeros((0, 32, 32, 3), "float32"))
    with pytest.raises(ValueError, match="functional"):
        InferenceModel(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
