"""``batch emit-k8s`` and ``batch run-index``: an Indexed Job valid against Kubernetes'
published OpenAPI schema (kubernetes-validate's copy, strict: unknown fields refused),
and the pod's command converting exactly its row, exiting with the conversion's code.
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
                                                               dict | None]:
    r = subprocess.run([str(P2VIMAGE), "batch", "emit-k8s", str(manifest), "--state",
                        str(tmp_path / "srv" / "state"), "--mount", str(tmp_path / "srv"),
                        *extra], capture_output=True, text=True, timeout=60)
    return r, (yaml.safe_load(r.stdout) if r.returncode == 0 else None)


@pytest.mark.parametrize(("n", "suffix", "extra"), [
    (1, ".yaml", []),
    (3, ".yaml", ["--namespace", "migration", "--max-in-flight", "2", "--retries", "0"]),
    (12, ".csv", ["--image", "registry.example/p2vimage:0.1", "--pvc", "captures",
                  "--memory", "4Gi", "--name", "wave-3"]),
])
def test_emitted_job_is_valid_kubernetes(tmp_path: Path, n: int, suffix: str,
                                         extra: list[str]) -> None:
    r, job = emit(tmp_path, fleet(tmp_path, n, suffix), *extra)
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
    assert c["volumeMounts"][0]["mountPath"] == str(tmp_path / "srv")
    # the header maps every index to its machine
    assert f"#   {n - 1}: m{n - 1}" in r.stdout


def test_a_schema_violation_is_caught(tmp_path: Path) -> None:
    """The validator is not a rubber stamp: a misspelt field and a bad type fail."""
    obj = k8s.job(load(fleet(tmp_path, 2)), tmp_path / "srv" / "state", image="i",
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
        k8s.job(load(fleet(tmp_path, 1)), tmp_path, image="i", pvc="p", mount=tmp_path,
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
