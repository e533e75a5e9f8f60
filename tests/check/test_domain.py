"""check/domain.py: the facts read from a libvirt domain XML and the checks against them."""

from __future__ import annotations

from p2vimage.check import domain


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
