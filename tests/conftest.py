"""Shared test setup: quiet TensorFlow, deterministic seeds, small model configurations, no state leaking between
tests (each test passes alone and in any order).

Tiers (pytest.ini): ``pytest -q`` runs the fast tier (every module; long round trips deselected); ``pytest -q -m
slow`` runs the slow tier (tests marked ``@pytest.mark.slow``); ``pytest -q -m ""`` runs both.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

try:  # some huggingface_hub versions (1.2 among them) read HF_HUB_OFFLINE once, at import: import it before a test sets it
    import huggingface_hub.constants  # noqa: E402,F401  (or every later test in that process is offline)
except ImportError:
    pass

# Code for a fresh interpreter (prefix it with ``BLOCKED = {...}``): a meta-path finder that makes the listed top-level
# packages look uninstalled, as on an install without an extra (or a JAX-only one).
BLOCKER = """
import importlib.abc, sys
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""

# A tiny AnyNet configuration: 4 stages, one block each, small widths; runs at 32-64 px in milliseconds.
TINY = dict(depths=(1, 1, 1, 1), widths=(8, 16, 24, 32), bottleneck_ratios=(1, 1, 1, 1), group_widths=(8, 8, 8, 8))
TINY_SE = dict(TINY, se_ratio=0.25)


def _keras_globals(keras):
    return (keras.config.image_data_format(), keras.config.floatx(),
            keras.mixed_precision.global_policy().name)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state and Keras's default global settings; a test that changes the
    data format, floatx or the mixed-precision policy without restoring them gets them restored (no order effects)."""
    import numpy as np

    np.random.seed(0)
    try:
        import keras

        keras.utils.set_random_seed(0)
    except ImportError:
        keras = None
    before = _keras_globals(keras) if keras is not None else None
    yield
    if keras is not None and _keras_globals(keras) != before:
        data_format, floatx, policy = before
        keras.config.set_image_data_format(data_format)
        keras.config.set_floatx(floatx)
        keras.mixed_precision.set_global_policy(policy)
