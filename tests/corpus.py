"""The bad-input corpus: broken and hostile inputs through every command, as a user runs them.

Each :class:`Case` builds its input in a scratch directory (from the cached fixture images:
nothing big is committed), runs the installed ``p2vimage`` console script, and compares
what happened with what the README promises:

- the documented exit code, and a one-line ``p2vimage: error: ...`` message matching the
  case's fragment (for a success case: the fragment is looked for on stdout);
- no traceback;
- the source files hash the same afterwards (content digest, holes included);
- nothing new in the output directory: no output, no ``.partial``, no temporary raw.

Cases that can be refused before the appliance starts must be (they are timed: a launch
costs 10 s or more here).  Broken *guests* (hives, cabinets, NTFS state) are overlays of
one fixture image, all broken in a single writable appliance launch.

``python -m tests.corpus`` prints the table (case, command, expected, observed);
``tests/e2e/test_corpus.py`` runs the same cases under pytest.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import P2VIMAGE, sha256  # noqa: E402
from tests.e2e.test_clonezilla import (  # noqa: E402 - the same chunk breaks as its tests
    _chunks,
    _extra,
    _missing_middle,
)
from tests.launchwatch import LaunchWatch, wrapper  # noqa: E402

BASE = "win2003-x86"  # the guest every broken-guest variant is an overlay of


@dataclass
class Inputs:
    """What one case runs: arguments after the command, files to guard, where outputs go."""

    argv: list[str]
    sources: list[Path]
    outdir: Path
    # Run beside the command (e.g. feeding a FIFO); gets the process, returns when done.
    beside: Callable[[subprocess.Popen], None] | None = None


@dataclass(frozen=True)
class Case:
    name: str
    command: str
    make: Callable[[Corpus, Path], Inputs]
    code: int
    fragment: str  # regex: in the error line (or on stdout when code is 0)
    appliance: bool = False  # False: must be refused before any appliance starts
    # (signal, regex on a stderr line): the signal is sent when such a line appears
    signal: tuple[int, str] | None = None
    # Also covered elsewhere by a slow test: under pytest, run with ``make test-slow``
    slow: bool = False


@dataclass
class Row:
    case: Case
    code: int | None = None
    message: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Corpus:
    """Shared inputs, built lazily and once: fixture images, broken guests, Clonezilla dirs."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._images: dict[str, Path] | None = None
        self._variants: dict[str, Path] | None = None

    def image(self, name: str) -> Path:
        if self._images is None:
            from fixtures.images import ensure

            self._images = ensure(log=lambda m: print(m, file=sys.stderr))
        return self._images[name]

    def variant(self, name: str) -> Path:
        if self._variants is None:
            from tests.corpus_guests import build_variants

            self._variants = build_variants(self.image(BASE), self.work / "guests")
        return self._variants[name]

    def clonezilla(self, dest: Path) -> Path:
        from fixtures import clonezilla as cz

        shutil.copytree(cz.clonezilla_dir("winxp-x86", "gz", "300kB"), dest)
        return dest


# --- building inputs -------------------------------------------------------------------


def _sparse_copy(src: Path, dest: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dest)], check=True)
    return dest


def _case_dir(tmp: Path) -> tuple[Path, Path]:
    src, out = tmp / "in", tmp / "out"
    src.mkdir(parents=True)
    out.mkdir()
    return src, out


def _convert(src: Path, out: Path, *extra: str) -> list[str]:
    return [str(src), "-o", str(out / "vm.qcow2"), *extra]


def _on_image(img: Path, out: Path, command: str) -> Inputs:
    """The command on one image file (convert writes into ``out``)."""
    return Inputs(_convert(img, out) if command == "convert" else [str(img)], [img], out)


def _overlay(base: Path, img: Path) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base),
                    str(img)], check=True)
    return img


def raw_cut_mid_sector(c: Corpus, tmp: Path, command: str) -> Inputs:
    d, out = _case_dir(tmp)
    img = _sparse_copy(c.image(BASE), d / "disk.img")
    os.truncate(img, img.stat().st_size - 300)
    return _on_image(img, out, command)


