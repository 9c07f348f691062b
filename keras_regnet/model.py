"""The model class every constructor returns: :class:`RegNetModel`.

A :class:`RegNetModel` is a Functional ``keras.Model`` that knows what it is: ``spec`` (the RegNet/AnyNet
parameters it was built from), ``build_options`` (padding, normalization, head, pooling, data format ...),
``feature_info`` and ``pyramid_outputs`` (the stage outputs, recorded while building), ``layer_roles`` (what every
layer is) and ``pretrained_cfg`` (weights, eval transform, class names). ``get_config`` returns exactly the
arguments that rebuild the same architecture, so ``.keras`` files restore all of it; weights files record the spec
they were saved from.

The class builds architectures only: loading weights and resolving registry entries happen above it, in
:mod:`keras_regnet.models` (the constructors build, then load) and :mod:`keras_regnet.pretrained`.
"""

from __future__ import annotations

import math

import keras

from keras_regnet import saving, specs
from keras_regnet.blocks import Builder, FeatureInfo, LayerRole  # noqa: F401  (FeatureInfo, LayerRole re-exported)
from keras_regnet.complexity import complexity
from keras_regnet.plan import build_plan
from keras_regnet.layers import inference_path
from keras_regnet.preprocessing import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "RegNetModel", "find_regnet", "find_regnets", "MIN_INPUT_SIZE", "MAX_PARAMS", "DEFAULT_EVAL", "base_pretrained_cfg",
    "static_size", "check_head", "check_size", "validate_input_shape", "default_name",
]

MIN_INPUT_SIZE = 32
# Models above this many parameters (16 GB of float32 weights, 100x RegNetY-32GF) are refused before building.
MAX_PARAMS = 4_000_000_000
POOLINGS = (None, "avg", "max")
NORMALIZATIONS = ("imagenet", "unit")
# The eval transform of a model without registry weights (and of ImageNet classifiers in general).
DEFAULT_EVAL = {"size": 224, "crop_pct": 0.875, "interpolation": "bicubic"}


# ------------------------------------------------------------------------------------------------ argument checks

def validate_input_shape(input_shape, include_top, pretrained, data_format=None):
    """Check an image shape in ``data_format`` (default: Keras's setting); default (224, 224, 3) with a top,
    dynamic without."""
    data_format = data_format or keras.config.image_data_format()
    channels_first = data_format == "channels_first"
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
        raise ValueError(f"input_shape must have a positive channel count, got {input_shape!r} ({data_format}).")
    if pretrained and c != 3:
        raise ValueError(f"pretrained weights expect 3 (RGB) input channels, got input_shape={input_shape!r}.")
    return input_shape

def check_size(spec):
    """Refuse absurdly large architectures before building (they would exhaust memory after minutes)."""
    n = complexity(spec, resolution=224)["params"]
    if n > MAX_PARAMS:
        raise ValueError(
            f"this architecture has {n / 1e9:.1f} billion parameters ({n * 4 / 2**30:.0f} GiB of float32 weights), "
            f"more than keras_regnet builds (keras_regnet.model.MAX_PARAMS = {MAX_PARAMS / 1e9:.0f} billion); "
            "check the widths (w0, wa, widths) of the spec."
        )

