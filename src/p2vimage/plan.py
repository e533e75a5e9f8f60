"""A conversion plan: every change as data, before anything is written.

Steps look at the inspection and the guest and *propose* changes; ``--dry-run``
prints the plan and stops; apply executes it on the job's overlay with all
hive edits committed once.  Keeping the plan as data makes each step testable
on its own and the report exact: it lists what was planned, and apply marks
what it actually changed (an idempotent re-run changes nothing).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .formats.regf import TYPE_NAMES
from .options import ConvertOptions

if TYPE_CHECKING:  # annotations only: the plan is data, below the steps that fill it
    from .inspection.nics import Nic
    from .virtio.media import VirtioMedia
    from .virtio.select import Selection
    from .windows.leftovers import VendorService


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
class KeyDelete:
    """Delete one key and everything below it (applied after every value edit)."""

    step: str
    hive: str
    control_set: str | None
    key: str
    reason: str
    changed: bool | None = None

    @property
    def path(self) -> str:
        return f"{self.control_set}\\{self.key}" if self.control_set else self.key

    def describe(self) -> str:
        return f"delete {self.hive}\\{self.path}"


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
class Candidate:
    """One copy of a file found for a :class:`FileWrite`, and what was decided about it."""

    origin: str  # where it was found, as the user would name it
    version: str | None  # PE file version, "5.1.2600.5512"
    machine: str | None  # "x86" | "x64" | ...
    sha256: str | None
    verdict: str  # "chosen", "older", "wrong architecture: x86", "not a PE file: ..."


@dataclass
class FileWrite:
    """Put one file into the guest (or keep the one already there: ``action="keep"``).

    ``local`` is the staged copy on the host (extracted from a cabinet, downloaded, or
    given with ``--driver-file``); it is not part of the report.
    """

    step: str
    guest_path: str  # e.g. /WINDOWS/system32/drivers/atapi.sys (guest filesystem path)
    action: str  # "write" | "keep"
    origin: str
    version: str | None
    machine: str | None
    sha256: str
    size: int
    reason: str
    candidates: list[Candidate] = field(default_factory=list)
    local: str | None = None
    changed: bool | None = None

    def describe(self) -> str:
        what = "keep" if self.action == "keep" else "write"
        ver = " ".join(x for x in (self.version, f"({self.machine})" if self.machine else "") if x)
        return f"{what} {self.guest_path}{' ' + ver if ver else ''} from {self.origin}"


# One planned change of any kind; ``changed`` is None until apply says whether it changed
# something (False: already so).
Change = RegistryEdit | KeyDelete | BootSectorEdit | FileWrite


@dataclass
class DeviceChoice:
    what: str  # "disk bus", "nic model", "machine", ...
    value: str
    reason: str


@dataclass
class PlanContext:
    """What the steps are given besides the inspection and the guest view: the options,
    the virtio media (None without ``--virtio-win``), a work directory for staged files,
    and the system disk's size as the VM will see it (``--size`` applied)."""

    options: ConvertOptions
    workdir: Path
    disk_size: int
    media: VirtioMedia | None = None
    selection: Selection | None = None  # the virtio packages for this guest (virtio step)


@dataclass
class VirtioSummary:
    """What the virtio step took from the media (``report.virtio``)."""

    media: str  # the ISO or directory
    volume_id: str | None
    names: str  # which ISO names were read: "rock-ridge" | "joliet" | "iso9660" | "dir"
    packages: dict[str, str]  # driver (viostor, netkvm, ...) -> folder on the media
    boot_driver: str | None  # the boot-start driver of a virtio bus, None on IDE/SATA
    staged_files: list[str]  # file names put in Drivers\VirtIO for Plug and Play
    modern_ids: dict[str, bool]  # driver -> its INF matches the virtio 1.0 (modern) IDs
    rejected: list[str]  # "folder: why" for packages of the media that did not fit


@dataclass
class FirstbootSummary:
    """The static address re-applied at first boot (``report.plan.network.firstboot``)."""

    connection: str
    addresses: list[tuple[str, str]]  # (address, mask)
    gateways: list[tuple[str, int]]  # (gateway, metric)
    dns: list[str]
    wins: list[str]
    source: str  # "captured" | "--ip"
    keep_names: list[str]  # connection names of adapters kept, not renamed
    log: str  # the script's log file in the guest


