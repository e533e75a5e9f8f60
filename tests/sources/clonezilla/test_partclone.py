"""partclone v0002 reader, on images made by the real partclone (the decompression streams:
test_streams.py).

Volumes are small NTFS made by mkntfs on the host, with files put in by ntfscp;
images come from Debian's partclone.ntfs; the reference output is
partclone.restore's.  Nothing is mocked.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest

from p2vimage.errors import CorruptImageError
from p2vimage.sources.clonezilla import partclone, streams

VOL_SIZE = 24 << 20


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ntfs")
    vol = d / "vol.ntfs"
    with open(vol, "wb") as f:
        f.truncate(VOL_SIZE)
    _run("mkntfs", "-q", "-F", "-f", "-p", "2048", "-H", "255", "-S", "63", str(vol))
    rnd = random.Random(8)
    for i in range(6):
        src = d / f"f{i}.bin"
        size = rnd.randrange(100_000, 900_000)
        data = rnd.randbytes(size // 2) + b"text line\r\n" * (size // 22)
        src.write_bytes(data)
        _run("ntfscp", "-f", str(vol), str(src), f"/f{i}.bin")
    return vol


def _image(volume: Path, dest: Path, *opts: str) -> Path:
    _run("partclone.ntfs", "-f", "1", "-c", *opts, "-s", str(volume), "-o", str(dest),
         "-L", "/dev/null")
    return dest


def _reference(image: Path, dest: Path) -> bytes:
    """partclone.restore's output: the volume with free blocks as zeros."""
    with open(dest, "wb") as f:
        f.truncate(VOL_SIZE)
    _run("partclone.restore", "-f", "1", "-s", str(image), "-O", str(dest), "-C", "-L", "/dev/null")
    return dest.read_bytes()


def _ours(image: Path, comp: str = "uncomp", files: list[Path] | None = None) -> tuple[
        partclone.Header, bytes]:
    out = bytearray(VOL_SIZE)

    def write_at(off: int, data: memoryview) -> None:
        out[off : off + len(data)] = data

    reader, raw = streams.open_stream(files or [image], comp)
    try:
        hdr = partclone.restore(reader, write_at)
    finally:
        reader.close()
        raw.close()
    return hdr, bytes(out)


@pytest.mark.parametrize(
    "opts, mode, bpc, reseed",
    [
        ((), partclone.CSUM_CRC32, 256, True),  # Debian 0.3.23 defaults
        (("-z", "10485760"), partclone.CSUM_CRC32, 2560, True),  # what Clonezilla passes
        (("-a", "1", "-k", "7"), partclone.CSUM_CRC32, 7, True),  # odd strips, partial last
        (("-k", "5", "-K"), partclone.CSUM_CRC32, 5, False),  # checksum chained over strips
        (("-a", "0"), partclone.CSUM_NONE, 0, True),
    ],
)
def test_restore_equals_partclone_restore(volume: Path, tmp_path: Path, opts, mode, bpc,
                                          reseed) -> None:
    image = _image(volume, tmp_path / "img", *opts)
    hdr, ours = _ours(image)
    assert hdr.checksum_mode == mode
    assert hdr.blocks_per_checksum == bpc
    assert hdr.reseed is reseed or mode == partclone.CSUM_NONE
    assert ours == _reference(image, tmp_path / "ref.raw")
    # partclone.info, the tool's own view of the header
    info = subprocess.run(["partclone.info", "-s", str(image)], capture_output=True,
                          text=True).stderr + ""
    info += subprocess.run(["partclone.info", "-s", str(image)], capture_output=True,
                           text=True).stdout
    assert re.search(rf"Space in use:.*= {hdr.used_blocks} Blocks", info)
    assert re.search(rf"Block size:\s+{hdr.block_size} Byte", info)
    assert hdr.fs == "NTFS" and hdr.device_size == VOL_SIZE
    assert hdr.partclone_version == "0.3.23"


