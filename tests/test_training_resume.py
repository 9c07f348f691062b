"""End-to-end runs of the trainer on the embedded digits: kill-and-resume, divergence guard, fine-tuning phases."""

import csv
import os

import numpy as np
import pytest

from conftest import TINY

import keras  # required by [test]: a broken install must fail, not skip
import tensorflow as tf

from keras_regnet.training.presets import make_config  # noqa: E402
from keras_regnet.training.schedules import paper_epoch_lr  # noqa: E402
from keras_regnet.training.trainer import train  # noqa: E402

TINY_SPEC = dict(TINY, type="anynet", stem="cifar")
STEPS = 3
BATCH = 32


def _config(tmp_path, **kw):
    values = dict(
        model=TINY_SPEC, dataset="digits", image_size=32, epochs=4, warmup_epochs=2, batch_size=BATCH,
        steps_per_epoch=STEPS, val_steps=2, precise_bn_images=64, output_dir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "saved_models" / "tiny"), verbose=0,
    )
    values.update(kw)
    return make_config(values.pop("preset", "imagenet"), **values)


def _log(run_dir):
    with open(os.path.join(run_dir, "log.csv")) as f:
        return list(csv.DictReader(f))


class _Kill(keras.callbacks.Callback):
    """Simulates the job being killed when epoch ``at`` starts (after epoch at-1 was backed up)."""

    def __init__(self, at):
        super().__init__()
        self.at = at
        self.weights_before_kill = None

    def on_epoch_end(self, epoch, logs=None):
        self.weights_before_kill = [w.copy() for w in self.model.get_weights()]

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt("killed")


class _Start(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self, "epoch"):
            self.epoch = epoch
            self.weights = [w.copy() for w in self.model.get_weights()]
            self.iterations = int(self.model.optimizer.iterations.numpy())


