"""The devices QEMU shows a guest, with the IDs Windows matches drivers against.

Windows builds a PCI device's ID list most specific first — hardware IDs
``VEN&DEV&SUBSYS&REV`` … ``VEN&DEV&CC_ccss``, then compatible IDs ``VEN&CC`` … ``CC_ccss``
("Identifiers for PCI Devices", Microsoft driver docs) — and the *first* ID with a
driver decides.  QEMU gives every PCI device subsystem 1AF4:1100 unless the device
sets its own (virtio transitional devices use their device type).  The boot path is a
chain: controller, then (IDE) the channel, then the disk; each link needs its driver.
"""

from __future__ import annotations

from dataclasses import dataclass

QEMU_SUBSYS = "11001AF4"


@dataclass(frozen=True)
class Device:
    role: str  # "controller" | "channel" | "disk" | "nic"
    description: str
    ids: tuple[str, ...]
    # IDs of the same device as *another* QEMU configuration presents it (e.g. the modern
    # virtio ID when this machine shows the transitional one): seen in a guest, they mean
    # a driver was prepared for a different setup — worth saying.
    other_ids: tuple[str, ...] = ()

    @property
    def base_id(self) -> str:
        """``PCI\\VEN_v&DEV_d`` for a PCI device (what INF models usually claim)."""
        return self.ids[3] if self.ids[0].startswith("PCI\\") else self.ids[0]


def pci_ids(ven: str, dev: str, subsys: str, rev: str, cc: str) -> tuple[str, ...]:
    """Hardware then compatible IDs of a PCI function, in Windows' matching order."""
    v = f"PCI\\VEN_{ven}"
    vd = f"{v}&DEV_{dev}"
    return (
        f"{vd}&SUBSYS_{subsys}&REV_{rev}", f"{vd}&SUBSYS_{subsys}", f"{vd}&REV_{rev}", vd,
        f"{vd}&CC_{cc}", f"{vd}&CC_{cc[:4]}",
        f"{v}&CC_{cc}", f"{v}&CC_{cc[:4]}", v, f"PCI\\CC_{cc}", f"PCI\\CC_{cc[:4]}",
    )


def _virtio(kind: str, legacy_dev: str, subsys_dev: str, modern_dev: str, cc: str,
            modern: bool) -> Device:
    legacy = pci_ids("1AF4", legacy_dev, f"{subsys_dev}1AF4", "00", cc)
    new = pci_ids("1AF4", modern_dev, QEMU_SUBSYS, "01", cc)
    if modern:
        return Device("controller" if kind != "net" else "nic",
                      f"QEMU virtio-{kind} (modern, 1AF4:{modern_dev})", new, legacy[:4])
    return Device("controller" if kind != "net" else "nic",
                  f"QEMU virtio-{kind} (transitional, 1AF4:{legacy_dev})", legacy, new[:4])


DISK = Device("disk", "the disk (class driver)", ("GenDisk",))


def boot_chain(bus: str, machine: str, modern_virtio: bool) -> list[Device]:
    """Devices between the firmware and the system disk on ``bus``."""
    if bus == "ide":
        return [
            Device("controller", "QEMU PIIX3 IDE (i440fx, 8086:7010)",
                   pci_ids("8086", "7010", QEMU_SUBSYS, "00", "010180")),
            Device("channel", "its primary IDE channel",
                   ("Intel-PIIX3", "Primary_IDE_Channel", "Internal_IDE_Channel", "*PNP0600")),
            DISK,
        ]
    if bus == "sata":
        return [
            Device("controller", "QEMU ICH9 AHCI (q35, 8086:2922)",
                   pci_ids("8086", "2922", QEMU_SUBSYS, "02", "010601")),
            DISK,
        ]
    if bus == "virtio-blk":
        return [_virtio("blk", "1001", "0002", "1042", "010000", modern_virtio), DISK]
    if bus == "virtio-scsi":
        return [_virtio("scsi", "1004", "0008", "1048", "010000", modern_virtio), DISK]
    raise ValueError(bus)


def nic_device(model: str, modern_virtio: bool) -> Device:
    if model == "virtio":
        return _virtio("net", "1000", "0001", "1041", "020000", modern_virtio)
    if model == "e1000":
        return Device("nic", "QEMU e1000 (Intel 82540EM, 8086:100E)",
                      pci_ids("8086", "100E", QEMU_SUBSYS, "03", "020000"))
    if model == "rtl8139":
        return Device("nic", "QEMU rtl8139 (Realtek, 10EC:8139)",
                      pci_ids("10EC", "8139", QEMU_SUBSYS, "20", "020000"))
    raise ValueError(model)
