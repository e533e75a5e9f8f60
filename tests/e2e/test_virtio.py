"""virtio on the command line: what cannot be done is said clearly, and nothing is written.

The conversions with virtio-win ISOs and their read-back are in ``test_convert_profiles.py``
(one conversion per profile serves the IDE and the virtio checks).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures import virtio_iso
from tests.conftest import run_cli, sha256


@pytest.fixture(scope="module")
def iso(tmp_path_factory) -> Path:
    return virtio_iso.build_iso("current", tmp_path_factory.mktemp("iso") / "virtio-win.iso")


def test_windows_2000_and_bad_media(images, iso, tmp_path, launch_watch) -> None:
    src = images["win2000-x86"]
    before = sha256(src)
    # --bus virtio-blk on a guest no virtio-win release supports: exit 4, media listed.
    out = tmp_path / "o"
    out.mkdir()
    r = run_cli("convert", str(src), "-o", str(out / "x.qcow2"), "--virtio-win", str(iso),
                "--bus", "virtio-blk")
    assert r.returncode == 4, r.stderr
    assert "no viostor for Microsoft Windows 2000" in r.stderr and "2k3/x86" in r.stderr
    assert list(out.iterdir()) == []
    # Not an ISO: exit 3 before any appliance.
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"definitely not ISO 9660\n" * 200)
    r = run_cli("convert", str(src), "-o", str(out / "x.qcow2"), "--virtio-win", str(junk),
                env=launch_watch.env())
    assert r.returncode == 3 and "not a readable ISO 9660 image" in r.stderr
    assert r.stderr.count("\n") == 1 and launch_watch.count == 0
    assert list(out.iterdir()) == [] and sha256(src) == before


def test_oem_and_vendor_services_are_reported(images, tmp_path) -> None:
    """Without --smbios/--disable-vendor-services: warnings only, nothing disabled."""
    r = run_cli("convert", str(images["win2003r2-x64"]), "-o", str(tmp_path / "x.qcow2"),
                "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert any("OEM-licensed installation (product ID 69713-OEM-0011903-00102)" in w
               and "--smbios" in w for w in doc["warnings"])
    assert any("CpqTeam (HP NIC teaming)" in w and "--disable-vendor-services" in w
               for w in doc["warnings"])
    assert not [e for e in doc["plan"]["registry"] if e["step"] == "disable-vendor-services"]


def test_ip_for_unknown_connection_is_exit_2(images, tmp_path) -> None:
    r = run_cli("convert", str(images["win2003-x86"]), "-o", str(tmp_path / "x.qcow2"),
                "--ip", "Nope=10.0.0.5/24,gw=10.0.0.1")
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "no connection named 'Nope'" in last and "'Local Area Connection'" in last
    assert list(tmp_path.iterdir()) == []


def test_nt5_x64_with_bus_ide(images, tmp_path) -> None:
    """The 2003 x64 profile on --bus ide: amd64 IDE drivers planned, no error, IDE in the plan."""
    r = run_cli("convert", str(images["win2003r2-x64"]), "-o", str(tmp_path / "x.qcow2"),
                "--bus", "ide", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    devs = {d["what"]: d["value"] for d in doc["plan"]["devices"]}
    assert devs["disk bus"] == "ide"
    ide = {f["guest_path"].rsplit("/", 1)[1]: f for f in doc["plan"]["files"]
           if f["step"] == "ide-drivers"}
    assert sorted(ide) == ["atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys"]
    assert all(f["machine"] == "x64" for f in ide.values())
    assert ide["pciide.sys"]["action"] == "keep"


@pytest.mark.parametrize(("name", "code"), [("win7-x64", 0), ("winxp-x86", 4)])
def test_bus_virtio_scsi(images, iso, tmp_path, name: str, code: int) -> None:
    """vioscsi is the boot driver where the OS has it (7); XP never had one: exit 4."""
    r = run_cli("convert", str(images[name]), "-o", str(tmp_path / "x.qcow2"),
                "--virtio-win", str(iso), "--bus", "virtio-scsi", "--dry-run", "--json")
    assert r.returncode == code, r.stderr
    if code:
        assert "no vioscsi for" in r.stderr.strip().splitlines()[-1]
        return
    doc = json.loads(r.stdout)
    regs = {(e["control_set"], e["key"], e["name"]): e["value"] for e in doc["plan"]["registry"]
            if e["step"] == "virtio-boot"}
    assert regs[("ControlSet001", "Services\\vioscsi", "Start")] == 0
    assert regs[("ControlSet001", "Services\\vioscsi\\Parameters", "BusType")] == 10
    key = "Control\\CriticalDeviceDatabase\\pci#ven_1af4&dev_1004&subsys_00081af4&rev_00"
    assert regs[("ControlSet001", key, "Service")] == "vioscsi"
    boot = [f for f in doc["plan"]["files"] if f["step"] == "virtio-boot"]
    assert [f["guest_path"].rsplit("/", 1)[1] for f in boot] == ["vioscsi.sys"]
    assert {d["what"]: d["value"] for d in doc["plan"]["devices"]}["disk bus"] == "virtio-scsi"
