"""keras.applications conventions, in both image data formats.

The first part is Keras 3's own ``keras/src/applications/applications_test.py`` pointed at our models: the same
MODEL_LIST pattern ``(constructor, last_dim, module)``, every test body kept in logic and run in ``channels_first``
and ``channels_last``. Three departures, each commented where it happens: no ImageNet download (``weights=None``;
the elephant-in-top-3 check becomes a check of decode_predictions against the predictions), a synthetic image
instead of the downloaded elephant, and no skip of ``channels_first`` inference on TensorFlow-CPU (Keras skips it
for its own models; ours run there).

The second part checks what the port alone would not: outputs are identical in both formats with the same
weights (Keras weights files, timm-format safetensors), ``preprocess_input``/``normalize_imagenet`` in both
formats, pooling/1-/4-channel/variable-size numbers, ``.keras`` files rebuilt in the format they were saved in,
and the JAX backend.
"""

import functools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keras
import keras_regnet
from keras_regnet import preprocessing
from keras_regnet.layers import GroupConv2D

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
FORMATS = ["channels_first", "channels_last"]
# The conformance suite in both formats is part of the slow tier (pytest -q -m slow).
pytestmark = pytest.mark.slow

# Tiny designs (the paper's 24 named models share all their code with these).
TINY_Y = dict(depth=6, w0=8, wa=8.0, wm=2.0, group_width=8, stem_width=16, se_ratio=0.25)  # stages 8,16,32,64
TINY_X = dict(depths=(1, 1, 1, 1), widths=(8, 16, 24, 32), bottleneck_ratios=(1, 1, 1, 1), group_widths=(8, 8, 8, 8))


def _named(fn, name):
    fn.__name__ = name  # applications_test.py names tests and skips by ``app.__name__``
    return fn


# (constructor, channels of the last feature map, module with preprocess_input/decode_predictions)
# A named model, a custom RegNet (SE) and a custom AnyNet; the other named models (RegNetY200MF passes too, at
# twice the run time) differ only in their numbers.
MODEL_LIST = [
    (keras_regnet.RegNetX200MF, 368, keras_regnet),
    (_named(functools.partial(keras_regnet.RegNet, **TINY_Y), "TinyRegNetY"), 64, keras_regnet),
    (_named(functools.partial(keras_regnet.AnyNet, **TINY_X), "TinyAnyNetX"), 32, keras_regnet),
]
MODELS_UNSUPPORTED_CHANNELS_FIRST = []  # Keras lists ConvNeXt, DenseNet, NASNet here; every RegNet supports it

test_parameters = [
    pytest.param(*model, image_data_format, id="{}_{}".format(model[0].__name__, image_data_format))
    for image_data_format in FORMATS
    for model in MODEL_LIST
]


@pytest.fixture(autouse=True)
def _restore_image_data_format():
    """Every test leaves Keras's global image data format as it found it (setUpClass/tearDownClass in Keras)."""
    original = keras.config.image_data_format()
    yield
    keras.config.set_image_data_format(original)


def skip_if_invalid_image_data_format_for_model(app, image_data_format):
    does_not_support_channels_first = any(
        unsupported_name.lower() in app.__name__.lower() for unsupported_name in MODELS_UNSUPPORTED_CHANNELS_FIRST
    )
    if image_data_format == "channels_first" and does_not_support_channels_first:
        pytest.skip("{} does not support channels first".format(app.__name__))


def _get_elephant(target_size):
    """Stands in for Keras's downloaded elephant.jpg (no network here): a fixed RGB image in [0, 255], laid out
    like ``image_utils.img_to_array`` lays it out (channels first under ``channels_first``), batch of one."""
    if target_size[0] is None:
        target_size = (299, 299)
    h, w = target_size
    yy, xx = np.mgrid[0:h, 0:w].astype("float32")
    x = np.stack([255 * xx / w, 255 * yy / h, 127.5 + 127.5 * np.sin(xx / 7.0) * np.cos(yy / 5.0)], axis=-1)
    if keras.config.image_data_format() == "channels_first":
        x = x.transpose(2, 0, 1)
    return np.expand_dims(np.round(x), axis=0).astype("float32")


