"""The host-side copy: the edited overlay, read over NBD, written straight into the output.

The appliance only reads and edits; once it has shut down, the job's overlay (source
plus edits) is exported read-only by a private ``qemu-nbd`` and read with libnbd,
several requests in flight, at the speed of the disks.  Only the ranges of a
:class:`~p2vimage.targets.extents.CopyPlan` are read, and within them all-zero blocks
are skipped, so the output stays thin.  Writes go straight into the claimed output:
a raw output with ``pwrite`` into a sparse file, a qcow2 output through a writable
NBD export of it (qemu's own qcow2 driver).  No intermediate file, one pass.

Memory is bounded by the bytes in flight (``MAX_IN_FLIGHT``), whatever the disk size.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import interrupt
from ..errors import ConversionError
from ..formats.partition_table import DiskLayout, PartitionTableError, read_layout
from ..progress import Meter, ProgressCallback
from . import blockdev
from .disk import create_qcow2
from .extents import CopyPlan, plan_disk
from .nbd import NbdExport, libnbd

log = logging.getLogger("p2vimage")

REQUEST = 4 << 20  # bytes per read request
MAX_IN_FLIGHT = 32 << 20  # bytes of requests in flight: the copy's memory bound
ZERO_BLOCK = 64 << 10  # all-zero blocks this size (qcow2's cluster) are not written
STATE_ZERO = 2  # NBD base:allocation: reads as zeros (a hole, or zero clusters)
_BLOCK_STATUS_MAX = 1 << 30


class Output(Protocol):
    def write(self, offset: int, data: memoryview) -> None: ...
    def finish(self) -> None: ...


class RawOutput:
    """A sparse raw file (the claimed ``.partial``, opened in place) of ``size`` bytes."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(self.fd, 0)
            os.ftruncate(self.fd, size)
        except OSError as exc:
            os.close(self.fd)
            raise ConversionError(f"cannot make a {size}-byte disk {path}: "
                                  f"{exc.strerror}") from None

    def write(self, offset: int, data: memoryview) -> None:
        try:
            os.pwrite(self.fd, data, offset)
        except OSError as exc:
            raise ConversionError(f"writing the output disk: {exc.strerror}") from None

    def finish(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise ConversionError(f"writing the output disk: {exc.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class NbdOutput:
    """Writes through a libnbd handle to a writable export (a qcow2 output)."""

    def __init__(self, handle: Any) -> None:
        self.disk = blockdev.NbdDisk(handle)

    def write(self, offset: int, data: memoryview) -> None:
        self.disk.pwrite(data, offset)

    def finish(self) -> None:
        self.disk.flush()


@dataclass
class CopyStats:
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        """Bytes read per second."""
        return self.bytes_read / self.seconds if self.seconds > 0 else 0.0


def data_ranges(h: Any, offset: int, length: int) -> list[tuple[int, int]]:
    """The parts of [offset, offset+length) that do not read as zeros (NBD block status)."""
    if not h.can_meta_context("base:allocation"):
        return [(offset, length)]
    out: list[tuple[int, int]] = []
    pos, end = offset, offset + length
    while pos < end:
        got: list[tuple[int, int, int]] = []

        def cb(_ctx: str, start: int, entries: list[int], _err: int,
               got: list[tuple[int, int, int]] = got) -> int:
            s = start
            for i in range(0, len(entries) - 1, 2):
                got.append((s, entries[i], entries[i + 1]))
                s += entries[i]
            return 0

        h.block_status(min(end - pos, _BLOCK_STATUS_MAX), pos, cb)
        if not got:
            raise ConversionError(f"the NBD server gave no block status at byte {pos}")
        for s, n, flags in got:
            n = min(n, end - s)
            if n <= 0:
                continue
            if not flags & STATE_ZERO:
                if out and out[-1][0] + out[-1][1] == s:
                    out[-1] = (out[-1][0], out[-1][1] + n)
                else:
                    out.append((s, n))
            pos = s + n
    return out


def _pieces(extents: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    for off, n in extents:
        end = off + n
        while off < end:
            step = min(REQUEST, end - off)
            yield off, step
            off += step


def _nonzero_blocks(buf: Any, n: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the runs of blocks in ``buf[:n]`` that are not all zeros."""
    run = -1
    for b in range(0, n, ZERO_BLOCK):
        if buf.is_zero(b, min(ZERO_BLOCK, n - b)):
            if run >= 0:
                yield run, b
                run = -1
        elif run < 0:
            run = b
    if run >= 0:
        yield run, n


class _Slots:
    """A fixed pool of request buffers, ``MAX_IN_FLIGHT`` bytes in all, reused for the
    whole copy.

    python3-libnbd 1.14 keeps a reference to every buffer given to ``aio_pread`` for
    the life of the handle, so a fresh buffer per request grows the process by the
    bytes copied.  Here every request reads into a view of one of the pool's
    bytearrays, and the ``nbd.Buffer`` for each (slot, length) is made once and reused:
    what libnbd holds on to is a bounded set of objects over fixed memory.
    """

    def __init__(self, nbd: Any) -> None:
        self.nbd = nbd
        self.arrays = [bytearray(REQUEST) for _ in range(max(1, MAX_IN_FLIGHT // REQUEST))]
        self.free = list(range(len(self.arrays)))
        self._buffers: dict[tuple[int, int], tuple[Any, memoryview]] = {}

    def buffer(self, slot: int, n: int) -> tuple[Any, memoryview]:
        key = (slot, n)
        got = self._buffers.get(key)
        if got is None:
            view = memoryview(self.arrays[slot])[:n]
            got = self._buffers[key] = (self.nbd.Buffer.from_buffer(view), view)
        return got


def copy_extents(src: Any, out: Output, extents: list[tuple[int, int]], meter: Meter) -> CopyStats:
    """Read ``extents`` from ``src`` (libnbd), write their non-zero blocks to ``out``.

    Up to ``MAX_IN_FLIGHT`` bytes of reads are in flight; each completed read goes to
    a writer thread (all-zero blocks skipped), which hands its buffer back for the next
    request, so reading and writing overlap.  The writer is the only user of ``out``.
    """
    nbd = libnbd()
    stats = CopyStats()
    t0 = time.monotonic()
    slots = _Slots(nbd)
    writes: queue.Queue[tuple[int, int, int] | None] = queue.Queue()
    returned: queue.Queue[int] = queue.Queue()
    failed: list[BaseException] = []

    def writer() -> None:
        while (item := writes.get()) is not None:
            slot, off, n = item
            try:
                if not failed:
                    buf, view = slots.buffer(slot, n)
                    for a, b in _nonzero_blocks(buf, n):
                        out.write(off + a, view[a:b])
                        stats.bytes_written += b - a
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                failed.append(exc)
            finally:
                returned.put(slot)

    thread = threading.Thread(target=writer, name="p2vimage copy writer", daemon=True)
    thread.start()
    try:
        _read_all(src, nbd, slots, _pieces(extents), writes, returned, failed, stats, meter)
    finally:
        writes.put(None)
        thread.join()
    if failed:
        raise failed[0]
    out.finish()
    stats.seconds = time.monotonic() - t0
    meter.finish()
    return stats


def _read_all(src: Any, nbd: Any, slots: _Slots, pieces: Iterator[tuple[int, int]],
              writes: queue.Queue[tuple[int, int, int] | None], returned: queue.Queue[int],
              failed: list[BaseException], stats: CopyStats, meter: Meter) -> None:
    pending: tuple[int, int] | None = next(pieces, None)
    flying: list[tuple[int, int, int, int]] = []  # (cookie, slot, offset, length)
    while (pending is not None or flying) and not failed:
        while True:  # buffers the writer is done with
            try:
                slots.free.append(returned.get_nowait())
            except queue.Empty:
                break
        while pending is not None and slots.free:
            off, n = pending
            slot = slots.free.pop()
            buf, _view = slots.buffer(slot, n)
            try:
                cookie = src.aio_pread(buf, off)
            except nbd.Error as exc:
                raise _source_error(exc, off) from None
            flying.append((cookie, slot, off, n))
            pending = next(pieces, None)
        if not flying:  # every buffer is with the writer: wait for one
            try:
                slots.free.append(returned.get(timeout=1.0))
            except queue.Empty:
                pass
            interrupt.check()
            continue
        try:
            src.poll(1000)
            finished = [item for item in flying if src.aio_command_completed(item[0])]
        except nbd.Error as exc:
            interrupt.check()
            raise _source_error(exc, flying[0][2]) from None
        interrupt.check()
        for item in finished:
            flying.remove(item)
            _cookie, slot, off, n = item
            writes.put((slot, off, n))
            stats.bytes_read += n
            meter.add(n)


def _source_error(exc: Exception, offset: int | None) -> ConversionError:
    where = f" at byte {offset}" if offset is not None else ""
    return ConversionError(f"reading the edited disk over NBD{where}: {blockdev.reason(exc)} "
                           "(the NBD server stopped?)")


@dataclass
class DiskCopy:
    """One disk's copy, as the report shows it."""

    device: str
    size: int
    ntfs_bytes: int
    other_bytes: int
    bytes_read: int
    bytes_written: int
    seconds: float
    throughput_mib_s: float
    whole_volumes: list[str]
    plan_seconds: float
    warnings: list[str]
    max_in_flight_bytes: int = MAX_IN_FLIGHT  # the copy's memory bound
    in_place: bool = False  # restored into the output and edited there: nothing copied

    @classmethod
    def restored_in_place(cls, device: str, size: int, restored: int) -> DiskCopy:
        """The entry of a Clonezilla disk restored into its output (``restored`` bytes)."""
        return cls(device=device, size=size, ntfs_bytes=0, other_bytes=0, bytes_read=0,
                   bytes_written=restored, seconds=0.0, throughput_mib_s=0.0,
                   whole_volumes=[], plan_seconds=0.0, warnings=[], max_in_flight_bytes=0,
                   in_place=True)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def plan_copy(src: Any, device: str) -> tuple[DiskLayout, CopyPlan]:
    """The partitions of the disk ``src`` (libnbd) exports, and the ranges to copy
    (reading the partition table and the NTFS bitmaps through ``src``)."""
    nbd = libnbd()
    size = src.get_size()

    def read(off: int, n: int) -> bytes:
        if off < 0 or n < 0 or off + n > size:
            raise ValueError(f"read past the end of the disk (byte {off + n})")
        try:
            return bytes(src.pread(n, off))
        except nbd.Error as exc:
            raise _source_error(exc, off) from None

    try:
        layout = read_layout(read, size, device)
    except (PartitionTableError, ValueError) as exc:
        layout = DiskLayout(device, size, ())
        plan = plan_disk(layout, read, lambda off, n: data_ranges(src, off, n))
        plan.warnings.append(f"{device}: the partition table cannot be read ({exc}); the "
                             "disk is copied whole")
        return layout, plan
    return layout, plan_disk(layout, read, lambda off, n: data_ranges(src, off, n))


def copy_disk(overlay: Path, device: str, dest: Path, fmt: str, out_size: int | None,
              workdir: Path, *, label: str, progress: ProgressCallback | None) -> DiskCopy:
    """Copy the used data of ``overlay`` (qcow2) into the new output ``dest``.

    ``out_size`` (``--size``; None: the disk's size) is the output's size: larger grows it,
    smaller cuts off the space after the last partition (the caller checked that).
    """
    t0 = time.monotonic()
    with NbdExport(overlay, "qcow2", workdir, label=f"the edited {device}") as src:
        layout, plan = plan_copy(src, device)
        out_size = out_size or layout.size
        if out_size < layout.size:
            plan.clip(out_size)
        t_plan = time.monotonic() - t0
        interrupt.check()
        meter = Meter(progress, label, plan.total)
        if fmt == "raw":
            raw = RawOutput(dest, out_size)
            try:
                stats = copy_extents(src, raw, plan.extents, meter)
            finally:
                raw.close()
        else:
            create_qcow2(dest, out_size)
            with NbdExport(dest, "qcow2", workdir, writable=True, label=dest.name) as dst:
                stats = copy_extents(src, NbdOutput(dst), plan.extents, meter)
    return DiskCopy(
        device=layout.device, size=layout.size, ntfs_bytes=plan.ntfs_bytes,
        other_bytes=plan.other_bytes, bytes_read=stats.bytes_read,
        bytes_written=stats.bytes_written, seconds=round(stats.seconds, 3),
        throughput_mib_s=round(stats.throughput / (1 << 20), 1),
        whole_volumes=plan.whole_volumes, plan_seconds=round(t_plan, 3),
        warnings=plan.warnings,
    )
