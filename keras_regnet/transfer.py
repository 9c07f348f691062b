"""Transfer learning: freeze a RegNet by stage, replace its classifier, build a fine-tuning model in one call.

Stages come from the model's own record of what each layer is (``RegNetModel.layer_roles``). In Keras 3 a
``BatchNormalization`` layer with ``trainable = False`` runs in inference mode (moving statistics, no updates)
even when the model is called with ``training=True``, which is what the Keras fine-tuning guide asks for: frozen
parts of the network therefore keep their ImageNet statistics. Recompile after changing what is trainable.
"""

from __future__ import annotations

import keras

from keras_regnet.blocks import Builder
from keras_regnet.features import regnet_of
from keras_regnet.model import RegNetModel, check_head, find_regnets
from keras_regnet.models import build_model

__all__ = ["freeze_until", "replace_head", "transfer_model", "trainable_stages"]


def _stage_map(model):
    """``{layer: stage}`` for the layers of every RegNet in ``model`` ('stem', 's1'.., 'head', 'preprocessing')."""
    out = {}
    for regnet in find_regnets(model):
        roles = regnet.layer_roles
        for layer in regnet.layers:
            role = roles.get(layer.name)
            if role is not None:
                out[id(layer)] = role.stage
    return out


def _model_stages(model):
    """The stages (``'stem'``, ``'s1'`` ...) of the RegNet(s) in ``model``, in network order."""
    regnets = find_regnets(model)
    if not regnets:
        regnet_of(model)  # raises the clear error
    ordered = []
    for regnet in regnets:
        ordered += [s for s in regnet.feature_info if s not in ordered]
    return ordered


def _leaf_layers(model):
    """Every layer of ``model``, descending into nested models."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def freeze_until(model, stage, freeze_batchnorm=False):
    """Freeze the network from its input up to and including ``stage``; make everything after it trainable.

    Args:
        model: a keras_regnet model (or a model containing one; nested models are searched).
        stage: ``"stem"``, ``"s1"`` .. ``"sN"`` (the last stage or ``"backbone"`` freezes the whole backbone:
            a linear probe), or ``None`` to make everything trainable.
        freeze_batchnorm: also put the BatchNorm layers of the trainable stages in inference mode (their gamma and
            beta are then frozen too), as the Keras guide recommends when fine-tuning with small batches.

    Frozen BatchNorm layers run in inference mode. The change takes effect at the next ``model.compile``.

    Returns:
        ``model`` (modified in place).
    """
    stages = _model_stages(model)
    if stage == "backbone":
        stage = stages[-1]
    if stage is not None and stage not in stages:
        raise ValueError(
            f"unknown stage {stage!r}: model {model.name!r} has stages {', '.join(stages)}; "
            "pass one of them, 'backbone' (all of them) or None (unfreeze everything)."
        )
    frozen = set(stages[: stages.index(stage) + 1]) if stage is not None else set()
    # Every layer gets its flag set explicitly, so the result depends only on the arguments, not on earlier calls.
    _set_trainable(model, frozen, freeze_batchnorm, _stage_map(model))
    return model


def _set_trainable(model, frozen, freeze_batchnorm, stage_map):
    model.trainable = True
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _set_trainable(layer, frozen, freeze_batchnorm, stage_map)
        else:
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = not (stage_map.get(id(layer)) in frozen or (freeze_batchnorm and is_bn))


def trainable_stages(model) -> dict:
    """``{stage: True/False}``: whether each stage (and the head, if present) has trainable weights."""
    result = {}
    stage_map = _stage_map(model)
    for layer in _leaf_layers(model):
        stage = stage_map.get(id(layer))
        if stage in (None, "preprocessing") or not layer.weights:
            continue
        result[stage] = result.get(stage, False) or bool(layer.trainable_weights)
    return result


def replace_head(model, classes, dropout=0.0, activation="softmax", name=None):
    """A new classifier on the backbone's last stage: head_pool -> [head_dropout] -> head_fc -> predictions.

    Works on a classifier (its old head is dropped), a backbone with or without pooling, or a feature extractor.
    The backbone layers are shared with ``model``, not copied (weights and trainable flags carry over).

    Args:
        model: a keras_regnet model.
        classes: number of classes of the new ``head_fc``.
        dropout: dropout rate before ``head_fc`` (0 disables it).
        activation: activation of ``predictions`` (kept in float32 under mixed precision); ``None`` gives logits.
        name: name of the new model (default: the old one's).

    Returns:
        A new :class:`keras_regnet.RegNetModel` (its config rebuilds it: ``.keras`` files restore it).
    """
    check_head(None, classes, activation, dropout)

    if not isinstance(model, RegNetModel):
        regnet_of(model)  # raises the clear error for non-RegNet models
        raise ValueError(
            f"model {model.name!r} contains a keras_regnet backbone; call replace_head on the backbone itself."
        )
    stages = model.feature_info
    last = list(stages)[-1]
    if last == "stem":
        raise ValueError(f"model {model.name!r} has no stages after the stem; nothing to put a head on.")
    builder = Builder(model.build_options["padding"], model.build_options.get("data_format"))
    builder._where = ("head", 0, stages[last].stride)
    # Same layers and initialisation as the constructors' head (pycls: normal, std 0.01, zero bias).
    x = builder.head(model._stage_tensors[last], classes, activation, dropout)
    options = dict(model.build_options, include_top=True, pooling=None, classes=classes,
                   classifier_activation=activation, head_dropout=float(dropout), features=None)
    return model._derive(x, options, name=name or model.name, extra_roles=builder.roles)


# transfer_model's argument of the same name shadows the function inside it.
_freeze_until = freeze_until


def transfer_model(
    name_or_params,
    classes,
    weights="imagenet",
    freeze_until=None,
    dropout=0.2,
    activation="softmax",
    freeze_batchnorm=False,
    input_shape=None,
    **kwargs,
):
    """A fine-tuning model in one call: backbone with ``weights``, a new head, stages up to ``freeze_until`` frozen.

    Equivalent to ``freeze_until(replace_head(build_model(name_or_params, include_top=False, weights=weights),
    classes, dropout, activation), freeze_until, freeze_batchnorm)``; for a model you already built, call
    :func:`replace_head` and :func:`freeze_until` yourself.

    Args:
        name_or_params: a paper model name (``"RegNetY600MF"``), RegNetParams/AnyNetParams or their dict form.
        classes: number of classes of the new head.
        weights: backbone weights: ``"imagenet"``, a weights file, or ``None`` (random init).
        freeze_until: last frozen stage (``"stem"``, ``"s1"``.., ``"backbone"``) or ``None`` to train everything.
        dropout, activation: of the new head (see :func:`replace_head`).
        freeze_batchnorm: keep every BatchNorm in inference mode (see :func:`freeze_until`).
        input_shape: defaults to ``(None, None, 3)`` (any size >= 32).
        **kwargs: further constructor arguments (e.g. ``include_preprocessing=False``).
    """
    if isinstance(name_or_params, keras.Model):
        raise ValueError(
            "transfer_model builds a backbone from a name or parameters; for a built model call "
            "replace_head(model, classes) and freeze_until(model, stage)."
        )
    backbone = build_model(name_or_params, include_top=False, weights=weights, input_shape=input_shape, **kwargs)
    model = replace_head(backbone, classes, dropout=dropout, activation=activation)
    return _freeze_until(model, freeze_until, freeze_batchnorm=freeze_batchnorm)
