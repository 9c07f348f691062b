"""Canaries for the Keras internals the package uses (keras_regnet/_compat.py): each test exercises one hook on a
tiny model and fails naming the hook when a Keras (or LiteRT) release changes it."""

import importlib.util
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import keras
from keras_regnet import _compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def canary(hook, check):
    """Run ``check()``; any exception or a false result fails loudly with the hook's name and what it reaches."""
    what, used_by = _compat.HOOKS[hook]
    try:
        ok = check()
    except Exception as e:  # noqa: BLE001 - whatever Keras changed, say which hook broke
        pytest.fail(f"Keras {keras.__version__} changed the internal {what!r} (_compat.{hook}, used by {used_by}): "
                    f"{type(e).__name__}: {e}")
    assert ok is not False, (f"Keras {keras.__version__} changed the internal {what!r} (_compat.{hook}, used by "
                             f"{used_by}): unexpected result")


def _tiny():
    inputs = keras.Input((4,), name="x")
    dense = keras.layers.Dense(3, name="dense")
    hidden = dense(inputs)
    out = keras.layers.Dense(2, name="out")(hidden)
    return keras.Model(inputs, out), dense


def test_every_hook_has_a_canary():
    names = {name[len("test_"):] for name in globals() if name.startswith("test_")}
    assert set(_compat.HOOKS) <= names, sorted(set(_compat.HOOKS) - names)


def test_producing_layer():
    model, _ = _tiny()
    canary("producing_layer", lambda: _compat.producing_layer(model.outputs[0]) is model.get_layer("out"))


def test_inbound_input_tensors():
    model, dense = _tiny()
    canary("inbound_input_tensors", lambda: _compat.producing_layer(
        _compat.inbound_input_tensors(model.get_layer("out"))[0]) is dense)


def test_call_count():
    model, dense = _tiny()
    canary("call_count", lambda: _compat.call_count(dense) == 1 and _compat.call_count(model.get_layer("out")) == 1)


def test_consumer_count():
    _, dense = _tiny()
    canary("consumer_count", lambda: _compat.consumer_count(dense) == 1)


def test_run_through_graph():
    model, _ = _tiny()
    x = np.ones((2, 4), "float32")
    calls = []

    def call_fn(layer, *args, **kwargs):
        calls.append(layer.name)
        return layer(*args, **kwargs)

    def check():
        out = _compat.run_through_graph(model, [keras.ops.convert_to_tensor(x)], call_fn)
        return calls == ["dense", "out"] and np.allclose(keras.ops.convert_to_numpy(out), model(x))

    canary("run_through_graph", check)


def test_all_layers():
    inner, _ = _tiny()
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, keras.layers.Dense(1, name="top")(inner(inputs)))
    canary("all_layers", lambda: {"dense", "out", "top"} <= {layer.name for layer in _compat.all_layers(outer)})



def test_in_layer_call():
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, x):
            seen.append(_compat.in_layer_call())
            return x

    inputs = keras.Input((2,))
    outer = keras.Model(inputs, Probe()(inputs))
    seen.clear()
    outer(np.zeros((1, 2), "float32"))
    canary("in_layer_call", lambda: seen == [True] and _compat.in_layer_call() is False)

def test_optimizer_slot_index():
    model, _ = _tiny()
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)

    def check():
        for v in model.trainable_variables:
            slot = optimizer.momentums[_compat.optimizer_slot_index(optimizer, v)]
            if tuple(slot.shape) != tuple(v.shape):
                return False
        return True

    canary("optimizer_slot_index", check)


def test_litert_ops_details(tmp_path):
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the TFLite converter needs the TensorFlow backend")

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def f(x):
        return tf.nn.relu(tf.matmul(x, tf.ones((4, 2))))

    content = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    interpreter = litert.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    # the matmul is a FULLY_CONNECTED op (the relu may be fused or handed to the XNNPACK delegate)
    canary("litert_ops_details", lambda: "FULLY_CONNECTED" in {
        d["op_name"] for d in _compat.litert_ops_details(interpreter)})


def test_weights_file_layer_datasets(tmp_path):
    import h5py

    model, _ = _tiny()
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)

    def check():
        with h5py.File(path, "r") as f:
            found = _compat.weights_file_layer_datasets(f)
            return len(found) == len(model.weights) and all(n.startswith(_compat.WEIGHTS_LAYER_PREFIX) for n, _ in found)

    canary("weights_file_layer_datasets", check)


def test_tf_trainer_module():
    pytest.importorskip("tensorflow")

    def check():
        trainer = _compat.tf_trainer_module()
        return (callable(trainer.TensorFlowTrainer._maybe_symbolic_build) and callable(trainer.reduce_per_replica)
                and callable(trainer._collective_all_reduce_multi_worker))

    canary("tf_trainer_module", check)


def test_variable_assign_hooks():
    pytest.importorskip("tensorflow")

    def check():
        from keras.src.backend.tensorflow import core
        from keras.src.backend.tensorflow import optimizer as tf_optimizer

        return callable(core.Variable._direct_assign) and all(
            callable(getattr(tf_optimizer.TFOptimizer, n)) for n in ("assign", "assign_add", "assign_sub"))

    canary("variable_assign_hooks", check)


