"""Fuzz targets for what is read from a Windows guest, its media and the user's files:
cabinets (tables and extraction), INF and drvindex.inf, PE images, NTFS boot sector and
``$Volume``, registry values and whole hives, source-image sniffing, virtio-win ISOs,
domain XML, ``--smbios`` files and the CLI's option parsers.

Seeds are real files where we have them (``../shared/realdata``: cabinets, INFs, ISOs,
hives, libvirt domains; Wine's PE DLLs) and the test-side writers otherwise
(``fixtures/cabwriter.py``, ``fixtures/pe.py``, ``fixtures/regf.py``, mkntfs, qemu-img).
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import subprocess
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from fixtures.cabwriter import write_cab
from fixtures.pe import build_pe
from fixtures.regf import minimal_hive_bytes
from p2vimage import libvirt_xml
from p2vimage.check.domain import read_domain
from p2vimage.errors import BadInputError, P2VError, UsageError
from p2vimage.formats import cabinet, inf, ntfs_volume, pe, regf
from p2vimage.guest import registry
from p2vimage.sources import image
from p2vimage.virtio import media as vmedia
from p2vimage.virtio.select import classify
from p2vimage.windows import cabs
from p2vimage.windows.firstboot import parse_ip_option
from p2vimage.windows.geometry import read_ntfs_geometry
from p2vimage.windows.leftovers import read_smbios
from tests.conftest import REALDATA
from tests.fuzz.harness import mutated, mutated_text, seeded_or_random, target

CAB_ROOT = REALDATA / "cab"
WINE_PE = Path("/usr/lib/x86_64-linux-gnu/wine")


# --- cabinets -----------------------------------------------------------------------------------


@functools.cache
def cab_seeds() -> tuple[bytes, ...]:
    """Every real cabinet under 64 KiB (MSZIP, LZX, Quantum, spanning sets, the hostile ones)
    and writer-made ones with subfolders, all three methods."""
    real = [p.read_bytes() for p in sorted(CAB_ROOT.rglob("*.cab")) if p.stat().st_size < 65536]
    files = {"i386\\atapi.sys": b"MZ" + bytes(300), "intelide.sys": b"x" * 5000,
             "sub/dir/pciide.sys": bytes(range(256)) * 4}
    made = [write_cab(files, compression=c) for c in ("lzx", "mszip", "none")]
    return tuple(real + made)


@target("cab-header", "formats/cabinet.py: read_cabinet_bytes, read_cabinet (CFHEADER/FOLDER/FILE)",
        lambda: seeded_or_random(cab_seeds(), b"MSCF"), (cabinet.CabinetFormatError,), weight=2.0)
def run_cab_header(data: bytes) -> None:
    info = cabinet.read_cabinet_bytes(data)
    assert len(info.entries) == len(info.output_names) > 0
    for rel in info.output_names:  # cabextract's output names never start at the root
        assert not rel.startswith((b"/", b"\\")), rel
    with tempfile.NamedTemporaryFile(prefix="p2v-fuzz-", suffix=".cab") as f:
        f.write(data)
        f.flush()
        assert cabinet.read_cabinet(f.name) == cabinet.CabInfo(**{**info.__dict__, "path": f.name})


_HOSTILE_NAMES = ("..\\x", "../x", "C:\\x", "/x", "\\x", "a\\..\\..\\x", "x\0y", "*", "a/./b",
                  "con:", "\u202e.sys")


@st.composite
def cab_extract_cases(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    data = draw(mutated(cab_seeds(), 4))
    try:
        names = [e.name for e in cabinet.read_cabinet_bytes(data).entries]
    except cabinet.CabinetFormatError:
        names = []
    pick = st.sampled_from(names) if names else st.sampled_from(_HOSTILE_NAMES)
    wanted = draw(st.lists(pick | st.sampled_from(_HOSTILE_NAMES), min_size=1, max_size=3))
    return data, wanted


def _all_paths(root: Path) -> set[Path]:
    return {Path(top) / n for top, dirs, files in os.walk(root) for n in dirs + files}


@target("cab-extract", "windows/cabs.py: extract (names, cabextract, placement)",
        cab_extract_cases, (P2VError,), weight=0.5)
def run_cab_extract(case: tuple[bytes, list[str]]) -> None:
    data, wanted = case
    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        root = Path(tmp)
        cab = root / "in" / "driver.cab"
        cab.parent.mkdir()
        cab.write_bytes(data)
        dest = root / "out" / "dest"
        dest.mkdir(parents=True)
        try:
            got = cabs.extract(cab, wanted, dest)
        finally:
            # nothing anywhere but below dest (the cabinet's own directory untouched)
            outside = {p for p in _all_paths(root) if dest not in p.parents and p != dest}
            assert outside == {cab.parent, cab, dest.parent}, sorted(map(str, outside))
        real = dest.resolve()
        for name, path in got.items():
            assert real in path.resolve().parents, (name, path)
            assert path.is_file() and not path.is_symlink()


# --- INF files and drvindex.inf -----------------------------------------------------------------


@functools.cache
def inf_seeds() -> tuple[bytes, ...]:
    """Real virtio INFs as found, and re-encoded the ways INFs come: UTF-16 LE/BE with a BOM,
    UTF-16 LE without one, UTF-8 with a BOM, stray NULs."""
    real = [p.read_bytes() for p in sorted((REALDATA / "virtio-win" / "inf").glob("*.inf"))]
    text = real[0].decode("cp1252")
    variants = [
        b"\xff\xfe" + text.encode("utf-16-le"),
        b"\xfe\xff" + text.encode("utf-16-be"),
        text.encode("utf-16-le"),
        b"\xef\xbb\xbf" + text.encode("utf-8"),
        text.encode("cp1252").replace(b"\r\n", b"\r\n\0"),
    ]
    return tuple(real + variants)


_ARCHES = ("x86", "x64", "arm64")
_VERSIONS = ((5, 0), (5, 1), (5, 2), (6, 0), (6, 1), (6, 3), (10, 0))
_DEVICES = ("PCI\\VEN_1AF4&DEV_1001", "PCI\\VEN_1AF4&DEV_1000", "PCI\\VEN_1AF4")


@target("inf", "formats/inf.py: decode, parse and every query (models, services, AddReg)",
        lambda: seeded_or_random(inf_seeds(), b"[Version]\r\n", max_ops=8), (), weight=1.5)
def run_inf(data: bytes) -> None:
    text = inf.decode(data)
    assert isinstance(text, str)
    parsed = inf.parse(text)
    facts = (parsed.class_name, parsed.class_guid, parsed.provider, parsed.catalog)
    assert all(f is None or isinstance(f, str) for f in facts)
    date, version = parsed.driver_ver
    assert version is None or all(isinstance(v, int) for v in version)
    installs: set[str] = set()
    for arch, version in zip(_ARCHES * 3, _VERSIONS, strict=False):
        for model in parsed.models(arch, version):
            installs.add(model.install)
        parsed.claims(arch, version, _DEVICES[len(installs) % len(_DEVICES)])
    for install in sorted(installs)[:10]:
        for arch in _ARCHES[:2]:
            parsed.copy_files(install, arch)
            for svc in parsed.services(install, arch):
                assert isinstance(svc.addreg, tuple)
    for name in list(parsed.sections)[:50]:
        parsed.addreg(name)


_INF_NUMS = ("0", "1", "3", "0x10", "0x00010001", "0x00020000", "0x00010000", "0x00000001",
             "0x4", "-1", "4294967296", "0x", "", "\u00b2", "1_0", "9" * 5000)
_INF_WORDS = ("viostor", "%DiskDesc%", '"quoted, text"', "", "..\\..\\x", "C:\\x", "%", "%%",
              "a;b", "%12%\\viostor.sys", "PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4",
              "PCI\\VEN_1AF4&DEV_1001", "HKR", "HKLM", "\\", "x" * 300)
_INF_DECOS = ("", "NTx86", "NTamd64", "NTamd64.6.3", "NT", "NTx86.5.1", "NTarm64.10.0",
              "NTx86." + "9" * 5000, "NTamd64.6." + "9" * 5000, "nt.x", ".", "NTia64.5.2")


@st.composite
def inf_texts(draw: st.DrawFn) -> bytes:
    """INFs written from the grammar the virtio step reads ([Version], [Manufacturer] and
    decorated models, install, .Services, service-install and AddReg sections) with odd
    numbers, names and decorations in every field, in one of the encodings INFs come in."""
    num, word = st.sampled_from(_INF_NUMS), st.sampled_from(_INF_WORDS)
    deco = st.sampled_from(_INF_DECOS)
    decos = draw(st.lists(deco, max_size=3))
    lines = ["[Version]", f"Class={draw(word)}", f"ClassGUID={draw(word)}",
             f"DriverVer={draw(st.sampled_from(('01/02/2020', '13/45/x', '')))},"
             f"{'.'.join(draw(st.lists(num, max_size=5)))}", f"CatalogFile.NTx86={draw(word)}",
             "", "[Manufacturer]", f"%M%=Models{''.join(',' + d for d in decos)}"]
    install = draw(st.sampled_from(("inst", "x", "")))
    for d in [""] + decos:
        lines += [f"[Models{'.' + d if d else ''}]",
                  f"{draw(word)}={install},{draw(word)},{draw(word)}"]
    for d in draw(st.lists(st.sampled_from((".NTx86", ".NTamd64", ".NT", "")), max_size=2)):
        lines += [f"[{install}{d}]", f"CopyFiles={draw(word)},@{draw(word)}",
                  f"[{install}{d}.Services]",
                  f"AddService={draw(word)},{draw(num)},svc,{draw(word)}"]
    lines += ["[svc]", f"ServiceType={draw(num)}", f"StartType={draw(num)}",
              f"ErrorControl={draw(num)}", f"ServiceBinary={draw(word)}",
              f"LoadOrderGroup={draw(word)}", "AddReg=reg", "[reg]"]
    for _ in range(draw(st.integers(0, 4))):
        fields = [draw(word), draw(word), draw(word), draw(num)] + draw(st.lists(num | word,
                                                                             max_size=4))
        lines.append(",".join(fields))
    lines += ["[Strings]", 'M="Red Hat, Inc."', f"DiskDesc={draw(word)}"]
    text = "\r\n".join(lines)
    enc = draw(st.sampled_from(("cp1252", "utf-16", "utf-16-le", "utf-8-sig")))
    return text.encode(enc, "replace")


@target("inf-grammar", "formats/inf.py: INFs generated from its grammar, odd values everywhere",
        inf_texts, (), weight=1.0)
def run_inf_grammar(data: bytes) -> None:
    run_inf(data)


def _drvindex_seed(tags: tuple[str, ...]) -> str:
    lines = ['[Version]', 'signature="$Windows NT$"', f"CabFiles={','.join(tags)}", ""]
    for tag in tags:
        lines += [f"[{tag}]", "atapi.sys", "intelide.sys ; comment", '"pciide.sys"', ""]
    lines += ["[Cabs]"] + [f"{t}={t}.cab" for t in tags]
    return "\r\n".join(lines) + "\r\n"


@target("drvindex", "windows/cabs.py: parse_drvindex, cabinets_for",
        lambda: mutated_text([_drvindex_seed(("SP3", "driver")), _drvindex_seed(("driver",))],
                             8), ())
def run_drvindex(text: str) -> None:
    index = cabs.parse_drvindex(text)
    for cab, members in index.items():
        # a cabinet name from the guest is a plain file name: never a path out of the folder
        assert cab and cab not in (".", "..") and not any(c in cab for c in "\\/:\0"), cab
        assert all(m == m.lower() for m in members)
    cabs.cabinets_for(index, "atapi.sys")


# --- PE images --------------------------------------------------------------------------------


@functools.cache
def pe_seeds() -> tuple[bytes, ...]:
    made = [build_pe(m, version=v, kind=k) for m in (0x14C, 0x8664) for v, k in
            (((5, 2, 3790, 0), "driver"), (None, "driver"), ((6, 1, 7601, 1), "exe"))]
    real = []
    for arch in ("i386-windows", "x86_64-windows"):
        folder = WINE_PE / arch
        if folder.is_dir():
            small = sorted((p for p in folder.iterdir() if p.suffix in (".sys", ".dll")),
                           key=lambda p: p.stat().st_size)
            real += [p.read_bytes() for p in small[:3]]
    return tuple(made + real)


@target("pe", "formats/pe.py: read_pe, read_machine",
        lambda: seeded_or_random(pe_seeds(), b"MZ"), (pe.PEError,), weight=1.5)
def run_pe(data: bytes) -> None:
    try:
        pe.read_machine(data[:4096])
    except pe.PEError:
        pass
    info = pe.read_pe(data)
    assert isinstance(info.machine, int) and isinstance(info.strings, dict)
    if info.file_version is not None:
        pe.version_str(info.file_version)


# --- NTFS boot sector and $Volume ---------------------------------------------------------------


@functools.cache
def ntfs_seeds() -> tuple[bytes, ...]:
    """The boot sector and MFT record 3 ($Volume) of a volume made by mkntfs, 512- and
    4096-byte sectors; hand-made stand-ins when mkntfs is missing."""
    out = []
    for sector in (512, 4096):
        with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
            vol = Path(tmp) / "ntfs.img"
            with open(vol, "wb") as f:
                f.truncate(8 << 20)
            proc = subprocess.run(["mkntfs", "-F", "-f", "-q", "-s", str(sector), str(vol)],
                                  capture_output=True, check=False)
            if proc.returncode != 0:
                continue
            raw = vol.read_bytes()
        boot = ntfs_volume.parse_boot(raw[:512])
        out.append(raw[:512] + raw[boot.record_offset(3) : boot.record_offset(3)
                                   + boot.record_size])
    if not out:
        out.append(b"\xebR\x90NTFS    " + bytes(498) + b"\x55\xaa" + b"FILE" + bytes(1020))
    return tuple(out)


@target("ntfs", "formats/ntfs_volume.py parse_boot, volume_flags; geometry.read_ntfs_geometry",
        lambda: mutated(ntfs_seeds(), 6), (ntfs_volume.NtfsError,), weight=1.0)
def run_ntfs(data: bytes) -> None:
    boot_sector, record = data[:512], data[512:]
    read_ntfs_geometry(boot_sector)
    try:
        info = ntfs_volume.parse_boot(boot_sector)
        assert 256 <= info.record_size <= 65536 and info.cluster_size > 0
    finally:
        flags, at = ntfs_volume.volume_flags(record)
        assert 0 <= at <= len(record) - 2 and 0 <= flags <= 0xFFFF


# --- registry -----------------------------------------------------------------------------------

_TYPES = (0, 1, 2, 3, 4, 5, 6, 7, 11, 8, 0xFFFFFFFF)


@target("registry-values", "formats/regf.py: decode_value (REG_SZ/MULTI_SZ/DWORD/QWORD...)",
        lambda: st.tuples(st.sampled_from(_TYPES), st.binary(max_size=64) | st.text().map(
            lambda t: regf.encode_multi_sz(t.split("\0")))), (), weight=0.5)
def run_registry_values(case: tuple[int, bytes]) -> None:
    vtype, data = case
    value = regf.decode_value(vtype, data)
    assert isinstance(value, (str, list, int, bytes))
    if vtype in (regf.REG_SZ, regf.REG_EXPAND_SZ):
        assert "\0" not in value
        assert regf.decode_value(vtype, regf.encode_sz(value)) == value
    if vtype == regf.REG_MULTI_SZ:
        items = [s for s in value if s]
        assert regf.decode_value(vtype, regf.encode_multi_sz(items)) == items


@functools.cache
def hive_seeds() -> tuple[bytes, ...]:
    """A small SYSTEM-like hive written by hivex into fixtures/regf.py's empty hive, and the
    real XP SYSTEM hive (3.5 MiB, as a splice donor and a seed)."""
    import hivex

    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        path = Path(tmp) / "SYSTEM"
        path.write_bytes(minimal_hive_bytes())
        h = hivex.Hivex(str(path), write=True)
        root = h.root()
        sel = h.node_add_child(root, "Select")
        for name, n in (("Current", 1), ("Default", 1), ("LastKnownGood", 2), ("Failed", 0)):
            h.node_set_value(sel, {"key": name, "t": 4, "value": n.to_bytes(4, "little")})
        cs = h.node_add_child(root, "ControlSet001")
        svc = h.node_add_child(h.node_add_child(cs, "Services"), "atapi")
        h.node_set_values(svc, [
            {"key": "Start", "t": 4, "value": (0).to_bytes(4, "little")},
            {"key": "ImagePath", "t": 2, "value": regf.encode_sz("System32\\drivers\\x")},
            {"key": "DependOnGroup", "t": 7, "value": regf.encode_multi_sz(["a", "b"])},
            {"key": "Blob", "t": 3, "value": bytes(range(40))},
        ])
        h.node_add_child(root, "ControlSet002")
        h.commit(None)
        small = path.read_bytes()
    xp = REALDATA / "registry" / "dfwinreg-winxp-sp3-IECOMPATVHD-SYSTEM"
    return (small, xp.read_bytes()) if xp.is_file() else (small,)


def _hive_cases() -> st.SearchStrategy[bytes]:
    small, *rest = hive_seeds()
    return st.one_of(mutated([small], 8), mutated([small, *rest], 4))


@target("hive", "guest/registry.py Hive over hivex: open, walk, values, read_control_sets",
        _hive_cases, (registry.CorruptHiveError,), weight=0.7)
def run_hive(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        path = Path(tmp) / "SYSTEM"
        path.write_bytes(data)
        hive = registry.Hive(path)
        todo, seen = [hive.root], 0
        while todo and seen < 300:
            node = todo.pop()
            seen += 1
            hive.node_name(node)
            hive.path_of(node)
            for name, value in hive.values(node).items():
                assert name == value.name.lower()
                value.value  # noqa: B018 - decoding is what is under test
            todo += hive.children(node)[:20]
        try:
            registry.read_control_sets(hive)
        finally:
            hive.close()


_VERSION_TEXTS = ("5.2", "6.1", "10.0", "3790", "7601", "Service Pack 2", "Windows XP",
                  "Microsoft Windows Server 2003", "Enterprise")


@st.composite
def hive_pairs(draw: st.DrawFn) -> tuple[bytes, dict[str, str], str]:
    """(damaged SYSTEM hive, SOFTWARE CurrentVersion values, bus): the registry half of
    ``check``, run on bare hives as ``check_hives`` does."""
    system = draw(mutated(hive_seeds()[-1:], 6))
    names = ("CurrentVersion", "CurrentBuildNumber", "CurrentBuild", "ProductName",
             "CSDVersion", "EditionID", "InstallationType")
    values = draw(st.dictionaries(st.sampled_from(names),
                                  mutated_text(list(_VERSION_TEXTS), 3), max_size=5))
    return system, values, draw(st.sampled_from(("ide", "sata", "virtio-blk", "virtio-scsi")))


@target("check-hives", "check.check_hives: inspection and check on a damaged SYSTEM hive and "
        "fuzzed SOFTWARE version values", hive_pairs, (P2VError,), weight=0.2)
def run_check_hives(case: tuple[bytes, dict[str, str], str]) -> None:
    import hivex

    from p2vimage.check import check_hives

    system, values, bus = case
    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        sys_path, soft_path = Path(tmp) / "SYSTEM", Path(tmp) / "SOFTWARE"
        sys_path.write_bytes(system)
        soft_path.write_bytes(minimal_hive_bytes(hive_name="SOFTWARE"))
        h = hivex.Hivex(str(soft_path), write=True)
        node = h.root()
        for part in ("Microsoft", "Windows NT", "CurrentVersion"):
            node = h.node_add_child(node, part)
        # (lone surrogates kept: Windows stores any UTF-16 code units)
        h.node_set_values(node, [{"key": k, "t": 1,
                                  "value": v.encode("utf-16-le", "surrogatepass") + b"\0\0"}
                                 for k, v in values.items()])
        h.commit(None)
        del h
        report = check_hives(sys_path, soft_path, bus=bus)
        assert isinstance(report.to_dict(), dict)


# --- source images ------------------------------------------------------------------------------


@functools.cache
def image_seeds() -> tuple[bytes, ...]:
    """Empty images of every container format qemu-img makes, an MBR disk and a GPT-less
    raw one, and the foreign files people pass by mistake."""
    out = []
    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        for fmt in ("qcow2", "vmdk", "vpc", "vhdx", "vdi", "qed"):
            p = Path(tmp) / f"x.{fmt}"
            proc = subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(p), "4M"],
                                  capture_output=True, check=False)
            if proc.returncode == 0:
                out.append(p.read_bytes()[: 1 << 20])
    mbr = bytearray(4096)
    mbr[446:462] = bytes.fromhex("80202100070eb00800080000003e0000")
    mbr[510:512] = b"\x55\xaa"
    out += [bytes(mbr), bytes(8192), gzip.compress(bytes(1024)), b"partclone-image\0" + bytes(600)]
    return tuple(out)


@target("image-sniff", "sources/image.py: _sniff, _check_qcow2_extent",
        lambda: seeded_or_random(image_seeds(), b"QFI\xfb"), (P2VError,), weight=1.0)
def run_image_sniff(data: bytes) -> None:
    fmt = image._sniff(data[:65536], data[-512:])
    assert fmt is None or fmt in image.SUPPORTED_FORMATS
    image._foreign(data[:65536])
    if data[:4] == b"QFI\xfb":
        image._check_qcow2_extent(Path("x.qcow2"), data[:65536], len(data))


@target("open-source", "sources/image.py: open_source on a file (qemu-img info when sniffed)",
        lambda: seeded_or_random(image_seeds(), b"QFI\xfb"), (P2VError,), weight=0.4)
def run_open_source(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        path = Path(tmp) / "disk.img"
        path.write_bytes(data)
        src = image.open_source(path)
        assert src.format in image.SUPPORTED_FORMATS and src.virtual_size >= 0
        assert path.read_bytes() == data  # a source is never written


# --- virtio-win ISO -----------------------------------------------------------------------------


@functools.cache
def iso_seeds() -> tuple[bytes, ...]:
    """The real libarchive test ISOs (Joliet, Rock Ridge, both, Nero, xorriso) and a small
    pycdlib-made one with a virtio-win layout."""
    out = []
    for p in sorted((REALDATA / "iso").iterdir()):
        raw = p.read_bytes()
        out.append(gzip.decompress(raw) if p.suffix == ".gz" else raw)
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09")
    iso.add_directory("/VIOSTOR", rr_name="viostor", joliet_path="/viostor")
    iso.add_directory("/VIOSTOR/XP", rr_name="xp", joliet_path="/viostor/xp")
    iso.add_directory("/VIOSTOR/XP/X86", rr_name="x86", joliet_path="/viostor/xp/x86")
    body = inf_seeds()[0]
    iso.add_fp(io.BytesIO(body), len(body), "/VIOSTOR/XP/X86/VIOSTOR.INF;1",
               rr_name="viostor.inf", joliet_path="/viostor/xp/x86/viostor.inf")
    buf = io.BytesIO()
    iso.write_fp(buf)
    iso.close()
    out.append(buf.getvalue())
    return tuple(out)


@st.composite
def iso_cases(draw: st.DrawFn) -> bytes:
    """An ISO damaged where it matters: the volume descriptors, path tables and directory
    records live in the sectors after 16 (the first 32 KiB are the unused system area)."""
    data = bytearray(draw(st.sampled_from(iso_seeds())))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(16 * 2048, min(len(data), 40 * 2048) - 1))
        op = draw(st.sampled_from(("set", "u32", "truncate")))
        if op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "u32":
            value = draw(st.sampled_from((0, 1, 16, 17, 18, 19, 20, 0xFFFF, 0x7FFFFFFF,
                                          0xFFFFFFFF)) | st.integers(0, 0xFFFFFFFF))
            data[pos : pos + 4] = value.to_bytes(4, draw(st.sampled_from(("little", "big"))))
        else:
            del data[pos:]
            break
    return bytes(data)


@target("virtio-iso", "virtio/media.py: open_media on an ISO (pycdlib), walk, read every file",
        iso_cases, (vmedia.MediaError,), weight=0.7)
def run_virtio_iso(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        path = Path(tmp) / "virtio-win.iso"
        path.write_bytes(data)
        with vmedia.open_media(path) as media:
            for rel in media.list()[:50]:
                parts = rel.split("/")
                # names from the disc become guest paths: never absolute, never ".."
                assert rel and not rel.startswith("/") and ".." not in parts, rel
                classify(rel)
                media.read(rel)


# --- files and options from the user ---------------------------------------------------------

_DOMAINS = REALDATA / "libvirt" / "domain-xml-virt-manager-tests"


@target("domain-xml", "check/domain.py: read_domain (check --xml)",
        lambda: mutated_text([p.read_text() for p in sorted(_DOMAINS.glob("*.xml"))], 6),
        (BadInputError,), weight=0.7)
def run_domain_xml(text: str) -> None:
    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        path = Path(tmp) / "domain.xml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        read_domain(path)


_DMIDECODE = """# dmidecode 3.4
Getting SMBIOS data from sysfs.
SMBIOS 2.7 present.

