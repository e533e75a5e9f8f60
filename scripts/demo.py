"""The demo: the main job on the bundled synthetic Windows Server 2003 image.

For now the main job is ``p2vimage inspect``; the conversion issue turns this
into a full conversion.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures.images import DEMO, ensure  # noqa: E402


def main() -> int:
    image = ensure([DEMO], log=lambda m: print(m, file=sys.stderr))[DEMO]
    print(f"$ p2vimage inspect {image.relative_to(ROOT)}", flush=True)
    exe = Path(sys.executable).with_name("p2vimage")
    return subprocess.call([str(exe), "inspect", str(image)])


if __name__ == "__main__":
    raise SystemExit(main())
