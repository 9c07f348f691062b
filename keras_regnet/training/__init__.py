"""Training RegNets with ``model.fit`` on ``tf.distribute``: the paper's ImageNet recipe and fine-tuning.

Importing this package registers every object the trainer puts into a saved model with Keras
(``keras_regnet>DecaySGD``, ``keras_regnet>WarmupCosine``), so compiled ``best.keras``/``last.keras`` files load
with ``keras.saving.load_model``. The losses and metrics it compiles with are Keras's own.
"""

from keras_regnet.training import optim, schedules  # noqa: F401  (registration)

# The modules whose import registers the serializable objects of compiled training checkpoints.
SERIALIZABLE_MODULES = ("keras_regnet.training.optim", "keras_regnet.training.schedules")
