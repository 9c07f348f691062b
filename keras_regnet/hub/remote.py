"""Presets on the Hugging Face Hub: download (checked before use, cached, offline, pinned revisions) and upload.

Downloads go through ``huggingface_hub`` like the pretrained weights (:mod:`keras_regnet.weights.download`): the Hub
cache (``HF_HUB_CACHE`` / ``HF_HOME``), ``HF_ENDPOINT`` mirrors and ``HF_HUB_OFFLINE`` are read at call time.
``config.json`` is fetched first and must name a RegNet; then the other preset files of the same commit. Every
binary file's sha256 is compared with the Hub's published LFS sha256 (the cached blob's name), and the folder is
checked as a whole (:func:`keras_regnet.hub.preset.check_preset_folder`). A preset that fails any check is removed
from the cache again: nothing half-checked is ever reused.

Uploads (:func:`upload_preset`) check the folder first (it must load as a RegNet), then create the repository if
needed and send every preset file in one commit, deleting preset files the new preset no longer has.
"""

from __future__ import annotations

import os
import shutil

from keras_regnet.hub.uri import PresetDownloadError, PresetError, parse_hub_uri

__all__ = ["fetch_preset", "upload_preset", "PresetUploadError"]


class PresetUploadError(OSError):
    """The Hub refused or failed an upload (no token, no permission, network)."""


def _endpoint():
    return (os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None


def _repo_folder(repo_id):
    from keras_regnet.weights.download import hf_cache_dir

    return os.path.join(hf_cache_dir(), "models--" + repo_id.replace("/", "--"))


def _where():
    return _endpoint() or "the Hugging Face Hub"


def _snapshot(hub, revision, patterns, local_only):
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from keras_regnet.weights.download import _describe, hf_cache_dir

    uri = str(hub)
    try:
        return snapshot_download(hub.repo_id, revision=revision, allow_patterns=patterns, cache_dir=hf_cache_dir(),
                                 endpoint=_endpoint(), local_files_only=local_only)
    except RevisionNotFoundError:
        raise PresetDownloadError(f"{uri}: the repository has no revision {revision!r} on {_where()}.") from None
    except RepositoryNotFoundError:
        raise PresetDownloadError(
            f"{uri}: no such repository on {_where()} (or it is private: set HF_TOKEN or run 'hf auth login')."
        ) from None
    except LocalEntryNotFoundError as e:
        if local_only:
            raise PresetDownloadError(
                f"{uri} is not in the cache and HF_HUB_OFFLINE is set; download it once with network (or set "
                "HF_ENDPOINT to a reachable mirror), or pass a local preset folder."
            ) from None
        raise PresetDownloadError(f"cannot download {uri} from {_where()} ({_describe(e)}).") from None
    except EntryNotFoundError:  # after LocalEntryNotFoundError, its subclass in huggingface_hub 1.x/2.x
        raise PresetError(f"{uri} is not a preset (no config.json).") from None
    except Exception as e:  # noqa: BLE001 - network errors come as httpx/OSError types, depending on the version
        raise PresetDownloadError(f"cannot download {uri} from {_where()} ({_describe(e)}).") from None


def _check_blobs(folder, uri):
    """Each cached binary file's sha256 equals its blob name (the Hub's published LFS sha256)."""
    from keras_regnet.weights.download import _published_sha256, sha256_of

    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        published = _published_sha256(path)
        if published is not None and sha256_of(path) != published:
            raise PresetError(f"{name} of {uri} does not have the sha256 the Hub published ({published[:16]}...): "
                              "altered in transit or in the cache; it was removed, retry.")


def _forget(folder, repo_folder, existed):
    """Remove a failed download: the whole repo folder if this call created it, else this snapshot and its blobs."""
    if not existed:
        shutil.rmtree(repo_folder, ignore_errors=True)
        return
    if folder and os.path.isdir(folder):
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            for p in {path, real}:
                try:
                    os.remove(p)
                except (FileNotFoundError, IsADirectoryError):
                    pass
        shutil.rmtree(folder, ignore_errors=True)


def fetch_preset(uri):
    """Local folder of the preset ``hf://owner/name[@revision]``, downloaded if needed and checked (see module doc)."""
    from keras_regnet.hub.preset import CONFIG, PRESET_FILES, check_preset_folder, preset_kind, _read_json
    from keras_regnet.weights.download import offline

    hub = parse_hub_uri(uri)
    uri = str(hub)
    revision = hub.revision or "main"
    repo_folder = _repo_folder(hub.repo_id)
    existed = os.path.isdir(repo_folder)
    local_only = offline()
    folder = None
    try:
        folder = _snapshot(hub, revision, [CONFIG], local_only)
        if not os.path.isfile(os.path.join(folder, CONFIG)):
            raise PresetError(f"{uri} is not a preset (no config.json; save one with model.save_to_preset and push it "
                              "with keras-regnet push).")
        config = _read_json(folder, CONFIG, uri)
        if preset_kind(config, uri) == "keras":
            folder = _snapshot(hub, os.path.basename(folder), ["*"], local_only)
        else:
            folder = _snapshot(hub, os.path.basename(folder), list(PRESET_FILES), local_only)
        _check_blobs(folder, uri)
        check_preset_folder(folder, uri)
    except PresetError:
        _forget(folder, repo_folder, existed)
        raise
    except PresetDownloadError:
        if not existed:
            shutil.rmtree(repo_folder, ignore_errors=True)
        raise
    return folder


def upload_preset(uri, preset_dir, private=None, commit_message=None, token=None):
    """Upload preset folder ``preset_dir`` to ``hf://owner/name`` in one commit; returns the commit URL.

    The folder is checked first (it must load as a RegNet: nothing partial is ever uploaded). The token comes from
    ``token``, else ``HF_TOKEN`` or ``hf auth login``. ``private=True`` creates a private repository (an existing
    repository keeps its visibility).
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from keras_regnet.hub.preset import PRESET_FILES, read_preset
    from keras_regnet.weights.download import _describe

    hub = parse_hub_uri(uri, allow_revision=False)
    uri = str(hub)
    preset_dir = os.fspath(preset_dir)
    read_preset(preset_dir)  # checks the files and that the weights load: raises PresetError otherwise
    names = [n for n in PRESET_FILES if os.path.isfile(os.path.join(preset_dir, n))]
    api = HfApi(endpoint=_endpoint(), token=token)
    message = commit_message or f"Upload RegNet preset ({', '.join(names)}) with keras-regnet"
    try:
        api.create_repo(hub.repo_id, private=private, exist_ok=True)
        present = set(api.list_repo_files(hub.repo_id))
        ops = [CommitOperationAdd(path_in_repo=n, path_or_fileobj=os.path.join(preset_dir, n)) for n in names]
        ops += [CommitOperationDelete(path_in_repo=n) for n in PRESET_FILES if n in present and n not in names]
        info = api.create_commit(hub.repo_id, operations=ops, commit_message=message)
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise PresetUploadError(
                f"the Hub refused the upload to {uri} (HTTP {status}): set HF_TOKEN to a token with write access "
                "(or run 'hf auth login') and check that you may write to that namespace."
            ) from None
        raise PresetUploadError(f"upload to {uri} failed ({_describe(e)}).") from None
    except (OSError, ValueError) as e:
        raise PresetUploadError(f"upload to {uri} failed ({_describe(e)}).") from None
    return getattr(info, "commit_url", str(info))
