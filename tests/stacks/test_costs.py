"""Whole-stack $/h from the recorded resources, with totals computed by hand (us-east-1 list prices)."""

from dataclasses import dataclass, field

import pytest

from stacks.capacity import costs
from stacks.plan import run_program
from tests.conftest import ROOT

# Hand arithmetic, shared by dev and seed002 (3 AZs, 2 system nodes, one internal NLB, one EFS):
# EKS 0.10 + 2 x m7i.xlarge 0.2016 + 3 NAT x 0.045 + 3 EIP x 0.005 + NLB 0.0225 + EFS 100 GB x 0.30 / 730
# + system roots 2 x 50 GB x $0.08 / 730
# + CloudWatch Logs: 5 EKS control-plane types (0.2 + 0.5 + 0.05 + 0.1 + 0.05 = 0.9 GB/day) and VPC flow
#   logs (0.5 GB/day) = 1.4 GB/day: ingest 1.4 x 0.50 / 24, storage 1.4 x 365 days x 0.03 / 730
LOGS = 1.4 * 0.50 / 24 + 1.4 * 365 * 0.03 / 730  # = 0.0501667
PLATFORM = 0.10 + 0.4032 + 0.135 + 0.015 + 0.0225 + 30 / 730 + 2 * 50 * 0.08 / 730 + LOGS  # = 0.7780215
PROMETHEUS = 50 * 0.08 / 730  # the 50 GiB claim in the kube-prometheus-stack values
GPU_ROOT = 200 * 0.08 / 730  # the nvidia EC2NodeClass root volume (200Gi gp3, baseline IOPS/throughput)


def items(doc):
    return {i["name"]: i for i in doc["items"]}


def test_dev_stack_cost(plan_of):
    _intent, rec, _ = plan_of(ROOT / "Pulumi.dev.yaml")
    doc = costs.stack_cost(rec.resources, {"qwen3-0-6b": 2}).as_dict()
    # a third system node (m7i.xlarge + its 50 GB root); g6.xlarge 0.8048 and its root x 1 (min) / x 2 (max)
    third = 0.2016 + 50 * 0.08 / 730
    assert doc["min"] == pytest.approx(1.8172, abs=1e-4)
    assert doc["min"] == pytest.approx(PLATFORM + third + PROMETHEUS + 0.8048 + GPU_ROOT, abs=1e-4)
    assert doc["max"] == pytest.approx(PLATFORM + third + PROMETHEUS + 2 * (0.8048 + GPU_ROOT), abs=1e-4)
    it = items(doc)
    assert it["NAT gateways"]["count"] == 3 and it["system nodes"]["min"] == pytest.approx(0.6048)
    assert it["accelerator nodes: qwen3-0-6b"]["note"] == "1-2x g6.xlarge (+7 capacity-fallback types, priced higher)"


def test_seed002_stack_cost(plan_of):
    _, rec, _ = plan_of(ROOT / "stacks/examples/Pulumi.seed002-g5-qwen3-14b.yaml")
    doc = costs.stack_cost(rec.resources, {"qwen3-14b": 2}).as_dict()
    # three system nodes and Prometheus (as dev); one g5.12xlarge 5.672 with its root at min, two at max
    base = PLATFORM + 0.2016 + 50 * 0.08 / 730 + PROMETHEUS
    assert doc["min"] == pytest.approx(base + 5.672 + GPU_ROOT, abs=1e-4)
    assert doc["max"] == pytest.approx(base + 2 * (5.672 + GPU_ROOT), abs=1e-4)


def test_rds_multi_az_is_priced_from_the_registered_instance(tmp_path):
    cfg = tmp_path / "Pulumi.db.yaml"
    cfg.write_text((ROOT / "Pulumi.dev.yaml").read_text() + "  llm-serving:gateway:\n    database: {enabled: true}\n")
    _, rec = run_program("db", cfg)
    it = items(costs.stack_cost(rec.resources).as_dict())
    # db.t4g.medium Multi-AZ 0.130 + 20 GB x 0.23 / 730
    assert it["RDS"]["min"] == pytest.approx(0.130 + 20 * 0.23 / 730, abs=1e-4)


