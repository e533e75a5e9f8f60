"""A disk's partitions read from its MBR (with EBR chains) or GPT, on the host.

The host-side copy needs each partition's extent and whether it holds NTFS.  Asking
the appliance costs seconds under TCG (parted and blkid run once per call: 8 of the
17 s of a conversion's apply phase on the demo image), and the edited overlay is open
on the host anyway, so the few sectors involved are read here.  Only what the copy
needs is decoded: extents, the MBR type (extended containers), and the NTFS boot
signature.  Damaged tables raise :class:`PartitionTableError`; the caller then
copies the disk whole.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

SECTOR = 512
EXTENDED_TYPES = (0x05, 0x0F, 0x85)
GPT_PROTECTIVE = 0xEE
MAX_LOGICAL = 128  # an EBR chain longer than this is a loop or garbage

Reader = Callable[[int, int], bytes]  # (offset, length) -> bytes


class PartitionTableError(ValueError):
    """The partition table is damaged or inconsistent."""


@dataclass(frozen=True)
class PartitionSpan:
    name: str  # the guest's device name, for messages: /dev/sda1
    start: int  # bytes from the disk's start
    end: int  # exclusive
    fs: str | None  # "ntfs" / "vfat" from the partition's boot sector, else None
    container: bool = False  # an MBR extended partition: its EBRs are copied as gaps
    number: int = 0  # the N of /dev/sdaN
    mbr_type: int | None = None  # MBR partition type byte (0x07 NTFS, 0x42 LDM ...)
    active: bool = False  # MBR boot flag (0x80): the partition whose boot code runs
    type_guid: str | None = None  # GPT partition type, upper case (the ESP: C12A7328-...)
    unique_guid: str | None = None  # GPT partition GUID (Windows' MountedDevices names it)
    boot_sector: bytes = field(default=b"", compare=False, repr=False)  # its first sector


@dataclass(frozen=True)
class DiskLayout:
    device: str
    size: int
    partitions: tuple[PartitionSpan, ...]  # sorted by start
    kind: str | None = None  # "mbr", "gpt", or None (no partition table)
    mbr_signature: int | None = None  # the disk signature at 0x1B8 (MBR disks)

    def partition(self, name: str) -> PartitionSpan | None:
        return next((p for p in self.partitions if p.name == name), None)


ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def _fs(boot: bytes) -> str | None:
    if len(boot) < SECTOR:
        return None
    if boot[3:11] == b"NTFS    ":
        return "ntfs"
    if boot[510:512] == b"\x55\xaa" and (boot[0x52:0x57] == b"FAT32" or boot[0x36:0x39] == b"FAT"):
        return "vfat"
    return None


def _guid(raw: bytes) -> str:
    """A GPT GUID as text (mixed-endian, as Windows and sgdisk print it)."""
    return str(uuid.UUID(bytes_le=bytes(raw))).upper()


def read_layout(read: Reader, size: int, device: str = "/dev/sda") -> DiskLayout:
    """The partitions of the disk ``read`` reads (``size`` bytes), sorted by start.

    A disk without a valid MBR signature has no partitions (it is copied as one region).
    """
    if size < SECTOR:
        return DiskLayout(device, size, ())
    mbr = read(0, SECTOR)
    if mbr[510:512] != b"\x55\xaa":
        return DiskLayout(device, size, ())
    entries = [struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i) for i in range(4)]
    if any(t == GPT_PROTECTIVE for _, t, _, _ in entries):
        spans, kind, signature = _gpt(read, size, device), "gpt", None
    else:
        spans, kind = _mbr(read, size, device, entries), "mbr"
        signature = struct.unpack_from("<I", mbr, 0x1B8)[0]
    spans.sort(key=lambda p: p.start)
    return DiskLayout(device, size, tuple(spans), kind, signature)


def _span(read: Reader, size: int, name: str, lba: int, count: int,
          container: bool = False, **extra: object) -> PartitionSpan:
    start, end = lba * SECTOR, (lba + count) * SECTOR
    if count == 0 or end > size:
        raise PartitionTableError(f"{name} lies past the end of the disk "
                                  f"(sectors {lba}-{lba + count - 1}, disk {size // SECTOR})")
    boot = b"" if container else read(start, SECTOR)
    number = int(name[len(name.rstrip("0123456789")):] or 0)
    return PartitionSpan(name, start, end, _fs(boot), container, number=number,
                         boot_sector=boot, **extra)  # type: ignore[arg-type]


def _mbr(read: Reader, size: int, device: str,
         entries: list[tuple[int, int, int, int]]) -> list[PartitionSpan]:
    spans = []
    for i, (boot, ptype, lba, count) in enumerate(entries, 1):
        if ptype == 0 or count == 0:
            continue
        ext = ptype in EXTENDED_TYPES
        spans.append(_span(read, size, f"{device}{i}", lba, count, container=ext,
                           mbr_type=ptype, active=boot == 0x80))
        if ext:
            spans += _logical(read, size, device, lba, lba + count)
    return spans


def _logical(read: Reader, size: int, device: str, ext_start: int,
             ext_end: int) -> list[PartitionSpan]:
    """Walk the EBR chain: each EBR's first entry is a logical partition (relative to the
    EBR), its second the next EBR (relative to the extended partition's start)."""
    spans = []
    ebr_lba = ext_start
    seen = set()
    number = 5
    while True:
        if ebr_lba in seen or len(seen) >= MAX_LOGICAL:
            raise PartitionTableError("the EBR chain loops or is implausibly long")
        seen.add(ebr_lba)
        if not ext_start <= ebr_lba < ext_end:
            raise PartitionTableError(f"an EBR at sector {ebr_lba} lies outside the "
                                      "extended partition")
        ebr = read(ebr_lba * SECTOR, SECTOR)
        if ebr[510:512] != b"\x55\xaa":
            raise PartitionTableError(f"the EBR at sector {ebr_lba} has no signature")
        boot, ptype, rel, count = struct.unpack_from("<B3xB3xII", ebr, 446)
        if ptype and count:
            spans.append(_span(read, size, f"{device}{number}", ebr_lba + rel, count,
                               mbr_type=ptype, active=boot == 0x80))
            number += 1
        _b, ntype, nrel, _n = struct.unpack_from("<B3xB3xII", ebr, 462)
        if ntype not in EXTENDED_TYPES or nrel == 0:
            return spans
        ebr_lba = ext_start + nrel


def _gpt(read: Reader, size: int, device: str) -> list[PartitionSpan]:
    hdr = read(SECTOR, SECTOR)
    if hdr[:8] != b"EFI PART":
        raise PartitionTableError("protective MBR without a GPT header")
    hsize = struct.unpack_from("<I", hdr, 12)[0]
    if not 92 <= hsize <= SECTOR:
        raise PartitionTableError(f"GPT header size {hsize}")
    crc = struct.unpack_from("<I", hdr, 16)[0]
    check = bytearray(hdr[:hsize])
    check[16:20] = b"\0\0\0\0"
    if zlib.crc32(check) != crc:
        raise PartitionTableError("GPT header CRC mismatch")
    entries_lba, count, esize = struct.unpack_from("<QII", hdr, 72)
    if esize < 128 or esize > 4096 or count > 1024:
        raise PartitionTableError(f"GPT entry array of {count} x {esize} bytes")
    table = read(entries_lba * SECTOR, count * esize)
    if zlib.crc32(table) != struct.unpack_from("<I", hdr, 88)[0]:
        raise PartitionTableError("GPT entry array CRC mismatch")
    spans = []
    for i in range(count):
        e = table[i * esize : (i + 1) * esize]
        if e[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        if last < first:
            raise PartitionTableError(f"GPT entry {i + 1}: last sector before the first")
        spans.append(_span(read, size, f"{device}{i + 1}", first, last - first + 1,
                           type_guid=_guid(e[:16]), unique_guid=_guid(e[16:32])))
    return spans
