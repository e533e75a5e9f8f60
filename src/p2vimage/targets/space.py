"""Free space computed up front and checked before any work.

A conversion that runs out of space after a minute of appliance work, or a
restore that stops at 90 %, wastes the user's time and (before atomic
outputs) left debris.  So every job first adds up what it will write on each
filesystem — output disks, the XML and report, the temporary raws of a
Clonezilla source, the thin copies and overlay in the work directory — and
compares it with ``statvfs``' space available to us (``f_bavail``, which
leaves root's reserve alone).  Too little on any filesystem is
:class:`InsufficientSpaceError` (exit 4), one line naming the filesystem, the
bytes needed and the bytes available, before the appliance starts and before
a byte is written.

The figures are *bounds*, not guesses: what the source holds allocated
(:func:`p2vimage.sources.image.allocated_bound`, from ``qemu-img measure``, which
reads the allocation map, so holes and unallocated qcow2 clusters cost nothing and
compressed clusters count at their full size), plus fixed allowances for what a
conversion adds (hives, drivers, metadata).  The thin copy usually writes less —
only the clusters NTFS uses — so the check can only err on the safe side.
Something else filling the disk meanwhile is still caught where it happens
(``ENOSPC`` → exit 4, nothing left).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InsufficientSpaceError

MiB = 1 << 20
# What a conversion adds to the system disk (hives rewritten, IDE/virtio drivers, the
# first-boot script, NTFS log and metadata churn): lands in the overlay, then the output.
CHANGES_ALLOWANCE = 128 * MiB
# The job's work directory besides thin copies: the overlay's own writes, downloaded
# hives and their hivex commits, extracted cabinets, staged virtio files.
WORK_ALLOWANCE = 256 * MiB
# Domain XML and JSON report (a report is a few hundred KiB at most).
SMALL_FILES_ALLOWANCE = 4 * MiB


@dataclass(frozen=True)
class Need:
    """``size`` bytes that will be written under ``directory`` (for ``what``)."""

    directory: Path
    size: int
    what: str


def human(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path`` (an existing directory)."""
    p = Path(os.path.realpath(path))
    dev = p.stat().st_dev
    while p != p.parent and p.parent.stat().st_dev == dev:
        p = p.parent
    return p


def _existing(path: Path) -> Path:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check(needs: Iterable[Need]) -> dict[str, dict[str, int]]:
    """Raise InsufficientSpaceError if any filesystem has less free space than its needs.

    Needs on the same filesystem (same ``st_dev``) add up.  Returns, per mount
    point, ``{"needed": …, "available": …}`` (for reports and tests).
    """
    by_dev: dict[int, list[Need]] = {}
    where: dict[int, Path] = {}
    for n in needs:
        d = _existing(n.directory)
        dev = d.stat().st_dev
        by_dev.setdefault(dev, []).append(n)
        where.setdefault(dev, d)
    result: dict[str, dict[str, int]] = {}
    for dev, items in by_dev.items():
        st = os.statvfs(where[dev])
        available = st.f_bavail * st.f_frsize
        needed = sum(n.size for n in items)
        mp = str(mount_point(where[dev]))
        result[mp] = {"needed": needed, "available": available}
        if needed > available:
            whats = ", ".join(dict.fromkeys(n.what for n in items))
            raise InsufficientSpaceError(
                f"not enough free space on the filesystem mounted at {mp} for {whats}: "
                f"{needed} bytes ({human(needed)}) needed, {available} bytes "
                f"({human(available)}) available; free some space or choose another "
                "directory (TMPDIR for the work files)",
                filesystem=mp, needed=needed, available=available,
            )
    return result


def qcow2_overhead(virtual_size: int) -> int:
    """qcow2 metadata for a disk of ``virtual_size``: header, L1/L2 and refcount tables.

    64 KiB clusters: 8 bytes of L2 and 2 of refcount per cluster, rounded up generously.
    """
    clusters = -(-virtual_size // (64 << 10))
    return clusters * 10 + 4 * MiB
