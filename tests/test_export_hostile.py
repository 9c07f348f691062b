"""Export under hostile input: decompression bombs, escaping names, a kill in the publish window, damaged or
impossible output directories, a full disk, an empty batch. Each case is a clear error with nothing written, or
the right result."""

import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from conftest import TINY

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_regnet  # noqa: E402
from keras_regnet.cli import main as cli_main  # noqa: E402
from keras_regnet.export import ExportError, export_model  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))


def _model(classes=3):
    return keras_regnet.AnyNet(**TINY, input_shape=(None, None, 3), classes=classes)


def _quick(model, out, name="m", **kwargs):
    kwargs = {"tflite": (), "verify_images": 4, "calibration_images": 4, "progress": False, "size": 32, **kwargs}
    return export_model(model, str(out), name, **kwargs)


def png_bomb(width, height):
    """A valid grayscale PNG of width x height black pixels: ~1 KB per megapixel compressed (deflate's limit)."""
    compressor = zlib.compressobj(9)
    line = b"\0" * (width + 1)
    idat = b"".join(compressor.compress(line) for _ in range(height)) + compressor.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    out = tmp_path_factory.mktemp("served")
    model = _model()
    report = _quick(model, out)
    return model, tf.saved_model.load(report["path"])


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_decompression_bomb_fails_fast_and_serving_continues(served):
    """A 140 KB PNG declaring 12000x12000 pixels is refused before decoding; the next good request works."""
    model, loaded = served
    bomb = png_bomb(12000, 12000)
    assert len(bomb) < 200_000
    fn = loaded.signatures["serving_bytes"]
    good = tf.io.encode_png(np.full((40, 40, 3), 128, np.uint8)).numpy()
    fn(image_bytes=tf.constant([good]))  # warm up: tracing and kernels are not the bomb's cost
    before, start = _peak_rss_mb(), time.perf_counter()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"12000x12000 pixels, more than the limit of 40000000"):
        fn(image_bytes=tf.constant([good, bomb]))
    elapsed, growth = time.perf_counter() - start, _peak_rss_mb() - before
    assert elapsed < 2.0 and growth < 150, (elapsed, growth)  # decoding it costs ~2 GB and seconds
    out = fn(image_bytes=tf.constant([good]))
    assert out["probabilities"].shape == (1, 3) and np.all(np.isfinite(out["probabilities"]))


def test_pixel_limit_is_configurable(tmp_path):
    model = _model()
    report = _quick(model, tmp_path, max_pixels=50 * 50)
    fn = tf.saved_model.load(report["path"]).signatures["serving_bytes"]
    ok = tf.io.encode_jpeg(np.zeros((50, 50, 3), np.uint8)).numpy()
    too_big = tf.io.encode_jpeg(np.zeros((50, 51, 3), np.uint8)).numpy()  # JPEG: extract_jpeg_shape
    assert fn(image_bytes=tf.constant([ok]))["probabilities"].shape == (1, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="51x50 pixels"):
        fn(image_bytes=tf.constant([too_big]))
    assert report["max_pixels"] == 2500 and "pixels" in report["savedmodel"]["bomb_error"]


