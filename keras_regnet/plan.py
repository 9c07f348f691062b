"""The layer plan: every layer of an AnyNet/RegNet in creation order, described once, in pure Python, from the spec.

One record per layer (:class:`Layer`): its name, stage, block, role, kind, inputs, channels in/out, kernel, stride,
groups, bias and the stride of its output. Every part reads this one description: the Keras builder
(``keras_regnet.blocks``) creates one layer per record, ``keras_regnet.complexity`` sums it, the weight validator
reads its shapes, and the foreign weight names (timm, pycls, Keras 2) are tables over its roles.

Names are pycls style, 1-indexed: ``stem_conv``, ``s2_b3_conv_b``, ``s2_b3_se_reduce``, ``s2_b3_proj_bn``,
``s2_b3_add``, ``head_fc``. The names are for people; the package looks layers up by (stage, block, role).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import NamedTuple

from keras_regnet import design, specs

__all__ = [
    "INPUT",
    "KINDS",
    "PADDINGS",
    "FeatureInfo",
    "Layer",
    "LayerPlan",
    "LayerRole",
    "PlanOptions",
    "FIELDS",
    "anynet_of",
    "Block",
    "block_rows",
    "build_plan",
    "plan_parts",
    "plan_rows",
]

INPUT = "image"  # the model input, as named in Layer.inputs
PADDINGS = ("symmetric", "same")
DATA_FORMATS = ("channels_last", "channels_first")
POOLINGS = (None, "avg", "max")
NORMALIZATIONS = ("imagenet", "unit")
# Below this input width a strided 1x1 projection is planned as subsample + stride-1 conv (see _block_rows).
ONEDNN_MIN_STRIDED_1X1_CHANNELS = 16

# kind -> what the layer computes (the Keras builder maps each kind to one Keras layer class).
KINDS = {
    "rescale": "pixel rescaling of [0, 255] inputs (the built-in preprocessing)",
    "pad": "zero padding of `pad` pixels on every side",
    "conv": "2D convolution",
    "group_conv": "grouped 2D convolution (`groups` groups)",
    "bn": "batch normalization",
    "relu": "ReLU",
    "max_pool": "max pooling (1x1 with a stride: keeps every stride-th pixel)",
    "se_pool": "global average pooling keeping 1x1 spatial axes (Squeeze-and-Excitation's squeeze)",
    "multiply": "element-wise product of its inputs",
    "add": "element-wise sum of its inputs",
    "global_avg_pool": "global average pooling to a vector",
    "global_max_pool": "global max pooling to a vector",
    "dropout": "dropout with rate `rate`",
    "dense": "fully connected layer",
    "activation": "an activation function (`activation`; None: identity)",
}
WEIGHTED_KINDS = ("conv", "group_conv", "bn", "dense")


class FeatureInfo(NamedTuple):
    """Where a feature map comes from: its layer, channel count and stride (input pixels per feature pixel)."""

    layer: str
    channels: int
    stride: int


class LayerRole(NamedTuple):
    """What a layer is in the network: its part ('preprocessing', 'stem', 's1'.., 'head'), block (1-based, or 0
    outside blocks), role within the block ('conv_a', 'bn_b', 'se_reduce', 'proj_conv', 'out', ...; 'conv', 'bn',
    'fc' ... in the stem and head) and the stride of its output (input pixels per output pixel)."""

    stage: str
    block: int
    role: str
    stride: int


@dataclasses.dataclass(frozen=True, slots=True)
class Layer:
    """One planned layer: name, place (stage, block, role), kind, input layer names and its shape parameters."""

    name: str
    stage: str
    block: int
    role: str
    kind: str
    inputs: tuple
    channels_in: int
    channels_out: int
    kernel: int = 0
    stride: int = 1
    groups: int = 1
    bias: bool = False
    out_stride: int = 1
    padding: str = ""  # 'same' or 'valid' for convolutions and max pooling
    pad: int = 0
    activation: object = None
    rate: float = 0.0

    @property
    def layer_role(self) -> LayerRole:
        """The layer's (stage, block, role, output stride)."""
        return LayerRole(self.stage, self.block, self.role, self.out_stride)

    @property
    def has_weights(self) -> bool:
        """Whether the layer holds weights (convolutions, batch norms, dense)."""
        return self.kind in WEIGHTED_KINDS


