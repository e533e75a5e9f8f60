"""Running a fleet: a pool of ``p2vimage convert`` processes, retried by exit code.

Each machine's conversion is its own process (``python -m p2vimage convert … --json``),
started in its own session so that only the batch decides when it stops: a crash, a
hang or a leak in one appliance never takes the others down, and stopping one is a
signal the CLI already turns into a clean unwind (its partial outputs removed).  Only
paths go to a worker; the report comes back as the child's ``--json`` document.

Retries are decided from the exit code alone (the contract of :mod:`p2vimage.errors`):

* 0 done: the report is committed to the state directory;
* 1, 2, 3, 4 permanent: the input or the options are wrong, the same command fails
  again, so the machine fails at once;
* 5 temporary (output busy, appliance launch, space, source unreachable) and a lost
  worker (killed by a signal, an exit code outside the contract, no report on exit 0)
  are retried, after ``retry_delay`` seconds, up to ``retries`` more attempts.

Ctrl-C (or SIGTERM) stops the run: every child gets SIGINT, then SIGTERM, then its
process group SIGKILL, with a bound on each wait; the ledger records each stopped
machine as interrupted, and the run ends with exit 130.  A later run resumes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import (
    EXIT_INTERRUPTED,
    EXIT_NOT_READY,
    EXIT_OK,
    EXIT_TEMPORARY,
    UsageError,
)
from . import ledger as ledger_mod
from . import reports
from .ledger import DONE, FAILED, INTERRUPTED, PENDING, Ledger
from .manifest import Machine, Manifest, load

PERMANENT = frozenset({1, 2, 3, 4})
CORES_PER_CONVERSION = 1
MEMORY_PER_CONVERSION = 2 << 30  # virt-v2v sizes a conversion at ~2 GB, so do we
POLL = 0.1
STOP_WAIT = 30.0  # seconds a child gets to unwind after SIGINT (then SIGTERM, then KILL)

# What the run reports per machine, beyond the ledger's states.
RUNNING = "running"
QUEUED = "queued"
SKIPPED = "skipped"  # failed in an earlier run; --retry-failed runs it again


def default_max_in_flight() -> int:
    """As many conversions as this machine has cores and memory for (~1 core and 2 GB
    each), at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    mem = _mem_available()
    by_mem = mem // MEMORY_PER_CONVERSION if mem else cores
    return max(1, min(cores // CORES_PER_CONVERSION, by_mem))


def _mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def classify(exit_code: int | None) -> str:
    """``done``, ``permanent``, ``temporary`` or ``lost`` (a worker that died: a signal,
    an exit code outside p2vimage's contract)."""
    if exit_code == EXIT_OK:
        return "done"
    if exit_code in PERMANENT:
        return "permanent"
    if exit_code == EXIT_TEMPORARY:
        return "temporary"
    return "lost"


@dataclass
class MachineResult:
    """One machine at the end of a run (also a row of the live table while it runs)."""

    name: str
    state: str
    host: str | None = None
    attempts: int = 0  # attempts of this run
    exit_code: int | None = None
    error_type: str | None = None
    message: str | None = None
    output: str | None = None
    elapsed: float = 0.0
    phase: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("phase")
        d["elapsed"] = round(self.elapsed, 3)
        return d


@dataclass
class BatchResult:
    exit_code: int
    machines: list[MachineResult]
    interrupted: bool = False
    state: str = ""
    elapsed: float = 0.0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.machines:
            out[m.state] = out.get(m.state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "interrupted": self.interrupted,
                "state": self.state, "elapsed": round(self.elapsed, 3),
                "counts": self.counts(), "machines": [m.to_dict() for m in self.machines]}

    def summary_lines(self) -> list[str]:
        c = self.counts()
        lines = [f"{m.name}: FAILED (exit {m.exit_code}, {m.attempts} attempt(s)): {m.message}"
                 for m in self.machines if m.state == FAILED]
        lines += [f"{m.name}: {m.state}" + (f": {m.message}" if m.message else "")
                  for m in self.machines if m.state not in (DONE, FAILED)]
        lines.append(", ".join(f"{n} {s}" for s, n in sorted(c.items()))
                     + (" (interrupted)" if self.interrupted else ""))
        return lines


@dataclass
class _Attempt:
    machine: Machine
    number: int  # 1 for the first attempt of this run
    proc: subprocess.Popen[bytes]
    started: float
    stdout: Path
    log: Path
    host: str
    files: list[IO[bytes]] = field(default_factory=list)
    placed: bool = False  # (Ray) the task reported its node, and the ledger has it


Launcher = Callable[[Machine, int, Path, Path], subprocess.Popen[bytes]]


def die_with_parent() -> None:
    """In a conversion's child, before exec: SIGTERM when the process that started it
    dies (``PR_SET_PDEATHSIG``), which the CLI unwinds like Ctrl-C.  A driver killed
    outright (SIGKILL, OOM) then leaves no conversion running unrecorded; the ledger
    shows them started and never finished, and the next run resumes them."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def local_launcher(python: str = sys.executable, dry_run: bool = False) -> Launcher:
    """Start one machine's conversion as a child process of its own session (so a
    terminal's Ctrl-C reaches the driver only, which then stops each child itself)."""

    def launch(m: Machine, attempt: int, stdout: Path, log: Path) -> subprocess.Popen[bytes]:
        with open(stdout, "wb") as out, open(log, "ab") as err:
            return subprocess.Popen(
                [python, "-m", "p2vimage", *m.convert_argv(dry_run=dry_run)],
                cwd=m.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, preexec_fn=die_with_parent)

    return launch


def run(manifest: str | os.PathLike[str] | Manifest, state: str | os.PathLike[str], *,
        engine: str = "local", max_in_flight: int | None = None, retries: int = 2,
        only: Iterable[str] | None = None, retry_failed: bool = False,
        junit: str | os.PathLike[str] | None = None, retry_delay: float = 5.0,
        on_update: Callable[[list[MachineResult]], None] | None = None,
        stop_wait: float = STOP_WAIT, python: str = sys.executable,
        address: str | None = None) -> BatchResult:
    """Convert every machine of ``manifest`` not yet done in the ``state`` directory.

    Machines done (committed report, output present) are skipped; machines that failed
    in an earlier run are skipped unless ``retry_failed``; ``only`` limits the run to
    those names.  ``on_update`` gets the rows of the live table twice a second.
    ``stop_wait``: the seconds in-flight conversions get to unwind after a Ctrl-C
    before SIGTERM (and as long again before SIGKILL).  The result's ``exit_code``: 0
    every selected machine converted, 1 one or more failed (their reasons in the
    result), 130 interrupted.  An invalid manifest or option is a UsageError before
    anything starts.  ``engine="ray"`` runs each conversion as a task of the Ray cluster
    at ``address`` (see :mod:`p2vimage.batch.ray_engine`).
    """
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine {engine}: local or ray")
    if max_in_flight is not None and max_in_flight < 1:
        raise UsageError(f"--max-in-flight: at least 1, not {max_in_flight}")
    if retries < 0:
        raise UsageError(f"--retries: 0 or more, not {retries}")
    m = manifest if isinstance(manifest, Manifest) else load(manifest)
    machines = m.select(only)
    limit = max_in_flight or default_max_in_flight()
    state_dir = Path(state)
    with ledger_mod.run_lock(state_dir):
        if engine == "local":
            return _Run(Ledger(state_dir), machines, limit, retries, retry_failed,
                        retry_delay, local_launcher(python), on_update, stop_wait).go(junit)
        from .ray_engine import RayLauncher

        launcher = RayLauncher(address)
        try:
            launcher.check_hosts(machines)
            return _Run(Ledger(state_dir), machines, limit, retries, retry_failed,
                        retry_delay, launcher, on_update, stop_wait).go(junit)
        finally:
            launcher.close()


def run_index(manifest: str | os.PathLike[str], state: str | os.PathLike[str],
              index: int | None = None, *, machines: list[str] | None = None,
              python: str = sys.executable,
              stop_wait: float = STOP_WAIT) -> tuple[int, MachineResult]:
    """Convert the manifest's row ``index`` (default: ``$JOB_COMPLETION_INDEX``), or
    with ``machines`` (a host's Job) the machine named ``machines[index]``, once, and
    return the conversion's own exit code and its row (0 done, 1-4 permanent, 5
    temporary or a lost worker, 130 interrupted): the pod's exit code, which the Job's
    podFailurePolicy reads.  The Job retries; this records each attempt in the shared
    ledger, with ``$P2VIMAGE_HOST`` (the pod's node) as its host when set."""
    if index is None:
        raw = os.environ.get("JOB_COMPLETION_INDEX")
        if raw is None or not raw.isdigit():
            raise UsageError("run-index: no index given and JOB_COMPLETION_INDEX is not set")
        index = int(raw)
    m = load(manifest)
    if machines is not None:
        if not 0 <= index < len(machines):
            raise UsageError(f"run-index: index {index} is not one of the {len(machines)} "
                             "machines of --machines")
        (machine,) = m.select([machines[index]])
    else:
        if not 0 <= index < len(m.machines):
            raise UsageError(f"run-index: index {index} is not a row of {m.path} "
                             f"(0 to {len(m.machines) - 1})")
        machine = m.machines[index]
    ledger = Ledger(state)
    with ledger_mod.run_lock(ledger.machine_dir(machine.name)):  # pods share the state
        run = _Run(ledger, [machine], 1, 0, True, 0.0, local_launcher(python), None,
                   stop_wait)
        run.host = os.environ.get("P2VIMAGE_HOST") or run.host  # the node, not the pod
        result = run.go(None, summary=False)
    row = result.machines[0]
    if result.interrupted:
        return EXIT_INTERRUPTED, row
    if row.state == DONE:
        return EXIT_OK, row
    code = row.exit_code
    return (code if code in PERMANENT else EXIT_TEMPORARY), row


class _Run:
    def __init__(self, ledger: Ledger, machines: list[Machine], limit: int, retries: int,
                 retry_failed: bool, retry_delay: float, launch: Launcher,
                 on_update: Callable[[list[MachineResult]], None] | None,
                 stop_wait: float = STOP_WAIT) -> None:
        self.stop_wait = stop_wait
        self.ledger = ledger
        self.machines = machines
        self.limit = limit
        self.retries = retries
        self.retry_failed = retry_failed
        self.retry_delay = retry_delay
        self.launch = launch
        self.on_update = on_update
        self.host = socket.gethostname()
        self.rows = {mm.name: MachineResult(mm.name, PENDING) for mm in machines}
        self.in_flight: dict[str, _Attempt] = {}
        self.waiting: list[tuple[float, Machine, int]] = []  # (not before, machine, next)

    def go(self, junit: str | os.PathLike[str] | None, summary: bool = True) -> BatchResult:
        t0 = time.monotonic()
        before = self.ledger.states(mm.name for mm in self.machines)
        queue: deque[tuple[Machine, int]] = deque()
        for mm in self.machines:
            s, row = before[mm.name], self.rows[mm.name]
            if s.state == DONE and _report_output(self.ledger, mm.name) != str(mm.output):
                s = ledger_mod.MachineState(mm.name, PENDING)  # the manifest moved its output
            if s.state == DONE:
                row.state, row.host = DONE, s.host
                row.output = str(mm.output)
            elif s.state == FAILED and not self.retry_failed:
                row.state, row.exit_code, row.error_type = FAILED, s.exit_code, s.error_type
                row.host = s.host
                row.message = (f"{s.message} (failed in an earlier run; --retry-failed "
                               "runs it again)")
                self.ledger.append("skipped", mm.name, reason="failed earlier")
            else:
                row.state = QUEUED
                queue.append((mm, 1))
                self.ledger.append("queued", mm.name, sources=mm.display_sources,
                                   output=str(mm.output), resumed=s.state != PENDING)
        interrupted = False
        try:
            last = float("-inf")  # the first pass shows the table
            while queue or self.in_flight or self.waiting:
                now = time.monotonic()
                for item in [w for w in self.waiting if w[0] <= now]:
                    self.waiting.remove(item)
                    queue.append((item[1], item[2]))
                while queue and len(self.in_flight) < self.limit:
                    self._start(*queue.popleft())
                for name, a in list(self.in_flight.items()):
                    code = a.proc.poll()
                    self._placed(a)
                    if code is not None:
                        del self.in_flight[name]
                        self._finish(a, code)
                if self.on_update is not None and now - last >= 0.5:
                    last = now
                    self.on_update(self._snapshot())
                time.sleep(POLL)
        except KeyboardInterrupt:
            interrupted = True
            self._stop_all()
            for mm, _ in queue:
                self.rows[mm.name].state = INTERRUPTED
            for _, mm, _n in self.waiting:
                self.rows[mm.name].state = INTERRUPTED
        if self.on_update is not None:
            self.on_update(self._snapshot())
        results = list(self.rows.values())
        code = (EXIT_INTERRUPTED if interrupted
                else EXIT_OK if all(r.state == DONE for r in results) else EXIT_NOT_READY)
        result = BatchResult(code, results, interrupted, str(self.ledger.dir.resolve()),
                             time.monotonic() - t0)
        self.ledger.append("run-ended", exit_code=code, counts=result.counts())
        if not summary:  # one pod of many: the ledger is the shared record
            return result
        ledger_mod.write_atomic(self.ledger.dir / "summary.json",
                                (json.dumps(result.to_dict(), indent=2) + "\n").encode())
        xml = reports.batch_junit(results)
        ledger_mod.write_atomic(self.ledger.dir / "junit.xml", xml)
        if junit is not None:
            ledger_mod.write_atomic(Path(junit), xml)
        return result

    def _snapshot(self) -> list[MachineResult]:
        now = time.monotonic()
        for name, a in self.in_flight.items():
            row = self.rows[name]
            row.elapsed = now - a.started
            row.phase = _last_line(a.log)
        return [MachineResult(**r.__dict__) for r in self.rows.values()]

    def _start(self, m: Machine, attempt: int) -> None:
        d = self.ledger.machine_dir(m.name)
        d.mkdir(parents=True, exist_ok=True)
        # output-dir is the batch's: made here, where convert would refuse a missing one
        m.output.parent.mkdir(parents=True, exist_ok=True)
        log, stdout = d / "convert.log", d / f"attempt-{attempt}.json"
        # where it runs: this host, or (Ray) where it is asked to run until it reports
        # its node (the manifest's host, any node, or for a retry another node)
        host = getattr(self.launch, "host_of", lambda _m, _a: self.host)(m, attempt)
        with open(log, "ab") as f:
            f.write(f"=== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} attempt "
                    f"{attempt} on {host}\n".encode())
        proc = self.launch(m, attempt, stdout, log)
        self.in_flight[m.name] = _Attempt(m, attempt, proc, time.monotonic(), stdout, log,
                                          host)
        row = self.rows[m.name]
        row.state, row.host, row.attempts, row.phase = RUNNING, host, attempt, "starting"
        self.ledger.append("started", m.name, host=host, attempt=attempt, pid=proc.pid)

    def _placed(self, a: _Attempt) -> None:
        """A Ray task reported the node it runs on: the ledger says so at once (a
        ``placed`` event), so even an attempt lost with its node has its host."""
        where = getattr(a.proc, "host", None)
        if where is None or a.placed:
            return
        a.placed = True
        a.host = self.rows[a.machine.name].host = where
        self.ledger.append("placed", a.machine.name, host=where, attempt=a.number)

    def _finish(self, a: _Attempt, code: int, stopped: bool = False) -> None:
        self._placed(a)
        m, row = a.machine, self.rows[a.machine.name]
        elapsed = time.monotonic() - a.started
        row.elapsed, row.exit_code, row.phase = elapsed, code, ""
        _scrub_file(a.log, m)
        doc = _read_json(a.stdout)
        with contextlib.suppress(FileNotFoundError):
            a.stdout.unlink()
        row.host = a.host  # (Ray: where it really ran, when the task said so)
        kind = classify(code)
        if kind == "done" and (doc is None or "outputs" not in doc):
            kind = "lost"  # exit 0 without a report: not work we can count
        error = doc.get("error") if isinstance(doc, dict) else None
        etype = error.get("type") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if kind == "lost" and message is None:
            message = getattr(a.proc, "lost_reason", None) or (
                       f"worker lost (killed by {signal.Signals(-code).name})" if code < 0
                       else f"worker lost (exit {code}): {_last_line(a.log)}")
        message = m.scrub(message) if message else message
        row.error_type, row.message = etype, message
        fields = dict(host=a.host, attempt=a.number, exit_code=code, error_type=etype,
                      message=message, elapsed=round(elapsed, 3))
        if stopped:
            row.state = INTERRUPTED
            self.ledger.append("finished", m.name, outcome=INTERRUPTED, **fields)
        elif kind == "done":
            assert isinstance(doc, dict)
            report = reports.scrub_json(doc, m.scrub)
            self.ledger.commit_report(m.name, report, reports.check_junit(report))
            row.state, row.output, row.message = DONE, str(m.output), None
            self.ledger.append("finished", m.name, outcome=DONE, **fields)
        elif kind in ("temporary", "lost") and a.number <= self.retries:
            row.state = QUEUED
            self.ledger.append("finished", m.name, outcome="retry", **fields)
            delay = self.retry_delay * a.number
            self.ledger.append("retried", m.name, attempt=a.number + 1, after=delay,
                               cause=kind)
            self.waiting.append((time.monotonic() + delay, m, a.number + 1))
        else:
            row.state = FAILED
            self.ledger.append("finished", m.name, outcome=FAILED, cause=kind, **fields)

    def _stop_all(self) -> None:
        """SIGINT every child, then SIGTERM, then SIGKILL its process group; a second
        Ctrl-C meanwhile is ignored (the stop is already under way)."""
        main = _in_main_thread()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                for a in self.in_flight.values():
                    with contextlib.suppress(ProcessLookupError):
                        a.proc.send_signal(sig)
                deadline = time.monotonic() + self.stop_wait
                while time.monotonic() < deadline and any(
                        a.proc.poll() is None for a in self.in_flight.values()):
                    time.sleep(POLL)
            for a in self.in_flight.values():
                if a.proc.poll() is None:
                    kill = getattr(a.proc, "kill_tree", None)
                    if kill is not None:
                        kill()
                    else:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(a.proc.pid, signal.SIGKILL)
                    a.proc.wait()
            for a in list(self.in_flight.values()):
                self._finish(a, a.proc.returncode, stopped=True)
            self.in_flight.clear()
        finally:
            if main:
                signal.signal(signal.SIGINT, old)


def _report_output(ledger: Ledger, name: str) -> str | None:
    report = ledger.committed_report(name)
    return str((report or {}).get("outputs", [None])[0])


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _last_line(path: Path, limit: int = 60) -> str:
    """The last non-empty line of a log (its tail only is read), cut to ``limit``."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    line = lines[-1].strip().removeprefix("p2vimage: ") if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _scrub_file(path: Path, m: Machine) -> None:
    """Rewrite a log without this machine's secrets (the CLI redacts its own messages;
    this covers what a tool it ran might have printed)."""
    if not m.secrets:
        return
    with contextlib.suppress(OSError):
        text = path.read_bytes().decode(errors="replace")
        clean = m.scrub(text)
        if clean != text:
            ledger_mod.write_atomic(path, clean.encode())
