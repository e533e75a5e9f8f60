"""Broken inputs for the corpus that take more than a truncate: guests, hives, ISOs.

Every broken guest is a qcow2 overlay of one fixture image; all of them are broken in
a single writable appliance launch.  The breaks are made at the byte level with the
REGF and CAB layouts (hivex and our cabinet reader refuse to *write* such files), so
they are what a damaged disk would hold, not what a library would produce.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

REGF_BASE = 0x1000  # hive bins start after the 4 KiB base block
NET_CLASS = "{4D36E972-E325-11CE-BFC1-08002BE10318}"


# --- hives -------------------------------------------------------------------------------


def _nk(data: bytes, node: int) -> int:
    """File offset of the 'nk' signature of hivex node handle ``node`` (a cell offset)."""
    at = node + 4
    assert data[at : at + 2] == b"nk", f"no nk record at {node:#x}"
    return at


def hive_cut(data: bytes, where: str) -> bytes:
    if where == "header":
        return data[:3000]
    return data[: REGF_BASE + (len(data) - REGF_BASE) // 2 + 100]


def hive_bad_checksum(data: bytes) -> bytes:
    out = bytearray(data)
    out[0x1FC] ^= 0xFF
    return bytes(out)


def hive_cycle(path: Path) -> None:
    """Make a NIC's Enum instance key list its own parent as a subkey: a cycle.

    The key is one a conversion deletes (the stale physical NIC), which walks the tree.
    """
    import hivex

    def find(h: hivex.Hivex) -> tuple[int, int]:
        cs = h.node_get_child(h.root(), "ControlSet001")
        pci = h.node_get_child(h.node_get_child(cs, "Enum"), "PCI")
        for dev in h.node_children(pci):
            for inst in h.node_children(dev):
                vals = {h.value_key(v): v for v in h.node_values(inst)}
                if "ClassGUID" in vals and NET_CLASS.lower() in h.value_string(
                        vals["ClassGUID"]).lower():
                    return inst, dev
        raise AssertionError("no NIC Enum key in the hive")

    h = hivex.Hivex(str(path), write=True)
    inst, _dev = find(h)
    if not h.node_children(inst):  # a real one has "Device Parameters" and "Control"
        h.node_add_child(inst, "Device Parameters")
        h.commit(None)
    h = hivex.Hivex(str(path))
    victim, parent = find(h)
    data = bytearray(path.read_bytes())
    nk = _nk(data, victim)
    sub_off = struct.unpack_from("<I", data, nk + 0x1C)[0]
    lst = REGF_BASE + sub_off + 4
    assert data[lst : lst + 2] in (b"lf", b"lh", b"li"), data[lst : lst + 2]
    struct.pack_into("<I", data, lst + 4, parent - REGF_BASE)  # first entry -> the parent
    path.write_bytes(bytes(data))


def hive_huge_value(path: Path) -> None:
    """Give a static IP value (read by every inspection) a 2 GiB data length."""
    import hivex

    h = hivex.Hivex(str(path))
    node = h.root()
    for part in ("ControlSet001", "Services", "Tcpip", "Parameters", "Interfaces"):
        node = h.node_get_child(node, part)
    target = None
    for iface in h.node_children(node):
        for v in h.node_values(iface):
            if h.value_key(v) == "IPAddress":
                target = v
    assert target is not None, "no IPAddress value in the hive"
    data = bytearray(path.read_bytes())
    at = target + 4
    assert data[at : at + 2] == b"vk"
    struct.pack_into("<I", data, at + 4, 0x7FFFFFF0)
    path.write_bytes(bytes(data))


# --- cabinets ----------------------------------------------------------------------------


def cab_truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def cab_bad_checksum(data: bytes) -> bytes:
    """Flip a byte inside the first CFDATA block's compressed bytes."""
    coff = struct.unpack_from("<I", data, 36 + 0)[0]  # first CFFOLDER: coffCabStart
    out = bytearray(data)
    out[coff + 8 + 20] ^= 0xFF
    return bytes(out)


def cab_traversal(names: dict[str, bytes]) -> bytes:
    """A cabinet whose members try to leave the extraction directory."""
    from fixtures import cabwriter

    # Our writer refuses such names, so placeholders of the same length are written and
    # replaced in the CFFILE records afterwards (names are not covered by any checksum).
    files, swaps = [], []
    for i, (name, content) in enumerate(sorted(names.items())):
        hostile = (f"..\\..\\system32\\drivers\\{name}", f"\\WINDOWS\\system32\\{name}",
                   f"C:\\{name}", f"../{name}")[i % 4]
        placeholder = chr(ord("A") + i) * len(hostile)
        files.append((placeholder, content))
        swaps.append((placeholder.encode() + b"\0", hostile.encode() + b"\0"))
    data = cabwriter.write_cab(files, compression="mszip")
    for old, new in swaps:
        assert data.count(old) == 1
        data = data.replace(old, new)
    return data


