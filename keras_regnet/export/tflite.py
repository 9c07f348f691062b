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

from keras_regnet._compat import litert_ops_details
from keras_regnet._extras import require
from keras_regnet._quiet import quiet

__all__ = ["VARIANTS", "convert", "op_counts", "evaluate", "latency_ms", "fixed_size_model", "delegation",
           "input_quantization"]

# TF 2.16's TFLite converter aborts the whole process on Keras 3 models ("error: missing attribute 'value'",
# "LLVM ERROR: Failed to infer result type(s)", SIGABRT), even for a single Conv2D; 2.17.1 converts them (checked
# with Keras 3.7.0 on Python 3.10).
MIN_TF_FOR_TFLITE = (2, 17)


def check_converter(tf):
    """Refuse, in one line, a TensorFlow whose TFLite converter would abort the process on a Keras 3 model."""
    try:
        version = tuple(int(part) for part in tf.__version__.split(".")[:2])
    except ValueError:
        return  # a development build: let the converter try
    if version < MIN_TF_FOR_TFLITE:
        raise RuntimeError(
            f"TFLite conversion needs TensorFlow >= {'.'.join(map(str, MIN_TF_FOR_TFLITE))}: TensorFlow "
            f"{tf.__version__}'s converter aborts the process on Keras 3 models. pip install 'tensorflow>=2.17', "
            "or export without TFLite (--tflite none)."
        )