def check_head(pooling, classes, classifier_activation, head_dropout):
    """Validate the head arguments (shared by the constructors and ``replace_head``)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of None, 'avg' or 'max', got {pooling!r}.")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"classes must be a positive integer, got {classes!r}.")
    if isinstance(head_dropout, bool) or not isinstance(head_dropout, (int, float)) or not 0 <= head_dropout < 1:
        raise ValueError(f"head_dropout must be a rate in [0, 1), got {head_dropout!r}.")
    try:
        keras.activations.get(classifier_activation)
    except (ValueError, TypeError) as e:
        raise ValueError(f"unknown activation {classifier_activation!r} (classifier_activation): {e}") from None


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
        data_format=None,
        _derived=None,
        **kwargs,
    ):
        if _derived is not None:  # a model sharing another one's layers (see _derive): no new layers
            inputs, outputs, record = _derived
            super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
            self._set_record(*record)
            self.pretrained_cfg = pretrained_cfg
            return
        params, named = specs.resolve(spec)
        arch = specs.canonical_name(arch or named) if (arch or named) is not None else None
        data_format = data_format or keras.config.image_data_format()
        features, padding, normalization = _check_options(include_top, pooling, classes, classifier_activation,
                                                          head_dropout, features, padding, normalization)
        check_size(params.to_anynet() if isinstance(params, specs.RegNetParams) else params)
        shape = validate_input_shape(input_shape, include_top, pretrained=False, data_format=data_format)
        img_input = _image_input(input_tensor, shape)
        if input_tensor is not None:  # the tensor's own size must pass the same check as input_shape
            try:
                validate_input_shape(tuple(img_input.shape[1:]), include_top, pretrained=False, data_format=data_format)
            except ValueError as e:
                raise ValueError(f"input_tensor of shape {tuple(img_input.shape)}: {e}") from None
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
            "data_format": data_format,  # from_config rebuilds in this format, whatever the global setting
        }
        channels = img_input.shape[1 if data_format == "channels_first" else -1]
        plan = build_plan(params, input_channels=int(channels),
                          **{k: v for k, v in options.items() if k not in ("input_shape", "arch")})
        builder = Builder.for_plan(plan)
        out = builder.build(plan, img_input)
        outputs = _feature_outputs(builder, features) if features is not None else out
        inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
        if isinstance(inputs, list) and len(inputs) == 1:
            inputs = inputs[0]
        super().__init__(inputs=inputs, outputs=outputs, name=name or default_name(arch, params), **kwargs)
        self._set_record(params, options, builder.roles, builder.stages, builder.stage_tensors)
        object.__setattr__(self, "_plan", plan)
        self.pretrained_cfg = pretrained_cfg if pretrained_cfg is not None else base_pretrained_cfg(self)
        for layer_name in frozen_layers or ():
            self.get_layer(layer_name).trainable = False

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
    def layer_plan(self):
        """The :class:`keras_regnet.plan.LayerPlan` the model was built from (every layer with its name, stage,
        block, role, kind, channels, kernel, stride, groups, bias); None for a model derived from another one
        (a feature extractor or a new head sharing its layers: rebuild it from its config for a plan)."""
        return getattr(self, "_plan", None)

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
    def image_shape(self):
        """The input image shape without the batch axis, as keras-hub's image backbones expose it."""
        return tuple(self._build_options["input_shape"])

    @property
    def data_format(self):
        """``"channels_last"`` or ``"channels_first"``: the layout the model was built in (keras-hub's attribute)."""
        return self._build_options.get("data_format") or keras.config.image_data_format()

    @property
    def pretrained_cfg(self):
        """Weights, eval transform and class names: ``weights, arch, size, crop_pct, interpolation, mean, std,
        class_names`` (None: ImageNet's names for 1000 classes). Saved in ``.keras`` files."""
        return dict(self._pretrained_cfg)

    @pretrained_cfg.setter
    def pretrained_cfg(self, value):
        object.__setattr__(self, "_pretrained_cfg", check_pretrained_cfg(dict(value), self))

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
        # The recorded data_format goes to every layer built: Keras's global setting is left alone.
        return cls(**dict(config))

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
        saving.record_architecture(self, filepath)
        return result

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """``keras.Model.load_weights``, all or nothing: a file recorded from another architecture (spec, padding,
        normalization), with non-finite or non-float tensors, or that does not fit is refused and nothing changes."""
        return saving.load_keras_weights(self, filepath, skip_mismatch=skip_mismatch, **kwargs)

    def _keras_load_weights(self, filepath, **kwargs):
        return super().load_weights(filepath, **kwargs)

    # ------------------------------------------------------------------------------------------ inference path
    # ``model(x, training=False)``, ``predict`` and ``predict_on_batch`` ask the fast inference path first, which
    # keras_regnet.inference installs (layers.set_inference_path); it answers None wherever the Keras graph must run.

    def _refuse_empty_batch(self, x):
        """An empty batch fails deep inside the first BatchNorm (or in Keras's predict loop): say so in one line."""
        shape = getattr(x, "shape", None)
        if shape is not None and len(shape) > 0 and shape[0] == 0:
            raise ValueError(f"{self.name} got an empty batch (input shape {tuple(shape)}): pass at least one image.")

    def __call__(self, *args, **kwargs):
        path = inference_path()
        if path is not None and self.built and len(args) == 1:
            self._refuse_empty_batch(args[0])
            out = path.eager_call(self, args, kwargs)  # a top-level eager inference call, answered directly
            if out is not None:
                return out
        return super().__call__(*args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        self._refuse_empty_batch(inputs)
        path = inference_path()
        out = None if path is None or kwargs else path.call(self, inputs, training, mask)
        return super().call(inputs, training=training, mask=mask, **kwargs) if out is None else out

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        self._refuse_empty_batch(x)
        kwargs = {"batch_size": batch_size, "verbose": verbose, "steps": steps, "callbacks": callbacks}
        path = inference_path()
        if path is None:
            return super().predict(x, **kwargs)
        if steps is None and not callbacks:  # an in-memory batch: answered without Keras's predict loop
            out = path.predict_arrays(self, x, batch_size, verbose)
            if out is not None:
                return out
        with path.predicting(self):
            return super().predict(x, **kwargs)

    def predict_on_batch(self, x):
        self._refuse_empty_batch(x)
        path = inference_path()
        if path is None:
            return super().predict_on_batch(x)
        with path.predicting(self):
            return super().predict_on_batch(x)

    # ------------------------------------------------------------------------------------------ derived models

    def _derive(self, outputs, options, name, extra_roles=None):
        """A RegNetModel sharing this model's layers (and weights) with other outputs; its config rebuilds it."""
        roles = dict(self._roles)
        roles.update(extra_roles or {})
        cfg = self.pretrained_cfg
        names = cfg.get("class_names")
        if names is not None and (not options["include_top"] or len(names) != options["classes"]):
            cfg["class_names"] = None  # another head: the old names do not describe it
        inputs = self.inputs[0] if len(self.inputs) == 1 else self.inputs
        record = (self._spec, options, roles, self._stages, self._stage_tensors)
        return RegNetModel(self._spec, name=name, pretrained_cfg=cfg, _derived=(inputs, outputs, record))


def _check_options(include_top, pooling, classes, classifier_activation, head_dropout, features, padding,
                   normalization):
    """The model's options checked, with defaults: ``(features as a list or None, padding, normalization)``."""
    if features is not None:
        if include_top:
            raise ValueError("features= makes a feature extractor: pass include_top=False with it.")
        features = [features] if isinstance(features, str) else list(features)
        if not features:
            raise ValueError("features must name at least one stage or layer.")
    check_head(pooling, classes, classifier_activation, head_dropout)
    normalization = normalization or "imagenet"
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization must be 'imagenet' (mean/std) or 'unit' ([0, 1] only), got {normalization!r}."
        )
    return features, padding or "symmetric", normalization


