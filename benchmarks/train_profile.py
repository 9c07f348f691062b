"""Where one training step of a keras-regnet model goes: op time per layer role, forward and backward.

Runs ``model.train_on_batch`` (SGD with momentum 0.9, sparse categorical cross-entropy) under TensorFlow's
profiler and sums the duration of every TensorFlow op in the trace by what it belongs to: the layer role
(``keras_regnet`` layer roles: conv_a, conv_b, conv_c, bn_*, se_*, proj, ...) and whether it is in the forward
pass or the gradient (``gradient_tape/...``), with the gradient of a convolution split into its filter and input
parts. Op time is the time each op ran with all its intra-op threads: a diagnostic of where the work is, not a
benchmark of the step (``benchmarks/inference.py`` times steps against timm).

    python benchmarks/train_profile.py                       # RegNetY600MF, batch 32, 224 px, 3 profiled steps
    python benchmarks/train_profile.py --model RegNetX400MF --batch 16 --steps 5 --json profile.json

Inter-op threads are 1 by default so op times do not overlap (``--inter-op 0``: TensorFlow's default).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Groups of the table, in print order: (group, predicate on (role, kind)).
GROUPS = (
    ("grouped 3x3 conv (conv_b)", lambda role, kind: kind == "group_conv"),
    ("1x1 conv conv_a", lambda role, kind: role == "conv_a"),
    ("1x1 conv conv_c", lambda role, kind: role == "conv_c"),
    ("projection shortcut conv", lambda role, kind: role == "proj_conv"),
    ("stem conv", lambda role, kind: role == "conv" and kind == "conv"),
    ("BatchNorm (+ fused ReLU)", lambda role, kind: kind == "bn"),
    ("Squeeze-and-Excitation (pool, 1x1 convs, scale)", lambda role, kind: role.startswith("se_")),
    ("padding of stride-2 convs (Pad / Slice)", lambda role, kind: kind == "pad"),
    ("ReLU, residual add", lambda role, kind: kind in ("relu", "add")),
    ("input rescaling", lambda role, kind: kind == "rescale"),
    ("head (pool, classifier, softmax)", lambda role, kind: kind in ("global_avg_pool", "dense", "activation")),
    ("optimizer (SGD update)", lambda role, kind: kind == "optimizer"),
)


OPTIMIZER_SCOPES = ("sgd", "adamw", "adam", "rmsprop", "lion")  # Keras optimizers' name scopes in the trace


def classify(op_name, op_type, roles, layer_kinds):
    """(layer role, layer kind, 'forward'|'backward', 'filter'|'input'|'') of one traced op, from its name/type."""
    backward = op_name.startswith("gradient_tape/")
    if op_type.startswith("ResourceApply") or op_name.split("/")[0].lower() in OPTIMIZER_SCOPES:
        return "optimizer", "optimizer", "backward", ""
    part = "filter" if "BackpropFilter" in op_type else "input" if "BackpropInput" in op_type else ""
    for segment in op_name.split("/"):
        layer = segment[:-2] if segment.endswith("_1") else segment
        if layer in roles:
            return roles[layer], layer_kinds.get(layer, ""), "backward" if backward else "forward", part
    return "other", "other", "backward" if backward else "forward", part


def profile(args):
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    import keras

    import keras_regnet
    from keras_regnet.plan import build_plan

    model = getattr(keras_regnet, args.model)(weights=None, input_shape=(args.size, args.size, 3))
    plan = build_plan(model.spec)
    roles = {name: r.role for name, r in model.layer_roles.items()}
    layer_kinds = {layer.name: layer.kind for layer in plan}
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 1000, (args.batch,))
    for _ in range(2):
        model.train_on_batch(x, y)  # trace and warm up
    logdir = tempfile.mkdtemp(prefix="keras_regnet_profile_")
    try:
        tf.profiler.experimental.start(logdir)
        t = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(x, y)
        wall = (time.perf_counter() - t) / args.steps
        tf.profiler.experimental.stop()
        from tensorflow.tsl.profiler.protobuf import xplane_pb2

        space = xplane_pb2.XSpace()
        with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    finally:
        shutil.rmtree(logdir, ignore_errors=True)

    times = collections.defaultdict(float)  # (group, direction, part) -> ms per step
    total = 0.0
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or name.startswith(("ExecutorState", "ThreadpoolListener")):
                    continue
                op_name, op_type = name.rsplit(":", 1)
                role, kind, direction, part = classify(op_name, op_type, roles, layer_kinds)
                group = next((g for g, test in GROUPS if test(role, kind)), "other")
                ms = event.duration_ps / 1e9 / args.steps
                times[(group, direction, part)] += ms
                total += ms
    return {"model": args.model, "batch": args.batch, "size": args.size, "steps": args.steps,
            "threads": args.threads, "inter_op": args.inter_op, "wall_ms_per_step": wall * 1e3,
            "op_ms_per_step": total, "parts": [[*k, v] for k, v in sorted(times.items())]}


def print_table(result):
    from inference import cpu_name, load_average, versions  # noqa: E402 - the sibling benchmark's machine facts

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load average {load_average()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items() if k in ("tensorflow", "keras",
                                                                                     "keras-regnet")))
    print(f"{result['model']}, batch {result['batch']}, {result['size']} px, SGD momentum 0.9; "
          f"{result['threads']} intra-op threads, inter-op {result['inter_op'] or 'default'}; "
          f"{result['steps']} profiled steps")
    print(f"wall time per step (profiler on): {result['wall_ms_per_step']:.0f} ms; "
          f"op time per step: {result['op_ms_per_step']:.0f} ms\n")
    rows = collections.OrderedDict((g, {"forward": 0.0, "backward": 0.0, "filter": 0.0, "input": 0.0})
                                   for g, _ in (*GROUPS, ("other", None)))
    for group, direction, part, ms in result["parts"]:
        rows[group][direction] += ms
        if part:
            rows[group][part] += ms
    total = result["op_ms_per_step"] or 1.0
    print(f"{'part':44s} {'forward ms':>10s} {'backward ms':>12s} {'(filter / input)':>18s} {'share':>6s}")
    for group, r in rows.items():
        if r["forward"] + r["backward"] == 0:
            continue
        split = f"{r['filter']:.0f} / {r['input']:.0f}" if r["filter"] or r["input"] else ""
        share = 100 * (r["forward"] + r["backward"]) / total
        print(f"{group:44s} {r['forward']:10.0f} {r['backward']:12.0f} {split:>18s} {share:5.0f}%")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="RegNetY600MF", help="a named model (default RegNetY600MF)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--inter-op", type=int, default=1, help="inter-op threads (default 1; 0: TF's default)")
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    result = profile(args)
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
