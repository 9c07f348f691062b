"""Sharing RegNet models: keras-hub presets, the Hugging Face Hub and ``hf://`` URIs.

- :func:`save_to_preset` (also ``RegNetModel.save_to_preset``) writes a preset folder in keras-hub's layout, with a
  ``pretrained_cfg`` and a model card; :func:`load_preset` reads a preset folder or ``hf://owner/name[@revision]``
  back into a :class:`keras_regnet.RegNetModel` (keras-hub is not needed for either).
- :func:`upload_preset` pushes a preset folder to the Hub in one commit.
- With keras-hub installed, ``keras_hub.models.Backbone.from_preset`` / ``ImageClassifier.from_preset`` load the same
  presets as ``RegNetBackbone`` / ``RegNetImageClassifier`` (:mod:`keras_regnet.hub.keras_hub_models`).

Importing this package imports neither Keras nor huggingface_hub; each function imports what it needs.
"""

from __future__ import annotations

import os

from keras_regnet.hub.uri import HubURI, PresetDownloadError, PresetError, is_hub_uri, parse_hub_uri

__all__ = ["save_to_preset", "load_preset", "upload_preset", "resolve_preset", "is_preset", "is_hub_uri",
           "parse_hub_uri", "HubURI", "PresetError", "PresetDownloadError", "PresetUploadError", "keras_hub_classes",
           "load_backbone"]


def __getattr__(name):
    if name == "PresetUploadError":
        from keras_regnet.hub.remote import PresetUploadError

        return PresetUploadError
    raise AttributeError(f"module 'keras_regnet.hub' has no attribute {name!r}")


def save_to_preset(model, preset_dir, training=None):
    """Write ``model`` (a RegNetModel) as a keras-hub preset folder; see :mod:`keras_regnet.hub.preset`."""
    from keras_regnet.hub.preset import save_to_preset as save

    return save(model, preset_dir, training=training)


def is_preset(source) -> bool:
    """True for an ``hf://`` URI or a folder holding a ``config.json`` (a preset, or a Keras model folder)."""
    if is_hub_uri(source):
        return True
    try:
        path = os.fspath(source)
    except TypeError:
        return False
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def resolve_preset(source):
    """The local folder of preset ``source`` (a folder, or ``hf://owner/name[@revision]`` downloaded and checked)."""
    if is_hub_uri(source):
        from keras_regnet.hub.remote import fetch_preset

        return fetch_preset(source)
    path = os.fspath(source)
    if not os.path.isdir(path):
        raise PresetError(f"preset folder {path!r} does not exist (give a preset folder or hf://owner/name).")
    return path


def load_preset(source, compile=False):
    """The RegNetModel of preset ``source``: a preset folder or ``hf://owner/name[@revision]``.

    The same model as the one saved: outputs, class names, eval transform and frozen layers. Raises
    :class:`PresetError` (a ValueError) for a bad URI or anything that is not a complete RegNet preset, and
    :class:`PresetDownloadError` (an OSError) when it cannot be fetched; each in one line.
    """
    from keras_regnet.hub.preset import read_preset

    folder = resolve_preset(source)
    return read_preset(folder, source=str(source) if is_hub_uri(source) else repr(os.fspath(source)),
                       compile=compile)


def upload_preset(uri, preset_dir, private=None, commit_message=None, token=None):
    """Upload a preset folder to ``hf://owner/name`` (checked first, one commit); returns the commit URL."""
    from keras_regnet.hub.remote import upload_preset as upload

    return upload(uri, preset_dir, private=private, commit_message=commit_message, token=token)


def keras_hub_classes():
    """The keras-hub classes (RegNetBackbone, RegNetImageClassifier ...); needs ``keras-regnet[keras-hub]``."""
    from keras_regnet._extras import require

    require("keras_hub", "keras-hub", "keras-regnet's keras-hub classes")
    from keras_regnet.hub import keras_hub_models

    return keras_hub_models


def load_backbone(source, input_shape=None):
    """The backbone (no head, no pooling) of preset ``source`` with its weights, built for ``input_shape`` (e.g. a
    fine-tuning resolution; default: the preset's): what fine-tuning from a preset starts from."""
    from keras_regnet.hub._backbone import backbone_config, copy_weights
    from keras_regnet.model import RegNetModel, find_regnet

    loaded = load_preset(source)
    regnet = find_regnet(loaded)
    cfg = backbone_config(regnet)
    shape = tuple(input_shape) if input_shape is not None else tuple(cfg["image_shape"])
    cfg.pop("image_shape")
    spec = cfg.pop("spec")
    cfg["frozen_layers"] = None  # fine-tuning decides what is frozen
    backbone = RegNetModel(spec, include_top=False, pooling=None, input_shape=shape, name=regnet.name, **cfg)
    copy_weights(regnet, backbone, skip_missing=True)
    return backbone
