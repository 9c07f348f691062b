"""Foreign names of our layers: timm, pycls (the paper's checkpoints) and Keras 2 (``tf_keras.applications``).

Tables only, over the roles every layer of a model carries (``model.layer_roles``: stage, block, role), never over
our own layer names. Reading and loading files is :mod:`keras_regnet.weights.files`.

- ``timm``: ``stem.conv.weight``, ``s1.b1.conv1.conv.weight``, ``...conv1.bn.*``, ``...conv2.*`` (grouped 3x3),
  ``...se.fc1/fc2.*``, ``...conv3.*``, ``...downsample.conv/bn.*``, ``head.fc.*`` (RGB stem).
- ``pycls``: ``s1.b1.f.a.weight``, ``f.a_bn``, ``f.b``, ``f.b_bn``, ``f.se.f_ex.0/2``, ``f.c``, ``f.c_bn``,
  ``s1.b1.proj``, ``s1.b1.bn``; stem and head as timm; BGR stem.
- ``keras2``: tf_keras RegNet layer names (``regnety006_Stage_0_YBlock_0_conv_3x3`` ...).
"""

from __future__ import annotations

import re

__all__ = [
    "BLOCK_TIMM", "OUTER_TIMM", "PYCLS_TO_TIMM", "TIMM_TO_PYCLS", "KERAS2_BLOCK", "KERAS2_ARCHITECTURE", "BN_VARS",
    "timm_module", "var_names", "pycls_key_to_timm", "timm_key_to_pycls", "detect_format", "keras2_layer_key",
]

# Our block role -> timm module path (inside s{i}.b{j}).
BLOCK_TIMM = {
    "conv_a": "conv1.conv", "bn_a": "conv1.bn", "conv_b": "conv2.conv", "bn_b": "conv2.bn",
    "se_reduce": "se.fc1", "se_expand": "se.fc2", "conv_c": "conv3.conv", "bn_c": "conv3.bn",
    "proj_conv": "downsample.conv", "proj_bn": "downsample.bn",
}
# Stem and head roles -> timm module path.
OUTER_TIMM = {("stem", "conv"): "stem.conv", ("stem", "bn"): "stem.bn", ("head", "fc"): "head.fc"}
# pycls module path -> timm module path (inside s{i}.b{j}), and its inverse.
PYCLS_TO_TIMM = {
    "f.a": "conv1.conv", "f.a_bn": "conv1.bn", "f.b": "conv2.conv", "f.b_bn": "conv2.bn",
    "f.se.f_ex.0": "se.fc1", "f.se.f_ex.2": "se.fc2", "f.c": "conv3.conv", "f.c_bn": "conv3.bn",
    "proj": "downsample.conv", "bn": "downsample.bn",
}
TIMM_TO_PYCLS = {timm: pycls for pycls, timm in PYCLS_TO_TIMM.items()}
# tf_keras block layer suffix -> our block role.
KERAS2_BLOCK = {
    "conv_1x1_1": "conv_a", "conv_1x1_1_bn": "bn_a", "conv_3x3": "conv_b", "conv_3x3_bn": "bn_b",
    "squeeze_and_excite_squeeze": "se_reduce", "squeeze_and_excite_excite": "se_expand",
    "conv_1x1_2": "conv_c", "conv_1x1_2_bn": "bn_c", "skip_1x1": "proj_conv", "skip_bn": "proj_bn",
}
# The build options Keras 2 weights need: TF's 'same' stride-2 padding, inputs rescaled to [0, 1] only.
KERAS2_ARCHITECTURE = {"padding": "same", "normalization": "unit"}
BN_VARS = ("weight", "bias", "running_mean", "running_var")  # Keras order: gamma, beta, moving mean, moving var

_VARS = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


def timm_module(role):
    """Our LayerRole -> (timm module path, kind) where kind is 'conv', 'conv_bias', 'bn' or 'dense'."""
    if role is None:
        return None, None
    if (role.stage, role.role) in OUTER_TIMM:
        kind = {"conv": "conv", "bn": "bn", "fc": "dense"}[role.role]
        return OUTER_TIMM[(role.stage, role.role)], kind
    if role.role in BLOCK_TIMM and role.block:
        kind = "bn" if "bn" in role.role else ("conv_bias" if role.role.startswith("se_") else "conv")
        return f"{role.stage}.b{role.block}.{BLOCK_TIMM[role.role]}", kind
    return None, None


def var_names(kind):
    """The PyTorch variable names of a layer kind, in Keras's weight order."""
    return BN_VARS if kind == "bn" else (("weight", "bias") if kind in ("conv_bias", "dense") else ("weight",))


def _rename(key, table):
    m = re.match(rf"^(s\d+\.b\d+)\.(.+)\.{_VARS}$", key)
    if m and m.group(2) in table:
        return f"{m.group(1)}.{table[m.group(2)]}.{m.group(3)}"
    return key


def pycls_key_to_timm(key):
    """``s1.b1.f.a.weight`` -> ``s1.b1.conv1.conv.weight``; stem, head and unknown keys unchanged."""
    return _rename(key, PYCLS_TO_TIMM)


def timm_key_to_pycls(key):
    """``s1.b1.conv1.conv.weight`` -> ``s1.b1.f.a.weight``; stem, head and unknown keys unchanged."""
    return _rename(key, TIMM_TO_PYCLS)


def detect_format(keys):
    """'pycls' for the paper's original key names (``s1.b1.f.a.weight``), else 'timm'."""
    return "pycls" if any(".f.a." in k or k.endswith(".f.a.weight") for k in keys) else "timm"


def keras2_layer_key(name):
    """A tf_keras RegNet layer name -> our (stage, block, role), e.g. ``..._Stage_1_YBlock_0_conv_3x3`` ->
    ``('s2', 1, 'conv_b')``; None for names that are not RegNet layers."""
    if name.endswith("_stem_conv"):
        return ("stem", 0, "conv")
    if name.endswith("_stem_bn"):
        return ("stem", 0, "bn")
    if name.endswith("head_dense"):
        return ("head", 0, "fc")
    m = re.search(r"_Stage_(\d+)_[XY]Block_(\d+)_(\w+)$", name)
    if m and m.group(3) in KERAS2_BLOCK:
        return (f"s{int(m.group(1)) + 1}", int(m.group(2)) + 1, KERAS2_BLOCK[m.group(3)])
    return None
