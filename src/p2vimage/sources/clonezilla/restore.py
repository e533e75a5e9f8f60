"""Rebuild a disk from a Clonezilla image directory into a sparse raw or a qcow2 file.

Order, as Clonezilla's ``restoredisk`` does it: the partition table from the
sfdisk dump (with the EBR chain of logical partitions, of which only the
first EBR was saved: see :mod:`.table`), the saved MBR and first EBR over it
(boot code, disk signature, and the saved table bytes when they describe the
same partitions), the hidden sectors between the MBR and the
first partition (boot loaders live there), then every partition from its
image: only used blocks are written, so free space stays a hole.  partclone
does not store the NTFS backup boot sector (the partition's last sector);
it is recreated from the first, so ``ntfsfix`` and Windows' chkdsk are happy.

A raw disk is a sparse file written with ``pwrite``; a qcow2 disk is written in
one pass through a writable NBD export of it (:func:`restore_disk`), no temporary
raw.  Claiming the outputs, checking the space and naming the disks is the
command's (:mod:`p2vimage.restore`); ``convert`` restores through
:mod:`p2vimage.sources.prepare`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ... import interrupt
from ...blockio import blockdev
from ...blockio.blockdev import create_qcow2
from ...blockio.nbd import NbdExport
from ...errors import BadInputError, CorruptImageError, Interrupted, P2VError, write_error
from ...formats import ntfsclone
from ...progress import Meter, ProgressCallback
from . import partclone, streams, table
from .metadata import SECTOR, DiskImage, Partition, PartitionImage

log = logging.getLogger(__name__)


@dataclass
class PartitionResult:
    name: str
    fs: str
    compression: str
    chunks: int
    compressed_bytes: int
    used_bytes: int
    block_size: int
    checksum: str
    seconds: float
    backup_boot_sector: bool = False


# --- partitions ------------------------------------------------------------------------


def _restore_partition(fd: blockdev.Disk, part: Partition, image: PartitionImage,
                       progress: Callable[[int], None]) -> PartitionResult:
    t0 = time.monotonic()
    base, limit = part.offset, part.length

    def check_header(hdr: partclone.Header) -> None:
        if hdr.device_size > limit:
            raise _too_big(hdr.device_size, limit)

    def write_at(off: int, data: memoryview) -> None:
        end = off + len(data)
        if end > limit:  # the last block may run past the volume; never past the partition
            if off >= limit:
                raise BadInputError(f"the image has data past the end of the partition "
                                    f"(byte {off})")
            data = data[: limit - off]
        try:
            blockdev.pwrite(fd, data, base + off)
        except OSError as exc:
            raise write_error(f"writing the output: {exc.strerror}", exc.errno) from None

    reader, raw = streams.open_stream(list(image.files), image.compression)
    try:
        head = reader.peek(16)
        if image.kind == "raw":
            used, bsize, fs, csum = _restore_raw_stream(reader, write_at, limit, progress), \
                _RAW_BLOCK, "raw (dd)", "none"
        elif head.startswith(ntfsclone.MAGIC):
            used, bsize = _restore_ntfsclone(reader, write_at, limit, progress)
            fs, csum = "NTFS (ntfsclone)", "none"
        elif head.startswith(partclone.MAGIC[:15]) or image.kind == "partclone":
            hdr = partclone.restore(reader, write_at, on_header=check_header,
                                    on_progress=progress)
            used, bsize, fs, csum = hdr.used_bytes, hdr.block_size, hdr.fs, hdr.checksum_name
        else:
            raise CorruptImageError(f"{image.files[0].name}: neither an ntfsclone nor a "
                                    "partclone image")
    finally:
        reader.close()
        raw.close()
    result = PartitionResult(
        name=part.name, fs=fs, compression=image.compression, chunks=len(image.files),
        compressed_bytes=image.compressed_size, used_bytes=used,
        block_size=bsize, checksum=csum,
        seconds=time.monotonic() - t0,
    )
    result.backup_boot_sector = _ntfs_backup_boot_sector(fd, part)
    return result


_RAW_BLOCK = 64 << 10  # all-zero blocks of a dd image are left as holes
_RAW_READ = 8 << 20


def _too_big(size: int, limit: int) -> BadInputError:
    return BadInputError(f"the image is of a {size}-byte volume, larger than the "
                         f"{limit}-byte partition")


def _restore_raw_stream(reader: streams.PieceReader, write_at: Callable[[int, memoryview], None],
                        limit: int, progress: Callable[[int], None]) -> int:
    """A dd / partclone.dd image: the partition's bytes.  Zero blocks stay holes.

    The stream must be exactly the partition: dd and partclone.dd read the whole
    device, so a shorter stream is a lost chunk (an uncompressed one has no other
    end marker) and a longer one does not fit.
    """
    buf = bytearray(_RAW_READ)
    view = memoryview(buf)
    zero = bytes(_RAW_BLOCK)
    pos = written = 0
    while True:
        got = reader.readinto(view)
        if not got:
            break
        if pos + got > limit:
            raise _too_big(pos + got + len(reader.read(1 << 20)), limit)
        for a in range(0, got, _RAW_BLOCK):
            b = min(a + _RAW_BLOCK, got)
            if buf[a:b] != zero[: b - a]:  # (bytearray compare: memcmp; memoryview: slow)
                write_at(pos + a, view[a:b])
                written += b - a
        pos += got
        progress(got)
    if pos != limit:
        raise CorruptImageError(f"the dd image is truncated: {pos} bytes of a {limit}-byte "
                                "partition")
    return written


def _restore_ntfsclone(reader: streams.PieceReader,
                       write_at: Callable[[int, memoryview], None], limit: int,
                       progress: Callable[[int], None]) -> tuple[int, int]:
    """An ntfsclone special image (``ntfsclone --save-image``), with its backup boot sector.

    ntfsclone's last record is the cluster holding the backup boot sector at the
    volume's end, so a stream ending earlier lost its tail.
    """
    try:
        hdr = ntfsclone.read_header(reader)  # type: ignore[arg-type]
        if hdr.device_size > limit:
            raise _too_big(hdr.device_size, limit)
        written = end = 0
        for off, data in ntfsclone.iter_runs(reader, hdr):  # type: ignore[arg-type]
            data = data[: max(0, hdr.device_size - off)]
            if data:
                write_at(off, memoryview(data))
                written += len(data)
                end = off + len(data)
                progress(len(data))
    except ntfsclone.NtfsCloneError as exc:
        raise CorruptImageError(str(exc)) from exc
    if end != hdr.device_size:
        raise CorruptImageError(f"the ntfsclone image is truncated (data ends at byte {end} "
                                f"of the {hdr.device_size}-byte volume)")
    return written, hdr.cluster_size


def _ntfs_backup_boot_sector(fd: blockdev.Disk, part: Partition) -> bool:
    """Copy an NTFS boot sector to the partition's last sector, where partclone left zeros."""
    first = blockdev.pread(fd, SECTOR, part.offset)
    if first[3:11] != b"NTFS    " or first[510:] != b"\x55\xaa":
        return False
    bps = int.from_bytes(first[11:13], "little")  # 4096 on 4Kn volumes: its last sector
    if bps not in (512, 1024, 2048, 4096):
        return False
    first = blockdev.pread(fd, bps, part.offset)
    last = part.offset + part.length - bps
    if blockdev.pread(fd, bps, last).count(0) != bps:
        return False
    blockdev.pwrite(fd, first, last)
    return True


