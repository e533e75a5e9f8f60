"""``batch emit-k8s`` and ``batch run-index``: Indexed Jobs valid against Kubernetes'
published OpenAPI schema (kubernetes-validate's copy, strict: unknown fields refused),
one per host of the manifest (plus one for the machines without a host), and each pod's
own command converting exactly its machine, exiting with the conversion's code.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from p2vimage.batch import k8s
from p2vimage.batch.engine import PERMANENT
from p2vimage.batch.ledger import Ledger
from p2vimage.batch.manifest import load
from p2vimage.errors import UsageError
from tests.conftest import P2VIMAGE

ROOT = Path(__file__).resolve().parents[2]
# backoffLimitPerIndex and the FailIndex action are GA since 1.33; check the newest too
VERSIONS = ["1.33.0", kubernetes_validate.latest_version()]


def fleet(tmp_path: Path, n: int, suffix: str = ".yaml") -> Path:
    srv = tmp_path / "srv"
    srv.mkdir(exist_ok=True)
    if suffix == ".csv":
        path = srv / "fleet.csv"
        path.write_text("name,source,output,memory\n" + "".join(
            f"m{i},{srv}/m{i}.img,{srv}/out/m{i}.qcow2,2G\n" for i in range(n)))
    else:
        path = srv / "fleet.yaml"
        path.write_text(f"defaults: {{output-dir: {srv}/out}}\nmachines:\n" + "".join(
            f"  - {{name: m{i}, source: {srv}/m{i}.img}}\n" for i in range(n)))
    return path


def emit(tmp_path: Path, manifest: Path, *extra: str) -> tuple[subprocess.CompletedProcess,
                                                               list[dict]]:
    """``emit-k8s``'s exit and its YAML documents (one per Job)."""
    r = subprocess.run([str(P2VIMAGE), "batch", "emit-k8s", str(manifest), "--state",
                        str(tmp_path / "srv" / "state"), "--mount", str(tmp_path / "srv"),
                        *extra], capture_output=True, text=True, timeout=60)
    return r, (list(yaml.safe_load_all(r.stdout)) if r.returncode == 0 else [])


@pytest.mark.parametrize(("n", "suffix", "extra"), [
    (1, ".yaml", []),
    (3, ".yaml", ["--namespace", "migration", "--max-in-flight", "2", "--retries", "0"]),
    (12, ".csv", ["--image", "registry.example/p2vimage:0.1", "--pvc", "captures",
                  "--memory", "4Gi", "--name", "wave-3"]),
])
def test_emitted_job_is_valid_kubernetes(tmp_path: Path, n: int, suffix: str,
                                         extra: list[str]) -> None:
    r, (job,) = emit(tmp_path, fleet(tmp_path, n, suffix), *extra)
    assert r.returncode == 0, r.stderr
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == n
    assert spec["parallelism"] == min(n, 2 if "2" in extra else 4)
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailIndex" and rule["onExitCodes"]["values"] == sorted(PERMANENT)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # a podFailurePolicy requires it
    (c,) = pod["containers"]
    assert c["name"] == rule["onExitCodes"]["containerName"]
    assert c["resources"]["limits"]["devices.kubevirt.io/kvm"] == "1"
    assert c["command"][:3] == ["p2vimage", "batch", "run-index"]
    assert "--machines" not in c["command"] and "nodeSelector" not in pod  # row = index
    assert c["volumeMounts"][0]["mountPath"] == str(tmp_path / "srv")
    # the header maps every index to its machine
    assert f"#   {n - 1}: m{n - 1}" in r.stdout


def test_a_schema_violation_is_caught(tmp_path: Path) -> None:
    """The validator is not a rubber stamp: a misspelt field and a bad type fail."""
    (obj,) = k8s.jobs(load(fleet(tmp_path, 2)), tmp_path / "srv" / "state", image="i",
                      pvc="p", mount=tmp_path / "srv")
    obj["spec"]["backoffLimitPerIdx"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, VERSIONS[0], strict=True)
    del obj["spec"]["backoffLimitPerIdx"]
    obj["spec"]["completions"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, VERSIONS[0], strict=True)


