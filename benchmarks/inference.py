"""CPU inference and training-step speed: keras-regnet vs timm (PyTorch), kimm, tf_keras and Keras's EfficientNet.

Every model runs in its own worker process (so one framework's thread pools, caches and allocator never slow
another's), with the same intra-op thread count (``--threads``, default 2) for every framework and each
framework's own inter-op default (``--inter-op`` sets one for all; TensorFlow's default runs independent ops of a
graph, such as a convolution's filter and input gradients, side by side; PyTorch's inter-op pool does not run an
eager model's forward or backward pass). The coordinator runs the rounds interleaved - round 1 of every model,
then round 2 of every model, ... - so machine noise hits every model alike, and reports medians with the spread
(min-max for throughput and training, IQR for latency). Peers that are not installed (torch + timm, kimm, tf_keras) are skipped with a note.

Models use random weights (speed does not depend on values), except that our models' BatchNorm statistics and
biases are set to non-trivial random values: with Keras's default init (mean 0, variance 1, bias 0) a folded
BatchNorm leaves zero biases that TensorFlow's constant folding would remove, which flatters the folded graph.

    python benchmarks/inference.py                    # full run (about 10 minutes on 2 cores)
    python benchmarks/inference.py --quick            # a smoke run: 64 px, batch 4, 2 rounds
    python benchmarks/inference.py --json out.json    # also write the results as JSON

Labels: "ours" is ``keras_regnet.inference.InferenceModel`` (folded BN, constant weights, one traced graph);
"ours-default" is what a user calls, ``model(x, training=False)`` eagerly (the model's default inference path, which
runs the same fast graph from the second call on); "ours-predict" is ``model.predict(x, verbose=0)`` on a NumPy
batch (Keras's default batch size, NumPy out); "ours-keras" is the Keras graph of the model in a user's
``tf.function`` (the variables, BatchNorm unfolded; it also times the training step); "ours-bf16" is
``InferenceModel(model, precision="bfloat16")`` and "timm-bf16" timm under ``torch.autocast("cpu", dtype=bfloat16)``.

Inference is timed before any training step, in every worker: a PyTorch process that has run SGD steps was
measured running timm's inference ~45% faster than a fresh one (cause not isolated), which would compare a
warmed-up PyTorch with a fresh TensorFlow.

    python benchmarks/inference.py --runs 3           # three independent runs (fresh workers), ratios per run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PROTO = "@@BENCH "

# label -> (framework, description, trains)
MODELS = {
    "ours": ("keras_regnet", "keras_regnet RegNetY600MF, InferenceModel", False),
    "ours-default": ("keras_regnet", "keras_regnet RegNetY600MF, model(x, training=False)", False),
    "ours-predict": ("keras_regnet", "keras_regnet RegNetY600MF, model.predict(x)", False),
    "ours-keras": ("keras_regnet", "keras_regnet RegNetY600MF, Keras graph tf.function", True),
    "ours-bf16": ("keras_regnet", "keras_regnet RegNetY600MF, InferenceModel bfloat16", False),
    "timm": ("timm", "timm regnety_006 (PyTorch eager)", True),
    "timm-bf16": ("timm", "timm regnety_006, torch.autocast bfloat16", False),
    "kimm": ("kimm", "kimm RegNetY006 (Keras 3 tf.function)", False),
    "tf_keras": ("tf_keras", "tf_keras RegNetY006 (Keras 2 tf.function)", False),
    "effnet": ("keras", "keras EfficientNetB0 (tf.function)", True),
}
DEFAULT_MODELS = ("ours", "ours-default", "ours-predict", "ours-keras", "ours-bf16", "timm", "timm-bf16", "effnet")
REQUIRES = {"timm": ("torch", "timm"), "timm-bf16": ("torch", "timm"), "kimm": ("kimm",), "tf_keras": ("tf_keras",)}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average():
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def installed(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def versions():
    from importlib import metadata

    out = {}
    for dist in ("tensorflow", "keras", "keras-regnet", "numpy", "torch", "timm", "kimm", "tf_keras"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------------------------- worker side


def _perturb_keras(model, seed=1):
    """Non-trivial BatchNorm statistics and biases (see the module docstring)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.1, c).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, tuple(layer.bias.shape)).astype("float32"))


