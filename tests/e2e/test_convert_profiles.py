"""Convert every main fixture profile and read the results back from the outputs.

One conversion per profile (one appliance each) and one appliance reading all
outputs back.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from lxml import etree

import p2vimage
from fixtures import profiles, virtio_iso
from p2vimage.check import check_job, domain
from p2vimage.formats import inf
from p2vimage.formats.pe import read_pe, version_str
from p2vimage.formats.regf import REG_DWORD, REG_EXPAND_SZ, REG_SZ
from p2vimage.guest import files
from p2vimage.guest.appliance import Job
from p2vimage.guest.registry import ControlSets
from p2vimage.inspection import inspect_job
from p2vimage.inspection.nics import physical_nics
from p2vimage.sources.image import open_source
from p2vimage.virtio.media import open_media
from p2vimage.windows import firstboot, mergeide
from p2vimage.windows.geometry import seabios_heads
from tests.conftest import origin_bytes, plan_of, sha256

# Five conversions and a read-back appliance: CI runs these with the other slow cases.
pytestmark = pytest.mark.slow

NAMES = ["win2000-x86", "winxp-x86", "win2003r2-x64", "win7-x64", "win2019-x64"]

# Every profile is converted once, with a fake virtio-win ISO and --bus auto: the guest
# boots on virtio-blk where the media has viostor for it, and the NT 5.x IDE path (KB314082
# and the IDE drivers) is applied in any case, so one output shows both.  (--bus ide itself
# is exercised on the demo in test_convert.py and in test_ide_drivers.py.)
SCSI = "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
# profile -> (layout, names on the disc, (os, arch) key of expected_folders)
CASES = {
    "win2000-x86": ("current", "rr+joliet", ("2k", "x86")),  # no virtio-win ever: IDE
    "winxp-x86": ("old-wnet", "iso9660", ("xp", "x86")),
    "win2003r2-x64": ("legacy-2k3", "joliet", ("2k3", "amd64")),
    "win7-x64": ("current", "rr+joliet", ("w7", "amd64")),
    "win2019-x64": ("current", "rr+joliet", ("2k19", "amd64")),
}
# XP boots on IDE (virtio staged for Plug and Play only): the --bus ide path
EXTRA = {"winxp-x86": {"bus": "ide"}}
VARIANT = {"rr+joliet": (True, True), "joliet": (True, False), "iso9660": (False, False)}
PNP_SUFFIXES = (".inf", ".sys", ".cat", ".dll")


@pytest.fixture(scope="module")
def isos(tmp_path_factory) -> dict[tuple[str, str], Path]:
    out = tmp_path_factory.mktemp("virtio-isos")
    built = {}
    for layout, variant, _key in CASES.values():
        if (layout, variant) not in built:
            joliet, rr = VARIANT[variant]
            built[(layout, variant)] = virtio_iso.build_iso(
                layout, out / f"{layout}-{variant}.iso", joliet=joliet, rock_ridge=rr)
    return built



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
def results(images, isos, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("profiles")
    tmp = tmp_path_factory.mktemp("profile-readback")
    dmi = tmp / "dmidecode.txt"  # the HP box's SMBIOS strings, as dmidecode printed them
    dmi.write_text("BIOS Information\n\tVendor: HP\n\tVersion: P56\n\tRelease Date: "
                   "01/24/2008\nSystem Information\n\tManufacturer: HP\n\tProduct Name: "
                   "ProLiant DL380 G5\n\tSerial Number: CZC8123XYZ\n")
    extra = {"win2003r2-x64": {"smbios": dmi, "disable_vendor_services": True}, **EXTRA}
    reports = {
        n: p2vimage.convert(images[n], out / f"{n}.qcow2",
                            virtio_win=isos[(CASES[n][0], CASES[n][1])], **extra.get(n, {}))
        for n in NAMES
    }
    readback: dict = {}
    # One appliance: the outputs (sda..), then the sources read-only (for before/after).
    drives = [open_source(out / f"{n}.qcow2") for n in NAMES] + [
        open_source(images[n]) for n in NAMES]
    hashes_before = {n: sha256(out / f"{n}.qcow2") for n in NAMES}
    with Job(drives) as job:
        for i, n in enumerate(NAMES):
            p = profiles.PROFILES[n]
            part = 3 if p.firmware == "uefi" else 2 if p.layout == "nt6" else 1
            job.use_root(f"/dev/sd{chr(ord('a') + i)}{part}")
            job.mount_root()
            system = job.hive("SYSTEM")
            g = job.g
            sr = job.windows.system_root
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
            for f in (f for f in plan_of(reports[n])["files"] if f["step"] == "ide-drivers"):
                name = f["guest_path"].rsplit("/", 1)[1]
                drivers[name] = g.read_file(files.resolve(g, f"{sr}/system32/drivers/{name}"))
                origins[name] = origin_bytes(g, f["origin"], name, tmp)
            virtio = _virtio_readback(job, p, sr)
            network = _network_readback(job, p, sr, reports[n], tmp / f"{n}-after.hive")
            # check: the output against its own domain XML, and the IDE fallback (BIOS)
            xml = Path(reports[n].xml)
            insp = inspect_job(job)  # once for both checks of this root
            checks = {"xml": check_job(job, image=n, facts=domain.read_domain(xml),
                                       xml=str(xml), inspection=insp)}
            if p.firmware != "uefi":
                checks["ide"] = check_job(job, image=n, bus="ide", inspection=insp)
            job.g.umount_all()
            boot = job.g.pread_device(job.root_device, 512, 0)
            readback[n] = {"regs": regs, "boot": boot, "ide": ide, "drivers": drivers,
                           "origins": origins, "virtio": virtio, "network": network,
                           "checks": checks}
        for i, n in enumerate(NAMES):  # the sources' SYSTEM hives, for the comparison
            p = profiles.PROFILES[n]
            part = 3 if p.firmware == "uefi" else 2 if p.layout == "nt6" else 1
            job.use_root(f"/dev/sd{chr(ord('a') + len(NAMES) + i)}{part}")
            job.mount_root()
            insp = inspect_job(job)
            readback[n]["source_checks"] = {
                bus: check_job(job, image=n, bus=bus, inspection=insp)
                for bus in (("sata", "virtio-blk") if p.firmware == "uefi"
                            else ("ide", "virtio-blk"))
            }
            before = tmp / f"{n}-before.hive"
            shutil.copyfile(job.hive("SYSTEM").path, before)
            readback[n]["network"]["before"] = before
    hashes = (hashes_before, {n: sha256(out / f"{n}.qcow2") for n in NAMES})
    return {"reports": reports, "readback": readback, "dir": out, "hashes": hashes}


def _network_readback(job, p, sr: str, report, hive_copy: Path) -> dict:
    g = job.g
    system = job.hive("SYSTEM")
    shutil.copyfile(system.path, hive_copy)
    cs_names = [ControlSets.name(c) for c in sorted(set(p.select)) if c in p.control_sets]
    gpo = files.resolve(g, f"{sr}/System32/GroupPolicy")
    fb = {}
    if gpo:
        for rel in ("gpt.ini", "Machine/Scripts/scripts.ini",
                    f"Machine/Scripts/Startup/{firstboot.SCRIPT_NAME}"):
            real = files.resolve(g, f"{gpo}/{rel}")
            fb[rel] = g.read_file(real) if real else None
    return {
        "after": hive_copy,
        "left": {cs: physical_nics(system, cs) for cs in cs_names},
        "services": {
            cs: {svc: system.get(system.node(f"{cs}\\Services\\{svc}"), "Start")
                 for svc in plan_of(report)["network"]["disabled_services"]}
            for cs in cs_names
        },
        "firstboot": fb,
        "vendor": {
            cs: {v["name"]: system.get(system.node(f"{cs}\\Services\\{v['name']}"), "Start")
                 for v in plan_of(report)["network"]["vendor_services"]}
            for cs in cs_names
        },
    }


def _virtio_readback(job, p, sr: str) -> dict:
    g = job.g
    system, software = job.hive("SYSTEM"), job.hive("SOFTWARE")
    cs_names = [ControlSets.name(c) for c in sorted(set(p.select)) if c in p.control_sets]
    regs = {}
    for cs in cs_names:
        svc = system.node(f"{cs}\\Services\\viostor")
        regs[cs] = {
            "service": {v.name: v for v in system.values(svc).values()} if svc else None,
            "bustype": system.get(system.node("Parameters", svc), "BusType") if svc else None,
            "pnp5": system.get(system.node("Parameters\\PnpInterface", svc), "5")
            if svc else None,
            "cddb": {
                k: (system.get_str(node, "Service"), system.get_str(node, "ClassGUID"))
                for k in ("pci#ven_1af4&dev_1001&subsys_00021af4&rev_00",
                          "pci#ven_1af4&dev_1001", "pci#ven_1af4&dev_1042")
                if (node := system.node(
                    f"{cs}\\Control\\CriticalDeviceDatabase\\{k}")) is not None
            },
            "suppress_ui": system.get(
                system.node(f"{cs}\\Services\\PlugPlay\\Parameters"), "SuppressUI"),
        }
    stage = files.resolve(g, f"{sr}/Drivers/VirtIO")
    staged = {f: g.read_file(f"{stage}/{f}") for f in g.ls(stage)} if stage else {}
    viostor_path = files.resolve(g, f"{sr}/system32/drivers/viostor.sys")
    dd = None
    if system.node("DriverDatabase\\DriverInfFiles") is not None:
        dd = _driver_database(system, g, sr)
    return {
        "regs": regs,
        "devicepath": software.get_str(
            software.node("Microsoft\\Windows\\CurrentVersion"), "DevicePath"),
        "suppress_hw": software.get(software.node(
            "Policies\\Microsoft\\Windows\\DeviceInstall\\Settings"), "SuppressNewHWUI"),
        "staged": staged,
        "viostor": g.read_file(viostor_path) if viostor_path else None,
        "dd": dd,
    }


@pytest.mark.parametrize("name", NAMES)
def test_profile_conversion(results, name: str) -> None:
    p = profiles.PROFILES[name]
    report = results["reports"][name]
    back = results["readback"][name]
    assert report.appliance_launches == 1
    nt5 = p.layout == "nt5"
    # intelppm is disabled wherever the service exists (the real XP hive has none).
    planned = {e["control_set"] for e in plan_of(report)["registry"] if e["step"] == "intelppm"}
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
    nic = root.find("devices/interface/model").get("type")
    if name == "win2000-x86":  # no virtio-win release supports it: the stated fallback
        assert (bus, nic) == ("ide", "rtl8139")
        assert any("no drivers for Microsoft Windows 2000" in w for w in report.warnings)
        assert report.virtio is None and not root.findall("devices/disk[@device='cdrom']")
    elif name == "winxp-x86":  # --bus ide with the ISO: IDE boot, NetKVM for PnP
        assert (bus, nic) == ("ide", "virtio")
        assert report.virtio.boot_driver is None
    else:
        assert (bus, nic) == ("virtio", "virtio")
    out = Path(report.outputs[0])
    assert out.exists() and not list(out.parent.glob("*.partial"))


def _sz(text: str) -> bytes:
    return (text + "\0").encode("utf-16-le")


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


@pytest.mark.parametrize("name", list(WINNERS))
def test_ide_driver_files_on_output(results, name: str) -> None:
    """The four files are the newest copy of the right architecture, byte for byte what
    cabextract (or the loose file) gives for the winning candidate."""
    report = results["reports"][name]
    back = results["readback"][name]
    p = profiles.PROFILES[name]
    by_name = {f["guest_path"].rsplit("/", 1)[1]: f for f in plan_of(report)["files"]
               if f["step"] == "ide-drivers"}
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


@pytest.mark.parametrize("name", [n for n in NAMES if profiles.PROFILES[n].layout == "nt6"])
def test_nt6_emulated_controller_enabled(results, name: str) -> None:
    back = results["readback"][name]
    p = profiles.PROFILES[name]
    report = results["reports"][name]
    assert not [f for f in plan_of(report)["files"] if f["step"] == "ide-drivers"]
    assert not any("left as is" in w for w in report.warnings)  # fallback controller is sound
    for cs, ide in back["ide"].items():
        svcs = ide["services"]
        if p.firmware == "uefi":  # q35 AHCI on Windows 10/2019: storahci, override cleared
            assert svcs["storahci"]["Start"].value == 0
            assert ide["storahci_override"] == 0
        else:  # i440fx IDE on Windows 7 (the fixture had them at Start=3)
            cddb = ide["cddb"]["pci#ven_8086&dev_7010"]["Service"]
            assert cddb is not None and cddb.value == "intelide", cs
            for svc in mergeide.SERVICES:
                got = svcs[svc]
                start = next(v for k, v in got.items() if k.lower() == "start")
                assert start.value == 0, (cs, svc)


def _driver_database(system, g, sr) -> dict:
    infs = system.node("DriverDatabase\\DriverInfFiles")
    oems = {n: system.get_str(node, "Active") for n, node in system.iter_children(infs)
            if (system.get_str(node, "Active") or "").startswith("viostor.inf_")}
    (oem, pkg), = oems.items()
    pk = system.node(f"DriverDatabase\\DriverPackages\\{pkg}")
    store = files.resolve(g, f"{sr}/System32/DriverStore/FileRepository/{pkg}")
    return {
        "oem": oem, "package": pkg,
        "pkg_default": system.get_str(pk, ""),
        "config_service": system.get_str(system.node("Configurations\\scsi_inst", pk), "Service"),
        "device_ids": {
            i: system.get(system.node(f"DriverDatabase\\DeviceIds\\{i}"), oem)
            for i in ("PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00",
                      "PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01")
        },
        "store": sorted(g.ls(store)) if store else [],
        "oem_inf": g.read_file(files.resolve(g, f"{sr}/INF/{oem}")),
    }


STEMS = {"viostor": "viostor", "vioscsi": "vioscsi", "netkvm": "netkvm",
         "balloon": "balloon", "vioserial": "vioser", "viorng": "viorng"}


def _expected_stage(media, folders: dict[str, str]) -> dict[str, bytes]:
    """Each chosen package's own .inf/.sys/.cat and the KMDF co-installer its INF needs
    (not the .pdb, docs, or tools such as netkvmco.dll that the INF does not install)."""
    out: dict[str, bytes] = {}
    for driver, folder in folders.items():
        for rel in media.list():
            if rel.rsplit("/", 1)[0].lower() != folder.lower():
                continue
            base = rel.rsplit("/", 1)[1].lower()
            own = base.rsplit(".", 1)[0] == STEMS[driver] and base.endswith(PNP_SUFFIXES)
            if own or base.startswith("wdfcoinstaller"):
                out.setdefault(base, media.read(rel))
    return out


@pytest.mark.parametrize("name", [n for n in CASES if n != "win2000-x86"])
def test_virtio_staged_on_output(results, isos, name: str) -> None:
    layout, variant, key = CASES[name]
    report = results["reports"][name]
    back = results["readback"][name]["virtio"]
    p = profiles.PROFILES[name]
    assert report.appliance_launches == 1
    folders = virtio_iso.expected_folders(layout)[key]
    chosen = report.virtio.packages
    assert {k: v.lower() for k, v in chosen.items()} == {
        k: v.lower() for k, v in folders.items()}
    with open_media(isos[(layout, variant)]) as media:
        sys_rel = next(r for r in media.list() if r.lower() == f"{folders['viostor']}/viostor.sys"
                       .lower())
        # In System32\drivers only when it is the boot driver (XP here boots on IDE).
        boot = report.virtio.boot_driver == "viostor"
        assert back["viostor"] == (media.read(sys_rel) if boot else None)
        expected = _expected_stage(media, folders)
        inf_bytes = media.read(next(r for r in media.list()
                                    if r.lower() == f"{folders['viostor']}/viostor.inf".lower()))
    # The staged folder's exact file list (and bytes), per OS/arch.
    assert {k.lower(): v for k, v in back["staged"].items()} == expected
    assert sorted(x.lower() for x in back["staged"]) == sorted(expected)
    assert "%SystemRoot%\\Drivers\\VirtIO" in back["devicepath"].split(";")
    assert back["devicepath"].lower().startswith("%systemroot%\\inf")
    nt8 = p.firmware == "uefi"  # the 2019 profile: DriverDatabase
    boots_virtio = report.virtio.boot_driver == "viostor"
    for cs, r in back["regs"].items():
        # Found New Hardware wizard: 2003 and XP x64 in SYSTEM, XP in SOFTWARE policies.
        assert r["suppress_ui"] == (1 if p.version == "5.2" else None)
        if not boots_virtio:  # --bus ide: viostor is staged for PnP only, not registered
            assert r["service"] is None and r["cddb"] == {}, cs
            continue
        svc = r["service"]
        assert svc is not None, cs
        assert (svc["Type"].type, svc["Type"].value) == (REG_DWORD, 1)
        assert svc["Start"].value == 0 and svc["ErrorControl"].value == 1
        assert svc["Group"].value == "SCSI miniport"
        assert svc["ImagePath"].type == REG_EXPAND_SZ
        assert svc["ImagePath"].value.lower() == "system32\\drivers\\viostor.sys"
        assert r["bustype"] == 1 and r["pnp5"] == 1
        if nt8:
            assert r["cddb"] == {}
        else:
            for k in ("pci#ven_1af4&dev_1001&subsys_00021af4&rev_00", "pci#ven_1af4&dev_1001"):
                assert r["cddb"][k][0] == "viostor" and r["cddb"][k][1].upper() == SCSI
            modern = report.virtio.modern_ids["viostor"]
            assert ("pci#ven_1af4&dev_1042" in r["cddb"]) == modern
    assert back["suppress_hw"] == (1 if p.version == "5.1" else None)
    if nt8:
        dd = back["dd"]
        assert re.fullmatch(r"viostor\.inf_amd64_[0-9a-f]{16}", dd["package"])
        assert re.fullmatch(r"oem\d+\.inf", dd["oem"]) and dd["pkg_default"] == dd["oem"]
        assert dd["config_service"] == "viostor"
        assert all(v == bytes.fromhex("01ff0000") for v in dd["device_ids"].values())
        assert dd["store"] == ["viostor.cat", "viostor.inf", "viostor.sys"]
        assert dd["oem_inf"] == inf_bytes
    else:
        assert back["dd"] is None
    root = etree.parse(report.xml).getroot()
    assert root.find("devices/disk[@device='disk']/target").get("bus") == (
        "virtio" if boots_virtio else "ide")
    assert root.find("devices/interface/model").get("type") == "virtio"
    assert root.find("devices/memballoon").get("model") == "virtio"
    cd = root.find("devices/disk[@device='cdrom']/source")
    assert cd is not None and Path(cd.get("file")) == isos[(layout, variant)].resolve()
    assert root.find("os/type").get("machine").startswith("q35" if nt8 else "pc")
    devs = {d["what"]: d["value"] for d in plan_of(report)["devices"]}
    assert devs["disk bus"] == ("virtio-blk" if boots_virtio else "ide")
    assert devs["nic model"] == "virtio"
    # NT 5.x keep the IDE fallback (KB314082) even on virtio.
    assert any(e["step"] == "mergeide-cddb" for e in plan_of(report)["registry"]) == (
        p.layout == "nt5")


def test_second_run_with_virtio_changes_nothing(results, isos, tmp_path) -> None:
    """Re-converting the 2019 output with the same ISO reuses the DriverDatabase entry."""
    src = results["dir"] / "win2019-x64.qcow2"
    report = p2vimage.convert(src, tmp_path / "again.qcow2",
                              virtio_win=isos[("current", "rr+joliet")])
    changed = [e for e in plan_of(report)["registry"] if e["changed"]]
    assert changed == [], changed[:3]
    assert not any(f["changed"] for f in plan_of(report)["files"])


def _export(path: Path) -> dict[str, str]:
    out = subprocess.run(["hivexregedit", "--export", str(path), "\\"], capture_output=True,
                         check=True).stdout.decode("utf-8", "replace")
    blocks = {}
    for block in out.split("\n\n"):
        m = re.match(r"\[([^\]]*)\]\n?(.*)", block.strip(), re.S)
        if m:
            blocks[m.group(1).lower()] = m.group(2)
    return blocks


@pytest.mark.parametrize("name", NAMES)
def test_physical_nics_dropped_on_output(results, name: str) -> None:
    """Every stale key gone in every bootable control set; the captured settings equal the
    fixture's; every key the plan did not name is exactly as in the source hive."""
    report = results["reports"][name]
    net = results["readback"][name]["network"]
    p = profiles.PROFILES[name]
    captured = {n["guid"].upper(): n for n in plan_of(report)["network"]["nics"]}
    for fx in p.nics:  # the fixture's NICs (the real hives add their own)
        got = captured[fx.guid.upper()]
        assert got["connection_name"] == fx.connection and got["dhcp"] == fx.dhcp
        assert got["driver_service"].lower() == fx.service.lower()
        if not fx.dhcp:
            assert got["ip_addresses"] == list(fx.ip) and got["subnet_masks"] == list(fx.mask)
            assert got["gateways"] == list(fx.gateway) and got["dns_servers"] == list(fx.dns)
            assert got["wins_servers"] == list(fx.wins)
            assert (got["dns_suffix"] or "") == fx.domain
        assert (got["mac"] or None) == (fx.mac.lower() if fx.mac else None)
    assert all(left == [] for left in net["left"].values()), net["left"]
    for cs, starts in net["services"].items():
        assert starts and all(v == 4 for v in starts.values()), (cs, starts)
    # Nothing else changed: compare the whole hive, key by key, before and after.
    before, after = _export(net["before"]), _export(net["after"])
    gone = [f"\\{d['control_set']}\\{d['key']}".lower() if d["control_set"] else
            f"\\{d['key']}".lower() for d in plan_of(report)["deletions"] if d["hive"] == "SYSTEM"]
    edited = {(f"\\{e['control_set']}\\{e['key']}" if e["control_set"] else
               f"\\{e['key']}").lower() for e in plan_of(report)["registry"]
              if e["hive"] == "SYSTEM"}
    assert gone
    for key, values in before.items():
        if any(key == g or key.startswith(g + "\\") for g in gone):
            assert key not in after, key
        elif key not in edited:
            assert after.get(key) == values, key
    for key in set(after) - set(before):  # new keys only where the plan put values
        assert key in edited or any(k.startswith(key + "\\") for k in edited), key


