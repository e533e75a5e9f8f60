"""Where a conversion's appliance time goes: every libguestfs call, timed.

    .venv/bin/python benchmarks/appliance_profile.py [--source IMAGE] [--smp N] [--trace]

Wraps every method of ``guestfs.GuestFS`` with a timer, runs one conversion (the demo
fixture by default, qcow2 output in a temporary directory) and prints the report's
phases, then the calls that took the most time in total (count, total, mean), so the
appliance phases (launch, inspect, plan, apply) can be cut where it matters.
``--smp N`` gives the appliance N vCPUs (the ``P2VIMAGE_APPLIANCE_SMP`` setting).
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import guestfs  # noqa: E402

import p2vimage  # noqa: E402
from fixtures.images import DEMO, ensure  # noqa: E402

TIMES: dict[str, list[float]] = collections.defaultdict(list)
TRACE: list[tuple[str, str, float]] = []


def _timed(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            dt = time.monotonic() - t0
            TIMES[name].append(dt)
            TRACE.append((name, ", ".join(repr(a)[:40] for a in args[1:]), dt))

    return wrapper


def instrument() -> None:
    for name in dir(guestfs.GuestFS):
        if name.startswith("_"):
            continue
        attr = getattr(guestfs.GuestFS, name)
        if callable(attr):
            setattr(guestfs.GuestFS, name, _timed(name, attr))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path)
    ap.add_argument("--smp", type=int)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--trace", action="store_true", help="also list every call in order")
    args = ap.parse_args()
    if args.smp:
        os.environ["P2VIMAGE_APPLIANCE_SMP"] = str(args.smp)
    src = args.source or ensure([DEMO])[DEMO]
    instrument()
    with tempfile.TemporaryDirectory(prefix="p2v-profile-") as d:
        t0 = time.monotonic()
        report = p2vimage.convert(src, Path(d) / "out.qcow2")
        wall = time.monotonic() - t0
    print(f"source: {src}")
    print(f"wall {wall:.1f} s; phases: "
          + ", ".join(f"{k} {v:.1f}" for k, v in report.phases.items()))
    total = sum(sum(v) for v in TIMES.values())
    print(f"time inside libguestfs calls: {total:.1f} s\n")
    if args.trace:
        for name, call_args, dt in TRACE:
            print(f"{1000 * dt:8.1f} ms  {name}({call_args})")
        print()
    print(f"{'call':32} {'count':>6} {'total s':>8} {'mean ms':>8}")
    rows = sorted(TIMES.items(), key=lambda kv: -sum(kv[1]))[: args.top]
    for name, ts in rows:
        print(f"{name:32} {len(ts):6} {sum(ts):8.2f} {1000 * sum(ts) / len(ts):8.1f}")


if __name__ == "__main__":
    main()