def _import_torchvision(torch):
    """Import torchvision (timm imports it) also where its compiled ops cannot load.

    A CPU-only torch wheel with the PyPI torchvision (built for the CUDA torch) cannot load torchvision's C++ ops,
    and torchvision then fails at import on two fake-kernel registrations of those ops (``nms``, ``qnms``) that it
    does not guard. timm's RegNets use none of torchvision's ops: skip those two registrations in that case.
    """
    try:
        import torchvision  # noqa: F401

        return
    except RuntimeError:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    original = torch.library.register_fake

    def register_fake(op, *args, **kwargs):
        if isinstance(op, str) and op.startswith("torchvision::") and not args and not kwargs:
            return lambda fn: fn
        return original(op, *args, **kwargs)

    torch.library.register_fake = register_fake
    try:
        import torchvision  # noqa: F401, F811
    finally:
        torch.library.register_fake = original


class _Worker:
    def __init__(self, label, size, threads, inter_op=0):
        self.label, self.size, self.threads, self.inter_op = label, size, threads, inter_op
        self.framework = MODELS[label][0]
        import numpy as np

        rng = np.random.default_rng(0)
        self.np_images = lambda n: rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
        if self.framework == "timm":
            self._init_torch()
        else:
            self._init_tf()

    def _init_tf(self):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(self.threads)
        if self.inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(self.inter_op)
        import keras

        shape = (self.size, self.size, 3)
        if self.framework == "keras_regnet":
            import keras_regnet

            self.model = keras_regnet.RegNetY600MF(weights=None, input_shape=shape)
            _perturb_keras(self.model)
        elif self.framework == "kimm":
            import kimm

            self.model = kimm.models.RegNetY006(weights=None, input_shape=shape)
        elif self.framework == "tf_keras":
            import tf_keras

            self.model = tf_keras.applications.RegNetY006(weights=None, input_shape=shape)
        else:
            self.model = keras.applications.EfficientNetB0(weights=None, input_shape=shape)
        if self.label in ("ours", "ours-bf16"):
            from keras_regnet.inference import InferenceModel

            precision = "bfloat16" if self.label == "ours-bf16" else "float32"
            self.forward = InferenceModel(self.model, precision=precision).function
        elif self.label == "ours-default":
            model = self.model
            self.forward = lambda x: model(x, training=False)  # eager: the model's default inference path
        elif self.label == "ours-predict":
            model = self.model
            self.forward = lambda x: model.predict(x, verbose=0)  # a NumPy batch in, NumPy out, as users call it
        else:
            model = self.model
            self.forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self.to_input = (lambda a: a) if self.label == "ours-predict" else tf.constant
        self.sync = (lambda r: r) if self.label == "ours-predict" else (lambda r: r.numpy())
        self.threads_note = (
            f"TF intra-op {tf.config.threading.get_intra_op_parallelism_threads()}, "
            f"inter-op {tf.config.threading.get_inter_op_parallelism_threads() or 'default (cores)'}, "
            f"oneDNN {'on' if os.environ.get('TF_ENABLE_ONEDNN_OPTS', '1') != '0' else 'off'}"
        )

    def _init_torch(self):
        import torch

        _import_torchvision(torch)
        import timm

        torch.set_num_threads(self.threads)
        if self.inter_op:
            try:
                torch.set_num_interop_threads(self.inter_op)
            except RuntimeError:
                pass
        self.torch = torch
        self.model = timm.create_model("regnety_006", pretrained=False).eval()

        if self.label == "timm-bf16":
            def forward(x):
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return self.model(x)
        else:
            def forward(x):
                with torch.inference_mode():
                    return self.model(x)

        self.forward = forward
        self.to_input = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy())
        self.sync = lambda r: r
        self.threads_note = f"torch intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}"

    def _train_step(self, batch):
        if hasattr(self, "_step"):
            return self._step
        import numpy as np

        y = np.random.default_rng(1).integers(0, 1000, (batch,))
        if self.framework == "timm":
            torch = self.torch
            model = self.model
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            xt, yt = self.to_input(self.np_images(batch)), torch.from_numpy(y)
            loss_fn = torch.nn.CrossEntropyLoss()

            def step():
                model.train()
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xt), yt)
                loss.backward()
                opt.step()
                return float(loss)
        else:
            import keras

            self.model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
            xt, yt = self.np_images(batch), y

            def step():
                return self.model.train_on_batch(xt, yt)

        step()  # trace + warm-up
        self._step = step
        return step

    def time(self, what, batch, repeats):
        if what == "train":
            step = self._train_step(batch)
            out = []
            for _ in range(repeats):
                t = time.perf_counter()
                step()
                out.append(time.perf_counter() - t)
            return out
        x = self.to_input(self.np_images(batch))
        key = f"_warm{batch}"
        if not hasattr(self, key):
            self.sync(self.forward(x))
            self.sync(self.forward(x))
            setattr(self, key, True)
            if self.label in ("ours-default", "ours-predict"):
                from keras_regnet.inference import fast_path_info

                if not fast_path_info(self.model)["active"]:
                    raise RuntimeError(f"the default inference path is not active: {fast_path_info(self.model)}")
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.sync(self.forward(x))
            out.append(time.perf_counter() - t)
        return out


