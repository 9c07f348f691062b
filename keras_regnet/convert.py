"""Weight conversion: timm / pycls state dicts and Keras 2 (tf_keras) RegNet layers -> a RegNetModel's layers.

All foreign naming knowledge lives here, and nothing else: reading files is ``keras_regnet.weights.files``. Our own
layers are found through the model's record of what each layer is (``RegNetModel.layer_roles``: stage, block,
role), never by parsing their names. Loading is strict: every weight of the model comes from exactly one tensor of
the file, every tensor of the file is used (BatchNorm's ``num_batches_tracked`` counters excepted), dtypes (float),
values (finite) and shapes are checked, and nothing is assigned until the whole file has been matched, so a
mismatch never leaves a half-loaded model; the error names the first offending tensor.

Formats:
- ``timm``: ``stem.conv.weight``, ``s1.b1.conv1.conv.weight``, ``...conv1.bn.*``, ``...conv2.*`` (grouped 3x3),
  ``...se.fc1/fc2.*``, ``...conv3.*``, ``...downsample.conv/bn.*``, ``head.fc.*`` (RGB stem).
- ``pycls`` (the paper's checkpoints): ``s1.b1.f.a.weight``, ``f.a_bn``, ``f.b``, ``f.b_bn``, ``f.se.f_ex.0/2``,
  ``f.c``, ``f.c_bn``, ``s1.b1.proj``, ``s1.b1.bn``; stem and head as timm; BGR stem (flipped to RGB here).
- ``keras2``: tf_keras RegNet layer names (``regnety006_Stage_0_YBlock_0_conv_3x3`` ...).
"""

from __future__ import annotations

import re
import warnings

import numpy as np

__all__ = [
    "WeightsMismatchError",
    "detect_format",
    "pycls_to_timm",
    "keras2_layer_key",
    "load_state_dict_into_model",
    "load_keras2_layers_into_model",
    "export_state_dict",
]

# Reading files moved to keras_regnet.weights.files; these names still work from here.
_MOVED = ("read_state_dict", "is_keras2_h5", "read_keras2_h5", "load_file_into_model", "infer_model_name",
          "convert_file", "load_keras2_h5_into_model")


def __getattr__(name):
    if name in _MOVED:
        from keras_regnet.weights import files

        return getattr(files, name)
    raise AttributeError(f"module 'keras_regnet.convert' has no attribute {name!r}")


class WeightsMismatchError(ValueError):
    """The weights do not fit the model (wrong model, missing/extra tensors, wrong shapes or values)."""


# Our block role -> timm module path (inside s{i}.b{j}).
_BLOCK_TIMM = {
    "conv_a": "conv1.conv", "bn_a": "conv1.bn", "conv_b": "conv2.conv", "bn_b": "conv2.bn",
    "se_reduce": "se.fc1", "se_expand": "se.fc2", "conv_c": "conv3.conv", "bn_c": "conv3.bn",
    "proj_conv": "downsample.conv", "proj_bn": "downsample.bn",
}
# Stem and head roles -> timm module path.
_OUTER_TIMM = {("stem", "conv"): "stem.conv", ("stem", "bn"): "stem.bn", ("head", "fc"): "head.fc"}
# pycls module path -> timm module path (inside s{i}.b{j}).
_PYCLS_TIMM = {
    "f.a": "conv1.conv", "f.a_bn": "conv1.bn", "f.b": "conv2.conv", "f.b_bn": "conv2.bn",
    "f.se.f_ex.0": "se.fc1", "f.se.f_ex.2": "se.fc2", "f.c": "conv3.conv", "f.c_bn": "conv3.bn",
    "proj": "downsample.conv", "bn": "downsample.bn",
}
# tf_keras block layer suffix -> our block role.
_KERAS2_BLOCK = {
    "conv_1x1_1": "conv_a", "conv_1x1_1_bn": "bn_a", "conv_3x3": "conv_b", "conv_3x3_bn": "bn_b",
    "squeeze_and_excite_squeeze": "se_reduce", "squeeze_and_excite_excite": "se_expand",
    "conv_1x1_2": "conv_c", "conv_1x1_2_bn": "bn_c", "skip_1x1": "proj_conv", "skip_bn": "proj_bn",
}
_BN_VARS = ("weight", "bias", "running_mean", "running_var")  # Keras order: gamma, beta, moving mean, moving var


