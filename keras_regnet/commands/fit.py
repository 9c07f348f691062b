"""``keras-regnet fit``: fit the quantized linear width model (w0, wa, wm) to AnyNet samples (paper's Figure 7), or
report a RegNet population's parameter trends (``--trends``, the paper's Figures 9-11)."""

from __future__ import annotations

import json
import sys


def add_arguments(parser):
    """Register the command's flags."""
    parser.description = (
        "Fit w0, wa, wm of the quantized linear generator to per-block widths and report the fit error "
        "(mean |log ratio| of observed to generated widths). Give sweep results files, or --widths."
    )
    parser.add_argument("results", nargs="*", help="results files from `keras-regnet sweep`")
    parser.add_argument("--widths", type=int, nargs="+", metavar="W",
                        help="per-block widths to fit instead, e.g. --widths 24 56 152 152 152 152 368")
    from keras_regnet.commands.edf import positive_int

    parser.add_argument("--top", type=positive_int, default=None,
                        help="only the N best models of each space (default: all)")
    parser.add_argument("--trends", action="store_true",
                        help="for RegNet results: how d, w0, wa, wm, g, b relate to error (rank correlation, slope, "
                             "the best models' range; the paper's Figures 9-11); --top sets the best count (default: "
                             "the best quarter)")
    parser.add_argument("--plot", help="with --trends: also write the trends figure here (PNG)")
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def run(args):
    """Print one fit per sample (or for --widths)."""
    from keras_regnet import design
    from keras_regnet.design_space import analysis

    if bool(args.widths) == bool(args.results):
        raise ValueError("give either results files or --widths (not both, not neither).")
    if args.plot and not args.trends:
        raise ValueError("--plot draws the --trends figure; add --trends.")
    if args.trends:
        return _trends(args)
    if args.widths:
        fit = design.fit_quantized_linear(args.widths)
        print(json.dumps(fit) if args.json else
              f"w0={fit['w0']} wa={fit['wa']:.2f} wm={fit['wm']:.3f} fit_error={fit['fit_error']:.4f} "
              f"(linear fit error {fit['linear_fit_error']:.4f})")
        return 0
    groups = analysis.load_groups(args.results, log=lambda m: print(m, file=sys.stderr))
    groups = analysis.merge_shards(groups, log=lambda m: print(m, file=sys.stderr))  # sweep --shard parts
    from tqdm.auto import tqdm

    total = sum(min(len(v), args.top or len(v)) for v in groups.values())
    bar = tqdm(total=total, desc="fitting", unit="model", file=sys.stderr, disable=None if total > 200 else True,
               leave=False)
    if not args.json:
        print(f"{'space':<14}{'index':>6}{'error':>8}{'w0':>6}{'wa':>8}{'wm':>7}{'fit_err':>9}  depths / widths")
    for label, records in groups.items():
        records = sorted(records, key=lambda r: r["error"])
        for r in records[: args.top or None]:
            widths = analysis.block_widths(r["spec"])
            fit = design.fit_quantized_linear(widths)
            bar.update(1)
            row = {"space": label, "index": r.get("index"), "error": r["error"], **fit, "d": len(widths)}
            if args.json:
                tqdm.write(json.dumps(row), file=sys.stdout)  # above the progress bar
            else:
                p = r["spec"]
                shape = (f"d={p['depth']} (RegNet)" if p.get("type") == "regnet"
                         else f"{p['depths']} / {p['widths']}")
                tqdm.write(f"{label:<14}{str(r.get('index')):>6}{r['error']:>8.2f}{fit['w0']:>6}{fit['wa']:>8.2f}"
                           f"{fit['wm']:>7.3f}{fit['fit_error']:>9.4f}  {shape}", file=sys.stdout)
    bar.close()
    return 0


def _trends(args):
    """Print (and plot) the RegNet trends of the merged results files."""
    from keras_regnet.design_space import analysis

    if args.widths:
        raise ValueError("--trends reads results files, not --widths.")
    groups = analysis.load_groups(args.results, log=lambda m: print(m, file=sys.stderr))
    groups = analysis.merge_shards(groups, log=lambda m: print(m, file=sys.stderr))
    records = [r for recs in groups.values() for r in recs]
    trends = analysis.regnet_trends(records, top=args.top)
    if args.plot:
        from keras_regnet.design_space import plots

        plots.plot_trends(records, args.plot, top=args.top)
    if args.json:
        print(json.dumps({k: v for k, v in trends.items() if k != "records"}))
    else:
        print(analysis.format_trends(trends))
        if args.plot:
            print(f"wrote {args.plot}")
    return 0
