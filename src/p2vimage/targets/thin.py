"""Thin copy of a disk: only the clusters NTFS uses, plus everything that is not NTFS.

virt-v2v relies on ``fstrim`` to skip free space, which cannot work on the
unaligned partitions of Windows 2000/XP/2003, so it copies those disks in
full.  We ask the appliance for an ntfsclone stream of each NTFS partition
(used clusters only) through a FIFO, so no temporary copy is made, and write
it into a sparse raw file; the MBR, gaps and non-NTFS partitions are copied
whole (their zero blocks stay holes).  A qcow2 output is then made from the
sparse file by ``qemu-img convert``, which skips the holes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConversionError
from ..sources import ntfsclone

log = logging.getLogger("p2vimage")

BLOCK = 1 << 20
ZERO = bytes(BLOCK)


class Progress:
    """One self-overwriting line on a terminal: bytes copied and throughput."""

    def __init__(self, label: str) -> None:
        self.enabled = sys.stderr.isatty()
        self.label = label
        self.t0 = time.monotonic()
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.5:
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-6) / (1 << 20)
        sys.stderr.write(f"\r{self.label}: {done / (1 << 20):,.0f} MiB ({rate:,.0f} MiB/s)  ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


class SparseWriter:
    """pwrite into a file, leaving all-zero blocks as holes."""

    def __init__(self, path: Path, size: int, progress: Progress | None = None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self.fd, size)
        self.size = size
        self.written = 0
        self.progress = progress

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        if offset + len(data) > self.size:
            raise ConversionError("internal error: write past the end of the output disk")
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            chunk = view[pos : pos + BLOCK]
            if chunk != ZERO[: len(chunk)]:
                try:
                    os.pwrite(self.fd, chunk, offset + pos)
                except OSError as exc:
                    raise ConversionError(f"writing the output disk: {exc.strerror}") from None
                self.written += len(chunk)
            pos += len(chunk)
        if self.progress:
            self.progress.update(self.written)

    def close(self) -> None:
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            if self.progress:
                self.progress.done()


def _stream_ntfs(g: Any, part: str, base: int, out: SparseWriter, workdir: Path) -> int:
    fifo = workdir / f"ntfsclone-{part.replace('/', '_')}.fifo"
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    result: dict[str, Any] = {}

    def reader() -> None:
        try:
            with open(fifo, "rb", buffering=1 << 20) as f:
                try:
                    _hdr, n = ntfsclone.restore_into(f, lambda off, d: out.write_at(base + off, d))
                    result["bytes"] = n
                except BaseException as exc:  # keep draining so the appliance never blocks
                    result["error"] = exc
                    while f.read(1 << 20):
                        pass
        except BaseException as exc:
            result["error"] = exc

    t = threading.Thread(target=reader, name=f"ntfsclone {part}", daemon=True)
    t.start()
    try:
        g.ntfsclone_out(part, str(fifo))
    finally:
        t.join()
        fifo.unlink()
    if "error" in result:
        raise result["error"]
    return int(result.get("bytes", 0))


def _copy_region(g: Any, dev: str, offset: int, length: int, out: SparseWriter,
                 workdir: Path) -> None:
    """Copy bytes that are not NTFS (gaps, other filesystems) through a work file.

    The appliance hands over 64 MiB per call (fewer round trips); we read the work
    file back 1 MiB at a time into one reused buffer, so memory stays flat however
    large the region (one ``read()`` of the 64 MiB file held it all at once).
    """
    tmp = workdir / "region.bin"
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    pos = 0
    while pos < length:
        n = min(64 * BLOCK, length - pos)
        g.download_offset(dev, str(tmp), offset + pos, n)
        with open(tmp, "rb", buffering=0) as f:
            done = 0
            while done < n:
                got = f.readinto(view[: min(BLOCK, n - done)])
                if not got:
                    raise ConversionError(f"reading {dev}: short copy at byte {offset + pos}")
                out.write_at(offset + pos + done, view[:got])
                done += got
        pos += n
    tmp.unlink(missing_ok=True)


def write_thin_raw(g: Any, disk: str, dest: Path, workdir: Path) -> dict[str, int]:
    """Write ``disk`` (an appliance device, filesystems unmounted) to a sparse raw file."""
    size = g.blockdev_getsize64(disk)
    out = SparseWriter(dest, size, Progress(f"copying {disk} (used data only)"))
    stats = {"ntfs_bytes": 0, "other_bytes": 0}
    try:
        parts = []
        if g.part_get_parttype(disk) in ("msdos", "gpt"):
            parts = sorted(g.part_list(disk), key=lambda p: p["part_start"])
        fs = g.list_filesystems()
        covered = 0
        mbr = g.part_get_parttype(disk) == "msdos"
        for p in parts:
            start, end = int(p["part_start"]), int(p["part_end"]) + 1
            dev = f"{disk}{p['part_num']}"
            if mbr and g.part_get_mbr_id(disk, p["part_num"]) in (0x05, 0x0F, 0x85):
                continue  # extended container: its EBRs are copied as gaps, logicals thin
            if start > covered:
                _copy_region(g, disk, covered, start - covered, out, workdir)
                stats["other_bytes"] += start - covered
            if fs.get(dev) == "ntfs":
                try:
                    stats["ntfs_bytes"] += _stream_ntfs(g, dev, start, out, workdir)
                except RuntimeError as exc:
                    # ntfsclone refuses a volume it finds inconsistent (dirty flag, a
                    # damaged $Bitmap): every byte is copied instead, over what it wrote.
                    log.warning("%s: ntfsclone refused the volume (%s); copying it whole",
                                dev, exc)
                    _copy_region(g, disk, start, end - start, out, workdir)
                    stats["other_bytes"] += end - start
            else:
                _copy_region(g, disk, start, end - start, out, workdir)
                stats["other_bytes"] += end - start
            covered = max(covered, end)
        if covered < size:
            _copy_region(g, disk, covered, size - covered, out, workdir)
            stats["other_bytes"] += size - covered
    finally:
        out.close()
    stats["written"] = out.written
    return stats
