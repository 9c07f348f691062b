"""Visual explanations: Grad-CAM & co. via tf-keras-vis on RegNet classifiers, CAM registration, overlays, CLI."""

import keras
import numpy as np
import pytest
import tensorflow as tf  # noqa: F401  (the [test] install has it: a missing TensorFlow fails, never skips)
import tf_keras_vis  # noqa: F401  (the [explain] extra, part of [test])

import keras_regnet  # noqa: E402
from keras_regnet import explanations as explain_module  # noqa: E402
from keras_regnet.explanations import METHODS, explain, overlay_heatmap, plot_explanations  # noqa: E402
from keras_regnet.models import build_model  # noqa: E402
from conftest import TINY  # noqa: E402

# Input widths >= 16 wherever gradients flow: TF 2.21's oneDNN Conv2DBackpropFilter corrupts the heap for some
# 1x1 stride-2 convs with 3 or 8 input channels (TINY's s2 projection is 8 -> 16), and eager gradients of a conv
# always compute the filter gradient too.
SMALL = dict(type="anynet", depths=(1, 1, 1, 1), widths=(16, 24, 32, 48), bottleneck_ratios=(1,) * 4,
             group_widths=(8,) * 4)


def _images(n, size=64, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _classifier(classes=5, size=64, **kwargs):
    return build_model(SMALL, input_shape=(size, size, 3), classes=classes, **kwargs)


# ---------------------------------------------------------------- proof that the maps explain
SIZE, PATCH = 64, 16
CLASS_COLORS = ((230, 30, 30), (30, 200, 30))  # class 0: a red square, class 1: a green square
DISTRACTORS = ((30, 30, 230), (230, 230, 30), (230, 30, 230), (30, 230, 230))  # share channels with both classes


def _patch_dataset(n, rng, distractors=3):
    """Noisy gray images with one class square at a random place and ``distractors`` other coloured squares."""
    x = rng.normal(128, 20, (n, SIZE, SIZE, 3))
    y = rng.integers(0, 2, n)
    boxes = []
    for i in range(n):
        taken = []
        for k in range(1 + distractors):
            while True:
                r, c = (int(v) for v in rng.integers(0, SIZE - PATCH + 1, 2))
                if all(abs(r - a) >= PATCH or abs(c - b) >= PATCH for a, b in taken):
                    break
            taken.append((r, c))
            x[i, r:r + PATCH, c:c + PATCH] = CLASS_COLORS[y[i]] if k == 0 else DISTRACTORS[rng.integers(0, 4)]
        boxes.append(taken[0])
    return np.clip(x, 0, 255).astype("float32"), y, boxes


def _peak_in_patch_rate(maps, boxes):
    hits = 0
    for heatmap, (r, c) in zip(maps, boxes):
        pr, pc = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        hits += r <= pr < r + PATCH and c <= pc < c + PATCH
    return hits / len(boxes)


@pytest.mark.slow
def test_gradcam_peak_falls_on_the_deciding_patch_after_training_not_before(tmp_path):
    """Only the red/green square decides the class; three distractor squares sit elsewhere.

    Measured with this seed (64 test images): Grad-CAM, Grad-CAM++, LayerCAM and Score-CAM peaks inside the square
    for 64/64 images after 3 epochs; random weights 2/64; tf-keras-vis's own corner-aligned upsampling of the same
    Grad-CAM 48/64. Other seeds while developing: random weights 0-50% (a random net peaks on whichever square it
    happens to like), tf-keras-vis's upsampling 70-85%.
    """
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.scores import CategoricalScore

    rng = np.random.default_rng(0)
    x_train, y_train, _ = _patch_dataset(512, rng)
    x_test, y_test, boxes = _patch_dataset(64, rng)
    # Three stages on a stride-1 stem: the last stage has stride 8, an 8x8 CAM on 64 px images.
    model = keras_regnet.AnyNet(depths=(1, 1, 1), widths=(16, 32, 64), bottleneck_ratios=(1,) * 3,
                                group_widths=(8,) * 3, stem="cifar", stem_width=16,
                                input_shape=(SIZE, SIZE, 3), classes=2)
    random_rate = _peak_in_patch_rate(explain(model, x_test, class_index=y_test), boxes)

    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=3, verbose=0)
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    rates = {m: _peak_in_patch_rate(explain(model, x_test, method=m, class_index=y_test), boxes)
             for m in ("gradcam", "gradcam++", "layercam", "scorecam")}
    cams = explain(model, x_test, class_index=y_test)
    tkv = Gradcam(keras.Model(model.inputs, model.get_layer("head_fc").output))(
        CategoricalScore(list(y_test)), x_test, penultimate_layer="s3_b1_out", seek_penultimate_conv_layer=False)
    tkv_rate = _peak_in_patch_rate(tkv, boxes)
    print(f"accuracy {accuracy:.3f}; peak in patch: trained {rates}, random {random_rate:.3f}, "
          f"tf-keras-vis upsampling {tkv_rate:.3f}")

    assert accuracy >= 0.95
    assert all(rate >= 0.9 for rate in rates.values()), rates
    assert random_rate < 0.6
    assert rates["gradcam"] >= tkv_rate
    path = tmp_path / "proof.png"
    plot_explanations(x_test[:4], cams[:4], titles=[f"class {c}" for c in y_test[:4]], path=path)
    import matplotlib.image

    assert matplotlib.image.imread(path).shape[:2] == (1200, 600)  # 4 rows of 3 in x 2 panels at 100 dpi


