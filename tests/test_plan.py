"""The layer plan: the built Keras model is exactly the plan, complexity sums it, and the vectorized sampler's
batch copy of the complexity count equals it."""

import importlib
import subprocess
import sys

import numpy as np
import pytest

import keras_regnet
from conftest import TINY, TINY_SE
from keras_regnet import design, plan, specs
from keras_regnet.design_space import vectorized
from paper_table import PAPER

complexity_lib = importlib.import_module("keras_regnet.complexity")

# An AnyNet with odd widths, bottleneck ratios and group widths, and SE widths that round (w_in * 0.25).
ODD = dict(depths=(1, 2, 1), widths=(12, 20, 36), bottleneck_ratios=(1, 2, 1), group_widths=(4, 2, 6), se_ratio=0.25,
           stem_width=18)

BUILDS = {
    "tiny_se_dropout": (TINY_SE, dict(input_shape=(32, 32, 3), classes=10, head_dropout=0.2)),
    "odd_se_cifar": (dict(ODD, stem="cifar"), dict(input_shape=(32, 32, 3), classes=7, classifier_activation=None)),
    "odd_same_avg": (ODD, dict(input_shape=(40, 40, 3), include_top=False, pooling="avg", padding="same")),
    "tiny_max_unit_4ch": (TINY, dict(input_shape=(32, 32, 4), include_top=False, pooling="max",
                                     normalization="unit")),
    "tiny_no_pre_map": (TINY_SE, dict(input_shape=(33, 33, 3), include_top=False, include_preprocessing=False)),
    "regnety_features": ("RegNetY-200MF", dict(input_shape=(64, 64, 3), include_top=False, features=["s2"])),
}

KERAS_CLASS = {
    "rescale": "Rescaling", "pad": "ZeroPadding2D", "conv": "Conv2D", "group_conv": "GroupConv2D",
    "bn": "BatchNorm", "relu": "ReLU", "max_pool": "MaxPooling2D", "se_pool": "GlobalAveragePooling2D",
    "multiply": "Multiply", "add": "Add", "global_avg_pool": "GlobalAveragePooling2D",
    "global_max_pool": "GlobalMaxPooling2D", "dropout": "Dropout", "dense": "Dense", "activation": "Activation",
}


def _plan_of(model, spec, kwargs):
    """The plan of a built model, from the arguments it was built with."""
    opts = {k: v for k, v in kwargs.items() if k != "input_shape"}
    return plan.build_plan(spec, input_channels=kwargs["input_shape"][-1], **opts)


