"""Pre-stage virtio drivers offline: boot-critical block driver, the rest for Plug and Play.

The 2012 procedure booted on IDE, added a second virtio disk so that Windows would install
viostor, switched the boot disk, then installed NetKVM by hand.  Here:

* **boot-critical** (``viostor``, or ``vioscsi`` for ``--bus virtio-scsi``): the ``.sys`` goes
  to ``System32\\drivers`` and its service is written as its INF's ``AddService`` would
  (type, start, error control, group, ImagePath, the service ``AddReg`` values such as
  ``Parameters\\BusType``), in every bootable control set.  Windows up to 7/2008 R2 find a boot
  device's driver through the CriticalDeviceDatabase: entries for the legacy and modern
  PCI IDs.  Windows 8+ ignore that database and use ``DriverDatabase``: a driver-package
  registration is written there (:mod:`.driver_database`);
* **Plug and Play** (NetKVM, balloon, serial, RNG, and the block driver's package too): the
  packages' ``.inf``/``.sys``/``.cat`` and co-installer DLLs are copied to
  ``%SystemRoot%\\Drivers\\VirtIO``, and that folder is appended to ``DevicePath`` so PnP finds
  them at the first boot with no user; the Found New Hardware wizard is suppressed on
  XP/2003 so that first boot does not stop on a dialog.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from ..choices import BOOT_DRIVER
from ..formats.regf import REG_DWORD, REG_EXPAND_SZ
from ..guest.registry import Hive
from ..guest.view import GuestView
from ..inspection import Inspection, classes
from ..plan import FileWrite, Plan, VirtioSummary
from . import driver_database
from .media import VirtioMedia
from .select import DRIVERS, Package, choose

STEP_BOOT = "virtio-boot"
STEP_PNP = "virtio-pnp"
STEP_DEVICEPATH = "virtio-devicepath"
STEP_WIZARD = "virtio-no-wizard"
SCSI_ADAPTER_CLASS = classes.SCSI_ADAPTER
STAGE_DIR = "Drivers\\VirtIO"  # under %SystemRoot%
DEVICEPATH_ENTRY = "%SystemRoot%\\Drivers\\VirtIO"
_PNP_SUFFIXES = (".inf", ".sys", ".cat", ".dll")
# QEMU's subsystem/revision for each device: legacy (transitional) and modern IDs.
_FULL_IDS = {
    "viostor": ("SUBSYS_00021AF4&REV_00", "SUBSYS_11001AF4&REV_01"),
    "vioscsi": ("SUBSYS_00081AF4&REV_00", "SUBSYS_11001AF4&REV_01"),
}


@dataclass
class Staged:
    """What the step staged (for device choices and the report)."""

    boot_driver: str | None = None
    packages: dict[str, str] = field(default_factory=dict)  # driver -> media folder
    modern: dict[str, bool] = field(default_factory=dict)
    stage_files: list[str] = field(default_factory=list)  # names in Drivers\VirtIO


def _stage_local(media: VirtioMedia, rel: str, workdir: Path) -> tuple[Path, str, int]:
    data = media.read(rel)
    local = workdir / "virtio" / rel
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    return local, hashlib.sha256(data).hexdigest(), len(data)


def _origin(media: VirtioMedia, rel: str) -> str:
    return f"{media.path}:{rel}"


def cddb_keys(driver: str, pkg: Package) -> list[str]:
    """CriticalDeviceDatabase keys for the device QEMU presents, most specific first, for
    the legacy ID and (when the INF claims it) the modern one."""
    _stem, legacy, modern = DRIVERS[driver]
    full_legacy, full_modern = _FULL_IDS.get(driver, ("", ""))
    keys = []
    for base, full, use in ((legacy, full_legacy, True), (modern, full_modern, pkg.modern)):
        if not use:
            continue
        b = base.replace("\\", "#").lower()
        if full:
            subsys = full.split("&")[0].lower()
            keys += [f"{b}&{full.lower()}", f"{b}&{subsys}"]
        keys.append(b)
    return keys


def stage_boot_driver(plan: Plan, guest: GuestView, pkg: Package) -> None:
    """Make ``pkg``'s driver load at boot and claim QEMU's device."""
    ctx = plan.context
    assert ctx is not None and ctx.media is not None
    media, workdir = ctx.media, ctx.workdir
    system, control_sets = guest.system, guest.control_sets
    systemroot, arch = guest.system_root or "/WINDOWS", guest.arch or "x86"
    svc = pkg.service
    assert svc is not None and pkg.sys_file is not None
    sys_name = pkg.sys_file.rsplit("/", 1)[-1].lower()
    local, digest, size = _stage_local(media, pkg.sys_file, workdir)
    plan.files.append(FileWrite(
        step=STEP_BOOT,
        guest_path=posixpath.join(systemroot, "system32", "drivers", sys_name),
        action="write", origin=_origin(media, pkg.sys_file), version=pkg.sys_version,
        machine=arch, sha256=digest, size=size,
        reason=f"{svc.name} boots the disk: it must be there before Plug and Play runs",
        local=str(local),
    ))
    why = f"{pkg.inf_path} AddService {svc.name} (boot-start, as Windows setup would write it)"
    image = f"System32\\drivers\\{sys_name}"
    values = [
        ("Type", REG_DWORD, svc.type if svc.type is not None else 1),
        ("Start", REG_DWORD, 0),
        ("ErrorControl", REG_DWORD, svc.error_control if svc.error_control is not None else 1),
        ("Group", 1, svc.group or "SCSI miniport"),
        ("ImagePath", REG_EXPAND_SZ, image),
    ]
    database = system.node("DriverDatabase") is not None
    oem = driver_database.register(plan, guest, pkg) if database else None
    for cs in control_sets:
        key = f"Services\\{svc.name}"
        for name, vtype, value in values:
            plan.set_value(STEP_BOOT, "SYSTEM", cs, key, name, vtype, value, why)
        for r in svc.addreg:
            if r.root != "HKR" or r.type is None:
                continue
            sub = f"{key}\\{r.subkey}" if r.subkey else key
            plan.set_value(STEP_BOOT, "SYSTEM", cs, sub, r.name, r.type, r.value,
                           f"{pkg.inf_path}: service AddReg")
        if oem is not None:
            plan.set_value(STEP_BOOT, "SYSTEM", cs, key, "Owners", 7, [oem],
                           "the driver package that owns the service (as pnputil records it)")
        if not database:
            cls = pkg.inf.class_guid or SCSI_ADAPTER_CLASS
            for k in cddb_keys(pkg.driver, pkg):
                path = f"Control\\CriticalDeviceDatabase\\{k}"
                cwhy = f"boot device {k} -> {svc.name} before Plug and Play"
                plan.set_value(STEP_BOOT, "SYSTEM", cs, path, "Service", 1, svc.name, cwhy)
                plan.set_value(STEP_BOOT, "SYSTEM", cs, path, "ClassGUID", 1, cls, cwhy)


def stage_pnp(plan: Plan, guest: GuestView, packages: list[Package]) -> list[str]:
    """Copy every chosen package's PnP files into ``%SystemRoot%\\Drivers\\VirtIO``."""
    ctx = plan.context
    assert ctx is not None and ctx.media is not None
    media, workdir = ctx.media, ctx.workdir
    systemroot, arch = guest.system_root or "/WINDOWS", guest.arch or "x86"
    staged: dict[str, str] = {}  # lower name -> sha256
    names: list[str] = []
    for pkg in packages:
        wanted = [f for f in pkg.files if f.lower().endswith(_PNP_SUFFIXES)]
        conflict = None
        loaded = []
        for rel in wanted:
            local, digest, size = _stage_local(media, rel, workdir)
            name = rel.rsplit("/", 1)[-1]
            prior = staged.get(name.lower())
            if prior is not None and prior != digest:
                conflict = name
                break
            loaded.append((rel, name, local, digest, size))
        if conflict:
            plan.warnings.append(
                f"virtio {pkg.driver}: {conflict} clashes with another package's file of the "
                f"same name; {pkg.folder} not staged for Plug and Play"
            )
            continue
        for rel, name, local, digest, size in loaded:
            if name.lower() in staged:
                continue
            staged[name.lower()] = digest
            names.append(name)
            plan.files.append(FileWrite(
                step=STEP_PNP,
                guest_path=posixpath.join(systemroot, *STAGE_DIR.split("\\"), name),
                action="write", origin=_origin(media, rel),
                version=pkg.sys_version if name.lower().endswith(".sys") else None,
                machine=arch if name.lower().endswith((".sys", ".dll")) else None,
                sha256=digest, size=size,
                reason=f"{pkg.driver} for Plug and Play at the first boot ({pkg.folder})",
                local=str(local),
            ))
    return sorted(names, key=str.lower)