FIELDS = tuple(f.name for f in dataclasses.fields(Layer))


class Block(NamedTuple):
    """A residual block as the plan derives it: stage, index (1-based), widths in/out, stride, b, g, SE ratio and
    the stride of its input."""

    stage: str
    index: int
    w_in: int
    w_out: int
    stride: int
    bottleneck_ratio: float
    group_width: int
    se_ratio: float
    in_stride: int


@dataclasses.dataclass(frozen=True)
class PlanOptions:
    """Everything besides the spec that changes the layers (the RegNetModel arguments of the same names)."""

    include_top: bool = True
    pooling: str | None = None
    classes: int = 1000
    classifier_activation: object = "softmax"
    include_preprocessing: bool = True
    normalization: str = "imagenet"
    head_dropout: float = 0.0
    padding: str = "symmetric"
    data_format: str = "channels_last"
    input_channels: int = 3
    features: tuple | None = None
    subsample_projections_below: int = ONEDNN_MIN_STRIDED_1X1_CHANNELS

    def __post_init__(self):
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}.")
        if self.data_format not in DATA_FORMATS:
            raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {self.data_format!r}.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of None, 'avg' or 'max', got {self.pooling!r}.")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be 'imagenet' (mean/std) or 'unit' ([0, 1] only), got {self.normalization!r}."
            )
        for field in ("classes", "input_channels"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}.")
        rate = self.head_dropout
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"head_dropout must be a rate in [0, 1), got {rate!r}.")
        below = self.subsample_projections_below
        if isinstance(below, bool) or not isinstance(below, numbers.Integral) or below < 0:
            raise ValueError(f"subsample_projections_below must be an integer >= 0, got {below!r}.")
        if self.features is not None:
            features = (self.features,) if isinstance(self.features, str) else tuple(self.features)
            object.__setattr__(self, "features", features)


_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(PlanOptions))


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """The whole network as planned: the spec, the options, every layer in creation order and the stage outputs."""

    spec: object
    anynet: specs.AnyNetParams
    options: PlanOptions
    layers: tuple
    stages: tuple  # ((stage name, FeatureInfo), ...) in order: 'stem', 's1', ...

    def __iter__(self):
        """The layers in creation order."""
        return iter(self.layers)

    def __len__(self):
        """The number of layers."""
        return len(self.layers)

    @functools.cached_property
    def _index(self):
        """``{name: Layer}``, built on first use."""
        return {layer.name: layer for layer in self.layers}

    def layer(self, name) -> Layer:
        """The planned layer called ``name`` (KeyError when there is none)."""
        return self._index[name]

    @property
    def names(self) -> tuple:
        """Every layer name, in creation order."""
        return tuple(layer.name for layer in self.layers)

    @property
    def output(self) -> str:
        """The name of the last layer (the model's output unless ``features`` picks others)."""
        return self.layers[-1].name

    def layer_roles(self) -> dict:
        """``{layer name: LayerRole(stage, block, role, stride)}`` in creation order."""
        return {layer.name: layer.layer_role for layer in self.layers}

    def feature_info(self) -> dict:
        """``{stage: FeatureInfo(layer, channels, stride)}`` of the stem and every stage."""
        return dict(self.stages)

    def find(self, stage, block, role) -> Layer | None:
        """The layer with this (stage, block, role), or None."""
        for layer in self.layers:
            if layer.role == role and layer.block == block and layer.stage == stage:
                return layer
        return None


# ------------------------------------------------------------------------------------------------ the rows

