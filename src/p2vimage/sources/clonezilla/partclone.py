"""Streaming reader for partclone images (formats 0001 and 0002): Clonezilla partition data.

Layout (little-endian, see ``docs``/the research notes): a 110-byte header
ending in its own CRC32, a bitmap of one bit per block (LSB first) followed
by its CRC32, then only the *used* blocks in increasing order, with a
checksum after every ``blocks_per_checksum`` used blocks and one after a
trailing partial strip.  partclone's CRC32 is zlib's polynomial with seed
0xFFFFFFFF and no final XOR.

The reader pulls exactly one strip at a time from a file-like object (a
decompressing stream), verifies it and hands consecutive-block runs to a
``write_at(offset, view)`` callback, so memory stays bounded by one strip
whatever the volume size.

Format 0001 (partclone <= 0.2.89, Clonezilla images from before ~2017) has a
4160-byte header without checksum options, a bitmap of one *byte* per block
followed by ``BiTmAgIc``, and a 4-byte CRC after every block, chained over the
whole image and -- a bug partclone keeps for compatibility -- computed over the
block's first byte repeated ``block_size`` times.  Current Clonezilla (2026-04
on) saves XXH128 checksums; XXH64/XXH128 digests are stored little-endian
(the in-memory integers), not in xxhash's canonical big-endian ``digest()``.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import xxhash

from ...errors import CorruptImageError, UnsupportedFormatError

try:  # ISA-L's CRC32 is several times faster than zlib's, same function
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - isal is a dependency
    _crc32 = zlib.crc32

MAGIC = b"partclone-image\0"
HEADER_V2 = struct.Struct("<16s14s4sH16sQQQQIIHHHHIBB")  # 106 bytes, then its CRC32
HEADER_V2_SIZE = HEADER_V2.size + 4
HEADER_V1 = struct.Struct("<15s15s4s2xiQQQ")  # 64 bytes, then 4096 unused
HEADER_V1_SIZE = HEADER_V1.size + 4096
BITMAP_V1_MAGIC = b"BiTmAgIc"
ENDIAN_MAGIC = 0xC0DE

CSUM_NONE = 0x00
CSUM_CRC32 = 0x20
CSUM_XXH64 = 0x30
CSUM_XXH128 = 0x31
CSUM_CRC32_0001 = 0xFF  # partclone's own value for the v0001 per-block chained CRC
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


class Xxh64(Checksum):
    """XXH64, seed 0; partclone stores the 64-bit value as it is in memory (little-endian)."""

    size = 8

    def __init__(self) -> None:
        self.h = xxhash.xxh64()

    def reset(self) -> None:
        self.h.reset()

    def update(self, data: memoryview) -> None:
        self.h.update(data)

    def digest(self) -> bytes:
        return self.h.intdigest().to_bytes(8, "little")


class Xxh128(Xxh64):
    """XXH3-128; partclone ``memcpy``s ``XXH128_hash_t{low64, high64}``: le(low) || le(high)."""

    size = 16

    def __init__(self) -> None:
        self.h = xxhash.xxh3_128()

    def digest(self) -> bytes:
        return self.h.intdigest().to_bytes(16, "little")


class Crc32V1(Checksum):
    """v0001's CRC: chained over the image, and over each block's *first byte* only.

    partclone 0.2's loop forgot to advance its pointer, so the CRC of a block
    is that of its first byte repeated ``block_size`` times; the state carries
    over from block to block (never reseeded).  Corruption past a block's first
    byte therefore goes unnoticed in v0001 images -- partclone has the same
    blindness.
    """

    size = 4

    def __init__(self, block_size: int = 0) -> None:
        self.state = 0xFFFFFFFF
        self.block_size = block_size
        self._rep: dict[int, bytes] = {}

    def update_block(self, first: int) -> bytes:
        rep = self._rep.get(first)
        if rep is None:
            rep = self._rep[first] = bytes((first,)) * self.block_size
        self.state = pc_crc32(rep, self.state)
        return self.state.to_bytes(4, "little")


_CHECKSUMS: dict[int, tuple[str, type[Checksum] | None]] = {
    CSUM_NONE: ("none", Checksum),
    CSUM_CRC32: ("CRC32", Crc32),
    CSUM_XXH64: ("XXH64", Xxh64),
    CSUM_XXH128: ("XXH128", Xxh128),
    CSUM_CRC32_0001: ("CRC32_0001", Crc32V1),
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


# Bytes asked of the stream at once: a reader allocates what it is asked for, so a length
# from the header (a bitmap of 2**40 blocks) must cost only the data actually present.
_READ_PIECE = 8 << 20


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    if n <= _READ_PIECE:
        data = f.read(n)
    else:
        data = bytearray()  # (returned as is: a second copy of a 512 MiB v0001 bitmap hurts)
        while len(data) < n and (piece := f.read(min(_READ_PIECE, n - len(data)))):
            data += piece
    if len(data) != n:
        raise CorruptImageError(f"partclone image truncated in {what}")
    return data  # type: ignore[return-value]


def _check_sizes(used: int, total: int, bs: int, dev_size: int) -> None:
    if bs < 512 or bs > (64 << 20) or bs & (bs - 1):
        raise CorruptImageError(f"partclone header: bad block size {bs}")
    if used > total or total * bs > dev_size + bs or (total == 0 and used):
        raise CorruptImageError(
            f"partclone header: inconsistent sizes ({used} used of {total} blocks of {bs} "
            f"bytes, device {dev_size} bytes)"
        )


def _read_header_v1(head: bytes, f: BinaryIO) -> Header:
    """The 0001 header: no checksum of its own, no options (CRC32_0001 after every block)."""
    raw = head + _read_exact(f, HEADER_V1_SIZE - len(head), "the header")
    _magic, fs, _ver, bs, dev_size, total, used = HEADER_V1.unpack_from(raw)
    _check_sizes(used, total, bs, dev_size)
    return Header(
        version=1, partclone_version="0.2 or older", fs=fs.rstrip(b"\0").decode("ascii", "replace"),
        device_size=dev_size, total_blocks=total, used_blocks=used, block_size=bs,
        checksum_mode=CSUM_CRC32_0001, checksum_size=4, blocks_per_checksum=1, reseed=False,
        bitmap_mode=BM_BYTE, header_size=HEADER_V1_SIZE,
    )


def read_header(f: BinaryIO) -> Header:
    """Parse and check the header; raises CorruptImageError/UnsupportedFormatError."""
    head = _read_exact(f, 34, "the header")
    if head[:15] != MAGIC[:15]:
        raise CorruptImageError("not a partclone image (bad magic)")
    version = head[30:34]
    if version == b"0001":
        return _read_header_v1(head, f)
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
    _check_sizes(used, total, bs, dev_size)
    if cmode == CSUM_CRC32_0001:
        raise CorruptImageError("partclone header: the 0001 checksum in a 0002 header")
    if bmode not in (BM_BIT, BM_NONE):
        raise UnsupportedFormatError(f"partclone bitmap mode {bmode:#x} is not supported yet")
    cs = hdr.new_checksum()
    if cmode != CSUM_NONE and (csize != cs.size or bpc < 1 or bpc * bs > _MAX_STRIP_BYTES):
        raise CorruptImageError(
            f"partclone header: bad checksum layout ({csize} bytes every {bpc} blocks)"
        )
    return hdr


def read_bitmap(f: BinaryIO, hdr: Header) -> bytes:
    """The used-block bitmap (one bit per block; one byte per block in 0001), its count checked.

    An image without a bitmap (mode ``BM_NONE``: every block is stored) gives ``b""``, read
    by :func:`bitmap_runs` as one run of every block: building the all-ones bitmap would
    cost memory in proportion to the volume size the header claims, before any data.
    """
    if hdr.version == 1:
        bm = _read_exact(f, hdr.total_blocks, "the bitmap")
        if _read_exact(f, len(BITMAP_V1_MAGIC), "the bitmap magic") != BITMAP_V1_MAGIC:
            raise CorruptImageError("partclone bitmap magic BiTmAgIc missing (corrupt bitmap)")
        if bm.translate(None, b"\0\1"):
            raise CorruptImageError("partclone bitmap has bytes other than 0 and 1")
        # 0001 has one used count, the file system's; 0.2.x wrote the blocks of the bitmap
        # even when the two disagreed (it only warned), so the bitmap decides (see restore)
        return bm
    if hdr.bitmap_mode == BM_NONE:
        return b""
    nbytes = (hdr.total_blocks + 7) // 8
    bm = _read_exact(f, nbytes, "the bitmap")
    stored = struct.unpack("<I", _read_exact(f, 4, "the bitmap checksum"))[0]
    if pc_crc32(bm) != stored:
        raise CorruptImageError("partclone bitmap checksum mismatch")
    used = _count_bits(bm, hdr.total_blocks)
    if used != hdr.used_blocks:
        raise CorruptImageError(
            f"partclone bitmap marks {used} blocks used, the header {hdr.used_blocks}"
        )
    return bm


_COUNT_STEP = 1 << 20  # bitmap bytes counted at a time


def _count_bits(bm: bytes, total: int) -> int:
    """Bits set among the first ``total`` bits of ``bm`` (LSB first), a MiB at a time: the
    bitmap as one integer, masked, would hold three times its size at once (192 MiB for
    the 64 MiB bitmap of a 2 TiB volume)."""
    full, rest = divmod(total, 8)
    n = sum(int.from_bytes(bm[i : min(i + _COUNT_STEP, full)], "little").bit_count()
            for i in range(0, full, _COUNT_STEP))
    if rest:
        n += (bm[full] & ((1 << rest) - 1)).bit_count()
    return n


_RUNS = re.compile(rb"\xff+|\x00+|[^\x00\xff]")
_RUNS_V1 = re.compile(rb"\x01+")


def bitmap_runs(hdr: Header, bitmap: bytes) -> Iterator[tuple[int, int]]:
    """(first block, count) of each run of used blocks, whatever the bitmap's format."""
    if hdr.version == 1:
        return ((m.start(), m.end() - m.start()) for m in _RUNS_V1.finditer(bitmap))
    if hdr.bitmap_mode == BM_NONE:
        return iter([(0, hdr.total_blocks)] if hdr.total_blocks else [])
    return iter_runs(bitmap, hdr.total_blocks)


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
    v1 = hdr.version == 1
    if v1:
        hdr = dataclasses.replace(hdr, used_blocks=bitmap.count(1))
    if v1:
        pos = hdr.header_size + len(bitmap) + len(BITMAP_V1_MAGIC)
        per, csize = max(1, _NO_CSUM_STRIP_BYTES // (bs + 4)), 0
        record = bs + 4
        crc_v1 = Crc32V1(bs)
        raw_buf = bytearray(per * record)
        raw_view = memoryview(raw_buf)
        cs = Checksum()
    else:
        pos = hdr.header_size + (len(bitmap) + 4 if hdr.bitmap_mode == BM_BIT else 0)
        cs = hdr.new_checksum()
        csize = cs.size
        per = hdr.blocks_per_checksum if csize else max(1, _NO_CSUM_STRIP_BYTES // bs)
    buf = bytearray(per * bs + csize)
    view = memoryview(buf)
    runs = bitmap_runs(hdr, bitmap)
    run_start, run_left = 0, 0
    done = 0
    while done < hdr.used_blocks:
        n = min(per, hdr.used_blocks - done)
        if v1:
            # n records of block + chained CRC; blocks are compacted into ``buf``
            want = n * record
            got = f.readinto(raw_view[:want])  # type: ignore[attr-defined]
            if got != want:
                raise CorruptImageError(
                    f"partclone image truncated at byte {pos + got} (block data "
                    f"{done + got // record} of {hdr.used_blocks})"
                )
            for i in range(n):
                r = i * record
                if crc_v1.update_block(raw_buf[r]) != raw_view[r + bs : r + record]:
                    raise CorruptImageError(
                        f"partclone checksum mismatch at image byte {pos + r} "
                        f"(used block {done + i})"
                    )
                view[i * bs : (i + 1) * bs] = raw_view[r : r + bs]
        else:
            want = n * bs + csize
            got = f.readinto(view[:want])  # type: ignore[attr-defined]
            if got != want:
                raise CorruptImageError(
                    f"partclone image truncated at byte {pos + got} (block data "
                    f"{done + got // bs} of {hdr.used_blocks})"
                )
            if csize:
                cs.update(view[: n * bs])
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
