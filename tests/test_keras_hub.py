"""keras-hub on RegNet presets and backbones: Backbone/ImageClassifier.from_preset on folders and hf:// URIs, and
keras-hub's tasks (ImageClassifier, RetinaNet, DeepLabV3) built on a RegNet backbone, fitted one step, saved and
reloaded. Skipped when keras-hub (the [keras-hub] extra: Python >= 3.11, Keras >= 3.15) is not installed."""

import numpy as np
import pytest

from conftest import TINY
from hub_server import hub  # noqa: F401  (the loopback Hub fixture)

keras_hub = pytest.importorskip("keras_hub", reason="keras-hub is not installed (pip install 'keras-regnet[keras-hub]')")
import keras  # noqa: E402

import keras_regnet  # noqa: E402
from keras_regnet.hub import save_to_preset, upload_preset  # noqa: E402

NAMES = ["cat", "dog", "emu"]


def _images(n=2, size=64):
    return np.random.RandomState(1).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _backbone(size=64):
    from keras_regnet.hub.keras_hub_models import RegNetBackbone

    return RegNetBackbone(keras_regnet.AnyNetParams(**TINY).to_dict(), image_shape=(size, size, 3))


def test_keras_hub_loads_regnet_presets_from_folders_and_the_hub(hub, tmp_path):
    model = keras_regnet.AnyNet(**TINY, input_shape=(64, 64, 3), classes=3)
    model.set_pretrained_cfg(class_names=NAMES)
    folder = save_to_preset(model, tmp_path / "p")
    upload_preset("hf://user/tiny", folder)
    x = _images()
    ours = model.predict(x, verbose=0)
    for source in (str(folder), "hf://user/tiny"):
        backbone = keras_hub.models.Backbone.from_preset(source)
        assert type(backbone).__name__ == "RegNetBackbone"
        assert isinstance(backbone, keras_hub.models.FeaturePyramidBackbone)
        assert list(backbone.pyramid_outputs) == ["P1", "P2", "P3", "P4", "P5"]
        assert tuple(backbone.image_shape) == (64, 64, 3) and backbone.data_format == "channels_last"
        assert backbone.pretrained_cfg["class_names"] == NAMES
        classifier = keras_hub.models.ImageClassifier.from_preset(source)
        assert type(classifier).__name__ == "RegNetImageClassifier"
        np.testing.assert_allclose(classifier.predict(x, verbose=0), ours, rtol=0, atol=1e-6)
    # the same backbone's stage outputs as ours
    features = keras.Model(backbone.inputs, backbone.pyramid_outputs)(x)
    mine = keras_regnet.feature_extractor(model, ["s4"])(x) if hasattr(keras_regnet, "feature_extractor") else None
    if mine is not None:
        np.testing.assert_allclose(np.asarray(features["P5"]), np.asarray(mine["s4"]), rtol=0, atol=1e-5)


def test_a_preset_written_by_keras_hub_loads_without_it(tmp_path):
    backbone = _backbone()
    classifier = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=3, activation="softmax")
    classifier.save_to_preset(str(tmp_path / "kh"))
    model = keras_regnet.hub.load_preset(tmp_path / "kh")
    assert isinstance(model, keras_regnet.RegNetModel) and model.build_options["classes"] == 3
    x = _images()
    np.testing.assert_allclose(model.predict(x, verbose=0), classifier.predict(x, verbose=0), rtol=0, atol=1e-6)


def test_a_pooled_regnet_backbone_is_refused_with_the_fix():
    from keras_regnet.hub.keras_hub_models import RegNetBackbone

    with pytest.raises(ValueError, match="needs pooling=None"):
        RegNetBackbone(keras_regnet.AnyNetParams(**TINY).to_dict(), pooling="avg")


def _save_reload(model, tmp_path, x):
    before = model.predict(x, verbose=0)
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    after = again.predict(x, verbose=0)
    for a, b in zip(keras.tree.flatten(before), keras.tree.flatten(after)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-5)
    assert type(again.backbone).__name__ in ("RegNetBackbone", "RetinaNetBackbone", "DeepLabV3Backbone")


def test_image_classifier_on_a_regnet_backbone_fits_and_round_trips(tmp_path):
    classifier = keras_hub.models.ImageClassifier(backbone=_backbone(), num_classes=3)
    classifier.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = _images(4)
    history = classifier.fit(x, np.array([0, 1, 2, 0]), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    _save_reload(classifier, tmp_path, x)


def test_retinanet_on_a_regnet_backbone_fits_and_round_trips(tmp_path):
    from keras_hub.models import RetinaNetBackbone, RetinaNetObjectDetector

    backbone = RetinaNetBackbone(image_encoder=_backbone(), min_level=3, max_level=5, use_p5=False,
                                 image_shape=(64, 64, 3))
    detector = RetinaNetObjectDetector(backbone=backbone, num_classes=3, pre_logits_num_conv_layers=1)
    detector.compile(optimizer="sgd")
    x = _images(2)
    y = {"boxes": np.array([[[4, 4, 30, 30]], [[10, 12, 60, 50]]], dtype="float32"),
         "labels": np.array([[1], [2]], dtype="int32")}
    history = detector.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    before = detector.predict(x, verbose=0)
    path = tmp_path / "retinanet.keras"
    detector.save(path)
    again = keras.saving.load_model(path)
    assert type(again.backbone.image_encoder).__name__ == "RegNetBackbone"
    after = again.predict(x, verbose=0)
    np.testing.assert_allclose(after["boxes"], before["boxes"], rtol=0, atol=1e-3)


def test_deeplab_v3_on_a_regnet_backbone_fits_and_round_trips(tmp_path):
    from keras_hub.models import DeepLabV3Backbone, DeepLabV3ImageSegmenter

    backbone = DeepLabV3Backbone(image_encoder=_backbone(), spatial_pyramid_pooling_key="P5", upsampling_size=8,
                                 dilation_rates=[1, 2], low_level_feature_key="P2", projection_filters=8,
                                 image_shape=(64, 64, 3))
    segmenter = DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)
    segmenter.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = _images(2)
    masks = np.random.RandomState(3).randint(0, 3, (2, 64, 64, 1))
    history = segmenter.fit(x, masks, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert segmenter.predict(x, verbose=0).shape == (2, 64, 64, 3)
    _save_reload(segmenter, tmp_path, x)
