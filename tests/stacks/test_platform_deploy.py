"""Deploy rules for the platform: what real AWS, EKS and the Pulumi CLI would
do with the program's resources, checked on the whole program under mocks. Expected values are
written by hand; each test fails if its finding is reintroduced."""

import json
import subprocess
import sys

import pytest

from stacks import config
from stacks.offline.runtime import ACCOUNT, EXISTING_VPC_CIDR, Mocks
from stacks.plan import main as plan_main
from stacks.plan import run_program
from stacks.yamlio import dump_yaml, load_yaml
from tests.conftest import ROOT

DEV = ROOT / "Pulumi.dev.yaml"
CONFIGS = ROOT / "tests" / "configs"
EXISTING = CONFIGS / "cluster-existing-vpc.ok.yaml"
DATABASE = CONFIGS / "gateway-database.ok.yaml"
SEED000 = ROOT / "stacks" / "examples" / "Pulumi.seed000-inf2-llama-qwen-webui.yaml"
MODEL = {"m": {"preset": "qwen3-0.6b"}}


def of(rec, typ):
    return [r for r in rec.resources if r.type == typ]


def named(rec, name):
    [r] = [r for r in rec.resources if r.name == name]
    return r


def stack_file(tmp_path, cluster: dict, extra: dict | None = None, name="variant"):
    doc = {
        "config": {
            "aws:region": "us-east-1",
            "llm-serving:cluster": cluster,
            "llm-serving:models": MODEL,
            **(extra or {}),
        }
    }
    p = tmp_path / f"Pulumi.{name}.yaml"
    p.write_text(dump_yaml(doc))
    return p


# ---- the API endpoint is reachable from where `pulumi up` runs ---------------------------------


def resolve(cluster: dict, **extra):
    return config.resolve({"cluster": cluster, "models": MODEL, **extra}, stack="t")


OPEN = "llm-serving:cluster.publicAccessCidrs: the public API endpoint is open to the whole internet"


def test_an_unset_allow_list_is_warned():
    intent = resolve({})
    assert intent.config.cluster.endpointPublicAccess is True
    assert [w for w in intent.warnings if w.startswith(OPEN)], intent.warnings


