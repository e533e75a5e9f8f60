"""``check``: will this image boot on KVM, on which devices — decided without booting it.

The image is attached read-only (libguestfs writes nothing to it) and every check reads
the guest the way Windows will at boot: the devices QEMU presents for the bus, matched
by ID to a boot-start driver in each bootable control set, the files those drivers
need, the NT 5.x boot code's geometry, and the state of the volumes.  The result is a
:class:`CheckReport`; only error-severity findings make an image "not ready".
"""

from __future__ import annotations

import os
from pathlib import Path

from ..api import inspect_job
from ..errors import UsageError
from ..guest.appliance import Job
from ..inspection import Inspection
from ..sources.image import open_source
from . import devices, domain, drivers, hygiene, storage, system
from .guest import GuestView
from .report import ERROR, CheckReport, CheckResult, Finding

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
) -> CheckReport:
    """Check a disk image read-only; see the module docstring for what is evaluated."""
    _validate(bus, nic, vcpus)
    facts = domain.read_domain(Path(xml)) if xml is not None else None
    src = open_source(image, source_format)
    with Job([src], writable=False, root=root) as job:
        return check_job(job, image=str(image), bus=bus, nic=nic, vcpus=vcpus, facts=facts,
                         xml=str(xml) if xml is not None else None)


def check_job(job: Job, *, image: str, bus: str | None = None, nic: str | None = None,
              vcpus: int | None = None, facts: domain.DomainFacts | None = None,
              xml: str | None = None) -> CheckReport:
    """Check the current root of a read-only job (tools checking many disks in one
    appliance switch roots with ``job.use_root`` between calls)."""
    _validate(bus, nic, vcpus)
    insp = inspect_job(job)
    g = job.g
    view = _view(insp, job.hive("SYSTEM"), job.hive("SOFTWARE"), g)
    disk = g.part_to_dev(job.root_device)
    part_start = boot_sector = None
    if insp.is_nt5:
        num = g.part_to_partnum(job.root_device)
        part_start = next(int(p["part_start"]) // 512 for p in g.part_list(disk)
                          if int(p["part_num"]) == num)
        boot_sector = g.pread_device(job.root_device, 512, 0)
    return _run(view, insp, image, bus, nic, vcpus, facts, xml,
                disk_size=g.blockdev_getsize64(disk), boot_sector=boot_sector,
                part_start=part_start, system_partition=job.root_device)


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
    if bus is not None and bus not in devices.BUSES:
        raise UsageError(f"--bus {bus}: use one of {', '.join(devices.BUSES)}")
    if nic is not None and nic not in devices.NICS:
        raise UsageError(f"--nic {nic}: use one of {', '.join(devices.NICS)}")
    if vcpus is not None and not 1 <= vcpus <= 1024:
        raise UsageError(f"--vcpus {vcpus}: must be between 1 and 1024")


def _view(insp: Inspection, sysh, soft, g) -> GuestView:
    cs = insp.control_sets
    bootable = cs.bootable if cs else []
    # Default first: it is what the boot loader uses.
    default = f"ControlSet{cs.default:03d}" if cs else None
    bootable = sorted(bootable, key=lambda n: n.lower() != (default or "").lower())
    return GuestView(sysh, soft, bootable, insp.major, insp.minor, insp.arch,
                     insp.system_root, g)


def _service_start(view: GuestView, name: str) -> int | None:
    return view.system.get_int(view.system.node(f"{view.control_sets[0]}\\Services\\{name}"),
                               "Start")


def _run(view: GuestView, insp: Inspection, image: str, bus: str | None, nic: str | None,
         vcpus: int | None, facts: domain.DomainFacts | None, xml: str | None, *,
         disk_size: int | None = None, boot_sector: bytes | None = None,
         part_start: int | None = None, system_partition: str | None = None) -> CheckReport:
    uefi = insp.firmware == "uefi"
    conflicts: list[tuple[str, str, str]] = []
    if facts is not None:
        for what, asked, has in (("bus", bus, facts.bus), ("nic", nic, facts.nic),
                                 ("vcpus", vcpus, facts.vcpus)):
            if asked is not None and has is not None and asked != has:
                conflicts.append((what, str(asked), str(has)))
        bus = bus or (facts.bus if facts.bus in devices.BUSES else None)
        nic = nic or facts.nic
        vcpus = vcpus or facts.vcpus
    if bus is None:
        bus = "virtio-blk" if _service_start(view, "viostor") == 0 else (
            "sata" if uefi else "ide")
    machine = facts.machine if facts is not None else ("q35" if uefi or bus == "sata" else "pc")
    modern = machine == "q35" and not (facts is not None and facts.transitional)
    if nic is None:  # as convert picks: virtio when NetKVM is there for PnP
        netkvm = _service_start(view, "netkvm") is not None or drivers.staged_for(
            view, devices.nic_device("virtio", modern))
        nic = "virtio" if netkvm else ("rtl8139" if insp.is_nt5 else "e1000")
    version = ".".join(str(x) for x in (insp.major, insp.minor, insp.build) if x is not None)
    report = CheckReport(
        image=image, bus=bus, nic=nic, machine=machine, vcpus=vcpus, xml=xml,
        guest={"product_name": insp.product_name, "version": version, "arch": insp.arch,
               "system_root": insp.system_root, "firmware": insp.firmware,
               "control_sets": view.control_sets},
    )
    if not view.control_sets:
        res = CheckResult("boot-storage", "Boot storage driver")
        res.add("registry.no-bootable-control-set", ERROR,
                "the SYSTEM hive's Select names no existing control set", ["SYSTEM\\Select"])
        report.checks.append(res)
        return report
    chain = devices.boot_chain(bus, machine, modern)
    report.checks.append(storage.check_boot_storage(view, bus, chain))
    report.checks.append(system.check_boot_start_files(view))
    report.checks.append(system.check_geometry(view, boot_sector, disk_size, part_start))
    report.checks.append(system.check_hal(view, vcpus))
    wanted = [d for d in chain if d.role == "controller" and bus.startswith("virtio")]
    nic_dev = devices.nic_device(nic, modern)
    if nic == "virtio":
        wanted.append(nic_dev)
    virtio = drivers.check_virtio_staging(view, wanted)
    if not wanted:
        virtio = CheckResult(virtio.id, virtio.title, skipped="no virtio device in this setup")
    report.checks.append(virtio)
    report.checks.append(drivers.check_network(view, nic, nic_dev))
    report.checks.append(hygiene.check_hygiene(view, system_partition))
    if facts is not None and xml is not None:
        res = domain.check_domain(facts, insp.firmware, insp.real_time_is_universal, xml)
        for what, asked, has in conflicts:
            res.add("xml.mismatch", ERROR,
                    f"--{what} {asked} but the domain XML has {has}", [f"{xml}"])
        report.checks.append(res)
    return report