def detect_format(state_dict):
    """'pycls' for the paper's original key names (``s1.b1.f.a.weight``), else 'timm'."""
    return "pycls" if any(".f.a." in k or k.endswith(".f.a.weight") for k in state_dict) else "timm"


def pycls_to_timm(state_dict):
    """Rename pycls keys to timm's and flip the stem's input channels from BGR (pycls reads cv2 images) to RGB."""
    out = {}
    for key, value in state_dict.items():
        m = re.match(r"^(s\d+\.b\d+)\.(.+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$", key)
        if m and m.group(2) in _PYCLS_TIMM:
            key = f"{m.group(1)}.{_PYCLS_TIMM[m.group(2)]}.{m.group(3)}"
        elif key == "stem.conv.weight":
            value = value[:, ::-1].copy()
        out[key] = value
    return out


def keras2_layer_key(name):
    """A tf_keras RegNet layer name -> our (stage, block, role), e.g. ``..._Stage_1_YBlock_0_conv_3x3`` ->
    ``('s2', 1, 'conv_b')``; None for names that are not RegNet layers."""
    if name.endswith("_stem_conv"):
        return ("stem", 0, "conv")
    if name.endswith("_stem_bn"):
        return ("stem", 0, "bn")
    if name.endswith("head_dense"):
        return ("head", 0, "fc")
    m = re.search(r"_Stage_(\d+)_[XY]Block_(\d+)_(\w+)$", name)
    if m and m.group(3) in _KERAS2_BLOCK:
        return (f"s{int(m.group(1)) + 1}", int(m.group(2)) + 1, _KERAS2_BLOCK[m.group(3)])
    return None


# ------------------------------------------------------------------------------------------------ matching layers

def _regnet(model, source):
    from keras_regnet.models import RegNetModel

    if not isinstance(model, RegNetModel):
        raise WeightsMismatchError(
            f"{source} can only be loaded into keras_regnet models (RegNetModel, e.g. keras_regnet.RegNetY600MF()); "
            f"got {type(model).__name__} {getattr(model, 'name', '')!r}."
        )
    return model


def _weighted_layers(model):
    """``[(layer, LayerRole)]`` of the model's layers that have weights, in model order."""
    roles = model.layer_roles
    return [(layer, roles.get(layer.name)) for layer in model.layers if layer.weights]


def _timm_module(role):
    """Our LayerRole -> (timm module path, kind) where kind is 'conv', 'conv_bias', 'bn' or 'dense'."""
    if role is None:
        return None, None
    if (role.stage, role.role) in _OUTER_TIMM:
        kind = {"conv": "conv", "bn": "bn", "fc": "dense"}[role.role]
        return _OUTER_TIMM[(role.stage, role.role)], kind
    if role.role in _BLOCK_TIMM and role.block:
        kind = "bn" if "bn" in role.role else ("conv_bias" if role.role.startswith("se_") else "conv")
        return f"{role.stage}.b{role.block}.{_BLOCK_TIMM[role.role]}", kind
    return None, None


def _var_names(kind):
    return _BN_VARS if kind == "bn" else (("weight", "bias") if kind in ("conv_bias", "dense") else ("weight",))


def _check_value(key, array, source):
    """A tensor must be a finite float array."""
    array = np.asarray(array)
    if array.dtype.kind != "f":
        raise WeightsMismatchError(f"tensor {key!r} of {source} has dtype {array.dtype}, not a float: refusing the file.")
    if not np.all(np.isfinite(array)):
        raise WeightsMismatchError(f"tensor {key!r} of {source} has NaN or infinite values: refusing the file.")


def _to_keras(key, array, kind):
    """A PyTorch tensor in Keras layout: conv (O, I, kh, kw) -> (kh, kw, I, O); linear (O, I) -> (I, O)."""
    array = np.asarray(array, dtype="float32")
    if key.endswith(".weight") and kind in ("conv", "conv_bias") and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if key.endswith(".weight") and kind == "dense" and array.ndim == 2:
        return array.T
    return array


