"""Turn ``convert``'s source arguments into SourceImages, restoring Clonezilla directories.

A disk image file is opened as it is (:func:`open_source`).  A Clonezilla image
directory becomes one source per disk it holds: each is first rebuilt into a
sparse raw file in a temporary directory beside the output (same filesystem,
so no space is needed elsewhere and the thin copy reads it quickly), which
the job then uses as a read-only base under its overlay.  The temporaries go
away when the conversion ends, on success, error or interrupt.

A network source (``ssh://``, ``nbd://``, ``nbd+unix://``, ``http(s)://``) is opened
here too (:mod:`.network`): its nbdkit runs, read-only, from the construction of the
set to its close, and its ``SourceImage`` is a local qcow2 handle backed by that
server.  A job that fails because such a source stopped answering for good ends in
:class:`~p2vimage.errors.SourceUnreachableError` (exit 5), raised by ``__exit__``.

Work is split in two steps so every cheap check (metadata of the directory,
output paths, options) runs before the minutes a restore may take.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from ..errors import (
    Interrupted,
    P2VError,
    SourceUnreachableError,
    UnsupportedFormatError,
    UsageError,
)
from ..progress import ProgressCallback
from .image import SourceImage, allocated_bound, open_source
from .network import NetworkSource
from .network import retry_window as network_retry_window
from .uri import is_uri

log = logging.getLogger(__name__)


class SourceSet:
    """The sources of one conversion: placeholders first, restored disks after :meth:`restore`."""

    def __init__(self, args: list[str | os.PathLike[str]], source_format: str | None, *,
                 ssh_identity: str | os.PathLike[str] | None = None,
                 ssh_known_hosts: str | os.PathLike[str] | None = None) -> None:
        from .clonezilla import metadata

        self._disks: dict[int, metadata.DiskImage] = {}
        self.sources: list[SourceImage] = []
        self._tmp: Path | None = None
        self._bounds: dict[int, int] | None = None
        self.restored_bytes: dict[int, int] = {}
        # Network sources by source index; their servers run until close().
        self.network: dict[int, NetworkSource] = {}
        try:
            self._open(args, source_format, ssh_identity, ssh_known_hosts)
        except BaseException:
            self.close()
            raise

    def _open(self, args: list[str | os.PathLike[str]], source_format: str | None,
              ssh_identity: str | os.PathLike[str] | None,
              ssh_known_hosts: str | os.PathLike[str] | None) -> None:
        from .clonezilla import metadata

        for arg in args:
            if is_uri(arg):
                assert isinstance(arg, str)
                ns = NetworkSource(arg, source_format=source_format,
                                   ssh_identity=ssh_identity, ssh_known_hosts=ssh_known_hosts)
                self.network[len(self.sources)] = ns  # closed by close() from now on
                self.sources.append(ns.open())
                continue
            p = Path(arg)
            if not p.is_dir():
                self.sources.append(open_source(p, source_format))
                continue
            if not metadata.looks_like_clonezilla(p):
                raise UnsupportedFormatError(
                    f"{p}: is a directory, but not a Clonezilla image directory (no 'disk'/"
                    "'parts' list and '<disk>-pt.sf'); give a disk image file or such a directory"
                )
            if source_format:
                raise UsageError(f"--source-format does not apply to the Clonezilla directory {p}")
            for disk in metadata.list_disks(p):
                img = metadata.load(p, disk)
                if img.sector_size != metadata.SECTOR:
                    # The appliance and the domain XML would see 512-byte sectors, and
                    # no table or NTFS on the disk would read right.
                    raise UnsupportedFormatError(
                        f"{p}: disk {img.disk} has {img.sector_size}-byte sectors, which "
                        "convert does not handle yet; 'p2vimage restore-clonezilla' restores "
                        f"it for a VM with logical_block_size={img.sector_size}"
                    )
                self._disks[len(self.sources)] = img
                # Until restored, the source stands for the directory (output checks use it).
                self.sources.append(SourceImage(p, "raw", img.size, 0, True, origin=p,
                                                disk=img.disk))

    @property
    def has_directories(self) -> bool:
        return bool(self._disks)

    @property
    def system_disk_by_inspection(self) -> bool:
        """Whether the inspection, not the argument order, decides the system disk.

        Image files are the user's order: they may know the machine booted from
        another disk than Windows' (a boot loader on disk 1, Windows on disk 2).
        A Clonezilla directory lists its disks in the capture kernel's order
        (``sda sdb``), which says nothing about which one held Windows.
        """
        return self.has_directories

    def check_outputs(self, outputs: list[Path]) -> None:
        """The source directory is never written: no output may land inside it."""
        for img in self._disks.values():
            for o in outputs:
                if Path(o).resolve().is_relative_to(img.directory.resolve()):
                    raise UsageError(f"output {o} is inside the source directory {img.directory}")

    def directory_bounds(self) -> dict[int, int]:
        """Per Clonezilla disk (by source index): bytes its temporary raw allocates at most,
        from the partition images' headers (nothing is decompressed beyond them)."""
        from .clonezilla.restore import raw_bound

        if self._bounds is None:
            self._bounds = {i: raw_bound(img) for i, img in self._disks.items()}
        return self._bounds

    def data_bounds(self) -> list[int]:
        """Per source disk: an upper bound of the guest data a thin copy of it writes."""
        dirs = self.directory_bounds()
        return [dirs[i] if i in dirs else allocated_bound(s.path, s.format)
                for i, s in enumerate(self.sources)]

    def restore(self, scratch_parent: Path,
                progress: ProgressCallback | None = None) -> list[SourceImage]:
        """Rebuild every Clonezilla disk into a temporary sparse raw; return the final sources."""
        from .clonezilla.restore import restore_raw

        if not self._disks:
            return self.sources
        self._tmp = Path(tempfile.mkdtemp(prefix=".p2vimage-clonezilla-", dir=scratch_parent))
        for i, img in self._disks.items():
            raw = self._tmp / f"source-{i}-{img.disk}.raw"
            log.info("restoring %s (%s) into %s", img.directory, img.disk, raw)
            restore_raw(img, raw, progress=progress)
            for w in img.warnings:
                log.warning("%s: %s", img.directory, w)
            self.sources[i] = replace(self.sources[i], path=raw,
                                      actual_size=raw.stat().st_blocks * 512)
        return self.sources

    def restore_in_place(self, outputs: list[Path], fmt: str,
                         progress: ProgressCallback | None = None) -> set[int]:
        """Rebuild every Clonezilla disk straight into its output file (``outputs[i]`` for
        source ``i``, a claimed ``.partial``), in ``fmt``.  The job then edits these
        files in place: no temporary raw, no second copy.  Returns the indexes restored."""
        from .clonezilla.restore import restore_disk

        for i, img in self._disks.items():
            log.info("restoring %s (%s) into %s", img.directory, img.disk, outputs[i])
            parts = restore_disk(img, outputs[i], fmt, progress=progress)
            for w in img.warnings:
                log.warning("%s: %s", img.directory, w)
            self.restored_bytes[i] = sum(p.used_bytes for p in parts)
            self.sources[i] = replace(self.sources[i], path=outputs[i], format=fmt,
                                      actual_size=outputs[i].stat().st_blocks * 512)
        return set(self._disks)

    def network_bytes_read(self) -> dict[int, int]:
        """Per network source (by source index): bytes read from it so far, retried
        reads included; live while the set is open, final after :meth:`close`."""
        return {i: ns.bytes_read() for i, ns in self.network.items()}

    def close(self) -> None:
        for ns in self.network.values():
            ns.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @contextmanager
    def watch(self, on_gone: Callable[[NetworkSource], None],
              interval: float = 0.5) -> Iterator[None]:
        """While the block runs, call ``on_gone(source)`` once (from a watchdog thread)
        when a network source is gone for good (:meth:`NetworkSource.gone`); nothing to
        watch without network sources."""
        if not self.network:
            yield
            return
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(interval):
                for ns in self.network.values():
                    if ns.gone():
                        log.warning("%s: no read has worked for %.0f s: stopping the job",
                                    ns.display, network_retry_window())
                        on_gone(ns)
                        return

        thread = threading.Thread(target=run, name="p2vimage source watchdog", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def __enter__(self) -> SourceSet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        gone = [ns for ns in self.network.values() if ns.failed_for_good()]
        self.close()
        if (gone and isinstance(exc, (P2VError, RuntimeError, OSError)) and not isinstance(
                exc, (SourceUnreachableError, UsageError, Interrupted))):
            # The job failed because a source stopped answering after its retries (an
            # I/O error in the appliance or the copy, or the appliance stopped by the
            # watchdog of :meth:`watch`): a temporary failure, exit 5, saying which.
            raise gone[0].unreachable_error(exc) from exc


@dataclass
class Opened:
    """The one source of a read-only job (``inspect``, ``check``), and its network
    source's watchdog, when it has one."""

    source: SourceImage
    sources: SourceSet | None = None  # a network source's set; None for a file

    def watch(self, abort: Callable[[str], None]) -> contextlib.AbstractContextManager[None]:
        """While the block runs, call ``abort(reason)`` once if the network source is
        gone for good (see :meth:`SourceSet.watch`): the job's ``Job.abort``, so an
        inspection of a source that died ends in seconds, not after the appliance's
        kernel has given up on each sector."""
        if self.sources is None:
            return contextlib.nullcontext()
        return self.sources.watch(lambda ns: abort(f"{ns.display} stopped answering"))


@contextmanager
def opened(path: str | os.PathLike[str], source_format: str | None = None, *,
           ssh_identity: str | os.PathLike[str] | None = None,
           ssh_known_hosts: str | os.PathLike[str] | None = None) -> Iterator[Opened]:
    """One source for a read-only job (``inspect``, ``check``): an image file, or a
    network URI whose server runs for the duration of the ``with`` block."""
    if not is_uri(path):
        yield Opened(open_source(path, source_format))
        return
    with SourceSet([path], source_format, ssh_identity=ssh_identity,
                   ssh_known_hosts=ssh_known_hosts) as sources:
        yield Opened(sources.sources[0], sources)
