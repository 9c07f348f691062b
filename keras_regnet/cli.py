"""The ``keras-regnet`` command line: one sub-command per job, each defined in its own module.

Sub-command modules are imported only when used, so ``keras-regnet models`` starts without loading TensorFlow.
Each module listed in ``COMMANDS`` provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name: (module, one-line help)
COMMANDS = {
    "models": ("keras_regnet.commands.models", "print the 24 paper models with computed vs paper complexity"),
    "predict": ("keras_regnet.commands.predict", "classify images with pretrained weights (top classes + probabilities)"),
    "convert": ("keras_regnet.commands.convert", "convert timm/pycls/Keras 2 RegNet weights to a Keras .weights.h5"),
    "export": ("keras_regnet.commands.export", "SavedModel for TF Serving + TFLite (+ ONNX), verified against Keras, versioned"),
    "sweep": ("keras_regnet.commands.sweep", "sample a design space and proxy-train each model (resumable JSONL)"),
    "edf": ("keras_regnet.commands.edf", "compare design spaces: error EDF plot, KS and bootstrap table"),
    "fit": ("keras_regnet.commands.fit", "fit the quantized linear width model (w0, wa, wm) to samples"),
    "compare": ("keras_regnet.commands.compare", "design-space comparison in one command (demo: digits, no network)"),
    "train": ("keras_regnet.commands.train", "train with the paper's ImageNet recipe or fine-tune (resumable, tf.distribute)"),
    "explain": ("keras_regnet.commands.explain", "heatmap overlays of where a classifier looks (Grad-CAM etc., tf-keras-vis)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="keras-regnet",
        description="RegNet and AnyNet (Designing Network Design Spaces, CVPR 2020) for Keras 3.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``keras-regnet`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (ValueError, FileNotFoundError, NotImplementedError) as e:
        print(f"keras-regnet {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