@dataclass
class R:
    type: str
    inputs: dict = field(default_factory=dict)
    urn: str = "u"
    name: str = "n"
    dependencies: tuple = ()


def test_cost_follows_the_records_not_the_config():
    # One NAT gateway recorded (e.g. a single-NAT network): one NAT hour, whatever the config said.
    recs = [R("aws:ec2/natGateway:NatGateway"), R("eks:index:Cluster")]
    it = items(costs.stack_cost(recs).as_dict())
    assert it["NAT gateways"]["min"] == pytest.approx(0.045) and "RDS" not in it and "EFS" not in it


def test_an_unpriced_rds_class_is_shown_without_a_price():
    """The config validates the class; the cost counts its storage only and says so. 100 GB Multi-AZ at
    $0.23/GB-month over 730 h = $0.031507/h."""
    rec = R("aws:rds/instance:Instance", {"instanceClass": "db.x9.huge", "multiAz": True, "allocatedStorage": 100})
    it = items(costs.stack_cost([rec]).as_dict())
    assert it["RDS"]["min"] == pytest.approx(0.0315, abs=1e-4)
    assert "db.x9.huge Multi-AZ, 100 GB (no price in stacks/catalog/prices.yaml" in it["RDS"]["note"]


def test_the_plan_table_prints_the_breakdown_and_total(tmp_path, capsys):
    from stacks.plan import main as plan_main

    assert plan_main(["dev"]) == 0
    out = capsys.readouterr().out
    assert "whole stack $/h" in out
    total = [line for line in out.splitlines() if line.strip().startswith("total ")]
    assert total and total[0].split()[1:] == ["$1.8172", "$2.6439"]
    assert "  not included: data transfer" in out


def _k8s(kind: str, name: str, spec: dict | None = None, **extra) -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": "ns"}, **({"spec": spec} if spec else {}), **extra}


