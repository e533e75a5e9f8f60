"""``batch run --engine ray`` on a real 2-node Ray cluster on this machine.

Two ``ray start`` nodes (the head and one joined to it), each offering ``p2v=1`` and its
own ``host:NAME``; four machines: three real conversions of the demo capture and one
missing capture; two in flight, so one conversion runs on each node.  While both run,
the second node's raylet is killed: its conversion is lost, retried on the head by the
driver, and every good machine is converted exactly once (one ``done`` each, no
``.partial`` left, each output a valid qcow2 whose report names it), the bad one failed
once with its reason, and afterwards no process of the cluster is left (each found by
a marker in its environment and ended by pid).

A fast test checks the refusals that need a cluster but no conversion.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2vimage import batch
from p2vimage.batch.ledger import Ledger
from p2vimage.errors import UsageError

ray = pytest.importorskip("ray")
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
    def __init__(self, token: str, temp: Path, port: int, node2_port: int) -> None:
        self.token, self.temp, self.port, self.node2_port = token, temp, port, node2_port
        self.address = f"127.0.0.1:{port}"

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
    env = {**os.environ, MARKER: token, "RAY_USAGE_STATS_ENABLED": "0"}
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
        yield Cluster(token, temp, port, node2)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop(_marked(token))
        assert not [p for p in _marked(token) if _running(p)], "Ray processes left"
        subprocess.run(["rm", "-rf", str(temp)], check=False)


@pytest.mark.slow
def test_refusals_need_no_conversion(cluster: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("machines: [{name: a, source: /x.img, output: /o/a.qcow2, host: hv9}]\n")
    with pytest.raises(UsageError, match="no Ray node offers 'host:hv9'"):
        batch.run(path, tmp_path / "state", engine="ray", address=cluster.address)
    with pytest.raises(UsageError, match="--address"):
        batch.run(path, tmp_path / "state", engine="ray", address=None)


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
    box: dict = {}

    def go() -> None:
        try:
            box["result"] = batch.run(path, state, engine="ray", address=cluster.address,
                                      max_in_flight=2, retries=2, retry_delay=1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            box["error"] = exc

    runner = threading.Thread(target=go)
    runner.start()
    # wait until two good conversions run (one per node), well into their work
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        started = {e["machine"] for e in Ledger(state).events() if e["event"] == "started"}
        if len(started & set(good)) >= 2:
            break
        time.sleep(0.5)
    time.sleep(15)
    os.kill(cluster.node2_raylet(), signal.SIGKILL)
    runner.join(1500)
    assert not runner.is_alive() and "error" not in box, box.get("error")
    result = box["result"]
    by = {m.name: m for m in result.machines}
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
    assert by["bad"].state == "failed" and by["bad"].exit_code == 3
    assert by["bad"].error_type == "SourceNotFoundError" and by["bad"].attempts == 1
    assert [e["machine"] for e in events if e["event"] == "started"].count("bad") == 1
    assert result.exit_code == 1
    assert not list((tmp_path / "out").glob("*.partial"))
