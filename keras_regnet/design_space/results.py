"""The sweep results file: one JSON object per line, appended atomically, read back tolerating crash damage.

Each append writes one complete line under an exclusive file lock (``filelock``) and then ``fsync``s, so concurrent workers can
share a file and a kill leaves at most one partial last line; a short write (a full disk) is undone and raised,
never reported as success. Readers keep every good line and report the damaged ones; :func:`repair_results`
moves damaged lines to ``<file>.damaged`` (nothing is thrown away) and atomically rewrites the file with the
good lines.

Workers sharing a file claim each sample index before training it (:func:`claim_index`), in ``<file>.claims``
under the same lock. A claim records who holds it (pid and process start time, host name, boot id, PID
namespace) and an expiry that the holder's heartbeat thread pushes forward while it trains. A claim is free again
when it expires (its host died or lost the file) or, where its pid can be looked up (same host name, boot and
PID namespace: not in another container), as soon as its process is gone. :func:`describe_claims` says who holds
claims; :func:`release_claims` removes them (``keras-regnet sweep --release-claims``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import numbers
import os
import socket
import tempfile
import threading
import time

__all__ = [
    "ResultsFile", "read_results", "append_result", "repair_results", "results_lock", "claim_index",
    "release_claim", "release_claims", "read_claims", "describe_claims", "describe_claim", "ResultsWriteError",
]

# A claim lives this long (seconds) after its owner's last renewal; the owner renews it every CLAIM_LEASE_S / 5
# while it trains. Hosts sharing a results file need clocks that agree to well within this (NTP).
CLAIM_LEASE_S = 300.0
# Claims written before heartbeats existed, from another host, expire this long (seconds) after they were made.
CLAIM_TTL_S = 24 * 3600


class ResultsWriteError(OSError):
    """A result could not be appended in full (disk full, quota); the file was left as it was."""


@dataclasses.dataclass
class ResultsFile:
    """Records read from a results file and the lines that could not be read (line number, text, reason)."""

    path: str
    records: list
    damaged: list
    lines: list = dataclasses.field(default_factory=list)  # 1-based line number of each record

    def where(self, i) -> str:
        """'file:line' of record ``i`` (for error messages)."""
        return f"{self.path}:{self.lines[i]}" if i < len(self.lines) else self.path

    def damage_report(self) -> str:
        """One line per damaged line, e.g. 'results.jsonl:12: truncated last line (crash?) ...'."""
        return "\n".join(f"{self.path}:{n}: {reason}: {text[:80]!r}" for n, text, reason in self.damaged)


@contextlib.contextmanager
def results_lock(path):
    """Exclusive inter-process lock on ``<path>.lock`` while appending, claiming or repairing (``filelock``:
    fcntl on POSIX, msvcrt on Windows)."""
    import filelock

    with filelock.FileLock(os.fspath(path) + ".lock"):
        yield


def read_results(path, required=("error",)) -> ResultsFile:
    """Read a JSONL results file; good records are kept, damaged lines are reported, never raised.

    A line is damaged when it is not valid JSON, not an object, misses a ``required`` key, has an ``error``
    that is not a finite number in [0, 100] (a top-1 error in %), or is the last line without its newline (a
    write cut short by a crash). The file is streamed: memory holds the records, not the file's text.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"results file {path!r} does not exist; run `keras-regnet sweep --out {path}` first.")
    records, damaged, numbers_ = [], [], []

    def check(n, rec, raw, is_last, complete):
        """Keep ``rec`` (parsed from line ``n``) or report why it is damaged; ``rec`` is _NOT_JSON if not JSON."""
        if rec is _NOT_JSON:
            reason = "truncated last line (the writer was killed mid-line)" if is_last and not complete else "not valid JSON"
            damaged.append((n, raw.decode("utf-8", errors="replace"), reason))
            return
        reason = None
        if is_last and not complete:
            reason = "last line has no newline (the writer was killed mid-line)"
        elif not isinstance(rec, dict):
            reason = "not a JSON object"
        elif missing := [k for k in required if k not in rec]:
            reason = f"missing keys {missing}"
        elif "error" in rec and not _finite_number(rec["error"]):
            reason = f"'error' is not a finite number: {rec['error']!r}"
        elif "error" in rec and not 0 <= rec["error"] <= 100:
            reason = f"'error' must be a percentage in [0, 100], got {rec['error']!r}"
        if reason:
            damaged.append((n, raw.decode("utf-8", errors="replace"), reason))
        else:
            records.append(rec)
            numbers_.append(n)

    # Streamed in blocks of lines, each block parsed by one json call (keys shared within a block: less memory,
    # faster); a block with any bad line is parsed again line by line to find it.
    with open(path, "rb") as f:
        block = []
        for n, raw in enumerate(f, 1):
            complete = raw.endswith(b"\n")  # only the file's last line can lack its newline
            raw = raw[:-1] if complete else raw
            if not raw.strip():
                continue
            if complete:
                block.append((n, raw))
                if len(block) < _BLOCK_LINES:
                    continue
            for m, rec, text in _parse_block(block):
                check(m, rec, text, False, True)
            block = []
            if not complete:
                check(n, _parse_line(raw), raw, True, False)
        for m, rec, text in _parse_block(block):
            check(m, rec, text, False, True)
    return ResultsFile(path, records, damaged, numbers_)


