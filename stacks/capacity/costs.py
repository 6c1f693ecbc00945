"""The whole stack's $/h, from what the program registers (not from config), so it follows what is built.

Items: EKS control plane, system node group (desired size x first instance type), NAT gateways and public
IPv4 addresses (NAT Elastic IPs, an internet-facing NLB's address per AZ), load-balancer Services (NLB
hour), EFS (assumed stored GB), RDS (class, Multi-AZ, storage), ElastiCache (node type x nodes), EBS gp3
volumes (node roots, EBS-backed claims, the Prometheus claim in the chart values), CloudWatch Logs (ingest
and storage at the log group's retention, from an assumed GB/day per log type) and accelerator nodes at
min and max. Accelerator nodes: each model Deployment's replicas on the
instance type its pods select (`node.kubernetes.io/instance-type`), one node per replica; the max is a
HorizontalPodAutoscaler's maxReplicas when one targets it, otherwise the model's configured max replicas.
Prices: stacks/catalog/prices.yaml and instances.yaml (us-east-1 on-demand, sources there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stacks import catalog
from stacks.capacity import quantity

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
POOL_LABEL = "llm-serving/pool"
EBS_PROVISIONER = "ebs.csi.aws.com"
GP3_BASE_IOPS, GP3_BASE_MBPS = 3000, 125  # included in the gp3 GB-month price
NOT_INCLUDED = (
    "not included: data transfer and NAT per-GB processing, NLB LCUs, KMS keys and requests, EFS throughput, "
    "RDS backup storage, Logs Insights queries"
)
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


NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
RDS_INSTANCE = "aws:rds/instance:Instance"
# RDS keeps Enhanced Monitoring's RDSOSMetrics log group 30 days (RDS user guide, "Enhanced Monitoring").
ENHANCED_MONITORING_DAYS = 30


def control_plane(resources, p: catalog.Prices) -> Item | None:
    n = sum(1 for r in resources if r.type == "eks:index:Cluster")
    return _fixed(
        "EKS control plane",
        n,
        p.eks_standard,
        # upgradePolicy STANDARD (components/cluster.py): EKS upgrades the minor version at the end of
        # standard support instead of billing extended support.
        f"upgradePolicy STANDARD: never the ${p.eks_extended:.2f}/h extended rate; EKS upgrades the"
        " version at its end of standard support",
    )


def system_nodes(resources, p: catalog.Prices) -> Item | None:
    groups = [r for r in resources if r.type == NODE_GROUP]
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
            _fixed("public IPv4 (NAT Elastic IPs)", ips, p.public_ipv4),
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


def _month(usd_per_month: float, p: catalog.Prices) -> float:
    return usd_per_month / p.hours_per_month


def elasticache(resources, p: catalog.Prices) -> Item | None:
    groups = [r for r in resources if r.type == "aws:elasticache/replicationGroup:ReplicationGroup"]
    if not groups:
        return None
    nodes, usd, notes = 0, 0.0, []
    for g in groups:
        kind = g.inputs.get("nodeType", "")
        n = int(g.inputs.get("numCacheClusters") or 0) or int(g.inputs.get("numNodeGroups") or 1) * (
            1 + int(g.inputs.get("replicasPerNodeGroup") or 0)
        )
        unit = p.elasticache.get(kind)
        nodes += n
        usd += n * (unit or 0.0)
        notes.append(f"{n}x {kind}" + ("" if unit is not None else f" ({NO_PRICE})"))
    return Item("ElastiCache", nodes, usd / nodes if nodes else 0.0, usd, usd, ", ".join(notes))


def public_nlb_ips(resources, p: catalog.Prices) -> Item | None:
    """An internet-facing NLB holds one public IPv4 in each AZ it spans: the AZs of the system node
    group's subnets (one subnet per AZ), where the cloud controller places it."""
    public = sum(
        1
        for r in resources
        if r.type == "kubernetes:core/v1:Service"
        and (r.inputs.get("spec") or {}).get("type") == "LoadBalancer"
        and ((r.inputs.get("metadata") or {}).get("annotations") or {}).get(
            "service.beta.kubernetes.io/aws-load-balancer-internal"
        )
        != "true"
    )
    azs = max((len(r.inputs.get("subnetIds") or []) for r in resources if r.type == NODE_GROUP), default=0)
    return _fixed("public IPv4 (internet-facing NLB)", public * azs, p.public_ipv4, f"{public} NLB x {azs} AZs")


