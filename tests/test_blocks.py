"""blocks.Builder: the Keras realisation of the layer plan, in both data formats, and a head added later."""

import dataclasses

import keras
import numpy as np
import pytest

import keras_regnet
from conftest import TINY, TINY_SE
from keras_regnet import plan
from keras_regnet.blocks import BN_EPSILON, Builder


def test_channels_first_plan_makes_channels_first_layers():
    p = plan.build_plan(keras_regnet.AnyNetParams(**TINY_SE), data_format="channels_first", classes=3)
    builder = Builder.for_plan(p)
    assert builder.data_format == "channels_first" and builder.axis == 1
    out = builder.build(p, keras.Input((3, 32, 32)))
    assert tuple(out.shape) == (None, 3)
    model = keras.Model(builder.tensors[plan.INPUT], out)
    for layer in model.layers:
        config = layer.get_config()
        if "data_format" in config:
            assert config["data_format"] == "channels_first", layer.name
        if isinstance(layer, keras.layers.BatchNormalization):
            assert config["axis"] in (1, [1]) and config["epsilon"] == BN_EPSILON
    # Per-channel preprocessing constants broadcast on the channel axis of this format: (C, 1, 1).
    assert np.asarray(model.get_layer("preprocessing").get_config()["scale"]).shape == (3, 1, 1)
    assert tuple(builder.stage_tensors["s2"].shape) == (None, 16, 4, 4)
    assert builder.stages == p.feature_info() and builder.roles == p.layer_roles()


def test_a_head_added_later_has_the_planned_head_layers():
    # transfer.replace_head's path: a fresh builder at the last stage's stride, on a tensor it did not make.
    backbone = keras_regnet.AnyNet(**TINY, include_top=False, input_shape=(32, 32, 3))
    builder = Builder("symmetric", backbone.build_options["data_format"])
    builder._where = ("head", 0, backbone.feature_info["s4"].stride)
    out = builder.head(backbone.output, 6, None, 0.2)
    assert tuple(out.shape) == (None, 6)
    planned = plan.build_plan(keras_regnet.AnyNetParams(**TINY), classes=6, classifier_activation=None,
                              head_dropout=0.2)
    head = {n: r for n, r in planned.layer_roles().items() if r.stage == "head"}
    assert builder.roles == head
    # The same with the stride given instead of set on the builder.
    again = Builder("symmetric", backbone.build_options["data_format"])
    again.head(backbone.output, 6, None, 0.2, stride=backbone.feature_info["s4"].stride)
    assert again.roles == head


def test_builder_refuses_unknown_kinds_and_options():
    layer = plan.build_plan("RegNetX-200MF").layers[0]
    with pytest.raises(ValueError, match="unknown layer kind 'warp'"):
        Builder().make_layer(dataclasses.replace(layer, kind="warp"))
    with pytest.raises(ValueError, match="padding"):
        Builder("reflect")
    with pytest.raises(ValueError, match="data_format"):
        Builder(data_format="NHWC")
