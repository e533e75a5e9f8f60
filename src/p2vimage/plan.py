"""A conversion plan: every change as data, before anything is written.

Steps look at the inspection and the guest and *propose* changes; ``--dry-run``
prints the plan and stops; apply executes it on the job's overlay with all
hive edits committed once.  Keeping the plan as data makes each step testable
on its own and the report exact: it lists what was planned, and apply marks
what it actually changed (an idempotent re-run changes nothing).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .guest.registry import TYPE_NAMES


@dataclass
class RegistryEdit:
    """Set one value.  ``control_set`` None = a key at the hive root."""

    step: str
    hive: str  # "SYSTEM" | "SOFTWARE"
    control_set: str | None
    key: str
    name: str
    type: int
    value: Any
    reason: str
    changed: bool | None = None  # filled in by apply

    @property
    def path(self) -> str:
        return f"{self.control_set}\\{self.key}" if self.control_set else self.key

    def describe(self) -> str:
        return f"{self.hive}\\{self.path}\\{self.name} = {TYPE_NAMES.get(self.type)}:{self.value!r}"


@dataclass
class BootSectorEdit:
    """Little-endian integer fields of a partition's boot sector (and its NTFS backup)."""

    step: str
    device: str
    fields: dict[str, tuple[int, int, int]]  # name -> (offset, size, new value)
    old: dict[str, int]
    reason: str
    changed: bool | None = None

    def describe(self) -> str:
        parts = ", ".join(f"{k} {self.old.get(k)} -> {v[2]}" for k, v in self.fields.items())
        return f"boot sector of {self.device}: {parts}"


@dataclass
class DeviceChoice:
    what: str  # "disk bus", "nic model", "machine", ...
    value: str
    reason: str


@dataclass
class Plan:
    registry: list[RegistryEdit] = field(default_factory=list)
    boot_sectors: list[BootSectorEdit] = field(default_factory=list)
    devices: list[DeviceChoice] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def set_value(
        self,
        step: str,
        hive: str,
        control_set: str | None,
        key: str,
        name: str,
        vtype: int,
        value: Any,
        reason: str,
    ) -> None:
        self.registry.append(
            RegistryEdit(step, hive, control_set, key, name, vtype, value, reason)
        )

    def choose(self, what: str, value: str, reason: str) -> None:
        self.devices = [d for d in self.devices if d.what != what]
        self.devices.append(DeviceChoice(what, value, reason))

    def device(self, what: str) -> str | None:
        return next((d.value for d in self.devices if d.what == what), None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def render(self) -> list[str]:
        lines = ["Plan:"]
        for e in self.registry:
            mark = {True: "changed", False: "unchanged", None: "planned"}[e.changed]
            lines.append(f"  [{e.step}] {e.describe()}  ({mark}; {e.reason})")
        for b in self.boot_sectors:
            mark = {True: "changed", False: "unchanged", None: "planned"}[b.changed]
            lines.append(f"  [{b.step}] {b.describe()}  ({mark}; {b.reason})")
        for d in self.devices:
            lines.append(f"  device: {d.what} = {d.value}  ({d.reason})")
        return lines  # warnings are printed once, by the report
