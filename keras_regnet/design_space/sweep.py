"""Proxy-training sweeps: sample N models from a design space, train each briefly, append one JSON line each.

The proxy recipe is the paper's (SGD, momentum 0.9, half-period cosine learning rate set once per epoch, no
warm-up, weight decay 5e-5) scaled to the data. Weight decay is applied as pycls/PyTorch apply it, ``wd * w``
added to the gradient of every trainable weight before momentum (``keras_regnet.training.optim.DecaySGD``);
Keras's own ``SGD(weight_decay=...)`` is decoupled, ``w -= lr * wd * w`` beside the momentum update, which
decays about 1 / (1 - momentum) = 10x less at the same value. Models are the package's builders, so grouped
convolutions use the fast native ``GroupConv2D``.

A sweep is resumable: sample i is the same for a given seed and sweep settings, finished indices are read back
from the results file and skipped, and a damaged last line left by a kill is moved aside before appending.
Each index is claimed in ``<out>.claims`` under the file lock before it is trained, so several processes (or
``workers=N``) on one file never train a sample twice; Ctrl-C or SIGTERM stops at the next batch, releases the
claim and leaves a file the same command resumes.

Without a complexity regime (``flops="auto"``, the default) the sweep samples in a regime sized to the data:
2-6 MF at 32 px (the embedded digits demo), scaled with the image area up to 64 px; above, the paper's 360-400 MF
at 224 px, scaled with the image area.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import threading
import time

from keras_regnet.design_space import results as results_lib
from keras_regnet.design_space.spaces import SAMPLER_VERSION, Regime, get_space

__all__ = [
    "SweepConfig", "ProxyData", "load_proxy_data", "train_proxy", "run_sweep", "SweepMismatchError",
    "SweepInterrupted", "default_flops", "proxy_defaults",
]

# Data sets smaller than this (decoded, at the training size) are cached in memory after the first epoch.
_CACHE_BYTES = 2 << 30


class SweepMismatchError(ValueError):
    """The results file holds a sweep run with different settings."""


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was stopped by SIGINT/SIGTERM; the results file is complete up to the last finished sample."""


# Data sets up to this many training images get the small-data proxy recipe (the embedded digits and their slices).
SMALL_DATA = 20_000


def proxy_defaults(num_train: int) -> dict:
    """The proxy recipe's batch size and base learning rate for a training set of ``num_train`` images.

    Small data (<= 20,000 images, e.g. the 1,437 digits): batch 32 and lr 0.2, so an epoch has enough steps (at
    batch 128 the digits give 11 steps per epoch, and 5 epochs end at 19-49% error where batch 32 / lr 0.2 reach
    4-8%). Larger data: the paper's batch 128 and lr 0.1. A batch size given without a learning rate scales the
    default lr linearly. ``sweep`` and ``compare`` share these defaults.
    """
    if num_train <= SMALL_DATA:
        return {"batch_size": 32, "lr": 0.2}
    return {"batch_size": 128, "lr": 0.1}


def default_flops(image_size: int) -> tuple:
    """The default flops regime for an image size: 2-6 MF at 32 px (small images), 360-400 MF at 224 px (large),
    each scaled with the image area."""
    if image_size <= 64:
        scale = (image_size / 32) ** 2
        return (2e6 * scale, 6e6 * scale)
    scale = (image_size / 224) ** 2
    return (360e6 * scale, 400e6 * scale)