def test_split_chunks_of_gzip_and_zstd(volume: Path, tmp_path: Path) -> None:
    image = _image(volume, tmp_path / "img", "-z", "10485760")
    reference = _reference(image, tmp_path / "ref.raw")
    for comp, cmd in (("gz", ["gzip", "-c", "--fast"]), ("zst", ["zstd", "-q", "-c"])):
        blob = _run(*cmd, str(image)).stdout
        chunks = []
        for i, off in enumerate(range(0, len(blob), 100_000)):
            p = tmp_path / f"img.{comp}.a{chr(97 + i)}"
            p.write_bytes(blob[off : off + 100_000])
            chunks.append(p)
        assert len(chunks) > 2
        assert _ours(image, comp, chunks)[1] == reference


def test_iter_runs_matches_bit_by_bit() -> None:
    rnd = random.Random(1)
    for _ in range(200):
        n = rnd.randrange(1, 300)
        kind = rnd.random()
        bits = [rnd.random() < kind for _ in range(n)]
        # long all-ones/all-zeros stretches exercise the whole-byte fast path
        if rnd.random() < 0.5:
            a = rnd.randrange(n)
            bits[a : a + 64] = [rnd.random() < 0.5] * len(bits[a : a + 64])
        bm = bytearray((n + 7) // 8)
        for i, b in enumerate(bits):
            if b:
                bm[i // 8] |= 1 << (i % 8)
        if rnd.random() < 0.3 and n % 8:
            bm[-1] |= 0xFF << (n % 8) & 0xFF  # garbage past the last block is ignored
        want, start = [], None
        for i, b in enumerate([*bits, False]):
            if b and start is None:
                start = i
            elif not b and start is not None:
                want.append((start, i - start))
                start = None
        assert list(partclone.iter_runs(bytes(bm), n)) == want


def test_bitmap_bit_count_ignores_bits_past_the_last_block() -> None:
    rnd = random.Random(2)
    step = 1 << 20  # partclone._COUNT_STEP: totals around it and its multiples
    for total in [0, 1, 7, 8, 9, 63, 64, 65, 8 * step - 1, 8 * step, 8 * step + 5,
                  16 * step + 3, *(rnd.randrange(1, 2000) for _ in range(50))]:
        bm = rnd.randbytes((total + 7) // 8)
        want = (int.from_bytes(bm, "little") & ((1 << total) - 1)).bit_count()
        assert partclone._count_bits(bm, total) == want
        assert partclone._count_bits(bytearray(bm), total) == want


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes((data[at] ^ 0x40,)) + data[at + 1 :]


def test_corruption_is_found_and_located(volume: Path, tmp_path: Path) -> None:
    image = _image(volume, tmp_path / "img", "-k", "16")
    data = image.read_bytes()
    with open(image, "rb") as f:
        hdr = partclone.read_header(f)
    bitmap_end = hdr.header_size + (hdr.total_blocks + 7) // 8 + 4
    cases = {
        20: "header checksum mismatch",
        hdr.header_size + 3: "bitmap checksum mismatch",
    }
    strip = 16 * hdr.block_size + 4
    at = bitmap_end + 3 * strip + 1000  # inside the 4th strip
    cases[at] = f"checksum mismatch at image byte {bitmap_end + 3 * strip} "
    for offset, message in cases.items():
        bad = tmp_path / "bad.img"
        bad.write_bytes(_flip(data, offset))
        with pytest.raises(CorruptImageError, match=message):
            _ours(bad)
    # truncated inside the blocks, and an extra byte after the last strip
    for blob, message in ((data[:-5000], "truncated at byte"),
                          (data + b"\0", "data after its last block")):
        bad = tmp_path / "bad.img"
        bad.write_bytes(blob)
        with pytest.raises(CorruptImageError, match=message):
            _ours(bad)


def test_not_a_partclone_image() -> None:
    # format 0001 and XXH64/XXH128 are read since issue #9 (test_partclone_formats.py)
    with pytest.raises(CorruptImageError, match="not a partclone image"), \
            open(__file__, "rb") as f:
        partclone.read_header(f)


