"""Fetching registry weights you can trust: huggingface_hub for the Hub (cache, HF_ENDPOINT mirrors, HF_HUB_OFFLINE,
atomic ``.incomplete`` -> final renames, timeouts), checked before anything is recorded.

Every downloaded file is checked, in this order, before it is used or its sha256 is pinned:

1. its sha256 against the *published* value where one is known (the Hub's LFS sha256, which huggingface_hub also
   uses as the cached blob's name; the Keras 2 files' hashes published with tf_keras) and against the value pinned
   at an earlier first download (trust on first use, only where nothing is published);
2. on first download, its content: a safetensors header parsed with bounds checks, exactly the tensor names and
   shapes of the entry's architecture, float dtypes and finite values (:mod:`keras_regnet.weights.validate`).

A file that fails is removed from the cache (the Hub snapshot link and its blob) and never pinned; the error says
what was wrong. Pins live in ``sha256.json`` under :func:`cache_root`, updated under a file lock (``filelock``) by
atomic replacement; a damaged store is an error naming the file and the repair (``keras-regnet cache clear``).
``keras-regnet cache list|verify|clear [MODEL[:TAG]]`` (:func:`cache_entries`, :func:`verify_cache`,
:func:`clear_cache`) shows, re-checks and removes downloads, converted files and pins.

Environment variables are read at call time (not import time), so they can be changed inside a running program:
``HF_ENDPOINT`` (mirror), ``HF_HUB_OFFLINE=1`` (never touch the network), ``HF_HUB_CACHE`` / ``HF_HOME`` (download
cache), ``KERAS_HOME`` (converted ``.weights.h5`` files and the sha256 record, under ``models/keras_regnet``).

This module imports only the standard library at load time (``filelock`` and ``huggingface_hub`` when used).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import inspect
import json
import os
import re
import shutil
import tempfile
import threading

from keras_regnet.errors import (  # noqa: F401  (raised here, and importable from here as before)
    WeightsDownloadError,
    WeightsIntegrityError,
    WeightsStoreError,
    WeightsValidationError,
)

__all__ = [
    "WeightsDownloadError",
    "WeightsIntegrityError",
    "WeightsValidationError",
    "WeightsStoreError",
    "DownloadTooLargeError",
    "max_file_bytes",
    "cache_root",
    "fetch",
    "sha256_of",
    "verify_or_record",
    "forget",
    "cache_entries",
    "verify_cache",
    "clear_cache",
]

_TRUE = {"1", "on", "yes", "true"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
REPAIR = "keras-regnet cache clear"


def cache_root(create=True):
    """``$KERAS_HOME/models/keras_regnet`` (default ``~/.keras/models/keras_regnet``): converted weights + sha256 record.

    Created unless ``create=False`` (listing and verifying create nothing). A ``KERAS_HOME`` that cannot hold the
    folder (a file, no permission, a read-only disk) is one OSError naming the variable and what to do.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    path = os.path.join(home, "models", "keras_regnet")
    try:
        if create:
            os.makedirs(path, exist_ok=True)
        else:
            _check_readable_folder(path)
    except OSError as e:
        where = f"KERAS_HOME={home!r}" if os.environ.get("KERAS_HOME") else f"the default Keras folder {home!r}"
        raise OSError(f"{where} cannot hold the weights cache {path!r} ({e.strerror or e}); set KERAS_HOME to a "
                      "writable folder (or unset it to use ~/.keras).") from None
    return path


def _check_readable_folder(path):
    """Raise the OSError that using ``path`` as a folder would meet (absent is fine: nothing is cached)."""
    probe = path
    while probe and not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return
        probe = parent
    if probe != path and not os.path.isdir(probe):
        raise NotADirectoryError(20, "Not a directory", probe)
    if probe == path:
        if not os.path.isdir(path):
            raise NotADirectoryError(20, "Not a directory", path)
        os.listdir(path)  # permission


def converted_path(info, include_top):
    """Where the converted ``.weights.h5`` of registry entry ``info`` is cached."""
    from keras_regnet.specs import timm_arch

    name = f"{timm_arch(info['model'])}.{info['tag']}{'' if include_top else '.notop'}.weights.h5"
    return os.path.join(cache_root(create=False), "converted", name)


