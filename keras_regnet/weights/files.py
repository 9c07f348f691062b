"""Loading foreign weights into a model: reading files (safetensors, PyTorch checkpoints, Keras 2 ``.h5``),
matching their tensors to the model's layers, recognising which paper model a file holds.

Names come from :mod:`keras_regnet.weights.naming` (tables over the roles a model records, ``layer_roles``), so
any model that carries the record (``layer_roles``, ``build_options``, ``spec``) loads; the model class is never
imported. Loading is strict: every weight of the model comes from exactly one tensor of the file, every tensor of
the file is used (BatchNorm's ``num_batches_tracked`` counters excepted), dtypes (float), values (finite) and
shapes are checked, and nothing is assigned until the whole file has been matched, so a mismatch never leaves a
half-loaded model; the error names the first offending tensor.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np

from keras_regnet import specs
from keras_regnet.weights import naming
from keras_regnet.errors import WeightsMismatchError

__all__ = [
    "WeightsMismatchError", "carries_record", "pycls_to_timm", "load_state_dict_into_model",
    "load_keras2_layers_into_model", "export_state_dict", "keras2_keyed_layers",
    "read_state_dict", "is_keras2_h5", "read_keras2_groups", "read_keras2_h5", "load_keras2_h5_into_model",
    "load_file_into_model", "infer_model_name",
]


def pycls_to_timm(state_dict):
    """Rename pycls keys to timm's and flip the stem's input channels from BGR (pycls reads cv2 images) to RGB."""
    out = {}
    for key, value in state_dict.items():
        if key == "stem.conv.weight":
            value = value[:, ::-1].copy()
        out[naming.pycls_key_to_timm(key)] = value
    return out


# ------------------------------------------------------------------------------------------------ matching layers

def carries_record(model):
    """Whether ``model`` carries the record weights are matched by (``layer_roles``, ``build_options``, ``spec``):
    a keras_regnet model, whatever class builds it."""
    return all(hasattr(model, attr) for attr in ("layer_roles", "build_options", "spec"))


def _regnet(model, source):
    if not carries_record(model):
        raise WeightsMismatchError(
            f"{source} can only be loaded into keras_regnet models (RegNetModel, e.g. keras_regnet.RegNetY600MF()); "
            f"got {type(model).__name__} {getattr(model, 'name', '')!r}."
        )
    return model


def _weighted_layers(model):
    """``[(layer, LayerRole)]`` of the model's layers that have weights, in model order."""
    roles = model.layer_roles
    return [(layer, roles.get(layer.name)) for layer in model.layers if layer.weights]


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
    fmt = fmt or naming.detect_format(state_dict)
    if fmt == "pycls":
        state_dict = pycls_to_timm(state_dict)
    _check_padding(model, "symmetric", source)
    file_classes = state_dict["head.fc.weight"].shape[0] if "head.fc.weight" in state_dict else None
    model_classes = _head_classes(model)
    skip_head = model_classes is None or (file_classes is not None and file_classes != model_classes)
    used = set()
    pairs = []
    for layer, role in _weighted_layers(model):
        module, kind = naming.timm_module(role)
        if module is None:
            raise WeightsMismatchError(
                f"layer {layer.name!r} of the model has no counterpart in the {fmt} format ({source}); "
                "only RegNet/AnyNet layers can be loaded from state dicts."
            )
        if module == "head.fc" and skip_head:
            continue
        arrays = []
        for var, var_name in zip(layer.weights, naming.var_names(kind)):
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
        module, kind = naming.timm_module(role)
        if module is None:
            raise WeightsMismatchError(f"layer {layer.name!r} has no timm counterpart.")
        for var, var_name in zip(layer.weights, naming.var_names(kind)):
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
        key = naming.keras2_layer_key(layer)
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


# ------------------------------------------------------------------------------------------------ reading files

def _mismatch(message):
    return WeightsMismatchError(message)


