"""The pretrained-weights registry: which weights exist for each of the 24 models (data, apart from the architecture).

Every entry fits the paper's architecture exactly (same generating parameters, pycls width/group rounding); the
torchvision-trained ``_tv`` variants of RegNetX-400MF, RegNetY-800MF and RegNetY-8.0GF use other widths and are
left out, as are ImageNet-12k heads and SEER trunks without an ImageNet-1k classifier.

Sources (the public record, gathered offline):
- timm ``timm/models/regnet.py`` (v1.0.31): Hugging Face Hub repo of each tag, eval input size, ``crop_pct``,
  interpolation and license. All remote files are ``model.safetensors`` in timm's key names; the pycls ones have
  the stem already flipped from BGR to RGB.
- top-1 (%, ImageNet-1k val): ``pycls_in1k`` = 100 - the error of the released checkpoint in pycls
  ``dev/model_error.json`` (pycls's own eval, resize 256 / crop 224), with timm's evaluation of the same file in
  ``top1_timm``; every other tag: timm's ``results/results-imagenet.csv`` (commit 0173a13) at the entry's eval
  size and crop (e.g. regnety_080.ra3_in1k 83.926 at 288 px; issue #3 quotes 83.17, apparently at 224 px).
- ``keras2``: the official Keras 2 (``tf_keras.applications``) files and their published sha256 values
  (``tf_keras/src/applications/regnet.py``). They need ``padding="same"`` and ``normalization="unit"``
  (selected automatically by ``weights="imagenet:keras2"``). RegNetX-8.0GF has none: tf_keras builds stage 1
  with ``groups = 80 // 120 = 0``, not the paper's model.
"""

from __future__ import annotations

import copy

from keras_regnet import specs
from keras_regnet.specs import timm_arch  # noqa: F401  (re-exported: the registry's repositories are named by it)
from keras_regnet.weights.naming import KERAS2_ARCHITECTURE

__all__ = ["REGISTRY", "DEFAULT_TAG", "get_weights_info", "list_weights", "timm_arch", "split_weights_name",
           "weights_for_tag", "is_registry_weights"]

_HF = "https://huggingface.co"
_KERAS2_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/regnet/"