def _fresh(code, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_import_hook():
    """The hook is kept because it is the one mechanism giving both: ``keras-regnet --help`` without Keras or
    TensorFlow (about a second), and our classes registered when Keras is imported after ``import keras_regnet``."""
    spec = importlib.util.find_spec("keras")
    canary("import_hook", lambda: spec is not None and hasattr(spec.loader, "exec_module"))
    # 1. --help imports neither Keras nor TensorFlow (what makes it fast), and says so in well under a few seconds
    out = _fresh("""
        import sys, time, contextlib, io
        start = time.perf_counter()
        from keras_regnet import cli
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.main(["--help"])
            except SystemExit:
                pass
        print(time.perf_counter() - start, "keras" in sys.modules, "tensorflow" in sys.modules)
    """)
    seconds, keras_loaded, tf_loaded = out.split()
    assert (keras_loaded, tf_loaded) == ("False", "False"), out
    assert float(seconds) < 5.0, f"keras-regnet --help took {seconds} s"
    # 2. import keras_regnet, then keras: our classes are registered (keras.saving.load_model finds them)
    out = _fresh("""
        import sys
        import keras_regnet
        assert "keras" not in sys.modules
        import keras
        print(keras.saving.get_registered_object("keras_regnet>RegNetModel") is not None
              and keras.saving.get_registered_object("keras_regnet>GroupConv2D") is not None)
    """)
    assert out == "True"


def test_from_config_leaves_the_global_data_format_alone(monkeypatch):
    """Removed internal use: rebuilding a channels_first model from its config no longer sets the global format."""
    import keras_regnet
    from conftest import TINY

    keras.config.set_image_data_format("channels_first")
    try:
        model = keras_regnet.AnyNet(**TINY, input_shape=(3, 32, 32), classes=3)
    finally:
        keras.config.set_image_data_format("channels_last")
    calls = []
    monkeypatch.setattr(keras.config, "set_image_data_format", lambda value: calls.append(value))
    again = type(model).from_config(model.get_config())
    assert calls == []
    assert again.build_options["data_format"] == "channels_first"
    assert again.get_layer("stem_conv").data_format == "channels_first"
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 32, 32)).astype("float32")
    again.set_weights(model.get_weights())
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_derived_models_use_public_functional_construction():
    """Removed internal use: a feature extractor / new head is a RegNetModel made through keras.Model.__init__,
    without RegNetModel.__new__ on a bare instance."""
    import keras_regnet
    from conftest import TINY
    from keras_regnet.model import RegNetModel

    assert "__new__" not in vars(RegNetModel)
    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    head = keras_regnet.replace_head(model, 5)
    features = keras_regnet.feature_extractor(model)
    assert type(head) is RegNetModel and type(features) is RegNetModel
    assert head.layer_roles["head_fc"].stage == "head" and set(features.output) == set(model.feature_info)
    start = time.perf_counter()
    rebuilt = RegNetModel.from_config(head.get_config())
    assert rebuilt.output.shape[-1] == 5 and time.perf_counter() - start < 60


def _registration_path():
    """Our modules that registering imports at module level (``keras_regnet._REGISTERING_MODULES`` and what they
    import at their top level): importing any of them first imports Keras while it is half executed."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import import_graph
    import keras_regnet

    graph = import_graph.graph()
    seen, stack = set(), list(keras_regnet._REGISTERING_MODULES)
    while stack:
        module = stack.pop()
        if module not in seen:
            seen.add(module)
            stack += [target for target, _line, local in graph.get(module, []) if not local]
    return sorted(seen - {"keras_regnet"})


def test_any_module_imported_first_registers_everything():
    """``import keras_regnet.blocks`` (or layers, or inference) as the first import used to fail or leave the model
    class unregistered: Keras, imported by the half-executed module, registered at once and imported the module
    back. Registration now waits until our outermost module has finished; each module is imported first in a fresh
    process (the numpy backend where Keras has one without jax: the loop is backend-independent and that import
    is the fastest)."""
    modules = _registration_path()
    assert {"keras_regnet.blocks", "keras_regnet.layers", "keras_regnet.model", "keras_regnet.inference"} <= set(
        modules)
    code = """
        import importlib, sys
        importlib.import_module(sys.argv[1])
        import keras
        names = ("RegNetModel", "GroupConv2D", "BatchNorm")
        print(all(keras.saving.get_registered_object("keras_regnet>" + n) is not None for n in names))
    """
    env = dict(os.environ, PYTHONPATH=ROOT, KERAS_BACKEND="numpy", TF_CPP_MIN_LOG_LEVEL="3")
    if subprocess.run([sys.executable, "-c", "import keras"], env=env, capture_output=True).returncode != 0:
        env["KERAS_BACKEND"] = keras.backend.backend()  # older Keras's numpy backend imports jax
    procs = {}
    failures = []
    for i in range(0, len(modules), 2):  # two at a time: the machine's cores
        for module in modules[i:i + 2]:
            procs[module] = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), module], env=env, cwd=ROOT,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for module in modules[i:i + 2]:
            out, err = procs[module].communicate(timeout=300)
            if procs[module].returncode != 0 or out.strip().splitlines()[-1:] != ["True"]:
                failures.append(f"{module}: rc {procs[module].returncode}, {out.strip()[-200:]} {err.strip()[-600:]}")
    assert not failures, "\n".join(failures)
