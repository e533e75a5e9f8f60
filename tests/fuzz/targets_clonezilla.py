"""Fuzz targets for the Clonezilla side: partclone and ntfsclone streams, the decompressors
and truncation checks, the metadata files and chunk names, the MBR/EBR/GPT writer.

Image inputs are *built* (header fields, bitmap, blocks, checksums all valid) and then
damaged, optionally re-sealing the header and bitmap CRCs afterwards: without that, almost
every mutation would stop at the header checksum and the block loop would never be fuzzed.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import random
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import lz4.frame
import xxhash
from hypothesis import strategies as st

from p2vimage.errors import CorruptImageError, P2VError
from p2vimage.formats import ntfsclone
from p2vimage.restore import restore_clonezilla
from p2vimage.sources.clonezilla import metadata, partclone, streams
from p2vimage.sources.clonezilla.restore import _restore_ntfsclone
from tests.conftest import REALDATA
from tests.fuzz.harness import INTERESTING, fix_u32, mutate, mutated_text, target

try:  # Python 3.14+
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd


def _blob(seed: int, size: int) -> bytes:
    """Block contents: random, all-zero or one repeated byte (cheap for hypothesis to draw)."""
    rng = random.Random(seed)
    kind = seed % 3
    if kind == 0:
        return rng.randbytes(size)
    return bytes([rng.randrange(256) if kind == 1 else 0]) * size


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split where the decompressor hands pieces over (the reader must join them)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return [p for p in out if p]


# --- partclone ----------------------------------------------------------------------------------

_CSUM_SIZES = {0x00: 0, 0x20: 4, 0x30: 8, 0x31: 16}


def _crc(data: bytes, state: int = 0xFFFFFFFF) -> int:
    return zlib.crc32(data, state ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


class _Sum:
    """The block-section checksums, written out again from the format description."""

    def __init__(self, mode: int) -> None:
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        self.state = 0xFFFFFFFF
        self.h = xxhash.xxh64() if self.mode == 0x30 else xxhash.xxh3_128()

    def update(self, data: bytes) -> None:
        if self.mode == 0x20:
            self.state = _crc(data, self.state)
        else:
            self.h.update(data)

    def digest(self) -> bytes:
        if self.mode == 0x20:
            return self.state.to_bytes(4, "little")
        return self.h.intdigest().to_bytes(_CSUM_SIZES[self.mode], "little")


_V2_FIELDS = {  # name: (offset, struct format) in the 0002 header, for targeted damage
    "device_size": (52, "<Q"), "total": (60, "<Q"), "used_sb": (68, "<Q"), "used": (76, "<Q"),
    "block_size": (84, "<I"), "feature_size": (88, "<I"), "image_version": (92, "<H"),
    "cpu_bits": (94, "<H"), "checksum_mode": (96, "<H"), "checksum_size": (98, "<H"),
    "blocks_per_checksum": (100, "<I"), "reseed": (104, "<B"), "bitmap_mode": (105, "<B"),
}
_V1_FIELDS = {"block_size": (36, "<i"), "device_size": (40, "<Q"), "total": (48, "<Q"),
              "used": (56, "<Q")}


@st.composite
def partclone_images(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """(image bytes, piece boundaries): a valid 0001 or 0002 image, then damaged."""
    v1 = draw(st.integers(0, 3)) == 0
    bs = draw(st.sampled_from((512, 1024, 4096)))
    used = draw(st.lists(st.booleans(), max_size=48))
    total = len(used)
    blocks = [_blob(draw(st.integers(0, 1 << 16)), bs) for u in used if u]
    mode = draw(st.sampled_from((0x20, 0x20, 0x00, 0x30, 0x31)))
    bpc = draw(st.sampled_from((1, 2, 3, 7, 256)))
    reseed = draw(st.booleans())
    bitmap_none = not v1 and draw(st.integers(0, 5)) == 0
    if bitmap_none:
        used = [True] * total
        blocks = [_blob(i, bs) for i in range(total)]
    out = bytearray()
    if v1:
        out += struct.pack("<15s15s4s2siQQQ", b"partclone-image", b"NTFS", b"0001", b"\0\0",
                           bs, total * bs, total, len(blocks)) + bytes(4096)
        out += bytes(1 if u else 0 for u in used) + b"BiTmAgIc"
        state = 0xFFFFFFFF
        for block in blocks:
            state = _crc(block[:1] * bs, state)
            out += block + struct.pack("<I", state)
        fields = _V1_FIELDS
    else:
        head = struct.pack("<16s14s4sH16sQQQQIIHHHHIBB", b"partclone-image\0", b"0.3.23",
                           b"0002", 0xC0DE, b"NTFS", total * bs, total, len(blocks),
                           len(blocks), bs, 18, 2, 64, mode, _CSUM_SIZES[mode],
                           bpc if mode else 0, int(reseed), 0 if bitmap_none else 1)
        out += head + struct.pack("<I", _crc(head))
        if not bitmap_none:
            bm = bytearray((total + 7) // 8)
            for i, u in enumerate(used):
                if u:
                    bm[i // 8] |= 1 << (i % 8)
            out += bytes(bm) + struct.pack("<I", _crc(bytes(bm)))
        h = _Sum(mode) if mode else None
        pending = 0
        for block in blocks:
            out += block
            if h is None:
                continue
            h.update(block)
            pending += 1
            if pending == bpc:
                out += h.digest()
                pending = 0
                if reseed:
                    h.reset()
        if h is not None and pending:
            out += h.digest()
        fields = _V2_FIELDS
    data = bytes(out)
    # targeted damage: header fields set to values that break sizes and offsets
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(sorted(fields)))
        off, fmt = fields[name]
        width = struct.calcsize(fmt)
        value = draw(st.sampled_from(INTERESTING) | st.integers(0, (1 << (8 * width)) - 1))
        data = data[:off] + (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little") \
            + data[off + width:]
    if draw(st.integers(0, 4)) == 0:  # a consistent claim of a huge volume
        blocks_claimed = draw(st.sampled_from((1 << 31, 1 << 35, 1 << 40, 1 << 50)))
        (_o, fmt_bs), (o_dev, _f), (o_total, _g) = (fields["block_size"], fields["device_size"],
                                                    fields["total"])
        claimed_bs = struct.unpack_from(fmt_bs, data, fields["block_size"][0])[0]
        data = (data[:o_dev] + struct.pack("<Q", blocks_claimed * claimed_bs % (1 << 64))
                + data[o_dev + 8 : o_total] + struct.pack("<Q", blocks_claimed)
                + data[o_total + 8 :])
    data = draw(mutate(data, 4))
    if not v1 and draw(st.booleans()):  # re-seal the header and bitmap CRCs
        data = fix_u32(data, 106, _crc(data[:106]))
        nbm = (struct.unpack_from("<Q", data, 60)[0] + 7) // 8 if len(data) >= 68 else 0
        if 110 + nbm + 4 <= len(data):
            data = fix_u32(data, 110 + nbm, _crc(data[110 : 110 + nbm]))
    cuts = draw(st.lists(st.integers(0, 1 << 20), max_size=3))
    return data, cuts


@target("partclone", "sources/clonezilla/partclone.py: read_header, read_bitmap, restore",
        partclone_images, (P2VError,), weight=2.0)
def run_partclone(example: tuple[bytes, list[int]]) -> None:
    data, cuts = example
    reader = streams.PieceReader(iter(_pieces(data, cuts)), threaded=False)
    headers: list[partclone.Header] = []
    limit = [0]

    def on_header(hdr: partclone.Header) -> None:
        headers.append(hdr)
        limit[0] = hdr.total_blocks * hdr.block_size

    def write_at(off: int, view: memoryview) -> None:
        # every write lies inside the volume the header describes
        assert off >= 0 and off + len(view) <= limit[0], (off, len(view), limit[0])

    partclone.restore(reader, write_at, on_header=on_header)


# --- ntfsclone ---------------------------------------------------------------------------------


@st.composite
def ntfsclone_images(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """A valid ``ntfsclone --save-image`` stream (header, gap and cluster records), damaged."""
    cs = draw(st.sampled_from((512, 4096)))
    records = draw(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), max_size=24))
    body = bytearray()
    cluster = 0
    for is_data, n in records:
        if is_data:
            for _ in range(n):
                body += b"\x01" + _blob(cluster, cs)
                cluster += 1
        else:
            body += b"\x00" + struct.pack("<q", n)
            cluster += n
    nr = max(cluster, 1)
    dev = nr * cs
    head = struct.pack("<16sBBIqqqI", b"\0ntfsclone-image", 10, 0, cs, dev, nr, cluster, 56)
    data = draw(mutate(head + bytes(6) + bytes(body), 5))
    return data, draw(st.lists(st.integers(0, 1 << 20), max_size=3))


@target("ntfsclone", "formats/ntfsclone.py: read_header, iter_runs (as restore writes them)",
        ntfsclone_images, (P2VError,))
def run_ntfsclone(example: tuple[bytes, list[int]]) -> None:
    data, cuts = example
    reader = streams.PieceReader(iter(_pieces(data, cuts)), threaded=False)
    try:
        size = ntfsclone.read_header(reader).device_size  # type: ignore[arg-type]
    except ntfsclone.NtfsCloneError:
        size = -1  # the restore must refuse the same header, as a P2VError
    reader = streams.PieceReader(iter(_pieces(data, cuts)), threaded=False)

    def write_at(off: int, chunk: memoryview) -> None:
        assert off >= 0 and off + len(chunk) <= size

    _restore_ntfsclone(reader, write_at, max(size, 0), lambda _n: None)
    assert size >= 0, "a header read_header refuses was restored"


# --- compressed streams ------------------------------------------------------------------------

_COMPRESS = {
    "gz": lambda b: gzip.compress(b, 6, mtime=0),
    "zst": lambda b: zstd.compress(b),
    "bz2": bz2.compress,
    "xz": lambda b: lzma.compress(b, lzma.FORMAT_XZ),
    "lzma": lambda b: lzma.compress(b, lzma.FORMAT_ALONE),
    "lz4": lambda b: lz4.frame.compress(b),
}


def _tool_compress(comp: str, data: bytes) -> bytes:
    cmd = {"lzo": ["lzop", "-c"], "lzip": ["lzip", "-c"]}[comp]
    return subprocess.run(cmd, input=data, capture_output=True, check=True).stdout


@st.composite
def compressed_streams(draw: st.DrawFn, comps: tuple[str, ...]) -> dict:
    comp = draw(st.sampled_from(comps))
    payload = b"".join(_blob(draw(st.integers(0, 1 << 16)), draw(st.integers(0, 3000)))
                       for _ in range(draw(st.integers(0, 3))))
    members = draw(st.integers(1, 2))  # pigz/pzstd-style concatenated members
    cut = draw(st.integers(0, len(payload)))
    parts = [payload[:cut], payload[cut:]] if members == 2 else [payload]
    if comp == "uncomp":
        pack = bytes
    elif comp in _COMPRESS:
        pack = _COMPRESS[comp]
    else:
        pack = lambda b: _tool_compress(comp, b)  # noqa: E731
    clean = b"".join(pack(p) for p in parts)
    damage = draw(st.sampled_from(("none", "truncate", "mutate")))
    if damage == "truncate" and len(clean) > 1:
        data = clean[: draw(st.integers(1, len(clean) - 1))]
    elif damage == "mutate":
        data = draw(mutate(clean, 4))
    else:
        data = clean
    chunks = draw(st.lists(st.integers(0, 1 << 20), max_size=3))
    return {"comp": comp, "payload": payload, "clean": clean, "data": data,
            "damage": damage, "chunks": chunks, "boundary": len(pack(parts[0]))}


def _run_stream(ex: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        paths = []
        for i, piece in enumerate(_pieces(ex["data"], ex["chunks"]) or [b""]):
            p = Path(tmp) / f"sda1.ntfs-ptcl-img.{ex['comp']}.a{chr(97 + i)}"
            p.write_bytes(piece)
            paths.append(p)
        src = streams.ChunkReader(paths)
        out = bytearray()
        gen = streams.iter_decompressed(src, ex["comp"])
        raised = None
        try:
            for piece in gen:
                assert len(piece) <= streams.PIECE
                if len(out) < 1 << 20:
                    out += piece[: (1 << 20) - len(out)]
        except CorruptImageError as exc:
            raised = exc
        finally:
            gen.close()
            src.close()
        if ex["damage"] == "none":  # an intact stream decompresses to exactly the payload
            assert raised is None, raised
            assert bytes(out) == ex["payload"][: 1 << 20]
        elif ex["damage"] == "truncate" and len(ex["data"]) != ex["boundary"]:
            # a stream cut inside a member is always reported (a lost last chunk)
            assert raised is not None, f"truncated {ex['comp']} stream not detected"
        if raised is not None:
            raise raised


@target("streams", "sources/clonezilla/streams.py: iter_decompressed (in-process codecs)",
        lambda: compressed_streams(tuple(_COMPRESS) + ("uncomp",)), (P2VError,), weight=1.5)
def run_streams(ex: dict) -> None:
    if ex["comp"] == "uncomp":  # no end marker: only the bytes can be checked
        ex = {**ex, "data": ex["payload"], "damage": "none"}
    _run_stream(ex)


@target("streams-tools", "sources/clonezilla/streams.py: iter_decompressed (lzop, lzip pipes)",
        lambda: compressed_streams(("lzo", "lzip")), (P2VError,), weight=0.4)
def run_stream_tools(ex: dict) -> None:
    _run_stream(ex)


# --- metadata: sfdisk dumps, parted output, chunk names, whole directories ----------------------

_SAMPLES = REALDATA / "clonezilla" / "rescuezilla-test-samples"


def _as_sda(text: str) -> str:
    return re.sub(r"/dev/sd[a-z]", "/dev/sda", text)


def _sfdisk_seeds() -> list[str]:
    return [_as_sda(p.read_text()) for p in sorted(_SAMPLES.glob("*.sfdisk-dump.txt"))]


def _parted_seeds() -> list[str]:
    return [_as_sda(p.read_text()) for p in sorted(_SAMPLES.glob("*.parted-unit-B.txt"))]


@target("sfdisk-dump", "sources/clonezilla/metadata.py: parse_sfdisk, sfdisk_label",
        lambda: mutated_text(_sfdisk_seeds()), (P2VError,))
def run_sfdisk(text: str) -> None:
    label, size = metadata.sfdisk_label(text)
    assert isinstance(label, str) and isinstance(size, int)
    _label_id, parts = metadata.parse_sfdisk(text, "sda")
    assert parts and all(p.name.startswith("sda") for p in parts)


_NAME_PARTS = st.sampled_from(("sda1", "sda2", "sda5", "sda", "sdb1", "sda1x", ".", ""))
_NAME_TAILS = st.sampled_from((
    ".ntfs-ptcl-img.gz", ".ntfs-ptcl-img.gz.aa", ".ntfs-ptcl-img.gz.ab", ".ntfs-ptcl-img.gz.ac",
    ".ntfs-ptcl-img.zst.aaa", ".vfat-ptcl-img.lz4", ".dd-ptcl-img.uncomp", ".ntfs-img",
    ".ntfs-img.aa", ".ntfs-img.gz.ab", ".dd-img", ".ntfs-img.lrz", ".ntfs-ptcl-img.rar",
    ".ext4-img.aa", "-ebr", "-img", ".ntfs-ptcl-img.gz.zz", ".ntfs-ptcl-img.gz.a",
))


@st.composite
def clonezilla_dirs(draw: st.DrawFn) -> dict[str, bytes]:
    """The files of a Clonezilla image directory: real metadata samples, damaged, with
    image-file names from Clonezilla's patterns (chunks missing, doubled, mixed)."""
    files: dict[str, bytes] = {}
    files["disk"] = draw(st.sampled_from(("sda", "sda sdb", "", "/dev/sda", "sda\0"))).encode()
    if draw(st.booleans()):
        files["parts"] = draw(st.sampled_from(("sda1 sda2", "sda1", "", "sda9"))).encode()
    files["sda-pt.sf"] = draw(mutated_text(_sfdisk_seeds(), 3)).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        files["sda-pt.parted"] = draw(mutated_text(_parted_seeds(), 3)).encode(
            "utf-8", "surrogatepass")
    if draw(st.booleans()):
        files["sda-mbr"] = draw(mutate(bytes(446) + bytes(64) + b"\x55\xaa", 3))
    if draw(st.booleans()):
        files["sda-chs.sf"] = draw(st.sampled_from((b"cylinders=1\nheads=255\nsectors=63\n",
                                                    b"heads=0\nsectors=99\n", b"")))
    if draw(st.booleans()):
        files["sda-hidden-data-after-mbr"] = bytes(draw(st.integers(0, 4096)))
    if draw(st.booleans()):
        files["sda-gpt-1st"] = draw(mutate(bytes(512) + b"EFI PART" + bytes(16 * 1024), 3))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(_NAME_PARTS) + draw(_NAME_TAILS)
        if name and "/" not in name:
            files[name] = draw(st.binary(max_size=64))
    if draw(st.integers(0, 4)) == 0:
        files["lvm_vg_dev.list"] = b"vg0 /dev/sda2"
    return files


@target("clonezilla-dir",
        "sources/clonezilla/metadata.py load + table.py + restore.py on a directory (restore.py)",
        clonezilla_dirs, (P2VError,), weight=0.6)
def run_clonezilla_dir(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="p2v-fuzz-") as tmp:
        d = Path(tmp) / "img"
        d.mkdir()
        for name, content in files.items():
            (d / name).write_bytes(content)
        before = {p.name: p.read_bytes() for p in d.iterdir()}
        out = Path(tmp) / "out.raw"
        try:
            restore_clonezilla(d, out)
        finally:
            # the image directory is a source: never written, whatever happened
            assert {p.name: p.read_bytes() for p in d.iterdir()} == before
            leftovers = sorted(p.name for p in Path(tmp).iterdir() if p.name not in
                               ("img", "out.raw", "out-2.raw"))
            assert not leftovers, leftovers
        shutil.rmtree(d)