def test_every_new_item_by_hand():
    """A fixture with one of everything the cost items read, priced by hand (us-east-1, prices.yaml)."""
    pod = {
        "nodeSelector": {costs.INSTANCE_TYPE_LABEL: "g6.xlarge"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "llm-serving/pool", "operator": "In", "values": ["gpu"]}]}
                    ]
                }
            }
        },
    }
    ebs = {"volumeSize": "100Gi", "volumeType": "gp3", "iops": 4000, "throughput": 250}
    recs = [
        R("aws:elasticache/replicationGroup:ReplicationGroup", {"nodeType": "cache.t4g.small", "numCacheClusters": 3}),
        R(
            "aws:eks/nodeGroup:NodeGroup",
            {
                "subnetIds": ["a", "b"],
                "scalingConfig": {"desiredSize": 3},
                "instanceTypes": ["m7i.xlarge"],
                "launchTemplate": {"id": "lt-id"},
            },
            name="ng",
        ),
        R("aws:ec2/launchTemplate:LaunchTemplate", {"blockDeviceMappings": [{"ebs": {"volumeSize": 40}}]}, name="lt"),
        R("kubernetes:core/v1:Service", _k8s("Service", "door", {"type": "LoadBalancer"})),
        R(
            "kubernetes:storage.k8s.io/v1:StorageClass",
            {**_k8s("StorageClass", "gp3"), "provisioner": "ebs.csi.aws.com"},
        ),
        R(
            "kubernetes:storage.k8s.io/v1:StorageClass",
            {**_k8s("StorageClass", "efs"), "provisioner": "efs.csi.aws.com"},
        ),
        R(
            "kubernetes:core/v1:PersistentVolumeClaim",
            _k8s(
                "PersistentVolumeClaim",
                "ui",
                {"storageClassName": "gp3", "resources": {"requests": {"storage": "30Gi"}}},
            ),
        ),
        R(
            "kubernetes:core/v1:PersistentVolumeClaim",
            _k8s(
                "PersistentVolumeClaim",
                "cache",
                {"storageClassName": "efs", "resources": {"requests": {"storage": "1Ti"}}},
            ),
        ),
        R(
            "kubernetes:helm.sh/v3:Release",
            {
                "values": {
                    "prometheus": {
                        "prometheusSpec": {
                            "storageSpec": {
                                "volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "20Gi"}}}}
                            }
                        }
                    }
                }
            },
        ),
        R("aws:cloudwatch/logGroup:LogGroup", {"retentionInDays": 90}, urn="lg"),
        R("eks:index:Cluster", {"enabledClusterLogTypes": ["audit"]}, urn="eks", dependencies=("lg",)),
        R(
            "aws:rds/instance:Instance",
            {"instanceClass": "db.t4g.micro", "allocatedStorage": 10, "enabledCloudwatchLogsExports": ["postgresql"]},
        ),
        R(
            "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass",
            _k8s("EC2NodeClass", "nvidia", {"blockDeviceMappings": [{"ebs": ebs}]}),
        ),
        R(
            "kubernetes:karpenter.sh/v1:NodePool",
            _k8s("NodePool", "gpu", {"template": {"spec": {"nodeClassRef": {"name": "nvidia"}}}}),
        ),
        R(
            "kubernetes:apps/v1:Deployment",
            _k8s("Deployment", "m", {"replicas": 1, "template": {"spec": pod}}),
            urn="d",
        ),
    ]
    it = items(costs.stack_cost(recs, {"m": 3}).as_dict())
    assert it["ElastiCache"]["min"] == pytest.approx(3 * 0.032, abs=1e-4)
    # an internet-facing NLB (no internal annotation) over the node group's 2 AZs: 2 public IPv4s
    assert it["public IPv4 (internet-facing NLB)"]["min"] == pytest.approx(2 * 0.005, abs=1e-4)
    assert it["EBS: system node roots"]["min"] == pytest.approx(3 * 40 * 0.08 / 730, abs=1e-4)
    # gp3 claims only (not the EFS one): ui 30 GB + prometheus 20 GB
    assert it["EBS: volume claims"]["min"] == pytest.approx(50 * 0.08 / 730, abs=1e-4)
    assert it["EBS: volume claims"]["note"] == "ui 30 GB, prometheus 20 GB"
    # audit 0.5 GB/day kept 90 days; RDS postgresql 0.01 GB/day without a log group: 365 days
    audit = 0.5 * 0.50 / 24 + 0.5 * 90 * 0.03 / 730
    pg = 0.01 * 0.50 / 24 + 0.01 * 365 * 0.03 / 730
    assert it["CloudWatch Logs"]["min"] == pytest.approx(audit + pg, abs=1e-4)
    # 100 GB + 1000 IOPS over 3000 at $0.005 + 125 MB/s over 125 at $0.04, per node-month; 1 node min, 3 max
    node = (100 * 0.08 + 1000 * 0.005 + 125 * 0.04) / 730
    assert it["EBS: accelerator node roots"]["min"] == pytest.approx(node, abs=1e-4)
    assert it["EBS: accelerator node roots"]["max"] == pytest.approx(3 * node, abs=1e-4)


def test_control_no_volumes_no_logs_no_items():
    """Negative control: an internal NLB has no public IPv4; a stack without these resources gets no item."""
    svc = _k8s("Service", "door", {"type": "LoadBalancer"})
    svc["metadata"]["annotations"] = {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
    recs = [R("aws:eks/nodeGroup:NodeGroup", {"subnetIds": ["a", "b"]}), R("kubernetes:core/v1:Service", svc)]
    names = set(items(costs.stack_cost(recs).as_dict()))
    assert names == {"load balancers (NLB)", "system nodes"}