def _gp3_month(gb: float, iops: float, mbps: float, p: catalog.Prices) -> float:
    extra = max(0.0, iops - GP3_BASE_IOPS) * p.gp3_iops_month + max(0.0, mbps - GP3_BASE_MBPS) * p.gp3_mbps_month
    return gb * p.gp3_gb_month + extra


def system_root_volumes(resources, p: catalog.Prices) -> Item | None:
    """Each system node's root volume: its launch template's block device, times the desired size."""
    templates = {r.name: r for r in resources if r.type == "aws:ec2/launchTemplate:LaunchTemplate"}
    nodes, usd, notes = 0, 0.0, []
    for g in (r for r in resources if r.type == NODE_GROUP):
        lt_id = str((g.inputs.get("launchTemplate") or {}).get("id", ""))
        lt = templates.get(lt_id.removesuffix("-id"))
        size = int((g.inputs.get("scalingConfig") or {}).get("desiredSize", 0))
        for bd in (lt.inputs.get("blockDeviceMappings") or []) if lt else []:
            ebs = bd.get("ebs") or {}
            gb = float(ebs.get("volumeSize") or 0)
            nodes += size
            usd += size * _month(_gp3_month(gb, float(ebs.get("iops") or 0), float(ebs.get("throughput") or 0), p), p)
            notes.append(f"{size}x {gb:g} GB")
    return Item("EBS: system node roots", nodes, usd / nodes, usd, usd, ", ".join(notes)) if nodes else None


def _node_class_usd(node_class: dict, p: catalog.Prices) -> tuple[float, str]:
    """$/h of one Karpenter node's EBS volumes (EC2NodeClass blockDeviceMappings)."""
    usd, gbs = 0.0, []
    for bd in (node_class.get("spec") or {}).get("blockDeviceMappings") or []:
        ebs = bd.get("ebs") or {}
        gb = quantity.gib(ebs.get("volumeSize", 0))
        usd += _month(_gp3_month(gb, float(ebs.get("iops") or 0), float(ebs.get("throughput") or 0), p), p)
        gbs.append(f"{gb:g} GB")
    return usd, "+".join(gbs)


def _pool_of(pod: dict) -> str | None:
    required = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for e in term.get("matchExpressions") or []:
            if e.get("key") == POOL_LABEL and e.get("operator") == "In" and e.get("values"):
                return str(e["values"][0])
    return (pod.get("nodeSelector") or {}).get(POOL_LABEL)


