"""SGD with the paper's coupled L2 weight decay (PyTorch ``SGD(weight_decay=...)``), on chosen weights."""

from __future__ import annotations

import keras

__all__ = ["DecaySGD", "is_kernel"]


def is_kernel(variable) -> bool:
    """Convolution / dense kernels (not biases, BatchNorm gamma/beta or other vectors)."""
    # Keras variables have a path ('s1_b1_conv_a/kernel'); inside a tf.distribute update the optimizer may see
    # the backing tf.Variable, named 's1_b1_conv_a/kernel:0'.
    name = getattr(variable, "path", None) or variable.name
    return name.split(":")[0].split("/")[-1] in ("kernel", "depthwise_kernel", "pointwise_kernel")


@keras.saving.register_keras_serializable(package="keras_regnet")
class DecaySGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` plus L2 weight decay added to the gradient before momentum, as pycls trains.

    Keras's own ``weight_decay`` is decoupled (applied to the weights beside the update, never through momentum);
    PyTorch's SGD, which trained the paper's models, adds ``weight_decay * w`` to the gradient. ``decay_on`` picks
    the weights: ``"all"`` (every trainable weight, the paper) or ``"kernels"`` (conv/dense kernels only; biases and
    BatchNorm gamma/beta are not decayed).
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, nesterov=True, l2_decay=5e-5, decay_on="all", **kwargs):
        if decay_on not in ("all", "kernels"):
            raise ValueError(f"decay_on must be 'all' or 'kernels', got {decay_on!r}.")
        if l2_decay < 0:
            raise ValueError(f"weight decay must be >= 0, got {l2_decay}.")
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, **kwargs)
        self.l2_decay = float(l2_decay)
        self.decay_on = decay_on

    def decays(self, variable) -> bool:
        """Whether ``variable`` receives weight decay."""
        return self.l2_decay > 0 and (self.decay_on == "all" or is_kernel(variable))

    def update_step(self, gradient, variable, learning_rate):
        if self.decays(variable):
            gradient = gradient + keras.ops.cast(self.l2_decay, gradient.dtype) * keras.ops.cast(
                variable, gradient.dtype
            )
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config.update(l2_decay=self.l2_decay, decay_on=self.decay_on)
        return config
