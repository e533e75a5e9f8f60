"""check/devices.py: the devices QEMU presents for a bus and the IDs Windows matches them by."""

from __future__ import annotations

import re

import pytest

from p2vimage.check import devices
from tests.conftest import REALDATA


def test_pci_ids_in_windows_order() -> None:
    ids = devices.pci_ids("8086", "7010", "11001AF4", "00", "010180")
    assert ids == (
        "PCI\\VEN_8086&DEV_7010&SUBSYS_11001AF4&REV_00", "PCI\\VEN_8086&DEV_7010&SUBSYS_11001AF4",
        "PCI\\VEN_8086&DEV_7010&REV_00", "PCI\\VEN_8086&DEV_7010",
        "PCI\\VEN_8086&DEV_7010&CC_010180", "PCI\\VEN_8086&DEV_7010&CC_0101",
        "PCI\\VEN_8086&CC_010180", "PCI\\VEN_8086&CC_0101", "PCI\\VEN_8086",
        "PCI\\CC_010180", "PCI\\CC_0101",
    )


def test_ide_chain_on_i440fx() -> None:
    ctl, channel, disk = devices.boot_chain("ide", "pc", False)
    assert [d.role for d in (ctl, channel, disk)] == ["controller", "channel", "disk"]
    assert ctl.ids == devices.pci_ids("8086", "7010", "11001AF4", "00", "010180")
    assert ctl.base_id == "PCI\\VEN_8086&DEV_7010"  # what Mergeide's CDDB key names
    # the channel and disk have no PCI IDs: their first ID is their base
    assert channel.ids[:2] == ("Intel-PIIX3", "Primary_IDE_Channel")
    assert channel.base_id == "Intel-PIIX3"
    assert disk.ids == ("GenDisk",) and disk.base_id == "GenDisk"
    # the machine and the virtio flag do not change the emulated controllers
    assert devices.boot_chain("ide", "q35", True) == [ctl, channel, disk]


def test_sata_chain_is_ich9_ahci() -> None:
    ctl, disk = devices.boot_chain("sata", "q35", True)
    assert ctl.ids[0] == "PCI\\VEN_8086&DEV_2922&SUBSYS_11001AF4&REV_02"
    assert "PCI\\CC_010601" in ctl.ids and ctl.other_ids == ()
    assert disk == devices.DISK


def test_virtio_devices_transitional_and_modern() -> None:
    legacy = devices.boot_chain("virtio-blk", "pc", False)[0]
    modern = devices.boot_chain("virtio-blk", "q35", True)[0]
    assert legacy.ids[0] == "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00"
    assert modern.ids[0] == "PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01"
    # each names the other form, without class-code IDs (any disk controller has those)
    assert legacy.other_ids == modern.ids[:4] and modern.other_ids == legacy.ids[:4]
    assert "transitional" in legacy.description and "modern" in modern.description
    scsi = devices.boot_chain("virtio-scsi", "pc", False)[0]
    assert scsi.ids[0] == "PCI\\VEN_1AF4&DEV_1004&SUBSYS_00081AF4&REV_00"
    net = devices.nic_device("virtio", True)
    assert net.role == "nic" and net.ids[0] == "PCI\\VEN_1AF4&DEV_1041&SUBSYS_11001AF4&REV_01"


def test_ids_are_the_ones_the_real_virtio_inf_files_list() -> None:
    """The most specific ID of each virtio device is the one virtio-win's own Win7 INFs
    (and the KB-documented devcon examples in them) name: an independent oracle."""
    inf = REALDATA / "virtio-win" / "inf"

    def listed(name: str) -> set[str]:
        text = (inf / name).read_text(errors="replace").upper()
        return set(re.findall(r"PCI\\VEN_1AF4&DEV_[0-9A-F]{4}&SUBSYS_[0-9A-F]{8}&REV_[0-9A-F]{2}",
                              text))

    for modern in (False, True):
        assert devices.boot_chain("virtio-blk", "pc", modern)[0].ids[0] in listed(
            "Win7_x86_viostor.inf")
        assert devices.boot_chain("virtio-scsi", "pc", modern)[0].ids[0] in listed(
            "Win7_x86_vioscsi.inf")
        assert devices.nic_device("virtio", modern).ids[0] in listed("Win7_x86_netkvm.inf")


def test_emulated_nics_and_unknown_names() -> None:
    e1000 = devices.nic_device("e1000", False)
    assert e1000.ids[0] == "PCI\\VEN_8086&DEV_100E&SUBSYS_11001AF4&REV_03"
    assert e1000.base_id == "PCI\\VEN_8086&DEV_100E"
    rtl = devices.nic_device("rtl8139", True)  # no virtio flavours: the flag is moot
    assert rtl.base_id == "PCI\\VEN_10EC&DEV_8139" and rtl.other_ids == ()
    with pytest.raises(ValueError):
        devices.boot_chain("floppy", "pc", False)
    with pytest.raises(ValueError):
        devices.nic_device("ne2k_pci", False)
