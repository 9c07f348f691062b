"""Callbacks of the recipe: learning-rate logging, precise BatchNorm statistics, NaN guard with a clear message."""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_regnet._compat import all_layers

__all__ = [
    "LearningRateLogger",
    "PreciseBN",
    "TerminateOnNaN",
    "GuardedBackupAndRestore",
    "GuardedModelCheckpoint",
    "Validation",
    "SwapBack",
    "FiniteOutputs",
    "batchnorm_layers",
]


# A validation cross-entropy above this is numerical breakdown, not a bad model (the clipped cross-entropy of a
# softmax is at most -log(1e-7) = 16.1 per image): the run is stopped as diverged.
EXPLODED_LOSS = 1e6


def _current_lr(optimizer):
    lr = optimizer.learning_rate  # schedules are evaluated at the optimizer's step by the property
    return float(keras.ops.convert_to_numpy(lr))


class LearningRateLogger(keras.callbacks.Callback):
    """Adds ``learning_rate`` (the rate used by the epoch's first step) to the epoch logs.

    Put it before CSVLogger / TensorBoard so they record it. The value is read at the optimizer's step counter,
    so after a resume it shows where the schedule really is.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._lr = _current_lr(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._lr


def batchnorm_layers(model):
    """BatchNormalization layers that train (trainable ones; frozen ones run in inference mode), nested too."""
    found = []
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            found.append(layer)
    return found


class PreciseBN(keras.callbacks.Callback):
    """Recompute BatchNorm moving statistics after each epoch, as pycls does (``BN.NUM_SAMPLES_PRECISE``).

    The moving averages that training leaves behind mix statistics of weights from many steps; precise BN
    replaces them with the mean over ``num_batches`` training batches of each BN layer's batch mean and batch
    variance, computed with the final weights in training mode (each BN normalising with its batch statistics,
    exactly as pycls's ``compute_precise_bn_stats`` runs the network with momentum 1). The data set should be a
    deterministic stream of training batches (every worker then computes the same statistics).
    """

    def __init__(self, dataset, num_batches, guard=None):
        super().__init__()
        self.dataset = dataset
        self.num_batches = int(num_batches)
        self.guard = guard
        self._probe = None

    def _build_probe(self):
        bns = batchnorm_layers(self.model)
        if not bns:
            return None, []
        probe = keras.Model(self.model.inputs[0], [bn.input for bn in bns])  # called with one tensor

        def stats(images):
            """Each BN input's batch mean and unbiased batch variance (as PyTorch stores in running_var)."""
            outs = probe(images, training=True)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            result = []
            for x in outs:
                x = keras.ops.cast(x, "float32")
                axes = tuple(range(len(x.shape) - 1))
                n = keras.ops.cast(keras.ops.prod(keras.ops.shape(x)[:-1]), "float32")
                var = keras.ops.var(x, axis=axes) * n / keras.ops.maximum(n - 1.0, 1.0)
                result.append((keras.ops.mean(x, axis=axes), var))
            return result

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            stats = tf.function(stats, reduce_retracing=True)  # one graph instead of eager layer calls
        return stats, bns

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is None or self.guard.message is None:
            self.recompute()

    def recompute(self):
        """Recompute now; returns the number of BN layers updated."""
        if self._probe is None:
            self._probe = self._build_probe()
        probe, bns = self._probe
        if probe is None or self.num_batches < 1:
            return 0
        means = [np.zeros(bn.moving_mean.shape, np.float64) for bn in bns]
        variances = [np.zeros(bn.moving_variance.shape, np.float64) for bn in bns]
        seen = 0
        for images, _ in self.dataset.take(self.num_batches):
            for i, (mean, var) in enumerate(probe(images)):
                means[i] += keras.ops.convert_to_numpy(mean)
                variances[i] += keras.ops.convert_to_numpy(var)
            seen += 1
        if seen == 0:
            return 0
        for bn, m, v in zip(bns, means, variances):
            bn.moving_mean.assign((m / seen).astype("float32"))
            bn.moving_variance.assign((v / seen).astype("float32"))
        return len(bns)


class TerminateOnNaN(keras.callbacks.Callback):
    """Stop at the first NaN/inf loss and explain what to do (the last good epoch is in the checkpoints)."""

    def __init__(self):
        super().__init__()
        self.message = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(keras.ops.convert_to_numpy(loss))
        if not math.isfinite(loss):
            self.message = (
                f"training stopped: the loss became {loss} at epoch {self._epoch + 1}, batch {batch + 1} "
                f"(learning rate {_current_lr(self.model.optimizer):.4g}). The run diverged: lower --lr "
                "(or raise --warmup-epochs), check the data, or train in float32 (--precision float32). The "
                "checkpoints of the last finished epoch are kept; rerunning the same command resumes from them."
            )
            self.model.stop_training = True

    def stop(self, message):
        """Stop training with ``message`` (first one wins): no checkpoint or backup of this epoch is written."""
        if self.message is None:
            self.message = message
        self.model.stop_training = True


class GuardedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` (per epoch, previous backup kept) that never backs up a diverged model.

    Keras still calls ``on_epoch_end`` after a callback stops training mid-epoch; saving there would make the
    resume start from NaN weights. The backup is kept after training (the trainer deletes it once the whole run
    has finished), so a stopped run resumes from its last good epoch.
    """

    def __init__(self, backup_dir, guard):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False, double_checkpoint=True)
        self.guard = guard

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.message is None:
            super().on_epoch_end(epoch, logs)


class GuardedModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` that skips saving once the NaN guard has fired."""

    def __init__(self, filepath, guard, **kwargs):
        super().__init__(filepath, **kwargs)
        self.guard = guard

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.message is None:
            super().on_epoch_end(epoch, logs)


class Validation(keras.callbacks.Callback):
    """Evaluate on the validation data at the end of each epoch, *after* the callbacks before it (precise BN),
    as pycls tests after recomputing BN statistics; adds ``val_*`` entries to the logs.

    With an EMA optimizer the averaged weights are swapped in for evaluation and left in place for the
    checkpoint callbacks that follow; :class:`SwapBack` (after them, before the backup) swaps the training
    weights back.
    """

    def __init__(self, dataset, guard, steps=None, swap_ema=False):
        super().__init__()
        self.dataset = dataset
        self.guard = guard
        self.steps = steps
        self.swap_ema = swap_ema
        self.swapped = False

    def _swapper(self):
        swapper = keras.callbacks.SwapEMAWeights(swap_on_epoch=False)
        swapper.set_model(self.model)
        return swapper

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.message is not None:
            return
        if self.swap_ema:
            self._swapper().on_test_begin()
            self.swapped = True
        results = self.model.evaluate(self.dataset, steps=self.steps, verbose=0, return_dict=True)
        results = {f"val_{k}": float(v) for k, v in results.items()}
        if logs is not None:
            logs.update(results)
        bad = {k: v for k, v in results.items() if not math.isfinite(v)}
        loss = results.get("val_loss")
        if not bad and loss is not None and loss > EXPLODED_LOSS:
            bad = {"val_loss": f"{loss:.3g} (exploded)"}
        if bad:
            self.guard.stop(
                f"training stopped: the validation {', '.join(f'{k[4:]} became {v}' for k, v in bad.items())} at "
                f"epoch {epoch + 1} while the training loss stayed finite (the model's inference-mode outputs "
                "overflow: rate too high for this batch size or too few steps for the BatchNorm statistics). "
                "Lower --lr or raise --warmup-epochs; the checkpoints of the last good epoch are kept and "
                "nothing was exported."
            )

    def swap_back(self):
        if self.swapped:
            self._swapper().on_test_end()
            self.swapped = False


class FiniteOutputs(keras.callbacks.Callback):
    """At the end of each epoch, stop the run (via the guard) if the model's inference-mode outputs on a few
    sample images are not finite, before any checkpoint of that epoch is saved."""

    def __init__(self, images, guard):
        super().__init__()
        self.images = images
        self.guard = guard

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.message is not None:
            return
        out = keras.ops.convert_to_numpy(self.model(self.images, training=False))
        bad = int((~np.isfinite(out)).sum())
        if bad:
            self.guard.stop(
                f"training stopped: the model gives non-finite outputs ({bad} of {out.size} values) on sample "
                f"images after epoch {epoch + 1} although the training loss stayed finite. Lower --lr or raise "
                "--warmup-epochs; the checkpoints of the last good epoch are kept and nothing was exported."
            )


class SwapBack(keras.callbacks.Callback):
    """Restore the training weights after :class:`Validation` swapped the EMA weights in."""

    def __init__(self, validation):
        super().__init__()
        self.validation = validation

    def on_epoch_end(self, epoch, logs=None):
        self.validation.swap_back()
