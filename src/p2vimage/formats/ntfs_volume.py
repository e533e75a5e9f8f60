"""The NTFS volume's own state, read from the raw partition (no mount, no write).

Windows sets the *dirty* flag of ``$Volume`` (MFT record 3, attribute
``$VOLUME_INFORMATION``) while the volume is mounted and clears it on a clean
shutdown; a capture of a running or crashed machine keeps it set, and chkdsk runs at
the next boot.  ntfs-3g refuses to mount such a volume read-write, so offline changes
are unsafe until Windows has checked it.  Reading it needs only the boot sector and
one MFT record: the first records of the MFT are contiguous from ``$MFT``'s first
cluster (Windows relies on that itself to bootstrap).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

VOLUME_RECORD = 3
ATTR_VOLUME_INFORMATION = 0x70
ATTR_END = 0xFFFFFFFF
FLAG_DIRTY = 0x0001
FIXUP_STRIDE = 512
_RECORD_HEADER = 0x18  # FILE record header up to the first-attribute offset (0x14) and more


class NtfsError(ValueError):
    """The bytes are not what an NTFS volume has there."""


@dataclass(frozen=True)
class BootInfo:
    bytes_per_sector: int
    cluster_size: int
    mft_offset: int  # bytes from the partition start
    mirror_offset: int  # $MFTMirr: copies of records 0-3, kept equal by Windows
    record_size: int

    def record_offset(self, n: int) -> int:
        return self.mft_offset + n * self.record_size

    def mirror_record_offset(self, n: int) -> int:
        return self.mirror_offset + n * self.record_size


def parse_boot(sector: bytes) -> BootInfo:
    if len(sector) < 512 or sector[3:11] != b"NTFS    ":
        raise NtfsError("not an NTFS boot sector")
    bps = struct.unpack_from("<H", sector, 0x0B)[0]
    spc = sector[0x0D]
    if spc > 0x80:  # large clusters are stored as a negative power of two
        spc = 1 << (256 - spc)
    if bps not in (512, 1024, 2048, 4096) or spc == 0:
        raise NtfsError(f"bad NTFS boot sector geometry ({bps} bytes/sector, {spc}/cluster)")
    cluster = bps * spc
    mft_lcn, mirr_lcn = struct.unpack_from("<QQ", sector, 0x30)
    cpr = struct.unpack_from("<b", sector, 0x40)[0]
    record = cpr * cluster if cpr > 0 else 1 << -cpr
    if not 256 <= record <= 65536:
        raise NtfsError(f"bad MFT record size {record}")
    return BootInfo(bps, cluster, mft_lcn * cluster, mirr_lcn * cluster, record)


def _fixup(record: bytes) -> bytearray:
    """Undo the update sequence: the last two bytes of every 512-byte stride (NTFS uses
    512 whatever the sector size) hold the sequence number; the real bytes are in the
    array."""
    data = bytearray(record)
    if len(data) < _RECORD_HEADER:  # a short read at the end of a truncated volume
        raise NtfsError(f"MFT record truncated ({len(data)} bytes)")
    usa_off, usa_count = struct.unpack_from("<HH", data, 4)
    if usa_off + 2 * usa_count > len(data) or usa_count == 0:
        raise NtfsError("MFT record: bad update sequence array")
    usn = data[usa_off : usa_off + 2]
    for i in range(1, usa_count):
        end = i * FIXUP_STRIDE - 2
        if end + 2 > len(data):
            break
        if data[end : end + 2] != usn:
            raise NtfsError("MFT record: torn write (update sequence mismatch)")
        data[end : end + 2] = data[usa_off + 2 * i : usa_off + 2 * i + 2]
    return data


def volume_flags(record: bytes) -> tuple[int, int]:
    """(flags, byte offset of the flags in the record) of ``$Volume``'s record."""
    if record[:4] != b"FILE":
        raise NtfsError("MFT record 3 has no FILE signature")
    data = _fixup(record)
    off = struct.unpack_from("<H", data, 0x14)[0]
    while off + 8 <= len(data):
        atype, alen = struct.unpack_from("<II", data, off)
        if atype == ATTR_END or alen < 16 or off + alen > len(data):
            break
        # resident, with room for its value length and offset (alen may be as small as 16)
        if atype == ATTR_VOLUME_INFORMATION and data[off + 8] == 0 and off + 0x16 <= len(data):
            vlen, voff = struct.unpack_from("<IH", data, off + 0x10)
            if vlen >= 12 and off + voff + 12 <= len(data):
                flags_at = off + voff + 10
                return struct.unpack_from("<H", data, flags_at)[0], flags_at
        off += alen
    raise NtfsError("$Volume has no $VOLUME_INFORMATION attribute")


def read_volume_flags(g: Any, part: str) -> int | None:
    """``$Volume``'s flags of NTFS partition ``part`` in appliance ``g``; None if not NTFS.

    Read from the raw partition, not through a mount: ntfs-3g may change or hide the
    state (it resets the journal, and mounts some unsafe volumes read-only).
    Raises :class:`NtfsError` or RuntimeError when the metadata cannot be read.
    """
    boot = g.pread_device(part, 512, 0)
    if boot[3:11] != b"NTFS    ":
        return None
    info = parse_boot(boot)
    record = g.pread_device(part, info.record_size, info.record_offset(VOLUME_RECORD))
    return volume_flags(record)[0]
