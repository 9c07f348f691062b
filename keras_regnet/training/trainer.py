"""One function that runs a recipe end to end: data, strategy, model, optimizer, callbacks, resume, export."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys

__all__ = ["train", "TrainResult", "build_training_model", "resolve_val_split"]


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` produced. ``status`` is ``"finished"`` or ``"diverged"`` (``message`` says more)."""

    status: str
    history: dict
    run_dir: str
    best_model: str | None
    export_dir: str | None
    message: str | None = None
    initial_epoch: int = 0
    global_batch_size: int = 0
    base_lr: float = 0.0
    num_replicas: int = 1


def _model_label(model):
    if isinstance(model, str):
        return model.replace("-", "").replace(".", "_")
    return "custom"


def _check_model(model):
    from keras_regnet import specs

    if isinstance(model, dict):
        specs.params_from_dict(model)  # raises ValueError on a bad spec
        return
    if not isinstance(model, str):
        raise ValueError(f"model must be a paper model name or a spec dict, got {type(model).__name__}.")
    try:
        specs.canonical_name(model)
    except (KeyError, ValueError):
        raise ValueError(
            f"unknown model {model!r}; use one of the paper's models ({', '.join(specs.MODEL_NAMES)}, with or "
            "without the dash, e.g. RegNetY600MF) or a RegNet/AnyNet spec dict in a --config file."
        ) from None


def build_training_model(config, num_classes):
    """The model of a recipe: a fresh classifier, or (with ``weights``) a pretrained backbone with a new head and
    the stages up to ``freeze_until`` frozen. Call inside the strategy scope."""
    from keras_regnet.models import build_model

    shape = (config.image_size, config.image_size, 3)
    model = config.model
    if config.weights:
        from keras_regnet.transfer import transfer_model

        return transfer_model(
            model, num_classes, weights=config.weights, freeze_until=config.freeze_until,
            dropout=config.dropout, input_shape=shape,
        )
    built = build_model(model, weights=None, classes=num_classes, input_shape=shape)
    if config.freeze_until or config.dropout:
        from keras_regnet.transfer import freeze_until, replace_head

        if config.dropout:
            built = replace_head(built, num_classes, dropout=config.dropout)
        if config.freeze_until:
            freeze_until(built, config.freeze_until)
    return built


def resolve_val_split(config):
    """The validation split to use (``None``: no validation)."""
    from keras_regnet.datasets import load_dataset

    if config.val_split in (None, "", "none"):
        return None
    if config.val_split != "auto":
        return config.val_split
    for candidate in ("validation", "val", "test"):
        try:
            load_dataset(config.dataset, candidate, data_dir=config.data_dir, manual_dir=config.manual_dir)
            return candidate
        except ValueError:
            continue
    return None


def _optimizer(config, schedule):
    from keras_regnet.training.optim import DecaySGD

    kwargs = dict(use_ema=True, ema_momentum=config.ema) if config.ema else {}
    return DecaySGD(
        learning_rate=schedule, momentum=config.momentum, nesterov=config.nesterov,
        l2_decay=config.weight_decay, decay_on=config.decay_on, **kwargs,
    )


def _compile(model, config, optimizer, num_classes):
    import keras

    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=metrics,
        jit_compile=bool(config.jit),
    )


def _read_backup_epoch(backup_dir):
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f).get("epoch", 0))


def _trim_log(path, epochs):
    """Keep only the rows of epochs < ``epochs`` of a CSV log (a resumed run rewrites the later ones)."""
    import csv

    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < epochs]
    if len(kept) == len(rows):
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)