# --- building the broken guests ----------------------------------------------------------

VARIANTS = ("hive-cut-header", "hive-cut-bin", "hive-bad-checksum", "hive-cycle",
            "hive-huge-value", "cab-truncated", "cab-bad-checksum", "cab-traversal",
            "ntfs-dirty", "hiberfil")


def _edit_file(g, guest_path: str, local: Path, edit: Callable[[Path], None]) -> None:
    g.download(guest_path, str(local))
    edit(local)
    g.upload(str(local), guest_path)


def _bytes_edit(fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(fn(p.read_bytes()))


def _break(g, dev: str, variant: str, tmp: Path) -> None:
    from p2vimage.guest import files
    from tests.e2e.test_check import _break as check_break

    if variant in ("ntfs-dirty", "hiberfil"):
        check_break(g, dev, variant, tmp)
        return
    g.mount(f"{dev}1", "/")
    sr = files.resolve(g, "/WINDOWS")
    if variant.startswith("hive-"):
        hive = files.resolve(g, f"{sr}/system32/config/system")
        edit = {
            "hive-cut-header": _bytes_edit(lambda d: hive_cut(d, "header")),
            "hive-cut-bin": _bytes_edit(lambda d: hive_cut(d, "bin")),
            "hive-bad-checksum": _bytes_edit(hive_bad_checksum),
            "hive-cycle": hive_cycle,
            "hive-huge-value": hive_huge_value,
        }[variant]
        _edit_file(g, hive, tmp / "system", edit)
    else:
        cab = files.resolve(g, f"{sr}/Driver Cache/i386/driver.cab")
        if variant == "cab-traversal":
            from p2vimage.formats.cabinet import list_cabinet
            from p2vimage.windows import cabs

            local = tmp / "driver.cab"
            g.download(cab, str(local))
            members = {e.name: b"" for e in list_cabinet(local)}
            out = cabs.extract(local, list(members), tmp / "x")
            local.write_bytes(cab_traversal({n: Path(p).read_bytes() for n, p in out.items()}))
            g.upload(str(local), cab)
        else:
            fn = cab_truncated if variant == "cab-truncated" else cab_bad_checksum
            _edit_file(g, cab, tmp / "driver.cab", _bytes_edit(fn))
    g.umount_all()


def build_variants(base: Path, out: Path) -> dict[str, Path]:
    """Every broken guest as an overlay of ``base``, broken in one writable launch."""
    import guestfs

    out.mkdir(parents=True, exist_ok=True)
    paths = {v: out / f"{v}.qcow2" for v in VARIANTS}
    for p in paths.values():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        str(base), str(p)], check=True)
    g = guestfs.GuestFS(python_return_dict=True)
    g.set_backend_settings(["force_tcg"])
    for p in paths.values():
        g.add_drive_opts(str(p), format="qcow2", readonly=False)
    g.launch()
    try:
        for v, dev in zip(VARIANTS, g.list_devices(), strict=True):
            work = out / f"work-{v}"
            work.mkdir(exist_ok=True)
            _break(g, dev, v, work)
        g.shutdown()
    finally:
        g.close()
    return paths


# --- ISOs --------------------------------------------------------------------------------


def iso_with_directory_loop(dest: Path) -> Path:
    """A virtio-win ISO whose /VIOSTOR/2K3 directory record points back at the root."""
    import pycdlib

    from fixtures import virtio_iso

    src = virtio_iso.build_iso("current", dest.with_suffix(".orig.iso"), joliet=False,
                               rock_ridge=False)
    iso = pycdlib.PyCdlib()
    iso.open(str(src))
    root_extent = iso.get_record(iso_path="/").extent_location()
    parent_at = iso.get_record(iso_path="/VIOSTOR").extent_location() * 2048
    target_extent = iso.get_record(iso_path="/VIOSTOR/2K3").extent_location()
    iso.close()
    data = bytearray(src.read_bytes())
    src.unlink()
    pos = data.find(target_extent.to_bytes(4, "little"), parent_at, parent_at + 2048)
    assert pos > 0
    data[pos : pos + 4] = root_extent.to_bytes(4, "little")
    data[pos + 4 : pos + 8] = root_extent.to_bytes(4, "big")
    dest.write_bytes(bytes(data))
    return dest
