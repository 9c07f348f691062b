"""The package's layers (docs/architecture.md): an import may point down or sideways inside a layer, never up,
and no group of modules imports itself in a loop. Imports are read from the source with ``ast`` (module-level
and function-local alike), so a lazy import cannot hide an upward arrow or a loop."""

import pytest

import import_graph

# Bottom to top. A module belongs to the longest prefix listed (a new module inside a package inherits its layer).
LAYERS = {
    # 1. design maths and plain Python utilities: no Keras
    "keras_regnet.design": 1, "keras_regnet.specs": 1, "keras_regnet.plan": 1, "keras_regnet.complexity": 1,
    "keras_regnet.errors": 1, "keras_regnet._extras": 1, "keras_regnet._quiet": 1,
    # 2. the Keras model
    "keras_regnet._compat": 2, "keras_regnet.layers": 2, "keras_regnet.blocks": 2, "keras_regnet.model": 2,
    "keras_regnet.saving": 2, "keras_regnet.preprocessing": 2,
    # 3. weights and pretrained models, the constructors, loading, presets
    "keras_regnet.weights": 3, "keras_regnet.pretrained": 3, "keras_regnet.models": 3, "keras_regnet.loading": 3,
    "keras_regnet.hub": 3,
    # 4. tools
    "keras_regnet.features": 4, "keras_regnet.classify": 4, "keras_regnet.transfer": 4, "keras_regnet.inference": 4,
    "keras_regnet.explanations": 4, "keras_regnet.export": 4, "keras_regnet.datasets": 4,
    "keras_regnet.training": 4, "keras_regnet.design_space": 4,
    # 5. the command line
    "keras_regnet.cli": 5, "keras_regnet.commands": 5,
    # The package itself (``__init__``: ``__version__`` and the design maths; everything else through its lazy
    # attribute table, the one lazy place, resolved at first use): importing it never pulls a higher layer in.
    "keras_regnet": 1,
}


def layer_of(module):
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise KeyError(module)


GRAPH = import_graph.graph()


def test_every_module_has_a_layer():
    unplaced = [m for m in GRAPH if m != "keras_regnet" and not any(
        m == p or m.startswith(p + ".") for p in LAYERS if p != "keras_regnet")]
    assert not unplaced, f"modules without a layer (add them to LAYERS and docs/architecture.md): {unplaced}"


def test_no_import_points_up_a_layer():
    upward = [
        f"{module} (layer {layer_of(module)}) line {line} imports {target} (layer {layer_of(target)})"
        f"{' inside a function' if local else ''}"
        for module, targets in GRAPH.items() for target, line, local in targets
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports pointing up a layer:\n" + "\n".join(upward)


def test_no_import_loop():
    loops = import_graph.cycles(GRAPH)
    assert not loops, "import loops: " + "; ".join(" <-> ".join(loop) for loop in loops)


def test_weights_never_import_the_model_class():
    offenders = [(m, t) for m, targets in GRAPH.items() if m.startswith("keras_regnet.weights")
                 for t, _line, _local in targets if t in ("keras_regnet.model", "keras_regnet.models")]
    assert not offenders


@pytest.mark.parametrize("source, expected", [
    ("import keras_regnet.weights.files\n", ["keras_regnet.weights.files"]),
    ("from keras_regnet import specs\n", ["keras_regnet.specs"]),
    ("from keras_regnet.weights import REGISTRY\n", ["keras_regnet.weights"]),
    ("from . import specs\n", ["keras_regnet.specs"]),
    ("def f():\n    from keras_regnet.models import build_model\n", ["keras_regnet.models"]),
])
def test_the_import_reader_sees_every_form(tmp_path, source, expected):
    """The checks above are only as good as the reader: absolute, relative and function-local imports."""
    path = tmp_path / "mod.py"
    path.write_text(source)
    known = {"keras_regnet": "", "keras_regnet.specs": "", "keras_regnet.weights": "",
             "keras_regnet.weights.files": "", "keras_regnet.models": "", "keras_regnet.mod": ""}
    found = [t for t, _line, _local in import_graph.imports("keras_regnet.mod", str(path), known)]
    assert found == expected


def test_a_loop_and_an_upward_import_are_caught():
    graph = {"keras_regnet.specs": [("keras_regnet.models", 3, True)],
             "keras_regnet.models": [("keras_regnet.specs", 1, False)]}
    assert import_graph.cycles(graph) == [["keras_regnet.models", "keras_regnet.specs"]]
    assert layer_of("keras_regnet.models") > layer_of("keras_regnet.specs")
