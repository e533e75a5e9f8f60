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

from ..formats import ntfs_bitmap
from ..formats.partition_table import DiskLayout

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


Ranges = list[tuple[int, int]]  # (offset, length), sorted and disjoint


def _spans(a: Ranges) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for off, n in sorted(a):
        if n <= 0:
            continue
        if out and off <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], off + n))
        else:
            out.append((off, off + n))
    return out


def _ranges(spans: list[tuple[int, int]]) -> Ranges:
    return [(s, e - s) for s, e in spans if e > s]


def union(a: Ranges, b: Ranges) -> Ranges:
    """Every byte in ``a`` or ``b``, merged."""
    return _ranges(_spans(a + b))


def intersect(a: Ranges, b: Ranges) -> Ranges:
    """The bytes in both ``a`` and ``b``."""
    x, y = _spans(a), _spans(b)
    out, i, j = [], 0, 0
    while i < len(x) and j < len(y):
        s, e = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
        if s < e:
            out.append((s, e))
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return _ranges(out)


def subtract(a: Ranges, b: Ranges) -> Ranges:
    """The bytes of ``a`` that are not in ``b``."""
    out: list[tuple[int, int]] = []
    y = _spans(b)
    j = 0
    for s, e in _spans(a):
        while j < len(y) and y[j][1] <= s:
            j += 1
        k = j
        while s < e:
            if k >= len(y) or y[k][0] >= e:
                out.append((s, e))
                break
            if y[k][0] > s:
                out.append((s, y[k][0]))
            s = max(s, y[k][1])
            k += 1
    return _ranges(out)


def total(a: Ranges) -> int:
    return sum(n for _, n in a)
