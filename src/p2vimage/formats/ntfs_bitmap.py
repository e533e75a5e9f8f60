"""Which clusters of an NTFS volume are in use, read from its ``$Bitmap`` on the host.

The host-side copy writes only the clusters NTFS uses.  That list is the volume's
own allocation bitmap: the unnamed ``$DATA`` of ``$Bitmap`` (MFT record 6), one bit
per cluster.  Like ``$Volume`` (record 3, :mod:`ntfs_volume`), record 6 lies in the
MFT's first, contiguous records, so the boot sector, one record and the bitmap's own
clusters (a few hundred KB for a large volume) are all that is read; no mount, no
appliance.  This is what partclone.ntfs and ntfsclone rely on too.

A bitmap that cannot be trusted is refused with :class:`NtfsError` and the caller
copies the volume whole: a volume marked dirty (Windows did not finish its writes,
so the bitmap may lag behind the files), a bitmap shorter than the volume, a
volume larger than its partition, a bitmap whose runs leave the volume.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from .ntfs_volume import (
    ATTR_END,
    FLAG_DIRTY,
    VOLUME_RECORD,
    NtfsError,
    _fixup,
    parse_boot,
    volume_flags,
)

BITMAP_RECORD = 6
ATTR_ATTRIBUTE_LIST = 0x20
ATTR_DATA = 0x80
MAX_BITMAP = 1 << 30  # 8 Gi clusters: 32 TiB at 4 KiB, more than NTFS volumes here

Reader = Callable[[int, int], bytes]  # (offset in the volume, length) -> bytes


@dataclass(frozen=True)
class UsedClusters:
    """The used part of one NTFS volume, in bytes from the partition's start."""

    cluster_size: int
    volume_bytes: int  # clusters * cluster size: what the bitmap covers
    runs: tuple[tuple[int, int], ...]  # (offset, length), sorted, not adjacent

    @property
    def used_bytes(self) -> int:
        return sum(n for _, n in self.runs)


def decode_runlist(data: bytes | bytearray, start: int) -> list[tuple[int, int]]:
    """A non-resident attribute's mapping pairs: [(first cluster, clusters)].

    Each pair: a header byte (low nibble: bytes of the length, high nibble: bytes of
    the signed offset from the previous run's cluster), then both fields; 0 ends it.
    A pair without an offset is sparse (no clusters on disk): not allowed here.
    """
    runs: list[tuple[int, int]] = []
    pos, lcn = start, 0
    while pos < len(data):
        head = data[pos]
        if head == 0:
            return runs
        nlen, noff = head & 0x0F, head >> 4
        if nlen == 0 or nlen > 8 or noff > 8 or pos + 1 + nlen + noff > len(data):
            raise NtfsError("$Bitmap: damaged run list")
        length = int.from_bytes(data[pos + 1 : pos + 1 + nlen], "little")
        if noff == 0:
            raise NtfsError("$Bitmap: sparse run in the run list")
        lcn += int.from_bytes(data[pos + 1 + nlen : pos + 1 + nlen + noff], "little",
                              signed=True)
        if length <= 0 or lcn < 0:
            raise NtfsError("$Bitmap: run with a negative cluster or length")
        runs.append((lcn, length))
        pos += 1 + nlen + noff
    raise NtfsError("$Bitmap: run list without its end marker")


def _bitmap_data(record: bytes) -> tuple[list[tuple[int, int]], int]:
    """The run list and the byte size of ``$Bitmap``'s unnamed ``$DATA``."""
    if record[:4] != b"FILE":
        raise NtfsError("MFT record 6 ($Bitmap) has no FILE signature")
    data = _fixup(record)
    off = struct.unpack_from("<H", data, 0x14)[0]
    listed = False
    while off + 16 <= len(data):
        atype, alen = struct.unpack_from("<II", data, off)
        if atype == ATTR_END or alen < 16 or off + alen > len(data):
            break
        listed |= atype == ATTR_ATTRIBUTE_LIST
        if atype == ATTR_DATA and data[off + 9] == 0:  # unnamed
            if data[off + 8] == 0:
                raise NtfsError("$Bitmap: resident data (not an NTFS volume's bitmap)")
            if alen < 0x40:
                raise NtfsError("$Bitmap: non-resident attribute header too short")
            first_vcn = struct.unpack_from("<q", data, off + 0x10)[0]
            runs_at = struct.unpack_from("<H", data, off + 0x20)[0]
            size = struct.unpack_from("<q", data, off + 0x30)[0]
            if first_vcn != 0:
                raise NtfsError("$Bitmap: data split over several records")
            if runs_at >= alen:
                raise NtfsError("$Bitmap: run list outside its attribute")
            return decode_runlist(data[off : off + alen], runs_at), size
        off += alen
    raise NtfsError("$Bitmap: no unnamed $DATA attribute"
                    + (" in its base record (attribute list)" if listed else ""))


