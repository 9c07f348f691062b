"""The keras-regnet command line: help, the models table, error exits."""

import json
import subprocess
import sys

from keras_regnet import cli
from paper_table import PAPER


def test_models_table_matches_paper(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "24/24 models match the paper's flops, params and acts exactly." in out
    assert out.count("exact") == 24 + 1


def test_models_json_lines(capsys):
    assert cli.main(["models", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["model"] for r in rows] == list(PAPER)
    y600 = rows[list(PAPER).index("RegNetY-600MF")]
    assert (y600["flops"], y600["params"], y600["acts"]) == tuple(PAPER["RegNetY-600MF"][10:])
    assert y600["constructor"] == "RegNetY600MF"


def test_console_script_help_and_unknown_command():
    out = subprocess.run([sys.executable, "-m", "keras_regnet.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "models" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "keras_regnet.cli", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


# ---------------------------------------------------------------------------------------------- start-up, errors

import os  # noqa: E402
import textwrap  # noqa: E402

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, env=None, timeout=600, cwd=None):
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    full_env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI must quiet TensorFlow by itself
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)


def test_help_and_models_start_without_tensorflow_or_keras():
    out = _python("""
        import contextlib, io, json, sys
        from keras_regnet import cli
        with contextlib.redirect_stdout(io.StringIO()) as help_text:
            try:
                cli.main(["--help"])
            except SystemExit as e:
                assert e.code == 0
        after_help = sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(["models"])
        after_models = sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)
        print(json.dumps([after_help, rc, after_models, "explain" in help_text.getvalue()]))
    """)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [[], 0, [], True]
    assert out.stderr == ""


def test_subcommand_help_imports_only_its_own_module():
    out = _python("""
        import contextlib, io, sys
        from keras_regnet import cli
        with contextlib.redirect_stdout(io.StringIO()) as text:
            try:
                cli.main(["predict", "--help"])
            except SystemExit:
                pass
        assert "--max-pixels" in text.getvalue()
        print(sorted(m for m in sys.modules if m.startswith("keras_regnet.commands.")))
        print("tensorflow" in sys.modules)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["['keras_regnet.commands.predict']", "False"]


def _fake_run(monkeypatch, error):
    from keras_regnet.commands import models as models_cmd

    def run(args):
        raise error

    monkeypatch.setattr(models_cmd, "run", run)


@pytest.mark.parametrize("error, code, text", [
    (ValueError("--top must be at least 1, got 0."), 2, "keras-regnet models: error: --top must be at least 1"),
    (FileNotFoundError("image 'x.jpg' does not exist."), 2, "keras-regnet models: error: image 'x.jpg' does not"),
    (OSError("could not download https://huggingface.co/x: offline"), 2, "error: could not download"),
    (KeyboardInterrupt(), 130, "keras-regnet models: interrupted"),
    (ModuleNotFoundError("No module named 'tf2onnx'", name="tf2onnx"), 2, "pip install 'keras-regnet[export]'"),
])
def test_expected_errors_are_one_line_and_a_nonzero_exit(monkeypatch, capsys, error, code, text):
    _fake_run(monkeypatch, error)
    assert cli.main(["models"]) == code
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_extra_is_one_line_naming_the_extra(monkeypatch, capsys):
    from keras_regnet._extras import require

    def run(args):
        require("keras_regnet_no_such_module", "design", "keras-regnet models")

    from keras_regnet.commands import models as models_cmd

    monkeypatch.setattr(models_cmd, "run", run)
    assert cli.main(["models"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'keras-regnet[design]'" in err


def test_debug_shows_the_traceback_and_unexpected_errors_are_not_hidden(monkeypatch):
    _fake_run(monkeypatch, ValueError("bad value"))
    with pytest.raises(ValueError, match="bad value"):
        cli.main(["models", "--debug"])
    with pytest.raises(ValueError, match="bad value"):
        cli.main(["--debug", "models"])
    _fake_run(monkeypatch, RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):  # a bug keeps its traceback
        cli.main(["models"])
    _fake_run(monkeypatch, ModuleNotFoundError("No module named 'foo'", name="foo"))
    with pytest.raises(ModuleNotFoundError):  # not an optional package of ours: a broken install, shown in full
        cli.main(["models"])


def test_weights_none_is_one_vocabulary():
    import argparse

    for given in ("none", "None", "NONE", "random", " none "):
        args = argparse.Namespace(weights=given)
        cli._normalize_weights(args)
        assert args.weights == "none"
    args = argparse.Namespace(weights="imagenet")
    cli._normalize_weights(args)
    assert args.weights == "imagenet"


@pytest.mark.slow
def test_offline_commands_fail_in_one_line_without_traceback(tmp_path):
    """No network and nothing cached: predict, explain, export and train --preset finetune each end with one line."""
    import numpy as np
    import tensorflow as tf

    image = tmp_path / "img.png"
    image.write_bytes(tf.io.encode_png(np.zeros((40, 40, 3), "uint8")).numpy())
    out = _python(f"""
        import contextlib, io, json
        from keras_regnet import cli
        results = []
        for argv in (["predict", {str(image)!r}, "--model", "RegNetX200MF"],
                     ["explain", {str(image)!r}, "--model", "RegNetX200MF", "--out", "cam.png"],
                     ["export", "RegNetX200MF", "--tflite", "none", "--output-dir", "exported"],
                     ["train", "--preset", "finetune", "--model", "RegNetX200MF", "--dataset", "digits",
                      "--epochs", "1", "--output-dir", "run", "--no-export"]):
            with contextlib.redirect_stderr(io.StringIO()) as err:
                try:
                    rc = cli.main(argv)
                except BaseException as e:
                    rc = "raised " + type(e).__name__ + ": " + str(e)[:300]
            results.append([argv[0], rc, err.getvalue()])
        print(json.dumps(results))
    """, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "KERAS_HOME": str(tmp_path / "keras")},
        cwd=str(tmp_path), timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for command, rc, err in results:
        assert rc == 2, (command, rc, err)
        lines = err.strip().splitlines()  # train may say what it is about to do first; the error is one line
        errors = [line for line in lines if ": error: " in line]
        assert errors == lines[-1:] and lines[-1].startswith(f"keras-regnet {command}: error: "), (command, err)
        assert "Traceback" not in err
    assert not (tmp_path / "exported").exists() or not any((tmp_path / "exported").iterdir())


# ------------------------------------------------------------------------------------- predict on the user's model

SMALL = dict(type="anynet", depths=(1, 1, 1, 1), widths=(16, 24, 32, 48), bottleneck_ratios=(1,) * 4,
             group_widths=(8,) * 4)


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory):
    """A 3-class model saved as .keras with its own class names and eval transform (as `train` writes them)."""
    import numpy as np
    import tensorflow as tf

    from keras_regnet.models import build_model

    tmp = tmp_path_factory.mktemp("predict")
    model = build_model(SMALL, input_shape=(None, None, 3), classes=3)
    model.set_pretrained_cfg(class_names=["cat", "dog", "fox"], size=48, crop_pct=1.0, interpolation="bilinear")
    path = tmp / "best.keras"
    model.save(path)
    rng = np.random.default_rng(0)
    images = []
    for i, (h, w) in enumerate([(60, 80), (50, 50)]):
        pixels = rng.integers(0, 256, (h, w, 3)).astype("uint8")
        images.append(tmp / f"img{i}.png")
        images[-1].write_bytes(tf.io.encode_png(pixels).numpy())
    return model, str(path), [str(p) for p in images]


def test_predict_a_keras_file_with_its_own_names_and_eval_transform(saved_classifier, capsys):
    import numpy as np
    import tensorflow as tf

    from keras_regnet.preprocessing import resize_and_center_crop

    model, path, images = saved_classifier
    assert cli.main(["predict", *images, "--model", path, "--json", "--top", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    batch = np.stack([resize_and_center_crop(tf.io.decode_png(tf.io.read_file(p), channels=3), 48, 1.0, "bilinear")
                      for p in images])
    expected = model.predict(batch, verbose=0)
    for row, probs in zip(rows, expected):
        order = np.argsort(-probs, kind="stable")
        assert [t["label"] for t in row["top"]] == [["cat", "dog", "fox"][i] for i in order]
        assert [t["class_index"] for t in row["top"]] == [int(i) for i in order]
        np.testing.assert_allclose([t["probability"] for t in row["top"]], probs[order], atol=1e-5)
        assert "wnid" not in row["top"][0]
    # --weights FILE.keras means the same model (not weights for the default RegNetY600MF)
    assert cli.main(["predict", images[0], "--weights", path, "--top", "1"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == images[0] and text[1].split()[-1] == ["cat", "dog", "fox"][int(np.argmax(expected[0]))]


def test_predict_model_and_weights_mismatch_is_one_line(saved_classifier, capsys):
    _, path, images = saved_classifier
    assert cli.main(["predict", images[0], "--model", "RegNetX200MF", "--weights", path]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "use --model" in err and "kernel" not in err
    assert cli.main(["predict", images[0], "--model", path, "--weights", "imagenet"]) == 2
    assert "holds its own weights" in capsys.readouterr().err


def test_predict_random_weights_and_decompression_bomb(tmp_path, capsys):
    import struct
    import zlib

    import numpy as np
    import tensorflow as tf

    img = tmp_path / "img.png"
    img.write_bytes(tf.io.encode_png(np.zeros((40, 40, 3), "uint8")).numpy())
    assert cli.main(["predict", str(img), "--model", "RegNetX200MF", "--weights", "None", "--size", "32",
                     "--top", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    # a 100-byte PNG that declares 30000 x 30000 pixels: refused from its header, before decoding
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    assert cli.main(["predict", str(bomb), "--model", "RegNetX200MF", "--weights", "none", "--size", "32"]) == 2
    err = capsys.readouterr().err
    assert "30000x30000" in err and "before decoding" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["predict", str(img), "--model", "RegNetX200MF", "--weights", "none", "--size", "32",
                     "--max-pixels", "1000"]) == 2
    assert "40x40" in capsys.readouterr().err


def test_predict_refuses_an_animated_webp_in_one_line(tmp_path, capsys):
    """TensorFlow cannot decode an animated WebP to RGB (and TF 2.21 corrupts memory with channels=0)."""
    pil = pytest.importorskip("PIL.Image")
    import io

    frames = [pil.new("RGB", (40, 30), (i * 60, 0, 0)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=10, lossless=True)
    anim = tmp_path / "anim.webp"
    anim.write_bytes(buffer.getvalue())
    assert cli.main(["predict", str(anim), "--model", "RegNetX200MF", "--weights", "none", "--size", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert "an animated WebP is not accepted" in err and "still image" in err and len(err.splitlines()) == 1, err


# ------------------------------------------------------------------------------------------ docs/cli.md, --help

DOCS_CLI = os.path.join(ROOT, "docs", "cli.md")


def _subparsers():
    import argparse

    parser = cli.build_parser("*")
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_subcommand_help_renders():
    """`keras-regnet COMMAND --help` works for every command (a stray % in a help text makes argparse raise)."""
    for name, parser in _subparsers().items():
        text = parser.format_help()
        assert f"keras-regnet {name}" in text and "--debug" in text, name


def test_docs_cli_md_is_the_parser_reference():
    """docs/cli.md lists every sub-command and every flag, as generated from the parser (regenerate it with
    python -c "import keras_regnet.cli as c; c.write_reference('docs/cli.md')")."""
    with open(DOCS_CLI, encoding="utf-8") as f:
        text = f.read()
    assert cli.DOCS_MARKER in text
    generated = text.split(cli.DOCS_MARKER)[0].rstrip() + "\n\n" + cli.reference_markdown()
    assert text == generated, "docs/cli.md is out of date: regenerate it with cli.write_reference('docs/cli.md')"
    for name, parser in _subparsers().items():
        assert f"### keras-regnet {name}\n" in text
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text or f", {flag}" in text, (name, flag)
    assert "### keras-regnet cache\n" in text
