"""``p2vimage batch …``: the CLI's fleet subcommands, on the CLI's conventions (one error
line, ``--json`` documents, the exit codes of the README)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import interrupt
from ..errors import EXIT_OK, UsageError


def add_parser(sub: Any, common: Any) -> None:
    """Add ``batch`` and its subcommands to the CLI's subparsers."""
    b = sub.add_parser("batch", help="convert a fleet of machines from one manifest "
                       "(resumable, retried, with a ledger)",
                       description="Convert many machines from a YAML or CSV manifest, "
                       "keeping an append-only ledger and each machine's report in a state "
                       "directory; a second run resumes.")
    bs = b.add_subparsers(dest="batch_command", metavar="ACTION")
    bs.required = True

    r = bs.add_parser("run", help="convert every machine not yet done",
                      description="Convert every machine of MANIFEST not yet done in the "
                      "state directory. Exit 0 all converted, 1 some failed, 2 invalid "
                      "manifest or usage, 130 interrupted.")
    r.add_argument("manifest", metavar="MANIFEST", help="YAML or CSV manifest")
    r.add_argument("--state", required=True, metavar="DIR", help="state directory")
    r.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="where conversions run: local processes (default) or tasks of a "
                   "Ray cluster (pip install 'p2vimage[ray]')")
    r.add_argument("--address", metavar="HOST:PORT",
                   help="the Ray cluster to use (default: $RAY_ADDRESS)")
    r.add_argument("--max-in-flight", type=int, metavar="N",
                   help="conversions at once (default: ~1 core and 2 GB each)")
    r.add_argument("--retries", type=int, default=2, metavar="N",
                   help="further attempts after a temporary failure (exit 5) or a lost "
                   "worker (default 2)")
    r.add_argument("--retry-delay", type=float, default=5.0, metavar="SECONDS",
                   help="wait before a retry, times the attempt number (default 5)")
    r.add_argument("--stop-wait", type=float, default=30.0, metavar="SECONDS",
                   help="after Ctrl-C, how long in-flight conversions get to stop cleanly "
                   "before SIGTERM, and again before SIGKILL (default 30)")
    r.add_argument("--only", metavar="NAME,...", help="only these machines")
    r.add_argument("--retry-failed", action="store_true",
                   help="run again the machines that failed in an earlier run")
    r.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one testcase per "
                   "machine; the state directory always has junit.xml)")
    common(r)
    r.set_defaults(func=cmd_run)

    p = bs.add_parser("plan", help="what each machine would get, and whether the outputs "
                      "fit (dry runs, nothing copied)",
                      description="Dry-run every machine (one read-only appliance each, in "
                      "parallel) and print its disk bus, NIC, drivers, warnings, and the "
                      "space the outputs need per filesystem against what it has. Exit 0 "
                      "every machine would convert and fit, 1 otherwise (each named).")
    p.add_argument("manifest", metavar="MANIFEST", help="YAML or CSV manifest")
    p.add_argument("--max-in-flight", type=int, metavar="N",
                   help="dry runs at once (default: as batch run)")
    p.add_argument("--only", metavar="NAME,...", help="only these machines")
    common(p)
    p.set_defaults(func=cmd_plan)

    k = bs.add_parser("emit-k8s", help="the fleet as Kubernetes Indexed Jobs (YAML on "
                      "stdout)",
                      description="Write Kubernetes Indexed Jobs converting the manifest's "
                      "machines, one completion index per machine (pods run 'batch "
                      "run-index'), with a podFailurePolicy failing an index on the "
                      "permanent exit codes 1-4: one Job for the machines without a host, "
                      "and one per host with a nodeSelector on kubernetes.io/hostname. The "
                      "manifest, the state directory, captures and outputs must be on the "
                      "shared PVC, mounted at --mount in every pod.")
    k.add_argument("manifest", metavar="MANIFEST", help="YAML or CSV manifest")
    k.add_argument("--state", required=True, metavar="DIR", help="state directory")
    k.add_argument("--image", default="p2vimage:latest", help="container image (built from "
                   "the project's Containerfile)")
    k.add_argument("--pvc", default="p2vimage-fleet", metavar="NAME",
                   help="ReadWriteMany PVC holding captures, outputs, manifest and state")
    k.add_argument("--mount", default="/srv", metavar="PATH",
                   help="where pods mount the PVC (the manifest's paths are under it)")
    k.add_argument("--name", default="p2vimage-batch",
                   help="the Job's name (a host's Job: NAME-HOST)")
    k.add_argument("--namespace", help="the Job's namespace")
    k.add_argument("--max-in-flight", type=int, default=4, metavar="N",
                   help="pods at once per Job (parallelism, default 4)")
    k.add_argument("--retries", type=int, default=2, metavar="N",
                   help="retries of an index after exit 5 or a lost pod (default 2)")
    k.add_argument("--memory", default="3Gi", help="memory per pod (default 3Gi)")
    k.add_argument("--debug", action="store_true", help="show tracebacks")
    k.set_defaults(func=cmd_emit_k8s, json=False, verbose=False)

    x = bs.add_parser("run-index", help="convert one manifest row (a pod of emit-k8s's Job)",
                      description="Convert the manifest row JOB_COMPLETION_INDEX (or "
                      "--index; with --machines, the machine at that position of the list) "
                      "once, recording it in the state directory's ledger; exit with the "
                      "conversion's exit code (0, 1-4 permanent, 5 retry, 130).")
    x.add_argument("manifest", metavar="MANIFEST")
    x.add_argument("--state", required=True, metavar="DIR")
    x.add_argument("--index", type=int, help="row (default: $JOB_COMPLETION_INDEX)")
    x.add_argument("--machines", metavar="NAME,...",
                   help="the Job's machines: index i converts the i-th (a host's Job)")
    x.add_argument("--debug", action="store_true", help="show tracebacks")
    x.set_defaults(func=cmd_run_index, json=False, verbose=False)

    s = bs.add_parser("status", help="each machine's state, from the state directory",
                      description="Print each machine's state as the state directory "
                      "records it (done from the committed reports, the rest from the "
                      "ledger). Read-only.")
    s.add_argument("--state", required=True, metavar="DIR", help="state directory")
    s.add_argument("--manifest", metavar="MANIFEST",
                   help="also list the manifest's machines the ledger never saw")
    common(s)
    s.set_defaults(func=cmd_status)