@dataclass
class NetworkSummary:
    """The physical NICs and what became of them (``report.plan.network``)."""

    dropped: bool  # False with --keep-nics
    nics: list[Nic]  # as captured, from the first bootable control set
    disabled_services: list[str] = field(default_factory=list)
    mac: str | None = None  # the new NIC's MAC, when one is set
    firstboot: FirstbootSummary | None = None
    vendor_services: list[VendorService] = field(default_factory=list)
    oem_product_id: str | None = None


@dataclass
class Plan:
    registry: list[RegistryEdit] = field(default_factory=list)
    deletions: list[KeyDelete] = field(default_factory=list)
    boot_sectors: list[BootSectorEdit] = field(default_factory=list)
    files: list[FileWrite] = field(default_factory=list)
    devices: list[DeviceChoice] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    virtio: VirtioSummary | None = None  # set by the virtio step when it staged packages
    network: NetworkSummary | None = None  # set by the network step
    context: PlanContext | None = field(default=None, repr=False, compare=False)

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

    def delete_key(self, step: str, hive: str, control_set: str | None, key: str,
                   reason: str) -> None:
        self.deletions.append(KeyDelete(step, hive, control_set, key, reason))

    def choose(self, what: str, value: str, reason: str) -> None:
        self.devices = [d for d in self.devices if d.what != what]
        self.devices.append(DeviceChoice(what, value, reason))

    def changes(self) -> list[Change]:
        """Every change, in the order apply makes them: files, registry values, key
        deletions, boot sectors."""
        return [*self.files, *self.registry, *self.deletions, *self.boot_sectors]

    def device(self, what: str) -> str | None:
        return next((d.value for d in self.devices if d.what == what), None)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name != "context"}
        for f in out["files"]:
            del f["local"]  # a host temp path: meaningless after the run
        for e in out["registry"]:
            if isinstance(e["value"], bytes):  # REG_BINARY: hex in JSON
                e["value"] = e["value"].hex()
        return out

    def render(self) -> list[str]:
        lines = ["Plan:"]
        lines += _render_registry(self.registry)
        for d in self.deletions:
            mark = {True: "deleted", False: "already gone", None: "planned"}[d.changed]
            lines.append(f"  [{d.step}] {d.describe()}  ({mark}; {d.reason})")
        for b in self.boot_sectors:
            mark = {True: "changed", False: "unchanged", None: "planned"}[b.changed]
            lines.append(f"  [{b.step}] {b.describe()}  ({mark}; {b.reason})")
        for f in self.files:
            mark = {True: "changed", False: "unchanged", None: "planned"}[f.changed]
            lines.append(f"  [{f.step}] {f.describe()}  ({mark}; {f.reason})")
        for d in self.devices:
            lines.append(f"  device: {d.what} = {d.value}  ({d.reason})")
        return lines  # warnings are printed once, by the report


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else copy.deepcopy(v)
                for v in value]
    return copy.deepcopy(value)


_MANY_KEYS = 6  # above this many keys per step and control set, the text form summarises


def _mark(edits: list[RegistryEdit]) -> str:
    if any(e.changed is None for e in edits):
        return "planned"
    changed = sum(1 for e in edits if e.changed)
    return f"{changed} of {len(edits)} values changed" if changed else "unchanged"


def _render_registry(edits: list[RegistryEdit]) -> list[str]:
    """One line per key (its values joined); keys of one step under one parent key are
    summarised when there are many (the KB314082 set is 31 CDDB keys): ``--json`` has
    every value."""
    groups: dict[tuple[str, str, str | None, str], dict[str, list[RegistryEdit]]] = {}
    for e in edits:
        parent = e.key.rsplit("\\", 1)[0] if "\\" in e.key else ""
        groups.setdefault((e.step, e.hive, e.control_set, parent), {}).setdefault(
            e.key, []
        ).append(e)
    lines = []
    for (step, hive, cs, parent), keys in groups.items():
        prefix = "\\".join(x for x in (hive, cs) if x)
        if len(keys) > _MANY_KEYS:
            all_edits = [e for es in keys.values() for e in es]
            names = sorted({e.name for e in all_edits})
            lines.append(
                f"  [{step}] {prefix}\\{parent}\\*: {len(keys)} keys ({', '.join(names)})  "
                f"({_mark(all_edits)}; {all_edits[0].reason})"
            )
            continue
        for key, es in keys.items():
            vals = ", ".join(f"{e.name}={TYPE_NAMES.get(e.type)}:{_show(e.value)}" for e in es)
            lines.append(f"  [{step}] {prefix}\\{key}: {vals}  ({_mark(es)}; {es[0].reason})")
    return lines


def _show(value: Any) -> str:
    return value.hex(" ") if isinstance(value, bytes) else repr(value)
