"""Design-space sweep speed: sampler throughput with the regime filter, and proxy-training models per hour.

1. Sampler: seconds to draw 1,000 valid models of each design space in the paper's 400MF regime (flops in
   [360, 400] M at 224 px), and in the embedded demo's regime (2-6 MF at 32 px, cifar stem); samples/s and the
   fraction of candidates the regime keeps. Repeated (--repeats) and reported as median and range.
2. Proxy training per model on the embedded digits (the `keras-regnet compare` demo setting: 3 epochs, batch 32):
   the same sampled RegNetX and AnyNetXA specs trained, in interleaved rounds, by the previous training loop
   (``legacy_train_proxy`` below: evaluation through a second traced graph) and by the current ``train_proxy``
   (eager evaluation, no AutoGraph conversion). Median seconds per model and the ratio.
3. Sweep throughput: models/hour of a whole `run_sweep` (wall clock, process start-up and data loading included)
   with 1 process and with ``--workers 2``, interleaved rounds.
4. Optional (--keras-peer): the same specs with Keras's own grouped ``Conv2D`` (XLA-compiled on TensorFlow).

    python benchmarks/sweep.py            # ~15-30 minutes on 2 cores
    python benchmarks/sweep.py --quick    # 200 samples, 1 model per space, 1 round
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_regnet.design_space.spaces import SPACES, Regime, get_space  # noqa: E402

PAPER = Regime(flops=(360e6, 400e6))
DEMO = Regime(flops=(2e6, 6e6), resolution=32, classes=10)


def _spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def bench_sampler(n, repeats):
    """Print one row per space and regime: time for n valid samples (median [min-max]), samples/s, acceptance."""
    import numpy as np

    print(f"\n## Sampler: {n} valid models per space, {repeats} repeats (median [min-max] seconds)\n")
    print(f"{'space':<10}{'regime':<22}{'seconds':>20}{'samples/s':>11}{'kept':>8}")
    for name in SPACES:
        for label, regime, stem in (("360-400 MF @224", PAPER, "imagenet"), ("2-6 MF @32 (demo)", DEMO, "cifar")):
            space = get_space(name, stem=stem)
            times = []
            for r in range(repeats):
                start = time.perf_counter()
                space.sample(n, seed=r, regime=regime)
                times.append(time.perf_counter() - start)
            inside = total = 0
            batches = space.batches(np.random.default_rng(1), regime)
            while total < 4000:
                _, cx = next(batches)
                inside += int(regime.contains_batch(cx).sum())
                total += len(cx["flops"])
            print(f"{name:<10}{label:<22}{_spread(times):>20}{n / statistics.median(times):>11.0f}"
                  f"{inside / total:>8.1%}")


def legacy_train_proxy(spec, data, *, epochs, lr, weight_decay=5e-5, momentum=0.9, seed=0, build_fn=None):
    """The previous per-model loop (for comparison): evaluation through a traced ``tf.function``."""
    import keras
    import tensorflow as tf

    from keras_regnet.models import build_model
    from keras_regnet.training.optim import DecaySGD
    from keras_regnet.training.schedules import WarmupCosine

    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = (build_fn or build_model)(spec, input_shape=(data.image_size, data.image_size, 3),
                                      classes=data.num_classes, classifier_activation=None, name="proxy")
    for layer in model.layers:
        if layer.name.endswith("_bn_c"):
            layer.gamma.assign(keras.ops.zeros_like(layer.gamma))
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

    for epoch in range(epochs):
        train_loss = 0.0
        for x, y in data.train(seed * 1000 + epoch):
            loss, wrong = train_step(x, y)
            train_loss += float(loss) * int(x.shape[0])
            int(wrong)
    train_time = time.perf_counter() - start
    wrong = total = 0
    for x, y in data.eval:
        wrong += int(eval_step(x, y))
        total += int(x.shape[0])
    return {"error": 100.0 * wrong / total, "train_time_s": train_time,
            "total_s": time.perf_counter() - start}


def _keras_grouped(spec, **kwargs):
    """The same model with every GroupConv2D replaced by Keras's own grouped Conv2D (same config, same weights)."""
    import keras

    from keras_regnet.layers import GroupConv2D
    from keras_regnet.models import build_model

    model = build_model(spec, **kwargs)

    def clone(layer):
        if isinstance(layer, GroupConv2D):
            return keras.layers.Conv2D.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


