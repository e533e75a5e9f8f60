"""``check`` logic on the real SYSTEM hives (no disk) and on small in-memory parts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from p2vimage.check import check_hives, devices, domain
from p2vimage.check.report import CheckReport, CheckResult
from p2vimage.check.storage import match_cddb, match_driver_database
from p2vimage.formats import ntfs_volume
from p2vimage.formats.regf import REG_DWORD, REG_SZ
from p2vimage.guest.registry import Hive
from p2vimage.windows.mergeide import HDC_CLASS
from tests.conftest import run_cli

XP = "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"
W10 = "regipy-win10-18362-x64-SYSTEM_WIN_10_1709"


def test_pci_ids_in_windows_order() -> None:
    ids = devices.pci_ids("8086", "7010", "11001AF4", "00", "010180")
    assert ids == (
        "PCI\\VEN_8086&DEV_7010&SUBSYS_11001AF4&REV_00", "PCI\\VEN_8086&DEV_7010&SUBSYS_11001AF4",
        "PCI\\VEN_8086&DEV_7010&REV_00", "PCI\\VEN_8086&DEV_7010",
        "PCI\\VEN_8086&DEV_7010&CC_010180", "PCI\\VEN_8086&DEV_7010&CC_0101",
        "PCI\\VEN_8086&CC_010180", "PCI\\VEN_8086&CC_0101", "PCI\\VEN_8086",
        "PCI\\CC_010180", "PCI\\CC_0101",
    )


def test_real_xp_hive_not_ready_for_qemu_piix3(real_hives) -> None:
    """The real XP hive comes from a Virtual PC guest.  Virtual PC emulates an Intel
    440BX board whose IDE function is PIIX4 (8086:7111): XP's setup wrote a critical-device
    entry for exactly that ID (``pci#ven_8086&dev_7111`` → intelide) and for the channels
    and the disk, but none for PIIX3 (8086:7010), the IDE function of QEMU's i440fx, and
    none for the class-code compatible ID ``PCI\\CC_0101`` that would catch any IDE
    controller.  So every ID QEMU's controller reports misses, in both bootable control
    sets: 0x7B on first boot — the case KB314082 ("Mergeide") exists for."""
    hive = real_hives[XP]
    r = check_hives(hive, bus="ide")
    assert not r.ready
    # Default (001) is what the boot loader uses: an error; LastKnownGood (003): a warning.
    assert r.ids("error") == ["storage.no-driver"]
    assert r.ids("warning") == ["storage.no-driver"]
    assert [f.message.split(":")[0] for f in r.findings] == ["ControlSet001", "ControlSet003"]
    assert r.findings[1].message.endswith("(when this control set is booted)")
    assert "PIIX3" in r.findings[0].message
    # Evidence: all eleven IDs, most specific first, as CDDB key names.
    assert r.findings[0].evidence[0].endswith(
        "CriticalDeviceDatabase\\PCI#VEN_8086&DEV_7010&SUBSYS_11001AF4&REV_00")
    assert r.findings[0].evidence[-1].endswith("CriticalDeviceDatabase\\PCI#CC_0101")
    h = Hive(hive)
    # ... while the Virtual PC controller itself, and the channel and disk, do match:
    assert match_cddb(h, "ControlSet001", devices.pci_ids(
        "8086", "7111", "00000000", "01", "010180")) == ("PCI\\VEN_8086&DEV_7111", "intelide")
    assert match_cddb(h, "ControlSet001", ("Intel-PIIX4", "Primary_IDE_Channel")) == (
        "Primary_IDE_Channel", "atapi")
    assert match_cddb(h, "ControlSet001", ("GenDisk",)) == ("GenDisk", "disk")


def test_real_xp_hive_ready_after_mergeide_entries(real_hives, tmp_path) -> None:
    """The same hive with only the two KB314082 keys for PIIX3 added is ready for ide."""
    hive = tmp_path / "system"
    shutil.copyfile(real_hives[XP], hive)
    with Hive(hive, write=True) as h:
        for cs in ("ControlSet001", "ControlSet003"):
            node = h.ensure_key(f"{cs}\\Control\\CriticalDeviceDatabase\\pci#ven_8086&dev_7010")
            h.set_value(node, "Service", REG_SZ, "intelide")
            h.set_value(node, "ClassGUID", REG_SZ, HDC_CLASS)
        h.commit()
    r = check_hives(hive, bus="ide")
    assert r.ready, "\n".join(r.summary_lines())
    # virtio-blk is still not (no viostor at all)
    assert check_hives(hive, bus="virtio-blk").ids("error") == ["storage.no-driver"]


def test_real_win10_hive_driver_database(real_hives, tmp_path) -> None:
    """Windows 10 finds drivers through DriverDatabase: PIIX3 IDE → mshdc.inf's
    intelide_Inst → intelide; ICH9 AHCI → storahci; no virtio driver in-box."""
    h = Hive(real_hives[W10])
    assert match_driver_database(h, devices.boot_chain("ide", "pc", False)[0].ids) == (
        "PCI\\VEN_8086&DEV_7010", "intelide")
    assert match_driver_database(h, devices.boot_chain("sata", "q35", True)[0].ids) == (
        "PCI\\CC_010601", "storahci")
    assert check_hives(real_hives[W10], bus="ide").ready
    assert check_hives(real_hives[W10], bus="sata").ready
    assert check_hives(real_hives[W10], bus="virtio-blk").ids("error") == ["storage.no-driver"]
    # A StartOverride that skips the driver at boot is found.
    hive = tmp_path / "system"
    shutil.copyfile(real_hives[W10], hive)
    with Hive(hive, write=True) as w:
        node = w.ensure_key("ControlSet001\\Services\\intelide\\StartOverride")
        w.set_value(node, "0", REG_DWORD, 3)
        w.commit()
    assert check_hives(hive, bus="ide").ids("error") == ["storage.start-override"]


def test_junit_has_one_testcase_per_check() -> None:
    r = CheckReport("x.img", "ide", "e1000", "pc", 2, None, {"product_name": "W"})
    a = CheckResult("boot-storage", "t1")
    a.add("storage.no-driver", "error", "no driver <&>", ["K\\1"])
    b = CheckResult("network", "t2")
    b.add("network.no-driver", "warning", "w")
    c = CheckResult("nt5-hal", "t3", skipped="NT 6")
    r.checks = [a, b, c, CheckResult("hygiene", "t4")]
    root = etree.fromstring(r.to_junit())
    suite = root.find("testsuite")
    assert [t.get("name") for t in suite.findall("testcase")] == [
        "boot-storage", "network", "nt5-hal", "hygiene"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    fail = suite.find("testcase[@name='boot-storage']/failure")
    assert fail.get("message") == "no driver <&>" and "K\\1" in fail.text
    assert "w [network.no-driver]" in suite.find("testcase[@name='network']/system-out").text
    assert suite.find("testcase[@name='nt5-hal']/skipped") is not None
    assert not r.ready and r.to_dict()["counts"] == {"error": 1, "warning": 1, "info": 0}


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


def test_ntfs_volume_flags_on_real_mkntfs(tmp_path) -> None:
    img = tmp_path / "ntfs.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkntfs", "-q", "-F", "-f", str(img)], check=True, capture_output=True)
    data = bytearray(img.read_bytes())
    boot = ntfs_volume.parse_boot(bytes(data[:512]))
    at = boot.record_offset(ntfs_volume.VOLUME_RECORD)
    flags, off = ntfs_volume.volume_flags(bytes(data[at : at + boot.record_size]))
    assert not flags & ntfs_volume.FLAG_DIRTY
    data[at + off] |= 1
    data[boot.mirror_record_offset(3) + off] |= 1  # Windows keeps $MFTMirr equal
    img.write_bytes(bytes(data))
    # ntfs-3g's own tool reads the flag we set
    info = subprocess.run(["ntfsinfo", "-m", "-f", str(img)], capture_output=True, text=True,
                          check=True)
    assert "Volume Flags: 0x0001" in info.stdout
    record = img.read_bytes()[at : at + boot.record_size]
    assert ntfs_volume.volume_flags(record)[0] & ntfs_volume.FLAG_DIRTY
    with pytest.raises(ntfs_volume.NtfsError):
        ntfs_volume.volume_flags(b"BAAD" + record[4:])
    with pytest.raises(ntfs_volume.NtfsError):
        ntfs_volume.parse_boot(bytes(512))


def test_bad_arguments_are_usage_errors(real_hives) -> None:
    from p2vimage.errors import UsageError

    with pytest.raises(UsageError):
        check_hives(real_hives[XP], bus="floppy")
    with pytest.raises(UsageError):
        check_hives(real_hives[XP], vcpus=0)


def test_every_finding_id_is_documented() -> None:
    """docs/check.md is the contract pipelines match on: every id the code emits is there."""
    import re

    root = Path(__file__).resolve().parents[2]
    source = "".join(p.read_text() for p in (root / "src/p2vimage/check").glob("*.py"))
    ids = set(re.findall(r'"((?:storage|boot-start|nt5|virtio|network|hygiene|xml|registry)'
                         r'\.[a-z0-9-]+)"', source))
    doc = (root / "docs/check.md").read_text()
    assert len(ids) > 30
    assert sorted(i for i in ids if f"`{i}`" not in doc) == []


def test_cli_could_not_check(tmp_path) -> None:
    """Rejected before any appliance starts: exit 3 (could not check) or 2 (usage)."""
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\x1f\x8b" + bytes(4094))
    r = run_cli("check", str(junk), "--json")
    assert r.returncode == 3
    assert json.loads(r.stdout)["error"]["exit_code"] == 3
    r = run_cli("check", str(junk), "--bus", "floppy")
    assert r.returncode == 2
    xml = tmp_path / "bad.xml"
    xml.write_text("<notadomain/>")
    r = run_cli("check", str(junk), "--xml", str(xml))
    assert r.returncode == 3 and "not <domain>" in r.stderr
