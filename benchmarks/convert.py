"""Issue 17's benchmark: ``p2vimage convert`` vs ``virt-v2v`` vs ``qemu-img convert``, one run.

    .venv/bin/python benchmarks/convert.py                      # small dirty fixture (smoke)
    .venv/bin/python benchmarks/convert.py --realistic --clonezilla --json-out bench.json
    .venv/bin/python benchmarks/convert.py --source IMAGE [--virtio-win ISO] [--keep]

Every tool runs in the same run on the same source with a warm page cache, as a
separate process timed from outside: ours is the CLI (``p2vimage.cli.main``, what
``.venv/bin/p2vimage`` runs) in a fresh Python child, ``convert SRC -o OUT --virtio-win
ISO --json``, whose JSON report gives its phases; virt-v2v is ``virt-v2v -i disk -o local
-of qcow2`` with ``VIRTIO_WIN`` set to the *same* ISO (phases from its ``[ secs] ...``
progress lines); then ``qemu-img convert -O qcow2`` of the source.  ``--clonezilla``
also saves the source as an ``ocs-sr savedisk``-style zstd directory (cached) and times
``p2vimage restore-clonezilla DIR`` alone (raw, and qcow2: the format ``convert DIR``
writes, which its target compares with), one bare appliance session (launch + shutdown,
the restored qcow2 added read-only) and ``p2vimage convert DIR``.

Memory: "own peak" is the ``VmHWM`` of our Python process read at its end (threads
included; qemu, qemu-nbd, qemu-img and the decompressors it starts excluded), as in
``benchmarks/memory.py``; "tree peak" is GNU time's maximum RSS, the largest of the
process and the children it waited for (so mostly qemu's for the appliance tools);
RssAnon/RssFile/RssShmem of our process are also sampled every 0.2 s, to tell heap and
buffers from mapped file pages (VmHWM counts both).
"used" is what the source's file systems hold (``statvfs`` in one appliance, as
``tests/e2e/test_thin.py`` measures it).  Each of the issue's targets is then printed
PASS, FAIL or n/a (with the reason); ``--json-out`` writes everything as JSON.

The appliance accelerator is the same for every tool: ``LIBGUESTFS_BACKEND_SETTINGS``
as set, else ``force_tcg`` when a bare KVM launch fails (virt-v2v has no fallback of its
own).  virt-v2v needs the Debian packages virt-v2v, nbdkit and libnbd-bin and an
rhsrvany.exe (a placeholder file is written: virt-v2v only copies it).  A tool that
fails is reported with its error, not hidden.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures import profiles  # noqa: E402

MiB = 1 << 20
MB = 1_000_000
RHSRVANY = Path("/usr/share/virt-tools/rhsrvany.exe")
TOOLS = ("ours", "qemu-img", "virt-v2v")

# Run in a fresh child: the CLI exactly as a user runs it, then our own peak RSS.
_CHILD = r"""
import json, os, sys
from p2vimage.cli import main
try:
    code = main(sys.argv[1:])
finally:
    hwm = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    with open(os.environ["P2VIMAGE_BENCH_HWM"], "w") as f:
        json.dump({"vmhwm_kib": hwm}, f)
sys.exit(code)
"""

# One bare appliance session: launch with the source as its disk, shut down.
_BARE = r"""
import sys, guestfs
g = guestfs.GuestFS(python_return_dict=True)
g.add_drive_opts(sys.argv[1], format=sys.argv[2], readonly=True)
g.launch()
g.shutdown()
g.close()
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def image_info(path: Path) -> dict:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def allocated(path: Path) -> int:
    return int(image_info(path)["actual-size"])