@dataclasses.dataclass
class SweepConfig:
    """Everything that defines a sweep; all but ``samples`` must match to resume into an existing file."""

    space: str
    samples: int
    epochs: int = 10
    dataset: str = "digits"
    seed: int = 0
    flops: tuple | str | None = "auto"  # multiply-adds (min, max) at image_size; "auto": default_flops; None: any
    params: tuple | None = None
    acts: tuple | None = None
    batch_size: int | None = None  # None: sized to the data (proxy_defaults)
    lr: float | None = None  # None: sized to the data (proxy_defaults), scaled linearly with the batch size
    weight_decay: float = 5e-5
    momentum: float = 0.9
    image_size: int | None = None  # None: the data set's own size when fixed, else 224
    stem: str = "auto"  # "auto": cifar (stride-1) stem up to 64 px, imagenet stem above
    stem_width: int = 32
    augment: str = "auto"  # "none", "crop-flip" or "auto" (crop-flip for variable-size images)
    train_split: str = "train"
    eval_split: str = "auto"
    data_dir: str | None = None
    manual_dir: str | None = None
    max_tries: int = 50_000

    def __post_init__(self):
        for field, minimum in (("samples", 0), ("epochs", 1), ("seed", 0), ("batch_size", 1), ("max_tries", 1)):
            v = getattr(self, field)
            if v is None and field == "batch_size":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"{field} must be an integer >= {minimum}, got {v!r}.")
        if not (self.lr is None or self.lr > 0) or not self.weight_decay >= 0 or not 0 <= self.momentum < 1:
            raise ValueError(
                f"need lr > 0, weight_decay >= 0 and 0 <= momentum < 1; got lr={self.lr}, "
                f"weight_decay={self.weight_decay}, momentum={self.momentum}."
            )
        if self.augment not in ("auto", "none", "crop-flip"):
            raise ValueError(f"augment must be 'auto', 'none' or 'crop-flip', got {self.augment!r}.")
        if self.stem not in ("auto", "cifar", "imagenet"):
            raise ValueError(f"stem must be 'auto', 'cifar' or 'imagenet', got {self.stem!r}.")
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 32):
            raise ValueError(f"image_size must be an integer >= 32 (models downsample 32x), got {self.image_size!r}.")
        if isinstance(self.flops, str) and self.flops != "auto":
            raise ValueError(f"flops must be a (min, max) pair, 'auto' or None, got {self.flops!r}.")
        from keras_regnet.training.presets import check_settings

        # the checks train's config uses too (non-finite rates, bools as counts, image_size <= 4096, ...)
        check_settings({f: getattr(self, f) for f in ("samples", "epochs", "seed", "batch_size", "max_tries", "lr",
                                                      "weight_decay", "momentum", "image_size", "stem_width")}, str)
        get_space(self.space)  # unknown names fail before any data is loaded

    def resolved_batch_size(self, num_train: int) -> int:
        """The batch size in effect: the given one, or :func:`proxy_defaults`' for ``num_train`` images."""
        return self.batch_size or proxy_defaults(num_train)["batch_size"]

    def resolved_lr(self, num_train: int) -> float:
        """The base learning rate in effect: the given one, or :func:`proxy_defaults`' scaled to the batch size."""
        if self.lr is not None:
            return self.lr
        d = proxy_defaults(num_train)
        return d["lr"] * self.resolved_batch_size(num_train) / d["batch_size"]

    def resolved_flops(self, data: "ProxyData"):
        """The flops range in effect: the given one, or :func:`default_flops` of the data's size for 'auto'."""
        return default_flops(data.image_size) if self.flops == "auto" else self.flops

    def regime(self, data: "ProxyData") -> Regime:
        """The complexity regime of the sweep at the data's resolution and class count."""
        return Regime(self.resolved_flops(data), self.params, self.acts, resolution=data.image_size,
                      classes=data.num_classes)

    def key(self, data: "ProxyData") -> dict:
        """The settings a resumed sweep must share with the records in its file (resolved, JSON-able)."""
        d = dataclasses.asdict(self)
        for k in ("samples", "data_dir", "manual_dir", "max_tries"):
            d.pop(k)
        d.update(image_size=data.image_size, stem=data.stem, augment=data.augment, eval_split=data.eval_split,
                 flops=self.resolved_flops(data), batch_size=self.resolved_batch_size(data.num_train),
                 lr=self.resolved_lr(data.num_train))
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclasses.dataclass
class ProxyData:
    """Batched train and eval pipelines plus what the models need to know about them.

    ``train(seed)`` returns one epoch of shuffled (and augmented) batches whose order depends only on ``seed``,
    so a model trained in a resumed process sees exactly the batches it would have seen without the restart.
    """

    train: object
    eval: object
    num_classes: int
    num_train: int
    num_eval: int
    image_size: int
    stem: str
    augment: str
    eval_split: str
    steps_per_epoch: int


def _load_eval_split(cfg, load):
    """Resolve eval_split='auto': the data set's test or validation split, else a held-out 10% of train."""
    if cfg.eval_split != "auto":
        return cfg.eval_split, cfg.train_split, load(cfg.eval_split)
    for split in ("test", "validation", "val"):
        try:
            return split, cfg.train_split, load(split)
        except ValueError:
            continue
    # A folder with a single split: hold out 10% of train per class (the loader's slices are stratified).
    return "train[90%:]", "train[:90%]", load("train[90%:]")


