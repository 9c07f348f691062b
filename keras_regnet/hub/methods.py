"""``RegNetModel.save_to_preset`` and ``RegNetModel.from_preset``, keras-hub's preset methods on our model class.

The model class sits a layer below the preset code, so this module installs the two methods on it (as
:mod:`keras_regnet.inference` installs the fast inference path): :mod:`keras_regnet.models`, through which every
constructor and the loader build models, calls :func:`install` once the class exists.
"""

from __future__ import annotations

from keras_regnet.model import RegNetModel

__all__ = ["save_to_preset", "from_preset", "install"]


def save_to_preset(self, preset_dir, training=None):
    """Write this model as a keras-hub preset folder (config.json, model.weights.h5, metadata.json, the task files
    for a classifier, a model card); ``keras_regnet.RegNetModel.from_preset`` and keras-hub load it back."""
    from keras_regnet.hub.preset import save_to_preset as save

    return save(self, preset_dir, training=training)


def from_preset(cls, preset, compile=False):
    """The RegNetModel of a preset folder or ``hf://owner/name[@revision]`` (no keras-hub needed)."""
    from keras_regnet.hub import load_preset
    from keras_regnet.model import find_regnet

    model = load_preset(preset, compile=compile)
    if not isinstance(model, cls):
        inner = find_regnet(model)
        if inner is None:
            raise ValueError(f"{preset!r} holds a {type(model).__name__}, not a {cls.__name__}.")
    return model


def install():
    """Add ``save_to_preset`` and ``from_preset`` to RegNetModel (idempotent)."""
    if getattr(RegNetModel, "save_to_preset", None) is not save_to_preset:
        RegNetModel.save_to_preset = save_to_preset
        RegNetModel.from_preset = classmethod(from_preset)


install()
