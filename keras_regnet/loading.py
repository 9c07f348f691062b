"""The one way to get a model from a source: a model name (with weights), a spec, a ``.keras`` file, a preset
folder or a Hugging Face Hub URI.

``predict``, ``explain``, ``export``, ``train`` and the Python API (``keras_regnet.load_model``,
``keras_regnet.get_model``) all load through here. :func:`load_model` reads saved models: ``.keras`` files
(:func:`load_keras_file`, one-line errors) and presets (a folder with ``config.json`` / ``metadata.json``, or
``hf://owner/name[@revision]``, read by :func:`keras_regnet.hub.load_preset`); :func:`get_model` also builds
models by name or spec; :func:`load_source` does either for the commands and says what the source was.
"""

from __future__ import annotations

import json
import os
import zipfile

import keras

from keras_regnet import models, pretrained, specs  # models registers RegNetModel and its layers for loading
from keras_regnet.errors import WeightsIntegrityError
from keras_regnet.weights.files import is_keras2_h5
from keras_regnet.weights.naming import KERAS2_ARCHITECTURE

__all__ = [
    "is_preset_source", "is_spec_source", "load_keras_file", "load_model", "get_model", "load_source", "Source",
    "load_classifier",
]

HF_PREFIX = "hf://"
PRESET_FILES = ("config.json", "metadata.json")


def is_preset_source(source) -> bool:
    """Whether ``source`` is a preset: an ``hf://`` URI or a folder holding ``config.json`` / ``metadata.json``."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    text = os.fspath(source)
    if text.startswith(HF_PREFIX):
        return True
    return os.path.isdir(text) and any(os.path.isfile(os.path.join(text, f)) for f in PRESET_FILES)


def _load_preset(source, compile=False, **kwargs):
    """The single dispatch point into the preset / Hub reader (keras_regnet.hub, which never imports this module)."""
    from keras_regnet import hub  # the Hub client and keras-hub layout are only needed for presets

    return hub.load_preset(os.fspath(source), compile=compile, **kwargs)


def load_keras_file(path, compile=True):
    """Load a ``.keras`` file (a RegNetModel, or any Keras model containing one) with one-line errors.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for anything that is not a loadable ``.keras``
    file (a folder, another extension, not a zip archive, a damaged archive).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory; load_model takes a .keras file (model.save('model.keras')) "
                         "or a preset folder (with config.json).")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist.")
    if not path.endswith(".keras"):
        raise ValueError(f"{path!r} is not a .keras file; save models with model.save('name.keras').")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a Keras model file (not a zip archive: damaged, truncated or another format). "
            "Re-save it with model.save('name.keras')."
        )
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as e:  # noqa: BLE001 - zip members, configs and unknown classes all mean "not usable"
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ValueError(
            f"cannot load {path!r} as a Keras model ({type(e).__name__}: {first}). Is it a complete .keras file "
            "saved by model.save()? Re-save it, and import keras_regnet before loading."
        ) from None


def load_model(source, compile=True, **kwargs):
    """A saved model: a ``.keras`` file, a preset folder or ``hf://owner/name[@revision]`` (keyword arguments go
    to the preset reader)."""
    if is_preset_source(source):
        return _load_preset(source, compile=compile, **kwargs)
    if kwargs:
        raise TypeError(f"load_model got unexpected arguments {sorted(kwargs)} for a .keras file.")
    return load_keras_file(source, compile=compile)


def _is_saved(source):
    if not isinstance(source, (str, os.PathLike)):
        return False
    text = os.fspath(source)
    return is_preset_source(text) or text.endswith(".keras") or os.path.isdir(text)


def get_model(source, **kwargs):
    """A model from any source: a paper model name in any spelling (``'RegNetY600MF'``, ``'regnety_080.ra3_in1k'``;
    keyword arguments as the constructors', e.g. ``weights=None``), a ``.keras`` file, a preset folder or an
    ``hf://`` URI (keyword arguments go to :func:`load_model`)."""
    if _is_saved(source):
        return load_model(source, **kwargs)
    return models.get_model(source, **kwargs)


