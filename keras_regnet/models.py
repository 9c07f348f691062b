"""The model class every constructor returns (:class:`RegNetModel`), the keras.applications-style constructors and
the paper's 24 named models.

A :class:`RegNetModel` is a Functional ``keras.Model`` that knows what it is: ``spec`` (the RegNet/AnyNet
parameters it was built from), ``build_options`` (padding, normalization, head, pooling ...), ``feature_info`` and
``pyramid_outputs`` (the stage outputs, recorded while building), ``layer_roles`` (what every layer is) and
``pretrained_cfg`` (weights, eval transform, class names). ``get_config`` returns exactly the arguments that rebuild
the same architecture, so ``.keras`` files restore all of it; weights files record the spec they were saved from.
"""

from __future__ import annotations

import math
import os

import keras

from keras_regnet import specs
from keras_regnet.blocks import Builder, FeatureInfo, LayerRole  # noqa: F401  (FeatureInfo, LayerRole re-exported)

__all__ = [
    "RegNetModel", "AnyNet", "RegNet", "build_model", "get_model", "list_models", "load_model", "eval_config",
    "class_names", "MIN_INPUT_SIZE", "MAX_PARAMS", "NAMED_MODELS", "ALIASES",
]

MIN_INPUT_SIZE = 32
# Models above this many parameters (16 GB of float32 weights, 100x RegNetY-32GF) are refused before building.
MAX_PARAMS = 4_000_000_000
_POOLINGS = (None, "avg", "max")
_NORMALIZATIONS = ("imagenet", "unit")
_DEFAULT_EVAL = {"size": 224, "crop_pct": 0.875, "interpolation": "bicubic"}


# ------------------------------------------------------------------------------------------------ argument checks

def _data_format():
    return keras.config.image_data_format()


def _validate_input_shape(input_shape, include_top, pretrained):
    """Check an image shape in the current data format; default (224, 224, 3) with a top, dynamic without."""
    channels_first = _data_format() == "channels_first"
    if input_shape is None:
        hw = (224, 224) if include_top else (None, None)
        return (3, *hw) if channels_first else (*hw, 3)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        order = "(channels, height, width)" if channels_first else "(height, width, channels)"
        raise ValueError(f"input_shape must be a tuple {order}, got {input_shape!r}.")
    input_shape = tuple(input_shape)
    c, h, w = input_shape if channels_first else (input_shape[2], *input_shape[:2])
    for size in (h, w):
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < MIN_INPUT_SIZE):
            raise ValueError(
                f"input_shape height and width must be None or integers >= {MIN_INPUT_SIZE} "
                f"(the network downsamples 32x), got {input_shape!r}."
            )
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise ValueError(f"input_shape must have a positive channel count, got {input_shape!r} ({_data_format()}).")
    if pretrained and c != 3:
        raise ValueError(f"pretrained weights expect 3 (RGB) input channels, got input_shape={input_shape!r}.")
    return input_shape


def _check_size(spec):
    """Refuse absurdly large architectures before building (they would exhaust memory after minutes)."""
    from keras_regnet.complexity import complexity

    n = complexity(spec, resolution=224)["params"]
    if n > MAX_PARAMS:
        raise ValueError(
            f"this architecture has {n / 1e9:.1f} billion parameters ({n * 4 / 2**30:.0f} GiB of float32 weights), "
            f"more than keras_regnet builds (keras_regnet.models.MAX_PARAMS = {MAX_PARAMS / 1e9:.0f} billion); "
            "check the widths (w0, wa, widths) of the spec."
        )


def _check_head(pooling, classes, classifier_activation, head_dropout):
    """Validate the head arguments (shared by the constructors and ``replace_head``)."""
    if pooling not in _POOLINGS:
        raise ValueError(f"pooling must be one of None, 'avg' or 'max', got {pooling!r}.")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got {classes!r}.")
    if isinstance(head_dropout, bool) or not isinstance(head_dropout, (int, float)) or not 0 <= head_dropout < 1:
        raise ValueError(f"head_dropout must be a rate in [0, 1), got {head_dropout!r}.")
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as e:
        raise ValueError(f"unknown activation {classifier_activation!r} (classifier_activation): {e}") from None


