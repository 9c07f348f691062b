"""``keras-regnet convert`` and ``keras-regnet predict`` on a randomly initialised full-size RegNetX-200MF."""

import json
import os

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_regnet
from keras_regnet import cli
from keras_regnet.weights import files
from keras_regnet.preprocessing import decode_predictions, resize_and_center_crop


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A RegNetX-200MF with random weights (BN statistics too) and its timm-format safetensors export."""
    keras.utils.set_random_seed(1)
    model = keras_regnet.RegNetX200MF(weights=None)
    rng = np.random.RandomState(1)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
        elif "moving_mean" in w.path:
            w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
        elif w.path.endswith("head_fc/kernel"):
            w.assign(rng.normal(0, 0.5, w.shape).astype("float32"))  # spread the probabilities a little
    folder = tmp_path_factory.mktemp("src")
    path = str(folder / "x200.safetensors")
    save_file(files.export_state_dict(model), path)
    return model, path, folder


def test_convert_recognises_the_model_and_writes_loadable_keras_weights(source, tmp_path, capsys):
    model, path, _ = source
    dst = str(tmp_path / "x200.weights.h5")
    assert cli.main(["convert", path, dst]) == 0
    out = capsys.readouterr().out
    assert "RegNetX-200MF" in out and "keras_regnet.RegNetX200MF(weights=" in out
    loaded = keras_regnet.RegNetX200MF(weights=dst)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert cli.main(["convert", path, str(tmp_path / "notop.weights.h5"), "--no-top"]) == 0
    keras_regnet.RegNetX200MF(include_top=False, weights=str(tmp_path / "notop.weights.h5"))


def test_convert_refuses_wrong_model_and_bad_destination(source, tmp_path, capsys):
    _, path, _ = source
    assert cli.main(["convert", path, str(tmp_path / "y.weights.h5"), "--model", "RegNetY-200MF"]) == 2
    assert "se.fc1" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "y.weights.h5")
    assert cli.main(["convert", path, str(tmp_path / "out.h5")]) == 2
    assert ".weights.h5" in capsys.readouterr().err
    assert cli.main(["convert", str(tmp_path / "missing.safetensors"), str(tmp_path / "o.weights.h5")]) == 2


def test_predict_prints_the_models_top_classes_for_a_directory(source, tmp_path, capsys):
    import tensorflow as tf

    model, path, _ = source
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    rng = np.random.RandomState(0)
    shapes = [(300, 200), (180, 260), (224, 224)]
    for i, (h, w) in enumerate(shapes):
        pixels = rng.randint(0, 256, (h, w, 3)).astype("uint8")
        (images_dir / f"img{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    (images_dir / "notes.txt").write_text("not an image")
    assert cli.main(["predict", str(images_dir), "--model", "RegNetX200MF", "--weights", path, "--top", "3",
                     "--batch-size", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [os.path.basename(r["image"]) for r in lines] == ["img0.png", "img1.png", "img2.png"]
    # the same eval transform by hand (224, crop 0.875, bicubic), then the model: same classes and probabilities
    batch = np.stack([
        resize_and_center_crop(tf.io.decode_png(tf.io.read_file(str(images_dir / f"img{i}.png"))), 224, 0.875, "bicubic")
        for i in range(3)
    ])
    expected = decode_predictions(model.predict(batch, verbose=0), top=3)
    for row, exp in zip(lines, expected):
        assert [t["wnid"] for t in row["top"]] == [e[0] for e in exp]
        np.testing.assert_allclose([t["probability"] for t in row["top"]], [e[2] for e in exp], atol=1e-5)
    # text output, one file
    assert cli.main(["predict", str(images_dir / "img2.png"), "--model", "RegNetX-200MF", "--weights", path,
                     "--top", "2"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].endswith("img2.png") and len(text) == 3 and expected[2][0][1] in text[1]


def test_predict_bad_input_is_a_clear_error(source, tmp_path, capsys):
    _, path, _ = source
    assert cli.main(["predict", str(tmp_path / "nope.jpg"), "--weights", path, "--model", "RegNetX200MF"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    assert cli.main(["predict", str(tmp_path / "bad.jpg"), "--weights", path, "--model", "RegNetX200MF"]) == 2
    assert "not an image" in capsys.readouterr().err
    assert cli.main(["predict", str(tmp_path / "bad.jpg"), "--top", "0"]) == 2


def test_predict_uses_the_registry_eval_config():
    from keras_regnet.pretrained import eval_config

    assert eval_config(arch="RegNetY-8.0GF", weights="imagenet") == (224, 0.875, "bicubic")
    assert eval_config(arch="RegNetY-8.0GF", weights="imagenet:ra3_in1k") == (288, 1.0, "bicubic")
    assert eval_config(arch="RegNetY-16GF", weights="imagenet:swag_ft_in1k", crop_pct=0.9) == (384, 0.9, "bicubic")
    assert eval_config(arch="RegNetY-16GF", weights="/some/file.safetensors") == (224, 0.875, "bicubic")
