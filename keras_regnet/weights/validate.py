"""Checking a downloaded weights file before anything trusts it (caches it, pins its sha256, converts it).

:func:`expected_shapes` reads, from the layer plan alone (``keras_regnet.plan``, no model built), the exact tensor
names and PyTorch-layout shapes a timm- or pycls-format state dict of that model holds. :func:`validate_safetensors`
parses a file's safetensors header with bounds checks (the header length against the file size, then safetensors' own
parser), compares names and shapes with that map, and reads every tensor to check it is floating point and finite.
:func:`describe_content` names what a file that is not safetensors looks like (an HTML page from a captive portal
or proxy, a JSON error, a Git LFS pointer ...), so errors can say what went wrong.
"""

from __future__ import annotations

import json
import os
import struct

from keras_regnet.errors import WeightsValidationError
from keras_regnet.plan import build_plan
from keras_regnet.weights.naming import timm_key_to_pycls as _to_pycls
from keras_regnet.weights.naming import timm_module, var_names

__all__ = [
    "WeightsValidationError",
    "expected_shapes",
    "expected_shapes_for_entry",
    "validate_safetensors",
    "validate_keras2_h5",
    "validate_entry_file",
    "describe_content",
]

_FLOAT_DTYPES = {"F16", "F32", "F64"}
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
_COUNTER = "num_batches_tracked"  # PyTorch BatchNorm's step counter: an integer scalar that carries no weight


def expected_shapes(spec, classes=1000, fmt="timm", include_head=True):
    """``{tensor name: shape}`` (PyTorch layouts) of ``spec``'s timm- or pycls-format state dict.

    ``spec`` is a ``RegNetParams`` or ``AnyNetParams`` (or a paper model name / dict form). Read from the layer plan
    (:func:`keras_regnet.plan.build_plan`): one entry per weight of every conv, BatchNorm and the ``classes``-way
    head (with ``include_head``), named by the timm/pycls tables over the layers' roles. BatchNorm's
    ``num_batches_tracked`` counters are not listed (they are optional and carry no weights).
    """
    if fmt not in ("timm", "pycls"):
        raise ValueError(f"fmt must be 'timm' or 'pycls', got {fmt!r}.")
    layer_plan = build_plan(spec, include_top=include_head, classes=classes, include_preprocessing=False)
    out = {}
    for layer in layer_plan.layers:
        if not layer.has_weights:
            continue
        module, kind = timm_module(layer.layer_role)
        if module is None:
            raise ValueError(f"no timm name for planned layer {layer.name!r} {layer.layer_role}.")
        for var in var_names(kind):
            out[f"{module}.{var}"] = _torch_shape(layer, var)
    if fmt == "pycls":
        out = {_to_pycls(k): v for k, v in out.items()}
    return out


