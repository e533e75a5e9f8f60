"""The local engine with real ``p2vimage convert`` processes.

Failures are made the way they happen: a missing capture (exit 3, before any
appliance), an output another conversion holds (exit 5: its ``.partial`` claimed by an
``AtomicOutputs`` in this process), an unreachable HTTP server (exit 5), a source that
never answers (a listening socket nobody serves: the worker hangs, and is killed or
interrupted).  One real conversion of the demo fixture proves the done path, its
committed report and the resume that skips it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from p2vimage import batch
from p2vimage.batch.engine import classify, default_max_in_flight
from p2vimage.batch.ledger import Ledger
from p2vimage.errors import EXIT_INTERRUPTED, EXIT_NOT_READY, EXIT_OK, EXIT_USAGE, UsageError
from p2vimage.targets.atomic import AtomicOutputs
from tests.conftest import P2VIMAGE

SECRET_PASSWORD = "s3cretPassw0rd"
SECRET_TOKEN = "SIGNATURE0123456789abcdef"


def manifest(tmp_path: Path, rows: str, defaults: str = "output-dir: out") -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(f"defaults: {{{defaults}}}\nmachines:\n" + textwrap.indent(
        textwrap.dedent(rows), "  "))
    return path


def events(state: Path, kind: str | None = None, machine: str | None = None) -> list[dict]:
    return [e for e in Ledger(state).events()
            if (kind is None or e["event"] == kind)
            and (machine is None or e.get("machine") == machine)]


@pytest.fixture
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (an NBD server that hangs)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def test_classify_by_exit_code_alone() -> None:
    assert classify(0) == "done"
    assert [classify(c) for c in (1, 2, 3, 4)] == ["permanent"] * 4
    assert classify(5) == "temporary"
    assert classify(-9) == "lost" and classify(137) == "lost" and classify(130) == "lost"
    assert default_max_in_flight() >= 1


def test_prelaunch_failures_fail_once_with_their_reason(tmp_path: Path) -> None:
    path = manifest(tmp_path, """\
        - {name: a, source: missing-a.img}
        - {name: b, source: /nonexistent/b.img}
        """)
    state = tmp_path / "state"
    result = batch.run(path, state, max_in_flight=2, retry_delay=0)
    assert result.exit_code == EXIT_NOT_READY
    by = {m.name: m for m in result.machines}
    assert by["a"].state == by["b"].state == "failed"
    assert by["a"].exit_code == 3 and by["a"].error_type == "SourceNotFoundError"
    assert by["a"].message == f"{tmp_path / 'missing-a.img'}: no such file"
    assert by["a"].attempts == 1  # permanent: never retried
    assert len(events(state, "started")) == 2 and not events(state, "retried")
    assert "a: FAILED (exit 3, 1 attempt(s))" in result.summary_lines()[0]
    summary = json.loads((state / "summary.json").read_text())
    assert summary["exit_code"] == 1 and summary["counts"] == {"failed": 2}
    suite = etree.parse(str(state / "junit.xml")).getroot()[0]
    assert suite.get("tests") == "2" and suite.get("failures") == "2"
    case = suite.find("testcase[@name='a']")
    assert case.find("failure").get("type") == "SourceNotFoundError"
    log = (state / "machines" / "a" / "convert.log").read_text()
    assert "attempt 1" in log and "no such file" in log
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    # resume: failures are not re-run without --retry-failed, and still count as failed
    again = batch.run(path, state, retry_delay=0)
    assert again.exit_code == EXIT_NOT_READY
    assert len(events(state, "started")) == 2
    assert "--retry-failed" in {m.name: m for m in again.machines}["a"].message
    # --retry-failed --only a: only a runs again
    third = batch.run(path, state, retry_failed=True, only=["a"], retry_delay=0)
    assert [m.name for m in third.machines] == ["a"]
    assert len(events(state, "started", "a")) == 2 and len(events(state, "started", "b")) == 1
    with pytest.raises(UsageError, match="no machine named zz"):
        batch.run(path, state, only=["zz"])


def test_a_busy_output_is_retried_then_fails(tmp_path: Path) -> None:
    """Exit 5 is retried up to --retries; the output's holder is never disturbed."""
    (tmp_path / "zero.img").write_bytes(bytes(1 << 20))
    path = manifest(tmp_path, "- {name: a, source: zero.img}\n")
    out = tmp_path / "out" / "a.qcow2"
    out.parent.mkdir()
    state = tmp_path / "state"
    with AtomicOutputs([out], overwrite=False):
        result = batch.run(path, state, retries=2, retry_delay=0)
    a = result.machines[0]
    assert (result.exit_code, a.state, a.attempts, a.exit_code, a.error_type) == (
        EXIT_NOT_READY, "failed", 3, 5, "OutputBusyError")
    assert [e["attempt"] for e in events(state, "started")] == [1, 2, 3]
    assert [e["attempt"] for e in events(state, "retried")] == [2, 3]
    outcomes = [e["outcome"] for e in events(state, "finished")]
    assert outcomes == ["retry", "retry", "failed"]
    # every attempt's host is in the ledger: this one, the local engine's only host
    assert {e["host"] for e in events(state) if e["event"] in ("started", "finished")} == {
        socket.gethostname()}
    assert sorted(p.name for p in out.parent.iterdir()) == []


