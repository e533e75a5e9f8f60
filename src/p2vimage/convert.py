"""``convert``: from a captured disk image to a KVM guest (disk, libvirt XML, report).

The pipeline, input, conversion and output kept apart as in virt-v2v:
  preflight -> options, outputs and space checked; outputs claimed (:mod:`.preflight`)
  sources   -> a writable Job (an overlay over each source, or a Clonezilla disk
               restored into its output and edited in place); one appliance
  inspect   -> Inspection
  plan      -> Plan, from the steps in :mod:`.planner` (``--dry-run`` stops here)
  apply     -> files, registry edits committed once, boot sectors (:mod:`.apply`)
  copy      -> the host copies into OUT.partial (+ -2, ...): the source's used data
               while the appliance works, then what the edits changed
  outputs   -> domain XML (:mod:`.domain`), report (:mod:`.report`); renamed together

OUT is the system disk: the first source, or for Clonezilla directories the disk
the inspection found Windows on (:func:`_disk_order`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from . import interrupt, libvirt_xml
from .apply import apply
from .domain import build_domain
from .errors import UsageError
from .guest.appliance import Job
from .guest.disks import device_name, disk_index
from .inspection import Inspection, inspect_job
from .options import ConvertOptions, make_options, parse_size
from .plan import PlanContext
from .planner import make_plan
from .preflight import (
    check_unchanged,
    file_size,
    output_targets,
    scratch_parent,
    space_needs,
    validate,
)
from .progress import ProgressCallback
from .report import ConversionReport, make_report
from .sources.image import SourceImage
from .sources.prepare import SourceSet
from .targets import hostcopy, space
from .targets.atomic import AtomicOutputs
from .targets.disk import grow, place_in_order, system_first
from .virtio.media import VirtioMedia, open_media

log = logging.getLogger("p2vimage")


def _disk_size(job: Job, insp: Inspection, opts: ConvertOptions, disk: str) -> int:
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


def convert(
    source: str | os.PathLike[str] | list[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    options: ConvertOptions | None = None,
    progress: ProgressCallback | None = None,
    **kw: Any,
) -> ConversionReport:
    """Convert a captured physical Windows disk image (several: a multi-disk machine).

    ``progress`` is called with :class:`~p2vimage.progress.Progress` values while the
    disks are copied (bytes done and total per disk and pass): during the first pass,
    which runs while the appliance works, from p2vimage's copy thread, so the callback
    must be quick and thread-safe; afterwards from the calling thread.

    Options come as keywords (``virtio_win="/srv/virtio-win.iso", bus="ide"``) or as a
    :class:`ConvertOptions` (``options=``), keywords overriding it; paths may be ``str``.

    Safe to call from several threads at once (each call has its own appliance, overlay,
    work directory and claimed outputs); interruptible by SIGINT/SIGTERM when called from
    the main thread, and a signal the main thread records stops every running job.
    """
    srcs = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    opts = make_options(output, options, **kw)
    t0 = time.monotonic()
    phases: dict[str, float] = {}
    with interrupt.handling_signals(), SourceSet(
            srcs, opts.source_format, ssh_identity=opts.ssh_identity,
            ssh_known_hosts=opts.ssh_known_hosts) as source_set:
        sources = source_set.sources
        validate(opts, sources)
        media = open_media(opts.virtio_win) if opts.virtio_win is not None else None
        try:
            targets = output_targets(opts, len(sources))
            source_set.check_outputs(targets)
            # Outputs are claimed (locked .partial files) before any work, so a second job
            # on the same output fails now instead of trampling this one.
            atomic = None if opts.dry_run else AtomicOutputs(targets,
                                                             overwrite=opts.overwrite)
            with atomic or contextlib.nullcontext():
                space.check(space_needs(opts, source_set, targets))
                in_place: set[int] = set()
                if source_set.has_directories:
                    if atomic is None:  # a dry run: temporary raws, removed at the end
                        sources = source_set.restore(scratch_parent(opts))
                    else:  # straight into the outputs, which the job then edits in place
                        in_place = source_set.restore_in_place(
                            [atomic.partial(o) for o in targets[: len(sources)]], opts.format)
                        sources = source_set.sources
                    phases["restore"] = time.monotonic() - t0
                return _convert(opts, sources, media, t0, phases, atomic,
                                by_inspection=source_set.system_disk_by_inspection,
                                progress=progress, in_place=in_place,
                                restored=source_set.restored_bytes)
        finally:
            if media is not None:
                media.close()


def _disk_order(job: Job, sources: list[SourceImage], by_inspection: bool,
                disk: str) -> tuple[list[int], list[str]]:
    """Which source each output disk is (the system disk first when the inspection
    decides it), and a warning when the user's order puts another disk first."""
    system = disk_index(disk)
    assert system is not None
    if by_inspection:
        return system_first(len(sources), system), []
    warn = [f"Windows is on source {system + 1} ({sources[system].describe()}), but the first "
            "source becomes the VM's first (boot) disk; list the system disk first unless "
            "the machine booted from the other one"] if system else []
    return list(range(len(sources))), warn