def _head_classes(model):
    opts = model.build_options
    return opts["classes"] if opts["include_top"] else None


def _check_padding(model, expected, source):
    """Refuse weights trained with the other stride-2 padding: the outputs would be silently shifted."""
    actual = model.build_options["padding"]
    if actual != expected:
        if expected == "same":
            how = ("build the model with padding='same', normalization='unit', e.g. "
                   "keras_regnet.build_model('RegNetY-600MF', padding='same', normalization='unit', weights=path)")
        else:
            how = "build the model with the default padding='symmetric'"
        raise WeightsMismatchError(
            f"{source} holds weights trained with {expected!r} padding on stride-2 convs, but the model uses "
            f"{actual!r} padding: outputs would be silently wrong. {how}."
        )


def _assign_all(pairs):
    """Assign every (layer, [arrays]) pair; only called once everything has been matched and checked."""
    for layer, arrays in pairs:
        layer.set_weights(arrays)


def load_state_dict_into_model(model, state_dict, source="the state dict", fmt=None):
    """Load a timm- or pycls-format state dict (``{key: array}``, PyTorch layouts) into a RegNetModel, strictly.

    The classifier is skipped (left as built) when the model has no head or when its class count differs
    from the file's (a new head for fine-tuning); a warning says so in the second case.
    Raises :class:`WeightsMismatchError` naming the first offending tensor.
    """
    model = _regnet(model, source)
    fmt = fmt or detect_format(state_dict)
    if fmt == "pycls":
        state_dict = pycls_to_timm(state_dict)
    _check_padding(model, "symmetric", source)
    file_classes = state_dict["head.fc.weight"].shape[0] if "head.fc.weight" in state_dict else None
    model_classes = _head_classes(model)
    skip_head = model_classes is None or (file_classes is not None and file_classes != model_classes)
    used = set()
    pairs = []
    for layer, role in _weighted_layers(model):
        module, kind = _timm_module(role)
        if module is None:
            raise WeightsMismatchError(
                f"layer {layer.name!r} of the model has no counterpart in the {fmt} format ({source}); "
                "only RegNet/AnyNet layers can be loaded from state dicts."
            )
        if module == "head.fc" and skip_head:
            continue
        arrays = []
        for var, var_name in zip(layer.weights, _var_names(kind)):
            key = f"{module}.{var_name}"
            if key not in state_dict:
                raise WeightsMismatchError(
                    f"{source} has no tensor {key!r} for layer {layer.name!r} (shape {tuple(var.shape)}): "
                    "the file holds weights of a different model."
                )
            _check_value(key, state_dict[key], source)
            value = _to_keras(key, state_dict[key], kind)
            if tuple(value.shape) != tuple(var.shape):
                raise WeightsMismatchError(
                    f"tensor {key!r} of {source} has shape {tuple(np.shape(state_dict[key]))}, which does not fit "
                    f"layer {layer.name!r} ({var.path}: {tuple(var.shape)} in Keras layout): the file holds "
                    "weights of a different model."
                )
            arrays.append(value)
            used.add(key)
        if len(arrays) != len(layer.weights):
            raise WeightsMismatchError(f"layer {layer.name!r} has unexpected variables {[v.path for v in layer.weights]}.")
        pairs.append((layer, arrays))
    ignorable = {k for k in state_dict if k.endswith("num_batches_tracked")}
    if skip_head:
        ignorable |= {k for k in state_dict if k.startswith("head.fc.")}
    unused = [k for k in state_dict if k not in used and k not in ignorable]
    if unused:
        raise WeightsMismatchError(
            f"tensor {unused[0]!r} of {source} has no place in the model ({len(unused)} unused tensors): the file "
            "holds weights of a different (larger) model."
        )
    _assign_all(pairs)
    _warn_new_head(source, file_classes, model_classes)


def _warn_new_head(source, file_classes, model_classes):
    if model_classes is not None and file_classes is not None and file_classes != model_classes:
        warnings.warn(
            f"{source}: its classifier has {file_classes} classes and the model's {model_classes}: head_fc is "
            "left randomly initialised (everything else is loaded).",
            stacklevel=4,
        )