# ------------------------------------------------------------------------------ Keras's applications_test.py

@pytest.mark.parametrize("app, last_dim, _, image_data_format", test_parameters)
def test_application_notop_variable_input_channels(app, last_dim, _, image_data_format):
    skip_if_invalid_image_data_format_for_model(app, image_data_format)
    keras.config.set_image_data_format(image_data_format)

    # Test compatibility with 1 channel
    if image_data_format == "channels_first":
        input_shape = (1, None, None)
        correct_output_shape = [None, last_dim, None, None]
    else:
        input_shape = (None, None, 1)
        correct_output_shape = [None, None, None, last_dim]

    model = app(weights=None, include_top=False, input_shape=input_shape)
    output_shape = list(model.outputs[0].shape)
    assert output_shape == correct_output_shape

    # Test compatibility with 4 channels
    if image_data_format == "channels_first":
        input_shape = (4, None, None)
    else:
        input_shape = (None, None, 4)
    model = app(weights=None, include_top=False, input_shape=input_shape)
    output_shape = list(model.outputs[0].shape)
    assert output_shape == correct_output_shape


@pytest.mark.parametrize("app, _, app_module, image_data_format", test_parameters)
def test_application_base(app, _, app_module, image_data_format):
    # Keras skips channels_first here on TensorFlow without a GPU ("Conv2D doesn't support channels_first using
    # CPU"); our models run channels_first on CPU, so the test runs in both formats.
    skip_if_invalid_image_data_format_for_model(app, image_data_format)
    keras.config.set_image_data_format(image_data_format)

    # Can be instantiated with default arguments (weights=None: the ImageNet weights would need a download)
    model = app(weights=None)

    # Can run an inference on a test image
    if image_data_format == "channels_first":
        shape = model.input_shape[2:4]
    else:
        shape = model.input_shape[1:3]
    x = _get_elephant(shape)

    x = app_module.preprocess_input(x)
    preds = model.predict(x, verbose=0)
    decoded = app_module.decode_predictions(preds)[0]
    names = [p[1] for p in decoded]
    # Keras asserts "African_elephant" in the top 3; random weights cannot. Instead: the decoded top 5 are the
    # five highest predictions, best first, with ImageNet's class names and the predicted scores.
    index = preprocessing.imagenet_class_index()
    order = np.argsort(-preds[0], kind="stable")[:5]
    assert names == [index[int(i)][1] for i in order]
    assert [p[0] for p in decoded] == [index[int(i)][0] for i in order]
    np.testing.assert_allclose([p[2] for p in decoded], preds[0][order], rtol=1e-6)
    assert preds.shape == (1, 1000) and abs(float(preds.sum()) - 1.0) < 1e-4

    # Can be serialized and deserialized
    config = keras.saving.serialize_keras_object(model)
    reconstructed_model = keras.saving.deserialize_keras_object(config)
    assert len(model.weights) == len(reconstructed_model.weights)


@pytest.mark.parametrize("app, last_dim, _, image_data_format", test_parameters)
def test_application_notop_custom_input_shape(app, last_dim, _, image_data_format):
    skip_if_invalid_image_data_format_for_model(app, image_data_format)
    keras.config.set_image_data_format(image_data_format)

    if image_data_format == "channels_first":
        input_shape = (3, 123, 123)
        last_dim_axis = 1
    else:
        input_shape = (123, 123, 3)
        last_dim_axis = -1
    model = app(weights=None, include_top=False, input_shape=input_shape)
    output_shape = list(model.outputs[0].shape)
    assert output_shape[last_dim_axis] == last_dim


