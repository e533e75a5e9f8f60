"""A libvirt host as a target: volumes uploaded into a storage pool, the domain defined.

Everything goes through libvirt's API (Debian ``python3-libvirt``), so the same code
serves ``qemu:///system`` and ``qemu+ssh://host/system``: the volume is created with
``storageVolCreateXML`` and filled by ``virStorageVolUpload`` over a ``virStream`` in
sparse mode (``VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM``: the holes of the local file are
sent as hole lengths, not zeros), and the domain XML names the path libvirt reports for
the volume (``vol.path()``), never one guessed from the pool's directory.

:meth:`LibvirtHost.land` is all or nothing: on any failure (no room in the pool, the
connection lost, a definition libvirt refuses, Ctrl-C) every volume it created is
deleted and the domain it defined is undefined before the error is raised.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from .. import deps, interrupt
from ..errors import (
    ConversionError,
    InsufficientSpaceError,
    TargetUnreachableError,
    UsageError,
)
from ..progress import Meter, ProgressCallback
from ..uris import redact

log = logging.getLogger("p2vimage")
# An ssh connection turned away for good (host key, our key): a usage error, not a
# temporary one a fleet would retry.
_REFUSED = re.compile(r"host key verification failed|remote host identification has "
                      r"changed|permission denied \(publickey", re.I)

__all__ = ["Landed", "LibvirtHost", "VolumeUpload", "virtual_size"]

_QCOW2_MAGIC = b"QFI\xfb"


def virtual_size(path: Path, fmt: str) -> int:
    """The disk size the guest sees: a raw file's length, a qcow2 header's size field."""
    with open(path, "rb") as f:
        if fmt == "qcow2":
            head = f.read(32)
            if head[:4] != _QCOW2_MAGIC:
                raise ConversionError(f"{path}: not a qcow2 image")
            return int(struct.unpack(">Q", head[24:32])[0])
        return os.fstat(f.fileno()).st_size


@dataclass(frozen=True)
class VolumeUpload:
    """One local disk image to become the volume ``name`` (format ``fmt``)."""

    path: Path
    fmt: str
    name: str


@dataclass
class Landed:
    """What :meth:`LibvirtHost.land` created: the volumes' paths and the domain, and
    the XML as libvirt holds it; :meth:`undo` removes them again (used when a later
    step of the conversion fails)."""

    host: LibvirtHost
    volumes: list[Any] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    domain: Any = None
    xml: str = ""
    started: bool = False

    def undo(self) -> None:
        self.host.remove(self.domain, self.volumes)
        self.domain, self.volumes = None, []


class LibvirtHost:
    """One connection to a libvirt host; use as a context manager (closes it)."""

    def __init__(self, uri: str) -> None:
        self.libvirt = deps.libvirt()
        self.uri = uri
        self.display = redact(uri)  # for messages: no password
        self.conn = None
        try:
            self.conn = self.libvirt.open(uri)
        except self.libvirt.libvirtError as exc:
            msg = _message(exc)
            if _REFUSED.search(msg):  # retrying would not help: the user must act
                raise UsageError(f"libvirt at {self.display} refused us: {msg} (check the "
                                 "host key in known_hosts and the ssh key)") from None
            raise TargetUnreachableError(
                f"cannot connect to libvirt at {self.display}: {msg}") from None

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except self.libvirt.libvirtError:
                pass
            self.conn = None

    def __enter__(self) -> LibvirtHost:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- before any work --------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """The host is this machine (no transport, no host name in the URI): its files
        are ours to look at."""
        u = urlsplit(self.uri)
        return "+" not in u.scheme.replace("+unix", "") and not u.hostname

    def pool(self, name: str) -> Any:
        """The running storage pool ``name`` (refreshed: other writers change it)."""
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except self.libvirt.libvirtError:
            names = sorted(self.conn.listStoragePools() + self.conn.listDefinedStoragePools())
            raise UsageError(f"--pool {name}: no such storage pool at {self.display} (pools: "
                             f"{', '.join(names) or 'none'})") from None
        if not pool.isActive():
            raise UsageError(f"--pool {name}: the storage pool is not running at {self.display} "
                             f"(virsh pool-start {name})")
        pool.refresh(0)
        return pool

    def check_free(self, pool: Any, domain: str, volumes: list[str], *,
                   overwrite: bool) -> None:
        """A domain or volume of these names is refused (UsageError) unless ``overwrite``."""
        if overwrite:
            return
        if self._domain(domain) is not None:
            raise UsageError(f"a domain named {domain!r} already exists at {self.display} (choose "
                             "another --name, or --overwrite to replace it)")
        for name in volumes:
            if self._volume(pool, name) is not None:
                raise UsageError(f"a volume named {name!r} already exists in pool "
                                 f"{pool.name()} (choose another --name, or --overwrite)")

    def check_space(self, pool: Any, needed: int) -> None:
        """Refuse a pool with less room than the conversion's bound on what it uploads."""
        available = int(pool.info()[3])
        if available < needed:
            raise InsufficientSpaceError(
                f"storage pool {pool.name()} at {self.display} has {available >> 20} MiB free, "
                f"the converted disks may need up to {needed >> 20} MiB",
                filesystem=f"pool {pool.name()}", needed=needed, available=available)

    def domain_type(self, requested: str, arch: str) -> tuple[str, str | None]:
        """``kvm`` or ``qemu`` and a warning: as requested, or for ``auto`` what the host's
        capabilities offer for ``arch`` (``i686``, ``x86_64``).  On a local host KVM is
        also tried (QEMU with ``-cpu host`` under KVM, stopped at once): ``/dev/kvm`` can
        exist and still make QEMU abort (nested KVM that refuses an MSR), and a domain
        that cannot start is no use."""
        if requested != "auto":
            return requested, None
        caps = etree.fromstring(self.conn.getCapabilities().encode())
        kvm = caps.xpath("guest[arch/@name=$a]/arch/domain[@type='kvm']", a=arch)
        if not kvm:
            return "qemu", None
        emulator = caps.xpath("string(guest[arch/@name=$a]/arch/emulator)", a=arch)
        if self.is_local and emulator and not kvm_starts(emulator):
            return "qemu", (f"KVM is offered but {emulator} fails with it on this host: "
                            "the domain is type qemu (TCG, slow)")
        return "kvm", None

    def has_file(self, path: str) -> bool:
        """Is ``path`` a file on the host: for a local URI the file exists, for a remote
        one a storage pool there holds it as a volume (libvirt's API sees no other file
        there).  A pool learns of a file copied into it only when refreshed, so a miss
        refreshes the running pools once and looks again."""
        if self.is_local:
            return os.path.isfile(path)
        lv = self.libvirt

        def in_a_pool() -> bool:
            try:
                self.conn.storageVolLookupByPath(path)
                return True
            except lv.libvirtError:
                return False

        if in_a_pool():
            return True
        try:
            pools = self.conn.listAllStoragePools(lv.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
        except lv.libvirtError:
            return False
        for pool in pools:
            try:
                pool.refresh(0)
            except lv.libvirtError:  # busy (an upload under way): it stays as it was
                pass
        return in_a_pool()

    # -- the landing ------------------------------------------------------------------

    def land(self, pool: Any, name: str, uploads: list[VolumeUpload],
             domain_xml: Callable[[list[str]], str], *, overwrite: bool = False,
             start: bool = False, progress: ProgressCallback | None = None) -> Landed:
        """Create and upload each volume, define the domain ``name`` with the volumes'
        paths (``domain_xml(paths)``), start it when asked.  All or nothing (with
        ``overwrite``, a domain and volumes of these names are removed first).
        ``progress`` gets the bytes of data sent per disk (phase ``upload disk i/n``);
        a Cancel or Ctrl-C stops the upload and removes what was created."""
        done = Landed(self)
        try:
            if overwrite:
                self._remove_existing(pool, name, uploads)
            for i, up in enumerate(uploads):
                vol = self._create(pool, up)
                done.volumes.append(vol)
                done.paths.append(vol.path())
                meter = Meter(progress, f"upload disk {i + 1}/{len(uploads)}",
                              os.stat(up.path).st_blocks * 512)
                self._upload(pool, vol, up, meter)
                meter.finish(total_was_bound=True)
            xml = domain_xml(done.paths)
            try:
                done.domain = self.conn.defineXML(xml)
            except self.libvirt.libvirtError as exc:
                raise ConversionError(f"libvirt refused the domain: {_message(exc)}") from None
            if start:
                try:
                    done.domain.create()
                except self.libvirt.libvirtError as exc:
                    raise ConversionError(f"the domain was defined but does not start: "
                                          f"{_message(exc)}") from None
                done.started = True
            done.xml = done.domain.XMLDesc(0)
        except BaseException:
            done.undo()
            raise
        return done

    def _create(self, pool: Any, up: VolumeUpload) -> Any:
        fmt = "qcow2" if up.fmt == "qcow2" else "raw"
        xml = (f"<volume><name>{_xml_text(up.name)}</name>"
               f"<capacity unit='bytes'>{virtual_size(up.path, up.fmt)}</capacity>"
               f"<allocation unit='bytes'>0</allocation>"
               f"<target><format type='{fmt}'/></target></volume>")
        try:
            return pool.createXML(xml, 0)
        except self.libvirt.libvirtError as exc:
            raise _pool_error(f"cannot create volume {up.name} in pool {pool.name()}",
                              exc) from None

    def _upload(self, pool: Any, vol: Any, up: VolumeUpload, meter: Meter) -> None:
        """The whole local file into the volume, its holes sent as holes.  A failure with
        the pool (nearly) full is no room, whatever words the stream's error has (the
        daemon reports ENOSPC as a write error, or the stream just breaks)."""
        lv = self.libvirt
        stream = self.conn.newStream(0)
        fd = os.open(up.path, os.O_RDONLY | os.O_CLOEXEC)
        finished = False
        try:
            vol.upload(stream, 0, 0, lv.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
            stream.sparseSendAll(_read, _hole, _skip, _Source(fd, meter))
            stream.finish()
            finished = True
        except lv.libvirtError as exc:
            what = f"upload of {up.path} into volume {up.name} failed"
            error = _pool_error(what, exc)
            if not isinstance(error, InsufficientSpaceError) and self._full(pool, up.path):
                error = InsufficientSpaceError(f"{what}: the pool's filesystem is full "
                                               f"({_message(exc)})")
            raise error from None
        finally:
            os.close(fd)
            if not finished:
                try:
                    stream.abort()
                except lv.libvirtError:
                    pass

    def _full(self, pool: Any, path: Path) -> bool:
        """Has the pool less room left than the file holds data?"""
        try:
            pool.refresh(0)
            return int(pool.info()[3]) < os.stat(path).st_blocks * 512
        except (self.libvirt.libvirtError, OSError):
            return False

    def _remove_existing(self, pool: Any, name: str, uploads: list[VolumeUpload]) -> None:
        """``--overwrite``: the old domain (stopped, undefined) and volumes go first."""
        old = self._domain(name)
        vols = [v for v in (self._volume(pool, u.name) for u in uploads) if v is not None]
        if old is not None or vols:
            log.warning("--overwrite: replacing %s", ", ".join(
                ([f"domain {name}"] if old is not None else [])
                + [f"volume {v.name()}" for v in vols]))
        self.remove(old, vols)

    def remove(self, domain: Any, volumes: list[Any]) -> None:
        """Stop and undefine ``domain``, delete ``volumes``; errors are logged, not
        raised (this runs while another error is on its way out)."""
        lv = self.libvirt
        if domain is not None:
            try:
                if domain.isActive():
                    domain.destroy()
                domain.undefineFlags(lv.VIR_DOMAIN_UNDEFINE_NVRAM
                                     | lv.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
            except lv.libvirtError as exc:
                log.warning("could not undefine domain %s: %s", domain.name(), _message(exc))
        for vol in volumes:
            try:
                vol.delete(0)
            except lv.libvirtError as exc:
                log.warning("could not delete volume %s: %s", vol.name(), _message(exc))

    def _domain(self, name: str) -> Any:
        try:
            return self.conn.lookupByName(name)
        except self.libvirt.libvirtError:
            return None

    def _volume(self, pool: Any, name: str) -> Any:
        try:
            return pool.storageVolLookupByName(name)
        except self.libvirt.libvirtError:
            return None


def kvm_starts(emulator: str) -> bool:
    """Does QEMU start a host-CPU vCPU under KVM here?  (It aborts at once when it does
    not; ``quit`` on the monitor ends it otherwise.)"""
    try:
        r = subprocess.run([emulator, "-machine", "pc,accel=kvm", "-cpu", "host", "-m", "64",
                            "-nodefaults", "-display", "none", "-S", "-monitor", "stdio"],
                           input="quit\n", capture_output=True, text=True, timeout=30,
                           check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


# -- the sparse stream's callbacks (libvirt-python's sparsestream example) --------------


@dataclass
class _Source:
    fd: int
    meter: Meter


def _read(_stream: Any, nbytes: int, src: _Source) -> bytes:
    interrupt.check()  # a Cancel or Ctrl-C: the stream is aborted, land() cleans up
    data = os.read(src.fd, nbytes)
    src.meter.add(len(data))
    return data


def _skip(_stream: Any, length: int, src: _Source) -> int:
    return os.lseek(src.fd, length, os.SEEK_CUR)


def _hole(_stream: Any, src: _Source) -> list[Any]:
    """``[in_data, length]`` of the section at the file offset (SEEK_DATA/SEEK_HOLE)."""
    fd = src.fd
    cur = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        data = os.lseek(fd, cur, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
        data = -1
    try:
        if data < 0:  # a trailing hole, or at the end
            return [False, os.lseek(fd, 0, os.SEEK_END) - cur]
        if data > cur:
            return [False, data - cur]
        return [True, os.lseek(fd, data, os.SEEK_HOLE) - data]
    finally:
        os.lseek(fd, cur, os.SEEK_SET)


def _message(exc: Exception) -> str:
    get = getattr(exc, "get_error_message", None)
    text = (get() if get else None) or str(exc)
    return " ".join(text.split())


def _pool_error(what: str, exc: Exception) -> Exception:
    text = _message(exc)
    if "No space left" in text or "Disk quota exceeded" in text:
        return InsufficientSpaceError(f"{what}: the pool's filesystem is full ({text})")
    return ConversionError(f"{what}: {text}")


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
