"""TFLite export (float32, float16, dynamic-range int8, full int8) run and measured with the LiteRT interpreter.

Conversion uses ``tf.lite.TFLiteConverter.from_keras_model``, which traces Keras 3 models correctly (the
``from_concrete_functions`` path, given a Keras 3 model, silently yields a model that outputs NaN); every file is
then run with ``ai_edge_litert``'s interpreter and compared with the Keras model, so a broken conversion cannot
pass. The ``.tflite`` takes decoded pixels (float32 RGB in [0, 255]): JPEG decoding would need Flex ops, which
the pip interpreters cannot run. Grouped 3x3 convs lower to native ``CONV_2D`` ops; a file with Flex or custom
ops is refused.
"""

from __future__ import annotations

import collections
import contextlib
import io
import statistics
import time

import keras
import numpy as np

__all__ = ["VARIANTS", "convert", "op_counts", "evaluate", "latency_ms", "fixed_size_model"]

# variant: what it is
VARIANTS = {
    "fp32": "float32 weights and activations",
    "fp16": "float16 weights (dequantized to float32 at load), float32 activations",
    "dynamic": "dynamic-range quantization: int8 weights, activations quantized on the fly",
    "int8": "full integer quantization (int8 weights and activations, calibrated on representative images; float I/O)",
}


def fixed_size_model(model, size):
    """``model`` itself if its input has a fixed spatial size, else a wrapper with input (size, size, C).

    Mobile runtimes want static shapes (the batch stays dynamic).
    """
    h, w, c = model.inputs[0].shape[1:]
    if h is not None and w is not None:
        return model
    inputs = keras.Input((size, size, c), name="images")
    return keras.Model(inputs, model(inputs), name=model.name)


def convert(model, variant="fp32", representative=None):
    """The ``.tflite`` bytes of ``model`` (a Keras model with fixed spatial input size) as ``variant``.

    ``representative`` (float32 images (N, H, W, C) in [0, 255]) calibrates the ``int8`` variant.
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from {', '.join(VARIANTS)}.")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("the int8 variant needs representative images to calibrate activation ranges.")
        data = np.asarray(representative, np.float32)

        def dataset():
            for image in data:
                yield [image[None]]

        converter.representative_dataset = dataset
        # Only integer kernels: a layer that cannot be quantized makes conversion fail instead of staying float.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):  # from_keras_model prints the traced endpoint's summary
        return converter.convert()


def _interpreter(content, threads=None, xnnpack=True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return Interpreter(model_content=content, num_threads=threads, experimental_op_resolver_type=kind)


def ready_interpreter(content, threads=None):
    """(interpreter with tensors allocated, whether XNNPACK runs it).

    XNNPACK (LiteRT's default CPU delegate) refuses some quantized graphs at prepare time ("failed to create
    XNNPACK runtime", seen for int8 SE blocks whose multiply scales it does not support); those run on LiteRT's
    builtin kernels instead, and the report says so.
    """
    interpreter = _interpreter(content, threads)
    try:
        interpreter.allocate_tensors()
        return interpreter, True
    except RuntimeError as e:
        if "XNNPACK" not in str(e):
            raise
    interpreter = _interpreter(content, threads, xnnpack=False)
    interpreter.allocate_tensors()
    return interpreter, False


def op_counts(content):
    """{op name: count} of a ``.tflite`` file's graph (Flex ops show as ``FlexXxx``, custom ops as ``CUSTOM``)."""
    details = _interpreter(content)._get_ops_details()
    return dict(sorted(collections.Counter(d["op_name"] for d in details).items()))


def run(content, images, threads=2):
    """Outputs of the ``.tflite`` for ``images``, one image at a time (batch 1, as on a phone)."""
    interpreter, _ = ready_interpreter(content, threads)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for image in np.asarray(images, np.float32):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results)


def evaluate(content, images, reference):
    """{max_abs_diff, top1_agreement, finite, xnnpack} of the ``.tflite`` vs ``reference`` outputs (the Keras model's)."""
    got = run(content, images)
    reference = np.asarray(reference)
    report = {
        "finite": bool(np.all(np.isfinite(got))),
        "max_abs_diff": float(np.max(np.abs(got - reference))),
        "xnnpack": ready_interpreter(content)[1],
    }
    if reference.ndim == 2:
        report["top1_agreement"] = float(np.mean(np.argmax(got, -1) == np.argmax(reference, -1)))
    return report


def latency_ms(content, threads=(1, 2, 4), runs=20, warmup=3):
    """{threads: median milliseconds per batch-1 inference} with the LiteRT interpreter (XNNPACK on CPU)."""
    result = {}
    for n in threads:
        interpreter, _ = ready_interpreter(content, n)
        inp = interpreter.get_input_details()[0]
        interpreter.set_tensor(inp["index"], np.random.default_rng(0).uniform(0, 255, inp["shape"]).astype(np.float32))
        for _ in range(warmup):
            interpreter.invoke()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            interpreter.invoke()
            times.append(time.perf_counter() - start)
        result[n] = 1000 * statistics.median(times)
    return result
