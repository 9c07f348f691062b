"""Keras building blocks of AnyNet/RegNet: plain functions that create stock Keras layers (plus GroupConv2D).

Layer names are stable and hierarchical (pycls style, 1-indexed): ``stem_conv``, ``s2_b3_conv_b``,
``s2_b3_se_reduce``, ``s2_b3_proj_bn``, ``s2_b3_add``, ``head_fc``. Weight conversion, feature taps and Grad-CAM
look layers up by these names.
"""

from __future__ import annotations

import keras

from keras_regnet.layers import GroupConv2D

__all__ = ["BN_EPSILON", "BN_MOMENTUM", "stem", "x_block", "stage", "head"]

# PyTorch's BatchNorm2d defaults (eps 1e-5, momentum 0.1 == Keras momentum 0.9), for parity with pycls/timm weights.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
# Below this input width a strided 1x1 projection is computed as subsample + stride-1 conv (see x_block).
ONEDNN_MIN_STRIDED_1X1_CHANNELS = 16


def conv_initializer():
    """pycls's conv init: normal with std sqrt(2 / fan_out), fan_out = k * k * out_channels."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def _bn(name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


PADDINGS = ("symmetric", "same")


def _conv3x3(x, filters, stride, groups, name, pad_name, conv_cls=keras.layers.Conv2D, padding="symmetric"):
    """3x3 conv; stride 2 pads 1 pixel on every side then runs 'valid', as PyTorch does.

    TF's 'same' pads asymmetrically (only bottom/right) at stride 2, which shifts the sampling grid by one pixel
    and changes the outputs of weights trained in PyTorch. ``padding="same"`` keeps TF's asymmetric padding, the
    architecture of Keras 2's ``tf_keras.applications.RegNet*`` (needed to run its weights exactly).
    """
    if stride > 1 and padding == "symmetric":
        x = keras.layers.ZeroPadding2D(1, name=pad_name)(x)
        padding = "valid"
    else:
        padding = "same"
    kwargs = {"groups": groups} if groups > 1 or conv_cls is GroupConv2D else {}
    return conv_cls(
        filters, 3, strides=stride, padding=padding, use_bias=False,
        kernel_initializer=conv_initializer(), name=name, **kwargs,
    )(x)


def stem(x, width, kind="imagenet", padding="symmetric"):
    """Stem: 3x3 conv (stride 2 for 'imagenet', stride 1 for 'cifar') -> BN -> ReLU."""
    x = _conv3x3(x, width, 2 if kind == "imagenet" else 1, 1, "stem_conv", "stem_pad", padding=padding)
    x = _bn("stem_bn")(x)
    return keras.layers.ReLU(name="stem_relu")(x)


def x_block(x, w_in, w_out, stride, bottleneck_ratio, group_width, se_ratio, name, padding="symmetric"):
    """Residual bottleneck (X) block, with Squeeze-and-Excitation when ``se_ratio`` > 0 (Y block).

    1x1 conv-BN-ReLU, 3x3 group conv (stride here)-BN-ReLU, [SE], 1x1 conv-BN; projection shortcut
    (1x1 conv with stride + BN) when width or stride changes; add; ReLU.
    """
    w_b = int(round(w_out / bottleneck_ratio))
    groups = w_b // group_width
    shortcut = x
    if w_in != w_out or stride != 1:
        proj_stride = stride
        if stride > 1 and w_in < ONEDNN_MIN_STRIDED_1X1_CHANNELS:
            # TF 2.21's oneDNN kernel for the filter gradient of a strided 1x1 conv with fewer than 16 input
            # channels corrupts memory and aborts the process. Subsampling first (a 1x1 max-pool with the stride)
            # and then a stride-1 1x1 conv computes exactly the same function and trains safely.
            shortcut = keras.layers.MaxPooling2D(1, strides=stride, name=f"{name}_proj_pool")(shortcut)
            proj_stride = 1
        shortcut = keras.layers.Conv2D(
            w_out, 1, strides=proj_stride, use_bias=False, kernel_initializer=conv_initializer(),
            name=f"{name}_proj_conv",
        )(shortcut)
        shortcut = _bn(f"{name}_proj_bn")(shortcut)
    y = keras.layers.Conv2D(w_b, 1, use_bias=False, kernel_initializer=conv_initializer(), name=f"{name}_conv_a")(x)
    y = _bn(f"{name}_bn_a")(y)
    y = keras.layers.ReLU(name=f"{name}_relu_a")(y)
    y = _conv3x3(y, w_b, stride, groups, f"{name}_conv_b", f"{name}_pad_b", conv_cls=GroupConv2D, padding=padding)
    y = _bn(f"{name}_bn_b")(y)
    y = keras.layers.ReLU(name=f"{name}_relu_b")(y)
    w_se = int(round(w_in * se_ratio))
    if w_se:
        s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(y)
        s = keras.layers.Conv2D(
            w_se, 1, activation="relu", kernel_initializer=conv_initializer(), name=f"{name}_se_reduce"
        )(s)
        s = keras.layers.Conv2D(
            w_b, 1, activation="sigmoid", kernel_initializer=conv_initializer(), name=f"{name}_se_expand"
        )(s)
        y = keras.layers.Multiply(name=f"{name}_se_scale")([y, s])
    y = keras.layers.Conv2D(w_out, 1, use_bias=False, kernel_initializer=conv_initializer(), name=f"{name}_conv_c")(y)
    y = _bn(f"{name}_bn_c")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def stage(x, index, w_in, depth, width, bottleneck_ratio, group_width, se_ratio, padding="symmetric"):
    """Stage ``s{index}``: ``depth`` X blocks of equal width; the first has stride 2."""
    for j in range(depth):
        x = x_block(
            x, w_in if j == 0 else width, width, 2 if j == 0 else 1,
            bottleneck_ratio, group_width, se_ratio, name=f"s{index}_b{j + 1}", padding=padding,
        )
    return x


def head(x, classes, classifier_activation):
    """Classifier: global average pool -> linear ``head_fc`` -> ``predictions`` activation (kept in float32)."""
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = keras.layers.Dense(
        classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        bias_initializer="zeros",
        name="head_fc",
    )(x)
    return keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")(x)
