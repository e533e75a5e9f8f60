"""A fleet's state directory: an append-only event ledger plus each machine's outputs.

Layout of ``--state DIR``::

    ledger.jsonl              one JSON object per line, appended and fsync'd per event
    machines/NAME/convert.log every attempt's stderr, one header line per attempt
    machines/NAME/report.json the committed report (ConversionReport.to_dict()) of the
                              conversion that succeeded: written last, atomically
    machines/NAME/check.xml   that report's in-session check as JUnit
    summary.json, junit.xml   the last run's summary

The ledger is history (who ran what where, how each attempt ended, what was retried);
the *work* is the committed report: a machine is done when its report is there and its
output disk exists, whatever the ledger says.  So a lost or truncated ledger loses
history, never work, and a crash between two events costs at most a re-run.  A torn
last line (a crash mid-write) is skipped when read and closed with a newline before the
next append, so it never corrupts the event after it.  Appends take an exclusive
``flock`` so pods or processes sharing one state directory interleave whole lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

LEDGER = "ledger.jsonl"

# Machine states derived from the state directory.
DONE = "done"
FAILED = "failed"  # the last attempt ended in a failure that was not retried
INTERRUPTED = "interrupted"  # started, never finished (a crash, Ctrl-C, a lost host)
PENDING = "pending"  # never started


@dataclass(frozen=True)
class MachineState:
    name: str
    state: str
    attempts: int = 0  # attempts recorded in the ledger, over every run
    host: str | None = None  # where the last attempt ran
    exit_code: int | None = None  # of the last finished attempt
    error_type: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Ledger:
    """The state directory of one fleet (made on first use)."""

    def __init__(self, state: str | os.PathLike[str]) -> None:
        self.dir = Path(state)
        if self.dir.exists() and not self.dir.is_dir():
            raise UsageError(f"--state {self.dir}: not a directory")
        self.path = self.dir / LEDGER

    def machine_dir(self, name: str) -> Path:
        return self.dir / "machines" / name

    def report_path(self, name: str) -> Path:
        return self.machine_dir(name) / "report.json"

    # --- events ---------------------------------------------------------------------

    def append(self, event: str, machine: str | None = None, **fields: Any) -> dict[str, Any]:
        """Append one event as one fsync'd line; returns it.  ``fields`` must already be
        free of secrets (the engine scrubs messages before they get here)."""
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "event": event, **({"machine": machine} if machine else {}), **fields}
        line = (json.dumps(record, sort_keys=False, default=str) + "\n").encode()
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # close a torn last line: it stays one bad line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)  # (closing releases the lock)
        return record

    def events(self) -> list[dict[str, Any]]:
        """Every readable event, in order; torn or garbled lines are skipped."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a torn line (crash mid-append) carries no complete event
            if isinstance(record, dict) and "event" in record:
                out.append(record)
        return out

    # --- committed work ---------------------------------------------------------------

    def commit_report(self, name: str, report: dict[str, Any], check_junit: bytes | None,
                      ) -> Path:
        """Write a machine's report (and check JUnit) atomically: the report last, since
        its presence is what "done" means."""
        d = self.machine_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        if check_junit is not None:
            write_atomic(d / "check.xml", check_junit)
        path = self.report_path(name)
        write_atomic(path, (json.dumps(report, indent=2, default=str) + "\n").encode())
        return path

    def committed_report(self, name: str) -> dict[str, Any] | None:
        """The committed report when it proves the machine done: it parses, is not a dry
        run, and its first output disk exists (a report without its disk is not work)."""
        try:
            report = json.loads(self.report_path(name).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(report, dict) or report.get("dry_run"):
            return None
        outputs = report.get("outputs") or []
        if not outputs or not Path(outputs[0]).exists():
            return None
        return report

    def states(self, names: Iterable[str]) -> dict[str, MachineState]:
        """Each machine's state: done from its committed report, the rest from the last
        ``started``/``finished`` event about it (``finished`` carries an ``outcome``:
        done, retry, failed or interrupted)."""
        names = list(names)
        wanted = set(names)
        last: dict[str, dict[str, Any]] = {}
        attempts: dict[str, int] = {}
        for e in self.events():
            m = e.get("machine")
            if m not in wanted:
                continue
            if e["event"] == "started":
                attempts[m] = attempts.get(m, 0) + 1
                last[m] = e
            elif e["event"] == "finished":
                last[m] = e
            elif e["event"] == "placed" and m in last:  # (Ray) the node it runs on
                last[m] = {**last[m], "host": e.get("host")}
        out = {}
        for n in names:
            e = last.get(n) or {}
            count = attempts.get(n, 0)
            base = dict(attempts=count, host=e.get("host"), exit_code=e.get("exit_code"),
                        error_type=e.get("error_type"), message=e.get("message"))
            if self.committed_report(n) is not None:
                out[n] = MachineState(n, DONE, count, e.get("host"), 0)
            elif not e:
                out[n] = MachineState(n, PENDING, count)
            elif e["event"] == "finished" and e.get("outcome") == FAILED:
                out[n] = MachineState(n, FAILED, **base)
            else:  # started and never finished, stopped, or lost between retries
                out[n] = MachineState(n, INTERRUPTED, **base)
        return out


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary beside it, fsync'd, renamed, and
    the directory fsync'd so the rename survives a crash."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(state: Path) -> Iterator[None]:
    """One ``batch run`` per state directory at a time (a second one would start the same
    machines): a UsageError naming the directory when another holds it."""
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / ".run.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"--state {state}: another batch run is using it") from None
        yield
    finally:
        os.close(fd)