def bench_training(models, epochs, rounds, keras_peer):
    """Per-model seconds (build + epochs + eval) of the legacy loop and train_proxy, interleaved rounds."""
    from keras_regnet.design_space.sweep import SweepConfig, load_proxy_data, train_proxy

    cfg = SweepConfig(space="RegNetX", samples=1, epochs=epochs, batch_size=32, lr=0.2)
    data = load_proxy_data(cfg)
    specs = []
    for name in ("RegNetX", "AnyNetXA"):
        specs += [(name, s) for s in get_space(name, stem="cifar").sample(models, seed=0, regime=DEMO)]
    print(f"\n## Per model on embedded digits ({data.num_train} images at 32 px, {epochs} epochs, batch 32; "
          f"{rounds} interleaved rounds, median [min-max] s)\n")
    cols = ["legacy loop", "train_proxy"] + (["Keras Conv2D"] if keras_peer else [])
    print(f"{'model':<10}{'blocks':>7}{'MF':>6}" + "".join(f"{c:>27}" for c in cols) + f"{'ratio':>8}")
    per = {c: [] for c in cols}
    for name, spec in specs:
        t = {c: [] for c in cols}
        for r in range(rounds):
            order = cols if r % 2 == 0 else cols[::-1]
            for c in order:
                start = time.perf_counter()
                if c == "legacy loop":
                    legacy_train_proxy(spec, data, epochs=epochs, lr=cfg.lr, seed=0)
                elif c == "train_proxy":
                    train_proxy(spec, data, epochs=epochs, lr=cfg.lr, seed=0)
                else:
                    train_proxy(spec, data, epochs=epochs, lr=cfg.lr, seed=0, build_fn=_keras_grouped)
                t[c].append(time.perf_counter() - start)
        blocks = spec["depth"] if spec["type"] == "regnet" else sum(spec["depths"])
        mf = DEMO.measure(spec)["flops"] / 1e6
        ratio = statistics.median(t["legacy loop"]) / statistics.median(t["train_proxy"])
        print(f"{name:<10}{blocks:>7}{mf:>6.1f}" + "".join(f"{_spread(t[c]):>27}" for c in cols) + f"{ratio:>7.2f}x",
              flush=True)
        for c in cols:
            per[c].append(statistics.median(t[c]))
    print("\nmodels/hour (build + epochs + eval, one process): " + ", ".join(
        f"{c} {3600 / statistics.mean(per[c]):.0f}" for c in cols))


_SWEEP = """
import sys, time
start = time.perf_counter()
from keras_regnet.design_space.sweep import SweepConfig, run_sweep
cfg = SweepConfig(space=sys.argv[1], samples=int(sys.argv[2]), epochs=int(sys.argv[3]), batch_size=32, lr=0.2,
                  seed=int(sys.argv[4]))
run_sweep(cfg, sys.argv[5], progress=False, workers=int(sys.argv[6]), log=lambda *a: None)
print("WALL", time.perf_counter() - start)
"""


def bench_workers(samples, epochs, rounds, workers=(1, 2)):
    """Models/hour of whole sweeps (fresh process: start-up, data, sampling, training) with 1 and N workers."""
    print(f"\n## Whole sweeps: RegNetX, {samples} samples, {epochs} epochs, demo regime; {rounds} interleaved "
          "rounds (fresh process each, start-up included)\n")
    t = {w: [] for w in workers}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    for r in range(rounds):
        for w in (workers if r % 2 == 0 else workers[::-1]):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "r.jsonl")
                res = subprocess.run([sys.executable, "-c", _SWEEP, "RegNetX", str(samples), str(epochs), str(r),
                                      out, str(w)], capture_output=True, text=True, env=env)
                if res.returncode:
                    raise RuntimeError(res.stderr[-2000:])
                t[w].append(float(res.stdout.split("WALL")[-1]))
    print(f"{'workers':>8}{'sweep s (median [min-max])':>32}{'models/hour':>13}")
    for w in workers:
        print(f"{w:>8}{_spread(t[w]):>32}{3600 * samples / statistics.median(t[w]):>13.0f}")
    base = statistics.median(t[workers[0]])
    print(f"\nspeed-up with {workers[-1]} workers: {base / statistics.median(t[workers[-1]]):.2f}x "
          "(per round: " + ", ".join(f"{a / b:.2f}x" for a, b in zip(t[workers[0]], t[workers[-1]])) + ")")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 samples, 1 model per space, 1 round")
    parser.add_argument("--samples", type=int, help="valid samples per space for the sampler (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="sampler repeats (default 3)")
    parser.add_argument("--models", type=int, help="models per space for the per-model table (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="proxy epochs (default 3, the demo's)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 2)")
    parser.add_argument("--sweep-samples", type=int, default=6, help="samples of the whole-sweep runs (default 6)")
    parser.add_argument("--only", choices=("sampler", "training", "workers"), help="run one part")
    parser.add_argument("--keras-peer", action="store_true", help="also train with Keras's grouped Conv2D (slow)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 2)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f} at start (other jobs share the machine: spreads matter)")
    if args.only in (None, "sampler"):
        bench_sampler(args.samples or (200 if args.quick else 1000), 1 if args.quick else args.repeats)
    if args.only in (None, "training"):
        bench_training(args.models or (1 if args.quick else 2), args.epochs, rounds, args.keras_peer)
    if args.only in (None, "workers"):
        bench_workers(args.sweep_samples, args.epochs, rounds)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