# Keras 2 weight hashes (include_top, notop), published in tf_keras/src/applications/regnet.py.
_KERAS2_SHA256 = {
    "x002": ("49fb46e56cde07fdaf57bffd851461a86548f6a3a4baef234dd37290b826c0b8",
             "5445b66cd50445eb7ecab094c1e78d4d3d29375439d1a7798861c4af15ffff21"),
    "x004": ("3523c7f5ac0dbbcc2fd6d83b3570e7540f7449d3301cc22c29547302114e4088",
             "de139bf07a66c9256f2277bf5c1b6dd2d5a3a891a5f8a925a10c8a0a113fd6f3"),
    "x006": ("340216ef334a7bae30daac9f414e693c136fac9ab868704bbfcc9ce6a5ec74bb",
             "a43ec97ad62f86b2a96a783bfdc63a5a54de02eef54f26379ea05e1bf90a9505"),
    "x008": ("8f145d6a5fae6da62677bb8d26eb92d0b9dfe143ec1ebf68b24a57ae50a2763d",
             "3c7e4b0917359304dc18e644475c5c1f5e88d795542b676439c4a3acd63b7207"),
    "x016": ("31c386f4c7bfef4c021a583099aa79c1b3928057ba1b7d182f174674c5ef3510",
             "1b8e3d545d190271204a7b2165936a227d26b79bb7922bac5ee4d303091bf17a"),
    "x032": ("6c025df1409e5ea846375bc9dfa240956cca87ef57384d93fef7d6fa90ca8c7f",
             "9cd4522806c0fcca01b37874188b2bd394d7c419956d77472a4e072b01d99041"),
    "x040": ("ba128046c588a26dbd3b3a011b26cb7fa3cf8f269c184c132372cb20b6eb54c1",
             "b4ed0ca0b9a98e789e05000e830403a7ade4d8afa01c73491c44610195198afe"),
    "x064": ("0f4489c3cd3ad979bd6b0324213998bcb36dc861d178f977997ebfe53c3ba564",
             "3e706fa416a18dfda14c713423eba8041ae2509db3e0a611d5f599b5268a46c4"),
    "x120": ("5cafc461b78897d5e4f24e68cb406d18e75f31105ef620e7682b611bb355eb3a",
             "36174ddd0299db04a42631d028abcb1cc7afec2b705e42bd28fcd325e5d596bf"),
    "x160": ("8093f57a5824b181fb734ea21ae34b1f7ee42c5298e63cf6d587c290973195d2",
             "9d1485050bdf19531ffa1ed7827c75850e0f2972118a996b91aa9264b088fd43"),
    "x320": ("91fb3e6f4e9e44b3687e80977f7f4412ee9937c0c704232664fc83e4322ea01e",
             "9db7eacc37b85c98184070e1a172e6104c00846f44bcd4e727da9e50d9692398"),
    "y002": ("1e8091c674532b1a61c04f6393a9c570113e0197f22bd1b98cc4c4fe800c6465",
             "f63221f63d625b8e201221499682587bfe29d33f50a4c4f4d53be00f66c0f12c"),
    "y004": ("752fdbad21c78911bf1dcb8c513e5a0e14697b068e5d9e73525dbaa416d18d8e",
             "45e6ba8309a17a77e67afc05228454b2e0ee6be0dae65edc0f31f1da10cc066b"),
    "y006": ("98942e07b273da500ff9699a1f88aca78dfad4375faabb0bab784bb0dace80a9",
             "b70261cba4e60013c99d130cc098d2fce629ff978a445663b6fa4f8fc099a2be"),
    "y008": ("1b099377cc9a4fb183159a6f9b24bc998e5659d25a449f40c90cbffcbcfdcae4",
             "b11f5432a216ee640fe9be6e32939defa8d08b8d136349bf3690715a98752ca1"),
    "y016": ("b7ce1f5e223f0941c960602de922bcf846288ce7a4c33b2a4f2e4ac4b480045b",
             "d7404f50205e82d793e219afb9eb2bfeb781b6b2d316a6128c6d7d7dacab7f57"),
    "y032": ("6a6a545cf3549973554c9b94f0cd40e25f229fffb1e7f7ac779a59dcbee612bd",
             "eb3ac1c45ec60f4f031c3f5180573422b1cf7bebc26c004637517372f68f8937"),
    "y040": ("98d00118b335162bbffe8f1329e54e5c8e75ee09b2a5414f97b0ddfc56e796f6",
             "b5be2a5e5f072ecdd9c0b8a437cd896df0efa1f6a1f77e41caa8719b7dfcb05d"),
    "y064": ("65c948c7a18aaecaad2d1bd4fd978987425604ba6669ef55a1faa0069a2804b7",
             "885c4b7ed7ea339daca7dafa1a62cb7d41b1068897ef90a5a3d71b4a2e2db31a"),
    "y080": ("7a2c62da2982e369a4984d3c7c3b32d6f8d3748a71cb37a31156c436c37f3e95",
             "3d119577e1e3bf8d153b895e8ea9e4ec150ff2d92abdca711b6e949c3fd7115d"),
    "y120": ("a96ab0d27d3ae35a422ee7df0d789069b3e3217a99334e0ce861a96595bc5986",
             "4a6fa387108380b730b71feea2ad80b5224b5ea9dc21dc156c93fe3c6186485c"),
    "y160": ("45067240ffbc7ca2591313fee2f80dbdda6d66ec1a7451446f9a6d00d8f7ac6e",
             "ead1e6b568be8f34447ec8941299a9df4368736ba9a8205de5427fa20a1fb316"),
    "y320": ("b05e173e4ae635cfa22d06392ee3741284d17dadfee68f2aa6fd8cb2b7561112",
             "cad78f74a586e24c61d38be17f3ae53bb9674380174d2585da1a526b8c20e1fd"),
}