def offline():
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set: use cached files only."""
    return (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").lower() in _TRUE


def sha256_of(path, chunk=1 << 20):
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------ the sha256 store

def _record_path(create=True):
    return os.path.join(cache_root(create), "sha256.json")


@contextlib.contextmanager
def _lock(timeout=120):
    """An inter-process lock (``filelock``: fcntl on POSIX, msvcrt on Windows) guarding the store's updates."""
    from filelock import FileLock, Timeout

    lock = FileLock(_record_path() + ".lock")
    try:
        lock.acquire(timeout=timeout, poll_interval=0.005)
    except Timeout:
        raise WeightsStoreError(
            f"the sha256 store {_record_path()!r} stayed locked for {timeout} s (another keras-regnet process, or "
            f"a stale lock file {lock.lock_file!r} on a file system without locking); retry, or remove the lock file "
            "if no other process is running."
        ) from None
    try:
        yield
    finally:
        lock.release()


def _store_error(path, what):
    return WeightsStoreError(
        f"the sha256 store {path!r} is damaged ({what}); no download can be verified against it. Run "
        f"'{REPAIR}' to remove it with every download and converted file it vouches for (they are fetched and "
        "checked again when next needed), or restore the file from a backup."
    )


def _read_records():
    """The store's ``{key: {"sha256", "size", "first_seen", ...}}``; ``{}`` when absent; loud when damaged."""
    path = _record_path(create=False)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    try:
        records = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _store_error(path, f"not valid JSON: {e}") from None
    if not isinstance(records, dict):
        raise _store_error(path, "not a JSON object")
    for key, value in records.items():
        if not (isinstance(value, dict) and isinstance(value.get("sha256"), str) and _SHA256.fullmatch(value["sha256"])):
            raise _store_error(path, f"entry {key!r} has no valid sha256")
    return records


def _write_records(records):
    """Atomically replace the store (temp file in the same folder, fsync, ``os.replace``). Hold :func:`_lock`."""
    folder = cache_root()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".sha256.", suffix=".tmp")
    try:
        # One entry per line (readable, diffable), each encoded by json's fast C encoder.
        text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(records[k], sort_keys=True)}" for k in sorted(records))
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n}\n")
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the store
        os.replace(tmp, _record_path())
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def _updating():
    """``with _updating() as records:`` read-modify-write of the store under the lock; written only if changed."""
    with _lock():
        records = _read_records()
        before = {key: dict(value) for key, value in records.items()}
        yield records
        if records != before:
            _write_records(records)


def forget(key):
    """Drop the recorded sha256 of ``key`` (after a legitimate upstream change, or before re-recording)."""
    forget_many([key])


def forget_many(keys):
    """Drop the recorded sha256 of every key in ``keys``."""
    with _updating() as records:
        for key in keys:
            records.pop(key, None)


def _mismatch(path, key, digest, published, pinned, repair_target):
    hint = _describe_content(path)
    parts = []
    if published and digest != published:
        parts.append(f"the published sha256 is {published}")
    if pinned and digest != pinned["sha256"]:
        parts.append(f"{pinned['sha256']} was recorded at first download ({pinned.get('first_seen')})")
    target = f" {repair_target}" if repair_target else ""
    return WeightsIntegrityError(
        f"sha256 of {path!r} is {digest}, but {' and '.join(parts)} for {key}"
        + (f" ({hint})" if hint else "")
        + ". The file was altered (in the cache, in transit, or upstream) and has been removed from the cache. Retry to "
        f"download it again; if the upstream file legitimately changed, run '{REPAIR}{target}' (drops its pin) "
        "and retry ('keras-regnet cache verify' re-checks every cached file)."
    )


