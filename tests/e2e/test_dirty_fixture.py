"""The "dirty" fixture: free NTFS clusters hold old data, as on a physical disk.

A thin copy must skip them; a naive copy (``qemu-img convert``) keeps them.
Built on demand (it is larger than the rest), so this module is marked slow.
"""

from __future__ import annotations

import pytest

from fixtures import profiles
from fixtures.images import ensure
from p2vimage.guest.appliance import Job
from p2vimage.sources.image import open_source

MiB = 1 << 20


@pytest.mark.slow
def test_dirty_disk_free_space_is_not_zero() -> None:
    p = profiles.DIRTY
    path = ensure([p.name])[p.name]
    allocated = path.stat().st_blocks * 512
    with Job([open_source(path)]) as job:
        job.mount_root()
        st = job.g.statvfs("/")
        used = (st["blocks"] - st["bfree"]) * st["bsize"]
        kept = sum(job.g.filesize(f"/Data/{n}") for n in job.g.ls("/Data"))
    assert kept == p.keep_mib * MiB
    assert used < (p.keep_mib + 64) * MiB  # the deleted files are free space again...
    assert allocated >= (p.keep_mib + p.dirty_mib) * MiB  # ...but their bytes are still there
    assert path.stat().st_size == p.disk_mib * MiB
