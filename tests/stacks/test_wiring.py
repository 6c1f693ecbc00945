"""Wiring tier: the whole program under mocks, as the plan CLI runs it."""
import json

import yaml

from components.karpenter import INTERRUPTION_EVENTS
from stacks.plan import run_program
from tests.conftest import ROOT, STACK_FILES

EXAMPLES = ROOT / "stacks" / "examples"
SEED000 = EXAMPLES / "Pulumi.seed000-inf2-llama-qwen-webui.yaml"
SEED002 = EXAMPLES / "Pulumi.seed002-g5-qwen3-14b.yaml"
SEED003 = EXAMPLES / "Pulumi.seed003-mistral-llama2-70b.yaml"


def kinds(rec, typ):
    return [r for r in rec.resources if r.type == typ]


def crs(rec, kind):
    return [r for r in rec.resources if r.type.endswith(f":{kind}") and r.type.startswith("kubernetes:")]


def releases(rec):
    return {r.inputs["name"]: r for r in kinds(rec, "kubernetes:helm.sh/v3:Release")}


def test_one_nodepool_per_pool_and_drivers_only_for_used_kinds(plan_of):
    intent, rec, _ = plan_of(SEED002)  # GPU only
    assert [r.inputs["metadata"]["name"] for r in crs(rec, "NodePool")] == ["gpu"]
    assert "gpu-operator" in releases(rec) and "neuron" not in releases(rec)
    assert [r.inputs["metadata"]["name"] for r in crs(rec, "EC2NodeClass")] == ["nvidia"]
    intent, rec, _ = plan_of(SEED000)  # Neuron only
    assert [r.inputs["metadata"]["name"] for r in crs(rec, "NodePool")] == ["inferentia"]
    assert "neuron" in releases(rec) and "gpu-operator" not in releases(rec)


def test_a_gateway_route_per_model_and_nothing_else(plan_of):
    for f in STACK_FILES:
        intent, rec, out = plan_of(f)
        [cm_file] = (out / "manifests").glob("configmap-*-litellm-config.yaml")
        cfg = yaml.safe_load(yaml.safe_load(cm_file.read_text())["data"]["config.yaml"])
        served = sorted(m.served_name for m in intent.models.values())
        assert sorted(e["model_name"] for e in cfg["model_list"]) == served
        for e in cfg["model_list"]:
            assert e["litellm_params"]["model"] == f"hosted_vllm/{e['model_name']}"
            assert e["litellm_params"]["api_base"].endswith(":8000/v1")
        # every served name is what its vLLM server answers to
        for d in (out / "manifests").glob("deployment-*models-*.yaml"):
            args = yaml.safe_load(d.read_text())["spec"]["template"]["spec"]["containers"][0]["args"]
            assert args[args.index("--served-model-name") + 1] in served


def test_platform_unchanged_when_a_model_is_added(tmp_path):
    base = yaml.safe_load(SEED002.read_text())
    more = json.loads(json.dumps(base))
    more["config"]["llm-serving:models"]["qwen3-8b"] = {"preset": "qwen3-8b", "instanceType": "g5.12xlarge"}
    a, b = tmp_path / "Pulumi.a.yaml", tmp_path / "Pulumi.b.yaml"
    a.write_text(yaml.safe_dump(base))
    b.write_text(yaml.safe_dump(more))
    serving_types = ("llm-serving:serving:", "llm-serving:access:")

    def platform(f):
        _, rec = run_program("same", f)
        by_urn = {r.urn: r for r in rec.resources}

        def in_serving(r):
            while r is not None:
                if r.type.startswith(serving_types) or r.type.startswith("random:"):
                    return True
                r = by_urn.get(r.parent)
            return False
        return {r.urn: r.inputs for r in rec.resources
                if not in_serving(r) and not r.name.startswith("vllm-api-key")}
    pa, pb = platform(a), platform(b)
    assert pa == pb