def export_state_dict(model):
    """The inverse of :func:`load_state_dict_into_model`: ``{timm key: numpy array}`` in PyTorch layouts.

    Lets Keras-trained weights run in timm (``timm.models.regnet``), and gives tests a round trip.
    """
    model = _regnet(model, "export_state_dict")
    out = {}
    for layer, role in _weighted_layers(model):
        module, kind = _timm_module(role)
        if module is None:
            raise WeightsMismatchError(f"layer {layer.name!r} has no timm counterpart.")
        for var, var_name in zip(layer.weights, _var_names(kind)):
            value = np.asarray(var.numpy(), dtype="float32")
            if var_name == "weight" and value.ndim == 4:
                value = value.transpose(3, 2, 0, 1)
            elif var_name == "weight" and kind == "dense":
                value = value.T
            out[f"{module}.{var_name}"] = np.ascontiguousarray(value)
    return out


def keras2_keyed_layers(groups, source):
    """``{(stage, block, role): (file layer name, [arrays])}`` from ``{file layer name: [arrays]}`` of a tf_keras
    RegNet file; a single extra Dense layer (kernel + bias) is taken as the classifier (a fine-tuned model's head)."""
    out, unknown = {}, []
    for layer, arrays in groups.items():
        key = keras2_layer_key(layer)
        if key is None:
            unknown.append(layer)
        else:
            out[key] = (layer, arrays)
    head = ("head", 0, "fc")
    if len(unknown) == 1 and head not in out and [a.ndim for a in groups[unknown[0]]] == [2, 1]:
        out[head] = (unknown[0], groups[unknown.pop()])
    if unknown:
        raise WeightsMismatchError(
            f"layer {unknown[0]!r} of {source} is not part of a Keras 2 RegNet: the file holds another model."
        )
    return out


def load_keras2_layers_into_model(model, groups, source):
    """Load tf_keras RegNet layers (``{file layer name: [arrays]}``) into a model built with ``padding="same"``
    and ``normalization="unit"``, strictly (like state dicts)."""
    model = _regnet(model, source)
    _check_padding(model, "same", source)
    opts = model.build_options
    if opts["include_preprocessing"] and opts["normalization"] != "unit":
        raise WeightsMismatchError(
            f"{source} holds Keras 2 weights, which take inputs rescaled to [0, 1], but the model normalises with "
            "ImageNet mean/std: build it with normalization='unit' (and padding='same')."
        )
    layers = keras2_keyed_layers(groups, source)
    head = ("head", 0, "fc")
    file_classes = layers[head][1][0].shape[-1] if head in layers else None
    model_classes = _head_classes(model)
    skip_head = model_classes is None or (file_classes is not None and file_classes != model_classes)
    pairs, used = [], set()
    for layer, role in _weighted_layers(model):
        key = (role.stage, role.block, role.role) if role else None
        if key == head and skip_head:
            continue
        if key not in layers:
            raise WeightsMismatchError(
                f"{source} has no weights for layer {layer.name!r}: the file holds weights of a different model."
            )
        lname, arrays = layers[key]
        if len(arrays) != len(layer.weights):
            raise WeightsMismatchError(
                f"layer {lname!r} of {source} has {len(arrays)} tensors, the model's {layer.name!r} {len(layer.weights)}."
            )
        for var, value in zip(layer.weights, arrays):
            _check_value(f"{lname}/{var.name}", value, source)
            if tuple(value.shape) != tuple(var.shape):
                raise WeightsMismatchError(
                    f"tensor {lname}/{var.name} of {source} has shape {tuple(value.shape)}, which does not fit "
                    f"layer {layer.name!r} ({tuple(var.shape)}): the file holds weights of a different model."
                )
        used.add(key)
        pairs.append((layer, [a.astype("float32") for a in arrays]))
    unused = [k for k in layers if k not in used and not (k == head and skip_head)]
    if unused:
        raise WeightsMismatchError(
            f"layer {layers[unused[0]][0]!r} of {source} has no place in the model: the file holds weights of a "
            "different (larger) model."
        )
    _assign_all(pairs)
    _warn_new_head(source, file_classes, model_classes)