def accelerator_root_volumes(resources, accel_items: list[Item], p: catalog.Prices) -> Item | None:
    """Each accelerator node's volumes, from its pool's EC2NodeClass, at the accelerator items' node counts."""
    by_name = {(r.inputs.get("metadata") or {}).get("name"): r.inputs for r in resources}
    classes = {n: i for n, i in by_name.items() if i.get("kind") == "EC2NodeClass"}
    pools = {n: i for n, i in by_name.items() if i.get("kind") == "NodePool"}
    lo = hi = 0.0
    nodes = 0
    notes: list[str] = []
    for item in accel_items:
        dep = next(r for r in resources if r.type == DEPLOYMENT and item.name.endswith(f": {_meta_name(r)}"))
        pool = pools.get(_pool_of(((dep.inputs.get("spec") or {}).get("template") or {}).get("spec") or {}))
        ref = ((((pool or {}).get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeClassRef") or {}
        if ref.get("name") not in classes or not item.unit_usd:
            continue
        unit, gbs = _node_class_usd(classes[ref["name"]], p)
        nodes += item.count
        lo += item.count * unit
        hi += item.max_usd / item.unit_usd * unit
        notes.append(f"{gbs} per {ref['name']} node")
    if not hi:
        return None
    return Item(
        "EBS: accelerator node roots", nodes, lo / nodes if nodes else 0.0, lo, hi, ", ".join(dict.fromkeys(notes))
    )


def _meta_name(r) -> str:
    return (r.inputs.get("metadata") or {}).get("name", r.name)


def claim_volumes(resources, p: catalog.Prices) -> Item | None:
    """EBS-backed claims: PersistentVolumeClaims on an EBS StorageClass, and the Prometheus claim the
    kube-prometheus-stack values ask for (the operator creates it, Pulumi never sees it)."""
    ebs_classes = {
        _meta_name(r) for r in resources if r.type == STORAGE_CLASS and r.inputs.get("provisioner") == EBS_PROVISIONER
    }
    sizes: list[tuple[str, float]] = []
    for r in resources:
        spec = r.inputs.get("spec") or {}
        if r.type == PVC and spec.get("storageClassName") in ebs_classes:
            sizes.append((_meta_name(r), quantity.gib(spec["resources"]["requests"]["storage"])))
        if r.type == HELM_RELEASE:
            tmpl = (
                (((r.inputs.get("values") or {}).get("prometheus") or {}).get("prometheusSpec") or {}).get(
                    "storageSpec"
                )
                or {}
            ).get("volumeClaimTemplate") or {}
            req = ((tmpl.get("spec") or {}).get("resources") or {}).get("requests") or {}
            if "storage" in req:
                sizes.append(("prometheus", quantity.gib(req["storage"])))
    if not sizes:
        return None
    usd = sum(_month(gb * p.gp3_gb_month, p) for _, gb in sizes)
    note = ", ".join(f"{n} {gb:g} GB" for n, gb in sizes)
    return Item("EBS: volume claims", len(sizes), usd / len(sizes), usd, usd, note)


def _log_streams(resources) -> list[tuple[str, int | None]]:
    """(log type, retention days or None) for every log type the stack sends to CloudWatch Logs. A log
    group the sender depends on gives the retention; without one, it is unset."""
    by_urn = {r.urn: r for r in resources}

    def group_of(r) -> dict | None:
        groups = [by_urn[u].inputs for u in r.dependencies if u in by_urn and by_urn[u].type == LOG_GROUP]
        return groups[0] if groups else None

    out: list[tuple[str, int | None]] = []
    for r in resources:
        g = group_of(r)
        days = int(g["retentionInDays"]) if g and g.get("retentionInDays") else None
        if r.type == "eks:index:Cluster":
            out += [(f"eks/{t}", days) for t in r.inputs.get("enabledClusterLogTypes") or []]
        elif r.type == "aws:ec2/flowLog:FlowLog" and r.inputs.get("logDestinationType") == "cloud-watch-logs":
            out.append(("vpc/flowLogs", days))
        elif r.type == RDS_INSTANCE:
            out += [(f"rds/{t}", days) for t in r.inputs.get("enabledCloudwatchLogsExports") or []]
            if r.inputs.get("monitoringInterval"):
                out.append(("rds/enhancedMonitoring", None))  # RDSOSMetrics: RDS creates it, 30 days
    return out


def cloudwatch_logs(resources, p: catalog.Prices) -> Item | None:
    """Ingest of each log type's assumed GB/day, plus storage at full retention (GB/day x days)."""
    streams = _log_streams(resources)
    if not streams:
        return None
    usd, gb_day, days_seen = 0.0, 0.0, set()
    for kind, days in streams:
        d = days or (ENHANCED_MONITORING_DAYS if kind == "rds/enhancedMonitoring" else p.logs_unset_retention_days)
        rate = p.logs_gb_per_day.get(kind, 0.0)
        gb_day += rate
        days_seen.add(d)
        usd += rate * p.logs_ingest_gb / 24 + _month(rate * d * p.logs_storage_gb_month, p)
    note = (
        f"{len(streams)} log types, assumed {gb_day:g} GB/day (prices.yaml), "
        f"stored {'/'.join(str(d) for d in sorted(days_seen))} days"
    )
    return Item("CloudWatch Logs", len(streams), usd / len(streams), usd, usd, note)


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
    accel = accelerators(rs, p, max_replicas)
    items = [
        control_plane(rs, p),
        system_nodes(rs, p),
        *nat(rs, p),
        public_nlb_ips(rs, p),
        load_balancers(rs, p),
        efs(rs, p),
        rds(rs, p),
        elasticache(rs, p),
        system_root_volumes(rs, p),
        claim_volumes(rs, p),
        cloudwatch_logs(rs, p),
        *accel,
        accelerator_root_volumes(rs, accel, p),
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