def raw_cut_inside_partition(c: Corpus, tmp: Path, command: str) -> Inputs:
    d, out = _case_dir(tmp)
    img = _sparse_copy(c.image(BASE), d / "disk.img")
    os.truncate(img, img.stat().st_size // 2)  # whole sectors: only the table tells
    return _on_image(img, out, command)


def gpt_past_end(c: Corpus, tmp: Path, command: str) -> Inputs:
    """A GPT disk of 64 MiB with one partition as large as it can be, cut to 62 MiB."""
    d, out = _case_dir(tmp)
    img = d / "disk.img"
    img.touch()
    os.truncate(img, 64 << 20)
    subprocess.run(["sfdisk", "-q", str(img)], input="label: gpt\n,,\n", text=True,
                   check=True, capture_output=True)
    os.truncate(img, 62 << 20)  # sfdisk ends the partition at 63 MiB (1 MiB aligned)
    return _on_image(img, out, command)


def qcow2_truncated(c: Corpus, tmp: Path, command: str) -> Inputs:
    d, out = _case_dir(tmp)
    img = d / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(c.image(BASE)),
                    str(img)], check=True)
    os.truncate(img, 100_000)
    return _on_image(img, out, command)


def qcow2_backing_missing(c: Corpus, tmp: Path, command: str) -> Inputs:
    d, out = _case_dir(tmp)
    base = _sparse_copy(c.image(BASE), d / "base.img")
    img = _overlay(base, d / "disk.qcow2")
    base.unlink()
    return _on_image(img, out, command)


def qcow2_backing_is_output(c: Corpus, tmp: Path, command: str) -> Inputs:
    """The overlay's backing file is the very file named as output (with --overwrite)."""
    d, out = _case_dir(tmp)
    base = _sparse_copy(c.image(BASE), out / "vm.img")
    img = _overlay(base, d / "disk.qcow2")
    return Inputs([str(img), "-o", str(base), "--format", "raw", "--overwrite"],
                  [img, base], out)


def raw_with_fake_qcow2_header(c: Corpus, tmp: Path, command: str) -> Inputs:
    """A raw disk whose boot code area starts with a qcow2 header naming a backing file.

    Probing it as qcow2 would read (and, with a writable overlay, trust) ``secret``: it
    must stay raw, and the Windows on it must be found as usual.
    """
    d, out = _case_dir(tmp)
    img = _sparse_copy(c.image(BASE), d / "disk.img")
    secret = d / "secret"
    secret.write_bytes(b"not a disk\n" * 100)
    name = str(secret).encode()
    header = struct.pack(">4sIQIIQ", b"QFI\xfb", 2, 104, len(name), 16, 1 << 30)
    header += bytes(104 - len(header)) + name
    with open(img, "r+b") as f:
        f.write(header)  # only the boot code (bytes 0-439) is overwritten
    argv = [str(img), "--json"] if command != "convert" else _convert(img, out)
    return Inputs(argv, [img, secret], out)


def iso_truncated(c: Corpus, tmp: Path, command: str) -> Inputs:
    from fixtures import virtio_iso

    d, out = _case_dir(tmp)
    iso = virtio_iso.build_iso("current", d / "virtio-win.iso")
    os.truncate(iso, 40 * 2048)
    return Inputs(_convert(c.image(BASE), out, "--virtio-win", str(iso)),
                  [c.image(BASE), iso], out)


def iso_directory_loop(c: Corpus, tmp: Path, command: str) -> Inputs:
    from tests.corpus_guests import iso_with_directory_loop

    d, out = _case_dir(tmp)
    iso = iso_with_directory_loop(d / "loop.iso")
    return Inputs(_convert(c.image(BASE), out, "--virtio-win", str(iso)),
                  [c.image(BASE), iso], out)


def _cz(mutate: Callable[[Path], None]) -> Callable[[Corpus, Path, str], Inputs]:
    def make(c: Corpus, tmp: Path, command: str) -> Inputs:
        d, out = _case_dir(tmp)
        cz_dir = c.clonezilla(d / "img")
        mutate(cz_dir)
        files = sorted(p for p in cz_dir.iterdir() if p.is_file())
        if command == "convert":
            return Inputs(_convert(cz_dir, out), files, out)
        return Inputs([str(cz_dir), "-o", str(out / "disk.img")], files, out)

    return make


