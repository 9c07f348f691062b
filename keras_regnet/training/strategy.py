"""Choosing a ``tf.distribute`` strategy and scaling batch size and learning rate with the replicas."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings

__all__ = ["STRATEGIES", "make_strategy", "worker_info", "WorkerInfo", "global_batch_size"]

STRATEGIES = ("auto", "mirrored", "multi_worker", "tpu", "one_device")


def make_strategy(name: str = "auto", tpu: str | None = None):
    """A ``tf.distribute.Strategy`` by name.

    - ``auto``: MirroredStrategy over all visible GPUs; OneDeviceStrategy on the CPU when there is none.
    - ``mirrored``: MirroredStrategy over all GPUs, or over all logical CPU devices on a CPU-only machine.
    - ``multi_worker``: MultiWorkerMirroredStrategy configured by the ``TF_CONFIG`` environment variable (installs
      :mod:`keras_regnet.training.multiworker_shim` for keras-team/keras#20585).
    - ``tpu``: TPUStrategy; ``tpu`` is the TPU name or ``grpc://`` address for ``TPUClusterResolver`` (``"local"`` on a TPU VM;
      ``None``: what the Cloud TPU environment configured).
    - ``one_device``: the first GPU, else the CPU.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")
    if name == "multi_worker":
        # Before anything initialises the TensorFlow runtime (listing devices does): collectives are set up
        # at program start.
        _check_tf_config()
        from keras_regnet.training import multiworker_shim

        multiworker_shim.apply()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if gpus else tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _check_tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        warnings.warn("--strategy multi_worker without TF_CONFIG: running as a single worker.", stacklevel=3)
        return
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        if task["type"] not in config["cluster"] or not 0 <= int(task["index"]) < len(config["cluster"][task["type"]]):
            raise KeyError("task")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            "TF_CONFIG must be JSON like {\"cluster\": {\"worker\": [\"host1:port\", \"host2:port\"]}, "
            f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}} (this machine's index); got {raw!r} ({e})."
        ) from None
    del workers


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """Who this process is in the cluster: the chief writes logs, checkpoints and exports."""

    task_type: str
    task_id: int
    num_workers: int

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_id == 0)


def worker_info(strategy) -> WorkerInfo:
    """This process's role (single-machine strategies: the chief of one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return WorkerInfo("worker", 0, 1)
    spec = resolver.cluster_spec().as_dict()
    num = sum(len(v) for k, v in spec.items() if k in ("chief", "worker"))
    return WorkerInfo(resolver.task_type, int(resolver.task_id), max(num, 1))


def global_batch_size(batch_size: int | None, strategy, per_replica_default: int = 128) -> int:
    """The global batch: ``batch_size`` if given (it must divide evenly over the replicas), else
    ``per_replica_default`` per replica, so the batch grows with the number of replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size is None:
        return per_replica_default * replicas
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}.")
    if batch_size % replicas:
        raise ValueError(
            f"the global batch size {batch_size} does not divide evenly over {replicas} replicas; use a multiple "
            f"of {replicas} (e.g. {max(1, batch_size // replicas) * replicas})."
        )
    return batch_size
