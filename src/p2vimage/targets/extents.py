"""Which byte ranges of a disk the copy writes: used NTFS clusters and everything else.

Per disk, in order: every region that is not an NTFS volume (MBR, gaps, EBRs, other
filesystems, the tail after the last partition, the sectors of an NTFS partition
after its last cluster, where the backup boot sector lives) is copied, less the
ranges the source reports as holes or zeros (NBD block status); of each NTFS volume
only the clusters its ``$Bitmap`` marks used.  A bitmap that cannot be trusted
makes that partition an ordinary region (copied whole), with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..formats.partition_table import DiskLayout
from ..windows import ntfs_bitmap

log = logging.getLogger("p2vimage")

Reader = Callable[[int, int], bytes]  # (disk offset, length) -> bytes
ZeroRanges = Callable[[int, int], list[tuple[int, int]]]  # data ranges within a range

NTFS = "ntfs"
OTHER = "other"


@dataclass
class CopyPlan:
    """The ranges to copy of one disk, and what the planning found."""

    size: int
    extents: list[tuple[int, int]] = field(default_factory=list)  # sorted, disjoint
    ntfs_bytes: int = 0  # used clusters
    other_bytes: int = 0  # non-NTFS regions, after zero ranges were dropped
    whole_volumes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ntfs_bytes + self.other_bytes

    def clip(self, limit: int) -> None:
        """Drop what lies at or past byte ``limit`` (``--size`` below the disk's size: only
        the space after the last partition, which is never NTFS, is cut off)."""
        kept = []
        for off, n in self.extents:
            if off + n > limit:
                cut = off + n - max(off, limit)
                self.other_bytes -= cut
                n -= cut
            if n > 0:
                kept.append((off, n))
        self.extents = kept


def plan_disk(layout: DiskLayout, read: Reader, data_ranges: ZeroRanges) -> CopyPlan:
    plan = CopyPlan(layout.size)

    def other(start: int, end: int) -> None:
        end = min(end, layout.size)
        if end <= start:
            return
        for off, n in data_ranges(start, end - start):
            plan.extents.append((off, n))
            plan.other_bytes += n

    covered = 0
    for p in layout.partitions:
        if p.container:
            continue  # its EBRs fall in the gaps; its logical partitions come on their own
        start, end = max(p.start, covered), min(p.end, layout.size)
        if end <= start:
            continue
        other(covered, start)
        if p.fs == NTFS and start == p.start:
            try:
                used = ntfs_bitmap.used_clusters(lambda off, n, b=p.start: read(b + off, n),
                                                 p.end - p.start)
            except ValueError as exc:  # NtfsError, or a read past the end of the disk
                msg = f"{p.name}: the NTFS allocation bitmap cannot be trusted ({exc}); " \
                      "the partition is copied whole"
                log.warning("%s", msg)
                plan.warnings.append(msg)
                plan.whole_volumes.append(p.name)
                other(start, end)
            else:
                for off, n in used.runs:
                    plan.extents.append((p.start + off, n))
                    plan.ntfs_bytes += n
                other(p.start + used.volume_bytes, end)
        else:
            other(start, end)
        covered = max(covered, end)
    other(covered, layout.size)
    plan.extents.sort()
    return plan