class _Sampler(threading.Thread):
    """Peak RssAnon/RssFile/RssShmem of the command GNU time runs, sampled every 0.2 s.

    ``VmHWM`` has no split: these tell heap and buffers (anon) from mapped file pages.
    """

    FIELDS = ("RssAnon", "RssFile", "RssShmem")

    def __init__(self, time_pid: int) -> None:
        super().__init__(daemon=True)
        self.time_pid = time_pid
        self.peaks = dict.fromkeys(self.FIELDS, 0)
        self.done = threading.Event()

    def run(self) -> None:
        children = Path(f"/proc/{self.time_pid}/task/{self.time_pid}/children")
        while not self.done.wait(0.2):
            try:
                pid = children.read_text().split()[0]
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in self.peaks:
                        self.peaks[key] = max(self.peaks[key], int(value.split()[0]))
            except (OSError, IndexError, ValueError):
                continue

    def result(self) -> dict[str, float]:
        return {f"{k}_peak_mb": v * 1024 / MB for k, v in self.peaks.items()}


def run_timed(cmd: list[str], env: dict[str, str], work: Path, tag: str,
              timeout: float) -> dict:
    """Wall seconds, exit code, GNU time's max RSS and the output files of a command."""
    out, err, rss = (work / f"{tag}.stdout", work / f"{tag}.stderr", work / f"{tag}.rss")
    os.sync()  # the previous tool's output is written back now, not during this one
    load = os.getloadavg()[0]
    with open(out, "wb") as fo, open(err, "wb") as fe:
        t0 = time.monotonic()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", str(rss), *cmd],
                                stdout=fo, stderr=fe, env=env, start_new_session=True)
        sampler = _Sampler(proc.pid)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            rc = None
        wall = time.monotonic() - t0
        sampler.done.set()
        sampler.join()
    try:
        tree_kib = int(rss.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        tree_kib = None
    return {"wall": wall, "rc": rc, "tree_peak_mb": tree_kib * 1024 / MB if tree_kib else None,
            "load1": round(load, 2), "stdout": out.read_text(errors="replace"),
            "stderr": err.read_text(errors="replace"), "timeout": rc is None,
            "sampled": sampler.result()}


def _error(r: dict, default: str = "failed") -> str:
    if r["timeout"]:
        return f"no result after {r['wall']:.0f} s (killed)"
    lines = [ln for ln in r["stderr"].splitlines() if "error" in ln.lower()]
    lines = lines or r["stderr"].strip().splitlines() or [f"{default} (exit {r['rc']})"]
    return lines[-1][:300]


def _find_keys(doc: Any, words: tuple[str, ...]) -> dict[str, Any]:
    """Every key of a JSON document containing one of ``words`` (e.g. in-flight bytes)."""
    found: dict[str, Any] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            if any(w in k.lower() for w in words) and not isinstance(v, (dict, list)):
                _keep_max(found, k, v)
            for kk, vv in _find_keys(v, words).items():
                _keep_max(found, kk, vv)
    elif isinstance(doc, list):
        for v in doc:
            for kk, vv in _find_keys(v, words).items():
                _keep_max(found, kk, vv)
    return found


def _keep_max(found: dict[str, Any], key: str, value: Any) -> None:
    """The same key in several places (one per disk): keep the largest number."""
    old = found.get(key)
    if isinstance(old, (int, float)) and isinstance(value, (int, float)):
        found[key] = max(old, value)
    elif old is None:
        found[key] = value


def run_cli(tool: str, args: list[str], out: Path | None, env: dict[str, str], work: Path,
            tag: str, timeout: float) -> dict:
    """``p2vimage ARGS --json`` in a fresh child: wall, phases, own and tree peak RSS."""
    hwm = work / f"{tag}.hwm"
    r = run_timed([sys.executable, "-c", _CHILD, *args, "--json"],
                  {**env, "P2VIMAGE_BENCH_HWM": str(hwm)}, work, tag, timeout)
    row: dict[str, Any] = {"tool": tool, "wall": r["wall"], "tree_peak_mb": r["tree_peak_mb"],
                           "load1": r["load1"]}
    try:
        row["own_peak_mb"] = json.loads(hwm.read_text())["vmhwm_kib"] * 1024 / MB
    except (OSError, ValueError, KeyError):
        row["own_peak_mb"] = None
    row["sampled"] = r["sampled"]
    try:
        doc = json.loads(r["stdout"])
    except ValueError:
        doc = {}
    if r["rc"] != 0 or "error" in doc:
        row["error"] = (doc.get("error", {}).get("message") if "error" in doc else None) \
            or _error(r)
        return row
    row["phases"] = doc.get("phases") or {}
    copies = [c for c in doc.get("copy") or [] if not c.get("in_place")]
    if copies:  # the copy engine's own time, both passes (the first runs beside the appliance)
        row["copy_seconds"] = sum(c.get("seconds") or 0.0 for c in copies)
        row["copy_first_pass_seconds"] = sum(c.get("first_pass_seconds") or 0.0 for c in copies)
    for k in ("bytes_read", "bytes_written", "appliance_launches", "launch_attempts"):
        if k in doc:
            row[k] = doc[k]
    in_flight = _find_keys(doc, ("in_flight", "inflight", "outstanding"))
    if in_flight:
        row["in_flight"] = in_flight
    if out is not None and out.exists():
        row["allocated"] = allocated(out) if out.suffix == ".qcow2" else out.stat().st_blocks * 512
    return row


def run_qemu_img(src: Path, fmt: str, work: Path, env: dict[str, str], timeout: float) -> dict:
    out = work / "qemu-img.qcow2"
    r = run_timed(["qemu-img", "convert", "-f", fmt, "-O", "qcow2", str(src), str(out)],
                  env, work, "qemu-img", timeout)
    row = {"tool": "qemu-img convert -O qcow2", "wall": r["wall"],
           "tree_peak_mb": r["tree_peak_mb"], "load1": r["load1"]}
    if r["rc"] != 0:
        row["error"] = _error(r)
    else:
        row["allocated"] = allocated(out)
    return row


_V2V_STEP = re.compile(r"^\[\s*([0-9.]+)\]\s+(.+?)\s*$")
_V2V_NAMES = (  # virt-v2v 2.x progress lines -> short phase names
    ("Setting up the source", "setup"), ("Opening the source", "open"),
    ("Inspecting the source", "inspect"), ("Checking for sufficient free disk", "space"),
    ("Converting", "convert"), ("Mapping filesystem data", "fstrim"),
    ("Closing the overlay", "close"), ("Assigning disks", "buses"),
    ("Checking if the guest needs BIOS", "firmware"), ("Setting up the destination", "dest"),
    ("Copying disk", "copy"), ("Creating output metadata", "metadata"),
    ("Finishing off", "finish"),
)


def v2v_phases(stdout: str, wall: float) -> dict[str, float]:
    """Seconds per step from virt-v2v's ``[  12.3] Step ...`` lines (copy = "Copying disk")."""
    steps = [(float(m.group(1)), m.group(2)) for m in map(_V2V_STEP.match, stdout.splitlines())
             if m]
    phases: dict[str, float] = {}
    for (t, text), nxt in zip(steps, [*steps[1:], (wall, "")], strict=True):
        name = next((n for prefix, n in _V2V_NAMES if text.startswith(prefix)),
                    text.split()[0].lower())
        phases[name] = round(phases.get(name, 0.0) + nxt[0] - t, 3)
    return phases


def run_virt_v2v(src: Path, iso: Path, work: Path, env: dict[str, str],
                 timeout: float) -> dict:
    row: dict[str, Any] = {"tool": "virt-v2v -i disk -o local -of qcow2"}
    if shutil.which("virt-v2v") is None:
        row["error"] = "virt-v2v not installed (apt-get install virt-v2v nbdkit libnbd-bin)"
        return row
    version = subprocess.run(["virt-v2v", "--version"], capture_output=True, text=True)
    if version.returncode == 0:
        row["tool"] = f"virt-v2v {version.stdout.split()[-1]} -i disk -o local -of qcow2"
    if not RHSRVANY.exists():
        RHSRVANY.parent.mkdir(parents=True, exist_ok=True)
        RHSRVANY.write_bytes(b"MZ placeholder: virt-v2v only copies this file\n")
    out = work / "v2v"
    out.mkdir()
    r = run_timed(["virt-v2v", "-i", "disk", str(src), "-o", "local", "-os", str(out),
                   "-of", "qcow2", "-on", "v2v"],
                  {**env, "VIRTIO_WIN": str(iso)}, work, "virt-v2v", timeout)
    row.update(wall=r["wall"], tree_peak_mb=r["tree_peak_mb"], load1=r["load1"],
               phases=v2v_phases(r["stdout"], r["wall"]))
    disks = sorted(out.glob("v2v-sd*"))
    if r["rc"] != 0 or not disks:
        row["error"] = _error(r)
        return row
    row["allocated"] = sum(allocated(d) for d in disks)
    return row


def bare_session(src: Path, fmt: str, work: Path, env: dict[str, str], tag: str) -> dict:
    r = run_timed([sys.executable, "-c", _BARE, str(src), fmt], env, work, tag, 900)
    row = {"tool": "bare appliance launch+shutdown", "wall": r["wall"],
           "tree_peak_mb": r["tree_peak_mb"], "load1": r["load1"]}
    if r["rc"] != 0:
        row["error"] = _error(r)
    return row


def choose_accel(mode: str, src: Path, fmt: str, work: Path) -> dict[str, str]:
    """The environment every tool runs with (one accelerator for all)."""
    env = dict(os.environ)
    if mode == "tcg":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    elif mode == "kvm":
        env.pop("LIBGUESTFS_BACKEND_SETTINGS", None)
    elif "LIBGUESTFS_BACKEND_SETTINGS" not in env:
        log("probing KVM with a bare appliance launch")
        if "error" in bare_session(src, fmt, work, env, "probe-kvm"):
            log("KVM launch failed: every tool runs with LIBGUESTFS_BACKEND_SETTINGS=force_tcg")
            env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def used_bytes(src: Path, fmt: str) -> int:
    """Bytes in use in the source's file systems (statvfs), as tests/e2e/test_thin.py."""
    import guestfs

    g = guestfs.GuestFS(python_return_dict=True)
    g.add_drive_opts(str(src), format=fmt, readonly=True)
    g.launch()
    total = 0
    try:
        for dev, fs in g.list_filesystems().items():
            if fs in ("swap", "unknown", ""):
                continue
            try:
                g.mount_ro(dev, "/")
            except RuntimeError:
                continue
            st = g.statvfs("/")
            total += (st["blocks"] - st["bfree"]) * st["bsize"]
            g.umount_all()
    finally:
        g.shutdown()
        g.close()
    return total


def clonezilla_dir(src: Path) -> Path:
    """The source saved as a zstd ``ocs-sr savedisk`` directory (500 MB chunks), cached."""
    from fixtures import clonezilla as cz

    st = src.stat()
    stem = re.sub(r"-[0-9a-f]{16}$", "", src.stem)
    key = cz._key(src.name, str(st.st_size), str(st.st_mtime_ns), "zst-500MB")
    return cz._cached(f"cz-bench-{stem}-zst", key, lambda tmp: cz.save(src, tmp, "zst", "500MB"))


def warm(paths: list[Path]) -> float:
    """Read the inputs once, so every tool starts with them in the page cache."""
    t0 = time.monotonic()
    for p in paths:
        files = sorted(p.iterdir()) if p.is_dir() else [p]
        for f in files:
            subprocess.run(["cat", str(f)], stdout=subprocess.DEVNULL, check=True)
    return time.monotonic() - t0


def git_state() -> str:
    """HEAD and whether the tree has changes (read-only: never takes git's index lock)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True,
                              env=env).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def copy_phase(row: dict) -> float | None:
    """The copy's own seconds (both passes, the first hidden behind the appliance), else
    the report's copy phases."""
    if row.get("copy_seconds") is not None:
        return row["copy_seconds"]
    ph = row.get("phases") or {}
    keys = [k for k in ph if k == "copy" or k.startswith("copy")]
    return sum(ph[k] for k in keys) if keys else None


def targets(rows: dict[str, dict], used: int | None) -> list[dict]:
    ours, v2v, qimg = rows.get("ours"), rows.get("virt-v2v"), rows.get("qemu-img")
    rest, bare, czc = rows.get("restore"), rows.get("bare"), rows.get("convert-dir")

    def ok(r: dict | None, key: str = "wall") -> bool:
        return bool(r) and "error" not in r and r.get(key) is not None

    out = []

    def add(name: str, value: float | None, limit: float, detail: str, why: str) -> None:
        status = "n/a" if value is None else ("PASS" if value <= limit else "FAIL")
        out.append({"target": name, "value": value, "limit": limit, "status": status,
                    "detail": detail if value is not None else why})

    add("wall time <= 0.35x virt-v2v's",
        ours["wall"] / v2v["wall"] if ok(ours) and ok(v2v) else None, 0.35,
        f"{ours['wall']:.1f} s / {v2v['wall']:.1f} s" if ok(ours) and ok(v2v) else "",
        "needs our row and virt-v2v's")
    cp = copy_phase(ours) if ok(ours) else None
    add("copy phase <= 1.2x qemu-img convert -O qcow2",
        cp / qimg["wall"] if cp is not None and ok(qimg) else None, 1.2,
        f"copy {cp:.1f} s / {qimg['wall']:.1f} s" if cp is not None and ok(qimg) else "",
        "needs our copy phase and qemu-img's row")
    bound = used * 1.10 + 32 * MiB if used is not None else None
    add("allocated <= used + 10% + 32 MiB",
        ours["allocated"] / bound if ok(ours, "allocated") and bound else None, 1.0,
        f"{ours['allocated'] / MiB:,.1f} MiB vs bound {bound / MiB:,.1f} MiB (used "
        f"{used / MiB:,.1f} MiB); value = allocated / bound"
        if ok(ours, "allocated") and bound else "", "needs our output and the used bytes")
    base = rest["wall"] + bare["wall"] if ok(rest) and ok(bare) else None
    add("convert DIR <= 1.3x (restore-clonezilla qcow2 + one appliance session)",
        czc["wall"] / base if base and ok(czc) else None, 1.3,
        f"{czc['wall']:.1f} s / ({rest['wall']:.1f} + {bare['wall']:.1f} s)"
        if base and ok(czc) else "", "needs --clonezilla and its three rows")
    peaks = [(r["tool"], r["own_peak_mb"]) for r in (ours, czc)
             if r and r.get("own_peak_mb") is not None]
    worst = max(peaks, key=lambda x: x[1]) if peaks else None
    add("peak memory of our process < 100 MB",
        worst[1] if worst else None, 99.999,
        f"{worst[1]:.1f} MB ({worst[0]}; VmHWM, 1 MB = 10^6 bytes)" if worst else "",
        "needs our row")
    flights: dict[str, Any] = {}
    for r in (ours, czc):
        for k, v in ((r or {}).get("in_flight") or {}).items():
            _keep_max(flights, k, v)
    nums = [v for v in flights.values() if isinstance(v, (int, float))]
    add("<= 32 MiB of requests in flight",
        max(nums) / MiB if nums else None, 32.0,
        f"{max(nums) / MiB:.1f} MiB from the report ({', '.join(flights)})" if nums else "",
        "not measurable from outside: p2vimage's report has no in-flight figure")
    return out


def fmt_phases(ph: dict | None) -> str:
    return " ".join(f"{k} {v:.1f}" for k, v in (ph or {}).items()) or "-"


def print_report(res: dict) -> None:
    s = res["source"]
    print(f"\nsource: {s['path']} ({s['format']}, {s['virtual'] / MiB:,.0f} MiB virtual, "
          f"{s['allocated'] / MiB:,.0f} MiB allocated, used "
          + (f"{s['used'] / MiB:,.0f} MiB" if s.get("used") is not None else "?") + ")")
    print(f"accelerator: LIBGUESTFS_BACKEND_SETTINGS={res['accel'] or '(unset)'}; "
          f"{res['cpus']} CPUs; warm-up read {res['warm_s']:.1f} s")
    print(f"{'tool':42} {'wall s':>8} {'alloc MiB':>10} {'own MB':>7} {'tree MB':>8} "
          f"{'load':>5}  phases (s)")
    for r in res["rows"]:
        if r.get("error"):
            wall = f"{r['wall']:8.1f}" if r.get("wall") is not None else f"{'-':>8}"
            print(f"{r['tool'][:42]:42} {wall} FAILED: {r['error']}")
            continue

        def num(v: float | None, f: str) -> str:
            return format(v, f) if v is not None else "-"

        alloc = r.get("allocated")
        print(f"{r['tool'][:42]:42} {r['wall']:8.1f} {num(alloc and alloc / MiB, '10,.1f'):>10} "
              f"{num(r.get('own_peak_mb'), '7.1f'):>7} {num(r.get('tree_peak_mb'), '8.0f'):>8} "
              f"{r.get('load1', 0):5.2f}  {fmt_phases(r.get('phases'))}"
              + (f" (copy engine {r['copy_seconds']:.1f} s, of which "
                 f"{r['copy_first_pass_seconds']:.1f} s beside the appliance)"
                 if r.get("copy_seconds") is not None else ""))
    for r in res["rows"]:
        sp = r.get("sampled")
        if sp and r.get("own_peak_mb") is not None:
            print(f"  {r['tool']}: VmHWM {r['own_peak_mb']:.1f} MB; sampled peaks (0.2 s) "
                  + ", ".join(f"{k.split('_')[0]} {v:.1f} MB" for k, v in sp.items()))
    print()
    for t in res["targets"]:
        val = f"{t['value']:.3f}" if t["value"] is not None else "-"
        print(f"{t['status']:5} {t['target']:64} {val:>8} (limit {t['limit']:g}) {t['detail']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, help="disk image (default: the dirty fixture)")
    ap.add_argument("--realistic", action="store_true",
                    help="the issue's 8 GiB disk (fixtures/realistic.py; built once, cached)")
    ap.add_argument("--virtio-win", type=Path, metavar="ISO",
                    help="virtio-win ISO for both tools (default: the fixtures' fake one)")
    ap.add_argument("--clonezilla", action="store_true",
                    help="also time restore-clonezilla, a bare appliance and convert DIR")
    ap.add_argument("--skip", default="", help=f"comma list of {', '.join(TOOLS)} not to run")
    ap.add_argument("--accel", choices=("auto", "tcg", "kvm"), default="auto")
    ap.add_argument("--work", type=Path, help="output directory (default: new in /var/tmp)")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per tool")
    ap.add_argument("--json-out", type=Path, help="write the results as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the outputs and logs")
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - set(TOOLS):
        ap.error(f"--skip: unknown {', '.join(sorted(skip - set(TOOLS)))}")
    if args.source and args.realistic:
        ap.error("--source and --realistic exclude each other")

    t_start = time.monotonic()
    if args.realistic:
        from fixtures import realistic

        log("realistic disk: building or finding the cached one")
        prof, src = realistic.ensure(log=log)
        for w in realistic.below_issue_sizes(prof):
            log(f"warning: smaller than the issue's disk: {w}")
    elif args.source:
        src = args.source.resolve()
    else:
        from fixtures.images import ensure

        src = ensure([profiles.DIRTY.name], log=log)[profiles.DIRTY.name]
    info = image_info(src)
    fmt = info["format"]
    work = Path(tempfile.mkdtemp(prefix="p2v-bench-", dir=args.work or "/var/tmp"))
    log(f"source {src}; work directory {work}")
    rows: dict[str, dict] = {}
    res: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "git": git_state(),
        "source": {"path": str(src), "format": fmt, "virtual": info["virtual-size"],
                   "allocated": info["actual-size"]},
    }
    try:
        iso = args.virtio_win
        if iso is None:
            from fixtures.virtio_iso import build_iso

            iso = build_iso("current", work / "virtio-win.iso")
        res["virtio_win"] = str(iso)
        env = choose_accel(args.accel, src, fmt, work)
        res["accel"] = env.get("LIBGUESTFS_BACKEND_SETTINGS", "")
        os.environ.update({k: v for k, v in env.items() if k == "LIBGUESTFS_BACKEND_SETTINGS"})
        czdir = None
        if args.clonezilla:
            if fmt != "raw":
                raise SystemExit("--clonezilla needs a raw source (saved with sfdisk/partclone)")
            log("Clonezilla directory: saving (zstd, 500 MB chunks) or finding the cached one")
            t0 = time.monotonic()
            czdir = clonezilla_dir(src)
            res["clonezilla"] = {"dir": str(czdir), "save_or_lookup_s": time.monotonic() - t0,
                                 "bytes": sum(f.stat().st_size for f in czdir.iterdir())}
        res["warm_s"] = warm([src, iso] + ([czdir] if czdir else []))

        if "qemu-img" not in skip:
            log("qemu-img convert -O qcow2")
            rows["qemu-img"] = run_qemu_img(src, fmt, work, env, args.timeout)
            _drop(work / "qemu-img.qcow2", args.keep)
        if "ours" not in skip:
            log("p2vimage convert")
            out = work / "ours.qcow2"
            rows["ours"] = run_cli("p2vimage convert", ["convert", str(src), "-o", str(out),
                                                        "--virtio-win", str(iso)],
                                   out, env, work, "ours", args.timeout)
            _drop(out, args.keep)
        if "virt-v2v" not in skip:
            log("virt-v2v")
            rows["virt-v2v"] = run_virt_v2v(src, iso, work, env, args.timeout)
            _drop(work / "v2v", args.keep)
        if czdir is not None:
            # convert DIR writes a qcow2 (its default): the target compares it with a
            # restore into the same format; the raw restore is shown beside it
            log("p2vimage restore-clonezilla DIR --format raw")
            out = work / "restored.raw"
            rows["restore-raw"] = run_cli("p2vimage restore-clonezilla DIR --format raw",
                                          ["restore-clonezilla", str(czdir), "-o", str(out)],
                                          out, env, work, "restore-raw", args.timeout)
            _drop(out, args.keep)
            log("p2vimage restore-clonezilla DIR --format qcow2")
            out = work / "restored.qcow2"
            rows["restore"] = run_cli("p2vimage restore-clonezilla DIR --format qcow2",
                                      ["restore-clonezilla", str(czdir), "-o", str(out),
                                       "--format", "qcow2"],
                                      out, env, work, "restore", args.timeout)
            log("bare appliance session")
            rows["bare"] = bare_session(out if out.exists() else src,
                                        "qcow2" if out.exists() else "raw", work, env, "bare")
            _drop(out, args.keep)
            if "ours" not in skip:
                log("p2vimage convert DIR")
                out = work / "from-dir.qcow2"
                rows["convert-dir"] = run_cli(
                    "p2vimage convert DIR", ["convert", str(czdir), "-o", str(out),
                                             "--virtio-win", str(iso)],
                    out, env, work, "convert-dir", args.timeout)
                _drop(out, args.keep)
        log("used bytes of the source (statvfs in one appliance, not timed)")
        try:
            res["source"]["used"] = used_bytes(src, fmt)
        except RuntimeError as exc:
            log(f"could not measure the used bytes: {exc}")
            res["source"]["used"] = None
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"outputs and logs kept in {work}")
    res["rows"] = [{"key": k, **v} for k, v in rows.items()]
    res["targets"] = targets(rows, res["source"].get("used"))
    res["total_s"] = time.monotonic() - t_start
    print_report(res)
    if args.json_out:
        args.json_out.write_text(json.dumps(res, indent=2) + "\n")
        log(f"results written to {args.json_out}")
    return 0


def _drop(path: Path, keep: bool) -> None:
    """Outputs go once measured (an 8 GiB source makes several GiB each) unless --keep."""
    if keep:
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
        for extra in (path.with_suffix(".xml"), path.with_suffix(".json")):
            extra.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
