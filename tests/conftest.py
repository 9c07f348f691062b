"""Shared test setup: quiet TensorFlow, deterministic seeds, small model configurations."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

# A tiny AnyNet configuration: 4 stages, one block each, small widths; runs at 32-64 px in milliseconds.
TINY = dict(depths=(1, 1, 1, 1), widths=(8, 16, 24, 32), bottleneck_ratios=(1, 1, 1, 1), group_widths=(8, 8, 8, 8))
TINY_SE = dict(TINY, se_ratio=0.25)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    import numpy as np

    np.random.seed(0)
    try:
        import keras

        keras.utils.set_random_seed(0)
    except ImportError:
        pass
    yield
