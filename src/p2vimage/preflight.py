"""Checks before any work, and the outputs a conversion claims.

Everything here runs before the appliance launches and before an output is created:
a bad option, a clash between outputs and sources, or too little space is refused
while nothing has been written.  ``check_unchanged`` runs again at the end: a source
that changed size while it was read is not the disk the inspection saw.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import libvirt_xml
from .errors import BadInputError, UsageError
from .formats.pe import PEError, read_pe
from .guest.appliance import Job
from .guest.disks import disk_index
from .inspection import Inspection
from .options import ConvertOptions
from .sources.image import SourceImage
from .sources.prepare import SourceSet
from .targets import space
from .targets.disk import output_paths
from .windows import firstboot, leftovers, mergeide


def validate(opts: ConvertOptions, sources: list[SourceImage]) -> None:
    """Every check that needs no guest, before any work: option values, files given,
    and outputs that would clash with each other or with a source (the option values
    themselves were checked by ``convert`` before the sources were opened)."""
    libvirt_xml.parse_network(opts.network)
    for spec in opts.ip:
        firstboot.parse_ip_option(spec)
    if opts.smbios is not None:
        libvirt_xml.check_smbios(leftovers.read_smbios(Path(opts.smbios)))
    if opts.ip and opts.no_firstboot:
        raise UsageError("--ip and --no-firstboot contradict each other")
    known = {n.lower() for n in mergeide.DRIVER_FILES}
    for f in opts.driver_files:
        f = Path(f)
        if not f.is_file():
            raise UsageError(f"--driver-file {f}: no such file")
        if f.name.lower() not in known:
            raise UsageError(
                f"--driver-file {f}: not a file this conversion stages "
                f"({', '.join(sorted(known))})"
            )
        try:
            read_pe(f.read_bytes())
        except PEError as exc:
            raise BadInputError(f"--driver-file {f}: not a valid PE file: {exc}") from None
    named = output_targets(opts, len(sources))
    if len({os.path.abspath(p) for p in named}) != len(named):
        raise UsageError("the same path is given for two outputs (disk, --xml, --report)")
    for o in named:
        for s in sources:
            if same_file(o, s.path):
                raise UsageError(f"output {o} is the source image itself")
            for b in s.backing_files:
                if same_file(o, b):
                    raise UsageError(
                        f"output {o} is a backing file of the source {s.path}: writing it "
                        "would change the source while it is read"
                    )


def output_targets(opts: ConvertOptions, disks: int) -> list[Path]:
    """Every file a conversion writes: the disks (OUT, OUT-2 ...), the XML, the report."""
    return [*output_paths(opts.output, disks), opts.xml or opts.output.with_suffix(".xml"),
            opts.report or opts.output.with_suffix(".json")]


def same_file(a: Path, b: Path) -> bool:
    """Same path, or the same inode (hard links, other spellings of the path)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def check_unchanged(sources: list[SourceImage], sizes: list[int | None]) -> None:
    """A source file that grew or shrank while it was read: the copy is not the disk the
    inspection saw (a capture still being written, a file replaced under us)."""
    for s, before in zip(sources, sizes, strict=True):
        now = file_size(s.path)
        if before is not None and now != before:
            raise BadInputError(f"the source {s.describe()} changed size during the conversion "
                                f"({before} bytes, now {now}); convert a finished capture")


def scratch_parent(opts: ConvertOptions) -> Path:
    """Where the temporary raws of Clonezilla sources go: beside the output."""
    return opts.output.parent if opts.output.parent.is_dir() else Path(tempfile.gettempdir())


def space_needs(opts: ConvertOptions, source_set: SourceSet,
                 targets: list[Path]) -> list[space.Need]:
    """Every byte this conversion will write, by directory (checked before any work).

    Per disk the bound is what its source holds allocated (a Clonezilla disk: the used
    blocks its partition images declare); the system disk also gets what the conversion
    adds.  Output directory: the disks (plus qcow2 metadata), XML and report; the host
    copy writes straight into them, and Clonezilla disks are restored into them.  Work
    directory (TMPDIR): the overlay, hives, drivers.  A dry run of a Clonezilla source
    restores it into temporary raws beside the output instead.
    """
    needs: list[space.Need] = []
    if opts.dry_run:
        for i, b in source_set.directory_bounds().items():
            needs.append(space.Need(scratch_parent(opts), b,
                                    f"the temporary raw of Clonezilla disk {i + 1}"))
        return needs
    dirs = source_set.directory_bounds()
    bounds = source_set.data_bounds()
    outs = targets[: len(bounds)]
    work = Path(tempfile.gettempdir())
    needs.append(space.Need(work, space.WORK_ALLOWANCE, "the work directory"))
    for i, (src, b, out) in enumerate(zip(source_set.sources, bounds, outs, strict=True)):
        # the system disk gets the edits: the first file, or any restored directory disk
        data = b + (space.CHANGES_ALLOWANCE if i == 0 or i in dirs else 0)
        size = data
        if opts.format == "qcow2":
            virtual = max(src.virtual_size, opts.size or 0) if i == 0 else src.virtual_size
            size += space.qcow2_overhead(virtual)
        needs.append(space.Need(out.parent, size, f"the output disk {out.name}"))
    for extra in targets[len(bounds):]:
        needs.append(space.Need(extra.parent, space.SMALL_FILES_ALLOWANCE, extra.name))
    return needs


def disk_size_in_vm(job: Job, insp: Inspection, opts: ConvertOptions, disk: str) -> int:
    """The system disk's size in the VM: its own, or ``--size`` (checked against the
    partitions it must hold)."""
    virtual = job.disks[disk_index(disk) or 0].size
    if opts.size is None:
        return virtual
    info = job.disk_info(disk)
    if info is not None and info.layout is not None:
        last_end = max((p.end for p in info.layout.partitions), default=0)
    else:
        last_end = max((int(p["part_end"]) + 1 for p in job.g.part_list(disk)), default=0)
    if opts.size < last_end:
        raise UsageError(f"--size {opts.size}: smaller than the end of the last partition "
                         f"({last_end} bytes)")
    if insp.partition_table == "gpt" and opts.size != virtual:
        raise UsageError("--size on a GPT disk is not supported yet")
    return opts.size
