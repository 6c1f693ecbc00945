"""Karpenter EC2NodeClass (one per accelerator kind) and NodePool (one per configured pool)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import ACCELERATOR_RESOURCE, POOL_LABEL, CrdsHandle, NodeClassSpec, PoolSpec, taint


def subnet_selector(spec: NodeClassSpec, cluster_name: str) -> list[dict]:
    """Subnets we created carry the discovery tag; given subnets (existing VPC) are selected by id,
    which needs no write access to someone else's subnets and cannot collide with another cluster's tag."""
    if spec.subnet_ids:
        return [{"id": s} for s in spec.subnet_ids]
    return [{"tags": {"karpenter.sh/discovery": cluster_name}}]


def render_node_class(spec: NodeClassSpec, *, cluster_name: str, instance_profile: str) -> dict:
    """EC2NodeClass spec. IMDS defaults (IMDSv2, hop 1) are Karpenter's and kept by omission."""
    spec_out: dict = {
        "amiSelectorTerms": [{"alias": spec.ami_alias}],
        "instanceProfile": instance_profile,
        "subnetSelectorTerms": subnet_selector(spec, cluster_name),
        # The EKS-managed cluster security group: EKS itself tags it `aws:eks:cluster-name=<cluster>`
        # (the `karpenter.sh/discovery` tag we set on the cluster resource is not copied to it).
        "securityGroupSelectorTerms": [{"tags": {"aws:eks:cluster-name": cluster_name}}],
        "blockDeviceMappings": [
            {
                "deviceName": "/dev/xvda",
                "ebs": {
                    "volumeSize": f"{spec.root_volume_gib}Gi",
                    "volumeType": "gp3",
                    "encrypted": True,
                    "iops": spec.root_volume_iops,
                    "throughput": spec.root_volume_throughput,
                    "deleteOnTermination": True,
                },
            }
        ],
        "tags": {"karpenter.sh/discovery": cluster_name, "llm-serving/accelerator": spec.kind},
    }
    if spec.instance_store_raid0:
        # Local NVMe (g5/g6/g6e/p4d/p5/trn1) becomes one RAID0 array holding containerd and kubelet
        # state: image layers land on NVMe, not on the EBS root volume.
        spec_out["instanceStorePolicy"] = "RAID0"
    return spec_out


def render_node_pool(spec: PoolSpec) -> dict:
    accel = ACCELERATOR_RESOURCE[spec.kind]  # the device-plugin resource is the taint key
    labels = {POOL_LABEL: spec.name, **dict(spec.labels)}
    reqs = [
        {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": list(spec.families)},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": list(spec.capacity_types)},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
    ]
    out = {
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": spec.node_class},
                "requirements": reqs,
                "taints": [taint(accel)],
                "expireAfter": spec.expire_after,
                "terminationGracePeriod": spec.termination_grace_period,
            },
        },
        "limits": {
            "cpu": str(spec.cpu_limit),
            "memory": f"{spec.memory_limit_gib}Gi",
            accel: str(spec.accelerator_limit),
        },
        "disruption": {
            "consolidationPolicy": "WhenEmpty",
            "consolidateAfter": spec.consolidate_after,
            "budgets": [{"nodes": spec.disruption_budget_nodes}],
        },
    }
    if spec.weight is not None:
        out["weight"] = spec.weight
    return out


@dataclass(frozen=True)
class NodeClassArgs:
    spec: NodeClassSpec
    cluster_name: str
    instance_profile: pulumi.Input[str]
    crds: CrdsHandle


class KarpenterNodeClass(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodeClassArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:accelerators:KarpenterNodeClass", name, None, opts)
        spec = pulumi.Output.from_input(args.instance_profile).apply(
            lambda p: render_node_class(args.spec, cluster_name=args.cluster_name, instance_profile=p)
        )
        self.resource = k8s.apiextensions.CustomResource(
            f"{name}-nodeclass",
            api_version="karpenter.k8s.aws/v1",
            kind="EC2NodeClass",
            metadata={"name": args.spec.name},
            spec=spec,
            # The CRD comes from the Karpenter releases.
            opts=ResourceOptions(parent=self, depends_on=[args.crds.release]),
        )
        self.name = args.spec.name
        self.register_outputs({})


@dataclass(frozen=True)
class NodePoolArgs:
    spec: PoolSpec
    crds: CrdsHandle
    node_class: pulumi.Resource


class KarpenterNodePool(pulumi.ComponentResource):
    def __init__(self, name: str, args: NodePoolArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:accelerators:KarpenterNodePool", name, None, opts)
        self.resource = k8s.apiextensions.CustomResource(
            f"{name}-nodepool",
            api_version="karpenter.sh/v1",
            kind="NodePool",
            metadata={"name": args.spec.name},
            spec=render_node_pool(args.spec),
            # CRD from the Karpenter release; the class it references must exist first (and go last).
            opts=ResourceOptions(parent=self, depends_on=[args.crds.release, args.node_class]),
        )
        self.register_outputs({})
