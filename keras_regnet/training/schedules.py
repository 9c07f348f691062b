"""The paper's learning-rate schedule: linear warm-up then half-period cosine, set once per epoch as pycls does."""

from __future__ import annotations

import math

import keras

__all__ = ["WarmupCosine", "paper_epoch_lr", "scaled_learning_rate"]


def scaled_learning_rate(global_batch_size: int, lr_per_128: float = 0.1) -> float:
    """The linear scaling rule of the paper: ``lr = lr_per_128 * global_batch_size / 128``."""
    if global_batch_size < 1:
        raise ValueError(f"global batch size must be positive, got {global_batch_size}.")
    return lr_per_128 * global_batch_size / 128.0


def paper_epoch_lr(epoch, base_lr, epochs, warmup_epochs=5, warmup_factor=0.1, min_lr=0.0):
    """pycls's ``get_epoch_lr``: ``base_lr * 0.5 * (1 + cos(pi * epoch / epochs))`` (floored at ``min_lr`` as a
    fraction of ``base_lr``), times the warm-up factor ``warmup_factor * (1 - a) + a`` with
    ``a = epoch / warmup_epochs`` during the first ``warmup_epochs`` epochs. ``epoch`` may be fractional."""
    lr = 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    lr = base_lr * ((1.0 - min_lr) * lr + min_lr)
    if epoch < warmup_epochs:
        alpha = epoch / warmup_epochs
        lr *= warmup_factor * (1.0 - alpha) + alpha
    return lr


@keras.saving.register_keras_serializable(package="keras_regnet")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """:func:`paper_epoch_lr` as a Keras schedule of the optimizer step.

    With ``per_epoch=True`` (the paper's pycls trainer, our default) the rate is constant within an epoch:
    ``epoch = floor(step / steps_per_epoch)``. ``per_epoch=False`` evaluates the same curve at the fractional
    epoch of every step (smoother; common in later recipes). The position is the optimizer's step counter, which
    checkpoints and ``BackupAndRestore`` save, so a resumed run continues the schedule where it stopped.
    """

    def __init__(self, base_lr, epochs, steps_per_epoch, warmup_epochs=5, warmup_factor=0.1, min_lr=0.0,
                 per_epoch=True):
        if epochs < 1 or steps_per_epoch < 1:
            raise ValueError(f"epochs and steps_per_epoch must be positive, got {epochs} and {steps_per_epoch}.")
        if not 0 <= warmup_epochs < epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs={epochs}), got {warmup_epochs}.")
        self.base_lr = float(base_lr)
        self.epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_factor = float(warmup_factor)
        self.min_lr = float(min_lr)
        self.per_epoch = bool(per_epoch)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        epoch = step / float(self.steps_per_epoch)
        if self.per_epoch:
            epoch = ops.floor(epoch)
        epoch = ops.minimum(epoch, float(self.epochs))
        cos = 0.5 * (1.0 + ops.cos(math.pi * epoch / float(self.epochs)))
        lr = self.base_lr * ((1.0 - self.min_lr) * cos + self.min_lr)
        if self.warmup_epochs > 0:
            alpha = ops.minimum(epoch / self.warmup_epochs, 1.0)
            lr = lr * (self.warmup_factor * (1.0 - alpha) + alpha)
        return lr

    def get_config(self):
        return dict(base_lr=self.base_lr, epochs=self.epochs, steps_per_epoch=self.steps_per_epoch,
                    warmup_epochs=self.warmup_epochs, warmup_factor=self.warmup_factor, min_lr=self.min_lr,
                    per_epoch=self.per_epoch)
