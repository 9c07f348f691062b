"""keras-regnet: RegNet and AnyNet (Radosavovic et al., "Designing Network Design Spaces", CVPR 2020) for Keras 3.

``import keras_regnet`` loads neither Keras nor TensorFlow: the design maths, specs and complexity are pure Python,
and everything that needs Keras is imported on first use. The package's Keras objects (the ``RegNetModel`` class,
``GroupConv2D``, ``BatchNorm``, the training optimizer and schedules) are registered for deserialisation as soon as Keras is
imported, in either order, so ``keras.saving.load_model("model.keras")`` works after ``import keras_regnet``.
"""

__version__ = "0.3.0"

import importlib
import importlib.abc
import importlib.util
import sys
import threading

from keras_regnet.complexity import complexity
from keras_regnet.design import adjust_block_compatibility, fit_quantized_linear, generate_regnet
from keras_regnet.specs import (
    MODEL_NAMES,
    AnyNetParams,
    RegNetParams,
    alias_names,
    constructor_name,
    get_params,
    params_from_dict,
)

# Modules whose import registers Keras serialisable objects (keras.saving.register_keras_serializable), and the
# model's fast inference path (keras_regnet.inference installs it in keras_regnet.layers, which the model asks).
_REGISTERING_MODULES = (
    "keras_regnet.layers", "keras_regnet.model", "keras_regnet.training.optim", "keras_regnet.training.schedules",
    "keras_regnet.inference",
)


def _register_keras_objects():
    """Import the modules that register our Keras objects (needs Keras; TensorFlow only if Keras uses it)."""
    for name in _REGISTERING_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # our own module is missing: a broken install
                raise
            # else an optional dependency of that module is missing: it has nothing to restore then


def _spec_wrapping_exec(finder, fullname, path, target, wrap):
    """The spec the other finders give for ``fullname`` (never ``finder`` itself), its loader's ``exec_module``
    replaced by ``wrap(exec_module)``; None where no finder knows the module."""
    for other in sys.meta_path:
        if other is finder or not hasattr(other, "find_spec"):
            continue
        spec = other.find_spec(fullname, path, target)
        if spec is not None:
            break
    else:
        return None
    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
        spec.loader.exec_module = wrap(spec.loader.exec_module)
    return spec


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Registers our objects right after ``keras`` itself is imported, when that happens after ``keras_regnet``.

    TensorFlow looks ``keras`` up (``find_spec``) before importing it, so the hook stays in place until Keras is
    really executed, and finds the spec through the other finders (never through itself).
    """

    target = "keras"

    def find_spec(self, fullname, path, target=None):
        if fullname != self.target:
            return None
        hook = self

        def wrap(loader_exec):
            def exec_module(module):
                loader_exec(module)
                if hook in sys.meta_path:
                    sys.meta_path.remove(hook)
                _OWN_IMPORTS.when_done(hook.register)

            return exec_module

        return _spec_wrapping_exec(self, fullname, path, target, wrap)

    def register(self):
        _register_keras_objects()


class _OwnImports(importlib.abc.MetaPathFinder):
    """Counts how deep this thread is inside executing ``keras_regnet`` submodules, and runs deferred work when
    the outermost one has finished.

    Keras is often first imported by one of our own modules (``import keras_regnet.blocks``): registering then,
    while that module is half executed, would import the model class, which imports the half-executed module
    back (an import loop that only exists at run time). Registration therefore waits until the submodule that
    imported Keras, and every submodule around it, has finished executing, and runs before that import returns.
    """

    def __init__(self):
        self._local = threading.local()

    @property
    def depth(self):
        return getattr(self._local, "depth", 0)

    def when_done(self, work):
        """Run ``work`` now if no keras_regnet submodule is executing in this thread, else once they all are."""
        if self.depth == 0:
            work()
        else:
            self._local.pending = [*getattr(self._local, "pending", []), work]

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith("keras_regnet."):
            return None
        local = self._local

        def wrap(loader_exec):
            def exec_module(module):
                local.depth = getattr(local, "depth", 0) + 1
                try:
                    loader_exec(module)
                finally:
                    local.depth -= 1
                if local.depth == 0:
                    pending, local.pending = getattr(local, "pending", []), []
                    for work in pending:
                        work()

            return exec_module

        return _spec_wrapping_exec(self, fullname, path, target, wrap)


_OWN_IMPORTS = next((f for f in sys.meta_path if type(f).__name__ == "_OwnImports"), None) or _OwnImports()
if _OWN_IMPORTS not in sys.meta_path:
    sys.meta_path.insert(0, _OWN_IMPORTS)


class _RegisterAfterKerasHubImport(_RegisterAfterKerasImport):
    """The same for ``keras_hub``: once keras-hub is imported, register keras_regnet's keras-hub classes
    (``keras_regnet>RegNetBackbone`` ...), so that keras-hub's ``from_preset`` finds them."""

    target = "keras_hub"

    def register(self):
        _register_keras_hub()


def _register_keras_hub():
    try:
        importlib.import_module("keras_regnet.hub.keras_hub_models")
    except ImportError:  # keras-hub too old or broken: its RegNet classes are simply not available
        pass


if "keras" in sys.modules:
    _register_keras_objects()
elif not any(type(f) is _RegisterAfterKerasImport for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasImport())
if "keras_hub" in sys.modules:
    _register_keras_hub()
elif not any(type(f) is _RegisterAfterKerasHubImport for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasHubImport())

_LAZY = {
    # Keras-dependent parts are imported on first use.
    "RegNetModel": "keras_regnet.models",  # the constructors' module: it adds the preset methods to the class
    "AnyNet": "keras_regnet.models",
    "RegNet": "keras_regnet.models",
    "build_model": "keras_regnet.models",
    "get_model": "keras_regnet.loading",
    "list_models": "keras_regnet.models",
    "load_model": "keras_regnet.loading",
    "GroupConv2D": "keras_regnet.layers",
    "BatchNorm": "keras_regnet.layers",
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
    "explain": "keras_regnet.explanations",
    "plot_explanations": "keras_regnet.explanations",
    "load_preset": "keras_regnet.hub",
    "save_to_preset": "keras_regnet.hub",
    "upload_preset": "keras_regnet.hub",
}
_LAZY.update({constructor_name(n): "keras_regnet.models" for n in MODEL_NAMES})
_LAZY.update({alias_names(n)[0]: "keras_regnet.models" for n in MODEL_NAMES})  # RegNetY006 ... (tf_keras, kimm)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_regnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