@pytest.mark.parametrize("name", NAMES)
def test_firstboot_files_on_output(results, name: str) -> None:
    report = results["reports"][name]
    fb_files = {f["guest_path"].split("GroupPolicy/", 1)[1]: f for f in plan_of(report)["files"]
                if f["step"] == "firstboot"}
    got = results["readback"][name]["network"]["firstboot"]
    # Static NICs as captured (the real hives of the 7 and 2019 profiles bring their own).
    statics = [n for n in plan_of(report)["network"]["nics"]
               if n["dhcp"] is False and n["ip_addresses"]]
    if not statics:
        assert fb_files == {} and plan_of(report)["network"]["firstboot"] is None
        return
    assert sorted(fb_files) == sorted(got)
    for rel, f in fb_files.items():
        assert got[rel] is not None and hashlib.sha256(got[rel]).hexdigest() == f["sha256"], rel
    ini = got["Machine/Scripts/scripts.ini"]
    assert ini[:2] == b"\xff\xfe"
    assert inf.decode(ini) == ("[Startup]\r\n0CmdLine=p2vimage-firstboot.cmd\r\n"
                                         "0Parameters=\r\n")
    gpt = got["gpt.ini"].decode("ascii")
    assert f"gPCMachineExtensionNames=[{firstboot.SCRIPTS_CSE}]" in gpt and "Version=1" in gpt
    script = got[f"Machine/Scripts/Startup/{firstboot.SCRIPT_NAME}"].decode("ascii")
    first = statics[0]
    assert f'set "CONN={first["connection_name"]}"' in script
    gw = f" {first['gateways'][0]} 1" if first["gateways"] else " none"
    assert f"static {first['ip_addresses'][0]} {first['subnet_masks'][0]}{gw}" in script
    assert "\r\n" in script
    assert plan_of(report)["network"]["firstboot"]["connection"] == first["connection_name"]
    # The report names the log the script actually writes.
    log = plan_of(report)["network"]["firstboot"]["log"]
    assert log == "%SystemRoot%\\p2vimage-firstboot.log"
    assert f'set "LOG={log}"' in script