class Source:
    """What :func:`load_source` loaded: ``model``; ``kind`` ('name', 'spec', 'keras', 'preset'); ``arch`` (the
    paper model name, when the source names one); ``path`` (a file or preset source)."""

    def __init__(self, model, kind, arch=None, path=None):
        self.model, self.kind, self.arch, self.path = model, kind, arch, path

    def __iter__(self):  # model, kind, arch = load_source(...)
        return iter((self.model, self.kind, self.arch))


def _read_spec(source):
    if isinstance(source, dict):
        return source
    if source.endswith(".json"):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"spec file {source!r} does not exist.")
        with open(source) as f:
            text = f.read()
    else:
        text = source
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"model spec is not valid JSON ({e}).") from None
    return spec


def is_spec_source(source) -> bool:
    """A spec: a dict, JSON text (``{...}``) or a ``.json`` file of RegNet/AnyNet parameters."""
    if isinstance(source, dict):
        return True
    text = os.fspath(source)
    return text.endswith(".json") or text.lstrip().startswith("{")


def load_source(source, weights=None, input_size=None, classes=1000, include_top=True, compile=False):
    """A model for the commands: a paper model name (built with ``weights``), a spec (dict, JSON text or a
    ``.json`` file, built with ``weights``), a ``.keras`` file or a preset (``weights`` not allowed: they hold
    their own). Returns a :class:`Source`."""
    if not isinstance(source, dict) and _is_saved(source):
        if weights is not None:
            raise ValueError(f"weights cannot be given for {os.fspath(source)!r}: a saved model holds its own.")
        path = os.fspath(source)
        kind = "preset" if is_preset_source(path) else "keras"
        return Source(load_model(path, compile=compile), kind, path=path)
    input_shape = (input_size, input_size, 3) if input_size else None
    build = dict(weights=weights, input_shape=input_shape, classes=classes, include_top=include_top)
    if is_spec_source(source):
        try:
            return Source(models.build_model(_read_spec(source), **build), "spec")
        except (TypeError, KeyError) as e:
            raise ValueError(f"invalid model spec: {e}") from None
    name = specs.canonical_name(os.fspath(source))
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(".h5") \
            and os.path.isfile(weights) and is_keras2_h5(weights):
        build.update(KERAS2_ARCHITECTURE)  # a Keras 2 file needs the Keras 2 architecture
    return Source(models.build_model(name, **build), "name", arch=name)


def load_classifier(source=None, weights=None, size=None, crop_pct=None, interpolation=None):
    """``(model, class names, size, crop_pct, interpolation)`` of an image classifier for inference.

    ``source``: a paper model name (default RegNetY600MF; ``weights`` default ``'imagenet'``, ``'none'``/None:
    random), a ``.keras`` file or a preset. The eval transform is resolved by
    :func:`keras_regnet.pretrained.eval_config` (arguments, then the model's own, then the registry's)."""
    source = source or "RegNetY600MF"
    if _is_saved(source):
        model = load_source(source, compile=False).model
        if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
            raise ValueError(f"{os.fspath(source)!r} is not an image classifier (one image input, one (batch, "
                             "classes) output).")
    else:
        name = specs.canonical_name(os.fspath(source))
        weights = "imagenet" if weights is None else weights
        weights = None if str(weights).lower() == "none" else weights
        build_size = pretrained.eval_config(size=size, arch=name, weights=weights)[0]
        try:
            model = load_source(name, weights=weights, input_size=build_size).model
        except WeightsIntegrityError as e:
            raise ValueError(str(e)) from None
    size, crop_pct, interpolation = pretrained.eval_config(model, size, crop_pct, interpolation)
    return model, pretrained.class_names(model), size, crop_pct, interpolation
