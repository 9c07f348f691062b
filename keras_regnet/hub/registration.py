"""Registers the keras-hub classes (:mod:`keras_regnet.hub.keras_hub_models`) once keras-hub is imported.

Imported by ``keras_regnet`` when Keras is imported. keras-hub itself is never imported from here: if it is already
loaded the classes are registered now, else a hook registers them right after keras-hub's own import finishes
(keras-hub imports Keras first, so registering during that import would be circular).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_TARGET = "keras_hub"


def _register():
    try:
        importlib.import_module("keras_regnet.hub.keras_hub_models")
    except ImportError:  # a keras-hub too old or broken: the classes are simply not available
        pass


class _AfterKerasHub(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader_exec = spec.loader.exec_module
        hook = self

        def exec_module(module):
            loader_exec(module)
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)
            _register()

        spec.loader.exec_module = exec_module
        return spec


def install():
    module = sys.modules.get(_TARGET)
    if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False):
        _register()
    elif module is None and not any(isinstance(f, _AfterKerasHub) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasHub())


install()
