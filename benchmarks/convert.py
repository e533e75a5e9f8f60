"""Benchmark ``p2vimage convert`` against ``qemu-img convert`` and ``virt-v2v`` in one run.

    .venv/bin/python benchmarks/convert.py [--source IMAGE] [--keep]

Default source: the "dirty" fixture (free NTFS clusters full of old data, as on a
physical disk).  Prints wall time, appliance launches and output allocated size
for each tool, and the ratios to ours.  virt-v2v needs the Debian packages
virt-v2v, nbdkit and libnbd-bin, a virtio-win tree (a fake one is generated with
fixtures/virtio_iso.py) and an rhsrvany.exe (a placeholder file: virt-v2v only
copies it).  A tool that fails is reported with its error, not hidden.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import p2vimage  # noqa: E402
from fixtures import profiles  # noqa: E402
from fixtures.images import ensure  # noqa: E402
from fixtures.virtio_iso import build_tree  # noqa: E402

MiB = 1 << 20
RHSRVANY = Path("/usr/share/virt-tools/rhsrvany.exe")


def allocated(path: Path) -> int:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)["actual-size"])


def run_ours(src: Path, work: Path) -> dict:
    t0 = time.monotonic()
    report = p2vimage.convert(src, work / "ours.qcow2")
    return {"tool": "p2vimage convert", "seconds": time.monotonic() - t0,
            "launches": report.appliance_launches, "bytes": allocated(work / "ours.qcow2"),
            "fell_back": report.launch_attempts > report.appliance_launches}


def run_qemu_img(src: Path, work: Path) -> dict:
    t0 = time.monotonic()
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(src),
                    str(work / "qemu-img.qcow2")], check=True)
    return {"tool": "qemu-img convert", "seconds": time.monotonic() - t0, "launches": 0,
            "bytes": allocated(work / "qemu-img.qcow2")}


def run_virt_v2v(src: Path, work: Path, force_tcg: bool) -> dict:
    row = {"tool": "virt-v2v -i disk -o local", "seconds": None, "launches": None, "bytes": None}
    if shutil.which("virt-v2v") is None:
        row["error"] = "virt-v2v not installed (apt-get install virt-v2v nbdkit libnbd-bin)"
        return row
    tree = work / "virtio-win"
    build_tree("legacy-2k3", tree)
    if not RHSRVANY.exists():
        RHSRVANY.parent.mkdir(parents=True, exist_ok=True)
        RHSRVANY.write_bytes(b"MZ placeholder: virt-v2v only copies this file\n")
    out = work / "v2v"
    out.mkdir()
    env = {**os.environ, "VIRTIO_WIN": str(tree)}
    if force_tcg:
        # virt-v2v has no KVM->TCG fallback; where ours needed one, give it TCG directly
        # (otherwise it fails at launch on such hosts).
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    t0 = time.monotonic()
    proc = subprocess.run(
        ["virt-v2v", "-i", "disk", str(src), "-o", "local", "-os", str(out), "-of", "qcow2",
         "-on", "v2v"],
        capture_output=True, text=True, env=env, check=False,
    )
    row["seconds"] = time.monotonic() - t0
    row["launches"] = proc.stderr.count("libguestfs: launch") or None
    disks = sorted(out.glob("v2v-sd*"))
    if proc.returncode != 0 or not disks:
        lines = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
        row["error"] = (lines or proc.stderr.strip().splitlines() or ["failed"])[-1][:200]
        return row
    row["bytes"] = sum(allocated(d) for d in disks)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the outputs")
    args = ap.parse_args()
    src = args.source or ensure([profiles.DIRTY.name])[profiles.DIRTY.name]
    work = Path(tempfile.mkdtemp(prefix="p2v-bench-"))
    try:
        ours = run_ours(src, work)
        rows = [ours, run_qemu_img(src, work), run_virt_v2v(src, work, ours["fell_back"])]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ours = rows[0]
    print(f"source: {src} ({os.path.getsize(src) / MiB:.0f} MiB virtual, "
          f"{os.stat(src).st_blocks * 512 / MiB:.0f} MiB allocated)")
    print(f"{'tool':28} {'wall s':>8} {'launches':>8} {'output MiB':>11} {'size ×ours':>10} "
          f"{'time ×ours':>10}")
    for r in rows:
        if r.get("error"):
            print(f"{r['tool']:28} failed: {r['error']}")
            continue
        print(f"{r['tool']:28} {r['seconds']:8.1f} {r['launches'] or '-':>8} "
              f"{r['bytes'] / MiB:11.1f} {r['bytes'] / ours['bytes']:10.2f} "
              f"{r['seconds'] / ours['seconds']:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
