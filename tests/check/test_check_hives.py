"""``check_hives`` (check/__init__.py): the whole check on the real SYSTEM hives (no disk)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from p2vimage.check import check_hives, devices
from p2vimage.check.storage import match_cddb, match_driver_database
from p2vimage.formats.regf import REG_DWORD, REG_SZ
from p2vimage.guest.registry import Hive
from p2vimage.windows.mergeide import HDC_CLASS
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
