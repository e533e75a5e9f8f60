"""Drive letters from ``MountedDevices`` matched to host-read partition tables (what
``inspect_os`` did in the appliance)."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from fixtures.hivebuild import binary, build_hive, sz
from p2vimage.formats.partition_table import DiskLayout, PartitionSpan
from p2vimage.guest.registry import Hive
from p2vimage.guest.windows_root import drive_letters

GUID = "6A1C2E53-0F3B-4B7D-9C55-1E0F7A9B3C21"


def _layouts() -> list[DiskLayout | None]:
    mbr = DiskLayout("/dev/sda", 1 << 30, (
        PartitionSpan("/dev/sda1", 63 * 512, 1 << 29, "ntfs", number=1, mbr_type=7),
        PartitionSpan("/dev/sda2", 1 << 29, 1 << 30, None, container=True, number=2),
        PartitionSpan("/dev/sda5", (1 << 29) + 63 * 512, 1 << 30, "ntfs", number=5),
    ), "mbr", 0x4CBC4CBC)
    gpt = DiskLayout("/dev/sdb", 1 << 30, (
        PartitionSpan("/dev/sdb1", 1 << 20, 1 << 29, "ntfs", number=1,
                      type_guid="EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", unique_guid=GUID),
    ), "gpt")
    return [mbr, None, gpt]  # the middle disk's table could not be read


def test_mbr_and_gpt_volumes_get_their_letters(tmp_path: Path) -> None:
    hive = build_hive(tmp_path / "SYSTEM", {
        "MountedDevices": {
            "\\DosDevices\\C:": binary(struct.pack("<IQ", 0x4CBC4CBC, 63 * 512)),
            "\\DosDevices\\D:": binary(struct.pack("<IQ", 0x4CBC4CBC, (1 << 29) + 63 * 512)),
            "\\DosDevices\\E:": binary(b"DMIO:ID:" + uuid.UUID(GUID).bytes_le),
            # another machine's disk, a CD-ROM (a device path), a volume GUID name
            "\\DosDevices\\F:": binary(struct.pack("<IQ", 0x12345678, 63 * 512)),
            "\\DosDevices\\G:": binary("\\??\\IDE#CdRomQEMU".encode("utf-16-le")),
            "\\??\\Volume{6a1c2e53-0f3b-4b7d-9c55-1e0f7a9b3c21}": binary(
                struct.pack("<IQ", 0x4CBC4CBC, 63 * 512)),
        },
        "Select": {"Current": sz("1")},
    })
    letters = drive_letters(Hive(hive, name="SYSTEM"), _layouts())
    assert letters == {"C": "/dev/sda1", "D": "/dev/sda5", "E": "/dev/sdb1"}


def test_no_mounted_devices_key(tmp_path: Path) -> None:
    hive = build_hive(tmp_path / "SYSTEM", {"Select": {"Current": sz("1")}})
    assert drive_letters(Hive(hive, name="SYSTEM"), _layouts()) == {}