_BLOCK_LINES = 2000
_NOT_JSON = object()


def _parse_line(raw):
    try:
        return json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return _NOT_JSON


def _parse_block(block):
    """(line number, parsed value or _NOT_JSON, raw line) of each (line number, raw line) of ``block``."""
    if not block:
        return []
    try:
        values = json.loads(b"[" + b",".join(raw for _, raw in block) + b"]")
    except ValueError:
        values = None
    if values is None or len(values) != len(block):
        values = [_parse_line(raw) for _, raw in block]
    return [(n, v, raw) for (n, raw), v in zip(block, values)]


def _finite_number(v) -> bool:
    if type(v) is float or type(v) is int:  # the common case, without the slow ABC check
        return math.isfinite(v)
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


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


def _write_all(fd, data: bytes, path):
    """Write all of ``data`` at the end of ``fd``; on a short or failed write, cut the file back and raise."""
    start = os.lseek(fd, 0, os.SEEK_END)
    done = 0
    try:
        while done < len(data):
            n = os.write(fd, data[done:])
            if n <= 0:
                raise OSError(f"write returned {n}")
            done += n
        os.fsync(fd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
            os.fsync(fd)
        raise ResultsWriteError(
            f"could not append a result to {path}: wrote {done} of {len(data)} bytes ({e}); the file was left as it "
            "was. Free disk space (or choose another --out) and run the same command again to resume."
        ) from e


def append_result(path, record: dict):
    """Append one record as one JSON line under the lock, then fsync; a short write is undone and raised."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    if line.count(b"\n") != 1:
        raise ValueError("a result record must serialise to a single line.")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with results_lock(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _write_all(fd, line, path)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------------ claims


def _start_time(pid):
    """The process's start time (clock ticks since boot, Linux), or None where unknown; tells pid reuse apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _boot_id():
    """This machine's boot id (Linux), or None: two containers of one machine share it, two boots do not."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_namespace():
    """The inode of this process's PID namespace (Linux), or None: pids mean something only inside it."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def _me() -> dict:
    """Who claims: pid and start time, host name, boot id and PID namespace (a pid is only judged where all match)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid()), "boot": _boot_id(),
            "pidns": _pid_namespace()}


def _same_pid_space(claim: dict, me: dict) -> bool:
    """Whether the claim's pid can be looked up here: same host name, same boot, same PID namespace."""
    return all(claim.get(k) == me[k] for k in ("host", "boot", "pidns"))


def _is_mine(claim: dict, me: dict) -> bool:
    if "pidns" not in claim:  # written before claims recorded namespaces
        return claim.get("pid") == me["pid"] and claim.get("host") == me["host"]
    return claim.get("pid") == me["pid"] and _same_pid_space(claim, me)


def _pid_alive(claim: dict) -> bool:
    """Whether the claim's process still runs (call only where its pid means the same process as here)."""
    pid = claim.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return True  # cannot tell: keep the claim until it expires
    start = claim.get("start")
    return start is None or _start_time(pid) in (None, start)


def _claim_alive(claim: dict, now: float) -> bool:
    """Whether the process that made a claim may still be working on it.

    A claim lives until its ``expires`` time, which its owner pushes forward every ``lease / 5`` seconds while it
    works (:class:`_Heartbeat`); a host that died or lost the file stops renewing and its claims run out. Where the
    pid can be looked up (same host name, boot and PID namespace), a claim whose process is gone is free at once.
    A pid is never looked up for another host, boot or namespace: it would name some other process there.
    """
    expires = claim.get("expires")
    if _finite_number(expires):
        if now >= expires:
            return False
        return _pid_alive(claim) if _same_pid_space(claim, _me()) else True
    # Claims written before heartbeats: same host name -> pid check; another host -> CLAIM_TTL_S after the claim.
    if claim.get("host") != socket.gethostname():
        time_ = claim.get("time", 0)
        return _finite_number(time_) and now - time_ < CLAIM_TTL_S
    return _pid_alive(claim)


class _Heartbeat:
    """Renews this process's claims (``expires = now + lease``) every ``lease / 5`` seconds from a daemon thread,
    so other hosts and containers see them alive; stops renewing a claim when it is released."""

    def __init__(self):
        self.pid = os.getpid()
        self.held = {}  # path -> {index: lease}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread = None

    def add(self, path, index, lease):
        with self.lock:
            self.held.setdefault(path, {})[index] = lease
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="sweep-claims-heartbeat", daemon=True)
                self.thread.start()
            self.wake.set()

    def remove(self, path, index):
        with self.lock:
            self.held.get(path, {}).pop(index, None)
            if not self.held.get(path):
                self.held.pop(path, None)

    def _interval(self):
        with self.lock:
            leases = [lease for held in self.held.values() for lease in held.values()]
        return max(0.05, min(leases) / 5) if leases else None

    def _run(self):
        while True:
            interval = self._interval()
            if interval is None:
                with self.lock:
                    if not self.held:
                        self.thread = None
                        return
                continue
            self.wake.wait(interval)
            self.wake.clear()
            with self.lock:
                work = {path: dict(held) for path, held in self.held.items()}
            for path, held in work.items():
                try:
                    self._renew(path, held)
                except Exception as e:  # noqa: BLE001 - a full disk must not kill the training; retried next beat
                    _warn(f"could not renew the sweep claims in {_claims_path(path)} ({e}); retrying.")

    def _renew(self, path, held):
        me = _me()
        with results_lock(path):
            claims = read_claims(path)
            now = time.time()
            changed = False
            for index, lease in held.items():
                c = claims.get(index)
                if c is None or not _is_mine(c, me):
                    with self.lock:
                        still_held = index in self.held.get(path, {})  # not released by this process meanwhile
                    if not still_held:
                        continue
                    self.remove(path, index)
                    _warn(f"the claim on sample {index} in {path} was released by another process; this process "
                          "goes on training it, so the sample may be trained twice.")
                    continue
                c.update(renewed=now, expires=now + lease, lease=lease)
                changed = True
            if changed:
                _write_claims(path, claims)


