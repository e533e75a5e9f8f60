"""inspection/classes.py: class GUID comparison, DeviceDesc display text, and the walk over
a control set's ``Enum`` tree (on a hivex-written hive and the real XP hive)."""

from __future__ import annotations

from pathlib import Path

from fixtures.hivebuild import build_hive, sz
from p2vimage.guest.registry import Hive
from p2vimage.inspection import classes

XP = "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"


def test_same_guid_ignores_case_and_spaces() -> None:
    assert classes.same_guid("{4d36e972-e325-11ce-bfc1-08002be10318} ", classes.NET)
    assert classes.same_guid(classes.HDC, classes.HDC.lower())
    assert not classes.same_guid(classes.HDC, classes.SCSI_ADAPTER)
    assert not classes.same_guid(None, classes.NET)
    assert classes.STORAGE_CONTROLLERS == (classes.HDC, classes.SCSI_ADAPTER)


def test_display_text_strips_the_inf_indirection() -> None:
    assert classes.display_text("@mshdc.inf,%pci\\cc_0101.devicedesc%;Standard Dual Channel "
                                "PCI IDE Controller") == "Standard Dual Channel PCI IDE Controller"
    assert classes.display_text("@only-a-reference") == "@only-a-reference"
    assert classes.display_text("Primary IDE Channel") == "Primary IDE Channel"
    assert classes.display_text("a;b") == "a;b"  # no leading @: plain text
    assert classes.display_text(None) is None


def test_enum_instances_walks_three_levels(tmp_path: Path) -> None:
    cs = "ControlSet001"
    hive = Hive(build_hive(tmp_path / "SYSTEM", {
        f"{cs}\\Enum\\PCI\\VEN_8086&DEV_7010\\3&1": {"Service": sz("intelide")},
        f"{cs}\\Enum\\PCI\\VEN_8086&DEV_7010\\3&2": {},
        f"{cs}\\Enum\\Root\\LEGACY_ATAPI\\0000": {},
        f"{cs}\\Enum\\USB\\ROOT_HUB": {},  # a device key without instances
        "ControlSet002\\Enum\\PCI\\VEN_1AF4&DEV_1001\\1": {},
    }))
    got = [(b, d, i) for b, d, i, _node in classes.enum_instances(hive, cs)]
    assert sorted(got) == [("PCI", "VEN_8086&DEV_7010", "3&1"), ("PCI", "VEN_8086&DEV_7010", "3&2"),
                           ("Root", "LEGACY_ATAPI", "0000")]
    node = next(n for b, d, i, n in classes.enum_instances(hive, cs) if i == "3&1")
    assert hive.get_str(node, "Service") == "intelide"
    assert list(classes.enum_instances(hive, "ControlSet009")) == []


def test_enum_instances_on_the_real_xp_hive(real_hives: dict[str, Path]) -> None:
    """The Virtual PC guest's IDE controller (8086:7111) and its NIC (DEC 21140, 1011:0009)
    are PCI instances of ControlSet001, with the class GUIDs setup wrote."""
    hive = Hive(real_hives[XP])
    by_dev = {(b.upper(), d.upper().split("&SUBSYS")[0]): n
              for b, d, _i, n in classes.enum_instances(hive, "ControlSet001")}
    ide = by_dev[("PCI", "VEN_8086&DEV_7111")]
    assert classes.same_guid(hive.get_str(ide, "ClassGUID"), classes.HDC)
    nic = by_dev[("PCI", "VEN_1011&DEV_0009")]
    assert classes.same_guid(hive.get_str(nic, "ClassGUID"), classes.NET)
