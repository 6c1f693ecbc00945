"""First-node canaries for `stacks.verify --canaries`: on the first Ready node of each accelerator kind,
one short pod with the model servers' own security context (non-root UID, no capabilities, read-only
root, RuntimeDefault seccomp) and one device:

- NVIDIA: requests one GPU and runs `nvidia-smi` (the driver and CDI injection the AMI and the GPU
  operator provide, as the vLLM container would see them);
- Neuron: requests one Neuron device, writes a file into every path the Neuron image writes (each an
  emptyDir, as in the server's pod) and runs `neuron-ls` as that user.

The renders are pure (tests check them against the Pod schema, the restricted Pod Security profile
and the rendered vLLM pods); the kubectl calls go through verify's injectable runner. Every pod is
deleted afterwards, whatever happened.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from components.types import (
    ACCELERATOR_RESOURCE,
    POOL_LABEL,
    VLLM_UID,
    ImagePin,
    container_security,
    pod_security,
    tolerate,
)

Runner = Callable[[list[str]], str]
IMAGE_OF_KIND = {"nvidia": "vllm", "neuron": "vllm-neuron"}  # stacks/catalog/versions.yaml rows
HOME = "/home/vllm"
DEADLINE_S = 300  # the pod's activeDeadlineSeconds: image pull and the command
POLL_S = 5
# The command's own output marks what passed; the script exits non-zero on the first failure class.
NVIDIA_SCRIPT = "nvidia-smi -L && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv"
# Paths arrive as arguments ("$@"), never inside the script text.
NEURON_SCRIPT = (
    "fail=0; "
    'for p in "$@"; do '
    'if touch "$p/.canary" 2>/dev/null && rm -f "$p/.canary"; then echo "writable $p"; '
    'else echo "NOT WRITABLE $p"; fail=1; fi; '
    "done; "
    'neuron-ls || { echo "NEURON-LS FAILED"; exit 3; }; '
    'exit "$fail"'
)
FIXES = {
    "nvidia": "nvidia-smi failed as UID {uid}: if the device is missing in the container, set cdi.enabled: "
    "false in components/drivers.py gpu_operator_values (the AMI's own toolkit then injects it) and re-run",
    "neuron-write": "add the path to images.vllm-neuron.writablePaths in stacks/catalog/versions.yaml and "
    "give it a volume in components/vllm.py, then re-run",
    "neuron-ls": "neuron-ls failed as UID {uid}: the device nodes are not usable by that user; check the "
    "Neuron device plugin (its allocation and the /dev/neuron* permissions it passes)",
}


def pod_name(kind: str) -> str:
    return f"llm-canary-{kind}"


def _volume_name(path: str) -> str:
    return "w" + path.replace("/", "-").lower()


def render_canary_pod(kind: str, image: ImagePin, node: str, namespace: str, scheduler_name: str | None = None) -> dict:
    """The canary Pod for one accelerator kind, pinned to `node` (by its hostname label)."""
    resource = ACCELERATOR_RESOURCE[kind]
    paths = list(image.writable_paths) if kind == "neuron" else []
    command = ["sh", "-c", NEURON_SCRIPT, "canary", *paths] if kind == "neuron" else ["sh", "-c", NVIDIA_SCRIPT]
    container = {
        "name": "canary",
        "image": image.ref,
        "command": command,
        "env": [{"name": "HOME", "value": HOME}, {"name": "USER", "value": "vllm"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi", resource: "1"},
            "limits": {"memory": "256Mi", resource: "1"},
        },
        # As the vLLM container: components/vllm.py render_container (a test compares them).
        "securityContext": {**container_security(VLLM_UID), "runAsGroup": VLLM_UID},
        "volumeMounts": [{"name": _volume_name(p), "mountPath": p} for p in paths],
    }
    spec: dict = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": DEADLINE_S,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(VLLM_UID),
        "nodeSelector": {"kubernetes.io/hostname": node},
        "tolerations": [tolerate(resource)],
        "containers": [container],
        "volumes": [{"name": _volume_name(p), "emptyDir": {"sizeLimit": "1Gi"}} for p in paths],
    }
    if kind == "neuron" and scheduler_name:
        spec["schedulerName"] = scheduler_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(kind),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "llm-canary", "app.kubernetes.io/component": kind},
        },
        "spec": spec,
    }


def first_nodes(nodes: dict, pools: dict[str, str]) -> dict[str, str]:
    """accelerator kind -> the first Ready node (by name) of a pool of that kind."""
    out: dict[str, str] = {}
    for n in sorted(nodes.get("items") or [], key=lambda n: n["metadata"]["name"]):
        kind = pools.get(((n.get("metadata") or {}).get("labels") or {}).get(POOL_LABEL, ""))
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (n.get("status") or {}).get("conditions") or []
        )
        if kind in ACCELERATOR_RESOURCE and ready:
            out.setdefault(kind, n["metadata"]["name"])
    return out


@dataclass(frozen=True)
class CanaryResult:
    kind: str
    node: str
    ok: bool
    detail: str


def verdict(kind: str, node: str, phase: str, log: str, why_not_run: str = "") -> CanaryResult:
    """What passed and what to change, from the pod's phase and output."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    fix = ""
    if phase == "Succeeded":
        passed = [x for x in lines if x.startswith(("writable ", "GPU ", "NEURON", "+-"))] or lines[:1]
        return CanaryResult(kind, node, True, "; ".join(passed[:4]) or "passed")
    if phase != "Failed":
        return CanaryResult(kind, node, False, f"did not run ({why_not_run or phase}): free one device on {node}")
    if kind == "nvidia":
        fix = FIXES["nvidia"]
    else:
        bad = [x.removeprefix("NOT WRITABLE ") for x in lines if x.startswith("NOT WRITABLE ")]
        fix = (f"cannot write {', '.join(bad)}: " + FIXES["neuron-write"]) if bad else ""
        if "NEURON-LS FAILED" in lines:
            fix = "; ".join(f for f in (fix, FIXES["neuron-ls"]) if f)
    tail = " | ".join(lines[-2:])
    return CanaryResult(kind, node, False, f"{tail} — {fix.format(uid=VLLM_UID)}")


