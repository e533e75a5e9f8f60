"""``--engine ray``: each machine a Ray task running one conversion in a subprocess.

The driver (``batch run``) keeps everything the local engine has: the ledger, the
retries by exit code, the global in-flight limit (it protects the shared storage the
captures and outputs live on), Ctrl-C.  Only the launch differs: instead of a local
child, a Ray task that needs one unit of the custom resource ``p2v`` (the conversions a
host may run: ``ray start --resources='{"p2v": 2}'``) and, when the manifest names a
host, a sliver of ``host:NAME`` (each hypervisor offers ``{"host:hv07": 1}``), starts
``python -m p2vimage convert … --json`` on that node and returns its exit code, its JSON
document and its log.  Only paths and those texts travel: the disks are read and
written by the node from the shared storage.

Ray's own task retries are off (``max_retries=0``): a task lost with its node comes
back to the driver as a lost worker and is retried by the driver, so the ledger has
every attempt.  The conversion dies with its worker (``PR_SET_PDEATHSIG``: SIGTERM,
which the CLI unwinds like Ctrl-C, removing its partial outputs).

The task is a streaming generator: it first yields where it runs (its node), then the
conversion's result.  So the driver knows each attempt's node while it runs, even when
the node is then lost, and a retry of a machine not pinned to a host prefers another
live ``p2v`` node (a soft node affinity: a node that fails an attempt — no space, an
appliance that does not launch, a node that dies — should not get the retry too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import EXIT_INTERRUPTED, UsageError
from .engine import die_with_parent
from .manifest import Machine

RESOURCE = "p2v"
HOST_RESOURCE = "host:{}"
HOST_SHARE = 0.001  # a sliver of host:NAME: placement, not a limit (p2v limits)
LOST = 255  # the returncode of a task Ray lost (node or worker died): a lost worker


def convert_task(argv: list[str], cwd: str) -> Iterator[dict[str, Any]]:
    """The body of a Ray task: one conversion in a subprocess of the worker.

    Yields where it runs first (so the driver knows the node of an attempt that is
    lost), then the conversion's exit code, JSON and log.  A cancel (``ray.cancel``)
    arrives as KeyboardInterrupt: it is passed on as SIGINT, and the conversion gets
    the time it needs to unwind."""
    import ray

    yield {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname()}
    proc = subprocess.Popen([sys.executable, "-m", "p2vimage", *argv], cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=die_with_parent)
    try:
        out, err = proc.communicate()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            proc.kill()
            out, err = proc.communicate()
    yield {"exit_code": proc.returncode, "stdout": out.decode(errors="replace"),
           "log": err.decode(errors="replace")}


def pick_node(nodes: list[dict[str, Any]], avoid: str | None,
              load: dict[str, int]) -> str | None:
    """The node a retry should prefer: a live node offering ``p2v`` other than
    ``avoid`` (where the last attempt ran) with a ``p2v`` slot this driver's
    conversions (``load``: node id -> in flight) leave free, the least loaded first,
    ties by node id; None when there is none (then Ray places it anywhere).

    A full node is never preferred: Ray's soft node affinity waits for a live node's
    resources rather than spilling over, so a retry steered to a busy node would sit
    idle while another node, even the one it failed on, could run it."""
    free = [n["NodeID"] for n in nodes if n.get("Alive") and n["NodeID"] != avoid
            and load.get(n["NodeID"], 0) < n.get("Resources", {}).get(RESOURCE, 0)]
    return min(free, key=lambda n: (load.get(n, 0), n)) if free else None


class RayAttempt:
    """One task, looking to the engine like a child process (poll, send_signal, wait).

    ``host`` and ``node_id`` are set as soon as the task reports where it runs."""

    def __init__(self, ray: Any, gen: Any, stdout: Path, log: Path,
                 node_name: Callable[[str | None], str | None] | None = None,
                 preferred: str | None = None) -> None:
        self.ray = ray
        self.node_name = node_name
        self.gen = gen  # the task's ObjectRefGenerator: where it runs, then its result
        self.stdout = stdout
        self.log = log
        self.preferred = preferred  # the node id a retry was steered to, if any
        self.pid = None
        self.returncode: int | None = None
        self.host: str | None = None
        self.node_id: str | None = None
        self.lost_reason: str | None = None

    def _next(self) -> dict[str, Any] | None:
        """The task's next item when it is there (None: not yet); a lost or cancelled
        task ends the attempt here (returncode set, and None returned)."""
        from ray.exceptions import RayError, TaskCancelledError

        ready, _ = self.ray.wait([self.gen], timeout=0)
        if not ready:
            return None
        try:
            return self.ray.get(next(self.gen))
        except TaskCancelledError:
            self.returncode = EXIT_INTERRUPTED
            self.lost_reason = "stopped (task cancelled)"
        except StopIteration:
            self.returncode = LOST
            self.lost_reason = "worker lost (the task ended without a result)"
        except RayError as exc:
            self.returncode = LOST
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.lost_reason = f"worker lost ({type(exc).__name__}): {first}"[:300]
        return None

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if self.node_id is None:
            placed = self._next()
            if placed is None:
                return self.returncode
            self.node_id = placed["node_id"]
            named = self.node_name(self.node_id) if self.node_name else None
            self.host = named or placed["host"]
        res = self._next()
        if res is None:
            return self.returncode
        self.returncode = res["exit_code"]
        self.stdout.write_text(res["stdout"])
        with open(self.log, "a") as f:
            f.write(res["log"])
        if self.returncode is not None and self.returncode < 0:
            self.lost_reason = (f"worker lost (conversion killed by "
                                f"{signal.Signals(-self.returncode).name})")
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(Exception):
            self.ray.cancel(self.gen, force=False)

    def kill_tree(self) -> None:
        with contextlib.suppress(Exception):
            self.ray.cancel(self.gen, force=True)

    def wait(self, timeout: float | None = None) -> int:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("ray task", timeout or 0)
            time.sleep(0.1)
        assert self.returncode is not None
        return self.returncode


class RayLauncher:
    """Connects to the cluster once; each call submits one machine's task."""

    def __init__(self, address: str | None, dry_run: bool = False) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError("--engine ray needs Ray: pip install 'p2vimage[ray]'") from None
        address = address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise UsageError("--engine ray: give --address HOST:PORT (or set RAY_ADDRESS)")
        self._stdout: int | None = None
        self.ray = ray
        self.dry_run = dry_run
        self.last: dict[str, RayAttempt] = {}  # each machine's latest attempt
        self._chosen: dict[tuple[str, int], str | None] = {}  # (machine, attempt) -> node
        # Ray prints on the driver's stdout ("(raylet) Raylet is terminated…" when a node
        # dies), which is --json's: while Ray runs here, fd 1 is stderr.
        sys.stdout.flush()
        self._stdout = os.dup(1)
        os.dup2(2, 1)
        try:
            self._join(address)
        except BaseException:
            self.close()
            raise

    def _join(self, address: str) -> None:
        ray = self.ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                         configure_logging=False)
            except Exception as exc:  # noqa: BLE001 - any failure to join: bad address, token
                raise UsageError(f"--address {address}: cannot join the Ray cluster "
                                 f"({str(exc).splitlines()[0] if str(exc) else exc})"
                                 ) from None
        total = ray.cluster_resources()
        if total.get(RESOURCE, 0) < 1:
            raise UsageError(f"the Ray cluster at {address} offers no '{RESOURCE}' resource: "
                             "start its nodes with --resources='{\"p2v\": N}'")
        self.remote = ray.remote(convert_task)  # a generator: a streaming task

    def host_of(self, m: Machine, attempt: int = 1) -> str:
        """Where an attempt is asked to run, for the ledger's ``started`` and the log."""
        if m.host:
            return m.host
        prefer = self._prefer(m, attempt)
        return f"ray (prefer {self.node_name(prefer) or prefer})" if prefer else "ray (any node)"

    def _prefer(self, m: Machine, attempt: int) -> str | None:
        """For a retry of a machine not pinned to a host, a live ``p2v`` node other
        than the one its last attempt ran on (None: no preference)."""
        key = (m.name, attempt)
        if key in self._chosen:  # asked once for the log and ledger, once to submit
            return self._chosen[key]
        prev = self.last.get(m.name)
        if m.host or attempt <= 1 or prev is None or prev.node_id is None:
            return None
        load: dict[str, int] = {}
        for a in self.last.values():
            where = a.node_id or a.preferred
            if a.returncode is None and where is not None:
                load[where] = load.get(where, 0) + 1
        self._chosen[key] = pick_node(self.ray.nodes(), prev.node_id, load)
        return self._chosen[key]

    def check_hosts(self, machines: list[Machine]) -> None:
        """A machine pinned to a host no node offers would wait for ever: refused."""
        total = self.ray.cluster_resources()
        missing = sorted({m.host for m in machines if m.host
                          and total.get(HOST_RESOURCE.format(m.host), 0) <= 0})
        if missing:
            raise UsageError("no Ray node offers " + ", ".join(
                f"'{HOST_RESOURCE.format(h)}'" for h in missing) + " (start the node with "
                "--resources='{\"p2v\": N, \"host:NAME\": 1}')")

    def __call__(self, m: Machine, attempt: int, stdout: Path, log: Path) -> RayAttempt:
        resources = {RESOURCE: 1.0}
        if m.host:
            resources[HOST_RESOURCE.format(m.host)] = HOST_SHARE
        options: dict[str, Any] = dict(num_cpus=0, resources=resources, max_retries=0,
                                       name=f"p2vimage-{m.name}-{attempt}")
        prefer = self._prefer(m, attempt)
        if prefer is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            # soft: if that node dies first, anywhere; while it is busy, the retry waits
            # for its slot (it was picked as the one with the fewest of ours)
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(prefer, soft=True)
        gen = self.remote.options(**options).remote(
            m.convert_argv(dry_run=self.dry_run), str(m.workdir))
        self._chosen.pop((m.name, attempt), None)
        a = RayAttempt(self.ray, gen, stdout, log, self.node_name, prefer)
        self.last[m.name] = a
        return a

    def node_name(self, node_id: str | None) -> str | None:
        """A node's name for the ledger: its ``host:NAME`` resource, else its address."""
        for n in self.ray.nodes():
            if n.get("NodeID") == node_id:
                hosts = sorted(k.split(":", 1)[1] for k in n.get("Resources", {})
                               if k.startswith("host:"))
                return hosts[0] if hosts else n.get("NodeManagerAddress")
        return None

    def close(self) -> None:
        """Leave the cluster and give stdout back."""
        with contextlib.suppress(Exception):
            self.ray.shutdown()
        if self._stdout is not None:
            sys.stdout.flush()
            os.dup2(self._stdout, 1)
            os.close(self._stdout)
            self._stdout = None
