"""Loading weights into a built model. Pretrained ImageNet weights arrive with the weights issue (#3)."""

from __future__ import annotations

import os

__all__ = ["load_weights"]


def load_weights(model, weights, arch=None, include_top=True):
    """Load ``weights`` (``"imagenet"`` or a path to a Keras ``.weights.h5`` file) into ``model``."""
    if isinstance(weights, str) and (weights == "imagenet" or weights.startswith("imagenet:")):
        raise NotImplementedError(
            f"pretrained weights ({weights!r}) for {arch} are not available yet; "
            "pass weights=None, or weights='path/to/file.weights.h5' with weights you trained."
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"weights file {path!r} does not exist.")
    if not path.endswith(".weights.h5"):
        raise ValueError(f"unsupported weights file {path!r}: expected a Keras '.weights.h5' file.")
    model.load_weights(path)
