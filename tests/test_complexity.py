"""Analytic complexity equals the paper's table exactly, and the built models' trainable weights."""

import numpy as np
import pytest

import keras_regnet
from keras_regnet import specs
from paper_table import PAPER


@pytest.mark.parametrize("name", sorted(PAPER))
def test_complexity_matches_paper_exactly(name):
    flops, params, acts = PAPER[name][10:]
    assert keras_regnet.complexity(name) == {"flops": flops, "params": params, "acts": acts}
    # The constructor spelling and the params object give the same answer.
    assert keras_regnet.complexity(specs.constructor_name(name)) == keras_regnet.complexity(specs.get_params(name))


def test_complexity_accepts_dict_and_anynet_and_scales_with_resolution():
    p = specs.get_params("RegNetX-200MF")
    assert keras_regnet.complexity(p.to_dict()) == keras_regnet.complexity(p.to_anynet())
    small = keras_regnet.complexity(p, resolution=112)
    assert small["params"] == PAPER["RegNetX-200MF"][11]
    assert small["flops"] < PAPER["RegNetX-200MF"][10] / 3
    with pytest.raises(ValueError, match="complexity"):
        keras_regnet.complexity(42)


def test_activations_grow_like_sqrt_flops():
    # The paper's observation: acts ~ sqrt(flops) for RegNet (fit exponent near 0.5, not 1).
    f = np.log([PAPER[n][10] for n in PAPER])
    a = np.log([keras_regnet.complexity(n)["acts"] for n in PAPER])
    slope = np.polyfit(f, a, 1)[0]
    assert 0.4 < slope < 0.65


@pytest.mark.parametrize("name", ["RegNetX-200MF", "RegNetY-200MF", "RegNetX-400MF", "RegNetY-600MF", "RegNetX-8.0GF"])
def test_built_model_trainable_weights_equal_analytic_params(name):
    model = keras_regnet.get_model(name, weights=None)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == PAPER[name][11]
    # count_params() also counts BatchNorm moving statistics, which the paper does not count as parameters.
    assert model.count_params() > trainable


def test_anynet_complexity_matches_built_model():
    from conftest import TINY_SE

    p = keras_regnet.AnyNetParams(**TINY_SE, stem="cifar")
    m = keras_regnet.AnyNet(**TINY_SE, stem="cifar", input_shape=(32, 32, 3), classes=10)
    assert sum(int(np.prod(w.shape)) for w in m.trainable_weights) == keras_regnet.complexity(p, classes=10)["params"]