def _op(name, stage, block, role, kind, inputs, channels, out_stride):
    """A layer without its own shape parameters (BN, ReLU, add, pooling ...) as a row: a tuple in Layer field order."""
    return (name, stage, block, role, kind, inputs, channels, channels, 0, 1, 1, False, out_stride, "", 0, None, 0.0)


def _layer(name, stage, block, role, kind, inputs, cin, cout, kernel, stride, groups, bias, out_stride, padding,
          activation=None):
    """A layer with shape parameters as a row (rows are plain tuples: the complexity counter sums many of them)."""
    return (name, stage, block, role, kind, inputs, cin, cout, kernel, stride, groups, bias, out_stride, padding, 0,
            activation, 0.0)


def preprocessing_rows(source, channels):
    """The built-in preprocessing: one 'rescale' layer (the constants depend on the normalization)."""
    return [_op("preprocessing", "preprocessing", 0, "rescale", "rescale", (source,), channels, 1)]


def _conv3x3_rows(source, name, stage, block, role, kind, cin, cout, stride, groups, in_stride, padding):
    """3x3 conv; with 'symmetric' padding, stride 2 pads 1 pixel on every side then runs 'valid', as PyTorch does.

    TF's 'same' pads asymmetrically (only bottom/right) at stride 2, which shifts the sampling grid by one pixel
    and changes the outputs of weights trained in PyTorch.
    """
    rows, mode = [], "same"
    if stride > 1 and padding == "symmetric":
        pad_name = name.replace("conv", "pad")
        pad_role = "pad" if role == "conv" else "pad_b"
        rows.append((pad_name, stage, block, pad_role, "pad", (source,), cin, cin, 0, 1, 1, False, in_stride, "", 1,
                     None, 0.0))
        source, mode = pad_name, "valid"
    rows.append(_layer(name, stage, block, role, kind, (source,), cin, cout, 3, stride, groups, False,
                      in_stride * stride, mode))
    return rows


def stem_rows(source, channels_in, width, stem="imagenet", padding="symmetric"):
    """Stem: 3x3 conv (stride 2 for 'imagenet', stride 1 for 'cifar') -> BN -> ReLU."""
    stride = 2 if stem == "imagenet" else 1
    rows = _conv3x3_rows(source, "stem_conv", "stem", 0, "conv", "conv", channels_in, width, stride, 1, 1, padding)
    rows.append(_op("stem_bn", "stem", 0, "bn", "bn", ("stem_conv",), width, stride))
    rows.append(_op("stem_relu", "stem", 0, "relu", "relu", ("stem_bn",), width, stride))
    return rows


