"""keras-hub classes for RegNet: a registered ``FeaturePyramidBackbone`` and its image-classification task.

Imported (and so registered with Keras) once keras-hub is imported, whichever of keras-hub and keras_regnet comes
first (see :mod:`keras_regnet.hub.registration`), so that ``keras_hub.models.Backbone.from_preset(uri)`` and
``keras_hub.models.ImageClassifier.from_preset(uri)`` load a RegNet preset written by
:func:`keras_regnet.hub.save_to_preset`.

``RegNetBackbone`` wraps a :class:`keras_regnet.RegNetModel` built without a head (``pooling=None``): it is a
Functional model over the very same layers, so its weights file is the RegNetModel's, and its ``pyramid_outputs``
are the stage outputs ``P1`` (stem, stride 2) .. ``P5`` (last stage, stride 32). keras-hub's tasks pool the
backbone's 4D feature map themselves: a RegNet handed to them directly must be built with ``pooling=None``.
"""

from __future__ import annotations

import keras
from keras_hub.src.layers.preprocessing.image_converter import ImageConverter
from keras_hub.src.models.feature_pyramid_backbone import FeaturePyramidBackbone
from keras_hub.src.models.image_classifier import ImageClassifier
from keras_hub.src.models.image_classifier_preprocessor import ImageClassifierPreprocessor

from keras_regnet.hub._backbone import backbone_config, copy_weights
from keras_regnet.model import RegNetModel

__all__ = ["RegNetBackbone", "RegNetImageClassifier", "RegNetImageClassifierPreprocessor", "RegNetImageConverter"]

PACKAGE = "keras_regnet"


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegNetBackbone(FeaturePyramidBackbone):
    """A RegNet/AnyNet feature extractor as a keras-hub backbone (4D output, ``pyramid_outputs`` P1..P5).

    Args:
        spec: RegNetParams / AnyNetParams, their dict form, or a paper model name.
        image_shape: ``(height, width, channels)`` (``(channels, height, width)`` under ``channels_first``);
            ``None`` sizes are dynamic. Default ``(None, None, 3)``.
        include_preprocessing, padding, normalization, arch, pretrained_cfg, frozen_layers: as for
            :class:`keras_regnet.RegNetModel`.
        data_format: ``"channels_last"`` or ``"channels_first"`` (default: Keras's setting).
    """

    def __init__(self, spec, image_shape=None, include_preprocessing=True, padding="symmetric",
                 normalization="imagenet", arch=None, pretrained_cfg=None, frozen_layers=None, data_format=None,
                 pooling=None, dtype=None, **kwargs):
        if pooling is not None:
            raise ValueError(
                f"RegNetBackbone outputs the last feature map, got pooling={pooling!r}: keras-hub's tasks pool it "
                "themselves, so a RegNet used as a keras-hub backbone needs pooling=None."
            )
        data_format = data_format or keras.config.image_data_format()
        previous = keras.config.image_data_format()
        keras.config.set_image_data_format(data_format)
        try:
            inner = RegNetModel(
                spec, include_top=False, pooling=None, input_shape=None if image_shape is None else tuple(image_shape),
                include_preprocessing=include_preprocessing, padding=padding, normalization=normalization, arch=arch,
                pretrained_cfg=pretrained_cfg, frozen_layers=frozen_layers,
            )
        finally:
            keras.config.set_image_data_format(previous)
        super().__init__(inputs=inner.inputs[0], outputs=inner.outputs[0], dtype=dtype, **kwargs)
        # Descriptions, not tracked layers: the inner model's layers are this model's layers already.
        object.__setattr__(self, "_regnet", inner)
        self.pyramid_outputs = inner.pyramid_outputs
        object.__setattr__(self, "_image_shape", tuple(inner.build_options["input_shape"]))
        object.__setattr__(self, "_data_format", data_format)

    @classmethod
    def from_regnet(cls, model, **kwargs):
        """A RegNetBackbone with the architecture of RegNetModel ``model`` and its (shared-name) weights copied."""
        backbone = cls(**backbone_config(model), **kwargs)
        copy_weights(model, backbone)
        return backbone

    # keras-hub's image backbone attributes
    @property
    def image_shape(self):
        return self._image_shape

    @property
    def data_format(self):
        return self._data_format

    # the RegNetModel record, so the package's tools (weights loading, feature_info ...) understand the backbone
    @property
    def regnet(self):
        """The RegNetModel whose layers this backbone is made of (same layers, same weights)."""
        return self._regnet

    @property
    def spec(self):
        return self._regnet.spec

    @property
    def build_options(self):
        return self._regnet.build_options

    @property
    def feature_info(self):
        return self._regnet.feature_info

    @property
    def pretrained_cfg(self):
        return self._regnet.pretrained_cfg

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """RegNetModel.load_weights on the same layers: all or nothing, weights of another architecture refused."""
        return self._regnet.load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """RegNetModel.save_weights on the same layers (the file records the architecture)."""
        return self._regnet.save_weights(filepath, overwrite=overwrite, **kwargs)

    def get_config(self):
        config = super().get_config()
        opts = self._regnet.build_options
        config.update({
            "spec": self._regnet.spec.to_dict(),
            "image_shape": list(self._image_shape),
            "include_preprocessing": opts["include_preprocessing"],
            "padding": opts["padding"],
            "normalization": opts["normalization"],
            "arch": opts["arch"],
            "pretrained_cfg": self._regnet.pretrained_cfg,
            "frozen_layers": [layer.name for layer in self.layers if layer.weights and not layer.trainable] or None,
            "data_format": self._data_format,
        })
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegNetImageConverter(ImageConverter):
    """Resizes images to the preset's eval size; the backbone normalises them itself (scale and offset None)."""

    backbone_cls = RegNetBackbone


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegNetImageClassifierPreprocessor(ImageClassifierPreprocessor):
    backbone_cls = RegNetBackbone
    image_converter_cls = RegNetImageConverter


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegNetImageClassifier(ImageClassifier):
    """keras-hub's ImageClassifier on a RegNetBackbone (global average pool, dropout, dense ``predictions``)."""

    backbone_cls = RegNetBackbone
    preprocessor_cls = RegNetImageClassifierPreprocessor
