"""Hostile and careless training runs: config values that make no sense, a validation split whose classes differ,
two runs into one directory, a kill after the last epoch, a failed run's leftovers, validation by default, the
fine-tune epoch counter and the final line of a run without export."""

import csv
import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import TINY
from keras_regnet.training import presets
from keras_regnet.training.presets import make_config

TINY_SPEC = dict(TINY, type="anynet", stem="cifar")


# ------------------------------------------------------------------------------------------- config values


@pytest.mark.parametrize("field,value,flag", [
    ("epochs", True, "--epochs"),
    ("epochs", 2.5, "--epochs"),
    ("lr", math.inf, "--lr"),
    ("lr", math.nan, "--lr"),
    ("lr", "0.1", "--lr"),
    ("momentum", 1.5, "--momentum"),
    ("momentum", -0.1, "--momentum"),
    ("image_size", 100000, "--image-size"),
    ("image_size", True, "--image-size"),
    ("batch_size", -8, "--batch-size"),
    ("seed", -1, "--seed"),
    ("steps_per_epoch", -3, "--steps-per-epoch"),
    ("val_steps", 0, "--val-steps"),
    ("precise_bn_images", -1, "--precise-bn-images"),
    ("cache_mb", -5, "--cache-mb"),
    ("weight_decay", math.inf, "--weight-decay"),
    ("warmup_factor", math.nan, "--warmup-factor"),
    ("dropout", 1.0, "--dropout"),
    ("unfreeze_epoch", True, "--unfreeze-epoch"),
])
def test_nonsense_settings_are_refused_naming_the_flag(field, value, flag):
    """Before: epochs: true, lr: .inf, momentum: 1.5, image_size: 100000 and negative counts/seeds were accepted."""
    extra = dict(freeze_until="s1") if field == "unfreeze_epoch" else {}
    with pytest.raises(ValueError, match=f"^{flag} "):
        make_config(**{field: value}, **extra)


def test_the_shared_checks_serve_the_sweep_too():
    """One validation for train and sweep configs: check_settings with the sweep's own setting names."""
    presets.check_settings(dict(epochs=3, lr=0.1, momentum=0.9, weight_decay=5e-5, seed=0, batch_size=128,
                                image_size=None), name=str)
    with pytest.raises(ValueError, match=r"^momentum must be a number in \[0, 1\)"):
        presets.check_settings(dict(momentum=1.5), name=str)
    with pytest.raises(ValueError, match="^epochs must be an integer"):
        presets.check_settings(dict(epochs=True), name=str)
    from keras_regnet.design_space.sweep import SweepConfig

    for bad, message in ((dict(lr=math.inf), "^lr must be a positive number"),
                         (dict(image_size=100000), "^image_size must be an integer >= 32 and <= 4096")):
        with pytest.raises(ValueError, match=message):
            SweepConfig("AnyNetXA", 4, **bad)


# ------------------------------------------------------------------------------------------- data for runs


def _png(value, size=(24, 24)):
    import tensorflow as tf

    return tf.io.encode_png(np.full(size + (3,), value, np.uint8)).numpy()


def _folder(root, classes, per_class, split=None):
    base = os.path.join(root, split) if split else root
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(base, name), exist_ok=True)
        for i in range(per_class):
            with open(os.path.join(base, name, f"img{i}.png"), "wb") as f:
                f.write(_png((60 * c + 3 * i) % 256))
    return root


def _config(tmp_path, **kw):
    values = dict(
        model=TINY_SPEC, dataset="digits", image_size=32, epochs=1, batch_size=16, steps_per_epoch=2, val_steps=1,
        precise_bn_images=0, output_dir=str(tmp_path / "run"), export_dir=str(tmp_path / "saved_models" / "tiny"),
        verbose=0, export=False,
    )
    values.update(kw)
    return make_config(values.pop("preset", "imagenet"), **values)


def test_a_validation_split_with_a_class_the_model_lacks_is_refused_before_training(tmp_path):
    """Before: val/{dog,zebra} was scored by index against train/{cat,dog}: exit 0 and best.keras chosen on it."""
    from keras_regnet.training.trainer import train

    data = _folder(str(tmp_path / "data"), ["cat", "dog"], per_class=4, split="train")
    _folder(data, ["dog", "zebra"], per_class=2, split="val")
    with pytest.raises(ValueError, match=r"'zebra'.*\['dog', 'zebra'\].*\['cat', 'dog'\]"):
        train(_config(tmp_path, dataset=data))
    assert not os.path.exists(tmp_path / "run")


