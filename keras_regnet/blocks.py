"""The Keras side of the layer plan: :class:`Builder` creates one stock Keras layer (or GroupConv2D / BatchNorm, the
faster TF paths) per :class:`keras_regnet.plan.Layer`, in the plan's order, and wires them as the plan says.

The architecture itself (names, stages, blocks, roles, widths, groups, SE width, strides) is decided in
:mod:`keras_regnet.plan`; nothing here derives it again. While it creates the layers, the builder keeps each
layer's output tensor and the plan's record of what each layer is (its stage, block, role and output stride) and
where each stage ends; the model keeps that record (``RegNetModel.layer_roles``, ``RegNetModel.feature_info``).

Both image data formats are supported: ``channels_last`` (the default, TensorFlow's native CPU layout) and
``channels_first``; the builder creates every layer in its own ``data_format``.
"""

from __future__ import annotations

import keras

from keras_regnet import plan as plan_lib
from keras_regnet.design import bottleneck_width
from keras_regnet.layers import BatchNorm, GroupConv2D
from keras_regnet.plan import ONEDNN_MIN_STRIDED_1X1_CHANNELS, PADDINGS, FeatureInfo, LayerRole  # noqa: F401

__all__ = ["BN_EPSILON", "BN_MOMENTUM", "PADDINGS", "Builder", "FeatureInfo", "LayerRole", "bottleneck_width"]

