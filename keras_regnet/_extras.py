"""Optional dependencies: import them by name, or fail with one line that names the extra to install.

``EXTRA_OF_MODULE`` is the one table of which extra installs which optional top-level module; every optional import
of the package goes through :func:`require` (import now) or :func:`check` (is it installed? without importing it:
the command line's quick pre-checks), so a missing package always reads
``... install it with: pip install 'keras-regnet[EXTRA]'``.
"""

from __future__ import annotations

import importlib
import importlib.util

__all__ = ["EXTRA_OF_MODULE", "MissingExtraError", "check", "extra_of", "missing_message", "require"]

# Top-level module of an optional package -> the extra that installs it (pyproject.toml's optional-dependencies).
EXTRA_OF_MODULE = {
    "tensorflow": "tensorflow",
    "tensorflow_datasets": "train",
    "yaml": "train",
    "tensorboard": "train",
    "importlib_resources": "train",
    "tqdm": "all",
    "tf_keras_vis": "explain",
    "matplotlib": "design",
    "scipy": "design",
    "ai_edge_litert": "export",
    "tf2onnx": "export",
    "onnx": "export",
    "onnxruntime": "export",
    "PIL": "export",
    "torch": "torch",
    "keras_hub": "keras-hub",
}


class MissingExtraError(ImportError):
    """A feature needs a package of an optional extra that is not installed."""


def extra_of(module: str) -> str | None:
    """The extra that installs ``module`` (a dotted name is looked up by its top-level package), or None."""
    return EXTRA_OF_MODULE.get(module.split(".")[0])


def missing_message(module: str, extra: str | None = None, feature: str | None = None, detail: str = "") -> str:
    """The one line: '<feature> needs '<module>', which is not installed; install it with: pip install ...'."""
    top = module.split(".")[0]
    extra = extra or extra_of(top) or "all"
    what = feature or "this"
    detail = f" ({detail})" if detail else ""
    return (f"{what} needs {top!r}, which is not installed{detail}; "
            f"install it with: pip install 'keras-regnet[{extra}]'")


def _installed(top: str) -> bool:
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # a blocked or broken package counts as missing
        return False


def check(modules, feature: str | None = None, extra: str | None = None) -> None:
    """Raise :class:`MissingExtraError` for the first of ``modules`` that is not installed, without importing any.

    Cheap (a path lookup, no import): the command line calls it before TensorFlow or Keras starts.
    """
    for module in [modules] if isinstance(modules, str) else modules:
        top = module.split(".")[0]
        if not _installed(top):
            raise MissingExtraError(missing_message(top, extra, feature))


def require(module: str, extra: str | None = None, feature: str | None = None):
    """Import ``module`` and return it, or raise :class:`MissingExtraError` naming ``pip install 'keras-regnet[extra]'``.

    ``extra`` defaults to the one :data:`EXTRA_OF_MODULE` names; ``feature`` is what the user asked for (e.g.
    "keras-regnet export"), used in the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(missing_message(module, extra, feature, detail=str(e))) from None
