"""check/domain.py: the facts read from a libvirt domain XML and the checks against them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from p2vimage.check import domain
from p2vimage.check.report import ERROR, WARNING
from p2vimage.errors import BadInputError
from tests.conftest import REALDATA


def test_domain_xml_facts(tmp_path) -> None:
    x = tmp_path / "d.xml"
    x.write_text(
        "<domain type='kvm'><name>a</name><vcpu>2</vcpu>"
        "<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>"
        "<clock offset='utc'/><devices>"
        "<disk type='file' device='cdrom'><target dev='hdc' bus='sata'/></disk>"
        "<disk type='file' device='disk' model='virtio-transitional'>"
        "<target dev='vda' bus='virtio'/></disk>"
        "<interface type='network'><model type='e1000'/></interface></devices></domain>")
    f = domain.read_domain(x)
    assert f == domain.DomainFacts("q35", "bios", "virtio-blk", "virtio-transitional", "e1000",
                                   "e1000", 2, "utc")
    assert not domain.modern_virtio(f.machine, f.disk_model)  # transitional even on q35
    res = domain.check_domain(f, "bios", utc=False, path=str(x))
    assert [i.id for i in res.findings] == ["xml.clock"]
    assert [i.id for i in domain.check_domain(f, "uefi", True, str(x)).findings] == [
        "xml.firmware"]
    # virt-manager/virt-v2v's UEFI form, a non-transitional disk on i440fx, no NIC model
    y = tmp_path / "e.xml"
    y.write_text(
        "<domain type='kvm'><name>b</name><vcpu current='1'>4</vcpu>"
        "<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>"
        "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader></os>"
        "<clock offset='variable' basis='localtime'/><devices>"
        "<disk type='file' device='disk' model='virtio-non-transitional'>"
        "<target dev='vda' bus='virtio'/></disk>"
        "<interface type='network'/></devices></domain>")
    f = domain.read_domain(y)
    assert (f.firmware, f.machine, f.vcpus, f.clock, f.nic) == ("uefi", "pc", 1, "localtime",
                                                               "rtl8139")
    assert domain.modern_virtio(f.machine, f.disk_model)  # 1AF4:1042 even on i440fx
    assert not domain.modern_virtio(f.machine, None)


DOMAINS = REALDATA / "libvirt" / "domain-xml-virt-manager-tests"

# (file, document) -> the facts, read off the XML by eye: machine, firmware, bus, disk
# model, NIC, NIC model, vCPUs, clock.  virt-install's files hold two documents (install
# time, then after the install); the second is the VM as it stays.
REAL = {
    ("convert-to-q35-win10-in.xml", 0): ("pc", "bios", "ide", None, "e1000", "e1000", 2, None),
    ("convert-to-q35-win10-out.xml", 0): ("q35", "bios", "sata", None, None, "e1000e", 2, None),
    ("virt-install-kvm-win2k3-cdrom.xml", 1): ("pc", "bios", "ide", None, "e1000", "e1000", 2,
                                               "localtime"),
    ("virt-install-kvm-win10.xml", 1): ("q35", "bios", "sata", None, None, "e1000e", 2,
                                        "localtime"),
    ("virt-install-osinfo-win7-unattended.xml", 1): ("q35", "bios", None, None, "virtio",
                                                     "virtio", 2, "localtime"),
    ("virt-install-win11-no-uefi.xml", 1): ("q35", "bios", "sata", None, None, "e1000e", 4,
                                            "localtime"),
    ("virt-install-win11.xml", 1): ("q35", "uefi", "sata", None, None, "e1000e", 4,
                                    "localtime"),  # <os firmware="efi">
    ("virt-install-win7-uefi.xml", 1): ("q35", "uefi", "sata", None, None, "e1000e", 2,
                                        "localtime"),  # <loader type="pflash">, <nvram>
}


def _document(name: str, index: int, tmp_path: Path) -> Path:
    docs = re.findall(r"<domain\b.*?</domain>", (DOMAINS / name).read_text(), re.S)
    path = tmp_path / f"{index}-{name}"
    path.write_text(docs[index])
    return path


@pytest.mark.parametrize(("name", "index"), sorted(REAL))
def test_real_virt_manager_domains(name: str, index: int, tmp_path: Path) -> None:
    facts = domain.read_domain(_document(name, index, tmp_path))
    assert facts == domain.DomainFacts(*REAL[name, index])


def test_real_domains_checked_against_a_guest(tmp_path: Path) -> None:
    """virt-install's Windows 10 VM: SATA on q35, e1000e (not a model check evaluates),
    the clock in localtime; the osinfo Windows 7 VM has no disk at all."""
    path = _document("virt-install-kvm-win10.xml", 1, tmp_path)
    facts = domain.read_domain(path)
    res = domain.check_domain(facts, "bios", utc=False, path=str(path))
    assert [(f.id, f.severity) for f in res.findings] == [("xml.nic-model", WARNING)]
    assert "'e1000e'" in res.findings[0].message
    res = domain.check_domain(facts, "uefi", utc=True, path=str(path))
    assert [f.id for f in res.findings] == ["xml.firmware", "xml.clock", "xml.nic-model"]
    assert res.findings[0].message == "the guest boots with UEFI, the domain with BIOS"
    w7 = _document("virt-install-osinfo-win7-unattended.xml", 1, tmp_path)
    res = domain.check_domain(domain.read_domain(w7), None, utc=False, path=str(w7))
    assert [(f.id, f.severity) for f in res.findings] == [("xml.no-disk", ERROR)]
    # the file as stored (two documents in one) is not a domain XML
    with pytest.raises(BadInputError, match="not a readable domain XML"):
        domain.read_domain(DOMAINS / "virt-install-kvm-win10.xml")


def _xml(tmp_path: Path, devices: str, extra: str = "", os_: str = "") -> Path:
    path = tmp_path / "d.xml"
    path.write_text(f"<domain type='kvm'><name>t</name>{extra}"
                    f"<os>{os_}<type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>"
                    f"<devices>{devices}</devices></domain>")
    return path


DISK = "<disk type='file' device='disk'><target dev='{dev}' bus='{bus}'/>{boot}</disk>"


def test_boot_disk_and_bus(tmp_path: Path) -> None:
    two = (DISK.format(dev="sda", bus="sata", boot="<boot order='2'/>")
           + DISK.format(dev="vda", bus="virtio", boot="<boot order='1'/>"))
    assert domain.read_domain(_xml(tmp_path, two)).bus == "virtio-blk"  # boot order 1
    first = DISK.format(dev="hda", bus="ide", boot="") + DISK.format(dev="vda", bus="virtio",
                                                                      boot="")
    assert domain.read_domain(_xml(tmp_path, first)).bus == "ide"  # else the first disk
    scsi = DISK.format(dev="sda", bus="scsi", boot="")
    assert domain.read_domain(_xml(
        tmp_path, scsi + "<controller type='scsi' model='virtio-scsi'/>")).bus == "virtio-scsi"
    assert domain.read_domain(_xml(
        tmp_path, scsi + "<controller type='scsi' model='lsilogic'/>")).bus == "scsi"
    assert domain.read_domain(_xml(tmp_path, scsi)).bus == "scsi"
    assert domain.read_domain(_xml(tmp_path, DISK.format(dev="sda", bus="usb", boot=""))
                              ).bus == "usb"


def test_firmware_vcpus_and_clock(tmp_path: Path) -> None:
    disk = DISK.format(dev="sda", bus="sata", boot="")
    ovmf = "<loader readonly='yes'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>"
    seabios = "<loader>/usr/share/seabios/bios-256k.bin</loader>"
    assert domain.read_domain(_xml(tmp_path, disk, os_=ovmf)).firmware == "uefi"
    assert domain.read_domain(_xml(tmp_path, disk, os_=seabios)).firmware == "bios"
    for vcpu, want in (("<vcpu>4</vcpu>", 4), ("<vcpu current='2'>8</vcpu>", 2),
                       ("<vcpu>²</vcpu>", None), ("<vcpu>-1</vcpu>", None),
                       ("<vcpu>" + "9" * 20 + "</vcpu>", None), ("", None)):
        assert domain.read_domain(_xml(tmp_path, disk, extra=vcpu)).vcpus == want, vcpu
    for clock, want in (("<clock offset='localtime'/>", "localtime"),
                        ("<clock offset='variable'/>", "utc"),  # basis defaults to utc
                        ("<clock offset='timezone' timezone='Europe/Paris'/>", "timezone")):
        facts = domain.read_domain(_xml(tmp_path, disk + "<interface type='user'/>",
                                        extra=clock))
        assert facts.clock == want
        assert (facts.nic, facts.nic_model) == ("rtl8139", "rtl8139")  # QEMU's default


def test_external_entities_are_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("7")
    path = tmp_path / "d.xml"
    path.write_text(f"<!DOCTYPE domain [<!ENTITY n SYSTEM 'file://{secret}'>]>"
                    "<domain type='kvm'><vcpu>&n;</vcpu><devices/></domain>")
    assert domain.read_domain(path).vcpus is None


@pytest.mark.parametrize(("content", "message"), [
    (None, "not a readable domain XML"),
    ("<domain><devices>", "not a readable domain XML"),
    ("<network><name>default</name></network>", "root element is <network>, not <domain>"),
])
def test_not_a_domain(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "x.xml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BadInputError, match=message):
        domain.read_domain(path)


@pytest.mark.parametrize(("facts", "firmware", "utc", "found"), [
    (("pc", "bios", "ide", None, "rtl8139", "rtl8139", 1, "localtime"), "bios", False, []),
    (("q35", "bios", "ide", None, None, None, 1, None), "bios", False,
     [("xml.ide-on-q35", ERROR)]),
    (("pc", "bios", "scsi", None, None, None, 1, None), None, False,
     [("xml.bus-unsupported", ERROR)]),
    (("pc", "bios", "usb", None, None, None, 1, None), None, False,
     [("xml.bus-unsupported", ERROR)]),
    (("pc", "bios", None, None, None, None, 1, None), "bios", False, [("xml.no-disk", ERROR)]),
    (("q35", "uefi", "sata", None, "e1000", "e1000", 2, "utc"), "uefi", True, []),
    (("q35", "uefi", "sata", None, "e1000", "e1000", 2, "utc"), "bios", False,
     [("xml.firmware", ERROR), ("xml.clock", WARNING)]),
])
def test_check_domain(facts: tuple, firmware: str | None, utc: bool, found: list) -> None:
    res = domain.check_domain(domain.DomainFacts(*facts), firmware, utc, "vm.xml")
    assert [(f.id, f.severity) for f in res.findings] == found
    assert all(f.evidence[0].startswith("vm.xml") for f in res.findings)


def test_modern_virtio() -> None:
    assert domain.modern_virtio("pc", "virtio-non-transitional")
    assert not domain.modern_virtio("q35", "virtio-transitional")
    assert domain.modern_virtio("q35", None) and domain.modern_virtio("q35", "virtio")
    assert not domain.modern_virtio("pc", None)