def _convert(opts: ConvertOptions, sources: list[SourceImage], media: VirtioMedia | None,
             t0: float, phases: dict[str, float], atomic: AtomicOutputs | None, *,
             by_inspection: bool = False,
             progress: ProgressCallback | None = None, in_place: set[int] | None = None,
             restored: dict[int, int] | None = None) -> ConversionReport:
    *outs, xml_path, report_path = output_targets(opts, len(sources))
    copy_stats: list[dict[str, Any]] = []
    in_place = in_place or set()
    sizes = [None if i in in_place else file_size(s.path) for i, s in enumerate(sources)]
    with Job(sources, writable=not opts.dry_run, root=opts.root,
             in_place=frozenset(in_place)) as job, \
            _first_passes(opts, sources, in_place, atomic, outs, by_inspection, job,
                          progress) as background:
        job.launch()
        phases["launch"] = time.monotonic() - t0 - sum(phases.values())
        log.info("phase: inspect")
        insp = inspect_job(job)
        insp.appliance_launches = job.stats.appliance_launches
        insp.launch_attempts = job.stats.launch_attempts
        disk = job.root_disk()
        order, order_warnings = _disk_order(job, sources, by_inspection, disk)
        devices = [device_name(i) for i in order]
        sources = [sources[i] for i in order]  # from here on, in output order
        sizes = [sizes[i] for i in order]
        disk_size = _disk_size(job, insp, opts, disk)
        phases["inspect"] = time.monotonic() - t0 - sum(phases.values())
        log.info("phase: plan")
        context = PlanContext(options=opts, workdir=job.scratch(), disk_size=disk_size,
                              media=media)
        plan = make_plan(insp, job.view(insp), context)
        phases["plan"] = time.monotonic() - t0 - sum(phases.values())
        interrupt.check()
        if opts.dry_run:
            return make_report(sources, [], None, None, True, insp, plan, order_warnings, job,
                           phases, 0, [])
        assert atomic is not None
        log.info("phase: apply")
        apply(plan, job)
        job.shutdown_appliance()  # unmount, sync: every edit is in the overlays
        phases["apply"] = time.monotonic() - t0 - sum(phases.values())
        interrupt.check()
        # The host copies: used NTFS clusters + everything else, straight into the outputs.
        # Source j is written to output slot j (a restored Clonezilla disk is there
        # already, edited in place); the slots are put in output order at the end.
        bitmap = 0.0
        first = background.result() if background is not None else {}
        for i, dev in enumerate(devices):
            j = order[i]
            size = opts.size if i == 0 else None
            if j in in_place:
                copy_stats.append(hostcopy.DiskCopy.restored_in_place(
                    dev, sources[i].virtual_size, (restored or {}).get(j, 0)).to_dict())
                if size is not None and size != sources[i].virtual_size:
                    grow(atomic.partial(outs[j]), opts.format, size)
                continue
            label = f"copy disk {i + 1}/{len(outs)}"
            if j in first:  # copied while the appliance worked: now the edits
                log.info("phase: copy disk %d of %d: what the edits changed", i + 1, len(outs))
                c = hostcopy.second_pass(job.overlay(j), first[j], atomic.partial(outs[j]),
                                         opts.format, job.workdir, label=f"{label} (changes)",
                                         progress=progress)
            else:
                log.info("phase: copy disk %d of %d", i + 1, len(outs))
                c = hostcopy.copy_disk(
                    job.overlay(j), dev, atomic.partial(outs[j]), opts.format, size,
                    job.workdir, label=label, progress=progress)
            copy_stats.append(c.to_dict())
            bitmap += c.plan_seconds
            interrupt.check()
        check_unchanged(sources, sizes)
        place_in_order([atomic.partial(o) for o in outs], order)
        phases["bitmap"] = round(bitmap, 3)
        phases["copy"] = time.monotonic() - t0 - sum(phases.values())
        log.info("phase: domain XML and report")
        elem, xml_warnings = build_domain(insp, plan, opts, outs)
        xml_partial = atomic.partial(xml_path)
        xml_partial.write_bytes(libvirt_xml.to_xml_bytes(elem))
        libvirt_xml.validate_with_libvirt(xml_partial)
        written = sum(atomic.partial(d).stat().st_blocks * 512 for d in outs)
        report = make_report(sources, outs, xml_path, report_path, False, insp, plan,
                         [*order_warnings, *xml_warnings], job, phases, written, copy_stats)
        atomic.partial(report_path).write_text(json.dumps(report.to_dict(), indent=2,
                                                          default=str) + "\n")
        interrupt.check()
        atomic.commit()
    return report  # make_report() attached the plan for the CLI's text form


def _first_passes(opts: ConvertOptions, sources: list[SourceImage], in_place: set[int],
                  atomic: AtomicOutputs | None, outs: list[Path], by_inspection: bool,
                  job: Job, progress: ProgressCallback | None
                  ) -> contextlib.AbstractContextManager[hostcopy.BackgroundCopy | None]:
    """The copy of every copied disk's source, started now and run while the appliance
    inspects, plans and applies (:class:`hostcopy.BackgroundCopy`); none for a dry run,
    or when the system disk is only known after inspection (the output order, and so
    which disk ``--size`` sizes, is not known yet)."""
    copied = [j for j in range(len(sources)) if j not in in_place]
    if opts.dry_run or atomic is None or by_inspection or not copied:
        return contextlib.nullcontext()
    disks = [(j, sources[j].path, sources[j].format, device_name(j), atomic.partial(outs[j]),
              opts.size if j == 0 else None) for j in copied]
    return hostcopy.BackgroundCopy(disks, opts.format, job.scratch(), progress)


__all__ = ["convert", "ConvertOptions", "ConversionReport", "make_options", "parse_size"]
