"""What quantization costs in accuracy, measured: a small RegNet trained on the embedded digits, exported with every
TFLite variant, each file's top-1 on held-out digits.

The model is a 32 px RegNet (the digits are 8x8 images upsampled to 32x32 RGB) trained for ``--epochs`` on the
fixed train split; int8 is calibrated on ``--calibration`` train images; every file is then run by the LiteRT
interpreter on the whole test split (360 images, never seen in training or calibration), batch 1, and compared with
the labels and with the float Keras model.

    python benchmarks/int8_accuracy.py                 # about 2-4 minutes on 2 cores
    python benchmarks/int8_accuracy.py --epochs 20 --seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A RegNet of the paper's form at digits scale: depth 6, w0 16, four stages, SE (a RegNetY), about 0.1 M params.
SPEC = dict(depth=6, w0=16, wa=12.0, wm=2.0, group_width=8, se_ratio=0.25)
VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int8_uint8in")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", type=int, default=200, help="train images calibrating int8 (default 200)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    import keras_regnet
    from keras_regnet.datasets import digits_arrays
    from keras_regnet.export import export_model
    from keras_regnet.export.tflite import run

    keras.utils.set_random_seed(args.seed)
    train_x, train_y = digits_arrays("train")
    test_x, test_y = digits_arrays("test")
    train_x, test_x = train_x.astype("float32"), test_x.astype("float32")
    model = keras_regnet.RegNet(**SPEC, input_shape=(32, 32, 3), classes=10, name="digits_regnet")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(train_x, train_y, batch_size=64, epochs=args.epochs, verbose=0)
    print(f"# trained {model.count_params() / 1e6:.2f} M params for {args.epochs} epochs in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    keras_pred = model.predict(test_x, verbose=0).argmax(1)
    rows = [("Keras float32", float(np.mean(keras_pred == test_y)), 1.0, None)]
    rng = np.random.default_rng(args.seed)
    calibration = train_x[rng.permutation(len(train_x))[:args.calibration]]
    with tempfile.TemporaryDirectory() as out:
        report = export_model(model, out, "digits", tflite=VARIANTS, representative=calibration,
                              verify_images=32, calibration_images=len(calibration) - 32, latency_runs=5,
                              latency_threads=(1,), progress=False)
        for variant in VARIANTS:
            path = os.path.join(report["path"], "assets.extra", f"digits_{variant}.tflite")
            with open(path, "rb") as f:
                pred = run(f.read(), test_x).argmax(1)
            rows.append((f"TFLite {variant}", float(np.mean(pred == test_y)), float(np.mean(pred == keras_pred)),
                         os.path.getsize(path)))
    print(f"\nheld-out digits test split: {len(test_y)} images; seed {args.seed}")
    print("| model | top-1 % | drop vs float (points) | agrees with Keras % | file KB |")
    print("|---|---:|---:|---:|---:|")
    base = rows[0][1]
    for name, acc, agree, size in rows:
        kb = f"{size / 1024:.0f}" if size else "n/a"
        print(f"| {name} | {100 * acc:.1f} | {100 * (base - acc):+.1f} | {100 * agree:.1f} | {kb} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
