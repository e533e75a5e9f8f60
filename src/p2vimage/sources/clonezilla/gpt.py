"""A GPT written in Python, in the disk's own sector size (512 or 4096 bytes).

Why not sfdisk, Clonezilla's own tool: Debian 12's sfdisk takes the sector size
from the device it writes to, and a plain output file always has 512-byte
sectors (it has no ``--sector-size``), so a 4K-sector table can only be
written through a ``losetup --sector-size 4096`` loop device -- root, a free
loop device and a kernel that allows it, all for 32 KiB of table.  The format
is small and fully specified (UEFI 2.x, chapter 5.3), so it is written here,
from the same two sources sfdisk would use, with the same bytes sfdisk writes
(tests compare both, on a plain file and on a 4K loop device):

1. ``<disk>-gpt-1st``, the saved protective MBR and primary GPT, when intact:
   it is the original disk's bytes (boot code, reserved fields, attribute bits).
   ocs-sr saves it with ``dd bs=512 count=34``, which on a 4K disk cuts the
   entry array after entry 72: the missing tail is zeros whenever the header's
   entry-array CRC32 says so, which is the case unless more than 72 slots were
   used.  The backup GPT is built from it (``<disk>-gpt-2nd`` is never used:
   ocs-sr saves it one sector short, and at 512-byte offsets on a 4K disk).
2. Otherwise the sfdisk dump ``<disk>-pt.sf``: disk GUID, first/last usable
   LBA, table length, and per partition type, unique GUID, name, attributes.
"""

from __future__ import annotations

import math
import re
import struct
import uuid
import zlib
from dataclasses import dataclass, field

from ...blockio import blockdev
from ...errors import BadInputError
from .metadata import DiskImage

ENTRY_SIZE = 128
HEADER_SIZE = 92
REVISION = 0x00010000
# sfdisk's attribute names (libfdisk gpt.c); bits 48-63 are written GUID:N
_ATTR_BITS = {"requiredpartition": 0, "noblockioprotocol": 1, "legacybiosbootable": 2}
_FIELD = re.compile(r'\s*([A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*,?')


@dataclass
class Entry:
    number: int  # slot = number - 1, as sfdisk places ``/dev/sdaN``
    start: int
    size: int
    type_guid: str
    uuid: str | None = None
    name: str = ""
    attrs: int = 0


@dataclass
class Table:
    disk_guid: str
    first_lba: int | None = None
    last_lba: int | None = None
    length: int = 128
    entries: list[Entry] = field(default_factory=list)


def _unquote(value: str) -> str:
    """sfdisk quotes names and escapes unsafe bytes as ``\\xNN`` (UTF-8)."""
    if not (len(value) >= 2 and value[0] == value[-1] == '"'):
        return value
    raw = bytearray()
    body, i = value[1:-1], 0
    while i < len(body):
        if body[i] == "\\" and body[i + 1 : i + 2] == "x" and i + 3 < len(body):
            raw.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif body[i] == "\\" and i + 1 < len(body):
            raw += body[i + 1].encode()
            i += 2
        else:
            raw += body[i].encode()
            i += 1
    return raw.decode("utf-8", errors="replace")


def _attrs(text: str, where: str) -> int:
    bits = 0
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        if word.lower() in _ATTR_BITS:
            bits |= 1 << _ATTR_BITS[word.lower()]
        elif re.fullmatch(r"GUID:\d+", word) and int(word[5:]) < 64:
            bits |= 1 << int(word[5:])
        else:
            raise BadInputError(f"{where}: unknown GPT attribute {word!r}")
    return bits


