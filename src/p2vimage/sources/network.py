"""A network source (``ssh://``, ``nbd://``, ``nbd+unix://``, ``http(s)://``) as a local image.

Each source gets one ``nbdkit`` of its own, on a Unix socket in a private work
directory, always read-only (``-r``), with the ``retry`` filter (a dropped connection
is reopened, :data:`RETRIES` times with exponential backoff from :data:`RETRY_DELAY`
seconds, without restarting the job) and the ``log`` filter inside it (every read that
reaches the source, retries included, is counted: :meth:`NetworkSource.bytes_read`).
The host copy reads that server directly.  The appliance reads it through a second,
local ``nbdkit`` with the ``cache`` filter (a cache file in the work directory, at most
:data:`CACHE_MAX` bytes): the kernel in the appliance drops and re-reads the same
metadata (MFT, hives, cabinets) as the inspection mounts and unmounts, and without the
cache those re-reads would cross the network again.  The copy does not go through it:
nbdkit 1.32's cache filter serializes every read under one lock (even with
``cache-on-read`` off), which halved the copy's throughput over ssh when both shared it.
The plugin depends on the scheme:

- ``ssh://``: the OpenSSH client, through the Python plugin :mod:`.nbdkit_ssh_dd` (one
  ssh channel per NBD connection, ``dd`` on the other side).  ``nbdkit ssh`` (SFTP)
  cannot serve a block device: SFTP ``stat`` says 0 bytes, and nbdkit 1.32 has no way
  to set the size.  Before nbdkit starts, one ``ssh`` run checks the host key, the key
  and the path and asks the size (``blockdev --getsize64`` for a block device, ``stat``
  for a file), so every bad-input case is a one-line error before any appliance;
- ``nbd://`` and ``nbd+unix://``: ``nbdkit nbd`` in front of the server, so the
  read-only guarantee, the retries and the byte count are the same for every scheme;
- ``http(s)://``: ``nbdkit curl`` (the server must honour ``Range``); a password from
  the URI goes to nbdkit through a 0600 file, never on a command line.

The rest of p2vimage sees a :class:`~.image.SourceImage` whose ``path`` is a small local
qcow2 with no data of its own and the NBD export as its backing file (``-F`` the
source's format, so nothing is probed): the appliance's overlay, the partition table
read on the host and the host-side copy (``qemu-nbd`` over that qcow2) then all read the
source through qemu's own NBD client, with no change to them, and only what they ask
for crosses the network (metadata for the appliance, used clusters for the copy).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import deps
from ..blockio.nbd import _die_with_parent, connect_started, errno_of, libnbd, listening
from ..errors import (
    InsufficientSpaceError,
    MissingDependencyError,
    SourceNotFoundError,
    SourceUnreachableError,
    SourceUnreadableError,
    UnsupportedFormatError,
    UsageError,
)
from . import uri as uri_mod
from .image import SourceImage, classify

log = logging.getLogger("p2vimage")

RETRIES = 5  # reopen attempts of a failed connection (nbdkit's retry filter)
RETRY_DELAY = 2  # whole seconds before the first retry, doubled each time (about 1 min in all)
SSH_CONNECT_TIMEOUT = 20  # seconds
READ_TIMEOUT = 120  # seconds without a byte before an ssh channel is given up
START_TIMEOUT = 30.0
GONE_MARGIN = 5.0  # seconds past the retry schedule before a failing source is gone
# The appliance's read cache: bytes of host disk at most, and its block size (NTFS's
# cluster: the appliance's scattered 4 KiB reads then fetch no more than they ask for).
CACHE_MAX = 1 << 30
CACHE_BLOCK = 4096
CACHE_MIN = 64 << 20  # less free space than this where the cache would live: refused

PLUGIN = Path(__file__).with_name("nbdkit_ssh_dd.py")

# Run over ssh before anything else: what the path is, its size, and whether it reads.
_PROBE = (
    'p=$1; if [ -b "$p" ]; then k=block; s=$(blockdev --getsize64 "$p") || exit 67; '
    'elif [ -f "$p" ]; then k=file; s=$(stat -L -c %s "$p") || exit 67; '
    'elif [ -e "$p" ]; then exit 66; else exit 64; fi; '
    'dd if="$p" of=/dev/null bs=512 count=1 2>/dev/null || exit 65; echo "$k $s"'
)
# The channel of one NBD connection: "OFFSET COUNT" in, COUNT bytes and "K" out.
_SERVE = (
    'p=$1; while read o n; do dd if="$p" bs=1048576 iflag=skip_bytes,count_bytes,fullblock '
    'skip="$o" count="$n" 2>/dev/null && printf K || exit 1; done'
)

_UNREACHABLE = re.compile(
    r"connection refused|connection timed out|timed out|no route to host|network is "
    r"unreachable|could not resolve|couldn't resolve|couldn't connect|name or service not "
    r"known|temporary failure in name resolution|connection reset|connection closed by|"
    r"kex_exchange_identification|broken pipe|failure when receiving|recv failure|"
    r"empty reply|ssl connect error", re.I)
_HTTP_STATUS = re.compile(r"returned error: (\d{3})|response code said error: (\d{3})", re.I)

_READ = re.compile(r"connection=(\d+) Read id=(\d+) offset=0x[0-9a-f]+ count=0x([0-9a-f]+)")
_DONE = re.compile(r"connection=(\d+) \.\.\.Read id=(\d+) return=(-?\d+)")


class NetworkSource:
    """One network source of a job: its nbdkit, its local qcow2 handle and its counters.

    ``NetworkSource(uri, ...).open()`` returns the :class:`SourceImage`; :meth:`close`
    stops nbdkit and removes the work directory (the counters stay readable)."""

    def __init__(self, uri: str, *, source_format: str | None = None,
                 ssh_identity: str | os.PathLike[str] | None = None,
                 ssh_known_hosts: str | os.PathLike[str] | None = None,
                 workdir: Path | None = None) -> None:
        self.spec = uri_mod.parse(uri)
        self.display = self.spec.display
        self.source_format = source_format
        self.ssh_identity = Path(ssh_identity) if ssh_identity else None
        self.ssh_known_hosts = Path(ssh_known_hosts) if ssh_known_hosts else None
        for flag, f in (("--ssh-identity", self.ssh_identity),
                        ("--ssh-known-hosts", self.ssh_known_hosts)):
            if f is not None and not f.is_file():
                raise UsageError(f"{flag} {f}: no such file")
        self._parent = workdir
        self.workdir: Path | None = None
        self.socket = Path()  # the source's nbdkit: the host copy reads here
        self.cache_socket = Path()  # the appliance's read cache in front of it
        self.command: list[str] = []  # nbdkit's command line (tests check -r)
        self.proc: subprocess.Popen[bytes] | None = None
        self.cache_proc: subprocess.Popen[bytes] | None = None
        self.remote_kind = ""  # ssh: "block" or "file"
        self._log = Path()
        self._err = Path()
        self._log_pos = 0
        self._pending: dict[tuple[str, str], int] = {}
        self._last_ok = True  # whether the last read to complete (any connection) worked
        self._failing_since: float | None = None  # first failure after the last success
        self._read = 0
        self._failed = 0

    # -- counters -------------------------------------------------------------------

    def _scan(self) -> None:
        """Read the new complete lines of nbdkit's request log."""
        if not self._log.name:
            return
        try:
            with open(self._log, "rb") as f:
                f.seek(self._log_pos)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1
        self._log_pos += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            if m := _READ.search(line):
                self._pending[(m[1], m[2])] = int(m[3], 16)
            elif m := _DONE.search(line):
                n = self._pending.pop((m[1], m[2]), 0)
                self._last_ok = m[3] == "0"
                if self._last_ok:
                    self._read += n
                    self._failing_since = None
                else:
                    self._failed += 1
                    if self._failing_since is None:
                        self._failing_since = time.monotonic()

    def bytes_read(self) -> int:
        """Bytes read from the source so far (each retried read counted each time)."""
        self._scan()
        return self._read

    def failed_reads(self) -> int:
        """Reads from the source that failed (the retry filter may have recovered them)."""
        self._scan()
        return self._failed

    def failed_for_good(self) -> bool:
        """Whether the last read that reached the source failed (the retry filter reopens
        the plugin under a new connection number, so a recovered failure is followed by
        a success somewhere; a source gone for good fails every read to the end)."""
        self._scan()
        return not self._last_ok

    def gone(self) -> bool:
        """Whether the source is gone for good: a read failed and none has worked since,
        for longer than the retry filter's whole schedule (:func:`retry_window`).  The
        job's watchdog then stops the appliance, whose kernel would otherwise retry
        every failed sector read for many minutes before the job could end."""
        self._scan()
        return (self._failing_since is not None
                and time.monotonic() - self._failing_since > retry_window() + GONE_MARGIN)

    # -- opening ----------------------------------------------------------------------

    def open(self) -> SourceImage:
        """Probe, start nbdkit, settle the format; raise a one-line error on bad input
        (exit 3) or an unreachable host (exit 5)."""
        self.workdir = _short_dir(self._parent)
        self.socket = self.workdir / "nbdkit.sock"
        self.cache_socket = self.workdir / "cache.sock"
        self._log = self.workdir / "requests.log"
        self._err = self.workdir / "nbdkit.err"
        size = self._probe_ssh() if self.spec.scheme == "ssh" else None
        self._start(size)
        nbd = libnbd()
        h = self._connect(nbd)
        try:
            size = h.get_size()
            head = bytes(h.pread(min(size, 65536), 0)) if size else b""
            tail = bytes(h.pread(512, size - 512)) if size >= 512 else b""
        except nbd.Error as exc:
            raise self._error_from_log(f"reading it: {exc}") from None
        finally:
            _shutdown(h)
        fmt, detected = classify(self.display, head, tail, size, self.source_format)
        nbd_uri = f"nbd+unix:///?socket={self.socket}"
        virtual = size
        if fmt != "raw":
            virtual = self._image_info(nbd_uri, fmt)
        self._start_cache()
        handle = self._handle("source.qcow2", self.cache_socket, fmt, virtual)
        direct = self._handle("copy.qcow2", self.socket, fmt, virtual)
        log.info("network source %s: %s, %d bytes, served by nbdkit on %s", self.display,
                 fmt, virtual, self.socket)
        return SourceImage(handle, "qcow2", virtual, 0, detected, origin=self.display,
                           copy_path=direct)

    def _handle(self, name: str, socket: Path, fmt: str, virtual: int) -> Path:
        """A local qcow2 with no data of its own, backed by the NBD export on ``socket``."""
        assert self.workdir is not None
        handle = self.workdir / name
        qemu_img = deps.require_program("qemu-img")
        proc = subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-u", "-F", fmt,
                               "-b", f"nbd+unix:///?socket={socket}", str(handle),
                               str(virtual)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise UnsupportedFormatError(f"{self.display}: cannot make its local handle: "
                                         f"{proc.stderr.strip()}")
        return handle

    def _image_info(self, nbd_uri: str, fmt: str) -> int:
        """A container format read over NBD: its virtual size; one with a backing file
        is refused (qemu would open a file the image names, here or on no machine)."""
        qemu_img = deps.require_program("qemu-img")
        proc = subprocess.run([qemu_img, "info", "--output=json", "--backing-chain", "-f", fmt,
                               nbd_uri], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or ["qemu-img info failed"])[-1]
            raise UnsupportedFormatError(f"{self.display}: not a usable {fmt} image: "
                                         f"{self.spec.scrub(msg.removeprefix('qemu-img: '))}")
        info = json.loads(proc.stdout)
        chain = info if isinstance(info, list) else [info]
        backing = chain[0].get("backing-filename")
        if backing or len(chain) > 1:
            raise UnsupportedFormatError(
                f"{self.display}: the {fmt} image has a backing file ({backing}); "
                "give a self-contained image")
        return int(chain[0].get("virtual-size", 0))

    def _ssh_argv(self) -> list[str]:
        s = self.spec
        argv = [deps.require_program("ssh"), "-T", "-x", "-a", "-e", "none",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-o", "ClearAllForwardings=yes", "-o", "LogLevel=ERROR"]
        if s.port:
            argv += ["-p", str(s.port)]
        if s.user:
            argv += ["-l", s.user]
        if self.ssh_identity:
            argv += ["-i", str(self.ssh_identity), "-o", "IdentitiesOnly=yes"]
        if self.ssh_known_hosts:
            argv += ["-o", f"UserKnownHostsFile={self.ssh_known_hosts}"]
        return [*argv, "--", s.host]

    def _remote(self, script: str) -> str:
        return f"sh -c {shlex.quote(script)} sh {shlex.quote(self.spec.path)}"

    def _probe_ssh(self) -> int:
        """One ssh run: host key, key, path, kind and size, before nbdkit starts."""
        s = self.spec
        where = f"{s.user + '@' if s.user else ''}{s.host}"
        try:
            proc = subprocess.run([*self._ssh_argv(), self._remote(_PROBE)],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=SSH_CONNECT_TIMEOUT * 3, check=False)
        except subprocess.TimeoutExpired:
            raise SourceUnreachableError(f"{self.display}: {s.host} did not answer in "
                                         f"{SSH_CONNECT_TIMEOUT * 3} s") from None
        err = " ".join(proc.stderr.split())
        if proc.returncode == 0:
            try:
                kind, size = proc.stdout.split()
                self.remote_kind = kind
                return int(size)
            except ValueError:
                raise SourceUnreadableError(f"{self.display}: unexpected answer from "
                                            f"{s.host}: {proc.stdout.strip()[:80]}") from None
        codes = {
            64: (SourceNotFoundError, f"no such file or device on {s.host}"),
            65: (SourceUnreadableError, f"{where} cannot read it (permissions, I/O error)"),
            66: (UnsupportedFormatError, "not a disk: neither a block device nor a file"),
            67: (SourceUnreadableError, f"its size cannot be read on {s.host}"),
            127: (SourceUnreadableError, f"{s.host} lacks sh, dd, blockdev or stat"),
        }
        if proc.returncode in codes:
            cls, why = codes[proc.returncode]
            raise cls(f"{self.display}: {why}")
        low = err.lower()
        if "remote host identification has changed" in low or (
                "host key for" in low and "has changed" in low):
            raise SourceUnreadableError(
                f"{self.display}: the host key of {s.host} does NOT match its known_hosts "
                "entry (reinstalled, or someone in between): check the key's fingerprint "
                "on the machine's console before changing known_hosts")
        if "host key is known" in low or "host key verification failed" in low:
            raise SourceUnreadableError(
                f"{self.display}: the host key of {s.host} is not in known_hosts: check its "
                "fingerprint on the machine's console (ssh-keygen -lf "
                "/etc/ssh/ssh_host_ed25519_key.pub) and add it, or give --ssh-known-hosts")
        if "permission denied" in low or "too many authentication failures" in low:
            raise SourceUnreadableError(
                f"{self.display}: {where} refused our ssh keys (load the key into ssh-agent, "
                "or give --ssh-identity FILE; its public key must be in "
                "~/.ssh/authorized_keys on the source)")
        if proc.returncode == 255 and (_UNREACHABLE.search(err) or not err):
            raise SourceUnreachableError(f"{self.display}: cannot reach {s.host}: "
                                         f"{err or 'ssh failed'}")
        raise SourceUnreadableError(f"{self.display}: ssh to {s.host} failed (exit "
                                    f"{proc.returncode}): {err or 'no message'}")

    def _plugin_args(self, size: int | None) -> list[str]:
        s = self.spec
        if s.scheme == "ssh":
            assert size is not None
            args = ["python", str(PLUGIN), f"size={size}", f"timeout={READ_TIMEOUT}"]
            return args + [f"arg={a}" for a in [*self._ssh_argv(), self._remote(_SERVE)]]
        if s.scheme == "nbd":
            args = ["nbd", f"hostname={s.host}", f"export={s.path}"]
            return args + ([f"port={s.port}"] if s.port else [])
        if s.scheme == "nbd+unix":
            return ["nbd", f"socket={s.socket}", f"export={s.path}"]
        args = ["curl", f"url={s.url}", "protocols=http,https", f"timeout={READ_TIMEOUT}"]
        if s.user:
            args.append(f"user={s.user}")
        if s.password is not None:
            assert self.workdir is not None
            pw = self.workdir / "password"
            fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(s.password)
            args.append(f"password=+{pw}")
        return args

    def _start(self, size: int | None) -> None:
        nbdkit = deps.require_program("nbdkit")
        assert self.workdir is not None
        self.command = [nbdkit, "-r", "-f", "--exit-with-parent", "-U", str(self.socket),
                        "--filter=retry", "--filter=log", *self._plugin_args(size),
                        f"retries={RETRIES}", f"retry-delay={RETRY_DELAY}",
                        f"logfile={self._log}"]
        self.proc = self._spawn(self.command, self.socket, {})

    def _start_cache(self) -> None:
        """The appliance's read cache: a second nbdkit, reading the first over NBD.

        Its file grows to :data:`CACHE_MAX`, or half the free space of the work
        directory's filesystem if less (a full filesystem would fail the appliance's
        reads with I/O errors that look like a bad source)."""
        assert self.workdir is not None
        free = shutil.disk_usage(self.workdir).free
        if free < CACHE_MIN:
            raise InsufficientSpaceError(
                f"{self.display}: {free >> 20} MiB free in {self.workdir.parent} for the "
                f"appliance's read cache, {CACHE_MIN >> 20} MiB needed (set TMPDIR to a "
                "filesystem with room)")
        limit = min(CACHE_MAX, free // 2)
        command = [deps.require_program("nbdkit"), "-r", "-f", "--exit-with-parent",
                   "-U", str(self.cache_socket), "--filter=cache", "nbd",
                   f"socket={self.socket}", "cache-on-read=true",
                   f"cache-max-size={limit}", f"cache-min-block-size={CACHE_BLOCK}"]
        # The cache file goes where TMPDIR says: the work directory, removed by close().
        self.cache_proc = self._spawn(command, self.cache_socket, {"TMPDIR": str(self.workdir)})

    def _spawn(self, command: list[str], socket: Path, env: dict[str, str]
               ) -> subprocess.Popen[bytes]:
        """Start one nbdkit and wait until it listens (its errors go to the job's log file)."""
        with open(self._err, "ab") as err:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=err,
                                    stderr=err, start_new_session=True,
                                    env={**os.environ, **env},
                                    preexec_fn=_die_with_parent(os.getpid()))
        deadline = time.monotonic() + START_TIMEOUT
        while not listening(socket):
            if proc.poll() is not None:
                raise self._error_from_log("nbdkit did not start")
            if time.monotonic() > deadline:
                proc.kill()
                raise SourceUnreachableError(f"{self.display}: nbdkit did not start in "
                                             f"{START_TIMEOUT:.0f} s")
            time.sleep(0.01)
        return proc

    def _connect(self, nbd: Any) -> Any:
        assert self.proc is not None
        try:  # only a refused connection is worth another try: the server is starting
            return connect_started(nbd, self.socket, self.proc, "p2vimage-probe",
                                   retry=lambda exc: errno_of(exc) == errno.ECONNREFUSED)
        except nbd.Error as exc:
            why = str(exc).splitlines()[0]
            code = self.proc.poll()
            if code is not None:  # say how it ended when its log is silent (a signal)
                why += f" (nbdkit {_ended(code)})"
            raise self._error_from_log(why) from None

    def _error_from_log(self, fallback: str) -> Exception:
        """The error nbdkit's plugin reported, as the right class, credentials removed."""
        try:
            text = self._err.read_text(errors="replace")
        except OSError:
            text = ""
        lines = [ln for ln in text.splitlines() if "error" in ln.lower()] or text.splitlines()
        msg = self.spec.scrub(lines[-1].strip() if lines else fallback)
        msg = re.sub(r"^nbdkit: \S+\[\d+\]: error: |^nbdkit: error: ", "", msg)
        if "cannot open plugin" in msg and "python" in msg:
            return MissingDependencyError("nbdkit's Python plugin is missing: install the "
                                          "Debian package nbdkit-plugin-python")
        status = _HTTP_STATUS.search(msg)
        code = next((int(g) for g in status.groups() if g), 0) if status else 0
        if self.spec.scheme == "nbd+unix" and "connect: No such file" in msg:
            return SourceNotFoundError(f"{self.display}: no NBD server socket at "
                                       f"{self.spec.socket}")
        if code in (404, 410) or re.search(r"no export|export .*not found|unknown export",
                                           msg, re.I):
            return SourceNotFoundError(f"{self.display}: not found ({msg})")
        if code in (401, 403):
            return SourceUnreadableError(f"{self.display}: access denied ({msg})")
        if code >= 500 or _UNREACHABLE.search(msg):
            return SourceUnreachableError(f"{self.display}: cannot reach it: {msg}")
        if "range" in msg.lower():
            return UnsupportedFormatError(f"{self.display}: {msg}")
        return SourceUnreadableError(f"{self.display}: {msg}")

    # -- closing ----------------------------------------------------------------------

    def close(self) -> None:
        for attr in ("cache_proc", "proc"):  # the cache first: it reads the other
            proc = getattr(self, attr)
            if proc is not None:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                setattr(self, attr, None)
        self._scan()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self._log = Path()

    def unreachable_error(self, exc: BaseException) -> SourceUnreachableError:
        """The error a job that failed because this source stopped answering ends with."""
        return SourceUnreachableError(
            f"{self.display}: the source stopped answering ({RETRIES} retries; "
            f"{self.bytes_read()} bytes read): {self.spec.scrub(str(exc))}")


def retry_window() -> float:
    """Seconds nbdkit's retry filter spends on one failed read before it gives up."""
    return float(sum(RETRY_DELAY * 2 ** i for i in range(RETRIES)))


def _shutdown(h: Any) -> None:
    try:
        h.shutdown()
    except Exception:  # noqa: BLE001 - the server may be gone already
        pass


def _ended(code: int) -> str:
    """How a process ended, from its Popen return code, in words."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _short_dir(parent: Path | None) -> Path:
    """A private work directory whose socket path fits a Unix socket address."""
    d = Path(tempfile.mkdtemp(prefix="p2vimage-net-", dir=parent))
    if len(str(d / "nbdkit.sock")) < 100:
        return d
    d.rmdir()
    return Path(tempfile.mkdtemp(prefix="p2vimage-net-", dir="/tmp"))


def is_network(arg: object) -> bool:
    return uri_mod.is_uri(arg)


__all__ = ["NetworkSource", "is_network", "retry_window", "RETRIES", "RETRY_DELAY"]
