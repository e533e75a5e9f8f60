"""virtio-win: reading the media (real ISO 9660 files made with pycdlib, and directories),
choosing packages in every layout, the INF reader on the real INFs, DriverDatabase naming.

The choices are checked against ``fixtures.virtio_iso.EXPECTED_FOLDERS_BY_LAYOUT``, which
the fixture library wrote down from the real layouts, independently of the chooser.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest

from fixtures import virtio_iso
from p2vimage.errors import BadInputError
from p2vimage.formats import inf
from p2vimage.guest.registry import Hive
from p2vimage.plan import Plan
from p2vimage.virtio import driver_database, select
from p2vimage.virtio.media import MediaError, open_media
from tests import steps
from tests.conftest import REALDATA

# (os, arch) of EXPECTED_FOLDERS -> (major, minor, build, server, arch) of such a guest.
GUESTS = {
    ("2k", "x86"): (5, 0, 2195, True, "x86"),
    ("xp", "x86"): (5, 1, 2600, False, "x86"),
    ("xp", "amd64"): (5, 2, 3790, False, "x64"),
    ("2k3", "x86"): (5, 2, 3790, True, "x86"),
    ("2k3", "amd64"): (5, 2, 3790, True, "x64"),
    ("2k8", "x86"): (6, 0, 6002, True, "x86"),
    ("2k8", "amd64"): (6, 0, 6002, True, "x64"),
    ("2k8R2", "amd64"): (6, 1, 7601, True, "x64"),
    ("w7", "x86"): (6, 1, 7601, False, "x86"),
    ("w7", "amd64"): (6, 1, 7601, False, "x64"),
    ("w8", "x86"): (6, 2, 9200, False, "x86"),
    ("w8", "amd64"): (6, 2, 9200, False, "x64"),
    ("2k12", "amd64"): (6, 2, 9200, True, "x64"),
    ("w8.1", "x86"): (6, 3, 9600, False, "x86"),
    ("w8.1", "amd64"): (6, 3, 9600, False, "x64"),
    ("2k12R2", "amd64"): (6, 3, 9600, True, "x64"),
    ("w10", "x86"): (10, 0, 19045, False, "x86"),
    ("w10", "amd64"): (10, 0, 19045, False, "x64"),
    ("2k16", "amd64"): (10, 0, 14393, True, "x64"),
    ("2k19", "amd64"): (10, 0, 17763, True, "x64"),
    ("2k22", "amd64"): (10, 0, 20348, True, "x64"),
}
# Which names each ISO variant exposes.
VARIANTS = {"rr+joliet": (True, True), "joliet": (True, False), "iso9660": (False, False)}


@pytest.fixture(scope="module")
def isos(tmp_path_factory) -> dict[tuple[str, str], Path]:
    out = tmp_path_factory.mktemp("virtio-isos")
    built = {}
    for layout in virtio_iso.LAYOUTS:
        for variant, (joliet, rr) in VARIANTS.items():
            built[(layout, variant)] = virtio_iso.build_iso(
                layout, out / f"{layout}-{variant}.iso", joliet=joliet, rock_ridge=rr
            )
    return built


def _norm(folder: str, variant: str) -> str:
    # A plain ISO 9660 disc shows mkisofs-mapped names (w8.1 -> W8_1); compare that way.
    if variant == "iso9660":
        return virtio_iso.iso9660_path(folder, is_dir=True).strip("/").lower()
    return folder.lower()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("layout", virtio_iso.LAYOUTS)
def test_choice_matches_expected_folders(isos, layout: str, variant: str) -> None:
    with open_media(isos[(layout, variant)]) as media:
        assert media.names == {"rr+joliet": "rock-ridge", "joliet": "joliet",
                               "iso9660": "iso9660"}[variant]
        assert media.volume_id == virtio_iso.VOLUME_IDS[layout]
        expected = virtio_iso.expected_folders(layout)
        assert expected
        for key, folders in expected.items():
            major, minor, build, server, arch = GUESTS[key]
            sel = select.choose(media, major=major, minor=minor, build=build, server=server,
                                arch=arch)
            got = {k: p.folder.lower() for k, p in sel.packages.items()}
            assert got == {k: _norm(v, variant) for k, v in folders.items()}, key
            for p in sel.packages.values():  # the .sys is the guest's machine type
                assert p.sys_file is not None and p.service is not None
                assert p.sys_version


def test_directory_media_same_as_iso(tmp_path) -> None:
    virtio_iso.build_tree("current", tmp_path)
    with open_media(tmp_path) as media:
        assert media.kind == "dir"
        sel = select.choose(media, major=5, minor=2, build=3790, server=True, arch="x86")
        assert sel.packages["viostor"].folder == "viostor/2k3/x86"
        data = media.read("VIOSTOR/2K3/X86/VIOSTOR.SYS")  # case-insensitive lookup
        assert data == (tmp_path / "viostor/2k3/x86/viostor.sys").read_bytes()


def test_windows_2000_gets_nothing_and_wrong_arch_only(isos, tmp_path) -> None:
    with open_media(isos[("current", "rr+joliet")]) as media:
        sel = select.choose(media, major=5, minor=0, build=2195, server=True, arch="x86")
        assert sel.packages == {} and "2k3/x86" in sel.available
    # Media with x86 folders only, for an x64 guest: nothing chosen.
    virtio_iso.build_tree("current", tmp_path / "t")
    for d in (tmp_path / "t").rglob("amd64"):
        shutil.rmtree(d)
    with open_media(tmp_path / "t") as media:
        sel = select.choose(media, major=5, minor=2, build=3790, server=True, arch="x64")
        assert sel.packages == {}
        assert not any(a.endswith("/x64") for a in sel.available)


def test_wrong_arch_sys_rejected(tmp_path) -> None:
    virtio_iso.build_tree("current", tmp_path)
    x86 = tmp_path / "viostor/2k3/x86/viostor.sys"
    (tmp_path / "viostor/2k3/amd64/viostor.sys").write_bytes(x86.read_bytes())
    with open_media(tmp_path) as media:
        sel = select.choose(media, major=5, minor=2, build=3790, server=True, arch="x64")
        assert "viostor" not in sel.packages
        assert any("viostor.sys is x86, the guest is x64" in r for r in sel.rejected)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"not an iso at all\n" * 100, "not a readable ISO 9660 image"), (None, "ISO 9660")],
)
def test_bad_media(isos, tmp_path, content, fragment) -> None:
    bad = tmp_path / "bad.iso"
    if content is None:  # truncated: the volume descriptors survive, the tables do not
        bad.write_bytes(isos[("current", "rr+joliet")].read_bytes()[: 18 * 2048])
    else:
        bad.write_bytes(content)
    with pytest.raises(MediaError) as exc:
        open_media(bad)
    assert isinstance(exc.value, BadInputError) and exc.value.exit_code == 3
    assert fragment in str(exc.value)
    with pytest.raises(MediaError, match="no such file"):
        open_media(tmp_path / "missing.iso")


def test_iso_directory_loop_is_refused(tmp_path) -> None:
    """A directory record pointing back at the root's extent must not be walked forever."""
    from tests.corpus_guests import iso_with_directory_loop

    looped = iso_with_directory_loop(tmp_path / "loop.iso")
    with pytest.raises(MediaError, match="form a loop|directory loop"):
        open_media(looped)


