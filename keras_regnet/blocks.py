"""Keras building blocks of AnyNet/RegNet: stock Keras layers plus GroupConv2D and BatchNorm (faster TF paths),
created by a recording builder.

Layer names are stable and hierarchical (pycls style, 1-indexed): ``stem_conv``, ``s2_b3_conv_b``,
``s2_b3_se_reduce``, ``s2_b3_proj_bn``, ``s2_b3_add``, ``head_fc``. The names are for people; the package itself
never parses them. While it creates the layers, :class:`Builder` records what each one is (its stage, block, role
and output stride) and where each stage ends, and the model keeps that record (``RegNetModel.layer_roles``,
``RegNetModel.feature_info``): weight conversion, feature taps, freezing and Grad-CAM are lookups in it.

Both image data formats are supported: ``channels_last`` (the default, TensorFlow's native CPU layout) and
``channels_first`` (``keras.config.set_image_data_format``); the channel axis is taken from the Keras config.
"""

from __future__ import annotations

from typing import NamedTuple

import keras

from keras_regnet.design import bottleneck_width
from keras_regnet.layers import BatchNorm, GroupConv2D

__all__ = ["BN_EPSILON", "BN_MOMENTUM", "PADDINGS", "Builder", "FeatureInfo", "LayerRole", "bottleneck_width"]

# PyTorch's BatchNorm2d defaults (eps 1e-5, momentum 0.1 == Keras momentum 0.9), for parity with pycls/timm weights.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
# Below this input width a strided 1x1 projection is computed as subsample + stride-1 conv (see Builder.block).
ONEDNN_MIN_STRIDED_1X1_CHANNELS = 16
PADDINGS = ("symmetric", "same")


class FeatureInfo(NamedTuple):
    """Where a feature map comes from: its layer, channel count and stride (input pixels per feature pixel)."""

    layer: str
    channels: int
    stride: int


class LayerRole(NamedTuple):
    """What a layer is in the network: its part ('preprocessing', 'stem', 's1'.., 'head'), block (1-based, or 0
    outside blocks), role within the block ('conv_a', 'bn_b', 'se_reduce', 'proj_conv', 'out', ...; 'conv', 'bn',
    'fc' ... in the stem and head) and the stride of its output (input pixels per output pixel)."""

    stage: str
    block: int
    role: str
    stride: int


