"""Deployment: one call (or ``keras-regnet export``) turns a Keras image model into verified serving artifacts.

:func:`export_model` writes ``<output_dir>/<name>/<version>/``, the layout TF Serving loads:

- ``saved_model.pb`` + ``variables/``: the SavedModel with ``serving_default`` (float pixels) and
  ``serving_bytes`` (encoded JPEG/PNG) signatures (see :mod:`keras_regnet.export.savedmodel`);
- ``assets.extra/``: files TF Serving does not load: ``<name>_<variant>.tflite`` for each TFLite variant,
  ``<name>.onnx`` when asked, and ``keras_regnet_export.json`` (the architecture fingerprint, eval transform
  and the verification report).

Before anything is published every artifact is run on the same images as the Keras model: the SavedModel (loaded
back) must match within 1e-5, the TFLite/ONNX files must stay finite and agree on the top-1 class at least
``min_agreement`` of the time (float32 files must also match closely). A failed check raises
:class:`ExportError` and leaves nothing behind: the export is built in a hidden staging directory and renamed to
the next free version number only when complete. Exported graphs have their BatchNorms folded into the convs
(:func:`fold_batchnorm`).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time

import numpy as np

from keras_regnet.export.bn_fold import fold_batchnorm, foldable_pairs
from keras_regnet.export.common import (
    METADATA_FILE,
    ExportError,
    ModelSignature,
    check_model_dir,
    describe_model,
    load_model_source,
    model_fingerprint,
    next_version,
    publish,
    staging_dir,
)
from keras_regnet.export.representative import check_images, load_images, sample_images

__all__ = [
    "export_model",
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

TFLITE_VARIANTS = ("fp32", "fp16", "dynamic", "int8")
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


def _eval_config(signature, size, crop_pct, interpolation):
    static = signature.static_size
    h, w, _ = signature.input_shape
    if (h is None) != (w is None) or (h is not None and h != w):
        raise ExportError(
            f"the model's input is {h}x{w}: the exporters need a square input size or a fully dynamic one."
        )
    if static is not None and size is not None and size != static:
        raise ExportError(
            f"eval size {size} differs from the model's fixed input size {static}; build the model with "
            f"input_shape=({size}, {size}, 3) or drop the size option."
        )
    return {"size": static or size or 224, "crop_pct": crop_pct, "interpolation": interpolation}


def _tolerance(kind, reference, base):
    return base if kind == "probabilities" else base * max(1.0, float(np.max(np.abs(reference))))


def export_model(
    model,
    output_dir="saved_models",
    name=None,
    *,
    tflite=TFLITE_VARIANTS,
    onnx=False,
    representative=None,
    representative_split="train",
    calibration_images=100,
    verify_images=32,
    size=None,
    crop_pct=0.875,
    interpolation="bicubic",
    min_agreement=0.9,
    top_k=5,
    labels=None,
    fold_bn=True,
    latency_threads=(1, 2, 4),
    latency_runs=20,
    progress=True,
):
    """Export ``model`` to ``<output_dir>/<name>/<next version>/`` and verify every artifact; return the report.

    Args:
        model: a Keras image model: one float input (N, H, W, C), RGB in [0, 255] for keras_regnet models.
        output_dir: the TF Serving model base directory's parent (default ``saved_models``).
        name: model directory name (default: the model's name).
        tflite: TFLite variants to write, a subset of ``("fp32", "fp16", "dynamic", "int8")`` (empty: none).
        onnx: also write an ONNX file (tf2onnx), checked with onnxruntime.
        representative: images calibrating int8 and verifying every artifact: ``None``/``"samples"``
            (generated images), an image folder, a tfds name, ``"digits"``, a ``.npy`` file or an array
            (N, H, W, C) in [0, 255]. Decoded images get the eval transform.
        representative_split: split of a tfds / folder data set.
        calibration_images, verify_images: how many images calibrate int8 and how many verify the artifacts.
        size, crop_pct, interpolation: eval transform of the bytes signature (``size`` defaults to the model's
            fixed input size, else 224).
        min_agreement: smallest accepted top-1 agreement of each TFLite/ONNX file with the Keras model (0-1).
        top_k: how many classes ``top_k_classes`` / ``top_k_scores`` return.
        labels: class names for ``top_k_labels`` (default: the ImageNet names for 1000-class models).
        fold_bn: fold BatchNorm into convs in the exported graphs.
        latency_threads, latency_runs: TFLite latency measurement (batch 1).
        progress: print a progress bar.

    Returns:
        The report dict (also saved as ``assets.extra/keras_regnet_export.json``), with ``version`` and ``path``.

    Raises:
        ExportError: bad input or an artifact failing its verification; nothing is written then.
    """
    from tqdm import tqdm

    from keras_regnet.export import savedmodel

    signature = describe_model(model)
    config = _eval_config(signature, size, crop_pct, interpolation)
    tflite = (tflite,) if isinstance(tflite, str) else tuple(tflite or ())
    unknown = sorted(set(tflite) - set(TFLITE_VARIANTS))
    if unknown:
        raise ExportError(f"unknown TFLite variants {unknown}; choose from {', '.join(TFLITE_VARIANTS)}.")
    if not 0 <= min_agreement <= 1:
        raise ExportError(f"min_agreement must be in [0, 1], got {min_agreement}.")
    if labels is None and signature.classes == 1000:
        from keras_regnet.preprocessing import imagenet_class_index

        labels = [label for _, label in (imagenet_class_index()[i] for i in range(1000))]
    if labels is not None and (signature.classes is None or len(labels) != signature.classes):
        raise ExportError(f"{len(labels)} labels given for a model with {signature.classes} classes.")
    name = name or model.name
    base = os.path.join(output_dir, name)
    fingerprint = model_fingerprint(model)
    check_model_dir(base, fingerprint)

    channels = signature.input_shape[-1]
    try:
        images = load_images(representative, verify_images + calibration_images, config["size"], channels,
                             config["crop_pct"], config["interpolation"], representative_split)
    except (ValueError, FileNotFoundError) as e:
        raise ExportError(str(e)) from None
    verify, calibration = images[:verify_images], images[verify_images:]
    if len(calibration) == 0:
        calibration = verify

    steps = ["fold", "savedmodel"] + [f"tflite {v}" for v in tflite] + (["onnx"] if onnx else [])
    bar = tqdm(steps, desc="export", unit="step", disable=not progress)
    report = {
        "model": name,
        "fingerprint": fingerprint,
        "input_shape": list(signature.input_shape),
        "output": signature.output_kind,
        "classes": signature.classes,
        "eval": config,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "verify_images": len(verify),
        "representative": representative if isinstance(representative, str) or representative is None else "array",
    }
    reference = np.asarray(model(verify, training=False))
    stage = staging_dir(base)
    try:
        bar.set_postfix_str("fold batchnorm")
        folded, n_folded = fold_batchnorm(model) if fold_bn else (model, 0)
        fold_report = {"folded": n_folded}
        if n_folded:
            one = verify[:1]
            fold_report["max_abs_diff"] = float(np.max(np.abs(np.asarray(folded(verify, training=False)) - reference)))
            fold_report["ms_batch1_before"] = keras_latency_ms(model, one)
            fold_report["ms_batch1_after"] = keras_latency_ms(folded, one)
        report["bn_fold"] = fold_report
        bar.update()

        bar.set_postfix_str("savedmodel")
        savedmodel.write_savedmodel(folded, stage, signature, config, top_k, labels)
        sm = savedmodel.verify_savedmodel(stage, model, verify)
        report["savedmodel"] = sm
        tol = _tolerance(signature.output_kind, reference, SAVEDMODEL_ATOL)
        if not sm["max_abs_diff"] <= tol:
            raise ExportError(
                f"the SavedModel's {sm['output']} differ from the Keras model's by {sm['max_abs_diff']:.3g} "
                f"(> {tol:.3g})."
            )
        if sm["xla_must_compile"]:
            raise ExportError(f"the SavedModel has functions marked _XlaMustCompile: {sm['xla_must_compile'][:5]}.")
        if sm["bad_bytes_error"] is None:
            raise ExportError("serving_bytes accepted a byte string that is not an image.")
        bar.update()

        extra = os.path.join(stage, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        if tflite:
            from keras_regnet.export import tflite as tfl

            mobile = tfl.fixed_size_model(folded, config["size"])
            report["tflite"] = {}
            for variant in tflite:
                bar.set_postfix_str(f"tflite {variant}")
                report["tflite"][variant] = _export_tflite(
                    tfl, mobile, variant, calibration, verify, reference, signature, min_agreement,
                    os.path.join(extra, f"{name}_{variant}.tflite"), latency_threads, latency_runs,
                )
                bar.update()
        if onnx:
            bar.set_postfix_str("onnx")
            report["onnx"] = _export_onnx(folded, signature, verify, reference, min_agreement,
                                          os.path.join(extra, f"{name}.onnx"))
            bar.update()
        with open(os.path.join(stage, METADATA_FILE), "w") as f:
            json.dump(report, f, indent=1)
        version, path = publish(stage, base)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        bar.close()
    report.update(version=version, path=path)
    return report


def _check_agreement(what, result, signature, min_agreement):
    if not result.get("finite", True):
        raise ExportError(f"{what} outputs NaN or infinity on the verification images: the conversion is broken.")
    agreement = result.get("top1_agreement")
    if signature.is_classifier and agreement is not None and agreement < min_agreement:
        raise ExportError(
            f"{what} agrees with the Keras model on the top-1 class for {agreement:.1%} of the verification images, "
            f"below the threshold {min_agreement:.1%} (max |diff| {result['max_abs_diff']:.3g}). Calibrate with "
            "real images (representative=...), use a float variant, or lower min_agreement knowingly."
        )


def _export_tflite(tfl, mobile, variant, calibration, verify, reference, signature, min_agreement, path,
                   threads, runs):
    try:
        content = tfl.convert(mobile, variant, calibration)
    except Exception as e:  # the converter raises ConverterError and friends with multi-line MLIR dumps
        raise ExportError(f"TFLite {variant} conversion failed: {type(e).__name__}: {str(e)[:500]}") from None
    ops = tfl.op_counts(content)
    bad = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if bad:
        raise ExportError(f"TFLite {variant} needs ops the standard interpreter lacks: {bad}.")
    result = {"bytes": len(content), "ops": ops}
    result.update(tfl.evaluate(content, verify, reference))
    _check_agreement(f"TFLite {variant}", result, signature, min_agreement)
    if variant == "fp32":
        tol = _tolerance(signature.output_kind, reference, FP32_RTOL)
        if not result["max_abs_diff"] <= tol:
            raise ExportError(f"TFLite fp32 differs from the Keras model by {result['max_abs_diff']:.3g} (> {tol:.3g}).")
    result["latency_ms"] = {str(k): v for k, v in tfl.latency_ms(content, threads, runs).items()}
    with open(path, "wb") as f:
        f.write(content)
    return result


def _export_onnx(folded, signature, verify, reference, min_agreement, path):
    from keras_regnet.export import onnx as onnx_export

    try:
        content = onnx_export.convert(folded, signature.output_kind)
    except Exception as e:
        raise ExportError(f"ONNX conversion (tf2onnx) failed: {type(e).__name__}: {str(e)[:500]}") from None
    result = {"bytes": len(content)}
    result.update(onnx_export.evaluate(content, verify, reference))
    _check_agreement("ONNX", result, signature, min_agreement)
    tol = _tolerance(signature.output_kind, reference, FP32_RTOL)
    if not result["max_abs_diff"] <= tol:
        raise ExportError(f"ONNX differs from the Keras model by {result['max_abs_diff']:.3g} (> {tol:.3g}).")
    with open(path, "wb") as f:
        f.write(content)
    return result
