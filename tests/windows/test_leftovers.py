"""Hardware leftovers: vendor agents, OEM activation, SMBIOS strings for the XML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.hivebuild import build_hive, dword, sz
from p2vimage import libvirt_xml
from p2vimage.errors import UsageError
from p2vimage.guest.registry import Hive
from p2vimage.windows import leftovers
from tests import steps

DMIDECODE = """# dmidecode 3.4
Getting SMBIOS data from sysfs.
SMBIOS 2.5 present.

Handle 0x0000, DMI type 0, 24 bytes
BIOS Information
\tVendor: Dell Inc.
\tVersion: 2.7.0
\tRelease Date: 10/30/2010
\tBIOS Revision: 2.7

Handle 0x0100, DMI type 1, 27 bytes
System Information
\tManufacturer: Dell Inc.
\tProduct Name: PowerEdge 2950
\tVersion: Not Specified
\tSerial Number: 7XK2M3J
\tUUID: 44454c4c-5800-104b-8032-b7c04f4d334a
\tWake-up Type: Power Switch
"""


def test_smbios_from_dmidecode_and_json(tmp_path: Path) -> None:
    f = tmp_path / "dmi.txt"
    f.write_text(DMIDECODE)
    got = leftovers.read_smbios(f)
    assert got == {
        "bios": {"vendor": "Dell Inc.", "version": "2.7.0", "date": "10/30/2010",
                 "release": "2.7"},
        "system": {"manufacturer": "Dell Inc.", "product": "PowerEdge 2950",
                   "serial": "7XK2M3J", "uuid": "44454c4c-5800-104b-8032-b7c04f4d334a"},
    }
    assert libvirt_xml.check_smbios(got) == got
    j = tmp_path / "s.json"
    j.write_text(json.dumps({"system": {"manufacturer": "HP", "product": "ProLiant DL380 G5"}}))
    assert leftovers.read_smbios(j) == {"system": {"manufacturer": "HP",
                                                   "product": "ProLiant DL380 G5"}}
    for bad in ("{not json", "[1, 2]", "hello\nworld\n"):
        j.write_text(bad)
        with pytest.raises(UsageError):
            leftovers.read_smbios(j)


def test_vendor_services_and_oem(tmp_path: Path) -> None:
    system = build_hive(tmp_path / "SYSTEM", {
        "Select": {"Current": dword(1), "Default": dword(1), "LastKnownGood": dword(2)},
        "ControlSet001\\Services\\CpqTeam": {"Start": dword(3)},
        "ControlSet001\\Services\\omsad": {"Start": dword(2)},
        "ControlSet001\\Services\\blfp": {"Start": dword(4)},  # already disabled
        "ControlSet001\\Services\\Tcpip": {"Start": dword(1)},
        "ControlSet002\\Services\\CpqTeam": {"Start": dword(3)},
    })
    hive = Hive(system)
    found = leftovers.vendor_services(hive, "ControlSet001")
    assert sorted(v.name for v in found) == ["CpqTeam", "omsad"]
    guest = steps.view(hive, control_sets=["ControlSet001", "ControlSet002"])
    plan = steps.plan()
    leftovers.plan_vendor_services(plan, steps.insp(), guest)
    assert plan.registry == [] and "CpqTeam (HP NIC teaming)" in plan.warnings[0]
    plan = steps.plan(disable_vendor_services=True)
    leftovers.plan_vendor_services(plan, steps.insp(), guest)
    assert sorted((e.control_set, e.key, e.value) for e in plan.registry) == [
        ("ControlSet001", "Services\\CpqTeam", 4), ("ControlSet001", "Services\\omsad", 4),
        ("ControlSet002", "Services\\CpqTeam", 4)]
    soft = build_hive(tmp_path / "SOFTWARE", {"Microsoft\\Windows NT\\CurrentVersion": {
        "ProductId": sz("69713-OEM-0011903-00102")}}, hive_name="SOFTWARE")
    assert leftovers.oem_activation(Hive(soft)) == "69713-OEM-0011903-00102"
    retail = build_hive(tmp_path / "SOFT2", {"Microsoft\\Windows NT\\CurrentVersion": {
        "ProductId": sz("69713-640-0011903-45123")}}, hive_name="SOFTWARE")
    assert leftovers.oem_activation(Hive(retail)) is None
