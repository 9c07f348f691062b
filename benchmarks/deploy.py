"""Deployment benchmark: full-int8 (and float32) TFLite batch-1 latency of RegNets vs keras.applications peers.

Every model gets random weights (size and latency do not depend on weight values; see ``int8_accuracy.py`` for
what int8 costs in accuracy) and is converted to TFLite the way a user converts a Keras model:
``tf.lite.TFLiteConverter.from_keras_model`` with ``Optimize.DEFAULT``, a representative data set (100 generated
images) and ``TFLITE_BUILTINS_INT8`` only. RegNets go through :func:`keras_regnet.export.fold_batchnorm` and
:func:`keras_regnet.export.input_fold.fold_input_rescaling` first, as ``keras-regnet export`` does (the converter
folds BatchNorm itself, so that changes nothing; folding the per-channel input normalisation into the stem conv
removes two broadcasting int8 ops on the whole image).

Timing is built to be trusted on a shared machine: every interpreter is created up front, then ``--rounds``
rounds each time every model in turn (the order rotates per round), ``--runs`` invocations per model per round;
the table shows the median of the round medians and the spread (min-max of the round medians), and the ratio to
the baseline is computed per round. The XNNPACK column counts how many of the file's ops run outside the
delegate (each a separate builtin kernel dispatch). Machine, load and versions are printed with the table.

    python benchmarks/deploy.py                                          # RegNetY600MF vs EfficientNetB0, 224 px
    python benchmarks/deploy.py --models RegNetY200MF,RegNetY600MF,MobileNetV2,EfficientNetB0 --rounds 7
    python benchmarks/deploy.py --profile RegNetY600MF                   # per-stage int8 latency of one model
    python benchmarks/deploy.py --stem                                   # the int8 stem with its input side in 5 forms
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Published ImageNet-1k top-1 (%) of each architecture's reference weights at 224 px (pycls's checkpoints for the
# RegNets, the keras.applications documentation for the peers); not measured here.
PUBLISHED_TOP1 = {
    "RegNetY200MF": 70.3,
    "RegNetY600MF": 75.5,
    "RegNetX800MF": 75.2,
    "MobileNetV2": 71.3,
    "MobileNetV3Large": 75.6,
    "EfficientNetB0": 77.1,
}
# "<RegNet>-unfolded": the same RegNet converted with only its BatchNorm folded (the input normalisation left as two
# per-channel ops on the image, as exports before the input fold had it): what the fold gains, in the same run.
UNFOLDED = "-unfolded"
MODELS = tuple(PUBLISHED_TOP1) + tuple(name + UNFOLDED for name in PUBLISHED_TOP1 if name.startswith("RegNet"))
BASELINE = "EfficientNetB0"


def machine():
    """One line naming the CPU, cores, load and the versions that matter."""
    import keras
    import tensorflow as tf

    try:
        import ai_edge_litert

        litert = getattr(ai_edge_litert, "__version__", None)
        if litert is None:
            from importlib.metadata import version

            litert = version("ai-edge-litert")
    except Exception:
        litert = "?"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, load {load:.1f} (1-min avg at start); Python "
            f"{platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, ai-edge-litert "
            f"{litert}")


def build(name, size):
    """The model ``name`` with random weights, taking RGB in [0, 255] like keras_regnet models."""
    import keras

    import keras_regnet

    shape = (size, size, 3)
    if name.startswith("RegNet"):
        return getattr(keras_regnet, name.removesuffix(UNFOLDED))(weights=None, input_shape=shape,
                                                                   name=name.lower().replace("-", "_"))
    if name == "MobileNetV2":  # takes [-1, 1]: put its preprocess_input in the graph so every model gets [0, 255]
        inputs = keras.Input(shape)
        base = keras.applications.MobileNetV2(weights=None, input_shape=shape)
        return keras.Model(inputs, base(keras.layers.Rescaling(1 / 127.5, -1.0)(inputs)), name="mobilenetv2")
    builder = getattr(keras.applications, name)  # MobileNetV3 and EfficientNet rescale internally
    return builder(weights=None, input_shape=shape, name=name.lower())


def user_convert(model, variant, calibration):
    """TFLite bytes, converted as the TensorFlow guide shows (``from_keras_model``; int8: builtins only)."""
    import contextlib
    import io

    import numpy as np
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([np.asarray(x[None], np.float32)] for x in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def convert(name, model, variant, calibration):
    """RegNets as ``keras-regnet export`` writes them (BatchNorm and input normalisation folded into the convs),
    peers as a user converts them."""
    if name.startswith("RegNet"):
        from keras_regnet.export import fold_batchnorm
        from keras_regnet.export.input_fold import fold_input_rescaling

        model, _ = fold_batchnorm(model)
        if not name.endswith(UNFOLDED):
            model, _ = fold_input_rescaling(model)
    return user_convert(model, variant, calibration)


class Timer:
    """One ready interpreter per file; ``round()`` returns the median ms of ``runs`` batch-1 invocations."""

    def __init__(self, content, threads):
        import numpy as np

        from keras_regnet.export.tflite import as_input, ready_interpreter

        self.interpreter, self.xnnpack = ready_interpreter(content, threads)
        inp = self.interpreter.get_input_details()[0]
        pixels = np.random.default_rng(0).uniform(0, 255, inp["shape"])
        self.interpreter.set_tensor(inp["index"], as_input(pixels, inp["dtype"]))
        for _ in range(3):
            self.interpreter.invoke()

    def round(self, runs):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.interpreter.invoke()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)


def interleaved(timers, rounds, runs):
    """{key: [median ms of each round]}, the keys timed in turn each round (order rotated)."""
    keys = list(timers)
    result = {k: [] for k in keys}
    for r in range(rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for key in order:
            result[key].append(timers[key].round(runs))
    return result


def summarize(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "rounds": samples}


def measure(names, size, rounds, runs, threads, variants=("fp32", "int8")):
    from keras_regnet.export.representative import sample_images
    from keras_regnet.export.tflite import delegation

    calibration = sample_images(100, size)
    rows, timers = {}, {}
    for name in names:
        start = time.perf_counter()
        model = build(name, size)
        rows[name] = {"model": name, "top1": PUBLISHED_TOP1.get(name.removesuffix(UNFOLDED)),
                      "params_m": model.count_params() / 1e6}
        for variant in variants:
            content = convert(name, model, variant, calibration)
            deleg = delegation(content, threads)
            timers[(name, variant)] = Timer(content, threads)
            rows[name][variant] = {"mb": len(content) / 2**20, "ops": deleg["ops"],
                                   "outside_xnnpack": deleg["outside"], "partitions": deleg["partitions"],
                                   "xnnpack": timers[(name, variant)].xnnpack}
        print(f"# converted {name} in {time.perf_counter() - start:.0f} s", flush=True)
    times = interleaved(timers, rounds, runs)
    for (name, variant), samples in times.items():
        rows[name][variant]["ms"] = summarize(samples)
    if BASELINE in rows:
        for name in rows:
            for variant in variants:
                ratios = [a / b for a, b in zip(times[(name, variant)], times[(BASELINE, variant)])]
                rows[name][variant]["ratio"] = summarize(ratios)
    return list(rows.values())


def table(rows, variants=("fp32", "int8")):
    lines = []
    head = "| model | top-1 % (published) | params (M) |"
    rule = "|---|---:|---:|"
    for v in variants:
        head += f" {v} MB | {v} ms (min-max) | {v} / {BASELINE} | {v} ops outside XNNPACK |"
        rule += "---:|---:|---:|---|"
    lines += [head, rule]
    for r in rows:
        line = f"| {r['model']} | {r['top1'] if r['top1'] is not None else 'n/a'} | {r['params_m']:.2f} |"
        for v in variants:
            c = r[v]
            ms = c["ms"]
            ratio = f"{c['ratio']['median']:.2f} ({c['ratio']['min']:.2f}-{c['ratio']['max']:.2f})" if "ratio" in c \
                else "n/a"
            outside = sum(c["outside_xnnpack"].values())
            where = ("all (XNNPACK refused the file)" if not c["xnnpack"] else
                     f"{outside} of {c['ops']}" + (f": {', '.join(f'{k} {n}' for k, n in c['outside_xnnpack'].items())}"
                                                   if outside else ""))
            line += (f" {c['mb']:.2f} | {ms['median']:.2f} ({ms['min']:.2f}-{ms['max']:.2f}) | {ratio} | {where} |")
        lines.append(line)
    return "\n".join(lines)


def profile(name, size, rounds, runs, threads):
    """Per-stage int8 latency of a RegNet: the model cut after the stem and after each stage, timed interleaved.

    LiteRT's Python interpreter has no per-op profiler; the differences between consecutive cuts are each
    stage's share (the head is the full model minus the last cut).
    """
    import keras

    from keras_regnet.export.representative import sample_images

    model = build(name, size)
    info = getattr(model, "feature_info", None)
    if info:
        cuts = {}
        for stage, i in info.items():
            layer = getattr(i, "layer", i[0] if isinstance(i, tuple) else i)
            cuts[stage] = (layer if hasattr(layer, "output") else model.get_layer(layer)).output
    else:
        cuts = {}
        for layer in model.layers:
            stage = layer.name.split("_")[0]
            if stage == "stem" or (stage.startswith("s") and stage[1:].isdigit()):
                cuts[stage] = layer.output
    calibration = sample_images(100, size)
    timers = {}
    for stage, tensor in cuts.items():
        sub = keras.Model(model.inputs, tensor, name=f"{name.lower()}_{stage}")
        timers[stage] = Timer(convert(name, sub, "int8", calibration), threads)
        print(f"# converted {name} up to {stage}", flush=True)
    timers["full"] = Timer(convert(name, model, "int8", calibration), threads)
    times = interleaved(timers, rounds, runs)
    medians = {k: statistics.median(v) for k, v in times.items()}
    previous, lines = 0.0, [f"| {name} int8, up to | cumulative ms | this part ms |", "|---|---:|---:|"]
    for key, ms in medians.items():
        lines.append(f"| {key} | {ms:.2f} | {ms - previous:.2f} |")
        previous = ms
    return "\n".join(lines)


# Stem forms timed by --stem: what the int8 stem's time is made of. Each builds input (size, size, 3) in [0, 255] ->
# the form -> ReLU -> global average pool (a small output, so dequantising it costs nothing).
STEM_FORMS = {
    "normalise + pad + conv (unfolded export)": "per_channel",
    "pad + conv, no normalisation": "none",
    "scalar normalise + pad + conv": "scalar",
    "per-channel subtract + pad + conv": "subtract",
    "value pad + conv (folded export)": "folded",
}


def stem_model(form, size):
    """RegNet's int8 stem (3x3 stride-2 conv to 32 channels) with its input side in one of :data:`STEM_FORMS`."""
    import keras
    import numpy as np

    from keras_regnet.export.input_fold import ValuePad2D
    from keras_regnet.preprocessing import normalization_constants

    scale, offset = (np.asarray(v, np.float32) for v in normalization_constants(3))
    inputs = keras.Input((size, size, 3))
    x = inputs
    if form == "per_channel":
        x = keras.layers.Rescaling(scale.reshape(1, 1, 3).tolist(), offset.reshape(1, 1, 3).tolist())(x)
    elif form == "scalar":
        x = keras.layers.Rescaling(float(scale.mean()), float(offset.mean()))(x)
    elif form == "subtract":
        x = keras.layers.Rescaling(1.0, (offset / scale).reshape(1, 1, 3).tolist())(x)
    if form == "folded":
        x = ValuePad2D(((1, 1), (1, 1)), -offset / scale)(x)
    else:
        x = keras.layers.ZeroPadding2D(1)(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="valid")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.Model(inputs, x)