# --- INF reader on the real INFs ----------------------------------------------------------


def _real_inf(name: str) -> inf.Inf:
    return inf.parse(inf.decode((REALDATA / "virtio-win" / "inf" / name).read_bytes()))


def test_inf_decorations_and_services() -> None:
    xp = _real_inf("Wxp_x86_viostor.inf")
    assert xp.class_guid == "{4D36E97B-E325-11CE-BFC1-08002BE10318}"
    assert xp.driver_ver == ("11/27/2012", (51, 64, 104, 4800))
    assert xp.claims("x86", (5, 1), "PCI\\VEN_1AF4&DEV_1001") is not None
    assert xp.claims("x64", (5, 2), "PCI\\VEN_1AF4&DEV_1001") is None  # NTx86 only
    assert xp.claims("x86", (5, 1), "PCI\\VEN_1AF4&DEV_1042") is None  # legacy ID only
    win81 = _real_inf("Win8.1_amd64_viostor.inf")
    assert win81.claims("x64", (6, 1), "PCI\\VEN_1AF4&DEV_1001") is None  # NTamd64.6.3
    model = win81.claims("x64", (10, 0), "PCI\\VEN_1AF4&DEV_1042")
    assert model is not None
    (svc,) = win81.services(model.install, "x64")
    assert (svc.name, svc.type, svc.start, svc.error_control, svc.group) == (
        "viostor", 1, 0, 1, "SCSI miniport")
    assert svc.binary == "%12%\\viostor.sys"
    regs = {(r.subkey, r.name): (r.type, r.value) for r in svc.addreg}
    assert regs[("Parameters", "BusType")] == (4, 1)
    assert regs[("Parameters\\PnpInterface", "5")] == (4, 1)
    assert win81.copy_files(model.install, "x64") == ["viostor.sys"]


def test_inf_reader_never_raises_on_junk() -> None:
    for text in ("", "[", "[Manufacturer]\n%x% = ,,,\n", "\x00\xff" * 50, "[Strings]\nA=%A%"):
        i = inf.parse(text)
        assert i.models("x86", (5, 1)) == []


# --- DriverDatabase -------------------------------------------------------------------------


def test_package_name_and_version_blob() -> None:
    name = driver_database.package_name("viostor.inf", "x64", b"abc")
    assert driver_database.PACKAGE_NAME.match(name) and name.startswith("viostor.inf_amd64_")
    blob = driver_database.version_blob(
        "{4D36E97B-E325-11CE-BFC1-08002BE10318}", "07/21/2023", (100, 93, 104, 24000))
    assert len(blob) == 48
    assert blob[8:24] == uuid.UUID("{4D36E97B-E325-11CE-BFC1-08002BE10318}").bytes_le
    assert int.from_bytes(blob[32:40], "little") == (100 << 48) | (93 << 32) | (104 << 16) | 24000


