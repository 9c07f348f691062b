"""``keras-regnet models``: the paper's 24 models, their structure and complexity computed vs the paper's table."""

from __future__ import annotations

import json

from keras_regnet import specs
from keras_regnet.complexity import complexity


def add_arguments(parser):
    """Register the command's flags."""
    parser.add_argument("--resolution", type=int, default=224, help="input resolution for complexity (default 224)")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")


def rows(resolution=224):
    """One dict per named model: generating params, stages, computed and paper complexity."""
    out = []
    for name in specs.MODEL_NAMES:
        p = specs.MODEL_PARAMS[name]
        a = p.to_anynet()
        cx = complexity(p, resolution=resolution)
        flops, params, acts, err = specs.PAPER_FIGURES[name]
        out.append({
            "model": name,
            "constructor": specs.constructor_name(name),
            "depths": list(a.depths),
            "widths": list(a.widths),
            "group_widths": list(a.group_widths),
            **cx,
            "paper_flops": flops,
            "paper_params": params,
            "paper_acts": acts,
            "paper_top1_err": err,
        })
    return out


def run(args):
    """Print the table; exit 1 if any computed figure differs from the paper's at 224 px."""
    table = rows(args.resolution)
    if args.json:
        for r in table:
            print(json.dumps(r))
        return 0
    header = f"{'model':<15}{'depths':<16}{'widths':<24}{'GF':>7}{'Mparams':>9}{'Macts':>8}{'err%':>7}  match"
    print(header)
    print("-" * len(header))
    mismatches = 0
    for r in table:
        same = (r["flops"], r["params"], r["acts"]) == (r["paper_flops"], r["paper_params"], r["paper_acts"])
        mismatches += not same
        mark = "exact" if same else ("n/a" if args.resolution != 224 else "DIFF")
        print(
            f"{r['model']:<15}{str(r['depths']):<16}{str(r['widths']):<24}{r['flops'] / 1e9:>7.3f}"
            f"{r['params'] / 1e6:>9.3f}{r['acts'] / 1e6:>8.3f}{r['paper_top1_err']:>7.2f}  {mark}"
        )
    if args.resolution == 224:
        print(f"\n{len(table) - mismatches}/{len(table)} models match the paper's flops, params and acts exactly.")
        return 1 if mismatches else 0
    return 0
