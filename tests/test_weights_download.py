"""The download path end to end against a local Hugging Face Hub look-alike on 127.0.0.1 (no remote host).

Covers: first download -> conversion -> cached .weights.h5; later loads with no network; HF_HUB_OFFLINE; an
unreachable endpoint; 404; a truncated transfer; a server too slow to answer; a file whose sha256 changed after the
first download (in the cache, or upstream). After every failure nothing loadable is left in the cache.
Trust: a poisoned first download (an HTML page, another model, NaN/int tensors, a forged header, a sha256 other
than the published one) is refused, removed and never pinned; a bad pin is named with its repair
(`keras-regnet cache`); concurrent writers keep every pin; a damaged store is a loud error; a pinned revision is
fetched as such; Keras 2 URLs get their own offline advice.
"""

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_regnet
from keras_regnet import cli, specs
from keras_regnet.weights.files import export_state_dict
from keras_regnet.weights import WeightsDownloadError, WeightsIntegrityError, download, load_weights, registry, validate

from test_weights import fixture, tiny_model

REPO = "timm/tiny_x.pycls_in1k"
FULL_PARAMS = dict(specs.MODEL_PARAMS)


class HubServer:
    """Serves ``files`` ({url path: bytes}) like the Hub's /{repo}/resolve/{rev}/{file}: HEAD with ETag and
    X-Repo-Commit, GET with Range. ``mode[path]`` = 'ok', 'truncate' (half the body, then hang up), 'slow'
    (answers after 3 s), '404' or 'bad_etag' (the ETag, i.e. the published sha256, is not the body's)."""

    def __init__(self):
        self.files, self.mode, self.requests = {}, {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _start(self, method):
                path = self.path.split("?")[0]
                server.requests.append((method, path))
                data, mode = server.files.get(path), server.mode.get(path, "ok")
                if data is None or mode == "404":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None, None, 0
                if mode == "slow":
                    time.sleep(3)
                rng = self.headers.get("Range") if method == "GET" else None
                start = int(rng[6:].split("-")[0]) if rng and rng.startswith("bytes=") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                etag = hashlib.sha256(data if mode != "bad_etag" else data + b"?").hexdigest()
                self.send_header("ETag", f'"{etag}"')
                revision = path.split("/resolve/")[-1].split("/")[0] if "/resolve/" in path else ""
                commit = revision if len(revision) == 40 else hashlib.sha1(path.encode()).hexdigest()
                self.send_header("X-Repo-Commit", commit)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                return data, mode, start

            def do_HEAD(self):
                self._start("HEAD")

            def do_GET(self):
                data, mode, start = self._start("GET")
                if data is None:
                    return
                body = data[start:] if mode != "truncate" else data[start: max(start, len(data) // 2)]
                try:
                    self.wfile.write(body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = mode == "truncate"

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def hub_path(self, repo, filename="model.safetensors", revision="main"):
        return f"/{repo}/resolve/{revision}/{filename}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A local hub, fresh caches, and RegNetX-200MF's default entry pointing at the tiny fixture's repo."""
    from huggingface_hub import constants

    server = HubServer()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)
    monkeypatch.setitem(registry.REGISTRY["RegNetX-200MF"][0], "repo", REPO)
    # downloads are validated against the entry's architecture: make it the tiny fixture's (10 classes)
    _, spec, path = fixture("x")
    monkeypatch.setitem(registry.REGISTRY["RegNetX-200MF"][0], "classes", spec["classes"])
    monkeypatch.setitem(specs.MODEL_PARAMS, "RegNetX-200MF", tiny_params(spec))
    server.files[server.hub_path(REPO)] = open(path, "rb").read()
    yield server
    server.close()


def tiny_params(spec):
    return specs.RegNetParams(**{k: v for k, v in spec.items() if k != "classes"})


_TINY_MODELS = {}


def load_tiny(**kwargs):
    """Load the registry's 'imagenet' weights into a tiny model (built once per kwargs, then reused: every load
    assigns all of its weights, and a failed load assigns none)."""
    ref, spec, _ = fixture("x")
    key = tuple(sorted(kwargs.items()))
    if key not in _TINY_MODELS:
        _TINY_MODELS[key] = tiny_model(spec, **kwargs)
    model = _TINY_MODELS[key]
    for w in model.weights:  # forget the previous load
        w.assign(np.zeros(w.shape, w.dtype))
    load_weights(model, "imagenet", arch="RegNetX-200MF", include_top=kwargs.get("include_top", True))
    return model, ref


def assert_holds_fixture(model):
    """Every weight of ``model`` is exactly the fixture file's tensor (the file the fake Hub serves)."""
    expected = {k: v.astype("float32") for k, v in x_tensors().items() if not k.endswith("num_batches_tracked")}
    got = export_state_dict(model)
    assert set(got) == set(expected)
    for key, value in got.items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


def hf_cached_files(tmp_path):
    root = tmp_path / "hf"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "blobs" in p.parts) if root.exists() else []


def test_download_convert_cache_and_offline_reuse(hub, tmp_path, monkeypatch):
    model, ref = load_tiny()
    images = ref["images"].astype("float32")
    assert np.abs(model.predict(images, verbose=0) - ref["logits"]).max() <= 1e-4
    assert ("GET", hub.hub_path(REPO)) in hub.requests
    info = keras_regnet.get_weights_info("RegNetX-200MF")
    converted = keras_regnet.weights.converted_path(info, include_top=True)
    assert os.path.isfile(converted) and converted.startswith(str(tmp_path / "keras"))
    records = download._read_records()
    assert records[f"{REPO}@main/model.safetensors"]["sha256"] == hashlib.sha256(hub.files[hub.hub_path(REPO)]).hexdigest()
    # second load: from the converted cache, no network at all
    n = len(hub.requests)
    again, _ = load_tiny()
    assert len(hub.requests) == n
    assert_holds_fixture(again)
    # offline, with the conversion gone: the Hub cache is used (verified), still no request
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.remove(converted)
    third, _ = load_tiny()
    assert len(hub.requests) == n
    assert_holds_fixture(third)


def test_offline_or_unreachable_with_nothing_cached_fails_fast_and_says_what_to_do(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsDownloadError, match=r"HF_HUB_OFFLINE.*resolve/main/model\.safetensors.*weights="):
        load_tiny()
    assert not hub.requests
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket_closed_port() as port:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        with pytest.raises(WeightsDownloadError, match=rf"127\.0\.0\.1:{port}/{REPO}/resolve/main/model\.safetensors"):
            load_tiny()
    assert time.monotonic() - start < 15


class socket_closed_port:
    """A local port with nothing listening (connections are refused at once)."""

    def __enter__(self):
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc):
        return False


def test_404_is_a_clear_error_and_caches_nothing(hub, tmp_path):
    hub.mode[hub.hub_path(REPO)] = "404"
    with pytest.raises(WeightsDownloadError, match="cannot get the RegNetX-200MF weights 'imagenet'"):
        load_tiny()
    assert hf_cached_files(tmp_path) == []


def test_truncated_download_leaves_nothing_loadable_and_a_retry_recovers(hub, tmp_path):
    hub.mode[hub.hub_path(REPO)] = "truncate"
    with pytest.raises(WeightsDownloadError, match="download failed"):
        load_tiny()
    assert [f for f in hf_cached_files(tmp_path) if not f.endswith(".incomplete")] == []
    assert not os.path.exists(keras_regnet.weights.converted_path(keras_regnet.get_weights_info("RegNetX-200MF"), True))
    hub.mode[hub.hub_path(REPO)] = "ok"
    model, ref = load_tiny()
    assert_holds_fixture(model)


def test_slow_server_times_out_in_seconds(hub, tmp_path):
    hub.mode[hub.hub_path(REPO)] = "slow"
    start = time.monotonic()
    with pytest.raises(WeightsDownloadError, match="cannot get"):
        load_tiny()
    assert time.monotonic() - start < 15
    assert hf_cached_files(tmp_path) == []


def test_sha256_change_after_first_download_is_refused_and_evicted(hub, tmp_path):
    load_tiny()
    info = keras_regnet.get_weights_info("RegNetX-200MF")
    converted = keras_regnet.weights.converted_path(info, include_top=True)
    # (a) the cached download is altered on disk: caught at the next load that needs it
    os.remove(converted)
    (blob,) = hf_cached_files(tmp_path)
    blob_path = tmp_path / "hf" / blob
    data = bytearray(blob_path.read_bytes())
    data[-1] ^= 0xFF
    blob_path.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="recorded at first download"):
        load_tiny()
    assert hf_cached_files(tmp_path) == [] and not os.path.exists(converted)
    # (b) upstream now serves other bytes: the new download is refused and evicted as well
    _, _, y_path = fixture("y")
    hub.files[hub.hub_path(REPO)] = open(y_path, "rb").read()
    with pytest.raises(WeightsIntegrityError, match="removed from the cache"):
        load_tiny()
    assert hf_cached_files(tmp_path) == []
    # (c) a converted cache file that was modified is not trusted: it is converted again from the verified source
    hub.files[hub.hub_path(REPO)] = open(fixture("x")[2], "rb").read()
    load_tiny()
    with open(converted, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.warns(UserWarning, match="were modified"):
        model, ref = load_tiny()
    assert_holds_fixture(model)


@pytest.mark.slow  # a full-size model's download round trip
def test_public_constructor_downloads_a_full_size_model(hub, monkeypatch):
    """``keras_regnet.RegNetX200MF(weights="imagenet")`` end to end, with and without the top."""
    monkeypatch.setitem(registry.REGISTRY["RegNetX-200MF"][0], "classes", 1000)  # the real architecture again
    monkeypatch.setitem(specs.MODEL_PARAMS, "RegNetX-200MF", FULL_PARAMS["RegNetX-200MF"])
    source = keras_regnet.RegNetX200MF(weights=None, classifier_activation=None, input_shape=(64, 64, 3))  # 64 px: same weights
    for w in source.weights:  # move BN statistics away from their initial values
        if "moving_variance" in w.path:
            w.assign(np.random.uniform(0.5, 2.0, w.shape).astype("float32"))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(np.random.normal(0, 0.1, w.shape).astype("float32"))
    path = os.path.join(os.environ["KERAS_HOME"], "src.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(export_state_dict(source), path)
    repo = "timm/regnetx_002.pycls_in1k"
    monkeypatch.setitem(registry.REGISTRY["RegNetX-200MF"][0], "repo", repo)
    hub.files[hub.hub_path(repo)] = open(path, "rb").read()
    images = np.random.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    model = keras_regnet.RegNetX200MF(weights="imagenet", classifier_activation=None, input_shape=(64, 64, 3))
    np.testing.assert_allclose(model.predict(images, verbose=0), source.predict(images, verbose=0), atol=1e-4)
    backbone = keras_regnet.RegNetX200MF(weights="imagenet", include_top=False, pooling="avg", input_shape=(64, 64, 3))
    layers = [layer for layer in backbone.layers if layer.weights]
    assert len(layers) == len([layer for layer in source.layers if layer.weights]) - 1  # all but head_fc
    for layer in layers:  # every backbone weight is exactly the source model's
        for mine, theirs in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(mine, theirs, err_msg=layer.name)
    assert os.path.exists(keras_regnet.weights.converted_path(keras_regnet.get_weights_info("RegNetX200MF"), False))


@pytest.mark.slow  # a full-size model's download round trip
def test_keras2_weights_download_with_the_published_sha256(hub, tmp_path, monkeypatch):
    tf_keras = pytest.importorskip("tf_keras")
    monkeypatch.setitem(specs.MODEL_PARAMS, "RegNetX-200MF", FULL_PARAMS["RegNetX-200MF"])
    ref = tf_keras.applications.regnet.RegNetX002(weights=None, include_top=False, input_shape=(64, 64, 3))
    path = str(tmp_path / "regnetx002_notop.h5")
    ref.save_weights(path)
    data = open(path, "rb").read()
    entry = next(e for e in registry.REGISTRY["RegNetX-200MF"] if e["tag"] == "keras2")
    monkeypatch.setitem(entry, "url_notop", hub.url + "/keras2/regnetx002_notop.h5")
    monkeypatch.setitem(entry, "sha256_notop", hashlib.sha256(data).hexdigest())
    hub.files["/keras2/regnetx002_notop.h5"] = data
    images = np.random.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    ours = keras_regnet.RegNetX200MF(weights="imagenet:keras2", include_top=False, input_shape=(64, 64, 3))
    assert "stem_pad" not in [layer.name for layer in ours.layers]  # the tag selects Keras 2's architecture
    np.testing.assert_allclose(ours.predict(images, verbose=0), ref.predict(images, verbose=0), atol=1e-4, rtol=1e-4)
    # a file that does not have the published hash is refused and not kept
    monkeypatch.setitem(entry, "sha256_notop", "0" * 64)
    for leftover in (tmp_path / "keras").rglob("*notop*"):
        leftover.unlink()
    with pytest.raises(WeightsIntegrityError, match="published sha256"):
        keras_regnet.RegNetX200MF(weights="imagenet:keras2", include_top=False, input_shape=(64, 64, 3))
    assert not list((tmp_path / "keras").rglob("regnetx002_notop.h5"))


# ---------------------------------------------------------------------------------------------- trusted downloads

PIN = f"{REPO}@main/model.safetensors"
HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in to the guest Wi-Fi</title></head><body>...</body></html>\n"


def x_tensors():
    from safetensors.numpy import load_file

    return dict(load_file(fixture("x")[2]))


def safetensors_bytes(tensors, tmp_path, name="variant.safetensors"):
    path = tmp_path / name
    save_file(tensors, str(path))
    return path.read_bytes()


def assert_nothing_kept(tmp_path):
    """No blob in the Hub cache, no pin, no converted file."""
    assert hf_cached_files(tmp_path) == []
    assert PIN not in download._read_records()
    assert not os.path.exists(keras_regnet.weights.converted_path(keras_regnet.get_weights_info("RegNetX-200MF"), True))


def test_poisoned_first_download_is_refused_not_pinned_and_the_real_file_then_loads(hub, tmp_path):
    """A captive portal answers 200 with an HTML page: refused, removed, never pinned; the retry gets the real file."""
    real = hub.files[hub.hub_path(REPO)]
    hub.files[hub.hub_path(REPO)] = HTML
    with pytest.raises(WeightsIntegrityError, match=r"the server returned an HTML page, not a weights file.*removed from the cache and not recorded"):
        load_tiny()
    assert_nothing_kept(tmp_path)
    hub.files[hub.hub_path(REPO)] = real
    model, ref = load_tiny()
    assert_holds_fixture(model)
    assert download._read_records()[PIN]["sha256"] == hashlib.sha256(real).hexdigest()


def _nan(t):
    t = dict(t)
    t["s2.b1.conv2.conv.weight"] = t["s2.b1.conv2.conv.weight"].copy()
    t["s2.b1.conv2.conv.weight"].flat[3] = np.nan
    return t


def _int(t):
    return dict(t, **{"s1.b1.conv1.conv.weight": t["s1.b1.conv1.conv.weight"].astype("int32")})


def _wide_stem(t):
    return dict(t, **{"stem.conv.weight": np.zeros((24, 3, 3, 3), "float16")})


@pytest.mark.parametrize("make, message", [
    (lambda t, p: open(fixture("y")[2], "rb").read(), r"unexpected tensor 's1\.b1\.se\.fc1\.(weight|bias)'.*another model"),
    (lambda t, p: safetensors_bytes(_wide_stem(t), p), r"'stem\.conv\.weight' has shape \(24, 3, 3, 3\), expected \(16, 3, 3, 3\)"),
    (lambda t, p: safetensors_bytes(_nan(t), p), r"'s2\.b1\.conv2\.conv\.weight' holds 1 non-finite values"),
    (lambda t, p: safetensors_bytes(_int(t), p), r"'s1\.b1\.conv1\.conv\.weight' has dtype I32"),
    (lambda t, p: safetensors_bytes(t, p)[:5000], r"not a valid safetensors file"),
    (lambda t, p: (2 ** 62).to_bytes(8, "little") + b"{}" * 100, r"header length 4611686018427387904 does not fit"),
    (lambda t, p: b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n", r"Git LFS pointer"),
], ids=["other-model", "other-shape", "nan", "int32", "cut", "header-bomb", "lfs-pointer"])
def test_first_download_of_wrong_content_is_refused_named_and_not_pinned(hub, tmp_path, make, message):
    hub.files[hub.hub_path(REPO)] = make(x_tensors(), tmp_path)
    info = keras_regnet.get_weights_info("RegNetX-200MF")
    with pytest.raises(WeightsIntegrityError, match=message) as e:
        download.fetch(info)
    assert isinstance(e.value, download.WeightsValidationError)
    assert_nothing_kept(tmp_path)


def test_download_that_differs_from_the_published_sha256_is_refused(hub, tmp_path):
    hub.mode[hub.hub_path(REPO)] = "bad_etag"  # the Hub publishes one sha256, other bytes arrive
    with pytest.raises(WeightsIntegrityError, match="the published sha256 is"):
        download.fetch(keras_regnet.get_weights_info("RegNetX-200MF"))
    assert_nothing_kept(tmp_path)
    hub.mode[hub.hub_path(REPO)] = "ok"
    path = download.fetch(keras_regnet.get_weights_info("RegNetX-200MF"))
    assert download._read_records()[PIN]["published"] is True
    assert os.path.basename(os.path.realpath(path)) == download._read_records()[PIN]["sha256"]


def test_an_error_page_cached_and_pinned_by_an_older_version_is_caught_and_dropped(hub, tmp_path):
    """The state the unvalidated trust-on-first-use left behind: an HTML page in the Hub cache, its sha256 pinned."""
    from huggingface_hub import hf_hub_download

    real = hub.files[hub.hub_path(REPO)]
    hub.files[hub.hub_path(REPO)] = HTML
    page = hf_hub_download(REPO, "model.safetensors", cache_dir=str(tmp_path / "hf"), endpoint=hub.url)
    with open(os.path.join(download.cache_root(), "sha256.json"), "w") as f:
        json.dump({PIN: {"sha256": hashlib.sha256(HTML).hexdigest(), "size": len(HTML), "first_seen": "2026-01-01T00:00:00+00:00"}}, f)
    assert os.path.exists(page)
    hub.files[hub.hub_path(REPO)] = real
    with pytest.raises(WeightsIntegrityError, match="the server returned an HTML page"):
        load_tiny()
    assert_nothing_kept(tmp_path)
    model, _ = load_tiny()  # the retry the message suggests works: no hand-editing of sha256.json
    assert_holds_fixture(model)
    assert download._read_records()[PIN]["validated"] is True


def test_a_bad_pin_names_its_repair_and_cache_clear_recovers(hub, tmp_path, capsys):
    """A pin that no longer matches upstream: the error names `keras-regnet cache clear MODEL:TAG`, which works."""
    with open(os.path.join(download.cache_root(), "sha256.json"), "w") as f:
        json.dump({PIN: {"sha256": hashlib.sha256(HTML).hexdigest(), "size": len(HTML), "first_seen": "2026-01-01T00:00:00+00:00"}}, f)
    with pytest.raises(WeightsIntegrityError, match=r"recorded at first download.*keras-regnet cache clear RegNetX-200MF:pycls_in1k"):
        load_tiny()
    assert hf_cached_files(tmp_path) == []
    assert cli.main(["cache", "clear", "RegNetX-200MF"]) == 0
    assert PIN not in download._read_records()
    model, ref = load_tiny()
    assert_holds_fixture(model)
    capsys.readouterr()
    assert cli.main(["cache", "list", "RegNetX-200MF"]) == 0
    listed = capsys.readouterr().out
    assert "RegNetX-200MF:pycls_in1k" in listed and "download" in listed and "converted" in listed
    assert cli.main(["cache", "verify"]) == 0
    assert capsys.readouterr().out.count("ok ") == 2  # the download and the converted file
    # a file altered in the cache: verify reports it (exit 1) and leaves everything in place
    (blob,) = hf_cached_files(tmp_path)
    data = bytearray((tmp_path / "hf" / blob).read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "hf" / blob).write_bytes(bytes(data))
    assert cli.main(["cache", "verify", "RegNetX-200MF:pycls_in1k"]) == 1
    out, err = capsys.readouterr()
    assert "MISMATCH" in out and "keras-regnet cache clear RegNetX-200MF:pycls_in1k" in err
    assert hf_cached_files(tmp_path) == [blob]
    # clear of everything removes downloads, conversions and the store
    assert cli.main(["cache", "clear"]) == 0
    assert hf_cached_files(tmp_path) == [] and download._read_records() == {}
    assert not os.path.exists(os.path.join(download.cache_root(), "converted"))


_WRITER = r"""
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("download", sys.argv[1])
download = importlib.util.module_from_spec(spec)
spec.loader.exec_module(download)
start, worker = float(sys.argv[2]), sys.argv[3]
path = os.path.join(os.environ["KERAS_HOME"], worker + ".bin")
with open(path, "wb") as f:
    f.write(worker.encode())
while time.time() < start:
    time.sleep(0.001)
for i in range(200):
    download.verify_or_record(path, f"{worker}/{i}")
"""


def test_concurrent_writers_keep_every_pin(tmp_path, monkeypatch):
    """3 processes x 200 pins, at the same time: all 600 are kept (read-modify-write under a file lock)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    env = dict(os.environ, KERAS_HOME=str(tmp_path))
    start = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, download.__file__, str(start), f"w{k}"], env=env)
             for k in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    records = download._read_records()
    assert len(records) == 600
    assert {records[f"w1/{i}"]["sha256"] for i in range(200)} == {hashlib.sha256(b"w1").hexdigest()}
    assert not [p for p in os.listdir(download.cache_root()) if p.endswith(".tmp")]


def test_a_damaged_store_is_a_loud_error_and_tampered_weights_stay_refused(hub, tmp_path):
    load_tiny()
    info = keras_regnet.get_weights_info("RegNetX-200MF")
    os.remove(keras_regnet.weights.converted_path(info, True))
    (blob,) = hf_cached_files(tmp_path)
    data = bytearray((tmp_path / "hf" / blob).read_bytes())
    data[-2] ^= 0x01  # a small change in a weight: still a valid file of the right shapes
    (tmp_path / "hf" / blob).write_bytes(bytes(data))
    store = os.path.join(download.cache_root(), "sha256.json")
    with open(store, "r+") as f:
        f.seek(5)
        f.write("\x00garbage")
    damaged = open(store, "rb").read()
    with pytest.raises(WeightsIntegrityError, match=rf"{store}.*damaged.*keras-regnet cache clear") as e:
        load_tiny()
    assert isinstance(e.value, download.WeightsStoreError)
    assert open(store, "rb").read() == damaged  # left as it is, not renamed aside
    assert not [p for p in os.listdir(download.cache_root()) if "corrupt" in p or p.endswith(".tmp")]
    # with the store gone altogether, the Hub's published sha256 still refuses the tampered blob
    os.remove(store)
    with pytest.raises(WeightsIntegrityError, match="the published sha256 is"):
        load_tiny()
    assert download._read_records() == {} and hf_cached_files(tmp_path) == []
    # the repair named in the message works, and the next load is verified again
    with open(store, "w") as f:
        f.write("[1, 2")
    assert cli.main(["cache", "clear", "RegNetX-200MF"]) == 2  # one model cannot be cleared from a damaged store
    assert cli.main(["cache", "clear"]) == 0 and not os.path.exists(store)
    model, ref = load_tiny()
    assert_holds_fixture(model)


def test_a_pinned_revision_is_fetched_and_reused_as_such(hub, tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    hub.files[hub.hub_path(REPO, revision=commit)] = hub.files.pop(hub.hub_path(REPO))
    monkeypatch.setitem(registry.REGISTRY["RegNetX-200MF"][0], "revision", commit)
    path = download.fetch(keras_regnet.get_weights_info("RegNetX-200MF"))
    assert ("GET", hub.hub_path(REPO, revision=commit)) in hub.requests
    assert not any("/resolve/main/" in p for _, p in hub.requests)
    record = download._read_records()[f"{REPO}@{commit}/model.safetensors"]
    assert record["commit"] == commit and f"snapshots/{commit}/" in path.replace(os.sep, "/")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(hub.requests)
    assert download.fetch(keras_regnet.get_weights_info("RegNetX-200MF")) == path and len(hub.requests) == n


def test_older_huggingface_hub_without_retry_on_errors_still_downloads(hub, tmp_path, monkeypatch):
    """huggingface_hub < 1.2 has no ``retry_on_errors=``: the call is feature-detected, not a TypeError."""
    import huggingface_hub

    real = huggingface_hub.get_hf_file_metadata

    def old_get_hf_file_metadata(url, token=None, proxies=None, timeout=10, library_name=None, library_version=None,
                                 user_agent=None, headers=None, endpoint=None):
        return real(url, timeout=timeout, headers=headers, endpoint=endpoint)

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", old_get_hf_file_metadata)
    path = download.fetch(keras_regnet.get_weights_info("RegNetX-200MF"))
    assert download.sha256_of(path) == download._read_records()[PIN]["sha256"]


def test_keras2_urls_get_their_own_advice_offline_and_refuse_a_page(hub, tmp_path, monkeypatch):
    entry = next(e for e in registry.REGISTRY["RegNetX-200MF"] if e["tag"] == "keras2")
    info = keras_regnet.get_weights_info("RegNetX-200MF", "imagenet:keras2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsDownloadError) as e:
        download.fetch(info, include_top=False)
    message = str(e.value)
    assert "HF_ENDPOINT" not in message  # those URLs are not on the Hub: a mirror setting does not apply
    assert info["url_notop"] in message and info["sha256_notop"] in message
    assert "build_model('RegNetX-200MF', padding='same', normalization='unit', weights='/path/to/regnetx002_notop.h5')" in message
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setitem(entry, "url_notop", hub.url + "/keras2/regnetx002_notop.h5")
    hub.files["/keras2/regnetx002_notop.h5"] = HTML
    with pytest.raises(WeightsIntegrityError, match="HTML page.*nothing was kept"):
        download.fetch(keras_regnet.get_weights_info("RegNetX-200MF", "imagenet:keras2"), include_top=False)
    assert not list((tmp_path / "keras").rglob("*.h5")) and download._read_records() == {}


# ---------------------------------------------------------------------------------- the expected tensors

def test_expected_shapes_give_the_papers_parameter_counts_for_all_24_models():
    for name, params in FULL_PARAMS.items():
        shapes = validate.expected_shapes(params)
        counted = sum(int(np.prod(s)) for k, s in shapes.items() if not k.endswith(("running_mean", "running_var")))
        assert counted == specs.PAPER_FIGURES[name][1], name


@pytest.mark.parametrize("kind", ["x", "y"])
def test_expected_shapes_match_timm_files_in_both_formats(kind):
    from safetensors.numpy import load_file

    from test_weights import timm_to_pycls

    _, spec, path = fixture(kind)
    timm = {k: v.shape for k, v in load_file(path).items() if not k.endswith("num_batches_tracked")}
    assert validate.expected_shapes(tiny_params(spec), classes=spec["classes"]) == timm
    pycls = {k: v.shape for k, v in timm_to_pycls(path).items() if not k.endswith("num_batches_tracked")}
    assert validate.expected_shapes(tiny_params(spec), classes=spec["classes"], fmt="pycls") == pycls
    assert validate.validate_safetensors(path, validate.expected_shapes(tiny_params(spec), classes=spec["classes"])) == len(load_file(path))


def test_cache_command_needs_no_tensorflow(tmp_path):
    """``keras-regnet cache verify`` re-validates a cached download without importing Keras or TensorFlow."""
    code = f"""
import json, os, shutil, sys
from keras_regnet import cli, specs
from keras_regnet.weights import download, registry
registry.REGISTRY["RegNetX-200MF"][0]["classes"] = 10
specs.MODEL_PARAMS["RegNetX-200MF"] = specs.RegNetParams(**{{k: v for k, v in {fixture("x")[1]!r}.items() if k != "classes"}})
folder = os.path.join(os.environ["HF_HUB_CACHE"], "models--timm--regnetx_002.pycls_in1k", "snapshots", "a" * 40)
os.makedirs(folder)
shutil.copy({fixture("x")[2]!r}, os.path.join(folder, "model.safetensors"))
os.makedirs(os.path.join(os.environ["HF_HUB_CACHE"], "models--timm--regnetx_002.pycls_in1k", "refs"))
open(os.path.join(os.environ["HF_HUB_CACHE"], "models--timm--regnetx_002.pycls_in1k", "refs", "main"), "w").write("a" * 40)
rc = cli.main(["cache", "verify", "RegNetX-200MF"])
print(json.dumps([rc, sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)]))
"""
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"), HF_HUB_CACHE=str(tmp_path / "hf"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "not pinned RegNetX-200MF:pycls_in1k" in out.stdout  # validated (tensors of the patched architecture)
    assert json.loads(out.stdout.splitlines()[-1]) == [0, []]
