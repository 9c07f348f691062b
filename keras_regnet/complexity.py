"""Analytic complexity (flops, params, acts) counted exactly as pycls counts it, without building a model.

Each helper mirrors one layer factory of the Keras builder: a flop is one multiply-add, acts are the output
elements of conv and linear layers, params include BatchNorm gamma/beta but not the moving statistics.
"""

from __future__ import annotations

from keras_regnet import design, specs

__all__ = ["complexity", "anynet_complexity"]


def _conv(cx, w_in, w_out, k, stride=1, groups=1, bias=False):
    h, w = (cx["h"] - 1) // stride + 1, (cx["w"] - 1) // stride + 1
    cx["flops"] += k * k * w_in * w_out * h * w // groups + (w_out * h * w if bias else 0)
    cx["params"] += k * k * w_in * w_out // groups + (w_out if bias else 0)
    cx["acts"] += w_out * h * w
    cx["h"], cx["w"] = h, w


def _bn(cx, w_in):
    cx["params"] += 2 * w_in


def _linear(cx, w_in, w_out, bias=True):
    cx["flops"] += w_in * w_out + (w_out if bias else 0)
    cx["params"] += w_in * w_out + (w_out if bias else 0)
    cx["acts"] += w_out


def _se(cx, w_b, w_se):
    h, w = cx["h"], cx["w"]
    cx["h"] = cx["w"] = 1
    _conv(cx, w_b, w_se, 1, bias=True)
    _conv(cx, w_se, w_b, 1, bias=True)
    cx["h"], cx["w"] = h, w


def _block(cx, w_in, w_out, stride, b, g, se_ratio):
    if w_in != w_out or stride != 1:
        h, w = cx["h"], cx["w"]
        _conv(cx, w_in, w_out, 1, stride=stride)
        _bn(cx, w_out)
        cx["h"], cx["w"] = h, w
    w_b = design.bottleneck_width(w_out, b)
    w_se = int(round(w_in * se_ratio))
    _conv(cx, w_in, w_b, 1)
    _bn(cx, w_b)
    _conv(cx, w_b, w_b, 3, stride=stride, groups=w_b // g)
    _bn(cx, w_b)
    if w_se:
        _se(cx, w_b, w_se)
    _conv(cx, w_b, w_out, 1)
    _bn(cx, w_out)


def anynet_complexity(p: "specs.AnyNetParams", resolution=224, classes=1000, input_channels=3, include_top=True):
    """Complexity of an AnyNet at a square ``resolution``; returns {'flops', 'params', 'acts'}."""
    if isinstance(resolution, int):
        resolution = (resolution, resolution)
    cx = {"h": resolution[0], "w": resolution[1], "flops": 0, "params": 0, "acts": 0}
    _conv(cx, input_channels, p.stem_width, 3, stride=2 if p.stem == "imagenet" else 1)
    _bn(cx, p.stem_width)
    w_in = p.stem_width
    for d, w, b, g in zip(p.depths, p.widths, p.bottleneck_ratios, p.group_widths):
        for i in range(d):
            _block(cx, w_in, w, 2 if i == 0 else 1, b, g, p.se_ratio)
            w_in = w
    if include_top:
        _linear(cx, w_in, classes)
    return {"flops": cx["flops"], "params": cx["params"], "acts": cx["acts"]}


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
    if isinstance(p, specs.RegNetParams):
        p = p.to_anynet()
    if not isinstance(p, specs.AnyNetParams):
        raise ValueError(
            "complexity() takes a model name, a RegNetParams/AnyNetParams object or its dict form, "
            f"got {type(name_or_params).__name__}."
        )
    return anynet_complexity(p, resolution=resolution, classes=classes, include_top=include_top)
