"""The sweep results file: one JSON object per line, appended atomically, read back tolerating crash damage.

Each append writes one complete line with a single ``write`` under an exclusive ``flock`` and then ``fsync``s,
so concurrent workers (one per GPU) can share a file and a kill leaves at most one partial last line. Readers
keep every good line and report the damaged ones; :func:`repair_results` moves damaged lines to
``<file>.damaged`` (nothing is thrown away) and atomically rewrites the file with the good lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: appends stay single writes, without a cross-process lock
    fcntl = None

__all__ = ["ResultsFile", "read_results", "append_result", "repair_results", "results_lock"]


@dataclasses.dataclass
class ResultsFile:
    """Records read from a results file and the lines that could not be read (line number, text, reason)."""

    path: str
    records: list
    damaged: list

    def damage_report(self) -> str:
        """One line per damaged line, e.g. 'results.jsonl:12: truncated last line (crash?) ...'."""
        return "\n".join(f"{self.path}:{n}: {reason}: {text[:80]!r}" for n, text, reason in self.damaged)


@contextlib.contextmanager
def results_lock(path):
    """Exclusive lock on ``<path>.lock`` while appending or repairing (no-op where flock is unavailable)."""
    if fcntl is None:
        yield
        return
    fd = os.open(os.fspath(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_results(path, required=("error",)) -> ResultsFile:
    """Read a JSONL results file; good records are kept, damaged lines are reported, never raised.

    A line is damaged when it is not valid JSON, not an object, misses a ``required`` key, or is the last line
    without its newline (a write cut short by a crash).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"results file {path!r} does not exist; run `keras-regnet sweep --out {path}` first.")
    with open(path, "rb") as f:
        data = f.read()
    records, damaged = [], []
    lines = data.split(b"\n")
    complete = data.endswith(b"\n") or not data
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        text = raw.decode("utf-8", errors="replace")
        is_last = i == len(lines) - 1
        try:
            rec = json.loads(text)
        except ValueError:
            reason = "truncated last line (the writer was killed mid-line)" if is_last and not complete else "not valid JSON"
            damaged.append((i + 1, text, reason))
            continue
        if is_last and not complete:
            damaged.append((i + 1, text, "last line has no newline (the writer was killed mid-line)"))
        elif not isinstance(rec, dict):
            damaged.append((i + 1, text, "not a JSON object"))
        elif missing := [k for k in required if k not in rec]:
            damaged.append((i + 1, text, f"missing keys {missing}"))
        else:
            records.append(rec)
    return ResultsFile(path, records, damaged)


def _atomic_write(path, data: bytes):
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def repair_results(path, required=("error",)) -> list:
    """Move damaged lines of ``path`` to ``<path>.damaged`` and keep the good ones; returns the damaged entries.

    Good lines are rewritten byte for byte (temp file + rename), so a repair never alters a finished record.
    Call it before appending to a file that may end in a partial line; a no-op on healthy files.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return []
    with results_lock(path):
        result = read_results(path, required)
        if not result.damaged:
            return []
        bad = {n for n, _, _ in result.damaged}
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        keep = [line for i, line in enumerate(lines) if line.strip() and i + 1 not in bad]
        with open(path + ".damaged", "ab") as f:
            for n, text, reason in result.damaged:
                f.write(json.dumps({"line": n, "reason": reason, "text": text}).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        _atomic_write(path, b"".join(line + b"\n" for line in keep))
        return result.damaged


def append_result(path, record: dict):
    """Append one record as one JSON line: a single write under the lock, then fsync."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    if line.count(b"\n") != 1:
        raise ValueError("a result record must serialise to a single line.")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with results_lock(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