def plan_device_path(plan: Plan, software: Hive) -> None:
    """Append the staging folder to ``DevicePath`` (default ``%SystemRoot%\\inf``)."""
    key = "Microsoft\\Windows\\CurrentVersion"
    current = software.get_str(software.node(key), "DevicePath") or "%SystemRoot%\\inf"
    parts = [p for p in current.split(";") if p]
    if not any(p.strip().lower() == DEVICEPATH_ENTRY.lower() for p in parts):
        parts.append(DEVICEPATH_ENTRY)
    plan.set_value(STEP_DEVICEPATH, "SOFTWARE", None, key, "DevicePath", REG_EXPAND_SZ,
                   ";".join(parts), "Plug and Play searches these folders for drivers")


def plan_no_wizard(plan: Plan, guest: GuestView) -> None:
    """No Found New Hardware wizard on the first boot of XP/2003 (it would wait for a user)."""
    major, minor, arch, control_sets = (guest.major, guest.minor, guest.arch,
                                        guest.control_sets)
    if (major, minor) == (5, 1) and arch == "x86":
        plan.set_value(
            STEP_WIZARD, "SOFTWARE", None, "Policies\\Microsoft\\Windows\\DeviceInstall\\Settings",
            "SuppressNewHWUI", REG_DWORD, 1, "XP: install found hardware silently",
        )
    elif (major, minor) == (5, 2):
        for cs in control_sets:
            plan.set_value(
                STEP_WIZARD, "SYSTEM", cs, "Services\\PlugPlay\\Parameters", "SuppressUI",
                REG_DWORD, 1, "2003 / XP x64: install found hardware silently",
            )


