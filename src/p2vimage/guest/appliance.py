"""The job: one libguestfs appliance, the source behind it, mounts and hives.

Every step receives the :class:`Job`; none opens an appliance of its own, so a
whole inspection or conversion costs one launch (``appliance_launches``).

Launch fallback: on hosts where KVM exists but qemu cannot use it (nested
virtualisation that aborts with "failed to set MSR 0x10a"), libguestfs fails
the launch.  A failed libguestfs handle cannot be launched again (it forgets
its drives), so we build a fresh handle with ``force_tcg`` and retry once,
logging why.  A user's ``LIBGUESTFS_BACKEND_SETTINGS`` is honoured as set.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import deps, interrupt
from ..errors import (
    ApplianceError,
    ConversionError,
    CorruptHiveError,
    CorruptImageError,
    MultipleRootsError,
    NoOperatingSystemError,
    UsageError,
)
from ..formats import ntfs_volume
from ..formats.hibernation import is_hibernated
from ..sources.image import SourceImage
from . import files, windows_root
from .disks import DiskInfo, disk_index, disk_of, read_disk
from .registry import Hive
from .view import GuestView
from .windows_root import WindowsRoot, product_name

log = logging.getLogger("p2vimage")

TCG_SETTING = "force_tcg"


@dataclass(frozen=True)
class Drive:
    path: str
    format: str
    readonly: bool
    name: str = ""


@dataclass
class LaunchStats:
    launch_attempts: int = 0
    appliance_launches: int = 0
    accelerator: str | None = None  # "kvm" or "tcg"
    fallback_reason: str | None = None


def _tcg_forced(settings: list[str]) -> bool:
    return any(s.strip() == TCG_SETTING for s in settings)


def launch_with_fallback(
    new_handle: Callable[[list[str] | None], Any],
    stats: LaunchStats,
    env_settings: str | None = None,
) -> Any:
    """Launch an appliance, retrying once under TCG when the first launch fails.

    ``new_handle(extra_settings)`` builds a configured handle (drives added);
    ``extra_settings`` is None for the first try and ``["force_tcg"]`` for the
    retry.  The retry happens only when TCG was not already in force: a TCG
    launch that fails is a real error, not an accelerator problem.
    """
    if env_settings is None:
        env_settings = os.environ.get("LIBGUESTFS_BACKEND_SETTINGS", "")
    user_settings = [s for s in env_settings.split(":") if s]
    first_is_tcg = _tcg_forced(user_settings)
    g = new_handle(None)
    stats.launch_attempts += 1
    try:
        g.launch()
        stats.appliance_launches += 1
        stats.accelerator = "tcg" if first_is_tcg else "kvm-or-default"
        return _quiet(g)
    except RuntimeError as exc:
        first_error = _launch_error_text(g, exc)
        _close_quietly(g)
        if first_is_tcg:
            raise ApplianceError(
                f"the libguestfs appliance failed to start: {first_error}"
            ) from exc
    log.warning(
        "appliance launch failed (%s); KVM is probably unusable on this host, "
        "retrying once with TCG software emulation (slower)",
        first_error,
    )
    stats.fallback_reason = first_error
    g = new_handle([TCG_SETTING])
    stats.launch_attempts += 1
    try:
        g.launch()
    except RuntimeError as exc:
        second_error = _launch_error_text(g, exc)
        _close_quietly(g)
        raise ApplianceError(
            f"the libguestfs appliance failed to start, with KVM ({first_error}) and with TCG "
            f"({second_error}); run libguestfs-test-tool for details"
        ) from exc
    stats.appliance_launches += 1
    stats.accelerator = "tcg"
    return _quiet(g)


def _quiet(g: Any) -> Any:
    """After launch, stop the verbose appliance chatter used to explain launch failures."""
    if hasattr(g, "set_verbose"):
        g.set_verbose(False)
    handle = getattr(g, "_p2v_event_handle", None)
    if handle is not None:
        g.delete_event_callback(handle)
    return g


def _capture_launch_errors(g: Any, guestfs: Any) -> None:
    """Keep qemu's own error lines, so a failed launch says *why* (e.g. the MSR abort).

    libguestfs only reports "guestfs_launch failed"; the reason is in the
    appliance's output, which it passes to event callbacks in verbose mode.
    """
    lines: list[str] = []
    g._p2v_launch_errors = lines  # read by _launch_error_text

    def on_event(_ev: int, _eh: int, buf: bytes | str, _array: Any) -> None:
        text = buf.decode(errors="replace") if isinstance(buf, bytes) else str(buf)
        for line in text.splitlines():
            low = line.lower()
            if "qemu" in low and ("error" in low or "abort" in low or "assert" in low):
                lines.append(line.strip())

    g.set_verbose(True)
    g._p2v_event_handle = g.set_event_callback(
        on_event, guestfs.EVENT_APPLIANCE | guestfs.EVENT_LIBRARY
    )


def _launch_error_text(g: Any, exc: Exception) -> str:
    captured = getattr(g, "_p2v_launch_errors", None)
    if captured:
        return captured[0]
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def guest_is_hibernated(g: Any, root: str = "/") -> bool:
    """Whether the volume mounted at ``root`` in appliance ``g`` holds a hibernation image."""
    try:
        path = g.case_sensitive_path(root.rstrip("/") + "/hiberfil.sys")
        if not g.is_file(path):
            return False
        return is_hibernated(g.pread(path, 4, 0))
    except RuntimeError:
        return False


def _qemu_processes() -> list[int]:
    """PIDs of this user's running ``qemu-system-*`` processes."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv0 = (d / "cmdline").read_bytes().split(b"\0", 1)[0]
            if os.path.basename(argv0).startswith(b"qemu-system") and \
                    d.stat().st_uid == os.getuid():
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def new_guestfs(guestfs: Any) -> Any:
    """A new ``guestfs.GuestFS(python_return_dict=True)`` that a Ctrl-C cannot leave
    half-made.

    The binding's constructor creates the C handle, then stores it in ``_o``; a
    signal's KeyboardInterrupt raised as the C call returns left an object without
    ``_o``, whose ``__del__`` then printed an AttributeError trace on the user's
    terminal (the corpus's "SIGINT while the appliance starts" met it).  The handle
    is made of a subclass whose class attribute ``_o = None`` stands in until the
    constructor stores the real one, so such an object has nothing to close (the C
    handle, not yet launched, is closed by libguestfs at exit)."""
    return _handle_class(guestfs)(python_return_dict=True)