def load_proxy_data(cfg: SweepConfig) -> ProxyData:
    """Load the train/eval splits of ``cfg.dataset`` as batched float pipelines at the proxy resolution."""
    import tensorflow as tf

    from keras_regnet.datasets import load_dataset
    from keras_regnet.preprocessing import resize_and_center_crop

    def load(split):
        return load_dataset(cfg.dataset, split, data_dir=cfg.data_dir, manual_dir=cfg.manual_dir)

    eval_split, train_split, (eval_ds, eval_info) = _load_eval_split(cfg, load)
    train_ds, info = load(train_split)
    from keras_regnet.datasets import align_labels

    # labels by class name: an evaluation split with other class folders is relabelled, or refused naming both lists
    eval_ds, eval_info = align_labels(eval_ds, eval_info, info.class_names)
    h, w = info.image_shape[:2]
    fixed = h is not None and h == w
    size = cfg.image_size or (h if fixed else 224)
    if size < 32:
        raise ValueError(f"{cfg.dataset} images are {h}x{w}; pass image_size >= 32 to upsample them.")
    stem = cfg.stem if cfg.stem != "auto" else ("cifar" if size <= 64 else "imagenet")
    augment = cfg.augment if cfg.augment != "auto" else ("none" if fixed else "crop-flip")
    batch_size = cfg.resolved_batch_size(info.num_examples)
    if info.num_examples < batch_size:
        raise ValueError(
            f"the {train_split} split of {cfg.dataset} has {info.num_examples} images, fewer than one batch of "
            f"{batch_size}; lower batch_size."
        )

    if augment == "crop-flip":
        # The paper's ImageNet pipeline (Inception crop, flip, lighting; short-side resize + center crop).
        from keras_regnet.training import pipeline

        def sparse(ds):
            return ds.map(lambda x, y: (x, tf.argmax(y, -1)))

        def train(seed):
            return sparse(pipeline.train_dataset(train_ds, info, image_size=size, global_batch_size=batch_size,
                                                 seed=seed, repeat=False, cache_mb=_CACHE_BYTES >> 20))

        ev = sparse(pipeline.eval_dataset(eval_ds, eval_info, image_size=size,
                                          global_batch_size=max(batch_size, 256), cache_mb=_CACHE_BYTES >> 20))
    else:
        def resize(image):
            image = tf.cast(image, tf.float32)
            if fixed and h == size:
                return image
            if fixed:
                return tf.image.resize(image, (size, size), method="bilinear", antialias=True)
            return resize_and_center_crop(image, size)

        def prepare(ds, n):
            ds = ds.map(lambda x, y: (resize(x), y), num_parallel_calls=tf.data.AUTOTUNE)
            return ds.cache() if n * size * size * 3 * 4 <= _CACHE_BYTES else ds

        base = prepare(train_ds, info.num_examples)  # decoded once; every epoch's shuffle reads the cache

        def train(seed):
            ds = base.shuffle(min(info.num_examples, 10_000), seed=seed, reshuffle_each_iteration=False)
            return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

        ev = prepare(eval_ds, eval_info.num_examples).batch(max(batch_size, 256)).prefetch(tf.data.AUTOTUNE)
    return ProxyData(
        train=train, eval=ev, num_classes=info.num_classes, num_train=info.num_examples,
        num_eval=eval_info.num_examples, image_size=size, stem=stem, augment=augment, eval_split=eval_split,
        steps_per_epoch=info.num_examples // batch_size,
    )


