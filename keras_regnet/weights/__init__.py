"""Loading weights into built models: the registry's pretrained ImageNet weights, or a local file.

``weights=`` accepts ``None``, ``"imagenet"`` (the paper's weights), ``"imagenet:<tag>"`` (see
:func:`list_weights`), or a path to a Keras ``.weights.h5`` / ``.keras`` file, a timm- or pycls-format
``.safetensors`` file, a pycls ``.pyth`` checkpoint (needs torch; local files only) or a Keras 2 RegNet ``.h5``.

Registry weights are downloaded once (``weights.download``: safetensors only, sha256 pinned at first download),
converted, and cached as a Keras ``.weights.h5`` under ``$KERAS_HOME/models/keras_regnet/converted`` so that later
loads skip the conversion; the converted file's sha256 is checked at every load too.
"""

from __future__ import annotations

import os
import tempfile
import warnings

from keras_regnet.weights import download
from keras_regnet.weights.download import converted_path, fetch, sha256_of
from keras_regnet.errors import (
    WeightsDownloadError,
    WeightsIntegrityError,
    WeightsMismatchError,
    WeightsStoreError,
    WeightsValidationError,
)
from keras_regnet.weights import files
from keras_regnet.weights.files import carries_record, load_file_into_model
from keras_regnet.saving import load_keras_weights
from keras_regnet.weights.registry import REGISTRY, get_weights_info, is_registry_weights, list_weights

__all__ = [
    "load_weights",
    "get_weights_info",
    "list_weights",
    "REGISTRY",
    "WeightsDownloadError",
    "WeightsIntegrityError",
    "WeightsValidationError",
    "WeightsStoreError",
    "WeightsMismatchError",
    "atomic_save_weights",
    "converted_path",
    "carries_record",
    "is_registry_weights",
]


def atomic_save_weights(model, path):
    """``model.save_weights(path)`` through a temporary file in the same folder, renamed into place at the end."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".weights.h5")
    os.close(fd)
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load_named(model, weights, arch, include_top):
    info = get_weights_info(arch, weights)
    target = converted_path(info, include_top)
    key = "converted/" + os.path.basename(target)
    record = download._read_records().get(key)
    if os.path.exists(target) and record:
        if sha256_of(target) == record["sha256"]:
            try:
                model.load_weights(target)
                return
            except ValueError as e:  # e.g. written by another Keras version: the source file is the reference
                warnings.warn(f"the cached converted weights {target!r} do not load ({e}); converting again.",
                              stacklevel=3)
        else:
            warnings.warn(f"the cached converted weights {target!r} were modified; converting again.", stacklevel=3)
    source = fetch(info, include_top=include_top)
    load_file_into_model(model, source, fmt=info["format"])
    atomic_save_weights(model, target)
    download.forget(key)
    download.verify_or_record(target, key)


def _load_path(model, path):
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"weights={path!r} is a directory; pass a weights file (.weights.h5, .keras, .safetensors, .pyth or a "
            "Keras 2 .h5), 'imagenet', 'imagenet:<tag>' or None."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights file {path!r} does not exist (weights= takes None, 'imagenet', 'imagenet:<tag>' or a path)."
        )
    if path.endswith((".safetensors", ".pyth", ".pth", ".pt")):
        return load_file_into_model(model, path)
    if path.endswith(".h5") and not path.endswith(".weights.h5") and files.is_keras2_h5(path):
        return load_file_into_model(model, path, fmt="keras2")
    if path.endswith((".weights.h5", ".keras")):
        load_keras_weights(model, path)
        return None
    raise ValueError(
        f"unsupported weights file {path!r}: expected a Keras '.weights.h5' or '.keras' file, a timm/pycls "
        "'.safetensors' file, a pycls '.pyth' checkpoint or a Keras 2 RegNet '.h5' file."
    )


def load_weights(model, weights, arch=None, include_top=True):
    """Load ``weights`` into the built ``model`` of architecture ``arch`` (a paper model name, or None if custom).

    Raises ``WeightsMismatchError`` (a ``ValueError``) when the weights do not fit, naming the first offending
    tensor, ``WeightsDownloadError`` when registry weights cannot be fetched, ``WeightsIntegrityError`` when a
    file's sha256 changed. The model is never left partially loaded, whatever the format.
    """
    if is_registry_weights(weights):
        if arch is None:
            raise ValueError(f"weights={weights!r} needs a paper model; pass a file path for custom models.")
        return _load_named(model, weights, arch, include_top)
    return _load_path(model, weights)
