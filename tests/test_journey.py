"""A newcomer's loop on their own data: fine-tune on a folder of 3 named classes with `keras-regnet train`, reload
the .keras file in a fresh process, `keras-regnet predict` it, `keras-regnet export` it, and call the served
`serving_bytes` signature: the user's class names come back at every step."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

CLASSES = ("cat", "dog", "fox")
PER_CLASS = 20
SIZE = 32


def _shape_image(kind, rng, size=48):
    """A coloured shape on a noisy background: cat = red disc, dog = green square, fox = blue triangle."""
    img = rng.randint(0, 60, (size, size, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.randint(size // 3, 2 * size // 3, 2)
    r = rng.randint(size // 6, size // 4)
    if kind == "cat":
        mask, colour = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r, (230, 40, 40)
    elif kind == "dog":
        mask, colour = (abs(yy - cy) <= r) & (abs(xx - cx) <= r), (40, 220, 40)
    else:
        mask, colour = (yy - cy <= r) & (yy - cy >= abs(xx - cx) - r), (40, 60, 230)
    img[mask] = colour
    return img


def _make_folder(root):
    import tensorflow as tf

    rng = np.random.RandomState(0)
    for name in CLASSES:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(PER_CLASS):
            png = tf.io.encode_png(_shape_image(name, rng)).numpy()
            with open(os.path.join(root, name, f"{i:02d}.png"), "wb") as f:
                f.write(png)


def _cli(args, cwd, timeout=900):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "keras_regnet.cli"] + args, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_finetune_predict_export_serve_with_the_users_class_names(tmp_path):
    data = tmp_path / "pets"
    _make_folder(str(data))
    run_dir = tmp_path / "run"
    # 1. Fine-tune (random weights: no network) through the CLI.
    proc = _cli(["train", "--preset", "finetune", "--model", "RegNetX200MF", "--weights", "none", "--dataset",
                 str(data), "--epochs", "2", "--image-size", str(SIZE), "--output-dir", str(run_dir),
                 "--export-dir", str(tmp_path / "train_export" / "pets"), "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = run_dir / "best.keras"
    assert best.exists() and (run_dir / "last.keras").exists()
    # train exported through export's path: a version folder with both signatures.
    assert (tmp_path / "train_export" / "pets" / "1" / "saved_model.pb").exists()

    # 2. The .keras file reloads (compiled) in a fresh process with only `import keras_regnet`, with the names.
    code = ("import sys, json, keras, keras_regnet\n"
            "m = keras.saving.load_model(sys.argv[1])\n"
            "print(json.dumps([type(m.optimizer).__name__, m.pretrained_cfg.get('class_names'),"
            " m.pretrained_cfg.get('size')]))")
    proc = subprocess.run([sys.executable, "-c", code, str(best)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["DecaySGD", list(CLASSES), SIZE]

    # 3. predict prints one of the user's class names.
    image = data / "dog" / "00.png"
    proc = _cli(["predict", str(image), "--model", str(best), "--top", "3"], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(name in proc.stdout for name in CLASSES), proc.stdout
    assert "class_" not in proc.stdout and "tench" not in proc.stdout  # not generic or ImageNet names

    # 4. export it, then serve: serving_bytes answers with the user's labels.
    proc = _cli(["export", str(best), "--output-dir", str(tmp_path / "exported"), "--name", "pets", "--tflite",
                 "none", "--quiet"], tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import tensorflow as tf

    for base in (tmp_path / "exported" / "pets", tmp_path / "train_export" / "pets"):
        loaded = tf.saved_model.load(str(base / "1"))
        assert {"serving_default", "serving_bytes"} <= set(loaded.signatures)
        out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([image.read_bytes()]))
        labels = [x.decode() for x in out["top_k_labels"].numpy().ravel()]
        assert labels and set(labels) <= set(CLASSES), labels
