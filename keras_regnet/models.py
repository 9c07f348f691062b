"""The keras.applications-style constructors, the paper's 24 named models and the catalogue.

Every constructor builds a :class:`keras_regnet.model.RegNetModel`, then loads the requested weights into it
(:func:`keras_regnet.weights.load_weights`): the model class knows nothing about weights files or the registry,
and the weights package knows nothing about the model class. ``pretrained_cfg`` defaults come from
:mod:`keras_regnet.pretrained`. Loading saved models (``.keras`` files, presets) is :mod:`keras_regnet.loading`.
"""

from __future__ import annotations

import fnmatch
import os

from keras_regnet import pretrained, specs
from keras_regnet.model import MAX_PARAMS, MIN_INPUT_SIZE, RegNetModel, validate_input_shape
from keras_regnet.weights import atomic_save_weights, load_weights
from keras_regnet.weights.files import infer_model_name, is_keras2_h5, load_file_into_model
from keras_regnet.weights.naming import KERAS2_ARCHITECTURE
from keras_regnet.errors import WeightsDownloadError, WeightsMismatchError
from keras_regnet.weights.registry import REGISTRY, weights_for_tag
from keras_regnet.hub import methods as _preset_methods

_preset_methods.install()  # RegNetModel.save_to_preset / from_preset (keras-hub's preset methods)


class _NamedDefault:
    """``build_model``'s default ``weights``: ``"imagenet"`` for the paper's named models (as keras.applications),
    ``None`` (random init) for custom specs, which have no pretrained weights."""

    def __repr__(self):
        return "'imagenet' for paper models, None for custom specs"


NAMED_DEFAULT = _NamedDefault()

__all__ = [
    "RegNetModel", "AnyNet", "RegNet", "build_model", "get_model", "list_models", "convert_file",
    "MIN_INPUT_SIZE", "MAX_PARAMS", "NAMED_MODELS", "ALIASES",
]


# ------------------------------------------------------------------------------------------------ build then load

def build_model(
    params,
    include_top=True,
    weights=NAMED_DEFAULT,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    include_preprocessing=True,
    name=None,
    weights_arch=None,
    padding=None,
    normalization=None,
    pretrained_cfg=None,
    **kwargs,
):
    """A :class:`RegNetModel` from RegNetParams / AnyNetParams (their dict form, or a paper model name).

    ``weights_arch`` names the architecture whose pretrained weights ``weights="imagenet"`` refers to (set
    automatically when ``params`` is a paper model name such as ``"RegNetY-600MF"``).

    Two options exist only to run weights trained with Keras 2's ``tf_keras.applications.RegNet*`` exactly:
    ``padding="same"`` uses TF's asymmetric 'same' padding on the stride-2 3x3 convs (default ``"symmetric"``:
    1 pixel on every side, as pycls/PyTorch), and ``normalization="unit"`` makes the built-in preprocessing
    rescale RGB [0, 255] to [0, 1] only (default ``"imagenet"``: ImageNet mean/std). Left as ``None`` they take
    what the requested registry weights need (``weights="imagenet:keras2"`` selects both), else the defaults.
    Further keyword arguments (``head_dropout``, ``features``, ``pretrained_cfg``) go to :class:`RegNetModel`.
    """
    _, named = specs.resolve(params)
    arch = weights_arch or named
    if arch is not None:
        arch = specs.canonical_name(arch)
    if weights is NAMED_DEFAULT:
        weights = "imagenet" if named is not None else None
    weights = pretrained.normalize_weights_arg(weights, arch)
    info, padding, normalization = pretrained.registry_options(
        weights, arch, include_top, classes, padding, normalization)
    if info is not None:  # registry weights: a 3-channel input (checked before building)
        validate_input_shape(input_shape, include_top, pretrained=True)
    model = RegNetModel(
        params, include_top=include_top, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing, name=name, padding=padding, normalization=normalization,
        arch=arch, pretrained_cfg=pretrained_cfg, **kwargs,
    )
    if pretrained_cfg is None:
        model.pretrained_cfg = pretrained.pretrained_cfg(model, weights, info, None, params)
    if weights is not None:
        try:
            load_weights(model, weights, arch=arch, include_top=include_top)
        except WeightsDownloadError as e:
            raise WeightsDownloadError(
                f"{e} Or build the model without pretrained weights: weights=None (keras-regnet: --weights none)."
            ) from None
    return model


_COMMON_DOC = """
    Args:
        include_top: whether to include the classifier (global average pool, ``head_fc``, ``predictions``).
        weights: ``"imagenet"`` (the paper's weights; the default of the named models, downloaded once and
            cached), ``None`` (random init; the default of custom RegNet/AnyNet specs), a weights tag such as
            ``"imagenet:<tag>"`` (or a timm name with a tag, ``"regnety_080.ra3_in1k"``), or a path to a weights file.
        input_tensor: optional Keras tensor (output of ``keras.Input``) to use as the image input.
        input_shape: optional ``(height, width, channels)`` (``(channels, height, width)`` under
            ``channels_first``); defaults to 224x224x3 with the top and to a dynamic size without it. Height and
            width must be at least 32.
        pooling: with ``include_top=False``: ``None`` (4D feature map), ``"avg"`` or ``"max"`` (2D output).
        classes: number of classes of the classifier (with ``include_top=True``).
        classifier_activation: activation of the ``predictions`` layer; ``None`` returns logits.
        include_preprocessing: if True the model takes RGB in [0, 255] and normalises internally
            (rescaling + ImageNet mean/std); if False it expects already normalised inputs.
        name: model name.

    Returns:
        A :class:`keras_regnet.RegNetModel` (a ``keras.Model``).
"""