@pytest.mark.parametrize("case", sorted(BUILDS))
def test_built_model_is_the_plan(case):
    import keras

    spec, kwargs = BUILDS[case]
    spec = keras_regnet.AnyNetParams(**spec) if isinstance(spec, dict) else spec
    model = keras_regnet.RegNetModel(spec, **kwargs)
    p = _plan_of(model, spec, kwargs)
    layers = {layer.name: layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)}
    (input_layer,) = [layer for layer in model.layers if isinstance(layer, keras.layers.InputLayer)]
    if kwargs.get("features"):
        # A feature extractor keeps the layers its outputs need.
        assert set(layers) < set(p.names)
        assert set(p.names[:len(layers)]) == set(layers)
    else:
        assert set(layers) == set(p.names)
    assert model.layer_roles == {n: r for n, r in p.layer_roles().items() if n in layers}
    assert model.feature_info == {s: f for s, f in p.feature_info().items() if f.layer in layers}
    producer = {id(layer.output): name for name, layer in layers.items()}
    producer[id(input_layer.output)] = plan.INPUT
    size = kwargs["input_shape"][0]
    for name, keras_layer in layers.items():
        planned = p.layer(name)
        assert type(keras_layer).__name__ == KERAS_CLASS[planned.kind], name
        inputs = keras_layer.input if isinstance(keras_layer.input, list) else [keras_layer.input]
        assert tuple(producer[id(t)] for t in inputs) == planned.inputs, name
        assert inputs[0].shape[-1] == planned.channels_in, name
        assert keras_layer.output.shape[-1] == planned.channels_out, name
        config = keras_layer.get_config()
        if planned.kind in ("conv", "group_conv"):
            k, cin, cout = planned.kernel, planned.channels_in, planned.channels_out
            assert config["kernel_size"] == (k, k) and config["strides"] == (planned.stride,) * 2, name
            assert config["groups"] == planned.groups and config["use_bias"] == planned.bias, name
            assert config["padding"] == planned.padding, name
            expected = [(k, k, cin // planned.groups, cout)] + ([(cout,)] if planned.bias else [])
            assert [tuple(w.shape) for w in keras_layer.weights] == expected, name
        elif planned.kind == "bn":
            assert [tuple(w.shape) for w in keras_layer.weights] == [(planned.channels_out,)] * 4, name
        elif planned.kind == "dense":
            assert [tuple(w.shape) for w in keras_layer.weights] == [(planned.channels_in, planned.channels_out),
                                                                      (planned.channels_out,)], name
        elif planned.kind == "max_pool":
            assert config["pool_size"] == (planned.kernel,) * 2 and config["strides"] == (planned.stride,) * 2
        elif planned.kind == "pad":
            assert config["padding"] == ((planned.pad, planned.pad), (planned.pad, planned.pad)), name
        else:
            assert not keras_layer.weights, name
        # The output stride: spatial size = ceil(input / stride), except pads and the pooled (1x1) SE/head layers.
        out_shape = keras_layer.output.shape
        if len(out_shape) == 4 and planned.kind != "pad" and out_shape[1] != 1:
            assert out_shape[1] == -(-size // planned.out_stride), name
    if not kwargs.get("features"):
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert trainable == complexity_lib.plan_complexity(p)["params"]


def test_block_rows_pin_the_creation_order_and_names():
    # The creation order is the weights order of Keras files: pin it for a block with every optional part.
    rows = plan.block_rows("x", "s2", 1, 8, 16, 2, 1, 8, 0.25, in_stride=2)
    assert [r[0] for r in rows] == [
        "s2_b1_proj_pool", "s2_b1_proj_conv", "s2_b1_proj_bn", "s2_b1_conv_a", "s2_b1_bn_a", "s2_b1_relu_a",
        "s2_b1_pad_b", "s2_b1_conv_b", "s2_b1_bn_b", "s2_b1_relu_b", "s2_b1_se_pool", "s2_b1_se_reduce",
        "s2_b1_se_expand", "s2_b1_se_scale", "s2_b1_conv_c", "s2_b1_bn_c", "s2_b1_add", "s2_b1_out",
    ]
    layers = {r[0]: plan.Layer(*r) for r in rows}
    assert layers["s2_b1_conv_b"].groups == 2 and layers["s2_b1_conv_b"].out_stride == 4
    assert layers["s2_b1_conv_a"].out_stride == 2 and layers["s2_b1_se_reduce"].channels_out == 2
    assert layers["s2_b1_add"].inputs == ("s2_b1_proj_bn", "s2_b1_bn_c")
    # 16 or more input channels: a strided 1x1 projection conv; 'same' padding: no pad layer; no SE at se 0.
    rows = plan.block_rows("x", "s2", 1, 16, 32, 2, 1, 8, 0.0, padding="same")
    names = [r[0] for r in rows]
    assert "s2_b1_proj_pool" not in names and "s2_b1_pad_b" not in names and "s2_b1_se_pool" not in names
    assert plan.Layer(*rows[0]).stride == 2


def test_plan_options_shape_the_head():
    spec = keras_regnet.AnyNetParams(**TINY)
    top = plan.build_plan(spec, classes=5, head_dropout=0.1, classifier_activation=None)
    assert top.names[-4:] == ("head_pool", "head_dropout", "head_fc", "predictions")
    assert top.layer("head_fc").channels_out == 5 and top.layer("predictions").activation is None
    assert plan.build_plan(spec, include_top=False, pooling="max").output == "max_pool"
    assert plan.build_plan(spec, include_top=False).output == "s4_b1_out"
    assert plan.build_plan(spec, include_top=False, pooling="avg", features=["s2"]).output == "s4_b1_out"
    assert plan.build_plan(spec, include_preprocessing=False).names[0] == "stem_pad"
    assert plan.build_plan(spec, padding="same").names[:2] == ("preprocessing", "stem_conv")
    assert plan.build_plan(spec).find("s3", 1, "conv_b").name == "s3_b1_conv_b"
    assert plan.build_plan(spec).feature_info() == {
        "stem": plan.FeatureInfo("stem_relu", 32, 2), "s1": plan.FeatureInfo("s1_b1_out", 8, 4),
        "s2": plan.FeatureInfo("s2_b1_out", 16, 8), "s3": plan.FeatureInfo("s3_b1_out", 24, 16),
        "s4": plan.FeatureInfo("s4_b1_out", 32, 32),
    }
    # The paper spellings, the dict form and the params object give the same plan.
    assert plan.build_plan("RegNetY600MF") == plan.build_plan(specs.get_params("RegNetY-600MF").to_dict())


@pytest.mark.parametrize("options, match", [
    (dict(padding="reflect"), "padding"),
    (dict(pooling="mean"), "pooling"),
    (dict(classes=0), "classes"),
    (dict(normalization="none"), "normalization"),
    (dict(head_dropout=1.0), "head_dropout"),
    (dict(data_format="NHWC"), "data_format"),
    (dict(input_channels=0), "input_channels"),
    (dict(bogus=1), "unknown plan options"),
])
def test_plan_refuses_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        plan.build_plan("RegNetX-200MF", **options)


def test_builder_refuses_a_plan_it_cannot_build():
    import keras

    from keras_regnet.blocks import Builder

    p = plan.build_plan(keras_regnet.AnyNetParams(**TINY), padding="same")
    with pytest.raises(ValueError, match="Builder.for_plan"):
        Builder("symmetric", p.options.data_format).build(p, keras.Input((32, 32, 3)))
    with pytest.raises(ValueError, match="input_channels=3"):
        Builder.for_plan(p).build(p, keras.Input((32, 32, 1)))


def test_plan_and_complexity_import_no_keras():
    code = ("import sys, keras_regnet.plan, keras_regnet.complexity; "
            "keras_regnet.plan.build_plan('RegNetY-600MF'); assert 'keras' not in sys.modules, 'keras imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_plan_complexity_is_the_papers_table(name):
    flops, params, acts = PAPER[name][10:]
    expected = {"flops": flops, "params": params, "acts": acts}
    assert complexity_lib.plan_complexity(plan.build_plan(name)) == expected
    assert keras_regnet.complexity(name) == expected
    # Options that add no weights or multiply-adds leave it unchanged; the head is the classes-way linear layer.
    same = plan.build_plan(name, padding="same", head_dropout=0.5, include_preprocessing=False)
    assert complexity_lib.plan_complexity(same) == expected
    width = PAPER[name][8][-1]
    backbone = complexity_lib.plan_complexity(plan.build_plan(name, include_top=False, pooling="avg"))
    head = 1000 * width + 1000
    assert backbone == {"flops": flops - head, "params": params - head, "acts": acts - 1000}


def _random_anynets(rng, n):
    """``n`` random compatible AnyNets as padded (B, 5) stage arrays plus their params objects."""
    depths = np.zeros((n, 5), np.int64)
    widths = np.full((n, 5), 8, np.int64)
    bs = np.ones((n, 5))
    gs = np.ones((n, 5), np.int64)
    params = []
    for i in range(n):
        s = int(rng.integers(1, 6))
        w = rng.integers(1, 80, size=s) * int(rng.choice([1, 2, 8]))  # narrow blocks: SE widths that round to 0
        b = rng.choice([1.0, 2.0, 4.0, 0.5], size=s)
        g = rng.choice([1, 2, 3, 8, 16, 24], size=s)
        w, b, g = design.adjust_block_compatibility(w.tolist(), b.tolist(), g.tolist())
        d = rng.integers(1, 5, size=s).tolist()
        depths[i, :s], widths[i, :s], bs[i, :s], gs[i, :s] = d, w, b, g
        params.append((d, w, b, g))
    return depths, widths, bs, gs, params


@pytest.mark.parametrize("seed, se_ratio, stem, stem_width, resolution, classes, include_top", [
    (0, 0.0, "imagenet", 32, 224, 1000, True),
    (1, 0.25, "imagenet", 24, 97, 10, True),
    (2, 0.25, "cifar", 16, 32, 100, False),
    (3, 0.5, "cifar", 8, (31, 45), 3, True),
])
def test_vectorized_complexity_equals_the_plan_on_random_anynets(seed, se_ratio, stem, stem_width, resolution, classes,
                                                                  include_top):
    rng = np.random.default_rng(seed)
    depths, widths, bs, gs, params = _random_anynets(rng, 1000)
    cx = vectorized.anynet_complexity(depths, widths, bs, gs, se_ratio, stem_width, stem, resolution, classes,
                                      include_top=include_top)
    for i, (d, w, b, g) in enumerate(params):
        a = keras_regnet.AnyNetParams(d, w, b, g, se_ratio=se_ratio, stem_width=stem_width, stem=stem)
        got = keras_regnet.complexity(a, resolution=resolution, classes=classes, include_top=include_top)
        assert {k: int(v[i]) for k, v in cx.items()} == got, (i, a)
        if i % 20 == 0:  # the summed plan itself, layer by layer (the cached per-block sum must equal it)
            p = plan.build_plan(a, classes=classes, include_top=include_top)
            assert complexity_lib.plan_complexity(p, resolution) == got, (i, a)


def test_vectorized_complexity_skips_an_se_of_width_zero():
    a = keras_regnet.AnyNetParams((1, 2), (8, 2), (1.0, 1.0), (8, 2), se_ratio=0.25, stem_width=8)
    cx = vectorized.anynet_complexity(np.array([[1, 2]]), np.array([[8, 2]]), np.ones((1, 2)), np.array([[8, 2]]),
                                      0.25, 8, "imagenet", 64, 10)
    assert {k: int(v[0]) for k, v in cx.items()} == keras_regnet.complexity(a, resolution=64, classes=10)