def train_proxy(spec: dict, data: ProxyData, *, epochs, lr, weight_decay=5e-5, momentum=0.9, seed=0,
                build_fn=None, stop=None) -> dict:
    """Train one model with the proxy recipe and return its top-1 error (%) on the eval split and timings.

    ``build_fn(spec, **kwargs)`` replaces :func:`keras_regnet.models.build_model` (benchmarks use it to train the
    same spec through Keras's own grouped ``Conv2D``). ``stop`` (a ``threading.Event``) is checked before every
    batch: once set, training ends with :class:`SweepInterrupted`.
    """
    import keras
    import tensorflow as tf

    from keras_regnet.models import build_model
    from keras_regnet.training.optim import DecaySGD
    from keras_regnet.training.schedules import WarmupCosine

    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = (build_fn or build_model)(
        spec, input_shape=(data.image_size, data.image_size, 3), classes=data.num_classes,
        classifier_activation=None, name="proxy",
    )
    # Each residual branch starts as the identity (pycls's ZERO_INIT_FINAL_GAMMA, set in its RegNet configs):
    # very short proxy schedules of deep AnyNets are much less erratic with it.
    for layer in model.layers:
        if layer.name.endswith("_bn_c"):
            layer.gamma.assign(keras.ops.zeros_like(layer.gamma))
    # The paper's schedule without warm-up (lr set once per epoch, as pycls) and PyTorch-style coupled decay.
    schedule = WarmupCosine(lr, epochs, data.steps_per_epoch, warmup_epochs=0)
    optimizer = DecaySGD(learning_rate=schedule, momentum=momentum, nesterov=False, l2_decay=weight_decay)
    variables = model.trainable_variables
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    apply_update = momentum_update(optimizer, variables)

    # autograph=False: the step has no Python control flow, and skipping the conversion shortens each model's
    # trace (a sweep traces one step per model).
    @tf.function(jit_compile=False, reduce_retracing=True, autograph=False)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = ce(y, logits)
        grads = tape.gradient(loss, variables)
        apply_update(grads)
        wrong = tf.reduce_sum(tf.cast(tf.argmax(logits, -1) != tf.cast(y, tf.int64), tf.int32))
        return loss, wrong

    def check_stop():
        if stop is not None and stop.is_set():
            raise SweepInterrupted("stop requested")

    train_loss = train_wrong = seen = 0
    for epoch in range(epochs):
        train_loss = train_wrong = seen = 0
        for x, y in data.train(seed * 1000 + epoch):
            check_stop()
            loss, wrong = train_step(x, y)
            train_loss += float(loss) * int(x.shape[0])
            train_wrong += int(wrong)
            seen += int(x.shape[0])
        if not math.isfinite(train_loss):
            break  # diverged: the error below is that of a broken model, recorded as such
    train_time = time.perf_counter() - start
    check_stop()
    # Evaluation runs eagerly: a handful of batches costs less than tracing another graph for each model.
    wrong = total = 0
    for x, y in data.eval:
        logits = model(x, training=False)
        wrong += int(tf.reduce_sum(tf.cast(tf.argmax(logits, -1) != tf.cast(y, tf.int64), tf.int32)))
        total += int(x.shape[0])
    return {
        "error": 100.0 * wrong / total,
        "train_error": 100.0 * train_wrong / max(seen, 1),
        "train_loss": train_loss / max(seen, 1) if math.isfinite(train_loss) else None,
        "diverged": not math.isfinite(train_loss),
        "train_time_s": round(train_time, 3),
        "eval_time_s": round(time.perf_counter() - start - train_time, 3),
        "trainable_params": int(sum(int(math.prod(v.shape)) for v in variables)),
    }


def momentum_update(optimizer, variables):
    """``grads -> None`` applying one step of ``optimizer`` (a non-Nesterov ``DecaySGD``) to ``variables``.

    The same update as ``optimizer.apply_gradients`` (Keras's momentum form ``m = momentum * m - lr * g``,
    ``w += m``, with ``g`` plus the coupled L2 decay, lr from the schedule at ``optimizer.iterations``), written as
    one fused TensorFlow op per variable. A proxy sweep traces one training step per model, and Keras's generic
    optimizer path costs ~20 ms of tracing per variable (a 40-block AnyNet has ~370); its momentum slots are also
    created here, before tracing, since creating them inside the traced step makes ``tf.function`` trace the whole
    step twice. Other optimizers (or options such as clipping) fall back to ``apply_gradients``.
    """
    import tensorflow as tf

    from keras_regnet.training.optim import DecaySGD

    optimizer.build(variables)
    plain = (
        isinstance(optimizer, DecaySGD) and not optimizer.nesterov and optimizer.momentum != 0
        and optimizer.clipnorm is None and optimizer.clipvalue is None and optimizer.global_clipnorm is None
        and not optimizer.use_ema and not getattr(optimizer, "gradient_accumulation_steps", None)
        and all(v.dtype == "float32" for v in variables)
    )
    if not plain:
        return lambda grads: optimizer.apply_gradients(zip(grads, variables))
    from keras_regnet._compat import optimizer_slot_index  # Keras: imported with the training, not the sweep

    slots = [optimizer.momentums[optimizer_slot_index(optimizer, v)] for v in variables]
    decays = [optimizer.decays(v) for v in variables]

    def apply(grads):
        lr = tf.cast(optimizer._get_current_learning_rate(), tf.float32)
        momentum = tf.constant(optimizer.momentum, tf.float32)
        l2 = tf.constant(optimizer.l2_decay, tf.float32)
        for var, slot, grad, decay in zip(variables, slots, grads, decays):
            if decay:
                grad = grad + l2 * var.value
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=var.value.handle, accum=slot.value.handle, lr=lr, grad=grad, momentum=momentum,
                use_nesterov=False,
            )
        optimizer.iterations.assign_add(1)

    return apply


