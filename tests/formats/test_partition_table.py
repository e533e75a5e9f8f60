"""formats/partition_table.py against sfdisk and blkid on every fixture image.

The host-side copy reads each disk's partitions itself (the appliance's parted and blkid
cost seconds under TCG); sfdisk --json (util-linux) and blkid on a loop device of each
partition are the independent oracle.  MBR with logical partitions and GPT are covered by
the fixture profiles and a table written by sfdisk here; damaged tables raise.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from p2vimage.formats.partition_table import PartitionTableError, read_layout

MiB = 1 << 20


def reader(path: Path):
    fd = os.open(path, os.O_RDONLY)
    return (lambda off, n: os.pread(fd, n, off)), fd


def sfdisk_view(path: Path) -> list[tuple[int, int, bool]]:
    """(start, end, is NTFS) per partition, extended containers included."""
    doc = json.loads(subprocess.run(["sfdisk", "--json", str(path)], check=True,
                                    capture_output=True).stdout)["partitiontable"]
    out = []
    for p in doc["partitions"]:
        start, size = p["start"] * 512, p["size"] * 512
        with open(path, "rb") as f:
            f.seek(start)
            head = f.read(512)
        kind = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", "-O", str(start),
                               str(path)], capture_output=True, text=True).stdout.strip()
        assert (kind == "ntfs") == (head[3:11] == b"NTFS    ")
        out.append((start, start + size, kind == "ntfs"))
    return sorted(out)


@pytest.mark.parametrize("name", ["win2003-x86", "win2019-x64", "win7-x64",
                                  "win2003-x86-2disk-disk2", "linux", "win2000-x86"])
def test_layout_equals_sfdisk(images, name: str) -> None:
    path = images[name]
    read, fd = reader(path)
    try:
        layout = read_layout(read, path.stat().st_size)
    finally:
        os.close(fd)
    got = sorted((p.start, p.end, p.fs == "ntfs") for p in layout.partitions)
    assert got == sfdisk_view(path)
    assert layout.size == path.stat().st_size


def test_logical_partitions_and_empty_disks(tmp_path: Path) -> None:
    disk = tmp_path / "d.raw"
    with open(disk, "wb") as f:
        f.truncate(64 * MiB)
    subprocess.run(["sfdisk", "-q", str(disk)], check=True, capture_output=True,
                   input=b"label: dos\n2048,20480,7\n,,5\n,8192,7\n,8192,b\n,,83\n")
    read, fd = reader(disk)
    try:
        layout = read_layout(read, disk.stat().st_size)
        spans = [(p.name, p.start // 512, p.end // 512, p.container) for p in layout.partitions]
        doc = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True,
                                        capture_output=True).stdout)["partitiontable"]
        want = sorted((p["node"].replace(str(disk), "/dev/sda"), p["start"],
                       p["start"] + p["size"], p["type"] == "5") for p in doc["partitions"])
        assert sorted(spans) == want
        assert [s[0] for s in spans if not s[3]][-3:] == ["/dev/sda5", "/dev/sda6", "/dev/sda7"]
        assert read_layout(lambda off, n: bytes(n), 64 * MiB).partitions == ()  # no table
    finally:
        os.close(fd)
    # the second EBR's "next" entry pointing at itself: a loop, found, not a hang
    with open(disk, "r+b") as f:
        f.seek(446 + 16)
        ext_lba = struct.unpack("<B3xB3xII", f.read(16))[2]
        f.seek(ext_lba * 512 + 462)
        nrel = struct.unpack("<B3xB3xII", f.read(16))[2]
        f.seek((ext_lba + nrel) * 512 + 462)
        f.write(struct.pack("<B3xB3xII", 0, 5, nrel, 8192))
    read, fd = reader(disk)
    try:
        with pytest.raises(PartitionTableError, match="loops"):
            read_layout(read, disk.stat().st_size)
    finally:
        os.close(fd)


def test_partition_past_the_end_and_bad_gpt_crc(images) -> None:
    path = images["win2019-x64"]
    with open(path, "rb") as f:
        data = bytearray(f.read(34 * 512))
    size = path.stat().st_size

    def read(off: int, n: int) -> bytes:
        if off + n <= len(data):
            return bytes(data[off : off + n])
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(n)

    assert read_layout(read, size).partitions
    with pytest.raises(PartitionTableError, match="past the end"):
        read_layout(read, 64 * MiB)
    data[512 + 40] ^= 0xFF  # the header's first usable sector: its CRC no longer holds
    with pytest.raises(PartitionTableError, match="CRC"):
        read_layout(read, size)