def test_secrets_appear_nowhere_in_the_state(tmp_path: Path, closed_port: int) -> None:
    """A URL with a password and a signed query: unreachable (exit 5, retried once)."""
    url = (f"http://bob:{SECRET_PASSWORD}@127.0.0.1:{closed_port}/x.img"
           f"?X-Amz-Signature={SECRET_TOKEN}")
    path = manifest(tmp_path, f'- {{name: a, source: "{url}"}}\n')
    state = tmp_path / "state"
    junit = tmp_path / "fleet.xml"
    r = subprocess.run([str(P2VIMAGE), "batch", "run", str(path), "--state", str(state),
                        "--retries", "1", "--retry-delay", "0", "--junit", str(junit),
                        "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == EXIT_NOT_READY, r.stderr
    doc = json.loads(r.stdout)
    a = doc["machines"][0]
    assert (a["error_type"], a["attempts"]) == ("SourceUnreachableError", 2)
    assert "bob:…@127.0.0.1" in a["message"]
    written = [p for p in state.rglob("*") if p.is_file()] + [junit]
    assert {p.name for p in written} >= {"ledger.jsonl", "convert.log", "summary.json",
                                         "junit.xml", "fleet.xml"}
    for p in written:
        text = p.read_bytes().decode()
        assert SECRET_PASSWORD not in text and SECRET_TOKEN not in text, p
    assert SECRET_PASSWORD not in r.stdout + r.stderr and SECRET_TOKEN not in r.stdout


def test_a_lost_worker_is_retried(tmp_path: Path, stalled_port: int) -> None:
    """A worker killed from outside (OOM killer, a crashed host) is retried, then given
    up on with the cause named."""
    path = manifest(tmp_path, f'- {{name: a, source: "nbd://127.0.0.1:{stalled_port}/x"}}\n')
    state = tmp_path / "state"
    box: dict = {}
    runner = threading.Thread(target=lambda: box.update(
        r=batch.run(path, state, retries=1, retry_delay=0)))
    runner.start()
    killed = []
    deadline = time.monotonic() + 60
    while len(killed) < 2 and time.monotonic() < deadline:
        for e in events(state, "started"):
            if e["pid"] not in killed:
                time.sleep(0.5)
                os.kill(e["pid"], signal.SIGKILL)
                killed.append(e["pid"])
        time.sleep(0.1)
    runner.join(60)
    a = box["r"].machines[0]
    assert (a.state, a.attempts, a.exit_code) == ("failed", 2, -9)
    assert a.message == "worker lost (killed by SIGKILL)"
    assert [e.get("cause") for e in events(state, "retried")] == ["lost"]


def test_ctrl_c_stops_in_flight_conversions(tmp_path: Path, stalled_port: int) -> None:
    """SIGINT to ``batch run``: 130, every child stopped (escalating when one does not
    unwind in --stop-wait), the ledger says which were stopped, a rerun resumes them."""
    path = manifest(tmp_path, f"""\
        - {{name: a, source: "nbd://127.0.0.1:{stalled_port}/a"}}
        - {{name: b, source: "nbd://127.0.0.1:{stalled_port}/b"}}
        - {{name: c, source: /nonexistent/c.img}}
        """)
    state = tmp_path / "state"
    proc = subprocess.Popen([str(P2VIMAGE), "batch", "run", str(path), "--state", str(state),
                             "--max-in-flight", "2", "--stop-wait", "2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(events(state, "started")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    doc = json.loads(out)
    states = {m["name"]: m["state"] for m in doc["machines"]}
    assert states == {"a": "interrupted", "b": "interrupted", "c": "interrupted"}
    stopped = {e["machine"] for e in events(state, "finished") if e["outcome"] == "interrupted"}
    assert stopped == {"a", "b"}
    for e in events(state, "started"):
        assert not alive(e["pid"])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    status = subprocess.run([str(P2VIMAGE), "batch", "status", "--state", str(state),
                             "--manifest", str(path), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == EXIT_OK
    got = {m["name"]: m["state"] for m in json.loads(status.stdout)["machines"]}
    assert got == {"a": "interrupted", "b": "interrupted", "c": "pending"}


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    path = manifest(tmp_path, "- {name: a, source: /x.img}\n")
    for extra in (["--max-in-flight", "0"], ["--retries", "-1"], ["--only", "nope"]):
        r = subprocess.run([str(P2VIMAGE), "batch", "run", str(path), "--state",
                            str(tmp_path / "s"), *extra], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == EXIT_USAGE and r.stderr.count("\n") == 1, (extra, r.stderr)
    assert not (tmp_path / "s").exists()


@pytest.mark.appliance
@pytest.mark.slow
def test_a_real_conversion_is_committed_and_not_redone(images, tmp_path: Path) -> None:
    from fixtures.images import DEMO

    path = manifest(tmp_path, f"""\
        - {{name: demo, source: "{images[DEMO]}", memory: 1G}}
        - {{name: gone, source: /nonexistent/gone.img}}
        """)
    state = tmp_path / "state"
    result = batch.run(path, state, max_in_flight=2, retry_delay=0)
    by = {m.name: m for m in result.machines}
    assert result.exit_code == EXIT_NOT_READY
    assert by["demo"].state == "done" and by["gone"].state == "failed"
    report = json.loads((state / "machines" / "demo" / "report.json").read_text())
    assert report["outputs"] == [str(tmp_path / "out" / "demo.qcow2")]
    assert report["devices"]["name"] == "demo" and report["devices"]["memory_mib"] == 1024
    assert Path(report["outputs"][0]).stat().st_size > 0
    check = etree.parse(str(state / "machines" / "demo" / "check.xml")).getroot()
    assert check.tag == "testsuites" and len(check.findall(".//testcase")) > 0
    mtime = Path(report["outputs"][0]).stat().st_mtime_ns
    again = batch.run(path, state, only=["demo"])
    assert again.exit_code == EXIT_OK and again.machines[0].state == "done"
    assert len(events(state, "started", "demo")) == 1
    assert Path(report["outputs"][0]).stat().st_mtime_ns == mtime


def test_done_is_the_committed_report_of_this_output(tmp_path: Path) -> None:
    """A committed report whose disk exists is done (not run again, exit 0); one whose
    output is not the manifest's any more (the row was moved) is run again."""
    path = manifest(tmp_path, "- {name: a, source: /nonexistent/a.img}\n")
    state = tmp_path / "state"
    out = tmp_path / "out" / "a.qcow2"
    out.parent.mkdir()
    out.write_bytes(b"converted before")
    ledger = Ledger(state)
    ledger.commit_report("a", {"outputs": [str(out)], "dry_run": False}, None)
    result = batch.run(path, state)
    assert result.exit_code == EXIT_OK and result.machines[0].state == "done"
    assert not events(state, "started")
    elsewhere = tmp_path / "old" / "a.qcow2"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"converted to the old place")
    ledger.commit_report("a", {"outputs": [str(elsewhere)], "dry_run": False}, None)
    again = batch.run(path, state)
    assert again.exit_code == EXIT_NOT_READY and again.machines[0].exit_code == 3
    assert len(events(state, "started")) == 1