def verify_or_record(path, key, expected=None, on_mismatch=None, validate=None, details=None, repair_target=None):
    """Check ``path``'s sha256 against ``expected`` (published) and the value recorded for ``key``; record it if new.

    A file not yet recorded is first checked with ``validate(path)`` (which raises on a bad file) and only then
    recorded, with ``details`` (a dict) alongside. On any failure ``on_mismatch()`` is called (to evict the bad
    file from the cache) and :class:`WeightsIntegrityError` (or its subclass from ``validate``) is raised; nothing
    is recorded. Returns the sha256.
    """
    digest = sha256_of(path)

    def fail(error):
        if on_mismatch is not None:
            on_mismatch()
        raise error

    if validate is not None or (expected and digest != expected):
        pinned = _read_records().get(key)
        if (expected and digest != expected) or (pinned and digest != pinned["sha256"]):
            fail(_mismatch(path, key, digest, expected, pinned, repair_target))
        if pinned is not None and pinned.get("validated"):
            return digest  # validated when it was pinned
        try:
            # Not pinned yet, or pinned by a version that did not validate (it may have pinned an error page).
            validate(path)
        except (ValueError, OSError) as e:
            if pinned is not None:
                forget(key)
            fail(e if isinstance(e, WeightsIntegrityError) else WeightsValidationError(str(e)))
    with _updating() as records:
        pinned = records.get(key)
        if pinned is None:
            records[key] = {"sha256": digest, "size": os.path.getsize(path), "first_seen": _now(), **(details or {})}
            if validate is not None:
                records[key]["validated"] = True
        elif pinned["sha256"] != digest:  # pinned before (or by another process meanwhile) with other bytes
            fail(_mismatch(path, key, digest, expected, pinned, repair_target))
        elif validate is not None and not pinned.get("validated"):
            pinned["validated"] = True
    return digest


def _describe_content(path):
    try:
        from keras_regnet.weights.validate import describe_content
    except ImportError:  # loaded stand-alone
        return None
    return describe_content(path)


# ------------------------------------------------------------------------------------------------ the Hub

def hf_cache_dir():
    """The Hub download cache in effect (``HF_HUB_CACHE``, else huggingface_hub's default)."""
    folder = os.environ.get("HF_HUB_CACHE")
    if folder:
        return folder
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def hf_key(info):
    """The store key of a Hub entry: ``repo@revision/filename``."""
    return f"{info['repo']}@{info['revision']}/{info['filename']}"


def _hf_repo_folder(info):
    return os.path.join(hf_cache_dir(), "models--" + info["repo"].replace("/", "--"))


def _published_sha256(path):
    """The Hub's LFS sha256 of a cached file: huggingface_hub names each blob after the ETag it was served with."""
    name = os.path.basename(os.path.realpath(path))
    return name if _SHA256.fullmatch(name) else None


def _snapshot_commit(path):
    name = os.path.basename(os.path.dirname(path))
    return name if _COMMIT.fullmatch(name) else None


def _evict_hf(path):
    """Remove a cached Hub file: the snapshot link and the blob it points to."""
    real = os.path.realpath(path)
    for p in {path, real}:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


def _model_target(info):
    return f"{info['model']}:{info['tag']}"


def _unavailable(info, url, cause):
    from keras_regnet.specs import constructor_name

    ctor = constructor_name(info["model"])
    extra = ", padding='same', normalization='unit'" if info.get("architecture") else ""
    builder = (f"keras_regnet.build_model({info['model']!r}{extra}, weights=...)" if extra
               else f"keras_regnet.{ctor}(weights=...)")
    local = "/path/to/" + os.path.basename(url)
    if info["source"] == "hf":
        where = " or set HF_ENDPOINT to a reachable Hub mirror."
    else:  # a plain URL: HF_ENDPOINT does not apply
        sha = info.get("sha256") if url == info.get("url") else info.get("sha256_notop")
        where = f" (its published sha256 is {sha})." if sha else "."
    return WeightsDownloadError(
        f"cannot get the {info['model']} weights {info['weights']!r}: {cause}. The file is {url} ; download it "
        f"where there is network and pass its local path: {builder.replace('...', repr(local))}"
        f" (keras-regnet predict: --weights {local}){where}"
    )


def _describe(error):
    """One line naming the root cause of a download error (e.g. '404 Not Found', 'ReadTimeout')."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    text = (str(error).splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _hf_url(info):
    endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    return f"{endpoint}/{info['repo']}/resolve/{info['revision']}/{info['filename']}"


def _hub_errors():
    """huggingface_hub's error classes: ``huggingface_hub.errors`` (>= 0.25), else ``huggingface_hub.utils``."""
    try:
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    return EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError


def _supports(function, parameter):
    try:
        return parameter in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------------ bounded downloads

# Largest file a registry entry may download: its float32 parameters, 25% slack for batch-norm statistics and
# layouts, plus 16 MiB for headers (RegNetX-200MF: ~30 MB; RegNetY-128GF: ~3.2 GB).
_SLACK, _HEADER_BYTES = 1.25, 16 << 20
# At most this much of huggingface_hub's /api/agent-harnesses answer is read (it is a few KB).
_AGENT_REGISTRY_MAX_BYTES = 1 << 20
_cap = threading.local()


