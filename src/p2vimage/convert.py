"""``convert``: from a captured disk image to a KVM guest (disk, libvirt XML, report).

The pipeline, input, conversion and output kept apart as in virt-v2v:
  preflight -> options, outputs and space checked; outputs claimed (:mod:`.preflight`)
  sources   -> a writable Job (an overlay over each source, or a Clonezilla disk
               restored into its output and edited in place); one appliance
  inspect   -> Inspection
  plan      -> Plan, from the steps in :mod:`.planner`, and the domain it implies
               (``--dry-run`` stops here)
  apply     -> files, registry edits committed once, boot sectors (:mod:`.apply`)
  check     -> ``check``'s logic on the edited guest with the domain's devices, in the
               same appliance session: not ready is a ConversionError (``--force``
               writes it anyway, the findings in the report)
  copy      -> the host copies into OUT.partial (+ -2, ...): the source's used data
               while the appliance works, then what the edits changed
  outputs   -> domain XML (:mod:`.domain`), report (:mod:`.report`); renamed together

OUT is the system disk: the first source, or for Clonezilla directories the disk
the inspection found Windows on (:func:`_disk_order`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import interrupt, libvirt_xml
from .apply import apply
from .check import CheckReport, check_job
from .check.domain import facts_of
from .check.report import ERROR
from .destinations import TARGET_TYPES, LibvirtTarget, Target
from .domain import build_domain
from .errors import ConversionError, UsageError
from .guest.appliance import Job
from .guest.disks import device_name, disk_index
from .inspection import Inspection, inspect_job
from .landing import Landing, extra_outputs
from .options import ConvertOptions, make_options, parse_size
from .plan import PlanContext
from .planner import make_plan
from .preflight import (
    check_unchanged,
    disk_size_in_vm,
    file_size,
    output_targets,
    scratch_parent,
    space_needs,
    validate,
)
from .progress import ProgressCallback, check_callback
from .report import ConversionReport, Devices
from .sources.image import SourceImage, normalise_format
from .sources.prepare import SourceSet
from .targets import hostcopy, space
from .targets.atomic import AtomicOutputs
from .targets.disk import grow, place_in_order, system_first
from .virtio.media import VirtioMedia, open_media

log = logging.getLogger("p2vimage")


def convert(
    source: str | os.PathLike[str] | list[str | os.PathLike[str]],
    output: str | os.PathLike[str] | Target | None,
    *,
    options: ConvertOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: interrupt.Cancel | threading.Event | None = None,
    **kw: Any,
) -> ConversionReport:
    """Convert a captured physical Windows disk image (several: a multi-disk machine).

    ``progress`` is called with :class:`~p2vimage.progress.Progress` values while bytes
    move (a Clonezilla restore, then each disk's copy, per pass): during the first copy
    pass, which runs while the appliance works, from p2vimage's copy thread, so the
    callback must be quick and thread-safe; otherwise from the calling thread.
    ``cancel`` (a :class:`~p2vimage.interrupt.Cancel`) set from another thread stops
    this call only: it raises :class:`~p2vimage.errors.Interrupted`, nothing written.

    Options come as keywords (``virtio_win="/srv/virtio-win.iso", bus="ide"``) or as a
    :class:`ConvertOptions` (``options=``), keywords overriding it; paths may be ``str``;
    a bad value is a UsageError before any work.

    ``output`` is the output disk's path, or a target object
    (:mod:`p2vimage.destinations`); ``target=`` names the target beside a path (default
    ``"local"``: the files only).  A :class:`~p2vimage.destinations.LibvirtTarget` needs
    no path: the local files are then made in a scratch directory, removed at the end.

    Safe to call from several threads at once (each call has its own appliance, overlay,
    work directory and claimed outputs).  Installs no signal handler: the CLI does.
    """
    srcs = [source] if isinstance(source, (str, os.PathLike)) else \
        list(source) if isinstance(source, (list, tuple)) else []
    if not srcs or not all(isinstance(s, (str, os.PathLike)) for s in srcs):
        raise UsageError("source: a path (str or os.PathLike), or a non-empty list of them")
    if isinstance(output, TARGET_TYPES):
        if kw.get("target") is not None:
            raise UsageError("output is a target and target= is given too: give one")
        kw["target"] = output
        output = None
    opts = make_options(output if output is not None else ".", options, **kw)
    opts.check_values()
    check_callback(progress)
    if opts.source_format is not None:
        normalise_format(opts.source_format)  # an unknown format: refused before any work
    scratch = None
    if output is None:
        if not isinstance(opts.target, LibvirtTarget):
            raise UsageError(f"an output path is needed for --to {opts.target.kind} (-o OUT)")
        scratch = Path(tempfile.mkdtemp(prefix="p2vimage-libvirt-"))
        opts = dataclasses.replace(opts, output=scratch / f"disk.{opts.format}")
    try:
        with interrupt.job(cancel):
            return _run(srcs, opts, progress, keep_local=scratch is None)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(srcs: list[str | os.PathLike[str]], opts: ConvertOptions,
         progress: ProgressCallback | None, *, keep_local: bool = True) -> ConversionReport:
    t0 = time.monotonic()
    phases: dict[str, float] = {}
    with SourceSet(srcs, opts.source_format, ssh_identity=opts.ssh_identity,
                   ssh_known_hosts=opts.ssh_known_hosts) as source_set:
        sources = source_set.sources
        validate(opts, sources)
        media = open_media(opts.virtio_win) if opts.virtio_win is not None else None
        try:
            targets = output_targets(opts, len(sources))
            source_set.check_outputs(targets)
            with Landing(opts, len(sources)) as landing:  # its checks: before any work
                # Outputs are claimed (locked .partial files) before any work, so a second job
                # on the same output fails now instead of trampling this one.
                atomic = None if opts.dry_run else AtomicOutputs(
                    targets + extra_outputs(opts), overwrite=opts.overwrite)
                with atomic or contextlib.nullcontext():
                    needs = space_needs(opts, source_set, targets)
                    space.check(needs)
                    landing.check_space(sum(n.size for n in needs
                                            if n.what.startswith("the output disk")))
                    in_place: set[int] = set()
                    if source_set.has_directories:
                        if atomic is None:  # a dry run: temporary raws, removed at the end
                            sources = source_set.restore(scratch_parent(opts), progress)
                        else:  # straight into the outputs, which the job then edits in place
                            in_place = source_set.restore_in_place(
                                [atomic.partial(o) for o in targets[: len(sources)]], opts.format,
                                progress)
                            sources = source_set.sources
                        phases["restore"] = time.monotonic() - t0
                    return _convert(opts, source_set, sources, media, t0, phases, atomic,
                                    landing, progress=progress, in_place=in_place,
                                    keep_local=keep_local)
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


def _convert(opts: ConvertOptions, source_set: SourceSet, sources: list[SourceImage],
             media: VirtioMedia | None, t0: float, phases: dict[str, float],
             atomic: AtomicOutputs | None, landing: Landing, *,
             progress: ProgressCallback | None = None, in_place: set[int] | None = None,
             keep_local: bool = True) -> ConversionReport:
    by_inspection = source_set.system_disk_by_inspection
    *outs, xml_path, report_path = output_targets(opts, len(sources))
    copy_stats: list[hostcopy.DiskCopy] = []
    in_place = in_place or set()
    sizes = [None if i in in_place else file_size(s.path) for i, s in enumerate(sources)]
    with Job(sources, writable=not opts.dry_run, root=opts.root,
             in_place=frozenset(in_place)) as job, \
            source_set.watch(lambda ns: job.abort(f"{ns.display} stopped answering")), \
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
        disk_size = disk_size_in_vm(job, insp, opts, disk)
        phases["inspect"] = time.monotonic() - t0 - sum(phases.values())
        log.info("phase: plan")
        context = PlanContext(options=opts, workdir=job.scratch(), disk_size=disk_size,
                              media=media)
        plan = make_plan(insp, job.view(insp), context)
        elem, xml_warnings = build_domain(insp, plan, opts, outs)
        vm = Devices.of(elem)
        landing.after_plan(insp, plan, outs,
                           [disk_size, *(s.virtual_size for s in sources[1:])])
        phases["plan"] = time.monotonic() - t0 - sum(phases.values())
        interrupt.check()

        def report(**kw: Any) -> ConversionReport:
            copy_warnings = [w for c in kw.get("copy", ()) for w in c.warnings]
            return ConversionReport(
                sources=[s.describe(sum(t.origin == s.origin for t in sources) > 1)
                         for s in sources],
                inspection=insp, plan=plan, devices=vm,
                warnings=[*plan.warnings, *order_warnings, *xml_warnings, *copy_warnings,
                          *landing.report.warnings],
                target=landing.report,
                appliance_launches=job.stats.appliance_launches,
                launch_attempts=job.stats.launch_attempts,
                network_bytes_read=sum(source_set.network_bytes_read().values())
                if source_set.network else None,
                phases={k: round(v, 3) for k, v in phases.items()}, **kw)

        if opts.dry_run:
            return report(outputs=[], xml=None, report=None, dry_run=True, bytes_read=0,
                          bytes_written=0)
        assert atomic is not None
        log.info("phase: apply")
        apply(plan, job)
        phases["apply"] = time.monotonic() - t0 - sum(phases.values())
        log.info("phase: check the edited guest")
        checked = _check_applied(job, insp, elem, outs[0], xml_path, opts.force, disk_size)
        job.shutdown_appliance()  # unmount, sync: every edit is in the overlays
        phases["check"] = time.monotonic() - t0 - sum(phases.values())
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
                    dev, sources[i].virtual_size, source_set.restored_bytes.get(j, 0)))
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
            copy_stats.append(c)
            bitmap += c.plan_seconds
            interrupt.check()
        check_unchanged(sources, sizes)
        place_in_order([atomic.partial(o) for o in outs], order)
        phases["bitmap"] = round(bitmap, 3)
        phases["copy"] = time.monotonic() - t0 - sum(phases.values())
        log.info("phase: domain XML and report")
        xml_partial = atomic.partial(xml_path)
        xml_partial.write_bytes(libvirt_xml.to_xml_bytes(elem))
        libvirt_xml.validate_with_libvirt(xml_partial)
        written = sum(atomic.partial(d).stat().st_blocks * 512 for d in outs)
        interrupt.check()
        log.info("phase: target (%s)", landing.report.kind)
        landing.finish(atomic, outs, [*outs, xml_path, report_path] if keep_local
                       else [report_path] if opts.report else [], progress)
        try:
            if landing.report.kind != "local":  # (local: the files are the outputs)
                phases["target"] = time.monotonic() - t0 - sum(phases.values())
            result = report(outputs=[str(o) for o in outs] if keep_local else [],
                            xml=str(xml_path) if keep_local else None,
                            report=str(report_path) if keep_local or opts.report else None,
                            dry_run=False, bytes_read=sum(c.bytes_read for c in copy_stats),
                            bytes_written=written, check=checked, copy=copy_stats)
            atomic.partial(report_path).write_text(json.dumps(result.to_dict(), indent=2,
                                                              default=str) + "\n")
            interrupt.check()
            atomic.commit()
        except BaseException:
            landing.undo()  # nothing left on the target host either
            raise
    return result


def _check_applied(job: Job, insp: Inspection, elem: Any, out: Path, xml_path: Path,
                   force: bool, disk_size: int) -> CheckReport:
    """``check`` on the edited guest, with the devices of the domain about to be written:
    convert never calls a guest ready that ``check`` would reject.  Not ready is a
    ConversionError naming the error findings, unless ``force``."""
    result = check_job(job, image=str(out), facts=facts_of(elem),
                       xml=str(xml_path), inspection=insp, disk_size=disk_size)
    errors = [f for f in result.findings if f.severity == ERROR]
    if errors and not force:
        raise ConversionError(
            "the converted guest would not boot: " + "; ".join(
                f"{f.id}: {f.message}" for f in errors)
            + " (nothing was written; --force writes it anyway, with these findings in "
            "the report)")
    for f in errors:
        log.warning("--force: written although not ready: %s: %s", f.id, f.message)
    return result


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
    disks = [(j, sources[j].copy_path or sources[j].path, sources[j].format, device_name(j),
              atomic.partial(outs[j]),
              opts.size if j == 0 else None) for j in copied]
    return hostcopy.BackgroundCopy(disks, opts.format, job.scratch(), progress)


__all__ = ["convert", "ConvertOptions", "ConversionReport", "make_options", "parse_size"]
