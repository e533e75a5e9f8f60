"""Boot storage: will Windows find a boot-start driver for each device on the boot path?

Evaluated the way Windows matches: for each device (controller, channel, disk) its IDs
in order, and the first that has an entry decides the service.  NT 5.x–7 look the IDs up
in ``Control\\CriticalDeviceDatabase`` of the control set being booted (so every
bootable control set is checked); 8+ use the hive-wide ``DriverDatabase`` (DeviceIds →
INF → its active package → the descriptor's configuration → the service).  The service
must then be a boot-start kernel driver whose image is a PE file of the guest's machine
on the system volume; a ``StartOverride`` of 8+ can still veto it.
"""

from __future__ import annotations

from ..guest.files import windows_path
from ..guest.registry import Hive
from . import devices
from .guest import CheckView
from .report import ERROR, WARNING, CheckResult

CDDB = "Control\\CriticalDeviceDatabase"
KERNEL_DRIVER, FS_DRIVER = 1, 2
DRIVER_TYPES = (KERNEL_DRIVER, FS_DRIVER)
# Drivers that are DLLs of the IDE controller drivers: not services, but intelide/pciide
# cannot load without them (the classic "Mergeide applied, still 0x7B" case).
DEPENDENCIES = {"intelide": "pciidex.sys", "pciide": "pciidex.sys"}


def _key(device_id: str) -> str:
    return device_id.replace("\\", "#")


def match_cddb(system: Hive, cs: str, ids: tuple[str, ...]) -> tuple[str, str | None] | None:
    """(matched id, its Service) from the control set's CDDB, first ID in order wins."""
    base = system.node(f"{cs}\\{CDDB}")
    if base is None:
        return None
    for i in ids:
        node = system.node(_key(i), base)  # hivex matches key names case-insensitively
        if node is not None:
            return i, system.get_str(node, "Service")
    return None


def match_driver_database(system: Hive, ids: tuple[str, ...]) -> tuple[str, str | None] | None:
    """(matched id, service) the way Windows 8+ finds a driver in ``DriverDatabase``."""
    for i in ids:
        node = system.node(f"DriverDatabase\\DeviceIds\\{i}")
        if node is None:
            continue
        for inf in system.values(node):
            inf_key = system.node(f"DriverDatabase\\DriverInfFiles\\{inf}")
            for pkg in system.get_list(inf_key, "Active") or []:
                desc = system.node(f"DriverDatabase\\DriverPackages\\{pkg}\\Descriptors\\{i}")
                conf = system.get_str(desc, "Configuration")
                if not conf:
                    continue
                conf_path = f"DriverDatabase\\DriverPackages\\{pkg}\\Configurations\\{conf}"
                cfg = system.node(conf_path)
                if system.get_str(cfg, "Service") is None:
                    cfg = system.node(f"{conf_path}\\Driver")
                svc = system.get_str(cfg, "Service")
                if svc:
                    return i, svc
        # A DeviceIds entry whose package does not resolve (a stale leftover): Windows
        # goes on to the next ID, and so do we.
    return None


def _near(system: Hive, cs: str, dev: devices.Device) -> list[str]:
    """Entries for the same device as other QEMU setups present it (evidence for the user)."""
    found = []
    for i in dev.other_ids:
        if system.node(f"{cs}\\{CDDB}\\{_key(i)}") is not None or system.node(
            f"DriverDatabase\\DeviceIds\\{i}"
        ) is not None:
            found.append(i)
    return found


def check_boot_storage(view: CheckView, bus: str, chain: list[devices.Device]) -> CheckResult:
    """Errors for the Default control set (what the boot loader uses); the same problems in
    the other bootable sets (LastKnownGood, a differing Current) are warnings: they bite
    only when someone boots that set."""
    res = CheckResult("boot-storage", f"Boot storage driver for {bus}")
    sysh = view.system
    checked: set[tuple[str, str]] = set()
    files_checked: set[str] = set()
    dd = view.driver_database
    groups = _service_groups(sysh, view.control_sets[0])
    for cs in view.control_sets:
        sev = ERROR if view.is_default(cs) else WARNING
        note = "" if view.is_default(cs) else " (when this control set is booted)"
        for dev in chain:
            m = match_driver_database(sysh, dev.ids) if dd else match_cddb(sysh, cs, dev.ids)
            where = "DriverDatabase\\DeviceIds" if dd else f"{cs}\\{CDDB}"
            if m is None:
                if dd and not view.is_default(cs):
                    continue  # DriverDatabase is hive-wide: said once
                near = _near(sysh, cs, dev)
                prefix = "" if dd else f"{cs}: "
                msg = (f"{prefix}no driver for {dev.description}: none of its IDs has an "
                       f"entry in {where}")
                if near:
                    msg += f" (only {', '.join(near)}, which this machine does not present)"
                res.add("storage.no-driver", sev, msg + note,
                        [f"{where}\\{_key(i) if not dd else i}" for i in dev.ids])
                continue
            matched, service = m
            ev = f"{where}\\{matched if dd else _key(matched)}"
            if not service:
                res.add("storage.no-service", sev,
                        f"{cs}: the entry for {dev.description} names no service{note}", [ev])
                continue
            if (cs, service.lower()) in checked:
                continue
            checked.add((cs, service.lower()))
            _check_service(view, res, cs, service, dev, ev, files_checked, sev, groups)
    return res


