"""Proxy-training sweeps: sample N models from a design space, train each briefly, append one JSON line each.

The proxy recipe is the paper's (SGD, momentum 0.9, half-period cosine learning rate set once per epoch, no
warm-up, weight decay 5e-5) scaled to the data. Weight decay is applied as pycls/PyTorch apply it, ``wd * w``
added to the gradient of every trainable weight before momentum (``keras_regnet.training.optim.DecaySGD``);
Keras's own ``SGD(weight_decay=...)`` is decoupled, ``w -= lr * wd * w`` beside the momentum update, which
decays about 1 / (1 - momentum) = 10x less at the same value. Models are the package's builders, so grouped
convolutions use the fast native ``GroupConv2D``.

A sweep is resumable: sample i is the same for a given seed and sweep settings, finished indices are read back
from the results file and skipped, and a damaged last line left by a kill is moved aside before appending.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

from keras_regnet.design_space import results as results_lib
from keras_regnet.design_space.spaces import Regime, get_space

__all__ = ["SweepConfig", "ProxyData", "load_proxy_data", "train_proxy", "run_sweep", "SweepMismatchError"]

# Data sets smaller than this (decoded, at the training size) are cached in memory after the first epoch.
_CACHE_BYTES = 2 << 30


class SweepMismatchError(ValueError):
    """The results file holds a sweep run with different settings."""


@dataclasses.dataclass
class SweepConfig:
    """Everything that defines a sweep; all but ``samples`` must match to resume into an existing file."""

    space: str
    samples: int
    epochs: int = 10
    dataset: str = "digits"
    seed: int = 0
    flops: tuple | None = None  # multiply-adds, (min, max), at image_size
    params: tuple | None = None
    acts: tuple | None = None
    batch_size: int = 128
    lr: float | None = None  # None: the paper's 0.1 at batch 128, scaled linearly with the batch size
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
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"{field} must be an integer >= {minimum}, got {v!r}.")
        if self.lr is None:
            self.lr = 0.1 * self.batch_size / 128
        if not self.lr > 0 or not self.weight_decay >= 0 or not 0 <= self.momentum < 1:
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
        get_space(self.space)  # unknown names fail before any data is loaded

    def key(self, data: "ProxyData") -> dict:
        """The settings a resumed sweep must share with the records in its file (resolved, JSON-able)."""
        d = dataclasses.asdict(self)
        for k in ("samples", "data_dir", "manual_dir", "max_tries"):
            d.pop(k)
        d.update(image_size=data.image_size, stem=data.stem, augment=data.augment, eval_split=data.eval_split)
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
    h, w = info.image_shape[:2]
    fixed = h is not None and h == w
    size = cfg.image_size or (h if fixed else 224)
    if size < 32:
        raise ValueError(f"{cfg.dataset} images are {h}x{w}; pass image_size >= 32 to upsample them.")
    stem = cfg.stem if cfg.stem != "auto" else ("cifar" if size <= 64 else "imagenet")
    augment = cfg.augment if cfg.augment != "auto" else ("none" if fixed else "crop-flip")
    if info.num_examples < cfg.batch_size:
        raise ValueError(
            f"the {train_split} split of {cfg.dataset} has {info.num_examples} images, fewer than one batch of "
            f"{cfg.batch_size}; lower batch_size."
        )

    if augment == "crop-flip":
        # The paper's ImageNet pipeline (Inception crop, flip, lighting; short-side resize + center crop).
        from keras_regnet.training import pipeline

        def sparse(ds):
            return ds.map(lambda x, y: (x, tf.argmax(y, -1)))

        def train(seed):
            return sparse(pipeline.train_dataset(train_ds, info, image_size=size, global_batch_size=cfg.batch_size,
                                                 seed=seed, repeat=False, cache_mb=_CACHE_BYTES >> 20))

        ev = sparse(pipeline.eval_dataset(eval_ds, eval_info, image_size=size,
                                          global_batch_size=max(cfg.batch_size, 256), cache_mb=_CACHE_BYTES >> 20))
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
            return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

        ev = prepare(eval_ds, eval_info.num_examples).batch(max(cfg.batch_size, 256)).prefetch(tf.data.AUTOTUNE)
    return ProxyData(
        train=train, eval=ev, num_classes=info.num_classes, num_train=info.num_examples,
        num_eval=eval_info.num_examples, image_size=size, stem=stem, augment=augment, eval_split=eval_split,
        steps_per_epoch=info.num_examples // cfg.batch_size,
    )


def train_proxy(spec: dict, data: ProxyData, *, epochs, lr, weight_decay=5e-5, momentum=0.9, seed=0,
                build_fn=None) -> dict:
    """Train one model with the proxy recipe and return its top-1 error (%) on the eval split and timings.

    ``build_fn(spec, **kwargs)`` replaces :func:`keras_regnet.models.build_model` (benchmarks use it to train the
    same spec through Keras's own grouped ``Conv2D``).
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

    @tf.function(jit_compile=False, reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = ce(y, logits)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        wrong = tf.reduce_sum(tf.cast(tf.argmax(logits, -1) != tf.cast(y, tf.int64), tf.int32))
        return loss, wrong

    @tf.function(jit_compile=False, reduce_retracing=True)
    def eval_step(x, y):
        logits = model(x, training=False)
        return tf.reduce_sum(tf.cast(tf.argmax(logits, -1) != tf.cast(y, tf.int64), tf.int32))

    train_loss = train_wrong = seen = 0
    for epoch in range(epochs):
        train_loss = train_wrong = seen = 0
        for x, y in data.train(seed * 1000 + epoch):
            loss, wrong = train_step(x, y)
            train_loss += float(loss) * int(x.shape[0])
            train_wrong += int(wrong)
            seen += int(x.shape[0])
        if not math.isfinite(train_loss):
            break  # diverged: the error below is that of a broken model, recorded as such
    train_time = time.perf_counter() - start
    wrong = total = 0
    for x, y in data.eval:
        wrong += int(eval_step(x, y))
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


def _parse_shard(shard):
    if shard is None:
        return 0, 1
    k, n = shard
    if not (isinstance(k, int) and isinstance(n, int) and 0 <= k < n):
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard!r}.")
    return k, n


def run_sweep(cfg: SweepConfig, out, *, shard=None, progress=True, log=print, data: ProxyData | None = None):
    """Run (or resume) a sweep into the JSONL file ``out``; returns all records of this sweep in the file.

    ``shard=(k, n)`` trains only sample indices i with i % n == k, so n processes (one per GPU) can share a file.
    """
    from tqdm.auto import tqdm

    k, n = _parse_shard(shard)
    out = os.fspath(out)
    damaged = results_lib.repair_results(out)
    if damaged:
        log(f"{out}: moved {len(damaged)} damaged line(s) to {out}.damaged (a previous run was killed mid-write):")
        for line, text, reason in damaged:
            log(f"  line {line}: {reason}: {text[:60]!r}")
    data = data or load_proxy_data(cfg)
    regime = Regime(cfg.flops, cfg.params, cfg.acts, resolution=data.image_size, classes=data.num_classes)
    space = get_space(cfg.space, stem=data.stem, stem_width=cfg.stem_width)
    key = cfg.key(data)
    sampler = space.iter_samples(cfg.seed, regime, cfg.max_tries)
    samples = [next(sampler) for _ in range(cfg.samples)]

    finished = {}
    if os.path.exists(out):
        for rec in results_lib.read_results(out).records:
            if rec.get("sweep") != key:
                other = rec.get("sweep") or {}
                diff = sorted(f for f in set(key) | set(other) if key.get(f) != other.get(f))
                raise SweepMismatchError(
                    f"{out} holds results of a different sweep (line for sample {rec.get('index')} differs in "
                    f"{', '.join(f'{f}: {other.get(f)!r} there vs {key.get(f)!r} now' for f in diff)}). Resume with "
                    "the same settings or write to another --out file."
                )
            i = rec["index"]
            if i < len(samples) and rec["spec"] != samples[i][0]:
                raise SweepMismatchError(
                    f"{out}: sample {i} in the file is not the sample this sampler draws for seed {cfg.seed}; the "
                    "file was written by a different version of the sampler. Use another --out file."
                )
            finished[i] = rec

    mine = [i for i in range(cfg.samples) if i % n == k]
    todo = [i for i in mine if i not in finished]
    errors = [finished[i]["error"] for i in mine if i in finished]
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=cfg.space, unit="model", disable=not progress,
               dynamic_ncols=True)

    def postfix():
        bar.set_postfix_str(
            f"remaining {len(mine) - bar.n}, best err {min(errors):.2f}%" if errors else f"remaining {len(mine) - bar.n}"
        )

    postfix()
    for i in todo:
        spec, cx = samples[i]
        model_seed = (cfg.seed * 1_000_003 + i) % (2**31)
        result = train_proxy(spec, data, epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                             momentum=cfg.momentum, seed=model_seed)
        rec = {
            "index": i, "space": space.name, "seed": cfg.seed, "model_seed": model_seed, "spec": spec, **cx,
            **result, "epochs": cfg.epochs, "dataset": cfg.dataset, "image_size": data.image_size,
            "num_classes": data.num_classes, "sweep": key, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        results_lib.append_result(out, rec)
        finished[i] = rec
        errors.append(rec["error"])
        bar.update(1)
        postfix()
        line = (f"{space.name} #{i}: error {rec['error']:.2f}%  {cx['flops'] / 1e6:.2f} MF  "
                f"{cx['params'] / 1e6:.3f} M params  {result['train_time_s']:.1f} s")
        bar.write(line) if progress else log(line)
    bar.close()
    return [finished[i] for i in sorted(finished) if i < cfg.samples]
