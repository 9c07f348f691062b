"""A fast inference mode for keras_regnet (and other functional Keras) models on TensorFlow.

``InferenceModel(model)`` (or ``inference_function(model)``) computes what ``model(x, training=False)`` computes,
from a snapshot of the model's weights, as one traced ``tf.function`` built for speed:

* every BatchNormalization that follows a convolution is folded into it
  (:func:`keras_regnet.export.bn_fold.fold_batchnorm`), so a conv block is one fused oneDNN conv + bias + ReLU;
* weights are graph constants, not variables: grappler folds them, and oneDNN prepacks constant filters once
  instead of reordering them on every call;
* a 1x1 convolution on a 1x1 feature map (the Squeeze-and-Excitation MLP) runs as a matrix multiply, which
  TensorFlow fuses with its bias and activation, instead of a convolution primitive.

Layers it does not know (or in a non-float32 dtype policy) are called as they are, so any functional Keras model
works; the result equals the Keras model's up to float rounding (tested within 1e-5). The snapshot does not follow
later weight changes: build a new ``InferenceModel`` after training. TensorFlow only (it is a TF graph).

    fast = keras_regnet.inference.InferenceModel(model)
    probs = fast(images)                   # a tf.Tensor; images (N, H, W, 3) float RGB 0..255 as for the model
    probs = fast.predict(images, batch_size=32)   # numpy, in batches
"""

from __future__ import annotations

import numpy as np

__all__ = ["InferenceModel", "inference_function"]

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

    def __init__(self, tf, model, matmul_se=True):
        self.tf = tf
        # Snapshot every weight now (eagerly): inside the trace they become graph constants.
        self.values = {id(v): np.asarray(v.numpy()) for v in model.weights}
        self.matmul_se = matmul_se
        self.emitted = {}  # layer class name -> count of layers emitted as plain ops
        self.fallback = {}  # layer class name -> count of layers called as Keras layers

    def _const(self, variable):
        return self.tf.constant(self.values[id(variable)])

    def __call__(self, layer, *args, **kwargs):
        out = self._emit(layer, *args, **kwargs)
        kind = type(layer).__name__
        if out is None:
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
            return tf.reduce_mean(x, axis=[1, 2], keepdims=bool(layer.keepdims))
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
            y = tf.matmul(x, self._const(layer.kernel))
            if layer.use_bias:
                y = tf.nn.bias_add(y, self._const(layer.bias))
            return _apply_activation(tf, y, act)
        if kind == "Activation":
            act = layer.get_config().get("activation")
            if act in _ACTIVATIONS:
                return _apply_activation(tf, x, act)
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


def inference_function(model, *, fold_bn=True, matmul_se=True, jit_compile=False, input_signature=None):
    """A traced ``tf.function`` computing ``model(x, training=False)`` fast (see the module docstring).

    ``fold_bn`` folds BatchNorm into convs; ``matmul_se`` runs 1x1 convs of 1x1 maps as matmuls; ``jit_compile``
    compiles with XLA (slower for grouped convs on CPU as measured; off by default). ``input_signature``
    defaults to the model's input shape with a free batch dimension. Returns the function; its ``.report``
    attribute tells which layers were emitted as plain TF ops and which were called as Keras layers.
    """
    tf = _tf()
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"keras_regnet.inference builds a TensorFlow graph; the Keras backend is {keras.backend.backend()!r}. "
            "Set KERAS_BACKEND=tensorflow, or call the model directly."
        )
    _graph_model(model)
    if fold_bn:
        from keras_regnet.export.bn_fold import fold_batchnorm

        model, _ = fold_batchnorm(model)
    if input_signature is None:
        input_signature = [
            tf.TensorSpec([None, *t.shape[1:]], getattr(t.dtype, "name", t.dtype) or "float32", name=f"input_{i}")
            for i, t in enumerate(model.inputs)
        ]
    emitter = _Emitter(tf, model, matmul_se=matmul_se)

    def forward(*inputs):
        return model._run_through_graph(list(inputs), operation_fn=lambda op: op, call_fn=emitter)

    fn = tf.function(forward, input_signature=input_signature, jit_compile=jit_compile, autograph=False)
    fn.get_concrete_function()  # trace now: errors surface here and the first call is fast
    fn.report = {"emitted": dict(emitter.emitted), "keras_layers": dict(emitter.fallback), "bn_folded": fold_bn}
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