def conv_initializer():
    """pycls's conv init: normal with std sqrt(2 / fan_out), fan_out = k * k * out_channels."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def channel_axis() -> int:
    """The channel axis of image tensors under the current Keras image data format."""
    return 1 if keras.config.image_data_format() == "channels_first" else -1


class Builder:
    """Creates the layers of one AnyNet and records each one's :class:`LayerRole` and each stage's output.

    ``padding``: ``"symmetric"`` pads stride-2 3x3 convs by 1 pixel on every side (PyTorch; the default) or
    ``"same"`` (TF's asymmetric padding: Keras 2's ``tf_keras.applications.RegNet*`` architecture).
    ``data_format``: the image data format of every layer it creates (default: Keras's global setting); pass a
    model's own format when adding layers to it (a new head) after the global setting may have changed.
    """

    def __init__(self, padding="symmetric", data_format=None):
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}.")
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError(f"data_format must be 'channels_last', 'channels_first' or None, got {data_format!r}.")
        self.padding = padding
        self.data_format = data_format or keras.config.image_data_format()
        self.axis = 1 if self.data_format == "channels_first" else -1
        self.roles = {}  # layer name -> LayerRole, in creation order
        self.stages = {}  # stage name -> FeatureInfo of its output
        self.stage_tensors = {}  # stage name -> its output tensor
        self.tensors = {}  # layer name -> its output tensor
        self._where = ("preprocessing", 0, 1)  # current (stage, block, stride)

    # -------------------------------------------------------------------------------------------- primitives

    def _apply(self, layer, inputs, role, stride=None):
        stage, block, current = self._where
        self.roles[layer.name] = LayerRole(stage, block, role, current if stride is None else stride)
        out = self.tensors[layer.name] = layer(inputs)
        return out

    def _bn(self, x, name, role):
        layer = BatchNorm(axis=self.axis, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)
        return self._apply(layer, x, role)

    def _conv3x3(self, x, filters, stride, groups, name, role, grouped):
        """3x3 conv; stride 2 pads 1 pixel on every side then runs 'valid', as PyTorch does.

        TF's 'same' pads asymmetrically (only bottom/right) at stride 2, which shifts the sampling grid by one pixel
        and changes the outputs of weights trained in PyTorch.
        """
        padding = "same"
        if stride > 1 and self.padding == "symmetric":
            pad_role = "pad" if role == "conv" else "pad_b"
            pad = keras.layers.ZeroPadding2D(1, data_format=self.data_format, name=name.replace("conv", "pad"))
            x = self._apply(pad, x, pad_role)
            padding = "valid"
        conv_cls = GroupConv2D if grouped else keras.layers.Conv2D
        kwargs = {"groups": groups} if grouped else {}
        layer = conv_cls(
            filters, 3, strides=stride, padding=padding, use_bias=False,
            kernel_initializer=conv_initializer(), data_format=self.data_format, name=name, **kwargs,
        )
        return self._apply(layer, x, role, stride=self._where[2] * stride)

    def _conv1x1(self, x, filters, name, role, **kwargs):
        layer = keras.layers.Conv2D(filters, 1, kernel_initializer=conv_initializer(), data_format=self.data_format,
                                    name=name, **kwargs)
        return self._apply(layer, x, role)

    # -------------------------------------------------------------------------------------------- network parts

    def preprocessing(self, x, scale, offset):
        """Rescale RGB [0, 255] with per-channel ``scale`` and ``offset`` (lists), on the channel axis.

        Per-channel constants are stored with rank 3, shaped (C, 1, 1) or (1, 1, C), so they broadcast on the
        channel axis of the format the model was built in: Keras's Rescaling reshapes a lower-rank scale by the
        *global* data format at call time, which would break a model called while the other format is set.
        """
        if isinstance(scale, (list, tuple)):
            if self.axis == 1:
                scale, offset = [[[s]] for s in scale], [[[o]] for o in offset]
            else:
                scale, offset = [[list(scale)]], [[list(offset)]]
        return self._apply(keras.layers.Rescaling(scale=scale, offset=offset, name="preprocessing"), x, "rescale")

    def stem(self, x, width, kind="imagenet"):
        """Stem: 3x3 conv (stride 2 for 'imagenet', stride 1 for 'cifar') -> BN -> ReLU."""
        stride = 2 if kind == "imagenet" else 1
        self._where = ("stem", 0, 1)
        x = self._conv3x3(x, width, stride, 1, "stem_conv", "conv", grouped=False)
        self._where = ("stem", 0, stride)
        x = self._bn(x, "stem_bn", "bn")
        x = self._apply(keras.layers.ReLU(name="stem_relu"), x, "relu")
        self._end_stage("stem", x, "stem_relu", width)
        return x

    def block(self, x, w_in, w_out, stride, bottleneck_ratio, group_width, se_ratio, stage, index):
        """Residual bottleneck (X) block, with Squeeze-and-Excitation when ``se_ratio`` > 0 (Y block).

        1x1 conv-BN-ReLU, 3x3 group conv (stride here)-BN-ReLU, [SE], 1x1 conv-BN; projection shortcut
        (1x1 conv with stride + BN) when width or stride changes; add; ReLU.
        """
        name = f"{stage}_b{index}"
        in_stride = self._where[2]
        out_stride = in_stride * stride
        w_b = bottleneck_width(w_out, bottleneck_ratio)
        groups = w_b // group_width
        shortcut = x
        self._where = (stage, index, out_stride)
        if w_in != w_out or stride != 1:
            proj_stride = stride
            if stride > 1 and w_in < ONEDNN_MIN_STRIDED_1X1_CHANNELS:
                # TF 2.21's oneDNN kernel for the filter gradient of a strided 1x1 conv with fewer than 16 input
                # channels corrupts memory and aborts the process. Subsampling first (a 1x1 max-pool with the stride)
                # and then a stride-1 1x1 conv computes exactly the same function and trains safely.
                pool = keras.layers.MaxPooling2D(1, strides=stride, data_format=self.data_format,
                                                 name=f"{name}_proj_pool")
                shortcut = self._apply(pool, shortcut, "proj_pool")
                proj_stride = 1
            shortcut = self._conv1x1(shortcut, w_out, f"{name}_proj_conv", "proj_conv", strides=proj_stride,
                                     use_bias=False)
            shortcut = self._bn(shortcut, f"{name}_proj_bn", "proj_bn")
        self._where = (stage, index, in_stride)  # conv_a runs at the input resolution; the stride is in conv_b
        y = self._conv1x1(x, w_b, f"{name}_conv_a", "conv_a", use_bias=False)
        y = self._bn(y, f"{name}_bn_a", "bn_a")
        y = self._apply(keras.layers.ReLU(name=f"{name}_relu_a"), y, "relu_a")
        y = self._conv3x3(y, w_b, stride, groups, f"{name}_conv_b", "conv_b", grouped=True)
        self._where = (stage, index, out_stride)
        y = self._bn(y, f"{name}_bn_b", "bn_b")
        y = self._apply(keras.layers.ReLU(name=f"{name}_relu_b"), y, "relu_b")
        w_se = int(round(w_in * se_ratio))
        if w_se:
            pool = keras.layers.GlobalAveragePooling2D(keepdims=True, data_format=self.data_format,
                                                       name=f"{name}_se_pool")
            s = self._apply(pool, y, "se_pool")
            s = self._conv1x1(s, w_se, f"{name}_se_reduce", "se_reduce", activation="relu")
            s = self._conv1x1(s, w_b, f"{name}_se_expand", "se_expand", activation="sigmoid")
            y = self._apply(keras.layers.Multiply(name=f"{name}_se_scale"), [y, s], "se_scale")
        y = self._conv1x1(y, w_out, f"{name}_conv_c", "conv_c", use_bias=False)
        y = self._bn(y, f"{name}_bn_c", "bn_c")
        y = self._apply(keras.layers.Add(name=f"{name}_add"), [shortcut, y], "add")
        return self._apply(keras.layers.ReLU(name=f"{name}_out"), y, "out")

    def stage(self, x, index, w_in, depth, width, bottleneck_ratio, group_width, se_ratio):
        """Stage ``s{index}``: ``depth`` X blocks of equal width; the first has stride 2."""
        stage = f"s{index}"
        for j in range(depth):
            x = self.block(
                x, w_in if j == 0 else width, width, 2 if j == 0 else 1,
                bottleneck_ratio, group_width, se_ratio, stage, j + 1,
            )
        self._end_stage(stage, x, f"{stage}_b{depth}_out", width)
        return x

    def _end_stage(self, stage, x, layer_name, channels):
        self.stages[stage] = FeatureInfo(layer_name, int(channels), self._where[2])
        self.stage_tensors[stage] = x

    def head(self, x, classes, classifier_activation, dropout=0.0):
        """Classifier: global average pool -> [dropout] -> linear ``head_fc`` -> ``predictions`` (float32)."""
        self._where = ("head", 0, self._where[2])
        pool = keras.layers.GlobalAveragePooling2D(data_format=self.data_format, name="head_pool")
        x = self._apply(pool, x, "pool")
        if dropout:
            x = self._apply(keras.layers.Dropout(dropout, name="head_dropout"), x, "dropout")
        fc = keras.layers.Dense(
            classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            bias_initializer="zeros",
            name="head_fc",
        )
        x = self._apply(fc, x, "fc")
        act = keras.layers.Activation(classifier_activation, dtype="float32", name="predictions")
        return self._apply(act, x, "predictions")

    def pool(self, x, pooling):
        """Backbone pooling without a classifier: ``"avg"`` or ``"max"`` global pooling."""
        self._where = ("head", 0, self._where[2])
        if pooling == "avg":
            pool = keras.layers.GlobalAveragePooling2D(data_format=self.data_format, name="avg_pool")
            return self._apply(pool, x, "avg_pool")
        pool = keras.layers.GlobalMaxPooling2D(data_format=self.data_format, name="max_pool")
        return self._apply(pool, x, "max_pool")