def _registry_options(weights, arch, include_top, classes, padding, normalization):
    """The registry entry of named ``weights`` (or None), checked against the build options it needs."""
    from keras_regnet.weights.registry import get_weights_info, is_registry_weights

    if not is_registry_weights(weights):
        return None, padding, normalization
    if arch is None:
        raise ValueError(
            f"weights={weights!r} is only available for the paper's named models (e.g. keras_regnet.RegNetY600MF); "
            "pass a file path to load your own weights into a custom RegNet/AnyNet."
        )
    if include_top and classes != 1000:
        raise ValueError(
            f"weights={weights!r} with include_top=True needs classes=1000 (the ImageNet head), got classes={classes}. "
            "Use include_top=False and add your own head, or weights=None."
        )
    info = get_weights_info(arch, weights)
    required = info.get("architecture", {})
    for option, value in (("padding", padding), ("normalization", normalization)):
        if value is not None and option in required and value != required[option]:
            raise ValueError(
                f"weights={weights!r} need {option}={required[option]!r} (the architecture they were trained "
                f"with), got {option}={value!r}."
            )
    return info, padding or required.get("padding"), normalization or required.get("normalization")


def _normalize_weights_arg(weights, arch):
    """None/'none' -> None; a timm name with a tag ('regnety_080.ra3_in1k') -> 'imagenet:ra3_in1k' (same model)."""
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return None
    if hasattr(weights, "__fspath__"):
        return os.fspath(weights)
    if not isinstance(weights, str):
        raise ValueError(f"weights must be None, 'imagenet', a weights tag or a file path, got {weights!r}.")
    if "." in weights and not os.path.exists(weights):
        try:
            name, tag = specs.split_model_name(weights)
        except ValueError:
            return weights
        if tag is not None:
            if arch is not None and name != arch:
                raise ValueError(f"weights={weights!r} are weights of {name}, not of {arch}.")
            return "imagenet" if tag == "pycls_in1k" else f"imagenet:{tag}"
    return weights


# ------------------------------------------------------------------------------------------------ the model class

