"""check/storage.py: the boot-storage check — ID matching in CriticalDeviceDatabase (NT
5.x-7) and DriverDatabase (8+), then the matched service's registry and files.

Hives are hivex-written with the keys Windows setup writes (an XP-style IDE chain in two
bootable control sets); file questions are answered by an in-memory view."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.hivebuild import build_hive, dword, esz, multi, sz
from fixtures.pe import MACHINE_AMD64, MACHINE_I386, build_pe
from p2vimage.check import devices
from p2vimage.check.guest import CheckView
from p2vimage.check.report import ERROR, WARNING
from p2vimage.check.storage import (
    _image_path_problem,
    check_boot_storage,
    match_cddb,
    match_driver_database,
)
from p2vimage.guest.registry import Hive
from tests.check.files_view import files_view

CDDB = "Control\\CriticalDeviceDatabase"
SETS = ["ControlSet001", "ControlSet002"]  # Default, then LastKnownGood
HDC = "{4D36E96A-E325-11CE-BFC1-08002BE10318}"
IDE = devices.boot_chain("ide", "pc", False)
DRIVERS = "/WINDOWS/system32/drivers"


def _spec(**overrides: dict) -> dict:
    """An XP hive ready for QEMU's IDE: Mergeide's PIIX3 entry, channel and disk."""
    spec: dict = {"Select": {"Current": dword(1), "Default": dword(1),
                             "LastKnownGood": dword(2)}}
    for cs in SETS:
        spec |= {
            f"{cs}\\{CDDB}\\pci#ven_8086&dev_7010": {"Service": sz("intelide"),
                                                       "ClassGUID": sz(HDC)},
            f"{cs}\\{CDDB}\\primary_ide_channel": {"Service": sz("atapi"), "ClassGUID": sz(HDC)},
            f"{cs}\\{CDDB}\\gendisk": {"Service": sz("disk")},
            f"{cs}\\Services\\intelide": {"Start": dword(0), "Type": dword(1),
                                          "Group": sz("System Bus Extender"),
                                          "ImagePath": esz("system32\\DRIVERS\\intelide.sys")},
            f"{cs}\\Services\\atapi": {"Start": dword(0), "Type": dword(1),
                                       "Group": sz("SCSI miniport")},
            f"{cs}\\Services\\disk": {"Start": dword(0), "Type": dword(1),
                                      "Group": sz("SCSI Class")},
            f"{cs}\\Control\\ServiceGroupOrder": {
                "List": multi("System Bus Extender", "SCSI miniport", "SCSI Class")},
        }
    for key, values in overrides.items():
        spec.setdefault(key.replace("__", "\\"), {}).update(values)
    return spec


def _check(tmp_path: Path, spec: dict, chain=IDE, bus: str = "ide", **kw):
    hive = Hive(build_hive(tmp_path / "SYSTEM", spec))
    view = CheckView(hive, None, SETS, "/WINDOWS", **kw)
    return check_boot_storage(view, bus, chain)


def _found(res) -> list[tuple[str, str]]:
    return [(f.id, f.severity) for f in res.findings]


def test_ready_hive_has_no_findings(tmp_path: Path) -> None:
    res = _check(tmp_path, _spec())
    assert res.findings == [] and res.status == "passed"
    assert res.title == "Boot storage driver for ide"


def test_most_specific_id_wins(tmp_path: Path) -> None:
    """A generic pciide entry (PCI\\CC_0101, disabled here) loses to PIIX3's own."""
    spec = _spec()
    spec |= {f"ControlSet001\\{CDDB}\\pci#cc_0101": {"Service": sz("pciide")},
             "ControlSet001\\Services\\pciide": {"Start": dword(4), "Type": dword(1)}}
    hive = Hive(build_hive(tmp_path / "SYSTEM", spec))
    assert match_cddb(hive, "ControlSet001", IDE[0].ids) == ("PCI\\VEN_8086&DEV_7010",
                                                             "intelide")
    assert match_cddb(hive, "ControlSet001", ("PCI\\VEN_1234", "PCI\\CC_0101")) == (
        "PCI\\CC_0101", "pciide")
    assert match_cddb(hive, "ControlSet001", ("PCI\\VEN_1234",)) is None
    assert match_cddb(hive, "ControlSet009", IDE[0].ids) is None
    assert _check(tmp_path, spec).findings == []


