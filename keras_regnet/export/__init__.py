"""Deployment: one call (or ``keras-regnet export``) turns a Keras image model into verified serving artifacts.

:func:`export_model` writes ``<output_dir>/<name>/<version>/``, the layout TF Serving loads:

- ``saved_model.pb`` + ``variables/``: the SavedModel with ``serving_default`` (float pixels) and
  ``serving_bytes`` (encoded JPEG/PNG) signatures (see :mod:`keras_regnet.export.savedmodel`);
- ``assets.extra/``: files TF Serving does not load: ``<name>_<variant>.tflite`` for each TFLite variant,
  ``<name>.onnx`` when asked, and ``keras_regnet_export.json`` (the architecture fingerprint, eval transform
  and the verification report).

Before anything is published every artifact is run on the same images as the Keras model: the SavedModel (loaded
back) must match within 1e-5 and refuse non-images and decompression bombs; each TFLite/ONNX file must stay finite
and its logits (read inside the file, before its softmax) must follow the Keras model's within a tolerance relative
to their spread (:data:`LOGIT_RTOL`), which is meaningful for untrained models as for trained ones; on the images
where the Keras model is decisive the files must agree on the top-1 class at least ``min_agreement`` of the time;
float32 files must also match closely. A failed check raises :class:`ExportError` and leaves nothing behind: the
export is built in a hidden staging directory and renamed to the next free version number in one step when
complete (a model directory this export created is removed again on failure). Exported graphs have their
BatchNorms folded into the convs (:func:`fold_batchnorm`); TFLite files also have the input normalisation folded
into the stem conv (:mod:`keras_regnet.export.input_fold`).

The model describes itself: class names for ``top_k_labels`` come from :func:`keras_regnet.pretrained.class_names`
and the bytes signature's eval transform from :func:`keras_regnet.pretrained.eval_config` (both read the model's
``pretrained_cfg``; options override them).
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import os
import shutil
import time

import numpy as np

from keras_regnet.pretrained import DEFAULT_EVAL, class_names, eval_config
from keras_regnet.export.bn_fold import fold_batchnorm, foldable_pairs
from keras_regnet.export.common import (
    METADATA_FILE,
    ExportError,
    ModelSignature,
    check_model_dir,
    check_name,
    check_output_dir,
    describe_model,
    load_model_source,
    model_fingerprint,
    next_version,
    publish,
    reference_logits,
    staging_dir,
)
from keras_regnet.export.image_guard import DEFAULT_MAX_PIXELS, check_image_bytes
from keras_regnet.export.representative import check_images, load_images, sample_images

__all__ = [
    "export_model",
    "ExportOptions",
    "check_image_bytes",
    "DEFAULT_MAX_PIXELS",
    "ExportError",
    "fold_batchnorm",
    "foldable_pairs",
    "describe_model",
    "load_model_source",
    "next_version",
    "sample_images",
    "load_images",
    "keras_latency_ms",
    "TFLITE_VARIANTS",
]

TFLITE_VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int8_uint8in")
DEFAULT_TFLITE = ("fp32", "fp16", "dynamic", "int8")
# Largest accepted median RMS logit error relative to the logits' spread, per artifact (see compare_logits).
LOGIT_RTOL = {"fp32": 0.01, "onnx": 0.01, "fp16": 0.05, "dynamic": 0.25, "int8": 0.35, "int8_uint8in": 0.35}
SAVEDMODEL_ATOL = 1e-5  # on probabilities; scaled by the output's magnitude for logits and features
FP32_RTOL = 1e-3  # float32 TFLite/ONNX vs Keras: other kernels and summation orders, same arithmetic


def keras_latency_ms(model, batch, runs=10, warmup=2):
    """Median milliseconds of one ``model(batch)`` call in a traced ``tf.function`` (what a SavedModel runs)."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False))
    x = tf.constant(batch)
    for _ in range(warmup):
        fn(x).numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def _tolerance(kind, reference, base):
    return base if kind == "probabilities" else base * max(1.0, float(np.max(np.abs(reference))))


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """What to export and how to verify it (the flags of ``keras-regnet export``).

    Attributes:
        tflite: TFLite variants to write, a subset of :data:`TFLITE_VARIANTS` (``int8_uint8in``: full int8 with
            uint8 input pixels for camera pipelines); empty: none.
        onnx: also write an ONNX file (tf2onnx), checked with onnxruntime.
        representative: images calibrating int8 and verifying every artifact: ``None``/``"samples"``
            (generated images), an image folder, a tfds name, ``"digits"``, a ``.npy`` file or an array
            (N, H, W, C) in [0, 255]. Decoded images get the eval transform.
        representative_split: split of a tfds / folder data set.
        calibration_images, verify_images: how many images calibrate int8 and how many verify the artifacts.
        size, crop_pct, interpolation: eval transform of the bytes signature; None: the model's own
            (:func:`keras_regnet.pretrained.eval_config`: its fixed input size or pretrained config, else 224, 0.875,
            bicubic).
        max_pixels: ``serving_bytes`` refuses images whose header declares more pixels (default 40 megapixels).
        min_agreement: smallest accepted top-1 agreement of each TFLite/ONNX file with the Keras model (0-1), on
            the verification images where the Keras model is decisive.
        top_k: how many classes ``top_k_classes`` / ``top_k_scores`` / ``top_k_labels`` return.
        labels: class names for ``top_k_labels``; None: the model's own (:func:`keras_regnet.pretrained.class_names`).
        fold_bn: fold BatchNorm into convs in the exported graphs.
        latency_threads, latency_runs: TFLite latency measurement (batch 1).
        progress: print a progress bar.
    """

    tflite: tuple = DEFAULT_TFLITE
    onnx: bool = False
    representative: object = None
    representative_split: str = "train"
    calibration_images: int = 100
    verify_images: int = 32
    size: int | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_agreement: float = 0.9
    top_k: int = 5
    labels: tuple | None = None
    fold_bn: bool = True
    latency_threads: tuple = (1, 2, 4)
    latency_runs: int = 20
    progress: bool = True

    def validated(self):
        """A normalised copy (tuples), or ExportError naming the bad option."""
        tflite = (self.tflite,) if isinstance(self.tflite, str) else tuple(self.tflite or ())
        unknown = sorted(set(tflite) - set(TFLITE_VARIANTS))
        if unknown:
            raise ExportError(f"unknown TFLite variants {unknown}; choose from {', '.join(TFLITE_VARIANTS)}.")
        if not 0 <= self.min_agreement <= 1:
            raise ExportError(f"min_agreement must be in [0, 1], got {self.min_agreement}.")
        for field in ("calibration_images", "verify_images", "top_k", "latency_runs", "max_pixels"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ExportError(f"{field} must be a positive integer, got {value!r}.")
        if self.size is not None and (not isinstance(self.size, int) or self.size < 8):
            raise ExportError(f"size must be an integer >= 8, got {self.size!r}.")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise ExportError(f"crop_pct must be in (0, 1], got {self.crop_pct}.")
        labels = None if self.labels is None else tuple(str(label) for label in self.labels)
        return dataclasses.replace(self, tflite=tflite, labels=labels,
                                   latency_threads=tuple(self.latency_threads or ()))


@dataclasses.dataclass
class _Plan:
    """What one export writes, resolved from the model and the options before anything is written."""

    name: str
    base: str
    signature: ModelSignature
    eval: dict
    labels: list | None
    fingerprint: str


def _model_eval_config(model):
    """(size, crop_pct, interpolation) the model says it is evaluated with, else the ImageNet defaults."""
    try:
        return tuple(eval_config(model))
    except (AttributeError, TypeError, ValueError, KeyError):
        return None, DEFAULT_EVAL["crop_pct"], DEFAULT_EVAL["interpolation"]


def _model_class_names(model, classes):
    """The model's own class names (``keras_regnet.pretrained.class_names``), ImageNet names for 1000 classes, else None."""
    try:
        names = class_names(model)
    except (AttributeError, TypeError, ValueError, KeyError):
        names = None
    if names is None and classes == 1000:
        from keras_regnet.preprocessing import imagenet_class_index

        names = [label for _, label in (imagenet_class_index()[i] for i in range(1000))]
    if names is not None and len(names) != classes:
        return None
    return None if names is None else [str(n) for n in names]


def _resolve_eval(signature, options, model):
    static = signature.static_size
    h, w, _ = signature.input_shape
    if (h is None) != (w is None) or (h is not None and h != w):
        raise ExportError(
            f"the model's input is {h}x{w}: the exporters need a square input size or a fully dynamic one."
        )
    size, crop_pct, interpolation = _model_eval_config(model)
    if static is not None and options.size is not None and options.size != static:
        raise ExportError(
            f"eval size {options.size} differs from the model's fixed input size {static}; build the model with "
            f"input_shape=({options.size}, {options.size}, 3) or drop the size option."
        )
    return {
        "size": static or options.size or size or DEFAULT_EVAL["size"],
        "crop_pct": options.crop_pct if options.crop_pct is not None else (crop_pct or DEFAULT_EVAL["crop_pct"]),
        "interpolation": options.interpolation or interpolation or DEFAULT_EVAL["interpolation"],
    }


def _plan(model, output_dir, name, options):
    name = check_name(name or getattr(model, "name", None) or "model")
    check_output_dir(output_dir)
    signature = describe_model(model)
    config = _resolve_eval(signature, options, model)
    if options.labels is not None:
        if signature.classes is None or len(options.labels) != signature.classes:
            raise ExportError(f"{len(options.labels)} labels given for a model with {signature.classes} classes.")
        labels = list(options.labels)
    else:
        labels = _model_class_names(model, signature.classes) if signature.is_classifier else None
    base = os.path.join(os.fspath(output_dir), name)
    fingerprint = model_fingerprint(model)
    return _Plan(name, base, signature, config, labels, fingerprint)


def _load_verification_images(plan, options):
    channels = plan.signature.input_shape[-1]
    try:
        images = load_images(options.representative, options.verify_images + options.calibration_images,
                             plan.eval["size"], channels, plan.eval["crop_pct"], plan.eval["interpolation"],
                             options.representative_split)
    except (ValueError, FileNotFoundError) as e:
        raise ExportError(str(e)) from None
    verify, calibration = images[:options.verify_images], images[options.verify_images:]
    return verify, (calibration if len(calibration) else verify)


_NO_SPACE = ("No space left on device", "Disk quota exceeded", "ENOSPC", "EDQUOT")


def _write_error(error, base):
    """An ExportError of one line for a failure to write (disk full, permissions), else None."""
    import tensorflow as tf

    if isinstance(error, OSError) and not isinstance(error, ExportError):
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return ExportError(f"no space left on the device of {base!r} while writing the export; free some space "
                               "or choose another --output-dir (nothing was published).")
        where = f" ({error.filename})" if error.filename else ""
        return ExportError(f"cannot write the export in {base!r}: {error.strerror or error}{where}; nothing was "
                           "published.")
    if isinstance(error, tf.errors.OpError):
        message = error.message or str(error)
        if any(text in message for text in _NO_SPACE):
            return ExportError(f"no space left on the device of {base!r} while writing the export; free some space "
                               "or choose another --output-dir (nothing was published).")
        if any(text in message for text in ("Permission denied", "Read-only file system")):
            return ExportError(f"cannot write the export in {base!r}: {message.splitlines()[0][:200]}; nothing was "
                               "published.")
    return None


def export_model(model, output_dir="saved_models", name=None, options=None, **overrides):
    """Export ``model`` to ``<output_dir>/<name>/<next version>/`` and verify every artifact; return the report.

    Args:
        model: a Keras image model: one float input (N, H, W, C), RGB in [0, 255] for keras_regnet models.
        output_dir: the TF Serving model base directory's parent (default ``saved_models``).
        name: model directory name, one path component (default: the model's name).
        options: an :class:`ExportOptions`; keyword arguments override its fields
            (``export_model(model, "out", tflite=("int8",), representative="digits")``).

    Returns:
        The report dict (also saved as ``assets.extra/keras_regnet_export.json``), with ``version``, ``path`` and
        ``notes`` (stale staging directories removed, ...).

    Raises:
        ExportError: bad input, a failed write (disk full: one line) or an artifact failing its verification;
        nothing is published then.
    """
    from keras_regnet._extras import require

    require("tensorflow", "tensorflow", "keras_regnet.export (SavedModel, TFLite)")
    options = dataclasses.replace(options or ExportOptions(), **overrides).validated()
    if options.tflite:
        import tensorflow as tf

        from keras_regnet.export.tflite import check_converter

        try:
            check_converter(tf)  # before anything is written: this TensorFlow's converter would abort the process
        except RuntimeError as e:
            raise ExportError(str(e)) from None
    plan = _plan(model, output_dir, name, options)
    notes = check_model_dir(plan.base, plan.fingerprint)
    verify, calibration = _load_verification_images(plan, options)
    report = _report_header(plan, options, verify)
    created = [d for d in (os.fspath(output_dir), plan.base) if not os.path.exists(d)]
    stage = None
    try:
        stage = staging_dir(plan.base)
        _build(model, plan, options, stage, verify, calibration, report)
        version, path = publish(stage, plan.base)
    except BaseException as e:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        for directory in reversed(created):  # no empty model directory left behind by a failed first export
            try:
                os.rmdir(directory)
            except OSError:
                pass
        replacement = _write_error(e, plan.base)
        if replacement is not None:
            raise replacement from None
        raise
    report.update(version=version, path=path, notes=notes)
    return report


def _report_header(plan, options, verify):
    representative = options.representative
    return {
        "model": plan.name,
        "fingerprint": plan.fingerprint,
        "input_shape": list(plan.signature.input_shape),
        "output": plan.signature.output_kind,
        "classes": plan.signature.classes,
        "labels": "own" if plan.labels is not None else None,
        "eval": plan.eval,
        "max_pixels": options.max_pixels,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "verify_images": len(verify),
        "representative": representative if isinstance(representative, str) or representative is None else "array",
    }


def _build(model, plan, options, stage, verify, calibration, report):
    """Write and verify every artifact into ``stage`` (fills ``report``); raises ExportError on a failed check."""
    from tqdm import tqdm

    signature = plan.signature
    steps = ["fold", "savedmodel"] + [f"tflite {v}" for v in options.tflite] + (["onnx"] if options.onnx else [])
    bar = tqdm(steps, desc="export", unit="step", disable=not options.progress)
    try:
        reference = np.asarray(model(verify, training=False))
        logits = reference_logits(model, verify, signature.output_kind)
        bar.set_postfix_str("fold batchnorm")
        folded = _fold(model, options, verify, reference, report)
        bar.update()

        bar.set_postfix_str("savedmodel")
        _savedmodel(folded, model, plan, options, stage, verify, reference, report)
        bar.update()

        extra = os.path.join(stage, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        if options.tflite:
            from keras_regnet.export import tflite as tfl

            from keras_regnet.export.input_fold import fold_input_rescaling

            mobile, input_folded = fold_input_rescaling(folded)  # int8: per-channel input ops cost more than the stem
            mobile = tfl.fixed_size_model(mobile, plan.eval["size"])
            report["tflite"] = {}
            report["tflite_input_normalization_folded"] = input_folded
            for variant in options.tflite:
                bar.set_postfix_str(f"tflite {variant}")
                report["tflite"][variant] = _export_tflite(
                    tfl, mobile, model, variant, calibration, verify, reference, logits, signature, options,
                    os.path.join(extra, f"{plan.name}_{variant}.tflite"),
                )
                bar.update()
        if options.onnx:
            bar.set_postfix_str("onnx")
            report["onnx"] = _export_onnx(folded, signature, verify, reference, logits, options.min_agreement,
                                          os.path.join(extra, f"{plan.name}.onnx"))
            bar.update()
        with open(os.path.join(stage, METADATA_FILE), "w") as f:
            json.dump(report, f, indent=1)
    finally:
        bar.close()


def _fold(model, options, verify, reference, report):
    folded, n_folded = fold_batchnorm(model) if options.fold_bn else (model, 0)
    fold_report = {"folded": n_folded}
    if n_folded:
        one = verify[:1]
        fold_report["max_abs_diff"] = float(np.max(np.abs(np.asarray(folded(verify, training=False)) - reference)))
        fold_report["ms_batch1_before"] = keras_latency_ms(model, one)
        fold_report["ms_batch1_after"] = keras_latency_ms(folded, one)
    report["bn_fold"] = fold_report
    return folded


def _savedmodel(folded, model, plan, options, stage, verify, reference, report):
    from keras_regnet.export import savedmodel

    savedmodel.write_savedmodel(folded, stage, plan.signature, plan.eval, options.top_k, plan.labels,
                                options.max_pixels)
    sm = savedmodel.verify_savedmodel(stage, model, verify, max_pixels=options.max_pixels)
    report["savedmodel"] = sm
    tol = _tolerance(plan.signature.output_kind, reference, SAVEDMODEL_ATOL)
    if not sm["max_abs_diff"] <= tol:
        raise ExportError(
            f"the SavedModel's {sm['output']} differ from the Keras model's by {sm['max_abs_diff']:.3g} "
            f"(> {tol:.3g})."
        )
    if sm["xla_must_compile"]:
        raise ExportError(f"the SavedModel has functions marked _XlaMustCompile: {sm['xla_must_compile'][:5]}.")
    if sm["bad_bytes_error"] is None:
        raise ExportError("serving_bytes accepted a byte string that is not an image.")
    if sm["bomb_error"] is None:
        raise ExportError("serving_bytes accepted an image declaring more than max_pixels pixels.")
    if not sm["empty_batch_ok"]:
        raise ExportError("serving_default does not answer an empty batch with empty outputs.")


def _check_agreement(what, result, signature, min_agreement, tolerance):
    if not result.get("finite", True):
        raise ExportError(f"{what} outputs NaN or infinity on the verification images: the conversion is broken.")
    rel = result.get("logit_rel_error")
    if rel is not None and not rel <= tolerance:
        raise ExportError(
            f"{what}'s logits differ from the Keras model's by {rel:.1%} of their spread (median over the "
            f"verification images; accepted up to {tolerance:.0%}): the conversion or its calibration is broken. "
            "Calibrate with real images (representative=...) or use a float variant."
        )
    agreement = result.get("decisive_agreement", result.get("top1_agreement"))
    if signature.is_classifier and agreement is not None and agreement < min_agreement:
        raise ExportError(
            f"{what} agrees with the Keras model on the top-1 class for {agreement:.1%} of the verification images "
            f"where the Keras model is decisive, below the threshold {min_agreement:.1%} (logit error "
            f"{(rel or 0):.1%} of their spread). Calibrate with real images (representative=...), use a float "
            "variant, or lower min_agreement knowingly."
        )


def _export_tflite(tfl, mobile, model, variant, calibration, verify, reference, logits, signature, options, path):
    try:
        content = tfl.convert(mobile, variant, calibration)
    except Exception as e:  # the converter raises ConverterError and friends with multi-line MLIR dumps
        raise ExportError(f"TFLite {variant} conversion failed: {type(e).__name__}: {str(e)[:500]}") from None
    ops = tfl.op_counts(content)
    bad = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if bad:
        raise ExportError(f"TFLite {variant} needs ops the standard interpreter lacks: {bad}.")
    result = {"bytes": len(content), "ops": ops}
    if variant == "int8_uint8in":
        dtype, scale, zero = tfl.input_quantization(content)
        result["input"] = {"dtype": dtype, "scale": scale, "zero_point": zero}
        if (dtype, scale, zero) != ("uint8", 1.0, 0):
            raise ExportError(f"TFLite int8_uint8in's input is {dtype} with scale {scale}, zero point {zero}; "
                              "expected uint8 pixels with scale 1 and zero point 0.")
        verify = tfl.as_input(verify, np.uint8).astype(np.float32)  # what a camera gives: whole pixel values
        reference = np.asarray(model(verify, training=False))
        logits = reference_logits(model, verify, signature.output_kind)
    result.update(tfl.evaluate(content, verify, reference, logits))
    _check_agreement(f"TFLite {variant}", result, signature, options.min_agreement, LOGIT_RTOL[variant])
    if variant == "fp32":
        tol = _tolerance(signature.output_kind, reference, FP32_RTOL)
        if not result["max_abs_diff"] <= tol:
            raise ExportError(f"TFLite fp32 differs from the Keras model by {result['max_abs_diff']:.3g} (> {tol:.3g}).")
    result["latency_ms"] = {str(k): v for k, v in
                            tfl.latency_ms(content, options.latency_threads, options.latency_runs).items()}
    with open(path, "wb") as f:
        f.write(content)
    return result


def _export_onnx(folded, signature, verify, reference, logits, min_agreement, path):
    from keras_regnet.export import onnx as onnx_export

    try:
        content = onnx_export.convert(folded, signature.output_kind)
    except Exception as e:
        raise ExportError(f"ONNX conversion (tf2onnx) failed: {type(e).__name__}: {str(e)[:500]}") from None
    result = {"bytes": len(content)}
    result.update(onnx_export.evaluate(content, verify, reference, logits))
    _check_agreement("ONNX", result, signature, min_agreement, LOGIT_RTOL["onnx"])
    tol = _tolerance(signature.output_kind, reference, FP32_RTOL)
    if not result["max_abs_diff"] <= tol:
        raise ExportError(f"ONNX differs from the Keras model by {result['max_abs_diff']:.3g} (> {tol:.3g}).")
    with open(path, "wb") as f:
        f.write(content)
    return result