def worker_main(label, size, threads, inter_op=0):
    def send(obj):
        sys.stdout.write(PROTO + json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        w = _Worker(label, size, threads, inter_op)
        send({"ready": True, "threads": w.threads_note})
    except Exception as e:  # reported to the coordinator, which skips this model
        send({"ready": False, "error": f"{type(e).__name__}: {e}"})
        return
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("quit"):
            break
        try:
            send({"times": w.time(cmd["what"], cmd["batch"], cmd["repeats"])})
        except Exception as e:
            send({"error": f"{type(e).__name__}: {e}"})


# ------------------------------------------------------------------------------------------ coordinator side


class _Proxy:
    def __init__(self, label, size, threads, omp_passive=False, inter_op=0):
        self.label = label
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if omp_passive:
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", label, "--size", str(size), "--threads", str(threads),
             "--inter-op", str(inter_op)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )

    def recv(self):
        for line in self.proc.stdout:
            if line.startswith(PROTO):
                return json.loads(line[len(PROTO):])
        return {"ready": False, "error": "worker exited"}

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.recv()

    def close(self):
        try:
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _spread(values, scale=1.0):
    import numpy as np

    v = np.asarray(values) * scale
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "min": float(v.min()), "max": float(v.max()), "q1": float(q1), "q3": float(q3),
            "n": int(len(v))}


def run(args):
    labels = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in labels if m not in MODELS]
    if unknown:
        raise SystemExit(f"error: unknown model label(s) {unknown}; choose from {', '.join(MODELS)}")
    notes = []
    active = []
    for label in labels:
        missing = [m for m in REQUIRES.get(label, ()) if not installed(m)]
        if missing:
            notes.append(f"{label}: skipped ({', '.join(missing)} not installed)")
        else:
            active.append(label)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = load_average()
    proxies = {}
    threads = {}
    for label in active:  # start one at a time: start-up is heavy and must not overlap timing
        p = _Proxy(label, args.size, args.threads, args.omp_passive, args.inter_op)
        hello = p.recv()
        if not hello.get("ready"):
            notes.append(f"{label}: skipped ({hello.get('error')})")
            p.close()
            continue
        proxies[label] = p
        threads[label] = hello["threads"]
    results = {label: {"thr": [], "lat": [], "train": []} for label in proxies}
    try:
        for r in range(args.rounds):
            for label, p in proxies.items():
                for key, what, batch, reps in (("thr", "infer", args.batch, args.throughput_repeats),
                                               ("lat", "infer", 1, args.latency_repeats)):
                    reply = p.ask(what=what, batch=batch, repeats=reps)
                    if "error" in reply:
                        raise SystemExit(f"error: {label} failed: {reply['error']}")
                    results[label][key] += reply["times"]
            print(f"inference round {r + 1}/{args.rounds} done (load {load_average()})", flush=True)
        wanted = [t.strip() for t in args.trainers.split(",")] if args.trainers else None
        trainers = [l for l in proxies if MODELS[l][2] and (wanted is None or l in wanted)] if args.train else []
        for r in range(args.train_rounds if trainers else 0):
            for label in trainers:
                reply = proxies[label].ask(what="train", batch=args.batch, repeats=args.train_repeats)
                if "error" in reply:
                    raise SystemExit(f"error: {label} training failed: {reply['error']}")
                results[label]["train"] += reply["times"]
            print(f"training round {r + 1}/{args.train_rounds} done (load {load_average()})", flush=True)
    finally:
        for p in proxies.values():
            p.close()

    summary = {
        "date": started,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "load_start": load_start, "load_end": load_average()},
        "versions": versions(),
        "settings": {"size": args.size, "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
                     "inter_op": args.inter_op or "framework default", "latency_repeats": args.latency_repeats,
                     "throughput_repeats": args.throughput_repeats, "train_repeats": args.train_repeats,
                     "train_rounds": args.train_rounds if args.train else 0, "per_model_threads": threads,
                     "omp_wait_policy": "PASSIVE" if args.omp_passive else os.environ.get("OMP_WAIT_POLICY", "default")},
        "notes": notes,
        "models": {},
        "ratios": {},
    }
    for label, res in results.items():
        entry = {"description": MODELS[label][1]}
        if res["thr"]:
            entry["throughput_img_s"] = _spread([args.batch / t for t in res["thr"]])
        if res["lat"]:
            entry["latency_ms"] = _spread(res["lat"], 1000.0)
        if res["train"]:
            entry["train_step_s"] = _spread(res["train"])
        summary["models"][label] = entry
    m = summary["models"]

    def ratio(name, a, b, key, invert=False):
        if a in m and b in m and key in m[a] and key in m[b]:
            va, vb = m[a][key]["median"], m[b][key]["median"]
            summary["ratios"][name] = round((vb / va) if invert else (va / vb), 3)

    ratio("throughput ours/timm", "ours", "timm", "throughput_img_s")
    ratio("throughput ours/effnet", "ours", "effnet", "throughput_img_s")
    ratio("throughput ours/kimm", "ours", "kimm", "throughput_img_s")
    ratio("throughput ours-keras/timm", "ours-keras", "timm", "throughput_img_s")
    ratio("latency ours/timm", "ours", "timm", "latency_ms")
    ratio("latency ours-keras/timm", "ours-keras", "timm", "latency_ms")
    ratio("throughput ours-default/timm", "ours-default", "timm", "throughput_img_s")
    ratio("latency ours-default/timm", "ours-default", "timm", "latency_ms")
    ratio("latency ours-predict/timm", "ours-predict", "timm", "latency_ms")
    ratio("throughput ours-predict/timm", "ours-predict", "timm", "throughput_img_s")
    ratio("throughput ours-bf16/timm-bf16", "ours-bf16", "timm-bf16", "throughput_img_s")
    ratio("latency ours-bf16/timm-bf16", "ours-bf16", "timm-bf16", "latency_ms")
    ratio("throughput ours-bf16/ours", "ours-bf16", "ours", "throughput_img_s")
    ratio("latency ours-bf16/ours", "ours-bf16", "ours", "latency_ms")
    ratio("throughput timm-bf16/timm", "timm-bf16", "timm", "throughput_img_s")
    ratio("train step ours-keras/timm", "ours-keras", "timm", "train_step_s")
    ratio("train step ours-keras/effnet", "ours-keras", "effnet", "train_step_s")
    return summary


