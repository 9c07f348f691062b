"""Fold the built-in input normalisation into the stem convolution, exactly.

A keras-regnet model takes RGB pixels in [0, 255] and normalises them per channel (``Rescaling``: ``x * s + o``)
before the stem's zero padding and 3x3 convolution. In a full-integer TFLite file that per-channel multiply and
add on the whole input image run as two broadcasting int8 ops that cost more than the stem convolution itself
(``python benchmarks/deploy.py --stem``: about 0.58 ms more than the stem without them on 2 AVX-512 cores, a
third of RegNetY600MF's int8 time; a scalar rescaling costs nothing measurable).

Folding: ``conv(W, pad0(x * s + o)) == conv(W * s, padm(x)) + sum(W * o)`` where ``padm`` pads with the pixel value
``m = -o / s`` that normalises to 0 (zero padding in normalised space is padding with ``m`` in pixel space), so the
result is the same function up to float rounding, borders included. The padding becomes :class:`ValuePad2D`
(concatenated constant rows and columns, cheap), the normalisation disappears, and the conv gets a bias. Every op
of the folded int8 RegNetY600MF runs in XNNPACK but the final softmax (``benchmarks/deploy.py`` times the file
with and without the fold against EfficientNetB0; docs/deployment.md has the figures).
"""

from __future__ import annotations

import keras
import numpy as np

from keras_regnet.export.bn_fold import _single_producer, conv_kernel_and_bias, copy_weights

__all__ = ["fold_input_rescaling", "ValuePad2D"]


class ValuePad2D(keras.layers.Layer):
    """Pads an NHWC tensor with a constant value per channel (``values``).

    ``padding`` = ((top, bottom), (left, right)), as ``ZeroPadding2D`` takes it."""

    def __init__(self, padding, values, **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple(tuple(int(p) for p in pair) for pair in padding)
        self.values = [float(v) for v in values]

    def call(self, x):
        value = keras.ops.cast(keras.ops.reshape(keras.ops.convert_to_tensor(self.values), (1, 1, 1, -1)), x.dtype)
        (top, bottom), (left, right) = self.padding

        def band(t, axis, n):
            # (edge - edge) + value: ones_like/full need the (dynamic) batch size, which TFLite computes with SHAPE
            # and BROADCAST_TO ops outside the XNNPACK delegate, and an int8 multiply by 0 is not delegated either.
            edge = t[:, :n, :, :] if axis == 1 else t[:, :, :n, :]
            return (edge - edge) + value

        for axis, (before, after) in ((1, (top, bottom)), (2, (left, right))):
            parts = ([band(x, axis, before)] if before else []) + [x] + ([band(x, axis, after)] if after else [])
            if len(parts) > 1:
                x = keras.ops.concatenate(parts, axis=axis)
        return x

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        (top, bottom), (left, right) = self.padding
        return (n, None if h is None else h + top + bottom, None if w is None else w + left + right, c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "values": self.values}


def _consumers(model, layer):
    return [other for other in model.layers if _single_producer(other) is layer]


def _stem(model):
    """(rescaling, padding, conv) of a foldable stem of ``model``, or None."""
    for layer in model.layers:
        reads_input = isinstance(_single_producer(layer), (type(None), keras.layers.InputLayer))
        if type(layer).__name__ != "Rescaling" or not reads_input:
            continue  # the normalisation must read the model's input
        following = _consumers(model, layer)
        if len(following) != 1 or type(following[0]).__name__ != "ZeroPadding2D":
            return None
        pad = following[0]
        convs = _consumers(model, pad)
        if len(convs) != 1 or pad.data_format != "channels_last":
            return None
        conv = convs[0]
        if (type(conv).__name__ != "Conv2D" or conv.groups != 1 or conv.padding != "valid"
                or conv.data_format != "channels_last" or conv.get_config()["activation"] != "linear"):
            return None
        return layer, pad, conv
    return None


def _per_channel(value, channels):
    v = np.asarray(value, np.float64).reshape(-1)
    if v.size == 1:
        v = np.repeat(v, channels)
    return v if v.size == channels else None


def fold_input_rescaling(model):
    """A clone of ``model`` with its input normalisation folded into the stem conv (see the module docstring).

    Applies to a functional model whose input feeds a ``Rescaling`` -> ``ZeroPadding2D`` -> ``Conv2D`` (linear,
    ungrouped, 'valid', channels_last) chain, each used once: every keras-regnet model with built-in preprocessing
    and symmetric padding. Returns ``(model, folded)``; other models come back unchanged with ``folded`` False.
    """
    if not hasattr(model, "_operations") or isinstance(model, keras.Sequential):
        return model, False
    stem = _stem(model)
    if stem is None:
        return model, False
    rescale, pad, conv = stem
    channels = conv.kernel.shape[2]
    scale, offset = _per_channel(rescale.scale, channels), _per_channel(rescale.offset, channels)
    if scale is None or offset is None or not np.all(scale != 0):
        return model, False
    pixel_zero = -offset / scale  # the pixel value that normalises to 0

    def clone(layer):
        if layer is rescale:
            return keras.layers.Identity(name=layer.name)
        if layer is pad:
            return ValuePad2D(layer.padding, pixel_zero, name=layer.name)
        config = layer.get_config()
        if layer is conv:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    folded = keras.models.clone_model(model, clone_function=clone)
    kernel, bias = conv_kernel_and_bias(conv)
    copy_weights(model, folded, replaced={
        conv.name: (kernel * scale[None, None, :, None], bias + np.einsum("hwio,i->o", kernel, offset))})
    return folded, True
