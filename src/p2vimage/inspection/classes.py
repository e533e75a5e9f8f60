"""Device setup class GUIDs Windows uses (upper case, as setupapi writes them), and the
walk over a control set's ``Enum`` device tree the inspection and NIC steps share."""

from __future__ import annotations

from collections.abc import Iterator

from ..guest.registry import Hive

NET = "{4D36E972-E325-11CE-BFC1-08002BE10318}"
HDC = "{4D36E96A-E325-11CE-BFC1-08002BE10318}"  # IDE/ATA/AHCI controllers
SCSI_ADAPTER = "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
DISK_DRIVE = "{4D36E967-E325-11CE-BFC1-08002BE10318}"
SYSTEM = "{4D36E97D-E325-11CE-BFC1-08002BE10318}"

STORAGE_CONTROLLERS = (HDC, SCSI_ADAPTER)


def same_guid(a: str | None, b: str) -> bool:
    return a is not None and a.strip().upper() == b.upper()


def display_text(text: str | None) -> str | None:
    """Strip the ``@file.inf,%key%;`` indirection Vista+ stores in DeviceDesc values."""
    if text is None:
        return None
    if text.startswith("@") and ";" in text:
        return text.split(";", 1)[1]
    return text


def enum_instances(hive: Hive, control_set: str) -> Iterator[tuple[str, str, str, int]]:
    """Every device instance of ``control_set``: (bus, device, instance, node)."""
    enum = hive.node(f"{control_set}\\Enum")
    if enum is None:
        return
    for bus_name, bus in hive.iter_children(enum):
        for dev_name, dev in hive.iter_children(bus):
            for inst_name, inst in hive.iter_children(dev):
                yield bus_name, dev_name, inst_name, inst