def _torch_shape(layer, var):
    """The PyTorch shape of weight ``var`` ('weight', 'bias', 'running_mean' ...) of a planned layer."""
    if layer.kind == "bn" or var != "weight":
        return (layer.channels_out,)
    if layer.kind == "dense":
        return (layer.channels_out, layer.channels_in)
    return (layer.channels_out, layer.channels_in // layer.groups, layer.kernel, layer.kernel)


def expected_shapes_for_entry(info):
    """The tensor map of registry entry ``info``: its model's paper architecture, ``info['classes']`` (1000) classes."""
    from keras_regnet import specs

    return expected_shapes(specs.get_params(info["model"]), classes=int(info.get("classes", 1000)),
                           fmt=info.get("format", "timm"))


def describe_content(path, limit=1024):
    """What ``path`` looks like when it is not a weights file ('the server returned an HTML page ...'), else None."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
    except OSError:
        return None
    if not data:
        return "the file is empty"
    text = data.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text[:256]:
        return ("the server returned an HTML page, not a weights file (a captive portal, proxy or error page "
                "answered instead of the server)")
    if text.startswith(b"version https://git-lfs"):
        return "the file is a Git LFS pointer, not the weights themselves"
    if text.startswith((b"{", b"[")):
        return "the server returned a JSON document (an error message?), not a weights file"
    if text.startswith(b"<?xml") or text.startswith(b"<error"):
        return "the server returned an XML document (an error message?), not a weights file"
    if data.startswith(b"\x1f\x8b"):
        return "the file is a gzip archive, not a weights file"
    if data.startswith(b"PK\x03\x04"):
        return "the file is a zip archive (a PyTorch checkpoint?), not a safetensors file"
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if decoded.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in decoded):
        first = decoded.strip().splitlines()[0][:80] if decoded.strip() else ""
        return f"the file is text ({first!r}...), not a weights file"
    return None


def _not_safetensors(path, what, source):
    hint = describe_content(path)
    reason = hint or f"it is not a valid safetensors file ({what})"
    return WeightsValidationError(f"{source}: {reason}.")


def _read_header(path, source):
    """The parsed JSON header, after checking its declared length against the file size."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _not_safetensors(path, f"{size} bytes, shorter than a safetensors header", source)
        (n,) = struct.unpack("<Q", prefix)
        if n < 2 or n > size - 8 or n > _MAX_HEADER:
            raise _not_safetensors(path, f"header length {n} does not fit a file of {size} bytes", source)
        raw = f.read(n)
    if not raw.lstrip().startswith(b"{"):
        raise _not_safetensors(path, "the header is not a JSON object", source)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _not_safetensors(path, f"unreadable header: {e}", source) from None
    if not isinstance(header, dict):
        raise _not_safetensors(path, "the header is not a JSON object", source)
    return header


def validate_safetensors(path, expected, source=None, check_values=True):
    """Check that ``path`` is a safetensors file holding exactly the tensors of ``expected`` ({name: shape}).

    ``num_batches_tracked`` counters may be present (integer scalars). Every other tensor must have its expected
    shape, a float dtype (F16/F32/F64) and, with ``check_values``, only finite values. Raises
    :class:`WeightsValidationError` naming the first problem. Returns the number of tensors checked.
    """
    import numpy as np
    from safetensors import safe_open

    path = os.fspath(path)
    source = source or repr(path)
    header = _read_header(path, source)  # our bounds checks first: a clear message for pages and truncated files
    try:
        handle = safe_open(path, framework="numpy")
    except Exception as e:  # safetensors' own parser: offsets out of bounds, overlapping, incomplete buffer ...
        raise _not_safetensors(path, f"{type(e).__name__}: {str(e)[:200]}", source) from None
    with handle as f:
        # Names, dtypes and shapes from the header that safetensors has just accepted (its offsets checked).
        shapes, dtypes = {}, {}
        for key in f.keys():
            entry = header.get(key)
            if not isinstance(entry, dict):
                raise _not_safetensors(path, f"no header entry for {key!r}", source)
            shapes[key], dtypes[key] = tuple(int(n) for n in entry.get("shape", ())), str(entry.get("dtype"))
        counters = {k for k in shapes if k.endswith("." + _COUNTER)}
        missing = [k for k in expected if k not in shapes]
        extra = [k for k in shapes if k not in expected and k not in counters]
        if missing or extra:
            other = "pycls" if any(".f.a." in k for k in shapes) else "timm"
            wanted = "pycls" if any(".f.a." in k for k in expected) else "timm"
            why = (f"it uses {other}'s tensor names, the registry expects {wanted}'s" if other != wanted
                   else "it holds another model's weights")
            first = (f"no tensor {missing[0]!r} (expected shape {expected[missing[0]]})" if missing
                     else f"unexpected tensor {extra[0]!r} {shapes[extra[0]]}")
            raise WeightsValidationError(
                f"{source} does not hold the expected model: {first}; {len(missing)} missing and {len(extra)} "
                f"unexpected tensors ({why})."
            )
        for key, shape in expected.items():
            if shapes[key] != tuple(shape):
                raise WeightsValidationError(
                    f"{source} does not hold the expected model: tensor {key!r} has shape {shapes[key]}, "
                    f"expected {tuple(shape)}."
                )
            if dtypes[key] not in _FLOAT_DTYPES:
                raise WeightsValidationError(
                    f"{source}: tensor {key!r} has dtype {dtypes[key]}; weights must be float16/32/64."
                )
        for key in counters:
            if dtypes[key][0] not in "IU" or len(shapes[key]) > 1:
                raise WeightsValidationError(
                    f"{source}: tensor {key!r} ({dtypes[key]}, shape {shapes[key]}) is not a BatchNorm step counter."
                )
        if check_values:
            for key in expected:
                value = f.get_tensor(key)
                finite = np.isfinite(value)
                if not finite.all():
                    raise WeightsValidationError(
                        f"{source}: tensor {key!r} holds {int(value.size - finite.sum())} non-finite values "
                        "(NaN/inf); the file is damaged."
                    )
    return len(shapes)


def validate_keras2_h5(path, source=None):
    """A light check of a Keras 2 ``.h5`` download (its published sha256 is the real check): HDF5 with layers."""
    path = os.fspath(path)
    source = source or repr(path)
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic != b"\x89HDF\r\n\x1a\n":
        hint = describe_content(path)
        raise WeightsValidationError(f"{source}: {hint or 'it is not an HDF5 file'}.")
    from keras_regnet.weights.files import is_keras2_h5

    if not is_keras2_h5(path):
        raise WeightsValidationError(f"{source}: the HDF5 file holds no Keras 2 weights (no 'layer_names').")


def validate_entry_file(path, info, source=None):
    """Validate a downloaded file of registry entry ``info`` by its format (timm/pycls safetensors or Keras 2 h5)."""
    if info.get("format") == "keras2":
        return validate_keras2_h5(path, source)
    return validate_safetensors(path, expected_shapes_for_entry(info), source)
