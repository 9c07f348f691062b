"""Multi-scale feature maps of a RegNet/AnyNet backbone, from the model's own record of its stages.

A RegNetModel records, while it is built, where each stage ends (``model.feature_info``: stage -> layer, channels,
stride) and what every layer is (``model.layer_roles``); the functions here are lookups in that record. With the
ImageNet stem the strides are 2 (stem), 4, 8, 16, 32 (s1..s4); with the CIFAR stem (stride 1) 1, 2, 4, 8, 16.
"""

from __future__ import annotations

import keras

from keras_regnet import specs
from keras_regnet.blocks import FeatureInfo
from keras_regnet.model import RegNetModel, find_regnet
from keras_regnet.models import build_model

__all__ = ["FeatureInfo", "stage_names", "stage_outputs", "layer_stride", "feature_info", "feature_extractor",
           "regnet_of"]


def regnet_of(model):
    """The RegNetModel that ``model`` is or contains; a clear error for other models."""
    found = find_regnet(model)
    if found is None:
        raise ValueError(
            f"model {getattr(model, 'name', model)!r} is not a keras_regnet model and contains none; build it with "
            "keras_regnet (e.g. keras_regnet.RegNetY600MF) or pass a model name."
        )
    return found


def stage_outputs(model) -> dict:
    """``{stage: layer name}`` of the stage outputs present in ``model``, in network order ('stem', 's1', ...)."""
    return {stage: info.layer for stage, info in regnet_of(model).feature_info.items()}


def stage_names(model) -> list:
    """The stages of ``model`` in network order, e.g. ``['stem', 's1', 's2', 's3', 's4']``."""
    return list(regnet_of(model).feature_info)


def layer_stride(model, layer_name: str) -> int:
    """Input pixels per output pixel of a stem or stage layer of ``model`` (e.g. 32 for ``s4_b2_out``)."""
    role = regnet_of(model).layer_roles.get(layer_name)
    if role is None or role.stage == "head":
        raise ValueError(f"layer {layer_name!r} is not a stem or stage layer of the model; its stride is not defined.")
    return role.stride


def feature_info(model) -> dict:
    """Layer, channels and stride of each feature map: ``{key: FeatureInfo(layer, channels, stride)}``.

    For a feature extractor (dict outputs) the keys are its output keys; for a backbone or classifier they are its
    stages (``'stem'``, ``'s1'``, ...). Strides are recorded while building, so they are known for dynamic sizes.
    """
    regnet = regnet_of(model)
    keys = regnet.build_options.get("features") if regnet is model else None
    if not keys:
        return regnet.feature_info
    stages, roles = regnet.feature_info, regnet.layer_roles
    out = {}
    for key in keys:
        if key in stages:
            out[key] = stages[key]
        else:
            channels = int(regnet.get_layer(key).output.shape[_channel_axis(regnet)])
            out[key] = FeatureInfo(key, channels, roles[key].stride)
    return out


def _channel_axis(regnet):
    fmt = regnet.build_options.get("data_format") or keras.config.image_data_format()
    return 1 if fmt == "channels_first" else -1


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
        A :class:`keras_regnet.RegNetModel` with dict outputs (its config rebuilds it; ``.keras`` files restore it); ``feature_info(extractor)`` gives each stage's layer, channels and
        stride.
    """
    if isinstance(stages, str):
        stages = (stages,)
    if stages is not None and not stages:
        raise ValueError("stages must name at least one stage or layer.")
    if isinstance(model_or_name, keras.Model):
        if weights is not None or input_shape is not None or kwargs:
            raise ValueError(
                "weights, input_shape and constructor arguments apply only when building a backbone by name; "
                "load weights into your model (model.load_weights) before making a feature extractor from it."
            )
        model = model_or_name
        if not isinstance(model, RegNetModel):
            regnet_of(model)  # a clear error for non-RegNet models
            raise ValueError(
                f"model {model.name!r} contains a keras_regnet backbone; pass the backbone itself "
                "(the RegNetModel layer inside it) to feature_extractor."
            )
        keys = list(stages) if stages is not None else list(model.feature_info)
        outputs = {}
        for key in keys:
            if key in model.feature_info:
                outputs[key] = model._stage_tensors[key]
            elif key in model.layer_roles and model.layer_roles[key].stage != "head":
                outputs[key] = model.get_layer(key).output
            else:
                raise ValueError(
                    f"unknown stage or layer {key!r} for model {model.name!r}: its stages are "
                    f"{', '.join(model.feature_info)}; any stem or stage layer name "
                    f"(e.g. {list(model.feature_info.values())[-1].layer!r}) also works."
                )
        options = dict(model.build_options, include_top=False, pooling=None, head_dropout=0.0, features=keys)
        return model._derive(outputs, options, name=f"{model.name}_features")
    params, _ = specs.resolve(model_or_name)
    anynet = params.to_anynet() if isinstance(params, specs.RegNetParams) else params
    keys = list(stages) if stages is not None else ["stem"] + [f"s{i + 1}" for i in range(len(anynet.depths))]
    kwargs.setdefault("include_top", False)
    return build_model(model_or_name, weights=weights, input_shape=input_shape, features=keys, **kwargs)
