"""One function that runs a recipe end to end: data, strategy, model, optimizer, callbacks, resume, export."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys

__all__ = ["train", "TrainResult", "build_training_model", "resolve_val_split", "resolve_splits", "Splits", "RunLock"]

# Percent of each class held out for validation when the data set has no validation split.
HOLDOUT_PERCENT = 10


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
    from keras_regnet.hub import is_preset

    if isinstance(model, str) and is_preset(model):  # hf://owner/name or a preset folder: its name
        return model.rstrip("/").split("@")[0].replace("\\", "/").split("/")[-1] or "preset"
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
    from keras_regnet.hub import is_hub_uri, is_preset, parse_hub_uri

    if is_hub_uri(model):
        parse_hub_uri(model)  # fine-tune from a preset on the Hub: a bad URI fails here
        return
    if is_preset(model):  # a preset folder
        return
    try:
        specs.canonical_name(model)
    except (KeyError, ValueError):
        raise ValueError(
            f"unknown model {model!r}; use one of the paper's models ({', '.join(specs.MODEL_NAMES)}, with or "
            "without the dash, e.g. RegNetY600MF) or a RegNet/AnyNet spec dict in a --config file."
        ) from None


def _no_weights(weights) -> bool:
    return weights is None or (isinstance(weights, str) and weights.strip().lower() in ("", "none", "random"))


def build_training_model(config, num_classes):
    """The model of a recipe: a fresh classifier, or (with ``weights``) a pretrained backbone with a new head and
    the stages up to ``freeze_until`` frozen. Call inside the strategy scope. ``weights`` 'none' or 'random'
    (any case) means random initialisation."""
    from keras_regnet.models import build_model

    shape = (config.image_size, config.image_size, 3)
    model = config.model
    from keras_regnet.hub import is_preset

    if isinstance(model, str) and is_preset(model):
        # fine-tune from a preset (a folder or hf://owner/name): its backbone and weights, a new head
        from keras_regnet.hub import load_backbone
        from keras_regnet.transfer import freeze_until, replace_head

        if not _no_weights(config.weights) and config.weights != "imagenet":  # 'imagenet': the finetune default
            raise ValueError(f"--weights {config.weights!r} cannot be given with the preset {model!r}: it holds its "
                             "own weights.")
        built = replace_head(load_backbone(model, input_shape=shape), num_classes, dropout=config.dropout)
        if config.freeze_until:
            freeze_until(built, config.freeze_until)
        return built
    if not _no_weights(config.weights):
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


@dataclasses.dataclass(frozen=True)
class Splits:
    """The training and validation splits of a run (``val`` None: no validation) and the one line saying so."""

    train: str
    val: str | None
    note: str


_NO_VAL = "best.keras is the epoch with the best training accuracy"


def resolve_splits(config) -> Splits:
    """The run's splits. With ``val_split='auto'`` a data set without a validation split (validation/val/test)
    gets a held-out slice: :data:`HOLDOUT_PERCENT` of each class of the training split (folders and digits:
    stratified, in a fixed shuffled order, so the same slice on every run and on resume); the training split is
    the rest. ``val_split='none'`` trains on everything and says that ``best`` then means training accuracy."""
    from keras_regnet.datasets import _parse_split, load_dataset

    train = config.train_split
    if config.val_split in (None, "", "none"):
        return Splits(train, None, f"no validation (--val-split none): {_NO_VAL}")
    if config.val_split != "auto":
        return Splits(train, config.val_split, f"validation: the {config.val_split!r} split")
    found = resolve_val_split(config)
    if found:
        return Splits(train, found, f"validation: the {found!r} split")
    base, start, stop = _parse_split(train)
    if start is not None or stop is not None:
        return Splits(train, None, f"no validation: the data set has no validation split and --train-split {train!r} "
                                   f"is a slice already; give --val-split. {_NO_VAL}")
    keep = 100 - HOLDOUT_PERCENT
    train_slice, val_slice = f"{base}[:{keep}%]", f"{base}[{keep}%:]"
    import warnings

    try:
        with warnings.catch_warnings():  # the training split's load says what it skips, once
            warnings.simplefilter("ignore")
            _, info = load_dataset(config.dataset, val_slice, data_dir=config.data_dir, manual_dir=config.manual_dir,
                                   bad_images=config.bad_images, follow_links=config.follow_links,
                                   max_pixels=config.max_pixels, max_file_bytes=config.max_file_bytes)
    except ValueError as e:
        if "selects no images" not in str(e):
            raise
        return Splits(train, None, f"no validation: too few images to hold out {HOLDOUT_PERCENT}% of each class; "
                                   f"{_NO_VAL}")
    return Splits(train_slice, val_slice,
                  f"validation: held out {HOLDOUT_PERCENT}% of {base!r} per class ({info.num_examples} images) as "
                  f"{val_slice!r}, the same slice on every run; training on {train_slice!r} (--val-split none "
                  "trains on everything)")


def _lock_worker_id():
    """This worker's index from TF_CONFIG (0 without one), known before the strategy exists."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {}
        return int(task.get("index", 0)) if task.get("type", "worker") in ("worker", "chief") else 0
    except (ValueError, TypeError, AttributeError):
        return 0


