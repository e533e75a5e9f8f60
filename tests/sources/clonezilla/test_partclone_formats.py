"""partclone format 0001 and the XXH64/XXH128 checksum modes (issue #9, item 1).

Debian's partclone 0.3.23 cannot write these, so images come from the
test-side writer ``tests/partclone_writer.py``, which is first proved against
the real tool: for the formats partclone 0.3.23 does write (0002 with no
checksum or CRC32) the writer's image is byte-identical to partclone.ntfs's,
and partclone.restore restores it (and the writer's 0001 image, whose chained
CRCs it verifies) to the same bytes as the real image.  The XXH digest layout
is checked against libxxhash itself through ctypes (the C structs partclone
``memcpy``s).  The reference output is always partclone.restore of the real
tool's image of the same volume.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
import subprocess
from pathlib import Path

import pytest

from p2vimage.errors import CorruptImageError, UnsupportedFormatError
from p2vimage.sources.clonezilla import partclone
from tests import partclone_writer as w
from tests.sources.clonezilla.test_partclone import VOL_SIZE, _image, _ours, _reference, volume  # noqa: F401


@pytest.fixture(scope="module")
def real(volume: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """The real tool's image (CRC32, Clonezilla's -z 10485760), its bitmap, and the reference."""
    d = tmp_path_factory.mktemp("real")
    image = _image(volume, d / "real.img", "-z", "10485760")
    used, bs, dev, used_sb = w.read_real_bitmap(image)
    assert dev == VOL_SIZE
    return image, used, bs, used_sb, _reference(image, d / "ref.raw")


def _restore_with_partclone(image: Path, dest: Path) -> bytes:
    return _reference(image, dest)


@pytest.mark.parametrize("opts, kw", [
    (("-z", "10485760"), {"mode": w.CRC32, "bpc": 2560}),
    ((), {"mode": w.CRC32, "bpc": 256}),
    (("-k", "7", "-K"), {"mode": w.CRC32, "bpc": 7, "reseed": False}),
    (("-a", "0"), {"mode": w.NONE}),
])
def test_writer_is_byte_identical_to_real_partclone(volume: Path, real, tmp_path: Path,  # noqa: F811
                                                   opts, kw) -> None:
    _img, used, bs, used_sb, reference = real
    theirs = _image(volume, tmp_path / "theirs.img", *opts)
    ours = w.write_v2(volume.read_bytes(), used, bs, tmp_path / "ours.img",
                      used_superblock=used_sb, **kw)
    assert ours.read_bytes() == theirs.read_bytes()
    assert _restore_with_partclone(ours, tmp_path / "r.raw") == reference


def test_writer_v0001_restores_with_real_partclone(volume: Path, real, tmp_path: Path) -> None:  # noqa: F811
    _img, used, bs, _used_sb, reference = real
    v1 = w.write_v1(volume.read_bytes(), used, bs, tmp_path / "v1.img")
    size = 4160 + len(used) + 8 + sum(used) * (bs + 4)
    assert v1.stat().st_size == size  # the size formula verified on partclone 0.2.89 images
    assert _restore_with_partclone(v1, tmp_path / "r.raw") == reference
    # partclone verifies the chained CRCs: one wrong CRC fails its restore
    bad = bytearray(v1.read_bytes())
    bad[4160 + len(used) + 8 + 50 * (bs + 4) + bs] ^= 1
    (tmp_path / "bad.img").write_bytes(bad)
    with pytest.raises(subprocess.CalledProcessError):
        _restore_with_partclone(tmp_path / "bad.img", tmp_path / "r.raw")


def test_xxh_digests_are_libxxhash_structs_as_partclone_stores_them() -> None:
    """partclone: ``*(XXH64_hash_t*)cs = XXH64_digest()``, ``memcpy(cs, &XXH128_hash_t, 16)``."""
    lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")

    class XXH128(ctypes.Structure):
        _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]

    lib.XXH64.restype = ctypes.c_uint64
    lib.XXH64.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
    lib.XXH3_128bits.restype = XXH128
    lib.XXH3_128bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    for data in (b"", b"partclone", bytes(range(256)) * 40):
        for cls, c_value in (
            (partclone.Xxh64, bytes(ctypes.c_uint64(lib.XXH64(data, len(data), 0)))),
            (partclone.Xxh128, bytes(lib.XXH3_128bits(data, len(data)))),
        ):
            h = cls()
            h.update(memoryview(data))
            assert h.digest() == c_value
            assert len(c_value) == cls.size


def _variants(vol_path: Path, used, bs, d: Path) -> dict[str, Path]:
    vol = vol_path.read_bytes()
    return {
        "v0001": w.write_v1(vol, used, bs, d / "v1.img"),
        "XXH64": w.write_v2(vol, used, bs, d / "x64.img", mode=w.XXH64, bpc=256,
                            version="0.3.31"),
        "XXH128": w.write_v2(vol, used, bs, d / "x128.img", mode=w.XXH128, bpc=2560,
                             version="0.3.47"),  # Clonezilla since 2026-04: -a3 -z 10485760
        "XXH128-K": w.write_v2(vol, used, bs, d / "x128k.img", mode=w.XXH128, bpc=7,
                               reseed=False, version="0.3.47"),
    }


def test_reader_restores_v0001_xxh64_xxh128(volume: Path, real, tmp_path: Path) -> None:  # noqa: F811
    _img, used, bs, _used_sb, reference = real
    want = {"v0001": ("CRC32_0001", 1), "XXH64": ("XXH64", 256), "XXH128": ("XXH128", 2560),
            "XXH128-K": ("XXH128", 7)}
    for name, image in _variants(volume, used, bs, tmp_path).items():
        hdr, ours = _ours(image)
        assert ours == reference, name
        assert (hdr.checksum_name, hdr.blocks_per_checksum) == want[name]
        assert hdr.used_blocks == sum(used) and hdr.block_size == bs
        assert hdr.device_size == VOL_SIZE and hdr.fs == "NTFS"
        assert hdr.version == (1 if name == "v0001" else 2)


def test_v0001_bitmap_decides_when_the_header_count_disagrees(volume: Path, real,  # noqa: F811
                                                             tmp_path: Path) -> None:
    """partclone 0.2 stored the file system's used count and wrote the bitmap's blocks even
    when they differed (it only warned): the data section follows the bitmap."""
    _img, used, bs, _used_sb, reference = real
    v1 = bytearray(w.write_v1(volume.read_bytes(), used, bs, tmp_path / "v1.img").read_bytes())
    v1[56:64] = (sum(used) + 5).to_bytes(8, "little")
    (tmp_path / "v1.img").write_bytes(v1)
    hdr, ours = _ours(tmp_path / "v1.img")
    assert ours == reference and hdr.used_blocks == sum(used)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes((data[at] ^ 0x40,)) + data[at + 1 :]


def test_corruption_is_found_and_located_in_every_mode(volume: Path, real,  # noqa: F811
                                                       tmp_path: Path) -> None:
    _img, used, bs, _used_sb, _reference_bytes = real
    bm_end = {1: 4160 + len(used) + 8, 2: 110 + (len(used) + 7) // 8 + 4}
    for name, image in _variants(volume, used, bs, tmp_path).items():
        data = image.read_bytes()
        if name == "v0001":
            # v0001's CRC covers each block's first byte only; flip that of used block 40
            at = bm_end[1] + 40 * (bs + 4)
            message = f"checksum mismatch at image byte {at} \\(used block 40\\)"
            cases = {at: message, bm_end[1] - 3: "BiTmAgIc", 4160 + 5: "bytes other than 0"}
        else:
            csize = 8 if name == "XXH64" else 16
            bpc = {"XXH64": 256, "XXH128": 2560, "XXH128-K": 7}[name]
            strip = bpc * bs + csize
            if name == "XXH128-K":  # 4th strip of 7; chained, so the 4th checksum fails
                at = bm_end[2] + 3 * strip + 1000
                message = f"checksum mismatch at image byte {bm_end[2] + 3 * strip} "
            else:  # the only/first strip
                at = bm_end[2] + 1000
                message = f"checksum mismatch at image byte {bm_end[2]} "
            cases = {at: message, 20: "header checksum mismatch",
                     110 + 3: "bitmap checksum mismatch"}
        for offset, msg in cases.items():
            bad = tmp_path / "bad.img"
            bad.write_bytes(_flip(data, offset))
            with pytest.raises(CorruptImageError, match=msg):
                _ours(bad)
        for blob, msg in ((data[:-5000], "truncated at byte"),
                          (data + b"\0", "data after its last block")):
            bad = tmp_path / "bad.img"
            bad.write_bytes(blob)
            with pytest.raises(CorruptImageError, match=msg):
                _ours(bad)


def test_unknown_versions_and_checksum_modes_are_refused(real, tmp_path: Path) -> None:
    data = bytearray(real[0].read_bytes())
    v3 = bytearray(data)
    v3[30:34] = b"0003"
    bad = tmp_path / "v3.img"
    bad.write_bytes(v3)
    with pytest.raises(UnsupportedFormatError, match="format b'0003'"):
        _ours(bad)
    for mode, err, msg in ((0x40, UnsupportedFormatError, "checksum mode 0x40"),
                           (0xFF, CorruptImageError, "0001 checksum in a 0002 header")):
        odd = bytearray(data)
        odd[96:98] = mode.to_bytes(2, "little")
        odd[106:110] = struct.pack("<I", partclone.pc_crc32(bytes(odd[:106])))
        bad.write_bytes(odd)
        with pytest.raises(err, match=msg):
            _ours(bad)