@pytest.mark.parametrize("name", NAMES)
def test_hardware_leftovers(results, name: str) -> None:
    """The HP profile: vendor agents disabled on request, OEM licence noted, its SMBIOS
    strings in the XML; the others have none of that."""
    report = results["reports"][name]
    net = plan_of(report)["network"]
    root = etree.parse(report.xml).getroot()
    if name == "win2003r2-x64":
        assert sorted(v["name"] for v in net["vendor_services"]) == ["CpqTeam", "CqMgServ"]
        for cs, starts in results["readback"][name]["network"]["vendor"].items():
            assert starts == {"CpqTeam": 4, "CqMgServ": 4}, cs
        assert net["oem_product_id"] == "69713-OEM-0011903-00102"
        assert not any("OEM-licensed" in w for w in report.warnings)  # --smbios was given
        assert root.findtext("sysinfo/system/entry[@name='product']") == "ProLiant DL380 G5"
        assert root.findtext("sysinfo/bios/entry[@name='date']") == "01/24/2008"
        assert root.find("os/smbios").get("mode") == "sysinfo"
    else:
        assert net["vendor_services"] == [] and net["oem_product_id"] is None
        assert root.find("sysinfo") is None


# What ``check`` says about each *unconverted* profile (the captured physical machine),
# for QEMU's emulated controller and for virtio-blk: the exact error findings, in order
# (the Default control set's controller, IDE channel, disk; then geometry).  The same
# problems in the other bootable control set are warnings (they bite only if booted).
NO_DRIVER, NOT_BOOT, FILE = "storage.no-driver", "storage.not-boot-start", "boot-start.file-missing"
SOURCE_VERDICTS = {
    # SCSI-installed servers (synthetic hives): no critical-device entry for QEMU's PIIX3
    # (nor PCI\CC_0101), the IDE channels or even GenDisk; the NTFS boot sector keeps the
    # RAID BIOS's 255 heads where SeaBIOS shows 64 for a 1 GiB disk.
    "win2000-x86": {"ide": [NO_DRIVER] * 3 + ["nt5.geometry"],
                    "virtio-blk": [NO_DRIVER] * 2 + ["nt5.geometry"]},
    "win2003r2-x64": {"ide": [NO_DRIVER] * 3 + ["nt5.geometry"],
                      "virtio-blk": [NO_DRIVER] * 2 + ["nt5.geometry"]},
    # The real XP hive keeps gendisk, but its IDE entries are gone (the physical box's
    # controller was SCSI).  (atapi/IntelIde are Start=0 while their files exist only in
    # the Driver Cache cabinets: warnings, their ErrorControl is Normal.)
    "winxp-x86": {"ide": [NO_DRIVER] * 2 + ["nt5.geometry"],
                  "virtio-blk": [NO_DRIVER, "nt5.geometry"]},
    # Windows 7 has the PIIX3 entries (→ intelide, channels → atapi) but setup left the
    # drivers Start=3 on a machine without IDE; virtio: nothing for 1AF4:1001.
    "win7-x64": {"ide": [NOT_BOOT] * 2, "virtio-blk": [NO_DRIVER]},
    # Windows Server 2019 (the real Windows 10 hive): DriverDatabase maps ICH9 AHCI to
    # storahci, Start=0, but StartOverride\0=3 skips it at boot; no in-box virtio driver.
    "win2019-x64": {"sata": ["storage.start-override"], "virtio-blk": [NO_DRIVER]},
}


