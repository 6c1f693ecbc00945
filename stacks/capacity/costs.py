"""The whole stack's $/h, from what the program registers (not from config), so it follows what is built.

Items: EKS control plane, system node group (desired size x first instance type), NAT gateways and their
public IPv4 addresses, load-balancer Services (NLB hour), EFS (assumed stored GB), RDS (class, Multi-AZ,
storage) and accelerator nodes at min and max. Accelerator nodes: each model Deployment's replicas on the
instance type its pods select (`node.kubernetes.io/instance-type`), one node per replica; the max is a
HorizontalPodAutoscaler's maxReplicas when one targets it, otherwise the model's configured max replicas.
Prices: stacks/catalog/prices.yaml and instances.yaml (us-east-1 on-demand, sources there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stacks import catalog

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# Shown for a valid type or class the price table does not list (it counts as $0 in the totals).
NO_PRICE = "no price in stacks/catalog/prices.yaml"


@dataclass(frozen=True)
class Item:
    name: str
    count: int
    unit_usd: float  # per hour
    min_usd: float
    max_usd: float
    note: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "count": self.count,
            "unitUsdPerHour": _r(self.unit_usd),
            "min": _r(self.min_usd),
            "max": _r(self.max_usd),
            "note": self.note,
        }


@dataclass(frozen=True)
class StackCost:
    items: tuple[Item, ...]

    @property
    def min_usd(self) -> float:
        return sum(i.min_usd for i in self.items)

    @property
    def max_usd(self) -> float:
        return sum(i.max_usd for i in self.items)

    def as_dict(self) -> dict:
        return {"min": _r(self.min_usd), "max": _r(self.max_usd), "items": [i.as_dict() for i in self.items]}


def _r(x: float) -> float:
    return round(x, 4)


def _fixed(name: str, count: int, unit: float, note: str = "") -> Item | None:
    return Item(name, count, unit, count * unit, count * unit, note) if count else None


def control_plane(resources, p: catalog.Prices) -> Item | None:
    n = sum(1 for r in resources if r.type == "eks:index:Cluster")
    return _fixed(
        "EKS control plane",
        n,
        p.eks_standard,
        f"${p.eks_extended:.2f}/h once its Kubernetes version leaves standard support",
    )


def system_nodes(resources, p: catalog.Prices) -> Item | None:
    groups = [r for r in resources if r.type == "aws:eks/nodeGroup:NodeGroup"]
    if not groups:
        return None
    count, usd, kinds = 0, 0.0, []
    for g in groups:
        size = int((g.inputs.get("scalingConfig") or {}).get("desiredSize", 0))
        kind = (g.inputs.get("instanceTypes") or ["m7i.xlarge"])[0]  # on-demand groups prefer the first
        count += size
        unit = p.instance_usd(kind)
        usd += size * (unit or 0.0)
        kinds.append(f"{size}x {kind}" + ("" if unit is not None else f" ({NO_PRICE})"))
    return Item("system nodes", count, usd / count if count else 0.0, usd, usd, ", ".join(kinds))


def nat(resources, p: catalog.Prices) -> list[Item]:
    n = sum(1 for r in resources if r.type == "aws:ec2/natGateway:NatGateway")
    ips = sum(1 for r in resources if r.type == "aws:ec2/eip:Eip")
    return [
        i
        for i in (
            _fixed("NAT gateways", n, p.nat_gateway, "per-GB processing excluded"),
            _fixed("public IPv4 addresses", ips, p.public_ipv4),
        )
        if i
    ]


def load_balancers(resources, p: catalog.Prices) -> Item | None:
    n = sum(
        1
        for r in resources
        if r.type == "kubernetes:core/v1:Service" and (r.inputs.get("spec") or {}).get("type") == "LoadBalancer"
    )
    return _fixed("load balancers (NLB)", n, p.nlb, "LCU charges excluded")


def efs(resources, p: catalog.Prices) -> Item | None:
    n = sum(1 for r in resources if r.type == "aws:efs/fileSystem:FileSystem")
    unit = p.efs_assumed_gb * p.efs_gb_month / p.hours_per_month
    return _fixed("EFS", n, unit, f"assumes {p.efs_assumed_gb:g} GB stored at ${p.efs_gb_month:.2f}/GB-month")


def rds(resources, p: catalog.Prices) -> Item | None:
    dbs = [r for r in resources if r.type == "aws:rds/instance:Instance"]
    if not dbs:
        return None
    usd, notes = 0.0, []
    for d in dbs:
        cls, multi = d.inputs.get("instanceClass", ""), bool(d.inputs.get("multiAz"))
        unit = p.rds_usd(cls, multi)
        gb = float(d.inputs.get("allocatedStorage") or 0)
        usd += (unit or 0.0) + gb * p.rds_storage_gb_month[multi] / p.hours_per_month
        priced = "" if unit is not None else f" ({NO_PRICE}: storage only)"
        notes.append(f"{cls}{' Multi-AZ' if multi else ''}, {gb:g} GB{priced}")
    return Item("RDS", len(dbs), usd / len(dbs), usd, usd, "; ".join(notes))


def _hpa_max(resources) -> dict[tuple[str, str], int]:
    out = {}
    for r in resources:
        if r.type.startswith("kubernetes:autoscaling/") and r.type.endswith(":HorizontalPodAutoscaler"):
            ref = (r.inputs.get("spec") or {}).get("scaleTargetRef") or {}
            ns = (r.inputs.get("metadata") or {}).get("namespace", "")
            out[(ns, ref.get("name", ""))] = int(r.inputs["spec"].get("maxReplicas", 0))
    return out


def selected_instance_types(pod: dict) -> list[str]:
    """The instance types a pod may land on, cheapest (the planner's choice) first: its nodeSelector, or
    the values of its required node affinity on the instance-type label (components.vllm.node_affinity)."""
    sel = (pod.get("nodeSelector") or {}).get(INSTANCE_TYPE_LABEL)
    if sel:
        return [sel]
    required = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for e in term.get("matchExpressions") or []:
            if e.get("key") == INSTANCE_TYPE_LABEL and e.get("operator") == "In":
                return list(e.get("values") or [])
    return []


def accelerators(resources, p: catalog.Prices, max_replicas: Mapping[str, int]) -> list[Item]:
    """One item per Deployment whose pods select an accelerator instance type."""
    hpa = _hpa_max(resources)
    accel = catalog.instances()
    items = []
    for r in sorted(resources, key=lambda r: r.urn):
        if r.type != "kubernetes:apps/v1:Deployment":
            continue
        meta, spec = r.inputs.get("metadata") or {}, r.inputs.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        allowed = selected_instance_types(pod)
        kind = allowed[0] if allowed else None
        if kind not in accel:
            continue
        name = meta.get("name", r.name)
        lo = int(spec.get("replicas", 1))
        hi = hpa.get((meta.get("namespace", ""), name)) or max(lo, max_replicas.get(name, lo))
        unit = accel[kind].usd_per_hour
        fallback = f" (+{len(allowed) - 1} capacity-fallback types, priced higher)" if len(allowed) > 1 else ""
        items.append(Item(f"accelerator nodes: {name}", lo, unit, lo * unit, hi * unit, f"{lo}-{hi}x {kind}{fallback}"))
    return items


def stack_cost(
    resources: Iterable,
    max_replicas: Mapping[str, int] = {},
    prices: catalog.Prices | None = None,
) -> StackCost:
    """`max_replicas`: model (Deployment) name -> configured max, used where no autoscaler is recorded."""
    rs = list(resources)
    p = prices or catalog.prices()
    items = [
        control_plane(rs, p),
        system_nodes(rs, p),
        *nat(rs, p),
        load_balancers(rs, p),
        efs(rs, p),
        rds(rs, p),
        *accelerators(rs, p, max_replicas),
    ]
    return StackCost(tuple(i for i in items if i is not None))


# ---- showback: accelerator $/h by team ----------------------------------------------------------

UNASSIGNED = "(unassigned)"
SHOWBACK_RULE = "each model's accelerator $/h split equally among the teams allowed to call it"


def cost_by_team(
    model_usd: Mapping[str, tuple[float, float]], team_models: Mapping[str, Iterable[str]]
) -> dict[str, dict]:
    """team -> {"min", "max", "models": {model: share}}: each model's (min, max) $/h divided equally among
    the teams whose allowed models include it; a model no team may call is UNASSIGNED. The teams' sums
    equal the models' sum."""
    allowed = {t: set(ms) for t, ms in team_models.items()}
    out: dict[str, dict] = {}
    for model, (lo, hi) in model_usd.items():
        users = sorted(t for t, ms in allowed.items() if model in ms) or [UNASSIGNED]
        for t in users:
            row = out.setdefault(t, {"min": 0.0, "max": 0.0, "models": {}})
            row["min"] += lo / len(users)
            row["max"] += hi / len(users)
            row["models"][model] = round(1 / len(users), 4)
    return {t: {**row, "min": _r(row["min"]), "max": _r(row["max"])} for t, row in sorted(out.items())}
