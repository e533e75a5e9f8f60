"""Windows Vista/7/2008 and later on QEMU's emulated controllers: enable the in-box drivers.

NT 6+ ships the IDE (``intelide``/``pciide``/``atapi``) and AHCI (``msahci`` on Vista/7,
``storahci`` on 8+) drivers, but setup leaves them *not* boot-start on a machine that did
not boot through them: Start=3 on 7, or Start=0 with a ``StartOverride\\0`` = 3 on 8+ (the
"boot configuration" override Windows uses to skip unused boot drivers).  Moved onto
QEMU's PIIX3 IDE (i440fx) or ICH9 AHCI (q35), such a guest stops with 0x7B.

The fix is the one Microsoft documents for switching a system to AHCI: make the services
boot-start (and neutralise ``StartOverride``), in every bootable control set.  Windows 7
still finds boot devices through the CriticalDeviceDatabase, so its entries for QEMU's
controllers are ensured too; Windows 8+ use ``DriverDatabase\\DeviceIds`` (the in-box
``mshdc.inf`` is registered there by setup), which is checked, not written.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from ..errors import ConversionError
from ..formats.regf import REG_DWORD, REG_SZ
from ..guest.view import GuestView
from ..inspection import Inspection
from ..plan import Plan
from .mergeide import HDC_CLASS

STEP = "emulated-controller"


@dataclass(frozen=True)
class Controller:
    """One QEMU storage controller as Windows sees it."""

    name: str  # "ide" | "sata"
    description: str
    device_ids: tuple[str, ...]  # DriverDatabase\DeviceIds entries that match it (any one)


IDE = Controller(
    "ide", "QEMU PIIX3 IDE (i440fx)", ("PCI\\VEN_8086&DEV_7010", "PCI\\CC_0101")
)
SATA = Controller("sata", "QEMU ICH9 AHCI (q35)", ("PCI\\CC_010601",))


def services_for(controller: Controller, driver_database: bool) -> list[str]:
    """Boot-start services the controller needs on this Windows generation."""
    if controller.name == "ide":
        return ["intelide", "pciide", "atapi"]
    # Vista/7's msahci is an ataport miniport: its channels are atapi devices.
    return ["storahci"] if driver_database else ["msahci", "atapi"]


def _cddb(controller: Controller) -> list[tuple[str, str]]:
    if controller.name == "ide":
        return [
            ("pci#ven_8086&dev_7010", "intelide"),
            ("pci#cc_0101", "pciide"),
            ("primary_ide_channel", "atapi"),
            ("secondary_ide_channel", "atapi"),
        ]
    return [("pci#cc_010601", "msahci")]


def image_file(systemroot: str, image_path: str | None, service: str) -> str:
    """Guest path of a driver from its ``ImagePath`` (``\\SystemRoot\\...``,
    ``System32\\drivers\\x.sys``, ``%SystemRoot%\\...``), defaulting as the kernel does."""
    p = (image_path or f"System32\\drivers\\{service}.sys").replace("\\", "/")
    low = p.lower()
    if low.startswith("/??/"):  # NT path of a DOS drive: \??\C:\...
        p = p[4:]
    for prefix in ("/systemroot/", "%systemroot%/"):
        if low.startswith(prefix):
            p = p[len(prefix):]
            break
    if p.lower().startswith("/") or (len(p) > 1 and p[1] == ":"):
        p = p.split(":", 1)[-1]  # absolute: relative to the system volume's root
        return p if p.startswith("/") else "/" + p
    return posixpath.join(systemroot, p)


def plan_nt6_storage(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """Enable QEMU's emulated controllers on NT 6+: IDE always on i440fx, AHCI always on
    q35 (the boot controller, or the fallback when the guest boots on virtio), AHCI on
    i440fx when the guest boots on sata.  A problem with the boot controller stops the
    conversion; with a fallback one it is a warning."""
    if insp.is_nt5:
        return
    machine, bus = plan.device("machine") or "pc", plan.device("disk bus") or "ide"
    wanted = []
    if machine == "pc":
        wanted.append(IDE)
    if bus == "sata" or machine == "q35":  # on q35 AHCI is also the fallback to virtio
        wanted.append(SATA)
    for ctl in wanted:
        # Planned apart and kept only when complete: a fallback controller with a missing
        # service or file is left untouched (no CDDB entry naming a service that does
        # not exist), as the warning says.
        trial = Plan(context=plan.context)
        problems = plan_controller(trial, guest, ctl)
        if not problems:
            plan.registry += trial.registry
            continue
        msg = f"{ctl.description}: " + "; ".join(problems)
        if ctl.name == bus:
            raise ConversionError(msg + ": the guest cannot boot on this controller")
        plan.warnings.append(msg + " (not the boot controller; left as is)")


def plan_controller(plan: Plan, guest: GuestView, controller: Controller) -> list[str]:
    """Plan the boot-enabling of ``controller``; return problems (missing services/files)."""
    system, control_sets = guest.system, guest.control_sets
    systemroot = guest.system_root or "/Windows"

    def file_exists(path: str) -> bool:
        return bool(guest.exists(path))

    driver_database = system.node("DriverDatabase") is not None
    services = services_for(controller, driver_database)
    problems: list[str] = []
    why = f"boot on {controller.description}: the in-box driver must be boot-start"
    for cs in control_sets:
        for svc in services:
            node = system.node(f"{cs}\\Services\\{svc}")
            if node is None:
                problems.append(f"{cs}\\Services\\{svc} does not exist")
                continue
            plan.set_value(STEP, "SYSTEM", cs, f"Services\\{svc}", "Start", REG_DWORD, 0, why)
            override = system.node("StartOverride", node)
            if override is not None:
                for v in system.values(override).values():
                    plan.set_value(
                        STEP, "SYSTEM", cs, f"Services\\{svc}\\StartOverride", v.name,
                        REG_DWORD, 0, "StartOverride would keep the driver from loading at boot",
                    )
        if not driver_database:
            for key, svc in _cddb(controller):
                path = f"Control\\CriticalDeviceDatabase\\{key}"
                cddb_why = f"{controller.description} is boot-critical (CDDB)"
                plan.set_value(STEP, "SYSTEM", cs, path, "Service", REG_SZ, svc, cddb_why)
                plan.set_value(STEP, "SYSTEM", cs, path, "ClassGUID", REG_SZ, HDC_CLASS, cddb_why)
    if driver_database and not any(
        system.node(f"DriverDatabase\\DeviceIds\\{i}") is not None for i in controller.device_ids
    ):
        problems.append(
            f"DriverDatabase has no driver for {controller.description} "
            f"({' or '.join(controller.device_ids)})"
        )
    cs0 = control_sets[0]
    for svc in services:
        node = system.node(f"{cs0}\\Services\\{svc}")
        if node is None:
            continue
        path = image_file(systemroot, system.get_str(node, "ImagePath"), svc)
        if not file_exists(path):
            problems.append(f"{path.replace('/', chr(92))} (service {svc}) is missing")
    if controller.name == "ide":
        extra = posixpath.join(systemroot, "System32", "drivers", "pciidex.sys")
        if not file_exists(extra):
            problems.append(f"{extra.replace('/', chr(92))} is missing")
    return problems
