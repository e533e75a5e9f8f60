"""Carry out a plan on a writable job: files, then registry edits, then boot sectors.

Every hive edit is committed once at the end (one commit per hive: every edit lands,
or none does).  Each change records whether it actually changed something, so an
idempotent re-run reports "unchanged" everywhere.  :func:`apply_registry` is the
registry part on bare hive files, for tools and tests that hold hives, not disks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .guest import files
from .guest.appliance import Job
from .guest.registry import Hive
from .plan import Plan
from .windows import geometry

__all__ = ["apply", "apply_registry"]


def apply(plan: Plan, job: Job) -> None:
    """Write the plan into the job's guest (its overlays, or its disks in place)."""
    g = job.g
    for f in plan.files:
        if f.action != "write":
            f.changed = False
            continue
        target = files.resolve_for_write(g, f.guest_path)
        before = g.checksum("sha256", target) if g.is_file(target) else None
        f.changed = before != f.sha256
        if f.changed:
            assert f.local is not None
            files.upload(g, Path(f.local), target)
    _edit_hives(plan, {name: job.hive(name) for name in _hives_of(plan)})
    job.commit_hives()  # one commit per hive: every edit lands, or none does
    for b in plan.boot_sectors:
        bs = bytearray(g.pread_device(b.device, geometry.SECTOR, 0))
        geo = geometry.read_ntfs_geometry(bytes(bs))
        assert geo is not None
        before = bytes(bs)
        for offset, size, value in b.fields.values():
            bs[offset : offset + size] = value.to_bytes(size, "little")
        b.changed = bytes(bs) != before
        if b.changed:
            g.pwrite_device(b.device, bytes(bs), 0)
            # The NTFS backup boot sector sits just past the volume's last sector.
            at = geo["total"] * geometry.SECTOR
            backup = g.pread_device(b.device, geometry.SECTOR, at)
            if backup[3:11] == b"NTFS    ":
                g.pwrite_device(b.device, bytes(bs), at)


def apply_registry(plan: Plan, hives: Mapping[str, Hive]) -> None:
    """The plan's registry edits and deletions on open hives (``{"SYSTEM": hive, ...}``),
    each changed hive committed once.  A plan edit for a hive not given is an error."""
    missing = sorted(_hives_of(plan) - set(hives))
    if missing:
        raise KeyError(f"the plan edits hive(s) not given: {', '.join(missing)}")
    _edit_hives(plan, hives)
    for hive in hives.values():
        if hive.dirty:
            hive.commit()


def _hives_of(plan: Plan) -> set[str]:
    return {e.hive for e in plan.registry} | {d.hive for d in plan.deletions}


def _edit_hives(plan: Plan, hives: Mapping[str, Hive]) -> None:
    for e in plan.registry:
        hive = hives[e.hive]
        node = hive.ensure_key(e.path)
        e.changed = hive.set_value(node, e.name, e.type, e.value)
    for d in plan.deletions:  # after every value edit
        hive = hives[d.hive]
        node = hive.node(d.path)
        d.changed = node is not None
        if node is not None:
            hive.delete_key(node)
