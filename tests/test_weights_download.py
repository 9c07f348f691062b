"""The download path end to end against a local Hugging Face Hub look-alike on 127.0.0.1 (no remote host).

Covers: first download -> conversion -> cached .weights.h5; later loads with no network; HF_HUB_OFFLINE; an
unreachable endpoint; 404; a truncated transfer; a server too slow to answer; a file whose sha256 changed after the
first download (in the cache, or upstream). After every failure nothing loadable is left in the cache.
"""

import hashlib
import http.server
import os
import threading
import time

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import keras_regnet
from keras_regnet import convert
from keras_regnet.weights import WeightsDownloadError, WeightsIntegrityError, download, load_weights, registry

from test_weights import fixture, tiny_model

REPO = "timm/tiny_x.pycls_in1k"


class HubServer:
    """Serves ``files`` ({url path: bytes}) like the Hub's /{repo}/resolve/{rev}/{file}: HEAD with ETag and
    X-Repo-Commit, GET with Range. ``mode[path]`` = 'ok', 'truncate' (half the body, then hang up), 'slow'
    (answers after 3 s) or '404'."""

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
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", hashlib.sha1(path.encode()).hexdigest())
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

    def hub_path(self, repo, filename="model.safetensors"):
        return f"/{repo}/resolve/main/{filename}"

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
    _, _, path = fixture("x")
    server.files[server.hub_path(REPO)] = open(path, "rb").read()
    yield server
    server.close()


def load_tiny(**kwargs):
    ref, spec, _ = fixture("x")
    model = tiny_model(spec, **kwargs)
    load_weights(model, "imagenet", arch="RegNetX-200MF", include_top=kwargs.get("include_top", True))
    return model, ref


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
    np.testing.assert_array_equal(again.predict(images, verbose=0), model.predict(images, verbose=0))
    # offline, with the conversion gone: the Hub cache is used (verified), still no request
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.remove(converted)
    third, _ = load_tiny()
    assert len(hub.requests) == n
    np.testing.assert_array_equal(third.predict(images, verbose=0), model.predict(images, verbose=0))


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
    assert np.abs(model.predict(ref["images"].astype("float32"), verbose=0) - ref["logits"]).max() <= 1e-4


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
    assert np.abs(model.predict(ref["images"].astype("float32"), verbose=0) - ref["logits"]).max() <= 1e-4


def test_public_constructor_downloads_a_full_size_model(hub, monkeypatch):
    """``keras_regnet.RegNetX200MF(weights="imagenet")`` end to end, with and without the top."""
    source = keras_regnet.RegNetX200MF(classifier_activation=None)
    for w in source.weights:  # move BN statistics away from their initial values
        if "moving_variance" in w.path:
            w.assign(np.random.uniform(0.5, 2.0, w.shape).astype("float32"))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(np.random.normal(0, 0.1, w.shape).astype("float32"))
    path = os.path.join(os.environ["KERAS_HOME"], "src.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(convert.export_state_dict(source), path)
    repo = "timm/regnetx_002.pycls_in1k"
    monkeypatch.setitem(registry.REGISTRY["RegNetX-200MF"][0], "repo", repo)
    hub.files[hub.hub_path(repo)] = open(path, "rb").read()
    images = np.random.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    model = keras_regnet.RegNetX200MF(weights="imagenet", classifier_activation=None)
    np.testing.assert_allclose(model.predict(images, verbose=0), source.predict(images, verbose=0), atol=1e-4)
    backbone = keras_regnet.RegNetX200MF(weights="imagenet", include_top=False, pooling="avg")
    pooled = keras.Model(source.input, source.get_layer("head_pool").output)
    np.testing.assert_allclose(backbone.predict(images, verbose=0), pooled.predict(images, verbose=0), atol=1e-4)
    assert os.path.exists(keras_regnet.weights.converted_path(keras_regnet.get_weights_info("RegNetX200MF"), False))


def test_keras2_weights_download_with_the_published_sha256(hub, tmp_path, monkeypatch):
    tf_keras = pytest.importorskip("tf_keras")
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