@functools.cache
def _handle_class(guestfs: Any) -> type:
    class Handle(guestfs.GuestFS):  # type: ignore[misc,name-defined]
        _o = None

    return Handle


def _binding(g: Any) -> Any:
    """The C module behind handle ``g``'s class (``libguestfsmod``), or None."""
    for cls in type(g).__mro__:
        native = getattr(sys.modules.get(cls.__module__), "libguestfsmod", None)
        if native is not None:
            return native
    return None


def _close_quietly(g: Any) -> None:
    """Close handle ``g`` exactly once, whatever interrupts it.

    The binding's ``close()`` frees the C handle and *then* marks the object closed.
    Python runs a signal's handler right after a C call returns, and closing waits
    for qemu to exit (a long window), so a Ctrl-C during the close raised
    KeyboardInterrupt between the two: the object stayed marked open and its
    ``__del__`` later freed the handle a second time, aborting the process (CI met
    it when SIGINT landed in a conversion's appliance close).  So the object is
    marked closed first and the C handle closed after; an interrupt in between
    leaves the handle to libguestfs' own close at exit, never to a second free."""
    native = _binding(g)
    raw = getattr(g, "_o", None)
    if native is None or raw is None:  # not the binding we know: its own close()
        try:
            g.close()
        except Exception:  # noqa: BLE001 - a dead handle may refuse anything
            pass
        return
    g._o = None  # from here on __del__ has nothing to close
    try:
        native.close(raw)
    except Exception:  # noqa: BLE001 - a dead handle may refuse anything
        pass


