"""``keras-regnet export MODEL``: SavedModel for TF Serving (+ TFLite, ONNX), every artifact verified, versioned."""

from __future__ import annotations

import json
import os


def add_arguments(parser):
    """Register the command's flags."""
    parser.add_argument("model", help="what to export: a paper model name (RegNetY600MF, RegNetX-1.6GF, ...), a "
                                      "custom spec (RegNet/AnyNet params as JSON text or a .json file, e.g. "
                                      "'{\"depth\": 13, \"w0\": 24, \"wa\": 36.44, \"wm\": 2.49, \"group_width\": 8}') "
                                      "or a .keras file saved by model.save()")
    parser.add_argument("--weights", default=None,
                        help="for model names and specs: 'imagenet' (default for names), 'imagenet:<tag>', a "
                             "weights file, or 'none' (random init, default for specs); not allowed with .keras")
    parser.add_argument("--classes", type=int, default=1000, help="classes of a spec's classifier (default 1000)")
    parser.add_argument("--output-dir", default="saved_models",
                        help="parent of the model directory; the export goes to OUTPUT_DIR/NAME/VERSION "
                             "(default saved_models)")
    parser.add_argument("--name", default=None,
                        help="model directory name, what TF Serving's --model_name uses (default: the model's "
                             "name in lower case, e.g. regnety600mf)")
    parser.add_argument("--size", type=int, default=None,
                        help="input resolution: builds named models/specs at SIZE and is the bytes signature's "
                             "crop size (default: the weights' eval size, 224; a .keras file's fixed size)")
    parser.add_argument("--crop-pct", type=float, default=None,
                        help="bytes signature: resize the short side to size/crop_pct, then center-crop "
                             "(default: the weights' value, 0.875)")
    parser.add_argument("--interpolation", default=None, choices=["bicubic", "bilinear", "area", "nearest"],
                        help="bytes signature resize method (default: the weights' value, bicubic)")
    parser.add_argument("--tflite", default="fp32,fp16,dynamic,int8",
                        help="comma-separated TFLite variants to write: fp32, fp16, dynamic (int8 weights), int8 "
                             "(full integer, calibrated, float input), int8_uint8in (full integer with uint8 input "
                             "pixels in [0, 255], for camera pipelines); 'none' for no TFLite (default: "
                             "fp32,fp16,dynamic,int8)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000,
                        help="serving_bytes refuses (per request, before decoding) images whose header declares "
                             "more pixels than this: decompression bombs (default 40000000, 40 megapixels)")
    parser.add_argument("--onnx", action="store_true", help="also write an ONNX model (tf2onnx), checked with onnxruntime")
    parser.add_argument("--representative", default="samples",
                        help="images that calibrate int8 and verify every artifact: 'samples' (generated, default), "
                             "an image folder, 'digits', a tensorflow-datasets name (e.g. imagenet2012) or a .npy "
                             "array (N, H, W, C) in [0, 255]")
    parser.add_argument("--representative-split", default="train", help="split of a tfds/folder data set (default train)")
    parser.add_argument("--calibration-images", type=int, default=100, help="images calibrating int8 (default 100)")
    parser.add_argument("--verify-images", type=int, default=32,
                        help="images every artifact is compared on against the Keras model (default 32)")
    parser.add_argument("--min-agreement", type=float, default=0.9,
                        help="fail unless every TFLite/ONNX file predicts the Keras model's top-1 class on at least "
                             "this fraction of the verification images (default 0.9)")
    parser.add_argument("--top-k", type=int, default=5, help="classes returned in top_k_classes/top_k_scores (default 5)")
    parser.add_argument("--labels", default=None,
                        help="text file with one class name per line, for top_k_labels (default: the model's own "
                             "class names, e.g. a fine-tuned .keras file's; ImageNet names for 1000 classes)")
    parser.add_argument("--no-fold-bn", action="store_true",
                        help="keep BatchNorm layers in the exported graphs (default: folded into the convs)")
    parser.add_argument("--threads", default="1,2,4", help="TFLite latency thread counts (default 1,2,4)")
    parser.add_argument("--latency-runs", type=int, default=20, help="timed TFLite invocations per setting (default 20)")
    parser.add_argument("--json", action="store_true", help="print the full verification report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _int_list(text, flag):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}.") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag} must list positive integers, got {text!r}.")
    return values


