"""Every use of Keras internals (and one of LiteRT's) in the package, in one module.

Each function below reaches one private attribute or module, says why no public API does the job, and names the
Keras versions it was checked with: the declared minimum (``KERAS_MIN``, ``ci/constraints-min.txt``) to the version
tested (``KERAS_TESTED``). ``tests/test_compat.py`` runs every hook of :data:`HOOKS` against the installed
Keras and fails naming the hook when a release changes it, before the feature that uses it breaks in a user's hands.

Internals used outside this module, documented here because they cannot live in it:

- ``keras_regnet/__init__.py``: a ``sys.meta_path`` finder that wraps the loader of the ``keras`` module
  (``spec.loader.exec_module``), so that ``import keras_regnet`` stays free of Keras and TensorFlow (a 1-second
  ``keras-regnet --help``) and ``keras.saving.load_model`` still finds our registered classes when Keras is
  imported later. Keras has no plugin entry point for serializable objects and deserialization never imports a
  non-Keras module by name, so nothing simpler gives both; the canary checks that Keras's loader is one the
  finder can wrap, and that both properties hold (``import keras_regnet`` then ``import keras`` registers).
- ``keras_regnet/inference.py``: the fast inference path is told about every variable assignment by wrapping
  ``keras.src.backend.tensorflow.core.Variable._direct_assign`` and ``TFOptimizer.assign/assign_add/assign_sub``
  (Keras has no public assignment callback); the canary checks that those methods exist.

Removed, because a public API does the job:

- ``RegNetModel.__new__`` plus ``Functional.__init__`` on the bare instance, for models sharing another's layers
  (feature extractors, new heads): ``RegNetModel(..., _derived=(inputs, outputs, record))`` now calls
  ``keras.Model.__init__(inputs=..., outputs=...)``, the public Functional construction of a Model subclass.
- ``from_config`` setting Keras's global image data format while rebuilding a ``.keras`` file: the recorded
  format is passed to every layer built (``Builder(padding, data_format)``), the global setting is left alone.
"""

from __future__ import annotations

# Nothing is imported at module level: keras_regnet.saving (and through it keras_regnet.weights, used by
# `keras-regnet cache` without Keras or TensorFlow) reads weights files through this module.

__all__ = [
    "KERAS_MIN", "KERAS_TESTED", "HOOKS", "producing_layer", "inbound_input_tensors", "call_count",
    "consumer_count", "run_through_graph", "all_layers", "optimizer_slot_index", "litert_ops_details",
    "WEIGHTS_LAYER_PREFIX", "weights_file_layer_datasets", "tf_trainer_module", "in_layer_call",
]

KERAS_MIN = "3.7.0"
KERAS_TESTED = "3.15.1"

# hook name -> (what it reaches, who relies on it); tests/test_compat.py has one canary per entry.
HOOKS = {
    "producing_layer": ("KerasTensor._keras_history.operation", "export (output head), bn_fold, explanations"),
    "inbound_input_tensors": ("Operation._inbound_nodes[i].input_tensors", "export.bn_fold"),
    "call_count": ("Operation._inbound_nodes", "export.bn_fold"),
    "consumer_count": ("Operation._outbound_nodes", "export.bn_fold"),
    "run_through_graph": ("Functional._run_through_graph(inputs, operation_fn, call_fn)", "inference"),
    "all_layers": ("Layer._flatten_layers(include_self=False, recursive=True)", "training.callbacks, inference"),
    "in_layer_call": ("global_state attribute 'current_call_ctx'", "model (eager inference shortcut)"),
    "optimizer_slot_index": ("Optimizer._get_variable_index(variable)", "design_space.sweep (fused SGD step)"),
    "litert_ops_details": ("Interpreter._get_ops_details() (ai_edge_litert)", "export.tflite"),
    "weights_file_layer_datasets": ("the .weights.h5 layout: layer variables under 'layers/'", "saving"),
    "tf_trainer_module": ("keras.src.backend.tensorflow.trainer", "training.multiworker_shim"),
    "import_hook": ("the loader of the 'keras' module (exec_module)", "keras_regnet/__init__.py"),
    "variable_assign_hooks": ("tensorflow core.Variable._direct_assign, TFOptimizer.assign*", "inference"),
}


