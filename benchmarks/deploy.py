"""Deployment benchmark: RegNets vs keras.applications mobile models, exported the same way.

For RegNetY200MF, RegNetY600MF, RegNetX800MF (keras_regnet) and MobileNetV2, MobileNetV3Large, EfficientNetB0
(keras.applications), each exported with :func:`keras_regnet.export.export_model` (BatchNorm folded, TFLite via
``from_keras_model``, int8 calibrated on generated sample images), this measures:

- TFLite float32 and full-int8 file size and batch-1 latency with 2 threads (LiteRT interpreter, XNNPACK where it
  accepts the graph; the table says where it did not);
- SavedModel throughput at batch 32 (``serving_default`` of the loaded SavedModel, images/s);
- the Keras graph's batch-1 latency before/after BatchNorm folding.

All models use random weights (``weights=None``): the peers' ImageNet weights cannot be downloaded on the build
machine, and size and latency do not depend on weight values. The top-1 column is the published ImageNet accuracy
of each architecture's reference weights (not measured here); int8 accuracy was not measured (no ImageNet here).

    python benchmarks/deploy.py                       # the full table (several minutes on 2 cores)
    python benchmarks/deploy.py --models RegNetY200MF,MobileNetV2 --size 96 --runs 10    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Published ImageNet-1k top-1 (%) of each architecture's reference weights at 224 px: pycls's checkpoints for the
# RegNets (keras_regnet's registry), the keras.applications docs table for the peers.
PUBLISHED_TOP1 = {
    "RegNetY200MF": 70.3,
    "RegNetY600MF": 75.5,
    "RegNetX800MF": 75.2,
    "MobileNetV2": 71.3,
    "MobileNetV3Large": 75.6,
    "EfficientNetB0": 77.1,
}
MODELS = tuple(PUBLISHED_TOP1)
BASELINE = "EfficientNetB0"


def build(name, size):
    """The model ``name`` with random weights, taking RGB in [0, 255] like keras_regnet models."""
    import keras

    import keras_regnet

    shape = (size, size, 3)
    if name.startswith("RegNet"):
        return getattr(keras_regnet, name)(input_shape=shape, name=name.lower())
    if name == "MobileNetV2":  # takes [-1, 1]: put its preprocess_input in the graph so every model gets [0, 255]
        inputs = keras.Input(shape)
        base = keras.applications.MobileNetV2(weights=None, input_shape=shape)
        return keras.Model(inputs, base(keras.layers.Rescaling(1 / 127.5, -1.0)(inputs)), name="mobilenetv2")
    builder = getattr(keras.applications, name)  # MobileNetV3 and EfficientNet rescale internally
    return builder(weights=None, input_shape=shape, name=name.lower())


def savedmodel_throughput(path, size, output, batch=32, runs=5):
    """Images per second of the loaded SavedModel's serving_default at ``batch``."""
    import numpy as np
    import tensorflow as tf

    fn = tf.saved_model.load(path).signatures["serving_default"]
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    for _ in range(2):
        fn(images=x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(images=x)[output].numpy()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def measure(name, size, runs, workdir):
    from keras_regnet.export import export_model

    model = build(name, size)
    report = export_model(
        model, workdir, name.lower(), tflite=("fp32", "int8"), min_agreement=0.0, latency_threads=(2,),
        latency_runs=runs, calibration_images=100, verify_images=16, progress=False,
    )
    tfl = report["tflite"]
    fold = report["bn_fold"]
    return {
        "model": name,
        "top1": PUBLISHED_TOP1[name],
        "params_m": model.count_params() / 1e6,
        "fp32_mb": tfl["fp32"]["bytes"] / 2**20,
        "fp32_ms": tfl["fp32"]["latency_ms"]["2"],
        "int8_mb": tfl["int8"]["bytes"] / 2**20,
        "int8_ms": tfl["int8"]["latency_ms"]["2"],
        "int8_xnnpack": tfl["int8"]["xnnpack"],
        "fp32_max_diff": tfl["fp32"]["max_abs_diff"],
        "sm_ips": savedmodel_throughput(report["path"], size, report["output"], runs=max(3, runs // 10)),
        "bn_folded": fold["folded"],
        "keras_ms_before": fold.get("ms_batch1_before"),
        "keras_ms_after": fold.get("ms_batch1_after"),
    }


def table(rows):
    base = next((r for r in rows if r["model"] == BASELINE), None)
    lines = [
        "| model | top-1 % (published) | params (M) | TFLite fp32 MB | fp32 ms | TFLite int8 MB | int8 ms "
        f"| int8 ms / {BASELINE} | SavedModel img/s @32 | BN folded | Keras batch-1 ms before -> after fold |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{r['int8_ms'] / base['int8_ms']:.2f}" if base else "n/a"
        xnn = "" if r["int8_xnnpack"] else " (no XNNPACK)"
        fold = (f"{r['keras_ms_before']:.1f} -> {r['keras_ms_after']:.1f}" if r["keras_ms_before"] else "n/a")
        lines.append(
            f"| {r['model']} | {r['top1']:.1f} | {r['params_m']:.2f} | {r['fp32_mb']:.2f} | {r['fp32_ms']:.2f} "
            f"| {r['int8_mb']:.2f} | {r['int8_ms']:.2f}{xnn} | {ratio} | {r['sm_ips']:.0f} | {r['bn_folded']} "
            f"| {fold} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {', '.join(MODELS)} (default: all)")
    parser.add_argument("--size", type=int, default=224, help="input resolution (default 224)")
    parser.add_argument("--runs", type=int, default=50, help="timed TFLite invocations per model (default 50)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            start = time.perf_counter()
            rows.append(measure(name, args.size, args.runs, workdir))
            print(f"# {name}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\nTFLite: LiteRT interpreter, batch 1, 2 threads, median of {args.runs}; {args.size} px; random weights.")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