@pytest.mark.parametrize(("override", "fid", "severities"), [
    ({"intelide": {"Start": dword(3)}}, "storage.not-boot-start", [ERROR, WARNING]),
    ({"intelide": {"Type": dword(0x10)}}, "storage.service-type", [ERROR, WARNING]),
    ({"atapi": {"Group": sz("Filter")}}, "storage.service-group", [WARNING, WARNING]),
    ({"atapi": {"ImagePath": sz("\\??\\D:\\drivers\\atapi.sys")}}, "storage.image-path",
     [ERROR, WARNING]),
    ({"disk": {"ImagePath": sz("\\Device\\HarddiskVolume2\\disk.sys")}}, "storage.image-path",
     [ERROR, WARNING]),
    ({"intelide\\StartOverride": {"0": dword(3)}}, "storage.start-override", [ERROR, WARNING]),
])
def test_service_problems_error_in_default_warning_elsewhere(tmp_path: Path, override: dict,
                                                             fid: str, severities) -> None:
    ((svc, values),) = override.items()
    spec = _spec()
    for cs in SETS:
        spec.setdefault(f"{cs}\\Services\\{svc}", {}).update(values)
    res = _check(tmp_path, spec)
    assert _found(res) == [(fid, sev) for sev in severities]
    assert [f.message.split(":")[0] for f in res.findings] == SETS
    assert res.status == ("failed" if ERROR in severities else "warning")


def test_harmless_variants(tmp_path: Path) -> None:
    spec = _spec()
    for cs in SETS:
        spec[f"{cs}\\Services\\intelide\\StartOverride"] = {"0": dword(0)}  # not skipped
        spec[f"{cs}\\Services\\atapi"]["ImagePath"] = sz("\\??\\c:\\WINDOWS\\atapi.sys")
        del spec[f"{cs}\\Control\\ServiceGroupOrder"]  # no order: groups are not judged
        spec[f"{cs}\\Services\\disk"]["Group"] = sz("Made Up")
    assert _check(tmp_path, spec).findings == []
    # the system drive is D: when Windows lives there
    for cs in SETS:
        spec[f"{cs}\\Services\\atapi"]["ImagePath"] = sz("\\??\\D:\\WINDOWS\\atapi.sys")
    assert _check(tmp_path, spec, system_drive="D").findings == []


def test_missing_entries_and_services(tmp_path: Path) -> None:
    spec = _spec()
    del spec[f"ControlSet002\\{CDDB}\\pci#ven_8086&dev_7010"]  # LastKnownGood lacks it
    spec[f"ControlSet001\\{CDDB}\\gendisk"] = {}  # an entry naming no service
    del spec["ControlSet001\\Services\\atapi"]
    res = _check(tmp_path, spec)
    assert _found(res) == [("storage.service-missing", ERROR), ("storage.no-service", ERROR),
                           ("storage.no-driver", WARNING)]
    missing, no_service, no_driver = res.findings
    assert missing.evidence == [f"ControlSet001\\{CDDB}\\Primary_IDE_Channel",
                                "ControlSet001\\Services\\atapi"]
    assert no_service.evidence == [f"ControlSet001\\{CDDB}\\GenDisk"]
    assert no_driver.message.startswith("ControlSet002: no driver for QEMU PIIX3 IDE")
    assert no_driver.message.endswith("(when this control set is booted)")
    assert no_driver.evidence[0] == (
        f"ControlSet002\\{CDDB}\\PCI#VEN_8086&DEV_7010&SUBSYS_11001AF4&REV_00")


def test_a_driver_prepared_for_the_other_virtio_ids_is_named(tmp_path: Path) -> None:
    """viostor registered for the modern virtio-blk (1AF4:1042) only, checked for the
    transitional device i440fx presents (1AF4:1001)."""
    spec = _spec()
    for cs in SETS:
        spec |= {f"{cs}\\{CDDB}\\pci#ven_1af4&dev_1042": {"Service": sz("viostor")},
                 f"{cs}\\Services\\viostor": {"Start": dword(0), "Type": dword(1)}}
    chain = devices.boot_chain("virtio-blk", "pc", False)
    res = _check(tmp_path, spec, chain, "virtio-blk")
    assert _found(res) == [("storage.no-driver", ERROR), ("storage.no-driver", WARNING)]
    assert "(only PCI\\VEN_1AF4&DEV_1042, which this machine does not present)" in \
        res.findings[0].message
    # the modern device itself is served
    assert _check(tmp_path, spec, devices.boot_chain("virtio-blk", "q35", True),
                  "virtio-blk").findings == []


def _driver_database(tmp_path: Path, *, stale_first: bool = False,
                     via_driver_key: bool = False) -> Hive:
    dd = "DriverDatabase"
    pkg = "mshdc.inf_x86_3d2ab9c1"
    conf = f"{dd}\\DriverPackages\\{pkg}\\Configurations\\intelide_Inst"
    spec: dict = {
        f"{dd}\\DeviceIds\\PCI\\VEN_8086&DEV_7010": {"mshdc.inf": dword(1)},
        f"{dd}\\DriverInfFiles\\mshdc.inf": {"Active": multi(pkg)},
        f"{dd}\\DriverPackages\\{pkg}\\Descriptors\\PCI\\VEN_8086&DEV_7010": {
            "Configuration": sz("intelide_Inst")},
        (f"{conf}\\Driver" if via_driver_key else conf): {"Service": sz("intelide")},
        "ControlSet001\\Services\\intelide": {"Start": dword(0), "Type": dword(1)},
    }
    if stale_first:  # an entry for a more specific ID whose package is gone
        spec[f"{dd}\\DeviceIds\\PCI\\VEN_8086&DEV_7010&REV_00"] = {"oem3.inf": dword(1)}
    return Hive(build_hive(tmp_path / "SYSTEM", spec))