_heartbeat = None


def _beat():
    """This process's heartbeat (a new one after a fork: threads do not survive it)."""
    global _heartbeat
    if _heartbeat is None or _heartbeat.pid != os.getpid():
        _heartbeat = _Heartbeat()
    return _heartbeat


def _warn(message):
    import sys

    print(f"keras-regnet sweep: warning: {message}", file=sys.stderr)


def _claims_path(path):
    return os.fspath(path) + ".claims"


def read_claims(path) -> dict:
    """The claims of a results file: {index: claim dict}; unreadable lines are ignored (claims are advisory)."""
    claims = {}
    try:
        with open(_claims_path(path), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return claims
    for raw in data.splitlines():
        try:
            c = json.loads(raw)
        except ValueError:
            continue
        if isinstance(c, dict) and isinstance(c.get("index"), int):
            claims[c["index"]] = c
    return claims


def _write_claims(path, claims: dict):
    if claims:
        _atomic_write(_claims_path(path), b"".join(json.dumps(c, sort_keys=True).encode() + b"\n"
                                                  for _, c in sorted(claims.items())))
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_claims_path(path))


def claim_index(path, candidates, finished_key, tag=None):
    """Claim the first index of ``candidates`` that is neither finished in ``path`` nor claimed by a live process.

    ``finished_key(record)`` returns the index a record finishes (or None for records of other sweeps); ``tag``
    (JSON) is stored with the claim and must match for a claim to count. Runs under the file lock, so two
    workers never get the same index. The claim is renewed by this process's heartbeat until
    :func:`release_claim`. Returns the index, or None when nothing is left to claim.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    lease = float(CLAIM_LEASE_S)
    with results_lock(path):
        done = set()
        if os.path.exists(path):
            done = {finished_key(r) for r in read_results(path).records} - {None}
        now = time.time()
        claims = {i: c for i, c in read_claims(path).items()
                  if i not in done and c.get("tag") == tag and _claim_alive(c, now)}
        for i in candidates:
            if i not in done and i not in claims:
                claims[i] = {"index": i, "tag": tag, "time": now, "renewed": now, "expires": now + lease,
                             "lease": lease, **_me()}
                _write_claims(path, claims)
                _beat().add(path, i, lease)
                return i
        _write_claims(path, claims)
        return None


def release_claim(path, index):
    """Drop this process's claim on ``index`` (after finishing it, or when stopping before it finished)."""
    path = os.fspath(path)
    _beat().remove(path, index)
    me = _me()
    with results_lock(path):
        claims = read_claims(path)
        c = claims.get(index)
        if c is not None and _is_mine(c, me):
            del claims[index]
            _write_claims(path, claims)


