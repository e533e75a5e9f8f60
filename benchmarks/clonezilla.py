"""Benchmark ``restore-clonezilla`` against partclone pipes and decompression alone.

    .venv/bin/python benchmarks/clonezilla.py [--data-mib 1536] [--work DIR] [--runs 3]

Builds (once, cached in ``--work``) a 3.25 GiB MBR disk: a 3 GiB NTFS with
``--data-mib`` of files, half random (incompressible) and half pseudo-text, and
a small second NTFS; saves it as Clonezilla does (``partclone.ntfs -z 10485760
-c`` → ``pigz --fast -b 1024`` / ``zstd -3 -T0`` → ``split -b 500MB``), then
times, with the output on tmpfs (``/dev/shm``) so the disk is not the
bottleneck and the inputs warm in the page cache:

* ours: ``p2vimage restore-clonezilla DIR -o /dev/shm/… --format raw`` (a new
  process: wall time incl. start-up, peak RSS from wait4), checksums verified;
* ``cat chunks | pigz -dc | partclone.restore`` and ``… | zstd -dc | partclone.restore``
  per partition into the same kind of output, as Clonezilla runs it (``-z
  10485760``, default progress interval: partclone joins its progress thread at
  exit, which costs up to 2 s per partition);
* decompression alone: ``pigz -dc`` / ``zstd -dc`` to /dev/null, and Python's
  in-process zlib / zstd doing nothing else.

Throughput is used data (the blocks partclone stored) per wall second. Our
output is compared with partclone's (equal except the NTFS backup boot sector
we add).

XXH128 images (what Clonezilla saves since 2026-04: ``partclone -a3 -z 10485760``
| ``zstd -3 -T0``) are also timed: Debian's partclone 0.3.23 can neither write
nor restore them, so the same partitions are written by the test-side writer
(``tests/partclone_writer.py``, proved against partclone in the unit tests)
with the zstd directory's bitmaps, and compared with decompression alone and
with our own output of the CRC32 directory.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures import clonezilla as cz  # noqa: E402
from p2vimage.sources.clonezilla import metadata, streams  # noqa: E402

MiB = 1 << 20
SECTOR = 512
P2VIMAGE = Path(sys.executable).with_name("p2vimage")
SHM = Path("/dev/shm")
CODECS = {
    "gz": (["pigz", "-c", "--fast", "-b", "1024"], "pigz -dc"),
    "zst": (["zstd", "-q", "-c", "-3", "-T0"], "zstd -dc"),
}


def _words_block(seed: int, size: int) -> bytes:
    rnd = random.Random(seed)
    vocab = ["".join(rnd.choice("etaoinshrdlucmfwypvbgkjqxz") for _ in range(rnd.randint(2, 10)))
             for _ in range(5000)]
    out, n = [], 0
    while n < size:
        line = " ".join(rnd.choices(vocab, k=12)) + "\r\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def build_disk(work: Path, data_mib: int) -> Path:
    disk = work / f"bench-{data_mib}.raw"
    if disk.exists():
        return disk
    tmp = work / "build"
    tmp.mkdir(exist_ok=True)
    part1 = cz.Part(1, 2048, 3 << 21, 0x07)  # 3 GiB
    part2 = cz.Part(2, part1.start + part1.size, 200 << 11, 0x07)
    size = (part2.start + part2.size + 2048) * SECTOR
    partial = work / (disk.name + ".partial")
    with open(partial, "wb") as f:
        f.truncate(size)
    script = "".join(f"start={p.start}, size={p.size}, type=7\n" for p in (part1, part2))
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(partial)],
                   input=script.encode(), check=True, capture_output=True)
    text = _words_block(1, 16 * MiB)
    for part, mib, label in ((part1, data_mib, "BIG"), (part2, 32, "SMALL")):
        vol = tmp / f"{label}.ntfs"
        with open(vol, "wb") as f:
            f.truncate(part.size * SECTOR)
        subprocess.run(["mkntfs", "-q", "-F", "-f", "-L", label, "-p", str(part.start), "-H",
                        "255", "-S", "63", str(vol)], check=True, capture_output=True)
        per_file = min(mib, 128)
        for i in range(0, mib, per_file):
            src = tmp / "file.bin"
            with open(src, "wb") as f:
                for j in range(per_file):
                    if (i + j) % 2:
                        f.write(os.urandom(MiB))
                    else:
                        off = ((i + j) * 7919 % 15) * MiB
                        f.write(text[off : off + MiB])
            subprocess.run(["ntfscp", "-f", str(vol), str(src), f"/file{i:05d}.bin"],
                           check=True, capture_output=True)
            src.unlink()
        subprocess.run(["dd", f"if={vol}", f"of={partial}", "bs=4M", "oflag=seek_bytes",
                        f"seek={part.start * SECTOR}", "conv=notrunc,sparse", "status=none"],
                       check=True)
        vol.unlink()
    os.replace(partial, disk)
    return disk


def save_dir(disk: Path, work: Path, comp: str) -> Path:
    key = hashlib.sha256(f"{disk.name}{CODECS[comp]}".encode()).hexdigest()[:8]
    out = work / f"img-{comp}-{key}"
    if out.is_dir():
        return out
    part = work / (out.name + ".partial")
    subprocess.run(["rm", "-rf", str(part)], check=True)
    cz.save(disk, part, comp, "500MB", compressor=CODECS[comp][0])
    os.replace(part, out)
    return out


def save_xxh128_dir(disk: Path, work: Path, zst_dir: Path) -> Path:
    """The zstd directory again, its partition images rewritten as XXH128 (bpc 2560)."""
    from p2vimage.sources.clonezilla import partclone
    from tests import partclone_writer as w

    key = hashlib.sha256(f"{disk.name}xxh128".encode()).hexdigest()[:8]
    out = work / f"img-xxh128-{key}"
    if out.is_dir():
        return out
    part = work / (out.name + ".partial")
    subprocess.run(["rm", "-rf", str(part)], check=True)
    part.mkdir()
    img = metadata.load(zst_dir)
    for f in zst_dir.iterdir():
        if "-ptcl-img." not in f.name:
            (part / f.name).write_bytes(f.read_bytes())
    for p in img.partitions:
        image = img.images.get(p.name)
        if image is None:
            continue
        reader, raw = streams.open_stream(list(image.files), image.compression, threaded=False)
        try:
            hdr = partclone.read_header(reader)
            bm = partclone.read_bitmap(reader, hdr)
        finally:
            reader.close()
            raw.close()
        used = [False] * hdr.total_blocks
        for start, n in partclone.iter_runs(bm, hdr.total_blocks):
            used[start : start + n] = [True] * n
        plain = work / "xxh128.img"
        w.write_v2((disk, p.offset, hdr.device_size), used, hdr.block_size, plain,
                   mode=w.XXH128, bpc=2560, version="0.3.47", device_size=hdr.device_size)
        stem = part / f"{p.name}.ntfs-ptcl-img.zst"
        subprocess.run(f"zstd -q -c -3 -T0 {plain} | split -a 2 -b 500MB - {stem}.",
                       shell=True, check=True)
        plain.unlink()
    os.replace(part, out)
    return out


def run_timed(cmd: list[str] | str, *, shell: bool = False) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of a command (the largest process of a pipeline).

    GNU time reports the RSS: a child forked from this (larger) Python process
    would report at least our own RSS, whatever it execs.
    """
    argv = ["sh", "-c", cmd] if shell else list(cmd)
    with tempfile.NamedTemporaryFile() as rss_file, tempfile.TemporaryFile() as err_file:
        t0 = time.monotonic()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *argv],
                                stdout=subprocess.DEVNULL, stderr=err_file,
                                start_new_session=True)
        try:
            proc.wait(timeout=900)  # never block the benchmark forever
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            raise RuntimeError(f"{cmd}: no result after 900 s") from None
        wall = time.monotonic() - t0
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")  # a file: a full pipe stalls partclone
        rss = int(Path(rss_file.name).read_text().split()[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {err[-500:]}")
    return wall, rss


def best(fn, runs: int) -> tuple[float, int]:
    results = [fn() for _ in range(runs)]
    return min(r[0] for r in results), max(r[1] for r in results)


def used_bytes(d: Path) -> int:
    from p2vimage.sources.clonezilla import partclone

    total = 0
    img = metadata.load(d)
    for image in img.images.values():
        reader, raw = streams.open_stream(list(image.files), image.compression,
                                          threaded=False)
        try:
            total += partclone.read_header(reader).used_bytes
        finally:
            reader.close()
            raw.close()
    return total


def partclone_pipe(d: Path, comp: str, out: Path, extra: str) -> tuple[float, int]:
    img = metadata.load(d)
    with open(out, "wb") as f:
        f.truncate(img.size)
    t_all, rss = 0.0, 0
    for p in img.partitions:
        image = img.images.get(p.name)
        if image is None:
            continue
        files = " ".join(str(f) for f in image.files)
        cmd = (f"cat {files} | {CODECS[comp][1]} | partclone.restore -z 10485760 {extra} -C "
               f"-O {out} -E {p.offset} -s - -L /dev/null")
        t, r = run_timed(cmd, shell=True)
        t_all += t
        rss = max(rss, r)
    return t_all, rss


def decompress_tool(d: Path, comp: str) -> tuple[float, int]:
    img = metadata.load(d)
    files = " ".join(str(f) for i in img.images.values() for f in i.files)
    return run_timed(f"cat {files} | {CODECS[comp][1]} > /dev/null", shell=True)


def decompress_python(d: Path) -> tuple[float, int]:
    """In-process decompression alone, in a child process (its own wall time and RSS)."""
    code = (
        "import sys; from p2vimage.sources.clonezilla import metadata, streams\n"
        "img = metadata.load(sys.argv[1])\n"
        "for i in img.images.values():\n"
        "    for _ in streams.iter_decompressed(streams.ChunkReader(list(i.files)),"
        " i.compression):\n"
        "        pass\n"
    )
    return run_timed([sys.executable, "-c", code, str(d)])


def same_partitions(a: Path, b: Path, d: Path) -> bool:
    img = metadata.load(d)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for p in img.partitions:
            if p.name not in img.images:
                continue
            pos, end = p.offset, p.offset + p.length - SECTOR  # not the backup boot sector
            while pos < end:
                n = min(8 * MiB, end - pos)
                if os.pread(fa.fileno(), n, pos) != os.pread(fb.fileno(), n, pos):
                    return False
                pos += n
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-mib", type=int, default=1536)
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/p2vimage-bench-clonezilla"))
    ap.add_argument("--runs", type=int, default=5,
                    help="runs of each fast path, best kept (partclone pipes: 3)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    disk = build_disk(args.work, args.data_mib)
    print(f"disk: {disk} ({disk.stat().st_size / (1 << 30):.2f} GiB, "
          f"{os.cpu_count()} CPUs)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="czbench-", dir=SHM) as tmpd:
        tmp = Path(tmpd)
        for comp in CODECS:
            d = save_dir(disk, args.work, comp)
            size = sum(f.stat().st_size for f in d.iterdir())
            ours_out, pc_out = tmp / "ours.raw", tmp / "pc.raw"
            subprocess.run(f"cat {d}/* > /dev/null", shell=True, check=True)  # warm cache
            ours = best(lambda d=d, o=ours_out: run_timed(
                [str(P2VIMAGE), "restore-clonezilla", str(d), "-o", str(o), "--overwrite"]),
                args.runs)
            pc = best(lambda d=d, c=comp, o=pc_out: partclone_pipe(d, c, o, ""), 3)
            identical = same_partitions(ours_out, pc_out, d)
            used = used_bytes(d)
            pc_out.unlink()
            ours_out.unlink()
            dec = best(lambda d=d, c=comp: decompress_tool(d, c), args.runs)
            dpy = best(lambda d=d: decompress_python(d), args.runs)
            rows.append((comp, used, size, ours, pc, dec, dpy, identical))
            if comp == "zst":  # the same partitions as Clonezilla >= 2026-04 saves them
                dx = save_xxh128_dir(disk, args.work, d)
                xsize = sum(f.stat().st_size for f in dx.iterdir())
                subprocess.run(f"cat {dx}/* > /dev/null", shell=True, check=True)
                x_out = tmp / "xxh.raw"
                xours = best(lambda d=dx, o=x_out: run_timed(
                    [str(P2VIMAGE), "restore-clonezilla", str(d), "-o", str(o),
                     "--overwrite"]), args.runs)
                subprocess.run([str(P2VIMAGE), "restore-clonezilla", str(d), "-o",
                                str(ours_out)], check=True, capture_output=True)
                same_x = subprocess.run(["cmp", "-s", str(x_out), str(ours_out)]).returncode == 0
                ours_out.unlink()
                x_out.unlink()
                xdec = best(lambda d=dx: decompress_tool(d, "zst"), args.runs)
                xdpy = best(lambda d=dx: decompress_python(d), args.runs)
                rows.append(("zst+XXH128", used, xsize, xours, None, xdec, xdpy, same_x))
    print()
    print("| codec | used MB | image MB | path | wall s | MB/s | peak RSS MiB | ours × path |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for comp, used, size, ours, pc, dec, dpy, _same in rows:
        tool = CODECS[comp.split("+")[0]][1].split()[0]
        paths = [
            ("p2vimage restore-clonezilla", ours),
            *([(f"{tool} -dc | partclone.restore", pc)] if pc else []),
            (f"{tool} -dc > /dev/null (decompression alone)", dec),
            ("Python in-process decompression alone", dpy),
        ]
        for name, (wall, rss) in paths:
            print(f"| {comp} | {used / 1e6:,.0f} | {size / 1e6:,.0f} | {name} | {wall:.2f} | "
                  f"{used / 1e6 / wall:,.0f} | {rss / 1024:,.0f} | {wall / ours[0]:.2f} |")
    print()
    for comp, _used, _size, ours, pc, dec, _dpy, same in rows:
        if pc is None:
            print(f"{comp}: partclone 0.3.23 cannot restore XXH128; vs decompression alone "
                  f"{dec[0] / ours[0]:.2f}×, output identical to ours of the CRC32 "
                  f"images: {same}")
            continue
        print(f"{comp}: ours vs partclone pipe {pc[0] / ours[0]:.2f}× (target ≥ 4), "
              f"vs decompression alone {dec[0] / ours[0]:.2f}× "
              f"(target ≥ 0.8 for gzip), output identical to partclone's: {same}")


if __name__ == "__main__":
    main()
