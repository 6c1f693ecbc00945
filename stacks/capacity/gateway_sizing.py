"""Gateway replicas from a declared peak (`gateway.peakRequestsPerSecond`) and the gateway's measured CPU
per request (catalog gateway-cost.yaml, from benchmarks/gateway_cost.py).

A replica requests `cpu_request` CPUs (as components/litellm.py renders it); with autoscaling on, the HPA
adds replicas once the average use passes `autoscaling.gatewayCpuPercent` of that request, so a replica
serves at most cpu_request x percent of CPU before the next one is needed (autoscaling off: the whole
request). replicas needed = ceil(peak x CPU seconds per request / usable CPU per replica).

Refused, naming `gateway.peakRequestsPerSecond`: a peak that needs more replicas than the gateway may run
(the HPA's maximum, or `gateway.replicas` without autoscaling), or whose replicas' CPU requests exceed the
system nodes' allocatable CPU (desiredSize nodes of the smallest listed type; the managed node group does
not grow by itself). That check is necessary, not sufficient: the other system pods share those nodes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from components.litellm import render_gateway_pod
from components.types import SYSTEM_TAINT
from stacks import catalog
from stacks.capacity.planner import DAEMONSET_CPU_M, kube_reserved_cpu_m

# The validated stack config (stacks.config.schema.StackConfig), read by attribute: capacity modules
# import the schema only where the layering allows it (capacity.scaling).
StackConfig = Any

KEY = ("gateway", "peakRequestsPerSecond")


@dataclass(frozen=True)
class GatewaySizing:
    peak_rps: float
    cpu_seconds_per_request: float
    cpu_request: float  # CPUs one replica requests
    usable_fraction: float  # of the request, before another replica is needed
    replicas_needed: int
    replicas_allowed: int  # the HPA's maximum, or the fixed replica count
    allowed_key: str
    system_cpu: float | None  # allocatable CPUs of the system nodes (None: a size not in the catalog)

    @property
    def usable_cpu_per_replica(self) -> float:
        return self.cpu_request * self.usable_fraction

    def as_dict(self) -> dict:
        return {**asdict(self), "usable_cpu_per_replica": self.usable_cpu_per_replica}


def cpu_quantity(q: str) -> float:
    """A Kubernetes CPU quantity ("1", "1.5", "500m") in CPUs."""
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def gateway_cpu_request(cfg: StackConfig) -> float:
    pod = render_gateway_pod(
        catalog.versions().images["litellm"],
        replicas=cfg.gateway.replicas,
        database=cfg.gateway.database.enabled,
        system_taint=SYSTEM_TAINT,
    )
    return cpu_quantity(pod["containers"][0]["resources"]["requests"]["cpu"])


def system_allocatable_cpu(cfg: StackConfig) -> float | None:
    """CPUs pods may request on the system nodes: desiredSize x the smallest listed type's allocatable."""
    sizes = catalog.gateway_cost().vcpu_by_size
    vcpus = []
    for t in cfg.cluster.systemNodes.instanceTypes:  # validated <family>.<size> names
        size = t.rsplit(".", 1)[-1]
        if size not in sizes:
            return None
        vcpus.append(sizes[size])
    v = min(vcpus)
    per_node_m = v * 1000 - kube_reserved_cpu_m(v) - DAEMONSET_CPU_M
    return cfg.cluster.systemNodes.desiredSize * per_node_m / 1000


def size(cfg: StackConfig) -> GatewaySizing | None:
    peak = cfg.gateway.peakRequestsPerSecond
    if peak is None:
        return None
    cost = catalog.gateway_cost()
    auto = cfg.autoscaling.enabled
    fraction = cfg.autoscaling.gatewayCpuPercent / 100 if auto else 1.0
    request = gateway_cpu_request(cfg)
    needed = math.ceil(peak * cost.cpu_seconds_per_request / (request * fraction) - 1e-9)
    return GatewaySizing(
        peak_rps=peak,
        cpu_seconds_per_request=cost.cpu_seconds_per_request,
        cpu_request=request,
        usable_fraction=fraction,
        replicas_needed=max(needed, 1),
        replicas_allowed=cfg.autoscaling.gatewayMaxReplicas if auto else cfg.gateway.replicas,
        allowed_key="autoscaling.gatewayMaxReplicas" if auto else "gateway.replicas",
        system_cpu=system_allocatable_cpu(cfg),
    )


def problems(cfg: StackConfig) -> list[tuple[tuple, str, str]]:
    s = size(cfg)
    if s is None:
        return []
    out = []
    need = f"{s.peak_rps:g} req/s x {s.cpu_seconds_per_request * 1000:g} ms CPU needs {s.replicas_needed} replicas"
    if s.replicas_needed > s.replicas_allowed:
        out.append(
            (
                KEY,
                f"{need} ({s.usable_cpu_per_replica:g} CPU usable each), above {s.allowed_key} {s.replicas_allowed}",
                f"raise {s.allowed_key} to {s.replicas_needed} or lower the peak",
            )
        )
    cpu = s.replicas_needed * s.cpu_request
    if s.system_cpu is not None and cpu > s.system_cpu:
        out.append(
            (
                KEY,
                f"{need} requesting {cpu:g} CPU, more than the system nodes' {s.system_cpu:g} allocatable CPU",
                "raise cluster.systemNodes.desiredSize or use larger cluster.systemNodes.instanceTypes",
            )
        )
    return out


def lines(doc: dict | None) -> list[str]:
    """The plan's report lines for `GatewaySizing.as_dict()` (none without a declared peak)."""
    if doc is None:
        return []
    out = [
        f"gateway: peak {doc['peak_rps']:g} req/s x {doc['cpu_seconds_per_request'] * 1000:g} ms CPU per request "
        f"(measured) / {doc['usable_cpu_per_replica']:g} CPU per replica -> {doc['replicas_needed']} replicas "
        f"({doc['allowed_key']} {doc['replicas_allowed']})"
    ]
    if doc["system_cpu"] is None:
        out.append("gateway: the system nodes' CPU is not checked (an instance size not in gateway-cost.yaml)")
    return out
