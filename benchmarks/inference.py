"""CPU inference and training-step speed of keras-regnet models vs tf_keras's RegNet and Keras's EfficientNet.

Measured in one process, round-robin across models (so machine noise hits every model alike), medians reported.
Peers: tf_keras.applications RegNetY006 / RegNetX008 / RegNetY032 (the same architectures in Keras 2) and
keras.applications EfficientNetB0 / B3. All models use random weights (speed does not depend on weight values).

    python benchmarks/inference.py                # full table (a few minutes on 2 cores)
    python benchmarks/inference.py --quick        # fewer repeats
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def build_models(size):
    """{label: (model, framework)}: ours, the tf_keras peers and the EfficientNets."""
    import keras
    import tf_keras

    import keras_regnet

    models = {
        "keras_regnet RegNetY600MF": keras_regnet.RegNetY600MF(input_shape=(size, size, 3)),
        "tf_keras RegNetY006": tf_keras.applications.RegNetY006(weights=None, input_shape=(size, size, 3)),
        "keras_regnet RegNetX800MF": keras_regnet.RegNetX800MF(input_shape=(size, size, 3)),
        "tf_keras RegNetX008": tf_keras.applications.RegNetX008(weights=None, input_shape=(size, size, 3)),
        "keras_regnet RegNetY3_2GF": keras_regnet.RegNetY3_2GF(input_shape=(size, size, 3)),
        "tf_keras RegNetY032": tf_keras.applications.RegNetY032(weights=None, input_shape=(size, size, 3)),
        "keras EfficientNetB0": keras.applications.EfficientNetB0(weights=None, input_shape=(size, size, 3)),
        "keras EfficientNetB3": keras.applications.EfficientNetB3(weights=None, input_shape=(size, size, 3)),
    }
    return models


def compiled_forward(model):
    """A traced inference function (graph mode, no XLA), as model.predict runs it."""
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def time_call(fn, x, repeats):
    """Per-call seconds of ``fn(x)`` after one warm-up call, ``repeats`` samples."""
    fn(x)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = fn(x)
        if hasattr(r, "numpy"):
            r.numpy()
        out.append(time.perf_counter() - t)
    return out


def train_step_fn(model, framework):
    """One SGD step on a batch (model.train_on_batch), for keras 3 and tf_keras models."""
    if framework == "tf_keras":
        import tf_keras

        model.compile(optimizer=tf_keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
    else:
        import keras

        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")

    def step(batch):
        x, y = batch
        return model.train_on_batch(x, y)

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224, help="input resolution (default 224)")
    parser.add_argument("--batch", type=int, default=32, help="throughput batch size (default 32)")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, for a smoke run")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds

    import tensorflow as tf

    models = build_models(args.size)
    rng = np.random.default_rng(0)
    xb = tf.constant(rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32"))
    x1 = xb[:1]
    fns = {k: compiled_forward(m) for k, m in models.items()}
    thr = {k: [] for k in models}
    lat = {k: [] for k in models}
    for r in range(rounds):
        for k, f in fns.items():
            thr[k] += time_call(f, xb, 1)
            lat[k] += time_call(f, x1, 5)
        print(f"inference round {r + 1}/{rounds} done", flush=True)

    yb = tf.constant(rng.integers(0, 1000, (args.batch,)))
    trainers = {
        "keras_regnet RegNetY600MF": train_step_fn(models["keras_regnet RegNetY600MF"], "keras"),
        "tf_keras RegNetY006": train_step_fn(models["tf_keras RegNetY006"], "tf_keras"),
        "keras EfficientNetB0": train_step_fn(models["keras EfficientNetB0"], "keras"),
    }
    # Keras's own grouped Conv2D (forced XLA) trains the same architecture; it shows what GroupConv2D saves.
    train_times = {k: [] for k in trainers}
    for k, step in trainers.items():
        step((xb, yb))  # trace + warm-up
    for r in range(rounds):
        for k, step in trainers.items():
            train_times[k] += time_call(step, (xb, yb), 1)
        print(f"training round {r + 1}/{rounds} done", flush=True)

    med = statistics.median
    print()
    print(f"CPU: {_cpu_name()}, {os.cpu_count()} cores; TF {tf.__version__}; batch {args.batch}, {args.size} px, "
          f"{rounds} rounds, medians")
    print()
    peers = {
        "keras_regnet RegNetY600MF": "tf_keras RegNetY006",
        "keras_regnet RegNetX800MF": "tf_keras RegNetX008",
        "keras_regnet RegNetY3_2GF": "tf_keras RegNetY032",
    }
    header = f"{'model':<28}{'img/s @bs' + str(args.batch):>14}{'latency bs1 ms':>16}{'vs peer':>10}"
    print(header)
    print("-" * len(header))
    ips = {k: args.batch / med(v) for k, v in thr.items()}
    for k in models:
        ratio = f"{ips[k] / ips[peers[k]]:.2f}x" if k in peers else ""
        print(f"{k:<28}{ips[k]:>14.1f}{med(lat[k]) * 1000:>16.1f}{ratio:>10}")
    print()
    print("Ratios (throughput, same run):")
    for ours, peer in peers.items():
        print(f"  {ours} / {peer}: {ips[ours] / ips[peer]:.2f}x (target >= 1.5x)")
    print(f"  keras_regnet RegNetY600MF / keras EfficientNetB0: "
          f"{ips['keras_regnet RegNetY600MF'] / ips['keras EfficientNetB0']:.2f}x (target >= 1.2x)")
    print()
    header = f"{'training step (SGD, bs ' + str(args.batch) + ')':<36}{'s/step':>10}{'img/s':>10}"
    print(header)
    print("-" * len(header))
    for k, v in train_times.items():
        print(f"{k:<36}{med(v):>10.3f}{args.batch / med(v):>10.1f}")
    ours = med(train_times["keras_regnet RegNetY600MF"])
    print(f"  RegNetY600MF training step speed-up vs tf_keras RegNetY006: "
          f"{med(train_times['tf_keras RegNetY006']) / ours:.2f}x (target >= 5x)")
    print(f"  RegNetY600MF training step speed-up vs EfficientNetB0: "
          f"{med(train_times['keras EfficientNetB0']) / ours:.2f}x")


if __name__ == "__main__":
    main()