def _atomic_export(model, export_dir):
    """``model.export`` into a temporary sibling directory, then rename it into place."""
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(export_dir)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.export(tmp, verbose=False)
    old = None
    if os.path.exists(export_dir):
        old = f"{tmp}.old"
        os.replace(export_dir, old)
    os.replace(tmp, export_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def train(config, callbacks=()) -> TrainResult:
    """Run ``config`` (a :class:`~keras_regnet.training.presets.TrainConfig`) and return a :class:`TrainResult`.

    Rerunning the same config after a crash or kill resumes at the last finished epoch (``BackupAndRestore``,
    one backup directory per worker), with the optimizer step and thus the learning-rate schedule restored.
    ``callbacks`` are extra Keras callbacks.
    """
    import keras

    from keras_regnet.datasets import load_dataset
    from keras_regnet.training import callbacks as cb
    from keras_regnet.training import pipeline
    from keras_regnet.training.presets import validate
    from keras_regnet.training.schedules import WarmupCosine, scaled_learning_rate
    from keras_regnet.training.strategy import global_batch_size, make_strategy, worker_info

    validate(config)
    _check_model(config.model)
    # The strategy first: MultiWorkerMirroredStrategy must be created before TensorFlow runs any op.
    strategy = make_strategy(config.strategy, config.tpu)
    keras.mixed_precision.set_global_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    train_raw, info = load_dataset(
        config.dataset, config.train_split, data_dir=config.data_dir, manual_dir=config.manual_dir,
        download=config.download, shuffle_files=True,
    )
    if info.source != "digits" and None in info.image_shape:
        # Variable-size images (ImageNet, folders): keep them encoded until the pipeline, which shuffles the small
        # records and decodes only each JPEG's crop window.
        train_raw, info = load_dataset(
            config.dataset, config.train_split, data_dir=config.data_dir, manual_dir=config.manual_dir,
            shuffle_files=True, decode=False,
        )
    val_split = resolve_val_split(config)
    val_raw, val_info = (None, None)
    if val_split:
        val_raw, val_info = load_dataset(config.dataset, val_split, data_dir=config.data_dir,
                                         manual_dir=config.manual_dir)

    replicas = strategy.num_replicas_in_sync
    gbs = global_batch_size(config.batch_size, strategy)
    steps_per_epoch = config.steps_per_epoch or info.num_examples // gbs
    if steps_per_epoch < 1:
        raise ValueError(
            f"the global batch size {gbs} is larger than the {info.num_examples} training images of "
            f"{config.dataset!r}; lower --batch-size."
        )
    base_lr = scaled_learning_rate(gbs, config.lr)
    me = worker_info(strategy)

    run_name = f"{_model_label(config.model)}-{os.path.basename(os.path.normpath(config.dataset)).replace(':', '_')}"
    run_dir = config.output_dir or os.path.join("runs", run_name)
    # Only the chief writes the run's files; other workers write to scratch copies (Keras callbacks are not
    # multi-worker aware). Every worker keeps its own backup: one shared h5 file would be locked by the first.
    write_dir = run_dir if me.is_chief else os.path.join(run_dir, "workers", f"worker_{me.task_id}")
    backup_root = os.path.join(run_dir, "backup", f"worker_{me.task_id}")
    os.makedirs(write_dir, exist_ok=True)
    if me.is_chief:
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            json.dump(dict(dataclasses.asdict(config), global_batch_size=gbs, base_lr=base_lr,
                           replicas=replicas, steps_per_epoch=steps_per_epoch), f, indent=2, default=str)

    train_ds = pipeline.train_dataset(
        train_raw, info, image_size=config.image_size, global_batch_size=gbs, seed=config.seed,
        flip=config.flip, lighting_std=config.lighting_std, area_range=(config.min_crop_area, 1.0),
        cache_mb=config.cache_mb,
    )
    val_ds = None
    if val_raw is not None:
        val_ds = pipeline.eval_dataset(val_raw, val_info, image_size=config.image_size, global_batch_size=gbs,
                                       crop_pct=config.eval_crop_pct, cache_mb=config.cache_mb)
    bn_ds, bn_batches = None, 0
    if config.precise_bn_images > 0:
        per_replica = gbs // replicas
        bn_batches = min(math.ceil(config.precise_bn_images / per_replica), max(info.num_examples // per_replica, 1))
        bn_ds = pipeline.train_dataset(
            train_raw, info, image_size=config.image_size, global_batch_size=per_replica, seed=config.seed + 1,
            flip=config.flip, lighting_std=config.lighting_std, area_range=(config.min_crop_area, 1.0),
            cache_mb=config.cache_mb, repeat=False, shuffle_buffer=1024,
        )

    schedule = WarmupCosine(base_lr, config.epochs, steps_per_epoch, warmup_epochs=config.warmup_epochs,
                            warmup_factor=config.warmup_factor, min_lr=config.min_lr, per_epoch=config.lr_per_epoch)
    # Fine-tuning in two phases: frozen stages until unfreeze_epoch, then everything. Each phase has its own
    # backup directory (the optimizer state differs), and a resumed run skips a phase that already finished.
    phases = [(config.unfreeze_epoch, config.freeze_until), (config.epochs, None)] if config.unfreeze_epoch \
        else [(config.epochs, config.freeze_until)]
    phase_dirs = [os.path.join(backup_root, f"phase{i}") for i in range(len(phases))] if len(phases) > 1 \
        else [backup_root]

    with strategy.scope():
        model = build_training_model(config, info.num_classes)
    guard = cb.TerminateOnNaN()
    history: dict = {}
    start_epoch = 0
    first_initial = None
    resuming = any(_read_backup_epoch(d) > 0 for d in phase_dirs)
    best_path = os.path.join(write_dir, "best.keras")
    for index, ((end_epoch, frozen), backup_dir) in enumerate(zip(phases, phase_dirs)):
        later_started = any(_read_backup_epoch(d) > 0 for d in phase_dirs[index + 1:])
        if later_started:
            start_epoch = end_epoch
            continue
        with strategy.scope():
            if index > 0:
                from keras_regnet.transfer import freeze_until

                freeze_until(model, frozen)
            optimizer = _optimizer(config, schedule)
            _compile(model, config, optimizer, info.num_classes)
            if index > 0:
                optimizer.build(model.trainable_variables)
                optimizer.iterations.assign(start_epoch * steps_per_epoch)
        validation = cb.Validation(val_ds, guard, steps=config.val_steps, swap_ema=bool(config.ema)) \
            if val_ds is not None else None
        monitor = "val_accuracy" if val_ds is not None else "accuracy"
        cbs = [guard]
        if bn_ds is not None:
            cbs.append(cb.PreciseBN(bn_ds, bn_batches, guard))
        if validation is not None:
            cbs.append(validation)
        cbs += [
            cb.LearningRateLogger(),
            keras.callbacks.CSVLogger(os.path.join(write_dir, "log.csv"), append=resuming or index > 0),
            keras.callbacks.TensorBoard(os.path.join(write_dir, "tensorboard")),
            cb.GuardedModelCheckpoint(os.path.join(write_dir, "last.keras"), guard),
            cb.GuardedModelCheckpoint(best_path, guard, monitor=monitor, mode="max", save_best_only=True),
        ]
        if validation is not None:
            cbs.append(cb.SwapBack(validation))
        cbs.append(cb.GuardedBackupAndRestore(backup_dir, guard))
        cbs += list(callbacks)
        if first_initial is None:
            first_initial = max(_read_backup_epoch(backup_dir), start_epoch)
            # Epochs logged after the last backup (a kill between the log and the backup, or a diverged epoch)
            # are run again: drop their rows so the log has each epoch once.
            _trim_log(os.path.join(write_dir, "log.csv"), first_initial)
        hist = model.fit(train_ds, epochs=end_epoch, initial_epoch=start_epoch, steps_per_epoch=steps_per_epoch,
                         callbacks=cbs, verbose=config.verbose, shuffle=False)  # the pipeline shuffles
        for k, v in hist.history.items():
            history.setdefault(k, []).extend(v)
        start_epoch = end_epoch
        if guard.message:
            break

    if guard.message:
        return TrainResult("diverged", history, run_dir, None, None, guard.message, first_initial or 0, gbs,
                           base_lr, replicas)

    # The run is complete: its backups are no longer needed (a rerun would otherwise resume at the end).
    shutil.rmtree(backup_root, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(backup_root))  # the shared backup/ folder, once every worker's is gone
    except OSError:
        pass
    export_dir = None
    if me.is_chief and config.export:
        best = keras.saving.load_model(best_path, compile=False) if os.path.exists(best_path) else model
        export_dir = config.export_dir or os.path.join("saved_models", run_name)
        _atomic_export(best, export_dir)
        print(f"best model: {best_path}\nSavedModel: {export_dir}", file=sys.stderr)
    return TrainResult("finished", history, run_dir, best_path if os.path.exists(best_path) else None, export_dir,
                       None, first_initial or 0, gbs, base_lr, replicas)
