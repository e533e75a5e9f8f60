"""KB314082 (Mergeide), NT 6+ controller enabling and the driver-choice rules, on real hives.

The hive tests apply planned edits to copies of the real SYSTEM hives in
``../shared/realdata/registry`` with hivex, commit, and read the result back with
``hivexregedit --export`` (an independent reader) in the .reg syntax Windows uses.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fixtures.pe import build_pe
from p2vimage.apply import apply_registry
from p2vimage.formats.regf import REG_DWORD, REG_SZ
from p2vimage.guest.registry import Hive, read_control_sets
from p2vimage.plan import Plan
from p2vimage.windows import emulated_storage, ide_drivers, mergeide
from tests import steps

XP = "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"
WIN7 = "regipy-win7sp1-x86-SYSTEM"
WIN10 = "regipy-win10-1709-x64-SYSTEM_B"
HDC = "{4D36E96A-E325-11CE-BFC1-08002BE10318}"

# The KB's device IDs, typed from the KB text independently of the module's table.
KB_INTELIDE = ["1222", "1230", "2411", "2421", "7010", "7111", "7199"]
KB_PCIIDE_IDS = [
    "0e11&dev_ae33", "1039&dev_0601", "1039&dev_5513", "1042&dev_1000", "105a&dev_4d33",
    "1095&dev_0640", "1095&dev_0646", "1095&dev_0646&rev_05", "1095&dev_0646&rev_07",
    "1095&dev_0648",
    "1095&dev_0649", "1097&dev_0038", "10ad&dev_0001", "10ad&dev_0150", "10b9&dev_5215",
    "10b9&dev_5219", "10b9&dev_5229", "1106&dev_0571",
]


def reg(kind: int, text: str) -> str:
    """A string value as ``hivexregedit --export`` shows one Windows wrote: UTF-16LE with
    its terminating NUL, as ``hex(1)`` (REG_SZ) or ``hex(2)`` (REG_EXPAND_SZ) bytes."""
    data = (text + "\0").encode("utf-16-le")
    return f"hex({kind}):" + ",".join(f"{b:02x}" for b in data)


def apply(plan: Plan, hive: Hive) -> list[bool]:
    """Apply a plan's registry edits as convert does; return each edit's 'changed'."""
    apply_registry(plan, {"SYSTEM": hive})
    return [bool(e.changed) for e in plan.registry]


def export(path: Path, key: str) -> str:
    """``hivexregedit --export`` of one key (and its subkeys), as text."""
    proc = subprocess.run(
        ["hivexregedit", "--export", "--prefix", "HKEY_LOCAL_MACHINE\\SYSTEM", str(path), key],
        capture_output=True, check=True,
    )
    return proc.stdout.decode("utf-8", errors="replace")


@pytest.fixture
def hive_copy(real_hives, tmp_path):
    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copyfile(real_hives[name], dest)
        return dest

    return copy


def test_table_is_the_kb_set() -> None:
    cddb = {k: (svc, cls) for k, svc, cls in mergeide.CDDB_ENTRIES}
    for k in ("primary_ide_channel", "secondary_ide_channel", "*pnp0600", "*azt0502"):
        assert cddb[k] == ("atapi", HDC)
    assert cddb["gendisk"] == ("disk", "{4D36E967-E325-11CE-BFC1-08002BE10318}")
    assert cddb["pci#cc_0101"] == ("pciide", HDC)
    for dev in KB_INTELIDE:
        assert cddb[f"pci#ven_8086&dev_{dev}"] == ("intelide", HDC)
    for ids in KB_PCIIDE_IDS:
        assert cddb[f"pci#ven_{ids}"] == ("pciide", HDC)
    assert len(cddb) == 4 + 1 + 1 + len(KB_INTELIDE) + len(KB_PCIIDE_IDS)
    assert len(cddb) == len(mergeide.CDDB_ENTRIES)  # no duplicates


def test_mergeide_on_real_xp_hive(hive_copy) -> None:
    path = hive_copy(XP)
    hive = Hive(path, write=True)
    bootable = read_control_sets(hive).bootable()
    assert bootable == ["ControlSet001", "ControlSet003"]  # Current/Default 1, LKG 3
    # The real XP hive (a Virtual PC guest) has PIIX4's key; spell it differently and point
    # it elsewhere, as a half-edited machine might: it must be updated, not duplicated.
    for cs in bootable:
        node = hive.node(f"{cs}\\Control\\CriticalDeviceDatabase\\pci#ven_8086&dev_7111")
        if node is not None:
            hive.delete_key(node)
        node = hive.ensure_key(f"{cs}\\Control\\CriticalDeviceDatabase\\PCI#VEN_8086&DEV_7111")
        hive.set_value(node, "Service", REG_SZ, "iaStor")
    plan = Plan()
    mergeide.plan_mergeide(plan, steps.insp(), steps.view(hive, control_sets=bootable))
    changed = apply(plan, hive)
    assert any(changed)

    for cs in bootable:
        text = export(path, f"{cs}\\Control\\CriticalDeviceDatabase")
        keys = re.findall(r"^\[HKEY_LOCAL_MACHINE\\SYSTEM\\[^\\]+\\Control\\"
                          r"CriticalDeviceDatabase\\([^\]]+)\]", text, re.M)
        lower = [k.lower() for k in keys]
        assert lower.count("pci#ven_8086&dev_7111") == 1
        for key, svc, cls in mergeide.CDDB_ENTRIES:
            block = _block(text, key)
            assert f'"Service"={reg(1, svc)}' in block, (cs, key)
            assert f'"ClassGUID"={reg(1, cls)}' in block, (cs, key)
        for name, group, tag, sys_name in (
            ("atapi", "SCSI miniport", 0x19, "atapi.sys"),
            ("IntelIde", "System Bus Extender", 4, "intelide.sys"),
            ("PCIIde", "System Bus Extender", 3, "pciide.sys"),
        ):
            t = export(path, f"{cs}\\Services\\{name}")
            image = reg(2, "System32\\DRIVERS\\" + sys_name)
            for line in (
                '"Start"=dword:00000000', '"Type"=dword:00000001',
                '"ErrorControl"=dword:00000001', f'"Tag"=dword:{tag:08x}',
                f'"Group"={reg(1, group)}',
                f'"ImagePath"={image}',
            ):
                assert line in t, (cs, name, line)

    # A second run changes nothing.
    hive2 = Hive(path, write=True)
    plan2 = Plan()
    mergeide.plan_mergeide(plan2, steps.insp(), steps.view(hive2, control_sets=bootable))
    assert not any(apply(plan2, hive2))


def _block(text: str, key: str) -> str:
    m = re.search(
        r"^\[[^\]]*\\CriticalDeviceDatabase\\" + re.escape(key) + r"\]\n(.*?)(?:\n\n|\Z)",
        text, re.M | re.S | re.I,
    )
    assert m, key
    return m.group(1)


def test_nt6_ide_on_real_win7_hive(hive_copy) -> None:
    path = hive_copy(WIN7)
    hive = Hive(path, write=True)
    bootable = read_control_sets(hive).bootable()
    for cs in bootable:  # as the fixture profile makes it: the IDE drivers not boot-start
        for svc in ("intelide", "pciide", "atapi"):
            hive.set_value(hive.node(f"{cs}\\Services\\{svc}"), "Start", REG_DWORD, 3)
    plan = Plan()
    problems = emulated_storage.plan_controller(
        plan, steps.files_view(hive, bootable, "/Windows"), emulated_storage.IDE)
    assert problems == []
    apply(plan, hive)
    back = Hive(path)
    for cs in bootable:
        for svc in ("intelide", "pciide", "atapi"):
            assert back.get(back.node(f"{cs}\\Services\\{svc}"), "Start") == 0
        node = back.node(f"{cs}\\Control\\CriticalDeviceDatabase\\pci#ven_8086&dev_7010")
        assert back.get_str(node, "Service") == "intelide"
        assert back.get_str(node, "ClassGUID").upper() == HDC
    # The real hive already had the CDDB entries (same case-insensitive keys): not duplicated.
    cddb = back.child_names(back.node(f"{bootable[0]}\\Control\\CriticalDeviceDatabase"))
    assert [c.lower() for c in cddb].count("pci#ven_8086&dev_7010") == 1


def test_nt6_sata_on_real_win7_hive_uses_msahci(hive_copy) -> None:
    hive = Hive(hive_copy(WIN7), write=True)
    bootable = read_control_sets(hive).bootable()
    plan = Plan()
    emulated_storage.plan_controller(
        plan, steps.files_view(hive, bootable, "/Windows"), emulated_storage.SATA)
    starts = {e.key for e in plan.registry if e.name == "Start"}
    assert starts == {"Services\\msahci", "Services\\atapi"}
    services = {e.value for e in plan.registry if e.name == "Service"}
    assert services == {"msahci"}


def test_nt6_sata_on_real_win10_hive_clears_startoverride(hive_copy) -> None:
    path = hive_copy(WIN10)
    hive = Hive(path, write=True)
    bootable = read_control_sets(hive).bootable()
    plan = Plan()
    guest = steps.files_view(hive, bootable, "/Windows")
    problems = emulated_storage.plan_controller(plan, guest, emulated_storage.SATA)
    assert problems == []
    assert guest.asked == ["/Windows/System32/drivers/storahci.sys"]
    # No CDDB on 8+ (DriverDatabase has mshdc.inf for PCI\CC_010601).
    assert not any("CriticalDeviceDatabase" in e.key for e in plan.registry)
    apply(plan, hive)
    back = Hive(path)
    for cs in bootable:
        node = back.node(f"{cs}\\Services\\storahci")
        assert back.get(node, "Start") == 0
        assert back.get(back.node("StartOverride", node), "0") == 0


def test_nt6_missing_file_and_service_are_problems(hive_copy) -> None:
    hive = Hive(hive_copy(WIN7), write=True)
    bootable = read_control_sets(hive).bootable()
    hive.delete_key(hive.node(f"{bootable[0]}\\Services\\msahci"))
    problems = emulated_storage.plan_controller(
        Plan(), steps.files_view(hive, bootable, "/Windows", lambda p: not p.endswith("atapi.sys")),
        emulated_storage.SATA)
    assert any("Services\\msahci does not exist" in p for p in problems)
    assert any("atapi.sys (service atapi) is missing" in p for p in problems)


@pytest.mark.parametrize(
    ("image_path", "expected"),
    [
        (None, "/WINDOWS/System32/drivers/atapi.sys"),
        ("System32\\DRIVERS\\atapi.sys", "/WINDOWS/System32/DRIVERS/atapi.sys"),
        ("\\SystemRoot\\system32\\drivers\\atapi.sys", "/WINDOWS/system32/drivers/atapi.sys"),
        ("%SystemRoot%\\system32\\drivers\\atapi.sys", "/WINDOWS/system32/drivers/atapi.sys"),
        ("C:\\drivers\\atapi.sys", "/drivers/atapi.sys"),
        ("\\??\\C:\\Windows\\System32\\drivers\\atapi.sys",
         "/Windows/System32/drivers/atapi.sys"),
    ],
)
def test_image_file(image_path, expected) -> None:
    assert emulated_storage.image_file("/WINDOWS", image_path, "atapi") == expected


# --- choosing among copies ------------------------------------------------------------


def _copy(tmp_path: Path, origin: str, version, machine=0x14C, rank=1, existing=False,
          data: bytes | None = None) -> ide_drivers._Copy:
    f = tmp_path / f"{len(list(tmp_path.iterdir()))}.sys"
    f.write_bytes(data if data is not None else build_pe(machine, version=version,
                                                         payload=origin.encode()))
    c = ide_drivers._Copy("atapi.sys", origin, f, rank, existing)
    c.load()
    return c


def test_newest_of_right_arch_wins(tmp_path) -> None:
    old = _copy(tmp_path, "driver.cab", (5, 1, 2600, 0), rank=1)
    new = _copy(tmp_path, "sp3.cab", (5, 1, 2600, 5512), rank=2)
    wrong = _copy(tmp_path, "x64 copy", (5, 2, 3790, 9999), machine=0x8664, rank=3)
    junk = _copy(tmp_path, "dllcache", None, rank=4, data=b"MZ not really")
    best, verdicts = ide_drivers.choose([old, new, wrong, junk], "x86")
    assert best is new
    by_origin = {v.origin: v.verdict for v in verdicts}
    assert by_origin["sp3.cab"] == "chosen"
    assert by_origin["driver.cab"] == "older"
    assert by_origin["x64 copy"] == "wrong architecture: x64"
    assert by_origin["dllcache"].startswith("not a valid PE file")


def test_installed_copy_kept_on_tie_and_never_downgraded(tmp_path) -> None:
    installed = _copy(tmp_path, "installed", (5, 2, 3790, 4000), rank=0, existing=True)
    same = _copy(tmp_path, "sp2.cab", (5, 2, 3790, 4000), rank=2)
    older = _copy(tmp_path, "driver.cab", (5, 2, 3790, 0), rank=3)
    best, verdicts = ide_drivers.choose([installed, same, older], "x86")
    assert best is installed
    assert [v.verdict for v in verdicts][1] == "same version (installed copy kept)"
    newer = _copy(tmp_path, "hotfix", (5, 2, 3790, 4001), rank=5)
    best, _ = ide_drivers.choose([installed, same, older, newer], "x86")
    assert best is newer


def test_nothing_valid_means_missing(tmp_path) -> None:
    wrong = _copy(tmp_path, "x86 only", (5, 2, 3790, 0), machine=0x14C)
    best, verdicts = ide_drivers.choose([wrong], "x64")
    assert best is None and verdicts[0].verdict == "wrong architecture: x86"


def test_cabinet_order_follows_drvindex_then_service_packs_first() -> None:
    index = {"sp3.cab": ["atapi.sys"], "driver.cab": ["atapi.sys"]}
    assert ide_drivers._cabinet_order(["DRIVER.CAB", "sp3.cab", "sp2.cab", "notes.txt"], index) \
        == ["sp3.cab", "DRIVER.CAB", "sp2.cab"]
    assert ide_drivers._cabinet_order(["driver.cab", "sp1.cab", "sp2.cab"], {}) == [
        "sp1.cab", "sp2.cab", "driver.cab"
    ]
