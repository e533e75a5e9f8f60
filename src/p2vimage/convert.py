"""``convert``: from a captured disk image to a KVM guest (disk, libvirt XML, report).

Input, conversion and output stay apart, as in virt-v2v:
  sources  -> a writable Job (qcow2 overlay over each source; one appliance)
  inspect  -> Inspection
  plan     -> Plan (data; ``--dry-run`` stops here and writes nothing)
  apply    -> registry edits committed once, boot-sector fields, on the overlay
  outputs  -> OUT.partial (+ -2, ...), XML, report; renamed together at the end

OUT is the system disk: the first source, or for Clonezilla directories the disk
the inspection found Windows on (:func:`_disk_order`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import interrupt, libvirt_xml
from .errors import BadInputError, ConversionError, UsageError
from .formats import inf as inf_mod
from .formats.pe import PEError, read_pe
from .guest import files
from .guest.appliance import Job
from .guest.disks import device_name, disk_index
from .inspection import Inspection, inspect_job
from .plan import BootSectorEdit, FileWrite, Plan
from .progress import ProgressCallback
from .sources.image import SourceImage
from .sources.prepare import SourceSet
from .targets import hostcopy, space
from .targets.atomic import AtomicOutputs
from .targets.disk import grow, output_paths, place_in_order, system_first
from .virtio import select as virtio_select
from .virtio import stage as virtio_stage
from .virtio.media import VirtioMedia, open_media
from .windows import (
    common_nt5,
    emulated_storage,
    firstboot,
    geometry,
    ide_drivers,
    leftovers,
    mergeide,
    nic_removal,
)

BUSES = ("auto", "virtio-blk", "virtio-scsi", "ide", "sata")
NICS = ("auto", "virtio", "e1000", "rtl8139")
log = logging.getLogger("p2vimage")

FORMATS = ("qcow2", "raw")
_XML_BUS = {"virtio-blk": "virtio", "virtio-scsi": "scsi", "ide": "ide", "sata": "sata"}


@dataclass
class ConvertOptions:
    """Every option of :func:`convert` (the CLI's long options, underscored).

    Paths may be given as ``str`` or any ``os.PathLike``; they are kept as ``Path``.
    ``output`` is normally given to :func:`convert` itself.
    """

    output: Path = Path()
    format: str = "qcow2"
    size: int | None = None
    source_format: str | None = None
    name: str | None = None
    memory_mib: int | None = None
    vcpus: int | None = None
    bus: str = "auto"
    nic: str = "auto"
    network: str = "network=default"
    xml: Path | None = None
    report: Path | None = None
    dry_run: bool = False
    overwrite: bool = False
    root: str | None = None
    driver_files: list[Path] = field(default_factory=list)
    virtio_win: Path | None = None
    keep_nics: bool = False
    keep_mac: bool = False
    mac: str | None = None
    ip: list[str] = field(default_factory=list)
    no_firstboot: bool = False
    smbios: Path | None = None
    disable_vendor_services: bool = False

    def __post_init__(self) -> None:
        for name in ("output", "xml", "report", "virtio_win", "smbios"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, _as_path(value, name))
        if isinstance(self.driver_files, (str, os.PathLike)):
            self.driver_files = [self.driver_files]  # type: ignore[list-item]
        self.driver_files = [_as_path(f, "driver_files") for f in self.driver_files]
        if isinstance(self.ip, str):
            self.ip = [self.ip]
        self.ip = list(self.ip)


def _as_path(value: Any, name: str) -> Path:
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise UsageError(f"{name}: a path (str or os.PathLike), not {type(value).__name__}")


def make_options(output: str | os.PathLike[str], options: ConvertOptions | None = None,
                 **kw: Any) -> ConvertOptions:
    """``options`` (or the defaults) with ``output`` and the keyword options applied; an
    unknown option is a UsageError naming it."""
    known = {f.name for f in dataclasses.fields(ConvertOptions)}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise UsageError(f"convert(): unknown option(s) {', '.join(unknown)} "
                         f"(see ConvertOptions)")
    base = options if options is not None else ConvertOptions()
    if not isinstance(base, ConvertOptions):
        raise UsageError(f"options: a ConvertOptions, not {type(base).__name__}")
    return dataclasses.replace(base, output=_as_path(output, "output"), **kw)


@dataclass
class ConversionReport:
    sources: list[str]
    outputs: list[str]
    xml: str | None
    report: str | None
    dry_run: bool
    inspection: dict[str, Any]
    plan: dict[str, Any]
    warnings: list[str]
    appliance_launches: int
    launch_attempts: int
    bytes_read: int
    bytes_written: int
    phases: dict[str, float] = field(default_factory=dict)
    virtio: dict[str, Any] | None = None
    # Per output disk: bytes read and written by the host copy, seconds, MiB/s, and the
    # NTFS volumes copied whole because their bitmap could not be trusted.
    copy: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary_lines(self, plan: Plan | None = None) -> list[str]:
        lines = []
        if plan is not None:
            lines += plan.render()
        if self.dry_run:
            lines.append("Dry run: nothing was written.")
        else:
            lines += [f"Output disk:  {o}" for o in self.outputs]
            lines.append(f"Domain XML:   {self.xml}")
            lines.append(f"Report:       {self.report}")
        lines += [f"Warning:      {w}" for w in self.warnings]
        lines.append(
            f"Appliance launches: {self.appliance_launches}; "
            + ", ".join(f"{k} {v:.1f}s" for k, v in self.phases.items())
        )
        return lines


def parse_size(text: str) -> int:
    """``12G``, ``512M``, ``+1G`` is not accepted: sizes are absolute, binary units, bytes."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    mult = 1
    if t and t[-1] in units:
        mult, t = units[t[-1]], t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise UsageError(f"--size {text!r}: not a size (e.g. 20G, 40960M)") from None
    size = int(value * mult)
    if size <= 0 or size % 512:
        raise UsageError(f"--size {text!r}: must be positive and a multiple of 512 bytes")
    return size


def _validate(opts: ConvertOptions, sources: list[SourceImage]) -> None:
    if opts.format not in FORMATS:
        raise UsageError(f"--format {opts.format}: use qcow2 or raw")
    if opts.bus not in BUSES:
        raise UsageError(f"--bus {opts.bus}: use one of {', '.join(BUSES)}")
    if opts.nic not in NICS:
        raise UsageError(f"--nic {opts.nic}: use one of {', '.join(NICS)}")
    if opts.vcpus is not None and not 1 <= opts.vcpus <= 256:
        raise UsageError(f"--vcpus {opts.vcpus}: must be between 1 and 256")
    libvirt_xml.parse_network(opts.network)
    if opts.mac is not None:
        libvirt_xml.parse_mac(opts.mac)
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
            if _same_file(o, s.path):
                raise UsageError(f"output {o} is the source image itself")
            for b in s.backing_files:
                if _same_file(o, b):
                    raise UsageError(
                        f"output {o} is a backing file of the source {s.path}: writing it "
                        "would change the source while it is read"
                    )


def output_targets(opts: ConvertOptions, disks: int) -> list[Path]:
    """Every file a conversion writes: the disks (OUT, OUT-2 ...), the XML, the report."""
    return [*output_paths(opts.output, disks), opts.xml or opts.output.with_suffix(".xml"),
            opts.report or opts.output.with_suffix(".json")]


def _same_file(a: Path, b: Path) -> bool:
    """Same path, or the same inode (hard links, other spellings of the path)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _plan(insp: Inspection, job: Job, opts: ConvertOptions, disk_size: int,
          media: VirtioMedia | None = None) -> Plan:
    plan = Plan()
    system = job.hive("SYSTEM")
    bootable = insp.control_sets.bootable if insp.control_sets else []
    arch = insp.arch or "x86"
    machine = "pc"
    if insp.firmware == "uefi":
        machine = "q35"
        plan.choose("machine", "q35", "UEFI guest: OVMF firmware on q35")
    else:
        why = (
            "NT 5.x: i440fx, whose PIIX3 IDE has an in-box driver and whose PCI slots "
            "expose the legacy virtio IDs the XP/2003 drivers know"
            if insp.is_nt5
            else "BIOS guest: i440fx"
        )
        plan.choose("machine", machine, why)

    # virtio-win: which packages fit this guest (chosen before the bus, which depends on it)
    selection = None
    if media is not None:
        selection = virtio_select.choose(
            media, major=insp.major or 0, minor=insp.minor or 0, build=insp.build,
            server=(insp.product_type or "WinNT").lower() != "winnt", arch=arch,
        )
    packages = selection.packages if selection else {}
    media_note = (
        "no --virtio-win given" if media is None
        else f"{media.path} has no usable viostor for this guest"
    )
    bus = opts.bus
    if bus == "auto":
        if "viostor" in packages and packages["viostor"].service is not None:
            bus = "virtio-blk"
            plan.choose("disk bus", bus, f"viostor staged from {packages['viostor'].folder}")
        else:
            bus = "sata" if machine == "q35" else "ide"
            plan.choose("disk bus", bus, f"{media_note}: emulated controller")
    else:
        if bus == "ide" and machine == "q35":
            raise UsageError("--bus ide: a UEFI guest runs on q35, which has no IDE; use sata")
        plan.choose("disk bus", bus, "requested with --bus")
    boot_driver = {"virtio-blk": "viostor", "virtio-scsi": "vioscsi"}.get(bus)
    if boot_driver is not None and (
        boot_driver not in packages or packages[boot_driver].service is None
    ):
        raise ConversionError(_no_virtio_message(insp, boot_driver, media, selection))
    nic = opts.nic
    if nic == "auto":
        if "netkvm" in packages:
            nic = "virtio"
            plan.choose("nic model", nic,
                        f"NetKVM staged from {packages['netkvm'].folder} for Plug and Play")
        else:
            nic = "rtl8139" if insp.is_nt5 else "e1000"
            plan.choose(
                "nic model", nic,
                ("no virtio network driver staged" if media is not None else "no --virtio-win")
                + "; in-box driver on "
                + ("Windows 2000/XP/2003" if insp.is_nt5 else "Windows 7 and later"),
            )
    else:
        if nic == "virtio" and "netkvm" not in packages:
            plan.warnings.append("--nic virtio: no NetKVM driver staged; the guest has none")
        plan.choose("nic model", nic, "requested with --nic")
    if media is not None and not packages:
        plan.warnings.append(_no_virtio_message(insp, None, media, selection)
                             + "; the guest uses emulated devices")

    if insp.is_nt5:
        common_nt5.plan_autoreboot(plan, system, bootable)
        common_nt5.plan_intelppm(plan, system, bootable)
        _plan_geometry(plan, job, disk_size)
        # KB314082 always runs on NT 5.x: IDE is the fallback even when virtio is chosen.
        mergeide.plan_mergeide(plan, bootable)
        ide_drivers.plan_ide_drivers(
            plan, job.g, insp.system_root or "/WINDOWS", insp.arch, mergeide.DRIVER_FILES,
            job.scratch(), required=bus == "ide", extra_files=opts.driver_files,
        )
        if bus == "sata":
            plan.warnings.append(
                "Windows 2000/XP/2003 have no in-box AHCI driver: the guest will not boot "
                "on sata unless the machine's own driver supports QEMU's ICH9 AHCI"
            )
    else:
        _plan_nt6_storage(plan, job, insp, system, bootable, machine, bus)
    if media is not None and selection is not None and packages:
        staged = virtio_stage.plan_virtio(
            plan, system=system, software=job.hive("SOFTWARE"), control_sets=bootable,
            systemroot=insp.system_root or "/WINDOWS", major=insp.major or 0,
            minor=insp.minor or 0, arch=arch, media=media, selection=selection,
            boot_driver=boot_driver, workdir=job.scratch(),
        )
        plan.virtio = {
            "media": str(media.path), "volume_id": media.volume_id, "names": media.names,
            "packages": staged.packages, "boot_driver": staged.boot_driver,
            "staged_files": staged.stage_files, "modern_ids": staged.modern,
            "rejected": selection.rejected,
        }
        if "balloon" in packages:
            plan.choose("memballoon", "virtio", f"balloon staged from {packages['balloon'].folder}")
    _plan_network(plan, job, insp, system, bootable, opts)
    return plan


def _plan_network(plan: Plan, job: Job, insp: Inspection, system, bootable: list[str],
                  opts: ConvertOptions) -> None:
    """Drop the physical NICs (unless --keep-nics) and settle the new NIC's MAC."""
    if opts.keep_nics:
        from .inspection.nics import physical_nics

        nics = physical_nics(system, bootable[0]) if bootable else []
        plan.network = {"dropped": False, "nics": [dataclasses.asdict(n) for n in nics],
                        "disabled_services": []}
    else:
        dropped = nic_removal.plan_drop_nics(plan, system, job.hive("SOFTWARE"), bootable)
        nics = dropped.nics
        plan.network = {"dropped": True, "nics": [dataclasses.asdict(n) for n in nics],
                        "disabled_services": dropped.disabled_services}
        for d in dropped.dangling:
            plan.warnings.append(f"network: expected key missing (dangling reference): {d}")
    mac = None
    if opts.mac:
        mac = libvirt_xml.parse_mac(opts.mac)
        plan.choose("mac", mac, "requested with --mac")
    elif opts.keep_mac:
        recorded = [n for n in nics if n.mac]
        if not recorded:
            raise UsageError(
                "--keep-mac: the registry records no MAC address for the physical NIC(s) "
                f"({', '.join(n.description or n.guid for n in nics) or 'none found'}); "
                "give it with --mac"
            )
        mac = recorded[0].mac
        plan.choose("mac", mac, f"--keep-mac: {recorded[0].description}'s NetworkAddress")
    plan.network["mac"] = mac
    _plan_firstboot(plan, job, insp, system, bootable, opts, nics)
    vendor = leftovers.plan_vendor_services(plan, system, bootable, opts.disable_vendor_services)
    plan.network["vendor_services"] = [dataclasses.asdict(v) for v in vendor]
    oem = leftovers.oem_activation(job.hive("SOFTWARE"))
    plan.network["oem_product_id"] = oem
    if oem and opts.smbios is None:
        plan.warnings.append(
            f"OEM-licensed installation (product ID {oem}): activation is tied to the "
            "physical machine's BIOS; pass its SMBIOS strings with --smbios FILE "
            "(dmidecode -t 0,1 output) or be ready to reactivate"
        )


def _plan_firstboot(plan: Plan, job: Job, insp: Inspection, system, bootable: list[str],
                    opts: ConvertOptions, nics: list) -> None:
    """The local-GPO startup script that puts the static address on the new adapter."""
    assert plan.network is not None
    settings = None
    if opts.ip:
        wanted = firstboot.parse_ip_option(opts.ip[0])
        names = [n.connection_name for n in nics if n.connection_name]
        if not any(wanted.connection.lower() == n.lower() for n in names):
            raise UsageError(
                f"--ip {opts.ip[0]}: no connection named {wanted.connection!r} "
                f"(the physical NICs: {', '.join(repr(n) for n in names) or 'none'})"
            )
        settings = wanted
        if len(opts.ip) > 1:
            plan.warnings.append("--ip: the guest gets one NIC; only the first mapping is used")
    else:
        static = [s for s in (firstboot.from_nic(n) for n in nics) if s is not None]
        if static:
            settings = static[0]
            for other in static[1:]:
                plan.warnings.append(
                    f"network: {other.connection} also had a static address "
                    f"({other.addresses[0][0]}); the guest gets one NIC, so it is not re-applied"
                )
    if settings is None or opts.no_firstboot:
        plan.network["firstboot"] = None
        if settings is not None:
            plan.warnings.append(
                f"--no-firstboot: set {settings.addresses[0][0]} on the new adapter by hand"
            )
        return
    if opts.keep_nics:
        plan.warnings.append(
            "--keep-nics: the hidden physical adapter keeps its address, so it is not "
            "re-applied to the new one"
        )
        plan.network["firstboot"] = None
        return
    if settings.dns_suffix:
        plan.warnings.append(
            f"network: the connection DNS suffix {settings.dns_suffix!r} is not re-applied "
            "(netsh cannot set it); set it in the adapter's advanced TCP/IP settings"
        )
    g = job.g
    sr = insp.system_root or "/WINDOWS"
    gpo = f"{sr}/{firstboot.GPO_DIR}"
    gpt_path, ini_path = f"{gpo}/gpt.ini", f"{gpo}/Machine/Scripts/scripts.ini"
    gpt_real, ini_real = files.resolve(g, gpt_path), files.resolve(g, ini_path)
    gpt_old = inf_mod.decode(g.read_file(gpt_real)) if gpt_real else None
    ini_old = inf_mod.decode(g.read_file(ini_real)) if ini_real else None
    ini_text, _added = firstboot.scripts_ini(ini_old)
    kept = _kept_connection_names(system, bootable[0], nics) if bootable else []
    major, minor = insp.major, insp.minor
    script = firstboot.script(settings, keep_names=kept, owns_scripts_ini=ini_real is None,
                              rename=(major, minor) != (5, 0))
    outputs = [
        (gpt_path, firstboot.gpt_ini(gpt_old).encode("ascii", "replace"),
         "local GPO version bumped, Scripts extension listed ([MS-GPOL] 3.3.5.4)"),
        (ini_path, firstboot.encode_utf16(ini_text),
         "[Startup] entry for the first-boot script ([MS-GPSCR] 2.2.2)"),
        (f"{gpo}/Machine/Scripts/Startup/{firstboot.SCRIPT_NAME}", script.encode("ascii"),
         f"re-applies {settings.addresses[0][0]} to the new adapter at startup, then "
         "removes itself"),
    ]
    work = job.scratch() / "firstboot"
    work.mkdir(parents=True, exist_ok=True)
    for guest_path, data, why in outputs:
        local = work / guest_path.rsplit("/", 1)[1]
        local.write_bytes(data)
        plan.files.append(FileWrite(
            step="firstboot", guest_path=guest_path, action="write", origin="generated",
            version=None, machine=None, sha256=hashlib.sha256(data).hexdigest(),
            size=len(data), reason=why, local=str(local),
        ))
    plan.network["firstboot"] = {
        "connection": settings.connection, "addresses": settings.addresses,
        "gateways": settings.gateways, "dns": settings.dns, "wins": settings.wins,
        "source": settings.source, "keep_names": kept,
        "log": "%SystemRoot%\\p2vimage-firstboot.log",
    }


def _kept_connection_names(system, cs: str, dropped: list) -> list[str]:
    """Connection names of the adapters that stay (software ones): never the new NIC."""
    from .inspection import classes

    gone = {n.guid.upper() for n in dropped}
    net = system.node(f"{cs}\\Control\\Network\\{classes.NET}")
    names = []
    if net is None:
        return names
    for guid, node in system.iter_children(net):
        if guid.upper() in gone:
            continue
        name = system.get_str(system.node("Connection", node), "Name")
        if name and not any(c in name for c in '"%\r\n^&|<>!'):
            names.append(name)
    return names


def _no_virtio_message(insp: Inspection, driver: str | None, media: VirtioMedia | None,
                       selection: virtio_select.Selection | None) -> str:
    guest = f"{insp.product_name or 'Windows'} {insp.arch or ''}".strip()
    if media is None:
        return f"--bus needs the {driver} driver: give the virtio-win media with --virtio-win"
    needs = virtio_select.os_preference(
        insp.major or 0, insp.minor or 0, insp.build,
        (insp.product_type or "WinNT").lower() != "winnt", insp.arch or "x86",
    )
    arch = insp.arch or "x86"
    want = ", ".join(f"{o}/{arch}" for o in needs) or "none: no virtio-win release supports it"
    has = ", ".join(selection.available) if selection and selection.available else "none"
    what = f"no {driver}" if driver else "no drivers"
    extra = ""
    if selection and selection.rejected:
        extra = f"; rejected: {'; '.join(selection.rejected)}"
    return (f"{media.path} has {what} for {guest} (it needs {want}; the media has {has})"
            + extra)


def _plan_nt6_storage(plan: Plan, job: Job, insp: Inspection, system, bootable: list[str],
                      machine: str, bus: str) -> None:
    """Enable QEMU's emulated controllers: IDE always on i440fx, AHCI always on q35 (the
    boot controller, or the fallback when the guest boots on virtio), AHCI on i440fx when
    the guest boots on sata."""
    wanted = []
    if machine == "pc":
        wanted.append(emulated_storage.IDE)
    if bus == "sata" or machine == "q35":  # on q35 AHCI is also the fallback to virtio
        wanted.append(emulated_storage.SATA)
    systemroot = insp.system_root or "/Windows"

    def exists(path: str) -> bool:
        return files.resolve(job.g, path) is not None

    for ctl in wanted:
        problems = emulated_storage.plan_nt6_controller(
            plan, system, bootable, ctl, systemroot, exists
        )
        if not problems:
            continue
        msg = f"{ctl.description}: " + "; ".join(problems)
        if ctl.name == bus:
            raise ConversionError(msg + ": the guest cannot boot on this controller")
        plan.warnings.append(msg + " (not the boot controller; left as is)")


def _plan_geometry(plan: Plan, job: Job, disk_size: int) -> None:
    """NTFS boot sectors of the system disk's partitions get SeaBIOS' geometry."""
    g = job.g
    heads = geometry.seabios_heads(disk_size)
    disk = job.root_disk()
    info = job.disk_info(disk)
    if info is not None and info.layout is not None:  # read on the host before launch
        boots = [(p.name, p.boot_sector) for p in info.layout.partitions if p.fs == "ntfs"]
    else:
        boots = [(p, g.pread_device(p, geometry.SECTOR, 0)) for p in g.list_partitions()
                 if g.part_to_dev(p) == disk]
    for part, bs in boots:
        geo = geometry.read_ntfs_geometry(bs)
        if geo is None:
            continue
        fields = {
            "heads": (geometry.HEADS_OFFSET, 2, heads),
            "sectors_per_track": (geometry.SPT_OFFSET, 2, geometry.SPT),
        }
        plan.boot_sectors.append(
            BootSectorEdit(
                "ntfs-geometry", part, fields,
                {k: geo[k] for k in fields},
                f"NT 5.x boot code reads NTLDR by CHS; SeaBIOS reports {heads} heads / "
                f"{geometry.SPT} sectors for a {disk_size // (1 << 20)} MiB disk",
            )
        )


def _apply(plan: Plan, job: Job) -> None:
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
    for e in plan.registry:
        hive = job.hive(e.hive)
        node = hive.ensure_key(e.path)
        e.changed = hive.set_value(node, e.name, e.type, e.value)
    for d in plan.deletions:
        hive = job.hive(d.hive)
        node = hive.node(d.path)
        d.changed = node is not None
        if node is not None:
            hive.delete_key(node)
    job.commit_hives()  # one commit per hive: every edit lands, or none does
    for b in plan.boot_sectors:
        bs = bytearray(g.pread_device(b.device, geometry.SECTOR, 0))
        total = geometry.read_ntfs_geometry(bytes(bs))["total"]
        before = bytes(bs)
        for offset, size, value in b.fields.values():
            bs[offset : offset + size] = value.to_bytes(size, "little")
        b.changed = bytes(bs) != before
        if b.changed:
            g.pwrite_device(b.device, bytes(bs), 0)
            # The NTFS backup boot sector sits just past the volume's last sector.
            backup = g.pread_device(b.device, geometry.SECTOR, total * geometry.SECTOR)
            if backup[3:11] == b"NTFS    ":
                g.pwrite_device(b.device, bytes(bs), total * geometry.SECTOR)


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _check_unchanged(sources: list[SourceImage], sizes: list[int | None]) -> None:
    """A source file that grew or shrank while it was read: the copy is not the disk the
    inspection saw (a capture still being written, a file replaced under us)."""
    for s, before in zip(sources, sizes, strict=True):
        now = _file_size(s.path)
        if before is not None and now != before:
            raise BadInputError(f"the source {s.describe()} changed size during the conversion "
                                f"({before} bytes, now {now}); convert a finished capture")


def _last_partition_end(job: Job, disk: str) -> int:
    info = job.disk_info(disk)
    if info is not None and info.layout is not None:
        return max((p.end for p in info.layout.partitions), default=0)
    parts = job.g.part_list(disk)
    return max((int(p["part_end"]) + 1 for p in parts), default=0)


def _domain(insp: Inspection, plan: Plan, opts: ConvertOptions, disks: list[Path]) -> Any:
    bus = _XML_BUS[plan.device("disk bus") or "ide"]
    nt6_or_later = not insp.is_nt5
    mem = opts.memory_mib or (2048 if (insp.arch == "x64" or nt6_or_later) else 1024)
    spec = libvirt_xml.DomainSpec(
        name=opts.name or insp.hostname or "p2v-windows",
        memory_mib=mem,
        vcpus=opts.vcpus or 2,
        arch=insp.arch or "x86",
        machine=plan.device("machine") or "pc",
        firmware=insp.firmware or "bios",
        disks=[libvirt_xml.DiskSpec(str(d.resolve()), opts.format, bus) for d in disks],
        nic_model=plan.device("nic model"),
        mac=plan.device("mac"),
        smbios=leftovers.read_smbios(Path(opts.smbios)) if opts.smbios else None,
        network=opts.network,
        localtime=not insp.real_time_is_universal,
        uniprocessor_hal=bool(insp.hal and insp.hal.multiprocessor is False),
        virtio_transitional=plan.device("machine") == "q35" and (
            insp.is_nt5 or not all((plan.virtio or {}).get("modern_ids", {}).values())
        ),
        # The ISO rides along as a CD-ROM (guest tools, later driver updates) when it
        # served this guest; a disc with nothing for it would only confuse.
        cdrom=str(opts.virtio_win.resolve())
        if opts.virtio_win is not None and opts.virtio_win.is_file() and plan.virtio else None,
        balloon=plan.device("memballoon") == "virtio",
    )
    return libvirt_xml.build_domain(spec)


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
    with interrupt.handling_signals(), SourceSet(srcs, opts.source_format) as source_set:
        sources = source_set.sources
        _validate(opts, sources)
        media = open_media(opts.virtio_win) if opts.virtio_win is not None else None
        try:
            targets = output_targets(opts, len(sources))
            source_set.check_outputs(targets)
            # Outputs are claimed (locked .partial files) before any work, so a second job
            # on the same output fails now instead of trampling this one.
            atomic = None if opts.dry_run else AtomicOutputs(targets,
                                                             overwrite=opts.overwrite)
            with atomic or contextlib.nullcontext():
                space.check(_space_needs(opts, source_set, targets))
                in_place: set[int] = set()
                if source_set.has_directories:
                    if atomic is None:  # a dry run: temporary raws, removed at the end
                        sources = source_set.restore(_scratch_parent(opts))
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


def _scratch_parent(opts: ConvertOptions) -> Path:
    """Where the temporary raws of Clonezilla sources go: beside the output."""
    return opts.output.parent if opts.output.parent.is_dir() else Path(tempfile.gettempdir())


def _space_needs(opts: ConvertOptions, source_set: SourceSet,
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
            needs.append(space.Need(_scratch_parent(opts), b,
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
    sizes = [None if i in in_place else _file_size(s.path) for i, s in enumerate(sources)]
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
        virtual = job.disks[disk_index(disk) or 0].size
        last_end = _last_partition_end(job, disk)
        if opts.size is not None:
            if opts.size < last_end:
                raise UsageError(
                    f"--size {opts.size}: smaller than the end of the last partition "
                    f"({last_end} bytes)"
                )
            if insp.partition_table == "gpt" and opts.size != virtual:
                raise UsageError("--size on a GPT disk is not supported yet")
        disk_size = opts.size if opts.size is not None else virtual
        phases["inspect"] = time.monotonic() - t0 - sum(phases.values())
        log.info("phase: plan")
        plan = _plan(insp, job, opts, disk_size, media)
        phases["plan"] = time.monotonic() - t0 - sum(phases.values())
        interrupt.check()
        if opts.dry_run:
            return _report(sources, [], None, None, True, insp, plan, order_warnings, job,
                           phases, 0, [])
        assert atomic is not None
        log.info("phase: apply")
        _apply(plan, job)
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
        _check_unchanged(sources, sizes)
        place_in_order([atomic.partial(o) for o in outs], order)
        phases["bitmap"] = round(bitmap, 3)
        phases["copy"] = time.monotonic() - t0 - sum(phases.values())
        log.info("phase: domain XML and report")
        elem, xml_warnings = _domain(insp, plan, opts, outs)
        xml_partial = atomic.partial(xml_path)
        xml_partial.write_bytes(libvirt_xml.to_xml_bytes(elem))
        libvirt_xml.validate_with_libvirt(xml_partial)
        written = sum(atomic.partial(d).stat().st_blocks * 512 for d in outs)
        report = _report(sources, outs, xml_path, report_path, False, insp, plan,
                         [*order_warnings, *xml_warnings], job, phases, written, copy_stats)
        atomic.partial(report_path).write_text(json.dumps(report.to_dict(), indent=2,
                                                          default=str) + "\n")
        interrupt.check()
        atomic.commit()
    return report  # _report() attached the plan for the CLI's text form


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


def _report(sources, outs, xml, report_path, dry, insp, plan, extra_warnings, job, phases,
            written, copy_stats=()) -> ConversionReport:
    r = ConversionReport(
        sources=[s.describe(sum(t.origin == s.origin for t in sources) > 1) for s in sources],
        outputs=[str(o) for o in outs],
        xml=str(xml) if xml else None,
        report=str(report_path) if report_path else None,
        dry_run=dry,
        inspection=insp.to_dict(),
        plan=plan.to_dict(),
        warnings=[*plan.warnings, *extra_warnings,
                  *(w for c in copy_stats for w in c["warnings"])],
        appliance_launches=job.stats.appliance_launches,
        launch_attempts=job.stats.launch_attempts,
        bytes_read=sum(c["bytes_read"] for c in copy_stats),
        bytes_written=written,
        phases={k: round(v, 3) for k, v in phases.items()},
        copy=list(copy_stats),
    )
    r.virtio = plan.virtio
    r._plan = plan  # type: ignore[attr-defined]
    return r


__all__ = ["convert", "ConvertOptions", "ConversionReport", "make_options", "parse_size"]
