"""Peak memory of our own process for ``convert`` and ``restore-clonezilla``, 1 GiB vs 8 GiB.

    .venv/bin/python benchmarks/memory.py [--work DIR] [--data-mib 256,2048] [--keep]

The bound (issue 11): the peak resident set of the p2vimage process — not of
qemu, partclone or the compressors it starts — stays under 500 MB and grows by
less than 50 MB from a 1 GiB to an 8 GiB image of the same guest.

Images (built once on the host, no appliance, cached in ``--work``): the demo
fixture (Windows Server 2003, C: at sector 63) copied; for 8 GiB the disk is
grown, its partition extended with ``sfdisk`` and the NTFS with ``ntfsresize``;
then files are put into C: with ``ntfscp`` (half random, half text), 256 MiB
on the 1 GiB disk and 2 GiB on the 8 GiB one by default, so the copy has real
data to stream and is not all holes.  Each disk is also saved as a Clonezilla
directory (``partclone.ntfs | zstd``, 500 MB chunks, as ``ocs-sr``).

Every measured command runs in a fresh Python child that calls the CLI's
``main()`` and then reads its own ``VmHWM`` (``/proc/self/status``): the
high-water mark of the child's address space, which its threads share and
the processes it spawns (qemu, qemu-img, lzop, libguestfs' forked recovery
process) do not.  ``ru_maxrss`` of ``RUSAGE_SELF`` is *not* used: Linux
carries the pre-``exec`` high-water mark of the forking parent (this
benchmark, which holds test data in memory) into it, so it reported the
parent's 95 MB for every child in a first run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures import clonezilla as cz  # noqa: E402
from fixtures.images import DEMO, ensure  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
SECTOR = 512
BOUND_PEAK_MB = 500
BOUND_GROWTH_MB = 50

# Run in the child: the CLI exactly as a user runs it, then our own peak RSS.
_CHILD = r"""
import json, sys
from p2vimage.cli import main
code = main(sys.argv[1:])
hwm = 0
with open("/proc/self/status") as f:
    for line in f:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
