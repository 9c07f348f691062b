"""Analytic complexity (flops, params, acts) counted exactly as pycls counts it, by summing the layer plan.

Nothing here knows the architecture: every layer comes from :mod:`keras_regnet.plan`, and each kind of layer has
its count. A flop is one multiply-add; acts are the output elements of conv and linear layers; params include
BatchNorm gamma/beta but not the moving statistics. No Keras, no model is built.
"""

from __future__ import annotations

import functools

from keras_regnet import plan as plan_lib
from keras_regnet import specs

__all__ = ["complexity", "anynet_complexity", "plan_complexity"]

_CONVS = frozenset(("conv", "group_conv"))
_TO_POINT = frozenset(("se_pool", "global_avg_pool", "global_max_pool"))
# Kinds that neither count nor change the spatial size.
_SAME_SIZE = frozenset(("rescale", "relu", "add", "multiply", "dropout", "activation"))


def _count(rows, size):
    """``(flops, params, acts, output size)`` of a chain of layer rows (tuples in Layer field order) whose first
    row's input has spatial ``size`` (h, w)."""
    sizes = {rows[0][5][0]: size}
    flops = params = acts = 0
    for row in rows:
        kind, size = row[4], sizes[row[5][0]]
        if kind in _SAME_SIZE:
            sizes[row[0]] = size
            continue
        cin, cout = row[6], row[7]
        if kind == "bn":
            params += 2 * cout
        elif kind in _CONVS:
            k, stride, groups, bias = row[8], row[9], row[10], row[11]
            if row[13] == "valid":
                h, w = (size[0] - k) // stride + 1, (size[1] - k) // stride + 1
            else:  # 'same'
                h, w = (size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1
            size = (h, w)
            hw = h * w
            flops += k * k * cin * cout * hw // groups + (cout * hw if bias else 0)
            params += k * k * cin * cout // groups + (cout if bias else 0)
            acts += cout * hw
        elif kind == "pad":
            size = (size[0] + 2 * row[14], size[1] + 2 * row[14])
        elif kind == "max_pool":
            k, stride = row[8], row[9]
            size = ((size[0] - k) // stride + 1, (size[1] - k) // stride + 1)
        elif kind in _TO_POINT:
            size = (1, 1)
        elif kind == "dense":
            flops += cin * cout + (cout if row[11] else 0)
            params += cin * cout + (cout if row[11] else 0)
            acts += cout
        sizes[row[0]] = size
    return flops, params, acts, sizes[rows[-1][0]]


@functools.lru_cache(maxsize=8192)
def _block_count(w_in, w_out, stride, bottleneck_ratio, group_width, se_ratio, padding, subsample_below, size):
    """:func:`_count` of one planned block (names and strides do not change its count; equal blocks repeat)."""
    rows = plan_lib.block_rows(plan_lib.INPUT, "s", 1, w_in, w_out, stride, bottleneck_ratio, group_width, se_ratio,
                               1, padding, subsample_below)
    return _count(rows, size)


def _size(resolution):
    """(h, w) of a square ``resolution`` or an (h, w) pair."""
    if isinstance(resolution, int):
        return (resolution, resolution)
    return (int(resolution[0]), int(resolution[1]))


def plan_complexity(plan, resolution=224):
    """Complexity ``{'flops', 'params', 'acts'}`` of a built :class:`keras_regnet.plan.LayerPlan`, layer by layer."""
    fields = plan_lib.FIELDS
    rows = [tuple(getattr(layer, f) for f in fields) for layer in plan.layers]
    flops, params, acts, _ = _count(rows, _size(resolution))
    return {"flops": flops, "params": params, "acts": acts}


def anynet_complexity(p: "specs.AnyNetParams", resolution=224, classes=1000, input_channels=3, include_top=True):
    """Complexity of an AnyNet at a square ``resolution``; returns {'flops', 'params', 'acts'}.

    Sums the plan's parts: the stem and head rows, and each block through a cache (the later blocks of a stage
    are equal, and samplers meet the same blocks again and again).
    """
    options = plan_lib.PlanOptions(include_top=include_top, classes=classes, include_preprocessing=False,
                                   input_channels=input_channels)
    parts, _ = plan_lib.plan_parts(p, options)
    size = _size(resolution)
    flops = params = acts = 0
    for part in parts:
        if type(part) is plan_lib.Block:
            _, _, w_in, w_out, stride, b, g, se, _ = part
            f, n, a, size = _block_count(w_in, w_out, stride, b, g, se, options.padding,
                                         options.subsample_projections_below, size)
        else:
            f, n, a, size = _count(part, size)
        flops, params, acts = flops + f, params + n, acts + a
    return {"flops": flops, "params": params, "acts": acts}


def complexity(name_or_params, resolution=224, classes=1000, include_top=True):
    """Flops (multiply-adds), params and acts of a model, computed analytically.

    ``name_or_params``: a model name ('RegNetY-600MF' or 'RegNetY600MF'), a RegNetParams/AnyNetParams object,
    or their dict form (``params.to_dict()``).
    """
    p = name_or_params
    if isinstance(p, str):
        p = specs.get_params(p)
    elif isinstance(p, dict):
        p = specs.params_from_dict(p)
    if not isinstance(p, (specs.RegNetParams, specs.AnyNetParams)):
        raise ValueError(
            "complexity() takes a model name, a RegNetParams/AnyNetParams object or its dict form, "
            f"got {type(name_or_params).__name__}."
        )
    return anynet_complexity(plan_lib.anynet_of(p), resolution=resolution, classes=classes, include_top=include_top)
