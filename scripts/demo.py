"""The demo: inspect, check, convert and re-check the bundled synthetic Windows 2003 image.

The output (disk, libvirt XML, JSON report) goes to ``demo-output/``; a re-run
replaces it (``--overwrite``).  The virtio drivers come from a generated virtio-win ISO
(``demo-output/virtio-win.iso``: the real layout and INF files, placeholder binaries; see
``fixtures/virtio_iso.py``), so the guest boots on virtio-blk with NetKVM staged.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures import virtio_iso  # noqa: E402
from fixtures.images import DEMO, ensure  # noqa: E402


def run(*args: str) -> int:
    exe = Path(sys.executable).with_name("p2vimage")
    print("$ p2vimage " + " ".join(args), flush=True)
    return subprocess.call([str(exe), *args])


def main() -> int:
    image = ensure([DEMO], log=lambda m: print(m, file=sys.stderr))[DEMO]
    rel = str(image.relative_to(ROOT))
    out = ROOT / "demo-output"
    out.mkdir(exist_ok=True)
    iso = out / "virtio-win.iso"
    if not iso.exists():
        virtio_iso.build_iso("current", iso)
    if run("inspect", rel):
        return 1
    print("\nThe captured machine, as it is, on QEMU's IDE (exit 1 = not ready):")
    if run("check", rel, "--bus", "ide") != 1:
        return 1
    print()
    code = run("convert", rel, "-o", "demo-output/filesrv01.qcow2", "--size", "2G",
               "--virtio-win", "demo-output/virtio-win.iso", "--overwrite")
    if code != 0:
        return code
    print("\nThe converted guest, with its own domain XML:")
    code = run("check", "demo-output/filesrv01.qcow2", "--xml", "demo-output/filesrv01.xml",
               "--junit", "demo-output/filesrv01.junit.xml")
    if code == 0:
        print(f"\nReport: {out / 'filesrv01.json'}\nDomain XML: {out / 'filesrv01.xml'}"
              f"\nCheck (JUnit): {out / 'filesrv01.junit.xml'}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
