"""guest/windows_root.py: drive letters from ``MountedDevices`` matched to host-read
partition tables (what ``inspect_os`` did in the appliance), the product name, and the
appliance probes when the appliance cannot answer (a libguestfs handle that was never
launched: every call raises as a failing appliance call does)."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import guestfs

from fixtures.hivebuild import binary, build_hive, sz
from p2vimage.formats.partition_table import DiskLayout, PartitionSpan
from p2vimage.guest.registry import Hive
from p2vimage.guest.windows_root import (
    CURRENT_VERSION,
    arch_of_cmd,
    drive_letters,
    probe,
    probe_mounted,
    product_name,
)

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


def test_only_real_volumes_of_the_right_shape_get_letters(tmp_path: Path) -> None:
    """A letter needs a ``\\DosDevices\\X:`` name (any case) and a 12-byte MBR value naming
    a volume or a GPT value naming a known partition: not the extended container's own
    start, a value of another length, a name without the colon, an unknown GUID."""
    hive = build_hive(tmp_path / "SYSTEM", {
        "MountedDevices": {
            "\\DosDevices\\c:": binary(struct.pack("<IQ", 0x4CBC4CBC, 63 * 512)),
            "\\DosDevices\\X:": binary(struct.pack("<IQ", 0x4CBC4CBC, 1 << 29)),  # container
            "\\DosDevices\\Y:": binary(struct.pack("<IQ", 0x4CBC4CBC, 63 * 512) + b"\0"),
            "\\DosDevices\\Z": binary(struct.pack("<IQ", 0x4CBC4CBC, 63 * 512)),
            "\\DosDevices\\W:": binary(b"DMIO:ID:" + bytes(16)),  # no such GPT partition
        },
    })
    assert drive_letters(Hive(hive), _layouts()) == {"C": "/dev/sda1"}
    assert drive_letters(Hive(hive), [None]) == {}


def test_product_name(tmp_path: Path) -> None:
    soft = build_hive(tmp_path / "SOFTWARE", {
        CURRENT_VERSION: {"ProductName": sz("Microsoft Windows XP"), "CurrentVersion": sz("5.1")},
    }, hive_name="SOFTWARE")
    assert product_name(Hive(soft)) == "Microsoft Windows XP"
    empty = build_hive(tmp_path / "EMPTY", {"Microsoft": {}}, hive_name="SOFTWARE")
    assert product_name(Hive(empty)) is None


def test_probes_say_none_when_the_appliance_cannot_answer() -> None:
    g = guestfs.GuestFS(python_return_dict=True)
    assert probe(g, "/dev/sda1") is None  # the mount fails: not Windows, no error
    assert probe_mounted(g, "/dev/sda1") is None
    assert arch_of_cmd(g, "/WINDOWS") is None