print(json.dumps({"code": code, "vmhwm_kib": hwm}), file=sys.stderr)
sys.exit(code)
"""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def _text(seed: int, size: int) -> bytes:
    rnd = random.Random(seed)
    words = ["".join(rnd.choice("etaoinshrdlucmfwyp") for _ in range(rnd.randint(2, 9)))
             for _ in range(3000)]
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rnd.choices(words, k=12)) + "\r\n").encode()
    return bytes(out[:size])


def build_disk(work: Path, size: int, data_mib: int) -> Path:
    """The demo guest on a ``size``-byte disk whose C: fills it, with ``data_mib`` of files."""
    disk = work / f"demo-{size // GiB}g-{data_mib}m.raw"
    if disk.exists():
        return disk
    base = ensure([DEMO])[DEMO]
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=work))
    try:
        part = tmp / "disk.raw"
        _run(["cp", "--sparse=always", str(base), str(part)])
        with open(part, "r+b") as f:
            f.truncate(max(size, base.stat().st_size))
        (start, length), = ((p.start, p.size) for p in cz.read_table(part))
        if size > base.stat().st_size:  # C: to the end of the disk, then NTFS grown into it
            _run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", "-N", "1", str(part)],
                 input=b",+\n")
            (start, length), = ((p.start, p.size) for p in cz.read_table(part))
        vol = tmp / "c.ntfs"
        _run(["dd", f"if={part}", f"of={vol}", "bs=4M", "iflag=skip_bytes,count_bytes",
              f"skip={start * SECTOR}", f"count={length * SECTOR}", "conv=sparse",
              "status=none"])
        with open(vol, "r+b") as f:
            f.truncate(length * SECTOR)
        if size > base.stat().st_size:
            _run(["ntfsresize", "-f", "-f", "-P", "-s", str(length * SECTOR - SECTOR), str(vol)])
            # ntfsresize schedules a chkdsk (dirty flag), which partclone refuses: clear it
            # as Windows' chkdsk would have on the next boot.
            _run(["ntfsfix", "-d", str(vol)])
        text = _text(1, 16 * MiB)
        per_file = 64
        for i in range(0, data_mib, per_file):
            src = tmp / "file.bin"
            with open(src, "wb") as f:
                for j in range(min(per_file, data_mib - i)):
                    f.write(os.urandom(MiB) if (i + j) % 2 else
                            text[((i + j) % 15) * MiB:][:MiB])
            _run(["ntfscp", "-f", str(vol), str(src), f"/data{i:05d}.bin"])
            src.unlink()
        _run(["dd", f"if={vol}", f"of={part}", "bs=4M", "oflag=seek_bytes",
              f"seek={start * SECTOR}", "conv=notrunc,sparse", "status=none"])
        os.replace(part, disk)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return disk


def save_clonezilla(disk: Path, work: Path) -> Path:
    out = work / f"cz-{disk.stem}"
    if out.is_dir():
        return out
    partial = work / f"{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    cz.save(disk, partial, "zst", "500MB")
    os.replace(partial, out)
    return out


def measure(args: list[str]) -> dict:
    """Run the CLI in a fresh child; its own peak RSS (children excluded) and wall time."""
    env = {**os.environ}
    env.setdefault("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")  # KVM is often unusable here
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True,
                          text=True, env=env, check=False)
    wall = time.monotonic() - t0
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "{}"
    if proc.returncode != 0:
        raise RuntimeError(f"p2vimage {' '.join(args)} failed: {proc.stderr[-800:]}")
    doc = json.loads(last)
    return {"seconds": wall, "peak_mb": doc["vmhwm_kib"] / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/p2vimage-membench"))
    ap.add_argument("--data-mib", default="256,2048",
                    help="MiB of files on the 1 GiB and the 8 GiB disk")
    ap.add_argument("--keep", action="store_true", help="keep the outputs")
    args = ap.parse_args()
    small_mib, big_mib = (int(x) for x in args.data_mib.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for size, data in ((1 * GiB, small_mib), (8 * GiB, big_mib)):
        disk = build_disk(args.work, size, data)
        czdir = save_clonezilla(disk, args.work)
        out = Path(tempfile.mkdtemp(prefix="out-", dir=args.work))
        try:
            conv = measure(["convert", str(disk), "-o", str(out / "x.qcow2")])
            conv_out = (out / "x.qcow2").stat().st_blocks * 512
            rest = measure(["restore-clonezilla", str(czdir), "-o", str(out / "r.raw"),
                            "--json"])
            rows.append({"size": size, "data_mib": data,
                         "allocated": disk.stat().st_blocks * 512, "convert": conv,
                         "convert_out": conv_out, "restore": rest})
        finally:
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    print(f"{'image':>22} {'convert MB':>11} {'s':>6} {'restore-clonezilla MB':>22} {'s':>6}")
    for r in rows:
        label = (f"{r['size'] // GiB} GiB ({r['allocated'] / MiB:,.0f} MiB alloc)")
        print(f"{label:>22} {r['convert']['peak_mb']:11.1f} {r['convert']['seconds']:6.1f} "
              f"{r['restore']['peak_mb']:22.1f} {r['restore']['seconds']:6.1f}")
    ok = True
    for what in ("convert", "restore"):
        peaks = [r[what]["peak_mb"] for r in rows]
        growth = peaks[1] - peaks[0]
        met = max(peaks) < BOUND_PEAK_MB and growth < BOUND_GROWTH_MB
        ok &= met
        print(f"{what}: peak {max(peaks):.1f} MB (< {BOUND_PEAK_MB}), growth 1 GiB -> 8 GiB "
              f"{growth:+.1f} MB (< {BOUND_GROWTH_MB}): {'met' if met else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