def producing_layer(tensor):
    """The layer (operation) that produced a symbolic tensor of a Functional model.

    ``KerasTensor._keras_history.operation`` (Keras 3.0 - 3.15): Keras 3 exposes the graph only from the layer side
    (``layer.input``/``layer.output``), not which layer made a given model output.
    """
    return tensor._keras_history.operation


def inbound_input_tensors(layer, index=0):
    """The input tensors of ``layer``'s ``index``-th call in the graph (``layer._inbound_nodes[index]
    .input_tensors``, Keras 3.0 - 3.15): ``layer.input`` is public but refuses layers called several times."""
    return list(layer._inbound_nodes[index].input_tensors)


def call_count(layer):
    """How many times ``layer`` is called in the graphs it belongs to (``len(layer._inbound_nodes)``)."""
    return len(layer._inbound_nodes)


def consumer_count(layer):
    """How many calls consume ``layer``'s output (``len(layer._outbound_nodes)``)."""
    return len(layer._outbound_nodes)


def run_through_graph(model, inputs, call_fn):
    """Run a Functional model's graph with ``call_fn(layer, *args, **kwargs)`` in place of each layer call.

    ``Functional._run_through_graph(inputs, operation_fn=..., call_fn=...)`` (Keras 3.1 - 3.15; ``call_fn`` is
    what lets the inference path emit fused TensorFlow ops per layer while Keras keeps the wiring). No public
    API walks a Functional graph with a substitute for each call.
    """
    return model._run_through_graph(list(inputs), operation_fn=lambda op: op, call_fn=call_fn)


def all_layers(model):
    """Every layer inside ``model``, nested models' layers included (``model._flatten_layers(include_self=False,
    recursive=True)``, Keras 3.0 - 3.15: ``model.layers`` lists only the top level)."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def in_layer_call():
    """Whether a Keras layer's ``__call__`` is running now (another layer or model is calling this one).

    Keras keeps the outer call's context (its ``training`` flag, which nested calls inherit) in the global state
    attribute ``current_call_ctx`` (``keras.src.backend.common.global_state``, Keras 3.0 - 3.15); no public API
    tells whether a call is nested. The model's eager inference shortcut runs only for a top-level call.
    """
    from keras.src.backend.common import global_state

    return global_state.get_global_attribute("current_call_ctx") is not None


def optimizer_slot_index(optimizer, variable):
    """The index of ``variable``'s slots (``optimizer.momentums[i]``) in a built optimizer
    (``Optimizer._get_variable_index``, Keras 3.0 - 3.15): slots are lists ordered by an internal key."""
    return optimizer._get_variable_index(variable)


def litert_ops_details(interpreter):
    """``[{"op_name": ..., ...}]`` of a LiteRT/TFLite interpreter's graph (``Interpreter._get_ops_details()``,
    ai_edge_litert 1.x - 2.3 and tf.lite): the only way to read the ops and their delegation after allocation."""
    return interpreter._get_ops_details()


# Keras 3 ``.weights.h5`` (and the ``model.weights.h5`` inside ``.keras``): layer variables are datasets under
# ``layers/<layer path>/vars/<i>``, optimizer state under ``optimizer/`` (Keras 3.0 - 3.15).
WEIGHTS_LAYER_PREFIX = "layers/"


def weights_file_layer_datasets(h5file):
    """``[(path, h5py.Dataset)]`` of the layer variables in an open Keras 3 weights file (optimizer excluded)."""
    import h5py

    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and name.startswith(WEIGHTS_LAYER_PREFIX):
            found.append((name, obj))

    h5file.visititems(visit)
    return found


def tf_trainer_module():
    """``keras.src.backend.tensorflow.trainer`` (Keras 3.0 - 3.15): the module whose ``TensorFlowTrainer.
    _maybe_symbolic_build`` and ``reduce_per_replica`` the MultiWorkerMirroredStrategy work-around replaces
    (keras-team/keras#20585; see :mod:`keras_regnet.training.multiworker_shim`)."""
    from keras.src.backend.tensorflow import trainer

    return trainer


def keras_version():
    """The installed Keras version, for messages."""
    import keras

    return keras.__version__