def parse_dump(text: str, where: str) -> Table:
    """The GPT fields of an sfdisk dump (``where`` names the file in errors)."""
    head = dict(re.findall(r"^([a-z-]+):\s*(\S+)\s*$", text, re.M))
    if "label-id" not in head:
        raise BadInputError(f"{where}: no label-id (the disk GUID)")
    try:
        table = Table(str(uuid.UUID(head["label-id"])).upper(),
                      int(head["first-lba"]) if "first-lba" in head else None,
                      int(head["last-lba"]) if "last-lba" in head else None,
                      int(head.get("table-length", "128")))
    except ValueError:
        raise BadInputError(f"{where}: unreadable label-id/first-lba/last-lba/table-length") \
            from None
    for line in text.splitlines():
        m = re.match(r"^\s*(\S+)\s*:(.*)$", line)
        if not m or "start=" not in m.group(2):
            continue
        num = re.search(r"(\d+)$", m.group(1))
        fields = {k.lower(): v.strip() for k, v in _FIELD.findall(m.group(2))}
        try:
            e = Entry(int(num.group(1)) if num else 0, int(fields["start"]),
                      int(fields["size"]), str(uuid.UUID(fields["type"])).upper(),
                      str(uuid.UUID(fields["uuid"])).upper() if "uuid" in fields else None,
                      _unquote(fields.get("name", "")),
                      _attrs(_unquote(fields.get("attrs", "")), where))
        except (KeyError, ValueError):
            raise BadInputError(f"{where}: cannot parse the GPT line for {m.group(1)}") \
                from None
        if e.size:
            table.entries.append(e)
    return table


# --- bytes -----------------------------------------------------------------------------


def protective_mbr(sectors: int, ss: int, boot_code: bytes = b"") -> bytes:
    """Sector 0: one 0xEE partition over the whole disk (capped at 2^32-1), as libfdisk."""
    mbr = bytearray(ss)
    mbr[: len(boot_code[:440])] = boot_code[:440]
    mbr[446:462] = bytes((0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF)) + struct.pack(
        "<II", 1, min(sectors - 1, 0xFFFFFFFF))
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def entry_array(table: Table, where: str) -> bytes:
    array = bytearray(table.length * ENTRY_SIZE)
    for e in table.entries:
        if not 1 <= e.number <= table.length:
            raise BadInputError(f"{where}: partition {e.number} outside a "
                                f"{table.length}-entry table")
        name = e.name.encode("utf-16-le")[:72]
        off = (e.number - 1) * ENTRY_SIZE
        if array[off : off + 16] != bytes(16):
            raise BadInputError(f"{where}: partition {e.number} listed twice")
        array[off : off + ENTRY_SIZE] = (
            uuid.UUID(e.type_guid).bytes_le
            + uuid.UUID(e.uuid or str(uuid.uuid4())).bytes_le
            + struct.pack("<QQQ", e.start, e.start + e.size - 1, e.attrs)
            + name + bytes(72 - len(name)))
    return bytes(array)


def header(*, my: int, alt: int, first: int, last: int, disk_guid: bytes, entries_lba: int,
           count: int, entries_crc: int, template: bytes | None = None) -> bytes:
    """A 92-byte header (or ``template``'s size, keeping its other bytes), CRC filled in."""
    h = bytearray(template or bytes(HEADER_SIZE))
    h[:16] = b"EFI PART" + struct.pack("<II", REVISION, len(h))
    h[16:24] = bytes(8)
    struct.pack_into("<QQQQ", h, 24, my, alt, first, last)
    h[56:72] = disk_guid
    struct.pack_into("<QIII", h, 72, entries_lba, count, ENTRY_SIZE, entries_crc)
    struct.pack_into("<I", h, 16, zlib.crc32(h))
    return bytes(h)


def _backup(primary: bytes, entries: bytes, sectors: int, ss: int) -> list[tuple[int, bytes]]:
    """(offset, bytes) of the backup entry array and header, mirrored from the primary's."""
    last = sectors - 1
    elba = last - math.ceil(len(entries) / ss)
    b = bytearray(primary)
    struct.pack_into("<QQ", b, 24, last, 1)
    struct.pack_into("<Q", b, 72, elba)
    b[16:20] = bytes(4)
    struct.pack_into("<I", b, 16, zlib.crc32(b))
    return [(elba * ss, entries), (last * ss, bytes(b) + bytes(ss - len(b)))]