def _corrupt_chunk(d: Path) -> None:
    c = _chunks(d, "sda2")[-1]  # the last partition's data: found mid-restore
    data = bytearray(c.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0x5A
    c.write_bytes(data)


def cz_small_output_fs(c: Corpus, tmp: Path, command: str) -> Inputs:
    """The output directory is a 4 MiB tmpfs (unmounted by :func:`run_case`)."""
    d, out = _case_dir(tmp)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(out)], check=True)
    cz_dir = c.clonezilla(d / "img")
    return Inputs([str(cz_dir), "-o", str(out / "disk.img")],
                  sorted(p for p in cz_dir.iterdir() if p.is_file()), out)


def small_output_fs(c: Corpus, tmp: Path, command: str) -> Inputs:
    """Convert into a 4 MiB tmpfs: refused by the up-front space check, before the launch.

    (A filesystem that fills up *after* that check, mid-copy, is
    tests/e2e/test_convert.py::test_full_output_filesystem_leaves_nothing.)
    """
    _d, out = _case_dir(tmp)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(out)], check=True)
    return Inputs(_convert(c.image(BASE), out), [c.image(BASE)], out)


def cz_slow_chunk(c: Corpus, tmp: Path, command: str) -> Inputs:
    """The last chunk of sda1 is a FIFO fed slowly: the restore is caught mid-partition."""
    d, out = _case_dir(tmp)
    cz_dir = c.clonezilla(d / "img")
    chunk = _chunks(cz_dir, "sda1")[-1]
    data = chunk.read_bytes()
    chunk.unlink()
    os.mkfifo(chunk)

    def feed(proc: subprocess.Popen) -> None:
        try:
            fd = os.open(chunk, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader yet
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    fd = os.open(chunk, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                return
        os.set_blocking(fd, True)
        try:
            os.write(fd, data[: len(data) // 2])
            sys.stderr.flush()
            print("p2vimage: corpus: half of the last sda1 chunk sent", file=_TRIGGER)
            time.sleep(3)  # the signal arrives while the reader waits for the rest
        except BrokenPipeError:
            pass
        finally:
            os.close(fd)

    argv = (_convert(cz_dir, out, "-v") if command == "convert"
            else [str(cz_dir), "-o", str(out / "disk.img"), "-v"])
    return Inputs(argv, sorted(p for p in cz_dir.iterdir() if p.is_file() and p != chunk),
                  out, beside=feed)


class _Trigger:
    """Lines the corpus itself announces (from a ``beside`` helper) to the signal logic."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.event = threading.Event()

    def write(self, s: str) -> None:
        if s.strip():
            self.lines.append(s)
            self.event.set()

    def flush(self) -> None:
        pass


_TRIGGER = _Trigger()


def guest(variant: str) -> Callable[[Corpus, Path, str], Inputs]:
    def make(c: Corpus, tmp: Path, cmd: str) -> Inputs:
        _d, out = _case_dir(tmp)
        return _on_image(c.variant(variant), out, cmd)

    return make


def plain(name: str, *extra: str) -> Callable[[Corpus, Path, str], Inputs]:
    def make(c: Corpus, tmp: Path, command: str) -> Inputs:
        _d, out = _case_dir(tmp)
        img = c.image(name)
        argv = _convert(img, out, *extra) if command == "convert" else [str(img), *extra]
        return Inputs(argv, [img], out)

    return make


# --- the cases -------------------------------------------------------------------------

BAD, NOT_READY, OK, USAGE, CONV, TEMP, INTR = 3, 1, 0, 2, 4, 5, 130
TRUNC = r"whole number of 512-byte sectors"
SPACE = r"not enough free space on the filesystem mounted at .*: \d+ bytes .* needed"
PAST = r"past the end of the image .* the capture is truncated"

CASES: list[Case] = [
    # images that cannot be used as they are: refused before any appliance starts
    *[Case(f"raw cut mid-sector ({cmd})", cmd, raw_cut_mid_sector, BAD, TRUNC)
      for cmd in ("inspect", "check", "convert")],
    *[Case(f"raw cut inside a partition ({cmd})", cmd,
           raw_cut_inside_partition, BAD,
           r"partition \d ends at byte \d+, " + PAST) for cmd in
      ("inspect", "check", "convert")],
    Case("GPT partition past the end (inspect)", "inspect",
         gpt_past_end, BAD, r"GPT partition \d ends .*truncated"),
    *[Case(f"qcow2 truncated ({cmd})", cmd, qcow2_truncated,
           BAD, r"truncated qcow2 image: its L1 table ends") for cmd in ("inspect", "convert")],
    *[Case(f"qcow2 backing file missing ({cmd})", cmd,
           qcow2_backing_missing, BAD,
           r"not a usable qcow2 image: Could not open .*base\.img") for cmd in
      ("inspect", "check", "convert")],
    Case("qcow2 backing file is the output", "convert",
         qcow2_backing_is_output, USAGE,
         r"is a backing file of the source"),
    Case("virtio-win ISO truncated", "convert", iso_truncated,
         BAD, r"--virtio-win .*"),
    Case("virtio-win ISO with a directory loop", "convert",
         iso_directory_loop, BAD, r"--virtio-win .*loop"),
    # Clonezilla directories
    *[Case(f"Clonezilla chunk missing ({cmd})", cmd, _cz(_missing_middle), BAD,
           r"sda1: chunk sda1\.ntfs-ptcl-img\.gz\.ab is missing") for cmd in
      ("restore-clonezilla", "convert")],
    Case("Clonezilla extra chunk", "restore-clonezilla",
         _cz(_extra), BAD,
         r"sda5: .*(after the end|after its last block|truncated)"),
    *[Case(f"Clonezilla chunk corrupt ({cmd})", cmd, _cz(_corrupt_chunk), BAD,
           r"sda2: .*corrupt gzip data") for cmd in
      ("restore-clonezilla", "convert")],
    Case("output filesystem too small (restore)", "restore-clonezilla",
         cz_small_output_fs, TEMP, SPACE),
    Case("output filesystem too small (convert)", "convert", small_output_fs, TEMP, SPACE),
    *[Case(f"{sig.name} mid-restore", "restore-clonezilla",
           cz_slow_chunk, INTR,
           rf"interrupted by {sig.name}", signal=(sig, r"corpus: half of the last sda1"))
      for sig in (signal.SIGINT, signal.SIGTERM)],
    Case("SIGTERM mid-restore (convert)", "convert", cz_slow_chunk, INTR,
         r"interrupted by SIGTERM", signal=(signal.SIGTERM, r"corpus: half of the last sda1")),
    # guests that need the appliance to be seen
    Case("raw with a fake qcow2 header stays raw (inspect)", "inspect",
         raw_with_fake_qcow2_header, OK,
         r'"product_name": "Microsoft Windows Server 2003"', appliance=True),
    Case("SYSTEM hive cut inside its header (inspect)", "inspect", guest("hive-cut-header"),
         BAD, r"hive", appliance=True),
    Case("SYSTEM hive cut inside a bin (convert)", "convert", guest("hive-cut-bin"), BAD,
         r"hive", appliance=True),
    Case("SYSTEM hive bad header checksum (check)", "check", guest("hive-bad-checksum"), BAD,
         r"hive", appliance=True),
    Case("SYSTEM hive key-tree cycle (convert)", "convert", guest("hive-cycle"), BAD,
         r"cycle", appliance=True),
    Case("SYSTEM hive huge value (inspect)", "inspect", guest("hive-huge-value"), BAD,
         r"hive", appliance=True),
    Case("driver.cab truncated (convert)", "convert", guest("cab-truncated"), BAD,
         r"driver\.cab", appliance=True),
    Case("driver.cab bad checksum (convert)", "convert", guest("cab-bad-checksum"), BAD,
         r"driver\.cab", appliance=True),
    Case("driver.cab with ..\\ and absolute names (convert)", "convert",
         guest("cab-traversal"), CONV,
         r"not found in the guest .*driver\.cab \(\d+ member\(s\) with unsafe names ignored",
         appliance=True),
    Case("NTFS marked dirty (check)", "check", guest("ntfs-dirty"), NOT_READY,
         r"hygiene\.ntfs-dirty", appliance=True, slow=True),
    Case("NTFS marked dirty (convert)", "convert", guest("ntfs-dirty"), BAD,
         r"dirty", appliance=True),
    Case("hiberfil.sys present (check)", "check", guest("hiberfil"), NOT_READY,
         r"hygiene\.hibernated", appliance=True, slow=True),
    Case("hiberfil.sys present (convert)", "convert", guest("hiberfil"), BAD,
         r"hibernated", appliance=True),
    # signals during each phase of the appliance commands
    Case("SIGINT while the appliance starts (inspect)", "inspect", plain(BASE, "-v"), INTR,
         r"interrupted by SIGINT", appliance=True,
         signal=(signal.SIGINT, r"phase: launch")),
    Case("SIGTERM during the checks (check)", "check", plain(BASE, "-v"), INTR,
         r"interrupted by SIGTERM", appliance=True, signal=(signal.SIGTERM, r"phase: checks")),
    Case("SIGTERM while the appliance starts (convert)", "convert", plain(BASE, "-v"), INTR,
         r"interrupted by SIGTERM", appliance=True, slow=True,
         signal=(signal.SIGTERM, r"phase: launch")),
    Case("SIGINT while planning (convert)", "convert", plain(BASE, "-v"), INTR,
         r"interrupted by SIGINT", appliance=True, signal=(signal.SIGINT, r"phase: plan")),
    Case("SIGTERM while copying (convert)", "convert", plain(BASE, "-v"), INTR,
         r"interrupted by SIGTERM", appliance=True,
         signal=(signal.SIGTERM, r"phase: copy disk 1")),
]


# --- running ---------------------------------------------------------------------------


def _unmount(path: Path) -> None:
    if os.path.ismount(path):
        subprocess.run(["umount", str(path)], check=False)


def run_case(case: Case, corpus: Corpus, tmp: Path, timeout: float = 600) -> Row:
    """Run one case and record every way it differs from the promise."""
    row = Row(case)
    try:
        inputs = case.make(corpus, tmp, case.command)
    except Exception as exc:  # noqa: BLE001 - a broken case is a failing row, not a crash
        row.problems.append(f"could not build the input: {type(exc).__name__}: {exc}")
        return row
    try:
        return _run(case, inputs, row, timeout)
    finally:
        _unmount(inputs.outdir)


_HV: list[Path] = []  # the hypervisor wrapper counting launches, made once per process


def _launch_watch() -> LaunchWatch:
    if not _HV:
        d = Path(tempfile.mkdtemp(prefix="corpus-hv-"))
        atexit.register(shutil.rmtree, d, True)
        _HV.append(wrapper(d))
    return LaunchWatch(_HV[0], _HV[0].parent)


def _run(case: Case, inputs: Inputs, row: Row, timeout: float) -> Row:
    before_hash = {p: sha256(p) for p in inputs.sources if p.is_file()}
    before_out = set(os.listdir(inputs.outdir))
    _TRIGGER.lines.clear()
    _TRIGGER.event.clear()
    watch = _launch_watch()
    t0 = time.monotonic()
    proc = subprocess.Popen([str(P2VIMAGE), case.command, *inputs.argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **watch.env()})
    err_lines: list[str] = []
    signalled = threading.Event()

    def maybe_signal(line: str) -> None:
        if case.signal and not signalled.is_set() and re.search(case.signal[1], line):
            signalled.set()
            proc.send_signal(case.signal[0])

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_lines.append(line)
            maybe_signal(line)

    def watch_trigger() -> None:
        while proc.poll() is None and not signalled.is_set():
            if _TRIGGER.event.wait(0.1):
                for line in list(_TRIGGER.lines):
                    maybe_signal(line)

    threads = [threading.Thread(target=read_err, daemon=True),
               threading.Thread(target=watch_trigger, daemon=True)]
    if inputs.beside is not None:
        threads.append(threading.Thread(target=inputs.beside, args=(proc,), daemon=True))
    for t in threads:
        t.start()
    out_chunks: list[str] = []

    def read_out() -> None:
        assert proc.stdout is not None
        out_chunks.append(proc.stdout.read())

    threads.append(threading.Thread(target=read_out, daemon=True))
    threads[-1].start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        row.problems.append(f"no exit within {timeout:.0f} s")
    for t in threads:
        t.join(timeout=10)
    out = "".join(out_chunks)
    row.seconds = time.monotonic() - t0
    row.code = proc.returncode
    err = "".join(err_lines)
    errors = [ln for ln in err.splitlines() if ln.startswith("p2vimage: error: ")]
    row.message = errors[-1].removeprefix("p2vimage: error: ") if errors else ""
    if case.signal and not signalled.is_set():
        row.problems.append("the signal's phase was never reached")
    if row.code != case.code:
        row.problems.append(f"exit {row.code}, expected {case.code}")
    if case.code in (OK, NOT_READY):  # a result, not an error: the words are on stdout
        if not re.search(case.fragment, out):
            row.problems.append(f"stdout lacks /{case.fragment}/")
        if errors:
            row.problems.append("an error line was printed")
        found = re.search(case.fragment, out)
        row.message = row.message or (found.group(0) if found else "(no match)")
    else:
        if len(errors) != 1:
            row.problems.append(f"{len(errors)} error lines")
        if not re.search(case.fragment, row.message):
            row.problems.append(f"message lacks /{case.fragment}/")
    if "Traceback" in err:
        row.problems.append("a traceback was printed")
    changed = [p.name for p, h in before_hash.items() if sha256(p) != h]
    if changed:
        row.problems.append(f"source changed: {', '.join(changed)}")
    left = sorted(set(os.listdir(inputs.outdir)) - before_out)
    if left:
        row.problems.append(f"left in the output directory: {', '.join(left)}")
    launches = watch.count
    shutil.rmtree(watch.log.parent, ignore_errors=True)
    if not case.appliance and launches and not case.signal:
        row.problems.append(f"the hypervisor was started {launches} time(s): not refused "
                            "before the appliance")
    return row


def table(rows: list[Row]) -> str:
    """The corpus as a table: case, command, expected, observed, verdict."""
    head = ("case", "command", "expected", "observed", "time", "result")
    body = []
    for r in rows:
        message = re.sub(r"/\S*/case-\d+/", "", r.message)  # the scratch paths say nothing
        observed = f"{r.code}: {message}" if r.code is not None else "-"
        body.append((r.case.name, r.case.command, f"{r.case.code} /{r.case.fragment}/",
                     observed[:110], f"{r.seconds:.1f}s",
                     "pass" if r.ok else "FAIL: " + "; ".join(r.problems)))
    widths = [min(60, max(len(x[i]) for x in [head, *body])) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append("  ".join(x.ljust(w) for x, w in zip(b, widths, strict=True)).rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.corpus", description=__doc__.split(
        "\n\n")[0])
    ap.add_argument("-k", metavar="REGEX", help="only the cases whose name matches")
    ap.add_argument("--no-appliance", action="store_true", help="only the pre-launch cases")
    args = ap.parse_args(argv)
    import tempfile

    cases = [c for c in CASES if (not args.k or re.search(args.k, c.name))
             and not (args.no_appliance and c.appliance)]
    with tempfile.TemporaryDirectory(prefix="p2v-corpus-") as td:
        corpus = Corpus(Path(td))
        rows = []
        for i, case in enumerate(cases):
            rows.append(run_case(case, corpus, Path(td) / f"case-{i}"))
            r = rows[-1]
            print(f"[{i + 1}/{len(cases)}] {'pass' if r.ok else 'FAIL'} {case.name} "
                  f"({r.seconds:.1f} s)", file=sys.stderr)
    print(table(rows))
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} cases pass")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
