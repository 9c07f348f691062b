"""The paper's design-space comparison on ImageNet: N samples per space in the 400MF regime, 10 epochs each.

Runs ``keras-regnet sweep`` once per design space with one worker process per GPU (``--shard k/n`` and
``CUDA_VISIBLE_DEVICES=k``): the workers share one results file per space (appends are locked and atomic), each
trains the sample indices i with i % n == k. Everything is resumable: rerun the same command after a crash or
preemption and only unfinished samples are trained. At the end the EDFs, scatter plots and the comparison table
are written next to the results.

    python recipes/sweep_imagenet.py --manual-dir ~/imagenet --data-dir ~/tensorflow_datasets \\
        --spaces AnyNetXA AnyNetXE RegNetX --samples 100 --out-dir runs/imagenet_sweep

The paper's setting (Section 3): flops in [360, 400] M at 224 px, 10 epochs, SGD momentum 0.9, lr 0.1 at batch
128, half-period cosine, weight decay 5e-5, standard Inception crop + flip augmentation; error on ImageNet
validation. ``--dry-run`` prints the worker commands without running them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys


def count_gpus() -> int:
    """Number of visible NVIDIA GPUs (via nvidia-smi, so this process never initialises TensorFlow on a GPU)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def prepare(args):
    """Prepare imagenet2012 once (from --manual-dir) before the workers start, so they do not race on it."""
    from keras_regnet.datasets import load_dataset

    for split in ("train", "validation"):
        _, info = load_dataset(args.dataset, split, data_dir=args.data_dir, manual_dir=args.manual_dir)
        print(f"{args.dataset} {split}: {info.num_examples} images, {info.num_classes} classes", flush=True)


def worker_command(args, space, shard, shards):
    cmd = [
        sys.executable, "-m", "keras_regnet.cli", "sweep", "--space", space, "--samples", str(args.samples),
        "--epochs", str(args.epochs), "--dataset", args.dataset, "--flops", args.flops,
        "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--weight-decay", "5e-5",
        "--image-size", "224", "--augment", "crop-flip", "--eval-split", "validation", "--seed", str(args.seed),
        "--out", os.path.join(args.out_dir, f"{space}.jsonl"), "--shard", f"{shard}/{shards}",
    ]
    for flag, value in (("--data-dir", args.data_dir), ("--manual-dir", args.manual_dir)):
        if value:
            cmd += [flag, value]
    return cmd


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", nargs="+", default=["AnyNetXA", "AnyNetXE", "RegNetX"],
                        help="design spaces to sweep, the first is the reference (default AnyNetXA AnyNetXE RegNetX)")
    parser.add_argument("--samples", type=int, default=100, help="models per space (paper: 100-500; default 100)")
    parser.add_argument("--epochs", type=int, default=10, help="proxy epochs (paper: 10)")
    parser.add_argument("--flops", default="360,400", help="regime in MF at 224 px (paper: 360,400)")
    parser.add_argument("--batch-size", type=int, default=128, help="per-GPU batch size (paper: 128)")
    parser.add_argument("--lr", type=float, default=0.1, help="base learning rate (paper: 0.1 at batch 128)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--dataset", default="imagenet2012", help="tensorflow-datasets name (default imagenet2012)")
    parser.add_argument("--data-dir", help="tensorflow-datasets data directory")
    parser.add_argument("--manual-dir", help="folder with ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar")
    parser.add_argument("--gpus", type=int, help="worker processes, one per GPU (default: all visible GPUs, else 1)")
    parser.add_argument("--out-dir", default="runs/imagenet_sweep", help="results and figures folder")
    parser.add_argument("--dry-run", action="store_true", help="print the worker commands and exit")
    args = parser.parse_args()

    shards = args.gpus or max(count_gpus(), 1)
    os.makedirs(args.out_dir, exist_ok=True)
    if args.dry_run:
        for space in args.spaces:
            for k in range(shards):
                print(f"CUDA_VISIBLE_DEVICES={k} " + shlex.join(worker_command(args, space, k, shards)))
        return 0
    prepare(args)
    for space in args.spaces:
        print(f"== {space}: {args.samples} samples on {shards} worker(s)", flush=True)
        procs = []
        for k in range(shards):
            env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(k)) if shards > 1 or count_gpus() else dict(os.environ)
            # Only worker 0 draws a progress bar; the others log one line per model.
            cmd = worker_command(args, space, k, shards) + ([] if k == 0 else ["--no-progress"])
            procs.append(subprocess.Popen(cmd, env=env))
        codes = [p.wait() for p in procs]
        if any(codes):
            print(f"{space}: worker exit codes {codes}; rerun the same command to resume.", file=sys.stderr)
            return 1
    paths = [os.path.join(args.out_dir, f"{s}.jsonl") for s in args.spaces]
    return subprocess.call([
        sys.executable, "-m", "keras_regnet.cli", "edf", *paths, "--out", os.path.join(args.out_dir, "edf.png"),
        "--scatter", os.path.join(args.out_dir, "scatter.png"), "--fit-plot", os.path.join(args.out_dir, "fit.png"),
    ])


if __name__ == "__main__":
    sys.exit(main())
