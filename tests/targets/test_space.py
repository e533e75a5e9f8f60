"""targets/space.py: the up-front space check, on a real tmpfs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2vimage.errors import InsufficientSpaceError
from p2vimage.targets import space


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_space_needs_add_up_per_filesystem(tmpfs: Path, tmp_path: Path) -> None:
    (tmpfs / "sub").mkdir()
    avail = os.statvfs(tmpfs).f_bavail * os.statvfs(tmpfs).f_frsize
    half = avail // 2 + 4096
    # Each need alone fits; together on one filesystem they do not.
    space.check([space.Need(tmpfs, half, "a")])
    with pytest.raises(InsufficientSpaceError) as exc:
        space.check([space.Need(tmpfs, half, "disk a"),
                     space.Need(tmpfs / "sub" / "not-yet", half, "disk b"),
                     space.Need(tmp_path, half, "elsewhere")])
    e = exc.value
    assert (e.filesystem, e.needed, e.available) == (str(tmpfs), 2 * half, avail)
    assert e.exit_code == 5
    assert "disk a, disk b" in str(e) and "elsewhere" not in str(e)
    assert "\n" not in str(e)
    assert space.mount_point(tmpfs / "sub") == tmpfs
