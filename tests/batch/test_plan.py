"""``batch plan``: dry runs of the whole fleet, nothing copied, failures named up front.

One appliance (the demo capture's dry run) and one pre-launch failure, run in parallel.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from p2vimage.batch.plan import _by_filesystem
from p2vimage.targets import space
from tests.conftest import P2VIMAGE

pytestmark = pytest.mark.appliance


@pytest.mark.slow
def test_plan_names_what_would_fail_and_adds_up_space(images, tmp_path: Path) -> None:
    from fixtures.images import DEMO

    path = tmp_path / "fleet.yaml"
    path.write_text(f"""\
defaults: {{output-dir: out}}
machines:
  - {{name: demo, source: "{images[DEMO]}", bus: ide}}
  - {{name: gone, source: missing.img}}
""")
    r = subprocess.run([str(P2VIMAGE), "batch", "plan", str(path), "--max-in-flight", "2",
                        "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    demo, gone = doc["machines"]
    assert demo["ok"] and demo["bus"] == "ide" and demo["nic"]
    assert demo["needs"] > images[DEMO].stat().st_blocks * 512 // 2
    assert not gone["ok"] and gone["exit_code"] == 3
    assert gone["message"] == f"{tmp_path / 'missing.img'}: no such file"
    assert gone["error_type"] == "SourceNotFoundError"
    (mp, fs), = doc["space"].items()  # one filesystem here: tmp and outputs share it
    assert fs["needed"] >= demo["needs"] and fs["available"] > 0
    # nothing was written: only the output directory the run would make
    assert list((tmp_path / "out").iterdir()) == []


def test_space_is_added_up_per_filesystem(tmp_path: Path) -> None:
    """Two machines that each fit can still not fit together."""
    needs = [space.Need(tmp_path / "a", 10, "a"), space.Need(tmp_path / "b" / "c", 32, "b")]
    ((mp, v),) = _by_filesystem(needs).items()
    assert v["needed"] == 42 and mp == str(space.mount_point(tmp_path))
