"""`keras-regnet edf` at scale: wall time and peak memory (RSS) of comparing two large sweep results files.

Writes two results files of --records realistic sweep records each (RegNetX and AnyNetXA samples drawn by the
package's samplers, full sweep records as `keras-regnet sweep` writes them), then runs
``keras-regnet edf A B --out edf.png --json`` (10,000 bootstrap resamples, the default) --runs times, each in a
fresh process pinned to --cores CPU cores where the platform allows it, and prints wall seconds, CPU seconds
(user + system: what the run costs, whatever else runs on the machine) and the process's peak RSS as median
[min-max]. Not a timed test: the numbers depend on the machine.

    python benchmarks/edf_scale.py                      # 2 x 100,000 records, 3 runs, 2 cores
    python benchmarks/edf_scale.py --records 10000 --runs 1
    python benchmarks/edf_scale.py --json edf_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def write_results(path, space, n, seed):
    """``n`` sweep records of ``space`` (specs cycled from 500 sampled models, errors drawn at random)."""
    import numpy as np

    from keras_regnet.design_space.spaces import Regime, get_space

    regime = Regime(flops=(2e6, 6e6), resolution=32, classes=10)
    samples = []
    for spec, cx in get_space(space, stem="cifar").iter_samples(seed, regime):
        samples.append((spec, cx))
        if len(samples) == 500:
            break
    rng = np.random.default_rng(seed)
    errors = rng.normal(30 if space == "RegNetX" else 32, 4, n).clip(0, 100)
    sweep = {"space": space, "epochs": 10, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-5, "momentum": 0.9,
             "dataset": "digits", "image_size": 32, "flops": [2e6, 6e6], "params": None, "acts": None,
             "stem": "cifar", "stem_width": 32, "augment": "none", "eval_split": "test"}
    with open(path, "w") as f:
        for i in range(n):
            spec, cx = samples[i % len(samples)]
            rec = {"index": i, "space": space, "seed": seed, "model_seed": seed * 1_000_003 + i, "spec": spec, **cx,
                   "error": float(errors[i]), "train_time_s": 12.5, "epochs": 10, "dataset": "digits",
                   "image_size": 32, "num_classes": 10, "sweep": sweep, "sampler_version": 2,
                   "finished_at": "2026-12-03T10:00:00Z"}
            f.write(json.dumps(rec, sort_keys=True) + "\n")


def _cores(n):
    """The first ``n`` CPUs this process may use, or None where affinity cannot be set."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))[:n]


def run_once(a, b, out, cores):
    """(wall seconds, CPU seconds, peak RSS in MB, table rows) of one ``keras-regnet edf`` process."""
    cmd = [sys.executable, "-m", "keras_regnet.cli", "edf", a, b, "--out", out, "--json"]

    def pin():
        if cores:
            os.sched_setaffinity(0, cores)

    env = dict(os.environ, OMP_NUM_THREADS=str(len(cores or [1]) if cores else ""), MPLBACKEND="Agg")
    if not cores:
        env.pop("OMP_NUM_THREADS")
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, preexec_fn=pin if cores else None, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (peak RSS)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read(), err_f.read()
    if proc.returncode != 0:
        raise SystemExit(f"edf failed (exit {proc.returncode}):\n{stderr.decode()[-2000:]}")
    rows = [json.loads(line) for line in stdout.decode().splitlines()]
    # ru_maxrss is in KB on Linux, bytes on macOS.
    rss_mb = usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    return wall, usage.ru_utime + usage.ru_stime, rss_mb, rows


def _spread(values, fmt="{:.1f}"):
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per file (default 100000)")
    parser.add_argument("--runs", type=int, default=3, help="edf runs (default 3)")
    parser.add_argument("--cores", type=int, default=2, help="CPU cores the edf process may use (default 2)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if os.name != "posix" or not hasattr(os, "wait4"):
        raise SystemExit("this benchmark needs a POSIX system (os.wait4).")
    cores = _cores(args.cores)
    with tempfile.TemporaryDirectory() as tmp:
        a, b = os.path.join(tmp, "regnetx.jsonl"), os.path.join(tmp, "anynetxa.jsonl")
        start = time.perf_counter()
        write_results(a, "RegNetX", args.records, 0)
        write_results(b, "AnyNetXA", args.records, 1)
        size = (os.path.getsize(a) + os.path.getsize(b)) / 1e6
        print(f"# edf on 2 x {args.records} records ({size:.0f} MB of JSON lines, written in "
              f"{time.perf_counter() - start:.0f} s); {args.runs} run(s) on cores {cores or 'all'}; "
              f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
        walls, cpus, rss = [], [], []
        for r in range(args.runs):
            wall, cpu, mb, rows = run_once(a, b, os.path.join(tmp, "edf.png"), cores)
            walls.append(wall)
            cpus.append(cpu)
            rss.append(mb)
            print(f"run {r + 1}: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {mb:.0f} MB; n = {[row['n'] for row in rows]}, mean diff "
                  f"{rows[1]['mean_diff']:+.3f} [{rows[1]['diff_low']:+.3f}, {rows[1]['diff_high']:+.3f}]")
        print(f"wall seconds: {_spread(walls)}; CPU seconds (user + system): {_spread(cpus)}; peak RSS MB: "
              f"{_spread(rss, '{:.0f}')}")
        if os.getloadavg()[0] > len(cores or [0, 0]):
            print(f"note: load average {os.getloadavg()[0]:.1f} during the run (other processes): wall time is "
                  "inflated, CPU seconds are not.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"records": args.records, "runs": args.runs, "cores": cores, "wall_s": walls, "cpu_s": cpus,
                       "peak_rss_mb": rss},
                      f, indent=1)


if __name__ == "__main__":
    main()
