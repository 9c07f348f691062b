"""Sweep claims across PID namespaces (containers) and hosts: a live claim is never taken because its pid means
nothing here, a dead host's claim expires when its owner stops renewing it, claims held by others are reported
and can be released.

The namespace tests run the claiming process under ``unshare`` (root, Linux); they are skipped with the reason
where that is not possible.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from keras_regnet import cli
from keras_regnet.design_space import results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Claims index 0 (tag "t") with a short lease, says so, holds it (renewing) until <out>.stop appears.
_HOLDER = """
    import os, sys, time
    from keras_regnet.design_space import results

    out, lease = sys.argv[1], float(sys.argv[2])
    results.CLAIM_LEASE_S = lease
    assert results.claim_index(out, [0], lambda r: None, tag="t") == 0
    open(out + ".ready", "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists(out + ".stop") and time.monotonic() < deadline:
        time.sleep(0.05)
    results.release_claim(out, 0)
"""


def _unshare_works(*flags):
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return "needs Linux and the unshare tool"
    try:
        r = subprocess.run(["unshare", *flags, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare {' '.join(flags)} failed: {e}"
    return None if r.returncode == 0 else f"unshare {' '.join(flags)} is not permitted here: {r.stderr.decode()[:200]}"


def _holder(out, lease, prefix=()):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([*prefix, sys.executable, "-c", textwrap.dedent(_HOLDER), str(out), str(lease)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(str(out) + ".ready"):
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise AssertionError(f"the claiming process did not start: {p.communicate()[1][-2000:]}")
        time.sleep(0.02)
    return p


def _stop(p, out):
    open(str(out) + ".stop", "w").close()
    try:
        p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _kill(p):
    os.killpg(p.pid, signal.SIGKILL)  # the whole session: unshare and the python it started
    p.wait()


def _take(out):
    return results.claim_index(out, [0, 1], lambda r: None, tag="t")


def _wait_past(out, index, moment):
    """Wait until the claim on ``index`` was renewed after ``moment`` (the lease it had then has run out)."""
    deadline = time.monotonic() + 30
    while results.read_claims(out)[index].get("renewed", 0) <= moment:
        assert time.monotonic() < deadline, "the owner did not renew its claim"
        time.sleep(0.05)


def test_a_claim_records_host_boot_and_pid_namespace_and_an_expiry(tmp_path):
    out = tmp_path / "r.jsonl"
    assert _take(out) == 0
    c = results.read_claims(out)[0]
    assert c["host"] == socket.gethostname() and c["pid"] == os.getpid()
    if os.path.exists("/proc/self/ns/pid"):
        assert c["pidns"] == os.stat("/proc/self/ns/pid").st_ino
        assert c["boot"] == open("/proc/sys/kernel/random/boot_id").read().strip()
    assert c["expires"] == pytest.approx(c["renewed"] + results.CLAIM_LEASE_S)
    results.release_claim(out, 0)
    assert results.read_claims(out) == {}


@pytest.mark.skipif(bool(_unshare_works("--pid", "--fork", "--mount-proc")),
                    reason=str(_unshare_works("--pid", "--fork", "--mount-proc")))
def test_a_live_claim_from_another_pid_namespace_is_not_taken(tmp_path):
    out = tmp_path / "r.jsonl"
    p = _holder(out, 2.0, ["unshare", "--pid", "--fork", "--mount-proc"])
    try:
        assert _take(out) == 1  # its pid is judged nowhere but in its own namespace
        c = results.read_claims(out)[0]
        assert c["pidns"] != os.stat("/proc/self/ns/pid").st_ino and c["host"] == socket.gethostname()
        _wait_past(out, 0, c["expires"])  # still renewed after its first lease ran out
        assert _take(out) is None  # 0: live in the container; 1: ours
        held = results.describe_claims(out)
        assert len(held) == 1 and held[0].startswith("#0: ") and f"pid {c['pid']}" in held[0]
        assert f"pid namespace {c['pidns']}" in held[0]
    finally:
        _stop(p, out)
    assert 0 not in results.read_claims(out)  # it released its own claim


@pytest.mark.skipif(bool(_unshare_works("--pid", "--fork", "--mount-proc")),
                    reason=str(_unshare_works("--pid", "--fork", "--mount-proc")))
def test_a_dead_claim_from_another_pid_namespace_expires(tmp_path):
    out = tmp_path / "r.jsonl"
    p = _holder(out, 1.0, ["unshare", "--pid", "--fork", "--mount-proc"])
    _kill(p)
    assert _take(out) == 1  # not yet: its lease has not run out
    deadline = time.monotonic() + 30
    while (got := results.claim_index(out, [0], lambda r: None, tag="t")) is None:
        assert time.monotonic() < deadline, "the dead container's claim never expired"
        time.sleep(0.1)
    assert got == 0 and results.read_claims(out)[0]["pid"] == os.getpid()


@pytest.mark.skipif(bool(_unshare_works("--uts")), reason=str(_unshare_works("--uts")))
def test_another_hosts_claim_lives_while_renewed_and_expires_when_its_host_dies(tmp_path):
    out = tmp_path / "r.jsonl"
    script = textwrap.dedent(_HOLDER).replace("import os, sys, time", "import os, socket, sys, time\n"
                                               "socket.sethostname('other-host')")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen(["unshare", "--uts", sys.executable, "-c", script, str(out), "1.0"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(str(out) + ".ready"):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1][-2000:]
            time.sleep(0.02)
        c = results.read_claims(out)[0]
        assert c["host"] == "other-host"
        _wait_past(out, 0, c["expires"])
        assert _take(out) == 1  # renewed past its first lease: alive
        assert "host other-host" in results.describe_claims(out)[0]
    finally:
        _kill(p)  # the host dies: no more renewals
    deadline = time.monotonic() + 30
    while (got := results.claim_index(out, [0], lambda r: None, tag="t")) is None:
        assert time.monotonic() < deadline, "a dead host's claim never expired"
        time.sleep(0.1)
    assert got == 0


def test_a_killed_local_process_frees_its_claim_at_once(tmp_path):
    out = tmp_path / "r.jsonl"
    p = _holder(out, 600.0)
    _kill(p)
    assert _take(out) == 0  # same host and namespace: the pid is checked, no need to wait 600 s


def test_claims_held_by_others_are_reported_and_released(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    now = time.time()
    claims = [{"index": 3, "tag": "t", "pid": 77, "host": "gpu-7", "boot": "b", "pidns": 1, "start": 5,
               "time": now - 60, "renewed": now - 5, "expires": now + 295, "lease": 300}]
    (tmp_path / "r.jsonl.claims").write_text("".join(json.dumps(c) + "\n" for c in claims))
    held = results.describe_claims(out)
    assert len(held) == 1 and held[0].startswith("#3: ") and "host gpu-7 pid 77" in held[0] and "expires in" in held[0]
    assert cli.main(["sweep", "--space", "RegNetX", "--out", str(out), "--release-claims"]) == 0
    text = capsys.readouterr().out
    assert "released 1 claim" in text and "#3" in text and "gpu-7" in text
    assert results.read_claims(out) == {}
    assert cli.main(["sweep", "--space", "RegNetX", "--out", str(out), "--release-claims"]) == 0
    assert "no claims" in capsys.readouterr().out


def test_the_sweep_command_reports_samples_left_to_others(tmp_path, capsys, monkeypatch):
    from keras_regnet.design_space import sweep

    out = tmp_path / "r.jsonl"
    now = time.time()
    claim = {"index": 2, "tag": "x", "pid": 12, "host": "gpu-3", "boot": "b", "pidns": 1, "start": 5,
             "time": now, "renewed": now, "expires": now + 300, "lease": 300}
    (tmp_path / "r.jsonl.claims").write_text(json.dumps(claim) + "\n")
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: [])
    assert cli.main(["sweep", "--space", "RegNetX", "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "1 sample(s) claimed by other processes" in err and "#2" in err and "host gpu-3 pid 12" in err
    assert "--release-claims" in err
