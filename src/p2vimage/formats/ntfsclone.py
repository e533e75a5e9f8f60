"""Reader for ntfsclone "special image" streams (``ntfsclone --save-image``).

Clonezilla's ``*.ntfs-img`` partitions are in this format
(``sources/clonezilla/restore.py`` writes them); the tests also use it as an
independent list of an NTFS volume's used clusters.  Damaged input raises
:class:`NtfsCloneError`; errors of the underlying stream pass through as they are.

Format (version 10.x, little-endian): a header
``"\\0ntfsclone-image"``, major, minor, cluster size (u32), device size (s64),
number of clusters (s64), clusters in use (s64), offset to the data (u32);
then records: ``0x00`` + s64 = that many unused clusters skipped, ``0x01`` +
one cluster of data.  ntfsclone also emits the cluster holding the backup boot
sector past the last counted cluster, so writes are clipped to device size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"\0ntfsclone-image"
_HDR = struct.Struct("<16sBBIqqqI")
CMD_GAP = 0
CMD_NEXT = 1


class NtfsCloneError(ValueError):
    """The stream is not a well-formed ntfsclone image (its restore reports this as a
    :class:`~p2vimage.errors.CorruptImageError`, exit code 3)."""


@dataclass(frozen=True)
class NtfsCloneHeader:
    major: int
    minor: int
    cluster_size: int
    device_size: int
    nr_clusters: int
    inuse: int
    data_offset: int


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise NtfsCloneError(f"ntfsclone image truncated while reading {what}")
    return data


def read_header(f: BinaryIO) -> NtfsCloneHeader:
    raw = _read_exact(f, _HDR.size, "the header")
    magic, major, minor, cs, dev, nr, inuse, off = _HDR.unpack(raw)
    if magic != MAGIC:
        raise NtfsCloneError("not an ntfsclone image (bad magic)")
    if major != 10:
        raise NtfsCloneError(f"ntfsclone image version {major}.{minor} is not supported")
    if cs < 512 or cs > (1 << 21) or cs & (cs - 1):
        raise NtfsCloneError(f"ntfsclone image: bad cluster size {cs}")
    if dev <= 0 or nr <= 0 or nr * cs > dev + cs or not 0 <= inuse <= nr + 1:
        raise NtfsCloneError("ntfsclone image: inconsistent sizes in the header")
    if off < _HDR.size or off > 4096:
        raise NtfsCloneError(f"ntfsclone image: bad data offset {off}")
    _read_exact(f, off - _HDR.size, "the header padding")
    return NtfsCloneHeader(major, minor, cs, dev, nr, inuse, off)


def iter_runs(f: BinaryIO, hdr: NtfsCloneHeader, max_run: int = 256) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset in the volume, data) for runs of consecutive used clusters."""
    cs = hdr.cluster_size
    limit_clusters = hdr.device_size // cs + 1
    cluster = 0
    run_start = 0
    run: list[bytes] = []
    while True:
        cmd = f.read(1)
        if not cmd:
            break
        if cmd[0] == CMD_GAP:
            count = struct.unpack("<q", _read_exact(f, 8, "a gap record"))[0]
            if count < 0 or cluster + count > limit_clusters:
                raise NtfsCloneError(f"ntfsclone image: bad gap of {count} clusters")
            if run:
                yield run_start * cs, b"".join(run)
                run = []
            cluster += count
        elif cmd[0] == CMD_NEXT:
            if cluster >= limit_clusters:
                raise NtfsCloneError("ntfsclone image: data past the end of the volume")
            # The volume's tail (holding the backup boot sector) may be a partial cluster:
            # ntfsclone then stores only the bytes up to the device size.
            length = min(cs, hdr.device_size - cluster * cs)
            data = _read_exact(f, length, f"cluster {cluster}")
            if not run:
                run_start = cluster
            run.append(data)
            cluster += 1
            if len(run) >= max_run:
                yield run_start * cs, b"".join(run)
                run = []
        else:
            raise NtfsCloneError(f"ntfsclone image: unknown record type {cmd[0]:#x}")
    if run:
        yield run_start * cs, b"".join(run)
