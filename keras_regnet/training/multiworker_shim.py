"""Work-around for keras-team/keras#20585: ``model.fit`` under ``MultiWorkerMirroredStrategy`` with Keras 3.

Two spots of ``keras/src/backend/tensorflow/trainer.py`` (Keras 3.7 - 3.15.1, reached through
:func:`keras_regnet._compat.tf_trainer_module`; ``tests/test_compat.py`` checks both still exist) break
multi-worker training:

1. ``TensorFlowTrainer._maybe_symbolic_build`` builds the model from one batch of the distributed iterator. Under
   ``MultiWorkerMirroredStrategy`` that batch is a ``PerReplica`` and the code cross-replica *reduces* it
   (``strategy.reduce("MEAN", batch)``), which fails converting the ``PerReplica`` to a tensor. Only the batch's
   shapes and dtypes matter for building, so the patch builds from the first local replica's values instead
   (also cheaper than a reduction for MirroredStrategy).
2. ``reduce_per_replica`` reduces metric results on a multi-worker strategy with ``strategy.reduce("MEAN", v,
   axis=0)``; the results are scalars, and ``axis=0`` on a rank-0 tensor fails. The patch reduces scalars with
   ``axis=None`` (the mean over replicas) and leaves every other case to Keras.

:func:`apply` installs both patches once (idempotent) and is called by :func:`keras_regnet.training.strategy.
make_strategy` for ``multi_worker``. ``tests/test_training_multiworker.py`` checks that unpatched Keras still
fails: when that test fails, upstream has fixed the bug and this module can be deleted.
"""

from __future__ import annotations

import functools

from keras_regnet._compat import tf_trainer_module

__all__ = ["apply", "is_applied", "KERAS_ISSUE"]

KERAS_ISSUE = "https://github.com/keras-team/keras/issues/20585"
_APPLIED = False


def is_applied() -> bool:
    """Whether :func:`apply` has patched Keras in this process."""
    return _APPLIED


def apply() -> None:
    """Patch Keras's TensorFlow trainer for MultiWorkerMirroredStrategy (see the module docstring)."""
    global _APPLIED
    if _APPLIED:
        return
    import tensorflow as tf
    from keras import tree

    tf_trainer = tf_trainer_module()

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return  # Keras builds at trace time without a strategy.
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda x: self.distribute_strategy.experimental_local_results(x)[0]
                    if isinstance(x, tf.distribute.DistributedValues)
                    else x,
                    batch,
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    original_reduce = tf_trainer.reduce_per_replica

    @functools.wraps(original_reduce)
    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            def _reduce(v):
                if _rank(v) == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original_reduce(v, strategy, reduction)

            return tree.map_structure(_reduce, values)
        return original_reduce(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _APPLIED = True


def _rank(v):
    import tensorflow as tf

    if isinstance(v, tf.distribute.DistributedValues):
        v = v.values[0]
    shape = getattr(v, "shape", None)
    return None if shape is None else len(shape)
