"""Fold inference-mode BatchNormalization into the convolution that feeds it.

At inference a BatchNorm after a linear conv is an affine map per output channel, so it can be absorbed into the
conv: ``W' = W * s`` and ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``. The folded model has
the same layer names (each folded BatchNorm becomes an ``Identity`` of the same name, which every exporter drops)
and computes the same function up to float rounding; its graph has one op fewer per conv, which TF Serving's
graph (no grappler conv/BN fusion for grouped convs) runs faster. TFLite's converter fuses BN itself: there the
folded and unfolded files are the same size and speed.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_regnet import _compat

__all__ = ["fold_batchnorm", "foldable_pairs", "conv_kernel_and_bias", "copy_weights"]


def _single_producer(layer):
    """The layer producing ``layer``'s only input, or None if ``layer`` is called more than once / has several inputs."""
    if _compat.call_count(layer) != 1:
        return None
    inputs = _compat.inbound_input_tensors(layer)
    if len(inputs) != 1:
        return None
    return _compat.producing_layer(inputs[0])


def foldable_pairs(model):
    """{batchnorm layer name: conv layer name} for every BatchNorm that can be folded into its producer.

    Foldable: the producer is a ``Conv2D`` (grouped ones included, depthwise not) with a linear activation, called
    once, whose output feeds only this BatchNorm, and the BatchNorm normalises the channel axis (-1 or 3).
    """
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        if layer.axis not in (-1, 3) and not (isinstance(layer.axis, (list, tuple)) and list(layer.axis) in ([-1], [3])):
            continue
        conv = _single_producer(layer)
        if (
            type(conv).__name__ in ("Conv2D", "GroupConv2D")
            and isinstance(conv, keras.layers.Conv2D)
            and conv.data_format == "channels_last"
            and conv.get_config()["activation"] == "linear"
            and _compat.call_count(conv) == 1
            and _compat.consumer_count(conv) == 1
        ):
            pairs[layer.name] = conv.name
    return pairs


def conv_kernel_and_bias(conv):
    """(kernel, bias) of ``conv`` in float64; a zero bias when it has none."""
    kernel = np.asarray(conv.kernel.numpy(), np.float64)
    bias = np.asarray(conv.bias.numpy(), np.float64) if conv.use_bias else np.zeros(kernel.shape[-1])
    return kernel, bias


def copy_weights(model, clone, skip=(), replaced=None):
    """Give each weighted layer of ``clone`` the weights of the same-named layer of ``model``.

    Layers named in ``skip`` are left alone; ``replaced`` maps a conv's name to the (kernel, bias) it gets instead
    (its clone was built with a bias)."""
    replaced = replaced or {}
    for layer in model.layers:
        if layer.name in skip or not layer.weights:
            continue
        new = clone.get_layer(layer.name)
        if layer.name in replaced:
            kernel, bias = replaced[layer.name]
            new.kernel.assign(kernel.astype(new.kernel.dtype))
            new.bias.assign(bias.astype(new.bias.dtype))
        else:
            new.set_weights(layer.get_weights())


def _folded_weights(conv, bn):
    """(kernel, bias) of ``conv`` with ``bn`` (inference mode) folded in, computed in float64."""
    kernel, bias = conv_kernel_and_bias(conv)
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    var = np.asarray(bn.moving_variance.numpy(), np.float64)
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    return kernel * scale, (bias - mean) * scale + beta


def fold_batchnorm(model):
    """A clone of ``model`` with every foldable BatchNorm (see :func:`foldable_pairs`) folded into its conv.

    Works on functional models (every keras_regnet model), recursing into nested functional sub-models; other
    models are returned as they are. The input model is not modified. Returns ``(folded_model, n_folded)``.
    """
    if not hasattr(model, "_operations") or isinstance(model, keras.Sequential):
        return model, 0  # only functional graphs tell which conv feeds which BatchNorm (every keras_regnet model is one)
    pairs = foldable_pairs(model)
    convs = {conv: bn for bn, conv in pairs.items()}
    nested = {}

    def clone(layer):
        if layer.name in pairs:
            return keras.layers.Identity(name=layer.name)
        if isinstance(layer, keras.Model) and hasattr(layer, "_operations"):
            folded, count = fold_batchnorm(layer)
            nested[layer.name] = count
            return folded
        config = layer.get_config()
        if layer.name in convs:
            config["use_bias"] = True
        new = layer.__class__.from_config(config)
        return new

    def call(layer, *args, **kwargs):
        # The Identity standing in for a BatchNorm takes only the tensor (BN's call also gets training/mask).
        return layer(args[0]) if layer.name in pairs else layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    folded_convs = {conv: _folded_weights(model.get_layer(conv), model.get_layer(bn)) for conv, bn in convs.items()}
    copy_weights(model, folded, skip={*nested, *pairs}, replaced=folded_convs)
    return folded, len(pairs) + sum(nested.values())