def bits_to_runs(bitmap: bytes, clusters: int) -> list[tuple[int, int]]:
    """Runs of set bits (LSB first in each byte) among the first ``clusters`` bits.

    Whole zero and 0xFF bytes are skipped and taken by the regex engine, so a bitmap of a
    large volume costs a few passes in C, not a Python step per cluster.
    """
    runs: list[tuple[int, int]] = []
    start = -1

    def flush(end: int) -> None:
        nonlocal start
        if start >= 0:
            runs.append((start, end - start))
            start = -1

    nbytes = (clusters + 7) // 8
    for m in re.finditer(rb"\x00+|\xff+|[\x01-\xfe]", bitmap[:nbytes]):
        first = m.start() * 8
        b = m.group()
        if b[0] == 0:
            flush(first)
        elif b[0] == 0xFF:
            if start < 0:
                start = first
        else:
            v = b[0]
            for bit in range(8):
                if v >> bit & 1:
                    if start < 0:
                        start = first + bit
                else:
                    flush(first + bit)
    flush(nbytes * 8)
    # the last byte's bits past the volume are padding, whatever they say
    out = []
    for s, n in runs:
        if s >= clusters:
            break
        out.append((s, min(n, clusters - s)))
    return out


def used_clusters(read: Reader, partition_bytes: int) -> UsedClusters:
    """Read the boot sector, ``$Volume``, ``$Bitmap`` through ``read``; raise NtfsError
    when the bitmap cannot be trusted (the caller then copies the partition whole)."""
    boot = parse_boot(read(0, 512))
    sector = read(0, boot.bytes_per_sector)
    total_sectors = struct.unpack_from("<Q", sector, 0x28)[0]
    cs = boot.cluster_size
    clusters = total_sectors * boot.bytes_per_sector // cs
    if clusters == 0:
        raise NtfsError("the volume has no clusters")
    volume_bytes = clusters * cs
    if total_sectors * boot.bytes_per_sector > partition_bytes:
        raise NtfsError(f"the volume ({total_sectors * boot.bytes_per_sector} bytes) is "
                        f"larger than its partition ({partition_bytes} bytes)")
    if boot.mft_offset + (BITMAP_RECORD + 1) * boot.record_size > volume_bytes:
        raise NtfsError("the MFT lies past the end of the volume")
    flags = volume_flags(read(boot.record_offset(VOLUME_RECORD), boot.record_size))[0]
    if flags & FLAG_DIRTY:
        raise NtfsError("the volume is marked dirty (its bitmap may be out of date)")
    runs, size = _bitmap_data(read(boot.record_offset(BITMAP_RECORD), boot.record_size))
    if size * 8 < clusters:
        raise NtfsError(f"$Bitmap is too short ({size} bytes for {clusters} clusters)")
    if size > MAX_BITMAP:
        raise NtfsError(f"$Bitmap is implausibly large ({size} bytes)")
    chunks = []
    have = 0
    for lcn, n in runs:
        if (lcn + n) > clusters:
            raise NtfsError("$Bitmap: its clusters lie past the end of the volume")
        want = min(n * cs, size - have)
        if want <= 0:
            break
        chunks.append(read(lcn * cs, want))
        have += want
    if have < size:
        raise NtfsError(f"$Bitmap: its runs hold {have} of its {size} bytes")
    bitmap = b"".join(chunks)
    used = tuple((s * cs, n * cs) for s, n in bits_to_runs(bitmap, clusters))
    if not used or used[0][0] != 0:
        raise NtfsError("$Bitmap does not mark the boot sector's cluster as used")
    return UsedClusters(cs, volume_bytes, used)
