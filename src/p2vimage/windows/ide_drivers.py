"""Find the in-box IDE drivers of a Windows 2000/XP/2003 guest and choose the newest copy.

Setup copies ``atapi.sys``, ``intelide.sys``, ``pciide.sys`` and ``pciidex.sys`` to
``System32\\drivers`` only when the hardware needs them, so a machine that booted from a
RAID or SCSI controller usually lacks them.  The guest keeps every in-box driver in its own
``Driver Cache\\i386`` (``amd64`` on x64) cabinets — ``driver.cab`` from the original media
and one ``spN.cab`` per service pack — and service packs also leave copies in
``ServicePackFiles\\i386`` and ``System32\\dllcache``.  Taking the guest's own files means the
drivers match its service pack (a mismatched ``pciidex.sys`` is a classic 0x7B).

Rules, and why:

* every copy is a *candidate*; the highest ``VS_FIXEDFILEINFO`` file version of the guest's
  machine type wins (a service pack's copy is newer than ``driver.cab``'s, a hotfix's newer
  still), and a file already in ``System32\\drivers`` is never downgraded (an equal version
  keeps the installed file: it is what the guest already trusts);
* a copy of the wrong architecture (an x86 file on an x64 system, as WOW64 leaves in
  ``ServicePackFiles\\i386``) or an unreadable one is rejected, with the reason in the report;
* ``inf\\drvindex.inf`` says which cabinet holds which file, so cabinets that hold none of the
  wanted files are never copied out of the guest (``sp3.cab`` is hundreds of MB);
* cabinets are decompressed by libmspack (``cabextract``) through :mod:`.cabs`, which treats
  them as hostile; a corrupt cabinet that should hold a wanted file stops the conversion.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInputError, ConversionError
from ..formats import inf as inf_mod
from ..formats.cabinet import CabinetFormatError, list_cabinet
from ..formats.pe import PEError, PEInfo, read_pe, version_str
from ..guest import files
from ..guest.view import GuestView
from ..inspection import Inspection
from ..plan import Candidate, FileWrite, Plan
from . import cabs
from .mergeide import DRIVER_FILES

STEP = "ide-drivers"


@dataclass
class _Copy:
    name: str  # lower-case file name
    origin: str
    local: Path
    rank: int  # lower wins a tie on version
    existing: bool = False
    info: PEInfo | None = None
    error: str | None = None
    sha256: str = ""
    size: int = 0

    def load(self) -> None:
        data = self.local.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.size = len(data)
        try:
            self.info = read_pe(data)
        except PEError as exc:
            self.error = f"not a valid PE file: {exc}"

    @property
    def version(self) -> tuple[int, int, int, int]:
        return (self.info.file_version if self.info else None) or (0, 0, 0, 0)


@dataclass
class Search:
    """What was found for each wanted file, and the places looked at (for messages)."""

    copies: dict[str, list[_Copy]]
    places: list[str]


def _drivers_dir(systemroot: str) -> str:
    return posixpath.join(systemroot, "system32", "drivers")


def _cabinet_order(in_dir: list[str], index: dict[str, list[str]]) -> list[str]:
    """Cabinets of the folder: drvindex order (newest first), then the unlisted ones,
    service-pack cabinets before ``driver.cab``."""
    by_lower = {n.lower(): n for n in in_dir if n.lower().endswith(".cab")}
    ordered = [by_lower[c] for c in index if c in by_lower]
    rest = [n for low, n in sorted(by_lower.items()) if low not in index]
    rest.sort(key=lambda n: (n.lower() == "driver.cab", n.lower()))
    return ordered + rest


def search(
    guest: GuestView, names: Sequence[str], workdir: Path,
    extra_files: Iterable[Path] = (), *, strict: bool = True,
) -> Search:
    """Collect every copy of ``names`` in the guest (and ``extra_files``) into ``workdir``."""
    systemroot, arch = guest.system_root or "/WINDOWS", guest.arch
    wanted = [n.lower() for n in names]
    copies: dict[str, list[_Copy]] = {n: [] for n in wanted}
    places: list[str] = []
    rank = 0
    stage = workdir / "drivers"

    def add(copy: _Copy) -> None:
        copy.load()
        copies[copy.name].append(copy)

    # 1. What is installed.
    drivers = _drivers_dir(systemroot)
    places.append(files.windows_path(drivers))
    real_drivers = guest.resolve(drivers)
    present = {n.lower(): n for n in guest.list_dir(drivers)}
    for n in wanted:
        if n in present and real_drivers:
            path = posixpath.join(real_drivers, present[n])
            if guest.is_file(path):
                local = guest.download(path, stage / "installed" / n)
                add(_Copy(n, files.windows_path(path), local, rank, existing=True))
    rank += 1

    # 2. Driver Cache cabinets, newest first, opened only when drvindex says they help.
    sub = "amd64" if arch == "x64" else "i386"
    cache = posixpath.join(systemroot, "Driver Cache", sub)
    real_cache = guest.resolve(cache)
    in_cache = guest.list_dir(cache)
    index: dict[str, list[str]] = {}
    text = guest.read_all(posixpath.join(systemroot, "inf", "drvindex.inf"))
    if text is not None:
        index = cabs.parse_drvindex(inf_mod.decode(text))
    for cab_name in _cabinet_order(in_cache, index):
        assert real_cache is not None
        listed = index.get(cab_name.lower())
        if listed is not None and not any(n in listed for n in wanted):
            continue
        guest_cab = posixpath.join(real_cache, cab_name)
        places.append(files.windows_path(guest_cab))
        local_cab = guest.download(guest_cab, workdir / "cabs" / cab_name)
        try:
            entries = list_cabinet(local_cab)
            members = {e.name.lower(): e.name for e in entries}
            unsafe = [e.name for e in entries if not cabs.is_safe_member_name(e.name)]
            if unsafe:  # never extracted; said, so a "not found" below can be explained
                places[-1] += (f" ({len(unsafe)} member(s) with unsafe names ignored, "
                               f"e.g. {unsafe[0]!r})")
            here = [n for n in wanted if n in members]
            out = cabs.extract(local_cab, here, stage / f"cab-{rank}") if here else {}
        except (CabinetFormatError, cabs.CabinetError) as exc:
            # A damaged cabinet that should hold a file for the boot path stops the job
            # (exit 3); when IDE is only the fallback, or drvindex does not even list the
            # cabinet, it is reported and the other copies are used.
            if strict and listed is not None:
                raise cabs.CabinetError(
                    files.windows_path(guest_cab), exc.reason) from exc
            places[-1] += f" (unreadable: {exc.reason})"
            local_cab.unlink()
            rank += 1
            continue
        if here:
            for n in here:
                add(_Copy(n, f"{files.windows_path(guest_cab)} ({members[n]})", out[n], rank))
        local_cab.unlink()
        rank += 1
    if not in_cache:
        places.append(files.windows_path(cache) + " (no cabinets)")

    # 3. Loose copies service packs leave behind.
    loose = [posixpath.join(systemroot, "ServicePackFiles", "i386")]
    if arch == "x64":
        loose.insert(0, posixpath.join(systemroot, "ServicePackFiles", "amd64"))
    loose.append(posixpath.join(systemroot, "system32", "dllcache"))
    for folder in loose:
        places.append(files.windows_path(folder))
        real = guest.resolve(folder)
        if real is None:
            rank += 1
            continue
        here = {n.lower(): n for n in guest.list_dir(folder)}
        for n in wanted:
            if n in here:
                path = posixpath.join(real, here[n])
                if guest.is_file(path):
                    local = guest.download(path, stage / f"loose-{rank}" / n)
                    add(_Copy(n, files.windows_path(path), local, rank))
        rank += 1

    # 4. Files the user supplied.
    for p in extra_files:
        n = p.name.lower()
        if n not in copies:
            continue
        copy = _Copy(n, f"--driver-file {p}", p, rank)
        copy.load()
        if copy.error:
            raise BadInputError(f"--driver-file {p}: {copy.error}")
        if arch and copy.info and copy.info.arch != arch:
            raise BadInputError(
                f"--driver-file {p}: an {copy.info.arch} driver; the guest is {arch}"
            )
        copies[n].append(copy)
    return Search(copies, places)


def choose(copies: list[_Copy], arch: str | None) -> tuple[_Copy | None, list[Candidate]]:
    """The newest valid copy (installed one on a tie) and every candidate's verdict."""
    valid = [c for c in copies if c.info is not None and (arch is None or c.info.arch == arch)]
    best = max(valid, key=lambda c: (c.version, -c.rank), default=None)
    verdicts = []
    for c in copies:
        if c.error:
            verdict = c.error
        elif c.info is not None and arch is not None and c.info.arch != arch:
            verdict = f"wrong architecture: {c.info.arch}"
        elif c is best:
            verdict = "chosen"
        elif best is not None and c.version == best.version:
            verdict = "same version" + (" (installed copy kept)" if best.existing else "")
        else:
            verdict = "older"
        verdicts.append(
            Candidate(
                origin=c.origin,
                version=version_str(c.info.file_version)
                if c.info and c.info.file_version else None,
                machine=c.info.arch if c.info else None,
                sha256=c.sha256 or None,
                verdict=verdict,
            )
        )
    return best, verdicts


