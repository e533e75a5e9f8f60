"""Drop the physical NICs' registry footprint, offline, so the new adapter starts clean.

After P2V the physical adapter becomes a hidden "ghost" device that still owns its
connection name ("Local Area Connection") and its static address: giving that address to
the new NIC makes Windows warn that a hidden adapter has it, and the administrator must dig
the ghost out of Device Manager.  Everything such an adapter leaves hangs off its
``NetCfgInstanceId`` GUID (``../shared/notes/windows-facts.md``); all of it is removed in
every bootable control set, in the job's single hive commit (nothing half-deleted):

1. ``Enum\\<bus>\\<device>\\<instance>`` (the device key too when no instance is left);
2. ``Control\\Class\\{4D36E972-…}\\00NN``;
3. ``Control\\Network\\{4D36E972-…}\\{GUID}`` (``Connection\\Name`` frees the name);
4. ``Services\\Tcpip\\Parameters\\Interfaces\\{GUID}`` and ``…\\Adapters\\{GUID}``;
5. ``Services\\NetBT\\Parameters\\Interfaces\\Tcpip_{GUID}``;
6. ``Services\\{GUID}``;
7. the vendor driver's service gets Start=4 unless a device that stays still uses it;
8. SOFTWARE ``Microsoft\\Windows NT\\CurrentVersion\\NetworkCards\\N`` naming the GUID.

Software adapters (``Enum\\Root``, loopback, VPN miniports) are not physical and stay.  The
settings of every dropped adapter are captured first (:mod:`.nics`) for the report and for
re-applying them to the new adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..guest.registry import REG_DWORD, Hive
from ..plan import Plan
from . import classes
from .nics import Nic, physical_nics

STEP = "drop-physical-nics"
STEP_DRIVER = "disable-nic-driver"


@dataclass
class Dropped:
    """What the step found, per control set, and the settings captured."""

    nics: list[Nic] = field(default_factory=list)  # from the first bootable control set
    disabled_services: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)  # references to keys that are missing


def _enum_users(system: Hive, cs: str) -> dict[str, list[str]]:
    """Service name (lower) -> Enum instance paths that use it."""
    out: dict[str, list[str]] = {}
    enum = system.node(f"{cs}\\Enum")
    if enum is None:
        return out
    for bus, bn in system.iter_children(enum):
        for dev, dn in system.iter_children(bn):
            for inst, inn in system.iter_children(dn):
                svc = system.get_str(inn, "Service")
                if svc:
                    out.setdefault(svc.lower(), []).append(f"{bus}\\{dev}\\{inst}")
    return out


def footprint(system: Hive, cs: str, nic: Nic,
              dropping: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """(existing keys to delete, relative to the control set; expected keys that are missing)."""
    g = nic.guid
    candidates = [
        f"Control\\Class\\{classes.NET}\\{nic.class_key}",
        f"Control\\Network\\{classes.NET}\\{g}",
        f"Services\\Tcpip\\Parameters\\Interfaces\\{g}",
        f"Services\\Tcpip\\Parameters\\Adapters\\{g}",
        f"Services\\NetBT\\Parameters\\Interfaces\\Tcpip_{g}",
        f"Services\\{g}",
    ]
    present, missing = [], []
    for k in candidates:
        (present if system.node(f"{cs}\\{k}") is not None else missing).append(k)
    if nic.enum_instance:
        bus_dev = nic.enum_instance.rsplit("\\", 1)[0]
        dev = system.node(f"{cs}\\Enum\\{bus_dev}")
        if dev is not None:
            remaining = [n for n in system.child_names(dev)
                         if f"{bus_dev}\\{n}".lower() not in dropping
                         and f"{bus_dev}\\{n}".lower() != nic.enum_instance.lower()]
            if remaining:
                present.insert(0, f"Enum\\{nic.enum_instance}")
            elif _first(dropping | {nic.enum_instance.lower()}, bus_dev, nic.enum_instance):
                present.insert(0, f"Enum\\{bus_dev}")  # its last instance goes: the device too
    # Only the interface/connection keys are required for a consistent adapter; the others
    # (Adapters, NetBT, the legacy Services\{GUID}) are optional on some versions.
    required = {f"Control\\Network\\{classes.NET}\\{g}",
                f"Services\\Tcpip\\Parameters\\Interfaces\\{g}"}
    return present, [m for m in missing if m in required]


def _first(dropping: frozenset[str], bus_dev: str, instance: str) -> bool:
    """Is ``instance`` the first (sorted) dropped instance of its device key?"""
    mine = sorted(d for d in dropping if d.startswith(bus_dev.lower() + "\\"))
    return bool(mine) and mine[0] == instance.lower()


def plan_drop_nics(plan: Plan, system: Hive, software: Hive | None,
                   control_sets: list[str]) -> Dropped:
    out = Dropped()
    why = "stale physical adapter: a hidden ghost device that keeps its name and address"
    guids: set[str] = set()
    for i, cs in enumerate(control_sets):
        nics = physical_nics(system, cs)
        if i == 0:
            out.nics = nics
        dropped_instances: set[str] = set()
        services: set[str] = set()
        dropping = frozenset(n.enum_instance.lower() for n in nics if n.enum_instance)
        for nic in nics:
            guids.add(nic.guid.upper())
            keys, missing = footprint(system, cs, nic, dropping)
            for k in keys:
                plan.delete_key(STEP, "SYSTEM", cs, k, f"{nic.description or nic.guid}: {why}")
            out.dangling += [f"{cs}\\{m} (for {nic.guid})" for m in missing]
            if nic.enum_instance:
                dropped_instances.add(nic.enum_instance.lower())
            if nic.driver_service:
                services.add(nic.driver_service)
        users = _enum_users(system, cs)
        for svc in sorted(services):
            others = [u for u in users.get(svc.lower(), []) if u.lower() not in dropped_instances]
            if others or system.node(f"{cs}\\Services\\{svc}") is None:
                continue
            plan.set_value(STEP_DRIVER, "SYSTEM", cs, f"Services\\{svc}", "Start", REG_DWORD, 4,
                           "vendor NIC driver: its hardware is gone (no device left uses it)")
            if svc not in out.disabled_services:
                out.disabled_services.append(svc)
    if software is not None and guids:
        cards = software.node("Microsoft\\Windows NT\\CurrentVersion\\NetworkCards")
        if cards is not None:
            for name, node in software.iter_children(cards):
                if (software.get_str(node, "ServiceName") or "").upper() in guids:
                    plan.delete_key(
                        STEP, "SOFTWARE", None,
                        f"Microsoft\\Windows NT\\CurrentVersion\\NetworkCards\\{name}",
                        "NetworkCards entry of a dropped physical adapter",
                    )
    return out
