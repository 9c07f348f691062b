"""A fast inference mode for keras_regnet (and other functional Keras) models on TensorFlow.

``InferenceModel(model)`` (or ``inference_function(model)``) computes what ``model(x, training=False)`` computes,
from a snapshot of the model's weights, as one traced ``tf.function`` built for speed:

* every BatchNormalization that follows a convolution is folded into it
  (:func:`keras_regnet.export.bn_fold.fold_batchnorm`), so a conv block is one fused oneDNN conv + bias + ReLU;
* the built-in input normalisation is folded into the stem conv (:mod:`keras_regnet.export.input_fold`), which
  saves a multiply and an add over the whole input image;
* weights are graph constants, not variables: grappler folds them, and oneDNN prepacks constant filters once
  instead of reordering them on every call;
* a 1x1 convolution on a 1x1 feature map (the Squeeze-and-Excitation MLP) runs as a matrix multiply, which
  TensorFlow fuses with its bias and activation, instead of a convolution primitive.

Layers it does not know (or in a non-float32 dtype policy) are called as they are, so any functional Keras model
works; the result equals the Keras model's up to float rounding (tested within 1e-5). The snapshot does not follow
later weight changes: build a new ``InferenceModel`` after training. TensorFlow only (it is a TF graph).
``precision="bfloat16"`` runs it in bfloat16 (float32 outputs).

A keras-regnet model's own ``model(x, training=False)`` and ``predict`` use this path by default, rebuilt whenever
the model's weights or trainable flags change (see :func:`fast_call`, :func:`set_fast_path`, :func:`fast_path_info`).

    fast = keras_regnet.inference.InferenceModel(model)
    probs = fast(images)                   # a tf.Tensor; images (N, H, W, 3) float RGB 0..255 as for the model
    probs = fast.predict(images, batch_size=32)   # numpy, in batches
"""

from __future__ import annotations

import numpy as np

__all__ = ["InferenceModel", "inference_function", "set_fast_path", "fast_path_info"]

_ACTIVATIONS = ("linear", "relu", "sigmoid", "softmax")


def _tf():
    from keras_regnet._extras import require

    return require("tensorflow", "tensorflow", "keras_regnet.inference")


def _activation_name(layer):
    act = layer.get_config().get("activation", "linear")
    return act if isinstance(act, str) else None


def _apply_activation(tf, y, name):
    if name == "relu":
        return tf.nn.relu(y)
    if name == "sigmoid":
        return tf.sigmoid(y)
    if name == "softmax":
        return tf.nn.softmax(y, axis=-1)
    return y


