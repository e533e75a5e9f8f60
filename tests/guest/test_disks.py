"""guest/disks.py: the appliance's disk names and the partition tables read on the host
(real tables written by sfdisk; a qcow2 read through a private qemu-nbd)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from p2vimage.errors import ConversionError
from p2vimage.guest.disks import DiskInfo, device_name, disk_index, disk_of, read_disk

# two primaries (the first active, NTFS type) and an extended one holding a logical
TABLE = ("label: dos\nlabel-id: 0x4cbc4cbc\n"
         "start=2048, size=4096, type=7, bootable\n"
         "start=6144, size=2048, type=c\n"
         "start=8192, size=4096, type=5\n"
         "start=10240, size=2048, type=7\n")


def _disk(path: Path, size: int = 8 << 20, table: str = TABLE) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(path)],
                   input=table, text=True, check=True, capture_output=True)
    return path


def test_disk_names_follow_linux() -> None:
    assert [device_name(i) for i in (0, 1, 25, 26, 27, 701, 702)] == [
        "/dev/sda", "/dev/sdb", "/dev/sdz", "/dev/sdaa", "/dev/sdab", "/dev/sdzz", "/dev/sdaaa"]
    for i in range(800):
        assert disk_index(device_name(i)) == i
    assert disk_of("/dev/sdab12") == "/dev/sdab"
    assert disk_of("/dev/sda") is None and disk_of("/dev/mapper/ldm_vol_x") is None
    assert disk_index("/dev/vda") is None


def test_raw_disk_read_on_the_host(tmp_path: Path) -> None:
    info = read_disk(_disk(tmp_path / "d.img"), "raw", 1, tmp_path)
    assert (info.device, info.size, info.problem) == ("/dev/sdb", 8 << 20, None)
    lay = info.layout
    assert lay.kind == "mbr" and lay.mbr_signature == 0x4CBC4CBC
    got = [(p.name, p.start // 512, p.end // 512, p.mbr_type, p.active, p.container)
           for p in lay.partitions]
    assert got == [("/dev/sdb1", 2048, 6144, 7, True, False),
                   ("/dev/sdb2", 6144, 8192, 0xC, False, False),
                   ("/dev/sdb3", 8192, 12288, 5, False, True),
                   ("/dev/sdb5", 10240, 12288, 7, False, False)]
    assert info.partition("/dev/sdb5").number == 5
    assert info.partition("/dev/sda1") is None


def test_unreadable_table_leaves_the_layout_to_the_appliance(tmp_path: Path) -> None:
    """A partition past the end of the disk: no layout, the reason kept."""
    disk = _disk(tmp_path / "d.img")
    with open(disk, "r+b") as f:
        f.truncate(4 << 20)  # cuts the second half of the table away
    info = read_disk(disk, "raw", 0, tmp_path)
    assert info.layout is None and info.size == 4 << 20
    assert "past the end of the disk" in info.problem
    assert info.partition("/dev/sda1") is None
    # no MBR signature at all: a disk with no partitions (copied as one region)
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))
    info = read_disk(blank, "raw", 0, tmp_path)
    assert info.layout is not None and info.layout.partitions == () and info.problem is None


def test_missing_raw_file_is_a_conversion_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="cannot read .*missing.img"):
        read_disk(tmp_path / "missing.img", "raw", 0, tmp_path)


def test_qcow2_is_read_through_nbd_like_the_raw_file(tmp_path: Path) -> None:
    raw = _disk(tmp_path / "d.img")
    q = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(q)],
                   check=True)
    via_nbd = read_disk(q, "qcow2", 0, tmp_path)
    direct = read_disk(raw, "raw", 0, tmp_path)
    assert via_nbd == direct
    assert [p.boot_sector for p in via_nbd.layout.partitions] == [
        p.boot_sector for p in direct.layout.partitions]
    assert isinstance(via_nbd, DiskInfo) and via_nbd.size == 8 << 20
