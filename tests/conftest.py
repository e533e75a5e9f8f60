"""Shared test fixtures: cached fixture images, one appliance per session, hash guards."""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"
REALDATA = SHARED / "realdata"
P2VIMAGE = Path(sys.executable).with_name("p2vimage")

# The fuzz tests' hypothesis profiles: "fuzz-ci" (default: bounded, derandomized, no
# example database) and "fuzz-long"; $P2VIMAGE_FUZZ_PROFILE picks one.  Only tests/fuzz
# uses them: the other hypothesis tests keep their own settings.
from tests.fuzz.harness import register_profiles  # noqa: E402

register_profiles()

# Every other hypothesis test runs under this default: no wall-clock deadline (200 ms by
# default, which a descheduled xdist worker beside a TCG appliance can exceed), the same
# examples in every run and no example database, so a CI failure reproduces anywhere.
# A test's own @settings still overrides what it names.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("p2vimage-tests", deadline=None, derandomize=True,
                                      database=None, print_blob=True)
_hypothesis_settings.load_profile("p2vimage-tests")


def sha256(path: Path, block: int = 1 << 20) -> str:
    """Digest of a (sparse) image's *content*, independent of how it is laid out on disk.

    Only the data extents (SEEK_DATA/SEEK_HOLE) are read, on a fixed grid of aligned
    blocks; each non-zero block is hashed with its index.  Holes and zero blocks read
    as zeros either way, so writeback or extent changes that keep the bytes keep the
    digest, while any real write changes it.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        h.update(size.to_bytes(8, "little"))
        pos, done = 0, -1  # done: last block index hashed
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            for index in range(max(start // block, done + 1), (end - 1) // block + 1):
                data = os.pread(fd, block, index * block)
                if data.count(0) != len(data):
                    h.update(index.to_bytes(8, "little"))
                    h.update(data)
                done = index
            pos = end
    return h.hexdigest()


def plan_of(report) -> dict:
    """The plan as the JSON report has it (what --json users read)."""
    return report.to_dict()["plan"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600):
    """Run the installed console script, as a user would."""
    return subprocess.run(
        [str(P2VIMAGE), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def private_tmpdir(work: Path) -> dict[str, str]:
    """Environment giving a job its own TMPDIR (its work files can then be watched and
    counted) while libguestfs keeps using the appliance cache it already built."""
    cache = os.environ.get("LIBGUESTFS_CACHEDIR") or os.environ.get("TMPDIR") or "/var/tmp"
    return {"TMPDIR": str(work), "LIBGUESTFS_CACHEDIR": cache}


def origin_bytes(g, origin: str, name: str, tmp: Path) -> bytes:
    """The bytes of a staged file's origin as the report names it, read independently from a
    mounted guest: a loose file as it is, a cabinet member with ``cabextract`` itself."""
    path = origin.split(" (")[0].replace("\\", "/")
    if path.lower().endswith(".cab"):
        cab = tmp / Path(path).name
        g.download(path, str(cab))
        out = tmp / f"x-{cab.stem}"
        subprocess.run(["cabextract", "-q", "-F", name, "-d", str(out), str(cab)], check=True)
        return (out / name).read_bytes()
    return g.read_file(path)


@pytest.fixture(scope="session")
def images() -> dict[str, Path]:
    """Every fixture image (built once, by up to two appliances at once, then cached)."""
    from fixtures.images import ensure

    return ensure(log=lambda m: print(m, file=sys.stderr))


@pytest.fixture(scope="session")
def _launch_wrapper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.launchwatch import wrapper

    return wrapper(tmp_path_factory.mktemp("hv"))


@pytest.fixture
def launch_watch(_launch_wrapper: Path, tmp_path_factory: pytest.TempPathFactory):
    """Counts the appliance launches of commands run with ``env=launch_watch.env()``:
    "refused before any appliance" is ``launch_watch.count == 0``, not a stopwatch."""
    from tests.launchwatch import LaunchWatch

    return LaunchWatch(_launch_wrapper, tmp_path_factory.mktemp("launches"))


@pytest.fixture(scope="session", autouse=True)
def _sources_never_change(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every fixture image's bytes are the same after the whole session as before."""
    from fixtures.images import SPECS

    existing = [s.path() for s in SPECS.values() if s.path().exists()]
    before = {p: sha256(p) for p in existing}
    yield
    changed = [p.name for p, h in before.items() if p.exists() and sha256(p) != h]
    assert not changed, f"source images were modified: {changed}"


@pytest.fixture(scope="session")
def real_hives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The real SYSTEM hives from ../shared/realdata/registry, decompressed copies."""
    src = REALDATA / "registry"
    assert src.is_dir(), f"missing test data {src}"
    out = tmp_path_factory.mktemp("real-hives")
    hives: dict[str, Path] = {}
    for f in sorted(src.iterdir()):
        if "SYSTEM" not in f.name:
            continue
        name = f.name.removesuffix(".xz")
        dest = out / name
        if f.suffix == ".xz":
            dest.write_bytes(lzma.decompress(f.read_bytes()))
        else:
            shutil.copyfile(f, dest)
        hives[name] = dest
    return hives


@pytest.fixture(scope="session")
def demo_job(images: dict[str, Path]) -> Iterator[object]:
    """One read-only appliance on the demo image, shared by every read-only test."""
    from fixtures.images import DEMO
    from p2vimage.guest.appliance import Job
    from p2vimage.sources.image import open_source

    job = Job([open_source(images[DEMO])], writable=False)
    job.launch()
    yield job
    job.close()


@pytest.fixture(autouse=True)
def _no_stray_nbd_server() -> Iterator[None]:
    """No test leaves a qemu-nbd behind: neither one of this process's children (an
    in-process job) nor an orphan (a CLI job that ended without stopping its server)."""
    from p2vimage.blockio.nbd import server_processes

    yield
    mine = {os.getpid(), 1}
    deadline = time.monotonic() + 5  # a server exits once its client has gone
    while server_processes(mine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server_processes(mine) == [], "a qemu-nbd process was left running"