# ---------------------------------------------------------------- CAM registration
@pytest.mark.parametrize("padding", ["symmetric", "same"])
@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_cam_cells_are_placed_where_their_receptive_field_is_centred(padding, stem):
    """Independent check of the upsampling geometry: the |d cell / d input| centroid of an interior CAM cell."""
    model = build_model(dict(SMALL, stem=stem), include_top=False, input_shape=(128, 128, 3), padding=padding)
    layer = "s3_b1_out"
    stride, offset = explain_module._cell_geometry(model, layer)
    tap = keras.Model(model.input, model.get_layer(layer).output)
    x = tf.constant(_images(2, 128))
    n_cells = 128 // stride
    ys, xs = np.mgrid[:128, :128]
    for i in (n_cells // 2 - 1, n_cells // 2):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            value = tf.reduce_sum(tap(x)[0, i, i, :])
        weight = np.abs(tape.gradient(value, x)[0].numpy()).sum(-1)
        centre = ((weight * ys).sum() / weight.sum(), (weight * xs).sum() / weight.sum())
        # The other conventions (offset 0, (stride - 1) / 2, stride - 1) are >= 3.5 px apart at stride >= 8.
        np.testing.assert_allclose(centre, stride * i + offset, atol=1.5)
    assert offset == (0.0 if padding == "symmetric" else (stride - 1) / 2)


def test_upsampling_puts_each_cell_on_its_pixel():
    cam = np.zeros((1, 4, 4), "float32")
    cam[0, 3, 1] = 1.0
    up = explain_module._upsample_cam(cam, (64, 64), stride=16, offset=0.0)
    assert np.unravel_index(np.argmax(up[0]), (64, 64)) == (48, 16)
    assert up.min() >= 0 and up.max() == 1.0


# ---------------------------------------------------------------- against an independent Grad-CAM
def test_gradcam_equals_a_hand_written_gradcam_on_the_logits():
    model = _classifier()
    x = _images(3)
    classes = [0, 3, 4]
    layer = "s4_b1_out"
    tap = keras.Model(model.input, [model.get_layer(layer).output, model.get_layer("head_fc").output])
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        xt = tf.constant(x)
        tape.watch(xt)
        fmap, logits = tap(xt)
        tape.watch(fmap)
        score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=0) * tf.one_hot(range(3), 3))
    grads = tape.gradient(score, fmap).numpy()
    cam = np.maximum((fmap.numpy() * grads.mean(axis=(1, 2), keepdims=True)).sum(-1), 0)
    low, high = cam.min((1, 2), keepdims=True), cam.max((1, 2), keepdims=True)
    cam = (cam - low) / (high - low + 1e-7)
    expected = explain_module._upsample_cam(cam, (64, 64), 32, 0.0)
    np.testing.assert_allclose(explain(model, x, class_index=classes), expected, atol=1e-4)


