"""Long fuzz run: every target of tests/fuzz for a share of ``--minutes``, fresh random seeds.

    .venv/bin/python benchmarks/fuzz.py --minutes 12            # all targets, equal time
    .venv/bin/python benchmarks/fuzz.py --minutes 2 --only partclone,cab-header

Each target runs batches of hypothesis examples (random, not derandomized, no database)
until its time share is used; a failure is shrunk by hypothesis, printed with its
minimal input, and the target goes on with a new seed.  Prints one row per target:
examples run, seconds, failures (distinct exception type and place).  Exit status 1 when
anything failed.  Single process: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import settings  # noqa: E402

from tests.fuzz import targets_clonezilla, targets_windows  # noqa: E402, F401 (registers)
from tests.fuzz.harness import TARGETS, register_profiles  # noqa: E402


def _signature(exc: BaseException) -> str:
    """Exception type and the innermost frame in src/ (or the last one): one failure."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/src/p2vimage/" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(exc).__name__} at {where}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="total time (default 10)")
    ap.add_argument("--only", default="", help="comma-separated target names")
    ap.add_argument("--batch", type=int, default=200, help="examples per hypothesis run")
    ap.add_argument("--seed", type=int, default=None, help="first random seed (default: time)")
    args = ap.parse_args()

    names = [n for n in sorted(TARGETS) if not args.only or n in args.only.split(",")]
    if not names:
        ap.error(f"no such target; known: {', '.join(sorted(TARGETS))}")
    register_profiles()
    base = settings.get_profile("fuzz-long")
    share = args.minutes * 60 / len(names)
    rng = random.Random(args.seed if args.seed is not None else time.time_ns())
    rows = []
    print(f"fuzzing {len(names)} targets, {share:.0f} s each, pid {os.getpid()}", flush=True)
    for name in names:
        tgt = TARGETS[name]
        tgt.examples = tgt.accepted = 0
        failures: dict[str, str] = {}
        seeds: list[int] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < share:
            s = rng.getrandbits(64)
            seeds.append(s)
            test = hypothesis_seed(s)(tgt.hypothesis_test(base, max_examples=args.batch))
            try:
                test()
            except Exception as exc:  # noqa: BLE001 - a finding: record it, keep fuzzing
                found = list(exc.exceptions) if isinstance(exc, ExceptionGroup) else [exc]
                for one in found:
                    sig = _signature(one)
                    if sig not in failures:
                        first = (str(one).splitlines() or [""])[0][:300]
                        failures[sig] = f"seed {s}: {type(one).__name__}: {first}"
                        print(f"  {name}: FAILURE {sig}\n    {failures[sig]}", flush=True)
        secs = time.monotonic() - t0
        rows.append((name, tgt.parser, tgt.examples, tgt.accepted, secs, failures))
        print(f"  {name}: {tgt.examples} examples in {secs:.0f} s, "
              f"{len(failures)} failure(s), {len(seeds)} seeds", flush=True)

    print()
    # "accepted": the parser returned a result (the rest ended in an allowed error): how
    # much of the input got past the early refusals into the deep code
    print("| target | parser | examples | accepted % | seconds | examples/s | failures |")
    print("|---|---|---:|---:|---:|---:|---|")
    for name, parser, n, ok, secs, failures in rows:
        print(f"| {name} | {parser} | {n} | {100 * ok / max(n, 1):.0f} | {secs:.0f} | "
              f"{n / max(secs, 1e-9):.0f} | {'; '.join(failures) or 0} |")
    total = sum(r[2] for r in rows)
    print(f"\n{total} examples in {sum(r[4] for r in rows):.0f} s; "
          f"{sum(len(r[5]) for r in rows)} distinct failure(s)")
    return 1 if any(r[5] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
