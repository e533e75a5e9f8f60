"""The public entry points: small functions over the job, inspection and steps."""

from __future__ import annotations

import os
import posixpath

from .guest.appliance import Job
from .inspection import Cabinet, Inspection, fill_from_hives
from .sources.image import open_source

_ARCH = {"i386": "x86", "x86_64": "x64", "ia64": "ia64", "aarch64": "arm64"}


def inspect_job(job: Job) -> Inspection:
    """Inspect the Windows root of an already created job (launches it if needed)."""
    root = job.find_root()
    job.mount_root()
    g = job.g
    insp = Inspection()
    insp.product_name = g.inspect_get_product_name(root)
    insp.major = g.inspect_get_major_version(root)
    insp.minor = g.inspect_get_minor_version(root)
    arch = g.inspect_get_arch(root)
    insp.arch = _ARCH.get(arch, None if arch == "unknown" else arch)
    insp.system_root = g.inspect_get_windows_systemroot(root)
    insp.windows_partition = root
    disk = root if g.is_whole_device(root) else g.part_to_dev(root)
    try:
        table = g.part_get_parttype(disk)
        insp.partition_table = "mbr" if table == "msdos" else table
    except RuntimeError:
        insp.partition_table = None
    insp.firmware = _firmware(g, disk, insp.partition_table)
    insp.driver_cabinets = _driver_cabinets(g, insp.system_root, insp.arch)
    insp.drive_letters = {k.upper(): v for k, v in g.inspect_get_drive_mappings(root).items()}
    fill_from_hives(insp, job.hive("SYSTEM"), job.hive("SOFTWARE"))
    return insp


def _firmware(g, disk: str, table: str | None) -> str:
    """UEFI when the boot disk is GPT with an EFI System Partition, else BIOS."""
    if table != "gpt":
        return "bios"
    for part in g.list_partitions():
        if g.part_to_dev(part) != disk:
            continue
        try:
            if g.part_get_gpt_type(disk, g.part_to_partnum(part)).upper() == (
                "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
            ):
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
