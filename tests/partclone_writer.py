"""A test-side partclone image *writer*, from the format description alone.

Debian's partclone 0.3.23 writes only format 0002 with no checksum or CRC32,
but real Clonezilla directories also hold format 0001 (partclone <= 0.2.89,
before ~2017) and XXH64/XXH128 images (partclone 0.3.31+/0.3.46+, Clonezilla
since 2026-04).  This writer emits all of them from a volume and a used-block
bitmap.  It is proved against the real tool
(tests/sources/clonezilla/test_partclone_formats.py): its 0002 none/CRC32 output
is byte-identical to partclone.ntfs's image and restores with partclone.restore to
the same bytes; its 0001 output restores with partclone.restore too (0.3.23 still
reads 0001 and verifies its CRCs).

It deliberately shares no code with :mod:`p2vimage.sources.clonezilla.partclone`
(the CRC and xxhash calls are written out here again), so a
misreading of the format in the reader is not mirrored by the writer.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import xxhash

NONE, CRC32, XXH64, XXH128 = 0x00, 0x20, 0x30, 0x31
_SIZES = {NONE: 0, CRC32: 4, XXH64: 8, XXH128: 16}


def crc(data: bytes, state: int = 0xFFFFFFFF) -> int:
    """partclone's CRC32: seed 0xFFFFFFFF, reflected 0xEDB88320, no final XOR."""
    return zlib.crc32(data, state ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


class _Hasher:
    def __init__(self, mode: int) -> None:
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        self.state = 0xFFFFFFFF
        self.h = xxhash.xxh64() if self.mode == XXH64 else xxhash.xxh3_128()

    def update(self, data: bytes) -> None:
        if self.mode == CRC32:
            self.state = crc(data, self.state)
        else:
            self.h.update(data)

    def digest(self) -> bytes:
        if self.mode == CRC32:
            return struct.pack("<I", self.state)
        # partclone stores the hash integers as they lie in memory (little-endian);
        # XXH128_hash_t is {low64, high64}
        return self.h.intdigest().to_bytes(_SIZES[self.mode], "little")


def read_real_bitmap(image: Path) -> tuple[list[bool], int, int, int]:
    """(used flags, block size, device size, used-per-superblock) of a real 0002 image."""
    with open(image, "rb") as f:
        hdr = f.read(110)
        assert hdr[:15] == b"partclone-image" and hdr[30:34] == b"0002"
        dev, total, used_sb, _used, bs = struct.unpack_from("<QQQQI", hdr, 52)
        bm = f.read((total + 7) // 8)
    return [bool(bm[i // 8] >> (i % 8) & 1) for i in range(total)], bs, dev, used_sb


Volume = bytes | tuple[Path, int, int]  # the bytes, or (file, byte offset, size) read lazily


def _size(volume: Volume) -> int:
    return len(volume) if isinstance(volume, bytes) else volume[2]


def _blocks(volume: Volume, used: list[bool], bs: int):
    if isinstance(volume, bytes):
        for i, u in enumerate(used):
            if u:
                block = volume[i * bs : (i + 1) * bs]
                yield block + bytes(bs - len(block))
        return
    path, offset, size = volume
    with open(path, "rb") as f:
        for i, u in enumerate(used):
            if u:
                block = os.pread(f.fileno(), min(bs, size - i * bs), offset + i * bs)
                yield block + bytes(bs - len(block))


def write_v2(volume: Volume, used: list[bool], bs: int, dest: Path, *, mode: int = CRC32,
             bpc: int = 256, reseed: bool = True, fs: str = "NTFS",
             version: str = "0.3.23", used_superblock: int | None = None,
             device_size: int | None = None) -> Path:
    """Format 0002 with a bit bitmap, as partclone 0.3.x writes it."""
    total, nused = len(used), sum(used)
    csize = _SIZES[mode]
    if mode == NONE:
        bpc = 0
    head = struct.pack(
        "<16s14s4sH16sQQQQIIHHHHIBB", b"partclone-image\0", version.encode(), b"0002",
        0xC0DE, fs.encode(), _size(volume) if device_size is None else device_size, total,
        nused if used_superblock is None else used_superblock, nused, bs, 18, 2, 64, mode,
        csize, bpc, 1 if reseed else 0, 0x01,
    )
    bm = bytearray((total + 7) // 8)
    for i, u in enumerate(used):
        if u:
            bm[i // 8] |= 1 << (i % 8)
    with open(dest, "wb") as out:
        out.write(head + struct.pack("<I", crc(head)))
        out.write(bytes(bm) + struct.pack("<I", crc(bytes(bm))))
        h = _Hasher(mode) if mode else None
        pending = 0
        for block in _blocks(volume, used, bs):
            out.write(block)
            if h is None:
                continue
            h.update(block)
            pending += 1
            if pending == bpc:
                out.write(h.digest())
                pending = 0
                if reseed:
                    h.reset()
        if h is not None and pending:
            out.write(h.digest())
    return dest


def write_v1(volume: Volume, used: list[bool], bs: int, dest: Path, *, fs: str = "NTFS",
             device_size: int | None = None) -> Path:
    """Format 0001 as partclone 0.2.89 writes it (4-byte CRCs)."""
    total, nused = len(used), sum(used)
    head = struct.pack("<15s15s4s2siQQQ", b"partclone-image", fs.encode(), b"0001", b"\0\0",
                       bs, _size(volume) if device_size is None else device_size, total, nused)
    with open(dest, "wb") as out:
        out.write(head + bytes(4096))
        out.write(bytes(1 if u else 0 for u in used) + b"BiTmAgIc")
        state = 0xFFFFFFFF
        for block in _blocks(volume, used, bs):
            # the 0.2 loop never advanced its pointer: first byte, block_size times, chained
            state = crc(block[:1] * bs, state)
            out.write(block + struct.pack("<I", state))
    return dest
