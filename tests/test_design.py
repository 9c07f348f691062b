"""Design maths against the paper's table: generator, compatibility adjustment, inverse fit, bad input."""

import pytest

import keras_regnet
from keras_regnet import design, specs
from paper_table import PAPER


@pytest.mark.parametrize("name", sorted(PAPER))
def test_generator_reproduces_paper_stages(name):
    d, w0, wa, wm, g, se, depths, gen_widths, final_widths, group_widths = PAPER[name][:10]
    widths, stage_depths = keras_regnet.generate_regnet(w0, wa, wm, d)
    assert widths == gen_widths
    assert stage_depths == depths
    ws, bs, gs = design.adjust_block_compatibility(widths, [1.0] * 4, [g] * 4)
    assert ws == final_widths
    assert gs == group_widths


@pytest.mark.parametrize("name", sorted(PAPER))
def test_spec_table_matches_paper(name):
    d, w0, wa, wm, g, se = PAPER[name][:6]
    p = specs.get_params(name)
    assert (p.depth, p.w0, p.wa, p.wm, p.group_width, p.se_ratio) == (d, w0, wa, wm, g, se)
    anynet = p.to_anynet()
    assert list(anynet.widths) == PAPER[name][8] and list(anynet.depths) == PAPER[name][6]


def test_group_width_capped_by_stage_width():
    # RegNetX-8.0GF: g=120 but stage 1 is 80 wide -> one group of 80 (tf_keras computed groups=0 here).
    ws, _, gs = design.adjust_block_compatibility([80, 232], [1, 1], [120, 120])
    assert gs == [80, 120] and ws == [80, 240]


def test_bottleneck_ratio_adjustment():
    # w=100, b=4 -> bottleneck 25 -> rounded to a multiple of g=8 -> 24 -> w = 96.
    ws, bs, gs = design.adjust_block_compatibility([100], [4], [8])
    assert ws == [96] and gs == [8]
    assert (ws[0] // 4) % gs[0] == 0
    # half-to-even: bottleneck 20 with g=8 -> 20/8 = 2.5 rounds to 2 -> 16.
    assert design.adjust_block_compatibility([20], [1], [8])[0] == [16]


@pytest.mark.parametrize("name", ["RegNetX-200MF", "RegNetX-8.0GF", "RegNetY-1.6GF", "RegNetY-32GF", "RegNetX-3.2GF"])
def test_fit_recovers_generator(name):
    d, w0, wa, wm = PAPER[name][:4]
    block_widths, _ = design.quantized_linear_widths(w0, wa, wm, d)
    fit = keras_regnet.fit_quantized_linear(block_widths)
    assert fit["fit_error"] == pytest.approx(0.0, abs=1e-9)
    assert fit["w0"] == w0
    assert fit["wm"] == pytest.approx(wm, abs=0.06)
    assert fit["wa"] == pytest.approx(wa, rel=0.15)
    regenerated, _ = design.quantized_linear_widths(fit["w0"], fit["wa"], fit["wm"], d)
    assert regenerated == block_widths
    assert fit["linear_fit_error"] > 0  # a step function is not a line


def test_fit_of_irregular_widths_reports_error():
    fit = design.fit_quantized_linear([64, 32, 512, 48, 1024])
    assert fit["fit_error"] > 0.2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(w0=24, wa=36.44, wm=2.49, depth=0), "depth"),
        (dict(w0=24, wa=36.44, wm=2.49, depth=2.5), "depth"),
        (dict(w0=24, wa=36.44, wm=1.0, depth=13), "wm"),
        (dict(w0=24, wa=-1.0, wm=2.49, depth=13), "wa"),
        (dict(w0=-8, wa=36.44, wm=2.49, depth=13), "w0"),
        (dict(w0=20, wa=36.44, wm=2.49, depth=13), "multiple"),
        (dict(w0=24, wa=float("nan"), wm=2.49, depth=13), "wa"),
    ],
)
def test_generator_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_regnet.generate_regnet(**kwargs)


def test_names_are_spelling_insensitive_but_keep_decimal_marks():
    assert specs.canonical_name("RegNetX1_6GF") == "RegNetX-1.6GF"
    assert specs.canonical_name("RegNetX16GF") == "RegNetX-16GF"
    assert specs.canonical_name("regnety_600mf") == "RegNetY-600MF"
    with pytest.raises(ValueError, match="unknown model name"):
        specs.canonical_name("RegNetZ-600MF")


def test_specs_round_trip_through_dicts():
    import json

    for p in (specs.get_params("RegNetY-600MF"), specs.get_params("RegNetX-8.0GF").to_anynet()):
        assert specs.params_from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="unknown regnet spec keys"):
        specs.params_from_dict({"type": "regnet", "depth": 13, "w0": 24, "wa": 36.4, "wm": 2.5, "group_width": 8, "x": 1})


def test_design_maths_modules_do_not_depend_on_keras():
    import ast
    import os

    # design, specs and complexity must stay pure Python/NumPy (samplers evaluate millions of candidates).
    root = os.path.dirname(keras_regnet.__file__)
    for name in ("design.py", "specs.py", "complexity.py"):
        tree = ast.parse(open(os.path.join(root, name)).read())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
                imported |= {f"{node.module}.{a.name}" for a in node.names}
        assert not imported & {"keras", "tensorflow", "jax", "torch"}, (name, imported)
        assert not any(i.startswith("keras_regnet.") and i.split(".")[1] in ("models", "layers", "blocks")
                       for i in imported), (name, imported)


def test_keras_file_loads_after_plain_import(tmp_path):
    import subprocess
    import sys

    path = str(tmp_path / "m.keras")
    build = (
        "import keras_regnet as k; k.AnyNet(depths=[1], widths=[16], bottleneck_ratios=[1], group_widths=[8], "
        f"input_shape=(32, 32, 3), classes=3).save({path!r})"
    )
    load = f"import keras, keras_regnet; m = keras.saving.load_model({path!r}); print(type(m.get_layer('s1_b1_conv_b')).__name__)"
    subprocess.run([sys.executable, "-c", build], check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", load], check=True, capture_output=True, text=True)
    assert out.stdout.strip().endswith("GroupConv2D")
