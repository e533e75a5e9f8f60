"""``batch plan``: what every machine would get, and whether the outputs fit, before any
copy.

Each machine runs ``p2vimage convert --dry-run --json`` (one read-only appliance, nothing
written), as many at once as the engine would run.  The space is added up here, per
output filesystem over the whole fleet, from the same estimate ``convert`` checks
before it writes (:func:`p2vimage.preflight.space_needs`): each conversion checks only
its own needs, so thirty machines that each fit can still fill the disk together.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import cli
from ..errors import EXIT_OK, P2VError
from ..options import make_options
from ..sources import uri
from ..targets import space
from .engine import default_max_in_flight
from .manifest import Machine, Manifest, convert_parser, load

POLL = 0.1


@dataclass
class MachinePlan:
    name: str
    ok: bool
    exit_code: int
    bus: str | None = None
    nic: str | None = None
    drivers_found: list[str] = field(default_factory=list)
    drivers_missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error_type: str | None = None
    message: str | None = None
    needs: int = 0  # bytes this machine's outputs need (0 when unknown)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FleetPlan:
    machines: list[MachinePlan]
    space: dict[str, dict[str, int]]  # mount point -> needed, available

    @property
    def exit_code(self) -> int:
        short = any(v["needed"] > v["available"] for v in self.space.values())
        return EXIT_OK if all(m.ok for m in self.machines) and not short else 1

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "machines": [m.to_dict() for m in self.machines],
                "space": self.space}

    def summary_lines(self) -> list[str]:
        lines = []
        for m in self.machines:
            if not m.ok:
                lines.append(f"{m.name}: WOULD FAIL (exit {m.exit_code}): {m.message}")
                continue
            missing = f", drivers missing: {', '.join(m.drivers_missing)}" \
                if m.drivers_missing else ""
            lines.append(f"{m.name}: disk on {m.bus}, NIC {m.nic or 'none'}, drivers "
                         f"{', '.join(m.drivers_found) or 'none staged'}{missing}, "
                         f"{space.human(m.needs)} to write")
            lines += [f"{m.name}:   warning: {w}" for w in m.warnings]
        for mp, v in sorted(self.space.items()):
            verdict = "OK" if v["needed"] <= v["available"] else "NOT ENOUGH SPACE"
            lines.append(f"space on {mp}: {space.human(v['needed'])} needed, "
                         f"{space.human(v['available'])} available: {verdict}")
        bad = [m.name for m in self.machines if not m.ok]
        lines.append(f"{len(self.machines) - len(bad)} of {len(self.machines)} machine(s) "
                     "would convert" + (f"; would fail: {', '.join(bad)}" if bad else ""))
        return lines


def plan(manifest: str | os.PathLike[str] | Manifest, *, only: list[str] | None = None,
         max_in_flight: int | None = None, python: str = sys.executable) -> FleetPlan:
    """Dry-run every selected machine (in parallel) and add up the space the outputs
    need per filesystem.  Nothing is written."""
    m = manifest if isinstance(manifest, Manifest) else load(manifest)
    machines = m.select(only)
    limit = max_in_flight or default_max_in_flight()
    results = _dry_runs(machines, limit, python)
    needs: list[space.Need] = []
    for mm in machines:
        mine = _space_needs(mm) if results[mm.name].ok else []
        results[mm.name].needs = sum(n.size for n in mine if n.directory != _work_dir())
        needs += mine
    return FleetPlan([results[mm.name] for mm in machines], _by_filesystem(needs))


def _work_dir() -> Path:
    return Path(tempfile.gettempdir())


def _dry_runs(machines: list[Machine], limit: int, python: str) -> dict[str, MachinePlan]:
    out: dict[str, MachinePlan] = {}
    with tempfile.TemporaryDirectory(prefix="p2vimage-plan-") as tmp:
        pending = list(machines)
        running: dict[str, tuple[subprocess.Popen[bytes], Path, Path, Machine]] = {}
        try:
            while pending or running:
                while pending and len(running) < limit:
                    mm = pending.pop(0)
                    # (the one thing plan makes: the output directory the run would make)
                    mm.output.parent.mkdir(parents=True, exist_ok=True)
                    so, se = Path(tmp) / f"{mm.name}.json", Path(tmp) / f"{mm.name}.log"
                    with open(so, "wb") as fo, open(se, "wb") as fe:
                        proc = subprocess.Popen(
                            [python, "-m", "p2vimage", *mm.convert_argv(dry_run=True)],
                            cwd=mm.workdir, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                            start_new_session=True)
                    running[mm.name] = (proc, so, se, mm)
                for name, (proc, so, se, mm) in list(running.items()):
                    if proc.poll() is not None:
                        del running[name]
                        out[name] = _result(mm, proc.returncode, so, se)
                time.sleep(POLL)
        finally:
            for proc, *_ in running.values():  # interrupted: stop the dry runs too
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
            for proc, *_ in running.values():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    return out


def _result(mm: Machine, code: int, so: Path, se: Path) -> MachinePlan:
    try:
        doc = json.loads(so.read_text())
    except (OSError, ValueError):
        doc = None
    if code != 0 or not isinstance(doc, dict) or "plan" not in doc:
        err = doc.get("error") if isinstance(doc, dict) else None
        message = err.get("message") if isinstance(err, dict) else (
            se.read_text(errors="replace").strip().splitlines() or [f"exit {code}"])[-1]
        return MachinePlan(mm.name, False, code, error_type=err.get("type")
                           if isinstance(err, dict) else None, message=mm.scrub(message))
    virtio = doc.get("virtio") or {}
    found = sorted(virtio.get("packages") or {})  # driver -> folder on the media
    missing = list(virtio.get("rejected") or [])  # "folder: why" of unusable packages
    devices = doc.get("devices") or {}
    return MachinePlan(mm.name, True, code, bus=devices.get("bus"), nic=devices.get("nic"),
                       drivers_found=found, drivers_missing=missing,
                       warnings=[mm.scrub(w) for w in doc.get("warnings") or []])


def _space_needs(mm: Machine) -> list[space.Need]:
    """What ``convert`` will check before writing, computed the same way (no appliance:
    the sources' allocated sizes).  Network sources are left out (reading their size
    means connecting)."""
    from ..preflight import output_targets, space_needs
    from ..sources.prepare import SourceSet

    if any(uri.is_uri(s) for s in mm.sources):
        return []
    args = convert_parser().parse_args([*mm.sources, "-o", str(mm.output), *mm.options])
    opts = make_options(mm.output, **cli.convert_kwargs(args))
    cwd = Path.cwd()
    try:
        os.chdir(mm.workdir)  # relative option paths are the manifest's
        with SourceSet(list(mm.sources), opts.source_format) as ss:
            return space_needs(opts, ss, output_targets(opts, len(ss.sources)))
    except P2VError:
        return []
    finally:
        os.chdir(cwd)


def _by_filesystem(needs: list[space.Need]) -> dict[str, dict[str, int]]:
    """Per mount point, the bytes needed by the whole fleet against those available."""
    out: dict[str, dict[str, int]] = {}
    for n in needs:
        d = Path(n.directory)
        while not d.exists() and d != d.parent:
            d = d.parent
        mp = str(space.mount_point(d))
        st = os.statvfs(d)
        entry = out.setdefault(mp, {"needed": 0, "available": st.f_bavail * st.f_frsize})
        entry["needed"] += n.size
    return out
