"""What a Windows guest is, as typed, JSON-serialisable data, and how it is read.

The facts come from the hives, one module per topic: :mod:`.version` (product,
version, edition, architecture, host name), :mod:`.hal`, :mod:`.storage` (the
controllers the machine booted from), :mod:`.nics` (physical adapters and their
TCP/IP settings), over the device walk and class GUIDs of :mod:`.classes`.  The
conversion steps (``windows/``, ``virtio/``) and ``check`` build on them.

``inspect_hives`` works on bare hive files (no disk around them: the real
hives in the test data, or hives a caller extracted itself); :func:`inspect_job`
adds what only the disk knows (partitions, firmware, system root, Driver Cache
cabinets) around the same hive readers, for a job's Windows root (the public
``p2vimage.inspect`` opens a read-only job for it).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

from ..formats.partition_table import ESP_TYPE
from ..guest import windows_root
from ..guest.appliance import Job
from ..guest.registry import ControlSets, Hive, read_control_sets
from . import hal as hal_mod
from . import nics as nics_mod
from . import storage, version

# Services the virtio-win drivers install (names as virtio-win INFs write them).
VIRTIO_SERVICES = (
    "viostor",
    "vioscsi",
    "netkvm",
    "BALLOON",
    "VirtioSerial",
    "vioser",
    "VirtRng",
    "viorng",
    "vioinput",
    "pvpanic",
    "FwCfg",
)


@dataclass
class ControlSetInfo:
    current: int
    default: int
    last_known_good: int | None
    failed: int | None
    present: list[str]
    bootable: list[str]

    @classmethod
    def from_select(cls, cs: ControlSets) -> ControlSetInfo:
        return cls(
            current=cs.current,
            default=cs.default,
            last_known_good=cs.last_known_good,
            failed=cs.failed,
            present=list(cs.present),
            bootable=cs.bootable(),
        )


@dataclass
class StorageControllerInfo:
    description: str | None
    hardware_id: str
    service: str | None
    start: int | None


@dataclass
class HalSummary:
    hardware_id: str
    hal: str | None
    multiprocessor: bool | None


@dataclass
class VirtioDriver:
    service: str
    start: int | None
    image_path: str | None


@dataclass
class Cabinet:
    path: str
    size: int


@dataclass
class Inspection(version.WindowsVersion):
    """Everything the conversion steps need to know about the guest: its version (the
    fields of :class:`~p2vimage.inspection.version.WindowsVersion`) and the rest."""

    arch: str | None = None
    hostname: str | None = None
    system_root: str | None = None
    windows_partition: str | None = None
    partition_table: str | None = None
    firmware: str | None = None
    control_sets: ControlSetInfo | None = None
    hal: HalSummary | None = None
    storage_controllers: list[StorageControllerInfo] = field(default_factory=list)
    boot_storage_drivers: list[str] = field(default_factory=list)
    nics: list[nics_mod.Nic] = field(default_factory=list)
    virtio_drivers: list[VirtioDriver] = field(default_factory=list)
    driver_cabinets: list[Cabinet] = field(default_factory=list)
    drive_letters: dict[str, str] = field(default_factory=dict)
    real_time_is_universal: bool = False
    has_driver_database: bool = False
    appliance_launches: int | None = None
    launch_attempts: int | None = None

    @property
    def is_nt5(self) -> bool:
        return self.major is not None and self.major < 6

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the CLI (the JSON form carries everything)."""
        cs = self.control_sets
        ver = ".".join(str(x) for x in (self.major, self.minor, self.build) if x is not None)
        lines = [
            f"Product:          {self.product_name or 'unknown'}",
            f"Version:          {ver or 'unknown'}"
            + (f" ({self.service_pack})" if self.service_pack else ""),
            f"Edition:          {self.edition or '-'}   Product type: {self.product_type or '-'}",
            f"Architecture:     {self.arch or 'unknown'}",
            f"Hostname:         {self.hostname or '-'}",
            f"System root:      {self.system_root or '-'}",
            f"Windows on:       {self.windows_partition or '-'}"
            f"  ({self.partition_table or '-'}, firmware {self.firmware or '-'})",
        ]
        if cs:
            lines.append(
                f"Control sets:     Current={cs.current} Default={cs.default} "
                f"LastKnownGood={cs.last_known_good}  present: {', '.join(cs.present)}"
            )
        if self.hal:
            mp = {True: "multiprocessor", False: "uniprocessor", None: "?"}[self.hal.multiprocessor]
            lines.append(f"HAL:              {self.hal.hal or '?'} ({self.hal.hardware_id}, {mp})")
        lines.append(f"Boot storage:     {', '.join(self.boot_storage_drivers) or 'none found'}")
        for c in self.storage_controllers:
            lines.append(
                f"  controller      {c.description or '?'} [{c.hardware_id}] "
                f"service={c.service} start={c.start}"
            )
        lines.append(f"Physical NICs:    {len(self.nics)}")
        for n in self.nics:
            how = "DHCP" if n.dhcp else "static " + ", ".join(
                f"{a}/{m}" for a, m in zip(n.ip_addresses, n.subnet_masks, strict=False)
            )
            lines.append(
                f"  {n.connection_name or '?'}: {n.description or '?'} "
                f"(service {n.driver_service}, MAC {n.mac or 'not recorded'}) {how}"
                + (f" gw {', '.join(n.gateways)}" if n.gateways else "")
                + (f" dns {', '.join(n.dns_servers)}" if n.dns_servers else "")
            )
        lines.append(
            "Virtio drivers:   "
            + (", ".join(f"{v.service}(start={v.start})" for v in self.virtio_drivers) or "none")
        )
        lines.append(
            "Driver cabinets:  "
            + (", ".join(os.path.basename(c.path) for c in self.driver_cabinets) or "none")
        )
        rtc = "yes" if self.real_time_is_universal else "no (localtime)"
        lines.append(f"RTC in UTC:       {rtc}")
        return lines


