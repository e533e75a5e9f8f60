"""Which storage controllers the machine had, and the boot-start drivers that served them.

A physical machine boots through its vendor controller's miniport (a Start=0
service).  That is exactly what stops working on KVM, so the inspection names
it: the IDE/virtio steps must provide a replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..guest.registry import Hive
from . import classes


@dataclass(frozen=True)
class StorageController:
    description: str | None
    hardware_id: str  # the Enum key name, e.g. PCI\VEN_1000&DEV_0054&...
    service: str | None
    start: int | None
    class_guid: str


def storage_controllers(hive: Hive, control_set: str) -> list[StorageController]:
    """Storage controllers recorded under ``Enum`` (every bus), with their service's Start."""
    services = hive.node(f"{control_set}\\Services")
    found: list[StorageController] = []
    for bus_name, dev_name, _inst, inst in classes.enum_instances(hive, control_set):
        if bus_name.lower() == "root":
            continue  # software-enumerated devices (Storage Spaces, VHD loopback)
        class_guid = hive.get_str(inst, "ClassGUID")
        if not any(classes.same_guid(class_guid, g) for g in classes.STORAGE_CONTROLLERS):
            continue
        service = hive.get_str(inst, "Service")
        start = None
        if service and services is not None:
            start = hive.get_int(hive.node(service, services), "Start")
        desc = classes.display_text(
            hive.get_str(inst, "FriendlyName") or hive.get_str(inst, "DeviceDesc")
        )
        found.append(
            StorageController(
                description=desc,
                hardware_id=f"{bus_name}\\{dev_name}",
                service=service,
                start=start,
                class_guid=(class_guid or "").upper(),
            )
        )
    return found


def boot_storage_drivers(controllers: list[StorageController]) -> list[str]:
    """Services of boot-start (Start=0) controller drivers, in first-seen order."""
    out: list[str] = []
    for c in controllers:
        if c.service and c.start == 0 and c.service not in out:
            out.append(c.service)
    return out
