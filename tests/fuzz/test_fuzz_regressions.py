"""The inputs fuzzing found that broke a parser, each pinned with the error it must give now.

Every case runs under the fuzz guard (time and address-space cap), because several of the
bugs were allocations sized by a header field rather than exceptions.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from p2vimage.errors import BadInputError, ConversionError, CorruptImageError, UsageError
from p2vimage.restore import restore_clonezilla
from p2vimage.sources.clonezilla import metadata, partclone, streams
from p2vimage.windows.leftovers import read_smbios
from tests.fuzz.harness import guard


def _pc_crc(data: bytes) -> int:
    """partclone's CRC32: zlib's with seed 0xFFFFFFFF and no final XOR."""
    return zlib.crc32(data, 0) ^ 0xFFFFFFFF


@pytest.mark.parametrize("bitmap_mode", [1, 0])
def test_partclone_header_claiming_a_huge_volume_allocates_nothing(bitmap_mode: int) -> None:
    """A 0002 header (valid CRC) claiming 2**40 blocks of 4 KiB made ``read_bitmap`` ask the
    stream for a 128 GiB bitmap in one ``read`` (bit bitmap), or build a 128 GiB all-ones
    bitmap (no-bitmap mode): MemoryError, an internal error at the CLI."""
    total, bs = 1 << 40, 4096
    head = struct.pack("<16s14s4sH16sQQQQIIHHHHIBB", b"partclone-image\0", b"0.3.23",
                       b"0002", 0xC0DE, b"NTFS", total * bs, total, 0, 0, bs, 18, 2, 64,
                       0x20, 4, 256, 1, bitmap_mode)
    data = head + struct.pack("<I", _pc_crc(head)) + bytes(100)
    reader = streams.PieceReader(iter([data]), threaded=False)
    with guard(seconds=20, memory=256 << 20), pytest.raises(CorruptImageError):
        partclone.restore(reader, lambda off, view: None)


def test_partclone_no_bitmap_image_still_restores_every_block() -> None:
    """The no-bitmap mode (every block stored) now reads as one run instead of a bitmap."""
    bs, blocks = 512, [bytes([i]) * 512 for i in range(5)]
    head = struct.pack("<16s14s4sH16sQQQQIIHHHHIBB", b"partclone-image\0", b"0.3.23",
                       b"0002", 0xC0DE, b"NTFS", 5 * bs, 5, 5, 5, bs, 18, 2, 64, 0, 0, 0, 0, 0)
    data = head + struct.pack("<I", _pc_crc(head)) + b"".join(blocks)
    written: dict[int, bytes] = {}
    hdr = partclone.restore(streams.PieceReader(iter([data]), threaded=False),
                            lambda off, view: written.__setitem__(off, bytes(view)))
    assert hdr.used_blocks == 5
    assert b"".join(written[k] for k in sorted(written)) == b"".join(blocks)
    assert partclone.read_bitmap(streams.PieceReader(iter([b""]), threaded=False), hdr) == b""


def test_lzma_header_asking_for_a_2_gib_dictionary(tmp_path: Path) -> None:
    """hypothesis' minimal input: an .lzma chunk whose header (shifted by one byte) asks for
    a 2 GiB dictionary; liblzma allocated it (MemoryError under a cap).  Now a memory
    limit makes it a corrupt-data error."""
    chunk = tmp_path / "sda1.ntfs-ptcl-img.lzma.aa"
    chunk.write_bytes(b"\x00]\x00\x00\x80\x00\xff\xff\xff\xff\xff\xff\xff\xff\x00\x83\xff\xfb"
                      b"\xff\xff\xc0\x00\x00\x00")
    src = streams.ChunkReader([chunk])
    with guard(seconds=20, memory=512 << 20), pytest.raises(CorruptImageError,
                                                             match="corrupt lzma data"):
        list(streams.iter_decompressed(src, "lzma"))


@pytest.mark.parametrize(
    ("dump", "message"),
    [
        # found by hypothesis: a GPT dump whose label line was lost reads as dos
        ("label-id: A9A88DF9-EA91-4E83-8616-0C1BB3BA28BA\n/dev/sda1 : start=2048, size=8\n",
         "not an MBR disk signature"),
        ("label: dos\nsector-size: " + "9" * 5000 + "\n/dev/sda1 : start=2048, size=8\n",
         "sectors are not supported"),
        # found by hypothesis in the second long run: a 5001-digit partition number
        ("label: gpt\n/dev/sda" + "9" * 5001 + " : start=34, size=8, type=x\n",
         "impossible number"),
        ("label: dos\n/dev/sda1 : start=2048, size=5000000000, type=7\n", "impossible in a dos"),
        ("label: dos\n/dev/sda1 : start=2048, size=8, type=1ff\n", "impossible in a dos"),
        ("label: dos\n/dev/sda1 : start=-2048, size=8, type=7\n", "impossible in a dos"),
    ],
)
def test_sfdisk_dump_values_that_cannot_be_an_mbr(dump: str, message: str) -> None:
    """int() of a GUID label-id, of 5000 digits, struct.pack of a >32-bit start/size and a
    type byte of 0x1ff were ValueError/struct.error; all are bad input now."""
    with pytest.raises((BadInputError, metadata.UnsupportedFormatError), match=message):
        metadata.parse_sfdisk(dump, "sda")


def _clonezilla_dir(d: Path, files: dict[str, bytes]) -> Path:
    d.mkdir()
    for name, content in files.items():
        (d / name).write_bytes(content)
    return d


def test_disk_file_with_a_nul_byte(tmp_path: Path) -> None:
    """hypothesis: a ``disk`` file saying ``sda\\0`` reached open() ("embedded null byte")."""
    d = _clonezilla_dir(tmp_path / "img", {"disk": b"sda\0", "sda-pt.sf": b""})
    with pytest.raises(BadInputError, match="NUL"):
        restore_clonezilla(d, tmp_path / "out.raw")
    assert not (tmp_path / "out.raw").exists()


@pytest.mark.parametrize(("size", "error"), [("9" * 23 + "s", BadInputError),
                                             ("20000000000000B", ConversionError)])
def test_disk_size_no_file_can_have(tmp_path: Path, size: str, error: type) -> None:
    """A parted size past 2**63 was OverflowError in ftruncate; 20 TB (ext4 stops at 16 TiB)
    OSError EFBIG: both tracebacks-to-be; now bad input and a conversion error."""
    d = _clonezilla_dir(tmp_path / "img", {
        "disk": b"sda", "sda-pt.sf": b"label: dos\n/dev/sda1 : start=2048, size=8, type=7\n",
        "sda-pt.parted": f"Disk /dev/sda: {size}\n".encode(),
    })
    try:
        with pytest.raises(error):
            restore_clonezilla(d, tmp_path / "out.raw")
    except pytest.fail.Exception:
        if error is ConversionError:  # a file system that takes 20 TB files (tmpfs, xfs)
            pytest.skip("this file system allows a 20 TB file")
        raise
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]


def test_smbios_json_with_a_5000_digit_number(tmp_path: Path) -> None:
    """json.loads raises plain ValueError (not JSONDecodeError) for a 4300+ digit integer."""
    path = tmp_path / "smbios.json"
    path.write_text('{"bios": {"vendor": ' + "9" * 5000 + "}}")
    with pytest.raises(UsageError, match="not valid JSON"):
        read_smbios(path)


def _software_hive(tmp: Path, values: dict[str, str]) -> Path:
    import hivex

    from fixtures.regf import minimal_hive_bytes

    path = tmp / "SOFTWARE"
    path.write_bytes(minimal_hive_bytes(hive_name="SOFTWARE"))
    h = hivex.Hivex(str(path), write=True)
    node = h.root()
    for part in ("Microsoft", "Windows NT", "CurrentVersion"):
        node = h.node_add_child(node, part)
    h.node_set_values(node, [{"key": k, "t": 1, "value": (v + "\0").encode("utf-16-le")}
                             for k, v in values.items()])
    h.commit(None)
    return path


@pytest.mark.parametrize("build", ["\u00b2", "9" * 5000])
def test_software_version_with_a_digit_int_refuses(tmp_path: Path, build: str) -> None:
    """hypothesis (check-hives): CurrentBuildNumber "²" passed str.isdigit() and broke int();
    5000 digits did too.  Such a build number is now simply unknown."""
    from p2vimage.guest.registry import Hive
    from p2vimage.inspection.version import read_software_version

    path = _software_hive(tmp_path, {"CurrentBuildNumber": build,
                                     "CurrentVersion": "9" * 5000 + ".2"})
    v = read_software_version(Hive(path))
    assert (v.major, v.minor, v.build) == (None, None, None)


@pytest.mark.parametrize("count", ["\u00b2", "9" * 5000])
def test_domain_vcpu_count_int_refuses(tmp_path: Path, count: str) -> None:
    """The same isdigit()/int() pair read ``<vcpu>`` of ``check --xml``: now no count."""
    from p2vimage.check.domain import read_domain

    path = tmp_path / "domain.xml"
    path.write_text(f"<domain type='kvm'><name>x</name><vcpu>{count}</vcpu><os>"
                    "<type arch='x86_64' machine='pc'>hvm</type></os></domain>")
    assert read_domain(path).vcpus is None


def test_inf_decoration_with_a_5000_digit_version() -> None:
    """hypothesis (inf-grammar): ``%M%=Models,NTx86.<5000 digits>`` broke int() in
    parse_decoration, although inf.parse promises never to raise on junk."""
    from p2vimage.formats import inf

    text = ("[Version]\r\nClass=viostor\r\n\r\n[Manufacturer]\r\n%M%=Models,NTx86." + "9" * 5000
            + "\r\n[Models]\r\nviostor=inst,PCI\\VEN_1AF4&DEV_1001\r\n")
    parsed = inf.parse(text)
    assert parsed.models("x86", (5, 1)) == [inf.Model("viostor", "inst",
                                                      ("PCI\\VEN_1AF4&DEV_1001",))]
    assert inf.parse_decoration("NTamd64.6." + "9" * 5000).minor == 10**9


@pytest.mark.parametrize(
    "record",
    [
        b"FILE",  # hypothesis (ntfs, the final long run): a short read of MFT record 3
        # a resident $VOLUME_INFORMATION attribute of length 16 ending the record: its value
        # length/offset fields lie past the end
        b"FILE" + struct.pack("<HH", 0x30, 1) + bytes(12) + struct.pack("<H", 0x38)
        + bytes(0x38 - 0x16) + struct.pack("<II", 0x70, 16) + bytes(8),
    ],
)
def test_ntfs_volume_record_too_short(record: bytes) -> None:
    """``struct.error`` from ``volume_flags``; the check's caller catches only NtfsError."""
    from p2vimage.formats import ntfs_volume

    with pytest.raises(ntfs_volume.NtfsError):
        ntfs_volume.volume_flags(record)
