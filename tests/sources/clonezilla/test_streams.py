"""sources/clonezilla/streams.py: the decompression streams of partition images, on data
compressed by the real tools.  Nothing is mocked."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from p2vimage.errors import CorruptImageError, UnsupportedFormatError
from p2vimage.sources.clonezilla import streams


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def _decompress(files: list[Path], comp: str, threaded: bool = True) -> bytes:
    reader, raw = streams.open_stream(files, comp, threaded=threaded)
    try:
        out = bytearray()
        while piece := reader.read(1 << 20):
            out += piece
        return bytes(out)
    finally:
        reader.close()
        raw.close()


PAYLOAD = random.Random(3).randbytes(300_000) + bytes(3 << 20) + b"abc" * 100_000


@pytest.mark.parametrize("comp, compress", [
    ("gz", lambda b: gzip.compress(b, 1)),
    ("zst", lambda b: _run("zstd", "-q", "-c", input=b).stdout),
    ("bz2", bz2.compress),
    ("xz", lzma.compress),
    # what Clonezilla runs: -z4 lzma -3, -z3 lzop -3, -z6 lzip -3, -z8 lz4 -T1 -1
    ("lzma", lambda b: _run("lzma", "-3", "-c", input=b).stdout),
    ("lzo", lambda b: _run("lzop", "-3", "-c", input=b).stdout),
    ("lzip", lambda b: _run("lzip", "-3", "-c", input=b).stdout),
    ("lz4", lambda b: _run("lz4", "-1", "-c", input=b).stdout),
])
def test_streams_roundtrip_members_truncation_and_trailing_garbage(tmp_path: Path, comp,
                                                                   compress) -> None:
    blob = compress(PAYLOAD)
    f = tmp_path / "a"
    f.write_bytes(blob)
    for threaded in (True, False):
        assert _decompress([f], comp, threaded) == PAYLOAD
    # several members (pigz -i, zstd frames) are one stream, as for the command-line tools
    f.write_bytes(compress(PAYLOAD[:1000]) + compress(PAYLOAD[1000:]))
    assert _decompress([f], comp) == PAYLOAD
    f.write_bytes(blob[: len(blob) - 10])
    with pytest.raises(CorruptImageError, match="truncated"):
        _decompress([f], comp)
    f.write_bytes(blob + b"not a member")
    # (lzop/lzip in a pipe say it their way: "trailing garbage", "Trailing data")
    with pytest.raises(CorruptImageError, match="(?i)data after the end|trailing"):
        _decompress([f], comp)


def test_a_pathological_ratio_stays_in_bounded_pieces(tmp_path: Path) -> None:
    """1 GiB of zeros (a used but empty file) compresses to ~1 MB; pieces stay small."""
    f = tmp_path / "zeros.zst"
    _run("sh", "-c", f"head -c {1 << 30} /dev/zero | zstd -q -c > {f}")
    assert f.stat().st_size < 2 << 20
    pieces = streams.iter_decompressed(streams.ChunkReader([f]), "zst")
    total = 0
    for p in pieces:
        assert len(p) <= streams.PIECE
        total += len(p)
    assert total == 1 << 30


def test_the_decompressing_thread_runs_at_most_queue_bytes_ahead() -> None:
    """Memory: the producer stops once QUEUE_BYTES of pieces wait, whatever their sizes (a
    piece larger than the bound passes alone); the stream comes out whole, then EOF."""
    sizes = [streams.PIECE] * 80 + [1000] * 300 + [streams.QUEUE_BYTES + 5, 7]
    made: list[int] = []

    def pieces():
        for i, n in enumerate(sizes):
            made.append(n)  # (the piece the producer holds, not yet queued, counts too)
            yield bytes((i % 251,)) * n

    want = hashlib.sha256()
    for i, n in enumerate(sizes):
        want.update(bytes((i % 251,)) * n)
    reader = streams.PieceReader(pieces())
    try:
        deadline, seen = time.monotonic() + 10, -1
        while len(made) != seen and time.monotonic() < deadline:  # until the producer waits
            seen = len(made)
            time.sleep(0.3)
        assert sum(made) <= streams.QUEUE_BYTES + streams.PIECE
        got = hashlib.sha256()
        while piece := reader.read(3 << 20):
            got.update(piece)
        assert got.digest() == want.digest()
        assert reader.read(1) == b"" and reader.read(1) == b""
    finally:
        reader.close()


def test_unknown_compression_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"x")
    with pytest.raises(UnsupportedFormatError, match="compression 'lrz'"):
        list(streams.iter_decompressed(streams.ChunkReader([f]), "lrz"))
    assert os.path.exists(f)