def _parse_shard(shard):
    if shard is None:
        return 0, 1
    k, n = shard
    if not (isinstance(k, int) and isinstance(n, int) and 0 <= k < n):
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard!r}.")
    return k, n


class _StopOnSignal:
    """SIGINT/SIGTERM set ``event``; outside a :meth:`critical` section they also raise SweepInterrupted at once
    (so building or tracing a model stops too). Installed only in the main thread; handlers are restored after."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)

    def __init__(self, event):
        self.event = event
        self.signum = None
        self._critical = 0
        self._old = {}

    def _handler(self, signum, frame):
        self.signum = signum
        self.event.set()
        if not self._critical:
            raise SweepInterrupted(signal.Signals(signum).name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False

    @contextlib.contextmanager
    def critical(self):
        """Signals arriving inside are deferred to its end (file writes are never cut short by a stop)."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if self.event.is_set() and not self._critical:
            raise SweepInterrupted(signal.Signals(self.signum).name if self.signum else "stop requested")


def _describe_run(space, regime, cfg, data, auto):
    how = " (default for this image size; --flops MIN,MAX or --no-flops to change)" if auto else ""
    return (f"{space}: {regime.describe()}{how}; {cfg.epochs} epochs, batch {cfg.resolved_batch_size(data.num_train)}, "
            f"lr {cfg.resolved_lr(data.num_train):g} on "
            f"{cfg.dataset} ({data.num_train} train / {data.num_eval} eval images)")


def _short_regime(regime):
    if regime.flops:
        lo, hi = regime.flops
        return f"{lo / 1e6:.3g}-{hi / 1e6:.3g}MF@{regime.resolution}px"
    return f"any size@{regime.resolution}px"


def _sweep_tag(key, seed):
    """Claims of this sweep: a short hash of its settings (claims of another sweep on the same file never count)."""
    return hashlib.sha256(json.dumps([key, seed], sort_keys=True).encode()).hexdigest()[:16]


# Why records of an older sampler cannot be resumed (what changed since that version).
_VERSION_CHANGES = {
    1: "AnyNet spaces are drawn in batches since version 2, and since version 3 every space follows pycls's rules "
       "(RegNet: no merged or skipped stage, g by power2_or_log_uniform; AnyNet: log-uniform depths, ordered "
       "XD/XE draws)",
    2: "version 3 follows pycls's rules: RegNet keeps only candidates with no stage merged or skipped by the width "
       "quantization (about 16% of version 2's RegNet samples are rejected by pycls) and draws g with "
       "power2_or_log_uniform; AnyNet depths are log-uniform and AnyNetXD/XE's ordered widths/depths follow the "
       "conditioned law",
}


def _read_finished(out, key, samples, cfg):
    """{index: record} of this sweep in ``out`` (first record of an index wins); refuses other sweeps' records."""
    finished = {}
    if not os.path.exists(out):
        return finished
    res = results_lib.read_results(out)
    for n, rec in enumerate(res.records):
        where = res.where(n)
        i = rec.get("index")
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise ValueError(
                f"{where}: a sweep record needs a non-negative integer 'index', got {i!r} (was the line written by "
                "`keras-regnet sweep`?); fix or delete that line, or write to another --out file."
            )
        if rec.get("sweep") != key:
            other = rec.get("sweep") or {}
            if not isinstance(other, dict):
                other = {"sweep": other}
            diff = sorted(f for f in set(key) | set(other) if key.get(f) != other.get(f))
            raise SweepMismatchError(
                f"{where}: {out} holds results of a different sweep (the line for sample {i} differs in "
                f"{', '.join(f'{f}: {other.get(f)!r} there vs {key.get(f)!r} now' for f in diff)}). Resume with "
                "the same settings or write to another --out file."
            )
        version = rec.get("sampler_version", 1)
        if version != SAMPLER_VERSION:
            raise SweepMismatchError(
                f"{where}: the file was written by sampler version {version} and this is version {SAMPLER_VERSION}: "
                f"{_VERSION_CHANGES.get(version, 'the samples drawn for a seed differ')}, so sample {i} would not be "
                "the sample drawn now. Its results stay readable by `edf`/`fit`; write this sweep to another --out "
                "file."
            )
        if i < len(samples) and rec.get("spec") != samples[i][0]:
            raise SweepMismatchError(
                f"{where}: sample {i} in the file is not the sample this sampler draws for seed {cfg.seed} (the file "
                "was written by a different sampler). Use another --out file."
            )
        finished.setdefault(i, rec)
    return finished


