"""The HAL the installation uses, read offline from the root-enumerated HAL device.

The HAL decides how many CPUs Windows NT 5.x can use: a uniprocessor HAL
(halacpi, halaacpi, hal.dll "Standard PC") sees one CPU whatever the VM has,
so the XML gets one vCPU and a warning instead of idle vCPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..guest.registry import Hive

# HardwareID of Enum\Root\{ACPI_HAL,PCI_HAL}\0000 -> (HAL file, multiprocessor?)
_HALS: dict[str, tuple[str, bool]] = {
    "acpiapic_mp": ("halmacpi.dll", True),
    "acpiapic_up": ("halaacpi.dll", False),
    "acpipic_up": ("halacpi.dll", False),
    "mps_mp": ("halmps.dll", True),
    "mps_up": ("halapic.dll", False),
    "e_isa_up": ("hal.dll", False),
    "syspro_mp": ("halsp.dll", True),
    # NT 6+: one HAL id; the kernel is multiprocessor-capable.
    "acpiapic": ("hal.dll", True),
}


@dataclass(frozen=True)
class HalInfo:
    hardware_id: str
    hal: str | None
    multiprocessor: bool | None


def read_hal(hive: Hive, control_set: str) -> HalInfo | None:
    for bus in ("ACPI_HAL", "PCI_HAL"):
        inst = hive.node(f"{control_set}\\Enum\\Root\\{bus}\\0000")
        if inst is None:
            continue
        ids = hive.get_list(inst, "HardwareID")
        if not ids:
            continue
        hwid = ids[0].lower()
        hal, mp = _HALS.get(hwid, (None, None))
        return HalInfo(hardware_id=hwid, hal=hal, multiprocessor=mp)
    return None
