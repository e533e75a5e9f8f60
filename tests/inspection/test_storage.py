"""inspection/storage.py: the storage controllers recorded under ``Enum`` and the
boot-start drivers that served them (hivex-written hives; the real Windows 10 hives)."""

from __future__ import annotations

from pathlib import Path

from fixtures.hivebuild import build_hive, dword, sz
from p2vimage.guest.registry import Hive
from p2vimage.inspection.classes import DISK_DRIVE, HDC, SCSI_ADAPTER
from p2vimage.inspection.storage import (
    StorageController,
    boot_storage_drivers,
    storage_controllers,
)

CS = "ControlSet001"
ENUM = f"{CS}\\Enum"
SVC = f"{CS}\\Services"


def test_controllers_of_every_bus_but_root(tmp_path: Path) -> None:
    hive = Hive(build_hive(tmp_path / "SYSTEM", {
        f"{ENUM}\\PCI\\VEN_8086&DEV_7111&SUBSYS_00000000&REV_01\\3&1": {
            "ClassGUID": sz(HDC.lower()), "Service": sz("intelide"),
            "DeviceDesc": sz("@mshdc.inf,%pci\\ven_8086&dev_7111.devicedesc%;Intel IDE")},
        f"{ENUM}\\PCI\\VEN_1000&DEV_0054&SUBSYS_197615AD&REV_01\\4&2": {
            "ClassGUID": sz(SCSI_ADAPTER), "Service": sz("LSI_SAS"),
            "DeviceDesc": sz("LSI Adapter"), "FriendlyName": sz("LSI SAS (boot)")},
        f"{ENUM}\\PCIIDE\\IDEChannel\\4&3&0": {
            "ClassGUID": sz(HDC), "Service": sz("atapi"), "DeviceDesc": sz("Primary IDE Channel")},
        f"{ENUM}\\USB\\VID_0781&PID_558C\\1": {  # a USB controller: counted, not boot
            "ClassGUID": sz(SCSI_ADAPTER), "Service": sz("UASPStor")},
        f"{ENUM}\\PCI\\VEN_1AF4&DEV_1001\\5&4": {  # its service key is gone
            "ClassGUID": sz(SCSI_ADAPTER), "Service": sz("viostor")},
        f"{ENUM}\\PCI\\VEN_15AD&DEV_07E0\\6&5": {"ClassGUID": sz(HDC)},  # no driver
        f"{ENUM}\\Root\\Spaceport\\0000": {"ClassGUID": sz(SCSI_ADAPTER),
                                           "Service": sz("spaceport")},  # software
        f"{ENUM}\\IDE\\DiskQEMU_HARDDISK\\5&1": {"ClassGUID": sz(DISK_DRIVE),
                                                 "Service": sz("disk")},  # not a controller
        f"{SVC}\\intelide": {"Start": dword(0)},
        f"{SVC}\\LSI_SAS": {"Start": dword(0)},
        f"{SVC}\\atapi": {"Start": dword(0)},
        f"{SVC}\\UASPStor": {"Start": dword(3)},
        f"{SVC}\\spaceport": {"Start": dword(0)},
    }))
    got = {c.hardware_id: c for c in storage_controllers(hive, CS)}
    assert set(got) == {
        "PCI\\VEN_8086&DEV_7111&SUBSYS_00000000&REV_01",
        "PCI\\VEN_1000&DEV_0054&SUBSYS_197615AD&REV_01",
        "PCIIDE\\IDEChannel", "USB\\VID_0781&PID_558C", "PCI\\VEN_1AF4&DEV_1001",
        "PCI\\VEN_15AD&DEV_07E0"}
    ide = got["PCI\\VEN_8086&DEV_7111&SUBSYS_00000000&REV_01"]
    assert ide == StorageController("Intel IDE", ide.hardware_id, "intelide", 0, HDC)
    assert got["PCI\\VEN_1000&DEV_0054&SUBSYS_197615AD&REV_01"].description == "LSI SAS (boot)"
    assert got["USB\\VID_0781&PID_558C"].start == 3
    assert got["PCI\\VEN_1AF4&DEV_1001"].start is None
    bare = got["PCI\\VEN_15AD&DEV_07E0"]
    assert (bare.service, bare.start, bare.description) == (None, None, None)
    assert sorted(boot_storage_drivers(storage_controllers(hive, CS))) == [
        "LSI_SAS", "atapi", "intelide"]
    assert storage_controllers(hive, "ControlSet002") == []


def test_boot_drivers_once_each_in_first_seen_order() -> None:
    def c(service: str | None, start: int | None) -> StorageController:
        return StorageController(None, "PCI\\X", service, start, HDC)

    assert boot_storage_drivers([c("atapi", 0), c("iaStorV", 3), c(None, 0), c("intelide", 0),
                                 c("atapi", 0), c("viostor", None)]) == ["atapi", "intelide"]
    assert boot_storage_drivers([]) == []


def test_real_windows_10_laptop_boots_through_its_raid_driver(real_hives) -> None:
    """The physical laptop's hive: one controller, the Intel Mobile Express Chipset SATA
    RAID controller (8086:282A), on iaStorAV, boot start."""
    hive = Hive(real_hives["regipy-win10-1709-x64-SYSTEM_B"])
    (ctl,) = storage_controllers(hive, CS)
    assert ctl.hardware_id.startswith("PCI\\VEN_8086&DEV_282A")
    assert ctl.description == "Intel(R) Mobile Express Chipset SATA RAID Controller"
    assert (ctl.service, ctl.start, ctl.class_guid) == ("iaStorAV", 0, SCSI_ADAPTER)
    assert boot_storage_drivers([ctl]) == ["iaStorAV"]
