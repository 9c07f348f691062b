"""GPU training and inference throughput: RegNetX-8.0GF and RegNetY-8.0GF vs EfficientNet-B5 at its native 456 px.

The paper (Radosavovic et al., 2020, section 5) reports RegNets "up to 5x faster on GPUs" than EfficientNets of
similar FLOPs. This script measures it on whichever Keras 3 backend is installed (``KERAS_BACKEND=jax``,
``tensorflow`` or ``torch``), with mixed precision (``--precision``, default mixed_float16) and batch 64:

    KERAS_BACKEND=jax python benchmarks/gpu.py                # the full table (a GPU machine)
    KERAS_BACKEND=jax python benchmarks/gpu.py --quick        # smoke run on CPU: small stand-in models, 32 px

Training: ``model.train_on_batch`` with SGD (momentum 0.9) on a fixed random batch; inference:
``model.predict_on_batch``. The first calls (compilation) are excluded; the rest are timed per call, results
converted to numpy so the device has finished. Reports img/s medians with min-max over ``--steps`` calls, and
the RegNet / EfficientNet-B5 ratios. Random weights (speed does not depend on values).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from inference import cpu_name  # benchmarks/inference.py (stdlib-only at import): one CPU-name reader for both

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# label -> (builder name, resolution); the quick set keeps the same kinds (X, Y with SE, EfficientNet) but small.
FULL = {
    "RegNetX-8.0GF": ("keras_regnet.RegNetX8_0GF", 224),
    "RegNetY-8.0GF": ("keras_regnet.RegNetY8_0GF", 224),
    "EfficientNet-B5": ("keras.applications.EfficientNetB5", 456),
}
QUICK = {
    "RegNetX-200MF": ("keras_regnet.RegNetX200MF", 32),
    "RegNetY-200MF": ("keras_regnet.RegNetY200MF", 32),
    "EfficientNet-B0": ("keras.applications.EfficientNetB0", 32),
}


def device_info():
    """(name of the accelerator or None, a description line) for the active backend."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            devs = [d for d in jax.devices() if d.platform != "cpu"]
            if devs:
                return devs[0].device_kind, f"{len(devs)} x {devs[0].device_kind} ({devs[0].platform}, jax)"
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
                return name, f"{len(gpus)} x {name} (tensorflow)"
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                name = torch.cuda.get_device_name(0)
                return name, f"{torch.cuda.device_count()} x {name} (torch)"
    except Exception as e:  # a broken accelerator stack: say so, measure on CPU
        return None, f"no usable GPU ({type(e).__name__}: {e})"
    return None, "no GPU found: running on CPU, these are NOT GPU numbers"


def build(builder, size):
    import importlib

    module, name = builder.rsplit(".", 1)
    fn = getattr(importlib.import_module(module), name)
    return fn(weights=None, input_shape=(size, size, 3))


def _timed(fn, steps):
    out = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def measure(label, builder, size, batch, steps, warmup, train=True):
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = build(builder, size)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 1000, (batch,))
    res = {"model": label, "builder": builder, "size": size, "params_m": round(model.count_params() / 1e6, 2)}

    def infer():
        keras.ops.convert_to_numpy(model.predict_on_batch(x))

    for _ in range(warmup):
        infer()
    res["infer_s"] = _timed(infer, steps)
    if train:
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")

        def step():
            np.asarray(model.train_on_batch(x, y))

        for _ in range(warmup):
            step()
        res["train_s"] = _timed(step, steps)
    del model
    keras.backend.clear_session()
    return res


def summarize(res, batch):
    for key, out in (("infer_s", "infer_img_s"), ("train_s", "train_img_s")):
        if key in res:
            ips = [batch / t for t in res[key]]
            res[out] = {"median": statistics.median(ips), "min": min(ips), "max": max(ips)}
    return res


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--steps", type=int, default=20, help="timed calls per model and mode (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (compilation; default 3)")
    parser.add_argument("--precision", default=None,
                        choices=("mixed_float16", "mixed_bfloat16", "float32"),
                        help="Keras dtype policy (default mixed_float16; float32 with --quick, as CPUs emulate float16)")
    parser.add_argument("--models", help="comma-separated subset of the model labels (default: all of the set)")
    parser.add_argument("--no-train", dest="train", action="store_false", help="inference only")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run for CPU: small stand-in models at 32 px, batch 2, 2 steps, 1 warm-up, float32")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    for name in ("batch", "steps", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer")
    models = FULL
    if args.quick:
        models, args.batch, args.steps, args.warmup = QUICK, 2, 2, 1
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in models]
        if unknown:
            parser.error(f"unknown model(s) {unknown}; choose from {', '.join(models)}")
        models = {m: models[m] for m in wanted}
    args.precision = args.precision or ("float32" if args.quick else "mixed_float16")

    import keras

    keras.mixed_precision.set_global_policy(args.precision)
    gpu, device_line = device_info()
    versions = {"keras": keras.__version__, "backend": keras.backend.backend()}
    try:
        import importlib

        bmod = importlib.import_module({"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}[keras.backend.backend()])
        versions[keras.backend.backend()] = bmod.__version__
    except (ImportError, KeyError):
        pass
    print(f"device: {device_line}", flush=True)
    results = []
    for label, (builder, size) in models.items():
        t0 = time.perf_counter()
        try:
            r = measure(label, builder, size, args.batch, args.steps, args.warmup, args.train)
        except Exception as e:
            print(f"error: {label} ({builder}) failed on backend {keras.backend.backend()}: {type(e).__name__}: {e}",
                  file=sys.stderr)
            return 1
        results.append(summarize(r, args.batch))
        print(f"{label} done in {time.perf_counter() - t0:.0f} s", flush=True)

    print()
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"device: {device_line}")
    print(f"host CPU: {cpu_name()}, {os.cpu_count()} cores")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"settings: batch {args.batch}, {args.precision}, {args.steps} timed steps after {args.warmup} warm-up"
          f"{' (--quick stand-ins)' if args.quick else ''}")
    print()
    header = f"{'model':<18}{'px':>5}{'params M':>10}{'train img/s [min-max]':>28}{'infer img/s [min-max]':>28}"
    print(header)
    print("-" * len(header))
    for r in results:
        cells = []
        for key in ("train_img_s", "infer_img_s"):
            v = r.get(key)
            cells.append(f"{v['median']:.1f} [{v['min']:.1f}-{v['max']:.1f}]" if v else "-")
        print(f"{r['model']:<18}{r['size']:>5}{r['params_m']:>10.2f}{cells[0]:>28}{cells[1]:>28}")
    ref = results[-1]
    print()
    print(f"ratios vs {ref['model']} (medians):")
    for r in results[:-1]:
        parts = []
        for key, name in (("train_img_s", "training"), ("infer_img_s", "inference")):
            if key in r and key in ref:
                parts.append(f"{name} {r[key]['median'] / ref[key]['median']:.2f}x")
        print(f"  {r['model']}: " + ", ".join(parts))
    if gpu is None:
        print("note: no GPU was found; the table above was measured on the CPU.")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"device": device_line, "gpu": gpu, "versions": versions, "precision": args.precision,
                       "batch": args.batch, "quick": args.quick,
                       "results": [{k: v for k, v in r.items() if k not in ("infer_s", "train_s")} for r in results]}, f, indent=2)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
