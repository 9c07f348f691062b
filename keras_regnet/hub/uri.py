"""``hf://owner/name[@revision]`` URIs: parsed and checked before anything touches the network or the cache."""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["HubURI", "is_hub_uri", "parse_hub_uri", "PresetError", "PresetDownloadError"]

SCHEME = "hf://"
# The Hub's repo id rules: letters, digits, '-', '_', '.'; no '--' or '..', no leading/trailing '-' or '.'.
_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


class PresetError(ValueError):
    """A preset (folder or Hub repo) is missing, not a RegNet preset, damaged, or named by a bad URI."""


class PresetDownloadError(OSError):
    """A preset could not be fetched (offline and not cached, no network, no such repository or revision)."""


class HubURI(NamedTuple):
    repo_id: str
    revision: str | None

    def __str__(self):
        return f"{SCHEME}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


def is_hub_uri(value) -> bool:
    return isinstance(value, str) and value.lower().startswith(SCHEME)


def parse_hub_uri(uri: str, allow_revision: bool = True) -> HubURI:
    """``hf://owner/name[@revision]`` -> HubURI; raises PresetError (one line) for anything else."""
    if not is_hub_uri(uri):
        raise PresetError(f"{uri!r} is not a Hub URI; write hf://owner/name (optionally hf://owner/name@revision).")
    rest = uri[len(SCHEME):]
    repo, sep, revision = rest.partition("@")
    parts = repo.split("/")
    bad = (
        len(parts) != 2
        or any(not _PART.fullmatch(p) or ".." in p or "--" in p for p in parts)
        or (sep and (not revision or not _REVISION.fullmatch(revision) or ".." in revision
                     or revision.endswith(("/", ".lock"))))
    )
    if bad:
        raise PresetError(
            f"bad Hub URI {uri!r}: write hf://owner/name or hf://owner/name@revision (owner and name: letters, "
            "digits, '-', '_' and '.', without '..' or '--'; revision: a branch, tag or commit)."
        )
    if sep and not allow_revision:
        raise PresetError(f"{uri!r}: uploads go to the main branch; leave out '@{revision}'.")
    return HubURI("/".join(parts), revision or None)
