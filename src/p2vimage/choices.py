"""The one table of device choices: what may be asked for, and what p2vimage picks.

``convert`` decides the virtual hardware, ``check`` evaluates a guest against it and
the CLI offers it; all three read this module, so ``check`` without ``--xml`` assumes
exactly what ``convert`` would choose, and a value one accepts the others accept.

Why the picks are what they are:

* **machine**: q35 only for UEFI guests (OVMF needs it); BIOS guests get i440fx, whose
  PIIX3 IDE has an in-box driver on every Windows and whose PCI slots show the legacy
  virtio IDs the NT 5.x drivers know.  ``--bus sata`` on a BIOS guest stays on i440fx
  with an AHCI controller added, so it never changes the machine.
* **disk bus**: virtio-blk when viostor is ready for boot (staged, or already a boot-start
  service), virtio-scsi when only vioscsi is; else the emulated controller the machine
  has (IDE on i440fx, AHCI on q35).
* **NIC**: virtio when NetKVM is there for Plug and Play to find; else the in-box model
  (rtl8139 on Windows 2000/XP/2003, whose e1000 driver is not in the box; e1000 later).
* **vCPUs**: QEMU 7.2 (Debian 12) allows at most 255 on i440fx and 288 on q35.
"""

from __future__ import annotations

from .errors import UsageError

AUTO = "auto"
FORMATS = ("qcow2", "raw")
BUSES = ("ide", "sata", "virtio-blk", "virtio-scsi")
NICS = ("virtio", "e1000", "rtl8139")
MACHINES = ("pc", "q35")
MAX_VCPUS = {"pc": 255, "q35": 288}
DEFAULT_VCPUS = 2

# Boot driver (virtio-win service) of each virtio bus.
BOOT_DRIVER = {"virtio-blk": "viostor", "virtio-scsi": "vioscsi"}
# libvirt's <target bus=...> for each bus.
XML_BUS = {"virtio-blk": "virtio", "virtio-scsi": "scsi", "ide": "ide", "sata": "sata"}


def machine_for(firmware: str | None) -> str:
    """q35 for UEFI, i440fx ("pc") for BIOS."""
    return "q35" if firmware == "uefi" else "pc"


def emulated_bus(machine: str) -> str:
    """The disk controller the machine type has built in."""
    return "sata" if machine == "q35" else "ide"


def pick_bus(machine: str, boot_drivers: set[str] | frozenset[str]) -> str:
    """The bus ``convert`` picks given the virtio boot drivers ready in the guest."""
    for bus in ("virtio-blk", "virtio-scsi"):
        if BOOT_DRIVER[bus] in boot_drivers:
            return bus
    return emulated_bus(machine)


def pick_nic(is_nt5: bool, netkvm: bool) -> str:
    """The NIC model ``convert`` picks."""
    if netkvm:
        return "virtio"
    return "rtl8139" if is_nt5 else "e1000"


def default_memory_mib(arch: str | None, is_nt5: bool) -> int:
    """2 GiB for x64 and NT 6+, 1 GiB for 32-bit NT 5.x."""
    return 2048 if (arch == "x64" or not is_nt5) else 1024


def check_choice(option: str, value: str | None, allowed: tuple[str, ...], *,
                 auto: bool = False) -> None:
    """A UsageError naming the option and the allowed values (``auto`` also allowed)."""
    if value is None or value in allowed or (auto and value == AUTO):
        return
    names = ((AUTO,) if auto else ()) + allowed
    raise UsageError(f"--{option} {value}: use one of {', '.join(names)}")


def check_vcpus(vcpus: int | None, machine: str | None = None) -> None:
    """Within QEMU's limit for ``machine`` (for any machine type when not known yet)."""
    if vcpus is None:
        return
    if isinstance(vcpus, bool) or not isinstance(vcpus, int):
        raise UsageError(f"--vcpus {vcpus!r}: a whole number")
    limit = MAX_VCPUS[machine] if machine is not None else max(MAX_VCPUS.values())
    if not 1 <= vcpus <= limit:
        where = f" on {machine}" if machine is not None else ""
        raise UsageError(f"--vcpus {vcpus}: must be between 1 and {limit}{where}")
