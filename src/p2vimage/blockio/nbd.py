"""A disk image opened through qemu's own block layer on the host, over NBD.

qemu-nbd reads every format qemu knows (our qcow2 overlay over a raw, vmdk, vhdx …
source) and writes qcow2, so the host-side copy never has to parse a container
format itself.  Each export is a private ``qemu-nbd`` on a Unix socket in the job's
work directory, read with libnbd (Debian ``python3-libnbd``).

Lifetime: the server runs in its own session (a Ctrl-C on the terminal reaches us,
not it, so we decide how it ends), and :class:`NbdExport` stops it on every way out
of the ``with`` block; after a clean stop qemu has flushed the image.  A server that
dies under us surfaces as :class:`ConversionError` from the libnbd call.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from .. import deps
from ..errors import ConversionError

log = logging.getLogger("p2vimage")

START_TIMEOUT = 30.0


def libnbd() -> Any:
    return deps.require_module("nbd")


_ACCEPTCON = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's Flags column: listen() done


def listening(socket: Path) -> bool:
    """Whether a server listens on the Unix socket ``socket``.

    Its file appears at ``bind()``, a moment before ``listen()``; a client that
    connects in between is refused (CI met it about once in fifty starts).  The
    kernel's table of Unix sockets says which bound ones listen, under the path
    exactly as the server gave it; without procfs the file's existence has to do."""
    want = str(socket)
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
            next(table, None)  # the header
            for line in table:
                cols = line.rstrip("\n").split(None, 7)
                if len(cols) == 8 and cols[7] == want and int(cols[3], 16) & _ACCEPTCON:
                    return True
    except OSError:
        return socket.exists()
    return False


def errno_of(exc: BaseException) -> int | None:
    """The errno of a libnbd error, as a number.

    ``nbd.Error.errno`` is the errno's *name* (``'ECONNREFUSED'``), never equal to
    :data:`errno.ECONNREFUSED`; the number is the exception's second argument."""
    args = getattr(exc, "args", ())
    return args[1] if len(args) > 1 and isinstance(args[1], int) else None


def connect_started(nbd: Any, socket: Path, proc: subprocess.Popen[bytes], name: str, *,
                    allocation: bool = False,
                    retry: Callable[[Any], bool] = lambda exc: True) -> Any:
    """A libnbd handle connected to the server ``proc`` just started on ``socket``.

    The socket file appears when the server binds it, a moment before it listens: a
    refused connection is tried again (with a fresh handle; a failed one is not
    reusable) while ``retry(error)`` says so, the server runs and
    :data:`START_TIMEOUT` has not passed; then the last ``nbd.Error`` is raised."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        h = nbd.NBD()
        h.set_handle_name(name)
        if allocation:
            h.add_meta_context("base:allocation")
        try:
            h.connect_unix(str(socket))
            return h
        except nbd.Error as exc:
            if not retry(exc) or proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class NbdExport:
    """``with NbdExport(image, fmt, socket, writable=...) as h:`` — an open libnbd handle."""

    def __init__(self, image: Path, fmt: str, workdir: Path | None = None, *,
                 writable: bool = False, label: str | None = None) -> None:
        self.image = image
        self.fmt = fmt
        self.workdir = workdir
        self.sockdir: Path | None = None
        self.socket = Path()
        self.writable = writable
        self.label = label or image.name
        self.proc: subprocess.Popen[bytes] | None = None
        self.handle: Any = None

    def __enter__(self) -> Any:
        nbd = libnbd()
        qemu_nbd = deps.require_program("qemu-nbd")
        self.sockdir = _socket_dir(self.workdir)
        self.socket = self.sockdir / "nbd.sock"
        cmd = [qemu_nbd, "--format", self.fmt, "--socket", str(self.socket),
               "--export-name", "", "--shared", "1", "--cache", "writeback", "--aio", "threads"]
        if not self.writable:
            cmd.append("--read-only")
        cmd.append(str(self.image))
        errlog = self.sockdir / "qemu-nbd.log"
        with open(errlog, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True,
                                         preexec_fn=_die_with_parent(os.getpid()))
        try:
            self._wait_for_socket(errlog)
            h = self._connect(nbd, errlog)
            if self.writable and h.is_read_only():
                raise ConversionError(f"{self.label}: the NBD export is read-only")
            self.handle = h
        except BaseException:
            self._stop()
            raise
        return h

    def _connect(self, nbd: Any, errlog: Path) -> Any:
        assert self.proc is not None
        try:
            return connect_started(nbd, self.socket, self.proc, f"p2vimage:{self.label}",
                                   allocation=True)
        except nbd.Error as exc:
            text = errlog.read_text(errors="replace").strip().splitlines()
            raise ConversionError(
                f"cannot connect to qemu-nbd for {self.label}: "
                f"{text[-1] if text else str(exc).splitlines()[0]}") from None

    def _wait_for_socket(self, errlog: Path) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not listening(self.socket):
            if self.proc.poll() is not None:
                text = errlog.read_text(errors="replace").strip().splitlines()
                raise ConversionError(f"qemu-nbd could not open {self.label}: "
                                      f"{text[-1] if text else f'exit {self.proc.returncode}'}")
            if time.monotonic() > deadline:
                raise ConversionError(f"qemu-nbd did not start for {self.label} in "
                                      f"{START_TIMEOUT:.0f} s")
            time.sleep(0.01)

    def _stop(self) -> int | None:
        if self.handle is not None:
            try:
                self.handle.shutdown()
            except Exception:  # noqa: BLE001 - the server may be gone already
                pass
            self.handle = None  # libnbd closes the handle when it is collected
        code = None
        if self.proc is not None:
            # qemu-nbd exits by itself once its one client has gone; SIGTERM if it lingers
            # (it flushes the image on SIGTERM too); SIGKILL only if that hangs.
            try:
                code = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    code = self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    code = self.proc.wait()
            self.proc = None
        if self.sockdir is not None:
            shutil.rmtree(self.sockdir, ignore_errors=True)
            self.sockdir = None
        return code

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None and self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # an error or interrupt: do not wait for a flush
        code = self._stop()
        if exc_type is None and code not in (0, None):
            raise ConversionError(f"qemu-nbd for {self.label} ended with exit code {code}")


def _socket_dir(workdir: Path | None) -> Path:
    """A private directory for the socket: in the job's work directory, unless that
    path is too long for a Unix socket address (108 bytes), then in /tmp."""
    d = Path(tempfile.mkdtemp(prefix="nbd-", dir=workdir))
    if len(str(d / "nbd.sock")) < 100:
        return d
    d.rmdir()
    return Path(tempfile.mkdtemp(prefix="p2vimage-nbd-", dir="/tmp"))


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Any:
    """A ``preexec_fn`` that has the kernel send the server SIGTERM when the thread that
    started it dies, so a job killed with SIGKILL (nothing of ours runs) leaves no
    server behind: qemu-nbd exits by itself when its client disconnects, but not when
    the client died before connecting.  Each export is started and stopped by the same
    thread (a ``with`` block), so the thread's end is the export's end anyway."""
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def server_processes(parents: set[int] | None = None, program: str = "qemu-nbd") -> list[int]:
    """PIDs of running ``program`` (``qemu-nbd``, ``nbdkit``) processes, only those whose
    parent is in ``parents`` when given (tests assert that none is left behind by a job)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv0 = (d / "cmdline").read_bytes().split(b"\0")[0]
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if os.path.basename(argv0) == program.encode() and (parents is None or ppid in parents):
            pids.append(int(d.name))
    return pids