@keras.saving.register_keras_serializable(package="keras_regnet")
class RegNetModel(keras.Model):
    """A RegNet or AnyNet: a Functional ``keras.Model`` that carries its spec, feature taps and eval config.

    Args:
        spec: RegNetParams / AnyNetParams, their dict form, or a paper model name (any spelling, e.g.
            ``"RegNetY-600MF"``, ``"RegNetY006"``, ``"regnety_006"``).
        include_top, weights, input_tensor, input_shape, pooling, classes, classifier_activation,
        include_preprocessing, name: the keras.applications arguments (see :func:`build_model`).
        padding: ``"symmetric"`` (PyTorch's stride-2 padding, default) or ``"same"`` (Keras 2's RegNet).
        normalization: built-in preprocessing: ``"imagenet"`` (mean/std, default) or ``"unit"`` ([0, 1] only).
        head_dropout: dropout rate before ``head_fc`` (with ``include_top``).
        features: a list of stage names (``"stem"``, ``"s1"``..) or layer names: the model outputs a dict of those
            feature maps instead of a head.
        arch: the paper model name whose registry weights ``weights="imagenet"`` means (set from a name ``spec``).
        pretrained_cfg: weights tag, eval ``size``/``crop_pct``/``interpolation``, ``mean``/``std`` and
            ``class_names``; defaults come from the weights' registry entry.
    """

    def __init__(
        self,
        spec,
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        include_preprocessing=True,
        name=None,
        padding=None,
        normalization=None,
        head_dropout=0.0,
        features=None,
        arch=None,
        pretrained_cfg=None,
        frozen_layers=None,
        **kwargs,
    ):
        params, named = specs.resolve(spec)
        arch = arch or named
        if arch is not None:
            arch = specs.canonical_name(arch)
        weights = _normalize_weights_arg(weights, arch)
        if features is not None:
            if include_top:
                raise ValueError("features= makes a feature extractor: pass include_top=False with it.")
            features = [features] if isinstance(features, str) else list(features)
            if not features:
                raise ValueError("features must name at least one stage or layer.")
        _check_head(pooling, classes, classifier_activation, head_dropout)
        info, padding, normalization = _registry_options(weights, arch, include_top, classes, padding, normalization)
        padding = padding or "symmetric"
        normalization = normalization or "imagenet"
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"normalization must be 'imagenet' (mean/std) or 'unit' ([0, 1] only), got {normalization!r}."
            )
        anynet = params.to_anynet() if isinstance(params, specs.RegNetParams) else params
        _check_size(anynet)
        shape = _validate_input_shape(input_shape, include_top, pretrained=info is not None)

        if input_tensor is None:
            img_input = keras.Input(shape=shape, name="image")
        elif not keras.backend.is_keras_tensor(input_tensor):
            img_input = keras.Input(tensor=input_tensor, shape=shape, name="image")
        else:
            img_input = input_tensor
        builder = Builder(padding)
        outputs = _build_graph(builder, img_input, anynet, include_top, pooling, classes, classifier_activation,
                               include_preprocessing, normalization, head_dropout, features)
        inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
        if isinstance(inputs, list) and len(inputs) == 1:
            inputs = inputs[0]
        super().__init__(inputs=inputs, outputs=outputs, name=name or _default_name(arch, params), **kwargs)

        options = {
            "include_top": bool(include_top),
            "input_shape": list(img_input.shape[1:]),
            "pooling": pooling,
            "classes": classes,
            "classifier_activation": classifier_activation,
            "include_preprocessing": bool(include_preprocessing),
            "padding": padding,
            "normalization": normalization,
            "head_dropout": float(head_dropout),
            "features": features,
            "arch": arch,
            "data_format": _data_format(),  # from_config rebuilds in this format, whatever the global setting
        }
        self._set_record(params, options, builder.roles, builder.stages, builder.stage_tensors)
        self.pretrained_cfg = _default_pretrained_cfg(self, weights, info, pretrained_cfg, named, spec)
        if frozen_layers:
            for layer_name in frozen_layers:
                self.get_layer(layer_name).trainable = False
        if weights is not None:
            from keras_regnet import weights as weights_lib

            weights_lib.load_weights(self, weights, arch=arch, include_top=include_top)

    # ------------------------------------------------------------------------------------------ record & config

    def _set_record(self, params, options, roles, stages, stage_tensors):
        # Plain attributes outside Keras's tracking: these are descriptions, not layers or variables.
        object.__setattr__(self, "_spec", params)
        object.__setattr__(self, "_build_options", dict(options))
        present = {layer.name for layer in self.layers}
        object.__setattr__(self, "_roles", {n: r for n, r in roles.items() if n in present})
        object.__setattr__(self, "_stages", {s: f for s, f in stages.items() if f.layer in present})
        object.__setattr__(self, "_stage_tensors", {s: t for s, t in stage_tensors.items() if s in self._stages})

    @property
    def spec(self):
        """The RegNetParams / AnyNetParams the model was built from."""
        return self._spec

    @property
    def anynet(self):
        """The spec as per-stage AnyNetParams (a RegNet's generated, group-compatible stages)."""
        spec = self._spec
        return spec.to_anynet() if isinstance(spec, specs.RegNetParams) else spec

    @property
    def build_options(self):
        """Everything besides the spec that shapes the architecture (a copy): padding, normalization, head ..."""
        return dict(self._build_options)

    @property
    def layer_roles(self):
        """``{layer name: LayerRole(stage, block, role, stride)}`` for every RegNet layer of the model."""
        return dict(self._roles)

    @property
    def feature_info(self):
        """``{stage: FeatureInfo(layer, channels, stride)}`` of the stages in this model ('stem', 's1', ...)."""
        return dict(self._stages)

    @property
    def pyramid_outputs(self):
        """``{"P1": stem output, "P2": s1 output, ...}``: level = log2(stride), keras-hub's backbone convention."""
        return {f"P{int(math.log2(self._stages[s].stride))}": t for s, t in self._stage_tensors.items()}

    @property
    def pretrained_cfg(self):
        """Weights, eval transform and class names: ``weights, arch, size, crop_pct, interpolation, mean, std,
        class_names`` (None: ImageNet's names for 1000 classes). Saved in ``.keras`` files."""
        return dict(self._pretrained_cfg)

    @pretrained_cfg.setter
    def pretrained_cfg(self, value):
        object.__setattr__(self, "_pretrained_cfg", _check_pretrained_cfg(dict(value), self))

    def set_pretrained_cfg(self, **values):
        """Update some entries of :attr:`pretrained_cfg` (e.g. ``class_names=[...]``, ``size=96``)."""
        cfg = self.pretrained_cfg
        cfg.update(values)
        self.pretrained_cfg = cfg
        return self

    def stage_of(self, layer_name):
        """The part of the network a layer belongs to ('preprocessing', 'stem', 's1'.., 'head'), or None."""
        role = self._roles.get(layer_name)
        return role.stage if role else None

    def get_config(self):
        config = {
            "spec": self._spec.to_dict(),
            **self._build_options,
            "pretrained_cfg": self.pretrained_cfg,
            "frozen_layers": [layer.name for layer in self.layers if layer.weights and not layer.trainable] or None,
            "name": self.name,
            "trainable": self.trainable,
        }
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        previous = _data_format()
        keras.config.set_image_data_format(config.pop("data_format", None) or previous)
        try:
            return cls(**config)
        finally:
            keras.config.set_image_data_format(previous)

    # ------------------------------------------------------------------------------------------ description

    def describe(self) -> str:
        """The spec in one line: name, family, generating parameters, input and output."""
        spec, opts = self._spec, self._build_options
        if isinstance(spec, specs.RegNetParams):
            what = (f"RegNet(d={spec.depth}, w0={spec.w0}, wa={spec.wa}, wm={spec.wm}, g={spec.group_width}"
                    f"{f', b={spec.bottleneck_ratio}' if spec.bottleneck_ratio != 1 else ''}"
                    f"{f', se={spec.se_ratio}' if spec.se_ratio else ''})")
        else:
            what = (f"AnyNet(depths={list(spec.depths)}, widths={list(spec.widths)}, "
                    f"b={list(spec.bottleneck_ratios)}, g={list(spec.group_widths)}"
                    f"{f', se={spec.se_ratio}' if spec.se_ratio else ''})")
        if opts["arch"]:
            what = f"{opts['arch']} {what}"
        if opts["features"]:
            out = f"features {opts['features']}"
        elif opts["include_top"]:
            out = f"{opts['classes']} classes ({opts['classifier_activation'] or 'logits'})"
        else:
            out = f"backbone ({opts['pooling'] or 'feature map'})"
        shape = "x".join("?" if d is None else str(d) for d in opts["input_shape"])
        extras = [] if opts["padding"] == "symmetric" else [f"padding={opts['padding']}"]
        if opts["normalization"] != "imagenet":
            extras.append(f"normalization={opts['normalization']}")
        weights = self._pretrained_cfg.get("weights")
        extras.append(f"weights={weights}" if weights else "random init")
        return f"{self.name}: {what}, input {shape} -> {out}; {', '.join(extras)}"

    def __repr__(self):
        return f"<RegNetModel {self.describe()}>"

    def summary(self, *args, **kwargs):
        print_fn = kwargs.get("print_fn") or print
        print_fn(self.describe())
        return super().summary(*args, **kwargs)

    # ------------------------------------------------------------------------------------------ weights files

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """``keras.Model.save_weights``, plus the spec and build options recorded in the file (checked at load)."""
        result = super().save_weights(filepath, overwrite=overwrite, **kwargs)
        from keras_regnet.weights.keras_files import record_architecture

        record_architecture(self, filepath)
        return result

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """``keras.Model.load_weights``, all or nothing: a file recorded from another architecture (spec, padding,
        normalization), with non-finite or non-float tensors, or that does not fit is refused and nothing changes."""
        from keras_regnet.weights.keras_files import load_keras_weights

        return load_keras_weights(self, filepath, skip_mismatch=skip_mismatch, **kwargs)

    def _keras_load_weights(self, filepath, **kwargs):
        return super().load_weights(filepath, **kwargs)

    # ------------------------------------------------------------------------------------------ derived models

    def _derive(self, outputs, options, name, extra_roles=None):
        """A RegNetModel sharing this model's layers (and weights) with other outputs; its config rebuilds it."""
        model = RegNetModel.__new__(RegNetModel)
        # The same initialiser RegNetModel.__init__ reaches through super() (Keras injects Functional as its base).
        super(RegNetModel, model).__init__(inputs=self.inputs[0] if len(self.inputs) == 1 else self.inputs,
                                           outputs=outputs, name=name)
        roles = dict(self._roles)
        roles.update(extra_roles or {})
        model._set_record(self._spec, options, roles, self._stages, self._stage_tensors)
        cfg = self.pretrained_cfg
        names = cfg.get("class_names")
        if names is not None and (not options["include_top"] or len(names) != options["classes"]):
            cfg["class_names"] = None  # another head: the old names do not describe it
        model.pretrained_cfg = cfg
        return model