class DownloadTooLargeError(WeightsDownloadError):
    """A server sent more bytes than the file can have; the partial file was deleted."""


def max_file_bytes(model):
    """The most bytes a weights file of ``model`` can have (from its parameter count)."""
    from keras_regnet import specs

    params = specs.PAPER_FIGURES[specs.canonical_name(model)][1]
    return int(params * 4 * _SLACK) + _HEADER_BYTES


class _CappedFile:
    """A file object that refuses (raises :class:`DownloadTooLargeError`) a write past ``limit`` bytes."""

    def __init__(self, f, limit, url):
        self._f, self._limit, self._url = f, limit, url
        self._start = f.tell()

    def write(self, data):
        if self._f.tell() - self._start + len(data) > self._limit:
            raise DownloadTooLargeError(f"more than the expected {self._limit} bytes")
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


@contextlib.contextmanager
def _capped(limit, url):
    """While active (in this thread), huggingface_hub's ``http_get`` writes through a :class:`_CappedFile`."""
    from huggingface_hub import file_download

    original = file_download.http_get
    if not getattr(original, "_keras_regnet_capped", False):
        def http_get(url_, temp_file, *args, **kwargs):
            limit_ = getattr(_cap, "limit", None)
            if limit_ is not None and not isinstance(temp_file, _CappedFile):
                temp_file = _CappedFile(temp_file, limit_, url_)
            return original(url_, temp_file, *args, **kwargs)

        http_get._keras_regnet_capped = True
        http_get.__wrapped__ = original
        file_download.http_get = http_get  # installed once; a pass-through outside _capped()
    _cap.limit = limit
    try:
        yield
    finally:
        _cap.limit = None


def _bound_agent_registry():
    """Resolve huggingface_hub's agent-harness registry (read when it builds request headers) with a bounded read.

    huggingface_hub >= 1.x asks ``{endpoint}/api/agent-harnesses`` once a day (unless ``HF_HUB_DISABLE_TELEMETRY``
    or ``HF_HUB_OFFLINE``) and reads the answer whole into memory; a hostile mirror can stream gigabytes. Here the
    same request is made first, reading at most 1 MiB within a few seconds, and its result (or "none", as
    huggingface_hub does on failure) is handed to huggingface_hub, which then makes no request of its own.
    A no-op for versions without that registry.
    """
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import _detect_agent
    except ImportError:
        return
    if getattr(_detect_agent, "_registry", "absent") is not None or not hasattr(_detect_agent, "_load_registry"):
        return  # already resolved in this process, or a version without it
    if constants.HF_HUB_DISABLE_TELEMETRY:
        return  # never requested
    if offline():  # HF_HUB_OFFLINE set after huggingface_hub was imported: it would still ask
        _detect_agent._registry = dict(_detect_agent._EMPTY_REGISTRY)
        return
    path = getattr(constants, "AGENT_HARNESSES_PATH", None)
    try:
        cached = _detect_agent._read_cached_registry(path, max_age=_detect_agent._REGISTRY_TTL_SECONDS)
    except Exception:  # noqa: BLE001 - private API of another version
        cached = None
    if cached:
        return  # huggingface_hub uses the file and asks nothing
    registry = None
    if not constants.HF_HUB_OFFLINE:
        registry = _fetch_bounded_json(f"{constants.ENDPOINT}/api/agent-harnesses", _AGENT_REGISTRY_MAX_BYTES,
                                       timeout=3)
    if isinstance(registry, dict):
        with contextlib.suppress(Exception):
            _detect_agent._write_cached_registry(path, registry)
    else:
        with contextlib.suppress(Exception):
            registry = _detect_agent._read_cached_registry(path, max_age=None)  # a stale copy, as upstream
    _detect_agent._registry = registry if isinstance(registry, dict) else dict(_detect_agent._EMPTY_REGISTRY)


