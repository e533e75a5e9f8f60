"""Real servers for the network-source tests, started and stopped by the tests themselves.

- :class:`Sshd`: OpenSSH's ``sshd`` on a loopback port with its own host key, a client key
  made at test time in ``authorized_keys`` and a ``known_hosts`` naming the host key;
- :class:`RangeHTTPServer`: a threaded HTTP server on loopback that honours single
  ``Range`` requests (Python 3.11's ``http.server`` does not), can fail the next N ranged
  reads (as a dropped connection) and records every request it saw;
- :func:`qemu_nbd`: ``qemu-nbd -r`` on a Unix socket.

Nothing here imitates p2vimage: they are the servers a real source machine runs.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from p2vimage.blockio.nbd import listening, server_processes

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(path)], check=True)
    return path


class Sshd:
    """``sshd -D -e -f CONFIG`` on 127.0.0.1:PORT (root, key authentication only)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.host_key = keygen(workdir / "host_ed25519", "p2vimage-test-host")
        self.client_key = keygen(workdir / "client_ed25519", "p2vimage-test-client")
        self.other_key = keygen(workdir / "other_ed25519", "p2vimage-test-other")
        (workdir / "authorized_keys").write_text(
            Path(f"{self.client_key}.pub").read_text())
        host_pub = " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])
        self.known_hosts = workdir / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        # The same host name with another key: what a changed (or spoofed) host looks like.
        wrong = keygen(workdir / "wrong_host_ed25519", "p2vimage-test-wrong")
        wrong_pub = " ".join(Path(f"{wrong}.pub").read_text().split()[:2])
        self.wrong_known_hosts = workdir / "known_hosts.wrong"
        self.wrong_known_hosts.write_text(f"[127.0.0.1]:{self.port} {wrong_pub}\n")
        self.empty_known_hosts = workdir / "known_hosts.empty"
        self.empty_known_hosts.write_text("")
        self.config = workdir / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"PidFile {workdir / 'sshd.pid'}", f"AuthorizedKeysFile {workdir}/authorized_keys",
            "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no",
            "PermitRootLogin prohibit-password", "StrictModes no",
            "Subsystem sftp internal-sftp", "LogLevel ERROR", "MaxStartups 50:30:100",
            "MaxSessions 50", "",
        ]))
        self.proc: subprocess.Popen | None = None

    def start(self) -> Sshd:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(self.dir / "sshd.log", "wb"),  # noqa: SIM115
                                     stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def uri(self, path: str | Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{path}"

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True, check=False).stdout
        return [int(p) for p in out.split()]

    @property
    def keywords(self) -> dict[str, Path]:
        return {"ssh_identity": self.client_key, "ssh_known_hosts": self.known_hosts}


class RangeHTTPServer:
    """Serves files from ``root`` with ``Range`` support, on 127.0.0.1:PORT."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fail_next = 0  # ranged GETs to fail (the connection is closed unanswered)
        self.fail_always = False
        self.fail_every = 0  # when > 0: every Nth ranged GET fails (a flaky link)
        self.fail_after: int | None = None  # ranged GETs after this many all fail (gone)
        self.ranged = 0  # ranged GETs answered or failed so far
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range
        self.bytes_sent = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _file(self) -> Path | None:
                p = (server.root / self.path.split("?", 1)[0].lstrip("/")).resolve()
                return p if p.is_file() and p.is_relative_to(server.root) else None

            def _record(self) -> None:
                with server.lock:
                    server.requests.append((self.command, self.path,
                                            self.headers.get("Range")))

            def _not_allowed(self) -> None:
                self._record()
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = do_DELETE = do_PATCH = _not_allowed  # noqa: N815

            def do_HEAD(self) -> None:  # noqa: N802
                self._record()
                f = self._file()
                if f is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(f.stat().st_size))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                self._record()
                f = self._file()
                if f is None:
                    self.send_error(404)
                    return
                size = f.stat().st_size
                rng = self.headers.get("Range")
                if rng:
                    with server.lock:
                        server.ranged += 1
                        fail = (server.fail_always or server.fail_next > 0
                                or (server.fail_every > 0
                                    and server.ranged % server.fail_every == 0)
                                or (server.fail_after is not None
                                    and server.ranged > server.fail_after))
                        if server.fail_next > 0:
                            server.fail_next -= 1
                    if fail:  # a dropped connection, mid-request
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    unit, _, spec = rng.partition("=")
                    first, _, last = spec.partition("-")
                    start = int(first)
                    end = min(int(last) if last else size - 1, size - 1)
                    if unit != "bytes" or "," in spec or start > end:
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                else:
                    start, end = 0, size - 1
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                with open(f, "rb") as fh:
                    fh.seek(start)
                    left = end - start + 1
                    while left:
                        chunk = fh.read(min(left, 1 << 20))
                        self.wfile.write(chunk)
                        left -= len(chunk)
                        with server.lock:
                            server.bytes_sent += len(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> RangeHTTPServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@contextmanager
def qemu_nbd(image: Path, sock: Path, export: str = "disk") -> Iterator[subprocess.Popen]:
    """``qemu-nbd -r`` serving ``image`` (raw) as ``export`` on ``sock``, several clients."""
    proc = subprocess.Popen([shutil.which("qemu-nbd") or "qemu-nbd", "-r", "-t", "-e", "16",
                             "-f", "raw", "-k", str(sock), "-x", export, str(image)],
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not listening(sock):
            assert proc.poll() is None, "qemu-nbd did not start"
            assert time.monotonic() < deadline, "qemu-nbd did not start in 10 s"
            time.sleep(0.02)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def nbdkit_processes(parent: int | None = None) -> list[int]:
    """PIDs of running nbdkit processes (children of ``parent`` when given)."""
    return server_processes(None if parent is None else {parent}, program="nbdkit")