def test_driver_database_on_real_win10_hive(real_hives, isos, tmp_path) -> None:
    """Allocation honours OemInfMap and existing oemN.inf; a re-run reuses the entry."""
    path = tmp_path / "SYSTEM"
    shutil.copyfile(real_hives["regipy-win10-1709-x64-SYSTEM_B"], path)
    hive = Hive(path, write=True)
    used, bitmap = driver_database._used_oem_numbers(hive)
    assert bitmap == bytes.fromhex("fffc") and {2, 3, 5, 7, 11, 12} <= used
    with open_media(isos[("current", "rr+joliet")]) as media:
        sel = select.choose(media, major=10, minor=0, build=17763, server=True, arch="x64")
        pkg = sel.packages["viostor"]
        plan = steps.plan(tmp_path / "w")
        plan.context.media = media
        guest = steps.view(hive, system_root="/Windows", arch="x64", major=10, minor=0)
        oem = driver_database.register(plan, guest, pkg)
        assert oem == "oem14.inf"  # the first number free in the bitmap
        for e in plan.registry:
            hive.set_value(hive.ensure_key(e.path), e.name, e.type, e.value)
        hive.commit()
        again = steps.plan(tmp_path / "w2")
        again.context.media = media
        guest2 = steps.view(Hive(path), system_root="/Windows", arch="x64", major=10, minor=0)
        assert driver_database.register(again, guest2, pkg) == oem
        back = Hive(path)
        changed = [e for e in again.registry
                   if back.raw(back.node(e.path), e.name) is None
                   or back.raw(back.node(e.path), e.name).value != e.value]
        assert changed == []
    assert back.get(back.node("DriverDatabase"), "OemInfMap") == bytes.fromhex("fffe")
    names = back.child_names(back.node("DriverDatabase\\DriverPackages"))
    ours = [n for n in names if n.startswith("viostor.inf_")]
    assert len(ours) == 1 and re.fullmatch(r"viostor\.inf_amd64_[0-9a-f]{16}", ours[0])


def test_device_path_default_when_missing(tmp_path) -> None:
    from fixtures.hivebuild import build_hive, esz, sz
    from p2vimage.virtio import stage

    bare = build_hive(tmp_path / "SOFTWARE", {"Microsoft\\Windows\\CurrentVersion": {
        "ProgramFilesDir": sz("C:\\Program Files")}}, hive_name="SOFTWARE")
    plan = Plan()
    stage.plan_device_path(plan, Hive(bare))
    (e,) = plan.registry
    assert (e.hive, e.key, e.name, e.type) == (
        "SOFTWARE", "Microsoft\\Windows\\CurrentVersion", "DevicePath", 2)
    assert e.value == "%SystemRoot%\\inf;%SystemRoot%\\Drivers\\VirtIO"
    # Already there (any case): kept once, order unchanged.
    there = build_hive(tmp_path / "SOFT2", {"Microsoft\\Windows\\CurrentVersion": {
        "DevicePath": esz("%SystemRoot%\\inf;C:\\Drivers;%systemroot%\\drivers\\virtio")}},
        hive_name="SOFTWARE")
    plan = Plan()
    stage.plan_device_path(plan, Hive(there))
    assert plan.registry[0].value == "%SystemRoot%\\inf;C:\\Drivers;%systemroot%\\drivers\\virtio"


def test_every_inf_of_the_real_rpm_and_iso_listings_is_classified() -> None:
    """Layouts not built as fixtures (the RPM's drivers/by-driver, by-os and flat
    drivers/<arch>/Win*/ trees; the 1.9.45 ISO): every INF path of the real listings gets
    the OS code and architecture its folders name."""
    expect_os = {"win10": "w10", "win11": "w11", "win2008r2": "2k8r2", "win2012": "2k12",
                 "win2012r2": "2k12r2", "win2016": "2k16", "win2019": "2k19",
                 "win2022": "2k22", "win2025": "2k25", "win7": "w7", "win8": "w8",
                 "win8.1": "w8.1"}
    arches = {"amd64": "x64", "x86": "x86", "i386": "x86", "arm64": "arm64"}
    seen = 0
    for listing in ("virt-v2v-virtio-win-drivers-list.txt", "virt-v2v-virtio-win-iso-list.txt"):
        for line in (REALDATA / "virtio-win" / listing).read_text().splitlines():
            path = line.strip()
            if not path.lower().endswith(".inf"):
                continue
            dirs = [d.lower() for d in path.split("/")[:-1]]
            if len(dirs) < 2 or not ({dirs[-1], dirs[-2]} & set(arches)):
                continue  # e.g. qemupciserial/, guest-agent/: not an <os>/<arch> folder
            got = select.classify(path)
            assert got is not None, path
            os_dir, arch_dir = (dirs[-2], dirs[-1]) if dirs[-1] in arches else (dirs[-1], dirs[-2])
            assert got[1] == arches[arch_dir], path
            assert got[0] == expect_os.get(os_dir, os_dir), path
            seen += 1
    assert seen > 400