def block_rows(source, stage, index, w_in, w_out, stride, bottleneck_ratio, group_width, se_ratio, in_stride=1,
               padding="symmetric", subsample_projections_below=ONEDNN_MIN_STRIDED_1X1_CHANNELS):
    """Residual bottleneck (X) block, with Squeeze-and-Excitation when ``round(w_in * se_ratio)`` > 0 (Y block).

    1x1 conv-BN-ReLU, 3x3 group conv (stride here)-BN-ReLU, [SE], 1x1 conv-BN; projection shortcut
    (1x1 conv with stride + BN) when width or stride changes; add; ReLU. Bottleneck width ``round(w_out / b)``,
    ``w_b / group_width`` groups, SE width ``round(w_in * se_ratio)`` (pycls's rules).
    """
    p = f"{stage}_b{index}_"
    out_stride = in_stride * stride
    w_b = design.bottleneck_width(w_out, bottleneck_ratio)
    groups = w_b // group_width
    rows = []
    shortcut = source
    if w_in != w_out or stride != 1:
        proj_stride = stride
        if stride > 1 and w_in < subsample_projections_below:
            # TF 2.21's oneDNN kernel for the filter gradient of a strided 1x1 conv with fewer than 16 input
            # channels corrupts memory and aborts the process. Subsampling first (a 1x1 max-pool with the stride)
            # and then a stride-1 1x1 conv computes exactly the same function and trains safely.
            rows.append((p + "proj_pool", stage, index, "proj_pool", "max_pool", (source,), w_in, w_in, 1, stride, 1,
                         False, out_stride, "valid", 0, None, 0.0))
            shortcut, proj_stride = p + "proj_pool", 1
        rows.append(_layer(p + "proj_conv", stage, index, "proj_conv", "conv", (shortcut,), w_in, w_out, 1,
                          proj_stride, 1, False, out_stride, "valid"))
        rows.append(_op(p + "proj_bn", stage, index, "proj_bn", "bn", (p + "proj_conv",), w_out, out_stride))
        shortcut = p + "proj_bn"
    # conv_a runs at the input resolution; the stride is in conv_b.
    rows.append(_layer(p + "conv_a", stage, index, "conv_a", "conv", (source,), w_in, w_b, 1, 1, 1, False, in_stride,
                      "valid"))
    rows.append(_op(p + "bn_a", stage, index, "bn_a", "bn", (p + "conv_a",), w_b, in_stride))
    rows.append(_op(p + "relu_a", stage, index, "relu_a", "relu", (p + "bn_a",), w_b, in_stride))
    rows += _conv3x3_rows(p + "relu_a", p + "conv_b", stage, index, "conv_b", "group_conv", w_b, w_b, stride, groups,
                          in_stride, padding)
    rows.append(_op(p + "bn_b", stage, index, "bn_b", "bn", (p + "conv_b",), w_b, out_stride))
    rows.append(_op(p + "relu_b", stage, index, "relu_b", "relu", (p + "bn_b",), w_b, out_stride))
    y = p + "relu_b"
    w_se = int(round(w_in * se_ratio))
    if w_se:
        rows.append(_op(p + "se_pool", stage, index, "se_pool", "se_pool", (y,), w_b, out_stride))
        rows.append(_layer(p + "se_reduce", stage, index, "se_reduce", "conv", (p + "se_pool",), w_b, w_se, 1, 1, 1,
                          True, out_stride, "valid", "relu"))
        rows.append(_layer(p + "se_expand", stage, index, "se_expand", "conv", (p + "se_reduce",), w_se, w_b, 1, 1, 1,
                          True, out_stride, "valid", "sigmoid"))
        rows.append(_op(p + "se_scale", stage, index, "se_scale", "multiply", (y, p + "se_expand"), w_b, out_stride))
        y = p + "se_scale"
    rows.append(_layer(p + "conv_c", stage, index, "conv_c", "conv", (y,), w_b, w_out, 1, 1, 1, False, out_stride,
                      "valid"))
    rows.append(_op(p + "bn_c", stage, index, "bn_c", "bn", (p + "conv_c",), w_out, out_stride))
    rows.append(_op(p + "add", stage, index, "add", "add", (shortcut, p + "bn_c"), w_out, out_stride))
    rows.append(_op(p + "out", stage, index, "out", "relu", (p + "add",), w_out, out_stride))
    return rows


def stage_blocks(index, w_in, depth, width, bottleneck_ratio, group_width, se_ratio, in_stride=1):
    """Stage ``s{index}``: ``depth`` blocks of equal width; the first has stride 2 (and takes ``w_in`` channels)."""
    return [Block(f"s{index}", 1, w_in, width, 2, bottleneck_ratio, group_width, se_ratio, in_stride)] + [
        Block(f"s{index}", j, width, width, 1, bottleneck_ratio, group_width, se_ratio, in_stride * 2)
        for j in range(2, depth + 1)
    ]


def head_rows(source, channels, stride, classes, classifier_activation="softmax", dropout=0.0):
    """Classifier: global average pool -> [dropout] -> linear ``head_fc`` -> ``predictions`` (an activation)."""
    rows = [_op("head_pool", "head", 0, "pool", "global_avg_pool", (source,), channels, stride)]
    if dropout:
        rows.append(("head_dropout", "head", 0, "dropout", "dropout", ("head_pool",), channels, channels, 0, 1, 1,
                     False, stride, "", 0, None, float(dropout)))
    rows.append(_layer("head_fc", "head", 0, "fc", "dense", (rows[-1][0],), channels, classes, 0, 1, 1, True, stride,
                      ""))
    rows.append(_layer("predictions", "head", 0, "predictions", "activation", ("head_fc",), classes, classes, 0, 1, 1,
                      False, stride, "", classifier_activation))
    return rows