class RunLock:
    """An exclusive lock on a run directory (``<run_dir>/.train.lock``, one per worker) held for the whole run, so
    that a second run into the same ``--output-dir`` is refused at once, naming the running one, before it writes
    anything."""

    def __init__(self, run_dir, worker=0):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, ".train.lock" + (f".worker_{worker}" if worker else ""))
        self.fd = None

    def acquire(self):
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        import socket
        import time

        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 512).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise ValueError(f"--output-dir {self.run_dir!r} is in use by another train run ({holder}); wait for it "
                             "to end or choose another --output-dir.") from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


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


@dataclasses.dataclass
class _Data:
    train: object
    info: object
    val: object = None
    val_info: object = None


@dataclasses.dataclass
class _Run:
    """Sizes and paths of a run, fixed before anything is built."""

    gbs: int
    replicas: int
    steps_per_epoch: int
    base_lr: float
    run_name: str
    run_dir: str
    write_dir: str
    backup_root: str
    is_chief: bool

    @property
    def best_path(self):
        return os.path.join(self.write_dir, "best.keras")

    @property
    def last_path(self):
        return os.path.join(self.write_dir, "last.keras")


def _load_data(config) -> _Data:
    """The training split and (when there is one) the validation split.

    Variable-size images (ImageNet, folders) stay encoded until the pipeline, which shuffles the small records and
    decodes only each JPEG's crop window."""
    from keras_regnet.datasets import load_dataset

    from keras_regnet.datasets import align_labels

    def load(split, **kw):
        return load_dataset(config.dataset, split, data_dir=config.data_dir, manual_dir=config.manual_dir,
                            bad_images=config.bad_images, follow_links=config.follow_links,
                            max_pixels=config.max_pixels, max_file_bytes=config.max_file_bytes, **kw)

    train_raw, info = load(config.train_split, download=config.download, shuffle_files=True)
    if info.source != "digits" and None in info.image_shape:
        train_raw, info = load(config.train_split, shuffle_files=True, decode=False)
    data = _Data(train_raw, info)
    if config.val_split not in (None, "", "none"):
        # Labels by class name: a validation split with other folders is relabelled or refused before training.
        data.val, data.val_info = align_labels(*load(config.val_split), info.class_names)
    for split_info, flag in ((info, "--train-split"), (data.val_info, "--val-split")):
        if split_info is not None and split_info.num_examples == 0:  # the model would get an empty batch
            raise ValueError(f"{flag} {split_info.split!r} of {config.dataset!r} has no images; choose a split "
                             "or slice that has some.")
    return data


def _run_name_and_dir(config):
    run_name = f"{_model_label(config.model)}-{os.path.basename(os.path.normpath(config.dataset)).replace(':', '_')}"
    return run_name, config.output_dir or os.path.join("runs", run_name)


def _plan_run(config, info, strategy) -> _Run:
    from keras_regnet.training.schedules import scaled_learning_rate
    from keras_regnet.training.strategy import global_batch_size, worker_info

    gbs = global_batch_size(config.batch_size, strategy)
    steps_per_epoch = config.steps_per_epoch or info.num_examples // gbs
    if steps_per_epoch < 1:
        raise ValueError(
            f"--batch-size: the global batch size {gbs} is larger than the {info.num_examples} training images of "
            f"{config.dataset!r}; lower --batch-size."
        )
    me = worker_info(strategy)
    run_name, run_dir = _run_name_and_dir(config)
    # Only the chief writes the run's files; other workers write to scratch copies (Keras callbacks are not
    # multi-worker aware). Every worker keeps its own backup: one shared h5 file would be locked by the first.
    write_dir = run_dir if me.is_chief else os.path.join(run_dir, "workers", f"worker_{me.task_id}")
    return _Run(gbs, strategy.num_replicas_in_sync, steps_per_epoch, scaled_learning_rate(gbs, config.lr), run_name,
                run_dir, write_dir, os.path.join(run_dir, "backup", f"worker_{me.task_id}"), me.is_chief)