def read_state_dict(path):
    """Read a ``.safetensors`` file (no code execution) or, locally only, a PyTorch ``.pyth/.pth/.pt`` checkpoint.

    Returns ``{key: numpy array}``. PyTorch files need torch and are opened with ``torch.load(weights_only=True)``.
    """
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return dict(load_file(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise _mismatch(
                f"cannot read {path!r} as safetensors ({e}); the file is truncated or not a safetensors file."
            ) from None
    if path.endswith((".pyth", ".pth", ".pt")):
        from keras_regnet._extras import require

        torch = require("torch", "torch", f"reading the PyTorch checkpoint {path!r} (or convert it to safetensors "
                        "elsewhere first)")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for corrupt files
            raise _mismatch(f"cannot read the PyTorch checkpoint {path!r}: {e}") from None
        for key in ("model_state", "state_dict", "model"):
            if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
        return {k: v.detach().cpu().numpy() for k, v in ckpt.items() if hasattr(v, "detach")}
    raise ValueError(f"unsupported state-dict file {path!r}: expected .safetensors, .pyth, .pth or .pt.")


def is_keras2_h5(path):
    """True for a tf_keras HDF5 weights or model file (``layer_names`` attribute, optionally under model_weights)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            g = f["model_weights"] if "model_weights" in f else f
            return "layer_names" in g.attrs
    except OSError:
        return False


def read_keras2_groups(path):
    """``{layer name: [arrays]}`` from a tf_keras ``.h5`` (weights-only or whole model).

    Weights are grouped by their layer's name (the first part of each weight name), so a RegNet nested inside a
    fine-tuned model (``base = RegNetY006(include_top=False)`` + your own head) is found as well.
    """
    import h5py

    groups = {}
    try:
        with h5py.File(path, "r") as f:
            g = f["model_weights"] if "model_weights" in f else f
            for raw in g.attrs["layer_names"]:
                lname = raw.decode() if isinstance(raw, bytes) else str(raw)
                for raw_w in g[lname].attrs["weight_names"]:
                    wname = raw_w.decode() if isinstance(raw_w, bytes) else str(raw_w)
                    layer = wname.split("/")[0] if "/" in wname else lname
                    groups.setdefault(layer, []).append(np.asarray(g[lname][wname]))
    except (OSError, KeyError) as e:
        raise WeightsMismatchError(f"cannot read {path!r} as a Keras 2 HDF5 file ({e}); it is truncated or corrupt.") from None
    return groups


def read_keras2_h5(path):
    """``{(stage, block, role): (file layer name, [arrays])}`` of a tf_keras RegNet ``.h5`` file."""
    return keras2_keyed_layers(read_keras2_groups(path), repr(os.fspath(path)))


def load_keras2_h5_into_model(model, path, source=None):
    """Load a tf_keras RegNet ``.h5`` into a model built with ``padding="same"`` (strict, like state dicts)."""
    source = source or repr(os.fspath(path))
    return load_keras2_layers_into_model(model, read_keras2_groups(path), source)


def load_file_into_model(model, path, fmt=None):
    """Load any supported foreign file (``.safetensors``, ``.pyth/.pth/.pt``, tf_keras ``.h5``) into ``model``."""
    path = os.fspath(path)
    if fmt == "keras2" or (fmt is None and path.endswith(".h5") and is_keras2_h5(path)):
        return load_keras2_h5_into_model(model, path)
    state_dict = read_state_dict(path)
    return load_state_dict_into_model(
        model, state_dict, source=repr(path), fmt=fmt if fmt in ("timm", "pycls") else None
    )


def infer_model_name(path):
    """The paper model whose structure (stage depths, widths, group widths, SE) a weights file holds, or None."""
    path = os.fspath(path)
    if path.endswith(".h5") and is_keras2_h5(path):
        layers = read_keras2_h5(path)
        blocks = {(int(s[1:]), b) for (s, b, _r) in layers if s.startswith("s") and b}
        width = lambda i: layers[(f"s{i}", 1, "conv_c")][1][0].shape[-1]  # noqa: E731
        group = lambda i: layers[(f"s{i}", 1, "conv_b")][1][0].shape[2]  # noqa: E731
        se = any(r == "se_reduce" for (_s, _b, r) in layers)
    else:
        sd = read_state_dict(path)
        sd = pycls_to_timm(sd) if naming.detect_format(sd) == "pycls" else sd
        blocks = {(int(m.group(1)), int(m.group(2))) for m in (re.match(r"^s(\d+)\.b(\d+)\.", k) for k in sd) if m}
        width = lambda i: sd[f"s{i}.b1.conv3.conv.weight"].shape[0]  # noqa: E731
        group = lambda i: sd[f"s{i}.b1.conv2.conv.weight"].shape[1]  # noqa: E731
        se = any(".se.fc1." in k for k in sd)
    stages = sorted({i for i, _ in blocks})
    try:
        structure = (
            tuple(max(j for i2, j in blocks if i2 == i) for i in stages),
            tuple(int(width(i)) for i in stages),
            tuple(int(group(i)) for i in stages),
            se,
        )
    except KeyError:
        return None
    for name, params in specs.MODEL_PARAMS.items():
        a = params.to_anynet()
        if (a.depths, a.widths, a.group_widths, bool(a.se_ratio)) == structure:
            return name
    return None
