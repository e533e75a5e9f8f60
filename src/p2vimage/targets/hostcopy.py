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

import json
import logging
import os
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .. import deps, interrupt
from ..blockio import blockdev
from ..blockio.blockdev import create_qcow2
from ..blockio.nbd import NbdExport, libnbd
from ..errors import ConversionError, write_error
from ..formats.partition_table import DiskLayout, PartitionTableError, read_layout
from ..progress import Meter, ProgressCallback
from .extents import CopyPlan, Ranges, intersect, plan_disk, subtract, total, union

log = logging.getLogger("p2vimage")

REQUEST = 4 << 20  # bytes per read request
MAX_IN_FLIGHT = 32 << 20  # bytes of requests in flight: the copy's memory bound
ZERO_BLOCK = 64 << 10  # all-zero blocks this size (qcow2's cluster) are not written
STATE_ZERO = 2  # NBD base:allocation: reads as zeros (a hole, or zero clusters)
_BLOCK_STATUS_MAX = 1 << 30


class Output(Protocol):
    def write(self, offset: int, data: memoryview) -> None: ...
    def zero(self, offset: int, length: int) -> None: ...
    def finish(self) -> None: ...


_PUNCH = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


class RawOutput:
    """A sparse raw file (the claimed ``.partial``, opened in place) of ``size`` bytes;
    ``create=False`` reopens one an earlier pass wrote, as it is."""

    def __init__(self, path: Path, size: int, *, create: bool = True) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if create:
                os.ftruncate(self.fd, 0)
                os.ftruncate(self.fd, size)
        except OSError as exc:
            os.close(self.fd)
            raise write_error(f"cannot make a {size}-byte disk {path}: {exc.strerror}",
                              exc.errno) from None

    def write(self, offset: int, data: memoryview) -> None:
        try:
            os.pwrite(self.fd, data, offset)
        except OSError as exc:
            raise write_error(f"writing the output disk: {exc.strerror}",
                              exc.errno) from None

    def zero(self, offset: int, length: int) -> None:
        """Make the range read as zeros again: a hole (written zeros if the filesystem
        cannot punch one)."""
        try:
            _fallocate(self.fd, _PUNCH, offset, length)
        except OSError:
            empty = bytes(min(length, REQUEST))
            end = offset + length
            while offset < end:
                n = min(len(empty), end - offset)
                self.write(offset, memoryview(empty)[:n])
                offset += n

    def finish(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise write_error(f"writing the output disk: {exc.strerror}",
                              exc.errno) from None

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

    def zero(self, offset: int, length: int) -> None:
        self.disk.zero(length, offset)

    def finish(self) -> None:
        self.disk.flush()


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


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
        self.request, self.in_flight = REQUEST, MAX_IN_FLIGHT  # the sizes it was made for
        self.arrays = [bytearray(REQUEST) for _ in range(max(1, MAX_IN_FLIGHT // REQUEST))]
        self.free = list(range(len(self.arrays)))
        self._buffers: dict[tuple[int, int], tuple[Any, memoryview]] = {}

    def buffer(self, slot: int, n: int) -> tuple[Any, memoryview]:
        if n > len(self.arrays[slot]):
            raise ValueError(f"a {n}-byte request does not fit the pool's "
                             f"{len(self.arrays[slot])}-byte buffers")
        key = (slot, n)
        got = self._buffers.get(key)
        if got is None:
            view = memoryview(self.arrays[slot])[:n]
            got = self._buffers[key] = (self.nbd.Buffer.from_buffer(view), view)
        return got


# python3-libnbd 1.14 never releases a buffer handed to ``aio_pread`` (not even when the
# handle is gone), so a pool, once used, is leaked memory: it is kept here and handed to
# the next copy of this process instead of making another (every disk, both passes).
# One pool per copy running at the same moment; never more than that many exist.
_idle_pools: list[_Slots] = []
_pools_lock = threading.Lock()


def _take_pool(nbd: Any) -> _Slots:
    with _pools_lock:
        for i, pool in enumerate(_idle_pools):  # one made for today's request sizes
            if pool.nbd is nbd and (pool.request, pool.in_flight) == (REQUEST, MAX_IN_FLIGHT):
                return _idle_pools.pop(i)
    return _Slots(nbd)


def _give_back(pool: _Slots) -> None:
    pool.free = list(range(len(pool.arrays)))
    with _pools_lock:
        _idle_pools.append(pool)


def copy_extents(src: Any, out: Output, extents: list[tuple[int, int]], meter: Meter, *,
                 overwrite: bool = False, cancel: threading.Event | None = None) -> CopyStats:
    """Read ``extents`` from ``src`` (libnbd), write their non-zero blocks to ``out``.

    Up to ``MAX_IN_FLIGHT`` bytes of reads are in flight; each completed read goes to
    a writer thread (all-zero blocks skipped), which hands its buffer back for the next
    request, so reading and writing overlap.  The writer is the only user of ``out``.
    ``overwrite``: the output already holds data there (a second pass), so all-zero
    blocks are zeroed rather than skipped.  ``cancel``: set by another thread to stop.
    """
    nbd = libnbd()
    stats = CopyStats()
    t0 = time.monotonic()
    slots = _take_pool(nbd)
    writes: queue.Queue[tuple[int, int, int] | None] = queue.Queue()
    returned: queue.Queue[int] = queue.Queue()
    failed: list[BaseException] = []

    def writer() -> None:
        while (item := writes.get()) is not None:
            slot, off, n = item
            try:
                if not failed:
                    buf, view = slots.buffer(slot, n)
                    done = 0
                    for a, b in _nonzero_blocks(buf, n):
                        if overwrite and a > done:
                            out.zero(off + done, a - done)
                        out.write(off + a, view[a:b])
                        stats.bytes_written += b - a
                        done = b
                    if overwrite and done < n:
                        out.zero(off + done, n - done)
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                failed.append(exc)
            finally:
                returned.put(slot)

    thread = interrupt.start_thread(writer, "p2vimage copy writer")
    clean = False
    try:
        _read_all(src, nbd, slots, _pieces(extents), writes, returned, failed, stats, meter,
                  cancel)
        clean = True
    finally:
        writes.put(None)
        thread.join()
        if clean:  # (after an error reads may still be in flight into the pool's memory)
            _give_back(slots)
    if failed:
        raise failed[0]
    out.finish()
    stats.seconds = time.monotonic() - t0
    meter.finish()
    return stats


def _read_all(src: Any, nbd: Any, slots: _Slots, pieces: Iterator[tuple[int, int]],
              writes: queue.Queue[tuple[int, int, int] | None], returned: queue.Queue[int],
              failed: list[BaseException], stats: CopyStats, meter: Meter,
              cancel: threading.Event | None = None) -> None:
    def check() -> None:
        interrupt.check()
        if cancel is not None and cancel.is_set():
            raise Cancelled("the copy was cancelled")

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
            check()
            continue
        try:
            src.poll(1000)
            finished = [item for item in flying if src.aio_command_completed(item[0])]
        except nbd.Error as exc:
            check()
            raise _source_error(exc, flying[0][2]) from None
        check()
        for item in finished:
            flying.remove(item)
            _cookie, slot, off, n = item
            writes.put((slot, off, n))
            stats.bytes_read += n
            meter.add(n)


class Cancelled(Exception):
    """The copy was stopped by its owner (another thread failed, or stopped first)."""


def _source_error(exc: Exception, offset: int | None) -> ConversionError:
    where = f" at byte {offset}" if offset is not None else ""
    return ConversionError(f"reading the disk over NBD{where}: {blockdev.reason(exc)} "
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
    # Two passes (the first while the appliance worked): bytes read by each, the bytes
    # of the first pass made zeros again (clusters the edits freed), its seconds.
    first_pass_bytes: int | None = None
    second_pass_bytes: int | None = None
    zeroed_bytes: int | None = None
    first_pass_seconds: float | None = None

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
        with _output(dest, fmt, out_size, workdir, create=True) as out:
            stats = copy_extents(src, out, plan.extents, meter)
    return DiskCopy(
        device=layout.device, size=layout.size, ntfs_bytes=plan.ntfs_bytes,
        other_bytes=plan.other_bytes, bytes_read=stats.bytes_read,
        bytes_written=stats.bytes_written, seconds=round(stats.seconds, 3),
        throughput_mib_s=round(stats.throughput / (1 << 20), 1),
        whole_volumes=plan.whole_volumes, plan_seconds=round(t_plan, 3),
        warnings=plan.warnings,
    )


# -- two passes: the copy runs while the appliance works -------------------------------
#
# The first pass copies the *source* (not yet edited) while the appliance inspects,
# plans and applies on the overlay; the second, once the appliance has stopped,
# brings the output to exactly what :func:`copy_disk` would have written from the
# edited overlay: with P the ranges the first pass copied, Q the ranges of the edited
# disk's own plan and W the ranges the appliance wrote (the overlay's own clusters),
# it copies (Q - P) + (W & Q) from the overlay and zeroes P - Q (clusters the edits
# freed).  Outside W the overlay reads as the source, so every byte of Q is the
# edited guest's and every byte outside it reads as zeros, as in one pass.


@dataclass
class FirstPass:
    """What the first pass wrote into one output."""

    device: str
    size: int  # the output's size
    extents: Ranges  # P: the ranges read from the source (their non-zero blocks written)
    stats: CopyStats
    plan_seconds: float


def first_pass(source: Path, source_fmt: str, device: str, dest: Path, fmt: str,
               out_size: int | None, workdir: Path, *, label: str,
               progress: ProgressCallback | None,
               cancel: threading.Event | None = None) -> FirstPass:
    """Copy the used data of the unedited ``source`` into the new output ``dest``."""
    t0 = time.monotonic()
    with NbdExport(source, source_fmt, workdir, label=f"the source of {device}") as src:
        layout, plan = plan_copy(src, device)
        out_size = out_size or layout.size
        if out_size < layout.size:
            plan.clip(out_size)
        t_plan = time.monotonic() - t0
        meter = Meter(progress, label, plan.total)
        with _output(dest, fmt, out_size, workdir, create=True) as out:
            stats = copy_extents(src, out, plan.extents, meter, cancel=cancel)
    return FirstPass(device, out_size, plan.extents, stats, t_plan)


def second_pass(overlay: Path, first: FirstPass, dest: Path, fmt: str, workdir: Path, *,
                label: str, progress: ProgressCallback | None) -> DiskCopy:
    """Bring ``dest`` (written by :func:`first_pass`) to the edited ``overlay``."""
    t0 = time.monotonic()
    written = changed_ranges(overlay)
    with NbdExport(overlay, "qcow2", workdir, label=f"the edited {first.device}") as src:
        layout, plan = plan_copy(src, first.device)
        if first.size < layout.size:
            plan.clip(first.size)
        final = plan.extents
        again = union(subtract(final, first.extents), intersect(written, final))
        stale = subtract(first.extents, final)
        t_plan = time.monotonic() - t0
        meter = Meter(progress, label, total(again))
        with _output(dest, fmt, first.size, workdir, create=False) as out:
            for off, n in stale:
                _zero(out, off, n)
            stats = copy_extents(src, out, again, meter, overwrite=True)
    read = first.stats.bytes_read + stats.bytes_read
    seconds = first.stats.seconds + stats.seconds
    return DiskCopy(
        device=layout.device, size=layout.size, ntfs_bytes=plan.ntfs_bytes,
        other_bytes=plan.other_bytes, bytes_read=read,
        bytes_written=first.stats.bytes_written + stats.bytes_written,
        seconds=round(seconds, 3),
        throughput_mib_s=round(read / seconds / (1 << 20), 1) if seconds > 0 else 0.0,
        whole_volumes=plan.whole_volumes, plan_seconds=round(first.plan_seconds + t_plan, 3),
        warnings=plan.warnings, first_pass_bytes=first.stats.bytes_read,
        second_pass_bytes=stats.bytes_read, zeroed_bytes=total(stale),
        first_pass_seconds=round(first.stats.seconds, 3),
    )


def _zero(out: Output, offset: int, length: int) -> None:
    end = offset + length
    while offset < end:  # NBD servers cap one request's length
        n = min(end - offset, _BLOCK_STATUS_MAX)
        out.zero(offset, n)
        offset += n


class _output:  # noqa: N801 - used as a context manager, like open()
    """The output disk as an :class:`Output`: ``create`` makes it (sparse raw, or an
    empty qcow2), else an earlier pass's output is reopened as it is."""

    def __init__(self, dest: Path, fmt: str, size: int, workdir: Path, *, create: bool) -> None:
        self.dest, self.fmt, self.size, self.workdir, self.create = dest, fmt, size, workdir, create
        self.raw: RawOutput | None = None
        self.export: NbdExport | None = None

    def __enter__(self) -> Output:
        if self.fmt == "raw":
            self.raw = RawOutput(self.dest, self.size, create=self.create)
            return self.raw
        if self.create:
            create_qcow2(self.dest, self.size)
        self.export = NbdExport(self.dest, "qcow2", self.workdir, writable=True,
                                label=self.dest.name)
        return NbdOutput(self.export.__enter__())

    def __exit__(self, *exc: object) -> None:
        if self.raw is not None:
            self.raw.close()
        if self.export is not None:
            self.export.__exit__(*exc)  # type: ignore[arg-type]


def changed_ranges(overlay: Path) -> Ranges:
    """The ranges the appliance wrote: the clusters held by the overlay itself (depth 0
    in ``qemu-img map``), not read through to its backing file."""
    qemu_img = deps.require_program("qemu-img")
    proc = subprocess.run([qemu_img, "map", "--output=json", "-f", "qcow2", str(overlay)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["qemu-img map failed"])[-1]
        raise ConversionError(f"reading which clusters the edits changed: {msg}")
    return union([(int(e["start"]), int(e["length"])) for e in json.loads(proc.stdout)
                  if e.get("depth") == 0 and e.get("present", True)], [])


class BackgroundCopy:
    """The first passes of a job's disks, run in a thread while the appliance works.

    ``with BackgroundCopy(disks, ...) as bg:`` starts it; :meth:`result` waits and
    returns each disk's :class:`FirstPass` (raising the thread's error, if any);
    leaving the block any other way cancels the copy and waits for the thread, so no
    NBD server outlives it.  Progress is reported from the thread.
    """

    def __init__(self, disks: list[tuple[int, Path, str, str, Path, int | None]], fmt: str,
                 workdir: Path, progress: ProgressCallback | None) -> None:
        self.disks = disks  # (slot, source, source format, device, output, out size)
        self.fmt, self.workdir, self.progress = fmt, workdir, progress
        self.cancel = threading.Event()
        self.done: dict[int, FirstPass] = {}
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> BackgroundCopy:
        self.thread = interrupt.start_thread(self._run, "p2vimage first copy pass")
        return self

    def _run(self) -> None:
        try:
            for n, (slot, src, sfmt, device, out, size) in enumerate(self.disks, 1):
                log.info("first pass: copy disk %d of %d from the source while the appliance "
                         "works", n, len(self.disks))
                self.done[slot] = first_pass(
                    src, sfmt, device, out, self.fmt, size, self.workdir,
                    label=f"copy disk {n}/{len(self.disks)}", progress=self.progress,
                    cancel=self.cancel)
        except BaseException as exc:  # noqa: BLE001 - handed to the job's thread
            self.error = exc

    def result(self) -> dict[int, FirstPass]:
        assert self.thread is not None
        while self.thread.is_alive():
            self.thread.join(0.2)
            interrupt.check()
        if self.error is not None:
            raise self.error
        return self.done

    def __exit__(self, *exc: object) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.cancel.set()
            self.thread.join()