def _fetch_bounded_json(url, max_bytes, timeout):
    """GET ``url`` and parse JSON, reading at most ``max_bytes`` within about ``timeout`` seconds; None on any
    failure (too big, too slow, not JSON)."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the Hub endpoint in effect
            data = b""
            while len(data) <= max_bytes and time.monotonic() < deadline:
                block = response.read(64 << 10)
                if not block:
                    return json.loads(data.decode("utf-8"))
                data += block
            return None
    except Exception:  # noqa: BLE001 - best effort, like huggingface_hub's own fetch
        return None


def _etag_timeout():
    """``HF_HUB_ETAG_TIMEOUT`` in seconds (default 10); a value that is not a positive number is refused by name."""
    import math

    text = os.environ.get("HF_HUB_ETAG_TIMEOUT")
    if not text:
        return 10.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"HF_HUB_ETAG_TIMEOUT must be a number of seconds > 0, got {text!r}; set it to e.g. 10 "
                         "or unset it.")
    return value


def _fetch_hf(info):
    from huggingface_hub import get_hf_file_metadata, hf_hub_download

    EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError = _hub_errors()
    kwargs = dict(
        repo_id=info["repo"],
        filename=info["filename"],
        revision=info["revision"],
        cache_dir=os.environ.get("HF_HUB_CACHE") or None,
    )
    if os.environ.get("HF_ENDPOINT") and _supports(hf_hub_download, "endpoint"):
        kwargs["endpoint"] = os.environ["HF_ENDPOINT"]
    url = _hf_url(info)
    _bound_agent_registry()  # before any huggingface_hub call: building its request headers may ask for it
    try:
        # A cached copy is used without any network access: its sha256 is checked against its blob name and pin.
        return hf_hub_download(**kwargs, local_files_only=True), None
    except LocalEntryNotFoundError:
        if offline():
            raise _unavailable(info, url, "it is not in the cache and HF_HUB_OFFLINE is set") from None
    timeout = _etag_timeout()
    meta_kwargs = {"timeout": timeout}
    if "endpoint" in kwargs and _supports(get_hf_file_metadata, "endpoint"):
        meta_kwargs["endpoint"] = kwargs["endpoint"]
    if _supports(get_hf_file_metadata, "retry_on_errors"):  # huggingface_hub >= 1.2; older ones do not retry here
        meta_kwargs["retry_on_errors"] = False
    try:
        # One metadata request without retries first: hf_hub_download retries network errors with back-off for
        # ~25 s, but with no network (or a dead mirror) the user should hear so within seconds.
        meta = get_hf_file_metadata(url, **meta_kwargs)
        limit, declared = max_file_bytes(info["model"]), getattr(meta, "size", None)
        if isinstance(declared, int) and declared > limit:
            raise _too_large(info, url, f"the server says the file has {declared} bytes, larger than any "
                                        f"{info['model']} weights file can be ({limit} bytes)")
        if isinstance(declared, int) and declared > 0:
            limit = declared
        # The body is cut (and the partial file deleted) past the declared size: an endless body cannot fill the
        # disk. (Files served through Xet storage are written by hf_xet, outside this cap.)
        with _capped(limit, url):
            try:
                return hf_hub_download(**kwargs, etag_timeout=timeout), meta
            except DownloadTooLargeError:
                _drop_incomplete(info, meta)
                raise
    except DownloadTooLargeError as e:
        if "download was deleted" in str(e):
            raise
        raise _too_large(info, url, f"the server sent {e}") from None
    except (EntryNotFoundError, RepositoryNotFoundError) as e:
        raise _unavailable(info, url, f"the server has no such file ({type(e).__name__})") from None
    except Exception as e:  # network errors come as requests/httpx/OSError types depending on the hub version
        raise _unavailable(info, url, f"download failed ({_describe(e)})") from None


def _drop_incomplete(info, meta):
    """Delete the partial blob of a refused download (huggingface_hub 1.2 keeps ``.incomplete`` files to resume)."""
    etag = (getattr(meta, "etag", None) or "").strip('"')
    if etag and "/" not in etag and ".." not in etag:
        path = os.path.join(_hf_repo_folder(info), "blobs", etag + ".incomplete")
        if os.path.exists(path):
            os.remove(path)


def _too_large(info, url, what):
    mirror = f" (HF_ENDPOINT={os.environ['HF_ENDPOINT']})" if os.environ.get("HF_ENDPOINT") else ""
    return DownloadTooLargeError(
        f"cannot get the {info['model']} weights {info['weights']!r} from {url}: {what}; the download was deleted "
        f"and nothing was kept. The server{mirror} is not serving this file correctly: retry later, use another "
        "mirror (HF_ENDPOINT), or download the file where it is served correctly and pass its path as weights=."
    )


def _fetch_url(info, include_top):
    """A plain HTTPS file with a published sha256 (Keras 2 weights), downloaded to a temp file then renamed."""
    from huggingface_hub.file_download import http_get

    url = info["url"] if include_top else info["url_notop"]
    expected = info["sha256"] if include_top else info["sha256_notop"]
    folder = os.path.join(cache_root(), "downloads")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.path.basename(url))
    if os.path.exists(path):
        return path, expected
    if offline():
        raise _unavailable(info, url, "it is not in the cache and HF_HUB_OFFLINE is set")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".incomplete")
    try:
        with os.fdopen(fd, "wb") as f:
            http_get(url, _CappedFile(f, max_file_bytes(info["model"]), url))  # an endless body is cut
        digest = sha256_of(tmp)
        if digest != expected:
            hint = _describe_content(tmp)
            raise WeightsIntegrityError(
                f"the download of {url} does not have the published sha256 {expected} (got {digest}"
                + (f"; {hint}" if hint else "")
                + "); nothing was kept. Retry on a network without a proxy or captive portal in the way, or "
                f"download the file yourself and pass its path as weights=."
            )
        os.replace(tmp, path)
    except WeightsIntegrityError:
        raise
    except DownloadTooLargeError as e:
        raise _too_large(info, url, f"the server sent {e}") from None
    except Exception as e:
        raise _unavailable(info, url, f"download failed ({_describe(e)})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path, expected


def fetch(info, include_top=True):
    """Local path of the registry weights ``info`` (from :func:`get_weights_info`), downloaded if needed and verified.

    Raises :class:`WeightsDownloadError` when the file cannot be fetched, :class:`WeightsIntegrityError` when its
    sha256 differs from the published or pinned one, :class:`WeightsValidationError` when it is not a valid file
    of the entry's model; in the last two cases the file is removed from the cache and nothing is pinned.
    """
    from keras_regnet.weights.validate import validate_entry_file

    def validate(path):
        validate_entry_file(path, info, source=f"the download of {_model_target(info)} ({url})")

    if info["source"] == "hf":
        url = _hf_url(info)
        path, meta = _fetch_hf(info)
        published = _published_sha256(path)
        if published is None and meta is not None and meta.etag and _SHA256.fullmatch(meta.etag):
            published = meta.etag  # a cache without symlinks (Windows): the blob is not named after its ETag
        commit = _snapshot_commit(path) or (getattr(meta, "commit_hash", None) if meta is not None else None)
        details = {"published": published is not None, **({"commit": commit} if commit else {})}
        verify_or_record(path, hf_key(info), expected=published, on_mismatch=lambda: _evict_hf(path),
                         validate=_with_removal_note(validate), details=details, repair_target=_model_target(info))
        return path
    url = info["url"] if include_top else info["url_notop"]
    path, expected = _fetch_url(info, include_top)
    verify_or_record(path, os.path.basename(path), expected=expected, on_mismatch=lambda: os.remove(path),
                     validate=_with_removal_note(validate), details={"published": True},
                     repair_target=_model_target(info))
    return path


def _with_removal_note(validate):
    def run(path):
        try:
            validate(path)
        except WeightsValidationError as e:
            raise WeightsValidationError(
                f"{str(e).rstrip('.')}. The file was removed from the cache and not recorded; check the network "
                "(or HF_ENDPOINT mirror) and retry, or download the file yourself and pass its path as weights=."
            ) from None

    return run


# ------------------------------------------------------------------------------------------------ cache management

def _targets(target=None):
    """Registry entries selected by ``target``: None (all), 'MODEL' (all its tags) or 'MODEL:TAG'."""
    from keras_regnet import specs
    from keras_regnet.weights.registry import get_weights_info, list_weights

    if target is None:
        return [info for name in specs.MODEL_NAMES for info in list_weights(name)]
    model, _, tag = str(target).partition(":")
    split = getattr(specs, "split_model_name", None)
    if split is not None and not tag:
        model, timm_tag = split(model)
        tag = timm_tag or ""
    if tag:
        return [get_weights_info(model, tag if tag.startswith("imagenet") else f"imagenet:{tag}")]
    return list_weights(model)


def _items(info):
    """(kind, store key, local path or None, published sha256 or None) of an entry's downloads and conversions."""
    items = []
    if info["source"] == "hf":
        path = None
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(info["repo"], info["filename"], cache_dir=hf_cache_dir(),
                                           revision=info["revision"])
            path = found if isinstance(found, str) and os.path.exists(found) else None
        except ImportError:
            pass
        items.append(("download", hf_key(info), path, _published_sha256(path) if path else None))
    else:
        for url, sha in ((info["url"], info["sha256"]), (info["url_notop"], info["sha256_notop"])):
            path = os.path.join(cache_root(create=False), "downloads", os.path.basename(url))
            items.append(("download", os.path.basename(url), path if os.path.exists(path) else None, sha))
    for top in (True, False):
        path = converted_path(info, top)
        items.append(("converted", "converted/" + os.path.basename(path), path if os.path.exists(path) else None, None))
    return items


