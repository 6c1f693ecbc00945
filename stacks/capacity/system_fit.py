"""Does everything scheduled on the system node group fit it, with every autoscaler at its maximum?

Counted from what the plan renders: every Deployment, StatefulSet and Job whose pods tolerate the system
taint (the gateway at its HPA's maxReplicas, the front door, the UI, the cache and reconciler Jobs, all
at once), each Helm release's components on system nodes (requests from our values, else the chart's
default: stacks/catalog/system-pods.yaml), and the EKS add-ons' controllers. The DaemonSets every node
runs are in the planner's per-node allowance. Against: the node group's desired size (nothing grows
it: no Cluster Autoscaler) x its first instance type's allocatable (the planner's formula)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from components.types import SYSTEM_TAINT
from stacks.capacity import quantity
from stacks.capacity.planner import (
    DAEMONSET_CPU_M,
    DAEMONSET_MEMORY_MIB,
    EVICTION_HARD_MIB,
    MAX_PODS_ASSUMED,
    VM_MEMORY_OVERHEAD,
    kube_reserved_cpu_m,
)
from stacks.yamlio import load_yaml

CATALOG = Path(__file__).resolve().parent.parent / "catalog" / "system-pods.yaml"
KEY = "llm-serving:cluster.systemNodes"
WORKLOADS = ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job")
HPA_PREFIX, HPA_SUFFIX = "kubernetes:autoscaling/", ":HorizontalPodAutoscaler"


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Shape(_Row):
    vcpu: int = Field(gt=0)
    memoryMiB: int = Field(gt=0)


class _Component(_Row):
    name: str
    resources: str
    replicas: str | None = None
    cpu: str
    memory: str
    count: int = Field(ge=0)


class _Addon(_Row):
    cpu: str
    memory: str
    count: int = Field(ge=0)
    source: str = Field(min_length=3)


class _File(_Row):
    instances: dict[str, _Shape]
    charts: dict[str, list[_Component]]
    chartSources: dict[str, str]
    addons: dict[str, _Addon]


@functools.cache
def catalog() -> _File:
    return _File.model_validate(load_yaml(CATALOG.read_text()))


@dataclass(frozen=True)
class Pods:
    name: str
    count: int
    cpu_m: int  # per pod
    mem_mib: float

    @property
    def total(self) -> tuple[int, float]:
        return self.count * self.cpu_m, self.count * self.mem_mib


def pod_requests(spec: dict) -> tuple[int, float]:
    """Scheduler's view: max(sum of containers, largest init container) per resource."""

    def req(c: dict) -> tuple[int, float]:
        r = (c.get("resources") or {}).get("requests") or {}
        return quantity.millicores(r.get("cpu", 0)), quantity.mib(r.get("memory", 0))

    main = [req(c) for c in spec.get("containers") or []]
    init = [req(c) for c in spec.get("initContainers") or []]
    return (
        max([sum(c for c, _ in main), *(c for c, _ in init)]),
        max([sum(m for _, m in main), *(m for _, m in init)]),
    )


def _on_system(pod: dict) -> bool:
    return any(t.get("key") == SYSTEM_TAINT for t in pod.get("tolerations") or [])


def _meta(r) -> tuple[str, str]:
    m = r.inputs.get("metadata") or {}
    return m.get("namespace", ""), m.get("name", r.name)


def workloads(resources: list) -> list[Pods]:
    hpa_max = {}
    for r in resources:
        if r.type.startswith(HPA_PREFIX) and r.type.endswith(HPA_SUFFIX):
            spec = r.inputs.get("spec") or {}
            hpa_max[(_meta(r)[0], (spec.get("scaleTargetRef") or {}).get("name"))] = int(spec.get("maxReplicas", 1))
    out = []
    for r in resources:
        if r.type not in WORKLOADS:
            continue
        spec = r.inputs.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        if not _on_system(pod):
            continue
        n = int(spec.get("parallelism", 1)) if r.type.endswith(":Job") else int(spec.get("replicas", 1))
        n = hpa_max.get(_meta(r), n)
        out.append(Pods(_meta(r)[1], n, *pod_requests(pod)))
    return out


