"""check/devices.py: the devices QEMU presents for a bus and the IDs Windows matches them by."""

from __future__ import annotations

from p2vimage.check import devices


def test_pci_ids_in_windows_order() -> None:
    ids = devices.pci_ids("8086", "7010", "11001AF4", "00", "010180")
    assert ids == (
        "PCI\\VEN_8086&DEV_7010&SUBSYS_11001AF4&REV_00", "PCI\\VEN_8086&DEV_7010&SUBSYS_11001AF4",
        "PCI\\VEN_8086&DEV_7010&REV_00", "PCI\\VEN_8086&DEV_7010",
        "PCI\\VEN_8086&DEV_7010&CC_010180", "PCI\\VEN_8086&DEV_7010&CC_0101",
        "PCI\\VEN_8086&CC_010180", "PCI\\VEN_8086&CC_0101", "PCI\\VEN_8086",
        "PCI\\CC_010180", "PCI\\CC_0101",
    )