@pytest.mark.parametrize("app, last_dim, _, image_data_format", test_parameters)
def test_application_notop_custom_input_tensor(app, last_dim, _, image_data_format):
    skip_if_invalid_image_data_format_for_model(app, image_data_format)
    keras.config.set_image_data_format(image_data_format)

    if image_data_format == "channels_first":
        input_shape = (4, 200, 200)
        last_dim_axis = 1
    else:
        input_shape = (200, 200, 4)
        last_dim_axis = -1

    inputs_custom = keras.layers.Input(shape=input_shape, name="custom_input")
    inputs_custom = keras.layers.Conv2D(3, (2, 2), padding="valid", strides=(2, 2))(inputs_custom)
    model = app(weights=None, include_top=False, input_tensor=inputs_custom)
    output_shape = list(model.outputs[0].shape)
    assert output_shape[last_dim_axis] == last_dim


@pytest.mark.parametrize("app, last_dim, _, image_data_format", test_parameters)
def test_application_pooling(app, last_dim, _, image_data_format):
    skip_if_invalid_image_data_format_for_model(app, image_data_format)
    keras.config.set_image_data_format(image_data_format)

    model = app(weights=None, include_top=False, pooling="max")
    output_shape = list(model.outputs[0].shape)
    assert output_shape == [None, last_dim]


@pytest.mark.parametrize("app", [m[0] for m in MODEL_LIST], ids=[m[0].__name__ for m in MODEL_LIST])
def test_application_classifier_activation(app):
    # Keras runs this once per (model, data format) without setting the format; once per model is the same test.
    model = app(weights=None, include_top=True, classifier_activation="softmax")
    last_layer_act = model.layers[-1].activation.__name__
    assert last_layer_act == "softmax"


# ------------------------------------------------------------------------------ the same numbers in both formats

def _to_first(x):
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def _randomize(model, seed=1):
    """Random values in every weight, BN statistics included, so a channel-order or axis mistake shows."""
    rng = np.random.default_rng(seed)
    values = []
    for w in model.weights:
        shape = tuple(w.shape)
        if "moving_variance" in w.path:
            values.append(rng.uniform(0.5, 2.0, shape))
        elif "gamma" in w.path:
            values.append(rng.uniform(0.5, 1.5, shape))
        elif len(shape) == 1:
            values.append(rng.normal(0, 0.2, shape))
        else:
            fan_in = int(np.prod(shape[:-1]))
            values.append(rng.normal(0, (2.0 / fan_in) ** 0.5, shape))
    model.set_weights([v.astype("float32") for v in values])
    return model


def _build(fmt, fn, *args, **kwargs):
    keras.config.set_image_data_format(fmt)
    return fn(*args, **kwargs)


def test_keras_weights_file_saved_channels_last_loads_channels_first_to_the_same_outputs(tmp_path):
    """A RegNetY (SE, grouped convs, projection and identity shortcuts) saved channels_last, loaded channels_first,
    saved again and loaded channels_last."""
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    kwargs = dict(TINY_Y, classes=10, classifier_activation=None)
    last = _randomize(_build("channels_last", keras_regnet.RegNet, **kwargs, input_shape=(64, 64, 3)))
    path = str(tmp_path / "last.weights.h5")
    last.save_weights(path)
    expected = np.asarray(last(x))
    first = _build("channels_first", keras_regnet.RegNet, **kwargs, input_shape=(3, 64, 64))
    first.load_weights(path)
    got = np.asarray(first(_to_first(x)))
    assert np.std(expected) > 0.1  # real logits, not a constant
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    first.save_weights(str(tmp_path / "first.weights.h5"))
    again = _build("channels_last", keras_regnet.RegNet, **kwargs, input_shape=(64, 64, 3))
    again.load_weights(str(tmp_path / "first.weights.h5"))
    np.testing.assert_array_equal(np.asarray(again(x)), expected)


