"""Version, edition and names read from the hives (``inspection/version.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.hivebuild import build_hive, dword, multi, sz
from p2vimage.guest.registry import Hive
from p2vimage.guest.windows_root import CURRENT_VERSION
from p2vimage.inspection.version import (
    WindowsVersion,
    read_edition,
    read_hostname,
    read_product_type,
    read_software_version,
    read_system_arch,
)


def test_hostname_falls_back_to_tcpip(tmp_path) -> None:
    """No ComputerName key: the machine is still named, from Tcpip\\Parameters."""
    cs = "ControlSet001"
    both = build_hive(tmp_path / "both", {
        f"{cs}\\Control\\ComputerName\\ComputerName": {"ComputerName": sz("FILESRV01")},
        f"{cs}\\Services\\Tcpip\\Parameters": {"Hostname": sz("filesrv01-dns")},
    })
    tcpip = build_hive(tmp_path / "tcpip", {
        f"{cs}\\Services\\Tcpip\\Parameters": {"Hostname": sz("filesrv01"),
                                              "NV Hostname": sz("older")},
    })
    nv = build_hive(tmp_path / "nv", {
        f"{cs}\\Services\\Tcpip\\Parameters": {"NV Hostname": sz("dc01")},
    })
    none = build_hive(tmp_path / "none", {f"{cs}\\Services\\Tcpip\\Parameters": {}})
    assert read_hostname(Hive(both), cs) == "FILESRV01"
    assert read_hostname(Hive(tcpip), cs) == "filesrv01"
    assert read_hostname(Hive(nv), cs) == "dc01"
    assert read_hostname(Hive(none), cs) is None


def _software(tmp_path: Path, values: dict, name: str = "SOFTWARE") -> Hive:
    return Hive(build_hive(tmp_path / name, {CURRENT_VERSION: values}, hive_name="SOFTWARE"))


def test_nt5_version_from_current_version_string(tmp_path: Path) -> None:
    v = read_software_version(_software(tmp_path, {
        "ProductName": sz("Microsoft Windows XP"), "CurrentVersion": sz("5.1"),
        "CurrentBuildNumber": sz("2600"), "CSDVersion": sz("Service Pack 3")}))
    assert v == WindowsVersion("Microsoft Windows XP", 5, 1, 2600, "Service Pack 3")


def test_nt10_numbers_win_over_the_frozen_current_version(tmp_path: Path) -> None:
    """Windows 10 keeps CurrentVersion at "6.3"; the DWORDs name the real version."""
    v = read_software_version(_software(tmp_path, {
        "ProductName": sz("Windows Server 2019 Standard"), "CurrentVersion": sz("6.3"),
        "CurrentMajorVersionNumber": dword(10), "CurrentMinorVersionNumber": dword(0),
        "CurrentBuild": sz("17763"), "EditionID": sz("ServerStandard"),
        "InstallationType": sz("Server"), "CSDVersion": sz("")}))
    assert (v.major, v.minor, v.build) == (10, 0, 17763)  # CurrentBuild as the fallback
    assert (v.edition, v.installation_type, v.service_pack) == (
        "ServerStandard", "Server", None)  # an empty CSDVersion is no service pack


def test_junk_version_strings_are_unknown(tmp_path: Path) -> None:
    v = read_software_version(_software(tmp_path, {
        "CurrentVersion": sz("²."), "CurrentBuildNumber": sz("7601.x")}))
    assert (v.major, v.minor, v.build) == (None, None, None)
    v = read_software_version(_software(tmp_path, {
        "CurrentVersion": sz(" 6.1 SP1"), "CurrentBuildNumber": sz("1" * 12)}, "b"))
    assert (v.major, v.minor, v.build) == (6, 1, None)  # too many digits for a build
    none = Hive(build_hive(tmp_path / "c", {"Microsoft": {}}, hive_name="SOFTWARE"))
    assert read_software_version(none) == WindowsVersion()


@pytest.mark.parametrize(("value", "arch"), [
    ("x86", "x86"), ("AMD64", "x64"), ("amd64", "x64"), ("IA64", "ia64"), ("ARM64", "arm64"),
    ("MIPS", None), (None, None),
])
def test_system_arch(tmp_path: Path, value: str | None, arch: str | None) -> None:
    env = "ControlSet001\\Control\\Session Manager\\Environment"
    hive = build_hive(tmp_path / "SYSTEM", {
        env: {"PROCESSOR_ARCHITECTURE": sz(value)} if value else {}})
    assert read_system_arch(Hive(hive), "ControlSet001") == arch


@pytest.mark.parametrize(("ptype", "suites", "edition"), [
    ("ServerNT", ["Enterprise", "Terminal Server"], "Enterprise"),
    ("ServerNT", ["DataCenter"], "Datacenter"),
    ("ServerNT", ["Blade"], "Web"),
    ("ServerNT", ["Small Business(Restricted)", "Small Business"], "Small Business"),
    ("ServerNT", ["Terminal Server", ""], "Standard"),
    ("LanmanNT", [], "Standard"),  # a domain controller
    ("WinNT", ["Personal"], "Home"),
    ("WinNT", ["EmbeddedNT"], "Embedded"),
    ("WinNT", [""], "Professional"),
    (None, [], None),
])
def test_nt5_edition_from_product_options(tmp_path: Path, ptype, suites, edition) -> None:
    cs = "ControlSet001"
    values = {"ProductSuite": multi(*suites)}
    if ptype:
        values["ProductType"] = sz(ptype)
    hive = Hive(build_hive(tmp_path / "SYSTEM", {f"{cs}\\Control\\ProductOptions": values}))
    assert read_product_type(hive, cs) == ptype
    assert read_edition(hive, cs, ptype) == edition


def test_real_hives_product_type_and_names(real_hives: dict[str, Path]) -> None:
    """INSPECTION.txt: XP's ProductSuite is [''], Win7's ['Terminal Server', ''] — both
    workstations (WinNT): Professional by the NT 5.x rule."""
    cs = "ControlSet001"
    for name, host in (("dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM", "IECOMPATVHD"),
                       ("regipy-win7sp1-x86-SYSTEM", "WKS-WIN732BITA")):
        hive = Hive(real_hives[name])
        assert read_product_type(hive, cs) == "WinNT"
        assert read_edition(hive, cs, "WinNT") == "Professional"
        assert read_hostname(hive, cs) == host
        assert read_system_arch(hive, cs) == "x86"
