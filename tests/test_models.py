"""Builders follow keras.applications conventions; the grouped conv fast path; save/load; a second backend."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_regnet
from conftest import TINY, TINY_SE
from keras_regnet.layers import GroupConv2D


def tiny(**kw):
    return keras_regnet.AnyNet(**{**TINY_SE, **kw})


def test_named_constructors_exist_with_real_signatures():
    import inspect

    names = [n.replace("-", "").replace(".", "_") for n in keras_regnet.MODEL_NAMES]
    assert len(names) == 24 and "RegNetX1_6GF" in names and "RegNetY32GF" in names
    for n in names:
        fn = getattr(keras_regnet, n)
        assert fn.__name__ == n
        params = list(inspect.signature(fn).parameters)
        assert params == [
            "include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
            "classifier_activation", "include_preprocessing", "name",
        ]
        assert "CVPR 2020" in fn.__doc__


def test_layer_names_are_stable_and_hierarchical():
    m = keras_regnet.RegNetY200MF(weights=None)
    names = {layer.name for layer in m.layers}
    for expected in ["preprocessing", "stem_conv", "stem_bn", "s1_b1_conv_a", "s1_b1_conv_b", "s1_b1_se_reduce",
                     "s1_b1_se_expand", "s1_b1_conv_c", "s1_b1_proj_conv", "s1_b1_proj_bn", "s1_b1_add",
                     "s4_b7_out", "head_fc", "predictions"]:
        assert expected in names
    assert "s4_b8_out" not in names
    assert isinstance(m.get_layer("s3_b2_conv_b"), GroupConv2D)
    assert m.get_layer("s3_b2_conv_b").groups == 152 // 8
    # Building twice gives the same names (no global counters).
    assert [layer.name for layer in keras_regnet.RegNetY200MF(weights=None).layers] == [layer.name for layer in m.layers]


def test_regnetx8gf_stage1_has_one_group():
    m = keras_regnet.RegNetX8_0GF(weights=None, include_top=False, input_shape=(64, 64, 3))
    conv = m.get_layer("s1_b1_conv_b")
    assert conv.filters == 80 and conv.kernel.shape == (3, 3, 80, 80)
    assert m.get_layer("s2_b1_conv_b").groups == 2


def test_include_top_pooling_and_shapes():
    x = np.random.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    top = tiny(input_shape=(64, 64, 3), classes=7)
    assert top.output_shape == (None, 7)
    np.testing.assert_allclose(top.predict(x, verbose=0).sum(-1), 1.0, rtol=1e-5)
    fmap = tiny(include_top=False)
    assert fmap.input_shape == (None, None, None, 3)
    assert fmap(x).shape == (2, 2, 2, 32)
    assert fmap(np.zeros((1, 96, 128, 3), "float32")).shape == (1, 3, 4, 32)
    assert tiny(include_top=False, pooling="avg")(x).shape == (2, 32)
    mx = tiny(include_top=False, pooling="max")
    mx.set_weights(fmap.get_weights())
    np.testing.assert_allclose(mx(x), np.max(fmap(x), axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_classifier_activation_is_applied():
    x = np.random.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    logits = tiny(input_shape=(32, 32, 3), classifier_activation=None)
    soft = tiny(input_shape=(32, 32, 3))
    soft.set_weights(logits.get_weights())
    z = logits(x).numpy()
    np.testing.assert_allclose(soft(x).numpy(), tf.nn.softmax(z).numpy(), rtol=1e-5, atol=1e-7)
    assert not np.allclose(z.sum(-1), 1.0)
    sig = tiny(input_shape=(32, 32, 3), classifier_activation="sigmoid")
    sig.set_weights(logits.get_weights())
    np.testing.assert_allclose(sig(x).numpy(), 1 / (1 + np.exp(-z)), rtol=1e-5)


def test_include_preprocessing_matches_manual_normalisation():
    x = np.random.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    with_pre = tiny(input_shape=(32, 32, 3))
    without = tiny(input_shape=(32, 32, 3), include_preprocessing=False)
    without.set_weights(with_pre.get_weights())
    manual = (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(with_pre(x), without(manual.astype("float32")), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(keras_regnet.preprocess_input(x), x)
    np.testing.assert_allclose(keras_regnet.normalize_imagenet(x), manual, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 4])
def test_other_channel_counts_without_pretrained_weights(channels):
    m = tiny(input_shape=(32, 32, channels), classes=3)
    assert m(np.zeros((1, 32, 32, channels), "float32")).shape == (1, 3)


def test_input_tensor():
    inp = keras.Input((48, 48, 3))
    m = tiny(input_tensor=inp, include_top=False, pooling="avg")
    assert m.inputs[0] is inp and m.output_shape == (None, 32)
    # A Keras tensor that is not an Input: the model's input is the source Input.
    base = keras.Input((48, 48, 3))
    mid = keras.layers.Identity()(base)
    m2 = tiny(input_tensor=mid, include_top=False)
    assert m2.inputs[0] is base


def test_cifar_stem_keeps_resolution():
    m = tiny(stem="cifar", include_top=False, input_shape=(32, 32, 3))
    assert m.output_shape == (None, 2, 2, 32)
    assert m.get_layer("stem_conv").strides == (1, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pooling="mean"), "pooling"),
        (dict(input_shape=(16, 16, 3)), "32"),
        (dict(input_shape=(224, 224)), "input_shape"),
        (dict(weights="imagenet", classes=10), "classes=1000"),
        (dict(weights="imagenet", input_shape=(224, 224, 1)), "3"),
        (dict(classes=0), "classes"),
        (dict(classifier_activation="nope"), "classifier_activation"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_regnet.RegNetX200MF(**kwargs)


def test_bad_design_parameters():
    with pytest.raises(ValueError, match="depth"):
        keras_regnet.RegNet(depth=0, w0=24, wa=36.0, wm=2.5, group_width=8)
    with pytest.raises(ValueError, match="wm"):
        keras_regnet.RegNet(depth=13, w0=24, wa=36.0, wm=0.5, group_width=8)
    with pytest.raises(ValueError, match="multiple of group width"):
        keras_regnet.AnyNet(depths=[1], widths=[20], bottleneck_ratios=[1], group_widths=[8])
    with pytest.raises(ValueError, match="stem"):
        keras_regnet.AnyNet(**TINY, stem="tiny")
    with pytest.raises(ValueError, match="unknown model name"):
        keras_regnet.get_model("RegNetY-601MF")


def test_imagenet_weights_on_a_custom_model_is_refused():
    with pytest.raises(ValueError, match="named models"):
        keras_regnet.RegNet(depth=13, w0=24, wa=36.44, wm=2.49, group_width=8, weights="imagenet")


def test_keras_file_round_trip(tmp_path):
    m = tiny(input_shape=(32, 32, 3), classes=5)
    x = np.random.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    path = str(tmp_path / "tiny.keras")
    m.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: GroupConv2D is registered on import
    np.testing.assert_array_equal(m.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert isinstance(loaded.get_layer("s2_b1_conv_b"), GroupConv2D)
    wpath = str(tmp_path / "tiny.weights.h5")
    m.save_weights(wpath)
    again = tiny(input_shape=(32, 32, 3), classes=5, weights=wpath)
    np.testing.assert_array_equal(m.predict(x, verbose=0), again.predict(x, verbose=0))


def test_group_conv_matches_keras_conv2d_and_avoids_xla():
    x = np.random.rand(2, 16, 16, 32).astype("float32")
    ref = keras.layers.Conv2D(48, 3, strides=2, padding="valid", groups=4, use_bias=True)
    fast = GroupConv2D(48, 3, strides=2, padding="valid", groups=4, use_bias=True)
    ref.build(x.shape)
    fast.build(x.shape)
    fast.set_weights(ref.get_weights())
    np.testing.assert_allclose(fast(x), ref(x), rtol=1e-5, atol=1e-5)
    # Gradients agree too.
    for layer in (ref, fast):
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(layer(x) ** 2)
        layer._g = tape.gradient(y, layer.kernel)
    np.testing.assert_allclose(fast._g, ref._g, rtol=1e-4, atol=1e-3)
    # The traced graph holds a plain Conv2D op, with no XLA-compiled function inside.
    graph = tf.function(fast).get_concrete_function(tf.TensorSpec(x.shape)).graph.as_graph_def()
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    assert "Conv2D" in ops
    assert not any(attr == "_XlaMustCompile" and v.b for f in graph.library.function for attr, v in f.attr.items())
    ref_graph = tf.function(ref).get_concrete_function(tf.TensorSpec(x.shape)).graph.as_graph_def()
    assert any(
        attr == "_XlaMustCompile" and v.b for f in ref_graph.library.function for attr, v in f.attr.items()
    ), "Keras no longer forces XLA on grouped convs: GroupConv2D's fast path may be unnecessary now"


def test_group_conv_float16_falls_back_with_warning_when_unsupported(monkeypatch):
    from keras_regnet import layers as kl

    monkeypatch.setattr(kl, "native_grouped_conv_supported", lambda dtype: False)
    kl._WARNED.clear()
    layer = GroupConv2D(16, 3, padding="same", groups=4, dtype="mixed_float16", name="fp16_conv")
    x = tf.random.uniform((1, 8, 8, 16))
    with pytest.warns(RuntimeWarning, match="AVX-512 FP16"):
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
    assert y.dtype == tf.float16
    assert tape.gradient(loss, layer.kernel) is not None


@pytest.mark.parametrize("shape", [(8, 7, 5, 16), (2, 1, 1, 4), (1, 1, 1, 3)])
@pytest.mark.parametrize("graph", [False, True])
def test_batchnorm_fused_training_path_equals_keras_batchnormalization(shape, graph):
    """BatchNorm's fused TF training path: same outputs, gradients and moving statistics as Keras's own layer."""
    from keras_regnet.layers import BatchNorm

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(3.0, 2.5, shape).astype("float32"))
    upstream = tf.constant(rng.normal(size=shape).astype("float32"))
    results = []
    for cls in (keras.layers.BatchNormalization, BatchNorm):
        layer = cls(epsilon=1e-5, momentum=0.9)
        layer.build(shape)
        c = shape[-1]
        layer.set_weights([np.linspace(0.5, 1.5, c, dtype="float32"),
                           np.linspace(-1, 1, c, dtype="float32"), np.full(c, 0.3, "float32"),
                           np.full(c, 2.0, "float32")])

        def run(layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
                loss = tf.reduce_sum(y * upstream)
            return [y, *tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])]

        outs = tf.function(run)() if graph else run()
        results.append([o.numpy() for o in outs] + [layer.moving_mean.numpy(), layer.moving_variance.numpy(),
                                                    layer(x, training=False).numpy()])
    for name, a, b in zip(["outputs", "d/dx", "d/dgamma", "d/dbeta", "moving_mean", "moving_variance", "inference"],
                          *results):
        assert np.isfinite(b).all(), name
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-5, err_msg=name)


def test_batchnorm_is_what_models_use_and_frozen_layers_do_not_update():
    from keras_regnet.layers import BatchNorm

    m = tiny(input_shape=(32, 32, 3), classes=3)
    bns = [la for la in m.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and all(type(la) is BatchNorm for la in bns)
    bns[0].trainable = False
    before = bns[0].moving_mean.numpy().copy()
    m(np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32"), training=True)
    np.testing.assert_array_equal(bns[0].moving_mean.numpy(), before)  # frozen BN runs in inference mode
    assert not np.array_equal(bns[1].moving_mean.numpy(), np.zeros_like(bns[1].moving_mean.numpy()))


@pytest.mark.slow  # mixed-precision training steps; the slow resume tests cover both policies
def test_mixed_precision_training_step():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        m = tiny(input_shape=(32, 32, 3), classes=3)
        assert m.get_layer("predictions").compute_dtype == "float32"
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        x = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
        y = np.array([0, 1, 2, 0])
        loss = m.train_on_batch(x, y)
        assert np.isfinite(loss)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow  # a fresh JAX process building the paper models (~45 s); test_extras covers the JAX backend
def test_builder_runs_under_jax_backend_if_installed(tmp_path):
    pytest.importorskip("jax")
    code = (
        "import numpy as np, keras, keras_regnet\n"
        "assert keras.backend.backend() == 'jax'\n"
        "m = keras_regnet.RegNetY200MF(weights=None, input_shape=(64, 64, 3), classes=10)\n"
        "p = keras.ops.convert_to_numpy(m(np.random.uniform(0, 255, (2, 64, 64, 3)).astype('float32')))\n"
        "assert p.shape == (2, 10) and np.allclose(p.sum(-1), 1, atol=1e-5)\n"
        f"m.save_weights({str(tmp_path / 'jax.weights.h5')!r})\n"
        "print('ok', sum(int(np.prod(w.shape)) for w in m.trainable_weights))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2] == "ok"
    # Weights written under JAX load into the TensorFlow model and give the same predictions.
    m = keras_regnet.RegNetY200MF(weights=None, input_shape=(64, 64, 3), classes=10)
    m.load_weights(str(tmp_path / "jax.weights.h5"))
    assert int(out.stdout.split()[-1]) == sum(int(np.prod(w.shape)) for w in m.trainable_weights)


def test_decode_predictions_uses_shipped_class_index():
    p = np.zeros((2, 1000), "float32")
    p[0, 1] = 0.9
    p[1, 999] = 0.8
    top = keras_regnet.decode_predictions(p, top=3)
    assert top[0][0] == ("n01443537", "goldfish", pytest.approx(0.9))
    assert top[1][0][:2] == ("n15075141", "toilet_tissue")
    assert len(top[0]) == 3
    with pytest.raises(ValueError, match="1000"):
        keras_regnet.decode_predictions(np.zeros((2, 10)))


def test_resize_and_center_crop_matches_pil_and_handles_batches():
    from PIL import Image

    from keras_regnet.preprocessing import resize_and_center_crop

    img = np.asarray(Image.radial_gradient("L").resize((400, 300)).convert("RGB"))
    out = resize_and_center_crop(img).numpy()
    assert out.shape == (224, 224, 3)
    ref = np.asarray(Image.fromarray(img).resize((341, 256), Image.BICUBIC), "float32")[16:240, 58:282]
    assert np.abs(out - ref).mean() < 1.0  # anti-aliased bicubic, as PIL/torchvision
    batch = resize_and_center_crop(np.stack([img, img])).numpy()
    np.testing.assert_array_equal(batch[1], out)
    with pytest.raises(ValueError, match="crop_pct"):
        resize_and_center_crop(img, crop_pct=1.5)


@pytest.mark.slow  # trains a full-width stage (~15 s)
def test_narrow_strided_projection_trains_without_onednn_crash():
    """TF 2.21's oneDNN filter gradient of a strided 1x1 conv with < 16 input channels aborts the process.

    Narrow projections subsample first; the output equals a strided 1x1 conv with the same kernel, and a
    training step at the sizes that crashed (batch 4, 64 px, 8 -> 16 channels) runs in a child process.
    """
    m = tiny(include_top=False, input_shape=(64, 64, 3))
    assert "s2_b1_proj_pool" in {layer.name for layer in m.layers}
    assert m.get_layer("s2_b1_proj_conv").strides == (1, 1)
    assert "s3_b1_proj_pool" not in {layer.name for layer in m.layers}  # 16 input channels: plain strided conv
    x = tf.random.normal((2, 16, 16, 8))
    kernel = m.get_layer("s2_b1_proj_conv").kernel
    np.testing.assert_allclose(
        m.get_layer("s2_b1_proj_conv")(m.get_layer("s2_b1_proj_pool")(x)),
        tf.nn.conv2d(x, kernel, strides=2, padding="VALID"), rtol=1e-5, atol=1e-6,
    )
    code = (
        "import numpy as np, keras, keras_regnet\n"
        "m = keras_regnet.AnyNet(depths=(1, 1, 1, 1), widths=(8, 16, 24, 32), bottleneck_ratios=(1,) * 4, "
        "group_widths=(8,) * 4, input_shape=(64, 64, 3), classes=3)\n"
        "m.compile('sgd', 'sparse_categorical_crossentropy')\n"
        "for _ in range(3): m.train_on_batch(np.random.rand(4, 64, 64, 3) * 255, np.array([0, 1, 2, 0]))\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (out.returncode, out.stderr[-2000:])


# ------------------------------------------------------------------------------------------------ default weights

def test_named_constructors_default_to_imagenet_weights_like_keras_applications():
    import inspect

    for ctor in (keras_regnet.RegNetY600MF, keras_regnet.RegNetX200MF, keras_regnet.RegNetY006):
        assert inspect.signature(ctor).parameters["weights"].default == "imagenet"
    for ctor in (keras_regnet.AnyNet, keras_regnet.RegNet):
        assert inspect.signature(ctor).parameters["weights"].default is None


def test_offline_without_a_cached_file_says_in_one_line_how_to_proceed(tmp_path, monkeypatch):
    from keras_regnet.weights import WeightsDownloadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for build in (lambda: keras_regnet.RegNetX200MF(input_shape=(32, 32, 3)),  # the named default
                  lambda: keras_regnet.build_model("RegNetX-200MF", input_shape=(32, 32, 3)),
                  lambda: keras_regnet.get_model("regnetx_002", input_shape=(32, 32, 3))):
        with pytest.raises(WeightsDownloadError) as info:
            build()
        message = str(info.value)
        assert len(message.splitlines()) == 1, message
        for how in ("weights=None", "--weights none", "/path/to/", "HF_ENDPOINT"):
            assert how in message, (how, message)
    # custom specs have no pretrained weights: their default is a random model, offline or not
    assert keras_regnet.build_model(dict(TINY, type="anynet"), input_shape=(32, 32, 3)).pretrained_cfg["weights"] is None


def test_input_tensor_smaller_than_32_pixels_is_refused_like_input_shape():
    small = keras.Input(shape=(16, 16, 3))
    with pytest.raises(ValueError, match=r"input_tensor of shape \(None, 16, 16, 3\).*>= 32"):
        keras_regnet.build_model("RegNetX-200MF", weights=None, input_tensor=small, include_top=False)
    ok = keras_regnet.AnyNet(**TINY, input_tensor=keras.Input(shape=(32, 32, 3)), include_top=False)
    assert ok.output_shape[1:3] == (1, 1)


def test_an_empty_batch_is_refused_in_one_line():
    m = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    empty = np.zeros((0, 32, 32, 3), "float32")
    for call in (lambda: m(empty), lambda: m.predict(empty, verbose=0), lambda: m.predict_on_batch(empty)):
        with pytest.raises(ValueError, match=r"empty batch \(input shape \(0, 32, 32, 3\)\): pass at least one image"):
            call()
    assert m(np.ones((1, 32, 32, 3), "float32")).shape == (1, 3)
