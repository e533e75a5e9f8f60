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
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import EXIT_INTERRUPTED, UsageError
from .engine import die_with_parent
from .manifest import Machine

RESOURCE = "p2v"
HOST_RESOURCE = "host:{}"
HOST_SHARE = 0.001  # a sliver of host:NAME: placement, not a limit (p2v limits)
LOST = 255  # the returncode of a task Ray lost (node or worker died): a lost worker


def convert_task(argv: list[str], cwd: str) -> dict[str, Any]:
    """The body of a Ray task: one conversion in a subprocess of the worker.

    A cancel (``ray.cancel``) arrives as KeyboardInterrupt: it is passed on as SIGINT,
    and the conversion gets the time it needs to unwind."""
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
    import ray

    return {"exit_code": proc.returncode, "stdout": out.decode(errors="replace"),
            "log": err.decode(errors="replace"), "host": socket.gethostname(),
            "node_id": ray.get_runtime_context().get_node_id()}


class RayAttempt:
    """One task, looking to the engine like a child process (poll, send_signal, wait)."""

    def __init__(self, ray: Any, ref: Any, stdout: Path, log: Path,
                 node_name: Any = None) -> None:
        self.ray = ray
        self.node_name = node_name
        self.ref = ref
        self.stdout = stdout
        self.log = log
        self.pid = None
        self.returncode: int | None = None
        self.host: str | None = None
        self.lost_reason: str | None = None

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        ready, _ = self.ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        from ray.exceptions import RayError, TaskCancelledError

        try:
            res = self.ray.get(self.ref)
        except TaskCancelledError:
            self.returncode = EXIT_INTERRUPTED
            self.lost_reason = "stopped (task cancelled)"
        except RayError as exc:
            self.returncode = LOST
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.lost_reason = f"worker lost ({type(exc).__name__}): {first}"[:300]
        else:
            self.returncode = res["exit_code"]
            named = self.node_name(res.get("node_id")) if self.node_name else None
            self.host = named or res["host"]
            self.stdout.write_text(res["stdout"])
            with open(self.log, "a") as f:
                f.write(res["log"])
            if self.returncode is not None and self.returncode < 0:
                self.lost_reason = (f"worker lost (conversion killed by "
                                    f"{signal.Signals(-self.returncode).name})")
        return self.returncode

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(Exception):
            self.ray.cancel(self.ref, force=False)

    def kill_tree(self) -> None:
        with contextlib.suppress(Exception):
            self.ray.cancel(self.ref, force=True)

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
        self.remote = ray.remote(convert_task)

    def host_of(self, m: Machine) -> str:
        return m.host or "ray (any node)"

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
        ref = self.remote.options(num_cpus=0, resources=resources, max_retries=0,
                                  name=f"p2vimage-{m.name}-{attempt}").remote(
            m.convert_argv(dry_run=self.dry_run), str(m.workdir))
        return RayAttempt(self.ray, ref, stdout, log, self.node_name)

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