# --- space bounds ----------------------------------------------------------------------


def _partition_bound(part: Partition, image: PartitionImage) -> int:
    """Bytes the restore of one partition writes at most: the used blocks its image header
    states (partclone, ntfsclone) plus the NTFS backup boot sector, else the partition."""
    reader, raw = streams.open_stream(list(image.files), image.compression, threaded=False)
    try:
        head = reader.peek(16)
        if image.kind != "raw" and head.startswith(ntfsclone.MAGIC):
            hdr = ntfsclone.read_header(reader)  # type: ignore[arg-type]
            used = (hdr.inuse + 1) * hdr.cluster_size
        elif image.kind != "raw" and (head.startswith(partclone.MAGIC[:15])
                                      or image.kind == "partclone"):
            phdr = partclone.read_header(reader)
            used = phdr.used_bytes + phdr.block_size
        else:
            used = part.length
    except Exception:  # noqa: BLE001 - unreadable here: the restore names the real error
        used = part.length
    finally:
        reader.close()
        raw.close()
    return min(used + 4096, part.length)


def raw_bound(img: DiskImage) -> int:
    """Upper bound of what :func:`restore_raw` allocates for ``img`` (headers read only).

    Tables, boot code and hidden sectors live before the first partition (plus EBRs
    and the backup GPT: a few MiB of margin); partitions without an image stay holes.
    """
    first = min((p.offset for p in img.partitions), default=img.size)
    total = first + (4 << 20)
    for part in img.partitions:
        image = img.images.get(part.name)
        if image is not None:
            total += _partition_bound(part, image)
    return min(total, img.size)


# --- the whole disk --------------------------------------------------------------------


def restore_raw(img: DiskImage, raw: Path, *,
                progress: ProgressCallback | None = None) -> list[PartitionResult]:
    """Write the disk ``img`` describes into the new sparse file ``raw``."""
    fd = os.open(raw, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            os.ftruncate(fd, img.size)
        except OSError as exc:  # EFBIG: a 20 TiB disk on ext4 (16 TiB files at most)
            raise write_error(f"cannot make a {img.size}-byte disk for {img.disk} here: "
                              f"{exc.strerror}", exc.errno) from None
        results = restore_into(img, fd, progress=progress)
        os.fsync(fd)
    finally:
        os.close(fd)
    return results


def restore_into(img: DiskImage, out: blockdev.Disk, *,
                 progress: ProgressCallback | None = None) -> list[PartitionResult]:
    """Write the table and every partition image of ``img`` into ``out`` (a file
    descriptor of a file already ``img.size`` long, or an NBD export that size).

    ``progress`` gets :class:`~p2vimage.progress.Progress` values for the phase
    ``restore DISK``: bytes of used data written, of an upper bound of them."""
    results = []
    table.write_table(out, img)
    meter = Meter(progress, f"restore {img.disk}", raw_bound(img))

    def written(n: int) -> None:  # per chunk: progress, and a cancelled job stops here
        meter.add(n)
        interrupt.check()

    for part in img.partitions:
        image = img.images.get(part.name)
        if image is None:
            continue
        try:
            results.append(_restore_partition(out, part, image, written))
        except Interrupted:
            raise
        except P2VError as exc:
            raise type(exc)(f"{part.name}: {exc}") from None
        interrupt.check()
    meter.finish(total_was_bound=True)
    return results


def restore_disk(img: DiskImage, dest: Path, format: str, *,
                 progress: ProgressCallback | None = None) -> list[PartitionResult]:
    """Restore ``img`` straight into the new output ``dest``: a sparse raw file, or a
    qcow2 written through a writable NBD export of it (one pass, no temporary raw)."""
    if format == "raw":
        return restore_raw(img, dest, progress=progress)
    create_qcow2(dest, img.size)
    with NbdExport(dest, "qcow2", None, writable=True, label=dest.name) as h:
        out = blockdev.NbdDisk(h)
        results = restore_into(img, out, progress=progress)
        out.flush()
    return results