def AnyNet(
    depths,
    widths,
    bottleneck_ratios,
    group_widths,
    se_ratio=0.0,
    stem_width=32,
    stem="imagenet",
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    include_preprocessing=True,
    name="anynet",
):
    params = specs.AnyNetParams(depths, widths, bottleneck_ratios, group_widths, se_ratio, stem_width, stem)
    return build_model(
        params, include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, include_preprocessing, name,
    )


AnyNet.__doc__ = """An AnyNet: stem, one stage of X blocks per entry of ``depths``, head.

    Per stage i: ``depths[i]`` blocks of width ``widths[i]``, bottleneck ratio ``bottleneck_ratios[i]`` (the
    paper's b: bottleneck width = width / b) and group width ``group_widths[i]`` (which must divide the bottleneck
    width; see ``keras_regnet.adjust_block_compatibility``). ``se_ratio`` > 0 adds Squeeze-and-Excitation.
    ``stem="cifar"`` uses a stride-1 stem for small images.
""" + _COMMON_DOC


def RegNet(
    depth,
    w0,
    wa,
    wm,
    group_width,
    bottleneck_ratio=1.0,
    se_ratio=0.0,
    stem_width=32,
    stem="imagenet",
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    include_preprocessing=True,
    name="regnet",
):
    params = specs.RegNetParams(depth, w0, wa, wm, group_width, bottleneck_ratio, se_ratio, stem_width, stem)
    return build_model(
        params, include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, include_preprocessing, name,
    )


RegNet.__doc__ = """A RegNet from its generating parameters: depth d, initial width w0, slope wa, multiplier wm, group width g.

    Block widths follow the quantized linear rule u_j = w0 + wa * j, snapped to powers of wm and multiples of 8;
    equal widths form a stage; widths and group widths are then made compatible as pycls does.
""" + _COMMON_DOC


def _named_model(paper_name, alias=None):
    """Create the constructor of one of the paper's models (e.g. 'RegNetY-600MF' -> ``RegNetY600MF``)."""
    params = specs.MODEL_PARAMS[paper_name]
    flops, n_params, _, err = specs.PAPER_FIGURES[paper_name]
    default_name = specs.constructor_name(paper_name).lower()

    def constructor(
        include_top=True,
        weights="imagenet",
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        include_preprocessing=True,
        name=None,
    ):
        return build_model(
            paper_name, include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, include_preprocessing, name or default_name,
        )

    constructor.__name__ = constructor.__qualname__ = alias or specs.constructor_name(paper_name)
    summary = (
        f"{paper_name} (Radosavovic et al., CVPR 2020): d={params.depth}, w0={params.w0}, wa={params.wa}, "
        f"wm={params.wm}, g={params.group_width}{', SE 0.25' if params.se_ratio else ''}; "
        f"{flops / 1e9:.2f} GF, {n_params / 1e6:.1f} M params, paper top-1 error {err:.1f}%."
    )
    if alias:
        summary = f"Alias of {specs.constructor_name(paper_name)} (the tf_keras / kimm name). " + summary
    constructor.__doc__ = summary + "\n" + _COMMON_DOC
    return constructor


RegNetX200MF = _named_model("RegNetX-200MF")
RegNetX400MF = _named_model("RegNetX-400MF")
RegNetX600MF = _named_model("RegNetX-600MF")
RegNetX800MF = _named_model("RegNetX-800MF")
RegNetX1_6GF = _named_model("RegNetX-1.6GF")
RegNetX3_2GF = _named_model("RegNetX-3.2GF")
RegNetX4_0GF = _named_model("RegNetX-4.0GF")
RegNetX6_4GF = _named_model("RegNetX-6.4GF")
RegNetX8_0GF = _named_model("RegNetX-8.0GF")
RegNetX12GF = _named_model("RegNetX-12GF")
RegNetX16GF = _named_model("RegNetX-16GF")
RegNetX32GF = _named_model("RegNetX-32GF")
RegNetY200MF = _named_model("RegNetY-200MF")
RegNetY400MF = _named_model("RegNetY-400MF")
RegNetY600MF = _named_model("RegNetY-600MF")
RegNetY800MF = _named_model("RegNetY-800MF")
RegNetY1_6GF = _named_model("RegNetY-1.6GF")
RegNetY3_2GF = _named_model("RegNetY-3.2GF")
RegNetY4_0GF = _named_model("RegNetY-4.0GF")
RegNetY6_4GF = _named_model("RegNetY-6.4GF")
RegNetY8_0GF = _named_model("RegNetY-8.0GF")
RegNetY12GF = _named_model("RegNetY-12GF")
RegNetY16GF = _named_model("RegNetY-16GF")
RegNetY32GF = _named_model("RegNetY-32GF")

