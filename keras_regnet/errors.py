"""The errors of weights handling (pure Python, one leaf module: every part of the package can raise them)."""

from __future__ import annotations

__all__ = [
    "WeightsDownloadError", "WeightsIntegrityError", "WeightsValidationError", "WeightsStoreError",
    "WeightsMismatchError",
]


class WeightsDownloadError(OSError):
    """Weights could not be fetched (offline, no network, 404, timeout, truncated download)."""


class WeightsIntegrityError(ValueError):
    """A weights file's sha256 differs from the value published or recorded at first download."""


class WeightsValidationError(WeightsIntegrityError):
    """A downloaded file is not what the registry entry promises (not safetensors, other tensors, NaN ...)."""


class WeightsStoreError(WeightsIntegrityError):
    """The sha256 store (``sha256.json``) is damaged: no pin can be trusted until it is repaired."""


class WeightsMismatchError(ValueError):
    """The weights do not fit the model (wrong model, missing/extra tensors, wrong shapes or values)."""
