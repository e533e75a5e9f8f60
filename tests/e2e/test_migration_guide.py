"""Every offline command of docs/migration-guide.md runs, as written, on the demo image."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.images import DEMO
from tests.conftest import ROOT, sha256

GUIDE = ROOT / "docs" / "migration-guide.md"


def offline_commands() -> list[str]:
    blocks = re.findall(r"```sh offline\n(.*?)```", GUIDE.read_text(), flags=re.S)
    return [line for b in blocks for line in b.splitlines() if line.strip()]


def test_guide_has_offline_and_manual_steps() -> None:
    text = GUIDE.read_text()
    assert len(offline_commands()) >= 6
    assert "```sh manual" in text


@pytest.mark.slow
def test_offline_commands_run(images, tmp_path: Path) -> None:
    src = images[DEMO]
    before = sha256(src)
    (tmp_path / "server.img").symlink_to(src)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for cmd in offline_commands():
        r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{cmd}: {r.stderr}"
    names = {p.name for p in tmp_path.iterdir()}
    assert {"server.qcow2", "server.xml", "server.json", "inspection.json"} <= names
    assert sha256(src) == before
