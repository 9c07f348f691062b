"""``keras-regnet convert SRC DST``: turn timm/pycls/Keras 2 RegNet weights into a Keras ``.weights.h5`` file."""

from __future__ import annotations


def add_arguments(parser):
    """Register the command's flags."""
    parser.add_argument("src", help="source weights: a timm or pycls .safetensors file, a pycls .pyth checkpoint "
                                    "(needs torch) or a Keras 2 (tf_keras) RegNet .h5 file")
    parser.add_argument("dst", help="output Keras weights file, ending in .weights.h5 (written atomically)")
    parser.add_argument("--model", default=None,
                        help="which of the 24 paper models the weights are for (e.g. RegNetY600MF); default: "
                             "recognised from the file's stage depths, widths, group widths and SE")
    parser.add_argument("--no-top", action="store_true",
                        help="drop the classifier: the output loads into include_top=False models")


def run(args):
    """Convert strictly (every tensor used once, shapes checked) and say which model the output is for."""
    from keras_regnet import specs
    from keras_regnet.models import convert_file
    from keras_regnet.weights.files import is_keras2_h5
    from keras_regnet.weights.naming import KERAS2_ARCHITECTURE

    name = convert_file(args.src, args.dst, model_name=args.model, include_top=not args.no_top)
    extra = ""
    if args.src.endswith(".h5") and is_keras2_h5(args.src):
        extra = "".join(f", {k}={v!r}" for k, v in KERAS2_ARCHITECTURE.items())
    print(f"wrote {args.dst} ({name}{'' if not args.no_top else ', no top'})")
    print(f"load it with: keras_regnet.build_model({name!r}{extra}"
          f"{', include_top=False' if args.no_top else ''}, weights={args.dst!r})"
          if extra else
          f"load it with: keras_regnet.{specs.constructor_name(name)}("
          f"{'include_top=False, ' if args.no_top else ''}weights={args.dst!r})")
    return 0