def cache_entries(target=None):
    """What is cached or pinned for ``target`` (None, 'MODEL' or 'MODEL:TAG'): one dict per file.

    Keys: ``model``, ``weights``, ``kind`` ('download' or 'converted'), ``key`` (in the store), ``path`` (None if
    not on disk), ``pin`` (the store's record or None), ``published`` (sha256 or None). Files neither on disk nor
    pinned are left out; with ``target=None``, pins of files no registry entry names are listed with model None.
    """
    records = _read_records()
    rows, seen = [], set()
    for info in _targets(target):
        for kind, key, path, published in _items(info):
            seen.add(key)
            if path or key in records:
                rows.append({"model": info["model"], "weights": info["weights"], "tag": info["tag"], "kind": kind,
                             "key": key, "path": path, "pin": records.get(key), "published": published, "info": info})
    if target is None:
        for key in sorted(set(records) - seen):
            rows.append({"model": None, "weights": None, "tag": None, "kind": "pin", "key": key, "path": None,
                         "pin": records[key], "published": None, "info": None})
    return rows


def verify_cache(target=None):
    """Re-hash every cached file of ``target`` against its pin (and published sha256); validate downloads.

    Returns the rows of :func:`cache_entries` with ``status`` ('ok', 'not cached', 'not pinned', 'MISMATCH' or
    'INVALID') and ``problem`` (text or None). Changes nothing.
    """
    from keras_regnet.weights.validate import validate_entry_file

    rows = cache_entries(target)
    for row in rows:
        row["status"], row["problem"] = "ok", None
        if row["path"] is None:
            row["status"] = "not cached"
            continue
        digest = sha256_of(row["path"])
        pin, published = row["pin"], row["published"]
        if (published and digest != published) or (pin and digest != pin["sha256"]):
            row["status"] = "MISMATCH"
            row["problem"] = (f"sha256 {digest[:16]}... differs from the "
                              + ("pinned" if pin and digest != pin["sha256"] else "published") + " value")
            continue
        if row["kind"] == "download":
            try:
                validate_entry_file(row["path"], row["info"], source=row["path"])
            except (ValueError, OSError) as e:
                row["status"], row["problem"] = "INVALID", str(e)
                continue
        if pin is None:
            row["status"] = "not pinned"
    return rows