@pytest.mark.parametrize("name", NAMES)
def test_check_unconverted_sources(results, name: str) -> None:
    reports = results["readback"][name]["source_checks"]
    observed = {bus: r.ids("error") for bus, r in reports.items()}
    text = "\n".join(line for r in reports.values() for line in r.summary_lines())
    assert observed == SOURCE_VERDICTS[name], text
    assert not any(r.ready for r in reports.values())
    if name == "winxp-x86":
        assert reports["ide"].ids("warning").count(FILE) == 2, text
    assert all(r.bus == bus for bus, r in reports.items())


@pytest.mark.parametrize("name", NAMES)
def test_check_converted_outputs(results, name: str) -> None:
    """Each output is ready on the bus it was converted for (read from its own domain XML,
    which must agree with the guest) and, on BIOS guests, on IDE as the fallback."""
    checks = results["readback"][name]["checks"]
    report = results["reports"][name]
    root = etree.parse(report.xml).getroot()
    xml_bus = root.find("devices/disk[@device='disk']/target").get("bus")
    for what, r in checks.items():
        assert r.ready, f"{name} {what}:\n" + "\n".join(r.summary_lines())
    x = checks["xml"]
    assert x.bus == {"virtio": "virtio-blk"}.get(xml_bus, xml_bus)
    assert x.xml == report.xml and any(c.id == "domain-xml" for c in x.checks)
    assert not [f for c in x.checks if c.id == "domain-xml" for f in c.findings]
    # The check convert ran in its own session, after apply, saw what this one sees.
    inside = report.check
    assert inside is not None and inside.ready and report.ready
    assert (inside.bus, inside.nic, inside.machine) == (x.bus, x.nic, x.machine)
    assert inside.ids() == x.ids(), (inside.ids(), x.ids())
    # read-only: the outputs (and, by the session guard, the sources) are unchanged
    before, after = results["hashes"]
    assert before[name] == after[name]


