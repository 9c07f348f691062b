"""Training RegNets with ``model.fit`` on ``tf.distribute``: the paper's ImageNet recipe and fine-tuning.

Every object the trainer puts into a saved model (``keras_regnet>DecaySGD``, ``keras_regnet>WarmupCosine``) is
registered with Keras once Keras and ``keras_regnet`` are imported, so compiled ``best.keras``/``last.keras`` files
load with ``keras.saving.load_model``. The losses and metrics it compiles with are Keras's own.
"""

import importlib

# The modules whose import registers the serializable objects of compiled training checkpoints. ``keras_regnet``
# imports them as soon as Keras is imported; this package imports nothing eagerly, so that its configuration
# checks (``keras_regnet.training.presets``) run without importing Keras or TensorFlow.
SERIALIZABLE_MODULES = ("keras_regnet.training.optim", "keras_regnet.training.schedules")
_SUBMODULES = ("callbacks", "optim", "pipeline", "presets", "schedules", "strategy", "trainer", "multiworker_shim")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
