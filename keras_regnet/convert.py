"""Weight conversion: timm / pycls state dicts and Keras 2 (tf_keras) RegNet ``.h5`` files -> our Keras models.

All foreign naming knowledge lives here. Loading is strict: every weight of the model comes from exactly one tensor
of the file, every tensor of the file is used (BatchNorm's ``num_batches_tracked`` counters excepted), shapes are
checked, and nothing is assigned until the whole file has been matched, so a mismatch never leaves a half-loaded
model; the error names the first offending tensor.

Formats:
- ``timm``: ``stem.conv.weight``, ``s1.b1.conv1.conv.weight``, ``...conv1.bn.*``, ``...conv2.*`` (grouped 3x3),
  ``...se.fc1/fc2.*``, ``...conv3.*``, ``...downsample.conv/bn.*``, ``head.fc.*`` (RGB stem).
- ``pycls`` (the paper's checkpoints): ``s1.b1.f.a.weight``, ``f.a_bn``, ``f.b``, ``f.b_bn``, ``f.se.f_ex.0/2``,
  ``f.c``, ``f.c_bn``, ``s1.b1.proj``, ``s1.b1.bn``; stem and head as timm; BGR stem (flipped to RGB here).
- ``keras2``: tf_keras ``save_weights``/``save`` ``.h5`` files (``regnety006_Stage_0_YBlock_0_conv_3x3`` ...).
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np

__all__ = [
    "WeightsMismatchError",
    "read_state_dict",
    "detect_format",
    "pycls_to_timm",
    "load_state_dict_into_model",
    "export_state_dict",
    "read_keras2_h5",
    "is_keras2_h5",
    "load_keras2_h5_into_model",
    "convert_file",
]


class WeightsMismatchError(ValueError):
    """The weights do not fit the model (wrong model, missing/extra tensors or wrong shapes)."""


# Our layer suffix -> timm module path (inside s{i}.b{j}).
_BLOCK_TIMM = {
    "conv_a": "conv1.conv", "bn_a": "conv1.bn", "conv_b": "conv2.conv", "bn_b": "conv2.bn",
    "se_reduce": "se.fc1", "se_expand": "se.fc2", "conv_c": "conv3.conv", "bn_c": "conv3.bn",
    "proj_conv": "downsample.conv", "proj_bn": "downsample.bn",
}
# pycls module path -> timm module path (inside s{i}.b{j}).
_PYCLS_TIMM = {
    "f.a": "conv1.conv", "f.a_bn": "conv1.bn", "f.b": "conv2.conv", "f.b_bn": "conv2.bn",
    "f.se.f_ex.0": "se.fc1", "f.se.f_ex.2": "se.fc2", "f.c": "conv3.conv", "f.c_bn": "conv3.bn",
    "proj": "downsample.conv", "bn": "downsample.bn",
}
# tf_keras block layer suffix -> our suffix.
_KERAS2_BLOCK = {
    "conv_1x1_1": "conv_a", "conv_1x1_1_bn": "bn_a", "conv_3x3": "conv_b", "conv_3x3_bn": "bn_b",
    "squeeze_and_excite_squeeze": "se_reduce", "squeeze_and_excite_excite": "se_expand",
    "conv_1x1_2": "conv_c", "conv_1x1_2_bn": "bn_c", "skip_1x1": "proj_conv", "skip_bn": "proj_bn",
}
_BN_VARS = ("weight", "bias", "running_mean", "running_var")  # Keras order: gamma, beta, moving mean, moving var
_BLOCK_RE = re.compile(r"^s(\d+)_b(\d+)_(\w+)$")


# ---------------------------------------------------------------------------------------------------- reading files

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
            raise WeightsMismatchError(
                f"cannot read {path!r} as safetensors ({e}); the file is truncated or not a safetensors file."
            ) from None
    if path.endswith((".pyth", ".pth", ".pt")):
        try:
            import torch
        except ImportError:
            raise ImportError(
                f"reading the PyTorch checkpoint {path!r} needs torch (pip install torch), or convert it to "
                "safetensors elsewhere first."
            ) from None
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for corrupt files
            raise WeightsMismatchError(f"cannot read the PyTorch checkpoint {path!r}: {e}") from None
        for key in ("model_state", "state_dict", "model"):
            if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
        return {k: v.detach().cpu().numpy() for k, v in ckpt.items() if hasattr(v, "detach")}
    raise ValueError(f"unsupported state-dict file {path!r}: expected .safetensors, .pyth, .pth or .pt.")


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


# ------------------------------------------------------------------------------------------------ matching layers

def _layers_with_weights(model):
    return [layer for layer in model.layers if layer.weights]


def _timm_module(layer_name):
    """Our layer name -> (timm module path, kind) where kind is 'conv', 'conv_bias', 'bn' or 'dense'."""
    if layer_name == "stem_conv":
        return "stem.conv", "conv"
    if layer_name == "stem_bn":
        return "stem.bn", "bn"
    if layer_name == "head_fc":
        return "head.fc", "dense"
    m = _BLOCK_RE.match(layer_name)
    if m and m.group(3) in _BLOCK_TIMM:
        part = m.group(3)
        kind = "bn" if "bn" in part else ("conv_bias" if part.startswith("se_") else "conv")
        return f"s{m.group(1)}.b{m.group(2)}.{_BLOCK_TIMM[part]}", kind
    return None, None


def _to_keras(key, array, kind):
    """A PyTorch tensor in Keras layout: conv (O, I, kh, kw) -> (kh, kw, I, O); linear (O, I) -> (I, O)."""
    array = np.asarray(array, dtype="float32")
    if key.endswith(".weight") and kind in ("conv", "conv_bias") and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if key.endswith(".weight") and kind == "dense" and array.ndim == 2:
        return array.T
    return array


def _head_classes(layer_name_to_layer):
    head = layer_name_to_layer.get("head_fc")
    return None if head is None else int(head.kernel.shape[-1])


def _check_padding(model, expected, source):
    """Refuse weights trained with the other stride-2 padding: the outputs would be silently shifted."""
    import keras

    if any(isinstance(layer, keras.layers.ZeroPadding2D) for layer in model.layers):
        actual = "symmetric"
    elif any(
        getattr(layer, "strides", (1, 1)) != (1, 1) and getattr(layer, "kernel_size", (1, 1)) != (1, 1)
        for layer in model.layers
    ):
        actual = "same"
    else:
        return  # no strided 3x3 conv: both paddings give the same network
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
    """Assign every (layer, [arrays]) pair; only called once everything has been matched and shape-checked."""
    for layer, arrays in pairs:
        layer.set_weights(arrays)


def load_state_dict_into_model(model, state_dict, source="the state dict", fmt=None):
    """Load a timm- or pycls-format state dict (``{key: array}``, PyTorch layouts) into ``model``, strictly.

    The classifier is skipped (left as built) when the model has no ``head_fc`` or when its class count differs
    from the file's (a new head for fine-tuning); a warning says so in the second case.
    Raises :class:`WeightsMismatchError` naming the first offending tensor.
    """
    fmt = fmt or detect_format(state_dict)
    if fmt == "pycls":
        state_dict = pycls_to_timm(state_dict)
    _check_padding(model, "symmetric", source)
    by_name = {layer.name: layer for layer in model.layers}
    file_classes = state_dict["head.fc.weight"].shape[0] if "head.fc.weight" in state_dict else None
    model_classes = _head_classes(by_name)
    skip_head = model_classes is None or (file_classes is not None and file_classes != model_classes)
    used = set()
    pairs = []
    for layer in _layers_with_weights(model):
        module, kind = _timm_module(layer.name)
        if module is None:
            raise WeightsMismatchError(
                f"layer {layer.name!r} of the model has no counterpart in the {fmt} format ({source}); "
                "only keras_regnet RegNet/AnyNet models can be loaded from state dicts."
            )
        if layer.name == "head_fc" and skip_head:
            continue
        names = _BN_VARS if kind == "bn" else (("weight", "bias") if kind in ("conv_bias", "dense") else ("weight",))
        arrays = []
        for var, var_name in zip(layer.weights, names):
            key = f"{module}.{var_name}"
            if key not in state_dict:
                raise WeightsMismatchError(
                    f"{source} has no tensor {key!r} for layer {layer.name!r} (shape {tuple(var.shape)}): "
                    "the file holds weights of a different model."
                )
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
    out = {}
    for layer in _layers_with_weights(model):
        module, kind = _timm_module(layer.name)
        if module is None:
            raise WeightsMismatchError(f"layer {layer.name!r} has no timm counterpart.")
        names = _BN_VARS if kind == "bn" else (("weight", "bias") if kind in ("conv_bias", "dense") else ("weight",))
        for var, var_name in zip(layer.weights, names):
            value = np.asarray(var.numpy(), dtype="float32")
            if var_name == "weight" and value.ndim == 4:
                value = value.transpose(3, 2, 0, 1)
            elif var_name == "weight" and kind == "dense":
                value = value.T
            out[f"{module}.{var_name}"] = np.ascontiguousarray(value)
    return out


# ------------------------------------------------------------------------------------------------ Keras 2 files

def is_keras2_h5(path):
    """True for a tf_keras HDF5 weights or model file (``layer_names`` attribute, optionally under model_weights)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            g = f["model_weights"] if "model_weights" in f else f
            return "layer_names" in g.attrs
    except OSError:
        return False