@pytest.mark.slow
def test_killed_run_resumes_at_the_next_epoch_with_the_schedule_position(tmp_path):
    config = _config(tmp_path)
    kill = _Kill(at=2)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[kill])
    rows = _log(config.output_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert os.path.exists(os.path.join(config.output_dir, "backup", "worker_0", "latest.weights.h5"))

    start = _Start()
    result = train(config, callbacks=[start])
    assert result.status == "finished" and result.initial_epoch == 2
    # Restarted at epoch k+1 = 2 with the weights and optimizer step of the end of epoch 1: nothing lost.
    assert start.epoch == 2 and start.iterations == 2 * STEPS
    for a, b in zip(start.weights, kill.weights_before_kill):
        np.testing.assert_array_equal(a, b)
    rows = _log(config.output_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]  # same number of epochs, log appended
    base = 0.1 * BATCH / 128
    expected = [paper_epoch_lr(e, base, 4, warmup_epochs=2) for e in range(4)]
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows], expected, rtol=1e-5)
    assert all(r["val_accuracy"] for r in rows)
    # Finished: backups removed (a rerun would start afresh), best model and SavedModel exported.
    assert not os.path.exists(os.path.join(config.output_dir, "backup"))
    assert result.best_model and os.path.exists(result.best_model)
    loaded = keras.saving.load_model(result.best_model)
    assert loaded.optimizer.get_config()["l2_decay"] == pytest.approx(5e-5)
    # Exported through keras-regnet export's path: <export_dir>/<version>/, both signatures, digits' labels.
    assert result.export_dir == os.path.join(config.export_dir, "1")
    assert os.path.exists(os.path.join(result.export_dir, "saved_model.pb"))
    reloaded = tf.saved_model.load(result.export_dir)
    x = np.random.RandomState(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    out = reloaded.signatures["serving_default"](images=tf.constant(x))
    np.testing.assert_allclose(out["probabilities"].numpy(), loaded.predict(x, verbose=0), rtol=1e-3, atol=1e-5)
    assert set(out["top_k_labels"].numpy().ravel().astype(str)) <= {str(i) for i in range(10)}
    assert os.listdir(os.path.join(config.output_dir, "tensorboard"))


class _Poison(keras.callbacks.Callback):
    """Makes the loss infinite from epoch ``at`` on (a blown-up weight)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            layer = self.model.get_layer("head_fc")
            kernel, bias = layer.get_weights()
            layer.set_weights([np.full_like(kernel, np.inf), bias])


@pytest.mark.slow
def test_divergence_stops_with_a_message_and_keeps_the_last_good_backup(tmp_path):
    config = _config(tmp_path, epochs=3, precise_bn_images=0)
    result = train(config, callbacks=[_Poison(at=1)])
    assert result.status == "diverged" and result.export_dir is None
    assert "loss became nan at epoch 2, batch 1" in result.message.lower() and "--lr" in result.message
    # Epoch 0's backup and checkpoint survive, finite: a rerun resumes from them, not from the blown-up model.
    backup = os.path.join(config.output_dir, "backup", "worker_0")
    with open(os.path.join(backup, "training_metadata.json")) as f:
        assert '"epoch": 1' in f.read()
    model = keras.saving.load_model(os.path.join(config.output_dir, "last.keras"))
    assert all(np.isfinite(w).all() for w in model.get_weights())
    model.load_weights(os.path.join(backup, "latest.weights.h5"))
    assert all(np.isfinite(w).all() for w in model.get_weights())
    rows = _log(config.output_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1] and rows[1]["loss"] == "nan"  # the diverged epoch is logged
    start = _Start()
    resumed = train(config, callbacks=[start])
    assert resumed.status == "finished" and start.epoch == 1 and start.iterations == STEPS
    rows = _log(config.output_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and all(np.isfinite(float(r["loss"])) for r in rows)


@pytest.mark.slow
def test_finetune_freezes_then_unfreezes_and_ema_runs(tmp_path):
    from keras_regnet.models import build_model

    # A "pretrained" backbone saved as a weights file (the registry's weights need the network).
    backbone = build_model(TINY_SPEC, include_top=False, input_shape=(32, 32, 3))
    path = str(tmp_path / "backbone.weights.h5")
    backbone.save_weights(path)
    frozen_kernel = backbone.get_layer("s1_b1_conv_a").get_weights()[0]

    seen = {}

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen[epoch] = (
                self.model.get_layer("s1_b1_conv_a").trainable,
                int(self.model.optimizer.iterations.numpy()),
                self.model.get_layer("s1_b1_conv_a").get_weights()[0].copy(),
            )

    config = _config(tmp_path, preset="finetune", weights=path, freeze_until="s2", unfreeze_epoch=2, epochs=3,
                     warmup_epochs=0, ema=0.9, export=False)
    result = train(config, callbacks=[Spy()])
    assert result.status == "finished"
    assert seen[0][0] is False and seen[1][0] is False and seen[2][0] is True
    assert seen[2][1] == 2 * STEPS  # the schedule continues across the phases
    np.testing.assert_array_equal(seen[2][2], frozen_kernel)  # unchanged while frozen
    rows = _log(config.output_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    expected = [paper_epoch_lr(e, 0.01 * BATCH / 128, 3, warmup_epochs=0) for e in range(3)]
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows], expected, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_float32_softmax_and_weights(tmp_path, precision):
    import warnings

    config = _config(tmp_path, precision=precision, epochs=2, warmup_epochs=1, precise_bn_images=32,
                     label_smoothing=0.1, export=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GroupConv2D's float32 fallback warning on CPUs without AVX-512 FP16
            result = train(config)
        model = keras.saving.load_model(os.path.join(config.output_dir, "last.keras"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert result.status == "finished"
    assert all(np.isfinite(float(r["loss"])) for r in _log(config.output_dir))
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    assert model.get_layer("head_fc").dtype_policy.compute_dtype == precision.split("_")[1]
    assert all(w.dtype == "float32" for w in model.weights)
    out = model.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0)
    assert out.dtype == np.float32 and np.allclose(out.sum(), 1, atol=1e-3)


@pytest.mark.slow
def test_finetune_killed_in_the_unfrozen_phase_resumes_there(tmp_path):
    from keras_regnet.models import build_model

    backbone = build_model(TINY_SPEC, include_top=False, input_shape=(32, 32, 3))
    path = str(tmp_path / "backbone.weights.h5")
    backbone.save_weights(path)
    config = _config(tmp_path, preset="finetune", weights=path, freeze_until="s2", unfreeze_epoch=1, epochs=4,
                     warmup_epochs=0, export=False)
    kill = _Kill(at=3)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[kill])

    class Start(_Start):
        def on_epoch_begin(self, epoch, logs=None):
            super().on_epoch_begin(epoch, logs)
            self.trainable = self.model.get_layer("s1_b1_conv_a").trainable

    start = Start()
    result = train(config, callbacks=[start])
    assert result.status == "finished" and result.initial_epoch == 3
    assert start.epoch == 3 and start.iterations == 3 * STEPS and start.trainable
    for a, b in zip(start.weights, kill.weights_before_kill):
        np.testing.assert_array_equal(a, b)
    rows = _log(config.output_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    expected = [paper_epoch_lr(e, 0.01 * BATCH / 128, 4, warmup_epochs=0) for e in range(4)]
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows], expected, rtol=1e-5)
