"""Issue 19's benchmark: a fleet of fixture conversions through ``p2vimage batch``.

    .venv/bin/python benchmarks/batch.py                    # 8 conversions, 1 then 2 in flight
    .venv/bin/python benchmarks/batch.py --count 2 --in-flight 1 --json-out bench.json

N copies of the demo fixture (``win2003-x86``, the smallest Windows capture) are one
manifest; the local engine converts them in a fresh state directory for each in-flight
setting.  Reported per setting:

* wall time of the whole run, conversions per minute;
* the engine's overhead per conversion: the run's wall time less the time its
  conversions spent, over the number of conversions, at 1 in flight (where the two
  are comparable): ledger writes, polling, process start-up of the next job.  The
  conversions' own time is the elapsed of each ``finished`` event of the ledger (from
  the child's start to its exit, Python start-up included).  Issue 19's target: < 2 s;
* peak RSS of the driver (this process: ``ru_maxrss`` of RUSAGE_SELF; the conversions
  are separate processes and not counted).

With ``--ray-address`` the same fleet also runs through a Ray cluster (e.g. two
``ray start`` nodes with ``p2v=1`` each, as tests/batch/test_ray.py starts them): its
row's overhead includes the time tasks wait in Ray for a free ``p2v``.

Timings are only meaningful on an otherwise idle machine: conversions are CPU-bound
(TCG when KVM is unusable), so other jobs on the CPUs change them a lot.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from fixtures.images import DEMO, ensure  # noqa: E402
from p2vimage import batch  # noqa: E402
from p2vimage.batch.ledger import Ledger  # noqa: E402


def one_setting(source: Path, count: int, in_flight: int, work: Path,
                ray_address: str | None = None) -> dict:
    d = work / f"{'ray' if ray_address else 'local'}-inflight-{in_flight}"
    d.mkdir()
    rows = "".join(f"  - {{name: m{i}, source: \"{source}\"}}\n" for i in range(count))
    (d / "fleet.yaml").write_text(f"defaults: {{output-dir: out}}\nmachines:\n{rows}")
    t0 = time.monotonic()
    result = batch.run(d / "fleet.yaml", d / "state", max_in_flight=in_flight, retries=0,
                       engine="ray" if ray_address else "local", address=ray_address)
    wall = time.monotonic() - t0
    finished = [e for e in Ledger(d / "state").events() if e["event"] == "finished"]
    busy = sum(e["elapsed"] for e in finished)
    out = {
        "engine": "ray" if ray_address else "local",
        "in_flight": in_flight,
        "conversions": count,
        "converted": sum(1 for m in result.machines if m.state == "done"),
        "wall_s": round(wall, 2),
        "per_minute": round(count / wall * 60, 2),
        "conversion_s_mean": round(busy / max(1, len(finished)), 2),
        "overhead_per_conversion_s": round((wall * in_flight - busy) / count, 3),
        "driver_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                     1),
    }
    shutil.rmtree(d / "out", ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--in-flight", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--ray-address", metavar="HOST:PORT",
                    help="also run through this Ray cluster (its nodes offering 'p2v'), at "
                    "the largest --in-flight")
    args = ap.parse_args()
    os.environ.setdefault("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
    source = ensure()[DEMO]
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="p2vimage-bench-batch-") as tmp:
        for n in args.in_flight:
            row = one_setting(source, args.count, n, Path(tmp))
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.ray_address:
            row = one_setting(source, args.count, max(args.in_flight), Path(tmp),
                              args.ray_address)
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = next((r for r in rows if r["in_flight"] == 1 and r["engine"] == "local"), None)
    verdict = ("n/a (no 1-in-flight run)" if base is None else
               f"{'PASS' if base['overhead_per_conversion_s'] < 2 else 'FAIL'} "
               f"({base['overhead_per_conversion_s']} s per conversion, target < 2 s)")
    print(f"engine overhead: {verdict}; load average at start {load[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    if args.json_out:
        args.json_out.write_text(json.dumps({"rows": rows, "load_at_start": load,
                                             "cpus": os.cpu_count()}, indent=2))
    return 0 if base is None or base["overhead_per_conversion_s"] < 2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
