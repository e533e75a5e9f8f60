"""``batch emit-k8s``: the fleet as Kubernetes Indexed Jobs.

One completion index per machine: the pod runs
``p2vimage batch run-index MANIFEST --state DIR``, which reads ``JOB_COMPLETION_INDEX``
(set by Kubernetes for Indexed Jobs) and converts that machine only, exiting with the
conversion's own exit code.  So the Job's ``podFailurePolicy`` decides retries the way
the local engine does: exit 1-4 fails the index at once (``FailIndex``), exit 5 and a
lost pod are retried up to ``backoffLimitPerIndex``, and an evicted pod (the
``DisruptionTarget`` condition) is retried without counting.  Each pod asks for one
``devices.kubevirt.io/kvm`` (KubeVirt's device plugin) and the memory a conversion
needs; captures, outputs, the manifest and the state directory live on one shared
ReadWriteMany PVC, mounted at the same path in every pod, so only paths travel.

The manifest's ``host`` places machines: every index of a Job shares one pod template,
so the fleet is split into one Job per host (``nodeSelector`` on
``kubernetes.io/hostname``) plus one for the machines without a host.  A Job that is
not the whole manifest in order passes its machines' names (``--machines``): index ``i``
converts the ``i``-th, whatever rows the manifest gains or loses meanwhile.  A manifest
without hosts is one Job with index ``i`` the row ``i``, as before.  Each pod is told its
node (``P2VIMAGE_HOST``, from the downward API) so the ledger records where every
attempt ran, not the pod's name.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from .engine import PERMANENT
from .manifest import Machine, Manifest

CONTAINER = "p2vimage"
HOST_ENV = "P2VIMAGE_HOST"  # the pod's node, for the ledger (run-index reads it)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HOSTNAME_LABEL = "kubernetes.io/hostname"
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
NAME_MAX = 52  # an Indexed Job's pods are named NAME-INDEX-XXXXX, a 63-character label


def groups(manifest: Manifest) -> list[tuple[str | None, list[Machine]]]:
    """The machines of each Job: those without a host first, then each host's, in the
    order the manifest names them."""
    out: dict[str | None, list[Machine]] = {}
    if any(m.host is None for m in manifest.machines):
        out[None] = []
    for m in manifest.machines:
        out.setdefault(m.host, []).append(m)
    return list(out.items())


def job_name(base: str, host: str | None, taken: set[str]) -> str:
    """``base`` for the machines without a host, ``base-HOST`` (as a DNS label) for a
    host's; shortened with a hash of the host when too long or already taken."""
    if host is None:
        return base
    slug = re.sub(r"[^a-z0-9-]+", "-", host.lower()).strip("-") or "host"
    name = f"{base}-{slug}"
    if len(name) > NAME_MAX or name in taken:
        tag = hashlib.sha256(host.encode()).hexdigest()[:6]
        name = f"{name[:NAME_MAX - len(tag) - 1].rstrip('-')}-{tag}"
    return name


def jobs(manifest: Manifest, state: Path, *, image: str, pvc: str, mount: Path,
         name: str = "p2vimage-batch", namespace: str | None = None, parallelism: int = 4,
         retries: int = 2, memory: str = "3Gi", cpu: str = "1") -> list[dict[str, Any]]:
    """The Job objects, one per host and one for the machines without a host (see the
    module's docstring).  Every path the pods use must be under ``mount`` (the PVC);
    ``parallelism`` is per Job."""
    if not DNS_LABEL.match(name) or len(name) > NAME_MAX:
        raise UsageError(f"--name {name!r}: a DNS label of at most {NAME_MAX} characters "
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
    bad = [f"{m.row}: host {m.host!r}" for m in manifest.machines
           if m.host is not None and not LABEL_VALUE.match(m.host)]
    if bad:  # the node selector's value: a label value (63 characters, no ':')
        raise UsageError("not a Kubernetes node name (kubernetes.io/hostname label value): "
                         + "; ".join(bad))
    out, taken = [], set()
    for host, machines in groups(manifest):
        job_id = job_name(name, host, taken)
        taken.add(job_id)
        command = ["p2vimage", "batch", "run-index", str(manifest_path), "--state", str(state)]
        if [m.name for m in machines] != [m.name for m in manifest.machines]:
            command += ["--machines", ",".join(m.name for m in machines)]
        out.append(_job(job_id, host, command, len(machines), image=image, pvc=pvc,
                        mount=mount, namespace=namespace, parallelism=parallelism,
                        retries=retries, memory=memory, cpu=cpu))
    return out


def _job(name: str, host: str | None, command: list[str], completions: int, *, image: str,
         pvc: str, mount: Path, namespace: str | None, parallelism: int, retries: int,
         memory: str, cpu: str) -> dict[str, Any]:
    container = {
        "name": CONTAINER,
        "image": image,
        "command": command,
        "env": [{"name": "LIBGUESTFS_BACKEND", "value": "direct"},
                {"name": HOST_ENV, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "resources": {
            "requests": {"cpu": cpu, "memory": memory, "devices.kubevirt.io/kvm": "1"},
            "limits": {"memory": memory, "devices.kubevirt.io/kvm": "1"},
        },
        "volumeMounts": [{"name": "fleet", "mountPath": str(mount)}],
    }
    labels = {"app.kubernetes.io/name": "p2vimage", "app.kubernetes.io/component": "batch"}
    metadata: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if namespace:
        metadata["namespace"] = namespace
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "fleet", "persistentVolumeClaim": {"claimName": pvc}}],
    }
    if host is not None:
        pod["nodeSelector"] = {HOSTNAME_LABEL: host}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": min(parallelism, completions),
            "backoffLimitPerIndex": retries,
            "podFailurePolicy": {"rules": [
                {"action": "FailIndex",
                 "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                 "values": sorted(PERMANENT)}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget",
                                                     "status": "True"}]},
            ]},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }


def _under(path: Path, mount: Path) -> bool:
    return path == mount or mount in path.parents


def dump(objs: list[dict[str, Any]], manifest: Manifest) -> str:
    """YAML documents, one per Job, after a header mapping each Job's completion
    indexes to its machines."""
    head = [f"# p2vimage batch: {len(objs)} Indexed Job(s), one completion index per "
            "machine (JOB_COMPLETION_INDEX)"]
    for obj, (host, machines) in zip(objs, groups(manifest), strict=True):
        where = f"node {host}" if host else "any node"
        if len(objs) > 1:
            head.append(f"# {obj['metadata']['name']} ({where}):")
        head += [f"#   {i}: {m.name}" for i, m in enumerate(machines)]
    return "\n".join(head) + "\n" + yaml.safe_dump_all(objs, sort_keys=False)