def _remove(path):
    if path and os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
        return True
    return False


def clear_cache(target=None):
    """Remove the downloaded and converted files of ``target`` (None = all registry weights) and their pins.

    For Hub weights the repository's folder in the Hub cache is removed (it holds only that model's weights).
    With ``target=None`` the store itself is removed too, even when it is damaged. Returns the removed paths/keys.
    """
    removed = []
    entries = _targets(target)
    with _lock():
        if target is None:
            records = {}
        else:
            records = _read_records()  # a damaged store can only be cleared as a whole
        keys = set()
        for info in entries:
            for kind, key, path, _ in _items(info):
                keys.add(key)
                if kind == "download" and info["source"] == "hf":
                    folder = _hf_repo_folder(info)
                    if _remove(folder):
                        removed.append(folder)
                elif _remove(path):
                    removed.append(path)
        if target is None:
            for folder in (os.path.join(cache_root(), "converted"), os.path.join(cache_root(), "downloads")):
                if _remove(folder):
                    removed.append(folder)
            if _remove(_record_path()):
                removed.append(_record_path())
        else:
            dropped = sorted(k for k in keys if k in records)
            if dropped:
                for key in dropped:
                    records.pop(key)
                _write_records(records)
                removed.extend(f"pin {k}" for k in dropped)
    return removed