# variant: what it is
VARIANTS = {
    "fp32": "float32 weights and activations",
    "fp16": "float16 weights (dequantized to float32 at load), float32 activations",
    "dynamic": "dynamic-range quantization: int8 weights, activations quantized on the fly",
    "int8": "full integer quantization (int8 weights and activations, calibrated on representative images; float I/O)",
    "int8_uint8in": "full integer quantization with uint8 input pixels in [0, 255] (camera frames as they come; "
                    "input scale 1, zero point 0) and float32 output",
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
    check_converter(tf)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant in ("int8", "int8_uint8in"):
        if representative is None or len(representative) == 0:
            raise ValueError(f"the {variant} variant needs representative images to calibrate activation ranges.")
        data = np.array(representative, np.float32)
        if variant == "int8_uint8in":
            # The input's calibrated range must be exactly [0, 255] so that its uint8 quantization is the identity
            # (scale 1, zero point 0): raw camera pixels go in unchanged. Two pixels of one image pin the range.
            data[0, 0, 0, :], data[0, 0, -1, :] = 0.0, 255.0
            converter.inference_input_type = tf.uint8

        def dataset():
            for image in data:
                yield [image[None]]

        converter.representative_dataset = dataset
        # Only integer kernels: a layer that cannot be quantized makes conversion fail instead of staying float.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(io.StringIO()), quiet():  # the traced endpoint's summary, MLIR/quantizer lines
        return converter.convert()


def _interpreter(content, threads=None, xnnpack=True):
    require("ai_edge_litert", "export", "running a TFLite model (LiteRT)")
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
        with quiet():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
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
    details = litert_ops_details(_interpreter(content))
    return dict(sorted(collections.Counter(d["op_name"] for d in details).items()))


def input_quantization(content):
    """(dtype name, scale, zero point) of the ``.tflite``'s input (scale 0 for float inputs)."""
    inp = _interpreter(content).get_input_details()[0]
    scale, zero = inp["quantization"]
    return np.dtype(inp["dtype"]).name, float(scale), int(zero)


def as_input(images, dtype):
    """``images`` (float pixels in [0, 255]) as the file's input dtype: uint8 inputs get rounded, clipped pixels."""
    images = np.asarray(images, np.float32)
    if np.dtype(dtype) == np.uint8:
        return np.clip(np.round(images), 0, 255).astype(np.uint8)
    return images.astype(dtype)


def _dequantize(interpreter, index):
    detail = next(d for d in interpreter.get_tensor_details() if d["index"] == index)
    value = interpreter.get_tensor(index)
    scale, zero = detail["quantization"]
    if scale:
        return (value.astype(np.float32) - zero) * scale
    return value.astype(np.float32)


def run(content, images, threads=2, logits=False):
    """Outputs of the ``.tflite`` for ``images``, one image at a time (batch 1, as on a phone).

    ``logits=True``: the input of the graph's last SOFTMAX instead (dequantized), read with LiteRT's builtin
    kernels and every tensor preserved; the output itself when the graph has no SOFTMAX. Quantized probability
    outputs have a resolution of 1/256, too coarse to compare near-uniform predictions (untrained models, many
    classes); the logits inside the same file are not.
    """
    if logits:
        require("ai_edge_litert", "export", "running a TFLite model (LiteRT)")
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        interpreter = Interpreter(model_content=content, num_threads=threads, experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
        softmax = [op for op in litert_ops_details(interpreter) if op["op_name"] == "SOFTMAX"]
        tensor = int(softmax[-1]["inputs"][0]) if softmax else interpreter.get_output_details()[0]["index"]
    else:
        interpreter, _ = ready_interpreter(content, threads)
        tensor = interpreter.get_output_details()[0]["index"]
    inp = interpreter.get_input_details()[0]
    results = []
    for image in as_input(images, inp["dtype"]):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        results.append(_dequantize(interpreter, tensor)[0].copy())
    return np.stack(results)


def evaluate(content, images, reference, reference_logits=None):
    """The ``.tflite`` run on ``images`` vs the Keras model's ``reference`` outputs (and logits, for classifiers).

    Returns {finite, max_abs_diff, xnnpack, delegation} plus, for classifiers, ``top1_agreement`` of the served
    output and the logit comparison of :func:`keras_regnet.export.common.compare_logits`.
    """
    from keras_regnet.export.common import compare_logits

    got = run(content, images)
    reference = np.asarray(reference)
    report = {
        "finite": bool(np.all(np.isfinite(got))),
        "max_abs_diff": float(np.max(np.abs(got - reference))),
        "xnnpack": ready_interpreter(content)[1],
        "delegation": delegation(content),
    }
    if reference.ndim == 2:
        report["top1_agreement"] = float(np.mean(np.argmax(got, -1) == np.argmax(reference, -1)))
    if reference_logits is not None:
        report.update(compare_logits(reference_logits, run(content, images, logits=True)))
    return report


def delegation(content, threads=2):
    """How much of the graph LiteRT's XNNPACK delegate runs: {ops, delegated, outside: {op: count}, partitions}.

    Each XNNPACK partition replaces a convex set of the graph's ops with one DELEGATE node; the ops outside every
    partition run on LiteRT's builtin kernels (each a separate, slower dispatch).
    """
    interpreter = _interpreter(content, threads)
    original = litert_ops_details(interpreter)
    try:
        with quiet():
            interpreter.allocate_tensors()
    except RuntimeError as e:
        if "XNNPACK" not in str(e):
            raise
        outside = collections.Counter(op["op_name"] for op in original)
        return {"ops": len(original), "delegated": 0, "outside": dict(sorted(outside.items())), "partitions": 0}
    nodes = litert_ops_details(interpreter)
    delegates = [op for op in nodes[len(original):] if op["op_name"] == "DELEGATE"]
    producer = {int(t): op["index"] for op in original for t in op["outputs"]}
    inside = set()
    for node in delegates:
        stop = {int(t) for t in node["inputs"]}
        todo = [int(t) for t in node["outputs"]]
        while todo:
            tensor = todo.pop()
            if tensor in stop or tensor not in producer or producer[tensor] in inside:
                continue
            op = producer[tensor]
            inside.add(op)
            todo.extend(int(t) for t in original[op]["inputs"] if t >= 0)
    outside = collections.Counter(op["op_name"] for op in original if op["index"] not in inside)
    return {"ops": len(original), "delegated": len(inside), "outside": dict(sorted(outside.items())),
            "partitions": len(delegates)}


def latency_ms(content, threads=(1, 2, 4), runs=20, warmup=3):
    """{threads: median milliseconds per batch-1 inference} with the LiteRT interpreter (XNNPACK on CPU)."""
    result = {}
    for n in threads:
        interpreter, _ = ready_interpreter(content, n)
        inp = interpreter.get_input_details()[0]
        pixels = np.random.default_rng(0).uniform(0, 255, inp["shape"])
        interpreter.set_tensor(inp["index"], as_input(pixels, inp["dtype"]))
        for _ in range(warmup):
            interpreter.invoke()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            interpreter.invoke()
            times.append(time.perf_counter() - start)
        result[n] = 1000 * statistics.median(times)
    return result