def _keras2_layer_name(name):
    """tf_keras RegNet layer name -> ours (``regnety006_Stage_1_YBlock_0_conv_3x3`` -> ``s2_b1_conv_b``)."""
    if name.endswith("_stem_conv"):
        return "stem_conv"
    if name.endswith("_stem_bn"):
        return "stem_bn"
    if name.endswith("head_dense"):
        return "head_fc"
    m = re.search(r"_Stage_(\d+)_[XY]Block_(\d+)_(\w+)$", name)
    if m and m.group(3) in _KERAS2_BLOCK:
        return f"s{int(m.group(1)) + 1}_b{int(m.group(2)) + 1}_{_KERAS2_BLOCK[m.group(3)]}"
    return None


def read_keras2_h5(path):
    """{our layer name: (file layer name, [arrays])} from a tf_keras ``.h5`` (weights-only or whole model).

    Weights are grouped by their layer's name (the first part of each weight name), so a RegNet nested inside a
    fine-tuned model (``base = RegNetY006(include_top=False)`` + your own head) is found as well; a single extra
    Dense layer with a kernel and a bias is taken as the classifier.
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
    out, unknown = {}, []
    for layer, arrays in groups.items():
        ours = _keras2_layer_name(layer)
        if ours is None:
            unknown.append(layer)
        else:
            out[ours] = (layer, arrays)
    if len(unknown) == 1 and "head_fc" not in out and [a.ndim for a in groups[unknown[0]]] == [2, 1]:
        out["head_fc"] = (unknown[0], groups[unknown.pop()])
    if unknown:
        raise WeightsMismatchError(
            f"layer {unknown[0]!r} of {path!r} is not part of a Keras 2 RegNet: the file holds another model."
        )
    return out


def load_keras2_h5_into_model(model, path, source=None):
    """Load a tf_keras RegNet ``.h5`` into a model built with ``padding="same"`` (strict, like state dicts)."""
    source = source or repr(os.fspath(path))
    _check_padding(model, "same", source)
    pre = {layer.name: layer for layer in model.layers}.get("preprocessing")
    if pre is not None and not np.allclose(np.ravel(pre.offset), 0.0):
        raise WeightsMismatchError(
            f"{source} holds Keras 2 weights, which take inputs rescaled to [0, 1], but the model normalises with "
            "ImageNet mean/std: build it with normalization='unit' (and padding='same')."
        )
    layers = read_keras2_h5(path)
    by_name = {layer.name: layer for layer in model.layers}
    file_classes = layers["head_fc"][1][0].shape[-1] if "head_fc" in layers else None
    model_classes = _head_classes(by_name)
    skip_head = model_classes is None or (file_classes is not None and file_classes != model_classes)
    pairs, used = [], set()
    for layer in _layers_with_weights(model):
        if layer.name == "head_fc" and skip_head:
            continue
        if layer.name not in layers:
            raise WeightsMismatchError(
                f"{source} has no weights for layer {layer.name!r}: the file holds weights of a different model."
            )
        lname, arrays = layers[layer.name]
        if len(arrays) != len(layer.weights):
            raise WeightsMismatchError(
                f"layer {lname!r} of {source} has {len(arrays)} tensors, the model's {layer.name!r} {len(layer.weights)}."
            )
        for var, value in zip(layer.weights, arrays):
            if tuple(value.shape) != tuple(var.shape):
                raise WeightsMismatchError(
                    f"tensor {lname}/{var.name} of {source} has shape {tuple(value.shape)}, which does not fit "
                    f"layer {layer.name!r} ({tuple(var.shape)}): the file holds weights of a different model."
                )
        used.add(layer.name)
        pairs.append((layer, [a.astype("float32") for a in arrays]))
    unused = [n for n in layers if n not in used and not (n == "head_fc" and skip_head)]
    if unused:
        raise WeightsMismatchError(
            f"layer {layers[unused[0]][0]!r} of {source} has no place in the model: the file holds weights of a "
            "different (larger) model."
        )
    _assign_all(pairs)
    _warn_new_head(source, file_classes, model_classes)


# ------------------------------------------------------------------------------------------------ one entry point

def load_file_into_model(model, path, fmt=None):
    """Load any supported foreign file (``.safetensors``, ``.pyth/.pth/.pt``, tf_keras ``.h5``) into ``model``."""
    path = os.fspath(path)
    if fmt == "keras2" or (fmt is None and path.endswith(".h5") and is_keras2_h5(path)):
        return load_keras2_h5_into_model(model, path)
    state_dict = read_state_dict(path)
    return load_state_dict_into_model(model, state_dict, source=repr(path), fmt=fmt if fmt in ("timm", "pycls") else None)


def infer_model_name(path):
    """The paper model whose structure (stage depths, widths, group widths, SE) a weights file holds, or None."""
    from keras_regnet import specs

    path = os.fspath(path)
    if path.endswith(".h5") and is_keras2_h5(path):
        layers = read_keras2_h5(path)
        shapes = {f"{name}.{i}": arrays[i].shape for name, (_, arrays) in layers.items() for i in range(len(arrays))}
        blocks = {(int(m.group(1)), int(m.group(2))) for m in map(_BLOCK_RE.match, layers) if m}
        width = lambda i: shapes[f"s{i}_b1_conv_c.0"][-1]  # noqa: E731
        group = lambda i: shapes[f"s{i}_b1_conv_b.0"][2]  # noqa: E731
        se = any(n.endswith("se_reduce") for n in layers)
    else:
        sd = read_state_dict(path)
        sd = pycls_to_timm(sd) if detect_format(sd) == "pycls" else sd
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


def convert_file(src, dst, model_name=None, include_top=True):
    """Convert ``src`` (timm/pycls ``.safetensors`` or ``.pyth``, or a tf_keras ``.h5``) to a Keras ``.weights.h5``.

    ``model_name`` (e.g. 'RegNetY-600MF') names the architecture; without it, the paper model whose structure the
    file holds is used. Keras 2 files give a model with ``padding="same", normalization="unit"``. The output is
    written atomically (never a partial file). Returns the model name used.
    """
    from keras_regnet import models, specs
    from keras_regnet.weights import atomic_save_weights

    src, dst = os.fspath(src), os.fspath(dst)
    if not os.path.isfile(src):
        raise FileNotFoundError(f"source weights {src!r} do not exist.")
    if not dst.endswith(".weights.h5"):
        raise ValueError(f"the destination must end in '.weights.h5' (a Keras weights file), got {dst!r}.")
    keras2 = src.endswith(".h5") and is_keras2_h5(src)
    name = specs.canonical_name(model_name) if model_name else infer_model_name(src)
    if name is None:
        raise WeightsMismatchError(
            f"{src!r} does not hold any of the 24 paper models' structures; pass the model name (--model)."
        )
    kwargs = {"padding": "same", "normalization": "unit"} if keras2 else {}
    model = models.build_model(name, include_top=include_top, **kwargs)
    load_file_into_model(model, src, fmt="keras2" if keras2 else None)
    atomic_save_weights(model, dst)
    return name
