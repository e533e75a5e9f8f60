"""Build what a planning step takes — ``(plan, insp, guest)`` — from bare hives.

Planning steps read a read-only :class:`GuestView`; on hive files alone there are no
files, so a test that needs file answers gives them with :class:`FilesView` (an
in-memory stand-in for the guest's file system: the unit under test is the step's
registry logic, not the appliance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2vimage.guest.registry import Hive
from p2vimage.guest.view import GuestView
from p2vimage.inspection import Inspection
from p2vimage.options import ConvertOptions
from p2vimage.plan import Plan, PlanContext


def view(system: Hive, software: Hive | None = None, control_sets: list[str] | None = None,
         system_root: str = "/WINDOWS", arch: str = "x86", major: int = 5,
         minor: int = 1) -> GuestView:
    v = GuestView.of_hives(system, software, control_sets, system_root)
    v.arch, v.major, v.minor = arch, major, minor
    return v


@dataclass
class FilesView(GuestView):
    """A view whose ``exists`` answers from a predicate (every path asked is recorded)."""

    predicate: Callable[[str], bool] = field(default=lambda p: True)
    asked: list[str] = field(default_factory=list)

    def exists(self, path: str) -> bool | None:
        self.asked.append(path)
        return self.predicate(path)


def files_view(system: Hive, control_sets: list[str], system_root: str,
               predicate: Callable[[str], bool] = lambda p: True) -> FilesView:
    return FilesView(system, None, control_sets, system_root, predicate=predicate)


def insp(major: int = 5, minor: int = 1, arch: str = "x86", **kw: Any) -> Inspection:
    return Inspection(major=major, minor=minor, arch=arch, **kw)


def plan(tmp_path: Path | None = None, disk_size: int = 8 << 30, **options: Any) -> Plan:
    """An empty plan whose context holds ``options`` (a ConvertOptions' fields)."""
    ctx = PlanContext(options=ConvertOptions(**options), workdir=tmp_path or Path("/nonexistent"),
                      disk_size=disk_size)
    return Plan(context=ctx)