def _image_input(input_tensor, shape):
    """The model's image input: a new ``keras.Input``, one wrapping a backend tensor, or the given Keras tensor."""
    if input_tensor is None:
        return keras.Input(shape=shape, name="image")
    if not keras.backend.is_keras_tensor(input_tensor):
        return keras.Input(tensor=input_tensor, shape=shape, name="image")
    return input_tensor


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


def default_name(arch, params):
    if arch is not None:
        return specs.constructor_name(arch).lower()
    return "regnet" if isinstance(params, specs.RegNetParams) else "anynet"


def base_pretrained_cfg(model, weights=None):
    """The pretrained_cfg of a model without registry information: its input size (or 224), 0.875, bicubic, the
    mean/std of its normalization, no class names. :mod:`keras_regnet.pretrained` adds the registry's values."""
    opts = model.build_options
    cfg = {
        "weights": weights if weights is None else str(weights),
        "arch": opts["arch"],
        "size": static_size(opts["input_shape"], opts.get("data_format")) or DEFAULT_EVAL["size"],
        "crop_pct": DEFAULT_EVAL["crop_pct"],
        "interpolation": DEFAULT_EVAL["interpolation"],
        "class_names": None,
    }
    if opts["normalization"] == "unit":
        cfg.update(mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    else:
        cfg.update(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
    return cfg


def static_size(input_shape, data_format=None):
    """The square input size of a (H, W, C) / (C, H, W) shape, or None (dynamic or not square)."""
    dims = input_shape[1:] if (data_format or keras.config.image_data_format()) == "channels_first" else input_shape[:2]
    return dims[0] if dims[0] is not None and dims[0] == dims[1] else None


def check_pretrained_cfg(cfg, model):
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


def find_regnets(model):
    """Every RegNetModel that is ``model`` or is nested in it (backbones used inside a user's model), in order."""
    if isinstance(model, RegNetModel):
        return [model]
    found = []
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.Model):
            found.extend(find_regnets(layer))
    return found


def find_regnet(model):
    """The RegNetModel that is ``model`` or is nested inside it (a backbone in a user's model), else None.

    The one way to find the RegNet in a model (features, transfer, explanations, the eval-config resolver)."""
    found = find_regnets(model)
    return found[0] if found else None
