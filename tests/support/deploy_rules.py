"""Deploy rules: what the consumers of our artifacts enforce at deploy time, which the mocks never run.

Each rule is a pure function returning a list of problems (empty = passes), one line each, naming
where and why. Each carries its upstream source in a comment; tests/stacks/test_deploy_rules.py
applies them to every committed stack file and example and gives each a negative control.

- Pulumi CLI: the project file against the CLI's schema; project config keys declared without a
  default must be set by every stack (the CLI refuses to run otherwise), secrets must be encrypted,
  typed keys must have values of their type.
- kubelet: no two pod volumes on one PVC; every path an image writes is writable for the pod's user
  with its root filesystem setting; requests fit the node's allocatable after DaemonSets.
- EKS API reachability: the machine that runs `pulumi up` can reach the cluster endpoint.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from components.types import ImagePin
from stacks.yamlio import load_yaml

HERE = Path(__file__).resolve().parent
OVERHEAD_FILE = HERE / "node_overhead.yaml"

# ---- Pulumi project and stack config -------------------------------------------------------------


def project_schema_problems(project: dict, schema: dict) -> list[str]:
    """`Pulumi.yaml` against the CLI's own schema (pulumi/pulumi sdk/go/common/workspace/project.json;
    the CLI validates the project file with it before anything else, `ValidateProject`)."""
    v = jsonschema.Draft202012Validator(schema)
    return [
        f"Pulumi.yaml: {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(v.iter_errors(project), key=lambda e: list(e.absolute_path))
    ]


def _project_key(project_name: str, key: str) -> tuple[str, str]:
    """(namespace, name) as the CLI parses a project config key: a bare key is in the project's
    namespace (workspace/config.go parseConfigKey)."""
    ns, sep, name = key.partition(":")
    return (ns, name) if sep else (project_name, key)


def _stack_values(project_name: str, stack_doc: dict) -> dict[tuple[str, str], Any]:
    return {_project_key(project_name, k): v for k, v in ((stack_doc or {}).get("config") or {}).items()}


def _secure(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == {"secure"}


def _of_type(decl: dict, v: Any) -> bool:
    """workspace ValidateConfigValue: string | integer | boolean | array (with typed items)."""
    t = decl.get("type")
    if t == "array":
        return isinstance(v, list) and all(_of_type(decl.get("items") or {}, x) for x in v)
    if isinstance(v, (dict, list)):
        return False
    s = str(v).lower() if isinstance(v, bool) else str(v)
    if t == "integer":
        return re.fullmatch(r"[+-]?\d+", s) is not None
    if t == "boolean":
        return s in ("true", "false")
    return True  # string: any scalar is stored as a string


def stack_config_problems(project: dict, stack: str, stack_doc: dict) -> list[str]:
    """The Pulumi CLI's check of a stack's config against the project's declarations, run before the
    program starts (pulumi/pulumi sdk/go/common/workspace/config.go mergeConfig, called by
    ValidateStackConfigAndApplyProjectConfig): a key of the project's namespace declared with neither
    `default` nor `value` that the stack does not set is missing -> "Stack '<s>' is missing
    configuration value(s) ..." and nothing is created (pulumi/pulumi#21797). Then
    validateStackConfigValue: a `secret: true` key must be `secure:` in the stack, and a typed key's
    value must have that type. The CLI stops at its first error, in sorted key order; this reports all."""
    name = project["name"]
    values = _stack_values(name, stack_doc)
    missing, wrong = [], []
    for key in sorted(project.get("config") or {}):
        decl = project["config"][key]
        if not isinstance(decl, dict):
            continue  # a bare value is a default
        ns, k = _project_key(name, key)
        found = (ns, k) in values
        if not found and "default" not in decl and "value" not in decl and ns == name:
            missing.append(key)
            continue
        if not found:
            continue
        v = values[(ns, k)]
        if decl.get("secret") and not _secure(v):
            wrong.append(f"Stack '{stack}' with configuration key '{key}' must be encrypted as it's secret")
        elif "type" in decl and not _secure(v) and not _of_type(decl, v):
            wrong.append(f"Stack '{stack}' with configuration key '{key}' must be of type '{decl['type']}'")
    out = []
    if missing:
        keys = [f"'{m}'" for m in missing]
        listed = keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]
        out.append(f"Stack '{stack}' is missing configuration value{'s' if len(keys) > 1 else ''} {listed}")
    return out + wrong


# ---- pods --------------------------------------------------------------------------------------

POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def pod_spec(obj: dict) -> dict | None:
    """The pod spec of a workload object (Pod, the template of a controller, a CronJob's job template)."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj.get("spec") or {}
    if kind in POD_KINDS:
        return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    if kind == "CronJob":
        return (((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get(
            "spec"
        ) or {}
    return None


def pods(objects: Iterable[dict]) -> Iterator[tuple[str, dict, dict]]:
    """(where, object, pod spec) for every workload among the objects."""
    for obj in objects:
        spec = pod_spec(obj)
        if spec is not None:
            md = obj.get("metadata") or {}
            yield f"{obj['kind']} {md.get('namespace', '-')}/{md.get('name', '?')}", obj, spec


def shared_claim_problems(where: str, spec: dict) -> list[str]:
    """No two pod volumes on one PVC. Before Kubernetes 1.35 the kubelet keys mounted volumes by the
    claim's unique volume name, so the second pod volume is never reported mounted and the pod waits
    in ContainerCreating ("unmounted volumes=[...]") — kubernetes/kubernetes#127004, #99453; fixed by
    PR #122140 in v1.35.0-alpha.1 only (CHANGELOG-1.35), no 1.34 backport. The fix is one volume with
    two mounts (subPath), which works on every version, so the rule holds regardless of the pin."""
    seen: dict[str, str] = {}
    out = []
    for vol in spec.get("volumes") or []:
        claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        if claim is None:
            continue
        if claim in seen:
            out.append(
                f"{where}: volumes {seen[claim]!r} and {vol['name']!r} both use PVC {claim!r} — "
                f"use one volume and two volumeMounts (subPath) instead"
            )
        else:
            seen[claim] = vol["name"]
    return out


# Volume sources a container can never write through (the kubelet mounts them read-only:
# kubernetes.io/docs/concepts/storage/volumes configMap/secret/downwardAPI/projected).
READ_ONLY_SOURCES = ("configMap", "secret", "downwardAPI", "projected")


def _under(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def _resolve(path: str, env: dict[str, str]) -> str | None:
    """`$VAR/rest` or `${VAR}/rest` through the container's env; None when a variable is not set."""
    m = re.match(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?(.*)$", path)
    if not m:
        return path
    base = env.get(m.group(1))
    return None if base is None else base.rstrip("/") + m.group(2)


def _uid(spec: dict, container: dict) -> int | None:
    """The UID the container runs as: its own securityContext, else the pod's."""
    uid = (container.get("securityContext") or {}).get("runAsUser")
    return uid if uid is not None else (spec.get("securityContext") or {}).get("runAsUser")


def writable_path_problems(where: str, spec: dict, images: dict[str, ImagePin]) -> tuple[list[str], int]:
    """Every path the image writes must be writable for the pod: under a writable volume mount, or in
    the image's own filesystem only if the root filesystem is writable and the pod runs as the user
    that owns it (the image's user; a file owned by the image user is not writable by another UID
    without capabilities, and we drop ALL). readOnlyRootFilesystem mounts the container root read-only
    (kubernetes SecurityContext docs). Facts come from stacks/catalog/versions.yaml (`user`,
    `writablePaths`, with sources). A container that overrides `command` runs something other than
    the image's process: the facts do not describe it, so it is skipped and counted.
    Returns (problems, containers skipped)."""
    out, skipped = [], 0
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if c.get("command"):
            skipped += 1
            continue
        image = c.get("image", "")
        pin = images.get(image)
        if pin is None:
            out.append(f"{where} container {c['name']}: image {image} is not pinned in stacks/catalog/versions.yaml")
            continue
        if pin.user is None:
            out.append(
                f"{where} container {c['name']}: facts missing for {image} — record `user:` and "
                f"`writablePaths:` (with `sources:`) in stacks/catalog/versions.yaml"
            )
            continue
        env = {e["name"]: e["value"] for e in c.get("env") or [] if "value" in e}
        uid = _uid(spec, c)
        ro_root = bool((c.get("securityContext") or {}).get("readOnlyRootFilesystem"))
        mounts = sorted(c.get("volumeMounts") or [], key=lambda m: len(m["mountPath"]), reverse=True)
        for raw in pin.writable_paths:
            path = _resolve(raw, env)
            if path is None:
                out.append(
                    f"{where} container {c['name']}: {image} writes {raw}, and the container does not set that variable"
                )
                continue
            mount = next((m for m in mounts if _under(path, m["mountPath"])), None)
            if mount is not None:
                src = vols.get(mount["name"], {})
                if mount.get("readOnly") or any(k in src for k in READ_ONLY_SOURCES):
                    out.append(
                        f"{where} container {c['name']}: {image} writes {path},"
                        f" but it is on the read-only mount {mount['mountPath']}"
                    )
                continue
            if ro_root:
                out.append(
                    f"{where} container {c['name']}: {image} writes {path}, which is on the read-only root "
                    f"filesystem — mount a writable volume there or redirect it"
                )
            elif uid is not None and uid not in (0, pin.user):
                out.append(
                    f"{where} container {c['name']}: {image} writes {path} in its own filesystem (owned by "
                    f"UID {pin.user}), but the pod runs as UID {uid}"
                )
    return out, skipped


# ---- node allocatable ----------------------------------------------------------------------------

_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def cpu_milli(q: Any) -> int:
    """Kubernetes CPU quantity -> millicores ("500m", "2", 1.5)."""
    s = str(q)
    return math.ceil(float(s[:-1])) if s.endswith("m") else math.ceil(float(s) * 1000)


def mem_mib(q: Any) -> float:
    """Kubernetes memory quantity -> MiB ("12Gi", "64Mi", "1G", bytes)."""
    s = str(q)
    for suf in sorted(_UNITS, key=len, reverse=True):
        if s.endswith(suf):
            return float(s[: -len(suf)]) * _UNITS[suf] / 2**20
    return float(s) / 2**20


@dataclass(frozen=True)
class Node:
    name: str
    vcpu: int
    memory_mib: int
    max_pods: int


@functools.cache
def overhead() -> dict:
    return load_yaml(OVERHEAD_FILE.read_text())


def allocatable(node: Node) -> tuple[int, float]:
    """(millicores, MiB) the scheduler offers pods on this node, as Karpenter computes it and the
    kubelet enforces it (aws/karpenter-provider-aws pkg/providers/instancetype/types.go):
    capacity - VM overhead (memory) - kube-reserved - eviction threshold."""
    k = overhead()["kubelet"]
    cpu = node.vcpu * 1000
    reserved_cpu = 0
    for r in k["kubeReservedCpu"]:
        if cpu >= r["fromMilli"]:
            top = cpu if r["toMilli"] is None else min(cpu, r["toMilli"])
            reserved_cpu += int((top - r["fromMilli"]) * r["fraction"])
    mem = node.memory_mib - math.ceil(node.memory_mib * k["vmMemoryOverheadPercent"])
    reserved_mem = k["kubeReservedMemoryPerPodMiB"] * node.max_pods + k["kubeReservedMemoryBaseMiB"]
    return cpu - reserved_cpu, mem - reserved_mem - k["evictionHardMemoryMiB"]


def daemonset_requests(kind: str) -> tuple[int, float]:
    """Summed requests of the DaemonSets every node of this kind runs (system | nvidia | neuron)."""
    rows = [d for d in overhead()["daemonsets"] if kind in d["nodes"]]
    return sum(cpu_milli(d["cpu"]) for d in rows), sum(mem_mib(d["memory"]) for d in rows)


def pod_requests(spec: dict) -> tuple[int, float]:
    """Effective pod requests as the scheduler counts them: max(sum of containers, largest init
    container) per resource (kubernetes.io/docs/concepts/workloads/pods/init-containers, "Resource
    sharing within containers"); pod overhead is not set here (no RuntimeClass)."""

    def req(c: dict) -> tuple[int, float]:
        r = (c.get("resources") or {}).get("requests") or {}
        return cpu_milli(r.get("cpu", "0")), mem_mib(r.get("memory", "0"))

    main = [req(c) for c in spec.get("containers") or []]
    init = [req(c) for c in spec.get("initContainers") or []]
    cpu = max([sum(c for c, _ in main), *(c for c, _ in init)])
    mem = max([sum(m for _, m in main), *(m for _, m in init)])
    return cpu, mem


def fit_problems(where: str, spec: dict, node: Node, kind: str) -> list[str]:
    """The pod's requests fit one node of this type after its reserved resources and DaemonSets;
    otherwise the scheduler (and Karpenter's simulation) never places it: Pending forever."""
    cpu, mem = allocatable(node)
    ds_cpu, ds_mem = daemonset_requests(kind)
    free_cpu, free_mem = cpu - ds_cpu, mem - ds_mem
    want_cpu, want_mem = pod_requests(spec)
    out = []
    if want_cpu > free_cpu:
        out.append(
            f"{where}: requests {want_cpu}m CPU, {node.name} offers {free_cpu}m after kube-reserved and DaemonSets"
        )
    if want_mem > free_mem:
        out.append(
            f"{where}: requests {want_mem:.0f} MiB memory, {node.name} offers {free_mem:.0f} MiB after "
            f"VM overhead, kube-reserved, eviction threshold and DaemonSets"
        )
    return out


def chosen_instance_types(spec: dict) -> list[str]:
    """The instance types a pod can land on: its nodeSelector, or a required node affinity term's
    `node.kubernetes.io/instance-type In [...]`."""
    sel = (spec.get("nodeSelector") or {}).get("node.kubernetes.io/instance-type")
    if sel:
        return [sel]
    terms = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        or {}
    ).get("nodeSelectorTerms") or []
    out: list[str] = []
    for t in terms:
        for e in t.get("matchExpressions") or []:
            if e.get("key") == "node.kubernetes.io/instance-type" and e.get("operator") == "In":
                out += e.get("values") or []
    return out


def tolerates(spec: dict, key: str, effect: str = "NoSchedule") -> bool:
    """Kubernetes toleration matching (core/v1 Toleration.ToleratesTaint): empty key with Exists
    matches every taint; empty effect matches every effect."""
    for t in spec.get("tolerations") or []:
        key_ok = t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists")
        effect_ok = not t.get("effect") or t.get("effect") == effect
        if key_ok and effect_ok:
            return True
    return False


# ---- EKS endpoint reachability --------------------------------------------------------------------


def endpoint_problems(resources: list[dict]) -> list[str]:
    """The machine that runs `pulumi up` must reach the API server, or every Kubernetes object times
    out (`dial tcp 10.x:443: i/o timeout`) after the AWS part is created. A private-only endpoint
    answers only inside the cluster's VPC (EKS "Cluster API server endpoint" docs), and pulumi-eks
    skips its /healthz wait unless endpointPublicAccess (pulumi/pulumi-eks nodejs/eks/cluster/cluster.ts).
    A VPC this same program creates cannot hold the deployer yet, so private-only is reachable only
    with an existing VPC (deploy from inside it)."""
    out = []
    creates_vpc = any(r["type"] == "aws:ec2/vpc:Vpc" for r in resources)
    for r in resources:
        if r["type"] != "eks:index:Cluster":
            continue
        i = r.get("inputs") or {}
        if i.get("endpointPublicAccess"):
            continue
        if creates_vpc:
            out.append(
                f"{r['name']}: endpointPublicAccess is false and the cluster is in a VPC this stack "
                f"creates — the deployer cannot reach the API; set cluster.endpointPublicAccess: true "
                f"with publicAccessCidrs, or deploy from inside an existing VPC (cluster.vpc.existing)"
            )
    return out