@pytest.mark.parametrize(
    "cidrs", [["0.0.0.0/0"], ["0.0.0.0/1", "128.0.0.0/1"], ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1", "10.0.0.0/8"]]
)
def test_an_allow_list_open_to_every_address_is_refused(cidrs):
    with pytest.raises(config.ConfigError) as e:
        resolve({"publicAccessCidrs": cidrs})
    assert e.value.problems[0].startswith(
        f"llm-serving:cluster.publicAccessCidrs: {', '.join(cidrs)} opens the API server to the internet — "
    )


@pytest.mark.parametrize("cidrs", [["203.0.113.7/32"], ["17.0.0.0/8"], ["198.51.100.0/24", "203.0.113.0/25"]])
def test_a_restricted_endpoint_is_not_warned(cidrs):
    assert resolve({"publicAccessCidrs": cidrs}).warnings == ()


def test_ipv6_cidrs_are_refused_on_an_ipv4_cluster():
    with pytest.raises(config.ConfigError) as e:
        resolve({"publicAccessCidrs": ["198.51.100.0/24", "2001:db8::/32"]})
    assert e.value.problems == [
        "llm-serving:cluster.publicAccessCidrs: '2001:db8::/32' is IPv6; the cluster is IPv4 "
        "and EKS accepts only IPv4 CIDRs here — list the IPv4 networks you deploy from"
    ]


def test_private_endpoint_only_from_inside_an_existing_vpc():
    existing = {"vpcId": "vpc-0abc", "privateSubnetIds": ["subnet-0a", "subnet-0b"]}
    ok = resolve({"endpointPublicAccess": False, "deployFromVpc": True, "vpc": {"existing": existing}})
    assert ok.warnings == ()
    with pytest.raises(config.ConfigError) as e:
        resolve({"endpointPublicAccess": False, "vpc": {"existing": existing}})
    assert e.value.problems[0].startswith("llm-serving:cluster.endpointPublicAccess: ")


def test_team_stacks_get_no_endpoint_warning():
    intent = config.resolve({"team": {"name": "t"}, "platformStack": "o/llm-serving/p", "models": MODEL}, stack="t")
    assert intent.warnings == ()


def test_plan_prints_the_endpoint_warning(capsys):
    assert plan_main(["dev"]) == 0
    assert f"warning: {OPEN}" in capsys.readouterr().out


def test_cluster_gets_the_endpoint_settings(plan_of, tmp_path):
    _, rec, _ = plan_of(DEV)
    c = of(rec, "eks:index:Cluster")[0].inputs
    assert c["endpointPublicAccess"] is True and c["endpointPrivateAccess"] is True
    assert "publicAccessCidrs" not in c  # EKS default; warned above
    _, rec = run_program("variant", stack_file(tmp_path, {"publicAccessCidrs": ["203.0.113.7/32"]}))
    assert of(rec, "eks:index:Cluster")[0].inputs["publicAccessCidrs"] == ["203.0.113.7/32"]
    _, rec, _ = plan_of(EXISTING)
    c = of(rec, "eks:index:Cluster")[0].inputs
    assert c["endpointPublicAccess"] is False and c["endpointPrivateAccess"] is True


# ---- availability zones EKS can use ------------------------------------------------------------


def test_unfiltered_zone_lookup_would_pick_a_local_zone_and_an_unsupported_zone():
    """Negative control: the mock answers like AWS, so dropping the filters changes the zones."""
    unfiltered = Mocks("us-east-1")._availability_zones({})
    assert sorted(unfiltered["names"])[:3] == ["us-east-1-bos-1a", "us-east-1a", "us-east-1b"]
    assert unfiltered["zoneIds"][unfiltered["names"].index("us-east-1b")] == "use1-az3"


def test_subnets_only_in_eks_supported_regular_zones(plan_of):
    _, rec, _ = plan_of(DEV)
    zones = sorted({s.inputs["availabilityZone"] for s in of(rec, "aws:ec2/subnet:Subnet")})
    assert zones == ["us-east-1a", "us-east-1c", "us-east-1d"]  # b is use1-az3; bos-1a is a Local Zone
    assert sorted(r.name for r in of(rec, "aws:efs/mountTarget:MountTarget")) == [
        "storage-efs-us-east-1a",
        "storage-efs-us-east-1c",
        "storage-efs-us-east-1d",
    ]


def test_explicit_zones(tmp_path):
    _, rec = run_program("variant", stack_file(tmp_path, {"vpc": {"availabilityZones": ["us-east-1e", "us-east-1f"]}}))
    assert sorted({s.inputs["availabilityZone"] for s in of(rec, "aws:ec2/subnet:Subnet")}) == [
        "us-east-1e",
        "us-east-1f",
    ]
    assert len(of(rec, "aws:ec2/natGateway:NatGateway")) == 2


# ---- standard support only ----------------------------------------------------------------------


def test_cluster_never_enters_extended_support(plan_of):
    _, rec, _ = plan_of(DEV)
    c = of(rec, "eks:index:Cluster")[0].inputs
    assert c["upgradePolicy"] == {"supportType": "STANDARD"} and c["version"] == "1.35"


# ---- an existing VPC ---------------------------------------------------------------------------


def test_existing_vpc_nodes_land_in_the_given_subnets_and_cidr_is_looked_up(plan_of):
    _, rec, out = plan_of(EXISTING)
    assert of(rec, "aws:ec2/vpc:Vpc") == [] and of(rec, "aws:ec2/subnet:Subnet") == []
    nc = next(r.inputs for r in rec.resources if r.type.endswith(":EC2NodeClass"))
    assert nc["spec"]["subnetSelectorTerms"] == [{"id": "subnet-0a1"}, {"id": "subnet-0b2"}, {"id": "subnet-0c3"}]
    mounts = {r.name: r.inputs["subnetId"] for r in of(rec, "aws:efs/mountTarget:MountTarget")}
    assert mounts == {
        "storage-efs-subnet-0": "subnet-0a1",
        "storage-efs-subnet-1": "subnet-0b2",
        "storage-efs-subnet-2": "subnet-0c3",
    }
    ingress = load_yaml((out / "manifests" / "networkpolicy-gateway-frontdoor-ingress.yaml").read_text())
    assert EXISTING_VPC_CIDR == "10.42.0.0/16"
    assert ingress["spec"]["ingress"][0]["from"][0] == {"ipBlock": {"cidr": "10.42.0.0/16"}}
    assert named(rec, "system-ng").inputs["subnetIds"] == ["subnet-0a1", "subnet-0b2", "subnet-0c3"]


def test_existing_vpc_needs_one_private_subnet_per_zone():
    from pulumi import RunError

    from stacks.compose.platform import one_subnet_per_zone

    assert one_subnet_per_zone(["subnet-1", "subnet-2"], ["us-east-1a", "us-east-1b"]) == ["subnet-1", "subnet-2"]
    with pytest.raises(RunError, match=r"subnet-1 and subnet-3 are both in us-east-1a"):
        one_subnet_per_zone(["subnet-1", "subnet-2", "subnet-3"], ["us-east-1a", "us-east-1b", "us-east-1a"])


def test_existing_vpc_zone_check_runs_before_anything_uses_the_subnets(tmp_path):
    """The mock puts a subnet in zone 'abcdef'[last hex digit % 6]: 0a1 -> b, 0c3 -> d, 0b7 -> b."""
    subnets = ["subnet-0a1", "subnet-0c3", "subnet-0b7"]
    f = stack_file(tmp_path, {"vpc": {"existing": {"vpcId": "vpc-0abc", "privateSubnetIds": subnets}}})
    # A program that fails under mocks leaves SDK-global state behind: run it in its own process.
    r = subprocess.run(
        [sys.executable, "-m", "stacks.plan", "variant", "--config", str(f)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode != 0
    assert "subnet-0a1 and subnet-0b7 are both in us-east-1b" in r.stderr


def test_created_vpc_nodes_use_the_discovery_tag(plan_of):
    _, rec, _ = plan_of(DEV)
    nc = next(r.inputs for r in rec.resources if r.type.endswith(":EC2NodeClass"))
    assert nc["spec"]["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "llm-dev"}}]


# ---- protection is a config choice ------------------------------------------------------------


def test_dev_is_destroyable_and_defaults_are_protected(plan_of, tmp_path):
    _, rec, _ = plan_of(DEV)
    assert named(rec, "storage-efs").protect is False
    _, rec, _ = plan_of(DATABASE)  # protectData defaults to true
    assert named(rec, "storage-efs").protect is True
    db = of(rec, "aws:rds/instance:Instance")[0]
    assert db.protect is True and db.inputs["deletionProtection"] is True
    _, rec = run_program(
        "variant",
        stack_file(tmp_path, {"protectData": False}, {"llm-serving:gateway": {"database": {"enabled": True}}}),
    )
    db = of(rec, "aws:rds/instance:Instance")[0]
    assert db.protect is False and db.inputs["deletionProtection"] is False
    assert not [r.name for r in rec.resources if r.protect]


# ---- orderings ------------------------------------------------------------------------------


def deps(rec):
    urn = {r.name: r.urn for r in rec.resources}
    return urn, {r.name: set(r.dependencies) for r in rec.resources}


def test_iam_attachments_outlive_what_uses_them(plan_of):
    _, rec, _ = plan_of(DEV)
    urn, dep = deps(rec)
    assert urn["cluster-service-role"] in {u for u in dep["cluster-eks"] if "rolePolicyAttachment" in u}
    assert {urn["system-AmazonEKSWorkerNodePolicy"], urn["system-AmazonEC2ContainerRegistryPullOnly"]} <= dep[
        "system-ng"
    ]


def test_first_up_orderings(plan_of):
    _, rec, _ = plan_of(DEV)
    urn, dep = deps(rec)
    # pods get IPs on the first node: agent, then the CNI (with its identity), then nodes
    assert urn["cluster-net-eks-pod-identity-agent"] in dep["cluster-net-vpc-cni"]
    assert urn["cluster-net-vpc-cni"] in dep["system-ng"]
    assert urn["addons-coredns"] in dep["karpenter-controller"]
    assert {urn["storage-efs-class"], urn["storage-efs-us-east-1a"], urn["storage-efs-us-east-1d"]} <= dep[
        "model-cache-pvc"
    ]
    assert {urn["system-ng"], urn["addons-coredns"]} <= dep["gateway-deployment"]
    _, rec, _ = plan_of(SEED000)
    urn, dep = deps(rec)
    assert {urn["system-ng"], urn["addons-coredns"]} <= dep["webui-deployment"]


# ---- node volumes, EFS lifecycle, driver values ------------------------------------


def test_accelerator_nodes_use_instance_store_and_baseline_gp3(plan_of):
    for f in (DEV, SEED000):
        _, rec, _ = plan_of(f)
        spec = next(r.inputs for r in rec.resources if r.type.endswith(":EC2NodeClass"))["spec"]
        assert spec["instanceStorePolicy"] == "RAID0"
        assert spec["blockDeviceMappings"][0]["ebs"] == {
            "volumeSize": "200Gi",
            "volumeType": "gp3",
            "encrypted": True,
            "iops": 3000,
            "throughput": 125,
            "deleteOnTermination": True,
        }


def test_efs_reads_bring_files_back_from_ia(plan_of):
    _, rec, _ = plan_of(DEV)
    assert named(rec, "storage-efs").inputs["lifecyclePolicies"] == [
        {"transitionToIa": "AFTER_30_DAYS"},
        {"transitionToPrimaryStorageClass": "AFTER_1_ACCESS"},
    ]


def test_driver_values_a_real_deploy_needs(plan_of):
    _, rec, _ = plan_of(DEV)
    gpu = next(r for r in of(rec, "kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "gpu-operator")
    assert gpu.inputs["values"]["cdi"] == {"enabled": True}
    _, rec, _ = plan_of(SEED000)
    neuron = next(r for r in of(rec, "kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "neuron")
    assert neuron.inputs["values"]["scheduler"]["nodeSelector"] == {}


# ---- the kubeconfig uses the stack's aws:profile ------------------------------------------------


def test_aws_profile_reaches_the_kubeconfig(plan_of, tmp_path):
    _, rec, _ = plan_of(DEV)
    assert "providerCredentialOpts" not in of(rec, "eks:index:Cluster")[0].inputs
    _, rec = run_program("variant", stack_file(tmp_path, {}, {"aws:profile": "ops"}))
    assert of(rec, "eks:index:Cluster")[0].inputs["providerCredentialOpts"] == {"profileName": "ops"}
    kubeconfig = json.loads(rec.outputs["kubeconfig"])
    exec_ = kubeconfig["users"][0]["user"]["exec"]
    assert exec_["env"] == [{"name": "AWS_PROFILE", "value": "ops"}]
    assert exec_["command"] == "aws" and exec_["args"][:2] == ["eks", "get-token"]


# ---- encryption, logging and node access ------------------------------------------------------------------


def test_log_groups_encrypted_with_a_cmk_logs_may_use(plan_of, tmp_path):
    _, rec, _ = plan_of(DEV)
    [key] = [r for r in of(rec, "aws:kms/key:Key") if r.name == "keys-logs"]
    groups = of(rec, "aws:cloudwatch/logGroup:LogGroup")
    assert sorted(g.inputs["name"] for g in groups) == ["/aws/eks/llm-dev/cluster", "/aws/vpc/llm-dev/flow-logs"]
    assert {g.inputs["kmsKeyId"] for g in groups} == {f"arn:aws:kms:us-east-1:{ACCOUNT}:keys-logs"}
    assert {g.inputs["retentionInDays"] for g in groups} == {365}
    logs_stmt = next(s for s in json.loads(key.inputs["policy"])["Statement"] if s["Sid"] == "CloudWatchLogsUse")
    assert logs_stmt["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert logs_stmt["Condition"] == {
        "ArnEquals": {
            "kms:EncryptionContext:aws:logs:arn": [
                "arn:aws:logs:us-east-1:123456789012:log-group:/aws/eks/llm-dev/cluster",
                "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vpc/llm-dev/flow-logs",
            ]
        }
    }
    assert key.inputs["enableKeyRotation"] is True
    _, rec = run_program("variant", stack_file(tmp_path, {"logRetentionDays": 90}))
    assert {g.inputs["retentionInDays"] for g in of(rec, "aws:cloudwatch/logGroup:LogGroup")} == {90}


def test_efs_encrypted_with_a_cmk(plan_of):
    _, rec, _ = plan_of(DEV)
    efs = named(rec, "storage-efs").inputs
    assert efs["encrypted"] is True and efs["kmsKeyId"] == f"arn:aws:kms:us-east-1:{ACCOUNT}:keys-data"


def test_default_security_group_has_no_rules(plan_of):
    _, rec, _ = plan_of(DEV)
    [sg] = of(rec, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    vpc = of(rec, "aws:ec2/vpc:Vpc")[0]
    assert sg.inputs["ingress"] == [] and sg.inputs["egress"] == []
    assert vpc.urn in sg.dependencies


def test_cni_permissions_on_aws_node_not_on_nodes(plan_of):
    _, rec, _ = plan_of(DEV)
    cni = named(rec, "cluster-net-vpc-cni").inputs
    assert json.loads(cni["configurationValues"]) == {"enableNetworkPolicy": "true"}
    [assoc] = cni["podIdentityAssociations"]
    assert assoc["serviceAccount"] == "aws-node"
    role = next(
        r for r in of(rec, "aws:iam/role:Role") if r.inputs.get("name", r.name) == assoc["roleArn"].rsplit("/", 1)[1]
    )
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "pods.eks.amazonaws.com"
    }
    attachments = of(rec, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    cni_roles = [a.inputs["role"] for a in attachments if a.inputs["policyArn"].endswith("/AmazonEKS_CNI_Policy")]
    assert cni_roles == [role.inputs.get("name", role.name)]
    assert not [a for a in attachments if "SSM" in a.inputs["policyArn"]]
    agent = named(rec, "cluster-net-eks-pod-identity-agent").inputs
    assert json.loads(agent["configurationValues"]) == {"tolerations": [{"operator": "Exists"}]}
