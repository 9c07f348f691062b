"""Multi-scale feature extraction: dict outputs, channels and strides, any input size, use as a detection backbone."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import keras_regnet  # noqa: E402
from keras_regnet import features, specs  # noqa: E402
from conftest import TINY  # noqa: E402

# Widths of at least 16 wherever gradients flow: TF 2.21's oneDNN Conv2DBackpropFilter corrupts the heap for some
# 1x1 stride-2 convs with 3 or 8 input channels (the TINY config's s2 projection is 8 -> 16).
WIDE = dict(TINY, widths=(16, 24, 32, 48), depths=(1, 2, 1, 1))


def _images(n, h, w, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, h, w, 3)).astype("float32")


@pytest.mark.parametrize("size", [(32, 32), (64, 96), (128, 160)])
def test_stage_maps_have_size_over_stride_and_the_backbone_values(size):
    backbone = keras_regnet.AnyNet(**TINY, include_top=False)
    extractor = keras_regnet.feature_extractor(backbone)
    x = _images(2, *size)
    out = extractor(x)
    assert list(out) == ["stem", "s1", "s2", "s3", "s4"]
    info = keras_regnet.feature_info(extractor)
    assert [i.stride for i in info.values()] == [2, 4, 8, 16, 32]
    assert [i.channels for i in info.values()] == [32, 8, 16, 24, 32]
    for key, fmap in out.items():
        assert fmap.shape == (2, size[0] // info[key].stride, size[1] // info[key].stride, info[key].channels)
    # Each map is exactly the backbone's own intermediate output, and s4 is the backbone output.
    np.testing.assert_allclose(out["s4"], backbone(x), rtol=1e-5, atol=1e-5)
    s2 = keras.Model(backbone.input, backbone.get_layer("s2_b1_out").output)(x)
    np.testing.assert_allclose(out["s2"], s2, rtol=1e-5, atol=1e-5)


def test_cifar_stem_strides_and_layer_names_as_keys():
    model = keras_regnet.AnyNet(**WIDE, stem="cifar", include_top=False)
    extractor = keras_regnet.feature_extractor(model, stages=("stem", "s2", "s2_b1_out", "s2_b1_relu_a"))
    info = keras_regnet.feature_info(extractor)
    assert info["stem"] == features.FeatureInfo("stem_relu", 32, 1)
    assert info["s2"] == features.FeatureInfo("s2_b2_out", 24, 4)  # the last block of s2
    assert info["s2_b1_out"].stride == 4
    assert info["s2_b1_relu_a"].stride == 2  # first block before its stride-2 conv_b: still s1's resolution
    out = extractor(_images(1, 32, 32))
    assert out["s2_b1_relu_a"].shape[1] == 32 // 2 and out["s2"].shape[1] == 32 // 4


def test_by_name_channels_follow_the_paper_model():
    extractor = keras_regnet.feature_extractor("RegNetY-600MF", stages=None)
    params = specs.get_params("RegNetY-600MF").to_anynet()
    info = keras_regnet.feature_info(extractor)
    assert [i.channels for i in info.values()] == [params.stem_width, *params.widths]  # 32, 48, 112, 256, 608
    assert info["s4"].layer == f"s4_b{params.depths[-1]}_out"
    assert extractor.input.shape == (None, None, None, 3)
    # The backbone of a classifier gives the same stage list.
    assert features.stage_names(keras_regnet.RegNetY600MF(weights=None)) == ["stem", "s1", "s2", "s3", "s4"]


def test_weights_file_is_loaded_when_building(tmp_path):
    spec = dict(TINY, type="anynet")
    backbone = keras_regnet.models.build_model(spec, include_top=False)
    path = str(tmp_path / "tiny.weights.h5")
    backbone.save_weights(path)
    extractor = keras_regnet.feature_extractor(spec, stages=("s3",), weights=path)
    x = _images(1, 64, 64)
    expected = keras.Model(backbone.input, backbone.get_layer("s3_b1_out").output)(x)
    np.testing.assert_allclose(extractor(x)["s3"], expected, rtol=1e-5, atol=1e-5)


def test_dict_outputs_survive_a_keras_round_trip(tmp_path):
    extractor = keras_regnet.feature_extractor(keras_regnet.AnyNet(**TINY, include_top=False), stages=("s1", "s4"))
    path = tmp_path / "features.keras"
    extractor.save(path)
    loaded = keras.saving.load_model(path)
    x = _images(1, 64, 64)
    a, b = extractor(x), loaded(x)
    assert set(b) == {"s1", "s4"}
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert keras_regnet.feature_info(loaded) == keras_regnet.feature_info(extractor)


def test_extractor_trains_as_a_segmentation_backbone():
    """A small FPN-style head on s2..s4: gradients reach every tapped stage, loss goes down."""
    backbone = keras_regnet.AnyNet(**WIDE, include_top=False)
    extractor = keras_regnet.feature_extractor(backbone, stages=("s2", "s3", "s4"))
    image = keras.Input((None, None, 3))
    maps = extractor(image)
    top = keras.layers.Conv2D(16, 1, name="lat4")(maps["s4"])
    for stage in ("s3", "s2"):
        top = keras.layers.UpSampling2D(2)(top) + keras.layers.Conv2D(16, 1, name=f"lat{stage[1]}")(maps[stage])
    logits = keras.layers.Conv2D(2, 3, padding="same", name="seg")(top)  # stride 8 mask logits
    model = keras.Model(image, logits)
    x = _images(4, 64, 64, seed=1)
    y = (x[:, ::8, ::8, 0] > 127).astype("int32")  # per-cell label from the red channel
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {w.path: w.numpy().copy() for w in extractor.trainable_weights}
    first = model.train_on_batch(x, y)
    for _ in range(15):
        last = model.train_on_batch(x, y)
    assert last < first
    for stage in ("s2", "s3", "s4"):
        kernel = extractor.get_layer(f"{stage}_b1_conv_a").kernel
        assert not np.array_equal(kernel.numpy(), before[kernel.path]), stage


def test_errors_are_clear():
    model = keras_regnet.AnyNet(**TINY, include_top=False)
    with pytest.raises(ValueError, match=r"unknown stage or layer 's5'.*stem, s1, s2, s3, s4"):
        keras_regnet.feature_extractor(model, stages=("s5",))
    with pytest.raises(ValueError, match="load weights into your model"):
        keras_regnet.feature_extractor(model, weights="imagenet")
    with pytest.raises(ValueError, match="at least one"):
        keras_regnet.feature_extractor(model, stages=())
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match="not a keras_regnet model"):
        keras_regnet.feature_extractor(plain)
    with pytest.raises(ValueError, match="unknown model name"):
        keras_regnet.feature_extractor("RegNetZ9000")