Handle 0x0000, DMI type 0, 24 bytes
BIOS Information
\tVendor: HP
\tVersion: P70
\tRelease Date: 02/10/2014
\tBIOS Revision: 2.20

Handle 0x0100, DMI type 1, 27 bytes
System Information
\tManufacturer: HP
\tProduct Name: ProLiant DL380 G7
\tSerial Number: CZ1234
\tUUID: 30313436-3631-5a43-4a31-313430315a31
\tSKU Number: 583914-B21
\tFamily: ProLiant
"""
_SMBIOS_JSON = '{"bios": {"vendor": "HP"}, "system": {"product": "DL380", "serial": 1}}'


@target("smbios", "windows/leftovers.py: read_smbios (--smbios FILE)",
        lambda: mutated_text([_DMIDECODE, _SMBIOS_JSON], 6), (UsageError,), weight=0.5)
def run_smbios(text: str) -> None:
    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        path = Path(tmp) / "smbios.txt"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        out = read_smbios(path)
        assert all(isinstance(v, str) for section in out.values() for v in section.values())


_OPTIONS = ("Local Area Connection=10.0.0.5/24,gw=10.0.0.1,dns=10.0.0.2,wins=10.0.0.3",
            "2048", "512M", "4GiB", "1.5G", "52:54:00:12:34:56", "525400123456",
            "network=default", "bridge=br0")


@target("cli-options", "parse_ip_option, libvirt_xml.parse_memory/parse_mac/parse_network",
        lambda: mutated_text(list(_OPTIONS), 4), (UsageError,), weight=0.5)
def run_cli_options(text: str) -> None:
    for parse in (parse_ip_option, libvirt_xml.parse_memory, libvirt_xml.parse_mac,
                  libvirt_xml.parse_network):
        try:
            parse(text)
        except UsageError:
            pass


@target("virtio-paths", "virtio/select.py: classify (INF paths from the media)",
        lambda: mutated_text(["viostor/xp/x86/viostor.inf", "amd64/2k3/netkvm.inf",
                              "NetKVM/XP/AMD64/netkvm.inf", "WNET/X86/viostor.inf"], 6), ())
def run_virtio_paths(path: str) -> None:
    got = classify(path)
    assert got is None or (isinstance(got[0], str) and got[1] in ("x86", "x64", "arm64"))
