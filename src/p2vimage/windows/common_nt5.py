"""Changes every Windows 2000/XP/2003 guest needs on KVM, whatever the disk bus.

Each function adds planned changes for every control set Windows may boot
(``Select`` Current, Default, LastKnownGood), never a literal
``CurrentControlSet`` (that key exists only on a running system).
"""

from __future__ import annotations

from ..formats.regf import REG_DWORD
from ..guest.view import GuestView
from ..inspection import Inspection
from ..plan import Plan


def plan_autoreboot(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """``CrashControl\\AutoReboot = 0``: a STOP 0x7B stays on screen instead of a reboot loop.

    (virt-v2v does the same; without it a guest that fails to find its boot disk
    reboots forever and the administrator never sees which STOP code it was.)
    """
    if not insp.is_nt5:
        return
    for cs in guest.control_sets:
        plan.set_value(
            "crash-autoreboot", "SYSTEM", cs, "Control\\CrashControl", "AutoReboot",
            REG_DWORD, 0, "keep a blue screen visible instead of rebooting (STOP 0x7B)",
        )


def plan_intelppm(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """Disable ``intelppm`` where it exists (Microsoft KB953356).

    The Intel processor power driver can crash with STOP 0x7E/0x0A when the
    machine moves to a different (virtual) CPU; it does nothing useful in a VM.
    """
    if not insp.is_nt5:
        return
    for cs in guest.control_sets:
        if guest.system.node(f"{cs}\\Services\\intelppm") is None:
            continue
        plan.set_value(
            "intelppm", "SYSTEM", cs, "Services\\intelppm", "Start", REG_DWORD, 4,
            "KB953356: intelppm.sys crashes on a different CPU; useless in a VM",
        )