def _build_graph(builder, x, anynet, include_top, pooling, classes, classifier_activation, include_preprocessing,
                 normalization, head_dropout, features):
    """Create the layers in order (preprocessing, stem, stages, head) and return the output(s)."""
    if include_preprocessing:
        if normalization == "unit":
            scale, offset = 1.0 / 255.0, 0.0
        else:
            from keras_regnet.preprocessing import normalization_constants

            channels = int(x.shape[1] if _data_format() == "channels_first" else x.shape[-1])
            scale, offset = normalization_constants(channels)
        x = builder.preprocessing(x, scale, offset)
    x = builder.stem(x, anynet.stem_width, anynet.stem)
    w_in = anynet.stem_width
    for i, (d, w, b, g) in enumerate(
        zip(anynet.depths, anynet.widths, anynet.bottleneck_ratios, anynet.group_widths)
    ):
        x = builder.stage(x, i + 1, w_in, d, w, b, g, anynet.se_ratio)
        w_in = w
    if features is not None:
        return _feature_outputs(builder, features)
    if include_top:
        return builder.head(x, classes, classifier_activation, head_dropout)
    if pooling:
        return builder.pool(x, pooling)
    return x


def _feature_outputs(builder, features):
    """``{key: tensor}`` for stage names and exact layer names."""
    outputs = {}
    for key in features:
        if key in builder.stage_tensors:
            outputs[key] = builder.stage_tensors[key]
        elif key in builder.tensors:
            outputs[key] = builder.tensors[key]
        else:
            raise ValueError(
                f"unknown stage or layer {key!r}: the model's stages are {', '.join(builder.stages)}; any layer "
                f"name (e.g. {builder.stages[list(builder.stages)[-1]].layer!r}) also works."
            )
    return outputs


