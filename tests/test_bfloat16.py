"""bfloat16 inference (``InferenceModel(model, precision="bfloat16")``): bfloat16 convolutions, float32 outputs, and
the same top-1 as float32 on a trained model."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import keras_regnet  # noqa: E402
from keras_regnet.inference import InferenceModel  # noqa: E402

from conftest import TINY_SE  # noqa: E402
from test_inference import _images, _randomize  # noqa: E402

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fast path is a TF graph")


def test_bfloat16_graph_runs_convolutions_in_bfloat16_with_float32_outputs():
    model = _randomize(keras_regnet.AnyNet(**TINY_SE, input_shape=(48, 48, 3), classes=10, classifier_activation=None))
    x = _images(4, 48)
    ref = model(x, training=False).numpy()
    fast = InferenceModel(model, precision="bfloat16")
    out = fast(x)
    assert out.dtype == tf.float32 and out.shape == ref.shape
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal.
    err = np.abs(out.numpy() - ref).max() / np.abs(ref).max()
    assert 0 < err < 0.05, err
    graph = fast.function.get_concrete_function().graph
    convs = [op for op in graph.get_operations() if op.type == "Conv2D"]
    assert convs and all(op.get_attr("T") == tf.bfloat16 for op in convs)
    assert fast.report["precision"] == "bfloat16" and fast.report["keras_layers"] == {}
    np.testing.assert_allclose(fast.predict(x, batch_size=3), out.numpy(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="precision"):
        InferenceModel(model, precision="float16")


def test_bfloat16_top1_agrees_with_float32_on_a_trained_model():
    from keras_regnet.datasets import digits_arrays

    keras.utils.set_random_seed(0)
    train_x, train_y = digits_arrays("train")
    test_x, test_y = digits_arrays("test")
    model = keras_regnet.RegNet(depth=6, w0=16, wa=12.0, wm=2.0, group_width=8, se_ratio=0.25,
                                input_shape=(32, 32, 3), classes=10)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(train_x.astype("float32"), train_y, batch_size=64, epochs=4, verbose=0)
    test_x = test_x.astype("float32")
    float32 = InferenceModel(model).predict(test_x, batch_size=64)
    bfloat16 = InferenceModel(model, precision="bfloat16").predict(test_x, batch_size=64)
    accuracy = float(np.mean(float32.argmax(1) == test_y))
    assert accuracy > 0.7, accuracy  # a trained model, so agreement means something
    agreement = float(np.mean(bfloat16.argmax(1) == float32.argmax(1)))
    assert agreement >= 0.99, agreement
    assert abs(float(np.mean(bfloat16.argmax(1) == test_y)) - accuracy) <= 0.01
