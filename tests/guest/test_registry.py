"""guest/registry.py: hives through hivex, looked up the way Windows does (case-insensitive
names, values decoded from their raw bytes), edits and ``Select``.

Hives are real: made by our REGF writer plus hivex (``fixtures.hivebuild``), values with
odd bytes written through the hivex binding itself, and the real SYSTEM hives of the
test data."""

from __future__ import annotations

import struct
from pathlib import Path

import hivex
import pytest

from fixtures.hivebuild import build_hive, dword, sz
from p2vimage.errors import CorruptHiveError
from p2vimage.formats.regf import REG_BINARY, REG_DWORD, REG_MULTI_SZ, REG_QWORD, REG_SZ
from p2vimage.guest.registry import ControlSets, Hive, read_control_sets

XP = "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"


def _raw_values(path: Path, key: str, values: list[tuple[str, int, bytes]]) -> None:
    """Set values with exactly these bytes (hivex stores what it is given)."""
    h = hivex.Hivex(str(path), write=True)
    node = h.root()
    for part in key.split("\\"):
        node = h.node_get_child(node, part) or h.node_add_child(node, part)
    for name, vtype, data in values:
        h.node_set_value(node, {"key": name, "t": vtype, "value": data})
    h.commit(None)


@pytest.fixture
def svc_hive(tmp_path: Path) -> Path:
    return build_hive(tmp_path / "SYSTEM", {
        "ControlSet001\\Services\\Foo": {"Start": dword(0), "ImagePath": sz("x.sys")},
        "ControlSet001\\Services\\Bar": {},
    })


def test_lookups_ignore_case_and_keep_the_hive_spelling(svc_hive: Path) -> None:
    h = Hive(svc_hive)
    node = h.node("controlset001\\SERVICES\\foo")
    assert node is not None and node == h.node("ControlSet001\\Services\\Foo")
    assert h.node("\\ControlSet001\\\\Services\\Foo\\") == node  # empty parts skipped
    assert h.node_name(node) == "Foo"
    assert h.path_of(node) == "ControlSet001\\Services\\Foo"
    assert h.node("ControlSet001\\Services\\Missing") is None
    assert h.node("Missing\\Deeper") is None
    services = h.node("ControlSet001\\Services")
    assert h.node("foo", services) == node  # relative to a start key
    assert sorted(h.child_names(services)) == ["Bar", "Foo"]
    assert dict(h.iter_children(services))["Bar"] == h.node("ControlSet001\\Services\\Bar")
    # values: by lower-cased name, each keeping the name as stored
    vals = h.values(node)
    assert set(vals) == {"start", "imagepath"} and vals["imagepath"].name == "ImagePath"
    assert h.get(node, "START") == 0 and h.get_str(node, "imagepath") == "x.sys"
    # a missing key or value gives the default, never an error
    assert h.raw(None, "Start") is None and h.get(None, "Start", 7) == 7
    assert h.get(node, "Missing", "d") == "d" and h.get_str(node, "Missing") is None


def test_real_xp_hive_lookup_and_path(real_hives: dict[str, Path]) -> None:
    """The real XP hive's CDDB key is ``pci#ven_8086&dev_7111`` (lower case, as setup wrote
    it); asked in upper case it is found and its path is given in the hive's spelling."""
    h = Hive(real_hives[XP], name="SYSTEM")
    node = h.node("CONTROLSET001\\Control\\CriticalDeviceDatabase\\PCI#VEN_8086&DEV_7111")
    assert node is not None
    assert h.path_of(node) == (
        "ControlSet001\\Control\\CriticalDeviceDatabase\\pci#ven_8086&dev_7111")
    assert h.get_str(node, "service") == "intelide"
    assert h.path_of(h.root) == ""


def test_values_are_decoded_from_raw_bytes(tmp_path: Path) -> None:
    """What real hives hold: strings without a terminator or with an odd length, numbers
    shorter than their type, types other than the reader expects."""
    path = build_hive(tmp_path / "SYSTEM", {"K": {}})
    _raw_values(path, "K", [
        ("NoNul", REG_SZ, "abc".encode("utf-16-le")),
        ("Odd", REG_SZ, "abc".encode("utf-16-le") + b"\0\0" + b"\x41"),
        ("Embedded", REG_SZ, "ab\0cd\0".encode("utf-16-le")),
        ("Multi", REG_MULTI_SZ, "one\0two\0\0".encode("utf-16-le")),
        ("EmptyMulti", REG_MULTI_SZ, b"\0\0"),
        ("Bin", REG_BINARY, "bin\0".encode("utf-16-le")),
        ("Short", REG_DWORD, b"\x01\x00"),
        ("Dword", REG_DWORD, struct.pack("<I", 5)),
        ("Qword", REG_QWORD, struct.pack("<Q", 1 << 40)),
        ("Empty", REG_SZ, b""),
        ("One", REG_SZ, "one\0".encode("utf-16-le")),
    ])
    h = Hive(path)
    k = h.node("K")
    assert h.get_str(k, "NoNul") == "abc"
    assert h.get_str(k, "Odd") == "abc"
    assert h.get_str(k, "Embedded") == "ab"  # up to the first NUL
    assert h.get(k, "Multi") == ["one", "two"]
    assert h.get_str(k, "Multi") == "one" and h.get_str(k, "EmptyMulti") == ""
    assert h.get_str(k, "Bin") == "bin"  # binary read as UTF-16 text
    assert h.get(k, "Short") == b"\x01\x00"  # too short for a DWORD: the bytes
    assert h.get_int(k, "Short") is None
    assert h.get_int(k, "Dword") == 5 and h.get_str(k, "Dword") == "5"
    assert h.get_int(k, "Qword") == 1 << 40
    assert h.get_int(k, "One") is None  # a string is not a number
    assert h.raw(k, "dword").type == REG_DWORD and h.raw(k, "dword").data == struct.pack("<I", 5)
    # lists: a REG_SZ is a one-item list, an empty one none; numbers and missing: none
    assert h.get_list(k, "Multi") == ["one", "two"]
    assert h.get_list(k, "One") == ["one"]
    assert h.get_list(k, "Empty") == []
    assert h.get_list(k, "Dword") == [] and h.get_list(k, "Missing") == []


