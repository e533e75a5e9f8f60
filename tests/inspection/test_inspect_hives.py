"""inspection/__init__.py: ``fill_from_hives``/``inspect_hives`` put the per-topic readers
together — version from SOFTWARE, the rest from SYSTEM's Current control set — and the
Inspection's own forms (JSON dict, summary lines)."""

from __future__ import annotations

import json
from pathlib import Path

from fixtures.hivebuild import build_hive, dword, esz, multi, sz
from p2vimage.guest.registry import Hive
from p2vimage.guest.windows_root import CURRENT_VERSION
from p2vimage.inspection import Inspection, fill_from_hives, inspect_hives
from p2vimage.inspection.classes import NET

XP = "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"
W10 = "regipy-win10-18362-x64-SYSTEM_WIN_10_1709"
G1 = "{11111111-1111-1111-1111-111111111111}"


def _system(tmp_path: Path, current: int = 2) -> Path:
    """Select Current=2 (Default 2, LastKnownGood 1): everything is read from
    ControlSet002; ControlSet001 holds different values that must not be read."""
    spec: dict = {"Select": {"Current": dword(current), "Default": dword(current),
                             "LastKnownGood": dword(1), "Failed": dword(0)}}
    for n, host in ((1, "OLDNAME"), (2, "FILESRV01")):
        cs = f"ControlSet00{n}"
        spec |= {
            f"{cs}\\Control\\ComputerName\\ComputerName": {"ComputerName": sz(host)},
            f"{cs}\\Control\\ProductOptions": {"ProductType": sz("ServerNT"),
                                               "ProductSuite": multi("Enterprise")},
            f"{cs}\\Control\\Session Manager\\Environment": {
                "PROCESSOR_ARCHITECTURE": sz("x86")},
        }
    cs = "ControlSet002"
    spec |= {
        f"{cs}\\Control\\TimeZoneInformation": {"RealTimeIsUniversal": dword(1)},
        f"{cs}\\Enum\\Root\\ACPI_HAL\\0000": {"HardwareID": multi("acpiapic_mp")},
        f"{cs}\\Services\\VIOSTOR": {"Start": dword(0),
                                     "ImagePath": esz("system32\\drivers\\viostor.sys")},
        f"{cs}\\Services\\netkvm": {"Start": dword(3)},
        f"{cs}\\Services\\intelide": {"Start": dword(0)},
        f"{cs}\\Enum\\PCI\\VEN_8086&DEV_7010\\3&1": {
            "ClassGUID": sz("{4D36E96A-E325-11CE-BFC1-08002BE10318}"),
            "Service": sz("intelide"), "DeviceDesc": sz("Intel PIIX3 IDE")},
        f"{cs}\\Control\\Class\\{NET}\\0001": {
            "MatchingDeviceId": sz("pci\\ven_10ec&dev_8139"), "NetCfgInstanceId": sz(G1),
            "DriverDesc": sz("Realtek RTL8139")},
        f"{cs}\\Enum\\PCI\\VEN_10EC&DEV_8139\\3&2": {"Driver": sz(f"{NET}\\0001"),
                                                     "Service": sz("rtl8139")},
        f"{cs}\\Control\\Network\\{NET}\\{G1}\\Connection": {"Name": sz("Local Area Connection")},
        f"{cs}\\Services\\Tcpip\\Parameters\\Interfaces\\{G1}": {
            "EnableDHCP": dword(0), "IPAddress": multi("10.0.0.5"),
            "SubnetMask": multi("255.255.255.0"), "DefaultGateway": multi("10.0.0.1"),
            "NameServer": sz("10.0.0.2")},
    }
    return build_hive(tmp_path / "SYSTEM", spec)


def _software(tmp_path: Path, **values) -> Path:
    return build_hive(tmp_path / "SOFTWARE", {CURRENT_VERSION: values}, hive_name="SOFTWARE")


def test_a_windows_2003_server_from_both_hives(tmp_path: Path) -> None:
    insp = inspect_hives(_system(tmp_path), _software(
        tmp_path, ProductName=sz("Microsoft Windows Server 2003"), CurrentVersion=sz("5.2"),
        CurrentBuildNumber=sz("3790"), CSDVersion=sz("Service Pack 2")))
    assert (insp.product_name, insp.major, insp.minor, insp.build, insp.service_pack) == (
        "Microsoft Windows Server 2003", 5, 2, 3790, "Service Pack 2")
    assert insp.is_nt5
    # NT 5.x: no EditionID, the edition comes from SYSTEM's ProductSuite
    assert (insp.product_type, insp.edition) == ("ServerNT", "Enterprise")
    assert (insp.arch, insp.hostname) == ("x86", "FILESRV01")  # Current = 2, not 1
    cs = insp.control_sets
    assert (cs.current, cs.default, cs.last_known_good, cs.failed) == (2, 2, 1, 0)
    assert cs.present == ["ControlSet001", "ControlSet002"]
    assert cs.bootable == ["ControlSet002", "ControlSet001"]
    assert (insp.hal.hardware_id, insp.hal.hal, insp.hal.multiprocessor) == (
        "acpiapic_mp", "halmacpi.dll", True)
    assert [(c.service, c.start) for c in insp.storage_controllers] == [("intelide", 0)]
    assert insp.boot_storage_drivers == ["intelide"]
    (nic,) = insp.nics
    assert (nic.connection_name, nic.driver_service, nic.ip_addresses, nic.static) == (
        "Local Area Connection", "rtl8139", ["10.0.0.5"], True)
    # virtio services with their hive spelling, in the module's order
    assert [(v.service, v.start, v.image_path) for v in insp.virtio_drivers] == [
        ("VIOSTOR", 0, "system32\\drivers\\viostor.sys"), ("netkvm", 3, None)]
    assert insp.real_time_is_universal and not insp.has_driver_database
    # nothing of the disk is known from hives alone
    assert (insp.system_root, insp.windows_partition, insp.firmware, insp.drive_letters) == (
        None, None, None, {})