def stems(size, rounds, runs, threads):
    """int8 latency of the stem forms, timed interleaved: a markdown table."""
    from keras_regnet.export.representative import sample_images

    calibration = sample_images(100, size)
    timers = {name: Timer(user_convert(stem_model(form, size), "int8", calibration), threads)
              for name, form in STEM_FORMS.items()}
    times = interleaved(timers, rounds, runs)
    lines = ["| int8 stem form | ms (min-max of round medians) |", "|---|---:|"]
    for name, values in times.items():
        lines.append(f"| {name} | {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f}) |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="RegNetY600MF,EfficientNetB0",
                        help=f"comma-separated subset of {', '.join(MODELS)} (default RegNetY600MF,EfficientNetB0)")
    parser.add_argument("--size", type=int, default=224, help="input resolution (default 224)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    parser.add_argument("--runs", type=int, default=30, help="timed invocations per model per round (default 30)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT threads (default 2)")
    parser.add_argument("--profile", help="instead: per-stage int8 latency of this RegNet")
    parser.add_argument("--stem", action="store_true",
                        help="instead: int8 latency of the stem with its input normalisation in several forms")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    print(f"# machine: {machine()}", flush=True)
    if args.profile:
        print(profile(args.profile, args.size, args.rounds, args.runs, args.threads))
        return 0
    if args.stem:
        print(stems(args.size, args.rounds, args.runs, args.threads))
        return 0
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    start = time.perf_counter()
    rows = measure(names, args.size, args.rounds, args.runs, args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nLiteRT interpreter, batch 1, {args.threads} threads, {args.size} px, random weights; {args.rounds} "
          f"interleaved rounds x {args.runs} runs: median of round medians (min-max); load {load:.1f} at the end; "
          f"{time.perf_counter() - start:.0f} s in all.")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