@dataclass
class Job:
    """One unit of work on one machine's disks.

    ``writable=False``: the source is attached read-only (libguestfs keeps
    writes in a throw-away snapshot).  ``writable=True``: a qcow2 overlay over
    the source is created in the job's work directory and attached instead, so
    changes land in the overlay and never in the source.
    """

    sources: list[SourceImage]
    writable: bool = False
    root: str | None = None
    workdir: Path | None = None
    # Sources that are the job's own new outputs (a Clonezilla disk restored into its
    # output file): attached as they are and edited in place, no overlay.
    in_place: frozenset[int] = frozenset()
    stats: LaunchStats = field(default_factory=LaunchStats)
    g: Any = None
    overlays: list[Path] = field(default_factory=list)
    root_device: str | None = None
    hives: dict[str, Hive] = field(default_factory=dict)
    # The disks as read on the host before launch (partition tables, boot sectors).
    disks: list[DiskInfo] = field(default_factory=list)
    # The chosen installation (its system root and hive paths), once find_root ran.
    windows: WindowsRoot | None = None
    _own_workdir: bool = False
    _roots: list[str] | None = None  # inspect_os' roots, when the fallback ran
    _found: dict[str, WindowsRoot | None] = field(default_factory=dict)  # probed partitions
    _mounted: bool = False
    _mounted_ro: str | None = None  # a partition left mounted read-only by the probe
    # Why the job was stopped from another thread (:meth:`abort`), once it was.
    aborted: str | None = None

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scratch(self) -> Path:
        """The job's private work directory on the host (created on first use, removed
        with the job): staged hives, extracted drivers, thin copies."""
        return self._ensure_workdir()

    def _ensure_workdir(self) -> Path:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="p2vimage-"))
            self._own_workdir = True
        return self.workdir

    def _drives(self) -> list[Drive]:
        """Our own qcow2 overlay over every source, also for a read-only job.

        libguestfs's own read-only overlay is handed to qemu without a top-level
        format, so qemu *probes the guest-visible content*: a raw disk whose first
        sector starts with a qcow2 header (the boot code area is free-form) then fails
        to launch, or worse, has a backing file named by the guest opened on the host.
        An overlay we create with the source format recorded (``-F``) and attach with
        ``format=qcow2`` leaves nothing to probe; read-only jobs then set the devices
        read-only inside the appliance (:meth:`launch`).
        """
        self._ensure_workdir()  # overlay() names files in it
        drives = []
        qemu_img = deps.require_program("qemu-img")
        for i, s in enumerate(self.sources):
            if i in self.in_place:
                assert self.writable, "a read-only job never edits its sources in place"
                drives.append(Drive(str(s.path), s.format, False, s.path.name))
                continue
            overlay = self.overlay(i)
            if not overlay.exists():
                subprocess.run(
                    [qemu_img, "create", "-q", "-f", "qcow2", "-F", s.format,
                     "-b", str(s.path.resolve()), str(overlay)],
                    check=True,
                    capture_output=True,
                )
                self.overlays.append(overlay)
            drives.append(Drive(str(overlay), "qcow2", False, s.path.name))
        return drives

    def launch(self) -> None:
        """Start the one appliance of this job (KVM, else TCG)."""
        if self.g is not None:
            return
        guestfs = deps.guestfs()
        drives = self._drives()
        if not self.disks:
            self.disks = [read_disk(Path(d.path), d.format, i, self._ensure_workdir())
                          for i, d in enumerate(drives)]
        log.info("phase: launch the appliance (%d disk(s), %s)", len(drives),
                 "writable overlay" if self.writable else "read-only")

        def new_handle(extra: list[str] | None) -> Any:
            if self.aborted:  # no second launch (the TCG retry) of a job stopped already
                raise ApplianceError(f"the appliance was stopped: {self.aborted}")
            g = new_guestfs(guestfs)
            _capture_launch_errors(g, guestfs)
            if extra:
                current = [s for s in g.get_backend_settings() if s]
                g.set_backend_settings(current + [s for s in extra if s not in current])
            for d in drives:
                g.add_drive_opts(d.path, format=d.format, readonly=d.readonly)
            return g

        self.g = launch_with_fallback(new_handle, self.stats)
        files.remember(self.g)  # every mount change below goes through _umount/forget
        if not self.writable:
            for dev in self.g.list_devices():
                self.g.blockdev_setro(dev)
        interrupt.check()

    def abort(self, reason: str) -> None:
        """Stop this job's appliance now, from any thread: its qemu is killed, so the
        call the job's thread is blocked in (a launch, a mount, a read) fails at once.

        For a source gone for good: the appliance's kernel would retry each failed
        read for minutes.  The handle is not touched (it is the job thread's, and
        busy); the qemu is found by its drives, which live in this job's work
        directory."""
        self.aborted = reason
        if self.workdir is None:
            return
        mark = str(self.workdir).encode()
        for pid in _qemu_processes():
            try:
                if mark in Path(f"/proc/{pid}/cmdline").read_bytes():
                    log.warning("stopping the appliance (qemu pid %d): %s", pid, reason)
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                continue

    def overlay(self, index: int) -> Path:
        """The qcow2 overlay of source ``index`` (the edited disk, once applied)."""
        assert self.workdir is not None
        return self.workdir / f"overlay-{index}.qcow2"

    def shutdown_appliance(self) -> None:
        """Unmount, sync and stop the appliance, keeping the work directory and overlays
        (the host-side copy reads the edited overlays after this)."""
        if self.g is None:
            return
        g, self.g = self.g, None
        try:
            if self._mounted:
                g.umount_all()
                self._mounted = False
            g.sync()
            g.shutdown()
        except RuntimeError as exc:
            raise ConversionError(f"stopping the appliance after the edits: {exc}") from exc
        finally:
            _close_quietly(g)
            self.hives.clear()

    def close(self) -> None:
        if self.g is not None:
            try:
                if self._mounted:
                    self.g.umount_all()
                self.g.shutdown()
            except RuntimeError as exc:
                log.debug("appliance shutdown: %s", exc)
            _close_quietly(self.g)
            self.g = None
        self.hives.clear()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # -- the Windows root ---------------------------------------------------------

    def find_root(self) -> str:
        """Settle on one Windows installation of the job's disks.

        Each NTFS/FAT partition of the host-read partition tables is probed for a
        system root (:mod:`windows_root`: one mount and a few lookups each).  Only when
        that finds nothing usable does libguestfs' ``inspect_os`` run, for what it
        knows beyond (LDM volumes, whole-disk filesystems) and for the messages
        naming other operating systems.
        """
        self.launch()
        if self.root_device is not None:
            return self.root_device
        candidates = [p.name for d in self.disks if d.layout is not None
                      for p in d.layout.partitions if p.fs in ("ntfs", "vfat")]
        if self.root is not None:
            candidates = [self.root] if self.root in candidates else []
        found = [w for w in (self._probe(dev, keep=len(candidates) == 1) for dev in candidates)
                 if w is not None]
        if len(found) == 1:
            self.windows = found[0]
            self.root_device = found[0].device
            return self.root_device
        if len(found) > 1:
            desc = ", ".join(f"{w.device} ({self._product_of(w)})" for w in found)
            raise MultipleRootsError(
                f"several Windows installations found: {desc}; choose one with --root DEVICE"
            )
        return self._find_root_by_inspect_os()

    def _probe(self, device: str, keep: bool) -> WindowsRoot | None:
        """Look for Windows on ``device``; ``keep``: a read-only job leaves the volume
        mounted for :meth:`mount_root` (it is the only candidate)."""
        if device not in self._found:
            self._umount()
            keep = keep and not self.writable
            if keep:
                try:
                    self.g.mount_ro(device, "/")
                except RuntimeError:
                    self._found[device] = None
                    return None
                self._mounted_ro = device
                self._found[device] = windows_root.probe_mounted(self.g, device)
                if self._found[device] is None:
                    self._umount()
            else:
                self._found[device] = windows_root.probe(self.g, device)
        return self._found[device]

    def _umount(self) -> None:
        if self._mounted or self._mounted_ro:
            self.g.umount_all()
            self._mounted = False
            self._mounted_ro = None
        files.forget(self.g)

    def _product_of(self, w: WindowsRoot) -> str:
        """The product name of another candidate root (for the several-roots message)."""
        if w.software_hive is None:
            return "Windows"
        local = self._ensure_workdir() / "probe-software.hive"
        try:
            self.g.mount_ro(w.device, "/")
            try:
                self.g.download(w.software_hive, str(local))
            finally:
                self.g.umount_all()
                files.forget(self.g)
            return product_name(Hive(local, name=w.software_hive)) or "Windows"
        except (RuntimeError, CorruptHiveError):
            return "Windows"
        finally:
            self._mounted = False
            self._mounted_ro = None

    def _find_root_by_inspect_os(self) -> str:
        """libguestfs' own inspection: the fallback, and the source of the messages."""
        g = self.g
        self._umount()
        try:
            if self._roots is None:
                self._roots = list(g.inspect_os())  # once per appliance: it scans every fs
            roots = self._roots
        except RuntimeError as exc:
            msg = str(exc)
            if "hivex" in msg.lower() or "hive" in msg.lower():
                bad = self._find_corrupt_hive()
                raise CorruptHiveError(
                    f"registry hive {bad[0]} on {bad[1]} cannot be opened: {bad[2]}"
                    if bad
                    else f"a registry hive of the guest cannot be opened: {msg}"
                ) from exc
            raise CorruptImageError(f"cannot inspect the disk: {msg}") from exc
        windows = [r for r in roots if g.inspect_get_type(r) == "windows"]
        if self.root is not None:
            if self.root not in roots:
                raise UsageError(
                    f"--root {self.root}: no operating system there "
                    f"(found: {', '.join(roots) or 'none'})"
                )
            if self.root not in windows:
                raise NoOperatingSystemError(
                    f"--root {self.root} holds {g.inspect_get_type(self.root)}, not Windows"
                )
            chosen = self.root
        elif not windows:
            raise NoOperatingSystemError(self._no_windows_message(roots))
        elif len(windows) > 1:
            desc = ", ".join(f"{r} ({g.inspect_get_product_name(r)})" for r in windows)
            raise MultipleRootsError(
                f"several Windows installations found: {desc}; choose one with --root DEVICE"
            )
        else:
            chosen = windows[0]
        sr = g.inspect_get_windows_systemroot(chosen)
        self.windows = WindowsRoot(chosen, sr, g.inspect_get_windows_system_hive(chosen),
                                   g.inspect_get_windows_software_hive(chosen))
        self.root_device = chosen
        return chosen

    def _find_corrupt_hive(self) -> tuple[str, str, str] | None:
        """Name the hive that broke libguestfs inspection (which only says "Hivex.Error")."""
        g = self.g
        wd = self._ensure_workdir()
        try:
            g.umount_all()  # a failed inspect_os can leave its mount behind
        except RuntimeError:
            pass
        for dev, fstype in sorted(g.list_filesystems().items()):
            if fstype != "ntfs":
                continue
            try:
                g.mount_ro(dev, "/")
            except RuntimeError:
                continue
            try:
                for top in g.ls("/"):
                    if top.lower() not in ("windows", "winnt"):
                        continue
                    for name in ("system", "software"):
                        try:
                            path = g.case_sensitive_path(f"/{top}/system32/config/{name}")
                            if not g.is_file(path):
                                continue
                            local = wd / "probe.hive"
                            g.download(path, str(local))
                        except RuntimeError:
                            continue
                        try:
                            Hive(local, name=path)
                        except CorruptHiveError as exc:
                            return path, dev, f"not a valid hive ({str(exc).rsplit(': ', 1)[-1]})"
            finally:
                g.umount_all()
        return None

    def _no_windows_message(self, roots: list[str]) -> str:
        g = self.g
        devices = g.list_devices()
        if len(devices) > 1:  # say that every disk of the machine was looked at
            return self._no_windows_text(roots).replace(
                "no Windows installation found",
                f"no Windows installation found on any of the {len(devices)} disks "
                f"({', '.join(devices)})", 1)
        return self._no_windows_text(roots)

    def _no_windows_text(self, roots: list[str]) -> str:
        g = self.g
        if roots:
            other = ", ".join(
                f"{g.inspect_get_type(r)} ({g.inspect_get_distro(r)} "
                f"{g.inspect_get_product_name(r)}) on {r}"
                for r in roots
            )
            return f"no Windows installation found; the disk holds {other}"
        parts = g.list_partitions()
        if not parts:
            return "no Windows installation found: the disk has no partitions"
        fs = {d: t for d, t in g.list_filesystems().items() if t not in ("unknown", "swap", "")}
        if not fs:
            return "no Windows installation found: no partition holds a filesystem"
        kinds = ", ".join(f"{d}: {t}" for d, t in sorted(fs.items()))
        return f"no Windows installation found (filesystems: {kinds})"

    def disk_info(self, device: str) -> DiskInfo | None:
        """The host-read facts of disk ``device`` or of the disk holding partition
        ``device`` (None: not a disk of this job, or an LDM/LVM volume)."""
        i = disk_index(disk_of(device) or device)
        return self.disks[i] if i is not None and i < len(self.disks) else None

    def root_disk(self) -> str:
        """The disk holding the Windows root (``/dev/sdb`` for ``/dev/sdb1``)."""
        root = self.root_device or self.find_root()
        if disk_index(root) is not None:
            return root  # a filesystem on the whole disk
        return disk_of(root) or self.g.part_to_dev(root)

    def view(self, insp: Any) -> GuestView:
        """The read-only view of the current root that planning steps get: hives, the
        bootable control sets, system root, version and arch taken from ``insp`` (the
        :class:`~p2vimage.inspection.Inspection` of this root), files through the
        mounted root, and the system disk's host-read layout."""
        self.mount_root()
        disk = self.root_disk()
        info = self.disk_info(disk)
        cs = insp.control_sets
        return GuestView(
            self.hive("SYSTEM"), self.hive("SOFTWARE"), list(cs.bootable) if cs else [],
            system_root=insp.system_root, g=self.g,
            layout=info.layout if info is not None else None, system_disk=disk,
            arch=insp.arch, major=insp.major, minor=insp.minor,
        )

    def use_root(self, root: str) -> None:
        """Switch this job to another root of the same appliance (tests inspect many disks
        with one launch); unmounts and forgets the previous root's hives."""
        self._umount()
        self.hives.clear()
        self.root = root
        self.root_device = None
        self.windows = None
        self.find_root()

    def mount_root(self) -> None:
        """Mount the root's filesystems (read-only for a read-only job)."""
        root = self.root_device or self.find_root()
        if self._mounted:
            return
        if self._mounted_ro == root and not self.writable:
            self._mounted, self._mounted_ro = True, None  # the probe's mount serves
            return
        self._umount()
        if self.writable:
            self._refuse_dirty_ntfs(root)
        try:
            if self.writable:
                self.g.mount(root, "/")
            else:
                self.g.mount_ro(root, "/")
        except RuntimeError as exc:
            msg = str(exc)
            if "hiberfil" in msg.lower() or "unclean" in msg.lower():
                raise CorruptImageError(
                    f"{root}: Windows was hibernated or not shut down cleanly; "
                    "boot the source machine and shut it down fully, then capture again"
                ) from exc
            raise CorruptImageError(f"cannot mount {root}: {msg}") from exc
        # ntfs-3g quietly falls back to a read-only mount on a hibernated volume; a
        # conversion would then fail on its first write with an obscure message.
        if self.writable and guest_is_hibernated(self.g, "/"):
            raise CorruptImageError(
                f"{root}: Windows is hibernated (hiberfil.sys header 'hibr'); "
                "boot the source machine and shut it down fully (powercfg /h off), then "
                "capture again"
            )
        self._mounted = True

    def _refuse_dirty_ntfs(self, part: str) -> None:
        """A system volume Windows did not close cleanly is not changed offline.

        Its metadata may be half-written (the journal would finish it at the next
        boot); ntfs-3g mounts it read-write all the same, and resets that journal.
        """
        try:
            flags = ntfs_volume.read_volume_flags(self.g, part)
        except (RuntimeError, ntfs_volume.NtfsError):
            return  # unreadable metadata: the mount reports it in its own words
        if flags is not None and flags & ntfs_volume.FLAG_DIRTY:
            raise CorruptImageError(
                f"{part}: the NTFS volume is marked dirty (Windows did not shut down cleanly, "
                "or chkdsk is scheduled); boot the source machine, let chkdsk finish and shut "
                "down fully, then capture again"
            )

    # -- hives ----------------------------------------------------------------------

    def hive(self, which: str) -> Hive:
        """SYSTEM or SOFTWARE hive, downloaded once and opened with hivex."""
        key = which.upper()
        if key in self.hives:
            return self.hives[key]
        self.mount_root()
        g = self.g
        assert self.windows is not None
        guest_path = self.windows.system_hive if key == "SYSTEM" else self.windows.software_hive
        if guest_path is None:
            raise CorruptHiveError(
                f"{self.windows.system_root}\\system32\\config has no SOFTWARE hive "
                f"on {self.windows.device}")
        local = self._ensure_workdir() / f"{key.lower()}.hive"
        try:
            g.download(guest_path, str(local))
        except RuntimeError as exc:
            raise CorruptHiveError(f"cannot read the {key} hive {guest_path}: {exc}") from exc
        hive = Hive(local, write=self.writable, name=f"{key} ({guest_path})")
        hive.guest_path = guest_path  # type: ignore[attr-defined]
        self.hives[key] = hive
        return hive

    def commit_hives(self) -> None:
        """Commit every changed hive and upload it back, once, at the end of a job."""
        for hive in self.hives.values():
            if hive.dirty:
                hive.commit()
                try:
                    files.upload(self.g, Path(hive.path), hive.guest_path)  # type: ignore[attr-defined]
                except ConversionError as exc:
                    raise ConversionError(
                        f"cannot write the {hive.name} hive back into the guest: {exc}"
                    ) from exc