@pytest.mark.parametrize("padding", ["symmetric", "same"])
def test_feature_maps_and_pyramid_are_the_transposed_channels_last_ones(padding):
    """Every stage output (stem included), with both stride-2 paddings, at an odd input size."""
    x = np.random.default_rng(1).uniform(0, 255, (2, 50, 66, 3)).astype("float32")
    outs = {}
    for fmt in ("channels_last", "channels_first"):
        model = _build(fmt, keras_regnet.build_model, keras_regnet.AnyNetParams(**TINY_X, se_ratio=0.25),
                       include_top=False, padding=padding)
        if fmt == "channels_last":
            weights = _randomize(model).get_weights()
        else:
            model.set_weights(weights)
        taps = keras.Model(model.input, model.pyramid_outputs)
        outs[fmt] = {k: np.asarray(v) for k, v in taps(x if fmt == "channels_last" else _to_first(x)).items()}
        assert {k: f.channels for k, f in model.feature_info.items()} == {
            "stem": 32, "s1": 8, "s2": 16, "s3": 24, "s4": 32}
    assert sorted(outs["channels_first"]) == ["P1", "P2", "P3", "P4", "P5"]
    for level, first in outs["channels_first"].items():
        last = outs["channels_last"][level]
        assert first.shape == _to_first(last).shape
        assert np.abs(first - _to_first(last)).max() <= 1e-5 * max(1.0, np.abs(last).max())
    assert outs["channels_first"]["P5"].shape == (2, 32, 2, 3)  # ceil(50/32), ceil(66/32)


@pytest.mark.parametrize("kind", ["x", "y"])
def test_timm_safetensors_fixture_gives_timm_logits_in_channels_first(kind):
    """weights=<timm-format .safetensors> in channels_first: the reference PyTorch logits, as in channels_last."""
    ref = np.load(os.path.join(FIXTURES, f"tiny_regnet{kind}_ref.npz"))
    spec = json.loads(str(ref["spec"]))
    classes = spec.pop("classes")
    path = os.path.join(FIXTURES, f"tiny_regnet{kind}_timm.safetensors")
    images = ref["images"].astype("float32")
    logits = {}
    for fmt in ("channels_last", "channels_first"):
        shape = (3, 64, 64) if fmt == "channels_first" else (64, 64, 3)
        model = _build(fmt, keras_regnet.RegNet, **spec, classes=classes, input_shape=shape,
                       classifier_activation=None, weights=path)
        logits[fmt] = np.asarray(model(images if fmt == "channels_last" else _to_first(images)))
    assert np.abs(logits["channels_first"] - ref["logits"]).max() <= 1e-4
    # Relative to the logits' size (up to 28 here), as for the feature maps above: the channels_last call runs the
    # fast inference path (BatchNorm and the input normalisation folded into the convs), which rounds differently.
    scale = max(1.0, float(np.abs(logits["channels_last"]).max()))
    assert np.abs(logits["channels_first"] - logits["channels_last"]).max() <= 1e-5 * scale


def test_dot_keras_file_rebuilds_in_the_format_it_was_saved_in(tmp_path):
    """A channels_first model saved to .keras loads (and computes the same) whatever the global format is."""
    x = np.random.default_rng(2).uniform(0, 255, (1, 3, 48, 48)).astype("float32")
    model = _randomize(_build("channels_first", keras_regnet.AnyNet, **TINY_X, se_ratio=0.25, classes=7,
                              input_shape=(3, 48, 48)))
    expected = np.asarray(model(x))
    model.save(str(tmp_path / "first.keras"))
    keras.config.set_image_data_format("channels_last")
    loaded = keras.saving.load_model(str(tmp_path / "first.keras"))
    assert loaded.input_shape == (None, 3, 48, 48)
    assert keras.config.image_data_format() == "channels_last"  # loading leaves the global setting alone
    np.testing.assert_allclose(np.asarray(loaded(x)), expected, rtol=1e-6, atol=1e-6)
    assert loaded.build_options == model.build_options


