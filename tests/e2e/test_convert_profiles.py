"""Convert every main fixture profile and read the results back from the outputs.

One conversion per profile (one appliance each) and one appliance reading all
outputs back.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from lxml import etree

import p2vimage
from fixtures import profiles
from p2vimage.guest import files
from p2vimage.guest.appliance import Job
from p2vimage.guest.registry import REG_DWORD, REG_EXPAND_SZ, REG_SZ, ControlSets
from p2vimage.sources.image import open_source
from p2vimage.windows import mergeide
from p2vimage.windows.geometry import seabios_heads
from p2vimage.windows.pe import read_pe, version_str
from tests.conftest import origin_bytes

NAMES = ["win2000-x86", "winxp-x86", "win2003r2-x64", "win7-x64", "win2019-x64"]

# The copy of each IDE driver that must win, per the fixture profiles (fixtures/README.md):
# (where it is, file version).  "installed" = the guest's own System32\drivers file, kept.
WINNERS = {
    "win2000-x86": {
        "atapi.sys": ("system32\\dllcache", "5.0.2195.7059"),  # hotfix copy beats both cabs
        "intelide.sys": ("driver.cab", "5.0.2195.6870"),  # driver.cab newer than sp4.cab
        "pciide.sys": ("driver.cab", "5.0.2195.6717"),
        "pciidex.sys": ("ServicePackFiles\\i386", "5.0.2195.6717"),  # only copy
    },
    "winxp-x86": {  # LZX:21 driver.cab and sp3.cab
        "atapi.sys": ("sp3.cab", "5.1.2600.5512"),
        "intelide.sys": ("sp3.cab", "5.1.2600.5512"),
        "pciide.sys": ("sp2.cab", "5.1.2600.2180"),
        "pciidex.sys": ("driver.cab", "5.1.2600.0"),
    },
    "win2003r2-x64": {  # amd64 cabinets; a newer x86 atapi.sys is rejected
        "atapi.sys": ("sp2.cab", "5.2.3790.3959"),
        "intelide.sys": ("sp2.cab", "5.2.3790.3959"),
        "pciide.sys": ("installed", "5.2.3790.4000"),  # never downgraded
        "pciidex.sys": ("sp2.cab", "5.2.3790.3959"),
    },
}


@pytest.fixture(scope="module")
def results(images, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("profiles")
    tmp = tmp_path_factory.mktemp("profile-readback")
    reports = {
        n: p2vimage.convert(
            images[n], out / f"{n}.qcow2",
            bus="ide" if profiles.PROFILES[n].layout == "nt5" else "auto",
        )
        for n in NAMES
    }
    readback: dict = {}
    with Job([open_source(out / f"{n}.qcow2") for n in NAMES]) as job:
        for i, n in enumerate(NAMES):
            p = profiles.PROFILES[n]
            part = 3 if p.firmware == "uefi" else 2 if p.layout == "nt6" else 1
            job.use_root(f"/dev/sd{chr(ord('a') + i)}{part}")
            job.mount_root()
            system = job.hive("SYSTEM")
            g = job.g
            sr = g.inspect_get_windows_systemroot(job.root_device)
            regs, ide = {}, {}
            for cs in (ControlSets.name(c) for c in p.control_sets):
                regs[cs] = (
                    system.get(system.node(f"{cs}\\Control\\CrashControl"), "AutoReboot"),
                    system.get(system.node(f"{cs}\\Services\\intelppm"), "Start"),
                )
                cddb = {
                    key: {
                        v: system.raw(
                            system.node(f"{cs}\\Control\\CriticalDeviceDatabase\\{key}"), v
                        )
                        for v in ("Service", "ClassGUID")
                    }
                    for key, _s, _c in mergeide.CDDB_ENTRIES
                }
                services = {
                    svc: {v.name: v for v in system.values(node).values()}
                    if (node := system.node(f"{cs}\\Services\\{svc}")) is not None else None
                    for svc in (*mergeide.SERVICES, "storahci", "msahci")
                }
                so = system.node(f"{cs}\\Services\\storahci\\StartOverride")
                ide[cs] = {"cddb": cddb, "services": services,
                           "storahci_override": system.get(so, "0")}
            drivers, origins = {}, {}
            for f in reports[n].plan["files"]:
                name = f["guest_path"].rsplit("/", 1)[1]
                drivers[name] = g.read_file(files.resolve(g, f"{sr}/system32/drivers/{name}"))
                origins[name] = origin_bytes(g, f["origin"], name, tmp)
            job.g.umount_all()
            boot = job.g.pread_device(job.root_device, 512, 0)
            readback[n] = {"regs": regs, "boot": boot, "ide": ide, "drivers": drivers,
                           "origins": origins}
    return {"reports": reports, "readback": readback}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_profile_conversion(results, name: str) -> None:
    p = profiles.PROFILES[name]
    report = results["reports"][name]
    back = results["readback"][name]
    assert report.appliance_launches == 1
    nt5 = p.layout == "nt5"
    # intelppm is disabled wherever the service exists (the real XP hive has none).
    planned = {e["control_set"] for e in report.plan["registry"] if e["step"] == "intelppm"}
    if nt5 and not p.real_based:
        assert bool(planned) == p.intelppm
    for cs, (autoreboot, intelppm) in back["regs"].items():
        if nt5:
            assert autoreboot == 0, cs
            assert intelppm == (4 if cs in planned else None), cs
        else:  # NT 6+: the NT 5.x steps do not apply; values are as the source had them
            assert autoreboot != 0 or autoreboot is None, cs
    spt, heads = struct.unpack_from("<HH", back["boot"], 0x18)
    if nt5:
        assert (spt, heads) == (63, seabios_heads(p.disk_mib << 20))
    else:
        assert (spt, heads) == (63, 255)  # bootmgr reads by LBA: left alone
    root = etree.parse(report.xml).getroot()
    assert root.find("os/type").get("arch") == ("x86_64" if p.arch == "x64" else "i686")
    machine = root.find("os/type").get("machine")
    assert machine.startswith("q35" if p.firmware == "uefi" else "pc")
    assert (root.find("os").get("firmware") == "efi") == (p.firmware == "uefi")
    assert root.find("clock").get("offset") == ("utc" if p.real_time_is_universal else "localtime")
    uniprocessor = p.hal.endswith("_up")
    assert int(root.findtext("vcpu")) == (1 if uniprocessor else 2)
    assert any("uniprocessor" in w for w in report.warnings) == uniprocessor
    bus = root.find("devices/disk[@device='disk']/target").get("bus")
    assert bus == ("sata" if p.firmware == "uefi" else "ide")
    nic = root.find("devices/interface/model").get("type")
    assert nic == ("rtl8139" if nt5 else "e1000")
    out = Path(report.outputs[0])
    assert out.exists() and not list(out.parent.glob("*.partial"))


def _sz(text: str) -> bytes:
    return (text + "\0").encode("utf-16-le")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if profiles.PROFILES[n].layout == "nt5"])
def test_mergeide_on_output(results, name: str) -> None:
    """Every KB314082 key and service value, type and data, in every bootable control set."""
    back = results["readback"][name]
    p = profiles.PROFILES[name]
    bootable = {ControlSets.name(c) for c in p.select if c in p.control_sets}
    assert set(back["ide"]) >= bootable
    for cs in bootable:
        ide = back["ide"][cs]
        for key, svc, cls in mergeide.CDDB_ENTRIES:
            for vname, want in (("Service", svc), ("ClassGUID", cls)):
                v = ide["cddb"][key][vname]
                assert v is not None, (cs, key, vname)
                assert (v.type, v.data) == (REG_SZ, _sz(want)), (cs, key, vname)
        for svc, values in mergeide.SERVICES.items():
            got = ide["services"][svc]
            assert got is not None, (cs, svc)
            for vname, (vtype, value) in values.items():
                v = got[vname] if vname in got else next(
                    x for k, x in got.items() if k.lower() == vname.lower()
                )
                if vtype == REG_DWORD:
                    assert (v.type, v.data) == (REG_DWORD, value.to_bytes(4, "little")), vname
                else:
                    assert v.type == vtype and v.data == _sz(value), (cs, svc, vname)
        assert ide["services"]["atapi"]["ImagePath"].type == REG_EXPAND_SZ


@pytest.mark.slow
@pytest.mark.parametrize("name", list(WINNERS))
def test_ide_driver_files_on_output(results, name: str) -> None:
    """The four files are the newest copy of the right architecture, byte for byte what
    cabextract (or the loose file) gives for the winning candidate."""
    report = results["reports"][name]
    back = results["readback"][name]
    p = profiles.PROFILES[name]
    by_name = {f["guest_path"].rsplit("/", 1)[1]: f for f in report.plan["files"]}
    assert sorted(by_name) == sorted(mergeide.DRIVER_FILES)
    for fname, (where, version) in WINNERS[name].items():
        f = by_name[fname]
        data = back["drivers"][fname]
        info = read_pe(data)
        assert version_str(info.file_version) == version, fname
        assert info.arch == p.arch
        assert f["version"] == version
        if where == "installed":
            assert f["action"] == "keep" and "system32\\drivers" in f["origin"].lower()
        else:
            assert f["action"] == "write" and where.lower() in f["origin"].lower(), f["origin"]
        assert data == back["origins"][fname], fname
        chosen = [c for c in f["candidates"] if c["verdict"] == "chosen"]
        assert len(chosen) == 1 and chosen[0]["version"] == version
    if name == "win2003r2-x64":
        atapi = by_name["atapi.sys"]["candidates"]
        assert any(c["verdict"] == "wrong architecture: x86" and c["version"] == "5.2.3790.9999"
                   and "ServicePackFiles" in c["origin"] for c in atapi)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if profiles.PROFILES[n].layout == "nt6"])
def test_nt6_emulated_controller_enabled(results, name: str) -> None:
    back = results["readback"][name]
    p = profiles.PROFILES[name]
    report = results["reports"][name]
    assert not report.plan["files"]
    for cs, ide in back["ide"].items():
        svcs = ide["services"]
        if p.firmware == "uefi":  # q35 AHCI on Windows 10/2019: storahci, override cleared
            assert svcs["storahci"]["Start"].value == 0
            assert ide["storahci_override"] == 0
        else:  # i440fx IDE on Windows 7 (the fixture had them at Start=3)
            for svc in mergeide.SERVICES:
                got = svcs[svc]
                start = next(v for k, v in got.items() if k.lower() == "start")
                assert start.value == 0, (cs, svc)
