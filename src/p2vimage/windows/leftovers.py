"""What else was tied to the physical hardware: vendor agents, OEM activation, SMBIOS.

* **Vendor services** that will fail without their hardware — RAID management agents, NIC
  teaming, hardware monitoring — are *listed* in the report (they log errors or slow the
  boot, but stopping them is the administrator's decision); ``--disable-vendor-services``
  sets them to Start=4.  They are recognised by name (the services the big server vendors'
  support packs install) and by being the driver of a device that is gone.
* **OEM (SLP/"System Locked Preinstallation") activation**: an OEM product ID
  (``xxxxx-OEM-xxxxxxx-xxxxx``) means activation is tied to the BIOS of the physical
  machine; the report warns, and ``--smbios FILE`` carries the source's SMBIOS strings into
  the domain XML (a ``dmidecode`` text dump, or JSON ``{"bios": {...}, "system": {...}}``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..formats.regf import REG_DWORD
from ..guest.registry import Hive
from ..guest.view import GuestView
from ..inspection import Inspection
from ..plan import Plan

STEP = "disable-vendor-services"

# Service name (lower) -> what it is.  Names as the vendors' installers create them.
VENDOR_SERVICES: dict[str, str] = {
    # HP / Compaq Insight Management agents and NIC teaming
    "cqmgserv": "HP Insight foundation agent", "cqmghost": "HP Insight host agent",
    "cqmgstor": "HP Insight storage agent", "cpqnicmgmt": "HP NIC management agent",
    "cpqteam": "HP NIC teaming", "cpqrcmc": "HP Remote Insight", "sysdown": "HP ASR",
    "cqmgnic": "HP Insight NIC agent", "hpqilo2": "HP iLO 2 driver",
    # Dell OpenManage
    "dcstor32": "Dell OpenManage storage", "dcevt32": "Dell OpenManage event manager",
    "omsad": "Dell OpenManage data manager", "server administrator": "Dell OpenManage",
    "mr2kserv": "LSI/Dell MegaRAID service",
    # IBM Director / ServeRAID
    "ibmsprem": "IBM ServeRAID manager", "twgipc": "IBM Director agent",
    # Intel and Broadcom NIC teaming, Intel RAID monitoring
    "iansminiport": "Intel ANS teaming miniport", "iansprotocol": "Intel ANS teaming protocol",
    "blfp": "Broadcom BASP teaming", "baspmp": "Broadcom BASP virtual miniport",
    "iaantmon": "Intel Matrix Storage event monitor", "iastordatamgrsvc": "Intel RST service",
    # Adaptec / LSI storage managers
    "aacsvc": "Adaptec storage manager", "msm_service": "LSI MegaRAID Storage Manager",
}

_OEM_PRODUCT_ID = re.compile(r"^\d{5}-OEM-\d{7}-\d{5}$", re.I)


@dataclass
class VendorService:
    name: str
    what: str
    start: int | None


def vendor_services(system: Hive, cs: str) -> list[VendorService]:
    services = system.node(f"{cs}\\Services")
    found: list[VendorService] = []
    if services is None:
        return found
    for name, node in system.iter_children(services):
        what = VENDOR_SERVICES.get(name.lower())
        if what is None:
            continue
        start = system.get_int(node, "Start")
        if start == 4:
            continue  # already disabled
        found.append(VendorService(name, what, start))
    return found


def plan_vendor_services(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """Hardware vendors' agents: listed (a warning), or set to Start=4 with
    ``--disable-vendor-services``.  Recorded in ``plan.network.vendor_services``."""
    assert plan.context is not None
    disable = plan.context.options.disable_vendor_services
    system, control_sets = guest.system, guest.control_sets
    found = vendor_services(system, control_sets[0]) if control_sets else []
    if plan.network is not None:
        plan.network.vendor_services = list(found)
    if not found:
        return
    if not disable:
        plan.warnings.append(
            "vendor services that need the physical hardware: "
            + ", ".join(f"{v.name} ({v.what})" for v in found)
            + "; they will log errors on KVM (--disable-vendor-services sets them to Start=4)"
        )
        return
    for cs in control_sets:
        for v in vendor_services(system, cs):
            plan.set_value(STEP, "SYSTEM", cs, f"Services\\{v.name}", "Start", REG_DWORD, 4,
                           f"{v.what}: its hardware is gone (--disable-vendor-services)")


def plan_oem(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """An OEM-licensed installation: its activation is tied to the physical BIOS; warn
    unless the machine's SMBIOS strings are passed on (``--smbios``)."""
    assert plan.context is not None
    oem = oem_activation(guest.software)
    if plan.network is not None:
        plan.network.oem_product_id = oem
    if oem and plan.context.options.smbios is None:
        plan.warnings.append(
            f"OEM-licensed installation (product ID {oem}): activation is tied to the "
            "physical machine's BIOS; pass its SMBIOS strings with --smbios FILE "
            "(dmidecode -t 0,1 output) or be ready to reactivate"
        )


def oem_activation(software: Hive | None) -> str | None:
    """The OEM product ID when the installation is OEM-licensed (activation tied to BIOS)."""
    if software is None:
        return None
    pid = software.get_str(software.node("Microsoft\\Windows NT\\CurrentVersion"), "ProductId")
    return pid if pid and _OEM_PRODUCT_ID.match(pid.strip()) else None


_DMI_KEYS = {
    "bios": {"vendor": "vendor", "version": "version", "release date": "date",
             "bios revision": "release"},
    "system": {"manufacturer": "manufacturer", "product name": "product",
               "version": "version", "serial number": "serial", "uuid": "uuid",
               "sku number": "sku", "family": "family"},
}


def read_smbios(path: Path) -> dict[str, dict[str, str]]:
    """``--smbios FILE``: JSON ``{"bios": {...}, "system": {...}}`` or ``dmidecode`` text."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"--smbios {path}: {exc.strerror or exc}") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:  # JSONDecodeError, or a number of 4300+ digits
            raise UsageError(f"--smbios {path}: not valid JSON "
                             f"({getattr(exc, 'msg', exc)})") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise UsageError(f'--smbios {path}: expected {{"bios": {{...}}, "system": {{...}}}}')
        return {k: {kk: str(vv) for kk, vv in v.items()} for k, v in data.items()}
    out: dict[str, dict[str, str]] = {}
    section = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            head = line.strip().lower()
            section = ("bios" if head == "bios information" else
                       "system" if head == "system information" else None)
            continue
        if section is None or ":" not in line:
            continue
        key, _, value = line.strip().partition(":")
        mapped = _DMI_KEYS[section].get(key.strip().lower())
        value = value.strip()
        if mapped and value and value.lower() not in ("not specified", "to be filled by o.e.m."):
            out.setdefault(section, {})[mapped] = value
    if not out:
        raise UsageError(
            f"--smbios {path}: no BIOS/System Information found (give `dmidecode -t 0,1` "
            "output or JSON)"
        )
    return out
