"""What a model's weights say about using it: the ``pretrained_cfg`` rules, the one resolver of the eval transform
and class names, and the one name a model is exported and published under.

Used by the constructors (:mod:`keras_regnet.models`), ``predict``, ``explain``, ``export`` and ``train``: every
question "at what size, crop and interpolation is this model evaluated, what are its classes, what is it called"
is answered here, from (in order) the caller's explicit values, the model's own record (``pretrained_cfg``, its
fixed input size), the weights' registry entry, and the ImageNet defaults (``DEFAULT_EVAL``).
"""

from __future__ import annotations

import os
import re

from keras_regnet import specs
from keras_regnet.model import DEFAULT_EVAL, base_pretrained_cfg, find_regnet, static_size
from keras_regnet.preprocessing import imagenet_class_index
from keras_regnet.weights.registry import get_weights_info, is_registry_weights, weights_for_tag

__all__ = [
    "DEFAULT_EVAL", "normalize_weights_arg", "registry_options", "pretrained_cfg", "eval_config", "class_names",
    "export_name",
]


# ------------------------------------------------------------------------------------------------ weights argument

def normalize_weights_arg(weights, arch):
    """None/'none' -> None; a timm name with a tag ('regnety_080.ra3_in1k') -> 'imagenet:ra3_in1k' (same model)."""
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return None
    if hasattr(weights, "__fspath__"):
        return os.fspath(weights)
    if not isinstance(weights, str):
        raise ValueError(f"weights must be None, 'imagenet', a weights tag or a file path, got {weights!r}.")
    if "." in weights and not os.path.exists(weights):
        try:
            name, tag = specs.split_model_name(weights)
        except ValueError:
            return weights
        if tag is not None:
            if arch is not None and name != arch:
                raise ValueError(f"weights={weights!r} are weights of {name}, not of {arch}.")
            return weights_for_tag(tag)
    return weights


def registry_options(weights, arch, include_top, classes, padding, normalization):
    """The registry entry of named ``weights`` (or None), checked against the build options it needs; returns
    ``(entry, padding, normalization)`` with the options the entry requires filled in."""
    if not is_registry_weights(weights):
        return None, padding, normalization
    if arch is None:
        raise ValueError(
            f"weights={weights!r} is only available for the paper's named models (e.g. keras_regnet.RegNetY600MF); "
            "pass a file path to load your own weights into a custom RegNet/AnyNet."
        )
    if include_top and classes != 1000:
        raise ValueError(
            f"weights={weights!r} with include_top=True needs classes=1000 (the ImageNet head), got classes={classes}. "
            "Use include_top=False and add your own head, or weights=None."
        )
    info = get_weights_info(arch, weights)
    required = info.get("architecture", {})
    for option, value in (("padding", padding), ("normalization", normalization)):
        if value is not None and option in required and value != required[option]:
            raise ValueError(
                f"weights={weights!r} need {option}={required[option]!r} (the architecture they were trained "
                f"with), got {option}={value!r}."
            )
    return info, padding or required.get("padding"), normalization or required.get("normalization")


def pretrained_cfg(model, weights, info, given, spec):
    """A new model's pretrained_cfg: ``given`` as it is, else the registry entry of its weights (or of a tagged
    name such as ``regnety_080.ra3_in1k``) over :func:`keras_regnet.model.base_pretrained_cfg`."""
    if given is not None:
        return dict(given)
    tag_info = info
    if tag_info is None and isinstance(spec, str):
        name, tag = specs.split_model_name(spec)
        if tag:
            tag_info = get_weights_info(name, tag)
    cfg = base_pretrained_cfg(model, weights)
    if tag_info is not None:
        opts = model.build_options
        cfg.update(size=static_size(opts["input_shape"], opts.get("data_format")) or tag_info["size"],
                   crop_pct=tag_info["crop_pct"], interpolation=tag_info["interpolation"],
                   license=tag_info.get("license"))
        if info is None:
            cfg["weights_tag"] = tag_info["weights"]
    return cfg


# ------------------------------------------------------------------------------------------------ the resolver

def eval_config(model=None, size=None, crop_pct=None, interpolation=None, *, arch=None, weights=None):
    """``(size, crop_pct, interpolation)`` of the eval transform.

    In order: the arguments; then, for a ``model``, its fixed input size and its pretrained_cfg; without a model,
    the registry entry of ``arch`` + registry ``weights`` (e.g. ``"RegNetY-8.0GF"``, ``"imagenet:ra3_in1k"``);
    then 224 / 0.875 / bicubic.
    """
    cfg, fixed = {}, None
    if model is not None:
        regnet = find_regnet(model)
        cfg = regnet.pretrained_cfg if regnet is not None else {}
        try:
            shape = model.inputs[0].shape[1:]
            fixed = static_size(list(shape), regnet.build_options.get("data_format") if regnet is not None else None)
        except (AttributeError, IndexError, TypeError):
            pass
    elif arch is not None and is_registry_weights(weights):
        cfg = get_weights_info(arch, weights)
    return (
        size or fixed or cfg.get("size") or DEFAULT_EVAL["size"],
        crop_pct or cfg.get("crop_pct") or DEFAULT_EVAL["crop_pct"],
        interpolation or cfg.get("interpolation") or DEFAULT_EVAL["interpolation"],
    )


def class_names(model):
    """The model's class names: its own (pretrained_cfg), ImageNet's for a 1000-class model, else 'class_<i>'."""
    regnet = find_regnet(model)
    names = (regnet.pretrained_cfg.get("class_names") if regnet is not None else None)
    out = model.outputs[0] if not isinstance(model.output, dict) else None
    n = int(out.shape[-1]) if out is not None and len(out.shape) == 2 else None
    if names is not None and (n is None or len(names) == n):
        return list(names)
    if n == 1000:
        index = imagenet_class_index()
        return [index[i][1] for i in range(1000)]
    return [f"class_{i}" for i in range(n or 0)]


# ------------------------------------------------------------------------------------------------ the export name

def _slug(name):
    return re.sub(r"[^a-z0-9_.-]+", "_", str(name).lower()).strip("_.") or "model"


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_.") or "model"


def export_name(model=None, *, arch=None, run=None, path=None):
    """The one name a model is exported (``saved_models/<name>/<version>``) and published under.

    In order: ``run`` (a training run's name, e.g. ``RegNetY600MF-shapes``); the name the model carries
    (``pretrained_cfg["export_name"]``: ``train`` records its run's name in the models it saves, so exporting
    ``runs/x/best.keras`` again adds a version to the name ``train`` exported under); the paper model ``arch``
    (``regnety600mf``); the ``.keras`` file's name (``path``); ``custom`` for other keras_regnet models; the
    model's own name. Only letters, digits, ``_``, ``-`` and ``.`` are kept.
    """
    if run:
        return _safe(run)
    regnet = find_regnet(model) if model is not None else None
    carried = regnet.pretrained_cfg.get("export_name") if regnet is not None else None
    if carried:
        return _safe(carried)
    if arch is not None:
        return _slug(specs.constructor_name(arch))
    if path is not None:
        return _slug(os.path.splitext(os.path.basename(os.fspath(path)))[0])
    if regnet is not None:
        return "custom"
    return _slug(getattr(model, "name", None) or "model")
