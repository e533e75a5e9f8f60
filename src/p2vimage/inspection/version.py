"""Windows version, edition and architecture, from the SOFTWARE and SYSTEM hives."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..guest.registry import Hive
from ..guest.windows_root import CURRENT_VERSION


@dataclass
class WindowsVersion:
    product_name: str | None = None
    major: int | None = None
    minor: int | None = None
    build: int | None = None
    service_pack: str | None = None
    edition: str | None = None
    installation_type: str | None = None
    product_type: str | None = None  # SYSTEM ProductOptions: WinNT (client) / ServerNT / LanmanNT


def read_software_version(software: Hive) -> WindowsVersion:
    cv = software.node(CURRENT_VERSION)
    v = WindowsVersion()
    if cv is None:
        return v
    v.product_name = software.get_str(cv, "ProductName")
    major = software.get_int(cv, "CurrentMajorVersionNumber")
    minor = software.get_int(cv, "CurrentMinorVersionNumber")
    if major is None:
        # ASCII digits, a few of them: str.isdigit() and \d also take "²" (int() refuses
        # it) and int() refuses 4300+ digits; a hive value may hold either
        m = re.match(r"^\s*([0-9]{1,9})\.([0-9]{1,9})",
                     software.get_str(cv, "CurrentVersion") or "")
        if m:
            major, minor = int(m.group(1)), int(m.group(2))
    v.major, v.minor = major, minor
    build = software.get_str(cv, "CurrentBuildNumber") or software.get_str(cv, "CurrentBuild")
    if build and re.fullmatch(r"[0-9]{1,9}", build.strip()):
        v.build = int(build)
    v.service_pack = software.get_str(cv, "CSDVersion") or None
    v.edition = software.get_str(cv, "EditionID") or None
    v.installation_type = software.get_str(cv, "InstallationType") or None
    return v


def read_system_arch(system: Hive, control_set: str) -> str | None:
    """``x86``/``x64``/``ia64`` from Session Manager\\Environment\\PROCESSOR_ARCHITECTURE."""
    env = system.node(f"{control_set}\\Control\\Session Manager\\Environment")
    arch = (system.get_str(env, "PROCESSOR_ARCHITECTURE") or "").upper()
    return {"X86": "x86", "AMD64": "x64", "IA64": "ia64", "ARM64": "arm64"}.get(arch)


def read_product_type(system: Hive, control_set: str) -> str | None:
    return system.get_str(system.node(f"{control_set}\\Control\\ProductOptions"), "ProductType")


# ProductOptions\ProductSuite names that identify an NT 5.x edition (no EditionID then).
_SUITE_EDITIONS = {
    "enterprise": "Enterprise",
    "datacenter": "Datacenter",
    "blade": "Web",
    "small business": "Small Business",
    "small business(restricted)": "Small Business",
    "personal": "Home",
    "embeddednt": "Embedded",
}


def read_edition(system: Hive, control_set: str, product_type: str | None) -> str | None:
    """NT 5.x edition from ProductOptions (Vista+ has EditionID in SOFTWARE instead).

    Windows derives the edition shown to users from ``ProductSuite`` (e.g.
    "Enterprise", "Blade" = Web Edition); a server with no such suite is Standard,
    a workstation with none is Professional.
    """
    suites = system.get_list(system.node(f"{control_set}\\Control\\ProductOptions"), "ProductSuite")
    for s in suites:
        if s.lower() in _SUITE_EDITIONS:
            return _SUITE_EDITIONS[s.lower()]
    if product_type in ("ServerNT", "LanmanNT"):
        return "Standard"
    if product_type == "WinNT":
        return "Professional"
    return None


def read_hostname(system: Hive, control_set: str) -> str | None:
    """The NetBIOS name (``ComputerName``), else the TCP/IP host name Windows keeps in
    ``Services\\Tcpip\\Parameters`` (``Hostname``, then ``NV Hostname``): a hive
    trimmed or damaged so that the first is missing still names the machine (the
    default domain name)."""
    node = system.node(f"{control_set}\\Control\\ComputerName\\ComputerName")
    name = system.get_str(node, "ComputerName")
    if name:
        return name
    tcpip = system.node(f"{control_set}\\Services\\Tcpip\\Parameters")
    return system.get_str(tcpip, "Hostname") or system.get_str(tcpip, "NV Hostname") or None