def _phase(pod: dict) -> tuple[str, str]:
    status = pod.get("status") or {}
    reasons = [c.get("message") or c.get("reason") or "" for c in status.get("conditions") or []]
    return status.get("phase") or "Pending", "; ".join(r for r in reasons if r)[:200]


def run_canary(run: Runner, kubeconfig: str, pod: dict, sleep: Callable[[float], None] = time.sleep) -> CanaryResult:
    """Create the pod, wait for it to end (at most its deadline plus a minute), read its log, delete it."""
    kind = pod["metadata"]["labels"]["app.kubernetes.io/component"]
    node = pod["spec"]["nodeSelector"]["kubernetes.io/hostname"]
    name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
    k = ["kubectl", "--kubeconfig", kubeconfig]
    fd, path = tempfile.mkstemp(prefix="llm-canary-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(pod, f)
        run([*k, "apply", "-f", path])
        phase, why = "Pending", ""
        for _ in range((DEADLINE_S + 60) // POLL_S):
            phase, why = _phase(json.loads(run([*k, "get", "pod", name, "-n", ns, "-o", "json"])))
            if phase in ("Succeeded", "Failed"):
                break
            sleep(POLL_S)
        log = run([*k, "logs", name, "-n", ns]) if phase in ("Succeeded", "Failed") else ""
        return verdict(kind, node, phase, log, why)
    finally:
        os.unlink(path)
        run([*k, "delete", "pod", name, "-n", ns, "--ignore-not-found", "--wait=false"])


def canary_results(
    run: Runner, kubeconfig: str, nodes: dict, pools: dict[str, str], namespace: str, neuron_scheduler: str | None
) -> list[CanaryResult]:
    """One canary per accelerator kind that has a Ready node; a kind without one is reported."""
    from stacks import catalog

    images = catalog.versions().images
    firsts = first_nodes(nodes, pools)
    out = []
    for kind in sorted(set(pools.values()) & set(ACCELERATOR_RESOURCE)):
        node = firsts.get(kind)
        if node is None:
            out.append(CanaryResult(kind, "-", True, f"skipped: no Ready {kind} node yet (a model brings one)"))
            continue
        pod = render_canary_pod(kind, images[IMAGE_OF_KIND[kind]], node, namespace, neuron_scheduler)
        out.append(run_canary(run, kubeconfig, pod))
    return out
