"""The paper's method as a tool: design spaces with seeded samplers, proxy-training sweeps, EDF analysis, plots.

- :mod:`~keras_regnet.design_space.spaces`: AnyNetXA..XE, RegNetX, RegNetY and the complexity regime filter
  (pure Python, no Keras).
- :mod:`~keras_regnet.design_space.sweep`: the resumable proxy-training runner (TensorFlow).
- :mod:`~keras_regnet.design_space.results`: the JSONL results file (atomic appends, crash-tolerant reads).
- :mod:`~keras_regnet.design_space.analysis`: EDFs, KS statistic, bootstrap intervals, quantized-linear fits.
- :mod:`~keras_regnet.design_space.plots`: EDF, scatter and fit figures (matplotlib, Agg).
"""

from keras_regnet.design_space.results import append_result, read_results, repair_results
from keras_regnet.design_space.spaces import (
    SPACES,
    AnyNetSpace,
    AnyNetXA,
    AnyNetXB,
    AnyNetXC,
    AnyNetXD,
    AnyNetXE,
    DesignSpace,
    Regime,
    RegimeUnreachableError,
    RegNetSpace,
    RegNetX,
    RegNetY,
    get_space,
)

__all__ = [
    "SPACES", "DesignSpace", "AnyNetSpace", "RegNetSpace", "AnyNetXA", "AnyNetXB", "AnyNetXC", "AnyNetXD",
    "AnyNetXE", "RegNetX", "RegNetY", "Regime", "RegimeUnreachableError", "get_space", "read_results",
    "append_result", "repair_results",
]
