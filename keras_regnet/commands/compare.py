"""``keras-regnet compare``: a complete design-space comparison (sweeps + EDF + table) in one command."""

from __future__ import annotations

import os

from keras_regnet.commands import sweep as sweep_cmd
from keras_regnet.design_space.spaces import SPACES

# The embedded demo: 6 samples per space trained 3 epochs, a few minutes on 2 CPU cores. Batch size, learning
# rate and flops regime are the proxy defaults sized to the data that `sweep` uses too (batch 32, lr 0.2 and
# 2-6 MF at 32 px for the digits).
DEMO = {"samples": 6, "epochs": 3}
# Two training processes of one thread each: the demo's tiny models are bound by per-op overhead and tracing, not
# arithmetic, so two processes train about twice the models per hour of one process with two threads.
DEMO_WORKERS = min(2, os.cpu_count() or 1)
# The study (--study): the paper's central comparison on a harder embedded proxy. The full digits task
# saturates near 3% error (a 360-image test set that resolves 0.28%), where spaces differ by less than the noise;
# training on 40% of the digits training split (575 images) and measuring the error on the other 60% (862
# images) spreads the populations over tens of points, with an error resolution of 0.12%.
STUDY = {
    "spaces": ["AnyNetXA", "AnyNetXB", "AnyNetXC", "RegNetX"],  # reference first; AnyNetXA and RegNetX lead
    "samples": 40, "round": 10, "epochs": 3, "train_split": "train[:40%]", "eval_split": "train[40%:]",
    "out_dir": "runs/study",
}


def study_schedule(n_spaces, samples, step=None) -> list:
    """The order in which the spaces' sweeps grow: a list of (space position, samples so far).

    Without ``step`` (the demo) each space runs all its samples in turn. With ``step`` (the study) the reference
    (position 0) and the last space (RegNetX in the study: the paper's main comparison) lead by one round of
    ``step`` samples and the others follow, so a study stopped early has balanced, analysable populations, the
    main pair first; every call resumes where the files stop.
    """
    if not step or n_spaces < 3:
        if not step:
            return [(k, samples) for k in range(n_spaces)]
        return [(k, t) for t in _targets(samples, step) for k in range(n_spaces)]
    lead, rest = [0, n_spaces - 1], list(range(1, n_spaces - 1))
    targets = _targets(samples, step)
    out = []
    for r, t in enumerate(targets):
        out += [(k, t) for k in lead]
        if r:
            out += [(k, targets[r - 1]) for k in rest]
    out += [(k, targets[-1]) for k in rest]
    return out


def _targets(samples, step):
    return [*range(step, samples, step), samples] if samples else [0]


def add_arguments(parser):
    """Register the command's flags."""
    parser.description = (
        "Sweep each design space (resumable, one results file per space in --out-dir), then plot their error "
        "EDFs and scatter plots, print the comparison table and say whether each difference is significant. "
        "Defaults run the embedded demo: digits, 6 samples per space in a 2-6 MF regime, 3 epochs, two training "
        "processes, no network. --study runs the paper's comparison (AnyNetXA, XB, XC, RegNetX) with enough "
        "samples to be significant (about an hour on 2 cores)."
    )
    parser.add_argument("spaces", nargs="*", metavar="SPACE",
                        help=f"design spaces to compare, the first is the reference (default: AnyNetXA RegNetX; with "
                             f"--study: {' '.join(STUDY['spaces'])}); any of {', '.join(SPACES)}")
    parser.add_argument("--out-dir", help="folder for results and figures (default runs/compare; --study: runs/study)")
    parser.add_argument("--study", action="store_true",
                        help=f"the study: {STUDY['samples']} samples per space trained in rounds of {STUDY['round']} "
                             f"(every space grows together, so a stopped study is balanced and resumes), "
                             f"{STUDY['epochs']} epochs on {STUDY['train_split']} of the digits, error on "
                             f"{STUDY['eval_split']}; flags given explicitly override these".replace("%", "%%"))
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: analyse the results already in --out-dir (e.g. a stopped study)")
    parser.add_argument("--alpha", type=float, default=0.01,
                        help="significance level of the verdicts (KS p-value; default 0.01)")
    sweep_cmd.add_sweep_arguments(parser, workers=DEMO_WORKERS, workers_note=": min(2, CPU cores)")
    parser.set_defaults(**DEMO)


