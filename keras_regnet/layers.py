"""GroupConv2D and BatchNorm: stock Keras layers with faster TensorFlow paths.

GroupConv2D is a grouped convolution that runs TensorFlow's native op instead of Keras's forced-XLA path.

Keras 3's TensorFlow backend wraps every grouped ``Conv2D`` in ``tf.function(jit_compile=True)`` because the
native CPU kernel was once broken. On TF >= 2.16 with oneDNN the native op gives identical outputs, runs faster,
does not retrace on every eager call, and leaves exported SavedModels free of "must compile" functions.
The layer is a ``keras.layers.Conv2D`` with the same config and kernel layout, so weights move freely between
the two; on other backends it simply calls ``keras.ops.conv``.
"""

from __future__ import annotations

import functools
import warnings

import keras

__all__ = ["GroupConv2D", "BatchNorm", "native_grouped_conv_supported", "set_inference_path", "inference_path"]

# The fast inference path that RegNetModel (keras_regnet.model) asks first in ``call``/``predict``; installed by
# keras_regnet.inference. It is held here, in a module fully imported before either of them, so installing it never
# meets a half-imported model module.
_INFERENCE_PATH = [None]


def set_inference_path(path):
    """Install ``path``: ``path.call(model, inputs, training, mask)`` returns the outputs or None (then the Keras
    graph runs); ``path.predicting(model)`` is a context manager around ``predict`` / ``predict_on_batch``."""
    _INFERENCE_PATH[0] = path


def inference_path():
    """The installed inference path (see :func:`set_inference_path`), or None."""
    return _INFERENCE_PATH[0]


@functools.lru_cache(maxsize=None)
def _cpu_has_avx512_fp16() -> bool:
    """Whether this CPU has AVX-512 FP16 (oneDNN needs it for float16 grouped-conv gradients)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512_fp16" in line.split()
    except OSError:
        pass
    return False


def native_grouped_conv_supported(dtype: str) -> bool:
    """Whether TF's native grouped conv can run (forward and backward) for ``dtype`` on this machine.

    GPUs support every float dtype. On CPU, float16 gradients need AVX-512 FP16; without it, the layer
    computes in float32 instead (same result up to float16 rounding) and warns once.
    """
    if dtype != "float16":
        return True
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU")) or _cpu_has_avx512_fp16()


_WARNED = set()


@keras.saving.register_keras_serializable(package="keras_regnet")
class GroupConv2D(keras.layers.Conv2D):
    """``Conv2D(groups=g)`` whose TensorFlow path calls the native grouped convolution (no forced XLA)."""

    def convolution_op(self, inputs, kernel):
        if keras.backend.backend() != "tensorflow" or self.groups == 1:
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf

        if self.data_format == "channels_first":
            # TF's CPU convolutions are NHWC only: transpose around the native NHWC grouped conv (no forced XLA).
            nhwc = tf.transpose(inputs, [0, 2, 3, 1])
            return tf.transpose(self._native_nhwc(nhwc, kernel), [0, 3, 1, 2])
        return self._native_nhwc(inputs, kernel)

    def _native_nhwc(self, inputs, kernel):
        import tensorflow as tf

        compute_dtype = inputs.dtype
        if compute_dtype == tf.float16 and not native_grouped_conv_supported("float16"):
            if self.name not in _WARNED:
                _WARNED.add(self.name)
                warnings.warn(
                    f"{self.name}: this CPU lacks AVX-512 FP16, which TensorFlow's grouped convolution needs for "
                    "float16 gradients; computing this layer in float32 instead (outputs are cast back to float16).",
                    RuntimeWarning,
                    stacklevel=2,
                )
            out = tf.nn.conv2d(
                tf.cast(inputs, tf.float32),
                tf.cast(kernel, tf.float32),
                strides=[1, *self.strides, 1],
                padding=self.padding.upper(),
                dilations=[1, *self.dilation_rate, 1],
            )
            return tf.cast(out, compute_dtype)
        return tf.nn.conv2d(
            inputs,
            kernel,
            strides=[1, *self.strides, 1],
            padding=self.padding.upper(),
            dilations=[1, *self.dilation_rate, 1],
        )


@keras.saving.register_keras_serializable(package="keras_regnet")
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose TensorFlow training step runs TensorFlow's fused kernel.

    Keras 3 normalises in training mode with separate moments / normalise ops (and their separate gradients);
    ``FusedBatchNormV3`` does the forward and the backward pass in one kernel each, which made a RegNetY-600MF
    training step about a third faster on CPU. The result is the same computation in float32: outputs normalised
    with the biased batch variance, moving statistics updated exactly as Keras updates them (the fused op returns
    the unbiased variance, which is rescaled). Inference, other backends, and configurations the fused kernel
    does not cover (masks, float16 inputs, renorm, synchronized BN, non-channels-last axes, no scale/center) run
    Keras's own code. Config, weights and serialisation are those of ``BatchNormalization``.
    """

    def _fusable(self, inputs, training, mask):
        if not (training and self.trainable) or mask is not None or keras.backend.backend() != "tensorflow":
            return False
        if getattr(self, "renorm", False) or getattr(self, "synchronized", False) or not (self.scale and self.center):
            return False
        rank = len(inputs.shape)
        return rank == 4 and self.axis in (3, -1) and inputs.dtype == "float32" and self.moving_mean.dtype == "float32"

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma.value, self.beta.value, epsilon=self.epsilon, is_training=True, data_format="NHWC"
        )
        n = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32)
        variance = unbiased_variance * ((n - 1.0) / tf.maximum(n, 1.0))
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs
