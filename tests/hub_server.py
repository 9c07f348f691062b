"""A loopback Hugging Face Hub for tests: an HTTP server on 127.0.0.1 that speaks the parts of the Hub API that
``huggingface_hub`` uses to upload and download model repositories. Nothing leaves the machine.

Upload: ``POST /api/repos/create`` (a new repository gets a first commit with ``.gitattributes``);
``POST /api/validate-yaml`` (the model card's header); ``POST /api/models/{repo}/preupload/{rev}`` (binary files are "lfs", the rest
"regular"); the plain Git LFS path: ``POST /{repo}.git/info/lfs/objects/batch`` answering a basic-transfer
``upload`` action, then ``PUT`` of the bytes (checked against their sha256); ``POST /api/models/{repo}/commit/{rev}``
(NDJSON: header, file, lfsFile, deletedFile). huggingface_hub uploads through Xet instead whenever ``hf_xet`` is
installed, which needs Hugging Face's CAS servers: the ``hub`` fixture therefore disables Xet
(``huggingface_hub.constants.HF_HUB_DISABLE_XET``; ``HF_HUB_DISABLE_XET=1`` in child processes) and the server never
advertises it (no ``X-Xet-Hash`` headers, no xet transfer), so both directions use plain HTTP.

Download: ``GET /api/models/{repo}[/revision/{rev}]`` (repo info: sha, siblings), ``GET /api/models/{repo}/tree/{rev}``
(recursive listing with LFS sha256 and sizes), ``POST /api/models/{repo}/paths-info/{rev}``, and
``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with ``ETag`` (the LFS sha256 for binaries, a git blob sha1 otherwise),
``X-Repo-Commit`` and ``Content-Length``. Errors carry the ``X-Error-Code`` huggingface_hub maps to its exceptions
(RepoNotFound, RevisionNotFound, EntryNotFound).

Writes need ``Authorization: Bearer <token>`` with the server's token; private repos need it to be read too. Every
request is recorded in ``server.requests`` (method, path) so tests can assert what was (not) asked for.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import threading
import urllib.parse

import pytest

TOKEN = "hf_loopback_test_token"
_LFS_SUFFIXES = (".h5", ".keras", ".safetensors", ".bin", ".npz", ".png", ".pb", ".tflite", ".onnx")


def _git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, private=False):
        self.private = private
        self.commits = {}  # sha -> {path: bytes}
        self.refs = {}  # branch -> sha
        self.lfs = set()  # paths stored as LFS in any commit

    def files(self, revision):
        sha = self.refs.get(revision, revision)
        return sha, self.commits.get(sha)


class HubServer:
    """``with HubServer() as hub:`` ... ``hub.url`` is the endpoint (HF_ENDPOINT)."""

    def __init__(self, token=TOKEN):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.objects: dict[str, bytes] = {}  # LFS store: sha256 -> bytes
        self.requests: list[tuple[str, str]] = []
        self.messages: list[str] = []  # commit summaries, in order
        self.lock = threading.Lock()
        self._counter = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30  # a stuck client cannot hold a server thread forever

            def log_message(self, *args):
                pass

            def _dispatch(self, method):
                path = urllib.parse.urlsplit(self.path)
                with server.lock:
                    server.requests.append((method, path.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                try:
                    status, headers, payload = server.handle(method, path.path, urllib.parse.parse_qs(path.query),
                                                             body, self.headers)
                except Exception as e:  # noqa: BLE001 - a server bug is a 500 the test sees
                    status, headers, payload = 500, {}, f"loopback hub error: {e!r}".encode()
                if isinstance(payload, (dict, list)):
                    payload = json.dumps(payload).encode()
                    headers.setdefault("Content-Type", "application/json")
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, str(v))
                self.send_header("Content-Length", str(headers.pop("_length", len(payload))))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(payload)

            def do_GET(self):
                self._dispatch("GET")

            def do_HEAD(self):
                self._dispatch("HEAD")

            def do_POST(self):
                self._dispatch("POST")

            def do_PUT(self):
                self._dispatch("PUT")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = None

    # -------------------------------------------------------------------------------------------- lifecycle
    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -------------------------------------------------------------------------------------------- test helpers
    def commit(self, repo_id, files, private=False, branch="main", keep=True, lfs=None):
        """Create ``repo_id`` if needed and commit ``files`` ({path: bytes}) directly (no HTTP): a test fixture."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo(private))
            return self._commit(repo, files, branch, keep=keep, lfs=lfs)

    def _commit(self, repo, files, branch, deleted=(), keep=True, lfs=None):
        base = dict(repo.commits.get(repo.refs.get(branch), {})) if keep else {}
        base.update(files)
        for path in deleted:
            base.pop(path, None)
        for path, data in files.items():
            if (lfs is None and path.endswith(_LFS_SUFFIXES)) or (lfs is not None and path in lfs):
                repo.lfs.add(path)
                self.objects[hashlib.sha256(data).hexdigest()] = data
        self._counter += 1
        sha = hashlib.sha1(f"{self._counter}:{sorted(base)}".encode()).hexdigest()
        repo.commits[sha] = base
        repo.refs[branch] = sha
        return sha

    def file(self, repo_id, path, revision="main"):
        return self.repos[repo_id].files(revision)[1][path]

    def count(self, method, pattern):
        return sum(1 for m, p in self.requests if m == method and re.search(pattern, p))

    # -------------------------------------------------------------------------------------------- the API
    def _authorized(self, headers):
        return headers.get("Authorization") == f"Bearer {self.token}"

    def _entry(self, repo, path, data):
        entry = {"type": "file", "oid": _git_sha1(data), "size": len(data), "path": path}
        if path in repo.lfs:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _repo(self, repo_id, headers, write=False):
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized(headers)):
            return None, (404 if repo is None or not headers.get("Authorization") else 401,
                          {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"})
        if write and not self._authorized(headers):
            return None, (401, {}, {"error": "Invalid credentials in Authorization header"})
        return repo, None

    def handle(self, method, path, query, body, headers):
        path = urllib.parse.unquote(path)
        if method == "POST" and path == "/api/repos/create":
            if not self._authorized(headers):
                return 401, {}, {"error": "Invalid credentials in Authorization header"}
            data = json.loads(body or b"{}")
            repo_id = f"{data.get('organization') or 'user'}/{data['name']}"
            with self.lock:
                if repo_id in self.repos:
                    return 409, {}, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
                repo = self.repos[repo_id] = Repo(private=bool(data.get("private")) or data.get("visibility") == "private")
                # like the Hub, a new repository starts with one commit holding .gitattributes
                self._commit(repo, {".gitattributes": b"*.h5 filter=lfs diff=lfs merge=lfs -text\n"}, "main")
            return 200, {}, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}

        if method == "POST" and path == "/api/validate-yaml":
            # the model card's YAML header, checked by huggingface_hub before a commit that adds README.md
            content = json.loads(body).get("content", "").lstrip()
            header = content.split("---")[1] if content.startswith("---") and content.count("---") >= 2 else None
            if header is None or any(":" not in line for line in header.strip().splitlines() if
                                     line.strip() and not line.lstrip().startswith("- ")):
                return 400, {}, {"errors": [{"message": "README.md has no valid YAML metadata header"}]}
            return 200, {}, {"errors": [], "warnings": []}

        m = re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            repo, error = self._repo(m.group(1), headers, write=True)
            if error:
                return error
            data = json.loads(body)
            objects = []
            for obj in data.get("objects", []):
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in self.objects:
                    entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}",
                                                   "header": {}}}
                objects.append(entry)
            return 200, {"Content-Type": "application/vnd.git-lfs+json"}, {"transfer": "basic", "objects": objects}

        m = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path)
        if m and method == "PUT":
            if hashlib.sha256(body).hexdigest() != m.group(1):
                return 400, {}, {"error": "sha256 of the uploaded bytes does not match the object id"}
            with self.lock:
                self.objects[m.group(1)] = body
            return 200, {}, b""

        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(preupload|commit|revision|tree|paths-info)/(.+?))?/?", path)
        if m:
            repo_id, action, rest = m.group(1), m.group(2), m.group(3)
            repo, error = self._repo(repo_id, headers, write=action in ("preupload", "commit"))
            if error:
                return error
            if action == "preupload":
                data = json.loads(body)
                files = [{"path": f["path"], "shouldIgnore": False, "oid": None,
                          "uploadMode": "lfs" if f["path"].endswith(_LFS_SUFFIXES) or f.get("size", 0) > 10 << 20
                          else "regular"} for f in data.get("files", [])]
                return 200, {}, {"files": files}
            if action == "commit":
                return self._commit_request(repo, rest, body)
            revision, sub = "main", ""
            if action in ("revision", "tree", "paths-info"):
                revision, _, sub = rest.partition("/")
            sha, files = repo.files(revision)
            if files is None:
                return 404, {"X-Error-Code": "RevisionNotFound"}, {"error": f"Invalid rev id: {revision}"}
            if action == "tree":
                return 200, {}, [self._entry(repo, p, d) for p, d in sorted(files.items())
                                 if not sub or p.startswith(sub.rstrip("/") + "/")]
            if action == "paths-info":
                wanted = json.loads(body).get("paths", []) if body.startswith(b"{") else \
                    urllib.parse.parse_qs(body.decode()).get("paths", [])
                return 200, {}, [self._entry(repo, p, files[p]) for p in wanted if p in files]
            return 200, {}, {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                             "siblings": [{"rfilename": p} for p in sorted(files)], "tags": [], "downloads": 0,
                             "likes": 0, "lastModified": "2026-01-01T00:00:00.000Z"}

        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and method in ("GET", "HEAD"):
            repo, error = self._repo(m.group(1), headers)
            if error:
                return error
            sha, files = repo.files(m.group(2))
            if files is None:
                return 404, {"X-Error-Code": "RevisionNotFound"}, {"error": "Invalid rev id"}
            if m.group(3) not in files:
                return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha}, {"error": "Entry not found"}
            data = files[m.group(3)]
            lfs = m.group(3) in repo.lfs
            etag = hashlib.sha256(data).hexdigest() if lfs else _git_sha1(data)
            out = {"ETag": f'"{etag}"', "X-Repo-Commit": sha, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
            if lfs:
                out["X-Linked-Etag"], out["X-Linked-Size"] = f'"{etag}"', len(data)
            if method == "HEAD":
                out["_length"] = len(data)
                return 200, out, b""
            return 200, out, data
        return 404, {}, {"error": f"loopback hub: no route for {method} {path}"}

    def _commit_request(self, repo, revision, body):
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        files, deleted = {}, []
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "header":
                self.messages.append(value.get("summary", ""))
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                data = self.objects.get(value["oid"])
                if data is None:
                    return 400, {}, {"error": f"LFS object {value['oid']} was never uploaded"}
                files[value["path"]] = data
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
        with self.lock:
            for path, data in files.items():
                if hashlib.sha256(data).hexdigest() in self.objects and path.endswith(_LFS_SUFFIXES):
                    repo.lfs.add(path)
            sha = self._commit(repo, files, revision, deleted=deleted, lfs=set(repo.lfs))
        repo_id = next(k for k, v in self.repos.items() if v is repo)
        return 200, {}, {"success": True, "commitOid": sha, "commitUrl": f"{self.url}/{repo_id}/commit/{sha}",
                         "pullRequestUrl": None}


def activate(server, monkeypatch, tmp_path):
    """Point huggingface_hub (and so keras_regnet, Keras and keras-hub) at ``server`` for one test: HF_ENDPOINT, a
    token, fresh caches, Xet off. huggingface_hub reads some of these at import time, so those are patched too."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    for key, value in child_env(server, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def child_env(server, tmp_path):
    """The environment variables that point a child process at ``server`` (add them to os.environ's copy)."""
    return {"HF_ENDPOINT": server.url, "HF_TOKEN": server.token, "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
            "KERAS_HOME": str(tmp_path / "keras-home"), "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A loopback Hub (HF_ENDPOINT), a token, fresh caches; Xet disabled so binaries take the plain LFS path."""
    with HubServer() as server:
        activate(server, monkeypatch, tmp_path)
        yield server
