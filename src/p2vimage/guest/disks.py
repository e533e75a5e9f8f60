"""What the job's disks are, read on the host before the appliance starts.

Partition tables, disk signatures, partition types and boot sectors are a few sectors
per disk.  Asked of a TCG appliance they cost seconds (parted and blkid run, and udev
settles, on every ``part_*``/``list_*`` call: 4 s of a 40 s conversion), so the job
reads them here once, from the very drives it attaches: through a private read-only
``qemu-nbd`` for an overlay (any source format), straight from the file for a raw disk.

The appliance names its disks ``/dev/sda``, ``/dev/sdb`` ... in the order they were
added, and partitions ``/dev/sdaN`` with Linux's numbering (MBR logical partitions from
5, GPT entries by index), which :func:`device_name` and the partition table reader
follow.  A disk whose table cannot be read has ``layout`` None: callers then ask the
appliance, as before.
"""

from __future__ import annotations

import logging
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConversionError
from ..formats.partition_table import DiskLayout, PartitionSpan, PartitionTableError, read_layout

log = logging.getLogger("p2vimage")

_PART = re.compile(r"^(/dev/sd[a-z]+)(\d+)$")


@dataclass(frozen=True)
class DiskInfo:
    device: str  # /dev/sda
    size: int
    layout: DiskLayout | None  # None: the partition table could not be read on the host
    problem: str | None = None  # why layout is None

    def partition(self, name: str) -> PartitionSpan | None:
        return self.layout.partition(name) if self.layout is not None else None


def device_name(index: int) -> str:
    """The appliance's name of disk ``index``: sda ... sdz, sdaa ... (Linux's sd naming)."""
    letters = string.ascii_lowercase
    name = ""
    n = index + 1
    while n:
        n, r = divmod(n - 1, 26)
        name = letters[r] + name
    return f"/dev/sd{name}"


def disk_of(partition: str) -> str | None:
    """``/dev/sdb3`` -> ``/dev/sdb``; None for names that are not sd partitions
    (a whole disk, an LDM or LVM volume)."""
    m = _PART.match(partition)
    return m.group(1) if m else None


def disk_index(device: str) -> int | None:
    """``/dev/sdb`` -> 1 (the inverse of :func:`device_name`)."""
    m = re.fullmatch(r"/dev/sd([a-z]+)", device)
    if not m:
        return None
    n = 0
    for c in m.group(1):
        n = n * 26 + (ord(c) - ord("a") + 1)
    return n - 1


def read_disk(path: Path, fmt: str, index: int, workdir: Path) -> DiskInfo:
    """The partition table of one drive (``fmt`` is how the appliance will attach it)."""
    device = device_name(index)
    if fmt == "raw":
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ConversionError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            size = os.fstat(fd).st_size

            def read(off: int, n: int) -> bytes:
                if off < 0 or off + n > size:
                    raise PartitionTableError(f"read past the end of the disk (byte {off + n})")
                return os.pread(fd, n, off)

            return _layout(device, size, read)
        finally:
            os.close(fd)
    from ..blockio.nbd import NbdExport, libnbd

    nbd = libnbd()
    with NbdExport(path, fmt, workdir, label=f"the partition table of {device}") as h:
        size = h.get_size()

        def read_nbd(off: int, n: int) -> bytes:
            if off < 0 or off + n > size:
                raise PartitionTableError(f"read past the end of the disk (byte {off + n})")
            try:
                return bytes(h.pread(n, off))
            except nbd.Error as exc:
                raise ConversionError(f"cannot read {device} ({path}): {exc}") from None

        return _layout(device, size, read_nbd)


def _layout(device: str, size: int, read) -> DiskInfo:  # noqa: ANN001 - a Reader
    try:
        return DiskInfo(device, size, read_layout(read, size, device))
    except PartitionTableError as exc:
        log.debug("%s: partition table not read on the host: %s", device, exc)
        return DiskInfo(device, size, None, str(exc))
