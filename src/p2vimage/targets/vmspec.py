"""The converted guest's virtual hardware, as one description every output writes from.

A conversion decides the VM once (from the inspection and the plan, in ``domain.py``);
the libvirt domain XML (``libvirt_xml``), the Proxmox VE config (:mod:`.proxmox`) and the
KubeVirt manifests (:mod:`.kubevirt`) are renderings of the same :class:`DomainSpec`, so
the guest gets the same bus, NIC, machine, firmware and clock whatever it lands on.  The
dataclasses live here, in the targets layer, because the writers under ``targets/`` may
not import top-level modules; ``libvirt_xml`` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DiskSpec", "DomainSpec"]


@dataclass
class DiskSpec:
    """One disk of the guest, in the order the guest should see them (system disk first).

    ``path`` is the output image (made absolute: libvirt's schema requires an absolute
    file name); a path under ``/dev/`` becomes a block-device disk.  ``format`` is the
    image format of that file (the driver type must match it or QEMU reads garbage).
    ``bus`` is the controller the guest has a boot driver for.
    """

    path: str
    format: str = "qcow2"
    bus: str = "virtio"


@dataclass
class DomainSpec:
    """The guest's virtual hardware; the defaults come from the inspection report.

    Every writer reads it: ``libvirt_xml.build_domain``, :mod:`.proxmox`, :mod:`.kubevirt`.

    ``arch`` is the *guest's* architecture ("x86" -> i686, "x64" -> x86_64).
    ``network`` is ``network=NAME`` or ``bridge=NAME`` (see ``libvirt_xml.parse_network``).
    ``localtime`` is False only when the guest sets ``RealTimeIsUniversal``.
    ``uniprocessor_hal``: the installed HAL drives one CPU, so extra vCPUs would idle.
    ``virtio_transitional``: the guest's virtio drivers know only the legacy PCI IDs
    (NT 5.x); on q35 the virtio devices then use the ``virtio-transitional`` models.
    ``cdrom``: an ISO (typically virtio-win) to attach read-only, or None.
    ``balloon``: a virtio balloon driver is staged, so a balloon device is useful.
    ``smbios``: ``{"bios": {...}, "system": {...}}`` strings to copy from the physical
    machine (OEM-installed systems, asset tags); see ``libvirt_xml.build_domain``.
    ``virtio_scsi``: add a virtio-scsi controller (disks with bus "scsi" sit on it).
    ``cpu_mode``: "host-passthrough" (default), "host-model", or None for the hypervisor's
    default CPU model.
    """

    name: str
    memory_mib: int
    vcpus: int = 1
    arch: str = "x64"
    machine: str = "pc"
    firmware: str = "bios"
    disks: list[DiskSpec] = field(default_factory=list)
    nic_model: str | None = None
    mac: str | None = None
    network: str = "network=default"
    localtime: bool = True
    uniprocessor_hal: bool = False
    virtio_transitional: bool = False
    cdrom: str | None = None
    balloon: bool = False
    smbios: dict[str, dict[str, str]] | None = None
    virtio_scsi: bool = False
    cpu_mode: str | None = "host-passthrough"