def test_empty_batch_gets_empty_outputs(served):
    model, loaded = served
    out = loaded.signatures["serving_default"](images=tf.zeros((0, 32, 32, 3)))
    assert out["probabilities"].shape == (0, 3) and out["top_k_classes"].shape[0] == 0
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([], tf.string))
    assert out["probabilities"].shape == (0, 3)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")  # non-empty: unchanged
    np.testing.assert_allclose(loaded.signatures["serving_default"](images=tf.constant(x))["probabilities"],
                               model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("name", ["../escape", "<absolute>", "a/b", "..", ".", ".hidden", "a\\b", "x\0y"])
def test_name_is_one_path_component(tmp_path, name):
    out = tmp_path / "out"
    absolute = str(tmp_path / "abs_escape")  # an absolute name inside this test's own directory
    with pytest.raises(ExportError, match="single directory name"):
        _quick(_model(), out, absolute if name == "<absolute>" else name)
    assert not os.path.exists(tmp_path / "escape") and not os.path.exists(absolute)
    assert not out.exists()


def test_cli_name_escape_is_one_line(tmp_path, capsys):
    model = _model()
    model.save(tmp_path / "m.keras")
    code = cli_main(["export", str(tmp_path / "m.keras"), "--output-dir", str(tmp_path / "out"), "--name",
                     "../escape", "--tflite", "none", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "single directory name" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out").exists()


def test_representative_folder_bomb_is_refused_before_decoding(tmp_path, capsys):
    """Calibration images from a folder are read like every other image: a PNG declaring 144 megapixels (a few
    hundred KB on disk) is refused from its header in one line, and nothing is exported."""
    from keras_regnet.export.representative import load_images

    folder = tmp_path / "calib"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(png_bomb(12000, 12000))
    before = _peak_rss_mb()
    with pytest.raises(ValueError, match="declares 12000x12000 pixels"):
        load_images(str(folder), 4, 32)
    assert _peak_rss_mb() - before < 100  # 144 MB had it been decoded
    model = _model()
    model.save(tmp_path / "m.keras")
    code = cli_main(["export", str(tmp_path / "m.keras"), "--output-dir", str(tmp_path / "out"), "--tflite", "int8",
                     "--representative", str(folder), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "representative image" in err and "refused before decoding" in err, err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.tflite"))


_KILL_IN_PUBLISH = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from conftest import TINY
import keras_regnet
from keras_regnet.export import export_model

real_rename = os.rename
def rename(src, dst, *args, **kwargs):
    if os.path.basename(dst).isdigit():  # the publish step: die right there, as a power cut would
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst, *args, **kwargs)
os.rename = rename
model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
export_model(model, {out!r}, "m", tflite=(), verify_images=2, calibration_images=2, progress=False)
"""


@pytest.mark.slow  # a fresh process importing TensorFlow: ~30 s alone, minutes on a loaded machine
def test_kill_in_publish_window_leaves_no_version_and_next_export_cleans(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", _KILL_IN_PUBLISH.format(tests=TESTS, out=str(out))],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    left = os.listdir(out / "m")
    assert not [d for d in left if d.isdigit()], left  # TF Serving sees no (empty) version
    assert len(left) == 1 and left[0].startswith(".staging-")

    model = keras_regnet.AnyNet(**TINY, input_shape=(32, 32, 3), classes=3)
    report = _quick(model, out)
    assert report["version"] == 1 and os.listdir(out / "m") == ["1"]
    assert any("stale staging" in note for note in report["notes"])


def test_live_staging_directory_is_kept(tmp_path):
    """Another export in progress (a live process) keeps its staging directory."""
    os.makedirs(tmp_path / "m")
    import socket
    import re

    host = re.sub(r"[^A-Za-z0-9]+", "", socket.gethostname())[:32] or "host"
    live = tmp_path / "m" / f".staging-{host}-{os.getpid()}-abcdef12"
    live.mkdir()
    report = _quick(_model(), tmp_path)
    assert report["version"] == 1 and live.is_dir() and report["notes"] == []


def test_empty_version_directory_from_an_old_crash_is_removed(tmp_path):
    os.makedirs(tmp_path / "m" / "1")
    report = _quick(_model(), tmp_path)
    assert report["version"] == 1 and sorted(os.listdir(tmp_path / "m")) == ["1"]
    assert any("empty version directory" in note for note in report["notes"])


def test_corrupt_metadata_names_the_file(tmp_path, capsys):
    model = _model()
    first = _quick(model, tmp_path)
    meta = os.path.join(first["path"], "assets.extra", "keras_regnet_export.json")
    with open(meta, "w") as f:
        f.write('{"fingerprint": "abc", truncated')
    with pytest.raises(ExportError, match=r"keras_regnet_export\.json.*damaged"):
        _quick(model, tmp_path)
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]
    model.save(tmp_path / "m.keras")
    code = cli_main(["export", str(tmp_path / "m.keras"), "--output-dir", str(tmp_path), "--name", "m",
                     "--tflite", "none", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and meta in err and len(err.strip().splitlines()) == 1


def test_output_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(ExportError, match="is not a directory"):
            _quick(_model(), out)
    _model().save(tmp_path / "m.keras")
    code = cli_main(["export", str(tmp_path / "m.keras"), "--output-dir", str(tmp_path / "file"), "--tflite",
                     "none", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "not a directory" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "file").read_text() == "x"


def test_disk_full_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """The SavedModel write hits ENOSPC (a real one, from /dev/full, through TensorFlow's file layer)."""
    from keras_regnet.export import savedmodel

    real_write = savedmodel.write_savedmodel

    def write_savedmodel(model, path, *args, **kwargs):
        real_write(model, path, *args, **kwargs)  # the SavedModel is on disk, then the disk is full
        tf.io.write_file("/dev/full", b"\0" * 65536)

    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    monkeypatch.setattr(savedmodel, "write_savedmodel", write_savedmodel)
    with pytest.raises(ExportError, match="no space left"):
        _quick(_model(), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing left behind, not even an empty model directory
    _model().save(tmp_path / "m.keras")
    code = cli_main(["export", str(tmp_path / "m.keras"), "--output-dir", str(tmp_path / "out"), "--tflite",
                     "none", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "no space left" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
