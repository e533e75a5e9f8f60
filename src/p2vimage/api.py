"""The public entry points: small functions over the job, inspection and steps."""

from __future__ import annotations

import os
import posixpath

from .formats.partition_table import ESP_TYPE
from .guest import windows_root
from .guest.appliance import Job
from .inspection import Cabinet, Inspection, fill_from_hives
from .sources.image import open_source


def inspect_job(job: Job) -> Inspection:
    """Inspect the Windows root of an already created job (launches it if needed).

    The disk facts (partition table, firmware, drive letters) come from the partition
    tables the job read on the host; version, product and the rest from the hives.
    """
    root = job.find_root()
    job.mount_root()
    g = job.g
    assert job.windows is not None
    insp = Inspection()
    insp.system_root = job.windows.system_root
    insp.windows_partition = root
    insp.arch = windows_root.arch_of_cmd(g, insp.system_root)
    disk = job.root_disk()
    info = job.disk_info(disk)
    if info is not None and info.layout is not None:
        insp.partition_table = info.layout.kind
        insp.firmware = "uefi" if info.layout.kind == "gpt" and any(
            p.type_guid == ESP_TYPE for p in info.layout.partitions) else "bios"
    else:  # the host could not read the table: ask the appliance
        try:
            table = g.part_get_parttype(disk)
            insp.partition_table = "mbr" if table == "msdos" else table
        except RuntimeError:
            insp.partition_table = None
        insp.firmware = _firmware(g, disk, insp.partition_table)
    system = job.hive("SYSTEM")
    fill_from_hives(insp, system, job.hive("SOFTWARE"))  # arch from the hive if cmd.exe
    insp.driver_cabinets = _driver_cabinets(g, insp.system_root, insp.arch)  # had none
    insp.drive_letters = windows_root.drive_letters(system, [d.layout for d in job.disks])
    return insp


def _firmware(g, disk: str, table: str | None) -> str:
    """UEFI when the boot disk is GPT with an EFI System Partition, else BIOS (asked of
    the appliance: the fallback when the host could not read the table)."""
    if table != "gpt":
        return "bios"
    for part in g.list_partitions():
        if g.part_to_dev(part) != disk:
            continue
        try:
            if g.part_get_gpt_type(disk, g.part_to_partnum(part)).upper() == ESP_TYPE:
                return "uefi"
        except RuntimeError:
            continue
    return "bios"


def _driver_cabinets(g, systemroot: str, arch: str | None) -> list[Cabinet]:
    found: list[Cabinet] = []
    sub = "amd64" if arch == "x64" else "i386"
    try:
        folder = g.case_sensitive_path(posixpath.join(systemroot, "Driver Cache", sub))
        if not g.is_dir(folder):
            return found
        for name in sorted(g.ls(folder)):
            if name.lower().endswith(".cab"):
                path = posixpath.join(folder, name)
                found.append(Cabinet(path=path, size=g.filesize(path)))
    except RuntimeError:
        pass
    return found


def inspect(
    path: str | os.PathLike[str],
    *,
    source_format: str | None = None,
    root: str | None = None,
) -> Inspection:
    """Inspect a disk image read-only and describe the Windows installation on it."""
    src = open_source(path, source_format)
    with Job([src], writable=False, root=root) as job:
        insp = inspect_job(job)
    insp.appliance_launches = job.stats.appliance_launches
    insp.launch_attempts = job.stats.launch_attempts
    return insp


def restore_clonezilla(
    directory: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    format: str = "raw",
    disk: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
):
    """Rebuild the disks of a Clonezilla image directory as raw or qcow2 files.

    Every disk (``output``, then ``OUT-2``, ``OUT-3`` … in the ``disk`` file's
    order), or only ``disk``.  Returns a :class:`p2vimage.clonezilla.RestoreResult`
    (further disks in ``other_disks``); the outputs appear only when every disk
    was restored with every checksum verified.
    """
    from .clonezilla import restore

    return restore(directory, output, format=format, disk=disk, overwrite=overwrite,
                   progress=progress)