class _Emitter:
    """Emits plain TensorFlow ops (weights as constants) for the layer types a RegNet is made of."""

    def __init__(self, tf, model, matmul_se=True, compute_dtype="float32"):
        self.tf = tf
        self.dtype = tf.as_dtype(compute_dtype)  # convs, matmuls, adds: float32, or bfloat16 (weights cast once)
        # Snapshot every weight now (eagerly): inside the trace they become graph constants.
        self.values = {id(v): np.asarray(v.numpy()) for v in model.weights}
        self.matmul_se = matmul_se
        self.emitted = {}  # layer class name -> count of layers emitted as plain ops
        self.fallback = {}  # layer class name -> count of layers called as Keras layers

    def _const(self, variable, dtype=None):
        c = self.tf.constant(self.values[id(variable)])
        dtype = dtype or self.dtype
        return c if c.dtype == dtype else self.tf.cast(c, dtype)  # a constant cast: folded once by grappler

    def _low(self, x):
        """``x`` in the compute dtype (float tensors only)."""
        tf = self.tf
        if isinstance(x, (list, tuple)):
            return [self._low(t) for t in x]
        return tf.cast(x, self.dtype) if x.dtype.is_floating and x.dtype != self.dtype else x

    def _float32(self, x):
        tf = self.tf
        if isinstance(x, (list, tuple)):
            return type(x)(self._float32(t) for t in x)
        return tf.cast(x, tf.float32) if getattr(x, "dtype", None) == self.dtype != tf.float32 else x

    def __call__(self, layer, *args, **kwargs):
        low = self.dtype != self.tf.float32
        if low and args and type(layer).__name__ not in ("Rescaling", "Dense", "Activation"):
            args = (self._low(args[0]), *args[1:])
        out = self._emit(layer, *args, **kwargs)
        kind = type(layer).__name__
        if out is None:
            args = tuple(self._float32(a) for a in args)  # Keras layers get float32, as in the model
            self.fallback[kind] = self.fallback.get(kind, 0) + 1
            kwargs.pop("training", None)
            try:
                return layer(*args, training=False, **kwargs)
            except TypeError:
                return layer(*args, **kwargs)
        self.emitted[kind] = self.emitted.get(kind, 0) + 1
        return out

    def _emit(self, layer, *args, **kwargs):
        import keras

        tf = self.tf
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and getattr(policy, "name", "float32") != "float32":
            return None
        x = args[0] if args else None
        kind = type(layer).__name__
        if kind == "Identity":
            return x
        if isinstance(layer, keras.layers.Conv2D) and kind in ("Conv2D", "GroupConv2D"):
            return self._conv(layer, x)
        if kind == "ReLU":
            cfg = layer.get_config()
            if cfg.get("max_value") is None and not cfg.get("negative_slope") and not cfg.get("threshold"):
                return tf.nn.relu(x)
            return None
        if kind == "Add" and len(x) == 2:
            return tf.add(x[0], x[1])
        if kind == "Multiply" and len(x) == 2:
            return tf.multiply(x[0], x[1])
        if kind == "GlobalAveragePooling2D" and layer.data_format == "channels_last":
            if x.dtype != tf.float32:  # accumulate in float32, then back to the compute dtype
                return tf.cast(tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2], keepdims=bool(layer.keepdims)),
                               x.dtype)
            return tf.reduce_mean(x, axis=[1, 2], keepdims=bool(layer.keepdims))
        if kind == "ValuePad2D":
            return layer.call(x)  # concatenated constant bands: plain TF ops on this backend
        if kind == "ZeroPadding2D" and layer.data_format == "channels_last":
            (top, bottom), (left, right) = layer.padding
            return tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
        if kind == "MaxPooling2D" and layer.data_format == "channels_last":
            if tuple(layer.pool_size) == (1, 1) and layer.padding == "valid":
                sh, sw = layer.strides
                return x[:, ::sh, ::sw, :]  # a 1x1 "pool" only subsamples
            return tf.nn.max_pool2d(x, layer.pool_size, layer.strides, layer.padding.upper())
        if kind == "Rescaling":
            scale, offset = layer.scale, layer.offset
            if not all(isinstance(v, (int, float, list, tuple, np.ndarray)) for v in (scale, offset)):
                return None
            x = tf.cast(x, tf.float32)
            return x * tf.constant(np.asarray(scale, np.float32)) + tf.constant(np.asarray(offset, np.float32))
        if kind == "Dense" and x.shape.rank == 2:
            act = _activation_name(layer)
            if act not in _ACTIVATIONS:
                return None
            x = self._float32(x)  # the classifier in float32
            y = tf.matmul(x, self._const(layer.kernel, tf.float32))
            if layer.use_bias:
                y = tf.nn.bias_add(y, self._const(layer.bias, tf.float32))
            return _apply_activation(tf, y, act)
        if kind == "Activation":
            act = layer.get_config().get("activation")
            if act in _ACTIVATIONS:
                return _apply_activation(tf, self._float32(x), act)
        return None

    def _conv(self, layer, x):
        tf = self.tf
        act = _activation_name(layer)
        if (
            layer.data_format != "channels_last"
            or act not in _ACTIVATIONS
            or layer.padding not in ("valid", "same")
            or x.shape.rank != 4
        ):
            return None
        kernel = self._const(layer.kernel)
        kh, kw = layer.kernel_size
        if (
            self.matmul_se
            and layer.groups == 1
            and (kh, kw) == (1, 1)
            and tuple(layer.strides) == (1, 1)
            and x.shape[1] == 1
            and x.shape[2] == 1
        ):
            # SE's MLP: a 1x1 conv of a 1x1 map is a matmul, which oneDNN fuses with bias + activation.
            y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), tf.reshape(kernel, [kernel.shape[2], kernel.shape[3]]))
            if layer.use_bias:
                y = tf.nn.bias_add(y, self._const(layer.bias))
            y = _apply_activation(tf, y, act)
            return tf.reshape(y, [-1, 1, 1, y.shape[-1]])
        y = tf.nn.conv2d(
            x,
            kernel,
            strides=[1, *layer.strides, 1],
            padding=layer.padding.upper(),
            dilations=[1, *layer.dilation_rate, 1],
        )
        if layer.use_bias:
            y = tf.nn.bias_add(y, self._const(layer.bias))
        return _apply_activation(tf, y, act)