def test_explain_does_not_modify_the_model_and_scores_logits():
    model = _classifier()
    x = _images(2)
    before = np.asarray(model(x))
    explain(model, x, method="gradcam")
    explain(model, x, method="saliency")
    assert model.get_layer("predictions").activation is keras.activations.softmax
    np.testing.assert_allclose(model(x), before, rtol=1e-6)


def test_custom_softmax_head_uses_replace_to_linear_on_a_clone():
    backbone = build_model(SMALL, include_top=False, input_shape=(64, 64, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(backbone.output)
    model = keras.Model(backbone.input, keras.layers.Dense(4, activation="softmax", name="my_fc")(pooled))
    x = _images(2)
    maps = explain(model, x, class_index=1)
    assert model.get_layer("my_fc").activation is keras.activations.softmax  # the clone was modified, not this
    # Same maps as a model with the same weights and a linear head_fc + softmax predictions (our layout).
    ours = keras.Model(backbone.input, keras.layers.Activation("softmax", name="predictions")(
        keras.layers.Dense(4, name="head_fc")(pooled)))
    ours.get_layer("head_fc").set_weights(model.get_layer("my_fc").get_weights())
    np.testing.assert_allclose(maps, explain(ours, x, class_index=1), atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_image_sized_maps_in_unit_range(method):
    model = _classifier(classes=3)
    kwargs = {"max_N": 8} if method == "scorecam" else {}
    maps = explain(model, _images(2), method=method, **kwargs)
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    single = explain(model, _images(1)[0], method=method, class_index=2, **kwargs)
    assert single.shape == (64, 64)


def test_class_index_default_is_the_prediction_and_per_image_indices_work():
    model = _classifier(classes=5)
    x = _images(3)
    predicted = np.argmax(model.predict(x, verbose=0), axis=-1)
    np.testing.assert_allclose(explain(model, x), explain(model, x, class_index=predicted), atol=1e-6)
    other = [(int(p) + 1) % 5 for p in predicted]
    assert not np.allclose(explain(model, x, class_index=other), explain(model, x, class_index=predicted))


def test_explain_works_on_dynamic_inputs_and_named_layers():
    model = build_model(SMALL, input_shape=(None, None, 3), classes=3)
    maps = explain(model, _images(2, size=96), layer="s3_b1_out")
    assert maps.shape == (2, 96, 96)


def test_package_function_and_module_do_not_shadow_each_other():
    import importlib
    import types

    module = importlib.import_module("keras_regnet.explanations")
    assert isinstance(module, types.ModuleType) and type(module) is types.ModuleType  # no __class__ swap
    assert keras_regnet.explain is module.explain and callable(keras_regnet.explain)
    assert keras_regnet.plot_explanations is module.plot_explanations
    model = _classifier(classes=3)
    np.testing.assert_allclose(keras_regnet.explain(model, _images(1)), explain(model, _images(1)))


def test_clear_errors():
    model = _classifier(classes=5)
    x = _images(2)
    with pytest.raises(ValueError, match=r"no layer 's9_b1_out'.*stem_relu, s1_b1_out"):
        explain(model, x, layer="s9_b1_out")
    with pytest.raises(ValueError, match=r"one image \(height, width, channels\) or a batch.*shape \(64, 64\)"):
        explain(model, x[0, ..., 0])
    with pytest.raises(ValueError, match=r"class_index \[5\] out of range.*5 classes \(0..4\)"):
        explain(model, x, class_index=5)
    with pytest.raises(ValueError, match="one int per image"):
        explain(model, x, class_index=[1, 2, 3])
    with pytest.raises(ValueError, match="unknown method 'cam'"):
        explain(model, x, method="cam")
    with pytest.raises(ValueError, match="takes 64x64 images, got 32x32"):
        explain(model, _images(1, size=32))
    with pytest.raises(ValueError, match="takes 3-channel images"):
        explain(model, x[..., :1])
    with pytest.raises(ValueError, match="include_top=True"):
        explain(build_model(SMALL, include_top=False, pooling="avg", input_shape=(64, 64, 3)), x)
    with pytest.raises(ValueError, match="a CAM needs a 4D feature map"):
        explain(model, x, layer="head_fc")
    with pytest.raises(ValueError, match="CAM methods only"):
        explain(model, x, method="saliency", layer="s4_b1_out")


# ---------------------------------------------------------------- overlays and the command line
def test_overlay_is_an_alpha_blend_with_the_colormap():
    import matplotlib

    image = np.full((8, 8, 3), 200.0)
    heat = np.zeros((8, 8))
    heat[2, 3] = 1.0
    out = overlay_heatmap(image, heat, alpha=0.5)
    hot = np.array(matplotlib.colormaps["jet"](1.0)[:3]) * 255
    cold = np.array(matplotlib.colormaps["jet"](0.0)[:3]) * 255
    np.testing.assert_allclose(out[2, 3], 0.5 * 200 + 0.5 * hot, atol=0.51)
    np.testing.assert_allclose(out[7, 7], 0.5 * 200 + 0.5 * cold, atol=0.51)
    np.testing.assert_array_equal(overlay_heatmap(image, heat, alpha=0.0), image.astype("uint8"))
    assert overlay_heatmap(image, np.zeros((2, 2))).shape == (8, 8, 3)  # small maps are resized
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(image, heat, alpha=2)


def test_plot_replaces_an_existing_file_and_checks_lengths(tmp_path):
    import matplotlib.image

    path = tmp_path / "cam.png"
    path.write_bytes(b"old")
    fig = plot_explanations(_images(2, 32), np.random.default_rng(0).uniform(size=(2, 32, 32)), path=path)
    assert len(fig.axes) == 4
    assert matplotlib.image.imread(path).shape == (600, 600, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["cam.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        plot_explanations(_images(2, 32), np.zeros((2, 32, 32)), titles=["a"])


def _write_png(path, size=80, seed=0):
    image = np.random.default_rng(seed).integers(0, 255, (size, size + 20, 3), dtype=np.uint8)
    tf.io.write_file(str(path), tf.io.encode_png(image))


def test_cli_writes_the_overlay_for_a_saved_model(tmp_path, capsys):
    import matplotlib.image

    from keras_regnet import cli

    model_path = tmp_path / "tiny.keras"
    model = _classifier(classes=3)
    model.set_pretrained_cfg(class_names=["cat", "dog", "fox"])  # the user's class names travel in the file
    model.save(model_path)
    for i in range(2):
        _write_png(tmp_path / f"img{i}.png", seed=i)
    out = tmp_path / "cam.png"
    rc = cli.main(["explain", str(tmp_path / "img0.png"), str(tmp_path / "img1.png"), "--model", str(model_path),
                   "--class-index", "2", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "img0.png: fox (class 2, p=" in text and f"wrote {out}" in text
    assert matplotlib.image.imread(out).shape[:2] == (600, 600)
    assert cli.main(["explain", str(tmp_path / "img0.png"), "--model", str(model_path), "--class-index", "3",
                     "--out", str(out)]) == 2
    assert "out of range" in capsys.readouterr().err
    assert cli.main(["explain", str(tmp_path / "missing.png"), "--model", str(model_path)]) == 2
    assert cli.main(["explain", str(tmp_path / "img0.png"), "--model", str(model_path), "--method", "x",
                     "--out", str(out)]) == 2


def test_cli_paper_model_with_random_weights(tmp_path, capsys):
    from keras_regnet import cli

    _write_png(tmp_path / "img.png", size=100)
    out = tmp_path / "cam.png"
    assert cli.main(["explain", str(tmp_path / "img.png"), "--model", "RegNetX200MF", "--weights", "none",
                     "--size", "64", "--method", "gradcam++", "--out", str(out)]) == 0
    assert out.exists()
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(str(tmp_path / "img.png") + ": ") and "p=" in line  # an ImageNet label is printed
