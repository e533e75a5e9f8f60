"""What the host-side copy needs to know of a disk, asked of the appliance once.

The appliance already parsed the partition table and probed every filesystem
during inspection; asking it for the partitions (start, end, MBR type) and which of
them hold NTFS costs a few calls, and saves the host a partition-table parser of its
own.  The allocation bitmaps are then read on the host (:mod:`windows.ntfs_bitmap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXTENDED_TYPES = (0x05, 0x0F, 0x85)


@dataclass(frozen=True)
class PartitionSpan:
    name: str  # the appliance's device name, for messages: /dev/sda1
    start: int  # bytes from the disk's start
    end: int  # exclusive
    fs: str | None  # "ntfs", "vfat", ... as the appliance probed it
    container: bool = False  # an MBR extended partition: its EBRs are copied as gaps


@dataclass(frozen=True)
class DiskLayout:
    device: str
    size: int
    partitions: tuple[PartitionSpan, ...]


def read_layout(g: Any, disk: str) -> DiskLayout:
    """``disk`` (``/dev/sda``) of appliance ``g``: size, partitions sorted by start."""
    size = g.blockdev_getsize64(disk)
    try:
        table = g.part_get_parttype(disk)
    except RuntimeError:  # no partition table: the disk is copied as one region
        table = None
    spans = []
    if table in ("msdos", "gpt"):
        fs = g.list_filesystems()
        for p in sorted(g.part_list(disk), key=lambda p: p["part_start"]):
            dev = f"{disk}{p['part_num']}"
            container = table == "msdos" and g.part_get_mbr_id(disk, p["part_num"]) in \
                EXTENDED_TYPES
            spans.append(PartitionSpan(dev, int(p["part_start"]), int(p["part_end"]) + 1,
                                       fs.get(dev), container))
    return DiskLayout(disk, size, tuple(spans))