def cmd_run(args: argparse.Namespace) -> tuple[int, Any, list[str]]:
    from .display import LiveTable, ProgressLines
    from .engine import run

    only = [n.strip() for n in args.only.split(",")] if args.only else None
    show = None if args.json else LiveTable() if sys.stderr.isatty() else ProgressLines()
    result = run(args.manifest, args.state, engine=args.engine,
                 max_in_flight=args.max_in_flight, retries=args.retries, only=only,
                 retry_failed=args.retry_failed, junit=args.junit,
                 retry_delay=args.retry_delay, on_update=show, stop_wait=args.stop_wait,
                 address=args.address)
    if result.interrupted:
        interrupt.clear_stop()  # handled: the summary, not a bare "interrupted" line
    return result.exit_code, result.to_dict(), result.summary_lines()


def cmd_plan(args: argparse.Namespace) -> tuple[int, Any, list[str]]:
    from .plan import plan

    if args.max_in_flight is not None and args.max_in_flight < 1:
        raise UsageError(f"--max-in-flight: at least 1, not {args.max_in_flight}")
    only = [n.strip() for n in args.only.split(",")] if args.only else None
    result = plan(args.manifest, only=only, max_in_flight=args.max_in_flight)
    return result.exit_code, result.to_dict(), result.summary_lines()


def cmd_emit_k8s(args: argparse.Namespace) -> tuple[int, Any, list[str]]:
    from pathlib import Path

    from . import k8s
    from .manifest import load

    m = load(args.manifest)
    objs = k8s.jobs(m, Path(args.state), image=args.image, pvc=args.pvc,
                    mount=Path(args.mount), name=args.name, namespace=args.namespace,
                    parallelism=args.max_in_flight, retries=args.retries, memory=args.memory)
    return EXIT_OK, objs, k8s.dump(objs, m).splitlines()


def cmd_run_index(args: argparse.Namespace) -> tuple[int, Any, list[str]]:
    from .engine import run_index

    machines = args.machines.split(",") if args.machines else None
    code, row = run_index(args.manifest, args.state, args.index, machines=machines)
    why = f" (exit {row.exit_code}): {row.message}" if row.message else ""
    return code, row.to_dict(), [f"{row.name}: {row.state}{why}"]


def cmd_status(args: argparse.Namespace) -> tuple[int, Any, list[str]]:
    from .ledger import Ledger
    from .manifest import load

    ledger = Ledger(args.state)
    if not ledger.dir.is_dir():
        raise UsageError(f"--state {args.state}: no such state directory")
    names: list[str] = []
    if args.manifest:
        names = [m.name for m in load(args.manifest).machines]
    seen = {e["machine"] for e in ledger.events() if "machine" in e}
    machines = ledger.dir / "machines"
    if machines.is_dir():
        seen |= {p.name for p in machines.iterdir() if p.is_dir()}
    names += sorted(seen - set(names))
    states = ledger.states(names)
    doc = {"state": str(ledger.dir), "machines": [states[n].to_dict() for n in names]}
    lines = []
    for n in names:
        s = states[n]
        extra = f" (exit {s.exit_code}: {s.message})" if s.state == "failed" else ""
        where = f" on {s.host}" if s.host else ""
        lines.append(f"{n}: {s.state}{where}, {s.attempts} attempt(s){extra}")
    counts: dict[str, int] = {}
    for s in states.values():
        counts[s.state] = counts.get(s.state, 0) + 1
    doc["counts"] = counts
    lines.append(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no machines")
    return EXIT_OK, doc, lines
