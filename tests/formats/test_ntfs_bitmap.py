"""formats/ntfs_bitmap.py on real NTFS volumes (mkntfs, ntfs-3g's ntfscp), on the host.

The oracle is ntfsclone: its ``--save-image`` stream holds exactly the clusters it
finds in use (it walks the MFT and checks the bitmap), read back with our own
ntfsclone reader.  Damaged bitmaps are made by editing the real volume's records.
"""

from __future__ import annotations

import io
import os
import random
import struct
import subprocess
from pathlib import Path

import pytest

from p2vimage.formats import ntfs_bitmap, ntfsclone
from p2vimage.formats.ntfs_volume import NtfsError, parse_boot

MiB = 1 << 20


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def make_volume(path: Path, mib: int, cluster: int, files: dict[str, int]) -> Path:
    """A real NTFS volume file with ``files`` (name -> bytes of random data)."""
    with open(path, "wb") as f:
        f.truncate(mib * MiB)
    _run("mkntfs", "-F", "-Q", "-q", "-c", str(cluster), str(path))
    rnd = random.Random(mib * 7 + cluster)
    for name, size in files.items():
        local = path.with_name(name)
        local.write_bytes(rnd.randbytes(size))
        _run("ntfscp", "-f", "-q", str(path), str(local), name)
        local.unlink()
    return path


def ntfsclone_runs(vol: Path) -> list[tuple[int, int]]:
    f = io.BytesIO(_run("ntfsclone", "--save-image", "-o", "-", str(vol)).stdout)
    hdr = ntfsclone.read_header(f)
    runs: list[tuple[int, int]] = []
    for off, chunk in ntfsclone.iter_runs(f, hdr):
        n = len(chunk)
        if off >= (hdr.nr_clusters * hdr.cluster_size):
            continue  # the backup boot sector's cluster, past the counted clusters
        if runs and runs[-1][0] + runs[-1][1] == off:
            runs[-1] = (runs[-1][0], runs[-1][1] + n)
        else:
            runs.append((off, n))
    return runs


def reader(vol: Path):
    fd = os.open(vol, os.O_RDONLY)

    def read(off: int, n: int) -> bytes:
        return os.pread(fd, n, off)

    return read, fd


@pytest.mark.parametrize("mib,cluster", [(64, 4096), (96, 512), (200, 65536)])
def test_used_clusters_equal_ntfsclone(tmp_path: Path, mib: int, cluster: int) -> None:
    vol = make_volume(tmp_path / "v.ntfs", mib, cluster,
                      {"a.bin": 3 * MiB + 123, "b.bin": 700_000, "c.bin": 5 * MiB})
    read, fd = reader(vol)
    try:
        used = ntfs_bitmap.used_clusters(read, vol.stat().st_size)
    finally:
        os.close(fd)
    assert used.cluster_size == cluster
    assert list(used.runs) == ntfsclone_runs(vol)
    assert used.used_bytes > 9 * MiB  # the files' data is among the used clusters
    assert used.volume_bytes <= vol.stat().st_size - 512  # the backup boot sector after


def test_bits_to_runs_matches_a_bit_by_bit_walk() -> None:
    rnd = random.Random(5)
    for _ in range(200):
        n = rnd.randrange(1, 400)
        bitmap = bytes(rnd.choice([0, 0xFF, rnd.randrange(256)]) for _ in range((n + 7) // 8 + 2))
        expect: list[tuple[int, int]] = []
        for i in range(n):
            if bitmap[i // 8] >> (i % 8) & 1:
                if expect and sum(expect[-1]) == i:
                    expect[-1] = (expect[-1][0], expect[-1][1] + 1)
                else:
                    expect.append((i, 1))
        assert ntfs_bitmap.bits_to_runs(bitmap, n) == expect


def test_decode_runlist_relative_offsets() -> None:
    # 0x21: 1-byte length, 2-byte offset; the second offset is negative (-0x10)
    data = bytes([0x21, 0x08, 0x00, 0x01, 0x21, 0x04, 0xF0, 0xFF, 0x00])
    assert ntfs_bitmap.decode_runlist(data, 0) == [(0x100, 8), (0xF0, 4)]
    with pytest.raises(NtfsError, match="end marker"):
        ntfs_bitmap.decode_runlist(data[:-1], 0)
    with pytest.raises(NtfsError, match="sparse"):
        ntfs_bitmap.decode_runlist(bytes([0x01, 0x08, 0x00]), 0)


def _patch_record(vol: Path, record: int, edit) -> None:
    """Edit MFT record ``record`` of a real volume (fix-up positions left alone)."""
    with open(vol, "r+b") as f:
        boot = parse_boot(f.read(512))
        at = boot.record_offset(record)
        f.seek(at)
        data = bytearray(f.read(boot.record_size))
        edit(data)
        f.seek(at)
        f.write(data)


def _attr(data: bytearray, atype: int) -> int:
    off = struct.unpack_from("<H", data, 0x14)[0]
    while True:
        t, length = struct.unpack_from("<II", data, off)
        if t == atype:
            return off
        off += length


@pytest.fixture(scope="module")
def clean_volume(tmp_path_factory) -> Path:
    return make_volume(tmp_path_factory.mktemp("ntfs") / "v.ntfs", 48, 4096,
                       {"x.bin": 2 * MiB})


def _copy(vol: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy.ntfs"
    _run("cp", "--sparse=always", str(vol), str(out))
    return out


def _dirty(data: bytearray) -> None:
    from p2vimage.formats.ntfs_volume import volume_flags

    flags, at = volume_flags(bytes(data))
    struct.pack_into("<H", data, at, flags | 1)


def _shorten(data: bytearray) -> None:
    off = _attr(data, 0x80)
    struct.pack_into("<q", data, off + 0x30, 16)  # data size: 128 clusters


def _move_past_the_end(data: bytearray) -> None:
    off = _attr(data, 0x80)
    runs = off + struct.unpack_from("<H", data, off + 0x20)[0]
    head = data[runs]
    nlen, noff = head & 0xF, head >> 4
    data[runs + 1 + nlen : runs + 1 + nlen + noff] = (
        (1 << (8 * noff - 1)) - 1).to_bytes(noff, "little")


@pytest.mark.parametrize("record,edit,message", [
    (3, _dirty, "dirty"),                      # $Volume's dirty flag set
    (6, _shorten, "too short"),                # $Bitmap's data size below the clusters
    (6, _move_past_the_end, "past the end"),   # its first run moved off the volume
])
def test_damaged_volume_is_not_trusted(clean_volume: Path, tmp_path: Path, record: int,
                                       edit, message: str) -> None:
    vol = _copy(clean_volume, tmp_path)
    _patch_record(vol, record, edit)
    read, fd = reader(vol)
    try:
        with pytest.raises(NtfsError, match=message):
            ntfs_bitmap.used_clusters(read, vol.stat().st_size)
    finally:
        os.close(fd)


def test_volume_larger_than_partition_is_not_trusted(clean_volume: Path) -> None:
    read, fd = reader(clean_volume)
    try:
        with pytest.raises(NtfsError, match="larger than its partition"):
            ntfs_bitmap.used_clusters(read, clean_volume.stat().st_size // 2)
        with pytest.raises(NtfsError, match="boot sector"):
            ntfs_bitmap.used_clusters(lambda off, n: bytes(n), 1 << 30)
    finally:
        os.close(fd)