# Better-than-paper timm-hosted tags that fit the paper's architecture exactly (timm cfg without group_min_ratio):
# tag: (eval size, crop_pct, license, origin, {timm arch: top-1 from timm's results-imagenet.csv at that size/crop})
_TIMM = "https://github.com/huggingface/pytorch-image-models"
_TV = "https://github.com/pytorch/vision"
_EXTRA_TAGS = {
    "ra_in1k": (288, 1.0, "apache-2.0", _TIMM, {"regnety_032": 82.728}),
    "ra3_in1k": (288, 1.0, "apache-2.0", _TIMM, {"regnety_040": 83.044, "regnety_064": 83.720, "regnety_080": 83.926}),
    "sw_in12k_ft_in1k": (288, 1.0, "apache-2.0", _TIMM, {"regnety_120": 85.400, "regnety_160": 85.986}),
    "lion_in12k_ft_in1k": (288, 1.0, "apache-2.0", _TIMM, {"regnety_160": 85.986}),
    "deit_in1k": (288, 1.0, "apache-2.0", "https://github.com/facebookresearch/deit", {"regnety_160": 83.690}),
    "tv2_in1k": (224, 0.965, "bsd-3-clause", _TV, {
        "regnetx_008": 77.304, "regnetx_016": 79.436, "regnetx_032": 80.926, "regnetx_080": 81.538,
        "regnetx_160": 82.566, "regnetx_320": 82.810, "regnety_004": 75.598, "regnety_016": 80.668,
        "regnety_032": 81.756, "regnety_160": 82.642, "regnety_320": 83.162,
    }),
    "swag_ft_in1k": (384, 1.0, "cc-by-nc-4.0", _TV, {"regnety_160": 86.010, "regnety_320": 86.836}),
    "swag_lc_in1k": (224, 0.965, "cc-by-nc-4.0", _TV, {"regnety_160": 83.782, "regnety_320": 84.546}),
    "seer_ft_in1k": (384, 1.0, "seer-license (non-commercial)", "https://github.com/facebookresearch/vissl",
                     {"regnety_320": 83.334}),
}
# timm's own evaluation of the pycls checkpoints (224 px, crop 0.875, bicubic), same CSV.
_PYCLS_TIMM_TOP1 = {
    "regnetx_002": 68.746, "regnetx_004": 72.398, "regnetx_006": 73.868, "regnetx_008": 75.030,
    "regnetx_016": 76.924, "regnetx_032": 78.168, "regnetx_040": 78.492, "regnetx_064": 79.066,
    "regnetx_080": 79.202, "regnetx_120": 79.588, "regnetx_160": 79.866, "regnetx_320": 80.246,
    "regnety_002": 70.278, "regnety_004": 74.028, "regnety_006": 75.270, "regnety_008": 76.302,
    "regnety_016": 77.862, "regnety_032": 78.876, "regnety_040": 79.232, "regnety_064": 79.714,
    "regnety_080": 79.868, "regnety_120": 80.386, "regnety_160": 80.298, "regnety_320": 80.808,
}
_TIMM_CSV = "timm results/results-imagenet.csv (commit 0173a13)"


# Hub commits to pin per repository ({repo: 40-hex commit}), making downloads reproducible: a pinned entry fetches
# /resolve/<commit>/ instead of /resolve/main/. Empty: the commits could not be looked up when this table was
# written (no network), so every entry follows "main" and relies on the Hub's published LFS sha256 plus the sha256
# pinned at first download (see weights.download).
_REVISIONS = {}


def _hf_entry(arch, tag, size, crop_pct, license, origin, top1, top1_source, top1_timm=None):
    repo = f"timm/{arch}.{tag}"
    revision = _REVISIONS.get(repo, "main")
    return {
        "tag": tag,
        "source": "hf",
        "repo": repo,
        "filename": "model.safetensors",
        "revision": revision,
        "url": f"{_HF}/{repo}/resolve/{revision}/model.safetensors",
        "format": "timm",
        "classes": 1000,
        "top1": top1,
        "top1_source": top1_source,
        "top1_timm": top1_timm,
        "size": size,
        "crop_pct": crop_pct,
        "interpolation": "bicubic",
        "license": license,
        "origin": origin,
        "architecture": {},
    }


DEFAULT_TAG = "pycls_in1k"  # what weights="imagenet" means: the paper's own checkpoints


