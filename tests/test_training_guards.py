"""The trainer's safety nets on the embedded digits: divergence seen only in validation / inference outputs, and
checkpoints that reload (compiled, with their class names) in a fresh process after ``import keras_regnet``."""

import json
import os
import subprocess
import sys

import keras  # required by [test]: a broken install must fail, not skip
import numpy as np
import pytest

from conftest import TINY
from keras_regnet.training.presets import make_config
from keras_regnet.training.trainer import train

TINY_SPEC = dict(TINY, type="anynet", stem="cifar")


def _config(tmp_path, **kw):
    values = dict(
        model=TINY_SPEC, dataset="digits", epochs=2, steps_per_epoch=3, val_steps=2, precise_bn_images=0,
        output_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "saved_models" / "tiny"), verbose=0,
    )
    values.update(kw)
    return make_config(values.pop("preset", "imagenet"), **values)


class _PoisonMovingStats(keras.callbacks.Callback):
    """From epoch ``at`` on, the BatchNorm moving variance of one layer becomes inf after the last training batch
    (what an overflowing rate does to the statistics): training-mode losses stay finite, inference outputs do not."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch >= self.at:
            bn = next(l for l in self.model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization))
            bn.moving_variance.assign(np.full(bn.moving_variance.shape, -1.0, np.float32))  # sqrt(-1 + eps): nan


@pytest.mark.parametrize("val_split", ["auto", "none"])
@pytest.mark.slow  # two training runs
def test_divergence_seen_only_in_validation_stops_without_export(tmp_path, val_split):
    """The issue's run (batch 5000, 2 steps, lr 3.9) finished with status 'finished', exit 0 and an all-NaN
    SavedModel. Now: status 'diverged', the poisoned epoch is neither checkpointed nor exported."""
    config = _config(tmp_path, val_split=val_split)
    result = train(config, callbacks=[_PoisonMovingStats(at=1)])
    assert result.status == "diverged", result
    assert "training stopped" in result.message and "nothing was exported" in result.message
    assert ("validation loss became nan" in result.message) == (val_split == "auto")
    assert not os.path.exists(tmp_path / "saved_models")
    # The checkpoints hold epoch 1, which was fine: finite outputs.
    saved = keras.saving.load_model(str(tmp_path / "run" / "last.keras"), compile=False)
    out = saved(np.zeros((2, 32, 32, 3), np.float32), training=False)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(out)))


@pytest.mark.slow  # a training run through the CLI
def test_cli_exits_non_zero_with_one_line_when_validation_diverges(tmp_path, capsys, monkeypatch):
    from keras_regnet.commands import train as cmd
    from keras_regnet.training import trainer

    real = trainer.train
    monkeypatch.setattr(trainer, "train", lambda config: real(config, callbacks=[_PoisonMovingStats(at=0)]))
    code = cmd.main(["--config", _write_json(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("training stopped: the validation loss became nan at epoch 1")
    assert not os.path.exists(tmp_path / "run" / "best.keras") and not os.path.exists(tmp_path / "saved_models")


def _write_json(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(dict(model=TINY_SPEC, dataset="digits", epochs=1, steps_per_epoch=2, val_steps=1,
                                    precise_bn_images=0, output_dir=str(tmp_path / "run"),
                                    export_dir=str(tmp_path / "saved_models" / "tiny"))))
    return str(path)


@pytest.mark.slow  # a training run, then a fresh process
def test_checkpoints_reload_compiled_in_a_fresh_process_with_class_names(tmp_path):
    """best.keras and last.keras hold the DecaySGD optimizer with its WarmupCosine schedule: they load compiled
    with only `import keras_regnet` (no custom_objects), carry the data set's class names and eval transform,
    and the exported SavedModel sits in a version folder."""
    result = train(_config(tmp_path, epochs=1, steps_per_epoch=2))
    assert result.status == "finished" and result.best_model
    assert os.path.basename(result.export_dir) == "1" and os.path.isdir(result.export_dir)
    code = (
        "import sys, json, keras, keras_regnet\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    m = keras.saving.load_model(name)\n"
        "    cfg = getattr(m, 'pretrained_cfg', None) or {}\n"
        "    out[name] = [type(m.optimizer).__name__, type(m.optimizer.learning_rate).__name__ if not\n"
        "                 hasattr(m.optimizer, '_learning_rate') else type(m.optimizer._learning_rate).__name__,\n"
        "                 cfg.get('class_names'), cfg.get('size'), cfg.get('crop_pct')]\n"
        "print(json.dumps(out))\n"
    )
    paths = [str(tmp_path / "run" / "best.keras"), str(tmp_path / "run" / "last.keras")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code] + paths, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for path in paths:
        assert got[path] == ["DecaySGD", "WarmupCosine", [str(i) for i in range(10)], 32, 1.0], got


def test_validation_guard_stops_on_non_finite_or_exploded_loss_only():
    """The issue's run (--batch-size 5000 --steps-per-epoch 2, lr 3.9) now ends with val_loss 3.6e27 and chance
    accuracy: stopped as diverged. Finite, ordinary losses pass."""
    from keras_regnet.training.callbacks import TerminateOnNaN, Validation

    class Stub:
        stop_training = False

        def __init__(self, results):
            self.results = results

        def evaluate(self, *args, **kwargs):
            return dict(self.results)

    for results, stopped in (({"loss": 0.4, "accuracy": 0.9}, None), ({"loss": 15.0, "accuracy": 0.1}, None),
                             ({"loss": 3.56e27, "accuracy": 0.1}, "loss became 3.56e+27 (exploded)"),
                             ({"loss": float("nan"), "accuracy": 0.1}, "loss became nan"),
                             ({"loss": 0.5, "accuracy": float("inf")}, "accuracy became inf")):
        guard = TerminateOnNaN()
        model = Stub(results)
        guard.set_model(model)
        validation = Validation(dataset=None, guard=guard)
        validation.set_model(model)
        logs = {}
        validation.on_epoch_end(0, logs)
        assert logs["val_accuracy"] == results["accuracy"] or results["accuracy"] == float("inf")
        if stopped is None:
            assert guard.message is None and not model.stop_training
        else:
            assert stopped in guard.message and model.stop_training and "epoch 1" in guard.message