@pytest.mark.parametrize("name", NAMES)
def test_proxmox_and_kubevirt_documents(results, name: str, tmp_path: Path) -> None:
    """Every profile's conversion, rendered for Proxmox VE and KubeVirt (issue 21) from its
    typed report, as ``--to proxmox|kubevirt`` renders it: valid against the published
    schemas, with the bus, NIC, machine, firmware and clock of the domain XML written.
    (No appliance: the documents come from the inspection and the plan.)"""
    from lxml import etree

    from p2vimage.domain import domain_spec
    from p2vimage.errors import UsageError
    from p2vimage.options import make_options
    from p2vimage.targets.kubevirt import DiskSource, kubevirt_vm
    from p2vimage.targets.proxmox import proxmox_vm
    from tests.targets.k8s_schema import CDI, KUBEVIRT, OpenApi
    from tests.targets.pve_schema import PveSchema
    from tests.targets.same_choices import pve_config, same_choices_as_xml

    report = results["reports"][name]
    out = results["dir"] / f"{name}.qcow2"
    spec = domain_spec(report.inspection, report.plan, make_options(out, **EXTRA.get(name, {})),
                       [out])
    dom = etree.parse(report.xml).getroot()
    pve = proxmox_vm(spec, report.inspection, vmid=4242, storage="local-lvm")
    assert PveSchema().config_errors(pve.config_text()) == []
    same_choices_as_xml(dom, pve_config(pve.config_text()), None)
    sources = [DiskSource(url=f"https://img.example.org/{name}.qcow2", size=out.stat().st_size)]
    if report.devices.bus == "ide":
        with pytest.raises(UsageError, match="KubeVirt has no IDE bus"):
            kubevirt_vm(spec, report.inspection, sources=sources)
        return
    kv = kubevirt_vm(spec, report.inspection, sources=sources)
    assert OpenApi(KUBEVIRT).errors(kv.vm, "v1.VirtualMachine") == []
    assert all(OpenApi(CDI).errors(dv, "v1beta1.DataVolume") == [] for dv in kv.data_volumes)
    same_choices_as_xml(dom, None, kv.vm)