def test_edits_change_only_what_differs_and_persist(svc_hive: Path) -> None:
    with Hive(svc_hive, write=True) as h:
        node = h.node("ControlSet001\\Services\\Foo")
        assert not h.set_value(node, "start", REG_DWORD, 0)  # same type and bytes
        assert not h.dirty
        assert h.set_value(node, "start", REG_DWORD, 3)
        assert h.dirty
        assert h.set_value(node, "Group", REG_SZ, "SCSI miniport")
        # an existing key is matched whatever its spelling: no duplicate is created
        assert h.ensure_key("CONTROLSET001\\services\\FOO") == node
        new = h.ensure_key("ControlSet001\\Services\\New\\Enum")
        assert h.path_of(new) == "ControlSet001\\Services\\New\\Enum"
        h.set_value(new, "Count", REG_DWORD, 1)
        h.commit()
        assert not h.dirty
    h = Hive(svc_hive)
    node = h.node("ControlSet001\\Services\\Foo")
    # the value keeps the name it had ("Start"), not the spelling of the edit ("start")
    assert h.values(node)["start"].name == "Start" and h.get(node, "Start") == 3
    assert h.get_str(node, "Group") == "SCSI miniport"
    assert h.get_str(node, "ImagePath") == "x.sys"  # the other values stay
    assert sorted(h.child_names(h.node("ControlSet001\\Services"))) == ["Bar", "Foo", "New"]
    assert h.get_int(h.node("ControlSet001\\Services\\New\\Enum"), "Count") == 1


def test_delete_key_removes_the_subtree(svc_hive: Path) -> None:
    with Hive(svc_hive, write=True) as h:
        h.ensure_key("ControlSet001\\Services\\Foo\\Enum\\Deeper")
        h.delete_key(h.node("ControlSet001\\Services\\Foo"))
        assert h.dirty
        h.commit()
    h = Hive(svc_hive)
    assert h.node("ControlSet001\\Services\\Foo") is None
    assert h.child_names(h.node("ControlSet001\\Services")) == ["Bar"]


def test_read_only_hive_refuses_commit(svc_hive: Path) -> None:
    h = Hive(svc_hive)
    with pytest.raises(RuntimeError, match="read-only"):
        h.commit()


@pytest.mark.parametrize("content", [None, b"", b"regf" + bytes(100), bytes(8192)])
def test_unreadable_files_are_corrupt_hive_errors(tmp_path: Path, content) -> None:
    path = tmp_path / "system"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CorruptHiveError, match="cannot open registry hive SOFTWARE"):
        Hive(path, name="SOFTWARE")


def test_bootable_control_sets() -> None:
    cs = ControlSets(current=1, default=1, last_known_good=3, failed=0,
                     present=("ControlSet001", "ControlSet003"))
    assert cs.bootable() == ["ControlSet001", "ControlSet003"]  # Current = Default: once
    # names as the hive spells them; a missing set and LastKnownGood 0/None are left out
    cs = ControlSets(current=2, default=1, last_known_good=0, failed=None,
                     present=("controlset001", "ControlSet002"))
    assert cs.bootable() == ["ControlSet002", "controlset001"]
    cs = ControlSets(current=4, default=4, last_known_good=None, failed=None,
                     present=("ControlSet001",))
    assert cs.bootable() == []
    assert ControlSets.name(3) == "ControlSet003"


def test_read_control_sets_from_select(tmp_path: Path) -> None:
    def hive(name: str, select: dict, sets=("ControlSet001", "ControlSet002")) -> Hive:
        spec = {"Select": select} | {f"{s}\\Control": {} for s in sets}
        return Hive(build_hive(tmp_path / name, spec))

    cs = read_control_sets(hive("full", {"Current": dword(2), "Default": dword(2),
                                         "LastKnownGood": dword(1), "Failed": dword(0)}))
    assert (cs.current, cs.default, cs.last_known_good, cs.failed) == (2, 2, 1, 0)
    assert cs.present == ("ControlSet001", "ControlSet002")
    assert cs.bootable() == ["ControlSet002", "ControlSet001"]
    # one of Current/Default stands in for the other
    only_default = read_control_sets(hive("default", {"Default": dword(1)}))
    assert (only_default.current, only_default.default) == (1, 1)
    assert only_default.last_known_good is None
    with pytest.raises(CorruptHiveError, match="Select has no Current/Default"):
        read_control_sets(hive("none", {"LastKnownGood": dword(1)}))
    # numbers stored as strings are not numbers (Windows would not boot either)
    with pytest.raises(CorruptHiveError, match="Select has no Current/Default"):
        read_control_sets(hive("strings", {"Current": sz("1"), "Default": sz("1")}))
    with pytest.raises(CorruptHiveError, match=r"ControlSet003, which does not exist "
                                               r"\(present: ControlSet001, ControlSet002\)"):
        read_control_sets(hive("dangling", {"Current": dword(3), "Default": dword(3)}))
    with pytest.raises(CorruptHiveError, match=r"\(present: none\)"):
        read_control_sets(hive("empty", {"Current": dword(1)}, sets=()))

