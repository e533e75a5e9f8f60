"""The fake virtio-win ISOs of fixtures/virtio_iso.py: layout, names, INF and PE contents.

Every layout is built once per module; the ISOs are then read back three ways -- pycdlib's
ISO9660, Joliet and Rock Ridge facades, ``isoinfo`` (genisoimage) and ``xorriso`` -- and
compared with the tree ``build_tree`` writes and with the real data it was made from.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pycdlib
import pytest

import fixtures.virtio_iso as vi
from fixtures.pe import MACHINE_AMD64, MACHINE_I386
from fixtures.virtio_iso import (
    EXPECTED_FOLDERS,
    EXPECTED_FOLDERS_BY_LAYOUT,
    LAYOUTS,
    LEGACY_DEFAULT_OSES,
    VOLUME_IDS,
    build_iso,
    build_tree,
    expected_folders,
    inf_origins,
    iso9660_path,
    parse_driver_ver,
)
from p2vimage.formats.pe import read_pe
from tests.conftest import REALDATA

VIRTIO = REALDATA / "virtio-win"
INF_DIR = VIRTIO / "inf"
# Required tools (installed by scripts/setup.sh): a missing one fails, it is never skipped.
ISOINFO = shutil.which("isoinfo") or "isoinfo"  # Debian genisoimage
XORRISO = shutil.which("xorriso") or "xorriso"

# NT version of each guest os code (XP x64 is NT 5.2, handled where it is used).
NT_VERSION = {
    "2k": (5, 0),
    "xp": (5, 1),
    "2k3": (5, 2),
    "2k8": (6, 0),
    "2k8R2": (6, 1),
    "w7": (6, 1),
    "w8": (6, 2),
    "2k12": (6, 2),
    "w8.1": (6, 3),
    "2k12R2": (6, 3),
    "w10": (10, 0),
    "2k16": (10, 0),
    "2k19": (10, 0),
    "2k22": (10, 0),
}
DRIVER_STEM = {
    "viostor": "viostor",
    "vioscsi": "vioscsi",
    "netkvm": "netkvm",
    "balloon": "balloon",
    "vioserial": "vioser",
    "viorng": "viorng",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, list[str]]]:
    """layout -> (ISO with Joliet + Rock Ridge, tree directory, relative file paths)."""
    base = tmp_path_factory.mktemp("virtio-iso")
    out = {}
    for layout in LAYOUTS:
        iso = build_iso(layout, base / f"{layout}.iso")
        tree = base / f"{layout}-tree"
        out[layout] = (iso, tree, build_tree(layout, tree))
    return out


@contextmanager
def opened(path: Path) -> Iterator[pycdlib.PyCdlib]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        yield iso
    finally:
        iso.close()


def walk_files(facade) -> set[str]:
    found = set()
    for dirpath, _dirs, files in facade.walk("/"):
        for name in files:
            found.add(f"{dirpath.rstrip('/')}/{name}")
    return found


def read_rr(iso: pycdlib.PyCdlib, rel: str) -> bytes:
    buf = io.BytesIO()
    iso.get_rock_ridge_facade().get_file_from_iso_fp(buf, "/" + rel)
    return buf.getvalue()


def dirs_of(rels: list[str]) -> set[str]:
    return {"/" + "/".join(r.split("/")[:i]) for r in rels for i in range(1, r.count("/") + 1)}


def arch_of(rel: str) -> int:
    parts = {p.lower() for p in rel.split("/")[:-1]}
    if "amd64" in parts:
        return MACHINE_AMD64
    assert parts & {"x86", "i386"}, rel
    return MACHINE_I386


def run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout


def manufacturer_decorations(inf: bytes) -> list[str]:
    """The TargetOSVersion decorations of the [Manufacturer] section, e.g. ['NTx86.5.1']."""
    text = inf.decode("latin-1")
    m = re.search(r"(?ims)^\[Manufacturer\][ \t]*\r?\n(.*?)(?=^\[)", text)
    assert m, "no [Manufacturer] section"
    decos = []
    for line in m.group(1).splitlines():
        line = line.split(";", 1)[0]
        if "=" in line:
            decos += [t.strip() for t in line.split("=", 1)[1].split(",")[1:]]
    return decos


# --------------------------------------------------------------------------- trees


def test_realdata_path_matches_conftest() -> None:
    assert vi.REALDATA == REALDATA
    assert INF_DIR.is_dir(), f"missing test data {INF_DIR}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tree_lists_exactly_the_files_written(built, layout: str) -> None:
    _iso, tree, rels = built[layout]
    on_disk = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    assert rels == on_disk
    assert rels == sorted(set(rels))
    assert all("\\" not in r and not r.startswith("/") for r in rels)


def test_current_layout(built) -> None:
    rels = set(built["current"][2])
    for rel in (
        "viostor/xp/x86/viostor.sys",
        "viostor/xp/x86/viostor.inf",
        "viostor/2k3/amd64/viostor.inf",
        "NetKVM/2k3/x86/netkvm.inf",
        "NetKVM/2k8/amd64/netkvmco.dll",
        "NetKVM/w10/amd64/netkvmp.exe",
        "Balloon/xp/x86/WdfCoInstaller01009.dll",
        "Balloon/xp/x86/blnsvr.exe",
        "vioserial/2k3/amd64/WdfCoInstaller01009.dll",
        "vioserial/2k3/x86/vioser.inf",
        "Balloon/w8.1/x86/WdfCoInstaller01011.dll",
        "vioscsi/2k8/x86/vioscsi.sys",
        "vioscsi/2k8R2/amd64/vioscsi.inf",
        "viostor/2k19/amd64/viostor.sys",
        "amd64/2k19/viostor.sys",
        "amd64/w10/vioscsi.inf",
        "i386/w10/viostor.sys",
        "guest-agent/qemu-ga-x86_64.msi",
        "virtio-win_license.txt",
    ):
        assert rel in rels, rel
    assert not [r for r in rels if r.startswith(("vioscsi/xp/", "vioscsi/2k3/"))]
    assert not [r for r in rels if r.startswith("viostor/xp/amd64")]
    assert not [r for r in rels if "/w10/" in r and "WdfCoInstaller" in r]
    oses = {r.split("/")[1] for r in rels if r.startswith("viostor/")}
    assert oses == set(vi.CURRENT_OSES)
    # the flat trees are byte-identical copies of the per-driver folders
    tree = built["current"][1]
    for rel in rels:
        top, os_code, name = (rel.split("/") + ["", ""])[:3]
        if top in ("amd64", "i386") and name:
            arch = "amd64" if top == "amd64" else "x86"
            original = f"{name.split('.')[0]}/{os_code}/{arch}/{name}"
            assert (tree / rel).read_bytes() == (tree / original).read_bytes(), rel


def test_legacy_layout_mirrors_the_tsv(built) -> None:
    want = set()
    for line in (
        (VIRTIO / "virt-v2v-legacy-fake-virtio-win-tree-2019-2025.tsv")
        .read_text(encoding="utf-8")
        .splitlines()
    ):
        if line.startswith("cd/"):
            path = line.split("\t")[0][3:]
            parts = path.split("/")
            if len(parts) != 4 or parts[1] in LEGACY_DEFAULT_OSES:
                want.add(path)
    rels = built["legacy-2k3"][2]
    assert set(rels) == want
    assert "viostor/xp/x86/viostor.sys" in want and "viostor/2k3/amd64/viostor.inf" in want
    # and the TSV's DriverVer is what every INF of the mirror carries
    tsv_ver = {}
    for line in (
        (VIRTIO / "virt-v2v-legacy-fake-virtio-win-tree-2019-2025.tsv")
        .read_text(encoding="utf-8")
        .splitlines()
    ):
        cols = line.split("\t")
        if line.startswith("cd/") and len(cols) > 2 and cols[2]:
            tsv_ver[cols[0][3:]] = parse_driver_ver(cols[2])
    tree = built["legacy-2k3"][1]
    checked = 0
    for rel in rels:
        if rel in tsv_ver:
            assert parse_driver_ver((tree / rel).read_bytes()) == tsv_ver[rel], rel
            checked += 1
    assert checked >= 20


def test_old_wnet_layout(built) -> None:
    rels = set(built["old-wnet"][2])
    for rel in (
        "WXP/X86/VIOSTOR.SYS",
        "WXP/X86/WDFCOINSTALLER01009.DLL",
        "WNET/X86/VIOSTOR.INF",
        "WNET/AMD64/VIOSTOR.INF",
        "WNET/AMD64/BALLOON.SYS",
        "XP/X86/NETKVM.INF",
        "XP/AMD64/NETKVM.SYS",
        "VISTA/AMD64/NETKVMCO.DLL",
        "WLH/X86/VIOSCSI.SYS",
        "WIN7/AMD64/NETKVM.SYS",
        "WIN7/X86/VIOSTOR.INF",
        "WIN8/X86/WDFCOINSTALLER01011.DLL",
    ):
        assert rel in rels, rel
    assert all(r == r.upper() for r in rels)
    assert {r.split("/")[0] for r in rels} == {"WXP", "WNET", "XP", "WLH", "VISTA", "WIN7", "WIN8"}
    assert not [r for r in rels if r.startswith("WXP/AMD64")]
    assert not [r for r in rels if r.startswith(("WXP/", "WNET/")) and "VIOSCSI" in r]
    assert not [r for r in rels if r.startswith(("WXP/", "WNET/", "WLH/")) and "NETKVM" in r]


# --------------------------------------------------------------------------- ISO read-back


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pycdlib_facades_list_every_file(built, layout: str) -> None:
    iso_path, _tree, rels = built[layout]
    with opened(iso_path) as iso:
        assert iso.has_joliet() and iso.has_rock_ridge()
        assert iso.pvd.volume_identifier.decode().strip() == VOLUME_IDS[layout]
        assert walk_files(iso.get_rock_ridge_facade()) == {"/" + r for r in rels}
        assert walk_files(iso.get_joliet_facade()) == {"/" + r for r in rels}
        assert walk_files(iso.get_iso9660_facade()) == {iso9660_path(r) for r in rels}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_isoinfo_lists_every_file(built, layout: str) -> None:
    iso_path, tree, rels = built[layout]
    everything = {"/" + r for r in rels} | dirs_of(rels)
    rr = set(run(ISOINFO, "-f", "-R", "-i", str(iso_path)).splitlines())
    assert rr == everything
    joliet = set(run(ISOINFO, "-f", "-J", "-i", str(iso_path)).splitlines())
    assert joliet == everything
    # long Joliet listing: every file with its size
    sizes: dict[str, int] = {}
    where = ""
    entry = re.compile(
        r"^(\S{10})\s+\d+\s+\d+\s+\d+\s+(\d+)\s+\w{3}\s+\d+\s+\d{4}\s+\[[^]]*\]\s+(.+?)\s*$"
    )
    for line in run(ISOINFO, "-l", "-J", "-i", str(iso_path)).splitlines():
        if line.startswith("Directory listing of "):
            where = line.removeprefix("Directory listing of ")
        elif (m := entry.match(line)) and m.group(1).startswith("-"):
            sizes[(where + m.group(3)).lstrip("/")] = int(m.group(2))
    assert sizes == {r: (tree / r).stat().st_size for r in rels}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_xorriso_finds_every_file(built, layout: str) -> None:
    iso_path, _tree, rels = built[layout]
    proc = subprocess.run(
        [XORRISO, "-indev", str(iso_path), "-find", "/", "-type", "f"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = {line.strip().strip("'") for line in proc.stdout.splitlines() if line.strip()}
    assert found == {"/" + r for r in rels}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pe_machine_and_version_match_their_folder(built, layout: str) -> None:
    iso_path, _tree, rels = built[layout]
    by_lower = {r.lower(): r for r in rels}
    viostor = 0
    with opened(iso_path) as iso:
        for rel in rels:
            ext = rel.lower().rsplit(".", 1)[-1]
            if ext not in ("sys", "exe", "dll") or "/" not in rel:
                continue
            info = read_pe(read_rr(iso, rel))
            assert info.machine == arch_of(rel), rel
            if ext != "sys":
                continue
            inf = by_lower[rel.lower()[:-3] + "inf"]
            assert info.file_version == parse_driver_ver(read_rr(iso, inf))[1], rel
            viostor += rel.lower().endswith("/viostor.sys")
    assert viostor >= 5


def test_viostor_sys_arch_examples(built) -> None:
    iso_path = built["current"][0]
    with opened(iso_path) as iso:
        for rel, machine, version in (
            ("viostor/xp/x86/viostor.sys", MACHINE_I386, (51, 64, 104, 4800)),
            ("viostor/2k3/x86/viostor.sys", MACHINE_I386, (52, 64, 104, 4800)),
            ("viostor/2k3/amd64/viostor.sys", MACHINE_AMD64, (52, 64, 104, 4800)),
            ("viostor/w7/x86/viostor.sys", MACHINE_I386, (61, 77, 104, 17200)),
            ("viostor/2k19/amd64/viostor.sys", MACHINE_AMD64, (100, 93, 104, 24000)),
            ("i386/w10/viostor.sys", MACHINE_I386, (100, 93, 104, 24000)),
        ):
            info = read_pe(read_rr(iso, rel))
            assert (info.machine, info.file_version) == (machine, version), rel
            assert info.strings.get("OriginalFilename") == "viostor.sys"


# --------------------------------------------------------------------------- INF contents


@pytest.mark.parametrize("layout", LAYOUTS)
def test_real_infs_are_byte_identical(built, layout: str) -> None:
    iso_path, _tree, rels = built[layout]
    origins = inf_origins(layout)
    assert set(origins) == {r for r in rels if r.lower().endswith(".inf")}
    real = {rel: o for rel, o in origins.items() if o.kind == "real"}
    assert real
    with opened(iso_path) as iso:
        for rel, origin in real.items():
            assert read_rr(iso, rel) == (INF_DIR / origin.source).read_bytes(), rel


def test_real_inf_choice_per_os() -> None:
    origins = inf_origins("current")
    for rel, source in (
        ("viostor/xp/x86/viostor.inf", "Wxp_x86_viostor.inf"),
        ("viostor/2k3/x86/viostor.inf", "Wnet_x86_viostor.inf"),
        ("viostor/2k3/amd64/viostor.inf", "Wnet_amd64_viostor.inf"),
        ("NetKVM/xp/x86/netkvm.inf", "Wxp_x86_netkvm.inf"),
        ("NetKVM/2k3/amd64/netkvm.inf", "Wnet_amd64_netkvm.inf"),
        ("vioscsi/2k8/x86/vioscsi.inf", "Wlh_x86_vioscsi.inf"),
        ("NetKVM/2k8/amd64/netkvm.inf", "Wlh_amd64_netkvm.inf"),
        ("viostor/w7/x86/viostor.inf", "Win7_x86_viostor.inf"),
        ("viostor/2k8R2/amd64/viostor.inf", "Win7_amd64_viostor.inf"),
        ("vioscsi/w8.1/amd64/vioscsi.inf", "Win8.1_amd64_vioscsi.inf"),
        ("NetKVM/2k12R2/amd64/netkvm.inf", "Win8.1_amd64_netkvm.inf"),
    ):
        assert (origins[rel].kind, origins[rel].source) == ("real", source), rel
    old = inf_origins("old-wnet")
    assert old["XP/AMD64/NETKVM.INF"].source == "Wnet_amd64_netkvm.inf"
    assert old["VISTA/X86/NETKVM.INF"].source == "Wlh_x86_netkvm.inf"
    assert old["WXP/X86/VIOSTOR.INF"].source == "Wxp_x86_viostor.inf"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_derived_infs_differ_only_in_driverver_and_decoration(built, layout: str) -> None:
    _iso, tree, _rels = built[layout]
    derived = {r: o for r, o in inf_origins(layout).items() if o.kind == "derived"}
    assert derived
    for rel, origin in derived.items():
        ours = (tree / rel).read_bytes().decode("latin-1").splitlines()
        theirs = (INF_DIR / origin.source).read_bytes().decode("latin-1").splitlines()
        assert len(ours) == len(theirs), rel
        for a, b in zip(ours, theirs, strict=True):
            if a != b:
                assert a.lstrip().startswith("DriverVer") or "NTamd64.6.3" in b, (rel, a, b)
        assert parse_driver_ver("\n".join(ours)) == parse_driver_ver(origin.driver_ver)


def test_newer_os_infs_are_rewritten_win81_infs(built) -> None:
    tree = built["current"][1]
    for rel, deco in (
        ("viostor/w10/amd64/viostor.inf", "NTamd64.10.0"),
        ("viostor/2k16/amd64/viostor.inf", "NTamd64.10.0"),
        ("NetKVM/2k19/amd64/netkvm.inf", "NTamd64.10.0"),
        ("vioscsi/w10/x86/vioscsi.inf", "NTx86.10.0"),
        ("viostor/w8.1/x86/viostor.inf", "NTx86.6.3"),
    ):
        data = (tree / rel).read_bytes()
        assert manufacturer_decorations(data) == [deco], rel
        assert b"NTamd64.6.3" not in data
        major = parse_driver_ver(data)[1][0]
        assert major == (100 if deco.endswith("10.0") else 63), rel


@pytest.mark.parametrize(
    ("driver", "dev_ids", "service"),
    [("Balloon", ("1002", "1045"), "BALLOON"), ("vioserial", ("1003", "1043"), "VirtioSerial")],
)
def test_synthesized_kmdf_infs(built, driver: str, dev_ids: tuple[str, str], service: str):
    tree = built["current"][1]
    folders = sorted({r.rsplit("/", 1)[0] for r in built["current"][2] if r.startswith(driver)})
    assert folders
    for folder in folders:
        _drv, os_code, arch = folder.split("/")
        [inf] = [p for p in (tree / folder).iterdir() if p.suffix == ".inf"]
        text = inf.read_bytes().decode("ascii")
        assert "\r\n" in text and "Class=System" in text
        assert f"AddService = {service}," in text
        assert f"PCI\\VEN_1AF4&DEV_{dev_ids[0]}" in text
        assert (f"PCI\\VEN_1AF4&DEV_{dev_ids[1]}" in text) == (os_code not in ("xp", "2k3"))
        token = "NTamd64" if arch == "amd64" else "NTx86"
        ntver = ".".join(map(str, NT_VERSION[os_code]))
        assert manufacturer_decorations(inf.read_bytes()) == [f"{token}.{ntver}"]
        coinst = [p.name for p in (tree / folder).iterdir() if p.name.startswith("WdfCo")]
        if os_code in ("xp", "2k3"):
            assert coinst == ["WdfCoInstaller01009.dll"]
        if coinst:
            assert f'"{coinst[0]},WdfCoInstaller"' in text and ".NT.CoInstallers]" in text
            info = read_pe((tree / folder / coinst[0]).read_bytes())
            assert info.machine == arch_of(f"{folder}/x")
        else:
            assert "CoInstallers" not in text


# --------------------------------------------------------------------------- plain ISO9660


@pytest.mark.parametrize("layout", LAYOUTS)
def test_plain_iso9660_lists_every_file(built, tmp_path: Path, layout: str) -> None:
    _iso, tree, rels = built[layout]
    plain = build_iso(layout, tmp_path / "plain.iso", joliet=False, rock_ridge=False)
    names = {iso9660_path(r) for r in rels}
    assert len(names) == len(rels)
    for name in names:
        *dirs, leaf = name[1:].split("/")
        assert all(re.fullmatch(r"[A-Z0-9_]{1,31}", d) for d in dirs), name
        assert re.fullmatch(r"[A-Z0-9_]*\.[A-Z0-9_]*;1", leaf) and len(leaf) <= 32, name
    with opened(plain) as iso:
        assert not iso.has_joliet() and not iso.has_rock_ridge()
        assert iso.pvd.volume_identifier.decode().strip() == VOLUME_IDS[layout]
        facade = iso.get_iso9660_facade()
        assert walk_files(facade) == names
        sys_rel = next(r for r in rels if r.lower().endswith("viostor.sys"))
        buf = io.BytesIO()
        facade.get_file_from_iso_fp(buf, iso9660_path(sys_rel))
        assert buf.getvalue() == (tree / sys_rel).read_bytes()
        assert read_pe(buf.getvalue()).machine == arch_of(sys_rel)
    if ISOINFO:
        listed = set(run(ISOINFO, "-f", "-i", str(plain)).splitlines())
        assert names <= listed


def test_iso9660_names_of_awkward_paths() -> None:
    assert iso9660_path("viostor/w8.1/x86/viostor.sys") == "/VIOSTOR/W8_1/X86/VIOSTOR.SYS;1"
    assert iso9660_path("guest-agent/qemu-ga-x86_64.msi") == "/GUEST_AGENT/QEMU_GA_X86_64.MSI;1"
    assert iso9660_path("virtio-win-1.7.4_x86.vfd") == "/VIRTIO_WIN_1_7_4_X86.VFD;1"
    assert iso9660_path("Balloon/2k8R2", is_dir=True) == "/BALLOON/2K8R2"
    with pytest.raises(ValueError):
        iso9660_path("x" * 40 + ".txt")


def test_iso_is_deterministic(tmp_path: Path) -> None:
    a = build_iso("current", tmp_path / "a.iso", oses=("xp", "w10"))
    b = build_iso("current", tmp_path / "b.iso", oses=("xp", "w10"))
    assert a.read_bytes() == b.read_bytes()


# --------------------------------------------------------------------------- expectations


@pytest.mark.parametrize("layout", LAYOUTS)
def test_expected_folders_are_sound(built, layout: str) -> None:
    _iso, tree, rels = built[layout]
    table = EXPECTED_FOLDERS_BY_LAYOUT[layout]
    assert table[("2k", "x86")] == {}
    assert "vioscsi" not in table[("xp", "x86")] and "vioscsi" not in table[("2k3", "amd64")]
    assert table[("xp", "amd64")] == table[("2k3", "amd64")]
    assert expected_folders(layout) == table
    folders = {r.rsplit("/", 1)[0] for r in rels}
    for (os_code, arch), picks in table.items():
        guest_nt = (5, 2) if (os_code, arch) == ("xp", "amd64") else NT_VERSION[os_code]
        token = "ntamd64" if arch == "amd64" else "ntx86"
        for driver, folder in picks.items():
            assert folder in folders, (os_code, arch, driver)
            names = {p.name.lower(): p for p in (tree / folder).iterdir()}
            stem = DRIVER_STEM[driver]
            assert f"{stem}.sys" in names and f"{stem}.inf" in names, folder
            assert read_pe(names[f"{stem}.sys"].read_bytes()).machine == arch_of(folder + "/x")
            decos = manufacturer_decorations(names[f"{stem}.inf"].read_bytes())
            ok = False
            for deco in decos:
                arch_part, *ver = deco.lower().split(".")
                if arch_part == token and tuple(map(int, ver or (0, 0))) <= guest_nt:
                    ok = True
            assert ok, (os_code, arch, folder, decos)


def test_expected_folders_follow_oses() -> None:
    assert EXPECTED_FOLDERS is EXPECTED_FOLDERS_BY_LAYOUT["current"]
    assert EXPECTED_FOLDERS[("xp", "x86")]["viostor"] == "viostor/xp/x86"
    assert set(expected_folders("current", oses=("xp",))) == {("2k", "x86"), ("xp", "x86")}
    assert ("xp", "amd64") in expected_folders("old-wnet", oses=("2k3",))
    assert ("xp", "x86") not in expected_folders("old-wnet", oses=("2k3",))


def test_oses_filter_and_bad_input(tmp_path: Path) -> None:
    rels = build_tree("current", tmp_path / "t", oses=("2k3",))
    drivers = [r for r in rels if r.count("/") == 3]
    assert drivers and all(r.split("/")[1] == "2k3" for r in drivers)
    assert not [r for r in rels if r.startswith(("amd64/", "i386/"))]
    old = build_tree("old-wnet", tmp_path / "o", oses=("xp",))
    assert {r.split("/")[0] for r in old} == {"WXP", "XP"}
    legacy = build_tree("legacy-2k3", tmp_path / "l", oses=("2k8",))
    assert "viostor/2k8/x86/viostor.sys" in legacy
    with pytest.raises(ValueError):
        build_tree("nope", tmp_path / "x")
    with pytest.raises(ValueError):
        build_tree("current", tmp_path / "x", oses=("w95",))
    with pytest.raises(ValueError):
        build_iso("nope", tmp_path / "x.iso")