def test_driver_database_lookup(tmp_path: Path) -> None:
    ids = IDE[0].ids
    assert match_driver_database(_driver_database(tmp_path), ids) == (
        "PCI\\VEN_8086&DEV_7010", "intelide")
    # a stale entry does not stop the search; Service may sit in a Driver subkey
    hive = _driver_database(tmp_path, stale_first=True, via_driver_key=True)
    assert match_driver_database(hive, ids) == ("PCI\\VEN_8086&DEV_7010", "intelide")
    assert match_driver_database(hive, ("PCI\\VEN_1AF4&DEV_1001",)) is None


def test_driver_database_misses_are_said_once(tmp_path: Path) -> None:
    """DriverDatabase is hive-wide: a device without a driver is one error, not one per
    control set (the channel and disk of the IDE chain have none in this small hive);
    the service it names is still looked for in each control set (ControlSet002 has
    none here)."""
    hive = _driver_database(tmp_path)
    view = CheckView(hive, None, SETS, "/WINDOWS")
    res = check_boot_storage(view, "ide", IDE)
    assert _found(res) == [("storage.no-driver", ERROR)] * 2 + [
        ("storage.service-missing", WARNING)]
    assert res.findings[2].evidence == ["DriverDatabase\\DeviceIds\\PCI\\VEN_8086&DEV_7010",
                                        "ControlSet002\\Services\\intelide"]
    assert [f.message.split(" for ")[1].split(":")[0] for f in res.findings[:2]] == [
        "its primary IDE channel", "the disk (class driver)"]
    assert res.findings[0].evidence[0] == "DriverDatabase\\DeviceIds\\Intel-PIIX3"


@pytest.mark.parametrize(("image_path", "problem"), [
    (None, None),
    ("system32\\DRIVERS\\atapi.sys", None),
    ("\\SystemRoot\\System32\\drivers\\atapi.sys", None),
    ("%SystemRoot%\\System32\\drivers\\atapi.sys", None),
    ("\\??\\C:\\WINDOWS\\atapi.sys", None),
    ("c:/windows/atapi.sys", None),
    ("\\??\\E:\\drivers\\atapi.sys", "it is on drive E:"),
    ("D:\\atapi.sys", "it is on drive D:"),
    ("\\Device\\HarddiskVolume3\\atapi.sys", "it is not a path on the system volume"),
    ("\\\\server\\share\\atapi.sys", "it is not a path on the system volume"),
])
def test_image_path_problem(image_path: str | None, problem: str | None) -> None:
    assert _image_path_problem(image_path, "C") == problem


def test_driver_files(tmp_path: Path) -> None:
    """Each file once, whatever the number of control sets; intelide also needs
    pciidex.sys; a file of the wrong machine or not a PE at all is as bad as none."""
    x86 = build_pe(MACHINE_I386)
    files = {f"{DRIVERS}/intelide.sys": x86, f"{DRIVERS}/pciidex.sys": x86,
             f"{DRIVERS}/atapi.sys": x86, f"{DRIVERS}/disk.sys": x86}
    hive = Hive(build_hive(tmp_path / "SYSTEM", _spec()))
    view = files_view(hive, SETS, files)
    assert check_boot_storage(view, "ide", IDE).findings == []
    del files[f"{DRIVERS}/pciidex.sys"]
    files[f"{DRIVERS}/atapi.sys"] = build_pe(MACHINE_AMD64)
    files[f"{DRIVERS}/disk.sys"] = b"\0" * 600
    res = check_boot_storage(files_view(hive, SETS, files), "ide", IDE)
    assert _found(res) == [("storage.file-missing", ERROR),
                           ("storage.file-wrong-machine", ERROR), ("storage.file-not-pe", ERROR)]
    assert res.findings[0].message == (
        "intelide (QEMU PIIX3 IDE (i440fx, 8086:7010)): pciidex.sys, which it needs, "
        "\\WINDOWS\\system32\\drivers\\pciidex.sys is missing")
    assert res.findings[1].message == (
        "atapi: \\WINDOWS\\System32\\drivers\\atapi.sys built for x64, the guest is x86")
    del files[f"{DRIVERS}/intelide.sys"]
    res = check_boot_storage(files_view(hive, SETS, files), "ide", IDE)
    assert res.findings[0].message.startswith(
        "intelide (QEMU PIIX3 IDE (i440fx, 8086:7010)): its image "
        "\\WINDOWS\\system32\\DRIVERS\\intelide.sys is missing")