def _graph_model(model):
    import keras

    if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph") or isinstance(
        model, keras.Sequential
    ):
        raise ValueError(
            f"InferenceModel needs a functional Keras model (every keras_regnet model is one), got "
            f"{type(model).__name__}."
        )
    return model


def inference_function(model, *, fold_bn=True, fold_input=True, matmul_se=True, jit_compile=False,
                       input_signature=None, precision="float32"):
    """A traced ``tf.function`` computing ``model(x, training=False)`` fast (see the module docstring).

    ``fold_bn`` folds BatchNorm into convs; ``fold_input`` folds the input normalisation into the stem conv
    (:mod:`keras_regnet.export.input_fold`: one multiply and one add over the whole input fewer); ``matmul_se``
    runs 1x1 convs of 1x1 maps as matmuls; ``jit_compile`` compiles with XLA (slower for grouped convs on CPU as
    measured; off by default). ``input_signature`` defaults to the model's input shape with a free batch
    dimension. ``precision="bfloat16"`` runs convolutions, matmuls and additions in bfloat16 (weights rounded once;
    pooling means and the classifier in float32; outputs float32): about twice as fast on CPUs with AVX512-BF16
    or AMX. Returns the function; its ``.report`` attribute tells which layers were emitted as plain TF ops and
    which were called as Keras layers.
    """
    tf = _tf()
    import keras

    from keras_regnet._compat import run_through_graph

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"keras_regnet.inference builds a TensorFlow graph; the Keras backend is {keras.backend.backend()!r}. "
            "Set KERAS_BACKEND=tensorflow, or call the model directly."
        )
    _graph_model(model)
    if fold_bn:
        from keras_regnet.export.bn_fold import fold_batchnorm

        model, _ = fold_batchnorm(model)
    input_folded = False
    if fold_input:
        from keras_regnet.export.input_fold import fold_input_rescaling

        model, input_folded = fold_input_rescaling(model)
    if input_signature is None:
        input_signature = [
            tf.TensorSpec([None, *t.shape[1:]], getattr(t.dtype, "name", t.dtype) or "float32", name=f"input_{i}")
            for i, t in enumerate(model.inputs)
        ]
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}.")
    emitter = _Emitter(tf, model, matmul_se=matmul_se, compute_dtype=precision)

    def forward(*inputs):
        outputs = run_through_graph(model, inputs, emitter)
        return tf.nest.map_structure(emitter._float32, outputs) if precision != "float32" else outputs

    fn = tf.function(forward, input_signature=input_signature, jit_compile=jit_compile, autograph=False)
    fn.get_concrete_function()  # trace now: errors surface here and the first call is fast
    fn.report = {"emitted": dict(emitter.emitted), "keras_layers": dict(emitter.fallback), "bn_folded": fold_bn,
                 "input_folded": input_folded,
                 "precision": precision}
    return fn