# PyTorch's BatchNorm2d defaults (eps 1e-5, momentum 0.1 == Keras momentum 0.9), for parity with pycls/timm weights.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def conv_initializer():
    """pycls's conv init: normal with std sqrt(2 / fan_out), fan_out = k * k * out_channels."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def channel_axis() -> int:
    """The channel axis of image tensors under the current Keras image data format."""
    return 1 if keras.config.image_data_format() == "channels_first" else -1


class Builder:
    """Creates the Keras layers of a :class:`keras_regnet.plan.LayerPlan` and records their roles and stage outputs.

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
        self._where = ("preprocessing", 0, 1)  # (stage, block, stride) after the last part added
        self._normalization = None  # (scale, offset) of the 'rescale' layer

    @classmethod
    def for_plan(cls, plan):
        """A builder with the plan's padding and data format."""
        return cls(plan.options.padding, plan.options.data_format)

    # -------------------------------------------------------------------------------------------- the plan

    def build(self, plan, x):
        """Create every layer of ``plan`` in order on input tensor ``x``; return the output of its last layer."""
        if plan.options.padding != self.padding or plan.options.data_format != self.data_format:
            raise ValueError(
                f"this builder makes padding={self.padding!r}, data_format={self.data_format!r} layers; the plan "
                f"has padding={plan.options.padding!r}, data_format={plan.options.data_format!r} "
                "(use Builder.for_plan(plan))."
            )
        channels = x.shape[self.axis]
        if channels is not None and int(channels) != plan.options.input_channels:
            raise ValueError(
                f"the input has {int(channels)} channels ({self.data_format}); the plan was made for "
                f"input_channels={plan.options.input_channels}."
            )
        if plan.options.normalization == "unit":
            self._normalization = (1.0 / 255.0, 0.0)
        else:
            from keras_regnet.preprocessing import normalization_constants

            self._normalization = normalization_constants(plan.options.input_channels)
        self.tensors[plan_lib.INPUT] = x
        out = self.realise(plan.layers)
        self.roles.update(plan.layer_roles())
        for stage, info in plan.stages:
            self.stages[stage] = info
            self.stage_tensors[stage] = self.tensors[info.layer]
        return out

    def realise(self, layers):
        """Create and call one Keras layer per planned layer (Layer objects or rows); return the last output."""
        out = None
        for layer in layers:
            if not isinstance(layer, plan_lib.Layer):
                layer = plan_lib.Layer(*layer)
            inputs = [self.tensors[name] for name in layer.inputs]
            out = self.tensors[layer.name] = self.make_layer(layer)(inputs[0] if len(inputs) == 1 else inputs)
            self.roles[layer.name] = layer.layer_role
            self._where = (layer.stage, layer.block, layer.out_stride)
        return out

    def make_layer(self, layer):
        """The Keras layer of one planned layer (by its kind)."""
        kind, name, fmt = layer.kind, layer.name, self.data_format
        if kind in ("conv", "group_conv"):
            grouped = kind == "group_conv"
            conv_cls, extra = (GroupConv2D, {"groups": layer.groups}) if grouped else (keras.layers.Conv2D, {})
            return conv_cls(
                layer.channels_out, layer.kernel, strides=layer.stride, padding=layer.padding, use_bias=layer.bias,
                activation=layer.activation, kernel_initializer=conv_initializer(), data_format=fmt, name=name,
                **extra,
            )
        if kind == "bn":
            return BatchNorm(axis=self.axis, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)
        if kind == "relu":
            return keras.layers.ReLU(name=name)
        if kind == "pad":
            return keras.layers.ZeroPadding2D(layer.pad, data_format=fmt, name=name)
        if kind == "max_pool":
            return keras.layers.MaxPooling2D(layer.kernel, strides=layer.stride, padding=layer.padding,
                                             data_format=fmt, name=name)
        if kind == "se_pool":
            return keras.layers.GlobalAveragePooling2D(keepdims=True, data_format=fmt, name=name)
        if kind == "global_avg_pool":
            return keras.layers.GlobalAveragePooling2D(data_format=fmt, name=name)
        if kind == "global_max_pool":
            return keras.layers.GlobalMaxPooling2D(data_format=fmt, name=name)
        if kind == "multiply":
            return keras.layers.Multiply(name=name)
        if kind == "add":
            return keras.layers.Add(name=name)
        if kind == "dropout":
            return keras.layers.Dropout(layer.rate, name=name)
        if kind == "dense":
            # pycls's head init: normal with std 0.01, zero bias.
            return keras.layers.Dense(
                layer.channels_out, use_bias=layer.bias, bias_initializer="zeros", name=name,
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            )
        if kind == "activation":
            # float32 even under mixed precision: probabilities and losses need the range.
            return keras.layers.Activation(layer.activation, dtype="float32", name=name)
        if kind == "rescale":
            return keras.layers.Rescaling(*self._rescale_constants(), name=name)
        raise ValueError(f"unknown layer kind {kind!r} in the plan (layer {name!r}).")

    def _rescale_constants(self):
        """(scale, offset) on the channel axis.

        Per-channel constants are stored with rank 3, shaped (C, 1, 1) or (1, 1, C), so they broadcast on the
        channel axis of the format the model was built in: Keras's Rescaling reshapes a lower-rank scale by the
        *global* data format at call time, which would break a model called while the other format is set.
        """
        scale, offset = self._normalization
        if isinstance(scale, (list, tuple)):
            if self.axis == 1:
                scale, offset = [[[s]] for s in scale], [[[o]] for o in offset]
            else:
                scale, offset = [[list(scale)]], [[list(offset)]]
        return scale, offset

    # -------------------------------------------------------------------------------------------- a new head

    def _source(self, x):
        """The name under which tensor ``x`` is known to this builder (registered as an outside input if new)."""
        for name, tensor in self.tensors.items():
            if tensor is x:
                return name
        name = plan_lib.INPUT if plan_lib.INPUT not in self.tensors else f"{plan_lib.INPUT}:{len(self.tensors)}"
        self.tensors[name] = x
        return name

    def head(self, x, classes, classifier_activation, dropout=0.0, stride=None):
        """The planned classifier (see :func:`keras_regnet.plan.head_rows`) on ``x``, a built model's last stage
        output of stride ``stride`` (default: the stride of the last layer this builder made)."""
        stride = self._where[2] if stride is None else stride
        rows = plan_lib.head_rows(self._source(x), int(x.shape[self.axis]), stride, classes, classifier_activation,
                                  dropout)
        return self.realise(rows)
