"""Folding the input normalisation into the stem conv (keras_regnet.export.input_fold): the same function, borders
included, at even and odd input sizes; models without the Rescaling -> ZeroPadding2D -> Conv2D stem are left alone;
the int8 TFLite file loses the per-channel input multiply and add."""

import numpy as np
import pytest

from conftest import TINY_SE

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import keras_regnet  # noqa: E402
from keras_regnet.export import fold_batchnorm  # noqa: E402
from keras_regnet.export.input_fold import ValuePad2D, fold_input_rescaling  # noqa: E402

from test_inference import _randomize  # noqa: E402


def _model(size, **options):
    return _randomize(keras_regnet.AnyNet(**TINY_SE, input_shape=(size, size, 3), classes=5,
                                          classifier_activation=None, **options))


@pytest.mark.parametrize("size", [32, 33])
def test_same_function_borders_included(size):
    model = _model(size)
    bn_folded, _ = fold_batchnorm(model)
    folded, done = fold_input_rescaling(bn_folded)
    assert done
    kinds = [type(layer).__name__ for layer in folded.layers]
    assert "Rescaling" not in kinds and "ZeroPadding2D" not in kinds[:4] and "ValuePad2D" in kinds
    assert folded.get_layer("stem_conv").use_bias
    x = np.random.default_rng(size).uniform(0, 255, (3, size, size, 3)).astype("float32")
    x[:, 0, :, :] = 0.0  # dark and bright borders: zero padding in normalised space is not zero in pixels
    x[:, -1, :, :] = 255.0
    stem = keras.Model(model.inputs, model.get_layer("stem_bn").output)(x)
    stem_folded = keras.Model(folded.inputs, folded.get_layer("stem_conv").output)(x)
    np.testing.assert_allclose(np.asarray(stem_folded), np.asarray(stem), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(model(x, training=False)), rtol=1e-4, atol=1e-4)
    # The original is untouched.
    assert type(model.get_layer("preprocessing")).__name__ == "Rescaling"


def test_models_without_that_stem_are_returned_unchanged():
    plain = keras_regnet.AnyNet(**TINY_SE, input_shape=(32, 32, 3), classes=5, include_preprocessing=False)
    assert fold_input_rescaling(plain) == (plain, False)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling([[[0.5, 0.25, 1.0]]], [[[1.0, 2.0, 3.0]]])(inputs)
    same = keras.Model(inputs, keras.layers.Conv2D(4, 3, strides=2, padding="same")(x))  # no explicit padding
    assert fold_input_rescaling(same) == (same, False)
    x = keras.layers.ZeroPadding2D(1)(keras.layers.Rescaling(0.0)(inputs))
    zero_scale = keras.Model(inputs, keras.layers.Conv2D(4, 3)(x))  # m = -o / s is undefined
    assert fold_input_rescaling(zero_scale) == (zero_scale, False)


def test_value_pad():
    x = np.arange(2 * 2 * 2 * 2, dtype="float32").reshape(2, 2, 2, 2)
    out = np.asarray(ValuePad2D(((1, 0), (2, 1)), [7.0, -1.0])(x))
    assert out.shape == (2, 3, 5, 2)
    np.testing.assert_array_equal(out[:, 1:, 2:4], x)
    assert (out[:, 0, :, 0] == 7).all() and (out[:, :, :2, 1] == -1).all() and (out[:, :, 4, 0] == 7).all()


def _converter_refused():
    from keras_regnet.export.tflite import check_converter

    try:
        check_converter(tf)
    except RuntimeError:
        return True
    return False


@pytest.mark.skipif(_converter_refused(), reason="TensorFlow < 2.17 cannot convert Keras 3 models to TFLite (export "
                                                  "refuses it)")
def test_int8_file_loses_the_input_multiply_and_adds_no_op_outside_xnnpack():
    from keras_regnet.export import tflite
    from keras_regnet.export.representative import sample_images

    model, _ = fold_batchnorm(_model(32))
    images = sample_images(8, 32)
    unfolded = tflite.convert(model, "int8", images)
    content = tflite.convert(fold_input_rescaling(model)[0], "int8", images)
    before, after = tflite.op_counts(unfolded), tflite.op_counts(content)
    assert after.get("MUL", 0) == before.get("MUL", 0) - 1, (before, after)  # SE's multiplies stay
    # The padding adds no op outside XNNPACK (this tiny model's 1x1 max-pool subsample is outside in both).
    assert tflite.delegation(content)["outside"] == tflite.delegation(unfolded)["outside"]
    x = images[:4]
    reference = np.asarray(model(x, training=False))
    out = tflite.run(content, x, threads=1)
    assert (np.argmax(out, -1) == np.argmax(reference, -1)).mean() >= 0.75


def test_tensorflow_whose_converter_aborts_is_refused_in_one_line(monkeypatch, tmp_path):
    """TF 2.16's TFLite converter aborts the process on Keras 3 models: refuse before converting or writing."""
    from keras_regnet.export import ExportError, export_model, tflite

    monkeypatch.setattr(tf, "__version__", "2.16.1")
    with pytest.raises(RuntimeError, match=r"needs TensorFlow >= 2\.17.*--tflite none"):
        tflite.convert(_model(32), "fp32")
    with pytest.raises(ExportError, match=r"needs TensorFlow >= 2\.17"):
        export_model(_model(32), output_dir=str(tmp_path / "out"), name="m")
    assert not (tmp_path / "out").exists()  # nothing written
    monkeypatch.setattr(tf, "__version__", "2.17.1")
    tflite.check_converter(tf)  # accepted
