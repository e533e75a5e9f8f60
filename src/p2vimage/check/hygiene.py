"""Volume state that makes an image unsafe to change or to boot: hibernation, a dirty
NTFS, BitLocker, dynamic (LDM) disks, a full system volume.

Hibernation is read from ``hiberfil.sys``'s header (see ``formats/hibernation.py``).
"""

from __future__ import annotations

from typing import Any

from ..formats import ntfs_volume
from ..formats.hibernation import is_hibernated
from ..formats.partition_table import PartitionSpan
from .guest import CheckView
from .report import ERROR, WARNING, CheckResult

LDM_MBR_TYPE = 0x42
LDM_GPT_TYPES = {"5808C8AA-7E8F-42E0-85D2-E1E90434CFB3", "AF9B60A0-1431-4F62-BC68-3311714A69AD"}
# Below this much free space Windows cannot grow its hives, pagefile or event logs at
# boot; NT 6 also needs room for its servicing/boot logs.
FREE_ERROR = 32 << 20
FREE_WARNING = {5: 128 << 20, 6: 256 << 20}


def check_hygiene(view: CheckView, system_partition: str | None) -> CheckResult:
    res = CheckResult("hygiene", "Volume state (hibernation, dirty NTFS, BitLocker, LDM, space)")
    g = view.g
    if g is None:
        res.skipped = "no disk: only hives were given"
        return res
    hib = view.read("/hiberfil.sys", 4)
    if is_hibernated(hib):
        res.add("hygiene.hibernated", ERROR,
                "Windows is hibernated (hiberfil.sys header 'hibr'): it would resume from "
                "memory and lose or corrupt any offline change; boot it and shut down fully "
                "(powercfg /h off disables fast startup)", ["\\hiberfil.sys"])
    # The system disk's partitions only: a job may hold other machines' disks.
    if view.layout is not None:  # read on the host: no appliance round trips
        for p in view.layout.partitions:
            if not p.container:
                _check_partition(g, res, p.name, p.name == system_partition, p)
    else:
        disk = g.part_to_dev(system_partition) if system_partition else None
        for part in _partitions(g):
            if disk is None or g.part_to_dev(part) == disk:
                _check_partition(g, res, part, part == system_partition)
    try:
        st = g.statvfs("/")
        free = st["bavail"] * st["bsize"]
    except (RuntimeError, KeyError):
        free = None
    if free is not None:
        need = FREE_WARNING[6 if (view.major or 0) >= 6 else 5]
        ev = [f"{system_partition}: {free >> 20} MiB free"]
        if free < FREE_ERROR:
            res.add("hygiene.no-free-space", ERROR,
                    f"the system volume has {free >> 20} MiB free: Windows cannot boot "
                    "reliably (hives, pagefile, logs need room)", ev)
        elif free < need:
            res.add("hygiene.low-free-space", WARNING,
                    f"the system volume has only {free >> 20} MiB free (want {need >> 20} MiB)",
                    ev)
    return res


def _partitions(g: Any) -> list[str]:
    try:
        return list(g.list_partitions())
    except RuntimeError:
        return []


def part_entry(g: Any, part: str) -> dict[str, str]:
    """blkid's view of a partition table entry (scheme, type, flags, offset): one cheap
    call, where parted-based calls cost half a second each in a TCG appliance."""
    try:
        return {k: v for k, v in g.blkid(part).items() if k.startswith("PART_ENTRY")}
    except RuntimeError:
        return {}


def _check_partition(g: Any, res: CheckResult, part: str, is_system: bool,
                     span: PartitionSpan | None = None) -> None:
    if span is not None and span.boot_sector:
        boot = span.boot_sector
    else:
        try:
            boot = g.pread_device(part, 512, 0)
        except RuntimeError:
            return
    if boot[3:11] == b"-FVE-FS-":
        res.add("hygiene.bitlocker", ERROR if is_system else WARNING,
                f"{part} is BitLocker-encrypted: it cannot be read or changed offline",
                [f"{part}: boot sector OEM id -FVE-FS-"])
        return
    if span is not None:
        ldm = span.mbr_type == LDM_MBR_TYPE or (span.type_guid or "") in LDM_GPT_TYPES
    else:
        entry = part_entry(g, part)
        scheme, ptype = entry.get("PART_ENTRY_SCHEME"), entry.get("PART_ENTRY_TYPE", "").lower()
        ldm = (scheme == "dos" and ptype == hex(LDM_MBR_TYPE)) or (
            scheme == "gpt" and ptype.upper() in LDM_GPT_TYPES)
    if ldm:
        res.add("hygiene.dynamic-disk", WARNING,
                f"{part} is on a dynamic (LDM) disk: its volumes are described by the LDM "
                "database, which offline tools do not change", [f"{part}: partition type LDM"])
    if boot[3:11] != b"NTFS    ":
        return
    try:
        flags = ntfs_volume.read_volume_flags(g, part) or 0
    except (RuntimeError, ntfs_volume.NtfsError) as exc:
        res.add("hygiene.ntfs-unreadable", WARNING, f"{part}: cannot read $Volume: {exc}",
                [part])
        return
    if flags & ntfs_volume.FLAG_DIRTY:
        res.add("hygiene.ntfs-dirty", ERROR if is_system else WARNING,
                f"{part}: NTFS was not cleanly unmounted (dirty flag set): offline writes are "
                "unsafe until chkdsk has run", [f"{part}: $Volume flags {flags:#06x}"])
