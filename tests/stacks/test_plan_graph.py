"""resources.json dependencies: what the engine waits for, and the orderings a real deploy relies on."""

import json

import pulumi
import pulumi_aws as aws

from stacks.offline import runtime
from tests.conftest import ROOT


class Pair(pulumi.ComponentResource):
    def __init__(self, name, opts=None):
        super().__init__("test:index:Pair", name, None, opts)
        self.a = aws.ec2.Eip(f"{name}-a", opts=pulumi.ResourceOptions(parent=self))
        self.b = aws.ec2.Eip(f"{name}-b", opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


def small_program():
    vpc = aws.ec2.Vpc("vpc", cidr_block="10.0.0.0/16")
    aws.ec2.Subnet("subnet", vpc_id=vpc.id, cidr_block="10.0.1.0/24")  # input only
    aws.ec2.InternetGateway("igw", opts=pulumi.ResourceOptions(depends_on=[vpc]))  # depends_on only
    pair = Pair("pair")
    aws.ec2.Eip("after-pair", opts=pulumi.ResourceOptions(depends_on=[pair]))  # a local component
    aws.ec2.Eip("alone")


def by_name(rec):
    return {r.name: r for r in rec.resources}


def test_dependencies_are_depends_on_plus_input_sources_and_components_expand_to_children():
    rec = runtime.run(small_program, config={}, timeout=30)
    r = by_name(rec)
    urn = lambda n: r[n].urn  # noqa: E731
    assert r["subnet"].dependencies == (urn("vpc"),)
    assert r["subnet"].property_dependencies["vpcId"] == (urn("vpc"),)
    assert r["igw"].dependencies == (urn("vpc"),)
    assert r["igw"].property_dependencies == {}
    # depends_on a local component = depends_on each of its children (the component itself is no node)
    assert set(r["after-pair"].dependencies) == {urn("pair-a"), urn("pair-b")}
    assert r["alone"].dependencies == ()
    assert r["pair-a"].parent == urn("pair")


def edges(resources):
    return {x["urn"]: set(x["dependencies"]) for x in resources}


def key_urns(resources) -> dict:
    """`Kind/name` -> URN (names alone repeat: a Role and an Addon are both addons-aws-ebs-csi-driver)."""
    return {f"{x['type'].rsplit(':', 1)[-1]}/{x['name']}": x["urn"] for x in resources}


def waits(resources, later: str, earlier: str) -> bool:
    """`later` waits (directly or through others) for `earlier`; both `Kind/name`."""
    urns = key_urns(resources)
    g = edges(resources)
    seen, todo = set(), [urns[later]]
    while todo:
        u = todo.pop()
        for d in g.get(u, ()):
            if d == urns[earlier]:
                return True
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return False


def direct(resources, later: str, earlier: str) -> bool:
    urns = key_urns(resources)
    return urns[earlier] in edges(resources)[urns[later]]


def dev_resources(plan_of):
    _, _, out = plan_of(ROOT / "Pulumi.dev.yaml")
    return json.loads((out / "resources.json").read_text())


def test_dev_orderings_a_real_deploy_relies_on(plan_of):
    res = dev_resources(plan_of)
    assert direct(res, "Release/karpenter-controller", "Release/karpenter-crd")
    assert direct(res, "Release/karpenter-controller", "NodeGroup/system-ng")
    assert direct(res, "NodePool/pool-gpu-nodepool", "EC2NodeClass/nodeclass-nvidia-nodeclass")
    assert waits(res, "EC2NodeClass/nodeclass-nvidia-nodeclass", "Release/karpenter-crd")
    for addon in ("kube-proxy", "coredns", "aws-ebs-csi-driver", "aws-efs-csi-driver"):
        assert direct(res, f"Addon/addons-{addon}", "NodeGroup/system-ng"), addon
    # Pod networking first: a new node needs aws-node (vpc-cni, credentials from the Pod Identity agent)
    # before it can run anything, so both come before the node group.
    assert waits(res, "NodeGroup/system-ng", "Addon/cluster-net-vpc-cni")
    assert waits(res, "Addon/cluster-net-vpc-cni", "Addon/cluster-net-eks-pod-identity-agent")
    assert direct(res, "Release/karpenter-controller", "Addon/addons-coredns")  # it resolves the API server and STS
    for dep in ("NodePool/pool-gpu-nodepool", "Release/gpu-operator-release"):
        assert direct(res, "Deployment/vllm-qwen3-0-6b-deployment", dep), dep
    # remote components count: the node group waits for the eks.Cluster component
    assert direct(res, "NodeGroup/system-ng", "Cluster/cluster-eks")


def test_input_derived_edges_are_recorded(plan_of):
    _, rec, _ = plan_of(ROOT / "Pulumi.dev.yaml")
    r = {x.name: x for x in rec.resources if x.custom}
    lt, ng = r["system-lt"], r["system-ng"]
    assert lt.urn in ng.dependencies and ng.property_dependencies["launchTemplate"] == (lt.urn,)
    efs = rec.one("aws:efs/fileSystem:FileSystem", "storage-efs")
    for mt in rec.by_type("aws:efs/mountTarget:MountTarget"):
        assert efs.urn in mt.dependencies and efs.urn in mt.property_dependencies["fileSystemId"]


def test_ordering_checker_can_fail(plan_of):
    res = dev_resources(plan_of)
    assert not waits(res, "Release/karpenter-crd", "NodeGroup/system-ng")  # CRDs need the API server, not nodes
    assert not waits(res, "Vpc/network-vpc", "Cluster/cluster-eks")
    assert not direct(res, "EC2NodeClass/nodeclass-nvidia-nodeclass", "NodePool/pool-gpu-nodepool")
