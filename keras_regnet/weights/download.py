"""Fetching registry weights: huggingface_hub for the Hub (cache, HF_ENDPOINT mirrors, HF_HUB_OFFLINE, atomic
``.incomplete`` -> final renames, timeouts), plus a sha256 trust-on-first-use record checked at every later load.

Environment variables are read at call time (not import time), so they can be changed inside a running program:
``HF_ENDPOINT`` (mirror), ``HF_HUB_OFFLINE=1`` (never touch the network), ``HF_HUB_CACHE`` / ``HF_HOME`` (download
cache), ``KERAS_HOME`` (converted ``.weights.h5`` files and the sha256 record, under ``models/keras_regnet``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile

__all__ = [
    "WeightsDownloadError",
    "WeightsIntegrityError",
    "cache_root",
    "fetch",
    "sha256_of",
    "verify_or_record",
]

_TRUE = {"1", "on", "yes", "true"}


class WeightsDownloadError(OSError):
    """Weights could not be fetched (offline, no network, 404, timeout, truncated download)."""


class WeightsIntegrityError(ValueError):
    """A weights file's sha256 differs from the value published or recorded at first download."""


def cache_root():
    """``$KERAS_HOME/models/keras_regnet`` (default ``~/.keras/models/keras_regnet``): converted weights + sha256 record."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    path = os.path.join(home, "models", "keras_regnet")
    os.makedirs(path, exist_ok=True)
    return path


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


def _record_path():
    return os.path.join(cache_root(), "sha256.json")


def _read_records():
    try:
        with open(_record_path()) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError:
        # A damaged record must not be trusted silently, nor block every load: start over, keeping a copy.
        os.replace(_record_path(), _record_path() + ".corrupt")
        return {}


def _write_records(records):
    fd, tmp = tempfile.mkstemp(dir=cache_root(), prefix=".sha256.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(records, f, indent=1, sort_keys=True)
    os.replace(tmp, _record_path())


def forget(key):
    """Drop the recorded sha256 of ``key`` (after a legitimate upstream change)."""
    records = _read_records()
    if records.pop(key, None) is not None:
        _write_records(records)


def verify_or_record(path, key, expected=None, on_mismatch=None):
    """Check ``path``'s sha256 against ``expected`` (published) or the value recorded for ``key``; record it if new.

    On a mismatch ``on_mismatch()`` is called (to evict the bad file from the cache) and
    :class:`WeightsIntegrityError` is raised. Returns the sha256.
    """
    digest = sha256_of(path)
    records = _read_records()
    known = expected or (records.get(key) or {}).get("sha256")
    if known is None:
        records[key] = {
            "sha256": digest,
            "size": os.path.getsize(path),
            "first_seen": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        _write_records(records)
        return digest
    if digest != known:
        if on_mismatch is not None:
            on_mismatch()
        origin = "published" if expected else f"recorded at first download ({(records.get(key) or {}).get('first_seen')})"
        raise WeightsIntegrityError(
            f"sha256 of {path!r} is {digest}, but {known} was {origin} for {key}. The file was changed (in the "
            "cache or upstream) and has been removed from the cache. Retry to download it again; if the upstream "
            f"file legitimately changed, delete the entry {key!r} from {_record_path()!r} first."
        )
    return digest


def _evict_hf(path):
    """Remove a cached Hub file: the snapshot link and the blob it points to."""
    real = os.path.realpath(path)
    for p in {path, real}:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


def _unavailable(info, url, cause):
    ctor = info["model"].replace("-", "").replace(".", "_")
    extra = ", padding='same', normalization='unit'" if info.get("architecture") else ""
    builder = (f"keras_regnet.build_model({info['model']!r}{extra}, weights=...)" if extra
               else f"keras_regnet.{ctor}(weights=...)")
    return WeightsDownloadError(
        f"cannot get the {info['model']} weights {info['weights']!r}: {cause}. The file is {url} ; download it "
        f"where there is network and pass its local path: {builder.replace('...', repr('/path/to/' + os.path.basename(url)))}"
        f" (keras-regnet predict: --weights /path/to/{os.path.basename(url)}), or set HF_ENDPOINT to a reachable mirror."
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


def _fetch_hf(info):
    from huggingface_hub import get_hf_file_metadata, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    kwargs = dict(
        repo_id=info["repo"],
        filename=info["filename"],
        revision=info["revision"],
        cache_dir=os.environ.get("HF_HUB_CACHE") or None,
        endpoint=os.environ.get("HF_ENDPOINT") or None,
    )
    url = _hf_url(info)
    try:
        # A cached copy is used without any network access: its sha256 is pinned by the record anyway.
        return hf_hub_download(**kwargs, local_files_only=True)
    except LocalEntryNotFoundError:
        if offline():
            raise _unavailable(info, url, "it is not in the cache and HF_HUB_OFFLINE is set") from None
    timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
    try:
        # One metadata request without retries first: hf_hub_download retries network errors with back-off for
        # ~25 s, but with no network (or a dead mirror) the user should hear so within seconds.
        get_hf_file_metadata(url, timeout=timeout, endpoint=kwargs["endpoint"], retry_on_errors=False)
        return hf_hub_download(**kwargs, etag_timeout=timeout)
    except (EntryNotFoundError, RepositoryNotFoundError) as e:
        raise _unavailable(info, url, f"the server has no such file ({type(e).__name__})") from None
    except Exception as e:  # network errors come as requests/httpx/OSError types depending on the hub version
        raise _unavailable(info, url, f"download failed ({_describe(e)})") from None


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
            http_get(url, f)
        if sha256_of(tmp) != expected:
            raise WeightsIntegrityError(f"the download of {url} does not have the published sha256 {expected}.")
        os.replace(tmp, path)
    except WeightsIntegrityError:
        raise
    except Exception as e:
        raise _unavailable(info, url, f"download failed ({_describe(e)})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path, expected


def fetch(info, include_top=True):
    """Local path of the registry weights ``info`` (from :func:`get_weights_info`), downloaded if needed and verified."""
    if info["source"] == "hf":
        path = _fetch_hf(info)
        key = f"{info['repo']}@{info['revision']}/{info['filename']}"
        verify_or_record(path, key, on_mismatch=lambda: _evict_hf(path))
        return path
    path, expected = _fetch_url(info, include_top)
    verify_or_record(path, os.path.basename(path), expected=expected, on_mismatch=lambda: os.remove(path))
    return path