def test_nt6_edition_is_not_guessed_from_system(tmp_path: Path) -> None:
    """Vista+ name their edition in SOFTWARE's EditionID only: without it, none."""
    insp = inspect_hives(_system(tmp_path), _software(
        tmp_path, ProductName=sz("Windows Server 2008 R2 Enterprise"), CurrentVersion=sz("6.1"),
        CurrentBuildNumber=sz("7601")))
    assert (insp.major, insp.minor, insp.edition, insp.is_nt5) == (6, 1, None, False)
    insp = inspect_hives(_system(tmp_path), _software(
        tmp_path, CurrentVersion=sz("6.1"), EditionID=sz("ServerEnterprise")))
    assert insp.edition == "ServerEnterprise"


def test_fields_already_known_are_kept(tmp_path: Path) -> None:
    """inspect_job fills the disk facts first (arch from cmd.exe's PE header, ...)."""
    insp = Inspection(product_name="From the caller", major=5, arch="x64", hostname="given")
    fill_from_hives(insp, Hive(_system(tmp_path)), Hive(_software(
        tmp_path, ProductName=sz("Microsoft Windows XP"), CurrentVersion=sz("5.1"))))
    assert (insp.product_name, insp.major, insp.minor) == ("From the caller", 5, 1)
    assert (insp.arch, insp.hostname) == ("x64", "given")


def test_real_xp_hive_alone(real_hives: dict[str, Path]) -> None:
    """Without SOFTWARE the version is unknown; the rest is the XP hive's (INSPECTION.txt:
    ComputerName IECOMPATVHD, ProductType WinNT, x86, no virtio, LastKnownGood 3)."""
    insp = inspect_hives(real_hives[XP])
    assert (insp.product_name, insp.major, insp.is_nt5) == (None, None, False)
    assert (insp.hostname, insp.arch, insp.product_type) == ("IECOMPATVHD", "x86", "WinNT")
    assert insp.edition == "Professional"  # version unknown: the NT 5.x rule applies
    assert insp.control_sets.bootable == ["ControlSet001", "ControlSet003"]
    assert insp.virtio_drivers == [] and not insp.real_time_is_universal
    assert insp.boot_storage_drivers == ["intelide", "atapi"]


def test_real_win10_hive_has_a_driver_database(real_hives: dict[str, Path]) -> None:
    insp = inspect_hives(real_hives[W10])
    assert insp.has_driver_database and insp.arch == "x64"
    assert insp.hostname == "DESKTOP-2KGM189"
    assert insp.control_sets.bootable == ["ControlSet001"]


def test_dict_is_json_and_summary_names_the_facts(tmp_path: Path) -> None:
    insp = inspect_hives(_system(tmp_path), _software(
        tmp_path, ProductName=sz("Microsoft Windows Server 2003"), CurrentVersion=sz("5.2"),
        CurrentBuildNumber=sz("3790"), CSDVersion=sz("Service Pack 2")))
    doc = json.loads(json.dumps(insp.to_dict()))
    assert doc["control_sets"]["bootable"] == ["ControlSet002", "ControlSet001"]
    assert doc["nics"][0]["ip_addresses"] == ["10.0.0.5"]
    assert doc["hal"] == {"hardware_id": "acpiapic_mp", "hal": "halmacpi.dll",
                          "multiprocessor": True}
    lines = insp.summary_lines()
    assert "Product:          Microsoft Windows Server 2003" in lines
    assert "Version:          5.2.3790 (Service Pack 2)" in lines
    assert "Edition:          Enterprise   Product type: ServerNT" in lines
    assert "Control sets:     Current=2 Default=2 LastKnownGood=1  present: ControlSet001, " \
           "ControlSet002" in lines
    assert "HAL:              halmacpi.dll (acpiapic_mp, multiprocessor)" in lines
    assert "Boot storage:     intelide" in lines
    assert "  Local Area Connection: Realtek RTL8139 (service rtl8139, MAC not recorded) " \
           "static 10.0.0.5/255.255.255.0 gw 10.0.0.1 dns 10.0.0.2" in lines
    assert "Virtio drivers:   VIOSTOR(start=0), netkvm(start=3)" in lines
    assert "RTC in UTC:       yes" in lines
    empty = Inspection().summary_lines()
    assert "Version:          unknown" in empty and "Boot storage:     none found" in empty
    assert "Virtio drivers:   none" in empty and "RTC in UTC:       no (localtime)" in empty
