"""Dropping the physical NICs on the real SYSTEM hives (copies), read back independently.

Every real hive in ``../shared/realdata/registry`` goes through the step; the result must
open in hivex and export with ``hivexregedit``, no physical NIC may remain in any bootable
control set, and every key outside the NIC footprint (and the disabled driver services)
must be byte-for-byte what it was.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from p2vimage.guest.registry import Hive, read_control_sets
from p2vimage.inspection.nics import physical_nics
from p2vimage.plan import Plan
from p2vimage.windows import nic_removal
from tests import steps

HIVES = [
    "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM",
    "regipy-win7sp1-x86-SYSTEM",
    "regipy-win10-1709-x64-SYSTEM_B",
    "regipy-win10-18362-x64-SYSTEM_WIN_10_1709",
    "regipy-win81-x64-SYSTEM_2",
]


def _export(path: Path) -> dict[str, str]:
    """hivexregedit --export as {lower-cased key path: its value lines}."""
    out = subprocess.run(["hivexregedit", "--export", str(path), "\\"], capture_output=True,
                         check=True).stdout.decode("utf-8", "replace")
    blocks: dict[str, str] = {}
    for block in out.split("\n\n"):
        m = re.match(r"\[([^\]]*)\]\n?(.*)", block.strip(), re.S)
        if m:
            blocks[m.group(1).lower()] = m.group(2)
    return blocks


@pytest.mark.parametrize("name", HIVES)
def test_drop_on_real_hive(real_hives, tmp_path, name: str) -> None:
    path = tmp_path / name
    shutil.copyfile(real_hives[name], path)
    before = _export(path)
    hive = Hive(path, write=True)
    bootable = read_control_sets(hive).bootable()
    found = {cs: physical_nics(hive, cs) for cs in bootable}
    plan = Plan()
    dropped = nic_removal.drop_nics(plan, steps.view(hive, control_sets=bootable))
    assert [n.guid for n in dropped.nics] == [n.guid for n in found[bootable[0]]]
    for e in plan.registry:
        hive.set_value(hive.ensure_key(e.path), e.name, e.type, e.value)
    for d in plan.deletions:
        node = hive.node(d.path)
        assert node is not None, d.path  # planned only for keys that exist
        hive.delete_key(node)
    hive.commit()

    back = Hive(path)  # opens in hivex
    for cs in bootable:
        assert physical_nics(back, cs) == [], cs
    after = _export(path)  # and in an independent reader
    gone = [f"\\{d.path}".lower() for d in plan.deletions]
    touched = {f"\\{e.path}".lower() for e in plan.registry}
    for key, values in before.items():
        under = any(key == g or key.startswith(g + "\\") for g in gone)
        if under:
            assert key not in after, key
        elif key in touched:
            assert key in after
        else:
            assert after.get(key) == values, key
    assert set(after) - set(before) == set()  # nothing added
    for e in plan.registry:  # the vendor drivers are disabled, nothing else is set
        assert (e.name, e.value) == ("Start", 4)
    if any(found.values()):
        assert plan.deletions


def test_dangling_references_are_reported(real_hives, tmp_path) -> None:
    """A Class entry whose Tcpip interface is gone: still dropped, the gap reported."""
    path = tmp_path / "SYSTEM"
    shutil.copyfile(real_hives["dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"], path)
    hive = Hive(path, write=True)
    (nic,) = physical_nics(hive, "ControlSet001")
    hive.delete_key(hive.node(
        f"ControlSet001\\Services\\Tcpip\\Parameters\\Interfaces\\{nic.guid}"))
    plan = Plan()
    guest = steps.view(hive, control_sets=["ControlSet001", "ControlSet003"])
    dropped = nic_removal.drop_nics(plan, guest)
    assert dropped.dangling == [
        f"ControlSet001\\Services\\Tcpip\\Parameters\\Interfaces\\{nic.guid} (for {nic.guid})"
    ]
    assert any(d.key.startswith("Control\\Class\\") for d in plan.deletions)


def test_malformed_ip_lists_are_captured_safely(real_hives, tmp_path) -> None:
    """A REG_MULTI_SZ of odd length, a REG_SZ where a list belongs, junk bytes: the
    capture does not fail and keeps what can be read; the adapter is still dropped."""
    from p2vimage.formats.regf import REG_MULTI_SZ, REG_SZ

    path = tmp_path / "SYSTEM"
    shutil.copyfile(real_hives["dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"], path)
    hive = Hive(path, write=True)
    (nic,) = physical_nics(hive, "ControlSet001")
    iface = hive.node(f"ControlSet001\\Services\\Tcpip\\Parameters\\Interfaces\\{nic.guid}")
    h = hive._h  # raw hivex: write values no well-behaved tool would
    h.node_set_value(iface, {"key": "IPAddress", "t": REG_MULTI_SZ,
                             "value": "10.1.2.3\0".encode("utf-16-le") + b"\x31"})
    h.node_set_value(iface, {"key": "SubnetMask", "t": REG_SZ,
                             "value": "255.0.0.0\0".encode("utf-16-le")})
    h.node_set_value(iface, {"key": "DefaultGateway", "t": REG_MULTI_SZ, "value": b"\xff\xfe\x00"})
    h.node_set_value(iface, {"key": "EnableDHCP", "t": 4, "value": b"\x00\x00\x00\x00"})
    hive.dirty = True
    hive.commit()
    back = Hive(path)
    (got,) = physical_nics(back, "ControlSet001")
    assert got.ip_addresses[0] == "10.1.2.3" and got.subnet_masks == ["255.0.0.0"]
    assert got.dhcp is False
    plan = Plan()
    nic_removal.drop_nics(plan, steps.view(back, control_sets=["ControlSet001"]))
    assert any(d.key.endswith(nic.guid) for d in plan.deletions)


def test_cycle_in_a_dropped_key_is_refused_not_a_crash(real_hives, tmp_path) -> None:
    """A NIC key whose subkey list points back at its parent (a damaged hive): hivex
    would recurse in C until the process dies; the step stops with CorruptHiveError."""
    from p2vimage.errors import CorruptHiveError
    from tests.corpus_guests import hive_cycle

    path = tmp_path / "SYSTEM"
    shutil.copyfile(real_hives[HIVES[0]], path)
    hive_cycle(path)
    hive = Hive(path, write=True)
    bootable = read_control_sets(hive).bootable()
    plan = Plan()
    nic_removal.drop_nics(plan, steps.view(hive, control_sets=bootable))
    nodes = [hive.node(d.path) for d in plan.deletions]
    with pytest.raises(CorruptHiveError, match="a cycle in the key tree below"):
        for node in nodes:
            hive.delete_key(node)
