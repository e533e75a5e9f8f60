"""A partition's image files as one decompressed byte stream, in bounded memory.

Clonezilla pipes ``partclone | compressor | split``, so chunk boundaries are
arbitrary offsets of the *compressed* stream: the chunks are concatenated
first (C-locale order, checked for gaps by the caller), then decompressed.

Decompression runs in-process (ISA-L's zlib-compatible inflate for gzip, twice
as fast as zlib's; the standard ``compression.zstd`` API for zstd —
``backports.zstd`` before Python 3.14 —; bz2, xz and lzma from the standard
library; lz4 frames from the maintained ``lz4`` binding), always
with ``max_length`` so a run of zeros that compresses 30 000:1 still yields
bounded pieces, and always checking that the last compressed member ended:
a missing last chunk is a *truncated* stream, not a short partition.

lzop and lzip have no maintained Python library: their standard tools run in
a pipe (``lzop -dc``, ``lzip -dc``), fed from a thread; they detect truncation
and trailing garbage themselves and a failure becomes the same one-line error.

Decompression happens in a background thread that hands pieces to the
parser through a small queue: zlib/zstd, zlib.crc32 and os.pwrite all release
the GIL, so decompressing and verifying/writing overlap on two cores.

Memory: pieces are small (PIECE) and the queue is bounded in *bytes*
(QUEUE_BYTES): enough for the decompressor to make the parser's next whole
partclone strip (10 MiB with Clonezilla's ``-z 10485760``) while the parser
writes the current one, so the parser does not wait for it.  Pieces of 8 MiB,
three queued, were ~60 MiB of a 100 MiB peak RSS (three queued, one waiting to
be queued, one being read, one being made -- in blocks, then copied into one
``bytes`` -- and the freed ones the allocator keeps); small pieces cost no time
(the per-piece overhead is a few microseconds, and they are copied while hot).
"""

from __future__ import annotations

import bz2
import lzma
import subprocess
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lz4.frame

from ... import deps
from ...errors import CorruptImageError, SourceUnreadableError, UnsupportedFormatError

try:  # ISA-L's inflate: twice zlib's speed, same API (python-isal); zlib if absent
    from isal import isal_zlib as gzip_lib
except ImportError:  # pragma: no cover - isal is a dependency; kept for other platforms
    gzip_lib = zlib  # type: ignore[assignment]

try:  # Python 3.14+
    from compression.zstd import ZstdDecompressor, ZstdError  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the Python version
    from backports.zstd import ZstdDecompressor, ZstdError

IN_SIZE = 2 << 20  # compressed bytes read at a time
PIECE = 256 << 10  # decompressed bytes produced at a time (at most)
# zlib's API hands back the input a call left (``unconsumed_tail``) as a new copy: at most
# this much is handed to inflate at once, so a PIECE-bounded call copies little.
GZ_FEED = 64 << 10
QUEUE_BYTES = 12 << 20  # decompressed bytes the producer thread may be ahead of the parser
# liblzma allocates the dictionary a stream's header asks for (an .lzma header may ask for
# 4 GiB); xz -9 needs 65 MiB to decompress, so anything past this is a damaged header.
LZMA_MEMLIMIT = 256 << 20

# suffix -> (human name, magic of a member, new decompressor, its error types)
CODECS: dict[str, tuple[str, bytes, Callable[[], Any], tuple[type[BaseException], ...]]] = {
    "gz": ("gzip", b"\x1f\x8b", lambda: gzip_lib.decompressobj(wbits=31),
           (gzip_lib.error, zlib.error)),
    "zst": ("zstd", b"\x28\xb5\x2f\xfd", ZstdDecompressor, (ZstdError,)),
    "bz2": ("bzip2", b"BZh", bz2.BZ2Decompressor, (OSError, ValueError)),
    "xz": ("xz", b"\xfd7zXZ\x00",
           lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT),
           (lzma.LZMAError,)),
    "lzma": ("lzma", b"\x5d\x00\x00",
             lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT),
             (lzma.LZMAError,)),
    "lz4": ("lz4", b"\x04\x22\x4d\x18", lz4.frame.LZ4FrameDecompressor, (RuntimeError,)),
}
# suffix -> (human name, decompress-to-stdout command, harmless warnings); no maintained
# Python library.  lzop exits 2 with a warning on concatenated members (a stream that
# was compressed in pieces is still whole) -- but also on trailing garbage, which is not.
TOOLS: dict[str, tuple[str, list[str], tuple[str, ...]]] = {
    "lzo": ("lzop", ["lzop", "-dc"], ("this is a multipart archive",)),
    "lzip": ("lzip", ["lzip", "-dc", "--trailing-error"], ()),
}
SUPPORTED = ("uncomp", *CODECS, *TOOLS)


