"""The backbone part of a RegNetModel (architecture without head, weights copied by layer name); no keras-hub."""

from __future__ import annotations

__all__ = ["backbone_config", "copy_weights"]


def backbone_config(model):
    """The RegNetBackbone arguments of a RegNetModel (its architecture without head, pooling or feature outputs)."""
    import keras

    opts = model.build_options
    return {
        "spec": model.spec.to_dict(),
        "image_shape": list(opts["input_shape"]),
        "include_preprocessing": opts["include_preprocessing"],
        "padding": opts["padding"],
        "normalization": opts["normalization"],
        "arch": opts["arch"],
        "pretrained_cfg": model.pretrained_cfg,
        "frozen_layers": [layer.name for layer in model.layers if layer.weights and not layer.trainable] or None,
        "data_format": opts.get("data_format") or keras.config.image_data_format(),
    }


def copy_weights(source, target, skip_missing=False):
    """Copy the weights of every layer of ``target`` from the layer of the same name in ``source``."""
    names = {layer.name for layer in source.layers}
    for layer in target.layers:
        if layer.weights:
            if skip_missing and layer.name not in names:
                continue
            layer.set_weights(source.get_layer(layer.name).get_weights())
