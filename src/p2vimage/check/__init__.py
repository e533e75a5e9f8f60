"""``check``: will this image boot on KVM, on which devices — decided without booting it.

The image is attached read-only (libguestfs writes nothing to it) and every check reads
the guest the way Windows will at boot: the devices QEMU presents for the bus, matched
by ID to a boot-start driver in each bootable control set, the files those drivers
need, the NT 5.x boot code's geometry, and the state of the volumes.  The result is a
:class:`CheckReport`; only error-severity findings make an image "not ready".
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from .. import choices, interrupt
from ..errors import (
    BadInputError,
    CouldNotCheckError,
    Interrupted,
    P2VError,
    TemporaryError,
    UsageError,
)
from ..formats.partition_table import DiskLayout
from ..guest.appliance import Job
from ..inspection import Inspection, inspect_job
from ..progress import ProgressCallback, Steps, check_callback
from ..sources.prepare import opened
from . import devices, domain, drivers, hygiene, storage, system
from .guest import CheckView
from .report import ERROR, CheckReport, CheckResult, Finding

log = logging.getLogger("p2vimage")

__all__ = ["check", "check_job", "check_hives", "CheckReport", "CheckResult", "Finding"]


def check(
    image: str | os.PathLike[str],
    *,
    bus: str | None = None,
    nic: str | None = None,
    xml: str | os.PathLike[str] | None = None,
    vcpus: int | None = None,
    source_format: str | None = None,
    root: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: interrupt.Cancel | threading.Event | None = None,
    ssh_identity: str | os.PathLike[str] | None = None,
    ssh_known_hosts: str | os.PathLike[str] | None = None,
) -> CheckReport:
    """Check a disk image read-only; see the module docstring for what is evaluated.

    ``progress`` is called with a :class:`~p2vimage.progress.Progress` (``unit="steps"``)
    as each phase starts (``launch``, ``inspect``, ``checks``) and once at the end;
    ``cancel`` stops this call only (Interrupted) at the next phase.  ``image`` may be
    a network URI, as for ``convert`` (with its ``ssh_*`` keywords).
    """
    _validate(bus, nic, vcpus)  # before reading the XML or starting anything
    check_callback(progress)
    facts = domain.read_domain(Path(xml)) if xml is not None else None
    steps = Steps(progress, "check", ("launch", "inspect", "checks"))
    with interrupt.job(cancel), opened(image, source_format, ssh_identity=ssh_identity,
                                       ssh_known_hosts=ssh_known_hosts) as src:
        try:
            with Job([src.source], writable=False, root=root) as job, src.watch(job.abort):
                steps.next()
                job.launch()
                interrupt.check()
                steps.next()
                insp = inspect_job(job)
                interrupt.check()
                steps.next()
                report = check_job(job, image=str(image), bus=bus, nic=nic, vcpus=vcpus,
                                   facts=facts, xml=str(xml) if xml is not None else None,
                                   inspection=insp)
                steps.finish()
                return report
        except (BadInputError, UsageError, TemporaryError, Interrupted, KeyboardInterrupt):
            raise
        except P2VError as exc:  # appliance failure, missing package: could not check
            raise CouldNotCheckError(f"could not check {image}: {exc}") from exc


def check_job(job: Job, *, image: str, bus: str | None = None, nic: str | None = None,
              vcpus: int | None = None, facts: domain.DomainFacts | None = None,
              xml: str | None = None, inspection: Inspection | None = None,
              disk_size: int | None = None) -> CheckReport:
    """Check the current root of a job (tools checking many disks in one appliance
    switch roots with ``job.use_root`` between calls; ``convert`` checks its writable
    job after applying the plan, so the boot sector is then read from the disk, not
    from the layout read before the edits).

    ``inspection``: this root's :func:`inspect_job` result when the caller already has
    it (checking one root against several buses need not read its hives again).
    ``disk_size``: the disk's size in the VM when it differs from the image's
    (``convert --size``).
    """
    _validate(bus, nic, vcpus)
    if inspection is None:
        log.info("phase: inspect")
        inspection = inspect_job(job)
    insp = inspection
    g = job.g
    view = _view(insp, job.hive("SYSTEM"), job.hive("SOFTWARE"), g)
    root = job.root_device
    disk = job.root_disk()
    info = job.disk_info(disk)
    view.layout = info.layout if info is not None else None
    part_start = boot_sector = None
    if insp.is_nt5:
        boot_part, part_start = _boot_partition(g, disk, root, view.layout)
        part = view.layout.partition(boot_part) if view.layout is not None else None
        boot_sector = part.boot_sector if part is not None and part.boot_sector and \
            not job.writable else g.pread_device(boot_part, 512, 0)
    log.info("phase: checks")
    return _run(view, insp, image, bus, nic, vcpus, facts, xml,
                disk_size=disk_size or (info.size if info is not None
                                        else g.blockdev_getsize64(disk)),
                boot_sector=boot_sector, part_start=part_start, system_partition=root)


def _boot_partition(g, disk: str, root: str,
                    layout: DiskLayout | None) -> tuple[str, int | None]:
    """The partition whose boot code runs (the MBR's active one; NTLDR may live on C: while
    Windows is on D:) and its start sector; the Windows partition when none is active."""
    if disk == root:
        return root, 0
    if layout is not None:
        active = [p for p in layout.partitions if p.active]
        part = active[0] if active else layout.partition(root)
        return (part.name, part.start // 512) if part is not None else (root, None)
    entries = {p: hygiene.part_entry(g, p) for p in g.list_partitions()
               if g.part_to_dev(p) == disk}
    active_names = [p for p, e in entries.items() if e.get("PART_ENTRY_FLAGS") == "0x80"]
    name = active_names[0] if active_names else root
    offset = entries.get(name, {}).get("PART_ENTRY_OFFSET")
    return name, int(offset) if offset and offset.isdigit() else None


def check_hives(system_hive: str | os.PathLike[str], software_hive=None, *, bus: str = "ide",
                nic: str | None = None, vcpus: int | None = None) -> CheckReport:
    """The registry part of ``check`` on bare hive files (no disk: file checks skipped)."""
    from ..guest.registry import Hive
    from ..inspection import fill_from_hives

    _validate(bus, nic, vcpus)
    sysh = Hive(system_hive, name="SYSTEM")
    soft = Hive(software_hive, name="SOFTWARE") if software_hive is not None else None
    insp = fill_from_hives(Inspection(), sysh, soft)
    view = _view(insp, sysh, soft, None)
    return _run(view, insp, str(system_hive), bus, nic, vcpus, None, None)


def _validate(bus: str | None, nic: str | None, vcpus: int | None) -> None:
    choices.check_choice("bus", bus, choices.BUSES)
    choices.check_choice("nic", nic, choices.NICS)
    choices.check_vcpus(vcpus)


def _view(insp: Inspection, sysh, soft, g) -> CheckView:
    cs = insp.control_sets
    bootable = cs.bootable if cs else []
    # Default first: it is what the boot loader uses.
    default = f"ControlSet{cs.default:03d}" if cs else None
    present = {p.lower() for p in (cs.present if cs else [])}
    missing = default if default and default.lower() not in present else None
    bootable = sorted(bootable, key=lambda n: n.lower() != (default or "").lower())
    return CheckView(sysh, soft, bootable, system_root=insp.system_root, g=g,
                     major=insp.major, minor=insp.minor, arch=insp.arch,
                     default_missing=missing, system_drive=_system_drive(insp))


def _system_drive(insp: Inspection) -> str:
    """Drive letter of the Windows volume (ImagePaths may name it as \\??\\X:)."""
    for letter, dev in (insp.drive_letters or {}).items():
        if dev == insp.windows_partition:
            return letter.upper()
    return "C"


def _run(view: CheckView, insp: Inspection, image: str, bus: str | None, nic: str | None,
         vcpus: int | None, facts: domain.DomainFacts | None, xml: str | None, *,
         disk_size: int | None = None, boot_sector: bytes | None = None,
         part_start: int | None = None, system_partition: str | None = None) -> CheckReport:
    conflicts: list[tuple[str, str, str]] = []
    if facts is not None:
        for what, asked, has in (("bus", bus, facts.bus), ("nic", nic, facts.nic),
                                 ("vcpus", vcpus, facts.vcpus)):
            if asked is not None and has is not None and asked != has:
                conflicts.append((what, str(asked), str(has)))
        bus = bus or (facts.bus if facts.bus in choices.BUSES else None)
        nic = nic or facts.nic
        vcpus = vcpus or facts.vcpus
    if not view.control_sets:  # Select points nowhere: nothing else can be evaluated
        report = CheckReport(image=image, bus=bus or "-", nic=nic or "-", machine="-",
                             vcpus=vcpus, xml=xml, guest={"product_name": insp.product_name})
        res = CheckResult("boot-storage", "Boot storage driver")
        res.add("registry.no-bootable-control-set", ERROR,
                "the SYSTEM hive's Select names no existing control set", ["SYSTEM\\Select"])
        report.checks.append(res)
        return report
    # Without a domain XML: the machine and devices convert would choose for this guest.
    machine = facts.machine if facts is not None else choices.machine_for(insp.firmware)
    if bus is None:
        ready = {d for d in choices.BOOT_DRIVER.values() if view.service_start(d) == 0}
        bus = choices.pick_bus(machine, ready)
    if facts is None:
        choices.check_vcpus(vcpus, machine)
    disk_modern = domain.modern_virtio(machine, facts.disk_model if facts else None)
    nic_modern = domain.modern_virtio(machine, facts.nic_model if facts else None)
    if nic is None:  # as convert picks: virtio when NetKVM is there for PnP
        netkvm = view.service_start("netkvm") is not None or drivers.staged_for(
            view, devices.nic_device("virtio", nic_modern))
        nic = choices.pick_nic(insp.is_nt5, netkvm)
    version = ".".join(str(x) for x in (insp.major, insp.minor, insp.build) if x is not None)
    report = CheckReport(
        image=image, bus=bus, nic=nic, machine=machine, vcpus=vcpus, xml=xml,
        guest={"product_name": insp.product_name, "version": version, "arch": insp.arch,
               "system_root": insp.system_root, "firmware": insp.firmware,
               "control_sets": view.control_sets},
    )
    chain = devices.boot_chain(bus, machine, disk_modern)
    boot_storage = storage.check_boot_storage(view, bus, chain)
    if view.default_missing:
        boot_storage.add("registry.default-control-set-missing", ERROR,
                         f"Select\\Default names {view.default_missing}, which does not exist: "
                         "the boot loader has no control set to load", ["SYSTEM\\Select\\Default"])
    report.checks.append(boot_storage)
    report.checks.append(system.check_boot_start_files(view))
    report.checks.append(system.check_geometry(view, boot_sector, disk_size, part_start))
    report.checks.append(system.check_hal(view, vcpus))
    wanted = [d for d in chain if d.role == "controller" and bus.startswith("virtio")]
    nic_dev = devices.nic_device(nic, nic_modern)
    if nic == "virtio":
        wanted.append(nic_dev)
    if wanted:
        report.checks.append(drivers.check_virtio_staging(view, wanted))
    else:
        report.checks.append(CheckResult("virtio-staging", drivers.VIRTIO_TITLE,
                                         skipped="no virtio device in this setup"))
    report.checks.append(drivers.check_network(view, nic, nic_dev))
    report.checks.append(hygiene.check_hygiene(view, system_partition))
    if facts is not None and xml is not None:
        res = domain.check_domain(facts, insp.firmware, insp.real_time_is_universal, xml)
        for what, asked, has in conflicts:
            res.add("xml.mismatch", ERROR,
                    f"--{what} {asked} but the domain XML has {has}", [f"{xml}"])
        report.checks.append(res)
    return report