def test_paths_off_the_shared_volume_are_refused(tmp_path: Path) -> None:
    path = fleet(tmp_path, 2)
    path.write_text(path.read_text() + "  - {name: x, source: /elsewhere/x.img}\n")
    r, _ = emit(tmp_path, path)
    assert r.returncode == 2
    assert "machines[2] (x): source /elsewhere/x.img" in r.stderr
    with pytest.raises(UsageError, match="--name"):
        k8s.jobs(load(fleet(tmp_path, 1)), tmp_path, image="i", pvc="p", mount=tmp_path,
                 name="Bad_Name")


def test_run_index_converts_its_row_and_exits_with_its_code(tmp_path: Path) -> None:
    path = fleet(tmp_path, 3)
    state = tmp_path / "srv" / "state"
    env = {**os.environ, "JOB_COMPLETION_INDEX": "1"}
    r = subprocess.run([str(P2VIMAGE), "batch", "run-index", str(path), "--state",
                        str(state)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 3, r.stderr  # the conversion's own code: FailIndex
    assert r.stdout.startswith("m1: failed (exit 3)")
    started = [e["machine"] for e in Ledger(state).events() if e["event"] == "started"]
    assert started == ["m1"]
    assert not (state / "summary.json").exists()  # pods share the state: the ledger only
    status = subprocess.run([str(P2VIMAGE), "batch", "status", "--state", str(state),
                             "--json"], capture_output=True, text=True, timeout=60)
    assert [m["state"] for m in json.loads(status.stdout)["machines"]] == ["failed"]
    env["JOB_COMPLETION_INDEX"] = "3"
    r = subprocess.run([str(P2VIMAGE), "batch", "run-index", str(path), "--state",
                        str(state)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "index 3 is not a row" in r.stderr


HOSTED_YAML = """\
defaults: {{output-dir: {srv}/out}}
machines:
  - {{name: a, source: {srv}/a.img, host: hv07}}
  - {{name: b, source: {srv}/b.img}}
  - {{name: c, source: {srv}/c.img, host: hv08.dc1.example}}
  - {{name: d, source: {srv}/d.img, host: hv07}}
  - {{name: e, source: {srv}/e.img}}
"""
HOSTED_CSV = """\
name,source,output,host
a,{srv}/a.img,{srv}/out/a.qcow2,hv07
b,{srv}/b.img,{srv}/out/b.qcow2,
c,{srv}/c.img,{srv}/out/c.qcow2,hv08.dc1.example
d,{srv}/d.img,{srv}/out/d.qcow2,hv07
e,{srv}/e.img,{srv}/out/e.qcow2,
"""


@pytest.mark.parametrize("suffix", [".yaml", ".csv"])
def test_hosts_split_the_fleet_into_one_job_per_host(tmp_path: Path, suffix: str) -> None:
    """One Job for the machines without a host and one per host, pinned by a
    nodeSelector; each Job's completion index i, run by the pod's own command, converts
    the Job's i-th machine, the ledger names the node (the downward API's
    ``spec.nodeName``), and ``batch status`` reads what the pods wrote."""
    srv = tmp_path / "srv"
    srv.mkdir()
    path = srv / f"fleet{suffix}"
    path.write_text((HOSTED_YAML if suffix == ".yaml" else HOSTED_CSV).format(srv=srv))
    r, jobs = emit(tmp_path, path, "--name", "wave-1", "--max-in-flight", "2")
    assert r.returncode == 0, r.stderr
    for job in jobs:
        for version in VERSIONS:
            kubernetes_validate.validate(job, version, strict=True)
    names = [j["metadata"]["name"] for j in jobs]
    assert names == ["wave-1", "wave-1-hv07", "wave-1-hv08-dc1-example"]
    selectors = [j["spec"]["template"]["spec"].get("nodeSelector") for j in jobs]
    assert selectors == [None, {"kubernetes.io/hostname": "hv07"},
                         {"kubernetes.io/hostname": "hv08.dc1.example"}]
    assert [j["spec"]["completions"] for j in jobs] == [2, 2, 1]
    assert [j["spec"]["parallelism"] for j in jobs] == [2, 2, 1]  # --max-in-flight per Job
    assert "# wave-1-hv07 (node hv07):\n#   0: a\n#   1: d\n" in r.stdout
    state = srv / "state"
    ran = {}
    for job in jobs:
        (c,) = job["spec"]["template"]["spec"]["containers"]
        assert {"name": "P2VIMAGE_HOST",
                "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in c["env"]
        node = (job["spec"]["template"]["spec"].get("nodeSelector") or {}).get(
            "kubernetes.io/hostname", "worker-3")
        for index in range(job["spec"]["completions"]):
            # the pod: its command as written, Kubernetes' index, its node
            env = {**os.environ, "JOB_COMPLETION_INDEX": str(index), "P2VIMAGE_HOST": node}
            p = subprocess.run([str(P2VIMAGE), *c["command"][1:]], capture_output=True,
                               text=True, timeout=60, env=env)
            assert p.returncode == 3, p.stderr  # the capture is missing: FailIndex
            started = [e for e in Ledger(state).events() if e["event"] == "started"]
            ran[(job["metadata"]["name"], index)] = (started[-1]["machine"],
                                                     started[-1]["host"])
    assert ran == {("wave-1", 0): ("b", "worker-3"), ("wave-1", 1): ("e", "worker-3"),
                   ("wave-1-hv07", 0): ("a", "hv07"), ("wave-1-hv07", 1): ("d", "hv07"),
                   ("wave-1-hv08-dc1-example", 0): ("c", "hv08.dc1.example")}
    status = subprocess.run([str(P2VIMAGE), "batch", "status", "--state", str(state),
                             "--manifest", str(path), "--json"], capture_output=True,
                            text=True, timeout=60)
    got = {m["name"]: (m["state"], m["host"], m["attempts"])
           for m in json.loads(status.stdout)["machines"]}
    assert got == {"a": ("failed", "hv07", 1), "b": ("failed", "worker-3", 1),
                   "c": ("failed", "hv08.dc1.example", 1), "d": ("failed", "hv07", 1),
                   "e": ("failed", "worker-3", 1)}


def test_job_names_stay_dns_labels_and_distinct() -> None:
    """A host whose name does not fit, or folds onto another's, gets a hash of it."""
    taken = {"b", "b-hv-07"}
    assert k8s.job_name("b", None, taken) == "b"
    folded = k8s.job_name("b", "HV.07", taken)  # would be b-hv-07, taken
    assert folded.startswith("b-hv-07-") and folded != k8s.job_name("b", "hv_07", taken)
    long = k8s.job_name("p2vimage-batch", "hypervisor-" + "x" * 80 + ".example", set())
    assert len(long) <= 52 and k8s.DNS_LABEL.match(long), long
    assert k8s.job_name("x" * 52, "hv1", set()) != k8s.job_name("x" * 52, "hv2", set())


def test_a_host_no_node_selector_can_name_is_refused(tmp_path: Path) -> None:
    path = fleet(tmp_path, 1)
    srv = tmp_path / "srv"
    path.write_text(path.read_text() + f"  - {{name: x, source: {srv}/x.img, host: 'hv:7'}}\n"
                    f"  - {{name: y, source: {srv}/y.img, host: {'h' * 64}}}\n")
    with pytest.raises(UsageError, match=r"machines\[1\] \(x\): host 'hv:7'; "
                       r"machines\[2\] \(y\): host 'h{64}'$"):
        k8s.jobs(load(path), srv / "state", image="i", pvc="p", mount=srv)


def test_run_index_with_an_unknown_machine_is_a_usage_error(tmp_path: Path) -> None:
    path = fleet(tmp_path, 2)
    base = [str(P2VIMAGE), "batch", "run-index", str(path), "--state",
            str(tmp_path / "srv" / "state")]
    for extra, message in [(["--machines", "m1,zz", "--index", "1"], "no machine named zz"),
                           (["--machines", "m1", "--index", "1"], "index 1 is not one of")]:
        r = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and message in r.stderr, r.stderr


def test_containerfile_installs_what_setup_installs() -> None:
    """The image gets the Debian packages scripts/setup.sh installs (less the test-only
    ones), so a pod can convert what a developer's machine can."""
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    block = setup.split("APT_PACKAGES=(")[1].split(")")[0]
    # less: fixture building, the tests' sshd, the tests' libvirtd and what its guests need
    wanted = set(block.split()) - {"wine64", "openssh-server", "libvirt-daemon-system",
                                   "libvirt-daemon", "qemu-system-x86", "ovmf"}
    text = (ROOT / "Containerfile").read_text()
    assert wanted <= set(text.replace("\\", " ").split()), wanted - set(text.split())
