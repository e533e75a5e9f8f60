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
from p2vimage.guest.appliance import Job
from p2vimage.guest.registry import ControlSets
from p2vimage.sources.image import open_source
from p2vimage.windows.geometry import seabios_heads

NAMES = ["win2000-x86", "winxp-x86", "win2003r2-x64", "win7-x64", "win2019-x64"]


@pytest.fixture(scope="module")
def results(images, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("profiles")
    reports = {n: p2vimage.convert(images[n], out / f"{n}.qcow2") for n in NAMES}
    readback: dict = {}
    with Job([open_source(out / f"{n}.qcow2") for n in NAMES]) as job:
        for i, n in enumerate(NAMES):
            p = profiles.PROFILES[n]
            part = 3 if p.firmware == "uefi" else 2 if p.layout == "nt6" else 1
            job.use_root(f"/dev/sd{chr(ord('a') + i)}{part}")
            job.mount_root()
            system = job.hive("SYSTEM")
            regs = {}
            for cs in (ControlSets.name(c) for c in p.control_sets):
                regs[cs] = (
                    system.get(system.node(f"{cs}\\Control\\CrashControl"), "AutoReboot"),
                    system.get(system.node(f"{cs}\\Services\\intelppm"), "Start"),
                )
            job.g.umount_all()
            boot = job.g.pread_device(job.root_device, 512, 0)
            readback[n] = {"regs": regs, "boot": boot}
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
