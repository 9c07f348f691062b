"""AnyNet and RegNet builders with keras.applications semantics, and the paper's 24 named models."""

from __future__ import annotations

import keras

from keras_regnet import blocks, specs
from keras_regnet.preprocessing import normalization_constants

__all__ = ["AnyNet", "RegNet", "build_model", "MIN_INPUT_SIZE"]

MIN_INPUT_SIZE = 32
_POOLINGS = (None, "avg", "max")


def _validate_input_shape(input_shape, include_top, pretrained):
    """Check a channels-last (H, W, C) shape; return it (default: 224x224x3 with a top, dynamic without)."""
    if keras.config.image_data_format() != "channels_last":
        raise ValueError(
            "keras_regnet models are channels_last only (TensorFlow's CPU kernels are NHWC); "
            "call keras.config.set_image_data_format('channels_last')."
        )
    if input_shape is None:
        return (224, 224, 3) if include_top else (None, None, 3)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"input_shape must be a tuple (height, width, channels), got {input_shape!r}.")
    h, w, c = input_shape
    for size in (h, w):
        if size is not None and (not isinstance(size, int) or size < MIN_INPUT_SIZE):
            raise ValueError(
                f"input_shape height and width must be None or integers >= {MIN_INPUT_SIZE} "
                f"(the network downsamples 32x), got {tuple(input_shape)!r}."
            )
    if not isinstance(c, int) or c < 1:
        raise ValueError(f"input_shape must end in a positive channel count, got {tuple(input_shape)!r}.")
    if pretrained and c != 3:
        raise ValueError(f"pretrained weights expect 3 (RGB) input channels, got input_shape={tuple(input_shape)!r}.")
    return tuple(input_shape)


def build_model(
    params,
    include_top=True,
    weights=None,
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
):
    """Build a Keras model from RegNetParams / AnyNetParams (their dict form, or a paper model name), keras.applications style.

    ``weights_arch`` names the architecture whose pretrained weights ``weights="imagenet"`` refers to (set
    automatically when ``params`` is a paper model name such as ``"RegNetY-600MF"``).

    Two options exist only to run weights trained with Keras 2's ``tf_keras.applications.RegNet*`` exactly:
    ``padding="same"`` uses TF's asymmetric 'same' padding on the stride-2 3x3 convs (default ``"symmetric"``:
    1 pixel on every side, as pycls/PyTorch), and ``normalization="unit"`` makes the built-in preprocessing
    rescale RGB [0, 255] to [0, 1] only (default ``"imagenet"``: ImageNet mean/std). Left as ``None`` they take
    what the requested registry weights need (``weights="imagenet:keras2"`` selects both), else the defaults.
    """
    if isinstance(params, str):
        weights_arch = specs.canonical_name(params)
        params = specs.MODEL_PARAMS[weights_arch]
    if isinstance(params, dict):
        params = specs.params_from_dict(params)
    if isinstance(params, specs.RegNetParams):
        params = params.to_anynet()
    if not isinstance(params, specs.AnyNetParams):
        raise ValueError(
            f"params must be RegNetParams, AnyNetParams, their dict form or a model name, got {type(params).__name__}."
        )
    if pooling not in _POOLINGS:
        raise ValueError(f"pooling must be one of None, 'avg' or 'max', got {pooling!r}.")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got {classes!r}.")
    if not (weights is None or isinstance(weights, str) or hasattr(weights, "__fspath__")):
        raise ValueError(f"weights must be None, 'imagenet', a weights tag or a file path, got {weights!r}.")
    from keras_regnet.weights.registry import is_registry_weights

    named_weights = is_registry_weights(weights)
    if named_weights and include_top and classes != 1000:
        raise ValueError(
            f"weights={weights!r} with include_top=True needs classes=1000 (the ImageNet head), got classes={classes}. "
            "Use include_top=False and add your own head, or weights=None."
        )
    if named_weights and weights_arch is None:
        raise ValueError(
            f"weights={weights!r} is only available for the paper's named models (e.g. keras_regnet.RegNetY600MF); "
            "pass a file path to load your own weights into a custom RegNet/AnyNet."
        )
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as e:
        raise ValueError(f"unknown classifier_activation {classifier_activation!r}: {e}") from None

    if named_weights:
        from keras_regnet import weights as weights_lib

        required = weights_lib.get_weights_info(weights_arch, weights).get("architecture", {})
        for option, value in (("padding", padding), ("normalization", normalization)):
            if value is not None and option in required and value != required[option]:
                raise ValueError(
                    f"weights={weights!r} need {option}={required[option]!r} (the architecture they were trained "
                    f"with), got {option}={value!r}."
                )
        padding = padding or required.get("padding")
        normalization = normalization or required.get("normalization")
    padding = padding or "symmetric"
    normalization = normalization or "imagenet"
    if padding not in blocks.PADDINGS:
        raise ValueError(f"padding must be one of {blocks.PADDINGS}, got {padding!r}.")
    if normalization not in ("imagenet", "unit"):
        raise ValueError(f"normalization must be 'imagenet' (mean/std) or 'unit' ([0, 1] only), got {normalization!r}.")

    shape = _validate_input_shape(input_shape, include_top, pretrained=named_weights)
    if input_tensor is None:
        img_input = keras.Input(shape=shape, name="image")
    elif not keras.backend.is_keras_tensor(input_tensor):
        img_input = keras.Input(tensor=input_tensor, shape=shape, name="image")
    else:
        img_input = input_tensor

    x = img_input
    if include_preprocessing:
        if normalization == "unit":
            scale, offset = 1.0 / 255.0, 0.0
        else:
            scale, offset = normalization_constants(int(x.shape[-1]))
        x = keras.layers.Rescaling(scale=scale, offset=offset, name="preprocessing")(x)
    x = blocks.stem(x, params.stem_width, params.stem, padding)
    w_in = params.stem_width
    for i, (d, w, b, g) in enumerate(zip(params.depths, params.widths, params.bottleneck_ratios, params.group_widths)):
        x = blocks.stage(x, i + 1, w_in, d, w, b, g, params.se_ratio, padding)
        w_in = w
    if include_top:
        x = blocks.head(x, classes, classifier_activation)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)

    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    model = keras.Model(inputs, x, name=name or "regnet")
    if weights is not None:
        from keras_regnet import weights as weights_lib

        weights_lib.load_weights(model, weights, arch=weights_arch, include_top=include_top)
    return model