def print_summary(s):
    mach = s["machine"]
    st = s["settings"]
    print()
    print(f"date: {s['date']}")
    print(f"machine: {mach['cpu']}, {mach['cores']} cores; {mach['platform']}")
    print(f"load average (1/5/15 min) at start: {mach['load_start']}; at end: {mach['load_end']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in s["versions"].items()))
    print(f"settings: {st['size']} px, batch {st['batch']}, {st['threads']} intra-op threads per framework, "
          f"inter-op threads: {st.get('inter_op', 1)}, {st['rounds']} interleaved rounds "
          f"({st.get('throughput_repeats', 1)} batches and {st.get('latency_repeats', '?')} batch-1 calls per model "
          f"each), training: {st.get('train_rounds')} rounds x {st.get('train_repeats', 1)} steps; one worker process "
          f"per model")
    for label, note in st["per_model_threads"].items():
        print(f"  threads {label}: {note}")
    print(f"  OMP_WAIT_POLICY (PyTorch's OpenMP pool): {st['omp_wait_policy']}")
    try:
        busy = float(mach["load_start"].split()[0]) > 0.5 * (mach["cores"] or 1)
    except (ValueError, IndexError):
        busy = False
    if busy and s.get("after_previous_run"):
        print("  (the load average at the start includes the previous run of this benchmark, which just ended)")
    elif busy:
        print("  WARNING: the machine was busy when the run started (load average above half the cores): absolute "
              "timings are inflated and OpenMP spin-waiting (PyTorch) suffers most; rerun on a quiet machine.")
    for note in s["notes"]:
        print(f"  note: {note}")
    print()
    header = (f"{'model':<14}{'description':<46}{'img/s bs' + str(st['batch']) + ' [min-max]':>26}"
              f"{'bs1 ms [IQR]':>24}{'train s/step [min-max]':>26}")
    print(header)
    print("-" * len(header))
    for label, e in s["models"].items():
        thr = e.get("throughput_img_s")
        lat = e.get("latency_ms")
        tr = e.get("train_step_s")
        thr_s = f"{thr['median']:.1f} [{thr['min']:.1f}-{thr['max']:.1f}]" if thr else "-"
        lat_s = f"{lat['median']:.2f} [{lat['q1']:.2f}-{lat['q3']:.2f}]" if lat else "-"
        tr_s = f"{tr['median']:.3f} [{tr['min']:.3f}-{tr['max']:.3f}]" if tr else "-"
        print(f"{label:<14}{e['description']:<46}{thr_s:>26}{lat_s:>24}{tr_s:>26}")
    print()
    print("ratios (medians, this run):")
    for name, value in s["ratios"].items():
        print(f"  {name}: {value:.2f}x")


# (ratio, "<=" or ">=", bound): checked in every run and across runs
CHECKS = (
    ("latency ours-default/timm", "<=", 1.0),
    ("latency ours-predict/timm", "<=", 1.0),
    ("latency ours/timm", "<=", 1.0),
    ("throughput ours/effnet", ">=", 1.5),
    ("train step ours-keras/timm", "<=", 0.45),
    ("throughput ours-bf16/timm-bf16", ">=", 1.0),
    ("latency ours-bf16/timm-bf16", "<=", 1.0),
)


def across_runs(summaries):
    """{ratio: {"median", "min", "max", "runs": [...]}} over the runs that measured it, and the checks."""
    out = {"ratios": {}, "checks": []}
    names = [n for n in summaries[0]["ratios"] if all(n in s["ratios"] for s in summaries)]
    for name in names:
        values = [s["ratios"][name] for s in summaries]
        out["ratios"][name] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                               "runs": values}
    for name, op, bound in CHECKS:
        if name in out["ratios"]:
            values = out["ratios"][name]["runs"]
            held = sum((v <= bound) if op == "<=" else (v >= bound) for v in values)
            out["checks"].append({"ratio": name, "bound": f"{op} {bound}", "held_in": held, "runs": len(values)})
    return out


