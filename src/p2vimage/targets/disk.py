"""Output disk files shared by ``convert`` and ``restore-clonezilla``: their names and
order, and growing one to ``--size``.  (A new qcow2 to write into:
:func:`p2vimage.blockio.blockdev.create_qcow2`.)"""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

from .. import deps
from ..errors import ConversionError


def output_paths(output: Path, count: int) -> list[Path]:
    """``OUT`` for the system (first) disk, then ``OUT-2``, ``OUT-3`` … before the suffix."""
    return [output] + [output.with_name(f"{output.stem}-{i}{output.suffix}")
                       for i in range(2, count + 1)]


def system_first(count: int, system: int) -> list[int]:
    """The order of the output disks: the system disk (an index of the sources) first,
    the others after it in their own order.  Output ``k`` is source ``order[k]``."""
    return [system] + [i for i in range(count) if i != system]


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> None:
    """Swap two files atomically (renameat2 RENAME_EXCHANGE): neither path is ever
    missing, so a claimed ``.partial`` never looks free to another job."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b),
                      _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise ConversionError(f"swapping {a.name} and {b.name}: {os.strerror(err)}")


def place_in_order(slots: list[Path], order: list[int]) -> None:
    """Files written per source (``slots[j]`` holds source ``j``) put in output order:
    afterwards ``slots[k]`` holds source ``order[k]``."""
    holds = list(range(len(slots)))
    for k, want in enumerate(order):
        if holds[k] != want:
            m = holds.index(want)
            _exchange(slots[k], slots[m])
            holds[k], holds[m] = holds[m], holds[k]


def grow(path: Path, fmt: str, size: int) -> None:
    """Make the disk ``path`` ``size`` bytes long (``--size`` of a disk restored in place),
    growing or shrinking it."""
    if fmt == "raw":
        os.truncate(path, size)
        return
    qemu_img = deps.require_program("qemu-img")
    # --shrink: a --size below the disk's size (checked to keep every partition) cuts off
    # only the unpartitioned space at the end
    proc = subprocess.run([qemu_img, "resize", "-q", "--shrink", "-f", fmt, str(path),
                           str(size)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ConversionError(f"resizing {path}: {proc.stderr.strip()}")
