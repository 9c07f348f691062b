"""ImageNet preprocessing and label decoding, keras.applications style, with the class index shipped offline."""

from __future__ import annotations

import functools
import math
import json
import os

import numpy as np

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "preprocess_input",
    "normalize_imagenet",
    "decode_predictions",
    "imagenet_class_index",
    "resize_and_center_crop",
]

# RGB, in [0, 1] units. pycls's originals used the same numbers in BGR order; the converted weights take RGB.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalization_constants(channels: int):
    """(scale, offset) mapping pixels in [0, 255] to ImageNet-normalised values for ``channels`` channels.

    3 channels use the per-channel RGB statistics; any other channel count uses their channel average.
    """
    if channels == 3:
        mean, std = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
    else:
        mean = np.full(channels, np.mean(IMAGENET_MEAN))
        std = np.full(channels, np.mean(IMAGENET_STD))
    return (1.0 / (255.0 * std)).tolist(), (-mean / std).tolist()


_DATA_FORMATS = ("channels_last", "channels_first")


def _data_format(data_format):
    """``data_format`` checked, or Keras's global image data format when None (keras.applications' convention)."""
    if data_format is None:
        import keras

        return keras.config.image_data_format()
    if data_format not in _DATA_FORMATS:
        raise ValueError(
            f"data_format must be 'channels_last', 'channels_first' or None (Keras's image data format), "
            f"got {data_format!r}."
        )
    return data_format


def preprocess_input(x, data_format=None):
    """Map RGB pixels in [0, 255] to the input of a model built with ``include_preprocessing=True`` (the default).

    Those models normalise internally, so this function is the identity in either data format, exactly like
    ``keras.applications.efficientnet.preprocess_input``; ``data_format`` (``None``, ``"channels_last"`` or
    ``"channels_first"``) is checked and otherwise unused. Use :func:`normalize_imagenet` when you build with
    ``include_preprocessing=False``.
    """
    if data_format is not None:
        _data_format(data_format)
    return x


def normalize_imagenet(x, data_format=None):
    """RGB in [0, 255] -> (x / 255 - mean) / std on the channel axis; NumPy arrays or tensors, one image or a batch.

    ``data_format``: ``"channels_last"`` (channels on the last axis), ``"channels_first"`` (channels before height
    and width), or ``None``: Keras's image data format (``keras.config.image_data_format()``).
    """
    channels_first = _data_format(data_format) == "channels_first"
    if len(x.shape) not in (3, 4):
        raise ValueError(f"expected an image or a batch of images (rank 3 or 4), got shape {tuple(x.shape)}.")
    channels = int(x.shape[-3] if channels_first else x.shape[-1])
    scale, offset = normalization_constants(channels)
    shape = (channels, 1, 1) if channels_first else (channels,)
    scale = np.asarray(scale, "float32").reshape(shape)
    offset = np.asarray(offset, "float32").reshape(shape)
    if isinstance(x, np.ndarray):
        return (x.astype("float32") * scale + offset).astype("float32")
    import keras

    return keras.ops.add(keras.ops.multiply(keras.ops.cast(x, "float32"), scale), offset)


@functools.lru_cache(maxsize=1)
def imagenet_class_index():
    """{index: (wordnet id, label)} for the 1000 ImageNet-1k classes, read from the package (no download)."""
    path = os.path.join(os.path.dirname(__file__), "data", "imagenet_class_index.json")
    with open(path) as f:
        raw = json.load(f)
    return {int(k): tuple(v) for k, v in raw.items()}


def decode_predictions(preds, top=5):
    """Decode a (batch, 1000) prediction array into lists of (wordnet id, label, score), best first."""
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "decode_predictions expects a batch of ImageNet predictions of shape (samples, 1000), "
            f"got shape {preds.shape}."
        )
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}.")
    index = imagenet_class_index()
    results = []
    for row in preds:
        order = np.argsort(-row, kind="stable")[:top]
        results.append([(*index[int(i)], float(row[i])) for i in order])
    return results


def resize_and_center_crop(images, size=224, crop_pct=0.875, interpolation="bicubic"):
    """The evaluation transform: resize the short side to floor(size / crop_pct), then center-crop size x size.

    Follows timm/torchvision (short side to ``floor(size / crop_pct)``, long side truncated proportionally,
    crop offsets rounded), with anti-aliasing like PIL. ``crop_pct=0.875`` at 224 is the classic
    "resize 256, center crop 224". Works on one image (H, W, C) or a batch (N, H, W, C), eagerly or inside a
    ``tf.function`` with dynamic shapes. Returns float32 in the input's value range (e.g. [0, 255]).
    """
    import tensorflow as tf

    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}.")
    images = tf.convert_to_tensor(images)
    if images.shape.rank not in (3, 4):
        raise ValueError(f"expected an image (H, W, C) or a batch (N, H, W, C), got shape {images.shape}.")
    scale_size = int(math.floor(size / crop_pct))
    shape = tf.shape(images)
    h, w = shape[-3], shape[-2]
    short = tf.minimum(h, w)
    new_h = tf.where(h == short, scale_size, tf.cast(scale_size * h // short, tf.int32))
    new_w = tf.where(w == short, scale_size, tf.cast(scale_size * w // short, tf.int32))
    resized = tf.image.resize(tf.cast(images, tf.float32), tf.stack([new_h, new_w]), method=interpolation, antialias=True)
    top = tf.cast(tf.round(tf.cast(new_h - size, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_w - size, tf.float32) / 2.0), tf.int32)
    return tf.image.crop_to_bounding_box(resized, top, left, size, size)
