"""formats/ntfs_volume.py: the boot sector and $Volume flags, on a real mkntfs volume."""

from __future__ import annotations

import subprocess

import pytest

from p2vimage.formats import ntfs_volume


def test_ntfs_volume_flags_on_real_mkntfs(tmp_path) -> None:
    img = tmp_path / "ntfs.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkntfs", "-q", "-F", "-f", str(img)], check=True, capture_output=True)
    data = bytearray(img.read_bytes())
    boot = ntfs_volume.parse_boot(bytes(data[:512]))
    at = boot.record_offset(ntfs_volume.VOLUME_RECORD)
    flags, off = ntfs_volume.volume_flags(bytes(data[at : at + boot.record_size]))
    assert not flags & ntfs_volume.FLAG_DIRTY
    data[at + off] |= 1
    data[boot.mirror_record_offset(3) + off] |= 1  # Windows keeps $MFTMirr equal
    img.write_bytes(bytes(data))
    # ntfs-3g's own tool reads the flag we set
    info = subprocess.run(["ntfsinfo", "-m", "-f", str(img)], capture_output=True, text=True,
                          check=True)
    assert "Volume Flags: 0x0001" in info.stdout
    record = img.read_bytes()[at : at + boot.record_size]
    assert ntfs_volume.volume_flags(record)[0] & ntfs_volume.FLAG_DIRTY
    with pytest.raises(ntfs_volume.NtfsError):
        ntfs_volume.volume_flags(b"BAAD" + record[4:])
    with pytest.raises(ntfs_volume.NtfsError):
        ntfs_volume.parse_boot(bytes(512))