_MAGICS = (
    (b"\x1f\x8b", "gz"), (b"BZh", "bz2"), (b"\x28\xb5\x2f\xfd", "zst"), (b"\xfd7zXZ\x00", "xz"),
    (b"\x04\x22\x4d\x18", "lz4"), (b"\x89LZO\x00\r\n\x1a\n", "lzo"), (b"LZIP", "lzip"),
    (b"LRZI", "lrz"), (b"\x5d\x00\x00", "lzma"),
)


def sniff_compression(path: Path) -> str:
    """The compression of an image whose name does not say it (old ``*.ntfs-img.aa``,
    ``*.dd-img``), from the first bytes as Clonezilla does with ``file -Ls``."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise SourceUnreadableError(f"{path.name}: cannot read: {exc.strerror}") from None
    for magic, comp in _MAGICS:
        if head.startswith(magic):
            return comp
    return "uncomp"


def _iter_tool(src: ChunkReader, comp: str) -> Iterator[bytes]:
    """Pieces from ``<tool> -dc`` fed with the joined chunks by a thread."""
    name, cmd, harmless = TOOLS[comp]
    exe = deps.require_program(cmd[0])
    proc = subprocess.Popen([exe, *cmd[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin and proc.stdout and proc.stderr
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            while data := src.read(IN_SIZE):
                proc.stdin.write(data)  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # the tool stopped early: its exit status tells why
        except BaseException as exc:  # a chunk that cannot be read
            failure.append(exc)
        finally:
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except BrokenPipeError:
                pass

    feeder = threading.Thread(target=feed, name=f"{name}-feed", daemon=True)
    feeder.start()
    try:
        while piece := proc.stdout.read(PIECE):
            yield piece
        rc = proc.wait()
        feeder.join()
        if failure:
            raise failure[0]
        err = proc.stderr.read().decode(errors="replace").strip().splitlines()
        if rc == 2 and err and all(any(h in line for h in harmless) for line in err):
            rc = 0
        if rc != 0:
            detail = err[-1] if err else f"exit status {rc}"
            raise CorruptImageError(
                f"{src.current}: corrupt or truncated {name} data: {detail}"
            )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


class ChunkReader:
    """The concatenation of chunk files, read sequentially; knows where it is."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.index = 0
        self.offset = 0  # compressed bytes read so far, all chunks together
        self._f: Any = None

    @property
    def current(self) -> str:
        return self.paths[min(self.index, len(self.paths) - 1)].name

    def read(self, n: int) -> bytes:
        while self.index < len(self.paths):
            if self._f is None:
                try:
                    self._f = open(self.paths[self.index], "rb", buffering=0)  # noqa: SIM115
                except OSError as exc:
                    raise SourceUnreadableError(
                        f"{self.paths[self.index].name}: cannot read: {exc.strerror}"
                    ) from None
            try:
                data = self._f.read(n)
            except OSError as exc:
                raise SourceUnreadableError(f"{self.current}: cannot read: {exc.strerror}") \
                    from None
            if data:
                self.offset += len(data)
                return data
            self._f.close()
            self._f = None
            self.index += 1
        return b""

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def iter_decompressed(src: ChunkReader, comp: str) -> Iterator[bytes]:
    """Decompressed pieces of at most PIECE bytes; raises CorruptImageError on bad data."""
    if comp == "uncomp":
        while data := src.read(PIECE):
            yield data
        return
    if comp in TOOLS:
        yield from _iter_tool(src, comp)
        return
    if comp not in CODECS:
        raise UnsupportedFormatError(
            f"compression '{comp}' is not supported (supported: {', '.join(SUPPORTED)})"
        )
    name, magic, new, errors = CODECS[comp]
    d = new()
    ended = False  # the current member ended and no next one has started

    def corrupt(detail: str) -> CorruptImageError:
        return CorruptImageError(
            f"{src.current}: {detail} (compressed byte {src.offset} of the joined chunks)"
        )

    while True:
        data = src.read(IN_SIZE)
        if not data:
            break
        while data:
            if ended:
                if data[: len(magic)] != magic[: len(data)]:
                    raise corrupt(f"data after the end of the {name} stream (an extra chunk?)")
                d, ended = new(), False
            try:
                if comp == "gz":
                    mv = memoryview(data)
                    part, data = mv[:GZ_FEED], mv[GZ_FEED:]
                    while True:
                        out = d.decompress(part, PIECE)
                        part = d.unconsumed_tail
                        if out:
                            yield out
                        if not part or d.eof:
                            break
                else:
                    out = d.decompress(data, PIECE)
                    data = b""
                    if out:
                        yield out
                    while not d.eof and not d.needs_input:
                        out = d.decompress(b"", PIECE)
                        if out:
                            yield out
            except errors as exc:
                raise corrupt(f"corrupt {name} data: {exc}") from None
            if d.eof:
                data = (d.unused_data or b"") + data  # lz4: None when nothing is left
                ended = True
    if not ended:
        raise corrupt(f"the {name} stream is truncated (a missing or short last chunk?)")