def _service_groups(sysh: Hive, cs: str) -> set[str]:
    return {g.lower() for g in sysh.get_list(
        sysh.node(f"{cs}\\Control\\ServiceGroupOrder"), "List")}


def _image_path_problem(image_path: str | None, drive: str) -> str | None:
    """Why the boot loader could not read a driver from this ImagePath, or None.

    The loader reads boot drivers from the system volume only: relative paths (to
    %SystemRoot%), ``\\SystemRoot\\…``, ``%SystemRoot%\\…`` and the system drive's
    ``\\??\\X:\\…``/``X:\\…`` are fine; another drive, ``\\Device\\…`` or UNC are not.
    """
    if not image_path:
        return None  # the kernel's default: System32\drivers\<service>.sys
    low = image_path.lower().replace("/", "\\")
    if low.startswith(("\\systemroot\\", "%systemroot%\\")):
        return None
    if low.startswith("\\??\\"):
        low = low[4:]
    if len(low) > 1 and low[1] == ":":
        return None if low[0] == drive.lower() else f"it is on drive {low[0].upper()}:"
    if low.startswith("\\"):  # \Device\..., UNC, a bare NT path
        return "it is not a path on the system volume"
    return None


def _check_service(view: CheckView, res: CheckResult, cs: str, service: str,
                   dev: devices.Device, matched: str, files_checked: set[str], sev: str,
                   groups: set[str]) -> None:
    sysh = view.system
    path = f"{cs}\\Services\\{service}"
    node = sysh.node(path)
    if node is None:
        res.add("storage.service-missing", sev,
                f"{cs}: {dev.description} maps to service {service}, which does not exist",
                [matched, path])
        return
    start = sysh.get_int(node, "Start")
    if start != 0:
        res.add("storage.not-boot-start", sev,
                f"{cs}: {service} ({dev.description}) has Start={start}, not 0 (boot): "
                "it is not loaded in time to mount the system disk", [f"{path}\\Start"])
    override = sysh.node("StartOverride", node)
    if override is not None:
        for v in sysh.values(override).values():
            if isinstance(v.value, int) and v.value != 0:
                res.add("storage.start-override", sev,
                        f"{cs}: {service} has StartOverride\\{v.name}={v.value}: Windows skips "
                        "it at boot", [f"{path}\\StartOverride\\{v.name}"])
    stype = sysh.get_int(node, "Type")
    if stype not in DRIVER_TYPES:
        res.add("storage.service-type", sev,
                f"{cs}: {service} has Type={stype}, not a driver (1 kernel, 2 file system)",
                [f"{path}\\Type"])
    group = sysh.get_str(node, "Group")
    if group and groups and group.lower() not in groups:
        res.add("storage.service-group", WARNING,
                f"{cs}: {service} has Group {group!r}, which ServiceGroupOrder does not list: "
                "it loads after every listed group", [f"{path}\\Group"])
    image_path = sysh.get_str(node, "ImagePath")
    why = _image_path_problem(image_path, view.system_drive)
    if why:
        res.add("storage.image-path", sev,
                f"{cs}: {service} ImagePath {image_path!r}: {why}; the boot loader reads "
                "boot drivers from the system volume only", [f"{path}\\ImagePath"])
        return
    targets = [view.driver_path(image_path, service)]
    dep = DEPENDENCIES.get(service.lower())
    if dep:
        targets.append(view.join_root("system32", "drivers", dep))
    for target in targets:
        if target.lower() in files_checked or not view.has_files:
            continue
        files_checked.add(target.lower())
        if not view.exists(target):
            what = "its image" if target == targets[0] else f"{dep}, which it needs,"
            res.add("storage.file-missing", sev,
                    f"{service} ({dev.description}): {what} {windows_path(target)} is missing",
                    [f"{path}\\ImagePath", windows_path(target)])
            continue
        problem = view.pe_problem(target)
        if problem:
            fid = ("storage.file-wrong-machine" if problem.startswith("built for")
                   else "storage.file-not-pe")
            win = windows_path(target)
            res.add(fid, sev, f"{service}: {win} {problem}", [win])
