"""The CLI conventions, before any appliance starts: exit codes, one-line errors, --json,
--debug."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import P2VIMAGE, run_cli
from tests.sources.test_image import _mbr_disk


def test_cli_usage_error_is_exit_2_one_line() -> None:
    r = run_cli("inspect")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("p2vimage: error: ")
    r = run_cli("frobnicate")
    assert r.returncode == 2 and r.stderr.startswith("p2vimage: error: ")


def test_cli_missing_file_exit_3(tmp_path: Path) -> None:
    r = run_cli("inspect", str(tmp_path / "missing.img"))
    assert r.returncode == 3
    assert r.stderr == f"p2vimage: error: {tmp_path / 'missing.img'}: no such file\n"
    assert r.stdout == ""


def test_cli_json_error_document(tmp_path: Path) -> None:
    (tmp_path / "e.img").write_bytes(b"")
    r = run_cli("inspect", "--json", str(tmp_path / "e.img"))
    assert r.returncode == 3
    doc = json.loads(r.stdout)
    assert doc["error"]["type"] == "UnsupportedFormatError"
    assert doc["error"]["exit_code"] == 3
    assert "empty" in doc["error"]["message"]


def test_cli_unreadable_file_exit_3(tmp_path: Path) -> None:
    """As an unprivileged user, a mode-000 image is unreadable (root would read it)."""
    if shutil.which("runuser") is None:
        pytest.fail("runuser (util-linux) is required for this test")
    d = Path(tempfile.mkdtemp(prefix="p2v-unreadable-", dir="/tmp"))
    try:
        d.chmod(0o755)
        img = _mbr_disk(d / "secret.img")
        img.chmod(0o000)
        env = {**os.environ, "HOME": "/tmp"}
        r = subprocess.run(
            ["runuser", "-u", "nobody", "--", str(P2VIMAGE), "inspect", str(img)],
            capture_output=True, text=True, env=env, check=False,
        )
    finally:
        shutil.rmtree(d)
    assert r.returncode == 3, r.stderr
    assert r.stderr.strip() == f"p2vimage: error: {img}: permission denied"


def test_missing_binding_message(tmp_path: Path) -> None:
    disk = _mbr_disk(tmp_path / "d.img")
    code = (
        "import sys; sys.modules['guestfs'] = None\n"
        "from p2vimage.cli import main\n"
        f"raise SystemExit(main(['inspect', {str(disk)!r}]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 4
    assert "Traceback" not in r.stderr
    assert "install the Debian package python3-guestfs" in r.stderr
    assert r.stderr.count("\n") == 1


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = run_cli("inspect", "--debug", str(tmp_path / "missing.img"))
    assert r.returncode == 3
    assert "Traceback" in r.stderr and "SourceNotFoundError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("p2vimage: error: ")
    r = run_cli("inspect", str(tmp_path / "missing.img"))
    assert "Traceback" not in r.stderr