class InferenceModel:
    """``model``'s forward pass at inference, fast: folded BatchNorm, constant weights, one traced graph.

    Call it on a batch (array or tensor, the model's input shape) to get a ``tf.Tensor``, or use
    :meth:`predict` for numpy in batches. Weights are snapshotted when it is built.
    """

    def __init__(self, model, **options):
        self.model = model
        self.function = inference_function(model, **options)
        self.report = self.function.report

    def __call__(self, x):
        tf = _tf()
        return self.function(tf.convert_to_tensor(x, dtype=tf.float32))

    def predict(self, x, batch_size=32):
        """Outputs for ``x`` (numpy, first axis the batch) as numpy, ``batch_size`` images at a time."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != len(self.model.inputs[0].shape):
            raise ValueError(
                f"predict expects a batch of shape (N, {', '.join(str(d) for d in self.model.inputs[0].shape[1:])}),"
                f" got {x.shape}."
            )
        outs = [self(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
        if not outs:
            raise ValueError("predict got an empty batch (0 images).")
        return np.concatenate(outs, axis=0)


# ----------------------------------------------------------------------------------------------------------------
# The default inference path of keras_regnet models.
#
# A RegNetModel's ``call`` (inference: ``training`` False or None) and ``predict`` ask this module first
# (:func:`fast_call`, :func:`prepare_predict`): from the first inference use on, they run an
# ``InferenceModel`` of the model, rebuilt whenever the weights or the trainable flags changed. Weight changes are
# seen through a per-model counter that every assignment to one of the model's variables bumps, eager or inside a
# traced function (``fit``, ``train_on_batch``, custom training loops, ``set_weights``, ``load_weights``, BatchNorm
# statistics), see :func:`keras_regnet._compat.on_variable_assign`. The fast path is used only where it cannot be
# stale or wrong: eagerly (no gradient tape recording: gradients need the variables) and inside the traced
# ``predict`` function, which is re-made whenever the fast path is rebuilt. Everywhere else (other backends, a tape,
# a ``tf.function`` of the user's, ``evaluate``, symbolic calls, masks, other input shapes) the Keras graph runs.

_STATE_ATTR = "_keras_regnet_fast_path"
_WARM_USES = 1  # build on the first inference use: every inference call of a model computes the same graph, so two predictions with the same weights are bit-identical


class _Counter:
    """A model's weight-change counter: a scalar int64 tf.Variable, bumped by every assignment to its variables."""

    __slots__ = ("variable", "untracked")

    def __init__(self, tf):
        with tf.init_scope():
            self.variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="keras_regnet_weights_version")
        self.untracked = False  # set when an assignment could not be counted (then the fast path turns itself off)

    def bump(self):
        import tensorflow as tf

        if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
            self.untracked = True  # per-replica updates: not counted, so never trust a snapshot again
            return
        self.variable.assign_add(1)


class _State:
    __slots__ = ("counter", "key", "uses", "fast", "predict_with", "enabled", "builds", "calls", "failure", "layers")

    def __init__(self, counter):
        self.counter = counter
        self.layers = None  # every layer of the model (nested ones included), listed on the first check
        self.key = None
        self.uses = 0
        self.fast = None
        self.predict_with = None  # the InferenceModel the model's current predict_function was traced with
        self.enabled = True
        self.builds = 0
        self.calls = 0  # calls answered by the fast path
        self.failure = None


def _state(model, create=True):
    state = model.__dict__.get(_STATE_ATTR)
    if state is None and create:
        import keras

        if keras.backend.backend() != "tensorflow":
            return None
        tf = _tf()
        _compat().on_variable_assign(_bump_counters)
        counter = _Counter(tf)
        for variable in model.weights:
            for v in _compat().variable_objects(variable):  # the Keras variable and the tf.Variable it wraps
                object.__setattr__(v, _STATE_ATTR, (*getattr(v, _STATE_ATTR, ()), counter))
        state = _State(counter)
        object.__setattr__(model, _STATE_ATTR, state)
    return state