def from_dump(table: Table, sectors: int, ss: int, where: str,
              boot_code: bytes = b"") -> list[tuple[int, bytes]]:
    """Every (offset, bytes) of a GPT built from the dump: protective MBR, primary, backup."""
    entries = entry_array(table, where)
    table_sectors = math.ceil(len(entries) / ss)
    lowest, highest = 2 + table_sectors, sectors - 2 - table_sectors
    first = lowest if table.first_lba is None else table.first_lba
    last = highest if table.last_lba is None else min(table.last_lba, highest)
    if not lowest <= first <= last:
        raise BadInputError(f"{where}: first-lba {first} / last-lba {last} do not fit a "
                            f"{sectors}-sector disk")
    for e in table.entries:
        if e.start < first or e.start + e.size - 1 > last:
            raise BadInputError(f"{where}: partition {e.number} ({e.start}+{e.size}) lies "
                                f"outside the usable sectors {first}-{last}")
    primary = header(my=1, alt=sectors - 1, first=first, last=last,
                     disk_guid=uuid.UUID(table.disk_guid).bytes_le, entries_lba=2,
                     count=table.length, entries_crc=zlib.crc32(entries))
    return [(0, protective_mbr(sectors, ss, boot_code)),
            (ss, primary + bytes(ss - len(primary))), (2 * ss, entries),
            *_backup(primary, entries, sectors, ss)]


def saved_primary(data: bytes, sectors: int, ss: int) -> list[tuple[int, bytes]] | None:
    """Every (offset, bytes) of the GPT from a saved ``<disk>-gpt-1st``, or None when it is
    not an intact primary GPT of a ``sectors``-sector disk in this sector size.

    An entry array cut short by ocs-sr's 34 x 512 bytes is padded with zeros; the
    header's CRC32 of the array then decides whether the cut part was empty.
    """
    hdr = data[ss : ss + 512]
    if len(hdr) < HEADER_SIZE or hdr[:8] != b"EFI PART":
        return None
    size = struct.unpack_from("<I", hdr, 12)[0]
    if not HEADER_SIZE <= size <= min(512, ss):
        return None
    check = bytearray(hdr[:size])
    check[16:20] = bytes(4)
    if zlib.crc32(check) != struct.unpack_from("<I", hdr, 16)[0]:
        return None
    my, alt, first, last = struct.unpack_from("<QQQQ", hdr, 24)
    elba, count, esize, ecrc = struct.unpack_from("<QIII", hdr, 72)
    ebytes = count * esize
    if my != 1 or alt != sectors - 1 or esize != ENTRY_SIZE or elba < 2 or not 1 <= count <= 4096:
        return None
    end = elba * ss + ebytes
    if last >= sectors - 1 - math.ceil(ebytes / ss) or end > first * ss or first > last:
        return None
    entries = data[elba * ss : end]
    entries += bytes(ebytes - len(entries))
    if zlib.crc32(entries) != ecrc:
        return None
    primary = bytes(hdr[:size])
    return [(0, data[:ss] + bytes(ss - len(data[:ss]))),
            (ss, primary + bytes(ss - size)), (elba * ss, entries),
            *_backup(primary, entries, sectors, ss)]


def _extents(entries: bytes) -> set[tuple[int, int, int]]:
    """(slot, first LBA, last LBA) of every used entry of an entry array."""
    out = set()
    for slot in range(len(entries) // ENTRY_SIZE):
        e = entries[slot * ENTRY_SIZE : (slot + 1) * ENTRY_SIZE]
        if e[:16] != bytes(16):
            out.add((slot, *struct.unpack_from("<QQ", e, 32)))
    return out


def write(fd: blockdev.Disk, img: DiskImage) -> None:
    """The GPT of ``img`` into ``fd``: from its intact ``<disk>-gpt-1st`` when that describes
    the partitions of the dump (which places the partition images), else from the dump."""
    ss = img.sector_size
    sectors = img.size // ss
    assert img.sfdisk_dump is not None
    where = img.sfdisk_dump.name
    table = parse_dump(img.sfdisk_dump.read_text(errors="replace"), where)
    saved = img.gpt_1st.read_bytes() if img.gpt_1st is not None else b""
    pieces = saved_primary(saved, sectors, ss) if saved else None
    if saved and pieces is None:
        img.warnings.append(f"{img.disk}-gpt-1st is not an intact primary GPT of this "
                            "disk; the GPT comes from the sfdisk dump")
    elif pieces is not None and _extents(pieces[2][1]) != {
            (e.number - 1, e.start, e.start + e.size - 1) for e in table.entries}:
        img.warnings.append(f"{img.disk}-gpt-1st describes other partitions than "
                            f"{where}; the GPT comes from the sfdisk dump")
        pieces = None
    if pieces is None:
        pieces = from_dump(table, sectors, ss, where)
    for off, data in pieces:
        blockdev.pwrite(fd, data, off)
