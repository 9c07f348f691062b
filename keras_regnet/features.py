"""Multi-scale feature maps of a RegNet/AnyNet backbone, found by the models' stable layer names.

Stage ``stem`` ends at ``stem_relu``; stage ``s{i}`` ends at its last block's ``s{i}_b{last}_out``. With the
ImageNet stem the strides are 2 (stem), 4, 8, 16, 32 (s1..s4); with the CIFAR stem (stride 1) they are 1, 2, 4, 8, 16.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import keras

__all__ = [
    "FeatureInfo", "stage_of", "stage_names", "stage_outputs", "layer_stride", "feature_info", "feature_extractor",
]

_BLOCK_LAYER = re.compile(r"^s(\d+)_b(\d+)_")
_BLOCK_OUT = re.compile(r"^s(\d+)_b(\d+)_out$")
_HEAD_LAYERS = ("head_", "predictions", "avg_pool", "max_pool")


class FeatureInfo(NamedTuple):
    """Where a feature map comes from: its layer, channel count and stride (input pixels per feature pixel)."""

    layer: str
    channels: int
    stride: int


def stage_of(layer_name: str):
    """The part of the network a layer belongs to: 'preprocessing', 'stem', 's1'..'sN', 'head', or None (not ours)."""
    if layer_name == "preprocessing":
        return "preprocessing"
    if layer_name.startswith("stem_"):
        return "stem"
    match = _BLOCK_LAYER.match(layer_name)
    if match:
        return f"s{match.group(1)}"
    if layer_name.startswith(_HEAD_LAYERS):
        return "head"
    return None


def stage_outputs(model) -> dict:
    """``{stage: layer name}`` of the stage outputs present in ``model``, in network order ('stem', 's1', ...)."""
    names = [layer.name for layer in model.layers]
    outputs = {"stem": "stem_relu"} if "stem_relu" in names else {}
    last_block = {}
    for name in names:
        match = _BLOCK_OUT.match(name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            last_block[stage] = max(block, last_block.get(stage, 0))
    for stage in sorted(last_block):
        outputs[f"s{stage}"] = f"s{stage}_b{last_block[stage]}_out"
    if not outputs:
        raise ValueError(
            f"model {model.name!r} has no RegNet stage layers ('stem_relu', 's{{i}}_b{{j}}_out'); "
            "build it with keras_regnet (e.g. keras_regnet.RegNetY600MF) or pass a model name."
        )
    return outputs


def stage_names(model) -> list:
    """The stages of ``model`` in network order, e.g. ``['stem', 's1', 's2', 's3', 's4']``."""
    return list(stage_outputs(model))


def _stem_stride(model) -> int:
    try:
        return int(model.get_layer("stem_conv").strides[0])
    except ValueError:
        raise ValueError(f"model {model.name!r} has no 'stem_conv' layer; strides cannot be determined.") from None


# Layers of a stage's first block that still run at the previous stage's resolution (the stride is in conv_b).
_BEFORE_STRIDE = ("conv_a", "bn_a", "relu_a", "pad_b")


def _layer_stride(layer_name: str, stem_stride: int) -> int:
    """Input pixels per feature pixel at a layer's output, from its name (each stage's first block has stride 2)."""
    stage = stage_of(layer_name)
    if stage in ("preprocessing", "stem"):
        return 1 if layer_name in ("preprocessing", "stem_pad") else stem_stride
    match = _BLOCK_LAYER.match(layer_name)
    if not match:
        raise ValueError(f"layer {layer_name!r} is not a stem or stage layer; its stride is not defined.")
    index, block = int(match.group(1)), int(match.group(2))
    before = block == 1 and layer_name[match.end():] in _BEFORE_STRIDE
    return stem_stride * 2 ** (index - 1 if before else index)


def layer_stride(model, layer_name: str) -> int:
    """Input pixels per output pixel of a stem or stage layer of ``model`` (e.g. 32 for ``s4_b2_out``)."""
    return _layer_stride(layer_name, _stem_stride(model))


def feature_info(model) -> dict:
    """Layer, channels and stride of each feature map: ``{key: FeatureInfo(layer, channels, stride)}``.

    For a feature extractor (dict outputs) the keys are its output keys; for a backbone or classifier they are its
    stages (``'stem'``, ``'s1'``, ...). Strides are a lookup by layer name (stem stride x 2 per stage), so they are
    known even when the input size is dynamic.
    """
    stem_stride = _stem_stride(model)
    if isinstance(model.output, dict):
        layers = {key: tensor._keras_history.operation.name for key, tensor in model.output.items()}
    else:
        layers = stage_outputs(model)
    return {
        key: FeatureInfo(name, int(model.get_layer(name).output.shape[-1]), _layer_stride(name, stem_stride))
        for key, name in layers.items()
    }


def _resolve(model, requested):
    """Map each requested stage name (or exact layer name) to a layer name, with a clear error for unknown ones."""
    available = stage_outputs(model)
    layer_names = {layer.name for layer in model.layers}
    resolved = {}
    for key in requested:
        if key in available:
            resolved[key] = available[key]
        elif key in layer_names:
            resolved[key] = key
        else:
            raise ValueError(
                f"unknown stage or layer {key!r} for model {model.name!r}: its stages are "
                f"{', '.join(available)}; any layer name (e.g. {available[list(available)[-1]]!r}) also works."
            )
    return resolved


def feature_extractor(model_or_name, stages=None, weights=None, input_shape=None, **kwargs):
    """A Keras model returning a dict ``{stage: feature map}`` of a RegNet/AnyNet backbone.

    Args:
        model_or_name: a paper model name (``"RegNetY600MF"`` / ``"RegNetY-600MF"``), ``RegNetParams`` /
            ``AnyNetParams`` (or their dict form), or an already built keras_regnet model (its weights are shared,
            not copied).
        stages: stage names (``"stem"``, ``"s1"`` .. ``"sN"``) and/or exact layer names (``"s3_b2_out"``); the
            default ``None`` means every stage of the model (``("stem", "s1", "s2", "s3", "s4")`` for the paper's
            models).
        weights: when building by name: ``None``, ``"imagenet"`` or a weights file, as for the constructors.
            Not allowed with a built model (load its weights first).
        input_shape: when building: defaults to ``(None, None, 3)``, so any input size works; sizes divisible by
            32 give feature maps of exactly ``size / stride`` pixels.
        **kwargs: further constructor arguments when building (e.g. ``include_preprocessing=False``).

    Returns:
        A ``keras.Model`` with dict outputs; ``feature_info(extractor)`` gives each stage's layer, channels and
        stride.
    """
    if isinstance(model_or_name, keras.Model):
        if weights is not None or input_shape is not None or kwargs:
            raise ValueError(
                "weights, input_shape and constructor arguments apply only when building a backbone by name; "
                "load weights into your model (model.load_weights) before making a feature extractor from it."
            )
        model = model_or_name
    else:
        from keras_regnet.models import build_model

        kwargs.setdefault("include_top", False)
        model = build_model(model_or_name, weights=weights, input_shape=input_shape, **kwargs)
    if isinstance(stages, str):
        stages = (stages,)
    if stages is None:
        stages = stage_names(model)
    if not stages:
        raise ValueError("stages must name at least one stage or layer.")
    resolved = _resolve(model, stages)
    outputs = {key: model.get_layer(layer_name).output for key, layer_name in resolved.items()}
    # A single input is passed as a tensor, not a list, so calling the extractor on an array warns about nothing.
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=f"{model.name}_features")