def select_packages(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """Which virtio-win packages fit this guest (``plan.context.selection``); none
    without ``--virtio-win``.  Runs before the bus is chosen, which depends on it."""
    ctx = plan.context
    assert ctx is not None
    if ctx.media is None:
        return
    ctx.selection = choose(
        ctx.media, major=insp.major or 0, minor=insp.minor or 0, build=insp.build,
        server=(insp.product_type or "WinNT").lower() != "winnt", arch=insp.arch or "x86",
    )


def plan_virtio(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """Stage the chosen packages: the boot driver of a virtio bus as boot-start, every
    package for Plug and Play, ``DevicePath``, no wizard; the balloon when staged."""
    ctx = plan.context
    assert ctx is not None
    media, selection = ctx.media, ctx.selection
    if media is None or selection is None or not selection.packages:
        return
    out = Staged()
    boot_driver = BOOT_DRIVER.get(plan.device("disk bus") or "")
    if boot_driver is not None:
        stage_boot_driver(plan, guest, selection.packages[boot_driver])
        out.boot_driver = boot_driver
    pkgs = list(selection.packages.values())
    out.stage_files = stage_pnp(plan, guest, pkgs)
    for p in pkgs:
        out.packages[p.driver] = p.folder
        out.modern[p.driver] = p.modern
    if guest.software is not None:
        plan_device_path(plan, guest.software)
    plan_no_wizard(plan, guest)
    plan.virtio = VirtioSummary(
        media=str(media.path), volume_id=media.volume_id, names=media.names,
        packages=out.packages, boot_driver=out.boot_driver, staged_files=out.stage_files,
        modern_ids=out.modern, rejected=list(selection.rejected))
    if "balloon" in selection.packages:
        plan.choose("memballoon", "virtio",
                    f"balloon staged from {selection.packages['balloon'].folder}")