def test_a_new_head_follows_the_models_format_not_the_global_setting():
    """replace_head on a channels_first model while the global format is channels_last: the new head pools the
    model's spatial axes (it used to pool channels and height, silently, into a head of the wrong width)."""
    x = np.random.default_rng(11).uniform(0, 255, (2, 3, 64, 96)).astype("float32")
    model = _randomize(_build("channels_first", keras_regnet.AnyNet, **TINY_X, input_shape=(3, 64, 96), classes=5))
    fmap = np.asarray(keras.Model(model.input, model.pyramid_outputs["P5"])(x))
    keras.config.set_image_data_format("channels_last")
    new = keras_regnet.replace_head(model, 7, activation=None)
    kernel, bias = new.get_layer("head_fc").get_weights()
    assert kernel.shape == (32, 7)
    np.testing.assert_allclose(np.asarray(new(x)), fmap.mean(axis=(2, 3)) @ kernel + bias, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ keras.applications conventions

@pytest.mark.parametrize("fmt", FORMATS)
def test_preprocess_input_accepts_both_formats_and_is_the_identity(fmt):
    keras.config.set_image_data_format(fmt)
    x = np.random.default_rng(3).uniform(0, 255, (2, 3, 32, 32) if fmt == "channels_first" else (2, 32, 32, 3))
    for data_format in (None, "channels_first", "channels_last"):
        np.testing.assert_array_equal(keras_regnet.preprocess_input(x, data_format=data_format), x)
    with pytest.raises(ValueError, match="data_format must be 'channels_last', 'channels_first' or None"):
        keras_regnet.preprocess_input(x, data_format="NCHW")


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_normalize_imagenet_in_both_formats_matches_the_built_in_preprocessing(channels):
    """normalize_imagenet(x, data_format) + include_preprocessing=False == include_preprocessing=True, per format,
    for 1, 3 and 4 channels; and the channels_first result is the transposed channels_last one."""
    x = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, channels)).astype("float32")
    last = preprocessing.normalize_imagenet(x, data_format="channels_last")
    first = preprocessing.normalize_imagenet(_to_first(x), data_format="channels_first")
    np.testing.assert_allclose(first, _to_first(last), rtol=1e-6)
    if channels == 3:
        manual = (x / 255.0 - np.array(preprocessing.IMAGENET_MEAN)) / np.array(preprocessing.IMAGENET_STD)
        np.testing.assert_allclose(last, manual, rtol=1e-5, atol=1e-5)
    keras.config.set_image_data_format("channels_first")
    np.testing.assert_allclose(preprocessing.normalize_imagenet(_to_first(x)), first)  # None: the global format
    np.testing.assert_allclose(np.asarray(preprocessing.normalize_imagenet(keras.ops.convert_to_tensor(
        _to_first(x)), data_format="channels_first")), first, rtol=1e-6, atol=1e-6)
    with_pre = _randomize(keras_regnet.AnyNet(**TINY_X, input_shape=(channels, 32, 32), classes=5))
    without = keras_regnet.AnyNet(**TINY_X, input_shape=(channels, 32, 32), classes=5, include_preprocessing=False)
    without.set_weights(with_pre.get_weights())
    np.testing.assert_allclose(np.asarray(without(first)), np.asarray(with_pre(_to_first(x))), rtol=1e-4, atol=1e-6)


def test_decode_predictions_follows_keras_applications():
    preds = np.full((2, 1000), 1e-4, "float32")
    preds[0, 386], preds[0, 101], preds[0, 0] = 0.9, 0.05, 0.03
    preds[1, 999] = 0.5
    decoded = keras_regnet.decode_predictions(preds, top=3)
    assert decoded[0] == [("n02504458", "African_elephant", pytest.approx(0.9)),
                          ("n01871265", "tusker", pytest.approx(0.05)),
                          ("n01440764", "tench", pytest.approx(0.03))]
    assert decoded[1][0][:2] == ("n15075141", "toilet_tissue") and len(decoded[1]) == 3
    assert all(isinstance(s, float) for row in decoded for _, _, s in row)
    assert len(keras_regnet.decode_predictions(preds)[0]) == 5  # top=5 by default
    with pytest.raises(ValueError, match=r"shape \(samples, 1000\)"):
        keras_regnet.decode_predictions(preds[:, :10])


