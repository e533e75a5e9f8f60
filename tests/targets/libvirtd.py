"""A private, real ``libvirtd`` for tests: no systemd, nothing of the host's libvirt touched.

Debian 12's monolithic ``libvirtd`` (libvirt 9.0) runs as root with its state under
``/etc/libvirt``, ``/var/lib/libvirt``, ``/run/libvirt`` ...  The tests run it in its own
mount namespace (``unshare --mount``) where those directories are bind mounts of
directories under a temporary root, and in its own network namespace (a network the
tests define gets its bridge there, not on the host).  Its sockets are under that root:
the tests connect with ``qemu:///system?socket=ROOT/sock/libvirt-sock``.  The namespace
sees the host's other files; a small filesystem for a pool that fills up is mounted in
the daemon's namespace (:func:`small_filesystem`).

:func:`start` returns once the socket answers; :meth:`Daemon.stop` destroys every running
domain (QEMU outlives its daemon otherwise) and stops the daemon; nothing is left running.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import libvirt

_SCRIPT = r"""
set -eu
R=$1
for d in etc var-lib run cache log sock; do mkdir -p "$R/$d"; done
cp -a /etc/libvirt/. "$R/etc/"
rm -rf "$R"/etc/qemu/networks "$R"/etc/storage "$R"/etc/qemu/*.xml
# QEMU's output to files (no virtlogd to start without systemd); QEMU as root, which
# can reach pools under the tests' private (0700) temporary directories.
printf 'stdio_handler = "file"\nuser = "root"\ngroup = "root"\n' >> "$R/etc/qemu.conf"
mkdir -p /var/lib/libvirt /run/libvirt /var/cache/libvirt /var/log/libvirt
mount --bind "$R/etc" /etc/libvirt
mount --bind "$R/var-lib" /var/lib/libvirt
mount --bind "$R/run" /run/libvirt
mount --bind "$R/cache" /var/cache/libvirt
mount --bind "$R/log" /var/log/libvirt
mkdir -p /var/lib/libvirt/qemu /var/lib/libvirt/images /var/cache/libvirt/qemu /var/log/libvirt/qemu
ip link set lo up
cat > "$R/libvirtd.conf" <<EOF
unix_sock_dir = "$R/sock"
log_outputs = "3:file:$R/libvirtd.log"
EOF
exec /usr/sbin/libvirtd --config "$R/libvirtd.conf" --pid-file "$R/libvirtd.pid"
"""


@dataclass
class Daemon:
    root: Path
    proc: subprocess.Popen

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.root}/sock/libvirt-sock"

    def connect(self) -> libvirt.virConnect:
        return libvirt.open(self.uri)

    def virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True,
                              text=True, check=check, timeout=120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                conn = self.connect()
                for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                    dom.destroy()
                conn.close()
            except libvirt.libvirtError:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start(root: Path, timeout: float = 30) -> Daemon:
    """A libvirtd of its own under ``root`` (see the module's docstring)."""
    root.mkdir(parents=True, exist_ok=True)
    log = open(root / "daemon.out", "wb")  # noqa: SIM115 - the daemon's, closed with it
    proc = subprocess.Popen(
        ["unshare", "--mount", "--net", "--propagation", "slave", "sh", "-c", _SCRIPT, "sh",
         str(root)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    daemon = Daemon(root, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"libvirtd exited {proc.returncode}: "
                               + (root / "daemon.out").read_text(errors="replace"))
        if (root / "sock" / "libvirt-sock").exists():
            try:
                daemon.connect().close()
                return daemon
            except libvirt.libvirtError:
                pass
        time.sleep(0.2)
    daemon.stop()
    raise RuntimeError(f"libvirtd did not answer within {timeout}s")


def dir_pool(conn: libvirt.virConnect, name: str, path: Path) -> libvirt.virStoragePool:
    """A running ``dir`` pool over ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>")
    pool.create()
    return pool


def small_filesystem(daemon: Daemon, path: Path, size: str) -> None:
    """A tmpfs of ``size`` at ``path`` in the daemon's mount namespace (a pool that fills
    up; the host's mounts may not propagate into it, so it is mounted there)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["nsenter", "-t", str(daemon.proc.pid), "-m", "mount", "-t", "tmpfs",
                    "-o", f"size={size}", "p2v-small", str(path)], check=True)


def files_in(daemon: Daemon, path: Path) -> list[str]:
    """The names in ``path`` as the daemon sees it."""
    r = subprocess.run(["nsenter", "-t", str(daemon.proc.pid), "-m", "ls", "-A", str(path)],
                       capture_output=True, text=True, check=True)
    return r.stdout.split()


def unmount(daemon: Daemon, path: Path) -> None:
    subprocess.run(["nsenter", "-t", str(daemon.proc.pid), "-m", "umount", "-l", str(path)],
                   check=False)