def _at(values: dict, path: str):
    node = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def chart_pods(resources: list) -> list[Pods]:
    out = []
    for r in resources:
        if r.type != "kubernetes:helm.sh/v3:Release":
            continue
        values = r.inputs.get("values") or {}
        for c in catalog().charts.get(str(r.inputs.get("chart", "")).rsplit("/", 1)[-1], []):
            req = (_at(values, c.resources) or {}).get("requests") or {}
            count = _at(values, c.replicas) if c.replicas else None
            out.append(
                Pods(
                    c.name,
                    int(count if count is not None else c.count),
                    quantity.millicores(req.get("cpu", c.cpu)),
                    quantity.mib(req.get("memory", c.memory)),
                )
            )
    return out


def addon_pods(resources: list) -> list[Pods]:
    rows = catalog().addons
    names = [r.inputs.get("addonName") for r in resources if r.type == "aws:eks/addon:Addon"]
    return [
        Pods(n, rows[n].count, quantity.millicores(rows[n].cpu), quantity.mib(rows[n].memory))
        for n in names
        if n in rows
    ]


def allocatable(instance_type: str) -> tuple[float, float] | None:
    """(millicores, MiB) one system node offers pods after kube-reserved, eviction and DaemonSets."""
    shape = catalog().instances.get(instance_type)
    if shape is None:
        return None
    cpu = shape.vcpu * 1000 - kube_reserved_cpu_m(shape.vcpu) - DAEMONSET_CPU_M
    mem = (
        shape.memoryMiB * (1 - VM_MEMORY_OVERHEAD)
        - (11 * MAX_PODS_ASSUMED + 255)
        - EVICTION_HARD_MIB
        - DAEMONSET_MEMORY_MIB
    )
    return cpu, mem


@dataclass(frozen=True)
class Fit:
    nodes: int
    instance_type: str
    offer: tuple[float, float]  # per node
    pods: tuple[Pods, ...]

    @property
    def want(self) -> tuple[int, float]:
        return sum(p.total[0] for p in self.pods), sum(p.total[1] for p in self.pods)

    def problems(self) -> list[str]:
        cpu, mem = self.want
        have_cpu, have_mem = self.nodes * self.offer[0], self.nodes * self.offer[1]
        short = []
        if cpu > have_cpu:
            short.append(f"{cpu / 1000:.2f} vCPU > {have_cpu / 1000:.2f}")
        if mem > have_mem:
            short.append(f"{mem / 1024:.1f} GiB > {have_mem / 1024:.1f}")
        if not short:
            return []
        need = max(-(-cpu // self.offer[0]), -(-mem // self.offer[1]))
        return [
            f"{KEY}: with every autoscaler at its maximum the system pods request {' and '.join(short)} that "
            f"{self.nodes}x {self.instance_type} offer after kube-reserved and DaemonSets — set "
            f"desiredSize and minSize to {int(need)}, choose a larger instanceTypes[0], or lower "
            "autoscaling.gatewayMaxReplicas"
        ]


def system_fit(resources: Iterable) -> Fit | None:
    """None when the stack has no system node group of its own (team stacks) or an unknown type."""
    rs = list(resources)
    groups = [r for r in rs if r.type == "aws:eks/nodeGroup:NodeGroup"]
    if not groups:
        return None
    g = groups[0].inputs
    kind = (g.get("instanceTypes") or [""])[0]
    offer = allocatable(kind)
    if offer is None:
        return None
    nodes = int((g.get("scalingConfig") or {}).get("desiredSize", 0))
    return Fit(nodes, kind, offer, tuple(workloads(rs) + chart_pods(rs) + addon_pods(rs)))


def problems_of(resources: Iterable) -> list[str]:
    fit = system_fit(resources)
    return fit.problems() if fit is not None else []
