"""Boot-start drivers on disk, and the NT 5.x boot-code and HAL constraints.

A boot-start (Start=0) service whose image is missing stops the boot loader or the
kernel early (NT 5.x: 0x7B/0x7E, or "NTLDR: file is missing"), whatever the bus: it is
the commonest result of hand-copied drivers and half-undone driver installs.
"""

from __future__ import annotations

from ..guest.files import windows_path
from ..inspection.hal import read_hal
from ..windows import geometry
from .guest import CheckView
from .report import ERROR, WARNING, CheckResult
from .storage import DRIVER_TYPES


def _skipped_by_override(view: CheckView, node: int) -> bool:
    ov = view.system.node("StartOverride", node)
    return ov is not None and any(
        isinstance(v.value, int) and v.value != 0 for v in view.system.values(ov).values())


def check_boot_start_files(view: CheckView) -> CheckResult:
    """Every boot-start kernel driver's file.  The loader stops on a missing one whose
    ErrorControl is Severe (2) or Critical (3) in the Default control set (an error); with
    Ignore/Normal it goes on without it (a warning: the boot path itself is judged by the
    boot-storage check), and other control sets matter only when booted (a warning)."""
    res = CheckResult("boot-start-files", "Every boot-start driver's file is present")
    if not view.has_files:
        res.skipped = "no disk: only hives were given"
        return res
    seen: dict[str, dict] = {}
    for cs in view.control_sets:
        services = view.system.node(f"{cs}\\Services")
        if services is None:
            continue
        for name, node in view.system.iter_children(services):
            if view.system.get_int(node, "Start") != 0:
                continue
            if view.system.get_int(node, "Type") not in DRIVER_TYPES:
                continue  # Start=0 on a non-driver is ignored by Windows
            if _skipped_by_override(view, node):
                continue
            target = view.driver_path(view.system.get_str(node, "ImagePath"), name)
            entry = seen.setdefault(target.lower(), {"path": target, "name": name, "cs": [],
                                                     "fatal": False})
            entry["cs"].append(cs)
            if view.is_default(cs) and (view.system.get_int(node, "ErrorControl") or 0) >= 2:
                entry["fatal"] = True
    for e in seen.values():
        if view.exists(e["path"]):
            continue
        target = windows_path(e["path"])
        how = ("the boot stops (ErrorControl Severe/Critical)" if e["fatal"]
               else "Windows starts without it")
        res.add("boot-start.file-missing", ERROR if e["fatal"] else WARNING,
                f"boot-start driver {e['name']}: {target} is missing "
                f"({', '.join(e['cs'])}): {how}",
                [f"{cs}\\Services\\{e['name']}\\ImagePath" for cs in e["cs"]] + [target])
    return res


def check_geometry(view: CheckView, boot_sector: bytes | None, disk_size: int | None,
                   part_start: int | None) -> CheckResult:
    """NT 5.x NTFS boot code reads NTLDR by CHS with the heads stored in the boot sector."""
    res = CheckResult("nt5-geometry", "NT 5.x boot sector geometry matches SeaBIOS")
    if (view.major or 0) >= 6:
        res.skipped = "Windows Vista and later boot by LBA"
        return res
    if boot_sector is None or disk_size is None:
        res.skipped = "no disk: only hives were given"
        return res
    geo = geometry.read_ntfs_geometry(boot_sector)
    if geo is None:
        res.add("nt5.not-ntfs", WARNING, "the system partition's boot sector is not NTFS's")
        return res
    want = geometry.seabios_heads(disk_size)
    ev = ["system partition boot sector, offsets 0x18 (sectors/track), 0x1A (heads), "
          "0x1C (hidden sectors)"]
    if geo["heads"] != want or geo["sectors_per_track"] != geometry.SPT:
        res.add("nt5.geometry", ERROR,
                f"boot sector says {geo['heads']} heads/{geo['sectors_per_track']} sectors, "
                f"SeaBIOS presents {want}/{geometry.SPT} for a {disk_size / 2**30:.1f} GiB "
                "disk: \"A disk read error occurred\"", ev)
    if part_start is not None and geo["hidden_sectors"] != part_start:
        res.add("nt5.hidden-sectors", ERROR,
                f"boot sector hidden sectors {geo['hidden_sectors']} != partition start "
                f"{part_start}: the boot code reads the wrong sectors", ev)
    return res


def check_hal(view: CheckView, vcpus: int | None) -> CheckResult:
    res = CheckResult("nt5-hal", "HAL and vCPUs")
    if (view.major or 0) >= 6:
        res.skipped = "Windows Vista and later use one multiprocessor-capable HAL"
        return res
    cs = view.control_sets[0]
    hal = read_hal(view.system, cs)
    ev = [f"{cs}\\Enum\\Root\\{{ACPI_HAL,PCI_HAL}}\\0000\\HardwareID"]
    if hal is None:
        res.add("nt5.hal-unknown", WARNING, "the HAL could not be identified", ev)
    elif hal.multiprocessor is False and (vcpus or 1) > 1:
        res.add("nt5.hal-uniprocessor", WARNING,
                f"HAL {hal.hal} ({hal.hardware_id}) is uniprocessor: Windows will use 1 of "
                f"the {vcpus} vCPUs", ev)
    return res