def _virtio_drivers(system: Hive, control_set: str) -> list[VirtioDriver]:
    services = system.node(f"{control_set}\\Services")
    out = []
    if services is None:
        return out
    for name in VIRTIO_SERVICES:
        node = system.node(name, services)
        if node is not None:
            out.append(
                VirtioDriver(
                    service=system.node_name(node),
                    start=system.get_int(node, "Start"),
                    image_path=system.get_str(node, "ImagePath"),
                )
            )
    return out


def fill_from_hives(insp: Inspection, system: Hive, software: Hive | None) -> Inspection:
    """Fill the registry-derived fields of ``insp`` from open hives."""
    cs = read_control_sets(system)
    insp.control_sets = ControlSetInfo.from_select(cs)
    ccs = ControlSets.name(cs.current)
    if software is not None:
        ver = version.read_software_version(software)
        for f in ("product_name", "major", "minor", "build", "service_pack", "edition",
                  "installation_type"):
            if getattr(insp, f) is None:
                setattr(insp, f, getattr(ver, f))
    insp.product_type = version.read_product_type(system, ccs)
    if insp.edition is None and (insp.major is None or insp.major < 6):
        insp.edition = version.read_edition(system, ccs, insp.product_type)
    insp.arch = insp.arch or version.read_system_arch(system, ccs)
    insp.hostname = insp.hostname or version.read_hostname(system, ccs)
    hal = hal_mod.read_hal(system, ccs)
    insp.hal = HalSummary(hal.hardware_id, hal.hal, hal.multiprocessor) if hal else None
    controllers = storage.storage_controllers(system, ccs)
    insp.storage_controllers = [
        StorageControllerInfo(c.description, c.hardware_id, c.service, c.start)
        for c in controllers
    ]
    insp.boot_storage_drivers = storage.boot_storage_drivers(controllers)
    insp.nics = nics_mod.physical_nics(system, ccs)
    insp.virtio_drivers = _virtio_drivers(system, ccs)
    tzi = system.node(f"{ccs}\\Control\\TimeZoneInformation")
    insp.real_time_is_universal = system.get_int(tzi, "RealTimeIsUniversal") == 1
    insp.has_driver_database = system.node("DriverDatabase") is not None
    return insp


def inspect_hives(
    system: str | os.PathLike[str], software: str | os.PathLike[str] | None = None
) -> Inspection:
    """Inspect bare hive files (read-only): no disk, so no partition or file facts."""
    sys_hive = Hive(system, name="SYSTEM")
    soft_hive = Hive(software, name="SOFTWARE") if software is not None else None
    return fill_from_hives(Inspection(), sys_hive, soft_hive)


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
