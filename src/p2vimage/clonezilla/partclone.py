"""Streaming reader for partclone images (format 0002), the data of a Clonezilla partition.

Layout (little-endian, see ``docs``/the research notes): a 110-byte header
ending in its own CRC32, a bitmap of one bit per block (LSB first) followed
by its CRC32, then only the *used* blocks in increasing order, with a
checksum after every ``blocks_per_checksum`` used blocks and one after a
trailing partial strip.  partclone's CRC32 is zlib's polynomial with seed
0xFFFFFFFF and no final XOR.

The reader pulls exactly one strip at a time from a file-like object (a
decompressing stream), verifies it and hands consecutive-block runs to a
``write_at(offset, view)`` callback, so memory stays bounded by one strip
whatever the volume size.  Format 0001 and the XXH64/XXH128 checksum modes
(issue #9) plug in as another header parser and another :class:`Checksum`.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import CorruptImageError, UnsupportedFormatError

try:  # ISA-L's CRC32 is several times faster than zlib's, same function
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - isal is a dependency
    _crc32 = zlib.crc32

MAGIC = b"partclone-image\0"
HEADER_V2 = struct.Struct("<16s14s4sH16sQQQQIIHHHHIBB")  # 106 bytes, then its CRC32
HEADER_V2_SIZE = HEADER_V2.size + 4
ENDIAN_MAGIC = 0xC0DE

CSUM_NONE = 0x00
CSUM_CRC32 = 0x20
CSUM_XXH64 = 0x30
CSUM_XXH128 = 0x31
BM_NONE = 0x00
BM_BIT = 0x01
BM_BYTE = 0x08

# Bytes read at once when the image has no checksum to delimit strips.
_NO_CSUM_STRIP_BYTES = 8 << 20
# A strip never exceeds this many bytes of block data (a sanity bound on header values).
_MAX_STRIP_BYTES = 256 << 20


def pc_crc32(data: bytes | memoryview, state: int = 0xFFFFFFFF) -> int:
    """partclone's CRC32: zlib's, seeded with ``state``, without the final XOR."""
    return _crc32(data, state ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


class Checksum:
    """One checksum algorithm of the block section: ``size`` bytes per strip."""

    size = 0

    def reset(self) -> None: ...

    def update(self, data: memoryview) -> None: ...

    def digest(self) -> bytes:
        return b""


class Crc32(Checksum):
    size = 4

    def __init__(self) -> None:
        self.state = 0xFFFFFFFF

    def reset(self) -> None:
        self.state = 0xFFFFFFFF

    def update(self, data: memoryview) -> None:
        self.state = pc_crc32(data, self.state)

    def digest(self) -> bytes:
        return self.state.to_bytes(4, "little")


_CHECKSUMS: dict[int, tuple[str, type[Checksum] | None]] = {
    CSUM_NONE: ("none", Checksum),
    CSUM_CRC32: ("CRC32", Crc32),
    CSUM_XXH64: ("XXH64", None),  # issue #9
    CSUM_XXH128: ("XXH128", None),  # issue #9
}


@dataclass(frozen=True)
class Header:
    """What a converter needs from a partclone image header."""

    version: int
    partclone_version: str
    fs: str
    device_size: int
    total_blocks: int
    used_blocks: int  # blocks present in the data section (per the bitmap)
    block_size: int
    checksum_mode: int
    checksum_size: int
    blocks_per_checksum: int
    reseed: bool
    bitmap_mode: int
    header_size: int

    @property
    def checksum_name(self) -> str:
        return _CHECKSUMS.get(self.checksum_mode, (f"{self.checksum_mode:#x}", None))[0]

    @property
    def used_bytes(self) -> int:
        return self.used_blocks * self.block_size

    def new_checksum(self) -> Checksum:
        _name, cls = _CHECKSUMS.get(self.checksum_mode, ("", None))
        if cls is None:
            raise UnsupportedFormatError(
                f"partclone checksum mode {self.checksum_name} is not supported yet"
            )
        return cls()


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CorruptImageError(f"partclone image truncated in {what}")
    return data


def read_header(f: BinaryIO) -> Header:
    """Parse and check the header; raises CorruptImageError/UnsupportedFormatError."""
    head = _read_exact(f, 34, "the header")
    if head[:15] != MAGIC[:15]:
        raise CorruptImageError("not a partclone image (bad magic)")
    version = head[30:34]
    if version == b"0001":
        raise UnsupportedFormatError("partclone image format 0001 is not supported yet")
    if version != b"0002":
        raise UnsupportedFormatError(f"unknown partclone image format {version!r}")
    raw = head + _read_exact(f, HEADER_V2_SIZE - 34, "the header")
    (_magic, pc_ver, _ver, endian, fs, dev_size, total, _used_sb, used, bs, _feat,
     img_ver, _bits, cmode, csize, bpc, reseed, bmode) = HEADER_V2.unpack_from(raw)
    if endian != ENDIAN_MAGIC:
        raise UnsupportedFormatError("partclone image written on a big-endian machine")
    stored = struct.unpack_from("<I", raw, HEADER_V2.size)[0]
    if pc_crc32(raw[: HEADER_V2.size]) != stored:
        raise CorruptImageError("partclone header checksum mismatch")
    hdr = Header(
        version=2,
        partclone_version=pc_ver.rstrip(b"\0").decode("ascii", "replace"),
        fs=fs.rstrip(b"\0").decode("ascii", "replace"),
        device_size=dev_size,
        total_blocks=total,
        used_blocks=used,
        block_size=bs,
        checksum_mode=cmode,
        checksum_size=csize,
        blocks_per_checksum=bpc,
        reseed=bool(reseed),
        bitmap_mode=bmode,
        header_size=HEADER_V2_SIZE,
    )
    if img_ver != 2:
        raise CorruptImageError(f"partclone header: image version {img_ver} in a 0002 header")
    if bs < 512 or bs > (64 << 20) or bs & (bs - 1):
        raise CorruptImageError(f"partclone header: bad block size {bs}")
    if used > total or total * bs > dev_size + bs or (total == 0 and used):
        raise CorruptImageError(
            f"partclone header: inconsistent sizes ({used} used of {total} blocks of {bs} "
            f"bytes, device {dev_size} bytes)"
        )
    if bmode not in (BM_BIT, BM_NONE):
        raise UnsupportedFormatError(f"partclone bitmap mode {bmode:#x} is not supported yet")
    cs = hdr.new_checksum()
    if cmode != CSUM_NONE and (csize != cs.size or bpc < 1 or bpc * bs > _MAX_STRIP_BYTES):
        raise CorruptImageError(
            f"partclone header: bad checksum layout ({csize} bytes every {bpc} blocks)"
        )
    return hdr


def read_bitmap(f: BinaryIO, hdr: Header) -> bytes:
    """The used-block bitmap (one bit per block), its CRC32 checked, its count checked."""
    if hdr.bitmap_mode == BM_NONE:
        full = bytearray(b"\xff" * (hdr.total_blocks // 8))
        if hdr.total_blocks % 8:
            full.append((1 << (hdr.total_blocks % 8)) - 1)
        return bytes(full)
    nbytes = (hdr.total_blocks + 7) // 8
    bm = _read_exact(f, nbytes, "the bitmap")
    stored = struct.unpack("<I", _read_exact(f, 4, "the bitmap checksum"))[0]
    if pc_crc32(bm) != stored:
        raise CorruptImageError("partclone bitmap checksum mismatch")
    used = int.from_bytes(bm, "little") & ((1 << hdr.total_blocks) - 1)
    if used.bit_count() != hdr.used_blocks:
        raise CorruptImageError(
            f"partclone bitmap marks {used.bit_count()} blocks used, the header "
            f"{hdr.used_blocks}"
        )
    return bm


_RUNS = re.compile(rb"\xff+|\x00+|[^\x00\xff]")


def iter_runs(bitmap: bytes, total: int) -> Iterator[tuple[int, int]]:
    """(first block, count) of each run of used blocks, in order, merged across bytes.

    Whole 0x00/0xFF byte runs are handled by the regex in C; only mixed bytes
    are looked at bit by bit, so a multi-million-block bitmap takes well under
    a second and nothing but the current run is held.
    """
    start = -1
    for m in _RUNS.finditer(bitmap):
        a, b = m.span()
        byte = bitmap[a]
        if byte == 0xFF:
            if start < 0:
                start = a * 8
        elif byte == 0:
            if start >= 0:
                yield start, min(a * 8, total) - start
                start = -1
        else:
            for bit in range(8):
                block = a * 8 + bit
                if byte >> bit & 1 and block < total:
                    if start < 0:
                        start = block
                elif start >= 0:
                    yield start, block - start
                    start = -1
        if b * 8 >= total:
            break
    if start >= 0 and start < total:
        yield start, min(len(bitmap) * 8, total) - start


def restore(
    f: BinaryIO,
    write_at: Callable[[int, memoryview], None],
    *,
    on_header: Callable[[Header], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Header:
    """Read a whole image from ``f`` and write every used block through ``write_at``.

    ``on_header`` may refuse the image before anything is written.
    ``write_at(offset_in_volume, data)`` gets consecutive used blocks; data
    views are only valid during the call.  Checksums are verified before a
    strip is written; a mismatch raises CorruptImageError naming the byte
    offset of the strip in the (uncompressed) image.  Data after the last
    strip is an error too: a stray extra chunk must not go unnoticed.
    """
    hdr = read_header(f)
    if on_header:
        on_header(hdr)
    bitmap = read_bitmap(f, hdr)
    bs = hdr.block_size
    cs = hdr.new_checksum()
    csize = cs.size
    per = hdr.blocks_per_checksum if csize else max(1, _NO_CSUM_STRIP_BYTES // bs)
    buf = bytearray(per * bs + csize)
    view = memoryview(buf)
    pos = hdr.header_size + (len(bitmap) + 4 if hdr.bitmap_mode == BM_BIT else 0)
    runs = iter_runs(bitmap, hdr.total_blocks)
    run_start, run_left = 0, 0
    done = 0
    while done < hdr.used_blocks:
        n = min(per, hdr.used_blocks - done)
        want = n * bs + csize
        got = f.readinto(view[:want])  # type: ignore[attr-defined]
        if got != want:
            raise CorruptImageError(
                f"partclone image truncated at byte {pos + got} (block data "
                f"{done + got // bs} of {hdr.used_blocks})"
            )
        data = view[: n * bs]
        if csize:
            cs.update(data)
            if cs.digest() != view[n * bs : want]:
                raise CorruptImageError(
                    f"partclone checksum mismatch at image byte {pos} "
                    f"(used blocks {done}-{done + n - 1})"
                )
            if hdr.reseed:
                cs.reset()
        k = 0
        while k < n:
            if run_left == 0:
                try:
                    run_start, run_left = next(runs)
                except StopIteration:
                    raise CorruptImageError(
                        "partclone bitmap has fewer blocks than the data"
                    ) from None
            m = min(run_left, n - k)
            write_at(run_start * bs, view[k * bs : (k + m) * bs])
            run_start += m
            run_left -= m
            k += m
        done += n
        pos += want
        if on_progress:
            on_progress(n * bs)
    if f.read(1):
        raise CorruptImageError(f"partclone image has data after its last block (byte {pos})")
    return hdr
