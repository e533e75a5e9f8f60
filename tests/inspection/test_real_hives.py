"""Hive-level inspection of the real SYSTEM hives, checked against INSPECTION.txt.

INSPECTION.txt is an independent dump (an ad-hoc hivex walk made when the data
was collected).  These tests parse it and require our inspection to agree on
control sets, physical NICs (and their static settings), storage controller
drivers and their Start values.  The HAL is not in the dump; it is checked
against the processor count the dump does list (a uniprocessor HAL on the
one-CPU XP guest) and the NT 6+ single-HAL rule.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from p2vimage import CorruptHiveError, inspect_hives
from p2vimage.guest.registry import Hive, read_control_sets
from tests.conftest import REALDATA

PHYSICAL_PREFIXES = ("pci\\", "pcmcia\\", "usb\\")


def parse_inspection() -> dict[str, dict]:
    """Per hive file: select, nic class entries, scsi adapters, services, tcpip interfaces."""
    text = (REALDATA / "registry" / "INSPECTION.txt").read_text()
    out: dict[str, dict] = {}
    cur: dict | None = None
    section = None
    for line in text.splitlines():
        if line.startswith("FILE "):
            cur = {"nics": [], "scsi": [], "services": {}, "tcpip": {}}
            out[line[5:].strip()] = cur
            continue
        if cur is None:
            continue
        s = line.strip()
        if s.startswith("Select: "):
            cur["select"] = ast.literal_eval(s[len("Select: ") :])
        elif s.startswith("ControlSets: "):
            cur["control_sets"] = ast.literal_eval(s[len("ControlSets: ") :])
        elif s.startswith("Class\\{4D36E972"):
            section = "nic"
        elif s.startswith("Services:"):
            section = "services"
        elif s.startswith("Tcpip\\Parameters\\Interfaces"):
            section = "tcpip"
        elif s.startswith("SCSIAdapter ") and not s.startswith("SCSIAdapter Properties"):
            m = re.match(r"SCSIAdapter (\d+): '(.*)' '(.*)'$", s)
            if m:
                cur["scsi"].append((m.group(2), m.group(3).replace("\\\\", "\\")))
        elif section == "nic" and re.match(r"^\d{4}: ", s):
            m = re.match(
                r"^(\d{4}): DriverDesc=(.*) MatchingDeviceId=(.*) NetCfgInstanceId=(.*) "
                r"InfPath=(.*)$",
                s,
            )
            if m:
                desc, hwid, guid = (ast.literal_eval(m.group(i)) for i in (2, 3, 4))
                cur["nics"].append({"key": m.group(1), "desc": desc, "hwid": hwid, "guid": guid})
        elif section == "services" and s.startswith("svc "):
            m = re.match(r"svc (\S+): Start=(\S+) ", s)
            if m:
                cur["services"][m.group(1).lower()] = ast.literal_eval(m.group(2))
        elif section == "tcpip" and s.startswith("{"):
            guid, _, rest = s.partition(" ")
            cur["tcpip"][guid.upper()] = ast.literal_eval(rest)
    return out


EXPECTED = parse_inspection()


def test_inspection_dump_parsed() -> None:
    assert len(EXPECTED) == 5
    for name, facts in EXPECTED.items():
        assert "select" in facts and facts["nics"], name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_control_sets_agree(real_hives: dict[str, Path], name: str) -> None:
    facts = EXPECTED[name]
    insp = inspect_hives(real_hives[name])
    sel = facts["select"]
    assert insp.control_sets.current == sel["Current"]
    assert insp.control_sets.default == sel["Default"]
    assert insp.control_sets.last_known_good == sel["LastKnownGood"]
    assert insp.control_sets.failed == sel["Failed"]
    assert insp.control_sets.present == facts["control_sets"]
    # Bootable = the existing sets among Current/Default/LastKnownGood.
    wanted = {f"ControlSet{sel[k]:03d}" for k in ("Current", "Default", "LastKnownGood")}
    assert set(insp.control_sets.bootable) == wanted & set(facts["control_sets"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_physical_nics_agree(real_hives: dict[str, Path], name: str) -> None:
    facts = EXPECTED[name]
    insp = inspect_hives(real_hives[name])
    want = {
        n["guid"].upper(): n
        for n in facts["nics"]
        if n["hwid"] and n["hwid"].lower().startswith(PHYSICAL_PREFIXES)
    }
    got = {n.guid.upper(): n for n in insp.nics}
    assert set(got) == set(want)
    for guid, n in want.items():
        assert got[guid].description == n["desc"]
        assert got[guid].hardware_id.lower() == n["hwid"].lower()
        assert got[guid].class_key == n["key"]
        tcp = facts["tcpip"].get(guid)
        if tcp is None:
            continue
        assert got[guid].dhcp == bool(tcp.get("EnableDHCP"))
        want_ips = [a for a in tcp.get("IPAddress", []) if a and a != "0.0.0.0"]
        assert got[guid].ip_addresses == want_ips
        if want_ips:
            assert got[guid].subnet_masks == [m for m in tcp["SubnetMask"] if m]
            assert got[guid].gateways == [g for g in tcp["DefaultGateway"] if g]
            assert got[guid].dns_servers == tcp["NameServer"].replace(",", " ").split()
        if tcp.get("DhcpIPAddress"):
            assert got[guid].dhcp_ip_address == tcp["DhcpIPAddress"]


def test_win7_static_addresses_captured(real_hives: dict[str, Path]) -> None:
    """The Win7 hive's two static configurations, as the README of the data describes them."""
    insp = inspect_hives(real_hives["regipy-win7sp1-x86-SYSTEM"])
    statics = {n.ip_addresses[0]: n for n in insp.nics if n.static}
    assert set(statics) == {"10.3.58.5", "192.168.1.123"}
    assert statics["10.3.58.5"].gateways == ["10.3.58.1"]
    assert statics["192.168.1.123"].dns_servers == ["192.168.1.112"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_storage_drivers_agree(real_hives: dict[str, Path], name: str) -> None:
    facts = EXPECTED[name]
    insp = inspect_hives(real_hives[name])
    by_service = {}
    for c in insp.storage_controllers:
        if c.service:
            by_service.setdefault(c.service.lower(), c)
    # Every storage service the dump lists with a device of ours has the same Start.
    for svc, start in facts["services"].items():
        if svc in by_service:
            assert by_service[svc].start == start, svc
    # Every PCI SCSI adapter in the dump's class listing is one of our controllers.
    for desc, hwid in facts["scsi"]:
        if hwid.lower().startswith("pci\\"):
            ven_dev = "&".join(hwid.lower().split("&")[:2])  # PCI\VEN_v&DEV_d
            assert any(
                c.description == desc and c.hardware_id.lower().startswith(ven_dev)
                for c in insp.storage_controllers
            ), (desc, hwid)
    # Boot storage drivers are exactly the Start=0 services of the controllers.
    assert insp.boot_storage_drivers == list(
        dict.fromkeys(c.service for c in insp.storage_controllers if c.start == 0 and c.service)
    )
    assert insp.boot_storage_drivers, "every real hive boots through some storage driver"


def test_hal(real_hives: dict[str, Path]) -> None:
    xp = inspect_hives(real_hives["dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"])
    # The dump lists NUMBER_OF_PROCESSORS '1' for this Virtual PC guest: a uniprocessor HAL.
    assert xp.hal.hardware_id == "acpipic_up"
    assert xp.hal.hal == "halacpi.dll" and xp.hal.multiprocessor is False
    for name in EXPECTED:
        if name.startswith("dfwinreg"):
            continue
        insp = inspect_hives(real_hives[name])
        assert insp.hal.hardware_id == "acpiapic" and insp.hal.multiprocessor is True, name


def test_driver_database_and_arch(real_hives: dict[str, Path]) -> None:
    for name, path in real_hives.items():
        insp = inspect_hives(path)
        assert insp.has_driver_database == ("win81" in name or "win10" in name)
        assert insp.arch == ("x64" if "x64" in name else "x86")


def test_truncated_hive_is_a_clear_error(real_hives: dict[str, Path], tmp_path: Path) -> None:
    data = real_hives["dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"].read_bytes()
    bad = tmp_path / "SYSTEM"
    bad.write_bytes(data[:3000])
    with pytest.raises(CorruptHiveError, match="cannot open registry hive"):
        inspect_hives(bad)


def test_hive_without_select_is_a_clear_error(tmp_path: Path) -> None:
    from fixtures.regf import write_minimal_hive

    path = tmp_path / "SYSTEM"
    write_minimal_hive(path)
    with pytest.raises(CorruptHiveError, match="no Select key"):
        read_control_sets(Hive(path))