def run_sweep(cfg: SweepConfig, out, *, shard=None, progress=True, log=print, data: ProxyData | None = None,
              workers=1, handle_signals=True):
    """Run (or resume) a sweep into the JSONL file ``out``; returns all records of this sweep in the file.

    ``shard=(k, n)`` trains only sample indices i with i % n == k. Any number of processes may run the same
    sweep on one file: each index is claimed under the file lock before it is trained, so no sample is trained
    twice (claims of processes that died are free again). ``workers=N`` starts N-1 extra worker processes on
    this machine that share the file that way. SIGINT/SIGTERM stop within a batch (:class:`SweepInterrupted`),
    leaving a file the same call resumes.
    """
    k, n = _parse_shard(shard)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}.")
    out = os.fspath(out)
    damaged = results_lib.repair_results(out)
    if damaged:
        log(f"{out}: moved {len(damaged)} damaged line(s) to {out}.damaged (nothing deleted):")
        for line, text, reason in damaged:
            log(f"  line {line}: {reason}: {text[:60]!r}")
    data = data or load_proxy_data(cfg)
    regime = cfg.regime(data)
    space = get_space(cfg.space, stem=data.stem, stem_width=cfg.stem_width)
    key = cfg.key(data)
    sampler = space.iter_samples(cfg.seed, regime, cfg.max_tries)
    samples = [next(sampler) for _ in range(cfg.samples)]
    finished = _read_finished(out, key, samples, cfg)
    mine = [i for i in range(cfg.samples) if i % n == k]
    log(_describe_run(space.name, regime, cfg, data, cfg.flops == "auto"))
    if workers > 1 and any(i not in finished for i in mine):
        _run_workers(cfg, out, shard, workers, log, _WorkerProgress(out, key, samples, mine, finished, cfg, space.name,
                                                                    regime, progress, log))
    else:
        _train_claimed(cfg, out, data, space, key, samples, mine, finished, regime, progress, log, handle_signals)
    finished = _read_finished(out, key, samples, cfg)
    return [finished[i] for i in sorted(finished) if i < cfg.samples]