_COMMON_DOC = """
    Args:
        include_top: whether to include the classifier (global average pool, ``head_fc``, ``predictions``).
        weights: ``None`` (random init), ``"imagenet"`` (the paper's weights), a weights tag such as
            ``"imagenet:<tag>"``, or a path to a weights file.
        input_tensor: optional Keras tensor (output of ``keras.Input``) to use as the image input.
        input_shape: optional ``(height, width, channels)``; defaults to ``(224, 224, 3)`` with the top and to
            ``(None, None, 3)`` without it. Height and width must be at least 32.
        pooling: with ``include_top=False``: ``None`` (4D feature map), ``"avg"`` or ``"max"`` (2D output).
        classes: number of classes of the classifier (with ``include_top=True``).
        classifier_activation: activation of the ``predictions`` layer; ``None`` returns logits.
        include_preprocessing: if True the model takes RGB in [0, 255] and normalises internally
            (rescaling + ImageNet mean/std); if False it expects already normalised inputs.
        name: model name.

    Returns:
        A ``keras.Model``.
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
    """An AnyNet: stem, one stage of X blocks per entry of ``depths``, head.

    Per stage i: ``depths[i]`` blocks of width ``widths[i]``, bottleneck ratio ``bottleneck_ratios[i]`` (the
    paper's b: bottleneck width = width / b) and group width ``group_widths[i]`` (which must divide the bottleneck
    width; see ``keras_regnet.adjust_block_compatibility``). ``se_ratio`` > 0 adds Squeeze-and-Excitation.
    ``stem="cifar"`` uses a stride-1 stem for small images.
    """
    params = specs.AnyNetParams(depths, widths, bottleneck_ratios, group_widths, se_ratio, stem_width, stem)
    return build_model(
        params, include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, include_preprocessing, name,
    )


AnyNet.__doc__ += _COMMON_DOC


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
    """A RegNet from its generating parameters: depth d, initial width w0, slope wa, multiplier wm, group width g.

    Block widths follow the quantized linear rule u_j = w0 + wa * j, snapped to powers of wm and multiples of 8;
    equal widths form a stage; widths and group widths are then made compatible as pycls does.
    """
    params = specs.RegNetParams(depth, w0, wa, wm, group_width, bottleneck_ratio, se_ratio, stem_width, stem)
    return build_model(
        params, include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, include_preprocessing, name,
    )


RegNet.__doc__ += _COMMON_DOC


def _named_model(paper_name):
    """Create the constructor of one of the paper's models (e.g. 'RegNetY-600MF' -> ``RegNetY600MF``)."""
    params = specs.MODEL_PARAMS[paper_name]
    flops, n_params, _, err = specs.PAPER_FIGURES[paper_name]
    default_name = specs.constructor_name(paper_name).lower()

    def constructor(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        include_preprocessing=True,
        name=None,
    ):
        return build_model(
            params, include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, include_preprocessing, name or default_name, weights_arch=paper_name,
        )

    constructor.__name__ = constructor.__qualname__ = specs.constructor_name(paper_name)
    constructor.__doc__ = (
        f"{paper_name} (Radosavovic et al., CVPR 2020): d={params.depth}, w0={params.w0}, wa={params.wa}, "
        f"wm={params.wm}, g={params.group_width}{', SE 0.25' if params.se_ratio else ''}; "
        f"{flops / 1e9:.2f} GF, {n_params / 1e6:.1f} M params, paper top-1 error {err:.1f}%.\n" + _COMMON_DOC
    )
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

NAMED_MODELS = {name: globals()[specs.constructor_name(name)] for name in specs.MODEL_NAMES}


def get_model(name, **kwargs):
    """Build a named model by name ('RegNetY600MF' or 'RegNetY-600MF'), passing keyword arguments through."""
    return NAMED_MODELS[specs.canonical_name(name)](**kwargs)