# tf_keras.applications / kimm spellings of the same 24 models (size codes: keras_regnet.specs.SIZE_CODES).
RegNetX002 = _named_model("RegNetX-200MF", "RegNetX002")
RegNetX004 = _named_model("RegNetX-400MF", "RegNetX004")
RegNetX006 = _named_model("RegNetX-600MF", "RegNetX006")
RegNetX008 = _named_model("RegNetX-800MF", "RegNetX008")
RegNetX016 = _named_model("RegNetX-1.6GF", "RegNetX016")
RegNetX032 = _named_model("RegNetX-3.2GF", "RegNetX032")
RegNetX040 = _named_model("RegNetX-4.0GF", "RegNetX040")
RegNetX064 = _named_model("RegNetX-6.4GF", "RegNetX064")
RegNetX080 = _named_model("RegNetX-8.0GF", "RegNetX080")
RegNetX120 = _named_model("RegNetX-12GF", "RegNetX120")
RegNetX160 = _named_model("RegNetX-16GF", "RegNetX160")
RegNetX320 = _named_model("RegNetX-32GF", "RegNetX320")
RegNetY002 = _named_model("RegNetY-200MF", "RegNetY002")
RegNetY004 = _named_model("RegNetY-400MF", "RegNetY004")
RegNetY006 = _named_model("RegNetY-600MF", "RegNetY006")
RegNetY008 = _named_model("RegNetY-800MF", "RegNetY008")
RegNetY016 = _named_model("RegNetY-1.6GF", "RegNetY016")
RegNetY032 = _named_model("RegNetY-3.2GF", "RegNetY032")
RegNetY040 = _named_model("RegNetY-4.0GF", "RegNetY040")
RegNetY064 = _named_model("RegNetY-6.4GF", "RegNetY064")
RegNetY080 = _named_model("RegNetY-8.0GF", "RegNetY080")
RegNetY120 = _named_model("RegNetY-12GF", "RegNetY120")
RegNetY160 = _named_model("RegNetY-16GF", "RegNetY160")
RegNetY320 = _named_model("RegNetY-32GF", "RegNetY320")

NAMED_MODELS = {name: globals()[specs.constructor_name(name)] for name in specs.MODEL_NAMES}
ALIASES = {specs.alias_names(name)[0]: name for name in specs.MODEL_NAMES}


def get_model(name, **kwargs):
    """Build a named model by any spelling: 'RegNetY600MF', 'RegNetY-600MF', 'RegNetY006' (tf_keras/kimm),
    'regnety_006' (timm). ``weights`` defaults to ``"imagenet"``; with a timm name with a tag
    ('regnety_080.ra3_in1k') that means those weights, and their eval config (``weights=None``: the eval config
    only). (``keras_regnet.get_model``
    also takes ``.keras`` files and presets: :func:`keras_regnet.loading.get_model`.)"""
    paper_name, tag = specs.split_model_name(name)
    if tag is not None and kwargs.get("weights", "imagenet") == "imagenet":
        kwargs["weights"] = weights_for_tag(tag)
    kwargs.setdefault("name", specs.constructor_name(paper_name).lower())
    return build_model(name if tag else paper_name, **kwargs)


def list_models(pattern="*", pretrained=False):
    """Model names matching a shell-style ``pattern`` (case-insensitive), like ``timm.list_models``.

    Names are the constructor names (``RegNetY600MF``); with ``pretrained=True`` each available weights tag is
    listed as timm spells it (``regnety_080.ra3_in1k``) and the pattern matches either spelling.
    """
    pattern = pattern.lower()
    if not pretrained:
        names = [specs.constructor_name(n) for n in specs.MODEL_NAMES]
        return [n for n in names if fnmatch.fnmatch(n.lower(), pattern)
                or fnmatch.fnmatch(specs.alias_names(n)[1], pattern)]
    out = []
    for paper_name in specs.MODEL_NAMES:
        timm = specs.timm_arch(paper_name)
        for entry in REGISTRY[paper_name]:
            full = f"{timm}.{entry['tag']}"
            if fnmatch.fnmatch(full, pattern) or fnmatch.fnmatch(specs.constructor_name(paper_name).lower(), pattern):
                out.append(full)
    return out


def convert_file(src, dst, model_name=None, include_top=True):
    """Convert ``src`` (timm/pycls ``.safetensors`` or ``.pyth``, or a tf_keras ``.h5``) to a Keras ``.weights.h5``.

    ``model_name`` (e.g. 'RegNetY-600MF') names the architecture; without it, the paper model whose structure the
    file holds is used. Keras 2 files give a model with ``padding="same", normalization="unit"``. The output is
    written atomically (never a partial file). Returns the model name used.
    """
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
    kwargs = dict(KERAS2_ARCHITECTURE) if keras2 else {}
    model = build_model(name, include_top=include_top, weights=None, **kwargs)
    load_file_into_model(model, src, fmt="keras2" if keras2 else None)
    atomic_save_weights(model, dst)
    return name