def _train_claimed(cfg, out, data, space, key, samples, mine, finished, regime, progress, log, handle_signals):
    tag = _sweep_tag(key, cfg.seed)
    errors = [finished[i]["error"] for i in mine if i in finished]
    bar = _models_bar(space.name, regime, len(mine), len(errors), progress)

    def postfix():
        left = len(mine) - bar.n
        bar.set_postfix_str(f"remaining {left}, best err {min(errors):.2f}%" if errors else f"remaining {left}")

    def finished_key(rec):
        return rec.get("index") if rec.get("sweep") == key else None

    event = threading.Event()
    guard = _StopOnSignal(event) if handle_signals else contextlib.nullcontext(None)
    claimed = None
    try:
        with guard:
            postfix()
            while True:
                with guard.critical() if handle_signals else contextlib.nullcontext():
                    claimed = results_lib.claim_index(out, mine, finished_key, tag=tag)
                if claimed is None:
                    break
                i = claimed
                spec, cx = samples[i]
                model_seed = (cfg.seed * 1_000_003 + i) % (2**31)
                result = train_proxy(spec, data, epochs=cfg.epochs, lr=cfg.resolved_lr(data.num_train), weight_decay=cfg.weight_decay,
                                     momentum=cfg.momentum, seed=model_seed, stop=event)
                rec = {
                    "index": i, "space": space.name, "seed": cfg.seed, "model_seed": model_seed, "spec": spec, **cx,
                    **result, "epochs": cfg.epochs, "dataset": cfg.dataset, "image_size": data.image_size,
                    "num_classes": data.num_classes, "sweep": key, "sampler_version": SAMPLER_VERSION,
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                with guard.critical() if handle_signals else contextlib.nullcontext():
                    results_lib.append_result(out, rec)
                    results_lib.release_claim(out, i)
                    claimed = None
                finished[i] = rec
                errors.append(rec["error"])
                bar.update(1)
                postfix()
                _print_model(bar, progress, log, space.name, regime, rec)
    except SweepInterrupted as e:
        bar.close()
        if claimed is not None:
            results_lib.release_claim(out, claimed)
        done = len(_read_finished(out, key, samples, cfg))
        log(f"stopped ({e.args[0] if e.args else 'interrupted'}): {done} of {cfg.samples} samples finished in {out}; "
            "run the same command again to resume.")
        raise
    except BaseException:
        if claimed is not None:
            results_lib.release_claim(out, claimed)
        raise
    bar.close()


def _models_bar(space_name, regime, total, initial, progress):
    """The sweep's progress bar (one step per trained model); disabled without ``progress``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"{space_name} {_short_regime(regime)}", unit="model",
                disable=not progress, dynamic_ncols=True)


def _print_model(bar, progress, log, space_name, regime, rec):
    """The one line printed for each trained model: above the progress bar, or through ``log`` without one."""
    line = (f"{space_name} #{rec['index']} [{_short_regime(regime)}]: error {rec['error']:.2f}%  "
            f"{rec['flops'] / 1e6:.2f} MF  {rec['params'] / 1e6:.3f} M params  {rec['train_time_s']:.1f} s")
    bar.write(line) if progress else log(line)


class _WorkerProgress:
    """The parent's view of a ``workers=N`` sweep: polls the results file, prints each newly finished model (the
    same line and progress bar as one process) while the workers, which print nothing, train."""

    def __init__(self, out, key, samples, mine, finished, cfg, space_name, regime, progress, log):
        self.args = (out, key, samples, cfg)
        self.mine = set(mine)
        self.seen = self.mine & set(finished)
        self.space_name, self.regime, self.progress, self.log = space_name, regime, progress, log
        self.bar = _models_bar(space_name, regime, len(self.mine), len(self.seen), progress)
        self.next_poll = 0.0

    def poll(self, force=False):
        if not force and time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + 1.0
        try:
            finished = _read_finished(*self.args)
        except (OSError, ValueError):
            return  # a worker is writing; the next poll reads it
        for i in sorted(set(finished) & self.mine - self.seen):
            self.seen.add(i)
            self.bar.update(1)
            _print_model(self.bar, self.progress, self.log, self.space_name, self.regime, finished[i])

    def close(self):
        self.poll(force=True)
        self.bar.close()


def _worker_main(cfg_dict, out, shard, threads):
    """Entry point of a worker process started by ``run_sweep(workers=N)``."""
    from keras_regnet import _quiet

    _quiet.worker_init()  # no TensorFlow start-up lines from each worker (KERAS_REGNET_DEBUG=1 shows them)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    with contextlib.suppress(SweepInterrupted):
        run_sweep(SweepConfig(**cfg_dict), out, shard=shard, progress=False, log=lambda *a: None)


def _run_workers(cfg, out, shard, workers, log, progress):
    """Run ``workers`` processes on one file (they share it through claims); stop them all on SIGINT/SIGTERM.
    ``progress`` (a :class:`_WorkerProgress`) reports each finished model meanwhile."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [ctx.Process(target=_worker_main, args=(dataclasses.asdict(cfg), out, shard, threads), daemon=True)
             for _ in range(workers)]
    log(f"{workers} worker processes, {threads} thread(s) each, sharing {out}")
    event = threading.Event()
    try:
        with _StopOnSignal(event):
            for p in procs:
                p.start()
            while any(p.is_alive() for p in procs):
                for p in procs:
                    p.join(0.2)
                progress.poll()
        progress.close()
    except SweepInterrupted:
        progress.bar.close()
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(10)
        done = sum(1 for _ in results_lib.read_results(out).records) if os.path.exists(out) else 0
        log(f"stopped: {done} result line(s) in {out}; run the same command again to resume.")
        raise
    failed = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if failed:
        raise RuntimeError(f"{len(failed)} of {workers} sweep workers failed (exit codes {failed}); rerun to resume.")