def _build_registry():
    registry = {}
    for name in specs.MODEL_NAMES:
        arch = timm_arch(name)
        err = specs.PAPER_FIGURES[name][3]
        entries = [_hf_entry(
            arch, DEFAULT_TAG, 224, 0.875, "mit", "https://github.com/facebookresearch/pycls",
            round(100.0 - err, 3), "pycls dev/model_error.json", _PYCLS_TIMM_TOP1.get(arch),
        )]
        for tag, (size, crop, lic, origin, top1s) in _EXTRA_TAGS.items():
            if arch in top1s:
                top1 = top1s[arch]
                entries.append(_hf_entry(arch, tag, size, crop, lic, origin, top1, _TIMM_CSV, top1))
        key = arch.replace("regnet", "").replace("_", "")
        if key in _KERAS2_SHA256:
            file = f"regnet{key}"
            entries.append({
                "tag": "keras2",
                "source": "url",
                "url": f"{_KERAS2_BASE}{file}.h5",
                "url_notop": f"{_KERAS2_BASE}{file}_notop.h5",
                "sha256": _KERAS2_SHA256[key][0],
                "sha256_notop": _KERAS2_SHA256[key][1],
                "format": "keras2",
                "classes": 1000,
                "top1": None,
                "top1_source": None,
                "top1_timm": None,
                "size": 224,
                "crop_pct": 0.875,
                "interpolation": "bicubic",
                "license": "apache-2.0",
                "origin": "https://github.com/keras-team/tf-keras",
                "architecture": dict(KERAS2_ARCHITECTURE),
            })
        registry[name] = entries
    return registry


REGISTRY = _build_registry()


def is_registry_weights(weights) -> bool:
    """Whether ``weights`` names registry weights ('imagenet' or 'imagenet:<tag>') rather than a file."""
    return isinstance(weights, str) and (weights == "imagenet" or weights.startswith("imagenet:"))


def weights_for_tag(tag):
    """The ``weights=`` string of a registry tag: the default (paper) tag is ``'imagenet'``, others
    ``'imagenet:<tag>'`` (a timm name's tag, e.g. ``regnety_080.ra3_in1k`` -> ``'imagenet:ra3_in1k'``)."""
    return "imagenet" if tag in (None, DEFAULT_TAG) else f"imagenet:{tag}"


def split_weights_name(weights: str) -> str:
    """'imagenet' -> 'pycls_in1k' (the default tag); 'imagenet:ra3_in1k' or 'ra3_in1k' -> 'ra3_in1k'."""
    if weights == "imagenet":
        return None
    return weights.split(":", 1)[1] if weights.startswith("imagenet:") else weights


def get_weights_info(model_name: str, tag: str = "imagenet") -> dict:
    """The registry entry of ``model_name``'s weights ``tag`` ('imagenet', 'imagenet:<tag>' or '<tag>').

    Returns a copy with: ``model``, ``tag``, ``weights`` (the string to pass as ``weights=``), ``url``, ``format``,
    ``revision`` (Hub entries: a pinned commit, or "main"), ``classes`` (of the file's classifier),
    ``top1`` (+ ``top1_source``), the eval config ``size``, ``crop_pct``, ``interpolation``, ``license``,
    ``origin`` and ``architecture`` (builder options the weights need, e.g. Keras 2's padding).
    """
    name = specs.canonical_name(model_name)
    entries = REGISTRY[name]
    wanted = split_weights_name(tag)
    for i, entry in enumerate(entries):
        if wanted is None and i == 0 or entry["tag"] == wanted:
            info = copy.deepcopy(entry)
            info["model"] = name
            info["default"] = i == 0
            info["weights"] = weights_for_tag(entry["tag"]) if i else "imagenet"
            return info
    raise ValueError(
        f"no weights {tag!r} for {name}. Available: "
        + ", ".join(["'imagenet'"] + [f"'imagenet:{e['tag']}'" for e in entries])
        + " (see keras_regnet.list_weights)."
    )


def list_weights(model_name: str) -> list:
    """Every weights entry of ``model_name`` (see :func:`get_weights_info`), the default (paper) weights first."""
    name = specs.canonical_name(model_name)
    return [get_weights_info(name, "imagenet:" + e["tag"]) for e in REGISTRY[name]]
