"""Taking the four IDE drivers out of a driver.cab-sized cabinet: p2vimage vs cabextract.

Builds two cabinets shaped like XP's ``driver.cab`` (one folder, thousands of members, the
wanted ones spread through it): MSZIP made by gcab, and LZX:21 made by our fixture writer.
Then times, in the same run:

* ``p2vimage``: :func:`p2vimage.windows.cabs.extract` of atapi/intelide/pciide/pciidex
  (our header listing + ``cabextract -l`` cross-check + one checked ``cabextract -F`` run
  per member, as the conversion does);
* ``cabextract -F`` ×4: the bare tool, one run per member (1.9 honours only one ``-F``);
* ``cabextract`` (all): extracting the whole cabinet, what a naive script does.

    .venv/bin/python benchmarks/extract.py [--files 3000] [--mib 60]
"""

from __future__ import annotations

import argparse
import itertools
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

from fixtures import cabwriter  # noqa: E402
from fixtures.pe import build_pe  # noqa: E402
from p2vimage.windows import cabs  # noqa: E402

WANTED = ["atapi.sys", "intelide.sys", "pciide.sys", "pciidex.sys"]


def members(count: int, total_mib: int) -> list[tuple[str, bytes]]:
    """Driver-like files: a PE header and compressible, not trivially repetitive, payload."""
    rng = random.Random(2012)
    words = [bytes(rng.getrandbits(8) for _ in range(rng.randint(3, 12))) for _ in range(512)]
    per = total_mib * (1 << 20) // count
    out = []
    spots = {count // 7: "atapi.sys", count // 2: "intelide.sys",
             (count * 3) // 4: "pciide.sys", count - 2: "pciidex.sys"}
    for i in range(count):
        name = spots.get(i, f"drv{i:05d}.sys")
        body = bytearray(build_pe(0x14C, version=(5, 1, 2600, i), payload=name.encode()))
        while len(body) < per:
            body += rng.choice(words)
        out.append((name, bytes(body[:per])))
    return out


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--mib", type=int, default=60)
    args = ap.parse_args()
    exe = shutil.which("cabextract")
    assert exe, "cabextract is needed (Debian package cabextract)"
    with tempfile.TemporaryDirectory(prefix="p2v-bench-") as td:
        tmp = Path(td)
        files = members(args.files, args.mib)
        src = tmp / "src"
        src.mkdir()
        for name, data in files:
            (src / name).write_bytes(data)
        mszip = tmp / "driver-mszip.cab"
        subprocess.run(["gcab", "-c", "-z", "--nopath", str(mszip),
                        *[str(src / n) for n, _ in files]], check=True, capture_output=True)
        lzx = tmp / "driver-lzx.cab"
        lzx.write_bytes(cabwriter.write_cab(files, compression="lzx", window_bits=21))
        print(f"{args.files} members, {args.mib} MiB uncompressed; wanted: {', '.join(WANTED)}")
        print(f"{'cabinet':<22}{'p2vimage s':>12}{'-F x4 s':>10}{'all s':>9}"
              f"{'vs -F':>8}{'vs all':>8}")
        counter = itertools.count()
        for cab in (mszip, lzx):

            def ours(cab: Path = cab) -> None:
                cabs.extract(cab, WANTED, tmp / f"ours-{next(counter)}")

            def bare_f(cab: Path = cab) -> None:
                d = tmp / f"f-{next(counter)}"
                for n in WANTED:
                    subprocess.run([exe, "-q", "-d", str(d), "-F", n, str(cab)], check=True)

            def bare_all(cab: Path = cab) -> None:
                subprocess.run([exe, "-q", "-d", str(tmp / f"all-{next(counter)}"), str(cab)],
                               check=True)

            t_ours, t_f, t_all = timed(ours), timed(bare_f), timed(bare_all)
            # Same bytes as cabextract's, member by member.
            check = tmp / "check"
            got = cabs.extract(cab, WANTED, check / "ours")
            for n in WANTED:
                subprocess.run([exe, "-q", "-d", str(check / "bare"), "-F", n, str(cab)],
                               check=True)
                assert got[n].read_bytes() == (check / "bare" / n).read_bytes(), n
            shutil.rmtree(check)
            size = os.path.getsize(cab) / (1 << 20)
            label = f"{cab.name} {size:.0f}M"
            print(f"{label:<22}{t_ours:>12.3f}{t_f:>10.3f}{t_all:>9.3f}"
                  f"{t_ours / t_f:>8.2f}{t_ours / t_all:>8.2f}")


if __name__ == "__main__":
    main()