@pytest.mark.parametrize("fmt", FORMATS)
def test_classifier_activation_none_softmax_and_a_callable(fmt):
    keras.config.set_image_data_format(fmt)
    x = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    x = _to_first(x) if fmt == "channels_first" else x
    shape = x.shape[1:]
    logits_model = _randomize(keras_regnet.AnyNet(**TINY_X, classes=6, classifier_activation=None,
                                                  input_shape=shape))
    assert logits_model.layers[-1].activation.__name__ == "linear"
    logits = np.asarray(logits_model(x))
    assert logits.shape == (2, 6) and np.abs(logits.sum(axis=1) - 1).min() > 1e-3  # not probabilities
    for activation, expected in (("softmax", keras.ops.softmax(logits)), (keras.activations.sigmoid,
                                                                          keras.ops.sigmoid(logits))):
        model = keras_regnet.AnyNet(**TINY_X, classes=6, classifier_activation=activation, input_shape=shape)
        model.set_weights(logits_model.get_weights())
        np.testing.assert_allclose(np.asarray(model(x)), np.asarray(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pooling_avg_and_max_are_global_pools_of_the_feature_map(fmt):
    keras.config.set_image_data_format(fmt)
    spatial = (2, 3) if fmt == "channels_first" else (1, 2)
    x = np.random.default_rng(6).uniform(0, 255, (2, 64, 40, 3)).astype("float32")
    x = _to_first(x) if fmt == "channels_first" else x
    fmap_model = _randomize(keras_regnet.AnyNet(**TINY_X, include_top=False, input_shape=None))
    fmap = np.asarray(fmap_model(x))
    assert fmap.shape == ((2, 32, 2, 2) if fmt == "channels_first" else (2, 2, 2, 32))
    for pooling, reduce in (("avg", np.mean), ("max", np.max)):
        model = keras_regnet.AnyNet(**TINY_X, include_top=False, pooling=pooling, input_shape=None)
        model.set_weights(fmap_model.get_weights())
        pooled = np.asarray(model(x))
        assert pooled.shape == (2, 32)
        np.testing.assert_allclose(pooled, reduce(fmap, axis=spatial), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 4])
def test_one_and_four_channel_inputs_compute_the_same_in_both_formats(channels):
    """Also: the channels_last model is called while the global format is channels_first (its per-channel
    preprocessing constants must not follow the global setting)."""
    x = np.random.default_rng(7).uniform(0, 255, (2, 32, 32, channels)).astype("float32")
    last = _randomize(_build("channels_last", keras_regnet.AnyNet, **TINY_X, se_ratio=0.25, classes=4,
                             input_shape=(32, 32, channels)))
    first = _build("channels_first", keras_regnet.AnyNet, **TINY_X, se_ratio=0.25, classes=4,
                   input_shape=(channels, 32, 32))
    first.set_weights(last.get_weights())
    assert first.get_layer("stem_conv").kernel.shape == (3, 3, channels, 32)
    np.testing.assert_allclose(np.asarray(first(_to_first(x))), np.asarray(last(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
def test_variable_input_sizes_with_and_without_the_top(fmt):
    keras.config.set_image_data_format(fmt)
    dyn = (3, None, None) if fmt == "channels_first" else (None, None, 3)
    top = _randomize(keras_regnet.AnyNet(**TINY_X, classes=3, input_shape=dyn, classifier_activation=None))
    notop = keras_regnet.AnyNet(**TINY_X, include_top=False, input_shape=None)
    notop.set_weights(top.get_weights()[:len(notop.weights)])
    assert top.input_shape == ((None, 3, None, None) if fmt == "channels_first" else (None, None, None, 3))
    rng = np.random.default_rng(8)
    for h, w in ((32, 32), (64, 48), (97, 33)):
        x = rng.uniform(0, 255, (1, h, w, 3)).astype("float32")
        x = _to_first(x) if fmt == "channels_first" else x
        fmap = np.asarray(notop(x))
        hw = (-(-h // 32), -(-w // 32))
        assert fmap.shape == ((1, 32, *hw) if fmt == "channels_first" else (1, *hw, 32))
        # the head is the global average of that feature map through head_fc
        pooled = fmap.mean(axis=(2, 3) if fmt == "channels_first" else (1, 2))
        kernel, bias = top.get_layer("head_fc").get_weights()
        np.testing.assert_allclose(np.asarray(top(x)), pooled @ kernel + bias, rtol=1e-4, atol=1e-5)


def test_group_conv_channels_first_matches_keras_grouped_conv():
    """GroupConv2D (native NHWC grouped conv, transposed around in channels_first) == Keras's own grouped Conv2D."""
    x = np.random.default_rng(9).normal(size=(2, 16, 13, 11)).astype("float32")
    for strides, padding in ((1, "same"), (2, "valid"), (2, "same")):
        ours = GroupConv2D(24, 3, strides=strides, padding=padding, groups=4, data_format="channels_first")
        ref = keras.layers.Conv2D(24, 3, strides=strides, padding=padding, groups=4, data_format="channels_first")
        ours.build(x.shape)
        ref.build(x.shape)
        ref.set_weights(ours.get_weights())
        got, want = np.asarray(ours(x)), np.asarray(ref(x))
        assert got.shape == want.shape and got.shape[1] == 24
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ another backend

def test_jax_backend_builds_and_runs_both_formats_with_tensorflow_weights(tmp_path):
    """A fresh process on KERAS_BACKEND=jax loads a .weights.h5 saved here (TensorFlow, channels_last) into a
    channels_last and a channels_first model and computes TensorFlow's outputs in both."""
    x = np.random.default_rng(10).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model = _randomize(_build("channels_last", keras_regnet.AnyNet, **TINY_X, se_ratio=0.25, classes=5,
                              input_shape=(32, 32, 3), classifier_activation=None))
    model.save_weights(str(tmp_path / "tiny.weights.h5"))
    np.savez(str(tmp_path / "io.npz"), x=x, y=np.asarray(model(x)))
    code = textwrap.dedent(f"""
        import sys
        import numpy as np, keras, keras_regnet
        assert keras.backend.backend() == "jax", keras.backend.backend()
        data = np.load({str(tmp_path / "io.npz")!r})
        for fmt in ("channels_last", "channels_first"):
            keras.config.set_image_data_format(fmt)
            shape = (3, 32, 32) if fmt == "channels_first" else (32, 32, 3)
            m = keras_regnet.AnyNet(depths=(1, 1, 1, 1), widths=(8, 16, 24, 32), bottleneck_ratios=(1, 1, 1, 1),
                                    group_widths=(8, 8, 8, 8), se_ratio=0.25, classes=5, input_shape=shape,
                                    classifier_activation=None)
            m.load_weights({str(tmp_path / "tiny.weights.h5")!r})
            x = data["x"] if fmt == "channels_last" else np.ascontiguousarray(data["x"].transpose(0, 3, 1, 2))
            y = np.asarray(m.predict(x, verbose=0))
            print(fmt, y.shape, float(np.abs(y - data["y"]).max()))
        print("tensorflow imported:", "tensorflow" in sys.modules)
    """)
    # XLA's backend optimisations only cost compile time here (minutes for the many tiny programs of eager weight
    # initialisation on a busy CPU); the numbers are the same.
    xla_flags = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
               XLA_FLAGS=xla_flags)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines() if line.startswith("channels_"))
    scale = max(1.0, float(np.abs(np.load(str(tmp_path / "io.npz"))["y"]).max()))
    for fmt in FORMATS:
        shape, diff = lines[fmt].rsplit(" ", 1)
        assert shape == "(2, 5)"
        assert float(diff) <= 1e-4 * scale, (fmt, diff)
