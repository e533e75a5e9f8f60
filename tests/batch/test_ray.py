"""``batch run --engine ray`` on a real 2-node Ray cluster on this machine.

Two ``ray start`` nodes (the head and one joined to it), token authentication on, each
offering ``p2v=1`` and its own ``host:NAME``; four machines: three real conversions of
the demo capture and one missing capture; two in flight, so one conversion runs on each
node.  While both run, the second node's raylet is killed: its conversion is lost,
retried on the head by the driver, and every good machine is converted exactly once
(one ``done`` each, no ``.partial`` left, each output a valid qcow2 whose report names
it), the bad one failed once with its reason, and afterwards no process of the cluster
is left (each found by a marker in its environment and ended by pid).

Each output equals a single conversion of the same source with the same options (the
manifest row's, through ``p2vimage.convert``; it runs in a thread of this process once the
node is killed, on the CPU the lost node leaves idle): one read-only appliance reads the
reference and the three outputs (``tests/readback.py``) and compares the SHA-256 of every
file of the system volume (among them the staged drivers and every file the plan wrote,
each also equal to the plan's digest), the full registry exports of SYSTEM and SOFTWARE,
and the boot sectors (the MBR's boot code and the system volume's first sector).

The refusals that need a cluster but no conversion are checked on the same cluster
(slow too: starting it takes ~20 s), and so is where retries run (before the node is
killed): machines whose outputs this process holds end each attempt in exit 5 within
seconds, and the ledger shows each retry of an unpinned one on the other node.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

import p2vimage
from p2vimage import cli
from p2vimage.batch import manifest
from p2vimage.batch.ledger import Ledger
from p2vimage.targets.atomic import AtomicOutputs
from tests.conftest import P2VIMAGE
from tests.readback import read_back

pytest.importorskip("ray")
RAY = Path(sys.executable).with_name("ray")
MARKER = "P2VIMAGE_RAY_TEST"


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _marked(token: str) -> list[int]:
    """Pids of every process whose environment carries our marker."""
    pids = []
    needle = f"{MARKER}={token}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


def _stop(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists()
                                                  and _running(p) for p in pids):
            time.sleep(0.2)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


class Cluster:
    def __init__(self, token: str, temp: Path, port: int, node2_port: int,
                 env: dict[str, str]) -> None:
        self.token, self.temp, self.port, self.node2_port = token, temp, port, node2_port
        self.address = f"127.0.0.1:{port}"
        self.env = env  # a driver's environment: the token, the marker

    def batch_run(self, manifest: Path, state: Path, *extra: str,
                  env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """A driver: ``p2vimage batch run --engine ray --json`` in a process of its own."""
        return subprocess.Popen([str(P2VIMAGE), "batch", "run", str(manifest), "--state",
                                 str(state), "--engine", "ray", "--address", self.address,
                                 "--json", *extra], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env or self.env)

    def node2_raylet(self) -> int:
        for pid in _marked(self.token):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"/raylet") and \
                    f"--node_manager_port={self.node2_port}".encode() in cmd:
                return pid
        raise AssertionError("the second node's raylet is not running")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    token = uuid.uuid4().hex
    temp = Path(tempfile.mkdtemp(prefix="p2vray-", dir="/tmp"))  # (socket paths are short)
    # Token authentication on, as docs/batch.md asks (and as newer Rays do by default):
    # the nodes and the drivers (`p2vimage batch run` processes) get it from their
    # environment.  (Not this process's: Ray reads the token once, when first imported.)
    env = {**os.environ, MARKER: token, "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    port, node2 = _free_port(), _free_port()
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    try:
        subprocess.run([str(RAY), "start", "--head", "--port", str(port), "--temp-dir",
                        str(temp), "--include-dashboard=false",
                        "--resources", json.dumps({"p2v": 1, "host:hv1": 1}), *common],
                       env=env, check=True, capture_output=True, timeout=180)
        subprocess.run([str(RAY), "start", "--address", f"127.0.0.1:{port}",
                        "--node-manager-port", str(node2),
                        "--resources", json.dumps({"p2v": 1, "host:hv2": 1}), *common],
                       env=env, check=True, capture_output=True, timeout=180)
        yield Cluster(token, temp, port, node2, env)
    finally:
        # A raylet may fork a worker after a scan: stop what is marked until a scan
        # finds nothing running (or a minute passes, and the assertion says so).
        deadline = time.monotonic() + 60
        while (left := [p for p in _marked(token) if _running(p)]) and \
                time.monotonic() < deadline:
            _stop(left)
        assert not [p for p in _marked(token) if _running(p)], "Ray processes left"
        subprocess.run(["rm", "-rf", str(temp)], check=False)


@pytest.mark.slow
def test_refusals_need_no_conversion(cluster: Cluster, tmp_path: Path) -> None:
    """A host no node offers, no address, a driver without the token: exit 2, one line,
    nothing started."""
    path = tmp_path / "fleet.yaml"
    path.write_text("machines: [{name: a, source: /x.img, output: /o/a.qcow2, host: hv9}]\n")
    cases = [
        ([], None, "no Ray node offers 'host:hv9'"),
        ([], {**cluster.env, "RAY_AUTH_TOKEN": "not-the-token"},
         f"--address {cluster.address}: cannot join the Ray cluster"),
    ]
    for extra, env, message in cases:
        proc = cluster.batch_run(path, tmp_path / "state", *extra, env=env)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err
        assert message in err and json.loads(out)["error"]["exit_code"] == 2
    r = subprocess.run([str(P2VIMAGE), "batch", "run", str(path), "--state",
                        str(tmp_path / "state"), "--engine", "ray"], capture_output=True,
                       text=True, timeout=60, env={k: v for k, v in cluster.env.items()
                                                   if k != "RAY_ADDRESS"})
    assert r.returncode == 2 and "give --address" in r.stderr
    assert not [e for e in Ledger(tmp_path / "state").events() if e["event"] == "started"]


@pytest.mark.slow
def test_a_retry_prefers_another_node(cluster: Cluster, tmp_path: Path) -> None:
    """Two machines whose outputs this process holds (their ``.partial`` claimed, as a
    conversion running elsewhere would): each attempt ends in exit 5 within seconds and
    is retried.  The unpinned one alternates between the two nodes, each retry steered
    away from where the last attempt ran; the one pinned to hv1 stays there.  The ledger
    names every attempt's node, and the holder's files are never touched.  One in flight:
    left to itself, Ray puts every attempt on the driver's own node (hv1, free again), so
    the alternation is the preference's doing (without it this test fails)."""
    (tmp_path / "zero.img").write_bytes(bytes(1 << 20))
    path = tmp_path / "fleet.yaml"
    path.write_text("defaults: {output-dir: out}\nmachines:\n"
                    "  - {name: roam, source: zero.img}\n"
                    "  - {name: pinned, source: zero.img, host: hv1}\n")
    outs = [tmp_path / "out" / "roam.qcow2", tmp_path / "out" / "pinned.qcow2"]
    outs[0].parent.mkdir()
    state = tmp_path / "state"
    with AtomicOutputs(outs, overwrite=False):
        driver = cluster.batch_run(path, state, "--max-in-flight", "1", "--retries", "2",
                                   "--retry-delay", "0")
        out, err = driver.communicate(timeout=300)
        held = sorted(p.name for p in outs[0].parent.iterdir())
    assert driver.returncode == 1, err[-3000:]
    by = {m["name"]: m for m in json.loads(out)["machines"]}
    for name in by:
        assert (by[name]["state"], by[name]["attempts"], by[name]["error_type"]) == (
            "failed", 3, "OutputBusyError"), by[name]
    events = Ledger(state).events()

    def hosts(name: str, kind: str) -> list[str]:
        return [e["host"] for e in events if e["event"] == kind and e["machine"] == name]

    ran = hosts("roam", "finished")
    assert ran[0] != ran[1] != ran[2] and set(ran) == {"hv1", "hv2"}, ran
    assert hosts("roam", "placed") == ran  # known while it ran, not only at its end
    assert hosts("roam", "started") == ["ray (any node)", f"ray (prefer {ran[1]})",
                                        f"ray (prefer {ran[2]})"]
    assert hosts("pinned", "started") == hosts("pinned", "placed") == ["hv1"] * 3
    assert hosts("pinned", "finished") == ["hv1"] * 3
    assert held == ["pinned.qcow2.partial", "roam.qcow2.partial"]  # the holder's, intact
    assert not list(outs[0].parent.iterdir())