def pool_rows(source, channels, stride, pooling):
    """Backbone pooling without a classifier: ``"avg"`` or ``"max"`` global pooling."""
    name = f"{pooling}_pool"
    return [_op(name, "head", 0, name, f"global_{pooling}_pool", (source,), channels, stride)]


@functools.lru_cache(maxsize=1024)
def anynet_of(spec):
    """The AnyNet of a RegNet (pycls's generated, group-compatible stages); AnyNets pass through."""
    return spec.to_anynet() if isinstance(spec, specs.RegNetParams) else spec


def _resolve(spec):
    """``(params, anynet)`` of a params object, its dict form or a paper model name."""
    params = specs.resolve(spec)[0]
    return params, anynet_of(params)


def plan_parts(anynet, options):
    """``(parts, stages)``: the network in creation order, each part fed by the one before, and each stage's output.

    A part is a list of rows (preprocessing, stem, head or pooling) or a :class:`Block` (expanded by
    :func:`block_rows`). This is the single derivation of the network: :func:`plan_rows` expands it for
    :func:`build_plan`, and the complexity counter counts each distinct block once.
    """
    o = options
    parts, stages = [], []
    source = INPUT
    if o.include_preprocessing:
        parts.append(preprocessing_rows(source, o.input_channels))
        source = "preprocessing"
    parts.append(stem_rows(source, o.input_channels, anynet.stem_width, anynet.stem, o.padding))
    stride = 2 if anynet.stem == "imagenet" else 1
    stages.append(("stem", FeatureInfo("stem_relu", int(anynet.stem_width), stride)))
    w_in, source = anynet.stem_width, "stem_relu"
    for i, (d, w, b, g) in enumerate(
        zip(anynet.depths, anynet.widths, anynet.bottleneck_ratios, anynet.group_widths), start=1
    ):
        parts += stage_blocks(i, w_in, d, w, b, g, anynet.se_ratio, stride)
        stride *= 2
        source, w_in = f"s{i}_b{d}_out", w
        stages.append((f"s{i}", FeatureInfo(source, int(w), stride)))
    if o.features is None:
        if o.include_top:
            parts.append(head_rows(source, w_in, stride, o.classes, o.classifier_activation, o.head_dropout))
        elif o.pooling:
            parts.append(pool_rows(source, w_in, stride, o.pooling))
    return parts, stages


def plan_rows(anynet, options):
    """``(rows, stages)``: every layer as a tuple in :class:`Layer` field order, and each stage's FeatureInfo."""
    parts, stages = plan_parts(anynet, options)
    rows = []
    for part in parts:
        if type(part) is Block:
            rows += block_rows(rows[-1][0], *part, options.padding, options.subsample_projections_below)
        else:
            rows += part
    return rows, stages


def build_plan(spec, **options) -> LayerPlan:
    """The :class:`LayerPlan` of ``spec`` (RegNetParams / AnyNetParams, their dict form or a paper model name).

    ``options`` are :class:`PlanOptions` fields: ``include_top``, ``pooling``, ``classes``,
    ``classifier_activation``, ``include_preprocessing``, ``normalization``, ``head_dropout``, ``padding``,
    ``data_format``, ``input_channels``, ``features`` (not None: no head or pooling) and
    ``subsample_projections_below``.
    """
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise ValueError(f"unknown plan options {unknown}; allowed: {sorted(_OPTION_NAMES)}.")
    params, anynet = _resolve(spec)
    opts = PlanOptions(**options)
    rows, stages = plan_rows(anynet, opts)
    return LayerPlan(params, anynet, opts, tuple(Layer(*r) for r in rows), tuple(stages))