def _apply_study(args):
    """Fill the study's settings into flags left at their demo defaults."""
    if not args.spaces:
        args.spaces = list(STUDY["spaces"])
    if args.samples == DEMO["samples"]:
        args.samples = STUDY["samples"]
    if args.epochs == DEMO["epochs"]:
        args.epochs = STUDY["epochs"]
    if args.train_split == "train":
        args.train_split = STUDY["train_split"]
    if args.eval_split == "auto":
        args.eval_split = STUDY["eval_split"]
    if args.out_dir is None:
        args.out_dir = STUDY["out_dir"]


def run(args):
    """Run the sweeps, then the EDF report and the significance verdicts."""
    import dataclasses

    from keras_regnet.design_space.spaces import get_space
    from keras_regnet.design_space.sweep import load_proxy_data, run_sweep

    if not 0 < args.alpha < 1:
        raise ValueError(f"--alpha must be in (0, 1), got {args.alpha}.")
    if args.study:
        _apply_study(args)
    args.spaces = args.spaces or ["AnyNetXA", "RegNetX"]
    args.out_dir = args.out_dir or "runs/compare"
    sweep_cmd._quiet_retracing()

    spaces = [get_space(s).name for s in args.spaces]  # unknown names fail before any training
    if len(set(spaces)) != len(spaces):
        raise ValueError(f"each design space can appear once, got {args.spaces}.")
    if len(spaces) < 2:
        raise ValueError(f"compare needs at least two design spaces, got {spaces}.")
    configs = [sweep_cmd.config_from_args(args, name) for name in spaces]
    paths = [os.path.join(args.out_dir, f"{cfg.space}.jsonl") for cfg in configs]
    if args.report_only:
        missing = [p for p in paths if not os.path.exists(p)]
        paths = [p for p in paths if os.path.exists(p)]
        if len(paths) < 2 or missing[:1] == [os.path.join(args.out_dir, f"{spaces[0]}.jsonl")]:
            raise FileNotFoundError(f"--report-only: no results file {missing[0]}; run without --report-only first.")
        for p in missing:
            print(f"note: no results file {p} yet; that space is left out.")
    else:
        os.makedirs(args.out_dir, exist_ok=True)
        data = load_proxy_data(configs[0])  # one data pipeline for every space (only the space differs)
        for k, target in study_schedule(len(configs), args.samples, STUDY["round"] if args.study else None):
            run_sweep(dataclasses.replace(configs[k], samples=target), paths[k], progress=not args.no_progress,
                      data=data, workers=args.workers)
    return report(paths, args.out_dir, args.alpha, study=args.study)


def report(paths, out_dir, alpha=0.01, study=False):
    """EDF, scatter and fit figures, the table and the verdicts; a study also writes summary.json (the numbers
    it publishes, recomputable from the results files) and the RegNet trends figure."""
    import json

    from keras_regnet.commands import edf
    from keras_regnet.design_space import analysis

    rows = edf.report(
        paths, os.path.join(out_dir, "edf.png"), scatter=os.path.join(out_dir, "scatter.png"),
        fit_plot=os.path.join(out_dir, "fit.png"),
    )
    if not study:
        for line in analysis.verdicts(rows, alpha=alpha):
            print(line)
        return 0
    from keras_regnet.design_space import plots

    groups = analysis.load_groups(paths, log=lambda m: None)
    summary = analysis.study_summary(groups, alpha=alpha)
    print(analysis.format_study(summary))
    tmp = os.path.join(out_dir, "summary.json.tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, os.path.join(out_dir, "summary.json"))
    regnet = [r for recs in groups.values() for r in recs if r.get("spec", {}).get("type") == "regnet"]
    if len(regnet) >= 3:
        plots.plot_trends(regnet, os.path.join(out_dir, "trends.png"))
        print(analysis.format_trends(analysis.regnet_trends(regnet)))
    print(f"wrote {os.path.join(out_dir, 'summary.json')}")
    return 0
