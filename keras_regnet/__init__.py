"""keras-regnet: RegNet and AnyNet (Radosavovic et al., "Designing Network Design Spaces", CVPR 2020) for Keras 3."""

__version__ = "0.1.0"

from keras_regnet.complexity import complexity
from keras_regnet.design import adjust_block_compatibility, fit_quantized_linear, generate_regnet
from keras_regnet.specs import MODEL_NAMES, AnyNetParams, RegNetParams, get_params, params_from_dict

try:
    # Registers keras_regnet>GroupConv2D, so `.keras` files load after a plain `import keras_regnet`.
    from keras_regnet.layers import GroupConv2D
except ImportError:  # Keras is not installed: the design maths and complexity still work.
    pass

_LAZY = {
    # Heavier Keras-dependent modules are imported on first use.
    "AnyNet": "keras_regnet.models",
    "RegNet": "keras_regnet.models",
    "build_model": "keras_regnet.models",
    "get_model": "keras_regnet.models",
    "preprocess_input": "keras_regnet.preprocessing",
    "decode_predictions": "keras_regnet.preprocessing",
    "normalize_imagenet": "keras_regnet.preprocessing",
    "list_weights": "keras_regnet.weights",
    "get_weights_info": "keras_regnet.weights",
    "feature_extractor": "keras_regnet.features",
    "feature_info": "keras_regnet.features",
    "freeze_until": "keras_regnet.transfer",
    "replace_head": "keras_regnet.transfer",
    "transfer_model": "keras_regnet.transfer",
    "export_model": "keras_regnet.export",
    "fold_batchnorm": "keras_regnet.export",
    "load_dataset": "keras_regnet.datasets",
    "explain": "keras_regnet.explain",
    "plot_explanations": "keras_regnet.explain",
}
_LAZY.update({n.replace("-", "").replace(".", "_"): "keras_regnet.models" for n in MODEL_NAMES})


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_regnet' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