def test_held_out_validation_slice_by_default(tmp_path):
    """Before: a folder without split folders trained with no validation, silently (val_accuracy NA)."""
    from keras_regnet.training.trainer import resolve_splits

    data = _folder(str(tmp_path / "data"), ["a", "b", "c"], per_class=10)
    config = _config(tmp_path, dataset=data)
    splits = resolve_splits(config)
    assert (splits.train, splits.val) == ("train[:90%]", "train[90%:]")
    assert "held out 10% of 'train' per class (3 images)" in splits.note
    assert resolve_splits(config) == splits  # the same slice every time (and so on resume)
    none = resolve_splits(_config(tmp_path, dataset=data, val_split="none"))
    assert (none.train, none.val) == ("train", None) and "best.keras is the epoch with the best training" in none.note
    digits = resolve_splits(_config(tmp_path))
    assert (digits.train, digits.val) == ("train", "test")
    one_each = _folder(str(tmp_path / "one"), ["a", "b"], per_class=1)
    tiny = resolve_splits(_config(tmp_path, dataset=one_each))
    assert (tiny.train, tiny.val) == ("train", None) and "too few images" in tiny.note


# ------------------------------------------------------------------------------------------- two runs, leftovers


def test_a_second_run_into_a_busy_output_dir_is_refused_in_one_line(tmp_path):
    """Before: the second run died on an HDF5 lock and the first run's cleanup deleted the shared backup."""
    from keras_regnet.training import trainer

    config = _config(tmp_path)
    os.makedirs(config.output_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from keras_regnet.training.trainer import RunLock; "
         f"lock = RunLock({config.output_dir!r}); lock.acquire(); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"--output-dir .* is in use by another train run \(pid {holder.pid}"):
            trainer.train(config)
        assert sorted(os.listdir(config.output_dir)) == [".train.lock"]
    finally:
        holder.stdin.close()
        holder.wait(30)
    lock = trainer.RunLock(config.output_dir)
    lock.acquire()  # free again once the first run has ended
    lock.release()


def test_a_failed_run_leaves_no_config_json(tmp_path):
    """Before: a run that failed while building its model left runs/.../config.json behind."""
    from keras_regnet.training.trainer import train

    config = _config(tmp_path, weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises((ValueError, FileNotFoundError)):
        train(config)
    assert not os.path.exists(tmp_path / "run")


# ------------------------------------------------------------------------------------------- end to end


def _log(run_dir):
    with open(os.path.join(run_dir, "log.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_kill_during_export_then_rerun_finishes_without_retraining(tmp_path, monkeypatch):
    """Before: the backup was removed before the export, so a kill there made the rerun start at epoch 1 and
    overwrite best.keras and log.csv."""
    import keras

    from keras_regnet.training import trainer

    config = _config(tmp_path, epochs=2, export=True)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed during export")

    monkeypatch.setattr(trainer, "_export", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(config)
    monkeypatch.undo()
    run = tmp_path / "run"
    best_mtime = os.path.getmtime(run / "best.keras")
    rows = _log(run)
    assert [r["epoch"] for r in rows] == ["0", "1"]

    class Epochs(keras.callbacks.Callback):
        started = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started.append(epoch)

    result = trainer.train(config, callbacks=[Epochs()])
    assert result.status == "finished" and Epochs.started == []
    assert result.export_dir and os.path.isdir(result.export_dir)
    assert os.path.getmtime(run / "best.keras") == best_mtime and _log(run) == rows
    assert not os.path.exists(run / "backup")


@pytest.mark.slow
def test_cli_finetune_phases_count_the_runs_epochs_and_no_export_says_so(tmp_path):
    """Before: the counter read 1/2, 2/2, 3/3 across the freeze/unfreeze phases, and --no-export printed
    'SavedModel None'. Also: the held-out validation slice is stated once with its size."""
    data = _folder(str(tmp_path / "data"), ["a", "b"], per_class=10)
    config = tmp_path / "model.json"
    config.write_text(json.dumps({"model": TINY_SPEC}))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "keras_regnet.cli", "train", "--config", str(config), "--dataset", data,
         "--image-size", "32", "--epochs", "3", "--freeze-until", "s1", "--unfreeze-epoch", "2", "--batch-size", "8",
         "--steps-per-epoch", "1", "--precise-bn-images", "0", "--no-export", "--output-dir", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert [line.split()[1] for line in out.splitlines() if line.startswith("Epoch ")] == ["1/3", "2/3", "3/3"]
    assert "None" not in proc.stdout and "not exported (--no-export)" in proc.stdout
    assert out.count("validation: held out 10% of 'train' per class (2 images)") == 1
    assert [r["val_accuracy"] not in ("", "NA") for r in _log(tmp_path / "run")] == [True] * 3


def test_an_empty_split_is_refused_before_the_model_sees_an_empty_batch(tmp_path, monkeypatch):
    """A split with no images (e.g. an empty tfds slice) would reach the model as an empty batch, whose error
    names a BatchNorm layer ('stem_bn'): refused first, naming the flag."""
    import dataclasses

    from keras_regnet import datasets
    from keras_regnet.training import trainer

    real = datasets.load_dataset

    def load(name, split, **kw):
        ds, info = real(name, split.split("[")[0], **kw)
        return ds.take(0), dataclasses.replace(info, split=split, num_examples=0 if split == "test" else
                                               info.num_examples)

    monkeypatch.setattr(datasets, "load_dataset", load)
    config = _config(tmp_path, val_split="test")
    with pytest.raises(ValueError, match=r"^--val-split 'test' of 'digits' has no images"):
        trainer._load_data(config)
