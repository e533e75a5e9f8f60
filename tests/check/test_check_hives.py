"""``check_hives`` (check/__init__.py): the whole check on the real SYSTEM hives (no disk)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fixtures.hivebuild import build_hive, dword, sz
from p2vimage.check import check_hives, devices
from p2vimage.check.storage import match_cddb, match_driver_database
from p2vimage.formats.regf import REG_DWORD, REG_SZ
from p2vimage.guest.registry import Hive
from p2vimage.guest.windows_root import CURRENT_VERSION
from p2vimage.windows.mergeide import HDC_CLASS
from tests.check.test_storage import _spec
from tests.conftest import run_cli

XP = "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"
W10 = "regipy-win10-18362-x64-SYSTEM_WIN_10_1709"


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


def _hives(tmp_path: Path, *, software: bool = True, **services: dict) -> tuple[Path, Path]:
    """An XP hive ready for IDE (tests/check/test_storage.py's), plus services, and an XP
    SOFTWARE hive."""
    spec = _spec()
    for name, values in services.items():
        spec[f"ControlSet001\\Services\\{name}"] = values
    system = build_hive(tmp_path / "SYSTEM", spec)
    soft = build_hive(tmp_path / "SOFTWARE", {CURRENT_VERSION: {
        "ProductName": sz("Microsoft Windows XP"), "CurrentVersion": sz("5.1"),
        "CurrentBuildNumber": sz("2600")}}, hive_name="SOFTWARE")
    return system, soft if software else None


def test_every_check_on_hives_alone(tmp_path: Path) -> None:
    """Without a disk, the file and volume checks are skipped; what convert would choose
    is assumed: i440fx, IDE (no virtio driver), rtl8139 (NT 5.x, no NetKVM)."""
    system, soft = _hives(tmp_path)
    r = check_hives(system, soft, bus=None)
    assert (r.bus, r.nic, r.machine, r.vcpus, r.xml) == ("ide", "rtl8139", "pc", None, None)
    assert [(c.id, c.status) for c in r.checks] == [
        ("boot-storage", "passed"), ("boot-start-files", "skipped"),
        ("nt5-geometry", "skipped"), ("nt5-hal", "warning"), ("virtio-staging", "skipped"),
        ("network", "passed"), ("hygiene", "skipped")]
    assert r.ids() == ["nt5.hal-unknown"] and r.ready
    assert r.guest == {"product_name": "Microsoft Windows XP", "version": "5.1.2600",
                       "arch": None, "system_root": None, "firmware": None,
                       "control_sets": ["ControlSet001", "ControlSet002"]}
    assert r.image == str(system)


@pytest.mark.parametrize(("services", "bus", "nic"), [
    ({"viostor": {"Start": dword(0)}}, "virtio-blk", "rtl8139"),
    ({"vioscsi": {"Start": dword(0)}, "viostor": {"Start": dword(3)}}, "virtio-scsi", "rtl8139"),
    ({"netkvm": {"Start": dword(3)}}, "ide", "virtio"),
])
def test_bus_and_nic_as_convert_would_pick(tmp_path: Path, services, bus, nic) -> None:
    system, soft = _hives(tmp_path, **services)
    r = check_hives(system, soft, bus=None)
    assert (r.bus, r.nic) == (bus, nic)
    # a virtio boot driver the CDDB does not route the device to: not ready
    if bus != "ide":
        assert r.ids("error")[0] == "storage.no-driver"
        assert next(c for c in r.checks if c.id == "virtio-staging").skipped


def test_default_control_set_missing(tmp_path: Path) -> None:
    """Select\\Default names ControlSet003, which is gone: the boot loader has nothing to
    load (Current still points at an existing set, so the rest is checked)."""
    spec = _spec()
    spec["Select"] = {"Current": dword(1), "Default": dword(3), "LastKnownGood": dword(2)}
    r = check_hives(build_hive(tmp_path / "SYSTEM", spec), bus="ide")
    assert r.ids("error") == ["registry.default-control-set-missing"]
    assert r.findings[0].evidence == ["SYSTEM\\Select\\Default"]
    assert r.guest["control_sets"] == ["ControlSet001", "ControlSet002"]


def test_select_pointing_nowhere_is_bad_input(tmp_path: Path) -> None:
    from p2vimage.errors import CorruptHiveError

    spec = _spec()
    spec["Select"] = {"Current": dword(5), "Default": dword(5)}
    with pytest.raises(CorruptHiveError, match="ControlSet005, which does not exist") as exc:
        check_hives(build_hive(tmp_path / "SYSTEM", spec), bus="ide")
    assert exc.value.exit_code == 3


def test_vcpus_within_the_machine_limit(tmp_path: Path) -> None:
    from p2vimage.errors import UsageError

    system, soft = _hives(tmp_path)
    assert check_hives(system, soft, vcpus=255).vcpus == 255
    # 288 is q35's limit, so the option itself is fine; i440fx takes 255 at most
    with pytest.raises(UsageError, match="between 1 and 255 on pc"):
        check_hives(system, soft, vcpus=288)
    with pytest.raises(UsageError, match="--nic ne2k_pci"):
        check_hives(system, soft, nic="ne2k_pci")


def test_domain_xml_facts_and_conflicts(tmp_path: Path) -> None:
    """With a domain XML (check --xml) the devices come from it, and an option that
    contradicts it is an error of the domain check."""
    from p2vimage.check import _run, _view
    from p2vimage.check.domain import DomainFacts
    from p2vimage.inspection import Inspection, fill_from_hives

    system, soft = _hives(tmp_path)
    insp = fill_from_hives(Inspection(), Hive(system), Hive(soft))
    facts = DomainFacts("pc", "bios", "ide", None, "e1000", "e1000", 2, "localtime")

    def run(bus, nic, vcpus):
        view = _view(insp, Hive(system), Hive(soft), None)
        return _run(view, insp, "vm.img", bus, nic, vcpus, facts, "vm.xml")

    r = run(None, None, None)
    assert (r.bus, r.nic, r.vcpus, r.xml) == ("ide", "e1000", 2, "vm.xml")
    assert r.checks[-1].id == "domain-xml" and r.checks[-1].findings == []
    r = run("sata", None, 4)
    mismatch = [f.message for f in r.findings if f.id == "xml.mismatch"]
    assert mismatch == ["--bus sata but the domain XML has ide",
                        "--vcpus 4 but the domain XML has 2"]
    assert r.bus == "sata" and not r.ready


def test_system_drive_for_image_paths() -> None:
    from p2vimage.check import _system_drive
    from p2vimage.inspection import Inspection

    insp = Inspection(windows_partition="/dev/sda2",
                      drive_letters={"C": "/dev/sda1", "d": "/dev/sda2"})
    assert _system_drive(insp) == "D"
    assert _system_drive(Inspection()) == "C"
