"""A libvirt domain XML as the check needs it, and whether it agrees with the guest.

With ``--xml`` the devices to evaluate come from the domain (its system disk's bus,
NIC model, machine type, vCPUs), so ``check`` answers "will *this* VM boot?"; the
clock and firmware are compared with what the guest expects.
"""

from __future__ import annotations

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
    transitional: bool
    nic: str | None
    vcpus: int | None
    clock: str | None


_BUS = {"ide": "ide", "sata": "sata", "virtio": "virtio-blk", "scsi": "scsi"}
_NIC = {"virtio": "virtio", "virtio-transitional": "virtio", "e1000": "e1000",
        "rtl8139": "rtl8139"}


def read_domain(path: Path) -> DomainFacts:
    try:
        root = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
    except (OSError, etree.XMLSyntaxError) as exc:
        raise BadInputError(f"{path}: not a readable domain XML: {exc}") from None
    dom = root.getroot()
    if dom.tag != "domain":
        raise BadInputError(f"{path}: root element is <{dom.tag}>, not <domain>")
    otype = dom.find("os/type")
    mtype = otype.get("machine", "") if otype is not None else ""
    machine = "q35" if "q35" in mtype else "pc"
    os_el = dom.find("os")
    efi = os_el is not None and (
        os_el.get("firmware") == "efi" or (os_el.find("loader") is not None
                                           and "efi" in (os_el.findtext("loader") or "").lower())
    )
    bus = transitional = None
    disk = _boot_disk(dom)
    if disk is not None:
        target = disk.find("target")
        raw = target.get("bus") if target is not None else None
        bus = _BUS.get(raw or "")
        if bus == "scsi":
            ctrl = dom.find("devices/controller[@type='scsi']")
            bus = "virtio-scsi" if ctrl is not None and ctrl.get("model") == "virtio-scsi" \
                else "scsi"
        transitional = disk.get("model") == "virtio-transitional"
    iface = dom.find("devices/interface/model")
    nic = _NIC.get(iface.get("type", "")) if iface is not None else None
    vcpu = dom.findtext("vcpu")
    clock = dom.find("clock")
    return DomainFacts(
        machine=machine,
        firmware="uefi" if efi else "bios",
        bus=bus,
        transitional=bool(transitional),
        nic=nic,
        vcpus=int(vcpu) if vcpu and vcpu.strip().isdigit() else None,
        clock=clock.get("offset") if clock is not None else None,
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
    if facts.nic is None:
        res.add("xml.nic-model", WARNING, "the domain's NIC model is not one we evaluate",
                [f"{path}: devices/interface"])
    return res