@pytest.mark.slow
@pytest.mark.appliance
def test_a_node_killed_mid_run(cluster: Cluster, images, tmp_path: Path) -> None:
    from fixtures.images import DEMO

    good = ["m0", "m1", "m2"]
    rows = "".join(f"  - {{name: {n}, source: \"{images[DEMO]}\"}}\n" for n in good)
    path = tmp_path / "fleet.yaml"
    path.write_text("defaults: {output-dir: out}\nmachines:\n" + rows
                    + "  - {name: bad, source: missing.img}\n")
    state = tmp_path / "state"
    driver = cluster.batch_run(path, state, "--max-in-flight", "2", "--retries", "2",
                               "--retry-delay", "1")
    # wait until node 2 runs a good conversion, its output claimed (the .partial exists
    # from the claim to the commit: the kill lands while that conversion works)
    deadline = time.monotonic() + 300
    on2: set[str] = set()
    while time.monotonic() < deadline:
        on2 = {e["machine"] for e in Ledger(state).events()
               if e["event"] == "placed" and e.get("host") == "hv2"} & set(good)
        if any((tmp_path / "out" / f"{n}.qcow2.partial").exists() for n in on2):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no conversion was seen working on node 2 (placed there: {on2})")
    os.kill(cluster.node2_raylet(), signal.SIGKILL)
    # the reference, converted while the head alone runs the rest (one conversion at a time)
    with ThreadPoolExecutor(1) as pool:
        single = pool.submit(_single, path, "m0", tmp_path / "single" / "m0.qcow2")
        out, err = driver.communicate(timeout=1500)
        waited = time.monotonic()
        single_out, single_plan = single.result()
        waited = time.monotonic() - waited
    assert out.strip(), (driver.returncode, err[-3000:])
    result = json.loads(out)
    by = {m["name"]: SimpleNamespace(**m) for m in result["machines"]}
    events = Ledger(state).events()
    finished = [e for e in events if e["event"] == "finished"]
    for n in good:
        assert by[n].state == "done", (n, by[n])
        assert [e["outcome"] for e in finished if e["machine"] == n].count("done") == 1
        report = json.loads((state / "machines" / n / "report.json").read_text())
        out = Path(report["outputs"][0])
        assert out == tmp_path / "out" / f"{n}.qcow2"
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(out)],
                                         capture_output=True, check=True).stdout)
        assert info["format"] == "qcow2"
    lost = [e for e in finished if e["outcome"] == "retry"]
    assert lost, "the killed node's conversion was retried"
    assert all(e["message"].startswith("worker lost") for e in lost)
    # the lost attempt is known to have run on the killed node; with no other node
    # left, its retry (no preference possible) ran on the head
    assert {e["host"] for e in lost} == {"hv2"}, lost
    for e in lost:
        after = [f for f in finished if f["machine"] == e["machine"]
                 and f["attempt"] > e["attempt"]]
        assert [f["host"] for f in after] == ["hv1"], after
    assert by["bad"].state == "failed" and by["bad"].exit_code == 3
    assert by["bad"].error_type == "SourceNotFoundError" and by["bad"].attempts == 1
    assert [e["machine"] for e in events if e["event"] == "started"].count("bad") == 1
    assert result["exit_code"] == driver.returncode == 1, err
    assert not list((tmp_path / "out").glob("*.partial"))
    # every output reads back as the single conversion does
    t0 = time.monotonic()
    ref, *got = read_back([single_out, *(tmp_path / "out" / f"{n}.qcow2" for n in good)],
                          tmp_path)
    print(f"\nreference conversion: {waited:.1f} s waited for after the batch; read-back of "
          f"4 disks ({len(ref.files)} files each): {time.monotonic() - t0:.1f} s")
    for n, back in zip(good, got, strict=True):
        assert back.boot == ref.boot, n
        assert back.hives == ref.hives, n
        assert back.files == ref.files, n
    written = {f["guest_path"]: f["sha256"] for f in single_plan["files"]
               if f["action"] == "write"}
    assert any("/system32/drivers/" in f.lower() for f in written), written
    assert {f: ref.file(f) for f in written} == written  # compared, and as planned
    assert len(ref.files) > 10 and set(ref.hives) == {"system", "software"}
    assert len(ref.boot["mbr"]) == 446 and ref.boot["volume"][510:] == b"\x55\xaa"


def _single(path: Path, name: str, output: Path) -> tuple[Path, dict]:
    """Machine ``name`` of the manifest at ``path`` converted alone with its row's
    options, by the API: (the output, the report's plan)."""
    m = manifest.load(path).by_name()[name]
    args = manifest.convert_parser().parse_args([*m.sources, "-o", str(output), *m.options])
    output.parent.mkdir()
    report = p2vimage.convert(list(m.sources), output, **cli.convert_kwargs(args))
    return output, json.loads(json.dumps(report.to_dict(), default=str))["plan"]