def print_across(across, n):
    print()
    print(f"across {n} runs (median [min-max] of the per-run median ratios):")
    for name, r in across["ratios"].items():
        print(f"  {name}: {r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}]  runs: "
              + ", ".join(f"{v:.2f}" for v in r["runs"]))
    for c in across["checks"]:
        print(f"  check {c['ratio']} {c['bound']}: held in {c['held_in']} of {c['runs']} runs")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated labels from {', '.join(MODELS)} (default: {','.join(DEFAULT_MODELS)})")
    parser.add_argument("--size", type=int, default=224, help="input resolution (default 224)")
    parser.add_argument("--batch", type=int, default=32, help="throughput / training batch size (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every framework (default 2)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved inference rounds (default 7)")
    parser.add_argument("--latency-repeats", type=int, default=10, help="batch-1 calls per round (default 10)")
    parser.add_argument("--throughput-repeats", type=int, default=3,
                        help="batches (of --batch) timed per model per round (default 3)")
    parser.add_argument("--train-repeats", type=int, default=2,
                        help="training steps timed per model per training round (default 2)")
    parser.add_argument("--inter-op", type=int, default=0,
                        help="inter-op threads for every framework (default 0: each framework's own default, as its "
                             "users run it: TensorFlow one per core; PyTorch's pool does not run an eager model)")
    parser.add_argument("--train-rounds", type=int, default=5, help="interleaved training rounds (default 5)")
    parser.add_argument("--no-train", dest="train", action="store_false", help="skip the training-step timing")
    parser.add_argument("--trainers", help="comma-separated labels whose training step is timed (default: every "
                                           "model that trains: ours-keras, timm, effnet)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 px, batch 4, 2 rounds, 2 training rounds")
    parser.add_argument("--omp-passive", action="store_true",
                        help="OMP_WAIT_POLICY=PASSIVE for the workers (PyTorch's OpenMP threads sleep instead of "
                             "spinning; far fairer to PyTorch on a busy, oversubscribed machine)")
    parser.add_argument("--runs", type=int, default=1,
                        help="independent runs (fresh worker processes each), summarised across runs (default 1)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("size", "batch", "threads", "rounds", "latency_repeats", "train_rounds", "runs", "throughput_repeats",
                 "train_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.worker:
        return worker_main(args.worker, args.size, args.threads, args.inter_op)
    if args.quick:
        args.size, args.batch, args.rounds, args.latency_repeats, args.train_rounds = 64, 4, 2, 2, 2
    summaries = []
    for i in range(args.runs):
        if args.runs > 1:
            print(f"\n=== run {i + 1} of {args.runs}", flush=True)
        summaries.append(run(args))
        summaries[-1]["after_previous_run"] = i > 0
        print_summary(summaries[-1])
    summary = summaries[0]
    if args.runs > 1:
        across = across_runs(summaries)
        print_across(across, args.runs)
        summary = {"runs": summaries, "across": across}
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=2)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
