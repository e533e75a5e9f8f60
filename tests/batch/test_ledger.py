"""The state directory: events survive crashes, work is re-derived from committed reports.

Pure file work, no conversion: the engine tests run real ``p2vimage`` processes on top
of this.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from p2vimage.batch.ledger import (
    DONE,
    FAILED,
    INTERRUPTED,
    PENDING,
    Ledger,
    run_lock,
    write_atomic,
)
from p2vimage.errors import UsageError


def _report(output: Path) -> dict:
    return {"outputs": [str(output)], "dry_run": False, "sources": ["/x.img"]}


def test_events_are_whole_lines_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    ledger.append("queued", "a")
    ledger.append("started", "a", host="hv1", attempt=1)
    # a crash mid-append: half a line, no newline
    with open(ledger.path, "ab") as f:
        f.write(b'{"time": "2026-01-01T00:00:00Z", "event": "finis')
    assert [e["event"] for e in ledger.events()] == ["queued", "started"]
    # the next append closes the torn line first, so it is not glued onto it
    ledger.append("finished", "a", outcome="failed", exit_code=3, message="no such file")
    events = ledger.events()
    assert [e["event"] for e in events] == ["queued", "started", "finished"]
    assert ledger.path.read_bytes().endswith(b"}\n")
    assert ledger.states(["a"])["a"].state == FAILED


def test_a_crash_between_started_and_finished_is_interrupted(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.append("started", "a", host="hv1", attempt=1)
    s = ledger.states(["a", "b"])
    assert s["a"].state == INTERRUPTED and s["a"].host == "hv1" and s["a"].attempts == 1
    assert s["b"].state == PENDING and s["b"].attempts == 0


def test_a_placed_attempt_has_its_node_even_if_the_driver_dies(tmp_path: Path) -> None:
    """Ray: ``started`` says where the attempt was asked to run, ``placed`` where it
    runs; a driver that dies before ``finished`` still leaves the node in the state."""
    ledger = Ledger(tmp_path)
    ledger.append("started", "a", host="ray (any node)", attempt=1)
    assert ledger.states(["a"])["a"].host == "ray (any node)"
    ledger.append("placed", "a", host="hv2", attempt=1)
    ledger.append("placed", "b", host="hv1", attempt=1)  # no started: not an attempt
    s = ledger.states(["a", "b"])
    assert (s["a"].state, s["a"].host, s["a"].attempts) == (INTERRUPTED, "hv2", 1)
    assert (s["b"].state, s["b"].host) == (PENDING, None)


def test_done_comes_from_the_committed_report_not_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    out = tmp_path / "a.qcow2"
    out.write_bytes(b"disk")
    ledger.append("started", "a", host="hv1", attempt=1)
    ledger.commit_report("a", _report(out), b"<testsuites/>")
    # crash before "finished": the report is there, so the work is done
    assert ledger.states(["a"])["a"].state == DONE
    # a lost ledger loses history, not work
    ledger.path.unlink()
    s = ledger.states(["a"])["a"]
    assert s.state == DONE and s.attempts == 0
    assert (ledger.machine_dir("a") / "check.xml").read_bytes() == b"<testsuites/>"
    # a report whose disk is gone is not work
    out.unlink()
    assert ledger.states(["a"])["a"].state == PENDING


def test_a_dry_run_or_garbled_report_is_not_done(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    out = tmp_path / "a.qcow2"
    out.write_bytes(b"disk")
    ledger.commit_report("a", {**_report(out), "dry_run": True}, None)
    assert ledger.states(["a"])["a"].state == PENDING
    ledger.report_path("a").write_text('{"outputs": [')
    assert ledger.states(["a"])["a"].state == PENDING


def test_attempts_count_every_run_and_the_last_outcome_wins(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    for attempt, outcome in ((1, "retry"), (2, "failed")):
        ledger.append("started", "a", host="hv1", attempt=attempt)
        ledger.append("finished", "a", outcome=outcome, exit_code=5,
                      error_type="OutputBusyError", message="busy")
    s = ledger.states(["a"])["a"]
    assert (s.state, s.attempts, s.exit_code, s.error_type) == (FAILED, 2, 5,
                                                               "OutputBusyError")
    ledger.append("started", "a", host="hv2", attempt=1)  # --retry-failed, then a crash
    assert ledger.states(["a"])["a"].state == INTERRUPTED


def _append_many(path: str, who: str) -> None:
    ledger = Ledger(path)
    for i in range(100):
        ledger.append("started", who, attempt=i, pad="x" * 300)


def test_concurrent_appenders_interleave_whole_lines(tmp_path: Path) -> None:
    """Pods of an Indexed Job share one ledger: every line stays whole."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w)) for w in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    lines = (tmp_path / "ledger.jsonl").read_bytes().splitlines()
    assert len(lines) == 200
    assert all(json.loads(line)["pad"] == "x" * 300 for line in lines)


def test_write_atomic_leaves_no_temporary(tmp_path: Path) -> None:
    write_atomic(tmp_path / "r.json", b"{}")
    write_atomic(tmp_path / "r.json", b"[]")
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert (tmp_path / "r.json").read_bytes() == b"[]"


def test_one_run_per_state_directory(tmp_path: Path) -> None:
    with (run_lock(tmp_path), pytest.raises(UsageError, match="another batch run"),
          run_lock(tmp_path)):
        pass
    with run_lock(tmp_path):  # released
        pass


def test_state_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        Ledger(tmp_path / "f")