def release_claims(path, indices=None) -> list:
    """Remove the claims on ``indices`` (default: all) of a results file, whoever holds them; returns them.

    For claims whose holders are gone (a dead host, a removed container) and that should not wait for their
    lease to run out. Releasing a live claim lets its sample be trained twice.
    """
    path = os.fspath(path)
    if not os.path.exists(_claims_path(path)):
        return []
    with results_lock(path):
        claims = read_claims(path)
        gone = [c for i, c in sorted(claims.items()) if indices is None or i in indices]
        for c in gone:
            del claims[c["index"]]
        _write_claims(path, claims)
    return gone


def describe_claim(claim: dict, now=None) -> str:
    """'#3: host gpu-7 pid 77 (pid namespace 4026531836), claimed 2026-12-03 10:01:02 UTC, renewed 5 s ago,
    expires in 295 s' (who holds a claim, for reports)."""
    now = time.time() if now is None else now
    who = f"host {claim.get('host')} pid {claim.get('pid')}"
    if claim.get("pidns") is not None:
        who += f" (pid namespace {claim.get('pidns')})"
    parts = [f"#{claim.get('index')}: {who}"]
    if _finite_number(claim.get("time")):
        parts.append("claimed " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(claim["time"])))
    if _finite_number(claim.get("renewed")):
        parts.append(f"renewed {max(0.0, now - claim['renewed']):.0f} s ago")
    if _finite_number(claim.get("expires")):
        left = claim["expires"] - now
        parts.append(f"expires in {left:.0f} s" if left > 0 else f"expired {-left:.0f} s ago")
    else:
        parts.append("no heartbeat (an older version's claim)")
    return ", ".join(parts)


def describe_claims(path, include_mine=False) -> list:
    """One line (:func:`describe_claim`) per claim on ``path`` held by other processes (and this one's if asked)."""
    me, now = _me(), time.time()
    return [describe_claim(c, now) for _, c in sorted(read_claims(path).items())
            if include_mine or not _is_mine(c, me)]