class PieceReader:
    """A file-like ``read``/``readinto`` over decompressed pieces made by a producer thread.

    The pieces wait in a queue of at most QUEUE_BYTES bytes (whatever their sizes: a
    gzip member of incompressible data comes in pieces of about GZ_FEED bytes).
    """

    _END = object()

    def __init__(self, pieces: Iterator[bytes], *, threaded: bool = True) -> None:
        self._cur = memoryview(b"")
        self._pos = 0
        self._iter = pieces
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        if threaded:
            self._q: deque[Any] = deque()
            self._queued = 0  # bytes of the pieces in _q
            self._cond = threading.Condition()
            self._thread = threading.Thread(target=self._produce, name="decompress",
                                            daemon=True)
            self._thread.start()

    def _produce(self) -> None:
        try:
            for piece in self._iter:
                if not self._put(piece):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)
        finally:  # a stopped consumer: end the generator now (it may own an lzop/lzip child)
            close = getattr(self._iter, "close", None)
            if close is not None:
                close()

    def _put(self, item: Any) -> bool:
        size = 0 if item is self._END or isinstance(item, BaseException) else len(item)
        with self._cond:
            # (an empty queue takes any piece: one larger than the bound must pass too)
            while self._queued and self._queued + size > QUEUE_BYTES:
                if self._stop.is_set():
                    return False
                self._cond.wait(0.2)
            if self._stop.is_set():
                return False
            self._q.append(item)
            self._queued += size
            self._cond.notify()
        return True

    def _next(self) -> bool:
        if self._thread is None:
            piece = next(self._iter, None)
            if piece is None:
                return False
        else:
            with self._cond:
                while not self._q:
                    self._cond.wait()
                piece = self._q[0]
                if piece is self._END:
                    return False  # left in the queue: stay at EOF for later reads
                self._q.popleft()
                if not isinstance(piece, BaseException):
                    self._queued -= len(piece)
                    self._cond.notify()
            if isinstance(piece, BaseException):
                raise piece
        self._cur = memoryview(piece)
        self._pos = 0
        return True

    def peek(self, n: int) -> bytes:
        """Up to ``n`` next bytes, without consuming them (to tell image formats apart)."""
        while len(self._cur) - self._pos < n:
            rest = bytes(self._cur[self._pos :])
            if not self._next():
                self._cur, self._pos = memoryview(rest), 0
                break
            self._cur, self._pos = memoryview(rest + bytes(self._cur)), 0
        return bytes(self._cur[self._pos : self._pos + n])

    def readinto(self, buf: memoryview | bytearray) -> int:
        mv = memoryview(buf).cast("B")
        n = len(mv)
        got = 0
        while got < n:
            if self._pos >= len(self._cur) and not self._next():
                break
            k = min(n - got, len(self._cur) - self._pos)
            mv[got : got + k] = self._cur[self._pos : self._pos + k]
            self._pos += k
            got += k
        return got

    def read(self, n: int) -> bytes:
        if 0 <= n <= len(self._cur) - self._pos:  # within the current piece: one copy
            self._pos += n
            return bytes(self._cur[self._pos - n : self._pos])
        buf = bytearray(n)
        got = self.readinto(buf)
        return bytes(memoryview(buf)[:got])

    def close(self) -> None:
        """Stop the producer.  It is a daemon thread and may be stuck in a read that never
        returns (a stalled network share, a FIFO): we wait a little, never forever."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


def open_stream(paths: list[Path], comp: str, *, threaded: bool = True) -> tuple[PieceReader,
                                                                                  ChunkReader]:
    """The decompressed stream of ``paths`` joined, and the raw reader (for positions)."""
    raw = ChunkReader(paths)
    return PieceReader(iter_decompressed(raw, comp), threaded=threaded), raw
