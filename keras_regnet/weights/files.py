"""Reading weights files (safetensors, PyTorch checkpoints, Keras 2 ``.h5``), recognising which paper model a file
holds, and converting files to Keras ``.weights.h5``. Mapping foreign names to our layers is ``keras_regnet.convert``.
"""

from __future__ import annotations

import os

import numpy as np

from keras_regnet import convert
from keras_regnet.convert import WeightsMismatchError

__all__ = [
    "read_state_dict", "is_keras2_h5", "read_keras2_groups", "read_keras2_h5", "load_keras2_h5_into_model",
    "load_file_into_model", "infer_model_name", "convert_file",
]


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
    return convert.keras2_keyed_layers(read_keras2_groups(path), repr(os.fspath(path)))


def load_keras2_h5_into_model(model, path, source=None):
    """Load a tf_keras RegNet ``.h5`` into a model built with ``padding="same"`` (strict, like state dicts)."""
    source = source or repr(os.fspath(path))
    return convert.load_keras2_layers_into_model(model, read_keras2_groups(path), source)


def load_file_into_model(model, path, fmt=None):
    """Load any supported foreign file (``.safetensors``, ``.pyth/.pth/.pt``, tf_keras ``.h5``) into ``model``."""
    path = os.fspath(path)
    if fmt == "keras2" or (fmt is None and path.endswith(".h5") and is_keras2_h5(path)):
        return load_keras2_h5_into_model(model, path)
    state_dict = read_state_dict(path)
    return convert.load_state_dict_into_model(
        model, state_dict, source=repr(path), fmt=fmt if fmt in ("timm", "pycls") else None
    )


def infer_model_name(path):
    """The paper model whose structure (stage depths, widths, group widths, SE) a weights file holds, or None."""
    import re

    from keras_regnet import specs

    path = os.fspath(path)
    if path.endswith(".h5") and is_keras2_h5(path):
        layers = read_keras2_h5(path)
        blocks = {(int(s[1:]), b) for (s, b, _r) in layers if s.startswith("s") and b}
        width = lambda i: layers[(f"s{i}", 1, "conv_c")][1][0].shape[-1]  # noqa: E731
        group = lambda i: layers[(f"s{i}", 1, "conv_b")][1][0].shape[2]  # noqa: E731
        se = any(r == "se_reduce" for (_s, _b, r) in layers)
    else:
        sd = read_state_dict(path)
        sd = convert.pycls_to_timm(sd) if convert.detect_format(sd) == "pycls" else sd
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
