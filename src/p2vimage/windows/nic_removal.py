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

from ..errors import UsageError
from ..formats.regf import REG_DWORD
from ..guest.registry import Hive
from ..guest.view import GuestView
from ..inspection import Inspection, classes
from ..inspection.nics import Nic, physical_nics
from ..options import parse_mac
from ..plan import NetworkSummary, Plan

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
    for bus, dev, inst, node in classes.enum_instances(system, cs):
        svc = system.get_str(node, "Service")
        if svc:
            out.setdefault(svc.lower(), []).append(f"{bus}\\{dev}\\{inst}")
    return out


def _enum_keys(system: Hive, cs: str, instances: list[str]) -> list[str]:
    """Enum keys to delete for the dropped instances: a device key whose instances all go
    is deleted whole (once), otherwise only the instances."""
    by_device: dict[str, list[str]] = {}
    for inst in instances:
        by_device.setdefault(inst.rsplit("\\", 1)[0], []).append(inst)
    keys = []
    for device, dropped in by_device.items():
        node = system.node(f"{cs}\\Enum\\{device}")
        if node is None:
            continue
        names = {n.lower() for n in system.child_names(node)}
        if names <= {d.rsplit("\\", 1)[1].lower() for d in dropped}:
            keys.append(f"Enum\\{device}")
        else:
            keys += [f"Enum\\{d}" for d in dropped
                     if system.node(f"{cs}\\Enum\\{d}") is not None]
    return keys


def footprint(system: Hive, cs: str, nic: Nic) -> tuple[list[str], list[str]]:
    """(existing non-Enum keys to delete, relative to the control set; required keys that
    are missing: a dangling reference)."""
    g = nic.guid
    candidates = [
        f"Control\\Class\\{classes.NET}\\{nic.class_key}",
        f"Control\\Network\\{classes.NET}\\{g}",
        f"Services\\Tcpip\\Parameters\\Interfaces\\{g}",
        f"Services\\Tcpip\\Parameters\\Adapters\\{g}",
        f"Services\\NetBT\\Parameters\\Interfaces\\Tcpip_{g}",
        f"Services\\{g}",
    ]
    # Only the interface/connection keys are required for a consistent adapter; the others
    # (Adapters, NetBT, the legacy Services\{GUID}) are optional on some versions.
    required = {candidates[1], candidates[2]}
    present = [k for k in candidates if system.node(f"{cs}\\{k}") is not None]
    return present, [k for k in required if k not in present]


def plan_network(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """Drop the physical NICs (unless ``--keep-nics``) and settle the new NIC's MAC
    (``--mac``, or ``--keep-mac``: the physical NIC's recorded address)."""
    ctx = plan.context
    assert ctx is not None
    opts = ctx.options
    if opts.keep_nics:
        cs = guest.control_sets
        nics = physical_nics(guest.system, cs[0]) if cs else []
        plan.network = NetworkSummary(dropped=False, nics=list(nics))
    else:
        dropped = drop_nics(plan, guest)
        nics = dropped.nics
        plan.network = NetworkSummary(dropped=True, nics=list(nics),
                                      disabled_services=list(dropped.disabled_services))
        for d in dropped.dangling:
            plan.warnings.append(f"network: expected key missing (dangling reference): {d}")
    mac = None
    if opts.mac:
        mac = parse_mac(opts.mac)
        plan.choose("mac", mac, "requested with --mac")
    elif opts.keep_mac:
        recorded = [n for n in nics if n.mac]
        if not recorded:
            raise UsageError(
                "--keep-mac: the registry records no MAC address for the physical NIC(s) "
                f"({', '.join(n.description or n.guid for n in nics) or 'none found'}); "
                "give it with --mac"
            )
        mac = recorded[0].mac
        plan.choose("mac", mac, f"--keep-mac: {recorded[0].description}'s NetworkAddress")
    plan.network.mac = mac


def drop_nics(plan: Plan, guest: GuestView) -> Dropped:
    """Plan the deletion of every physical NIC's keys in the view's control sets."""
    system, software, control_sets = guest.system, guest.software, guest.control_sets
    out = Dropped()
    why = "stale physical adapter: a hidden ghost device that keeps its name and address"
    guids: set[str] = set()
    for i, cs in enumerate(control_sets):
        nics = physical_nics(system, cs)
        if i == 0:
            out.nics = nics
        services: set[str] = set()
        instances = [n.enum_instance for n in nics if n.enum_instance]
        dropped_instances = {i.lower() for i in instances}
        for k in _enum_keys(system, cs, instances):
            plan.delete_key(STEP, "SYSTEM", cs, k, f"physical network device: {why}")
        for nic in nics:
            guids.add(nic.guid.upper())
            keys, missing = footprint(system, cs, nic)
            for k in keys:
                plan.delete_key(STEP, "SYSTEM", cs, k, f"{nic.description or nic.guid}: {why}")
            out.dangling += [f"{cs}\\{m} (for {nic.guid})" for m in sorted(missing)]
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
