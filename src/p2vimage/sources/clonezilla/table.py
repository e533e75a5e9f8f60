"""The MBR partition table and the EBR chain of logical partitions, written in Python.

Clonezilla saves the MBR and only the *first* EBR; the chain of the other
logical partitions must be rebuilt from the sfdisk dump.  Where each further
EBR sat is not recorded: the saved first EBR's link entry gives the second
EBR's exact place, and the distance between that EBR and its logical
partition is taken as the partitioner's habit for the following ones (without
it, the distance between the extended partition's start and the first
logical).  Windows only uses
partition starts and sizes, which are exact either way.

GPT disks are written by :mod:`.gpt`.

CHS fields are computed with the geometry of ``<disk>-chs.sf`` (255/63 when
absent), the convention for LBA-era disks; the saved MBR and first EBR keep
their original bytes when their tables agree with the dump.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from ...blockio import blockdev
from ...errors import BadInputError
from . import gpt
from .metadata import SECTOR, DiskImage, Partition


def chs(lba: int, heads: int, sectors: int) -> bytes:
    """The 3-byte CHS address of ``lba`` (clamped to 1023/H-1/S like every partitioner)."""
    c, rem = divmod(lba, heads * sectors)
    h, s = divmod(rem, sectors)
    if c > 1023:
        c, h, s = 1023, heads - 1, sectors - 1
    return bytes((h, (s + 1) | ((c >> 2) & 0xC0), c & 0xFF))


def entry(boot: bool, type_: int, start: int, size: int, rel_start: int,
          geo: tuple[int, int]) -> bytes:
    """One 16-byte partition entry; ``start`` absolute (for CHS), ``rel_start`` as stored."""
    return (bytes((0x80 if boot else 0,)) + chs(start, *geo) + bytes((type_,))
            + chs(start + size - 1, *geo) + struct.pack("<II", rel_start, size))


def entries(sector: bytes) -> list[tuple[int, int, int, int]]:
    """(boot flag, type, start, size) of the four slots of an MBR/EBR, CHS ignored."""
    out = []
    for i in range(4):
        e = sector[446 + 16 * i : 462 + 16 * i]
        out.append((e[0], e[4], *struct.unpack_from("<II", e, 8)))
    return out


def _chs_sf(img: DiskImage) -> tuple[int, int] | None:
    try:
        text = (img.directory / f"{img.disk}-chs.sf").read_text(errors="replace")
    except FileNotFoundError:
        return None
    h = re.search(r"heads=\s*(\d+)", text)
    s = re.search(r"sectors=\s*(\d+)", text)
    if h and s and 1 <= int(h.group(1)) <= 255 and 1 <= int(s.group(1)) <= 63:
        return int(h.group(1)), int(s.group(1))
    return None


_COMMON_GEOMETRIES = ((255, 63), (240, 63), (128, 63), (64, 63), (32, 63), (16, 63), (64, 32))


def geometry(img: DiskImage, saved: list[bytes]) -> tuple[int, int]:
    """(heads, sectors per track) the original partitioner used for CHS fields.

    ``<disk>-chs.sf`` is the *kernel's* guess (for a disk image file sfdisk
    even says 2 sectors per track), so the geometry is the one that
    reproduces the CHS bytes of the saved MBR/EBR entries; 255/63 otherwise.
    """
    known = _chs_sf(img)
    candidates = ([known] if known else []) + list(_COMMON_GEOMETRIES)
    for geo in candidates:
        if saved and all(_chs_matches(sector, geo) for sector in saved):
            return geo
    return 255, 63


def _chs_matches(sector: bytes, geo: tuple[int, int]) -> bool:
    for i in range(4):
        e = sector[446 + 16 * i : 462 + 16 * i]
        if e[4] == 0:
            continue
        if e[1:4] != chs(_abs_start(sector, i), *geo):
            return False
    return True


def _abs_start(sector: bytes, i: int) -> int:
    # Only meaningful for the MBR (absolute starts); EBRs are matched on entries of the MBR.
    return struct.unpack_from("<I", sector, 446 + 16 * i + 8)[0]


def build_mbr(img: DiskImage, geo: tuple[int, int]) -> bytes:
    """Sector 0 from the dump alone: table, disk signature, no boot code."""
    sector = bytearray(SECTOR)
    primaries = {p.number: p for p in img.partitions if p.number <= 4}
    for n in range(1, 5):
        p = primaries.get(n)
        if p is not None:
            sector[446 + 16 * (n - 1) : 462 + 16 * (n - 1)] = entry(
                p.bootable, p.type, p.start, p.size, p.start, geo)
    if img.label_id is not None:
        struct.pack_into("<I", sector, 440, img.label_id)
    sector[510:] = b"\x55\xaa"
    return bytes(sector)


def _saved(path: Path | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:  # one sector is used: a huge stray -ebr file is not read
        data = f.read(SECTOR)
    if len(data) < SECTOR:
        raise BadInputError(f"{path.name}: {len(data)} bytes, not one sector")
    return data[:SECTOR]


def ebr_chain(img: DiskImage, ext: Partition, first_saved: bytes | None,
              geo: tuple[int, int]) -> list[tuple[int, bytes]]:
    """(sector, bytes) of every EBR of the extended partition ``ext``."""
    logicals = sorted((p for p in img.partitions if p.number > 4), key=lambda p: p.start)
    logicals = [p for p in logicals if ext.start < p.start < ext.start + ext.size]
    if not logicals:
        return [(ext.start, b"\0" * 510 + b"\x55\xaa")]
    gap = logicals[0].start - ext.start
    places = [ext.start]
    saved_next = None
    if first_saved is not None and first_saved[510:] == b"\x55\xaa":
        link = entries(first_saved)[1]
        if link[1] in (0x05, 0x0F) and link[2]:
            saved_next = ext.start + link[2]
    # The second EBR's place (saved) shows the partitioner's habit for the following ones.
    if saved_next is not None and len(logicals) > 1 and saved_next < logicals[1].start:
        gap = logicals[1].start - saved_next
    for i, p in enumerate(logicals[1:], start=1):
        prev_end = logicals[i - 1].start + logicals[i - 1].size
        want = saved_next if i == 1 and saved_next is not None else p.start - gap
        if not prev_end <= want < p.start:
            want = p.start - 1
        if not prev_end <= want < p.start:
            raise BadInputError(f"{p.name}: no room for its EBR before it (sector {p.start})")
        places.append(want)
    out = []
    for i, (pos, p) in enumerate(zip(places, logicals, strict=True)):
        sector = bytearray(SECTOR)
        sector[446:462] = entry(p.bootable, p.type, p.start, p.size, p.start - pos, geo)
        if i + 1 < len(logicals):
            nxt, npos = logicals[i + 1], places[i + 1]
            end = nxt.start + nxt.size
            sector[462:478] = entry(False, 0x05, npos, end - npos, npos - ext.start, geo)
        sector[510:] = b"\x55\xaa"
        out.append((pos, bytes(sector)))
    return out


def _overlay(built: bytes, saved: bytes | None, what: str, img: DiskImage) -> bytes:
    """The saved boot record when its table agrees with the dump, else the built one with the
    saved boot code (``ocs-restore-mbr`` copies 446 bytes the same way)."""
    if saved is None:
        return built
    if entries(saved) == entries(built) and saved[510:] == b"\x55\xaa":
        return saved
    img.warnings.append(f"{what}: its partition table differs from {img.disk}-pt.sf; "
                        "only its boot code was restored")
    return saved[:446] + built[446:]


def write_table(fd: blockdev.Disk, img: DiskImage) -> None:
    """MBR, EBR chain(s) and the hidden sectors after the MBR, into the output ``fd``
    (a file descriptor or an NBD export)."""
    if img.label == "gpt":
        gpt.write(fd, img)  # in Python: sfdisk cannot write a 4K-sector table into a file
        return
    saved_mbr = _saved(img.mbr)
    geo = geometry(img, [saved_mbr] if saved_mbr is not None else [])
    mbr = _overlay(build_mbr(img, geo), saved_mbr, f"{img.disk}-mbr", img)
    blockdev.pwrite(fd, mbr, 0)
    for ext in (p for p in img.partitions if p.extended):
        saved = _saved(img.ebrs.get(ext.name))
        chain = ebr_chain(img, ext, saved, geo)
        for i, (pos, sector) in enumerate(chain):
            if i == 0:
                sector = _overlay(sector, saved, f"{ext.name}-ebr", img)
            blockdev.pwrite(fd, sector, pos * img.sector_size)  # a 4Kn EBR: 512 bytes, rest zero
    if img.hidden_after_mbr is not None:
        blockdev.pwrite(fd, img.hidden_after_mbr.read_bytes(), img.sector_size)