def _write_run_config(config, run, notes):
    os.makedirs(run.write_dir, exist_ok=True)
    if run.is_chief:
        with open(os.path.join(run.run_dir, "config.json"), "w") as f:
            json.dump(dict(dataclasses.asdict(config), global_batch_size=run.gbs, base_lr=run.base_lr,
                           replicas=run.replicas, steps_per_epoch=run.steps_per_epoch, chosen_defaults=notes),
                      f, indent=2, default=str)


def _pipelines(config, data, run):
    """(train, validation or None, precise-BN data or None, precise-BN batches)."""
    from keras_regnet.training import pipeline

    augment = dict(flip=config.flip, lighting_std=config.lighting_std, area_range=(config.min_crop_area, 1.0),
                   cache_mb=config.cache_mb)
    train_ds = pipeline.train_dataset(data.train, data.info, image_size=config.image_size, global_batch_size=run.gbs,
                                      seed=config.seed, **augment)
    val_ds = None
    if data.val is not None:
        val_ds = pipeline.eval_dataset(data.val, data.val_info, image_size=config.image_size,
                                       global_batch_size=run.gbs, crop_pct=config.eval_crop_pct,
                                       cache_mb=config.cache_mb)
    bn_ds, bn_batches = None, 0
    if config.precise_bn_images > 0:
        per_replica = run.gbs // run.replicas
        bn_batches = min(math.ceil(config.precise_bn_images / per_replica),
                         max(data.info.num_examples // per_replica, 1))
        bn_ds = pipeline.train_dataset(data.train, data.info, image_size=config.image_size,
                                       global_batch_size=per_replica, seed=config.seed + 1, repeat=False,
                                       shuffle_buffer=1024, **augment)
    return train_ds, val_ds, bn_ds, bn_batches


def _sample_images(val_ds, train_ds, n=8):
    """A few evaluation images (else training images) on which saved models must give finite outputs."""
    for images, _ in (val_ds if val_ds is not None else train_ds).take(1):
        return images[:n]
    return None


def _export_name(config):
    """The name the run exports under (also recorded in its models: ``keras-regnet export best.keras`` reuses it)."""
    from keras_regnet.pretrained import export_name

    return export_name(run=os.path.basename(os.path.normpath(config.export_dir)) if config.export_dir
                       else _run_name_and_dir(config)[0])


def _describe_model(model, config, info):
    """Record the class names and the eval transform in the model's pretrained config (saved in .keras files)."""
    cfg = dict(class_names=[str(c) for c in info.class_names], size=int(config.image_size),
               crop_pct=float(config.eval_crop_pct), interpolation="bilinear", export_name=_export_name(config))
    setter = getattr(model, "set_pretrained_cfg", None)
    if callable(setter):
        setter(**cfg)
    elif hasattr(model, "pretrained_cfg"):
        model.pretrained_cfg = {**(model.pretrained_cfg or {}), **cfg}


def _phases(config, run):
    """Fine-tuning in two phases: frozen stages until unfreeze_epoch, then everything. Each phase has its own
    backup directory (the optimizer state differs), and a resumed run skips a phase that already finished."""
    phases = [(config.unfreeze_epoch, config.freeze_until), (config.epochs, None)] if config.unfreeze_epoch \
        else [(config.epochs, config.freeze_until)]
    dirs = [os.path.join(run.backup_root, f"phase{i}") for i in range(len(phases))] if len(phases) > 1 \
        else [run.backup_root]
    return list(zip(phases, dirs))


def _callbacks(config, run, guard, pipes, sample, backup_dir, append_log, extra):
    import keras

    from keras_regnet.training import callbacks as cb

    class RunProgbar(keras.callbacks.ProgbarLogger):
        """Keras's progress bar counting the run's epochs ("Epoch 3/3"), not the current phase's."""

        def set_params(self, params):
            super().set_params(params)
            self.epochs = config.epochs

    _, val_ds, bn_ds, bn_batches = pipes
    validation = cb.Validation(val_ds, guard, steps=config.val_steps, swap_ema=bool(config.ema)) \
        if val_ds is not None else None
    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    cbs = [guard, RunProgbar()]
    if bn_ds is not None:
        cbs.append(cb.PreciseBN(bn_ds, bn_batches, guard))
    if validation is not None:
        cbs.append(validation)
    if sample is not None:
        cbs.append(cb.FiniteOutputs(sample, guard))  # what the checkpoints below would save
    cbs += [
        cb.LearningRateLogger(),
        keras.callbacks.CSVLogger(os.path.join(run.write_dir, "log.csv"), append=append_log),
        keras.callbacks.TensorBoard(os.path.join(run.write_dir, "tensorboard")),
        cb.GuardedModelCheckpoint(run.last_path, guard),
        cb.GuardedModelCheckpoint(run.best_path, guard, monitor=monitor, mode="max", save_best_only=True),
    ]
    if validation is not None:
        cbs.append(cb.SwapBack(validation))
    cbs.append(cb.GuardedBackupAndRestore(backup_dir, guard))
    return cbs + list(extra)


def _fit(config, run, strategy, model, schedule, pipes, sample, extra_callbacks):
    """Run the phases; returns (history, guard, first initial epoch)."""
    from keras_regnet.training import callbacks as cb

    guard = cb.TerminateOnNaN()
    history: dict = {}
    start_epoch, first_initial = 0, None
    phases = _phases(config, run)
    dirs = [d for _, d in phases]
    resuming = any(_read_backup_epoch(d) > 0 for d in dirs)
    for index, ((end_epoch, frozen), backup_dir) in enumerate(phases):
        if any(_read_backup_epoch(d) > 0 for d in dirs[index + 1:]):
            start_epoch = end_epoch  # a later phase already started: this one is done
            continue
        with strategy.scope():
            if index > 0:
                from keras_regnet.transfer import freeze_until

                freeze_until(model, frozen)
            optimizer = _optimizer(config, schedule)
            _compile(model, config, optimizer, model.output_shape[-1])
            if index > 0:
                optimizer.build(model.trainable_variables)
                optimizer.iterations.assign(start_epoch * run.steps_per_epoch)
        cbs = _callbacks(config, run, guard, pipes, sample, backup_dir, resuming or index > 0, extra_callbacks)
        if first_initial is None:
            first_initial = max(_read_backup_epoch(backup_dir), start_epoch)
            # Epochs logged after the last backup (a kill between the log and the backup, or a diverged epoch)
            # are run again: drop their rows so the log has each epoch once.
            _trim_log(os.path.join(run.write_dir, "log.csv"), first_initial)
        hist = model.fit(pipes[0], epochs=end_epoch, initial_epoch=start_epoch, steps_per_epoch=run.steps_per_epoch,
                         callbacks=cbs, verbose=config.verbose, shuffle=False)  # the pipeline shuffles
        for k, v in hist.history.items():
            history.setdefault(k, []).extend(v)
        start_epoch = end_epoch
        if guard.message:
            break
    return history, guard, first_initial or 0


def _remove_backups(run):
    """The run is complete: its backups are no longer needed (a rerun would otherwise resume at the end)."""
    shutil.rmtree(run.backup_root, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(run.backup_root))  # the shared backup/ folder, once every worker's is gone
    except OSError:
        pass


def _nonfinite_saved_model(run, sample):
    """A message if best.keras or last.keras gives non-finite outputs on the sample images, else None."""
    import keras
    import numpy as np

    from keras_regnet.loading import load_keras_file

    if sample is None:
        return None
    for path in (run.best_path, run.last_path):
        if not os.path.exists(path):
            continue
        saved = load_keras_file(path, compile=False)
        out = keras.ops.convert_to_numpy(saved(sample, training=False))
        if not np.all(np.isfinite(out)):
            return (f"training stopped: {path} gives non-finite outputs ({int((~np.isfinite(out)).sum())} of "
                    f"{out.size} values) on validation images; nothing was exported. Lower --lr or raise "
                    "--warmup-epochs and train again in a new --output-dir.")
    return None


def _export(model_path, model, config, run, info):
    """Export through keras-regnet export's path: <export_dir>/<version>/ with both signatures and the labels."""
    from keras_regnet.export import export_model

    export_dir = os.path.normpath(config.export_dir or os.path.join("saved_models", run.run_name))
    parent, name = os.path.dirname(export_dir) or ".", _export_name(config)
    report = export_model(
        model, output_dir=parent, name=name, tflite=(), onnx=False, progress=False,
        labels=tuple(str(c) for c in info.class_names), size=int(config.image_size),
        crop_pct=float(config.eval_crop_pct), interpolation="bilinear",
    )
    path = report.get("path") if isinstance(report, dict) else None
    print(f"best model: {model_path}\nSavedModel: {path or export_dir}", file=sys.stderr)
    return path or export_dir


def train(config, callbacks=()) -> TrainResult:
    """Run ``config`` (a :class:`~keras_regnet.training.presets.TrainConfig`) and return a :class:`TrainResult`.

    Settings left at None in ``config`` are chosen from the recipe and the data set
    (:func:`~keras_regnet.training.presets.resolve_defaults`) and printed once. Rerunning the same config after a
    crash or kill resumes at the last finished epoch (``BackupAndRestore``, one backup directory per worker), with
    the optimizer step and thus the learning-rate schedule restored. ``callbacks`` are extra Keras callbacks.
    A run whose training loss, validation loss or model outputs become non-finite stops with status
    ``"diverged"``; no checkpoint of a diverged epoch is written and nothing is exported.
    """
    from keras_regnet._extras import require
    from keras_regnet.training.presets import validate

    require("tensorflow", "tensorflow", "keras_regnet.training.train (tf.distribute, tf.data)")
    validate(config)
    _check_model(config.model)
    # One run per output directory: a second one is refused before it writes anything.
    _, run_dir = _run_name_and_dir(config)
    created = not os.path.exists(run_dir)
    had_config = os.path.exists(os.path.join(run_dir, "config.json"))
    lock = RunLock(run_dir, _lock_worker_id()).acquire()
    try:
        return _train_locked(config, callbacks)
    except Exception:
        _forget_untrained_run(run_dir, created, had_config)
        raise
    finally:
        lock.release()
        if created and os.path.isdir(run_dir) and os.listdir(run_dir) in ([], [os.path.basename(lock.path)]):
            shutil.rmtree(run_dir, ignore_errors=True)


def _forget_untrained_run(run_dir, created, had_config):
    """A run that failed before finishing an epoch leaves nothing behind (no config.json of a run that never was);
    one with a finished epoch keeps everything, to be resumed."""
    trained = os.path.exists(os.path.join(run_dir, "last.keras")) or os.path.isdir(os.path.join(run_dir, "backup"))
    if trained:
        return
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif not had_config:
        try:
            os.remove(os.path.join(run_dir, "config.json"))
        except OSError:
            pass


def _train_locked(config, callbacks):
    import keras

    from keras_regnet.loading import load_keras_file
    from keras_regnet.training.presets import describe_defaults, resolve_defaults
    from keras_regnet.training.schedules import WarmupCosine
    from keras_regnet.training.strategy import make_strategy

    # The strategy first: MultiWorkerMirroredStrategy must be created before TensorFlow runs any op.
    strategy = make_strategy(config.strategy, config.tpu)
    keras.mixed_precision.set_global_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    splits = resolve_splits(config)
    config = dataclasses.replace(config, train_split=splits.train, val_split=splits.val or "none")
    data = _load_data(config)
    config, notes = resolve_defaults(config, data.info, strategy.num_replicas_in_sync)
    run = _plan_run(config, data.info, strategy)
    if run.is_chief:
        print(splits.note, file=sys.stderr)
        print(describe_defaults(config, notes, run.base_lr), file=sys.stderr)
    pipes = _pipelines(config, data, run)
    sample = _sample_images(pipes[1], pipes[0])
    schedule = WarmupCosine(run.base_lr, config.epochs, run.steps_per_epoch, warmup_epochs=config.warmup_epochs,
                            warmup_factor=config.warmup_factor, min_lr=config.min_lr, per_epoch=config.lr_per_epoch)
    with strategy.scope():
        model = build_training_model(config, data.info.num_classes)
    _describe_model(model, config, data.info)
    _write_run_config(config, run, notes)
    history, guard, initial = _fit(config, run, strategy, model, schedule, pipes, sample, callbacks)

    def result(status, message=None, best=None, export_dir=None):
        return TrainResult(status, history, run.run_dir, best, export_dir, message, initial, run.gbs, run.base_lr,
                           run.replicas)

    if guard.message:
        return result("diverged", guard.message)
    best = run.best_path if os.path.exists(run.best_path) else None
    if not run.is_chief:
        _remove_backups(run)
        return result("finished", best=best)
    problem = _nonfinite_saved_model(run, sample)
    if problem:
        return result("diverged", problem)
    export_dir = None
    if config.export:
        exported = load_keras_file(best, compile=False) if best else model
        export_dir = _export(best or run.last_path, exported, config, run, data.info)
    # Only now that everything the run promises is written: a kill during the check or the export leaves the
    # backup of the last epoch, and the rerun finishes these steps without training again.
    _remove_backups(run)
    return result("finished", best=best, export_dir=export_dir)
