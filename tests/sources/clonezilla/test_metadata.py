"""Clonezilla directory metadata and the MBR/EBR writer, on real sfdisk/parted output.

The dumps in ../shared/realdata/clonezilla/rescuezilla-test-samples/ were made by
sfdisk/parted on real Windows disks; the EBR chain is checked against what
sfdisk itself writes for the same table on a regular file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from p2vimage.errors import BadInputError, UnsupportedFormatError, UsageError
from p2vimage.sources.clonezilla import metadata, table
from tests.conftest import REALDATA

SAMPLES = REALDATA / "clonezilla" / "rescuezilla-test-samples"


def _dir(tmp: Path, sf: str, parted: str = "", files: tuple[str, ...] = ()) -> Path:
    d = tmp / "img"
    d.mkdir()
    (d / "disk").write_text("sda\n")
    (d / "parts").write_text(" ".join(sorted({f.split(".")[0] for f in files})) + "\n")
    (d / "sda-pt.sf").write_text(sf)
    if parted:
        (d / "sda-pt.parted").write_text(parted)
    for f in files:
        (d / f).write_bytes(b"x")
    return d


def test_real_windows_dumps() -> None:
    label_id, parts = metadata.parse_sfdisk(
        (SAMPLES / "sdh-windows-plus-linux-mbr-extended.sfdisk-dump.txt").read_text(), "sdh")
    assert label_id == 0xD9BC7D71
    assert [(p.name, p.start, p.size, p.type, p.bootable) for p in parts] == [
        ("sdh1", 2048, 1185792, 0x07, True),
        ("sdh2", 1187840, 2144531053, 0x07, False),
        ("sdh3", 2145720320, 1048576, 0x0B, False),
        ("sdh4", 2146770942, 2148192258, 0x05, False),
        ("sdh5", 2146770944, 2148192256, 0x83, False),
    ]
    assert parts[3].extended and not parts[4].extended
    # GPT (issue #9): type GUIDs, no MBR disk signature
    text = (SAMPLES / "sdf-win10-uefi-gpt.sfdisk-dump.txt").read_text()
    label_id, parts = metadata.parse_sfdisk(text, "sdf")
    assert label_id is None and metadata.sfdisk_label(text) == ("gpt", 512)
    assert [(p.name, p.start, p.size, p.type_guid[:8]) for p in parts] == [
        ("sdf1", 2048, 204800, "C12A7328"), ("sdf2", 206848, 32768, "E3C9E316"),
        ("sdf3", 239616, 103593927, "EBD0A0A2"), ("sdf4", 103833600, 1019904, "DE94BBA4")]
    assert not any(p.extended for p in parts)
    # 4K-sector GPT (written in Python, see test_gpt.py): counts in 4096-byte sectors
    _, parts = metadata.parse_sfdisk(text.replace("sector-size: 512", "sector-size: 4096"), "sdf")
    assert (parts[2].start, parts[2].offset) == (239616, 239616 * 4096)


def test_old_sfdisk_format_and_empty_slots() -> None:
    old = ("# partition table of /dev/sda\nunit: sectors\n\n"
           "/dev/sda1 : start=       63, size= 2097089, Id= 7, bootable\n"
           "/dev/sda2 : start=        0, size=       0, Id= 0\n"
           "/dev/sda3 : start=        0, size=       0, Id= 0\n"
           "/dev/sda4 : start=        0, size=       0, Id= 0\n")
    label_id, parts = metadata.parse_sfdisk(old, "sda")
    assert label_id is None
    assert [(p.name, p.start, p.size, p.type, p.bootable) for p in parts] == [
        ("sda1", 63, 2097089, 7, True)]


def test_disk_size_from_parted_and_layout_errors(tmp_path: Path) -> None:
    sf = (SAMPLES / "sdg-windows-bios-mbr.sfdisk-dump.txt").read_text().replace("/dev/sdg",
                                                                                "/dev/sda")
    parted = (SAMPLES / "sdg-windows-bios-mbr.parted-unit-B.txt").read_text().replace(
        "/dev/sdg", "/dev/sda")
    names = ("sda1.ntfs-ptcl-img.gz.aa", "sda1.ntfs-ptcl-img.gz.ab",
             "sda2.ntfs-ptcl-img.zst")
    d = _dir(tmp_path, sf, parted, names)
    img = metadata.load(d)
    assert img.size == 2199022206976
    assert img.images["sda1"].files == (d / names[0], d / names[1])
    assert img.images["sda2"].compression == "zst"
    (d / "sda1.ntfs-ptcl-img.gz.ad").write_bytes(b"x")
    with pytest.raises(BadInputError, match=r"sda1: chunk sda1\.ntfs-ptcl-img\.gz\.ac is missing"):
        metadata.load(d)
    os.unlink(d / "sda1.ntfs-ptcl-img.gz.ad")
    (d / "sda2.ntfs-ptcl-img.zst.aa").write_bytes(b"x")
    with pytest.raises(BadInputError, match="sda2: both"):
        metadata.load(d)
    os.unlink(d / "sda2.ntfs-ptcl-img.zst.aa")
    (d / "sda3.ntfs-ptcl-img.gz").write_bytes(b"x")
    with pytest.raises(BadInputError, match="sda3: image files exist but sda-pt.sf has no sda3"):
        metadata.load(d)
    os.unlink(d / "sda3.ntfs-ptcl-img.gz")
    # older names: the compression is in the data (sniffed), or in the name
    (d / "sda2.ntfs-ptcl-img.zst").rename(d / "sda2.ntfs-img.aa")
    (d / "sda2.ntfs-img.aa").write_bytes(b"\x1f\x8b\x08rest of a gzip member")
    (d / "sda2.ntfs-img.ab").write_bytes(b"x")
    sda2 = metadata.load(d).images["sda2"]
    assert (sda2.kind, sda2.compression, len(sda2.files)) == ("ntfsclone", "gz", 2)
    (d / "sda2.ntfs-img.aa").write_bytes(b"LRZI0\x06")
    with pytest.raises(UnsupportedFormatError, match="sda2: sda2.ntfs-img is compressed with lrz"):
        metadata.load(d)
    for f in d.glob("sda2.*"):
        f.unlink()
    for name, want in (("sda2.dd-img.xz", ("raw", "xz")),
                       ("sda2.dd-ptcl-img.lzo.aa", ("raw", "lzo")),
                       ("sda2.ntfs-img.lz4", ("ntfsclone", "lz4")),
                       ("sda2.dd-img", ("raw", "uncomp")),
                       ("sda2.hfsp-img.aa", ("partclone", "uncomp"))):
        (d / name).write_bytes(b"x")
        sda2 = metadata.load(d).images["sda2"]
        assert (sda2.kind, sda2.compression) == want, name
        (d / name).unlink()
    (d / "sda2.dd-img.lrz").write_bytes(b"x")
    with pytest.raises(UnsupportedFormatError, match=r"sda2: .*suffix '\.lrz'"):
        metadata.load(d)
    with pytest.raises(UsageError, match="--disk sdb"):
        metadata.load(d, "sdb")
    shutil.rmtree(d)
    assert not metadata.looks_like_clonezilla(d)


def test_chs_encoding() -> None:
    assert table.chs(0, 255, 63) == bytes((0, 1, 0))
    assert table.chs(2164736, 255, 63) == bytes.fromhex("be3986")  # checked against sfdisk
    assert table.chs(1 << 32 - 1, 255, 63) == bytes.fromhex("feffff")  # clamped


def test_ebr_chain_equals_sfdisk(tmp_path: Path) -> None:
    """Our chain, from the dump alone, is the one sfdisk writes for the same table."""
    sf = ("label: dos\nlabel-id: 0x1234abcd\nunit: sectors\n\n"
          "/dev/sda1 : start=2048, size=100000, type=7, bootable\n"
          "/dev/sda2 : start=110000, size=400000, type=5\n"
          "/dev/sda5 : start=112048, size=50000, type=7\n"
          "/dev/sda6 : start=164096, size=50000, type=b\n"
          "/dev/sda7 : start=216144, size=50000, type=7\n")
    ref = tmp_path / "ref.raw"
    with open(ref, "wb") as f:
        f.truncate(600000 * 512)
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(ref)],
                   input=sf.encode(), check=True, capture_output=True)
    d = _dir(tmp_path, sf, "Disk /dev/sda: 600000s\n")
    with open(ref, "rb") as f:
        (d / "sda-mbr").write_bytes(f.read(512))
        f.seek(110000 * 512)
        (d / "sda2-ebr").write_bytes(f.read(512))
    img = metadata.load(d)
    out = tmp_path / "out.raw"
    fd = os.open(out, os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, img.size)
        table.write_table(fd, img)
    finally:
        os.close(fd)
    assert not [w for w in img.warnings if "differs" in w]  # saved MBR/EBR agree
    assert out.read_bytes() == ref.read_bytes()  # every EBR where sfdisk put it, same CHS


def test_lvm_and_software_raid_are_refused_naming_what_was_found(tmp_path: Path) -> None:
    sf = ("label: dos\nlabel-id: 0x1234abcd\nunit: sectors\n\n"
          "/dev/sda1 : start=2048, size=100000, type=7, bootable\n"
          "/dev/sda2 : start=110000, size=400000, type=8e\n")
    d = _dir(tmp_path, sf, "Disk /dev/sda: 600000s\n", ("sda1.ntfs-ptcl-img.gz",))
    with pytest.raises(UnsupportedFormatError,
                       match=r"sda: LVM and software RAID .* not supported: sda2 is an LVM "
                             r"physical volume \(type 8e\)"):
        metadata.load(d)
    (d / "sda-pt.sf").write_text(sf.replace("type=8e", "type=fd"))
    with pytest.raises(UnsupportedFormatError, match="sda2 is a Linux software RAID member"):
        metadata.load(d)
    (d / "sda-pt.sf").write_text(sf.replace("type=8e", "type=83"))
    metadata.load(d)
    # what ocs-sr writes when it saved logical volumes / md arrays
    (d / "lvm_vg_dev.list").write_text("vg_data /dev/sda2 Xy12-uuid\n")
    with pytest.raises(UnsupportedFormatError, match=r"lvm_vg_dev.list \(LVM: vg_data /dev/sda2"):
        metadata.load(d)
    (d / "lvm_vg_dev.list").unlink()
    (d / "md0-detail.info").write_text("/dev/md0:\n Raid Level : raid1\n")
    with pytest.raises(UnsupportedFormatError, match=r"md0-detail.info \(RAID: /dev/md0:"):
        metadata.load(d)
