"""``batch emit-k8s``: the fleet as one Kubernetes Indexed Job.

One index per manifest row, in manifest order: the pod runs
``p2vimage batch run-index MANIFEST --state DIR``, which reads ``JOB_COMPLETION_INDEX``
(set by Kubernetes for Indexed Jobs) and converts that row only, exiting with the
conversion's own exit code.  So the Job's ``podFailurePolicy`` decides retries the way
the local engine does: exit 1-4 fails the index at once (``FailIndex``), exit 5 and a
lost pod are retried up to ``backoffLimitPerIndex``, and an evicted pod (the
``DisruptionTarget`` condition) is retried without counting.  Each pod asks for one
``devices.kubevirt.io/kvm`` (KubeVirt's device plugin) and the memory a conversion
needs; captures, outputs, the manifest and the state directory live on one shared
ReadWriteMany PVC, mounted at the same path in every pod, so only paths travel.

The manifest's ``host`` is not used here: the pod template is shared by every index
(pin the Job with a node selector, or split the fleet into Jobs, to place machines).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from .engine import PERMANENT
from .manifest import Manifest

CONTAINER = "p2vimage"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def job(manifest: Manifest, state: Path, *, image: str, pvc: str, mount: Path,
        name: str = "p2vimage-batch", namespace: str | None = None, parallelism: int = 4,
        retries: int = 2, memory: str = "3Gi", cpu: str = "1") -> dict[str, Any]:
    """The Job object.  Every path the pods use must be under ``mount`` (the PVC)."""
    if not DNS_LABEL.match(name) or len(name) > 52:
        raise UsageError(f"--name {name!r}: a DNS label of at most 52 characters "
                         "(lower-case letters, digits, '-')")
    if parallelism < 1 or retries < 0:
        raise UsageError("--max-in-flight at least 1, --retries 0 or more")
    mount = Path(mount)
    manifest_path = manifest.path.resolve()
    state = state.resolve() if not state.is_absolute() else state
    bad = [f"{what} {p}" for what, p in (("manifest", manifest_path), ("--state", state))
           if not _under(p, mount)]
    for m in manifest.machines:
        bad += [f"{m.row}: {what} {p}" for what, p in
                [*(("source", s) for s in m.display_sources if s.startswith("/")),
                 ("output", str(m.output))] if not _under(Path(p), mount)]
    if bad:
        raise UsageError(f"not on the shared volume mounted at {mount}: " + "; ".join(bad))
    container = {
        "name": CONTAINER,
        "image": image,
        "command": ["p2vimage", "batch", "run-index", str(manifest_path),
                    "--state", str(state)],
        "env": [{"name": "LIBGUESTFS_BACKEND", "value": "direct"}],
        "resources": {
            "requests": {"cpu": cpu, "memory": memory, "devices.kubevirt.io/kvm": "1"},
            "limits": {"memory": memory, "devices.kubevirt.io/kvm": "1"},
        },
        "volumeMounts": [{"name": "fleet", "mountPath": str(mount)}],
    }
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "p2vimage",
                                                         "app.kubernetes.io/component": "batch"}}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "completionMode": "Indexed",
            "completions": len(manifest.machines),
            "parallelism": min(parallelism, len(manifest.machines)),
            "backoffLimitPerIndex": retries,
            "podFailurePolicy": {"rules": [
                {"action": "FailIndex",
                 "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                 "values": sorted(PERMANENT)}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget",
                                                     "status": "True"}]},
            ]},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "p2vimage",
                                        "app.kubernetes.io/component": "batch"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [{"name": "fleet",
                                 "persistentVolumeClaim": {"claimName": pvc}}],
                },
            },
        },
    }


def _under(path: Path, mount: Path) -> bool:
    return path == mount or mount in path.parents


def dump(obj: dict[str, Any], manifest: Manifest) -> str:
    """YAML with a header mapping each completion index to its machine."""
    head = ["# p2vimage batch: one completion index per machine (JOB_COMPLETION_INDEX)"]
    head += [f"#   {i}: {m.name}" for i, m in enumerate(manifest.machines)]
    return "\n".join(head) + "\n" + yaml.safe_dump(obj, sort_keys=False)