def _default_name(arch, params):
    if arch is not None:
        return specs.constructor_name(arch).lower()
    return "regnet" if isinstance(params, specs.RegNetParams) else "anynet"


def _default_pretrained_cfg(model, weights, info, given, named_spec, spec):
    """pretrained_cfg defaults: the registry entry of the weights (or of a tagged name), else the input size."""
    if given is not None:
        return dict(given)
    tag_info = info
    if tag_info is None and isinstance(spec, str) and specs.split_model_name(spec)[1]:
        from keras_regnet.weights.registry import get_weights_info

        tag_info = get_weights_info(named_spec, specs.split_model_name(spec)[1])
    opts = model.build_options
    static = _static_size(opts["input_shape"], opts.get("data_format"))
    cfg = {
        "weights": weights if weights is None else str(weights),
        "arch": opts["arch"],
        "size": static or _DEFAULT_EVAL["size"],
        "crop_pct": _DEFAULT_EVAL["crop_pct"],
        "interpolation": _DEFAULT_EVAL["interpolation"],
        "class_names": None,
    }
    if tag_info is not None:
        cfg.update(size=static or tag_info["size"], crop_pct=tag_info["crop_pct"],
                   interpolation=tag_info["interpolation"], license=tag_info.get("license"))
        if info is None:
            cfg["weights_tag"] = tag_info["weights"]
    from keras_regnet.preprocessing import IMAGENET_MEAN, IMAGENET_STD

    if opts["normalization"] == "unit":
        cfg.update(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    else:
        cfg.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    return cfg


def _static_size(input_shape, data_format=None):
    dims = input_shape[1:] if (data_format or _data_format()) == "channels_first" else input_shape[:2]
    return dims[0] if dims[0] is not None and dims[0] == dims[1] else None


def _check_pretrained_cfg(cfg, model):
    names = cfg.get("class_names")
    if names is not None:
        names = [str(n) for n in names]
        opts = model.build_options
        if opts["include_top"] and len(names) != opts["classes"]:
            raise ValueError(f"class_names has {len(names)} names but the model has {opts['classes']} classes.")
        cfg["class_names"] = names
    for key in ("size",):
        if cfg.get(key) is not None and (isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1):
            raise ValueError(f"pretrained_cfg[{key!r}] must be a positive integer, got {cfg[key]!r}.")
    if cfg.get("crop_pct") is not None and not 0 < float(cfg["crop_pct"]) <= 1:
        raise ValueError(f"pretrained_cfg['crop_pct'] must be in (0, 1], got {cfg['crop_pct']!r}.")
    return cfg


# ------------------------------------------------------------------------------------------------ constructors

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
    return RegNetModel(
        params, include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation,
        include_preprocessing=include_preprocessing, name=name, padding=padding, normalization=normalization,
        arch=weights_arch, **kwargs,
    )


_COMMON_DOC = """
    Args:
        include_top: whether to include the classifier (global average pool, ``head_fc``, ``predictions``).
        weights: ``None`` (random init), ``"imagenet"`` (the paper's weights), a weights tag such as
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

NAMED_MODELS = {name: globals()[specs.constructor_name(name)] for name in specs.MODEL_NAMES}

# tf_keras.applications / kimm spellings of the same 24 models: RegNetX002 ... RegNetY320.
ALIASES = {specs.alias_names(name)[0]: name for name in specs.MODEL_NAMES}
globals().update({alias: _named_model(name, alias) for alias, name in ALIASES.items()})


def get_model(name, **kwargs):
    """Build a named model by any spelling: 'RegNetY600MF', 'RegNetY-600MF', 'RegNetY006' (tf_keras/kimm),
    'regnety_006' (timm). A timm name with a tag ('regnety_080.ra3_in1k') sets the eval config of those weights;
    ``weights="imagenet"`` (or the same tagged name as ``weights=``) then loads them."""
    paper_name, tag = specs.split_model_name(name)
    if tag is not None and kwargs.get("weights") == "imagenet":
        kwargs["weights"] = "imagenet" if tag == "pycls_in1k" else f"imagenet:{tag}"
    kwargs.setdefault("name", specs.constructor_name(paper_name).lower())
    return build_model(name if tag else paper_name, **kwargs)


def list_models(pattern="*", pretrained=False):
    """Model names matching a shell-style ``pattern`` (case-insensitive), like ``timm.list_models``.

    Names are the constructor names (``RegNetY600MF``); with ``pretrained=True`` each available weights tag is
    listed as timm spells it (``regnety_080.ra3_in1k``) and the pattern matches either spelling.
    """
    import fnmatch

    pattern = pattern.lower()
    if not pretrained:
        names = [specs.constructor_name(n) for n in specs.MODEL_NAMES]
        return [n for n in names if fnmatch.fnmatch(n.lower(), pattern)
                or fnmatch.fnmatch(specs.alias_names(n)[1], pattern)]
    from keras_regnet.weights.registry import REGISTRY

    out = []
    for paper_name in specs.MODEL_NAMES:
        timm = specs.timm_arch(paper_name)
        for entry in REGISTRY[paper_name]:
            full = f"{timm}.{entry['tag']}"
            if fnmatch.fnmatch(full, pattern) or fnmatch.fnmatch(specs.constructor_name(paper_name).lower(), pattern):
                out.append(full)
    return out


# ------------------------------------------------------------------------------------------------ saved models

def load_model(path, compile=True):
    """Load a ``.keras`` file (a RegNetModel, or any Keras model containing one) with one-line errors."""
    import zipfile

    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory; load_model takes a .keras file (model.save('model.keras')).")
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


def find_regnet(model):
    """The RegNetModel that is ``model`` or is nested inside it (a backbone in a user's model), else None."""
    if isinstance(model, RegNetModel):
        return model
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, RegNetModel):
            return layer
        if isinstance(layer, keras.Model):
            found = find_regnet(layer)
            if found is not None:
                return found
    return None


def eval_config(model, size=None, crop_pct=None, interpolation=None):
    """``(size, crop_pct, interpolation)`` of the eval transform: arguments first, then the model's
    pretrained_cfg, then the model's fixed input size, 224 / 0.875 / bicubic."""
    regnet = find_regnet(model)
    cfg = regnet.pretrained_cfg if regnet is not None else {}
    fixed = None
    try:
        shape = model.inputs[0].shape[1:]
        fixed = _static_size(list(shape), regnet.build_options.get("data_format") if regnet is not None else None)
    except (AttributeError, IndexError, TypeError):
        pass
    return (
        size or fixed or cfg.get("size") or _DEFAULT_EVAL["size"],
        crop_pct or cfg.get("crop_pct") or _DEFAULT_EVAL["crop_pct"],
        interpolation or cfg.get("interpolation") or _DEFAULT_EVAL["interpolation"],
    )


def class_names(model):
    """The model's class names: its own (pretrained_cfg), ImageNet's for a 1000-class model, else 'class_<i>'."""
    regnet = find_regnet(model)
    names = (regnet.pretrained_cfg.get("class_names") if regnet is not None else None)
    out = model.outputs[0] if not isinstance(model.output, dict) else None
    n = int(out.shape[-1]) if out is not None and len(out.shape) == 2 else None
    if names is not None and (n is None or len(names) == n):
        return list(names)
    if n == 1000:
        from keras_regnet.preprocessing import imagenet_class_index

        index = imagenet_class_index()
        return [index[i][1] for i in range(1000)]
    return [f"class_{i}" for i in range(n or 0)]
