"""check/hygiene.py: volume state — hibernation, BitLocker, dynamic disks, NTFS that
cannot be read — from the host-read partition table and the guest's files.

The appliance handle is a real libguestfs handle that was never launched: each call it
gets fails as a failing appliance call does (so $Volume and free space are unknown
here; the dirty flag itself is read by formats/ntfs_volume.py, tested on mkntfs)."""

from __future__ import annotations

from pathlib import Path

import guestfs
import pytest

from fixtures.hivebuild import build_hive
from p2vimage.check.guest import CheckView
from p2vimage.check.hygiene import LDM_MBR_TYPE, check_hygiene, part_entry
from p2vimage.check.report import ERROR, WARNING
from p2vimage.formats.partition_table import DiskLayout, PartitionSpan
from p2vimage.guest.registry import Hive
from tests.check.files_view import files_view

NTFS = b"\xebR\x90NTFS    " + bytes(499) + b"\x55\xaa"
BITLOCKER = b"\xebX\x90-FVE-FS-" + bytes(499) + b"\x55\xaa"
FAT = b"\xebX\x90MSDOS5.0" + bytes(499) + b"\x55\xaa"
LDM_GPT = "AF9B60A0-1431-4F62-BC68-3311714A69AD"  # LDM data partition


def _found(res) -> list[tuple[str, str]]:
    return [(f.id, f.severity) for f in res.findings]


@pytest.fixture
def hive(tmp_path: Path) -> Hive:
    return Hive(build_hive(tmp_path / "SYSTEM", {"ControlSet001": {}}))


@pytest.fixture
def g() -> guestfs.GuestFS:
    return guestfs.GuestFS(python_return_dict=True)


def _layout(*parts: PartitionSpan, kind: str = "mbr") -> DiskLayout:
    return DiskLayout("/dev/sda", 1 << 30, parts, kind)


def _part(n: int, boot: bytes = b"", **kw) -> PartitionSpan:
    return PartitionSpan(f"/dev/sda{n}", n << 20, (n + 1) << 20, None, number=n,
                         boot_sector=boot, **kw)


def test_skipped_without_a_disk(hive: Hive) -> None:
    view = CheckView(hive, None, ["ControlSet001"], "/WINDOWS")
    assert check_hygiene(view, None).skipped == "no disk: only hives were given"


def test_bitlocker_is_an_error_on_the_system_volume_only(hive: Hive, g) -> None:
    view = CheckView(hive, None, ["ControlSet001"], "/WINDOWS", g=g, layout=_layout(
        _part(1, BITLOCKER, mbr_type=7), _part(2, BITLOCKER, mbr_type=7)))
    res = check_hygiene(view, "/dev/sda1")
    assert _found(res) == [("hygiene.bitlocker", ERROR), ("hygiene.bitlocker", WARNING)]
    assert res.findings[0].evidence == ["/dev/sda1: boot sector OEM id -FVE-FS-"]


def test_dynamic_disks_by_mbr_type_or_gpt_guid(hive: Hive, g) -> None:
    view = CheckView(hive, None, ["ControlSet001"], "/WINDOWS", g=g, layout=_layout(
        _part(1, FAT, mbr_type=LDM_MBR_TYPE), _part(2, FAT, type_guid=LDM_GPT),
        _part(3, FAT, mbr_type=0x0C)))
    res = check_hygiene(view, "/dev/sda3")
    assert _found(res) == [("hygiene.dynamic-disk", WARNING)] * 2
    assert [f.evidence for f in res.findings] == [["/dev/sda1: partition type LDM"],
                                                  ["/dev/sda2: partition type LDM"]]


def test_unreadable_ntfs_metadata_is_a_warning(hive: Hive, g) -> None:
    """An NTFS boot sector whose $Volume cannot be read; the extended container and a
    partition whose first sector the appliance cannot read are passed over."""
    view = CheckView(hive, None, ["ControlSet001"], "/WINDOWS", g=g, layout=_layout(
        _part(1, NTFS, mbr_type=7), _part(2, container=True, mbr_type=5), _part(5)))
    res = check_hygiene(view, "/dev/sda1")
    assert _found(res) == [("hygiene.ntfs-unreadable", WARNING)]
    assert res.findings[0].message.startswith("/dev/sda1: cannot read $Volume: ")


def test_hibernated_windows(hive: Hive, g) -> None:
    for header, found in ((b"hibr", [("hygiene.hibernated", ERROR)]), (b"HIBR", [
            ("hygiene.hibernated", ERROR)]), (b"wake", []), (bytes(4), [])):
        view = files_view(hive, ["ControlSet001"], {"/hiberfil.sys": header + bytes(4092)},
                          g=g, layout=_layout())
        assert _found(check_hygiene(view, "/dev/sda1")) == found
    view = files_view(hive, ["ControlSet001"], {}, g=g, layout=_layout())  # no hiberfil.sys
    res = check_hygiene(view, "/dev/sda1")
    assert res.findings == [] and res.status == "passed"


def test_part_entry_when_blkid_fails(g) -> None:
    assert part_entry(g, "/dev/sda1") == {}
