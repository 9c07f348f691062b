"""The paper's 24 named models as their six generating numbers, plus the paper's published figures.

Stored as (depth, w0, wa, wm, group width, SE); everything else (stage widths, depths, complexity) is computed.
Source: pycls ``configs/dds_baselines`` (generating parameters), ``dev/model_complexity.json`` (flops/params/acts at
224 px) and ``dev/model_error.json`` (ImageNet top-1 error of the released checkpoints).
"""

from __future__ import annotations

import dataclasses
import numbers
import re

from keras_regnet import design

__all__ = [
    "RegNetParams",
    "AnyNetParams",
    "MODEL_PARAMS",
    "PAPER_FIGURES",
    "MODEL_NAMES",
    "canonical_name",
    "get_params",
    "params_from_dict",
    "resolve",
    "split_model_name",
    "alias_names",
    "timm_arch",
]


@dataclasses.dataclass(frozen=True)
class RegNetParams:
    """A RegNet: six generating parameters (d, w0, wa, wm, g, b) and the SE ratio (0 for RegNetX)."""

    depth: int
    w0: int
    wa: float
    wm: float
    group_width: int
    bottleneck_ratio: float = 1.0
    se_ratio: float = 0.0
    stem_width: int = 32
    stem: str = "imagenet"

    def __post_init__(self):
        design.validate_regnet_params(self.w0, self.wa, self.wm, self.depth)
        if isinstance(self.group_width, bool) or not isinstance(self.group_width, numbers.Integral) or self.group_width < 1:
            raise ValueError(f"group_width must be a positive integer, got {self.group_width!r}.")
        _check_common(self.bottleneck_ratio, self.se_ratio, self.stem_width, self.stem)

    def to_anynet(self) -> "AnyNetParams":
        """The equivalent AnyNet: generated stages made group-compatible exactly as pycls does."""
        widths, depths = design.generate_regnet(self.w0, self.wa, self.wm, self.depth)
        n = len(widths)
        widths, bs, gs = design.adjust_block_compatibility(
            widths, [self.bottleneck_ratio] * n, [self.group_width] * n
        )
        return AnyNetParams(
            depths=tuple(depths),
            widths=tuple(widths),
            bottleneck_ratios=tuple(bs),
            group_widths=tuple(gs),
            se_ratio=self.se_ratio,
            stem_width=self.stem_width,
            stem=self.stem,
        )

    def to_dict(self) -> dict:
        """A JSON-serialisable description that :func:`params_from_dict` and the builders accept."""
        return {"type": "regnet", **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class AnyNetParams:
    """An AnyNet: per-stage depth, width, bottleneck ratio b (bottleneck width w/b) and group width."""

    depths: tuple
    widths: tuple
    bottleneck_ratios: tuple
    group_widths: tuple
    se_ratio: float = 0.0
    stem_width: int = 32
    stem: str = "imagenet"

    def __post_init__(self):
        for field in ("depths", "widths", "bottleneck_ratios", "group_widths"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        n = len(self.depths)
        if n < 1:
            raise ValueError("an AnyNet needs at least one stage; depths is empty.")
        if not n == len(self.widths) == len(self.bottleneck_ratios) == len(self.group_widths):
            raise ValueError(
                "depths, widths, bottleneck_ratios and group_widths need one entry per stage; got lengths "
                f"{n}, {len(self.widths)}, {len(self.bottleneck_ratios)}, {len(self.group_widths)}."
            )
        for field in ("depths", "widths", "group_widths"):
            for v in getattr(self, field):
                if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                    raise ValueError(f"every entry of {field} must be a positive integer, got {getattr(self, field)!r}.")
        for b, w, g in zip(self.bottleneck_ratios, self.widths, self.group_widths):
            if isinstance(b, bool) or not isinstance(b, numbers.Real) or not b > 0:
                raise ValueError(f"bottleneck ratios must be positive numbers, got {self.bottleneck_ratios!r}.")
            wb = design.bottleneck_width(w, b)
            if wb < 1 or wb % g:
                raise ValueError(
                    f"stage width {w} with bottleneck ratio {b} gives bottleneck width {wb}, which is not a multiple "
                    f"of group width {g}; use keras_regnet.adjust_block_compatibility to make them compatible."
                )
        _check_common(self.bottleneck_ratios[0], self.se_ratio, self.stem_width, self.stem)

    def to_dict(self) -> dict:
        """A JSON-serialisable description that :func:`params_from_dict` and the builders accept."""
        d = dataclasses.asdict(self)
        return {"type": "anynet", **{k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}}


def _check_common(bottleneck_ratio, se_ratio, stem_width, stem):
    """Validate the arguments shared by RegNet and AnyNet parameters."""
    if isinstance(bottleneck_ratio, bool) or not isinstance(bottleneck_ratio, numbers.Real) or not bottleneck_ratio > 0:
        raise ValueError(f"bottleneck_ratio must be a positive number, got {bottleneck_ratio!r}.")
    if isinstance(se_ratio, bool) or not isinstance(se_ratio, numbers.Real) or not 0 <= se_ratio < 1:
        raise ValueError(f"se_ratio must be in [0, 1), got {se_ratio!r} (0 disables Squeeze-and-Excitation).")
    if isinstance(stem_width, bool) or not isinstance(stem_width, numbers.Integral) or stem_width < 1:
        raise ValueError(f"stem_width must be a positive integer, got {stem_width!r}.")
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"stem must be 'imagenet' (3x3 stride 2) or 'cifar' (3x3 stride 1), got {stem!r}.")


def params_from_dict(spec: dict):
    """Rebuild RegNetParams/AnyNetParams from :meth:`to_dict` output (e.g. a sweep's JSON line)."""
    if not isinstance(spec, dict):
        raise ValueError(f"a model spec must be a dict, got {type(spec).__name__}.")
    spec = dict(spec)
    kind = spec.pop("type", "regnet" if "w0" in spec else "anynet")
    cls = {"regnet": RegNetParams, "anynet": AnyNetParams}.get(kind)
    if cls is None:
        raise ValueError(f"unknown spec type {kind!r}; expected 'regnet' or 'anynet'.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(spec) - names)
    if unknown:
        raise ValueError(f"unknown {kind} spec keys {unknown}; allowed: {sorted(names)}.")
    return cls(**spec)


# name: (depth, w0, wa, wm, group_width, se)
_TABLE = {
    "RegNetX-200MF": (13, 24, 36.44, 2.49, 8, False),
    "RegNetX-400MF": (22, 24, 24.48, 2.54, 16, False),
    "RegNetX-600MF": (16, 48, 36.97, 2.24, 24, False),
    "RegNetX-800MF": (16, 56, 35.73, 2.28, 16, False),
    "RegNetX-1.6GF": (18, 80, 34.01, 2.25, 24, False),
    "RegNetX-3.2GF": (25, 88, 26.31, 2.25, 48, False),
    "RegNetX-4.0GF": (23, 96, 38.65, 2.43, 40, False),
    "RegNetX-6.4GF": (17, 184, 60.83, 2.07, 56, False),
    "RegNetX-8.0GF": (23, 80, 49.56, 2.88, 120, False),
    "RegNetX-12GF": (19, 168, 73.36, 2.37, 112, False),
    "RegNetX-16GF": (22, 216, 55.59, 2.1, 128, False),
    "RegNetX-32GF": (23, 320, 69.86, 2.0, 168, False),
    "RegNetY-200MF": (13, 24, 36.44, 2.49, 8, True),
    "RegNetY-400MF": (16, 48, 27.89, 2.09, 8, True),
    "RegNetY-600MF": (15, 48, 32.54, 2.32, 16, True),
    "RegNetY-800MF": (14, 56, 38.84, 2.4, 16, True),
    "RegNetY-1.6GF": (27, 48, 20.71, 2.65, 24, True),
    "RegNetY-3.2GF": (21, 80, 42.63, 2.66, 24, True),
    "RegNetY-4.0GF": (22, 96, 31.41, 2.24, 64, True),
    "RegNetY-6.4GF": (25, 112, 33.22, 2.27, 72, True),
    "RegNetY-8.0GF": (17, 192, 76.82, 2.19, 56, True),
    "RegNetY-12GF": (19, 168, 73.36, 2.37, 112, True),
    "RegNetY-16GF": (18, 200, 106.23, 2.48, 112, True),
    "RegNetY-32GF": (20, 232, 115.89, 2.53, 232, True),
}

MODEL_PARAMS = {
    name: RegNetParams(depth=d, w0=w0, wa=wa, wm=wm, group_width=g, se_ratio=0.25 if se else 0.0)
    for name, (d, w0, wa, wm, g, se) in _TABLE.items()
}
MODEL_NAMES = tuple(MODEL_PARAMS)

# name: (flops, params, acts, top-1 error %) as published with the paper's checkpoints (224 px).
PAPER_FIGURES = {
    "RegNetX-200MF": (199040872, 2684792, 2164056, 31.088),
    "RegNetX-400MF": (397678568, 5157512, 3143272, 27.382),
    "RegNetX-600MF": (600891112, 6196040, 3975096, 25.864),
    "RegNetX-800MF": (799700712, 7259656, 5148744, 24.846),
    "RegNetX-1.6GF": (1602850792, 9190136, 7933512, 23.038),
    "RegNetX-3.2GF": (3176622952, 15296552, 11367432, 21.736),
    "RegNetX-4.0GF": (3964499816, 22118248, 12201608, 21.356),
    "RegNetX-6.4GF": (6460292264, 26209256, 16369744, 20.844),
    "RegNetX-8.0GF": (7995133416, 39572648, 14059688, 20.728),
    "RegNetX-12GF": (12086679016, 46106056, 21366568, 20.288),
    "RegNetX-16GF": (15940756456, 54278536, 25515496, 19.956),
    "RegNetX-32GF": (31735930792, 107811560, 36302160, 19.498),
    "RegNetY-200MF": (199519076, 3162996, 2168052, 29.658),
    "RegNetY-400MF": (401849056, 4344144, 3892496, 25.898),
    "RegNetY-600MF": (601227608, 6055160, 4334296, 24.54),
    "RegNetY-800MF": (797183328, 6263168, 5249888, 23.684),
    "RegNetY-1.6GF": (1612087326, 11202430, 8044814, 22.066),
    "RegNetY-3.2GF": (3176496162, 19436338, 11263418, 21.074),
    "RegNetY-4.0GF": (3973301344, 20646656, 12287200, 20.64),
    "RegNetY-6.4GF": (6355221876, 30583252, 16407188, 20.11),
    "RegNetY-8.0GF": (7963074196, 39180068, 17968916, 20.052),
    "RegNetY-12GF": (12092395504, 51822544, 21384496, 19.67),
    "RegNetY-16GF": (15911534044, 83590140, 23041228, 19.608),
    "RegNetY-32GF": (32279583362, 145046770, 30261570, 19.066),
}


def constructor_name(name: str) -> str:
    """'RegNetY-1.6GF' -> 'RegNetY1_6GF' (the Python constructor's name)."""
    return canonical_name(name).replace("-", "").replace(".", "_")


# The size codes of tf_keras / kimm (RegNetY006) and timm (regnety_006).
SIZE_CODES = {
    "200MF": "002", "400MF": "004", "600MF": "006", "800MF": "008", "1.6GF": "016", "3.2GF": "032",
    "4.0GF": "040", "6.4GF": "064", "8.0GF": "080", "12GF": "120", "16GF": "160", "32GF": "320",
}


def alias_names(name: str) -> tuple:
    """The peers' spellings of a paper model: ('RegNetY006', 'regnety_006') for 'RegNetY-600MF' (tf_keras/kimm, timm)."""
    family, size = canonical_name(name).split("-")
    return f"{family}{SIZE_CODES[size]}", f"{family.lower()}_{SIZE_CODES[size]}"


def timm_arch(name: str) -> str:
    """'RegNetY-600MF' -> 'regnety_006' (timm's architecture name)."""
    return alias_names(name)[1]


def _key(name):
    """Spelling-insensitive key; a decimal mark ('.' or '_' between digits) is kept so 1.6GF != 16GF."""
    name = re.sub(r"(?<=\d)[._](?=\d)", "p", name.lower())
    return re.sub(r"[^a-z0-9]", "", name)


# Paper spellings, plus the size codes of tf_keras/kimm and timm ('RegNetY006', 'regnety_006' share one key).
_LOOKUP = {_key(_n): _n for _n in MODEL_NAMES}
_LOOKUP.update({_key(f"{_n.split('-')[0]}{SIZE_CODES[_n.split('-')[1]]}"): _n for _n in MODEL_NAMES})


def split_model_name(name: str):
    """'regnety_080.ra3_in1k' -> ('RegNetY-8.0GF', 'ra3_in1k'); 'RegNetY600MF' -> ('RegNetY-600MF', None).

    Accepts the paper's spelling, constructor names, tf_keras/kimm names (``RegNetY006``) and timm names
    (``regnety_006``), optionally followed by a timm pretrained tag after a dot.
    """
    if not isinstance(name, str):
        raise ValueError(f"a model name must be a string, got {name!r}.")
    base, tag = name, None
    if "." in name:
        head, _, rest = name.partition(".")
        if _key(head) in _LOOKUP and rest and not rest[0].isdigit():
            base, tag = head, rest
    return canonical_name(base), tag


def canonical_name(name: str) -> str:
    """Map 'RegNetY600MF', 'regnety_600mf', 'RegNetY006', 'regnety_006', 'RegNetY-600MF' ... to 'RegNetY-600MF'."""
    if not isinstance(name, str):
        raise ValueError(f"a model name must be a string, got {name!r}.")
    found = _LOOKUP.get(_key(name))
    if found is None:
        raise ValueError(
            f"unknown model name {name!r}. Known models: {', '.join(MODEL_NAMES)} "
            "(constructor spellings such as 'RegNetY600MF' or 'RegNetX1_6GF', tf_keras/kimm names such as "
            "'RegNetY006' and timm names such as 'regnety_006' work too)."
        )
    return found


def get_params(name: str) -> RegNetParams:
    """Generating parameters of a named model."""
    return MODEL_PARAMS[canonical_name(name)]


def resolve(model):
    """``(params, paper_name)`` for a paper model name (any spelling), a spec dict, RegNetParams or AnyNetParams.

    ``paper_name`` is the canonical paper name when ``model`` names one of the 24 models, else None.
    """
    if isinstance(model, str):
        name, _ = split_model_name(model)
        return MODEL_PARAMS[name], name
    if isinstance(model, dict):
        return params_from_dict(model), None
    if isinstance(model, (RegNetParams, AnyNetParams)):
        return model, None
    raise ValueError(
        "a model must be given as a paper model name (e.g. 'RegNetY-600MF'), a RegNet/AnyNet spec dict, "
        f"RegNetParams or AnyNetParams; got {type(model).__name__}."
    )
