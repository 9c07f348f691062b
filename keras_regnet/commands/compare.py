"""``keras-regnet compare``: a complete design-space comparison (sweeps + EDF + table) in one command."""

from __future__ import annotations

import os

from keras_regnet.commands import sweep as sweep_cmd
from keras_regnet.design_space.spaces import SPACES

# The embedded demo's defaults: small models in a 2-6 MF regime at 32 px trained for 3 short epochs, so two
# spaces x 6 samples finish in a few minutes on 2 CPU cores.
DEMO = {"samples": 6, "epochs": 3, "batch_size": 32, "lr": 0.2}  # the flops regime is sized to the data: 2-6 MF at 32 px
# Two training processes of one thread each: the demo's tiny models are bound by per-op overhead and tracing, not
# arithmetic, so two processes train about twice the models per hour of one process with two threads.
DEMO_WORKERS = min(2, os.cpu_count() or 1)


def add_arguments(parser):
    """Register the command's flags."""
    parser.description = (
        "Sweep each design space (resumable, one results file per space in --out-dir), then plot their error "
        "EDFs and scatter plots and print the comparison table. Defaults run the embedded demo: digits, 6 "
        "samples per space in a 2-6 MF regime, 3 epochs, two training processes, no network."
    )
    parser.add_argument("spaces", nargs="*", default=["AnyNetXA", "RegNetX"], metavar="SPACE",
                        help=f"design spaces to compare, the first is the reference (default: AnyNetXA RegNetX); "
                             f"any of {', '.join(SPACES)}")
    parser.add_argument("--out-dir", default="runs/compare", help="folder for results and figures (runs/compare)")
    sweep_cmd.add_sweep_arguments(parser, workers=DEMO_WORKERS, workers_note=": min(2, CPU cores)")
    parser.set_defaults(**DEMO)


def run(args):
    """Run the sweeps, then the EDF report."""
    from keras_regnet.commands import edf
    from keras_regnet.design_space.spaces import get_space
    from keras_regnet.design_space.sweep import load_proxy_data, run_sweep

    sweep_cmd._quiet_retracing()

    spaces = [get_space(s).name for s in args.spaces]  # unknown names fail before any training
    if len(set(spaces)) != len(spaces):
        raise ValueError(f"each design space can appear once, got {args.spaces}.")
    configs = [sweep_cmd.config_from_args(args, name) for name in spaces]
    os.makedirs(args.out_dir, exist_ok=True)
    data = load_proxy_data(configs[0])  # one data pipeline for every space (only the space differs)
    paths = []
    for cfg in configs:
        path = os.path.join(args.out_dir, f"{cfg.space}.jsonl")
        run_sweep(cfg, path, progress=not args.no_progress, data=data, workers=args.workers)
        paths.append(path)
    edf.report(
        paths, os.path.join(args.out_dir, "edf.png"), scatter=os.path.join(args.out_dir, "scatter.png"),
        fit_plot=os.path.join(args.out_dir, "fit.png"),
    )
    return 0
