"""Microsoft KB314082 ("Mergeide"), applied offline to a Windows 2000/XP/2003 SYSTEM hive.

A physical NT 5.x machine that booted from a vendor SCSI/RAID/AHCI controller has no
critical-device entry and no boot-start driver for the emulated IDE controller it meets on
KVM: STOP 0x7B.  The KB's registry file fixes that on a running system; here the same keys
and values are planned into every control set Windows may boot.

The CriticalDeviceDatabase (CDDB) maps a device ID (``\\`` written as ``#``) to the service
that must be loaded at boot for it; the kernel consults it before Plug and Play has run.
The service keys make that driver boot-start.  The driver *files* are a separate step
(:mod:`p2vimage.windows.ide_drivers`): a Start=0 service without its file is itself a 0x7B.

Existing keys are matched case-insensitively (hivex does) and updated, never duplicated;
values are written only when they differ, so a second run changes nothing.
"""

from __future__ import annotations

from ..formats.regf import REG_DWORD, REG_EXPAND_SZ, REG_SZ
from ..guest.view import GuestView
from ..inspection import Inspection, classes
from ..plan import Plan

#: Hard disk controllers (``Control\Class``), and disk drives for ``gendisk``.
HDC_CLASS = classes.HDC
DISK_CLASS = classes.DISK_DRIVE

_ATAPI_KEYS = ("primary_ide_channel", "secondary_ide_channel", "*pnp0600", "*azt0502")
_PCIIDE_KEYS = (
    "pci#cc_0101",
    "pci#ven_0e11&dev_ae33",
    "pci#ven_1039&dev_0601",
    "pci#ven_1039&dev_5513",
    "pci#ven_1042&dev_1000",
    "pci#ven_105a&dev_4d33",
    "pci#ven_1095&dev_0640",
    "pci#ven_1095&dev_0646",
    "pci#ven_1095&dev_0646&rev_05",
    "pci#ven_1095&dev_0646&rev_07",
    "pci#ven_1095&dev_0648",
    "pci#ven_1095&dev_0649",
    "pci#ven_1097&dev_0038",
    "pci#ven_10ad&dev_0001",
    "pci#ven_10ad&dev_0150",
    "pci#ven_10b9&dev_5215",
    "pci#ven_10b9&dev_5219",
    "pci#ven_10b9&dev_5229",
    "pci#ven_1106&dev_0571",
)
# QEMU's i440fx IDE is PIIX3 8086:7010; PIIX4 8086:7111 is what Virtual PC/older QEMU show.
_INTELIDE_KEYS = (
    "pci#ven_8086&dev_1222",
    "pci#ven_8086&dev_1230",
    "pci#ven_8086&dev_2411",
    "pci#ven_8086&dev_2421",
    "pci#ven_8086&dev_7010",
    "pci#ven_8086&dev_7111",
    "pci#ven_8086&dev_7199",
)

#: (CDDB key, Service, ClassGUID) — the KB's full set.
CDDB_ENTRIES: tuple[tuple[str, str, str], ...] = (
    *((k, "atapi", HDC_CLASS) for k in _ATAPI_KEYS),
    ("gendisk", "disk", DISK_CLASS),
    *((k, "pciide", HDC_CLASS) for k in _PCIIDE_KEYS),
    *((k, "intelide", HDC_CLASS) for k in _INTELIDE_KEYS),
)


def _service(group: str, tag: int, sys_name: str) -> dict[str, tuple[int, object]]:
    return {
        "ErrorControl": (REG_DWORD, 1),
        "Group": (REG_SZ, group),
        "Start": (REG_DWORD, 0),
        "Tag": (REG_DWORD, tag),
        "Type": (REG_DWORD, 1),
        "ImagePath": (REG_EXPAND_SZ, f"System32\\DRIVERS\\{sys_name}"),
    }


#: ``Services\<name>`` values of the KB (key names as the KB spells them).
SERVICES: dict[str, dict[str, tuple[int, object]]] = {
    "atapi": _service("SCSI miniport", 0x19, "atapi.sys"),
    "IntelIde": _service("System Bus Extender", 4, "intelide.sys"),
    "PCIIde": _service("System Bus Extender", 3, "pciide.sys"),
}

#: The files the services above need in ``System32\drivers`` (pciidex.sys is the library
#: intelide.sys and pciide.sys link against).
DRIVER_FILES = ("atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys")

STEP_CDDB = "mergeide-cddb"
STEP_SERVICES = "mergeide-services"


def plan_mergeide(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """Plan the KB314082 keys into every bootable control set of an NT 5.x guest (the
    values are absolute).  Always on NT 5.x: IDE is the fallback even when the guest
    boots on virtio."""
    if not insp.is_nt5:
        return
    for cs in guest.control_sets:
        for key, service, class_guid in CDDB_ENTRIES:
            path = f"Control\\CriticalDeviceDatabase\\{key}"
            why = "KB314082: emulated IDE controller/channel/disk is boot-critical"
            plan.set_value(STEP_CDDB, "SYSTEM", cs, path, "Service", REG_SZ, service, why)
            plan.set_value(STEP_CDDB, "SYSTEM", cs, path, "ClassGUID", REG_SZ, class_guid, why)
        for name, values in SERVICES.items():
            for value_name, (vtype, value) in values.items():
                plan.set_value(
                    STEP_SERVICES, "SYSTEM", cs, f"Services\\{name}", value_name, vtype, value,
                    "KB314082: the IDE drivers load at boot (Start=0)",
                )
