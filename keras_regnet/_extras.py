"""Optional dependencies: import them by name, or fail with one line that names the extra to install."""

from __future__ import annotations

import importlib

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """A feature needs a package of an optional extra that is not installed."""


def require(module: str, extra: str, feature: str | None = None):
    """Import ``module`` and return it, or raise :class:`MissingExtraError` naming ``pip install 'keras-regnet[extra]'``.

    ``feature`` is what the user asked for (e.g. "keras-regnet export"), used in the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = feature or module
        raise MissingExtraError(
            f"{what} needs {module.split('.')[0]!r}, which is not installed ({e}); "
            f"install it with: pip install 'keras-regnet[{extra}]'"
        ) from None