def _bump_counters(variable):
    """Called by every Keras variable assignment (eager or traced): bump the counters of the models holding it."""
    for counter in getattr(variable, _STATE_ATTR, ()):
        counter.bump()


def track_weights(model):
    """Start counting weight changes of ``model`` (call it when the model is built, before any training function is
    traced; the model class does). A no-op on backends other than TensorFlow."""
    _state(model)


def set_fast_path(model, enabled=True):
    """Turn ``model``'s fast default inference path on or off (on by default; off: ``predict`` and
    ``model(x, training=False)`` run the Keras graph as ``keras.Model`` does)."""
    state = _state(model)
    if state is None:
        return
    state.enabled = bool(enabled)


def fast_path_info(model):
    """What the default inference path of ``model`` is doing: ``{"active", "builds", "calls", "enabled", "failure"}``.

    ``active``: a fast path is built for the current weights; ``builds``: how many times it was (re)built;
    ``calls``: inference calls it answered (eager calls and ``predict`` calls); ``failure``: why it could not be
    built, if it could not (the Keras graph runs then).
    """
    state = _state(model, create=False)
    if state is None:
        return {"active": False, "builds": 0, "calls": 0, "enabled": False, "failure": None}
    return {"active": state.fast is not None, "builds": state.builds, "calls": state.calls,
            "enabled": state.enabled, "failure": state.failure}


def _key(model, state):
    if state.counter.untracked:
        return None
    if state.layers is None:
        state.layers = tuple(_compat().all_layers(model))  # a built functional model's layers never change
    flags = tuple((layer.trainable, getattr(getattr(layer, "dtype_policy", None), "name", "float32"))
                  for layer in state.layers)
    if any(policy != "float32" for _, policy in flags):
        return None  # mixed precision: the Keras graph keeps each layer's own policy (a float32 softmax)
    return (int(state.counter.variable.numpy()), flags, model.dtype_policy.name)


def _current(model):
    """The InferenceModel for ``model``'s current weights (building it on the second use), or None. Eager only."""
    state = _state(model)
    if state is None or not state.enabled:
        return None
    key = _key(model, state)
    if key is None:
        state.fast, state.key = None, None
        return None
    if key != state.key:
        state.key, state.uses, state.fast, state.failure = key, 0, None, None
    state.uses += 1
    if state.fast is None and state.failure is None and state.uses >= _WARM_USES:
        try:
            state.fast = InferenceModel(model)
            state.builds += 1
        except Exception as e:  # noqa: BLE001 - anything the fast path cannot express runs as Keras graph
            state.failure = f"{type(e).__name__}: {e}"
    return state.fast


_PREDICTING = []  # models whose predict function is being made by prepare_predict's caller (a stack)


class _Predicting:
    def __init__(self, model):
        self.model = model

    def __enter__(self):
        _PREDICTING.append(self.model)

    def __exit__(self, *exc):
        _PREDICTING.pop()


