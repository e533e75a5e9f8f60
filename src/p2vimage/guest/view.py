"""A read-only view of one Windows guest: its hives, control sets, system root and files.

Planning steps and checks take this view instead of the libguestfs handle, so that they
cannot change the guest (every change is planned as data and applied in one place) and
so that the registry logic runs the same on bare hive files (the real hives of the test
data, where file questions have no answer) as on a disk image.  The job builds the view
once per root (:meth:`~p2vimage.guest.appliance.Job.view`); file lookups are matched
case-insensitively, as Windows does, and remembered for the life of the view.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..formats.partition_table import DiskLayout
from . import files
from .registry import Hive


@dataclass
class GuestView:
    system: Hive
    software: Hive | None
    control_sets: list[str]  # the bootable ones (check puts Default first)
    system_root: str | None = None  # guest path, e.g. /WINDOWS
    g: Any = None  # libguestfs handle with the root mounted (read it only), or None
    layout: DiskLayout | None = None  # the system disk's partitions, read on the host
    system_disk: str | None = None  # appliance device of the system disk, e.g. /dev/sda
    arch: str | None = None  # "x86" | "x64" (from the inspection)
    major: int | None = None
    minor: int | None = None
    _resolved: dict[str, str | None] = field(default_factory=dict, repr=False)

    @classmethod
    def of_hives(cls, system: Hive, software: Hive | None = None,
                 control_sets: list[str] | None = None,
                 system_root: str | None = None) -> GuestView:
        """A view with hives only (no disk): file lookups find nothing."""
        if control_sets is None:
            from .registry import read_control_sets

            control_sets = read_control_sets(system).bootable()
        return cls(system, software, control_sets, system_root)

    @property
    def version(self) -> tuple[int, int]:
        return (self.major or 0, self.minor or 0)

    @property
    def has_files(self) -> bool:
        return self.g is not None

    def service_start(self, name: str) -> int | None:
        """``Start`` of service ``name`` in the first bootable control set (None when the
        service does not exist): what convert and check both ask of installed drivers."""
        if not self.control_sets:
            return None
        node = self.system.node(f"{self.control_sets[0]}\\Services\\{name}")
        return self.system.get_int(node, "Start") if node is not None else None

    @property
    def driver_database(self) -> bool:
        """Windows 8 and later: drivers are registered in ``DriverDatabase``."""
        return self.system.node("DriverDatabase") is not None

    def join_root(self, *parts: str) -> str:
        return posixpath.join(self.system_root or "/WINDOWS", *parts)

    def resolve(self, path: str) -> str | None:
        """The real (case-matched) path of a guest file, None when absent."""
        if path not in self._resolved:
            self._resolved[path] = files.resolve(self.g, path) if self.g is not None else None
        return self._resolved[path]

    def exists(self, path: str) -> bool | None:
        """True/False on a disk; None when only hives were given."""
        return None if self.g is None else self.resolve(path) is not None

    def is_file(self, path: str) -> bool:
        real = self.resolve(path)
        try:
            return real is not None and bool(self.g.is_file(real))
        except RuntimeError:
            return False

    def is_dir(self, path: str) -> bool:
        real = self.resolve(path)
        try:
            return real is not None and bool(self.g.is_dir(real))
        except RuntimeError:
            return False

    def read(self, path: str, size: int, offset: int = 0) -> bytes | None:
        real = self.resolve(path)
        if real is None:
            return None
        try:
            return self.g.pread(real, size, offset)
        except RuntimeError:
            return None

    def file_size(self, path: str) -> int | None:
        real = self.resolve(path)
        try:
            return self.g.filesize(real) if real is not None else None
        except RuntimeError:
            return None

    def read_all(self, path: str, limit: int = 64 << 20) -> bytes | None:
        size = self.file_size(path)
        if size is None or size > limit:
            return None
        try:
            return self.g.read_file(self.resolve(path))
        except RuntimeError:
            return None

    def list_dir(self, path: str) -> list[str]:
        """Names in a guest folder (empty when it does not exist or there is no disk).

        The listing gives the children's real names, so they are remembered: resolving
        ``folder/name`` afterwards costs no appliance round trip (the steps list a
        folder, then look at the files they found in it)."""
        if self.g is None:
            return []
        names = files.list_dir(self.g, path)
        real = self.resolve(path)
        if real is not None:
            for name in names:
                child = posixpath.join(real, name)
                self._resolved.setdefault(child, child)
                self._resolved.setdefault(posixpath.join(path, name), child)
        return names

    def download(self, path: str, local: Path) -> Path:
        """Copy a guest file (its real path, from :meth:`resolve`) to ``local`` on the host."""
        return files.download(self.g, path, local)

    def boot_sectors(self) -> list[tuple[str, bytes]]:
        """(partition device, first sector) of each partition on the system disk: from
        the layout read on the host, else read through the appliance."""
        if self.layout is not None:
            return [(p.name, p.boot_sector) for p in self.layout.partitions
                    if p.boot_sector]
        if self.g is None or self.system_disk is None:
            return []
        return [(p, self.g.pread_device(p, 512, 0)) for p in self.g.list_partitions()
                if self.g.part_to_dev(p) == self.system_disk]

    def is_default(self, cs: str) -> bool:
        """The control set the boot loader uses (errors there; warnings for the others)."""
        return bool(self.control_sets) and cs == self.control_sets[0]