def load(args):
    """(model, name, eval config) from the command's MODEL, --weights, --size and eval flags.

    Eval values left None are the model's own (its pretrained_cfg: the registry's for named weights, a fine-tuned
    ``.keras`` file's), read by export_model."""
    from keras_regnet import loading, pretrained
    from keras_regnet.export import load_model_source

    source = args.model
    saved = loading.is_preset_source(source) or source.endswith(".keras")
    if saved and args.weights is not None:
        raise ValueError("--weights cannot be used with a .keras file or preset (it holds its own weights).")
    spec = loading.is_spec_source(source)
    weights = args.weights if args.weights is not None else (None if saved or spec else "imagenet")
    weights = None if weights == "none" else weights
    size = args.size
    if not saved and not spec and size is None:  # a named model is built at its weights' eval size
        size = pretrained.eval_config(arch=source, weights=weights)[0]
    model, name, _ = load_model_source(source, weights=weights, input_size=None if saved else size or 224,
                                       classes=args.classes)
    return model, name, {"size": args.size or (None if saved else size), "crop_pct": args.crop_pct,
                         "interpolation": args.interpolation}


def run(args):
    """Export, verify, publish, and print where everything went with the verification figures."""
    from keras_regnet.export import TFLITE_VARIANTS, ExportOptions, export_model
    from keras_regnet.export.common import check_name, check_output_dir

    variants = [] if args.tflite.strip().lower() == "none" else [v.strip() for v in args.tflite.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(TFLITE_VARIANTS))
    if unknown:
        raise ValueError(f"unknown --tflite variants {unknown}; choose from {', '.join(TFLITE_VARIANTS)} or 'none'.")
    threads = _int_list(args.threads, "--threads")
    if args.name is not None:
        check_name(args.name)
    check_output_dir(args.output_dir)
    for flag in ("calibration_images", "verify_images", "top_k", "latency_runs", "max_pixels"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}.")
    labels = None
    if args.labels:
        if not os.path.isfile(args.labels):
            raise FileNotFoundError(f"labels file {args.labels!r} does not exist.")
        with open(args.labels) as f:
            labels = [line.strip() for line in f if line.strip()]
    model, name, config = load(args)
    options = ExportOptions(
        tflite=tuple(variants), onnx=args.onnx, representative=args.representative,
        representative_split=args.representative_split, calibration_images=args.calibration_images,
        verify_images=args.verify_images, size=config["size"], crop_pct=config["crop_pct"],
        interpolation=config["interpolation"], max_pixels=args.max_pixels, min_agreement=args.min_agreement,
        top_k=args.top_k, labels=labels, fold_bn=not args.no_fold_bn, latency_threads=tuple(threads),
        latency_runs=args.latency_runs, progress=not args.quiet,
    )
    report = export_model(model, args.output_dir, args.name or name, options)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(summary(report))
    return 0


def summary(report):
    """A human-readable account of an export report."""
    sm = report["savedmodel"]
    lines = [f"note: {note}" for note in report.get("notes", [])]
    lines += [
        f"exported {report['model']} version {report['version']} to {report['path']}",
        f"  SavedModel: signatures {', '.join(sm['signatures'])}; {sm['output']} max |diff| vs Keras "
        f"{sm['max_abs_diff']:.2e}; XLA must-compile functions: {len(sm['xla_must_compile'])}",
        f"  BatchNorm folded: {report['bn_fold']['folded']}"
        + (f" (max |diff| {report['bn_fold']['max_abs_diff']:.2e}; Keras batch-1 "
           f"{report['bn_fold']['ms_batch1_before']:.2f} -> {report['bn_fold']['ms_batch1_after']:.2f} ms)"
           if report["bn_fold"]["folded"] else ""),
    ]
    for variant, r in report.get("tflite", {}).items():
        agreement = f", top-1 agreement {r['top1_agreement']:.1%}" if "top1_agreement" in r else ""
        if "logit_rel_error" in r:
            agreement += f", logit error {r['logit_rel_error']:.1%} of spread"
        latency = ", ".join(f"{t} thr {ms:.2f} ms" for t, ms in r["latency_ms"].items())
        deleg = r.get("delegation", {})
        outside = sum(deleg.get("outside", {}).values())
        where = (" (builtin kernels: XNNPACK refused the graph)" if not r["xnnpack"]
                 else f" ({outside} of {deleg['ops']} ops outside XNNPACK)" if outside else "")
        lines.append(
            f"  TFLite {variant:7s}: {r['bytes'] / 2**20:.2f} MB, max |diff| {r['max_abs_diff']:.2e}{agreement}; "
            f"batch 1: {latency}{where}"
        )
    if "onnx" in report:
        r = report["onnx"]
        agreement = f", top-1 agreement {r['top1_agreement']:.1%}" if "top1_agreement" in r else ""
        lines.append(f"  ONNX: {r['bytes'] / 2**20:.2f} MB, max |diff| {r['max_abs_diff']:.2e}{agreement}")
    lines.append(f"  TFLite/ONNX files and the report are in {os.path.join(report['path'], 'assets.extra')}")
    return "\n".join(lines)
