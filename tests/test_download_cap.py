"""Downloads are capped: a mirror (HF_ENDPOINT) that streams an endless body is cut at the expected size and
nothing is kept; huggingface_hub's side request to the mirror (/api/agent-harnesses) is bounded too; bad
HF_HUB_ETAG_TIMEOUT / KERAS_HOME values are one clear line naming the variable. Loopback server only."""

import hashlib
import http.server
import os
import threading
import time

import pytest

from keras_regnet import cli, specs
from keras_regnet.weights import WeightsDownloadError, download, registry

REPO = "timm/endless_x.pycls_in1k"
FILE = f"/{REPO}/resolve/main/model.safetensors"
LIMIT = 96 << 20  # the server gives up after this many bytes per body (keeps a failing test bounded)


class EndlessServer:
    """HEAD answers ``declared[path]`` bytes (with ETag and commit); GET streams zeros without end (up to LIMIT)."""

    def __init__(self):
        self.declared, self.sent, self.requests = {}, {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _head(self):
                path = self.path.split("?")[0]
                server.requests.append((self.command, path))
                self.send_response(200)
                if path in server.declared and self.command == "HEAD":
                    self.send_header("Content-Length", str(server.declared[path]))
                self.send_header("ETag", '"' + hashlib.sha256(path.encode()).hexdigest() + '"')
                self.send_header("X-Repo-Commit", hashlib.sha1(path.encode()).hexdigest())
                return path

            def do_HEAD(self):
                self._head()
                self.end_headers()

            def do_GET(self):
                path = self._head()
                self.end_headers()  # no Content-Length on GET: the body ends when the server closes
                prefix = b'{"standardEnvVars": ["' if path == "/api/agent-harnesses" else b""
                chunk = b"A" * (1 << 20)
                sent = 0
                try:
                    self.wfile.write(prefix)
                    while sent < LIMIT:
                        self.wfile.write(chunk)
                        sent += len(chunk)
                        server.sent[path] = sent
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _agent_module():
    """huggingface_hub's agent-harness detection (newer versions only; 1.2 makes no such request)."""
    try:
        from huggingface_hub.utils import _detect_agent
    except ImportError:
        return None
    return _detect_agent


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    from huggingface_hub import constants

    _detect_agent = _agent_module()

    server = EndlessServer()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "2")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 2)
    # huggingface_hub asks its endpoint (fixed when it was imported: the mirror here) for /api/agent-harnesses
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", False)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"), raising=False)
    if _detect_agent is not None:
        monkeypatch.setattr(_detect_agent, "_registry", None)
    monkeypatch.setitem(registry.REGISTRY["RegNetX-200MF"][0], "repo", REPO)
    yield server
    server.close()


def _info():
    return registry.get_weights_info("RegNetX-200MF")


def _left_in(tmp_path):
    """Downloaded content left under ``tmp_path`` (blobs, snapshots, partial files; not locks, refs or tags)."""
    return [str(p) for p in tmp_path.rglob("*") if (p.is_file() or p.is_symlink()) and p.name != "agent_harnesses.json"
            and not p.name.endswith(".lock") and p.name not in ("sha256.json", "CACHEDIR.TAG") and "refs" not in p.parts]


def test_an_endless_body_is_cut_at_the_size_the_mirror_declared(mirror, tmp_path):
    mirror.declared[FILE] = 1024
    start = time.monotonic()
    with pytest.raises(WeightsDownloadError, match="more than the expected 1024 bytes") as e:
        download.fetch(_info())
    assert "HF_ENDPOINT" in str(e.value)
    assert mirror.sent.get(FILE, 0) < 40 << 20, f"{mirror.sent.get(FILE, 0) >> 20} MB were streamed"
    assert time.monotonic() - start < 60
    assert _left_in(tmp_path / "hf") == []  # no partial download kept


def test_a_declared_size_no_file_of_the_model_can_have_is_refused_before_downloading(mirror, tmp_path):
    mirror.declared[FILE] = 50 << 30
    with pytest.raises(WeightsDownloadError, match="larger than any RegNetX-200MF weights file can be"):
        download.fetch(_info())
    assert ("GET", FILE) not in mirror.requests
    assert _left_in(tmp_path / "hf") == []


def test_the_per_file_maximum_follows_the_models_parameter_count():
    small, big = download.max_file_bytes("RegNetX-200MF"), download.max_file_bytes("RegNetY-32GF")
    params = specs.PAPER_FIGURES["RegNetY-32GF"][1]
    assert 4 * params < big < 6 * params + (64 << 20) and small < 64 << 20


@pytest.mark.skipif(_agent_module() is None, reason="this huggingface_hub version makes no agent-harness request")
def test_the_agent_harness_request_to_a_mirror_is_bounded(mirror, tmp_path):
    mirror.declared[FILE] = 1024
    with pytest.raises(WeightsDownloadError):
        download.fetch(_info())
    # huggingface_hub reads that answer whole into memory; here at most a small bounded prefix is read
    assert mirror.sent.get("/api/agent-harnesses", 0) < 8 << 20, mirror.sent


def test_a_plain_url_download_is_capped_at_the_models_maximum(mirror, tmp_path, monkeypatch):
    entry = next(e for e in registry.REGISTRY["RegNetX-200MF"] if e["tag"] == "keras2")
    monkeypatch.setitem(entry, "url_notop", mirror.url + "/keras2/regnetx002_notop.h5")
    info = registry.get_weights_info("RegNetX-200MF", "imagenet:keras2")
    cap = download.max_file_bytes("RegNetX-200MF")
    with pytest.raises(WeightsDownloadError, match=f"more than the expected {cap} bytes"):
        download.fetch(info, include_top=False)
    assert mirror.sent.get("/keras2/regnetx002_notop.h5", 0) < cap + (40 << 20)
    assert _left_in(tmp_path / "keras") == []


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf"])
def test_a_bad_etag_timeout_names_the_variable(mirror, monkeypatch, value):
    mirror.declared[FILE] = 1024
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"HF_HUB_ETAG_TIMEOUT must be a number of seconds > 0, got {value!r}"):
        download.fetch(_info())
    assert ("GET", FILE) not in mirror.requests


@pytest.mark.parametrize("action", ["list", "verify", "clear"])
def test_an_unusable_keras_home_is_one_line_naming_it(tmp_path, monkeypatch, capsys, action):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("KERAS_HOME", str(blocker / "keras"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert cli.main(["cache", action]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "KERAS_HOME" in err[0] and str(blocker / "keras") in err[0]
    assert "Not a directory" in err[0] and "set KERAS_HOME to a writable folder" in err[0]


def test_cache_list_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert cli.main(["cache", "list"]) == 0
    assert "nothing cached" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "keras")