def test_karpenter_interruption_queue_and_rules(plan_of):
    _, rec, _ = plan_of(SEED002)
    q = kinds(rec, "aws:sqs/queue:Queue")[0].inputs
    assert q["messageRetentionSeconds"] == 300 and q["sqsManagedSseEnabled"] is True
    rules = [json.loads(r.inputs["eventPattern"]) for r in kinds(rec, "aws:cloudwatch/eventRule:EventRule")]
    assert sorted((p["source"][0], p["detail-type"][0]) for p in rules) == sorted((s, d) for _, s, d in INTERRUPTION_EVENTS)
    assert len(kinds(rec, "aws:cloudwatch/eventTarget:EventTarget")) == 5
    pol = json.loads(kinds(rec, "aws:sqs/queuePolicy:QueuePolicy")[0].inputs["policy"])
    deny = [s for s in pol["Statement"] if s["Effect"] == "Deny"][0]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    values = releases(rec)["karpenter"].inputs["values"]
    assert values["settings"]["interruptionQueue"] == q["name"]
    assert values["settings"]["featureGates"]["nodeRepair"] is True and values["replicas"] == 2


def test_karpenter_node_role_policies_and_access_entry(plan_of):
    _, rec, _ = plan_of(SEED002)
    role = [r for r in kinds(rec, "aws:iam/role:Role") if r.name == "karpenter-iam-node-role"][0]
    attached = sorted(r.inputs["policyArn"].rsplit("/", 1)[1] for r in kinds(rec, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                      if r.name.startswith("karpenter-iam-node-"))
    # CNI permissions live on aws-node's own identity; no SSM (security review check 12).
    assert attached == ["AmazonEC2ContainerRegistryPullOnly", "AmazonEKSWorkerNodePolicy"]
    entry = kinds(rec, "aws:eks/accessEntry:AccessEntry")[0].inputs
    assert entry["type"] == "EC2_LINUX" and entry["principalArn"].endswith(role.inputs["name"])


def test_cluster_security_settings(plan_of):
    _, rec, _ = plan_of(SEED002)
    c = kinds(rec, "eks:index:Cluster")[0].inputs
    assert c["authenticationMode"] == "API" and c["skipDefaultNodeGroup"] is True
    assert c["endpointPrivateAccess"] is True and c["endpointPublicAccess"] is True
    assert sorted(c["enabledClusterLogTypes"]) == sorted(["api", "audit", "authenticator", "controllerManager", "scheduler"])
    assert c["useDefaultVpcCni"] is True and c["version"] == "1.35"  # our vpc-cni add-on: test_platform_*
    assert kinds(rec, "aws:kms/key:Key")[0].inputs["enableKeyRotation"] is True
    # EKS creates a grant on the key with the cluster role: ours, allowed to use exactly that key.
    assert c["serviceRole"].endswith("aws:iam/role:Role::cluster-service-role")
    grant = [r.inputs for r in kinds(rec, "aws:iam/rolePolicy:RolePolicy") if r.name == "cluster-service-role-kms"][0]
    doc = json.loads(grant["policy"])["Statement"][0]
    assert "kms:CreateGrant" in doc["Action"] and doc["Resource"] == c["encryptionConfigKeyArn"]
    lt = kinds(rec, "aws:ec2/launchTemplate:LaunchTemplate")[0].inputs["metadataOptions"]
    assert lt["httpTokens"] == "required" and lt["httpPutResponseHopLimit"] == 1
    ng = kinds(rec, "aws:eks/nodeGroup:NodeGroup")[0].inputs
    assert ng["scalingConfig"]["minSize"] >= 2 and ng["taints"][0]["key"] == "CriticalAddonsOnly"
    addons = sorted(r.inputs["addonName"] for r in kinds(rec, "aws:eks/addon:Addon"))
    assert addons == sorted(["coredns", "kube-proxy", "eks-pod-identity-agent", "aws-ebs-csi-driver",
                             "aws-efs-csi-driver", "eks-node-monitoring-agent", "vpc-cni"])
    subnets = [r.inputs for r in kinds(rec, "aws:ec2/subnet:Subnet")]
    private = [s for s in subnets if s["tags"].get("karpenter.sh/discovery") == "llm-same" or "karpenter.sh/discovery" in s["tags"]]
    assert len(private) == 3 and len({s["availabilityZone"] for s in private}) == 3
    efs = kinds(rec, "aws:efs/fileSystem:FileSystem")[0].inputs
    assert efs["encrypted"] is True and efs["throughputMode"] == "elastic"
    assert len(kinds(rec, "aws:efs/mountTarget:MountTarget")) == 3


def test_seed003_planner_says_tp4_on_a100_40gb_is_too_tight(plan_of):
    intent, _, _ = plan_of(SEED003)
    llama = intent.models["llama-2-70b"]
    assert (llama.sizing.instance.name, llama.sizing.tensor_parallel) == ("p4d.24xlarge", 8)
    from stacks import catalog, planner
    s = planner.size(llama.arch, catalog.instances()["p4d.24xlarge"], 4, 4096, 32)
    assert s.fits and s.kv_gib_per_device < 1 and s.max_concurrency < 3


# The upstream Karpenter 1.x getting-started controller policy set (reference/platform.md).
UPSTREAM_ACTIONS = {
    "ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate", "ec2:CreateTags", "ec2:TerminateInstances",
    "ec2:DeleteLaunchTemplate", "iam:PassRole", "iam:CreateInstanceProfile", "iam:TagInstanceProfile",
    "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile",
    "iam:GetInstanceProfile", "iam:ListInstanceProfiles", "eks:DescribeCluster", "sqs:DeleteMessage",
    "sqs:GetQueueUrl", "sqs:ReceiveMessage", "arc-zonal-shift:GetManagedResource",
    "ec2:DescribeCapacityReservations", "ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DescribeInstanceStatus",
    "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates",
    "ec2:DescribePlacementGroups", "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory",
    "ec2:DescribeSubnets", "ssm:GetParameter", "pricing:GetProducts",
}


def test_karpenter_controller_policies_cover_the_upstream_set(plan_of):
    _, rec, _ = plan_of(SEED002)
    docs = {r.inputs["name"]: json.loads(r.inputs["policy"]) for r in kinds(rec, "aws:iam/rolePolicy:RolePolicy")
            if r.name.startswith("karpenter-iam-")}
    assert len(docs) == 6
    stmts = [s for d in docs.values() for s in d["Statement"]]
    actions = {a for s in stmts for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert UPSTREAM_ACTIONS <= actions, UPSTREAM_ACTIONS - actions
    assert actions <= UPSTREAM_ACTIONS, actions - UPSTREAM_ACTIONS  # nothing beyond it either
    pass_role = [s for s in stmts if s["Action"] == "iam:PassRole"]
    assert len(pass_role) == 1 and pass_role[0]["Resource"].endswith(":role/KarpenterNodeRole-llm-seed002-g5-qwen3-14b")
    # mutating EC2 actions are scoped to this cluster's tags
    for s in stmts:
        acts = [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
        if any(a in ("ec2:TerminateInstances", "ec2:DeleteLaunchTemplate", "ec2:CreateTags") for a in acts):
            assert "kubernetes.io/cluster/llm-seed002-g5-qwen3-14b" in json.dumps(s["Condition"])


def test_stack_outputs(plan_of):
    intent, rec, _ = plan_of(SEED000)
    o = rec.outputs
    assert o["clusterName"] == intent.cluster_name
    assert sorted(o["models"]) == sorted(m.served_name for m in intent.models.values())
    assert set(o["modelEndpoints"]) == set(o["models"])
    assert all(u.endswith(".models.svc.cluster.local:8000/v1") for u in o["modelEndpoints"].values())
    assert o["gatewayUrl"].startswith("http://") and o["gatewayUrl"].endswith(":4000")
    assert [r["name"] for r in o["plan"]] == list(intent.models)
    assert "kubeconfig" in o


def test_neuron_servers_use_the_platform_scheduler_and_webui_is_wired(plan_of):
    _, rec, out = plan_of(SEED000)
    ui = yaml.safe_load((out / "manifests" / "deployment-gateway-open-webui.yaml").read_text())
    env = {e["name"]: e for e in ui["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OPENAI_API_BASE_URL"]["value"] == "http://litellm.gateway.svc.cluster.local:4000/v1"
    helm = yaml.safe_load((out / "helm" / "neuron.yaml").read_text())
    from components.drivers import NEURON_SCHEDULER_NAME
    assert helm["values"]["scheduler"]["customScheduler"]["fullnameOverride"] == NEURON_SCHEDULER_NAME


def test_gateway_database_is_private_encrypted_protected(plan_of):
    intent, rec, out = plan_of(ROOT / "tests" / "configs" / "gateway-database.ok.yaml")
    db = kinds(rec, "aws:rds/instance:Instance")[0].inputs
    assert db["storageEncrypted"] is True and db["publiclyAccessible"] is False and db["deletionProtection"] is True
    assert db["multiAz"] is True and db["backupRetentionPeriod"] >= 7 and db["password"] == "[secret]"
    sg = [r.inputs for r in kinds(rec, "aws:ec2/securityGroup:SecurityGroup") if r.name == "gateway-db-sg"][0]
    assert sg["ingress"] == [{"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "securityGroups": ["sg-eksclustersg"],
                              "description": "Postgres from EKS nodes (LiteLLM)"}]
    cm = yaml.safe_load((out / "manifests" / "configmap-gateway-litellm-config.yaml").read_text())
    assert yaml.safe_load(cm["data"]["config.yaml"])["general_settings"]["database_url"] == "os.environ/DATABASE_URL"
    secret = yaml.safe_load((out / "manifests" / "secret-gateway-litellm.yaml").read_text())
    assert secret["stringData"]["database-url"] == "[secret]"


def test_controllers_tolerate_the_system_taint(plan_of):
    """The system nodes are the only capacity without an accelerator taint: every controller
    (Karpenter, GPU operator + NFD, Neuron scheduler) must tolerate CriticalAddonsOnly."""
    def tolerates(tols):
        return any(t.get("key") == "CriticalAddonsOnly" and t.get("operator") == "Exists" for t in tols)
    _, rec, _ = plan_of(SEED002)
    v = releases(rec)
    assert tolerates(v["karpenter"].inputs["values"]["tolerations"])
    g = v["gpu-operator"].inputs["values"]
    assert tolerates(g["operator"]["tolerations"])
    assert all(tolerates(g["node-feature-discovery"][p]["tolerations"]) for p in ("master", "gc"))
    assert g["daemonsets"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    _, rec, _ = plan_of(SEED000)
    n = releases(rec)["neuron"].inputs["values"]
    assert tolerates(n["scheduler"]["tolerations"]) and tolerates(n["scheduler"]["customScheduler"]["tolerations"])


def test_team_stack_attaches_and_creates_only_its_namespaced_objects(plan_of):
    intent, rec, out = plan_of(EXAMPLES / "Pulumi.team-search.yaml")
    types = {r.type for r in rec.resources}
    assert not any(t.startswith(("aws:", "eks:")) for t in types), types
    assert not any(t.endswith((":NodePool", ":EC2NodeClass")) or "helm" in t for t in types)
    for f in (out / "manifests").glob("*.yaml"):
        obj = yaml.safe_load(f.read_text())
        ns = obj["metadata"]["name"] if obj["kind"] == "Namespace" else obj["metadata"].get("namespace")
        assert ns in ("search-models", "search-gateway"), f.name
    quota = yaml.safe_load((out / "manifests" / "resourcequota-search-models-accelerators.yaml").read_text())
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "4"
    cm = yaml.safe_load((out / "manifests" / "configmap-search-gateway-litellm-config.yaml").read_text())
    route = yaml.safe_load(cm["data"]["config.yaml"])["model_list"][0]["litellm_params"]
    assert route["api_base"] == "http://qwen2-5-7b.search-models.svc.cluster.local:8000/v1"


def test_hidden_orderings_are_explicit(plan_of):
    """CRs after the release that installs their CRDs; Karpenter after the system node group;
    add-ons after the node group; model servers after the pools and device plugins."""
    _, rec, _ = plan_of(SEED002)
    urn = {r.name: r.urn for r in rec.resources}
    dep = {r.name: set(r.dependencies) for r in rec.resources}
    assert urn["karpenter-controller"] in dep["pool-gpu-nodepool"]
    assert urn["karpenter-controller"] in dep["nodeclass-nvidia-nodeclass"]
    assert {urn["system-ng"], urn["karpenter-crd"]} <= dep["karpenter-controller"]
    assert urn["system-ng"] in dep["addons-coredns"]
    assert {urn["pool-gpu-nodepool"], urn["gpu-operator-release"]} <= dep["vllm-qwen3-14b-deployment"]
