"""``keras-regnet sweep``: sample models from a design space, proxy-train each, append results to a JSONL file."""

from __future__ import annotations

import sys

from keras_regnet.design_space.spaces import SPACES


def _mega_range(text):
    """'360,400' or '360:400' (millions) -> (360e6, 400e6)."""
    import argparse

    parts = text.replace(":", ",").split(",")
    try:
        low, high = (float(p) * 1e6 for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX in millions (e.g. 360,400), got {text!r}") from None
    return low, high


def _shard(text):
    import argparse

    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 0/8), got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def _quiet_retracing():
    """Each proxy model traces its own train/eval functions; TF's 'excessive retracing' warning is expected noise."""
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def add_sweep_arguments(parser, spaces_positional=False, workers=1, workers_note=""):
    """Flags shared by ``sweep`` and ``compare``: data, regime and proxy recipe (``workers``: the --workers default)."""
    parser.add_argument("--samples", type=int, default=8, help="models to sample and train per design space (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="proxy training epochs per model (paper: 10; default %(default)s)")
    parser.add_argument("--dataset", default="digits",
                        help="'digits' (embedded, no network; default), a folder of class sub-folders, or a "
                             "tensorflow-datasets name such as imagenet2012")
    parser.add_argument("--data-dir", help="tensorflow-datasets data directory")
    parser.add_argument("--manual-dir", help="folder with manually downloaded archives (imagenet2012)")
    parser.add_argument("--train-split", default="train", help="training split (default train)")
    parser.add_argument("--eval-split", default="auto",
                        help="split the error is measured on; auto: test, else validation, else 10%% held out of train")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed; sample i is the same for the same seed")
    parser.add_argument("--flops", type=_mega_range, metavar="MIN,MAX",
                        help="complexity regime: flops (multiply-adds) in millions at the training image size, "
                             "e.g. 360,400 for the paper's 400MF regime at 224 px (default: sized to the data: "
                             "2-6 at 32 px, scaled with the image area; 360-400 at 224 px)")
    parser.add_argument("--no-flops", action="store_true",
                        help="no default flops regime: sample models of any size (the spaces' full ranges)")
    parser.add_argument("--params", type=_mega_range, metavar="MIN,MAX", help="regime on parameters, in millions")
    parser.add_argument("--acts", type=_mega_range, metavar="MIN,MAX", help="regime on activations, in millions")
    parser.add_argument("--batch-size", type=int,
                        help="batch size (default: sized to the data: 32 up to 20,000 training images such as the "
                             "digits, else the paper's 128)")
    parser.add_argument("--lr", type=float,
                        help="base learning rate of the half-period cosine schedule (default: sized to the data: 0.2 "
                             "at batch 32 up to 20,000 training images, else the paper's 0.1 at batch 128; scaled "
                             "linearly with --batch-size)")
    parser.add_argument("--weight-decay", type=float, default=5e-5, help="L2 weight decay, coupled as in pycls (5e-5)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (0.9)")
    parser.add_argument("--image-size", type=int,
                        help="training/eval resolution (default: the data set's size when fixed, else 224)")
    parser.add_argument("--stem", choices=("auto", "cifar", "imagenet"), default="auto",
                        help="stem of the sampled models; auto: stride-1 cifar stem up to 64 px, imagenet stem above")
    parser.add_argument("--stem-width", type=int, default=32, help="stem width (default 32)")
    parser.add_argument("--augment", choices=("auto", "none", "crop-flip"), default="auto",
                        help="training augmentation; auto: none for fixed-size images (digits), random-resized "
                             "crop + flip otherwise")
    parser.add_argument("--max-tries", type=int, default=50_000,
                        help="consecutive rejected candidates before a regime is declared unreachable (50000)")
    parser.add_argument("--workers", type=int, default=workers,
                        help="worker processes training models in parallel on this machine, sharing the results "
                             f"file (default %(default)s{workers_note})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per model instead)")


def config_from_args(args, space):
    """A SweepConfig from parsed flags."""
    from keras_regnet.design_space.sweep import SweepConfig

    if args.no_flops and args.flops:
        raise ValueError("give --flops MIN,MAX or --no-flops, not both.")
    return SweepConfig(
        space=space, samples=args.samples, epochs=args.epochs, dataset=args.dataset, seed=args.seed,
        flops=None if args.no_flops else (args.flops or "auto"), params=args.params, acts=args.acts, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, momentum=args.momentum, image_size=args.image_size, stem=args.stem,
        stem_width=args.stem_width, augment=args.augment, train_split=args.train_split, eval_split=args.eval_split,
        data_dir=args.data_dir, manual_dir=args.manual_dir, max_tries=args.max_tries,
    )


def add_arguments(parser):
    """Register the command's flags."""
    parser.description = (
        "Sample --samples models from a design space (optionally inside a complexity regime), train each with the "
        "paper's proxy recipe (SGD momentum 0.9, half-period cosine, weight decay 5e-5) and append one JSON line "
        "per model to --out. Without --flops the models are sized to the data (2-6 MF for the 32 px digits). Ctrl-C "
        "or SIGTERM stops within a batch; restarted with the same arguments, it resumes where it stopped. Several "
        "processes (or --workers N) can share one --out file: each sample is claimed before it is trained."
    )
    parser.add_argument("--space", required=True, choices=list(SPACES), metavar="SPACE",
                        help=f"design space: {', '.join(SPACES)}")
    parser.add_argument("--out", required=True, help="results file (JSON lines), appended to and resumed from")
    parser.add_argument("--shard", type=_shard, metavar="K/N",
                        help="train only samples i with i %% N == K: one process per GPU or machine, sharing one --out "
                             "or each writing its own (edf and fit merge the files of one sweep)")
    parser.add_argument("--release-claims", action="store_true",
                        help="remove every claim on --out (say who held them) and exit without training: for claims "
                             "of processes, containers or hosts that are gone and that should not wait until they "
                             "expire (a live claim released this way lets its sample be trained twice)")
    add_sweep_arguments(parser)


def run(args):
    """Run or resume the sweep, then print the population summary."""
    from keras_regnet.design_space import analysis
    from keras_regnet.design_space import results as results_lib
    from keras_regnet.design_space.sweep import run_sweep

    if args.release_claims:
        gone = results_lib.release_claims(args.out)
        for claim in gone:
            print(f"released {results_lib.describe_claim(claim)}")
        print(f"released {len(gone)} claim(s) on {args.out}." if gone else f"no claims on {args.out}.")
        return 0
    _quiet_retracing()

    records = run_sweep(config_from_args(args, args.space), args.out, shard=args.shard,
                        progress=not args.no_progress, workers=args.workers)
    if records:
        s = analysis.summarize(records)
        print(f"{args.space}: {s['n']} models in {args.out}; error min {s['min']:.2f}% mean {s['mean']:.2f}% "
              f"median {s['median']:.2f}%")
    held = results_lib.describe_claims(args.out)
    if held:
        print(f"keras-regnet sweep: {len(held)} sample(s) claimed by other processes were not trained here:\n  "
              + "\n  ".join(held) + "\nRerun this command when they are done; if their holders are gone, release "
              "the claims with the same command plus --release-claims (or wait until they expire).", file=sys.stderr)
    return 0