def prepare_predict(model):
    """Before ``predict``/``predict_on_batch``: bring the fast path up to date and re-make ``model``'s predict
    function if it was traced with another one. Returns a context manager to run the Keras predict in."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return _Predicting(None)
    fast = _current(model)
    state = _state(model, create=False)
    if state is not None and state.predict_with is not fast:
        model.predict_function = None  # traced with other weights or without the fast path: trace again
        state.predict_with = fast
    if fast is not None:
        state.calls += 1
    return _Predicting(model if fast is not None else None)


def _as_input(tf, model, inputs):
    """``inputs`` as the tensor the fast function takes, or None when they are not a plain batch it accepts."""
    import keras

    if isinstance(inputs, (dict, list, tuple)) or keras.backend.is_keras_tensor(inputs) or len(model.inputs) != 1:
        return None
    try:
        x = tf.convert_to_tensor(inputs)
    except (TypeError, ValueError):
        return None
    spec = model.inputs[0]
    if not (x.dtype.is_floating or x.dtype.is_integer) or x.shape.rank != len(spec.shape):
        return None
    if any(d is not None and d != s for d, s in zip(x.shape[1:], spec.shape[1:])):
        return None
    dtype = getattr(spec.dtype, "name", spec.dtype)
    return tf.cast(x, dtype) if x.dtype != dtype else x


def eager_call(model, args, kwargs):
    """``model(*args, **kwargs)`` by the fast path for a top-level eager inference call, or None.

    The model's ``__call__`` asks this first, so a plain ``model(x)`` / ``model(x, training=False)`` skips Keras's
    layer-call machinery (about 2-3 ms of a 10-15 ms batch-1 call on 2 CPU cores). Only a call that Keras would run
    as plain inference qualifies: one array or tensor argument, no ``mask`` or other keywords, ``training`` False or
    None, not nested in another layer's call (whose ``training`` the model would inherit), eager, no gradient tape.
    Everything else goes through ``keras.Model.__call__`` (and :func:`fast_call` inside it)."""
    if len(args) != 1 or (kwargs and (set(kwargs) != {"training"} or kwargs["training"])):
        return None
    ready = _eager_ready(model)
    if ready is None:
        return None
    tf, state = ready
    return _answer_eagerly(tf, model, state, args[0])


def _eager_ready(model):
    """``(tf, state)`` when the fast path may answer a top-level call of ``model`` now (enabled, not failed; eager,
    no gradient tape, not inside another layer's call), else None."""
    state = model.__dict__.get(_STATE_ATTR)
    if state is None or not state.enabled or state.fast is None and state.failure is not None:
        return None
    # A plain import (state exists only on the TensorFlow backend): the model's __call__ is user code to AutoGraph,
    # which converts what it calls inside a user's tf.function, and _extras.require's importlib.import_module would
    # make it warn that it cannot convert importlib's internals.
    import tensorflow as tf

    if not tf.executing_eagerly() or _compat().tape_recording() or _compat().in_layer_call():
        return None
    return tf, state


def _answer_eagerly(tf, model, state, inputs):
    """The fast path's outputs for ``inputs`` (eager, no tape), or None when it cannot answer them."""
    x = _as_input(tf, model, inputs)
    if x is None:
        return None
    fast = _current(model)
    if fast is None:
        return None
    state.calls += 1
    return fast.function(x)


def predict_arrays(model, x, batch_size=None, verbose="auto"):
    """``model.predict(x, batch_size, verbose)`` by the fast path for an in-memory batch, or None.

    Keras's ``predict`` builds a tf.data pipeline, an epoch iterator and a callback list on every call: about 40 ms
    of a batch-1 ``predict`` that the model itself answers in 12 ms (2 CPU cores). For a NumPy array or a tensor,
    with no ``steps`` or callbacks, outside a distribution strategy, the model's ``predict`` asks this first: the
    batches of ``batch_size`` (default 32, Keras's) go through the fast path one by one, with Keras's progress bar
    (``keras.utils.Progbar``, ``verbose`` as Keras reads it), and the outputs come back as NumPy arrays of the
    model's output structure, concatenated, as ``predict`` returns them. Anything else (a data set, a generator,
    a ``PyDataset``, callbacks, a mixed-precision model the fast path does not serve) returns None and runs
    Keras's own ``predict``."""
    import keras

    ready = _eager_ready(model)
    if ready is None:
        return None
    tf, state = ready
    if not isinstance(x, (np.ndarray, tf.Tensor)) or x.ndim < 1 or tf.distribute.has_strategy():
        return None
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        return None  # Keras's own predict says what is wrong with it
    batch_size = batch_size or 32
    n = int(x.shape[0])
    batches = -(-n // batch_size)
    verbose = 1 if verbose == "auto" else verbose
    bar = keras.utils.Progbar(batches, verbose=verbose, unit_name="step") if verbose else None
    parts = []
    for i in range(batches):
        out = _answer_eagerly(tf, model, state, x[i * batch_size:(i + 1) * batch_size])
        if out is None:  # not a batch the fast function takes (the first batch decides: all have its shape)
            return None
        parts.append(keras.tree.map_structure(np.asarray, out))
        if bar is not None:  # as Keras's ProgbarLogger: an update per batch, then a final one
            bar.update(i + 1, finalize=False)
    if bar is not None:
        bar.update(batches, finalize=True)
    if len(parts) == 1:
        return parts[0]
    return keras.tree.map_structure(lambda *leaves: np.concatenate(leaves, axis=0), *parts)


def fast_call(model, inputs, training=None, mask=None):
    """``model(inputs, training)`` by the fast path, or None where the Keras graph must run (see above).

    Called at the start of every call of the model (also symbolic and training calls: the first one starts the
    weight-change counting, before the assignments of a traced training step are traced)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    state = _state(model)
    if training or mask is not None or not state.enabled:
        return None
    tf = _tf()
    if tf.executing_eagerly():
        return None if _compat().tape_recording() else _answer_eagerly(tf, model, state, inputs)
    if _PREDICTING and _PREDICTING[-1] is model and state.predict_with is not None:
        # Tracing the predict function that prepare_predict re-made for the current fast path.
        x = _as_input(tf, model, inputs)
        if x is not None:
            return state.predict_with.function(x)
    return None


# --------------------------------------------------------------------------- Keras / TensorFlow internals used here


def _compat():
    return _internals


class _internals:  # noqa: N801 - a namespace (moves to keras_regnet._compat)
    _assign_hooks = []

    @staticmethod
    def on_variable_assign(hook):
        """Call ``hook(variable)`` after every assignment to a Keras variable on the TensorFlow backend, eager or
        traced (``Variable.assign*``, ``set_weights``, ``load_weights``, BatchNorm statistics, every optimizer
        update, which the TF optimizer applies to the underlying ``tf.Variable``)."""
        hooks = _internals._assign_hooks
        if hook in hooks:
            return
        hooks.append(hook)
        if len(hooks) > 1:
            return
        from keras.src.backend.tensorflow import core
        from keras.src.backend.tensorflow import optimizer as tf_optimizer

        direct_assign = core.Variable._direct_assign

        def _direct_assign(self, value):
            direct_assign(self, value)
            for h in hooks:
                h(self)

        core.Variable._direct_assign = _direct_assign
        for name in ("assign", "assign_add", "assign_sub"):
            original = getattr(tf_optimizer.TFOptimizer, name)

            def patched(self, variable, value, _original=original):
                result = _original(self, variable, value)
                for h in hooks:
                    h(variable)
                return result

            setattr(tf_optimizer.TFOptimizer, name, patched)

    @staticmethod
    def variable_objects(variable):
        """The Keras variable and the ``tf.Variable`` holding its value (the TF optimizer updates the latter)."""
        inner = getattr(variable, "_value", None)
        return (variable,) if inner is None else (variable, inner)

    @staticmethod
    def tape_recording():
        """Whether a gradient tape could record the ops run now (eager)."""
        from tensorflow.python.eager import record

        return record.could_possibly_record()

    @staticmethod
    def all_layers(model):
        """Every layer inside ``model``, nested ones included."""
        from keras_regnet._compat import all_layers

        return all_layers(model)

    @staticmethod
    def in_layer_call():
        """Whether another layer's call is running (see keras_regnet._compat.in_layer_call)."""
        from keras_regnet._compat import in_layer_call

        return in_layer_call()


class _Path:
    """What keras_regnet.model's RegNetModel asks first at inference (see keras_regnet.layers.set_inference_path)."""

    call = staticmethod(fast_call)
    eager_call = staticmethod(eager_call)
    predicting = staticmethod(prepare_predict)
    predict_arrays = staticmethod(predict_arrays)


def _install():
    try:
        from keras_regnet import layers
    except ImportError:  # Keras is not installed: no model class to serve
        return
    layers.set_inference_path(_Path)


_install()
