"""A libvirt domain XML as the check needs it, and whether it agrees with the guest.

With ``--xml`` the devices to evaluate come from the domain (its system disk's bus,
NIC model, machine type, vCPUs), so ``check`` answers "will *this* VM boot?"; the
clock and firmware are compared with what the guest expects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from ..errors import BadInputError
from .report import ERROR, WARNING, CheckResult


@dataclass(frozen=True)
class DomainFacts:
    machine: str  # "pc" | "q35"
    firmware: str  # "bios" | "uefi"
    bus: str | None
    disk_model: str | None  # "virtio-transitional" | "virtio-non-transitional" | None
    nic: str | None
    nic_model: str | None  # the <model type>, e.g. "virtio-transitional"
    vcpus: int | None
    clock: str | None  # "utc" | "localtime" | other libvirt offsets


def modern_virtio(machine: str, model: str | None) -> bool:
    """Whether QEMU presents the modern (1.0) virtio IDs: always for a non-transitional
    model, never for a transitional one, else by machine (PCIe slots of q35 get modern
    devices; i440fx's PCI slots the transitional ones)."""
    if model == "virtio-non-transitional":
        return True
    if model == "virtio-transitional":
        return False
    return machine == "q35"


_BUS = {"ide": "ide", "sata": "sata", "virtio": "virtio-blk", "scsi": "scsi"}
_NIC = {"virtio": "virtio", "virtio-transitional": "virtio",
        "virtio-non-transitional": "virtio", "e1000": "e1000", "rtl8139": "rtl8139"}
_EFI_HINTS = ("ovmf", "edk2", "aavmf", "efi")


def read_domain(path: Path) -> DomainFacts:
    try:
        root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
    except (OSError, etree.XMLSyntaxError) as exc:
        raise BadInputError(f"{path}: not a readable domain XML: {exc}") from None
    dom = root.getroot()
    if dom.tag != "domain":
        raise BadInputError(f"{path}: root element is <{dom.tag}>, not <domain>")
    return facts_of(dom)


def facts_of(dom: etree._Element) -> DomainFacts:
    """The facts of a ``<domain>`` element (one read from a file, or one convert is
    about to write)."""
    otype = dom.find("os/type")
    mtype = otype.get("machine", "") if otype is not None else ""
    machine = "q35" if "q35" in mtype else "pc"
    os_el = dom.find("os")
    efi = False
    if os_el is not None:
        loader = os_el.find("loader")
        efi = (os_el.get("firmware") == "efi" or os_el.find("nvram") is not None
               or (loader is not None and (loader.get("type") == "pflash" or any(
                   h in (loader.text or "").lower() for h in _EFI_HINTS))))
    bus = disk_model = None
    disk = _boot_disk(dom)
    if disk is not None:
        target = disk.find("target")
        raw = target.get("bus") if target is not None else None
        bus = _BUS.get(raw or "", raw)
        if bus == "scsi":
            ctrl = dom.find("devices/controller[@type='scsi']")
            bus = "virtio-scsi" if ctrl is not None and ctrl.get("model") == "virtio-scsi" \
                else "scsi"
        disk_model = disk.get("model")
    iface = dom.find("devices/interface")
    nic = nic_model = None
    if iface is not None:
        model = iface.find("model")
        # libvirt leaves the model to QEMU, whose x86 default is rtl8139
        nic_model = model.get("type", "") if model is not None else "rtl8139"
        nic = _NIC.get(nic_model)
    vcpu = dom.find("vcpu")
    count = vcpu.get("current") or vcpu.text if vcpu is not None else None
    clock = dom.find("clock")
    offset = clock.get("offset") if clock is not None else None
    if offset == "variable":
        offset = clock.get("basis", "utc")
    return DomainFacts(
        machine=machine,
        firmware="uefi" if efi else "bios",
        bus=bus,
        disk_model=disk_model,
        nic=nic,
        nic_model=nic_model,
        # (ASCII digits only: "²".isdigit() is true and int() refuses it, and 4300+ digits)
        vcpus=int(count) if count and re.fullmatch(r"[0-9]{1,9}", count.strip()) else None,
        clock=offset,
    )


def _boot_disk(dom: etree._Element) -> etree._Element | None:
    disks = dom.findall("devices/disk[@device='disk']")
    if not disks:
        return None
    for d in disks:  # <boot order='1'/> wins, else the first disk
        b = d.find("boot")
        if b is not None and b.get("order") == "1":
            return d
    return disks[0]


def check_domain(facts: DomainFacts, firmware: str | None, utc: bool, path: str) -> CheckResult:
    res = CheckResult("domain-xml", "Domain XML agrees with the guest")
    if facts.bus is None:
        res.add("xml.no-disk", ERROR, "the domain has no disk to boot from", [path])
    elif facts.bus not in ("ide", "sata", "virtio-blk", "virtio-scsi", "scsi"):
        res.add("xml.bus-unsupported", ERROR,
                f"the system disk is on a {facts.bus} bus, which Windows cannot boot from here",
                [f"{path}: devices/disk/target"])
    elif facts.bus == "scsi":
        res.add("xml.bus-unsupported", ERROR,
                "the system disk is on a SCSI controller other than virtio-scsi (lsilogic: "
                "no driver in Windows x64 or after 2008)", [f"{path}: devices/controller"])
    if facts.bus == "ide" and facts.machine == "q35":
        res.add("xml.ide-on-q35", ERROR, "q35 has no IDE controller: use sata", [path])
    if firmware and facts.firmware != firmware:
        res.add("xml.firmware", ERROR,
                f"the guest boots with {firmware.upper()}, the domain with "
                f"{facts.firmware.upper()}", [f"{path}: os"])
    want_clock = "utc" if utc else "localtime"
    if facts.clock and facts.clock != want_clock:
        res.add("xml.clock", WARNING,
                f"the guest keeps its RTC in {want_clock}, the domain's clock offset is "
                f"{facts.clock}: the time will be off by the UTC offset", [f"{path}: clock"])
    if facts.nic is None and facts.nic_model is not None:
        res.add("xml.nic-model", WARNING,
                f"the domain's NIC model {facts.nic_model!r} is not one check evaluates",
                [f"{path}: devices/interface"])
    return res
