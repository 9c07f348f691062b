"""A RegNetModel's own files (``.weights.h5``, ``.keras``): the architecture they record, and all-or-nothing loading.

Keras keys weights files by structure (layer class and order), not by names, so a file saved from another
architecture with the same layer shapes (e.g. Keras 2's TF-'same' padding) would load silently. A RegNetModel
therefore records its spec and build options in every ``.weights.h5`` it saves (an HDF5 attribute) and in every
``.keras`` file (its config); loading compares them with the model's and refuses a mismatch, naming both. Every
tensor is checked (float, finite) and counted before anything is assigned, and if Keras's own loader fails part
way the model's previous weights are restored: a load either completes or changes nothing.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

from keras_regnet import specs
from keras_regnet._compat import weights_file_layer_datasets
from keras_regnet.errors import WeightsMismatchError

__all__ = ["record_architecture", "recorded_architecture", "check_architecture", "load_keras_weights"]

_ATTR = "keras_regnet_architecture"
# Build options that change what the weights compute (head/pooling options only change which layers exist).
_COMPARED = ("padding", "normalization")


def _mismatch(message):
    return WeightsMismatchError(message)


def _architecture(params, padding, normalization, include_preprocessing, arch):
    """The record compared at load: per-stage spec, padding, normalization (None without built-in preprocessing)."""
    anynet = params.to_anynet() if isinstance(params, specs.RegNetParams) else params
    return {
        "spec": anynet.to_dict(),
        "padding": padding,
        "normalization": normalization if include_preprocessing else None,
        "arch": arch,
    }


def architecture_of(model) -> dict:
    """What a RegNetModel's weights depend on: its per-stage spec, padding and normalization."""
    opts = model.build_options
    return _architecture(model.spec, opts["padding"], opts["normalization"], opts["include_preprocessing"],
                         opts["arch"])


def record_architecture(model, filepath):
    """Write ``model``'s architecture into the ``.weights.h5`` file it just saved (other formats: nothing)."""
    filepath = os.fspath(filepath)
    if not filepath.endswith(".weights.h5") or not os.path.isfile(filepath):
        return
    import h5py

    with h5py.File(filepath, "a") as f:
        f.attrs[_ATTR] = json.dumps(architecture_of(model), sort_keys=True)


def _architecture_from_config(config):
    """The architecture recorded in a ``.keras`` file's config.json (a RegNetModel at the top level), or None."""
    if not isinstance(config, dict) or config.get("class_name") != "RegNetModel":
        return None
    inner = config.get("config") or {}
    return _architecture(specs.params_from_dict(inner["spec"]), inner.get("padding", "symmetric"),
                         inner.get("normalization", "imagenet"), inner.get("include_preprocessing", True),
                         inner.get("arch"))


def _open_weights(path):
    """An open h5py.File of the weights in ``path`` (a ``.weights.h5`` file, or the one inside a ``.keras`` zip)."""
    import h5py

    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            if "model.weights.h5" not in z.namelist():
                raise _mismatch(f"{path!r} holds no weights (no model.weights.h5 inside); re-save it with model.save().")
            data = z.read("model.weights.h5")
        return h5py.File(io.BytesIO(data), "r")
    return h5py.File(path, "r")


def recorded_architecture(path):
    """The architecture a Keras weights file records (see :func:`architecture_of`), or None if it records none."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            if "config.json" not in z.namelist():
                return None
            try:
                config = json.loads(z.read("config.json"))
            except ValueError:
                raise _mismatch(f"{path!r} has a damaged config.json; re-save the model with model.save().") from None
        return _architecture_from_config(config)
    with _open_weights(path) as f:
        raw = f.attrs.get(_ATTR)
    if raw is None:
        return None
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        raise _mismatch(f"{path!r} has a damaged {_ATTR} attribute; the file is corrupt.") from None


def _describe(arch):
    spec = arch["spec"]
    short = ", ".join(f"{k}={spec.get(k)}" for k in ("depths", "widths", "bottleneck_ratios", "group_widths", "se_ratio"))
    name = f"{arch['arch']} " if arch.get("arch") else ""
    return f"{name}({short}; padding={arch['padding']}, normalization={arch['normalization']})"


def check_architecture(model, recorded, source):
    """Refuse weights recorded from another architecture than ``model``'s, naming both."""
    mine = architecture_of(model)
    differs = [k for k in ("spec", *_COMPARED) if recorded.get(k) != mine[k]
               and not (k == "normalization" and None in (recorded.get(k), mine[k]))]
    if differs:
        hint = ""
        if "padding" in differs or "normalization" in differs:
            hint = (f" Build the model with padding={recorded.get('padding')!r}, "
                    f"normalization={recorded.get('normalization')!r} to use them "
                    "(keras_regnet.build_model(name, padding=..., normalization=..., weights=path)).")
        raise _mismatch(
            f"{source} holds weights of {_describe(recorded)}, but the model is {_describe(mine)}: "
            f"{' and '.join(differs)} differ, so its outputs would be silently wrong.{hint}"
        )


def check_tensors(model, path, source, count=True):
    """Every layer tensor is float and finite, and (``count``) the file holds as many as the model has weights.

    The count is skipped for files that record their architecture (already compared): those may legitimately hold
    more layers than a model built from them with fewer outputs (a classifier's file for a feature extractor).
    """
    with _open_weights(path) as f:
        datasets = weights_file_layer_datasets(f)
        for name, ds in datasets:
            if "seed_generator" in name:
                continue
            if ds.dtype.kind != "f":
                raise _mismatch(f"tensor {name!r} of {source} has dtype {ds.dtype}, not a float: refusing the file.")
            if not np.all(np.isfinite(ds[()])):
                raise _mismatch(f"tensor {name!r} of {source} has NaN or infinite values: refusing the file.")
        n_file = len(datasets)
    n_model = len(model.weights)
    if count and datasets and n_file != n_model:
        raise _mismatch(
            f"{source} holds {n_file} layer tensors and the model has {n_model} weights: the file holds weights of "
            "a different model."
        )


def load_keras_weights(model, path, skip_mismatch=False, **kwargs):
    """Load a ``.weights.h5`` / ``.keras`` file into ``model``, all or nothing (see the module docstring).

    A model that carries the keras_regnet record (``spec``, ``build_options``) has its architecture compared with
    the file's; any other Keras model is loaded with Keras's own loader, with the same tensor checks and undo."""
    own = hasattr(model, "build_options") and hasattr(model, "spec")
    path = os.fspath(path)
    source = repr(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a weights file (.weights.h5 or .keras).")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist.")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise _mismatch(f"{path!r} is not a .keras file (not a zip archive: damaged or another format).")
    if path.endswith((".weights.h5", ".keras")):
        try:
            recorded = recorded_architecture(path)
        except OSError as e:
            raise _mismatch(f"cannot read {path!r} as a Keras weights file ({e}); it is damaged or not HDF5.") from None
        if recorded is not None and own:
            check_architecture(model, recorded, source)
        if not skip_mismatch:
            check_tensors(model, path, source, count=recorded is None)
    before = [np.array(v.numpy()) for v in model.weights]
    load = getattr(model, "_keras_load_weights", None) if own else None
    load = load or model.load_weights
    try:
        return load(path, skip_mismatch=skip_mismatch, **kwargs)
    except Exception as e:  # noqa: BLE001 - whatever Keras raised, undo the partial load first
        for variable, value in zip(model.weights, before):
            variable.assign(value)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise _mismatch(
            f"{source} does not fit this model ({first}); nothing was loaded (the model keeps its weights)."
        ) from None