def plan_ide_drivers(plan: Plan, insp: Inspection, guest: GuestView) -> None:
    """Plan the newest copy of each IDE driver file into ``System32\\drivers`` (NT 5.x).

    When the guest boots on the emulated IDE controller a missing file is an error
    (exit 4) naming the places searched; otherwise (IDE is only the fallback) a warning.
    """
    if not insp.is_nt5:
        return
    ctx = plan.context
    assert ctx is not None
    required = plan.device("disk bus") == "ide"
    names = DRIVER_FILES
    systemroot, arch = guest.system_root or "/WINDOWS", guest.arch
    found = search(guest, names, ctx.workdir, ctx.options.driver_files, strict=required)
    drivers = _drivers_dir(systemroot)
    missing: list[str] = []
    rejected: list[str] = []
    for n in (x.lower() for x in names):
        best, verdicts = choose(found.copies[n], arch)
        if best is None:
            missing.append(n)
            rejected += [f"{v.origin}: {v.verdict}" for v in verdicts]
            continue
        assert best.info is not None
        plan.files.append(
            FileWrite(
                step=STEP,
                guest_path=posixpath.join(drivers, n),
                action="keep" if best.existing else "write",
                origin=best.origin,
                version=version_str(best.info.file_version) if best.info.file_version else None,
                machine=best.info.arch,
                sha256=best.sha256,
                size=best.size,
                reason="newest copy of the guest's machine type; never a downgrade",
                candidates=verdicts,
                local=None if best.existing else str(best.local),
            )
        )
    damaged = [p for p in found.places if "(unreadable:" in p]
    if damaged and not missing:
        plan.warnings.append("damaged cabinet(s) skipped: " + "; ".join(damaged))
    if missing:
        msg = (
            f"{', '.join(missing)} not found in the guest (searched "
            f"{'; '.join(found.places)})"
            + (f"; rejected: {'; '.join(rejected)}" if rejected else "")
        )
        if required:
            raise ConversionError(
                msg + ": the guest cannot boot on IDE without it; "
                "supply the file with --driver-file PATH"
            )
        plan.warnings.append(msg + ": booting on IDE would fail (STOP 0x7B)")
