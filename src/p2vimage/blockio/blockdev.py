"""Where restored or copied bytes go: a file descriptor, or an NBD export of an output.

Restoring a Clonezilla image writes tables, partition data and a backup boot sector
at given offsets.  ``pwrite``/``pread`` below take either a plain file descriptor (a
raw output) or an :class:`NbdDisk` (a qcow2 output opened through a writable
``qemu-nbd``), so one restore writes straight into either kind of output.  A qcow2
output starts as an empty file made by :func:`create_qcow2`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from .. import deps
from ..errors import ConversionError, write_error
from .nbd import errno_of


class NbdDisk:
    """A libnbd handle of a writable export, with the file-descriptor calls restore uses."""

    def __init__(self, handle: Any) -> None:
        self.h = handle

    def _write(self, what: str, call: Any, *args: Any) -> None:
        """``call(*args)`` on the handle; a failure names ``what`` (no room: exit 5)."""
        nbd = _nbd()
        try:
            call(*args)
        except nbd.Error as exc:
            raise write_error(f"{what}: {reason(exc)}", errno_of(exc)) from None

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        self._write("writing the output through its NBD server", self.h.pwrite, data, offset)

    def pread(self, n: int, offset: int) -> bytes:
        nbd = _nbd()
        try:
            return bytes(self.h.pread(n, offset))
        except nbd.Error as exc:
            raise ConversionError(f"reading the output back: {reason(exc)}") from None

    def zero(self, length: int, offset: int) -> None:
        """Make the range read as zeros (the server may free it: the output stays thin)."""
        self._write("writing the output through its NBD server", self.h.zero, length, offset)

    def flush(self) -> None:
        self._write("writing the output", self.h.flush)

Disk = int | NbdDisk


def create_qcow2(path: Path, size: int) -> None:
    """A new, empty qcow2 of ``size`` bytes at ``path`` (a claimed ``.partial``: qemu-img
    opens it in place, so the locked inode is the one written)."""
    qemu_img = deps.require_program("qemu-img")
    proc = subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(path), str(size)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["qemu-img create failed"])[-1]
        raise ConversionError(f"creating {path}: {msg}")


def pwrite(disk: Disk, data: bytes | memoryview, offset: int) -> None:
    if isinstance(disk, int):
        os.pwrite(disk, data, offset)
    else:
        disk.pwrite(data, offset)


def pread(disk: Disk, n: int, offset: int) -> bytes:
    return os.pread(disk, n, offset) if isinstance(disk, int) else disk.pread(n, offset)


def reason(exc: Exception) -> str:
    """A libnbd error in a user's words: the server's errno when there is one."""
    err = errno_of(exc)
    if err:
        return os.strerror(err)
    return str(getattr(exc, "string", exc)).strip().splitlines()[0]


def _nbd() -> Any:
    from .nbd import libnbd

    return libnbd()
