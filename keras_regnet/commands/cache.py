"""``keras-regnet cache list|verify|clear [MODEL[:TAG]]``: the downloaded and converted weights and their sha256 pins.

- ``list``: every cached file (downloads, converted ``.weights.h5``) and pin, with sizes and first-download dates.
- ``verify``: re-hash each cached file against its pin (and the published sha256), and re-validate each download
  (safetensors header, the model's tensor names and shapes, float and finite values). Changes nothing; exit 1 if
  any file fails.
- ``clear``: remove the downloaded and converted files and their pins, for one model (``RegNetY-600MF``), one
  weights tag (``RegNetY-600MF:ra3_in1k``, ``regnety_006.ra3_in1k``) or everything. The next load downloads and
  checks them again. The only repair for a damaged ``sha256.json`` is ``clear`` without a model.
"""

from __future__ import annotations

import sys


def add_arguments(parser):
    """Register the command's arguments."""
    parser.add_argument("action", choices=["list", "verify", "clear"],
                        help="list cached weights, verify them against their pins, or clear them (and their pins)")
    parser.add_argument("target", nargs="?", default=None, metavar="MODEL[:TAG]",
                        help="a model ('RegNetY-600MF'), or one of its weights ('RegNetY-600MF:ra3_in1k'); default all")


def _size(path):
    import os

    n = os.path.getsize(path)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _label(row):
    return f"{row['model']}:{row['tag']}" if row["model"] else "(not in the registry)"


def run(args):
    """Run ``keras-regnet cache``."""
    from keras_regnet.weights import download

    if args.action == "clear":
        removed = download.clear_cache(args.target)
        what = args.target or "all registry weights"
        if removed:
            for item in removed:
                print(f"removed {item}")
        print(f"cleared {what}: {len(removed)} item(s) removed; the next load downloads and verifies them again.")
        return 0
    if args.action == "list":
        rows = download.cache_entries(args.target)
        print(f"# weights cache: {download.cache_root(create=False)} ; Hub cache: {download.hf_cache_dir()}")
        if not rows:
            print("nothing cached" + (f" for {args.target}" if args.target else "") + ".")
            return 0
        for row in rows:
            pin = row["pin"]
            state = _size(row["path"]) if row["path"] else "not cached"
            pinned = f"sha256 {pin['sha256'][:16]}... pinned {pin.get('first_seen')}" if pin else "not pinned"
            print(f"{_label(row):34s} {row['kind']:9s} {state:>10s}  {pinned}  {row['path'] or row['key']}")
        return 0
    rows = download.verify_cache(args.target)
    bad = [r for r in rows if r["status"] in ("MISMATCH", "INVALID")]
    for row in rows:
        line = f"{row['status']:10s} {_label(row):34s} {row['kind']:9s} {row['path'] or row['key']}"
        print(line + (f"\n           {row['problem']}" if row["problem"] else ""))
    if not rows:
        print("nothing cached" + (f" for {args.target}" if args.target else "") + ".")
    if bad:
        targets = sorted({_label(r) for r in bad})
        print(f"keras-regnet cache: {len(bad)} file(s) failed verification; remove them (and their pins) with: "
              + " ; ".join(f"keras-regnet cache clear {t}" for t in targets), file=sys.stderr)
        return 1
    return 0
