"""The fixture library: every profile inspects as what it was built with.

One appliance holds every profile disk (read-only); each test switches the
job's root instead of launching again.  The three real-hive-based profiles
(XP, 7, 2019) must also agree with the independent dump INSPECTION.txt on the
fields it lists, except where the profile deliberately changed the machine
(stated per profile below).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fixtures import profiles, winspec
from p2vimage.formats import cabinet
from p2vimage.formats.pe import read_pe
from p2vimage.guest.appliance import Job
from p2vimage.guest.registry import ControlSets
from p2vimage.inspection import inspect_job
from p2vimage.sources.image import open_source
from p2vimage.windows import cabs
from tests.inspection.test_real_hives import EXPECTED as DUMP
from tests.inspection.test_real_hives import PHYSICAL_PREFIXES

MAIN = [
    "win2000-x86",
    "winxp-x86",
    "win2003-x86",
    "win2003r2-x64",
    "win7-x86",
    "win7-x64",
    "win2019-x64",
]
DISKS = [*MAIN, "win2003-x86-2disk", "win2003-x86-2disk-disk2"]
IDE_SERVICES = {"atapi", "intelide", "pciide"}


def _root_of(name: str, index: int) -> str:
    p = profiles.PROFILES[name]
    part = 3 if p.firmware == "uefi" else 2 if p.layout == "nt6" else 1
    return f"/dev/sd{chr(ord('a') + index)}{part}"


@pytest.fixture(scope="module")
def job(images: dict[str, Path]):
    j = Job([open_source(images[n]) for n in DISKS], writable=False)
    j.launch()
    yield j
    j.close()


@pytest.fixture(scope="module")
def inspections(job) -> dict:
    out = {}
    for i, name in enumerate(DISKS[:-1]):
        job.use_root(_root_of(name, i))
        out[name] = inspect_job(job)
    return out


def _use(job, name: str) -> None:
    job.use_root(_root_of(name, DISKS.index(name)))


@pytest.mark.parametrize("name", MAIN)
def test_profile_identity(inspections, name: str) -> None:
    p = profiles.PROFILES[name]
    i = inspections[name]
    major, minor = (int(x) for x in p.version.split("."))
    assert i.product_name == p.product_name
    assert (i.major, i.minor, i.build) == (major, minor, p.build)
    assert i.service_pack == (p.csd_version or None)
    assert i.arch == p.arch
    assert i.edition == p.edition
    assert i.product_type == p.product_type
    assert i.hostname == p.hostname
    assert i.system_root == f"/{p.systemroot}"
    assert i.firmware == p.firmware
    assert i.partition_table == ("gpt" if p.firmware == "uefi" else "mbr")
    assert i.windows_partition == _root_of(name, DISKS.index(name))
    assert i.real_time_is_universal is p.real_time_is_universal
    assert i.has_driver_database == (major >= 10)


@pytest.mark.parametrize("name", MAIN)
def test_profile_hardware(inspections, name: str) -> None:
    p = profiles.PROFILES[name]
    i = inspections[name]
    cs = i.control_sets
    assert (cs.current, cs.default, cs.last_known_good) == p.select
    assert cs.present == [ControlSets.name(n) for n in p.control_sets]
    assert i.hal.hardware_id == p.hal
    assert i.hal.multiprocessor is (not p.hal.endswith("_up"))
    if p.boot_controller:
        bc = p.boot_controller
        assert bc.service in i.boot_storage_drivers
        ctrl = next(c for c in i.storage_controllers if c.service == bc.service)
        assert (ctrl.description, ctrl.hardware_id, ctrl.start) == (bc.description, bc.device, 0)
    got = {n.guid: n for n in i.nics}
    for want in p.nics:
        n = got[want.guid]
        assert (n.description, n.driver_service, n.connection_name) == (
            want.description, want.service, want.connection
        )
        assert n.dhcp is want.dhcp
        assert n.ip_addresses == list(want.ip) and n.subnet_masks == list(want.mask)
        assert n.gateways == list(want.gateway) and n.dns_servers == list(want.dns)
        assert n.wins_servers == list(want.wins) and (n.dns_suffix or "") == want.domain
        assert n.mac == (want.mac.lower() if want.mac else None)
    assert i.virtio_drivers == []
    assert i.boot_storage_drivers, "every profile boots through a boot-start storage driver"
    if not p.real_based:
        assert set(got) == {n.guid for n in p.nics}
    assert [Path(c.path).name for c in i.driver_cabinets] == sorted(c.name for c in p.driver_cache)


def test_hal_variety_and_rtc(inspections) -> None:
    """The library covers a uniprocessor and a multiprocessor HAL, and RTC in UTC once."""
    mp = {n: inspections[n].hal.multiprocessor for n in MAIN}
    assert True in mp.values() and False in mp.values()
    assert [n for n in MAIN if inspections[n].real_time_is_universal] == ["win2003r2-x64"]


@pytest.mark.parametrize("name", [n for n in MAIN if profiles.PROFILES[n].real_based])
def test_real_based_profiles_agree_with_dump(inspections, name: str) -> None:
    p = profiles.PROFILES[name]
    dump = DUMP[Path(p.base_system_hive).name.removesuffix(".xz")]
    i = inspections[name]
    sel = dump["select"]
    assert (i.control_sets.current, i.control_sets.default, i.control_sets.last_known_good) == (
        sel["Current"], sel["Default"], sel["LastKnownGood"]
    )
    assert i.control_sets.present == dump["control_sets"]
    # Every physical NIC of the real machine is still there (the profile may add one).
    real = {
        n["guid"].upper(): n
        for n in dump["nics"]
        if n["hwid"] and n["hwid"].lower().startswith(PHYSICAL_PREFIXES)
    }
    ours = {n.guid.upper(): n for n in i.nics}
    assert set(real) <= set(ours)
    for guid, n in real.items():
        assert ours[guid].description == n["desc"]
    assert set(ours) - set(real) == {n.guid.upper() for n in p.nics}
    # Storage services keep the real Start values, except the ones the profile changed.
    changed = {path.rsplit("\\", 1)[-1].lower() for path, _ in p.extra_system}
    if p.boot_controller:
        changed.add(p.boot_controller.service.lower())
    for c in i.storage_controllers:
        svc = (c.service or "").lower()
        if svc in dump["services"] and svc not in changed:
            assert c.start == dump["services"][svc], svc


@pytest.mark.parametrize("name", ["win2000-x86", "winxp-x86", "win2003-x86", "win2003r2-x64"])
def test_nt5_profiles_have_no_ide_critical_devices(job, name: str) -> None:
    _use(job, name)
    hive = job.hive("SYSTEM")
    bootable = [n for n in hive.child_names(hive.root) if n.lower().startswith("controlset")]
    assert bootable
    for cs in bootable:
        cddb = hive.node(f"{cs}\\Control\\CriticalDeviceDatabase")
        assert cddb is not None
        services = {
            (hive.get_str(k, "Service") or "").lower() for k in hive.children(cddb)
        }
        assert not services & IDE_SERVICES, (cs, services & IDE_SERVICES)
        bc = profiles.PROFILES[name].boot_controller
        key = bc.cddb_key or winspec.cddb_key(bc.device)
        entry = hive.node(key, cddb)
        assert hive.get_str(entry, "Service") == bc.service
        assert hive.get_int(hive.node(f"{cs}\\Services\\{bc.service}"), "Start") == 0


def _download_cabs(job, name: str, dest: Path) -> dict[str, Path]:
    _use(job, name)
    job.mount_root()
    out = {}
    for c in inspect_job(job).driver_cabinets:
        local = dest / f"{name}-{Path(c.path).name}"
        job.g.download(c.path, str(local))
        out[Path(c.path).name] = local
    return out


@pytest.mark.parametrize("name", ["win2000-x86", "winxp-x86", "win2003-x86", "win2003r2-x64"])
def test_cabinets_pass_cabextract_and_hold_the_drivers(job, tmp_path: Path, name: str) -> None:
    p = profiles.PROFILES[name]
    got = _download_cabs(job, name, tmp_path)
    assert sorted(got) == sorted(c.name for c in p.driver_cache)
    # inf\drvindex.inf on the disk names every cabinet, newest first, with its files.
    drvindex = cabs.parse_drvindex(job.g.cat(job.g.case_sensitive_path(
        f"/{p.systemroot}/inf/drvindex.inf")))
    assert list(drvindex) == [c.name for c in reversed(p.driver_cache)]
    for cab in p.driver_cache:
        assert drvindex[cab.name] == [d.name for d in cab.drivers]
    for cab in p.driver_cache:
        path = got[cab.name]
        r = subprocess.run(["cabextract", "-t", str(path)], capture_output=True, text=True)
        assert r.returncode == 0 and "All done, no errors" in r.stdout, r.stdout + r.stderr
        kinds = {f.compression for f in cabinet.folders(path)}
        assert kinds == {3 if cab.compression == "lzx" else 1}
        files = cabs.extract(path, [d.name for d in cab.drivers], tmp_path / cab.name)
        for d in cab.drivers:
            info = read_pe(files[d.name].read_bytes())
            assert (info.machine, info.file_version) == (d.machine, d.version)


def test_an_lzx_cabinet_exists() -> None:
    assert any(c.compression == "lzx" for p in profiles.PROFILES.values() for c in p.driver_cache)


def test_newest_wins_cases_are_staged(job) -> None:
    """The driver-source rules each have a profile that exercises them."""
    w2k = profiles.WIN2000
    by_cab = {c.name: {d.name: d for d in c.drivers} for c in w2k.driver_cache}
    # 2000: the newest intelide.sys is in driver.cab, not in the SP cabinet.
    assert by_cab["driver.cab"]["intelide.sys"].version > by_cab["sp4.cab"]["intelide.sys"].version
    # 2000: pciidex.sys exists only in ServicePackFiles\i386 (checked on the disk).
    _use(job, "win2000-x86")
    job.mount_root()
    g = job.g
    assert g.is_file("/WINNT/ServicePackFiles/i386/pciidex.sys")
    assert all("pciidex.sys" not in names for names in by_cab.values())
    # 2003 x64: a newer pciide.sys already sits in System32\drivers; a higher-versioned
    # x86 atapi.sys (wrong architecture) in ServicePackFiles\i386.
    _use(job, "win2003r2-x64")
    job.mount_root()
    installed = read_pe(g.read_file("/WINDOWS/system32/drivers/pciide.sys"))
    newest_cab = max(
        d.version for c in profiles.WIN2003_X64.driver_cache for d in c.drivers
        if d.name == "pciide.sys"
    )
    assert installed.arch == "x64" and installed.file_version > newest_cab
    wrong = read_pe(g.read_file("/WINDOWS/ServicePackFiles/i386/atapi.sys"))
    assert wrong.arch == "x86" and wrong.file_version > newest_cab


def test_two_disk_machine(inspections) -> None:
    i = inspections["win2003-x86-2disk"]
    index = DISKS.index("win2003-x86-2disk")
    assert i.drive_letters["C"] == f"/dev/sd{chr(ord('a') + index)}1"
    assert i.drive_letters["D"] == f"/dev/sd{chr(ord('a') + index + 1)}1"


def test_second_ensure_builds_nothing(images) -> None:
    """A second run (a second `make test`) finds every image cached: nothing is built."""
    from fixtures.images import ensure

    logged: list[str] = []
    mtimes = {n: p.stat().st_mtime_ns for n, p in images.items()}
    again = ensure(log=logged.append)
    assert logged == [] and again == images
    assert {n: p.stat().st_mtime_ns for n, p in again.items()} == mtimes


def test_root_detection_agrees_with_inspect_os(job, inspections) -> None:
    """Our root detection (a mount and a few lookups per partition, facts from the hives
    and cmd.exe) against libguestfs' own ``inspect_os`` on the same disks: same roots,
    product, version, architecture, system root and drive letters."""
    assert job._roots is None  # inspect_os never ran: every root was found directly
    job._umount()
    g = job.g
    roots = set(g.inspect_os())
    arch = {"i386": "x86", "x86_64": "x64"}
    for index, name in enumerate(DISKS[:-1]):
        root, i = _root_of(name, index), inspections[name]
        assert root in roots and g.inspect_get_type(root) == "windows"
        assert i.windows_partition == root
        assert i.product_name == g.inspect_get_product_name(root)
        assert (i.major, i.minor) == (g.inspect_get_major_version(root),
                                      g.inspect_get_minor_version(root))
        assert i.arch == arch[g.inspect_get_arch(root)]
        assert i.system_root == g.inspect_get_windows_systemroot(root)
        assert i.drive_letters == {k.upper(): v
                                   for k, v in g.inspect_get_drive_mappings(root).items()}
