"""Frozen records shared by components and the stack layer.

Components import only this module and the SDKs. What one component hands another is one of these
small records, built by the stack layer; no component looks anything up by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pulumi

AcceleratorKind = Literal["nvidia", "neuron"]

GIB = 2**30


@dataclass(frozen=True)
class InstanceType:
    """An EC2 instance type we can place a model on (catalog: stacks/catalog/instances.yaml)."""

    name: str
    family: str
    kind: AcceleratorKind
    device: str
    devices: int
    device_memory_mib: int
    neuron_cores: int
    vcpu: int
    memory_mib: int
    local_nvme_gb: int
    usd_per_hour: float
    # Device memory as CUDA reports it (torch.cuda.mem_get_info total), GiB; None: not recorded
    # (the planner then uses device_memory_gib). Catalog: instances.yaml `accelerators:`.
    cuda_memory_gib: float | None = None

    @property
    def device_memory_gib(self) -> float:
        return self.device_memory_mib / 1024

    @property
    def parallel_units(self) -> int:
        """What tensor parallelism is counted in: GPUs, or NeuronCores."""
        return self.neuron_cores if self.kind == "neuron" else self.devices

    @property
    def unit_memory_gib(self) -> float:
        """Memory of one TP rank: a GPU's, or a NeuronCore's share of its chip's HBM."""
        if self.kind == "neuron":
            return self.device_memory_gib / (self.neuron_cores // self.devices)
        return self.device_memory_gib


@dataclass(frozen=True)
class ModelArch:
    """Architecture facts of one checkpoint (catalog: stacks/catalog/models.yaml)."""

    hf_id: str
    params: float  # billions
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_positions: int
    dtype: str
    quantization: str | None = None
    weights_gib: float | None = None
    gated: bool = False
    tool_parser: str | None = None
    reasoning_parser: str | None = None
    revision: str | None = None
    # config.json tie_word_embeddings (lm_head shares the embedding matrix) and the MoE shape
    # (num_experts, num_experts_per_tok, moe_intermediate_size); None for dense models.
    tie_word_embeddings: bool = False
    experts: int | None = None
    experts_per_token: int | None = None
    moe_intermediate: int | None = None


@dataclass(frozen=True)
class ChartPin:
    name: str
    repo: str
    chart: str
    version: str


@dataclass(frozen=True)
class ImagePin:
    repository: str
    tag: str
    user: int | None = None  # the UID the image's process runs as (None: not recorded)
    writable_paths: tuple[str, ...] = ()  # paths it writes at run time
    digest: str | None = None  # "sha256:<64 hex>" when a source publishes it for this tag

    @property
    def ref(self) -> str:
        """What pods pull: the tag for readers, the digest (when known) for the kubelet."""
        pinned = f"{self.repository}:{self.tag}"
        return f"{pinned}@{self.digest}" if self.digest else pinned


# ---- handles passed between components (built by stacks/, never looked up) -------------------


@dataclass(frozen=True)
class NetworkHandle:
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    public_subnet_ids: pulumi.Input[list[str]]
    vpc_cidr: pulumi.Input[str]


@dataclass(frozen=True)
class ClusterHandle:
    name: pulumi.Input[str]
    arn: pulumi.Input[str]
    endpoint: pulumi.Input[str]
    # The EKS-managed cluster security group: control plane <-> nodes; every node joins it.
    security_group_id: pulumi.Input[str]
    kubeconfig: pulumi.Input[Any]


@dataclass(frozen=True)
class SystemNodesHandle:
    """The managed node group that runs controllers; charts that must run there depend on it."""

    node_group: pulumi.Resource
    label_key: str
    label_value: str
    taint_key: str


@dataclass(frozen=True)
class KarpenterIamHandle:
    node_role_name: pulumi.Input[str]
    controller_role_arn: pulumi.Input[str]
    interruption_queue_name: pulumi.Input[str]
    ready: tuple[pulumi.Resource, ...] = ()


@dataclass(frozen=True)
class CrdsHandle:
    """A release that installs CRDs: custom resources of those kinds depend on it."""

    release: pulumi.Resource


@dataclass(frozen=True)
class PoolSpec:
    """One Karpenter NodePool, fully resolved by the stack layer."""

    name: str
    kind: AcceleratorKind
    families: tuple[str, ...]
    capacity_types: tuple[str, ...]
    node_class: str
    cpu_limit: int
    memory_limit_gib: int
    accelerator_limit: int
    consolidate_after: str
    expire_after: str
    termination_grace_period: str
    disruption_budget_nodes: str
    labels: tuple[tuple[str, str], ...] = ()
    weight: int | None = None

    @property
    def taint_key(self) -> str:
        return ACCELERATOR_RESOURCE[self.kind]


@dataclass(frozen=True)
class NodeClassSpec:
    name: str
    kind: AcceleratorKind
    ami_alias: str
    root_volume_gib: int
    root_volume_throughput: int  # MiB/s (gp3 baseline 125)
    instance_store_raid0: bool = False
    root_volume_iops: int = 3000  # gp3 baseline
    # Given (existing VPC): Karpenter selects exactly these subnets by id; empty: the discovery tag.
    subnet_ids: tuple[str, ...] = ()


# ---- shared constants: defined once here, derived wherever used ---------------------------------

# Service/container ports. NetworkPolicies, Services, probes and the gateway's routes derive from these.
VLLM_PORT = 8000  # never a Service named `vllm`: Kubernetes would inject VLLM_PORT and vLLM refuses it
GATEWAY_PORT = 4000
# The namespaces every platform stack creates for its models and its gateway.
MODELS_NS = "models"
GATEWAY_NS = "gateway"
# The gateway's front door (components/frontdoor.py): the only port the load balancer reaches; it
# forwards the client routes to GATEWAY_PORT, which only pods in the cluster reach.
FRONTDOOR_PORT = 4080
WEBUI_PORT = 8080
REDIS_PORT = 6379  # the gateway's shared rate-limit Redis (ElastiCache, TLS)
# The UID model servers and the cache Job run as (user `vllm` of the vLLM image); the EFS access
# points own their directories as this UID/GID, so what the Job writes the servers can read.
VLLM_UID = 2000
# Kubernetes taint effect of every taint this stack sets (system nodes, accelerator pools), and the same
# effect as the EKS node-group API spells it.
TAINT_EFFECT = "NoSchedule"
EKS_TAINT_EFFECT = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}
# Managed policies every node role carries: no AmazonEKS_CNI_Policy (aws-node has its own Pod Identity
# role) and no SSM (nothing uses it; debug with `kubectl debug node/…`).
WORKER_NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
)

# Device-plugin resource names; the same names are the NodePool taint keys.
ACCELERATOR_RESOURCE: dict[str, str] = {"nvidia": "nvidia.com/gpu", "neuron": "aws.amazon.com/neuron"}
POOL_LABEL = "llm-serving/pool"
# The system node group's taint: controllers and the gateway tolerate it (components.cluster sets it).
SYSTEM_TAINT = "CriticalAddonsOnly"
# Pod labels the NetworkPolicies select on (shared by the workloads and the policies).
VLLM_SELECTOR = {"app.kubernetes.io/component": "vllm"}
CACHE_SELECTOR = {"app.kubernetes.io/component": "model-cache"}
# The compile cache (components/compile_cache.py): its in-pod script's ConfigMap, where that is mounted,
# where a key's directory on EFS is mounted, and the EFS directory holding one directory per key.
COMPILE_CACHE_CONFIGMAP = "compile-cache-script"
COMPILE_CACHE_SCRIPT_DIR = "/opt/compile-cache"
COMPILE_CACHE_DIR = "/var/lib/compile-cache"
COMPILE_CACHE_EFS_DIR = "compile-cache"
# Pods that reach S3 through EKS Pod Identity (weights from S3): egress to the agent and HTTPS.
S3_WEIGHTS_LABEL = {"llm-serving.io/weights": "s3"}
GATEWAY_SELECTOR = {"app.kubernetes.io/name": "litellm"}
FRONTDOOR_SELECTOR = {"app.kubernetes.io/name": "gateway-frontdoor"}
UI_SELECTOR = {"app.kubernetes.io/name": "open-webui"}
# The cache-aware router in front of a model's replicas (components/router.py): its API port, the
# port of its Prometheus metrics, and the label its pods carry (with a per-model name label).
ROUTER_PORT = 8080
ROUTER_METRICS_PORT = 29000
ROUTER_SELECTOR = {"app.kubernetes.io/component": "router"}


@dataclass(frozen=True)
class StorageHandle:
    efs_storage_class: pulumi.Input[str]
    ebs_storage_class: pulumi.Input[str]
    efs_file_system_id: pulumi.Input[str]
    # What a PVC on these classes waits for (classes + EFS mount targets); empty on team stacks.
    ready: tuple[pulumi.Resource, ...] = ()


@dataclass(frozen=True)
class ServerSpec:
    """Everything one vLLM Deployment needs, resolved by the stack layer (catalog + planner)."""

    name: str
    served_name: str
    hf_id: str
    revision: str | None
    kind: AcceleratorKind
    image: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    pool: str
    instance_type: str
    tensor_parallel: int
    accelerator_count: int
    cpu: str
    memory: str
    shm_size: str
    replicas: int
    startup_budget_seconds: int
    scheduler_name: str | None = None
    max_model_len: int = 0
    request_timeout_seconds: int = 600
    # Every instance type of the pool this same pod fits on (planner.fitting_instance_types); empty: instance_type.
    instance_types: tuple[str, ...] = ()
    # How long the init container waits for the cache Job's ready marker before failing visibly.
    weights_wait_seconds: int = 3600
    # vLLM's --shutdown-timeout (in-flight requests drain this long after SIGTERM); 0: the image cannot drain.
    shutdown_timeout_seconds: int = 0
    # Weights streamed from S3 (s3://bucket/prefix/<hfId>/<revision>) instead of the EFS cache; the
    # init container then waits for this EFS marker (written by the weights-sync Job).
    weights_uri: str | None = None
    weights_marker: str | None = None
    # The content-addressed compile cache's key (components.compile_cache.cache_key); None: per-pod only.
    compile_cache_key: str | None = None


@dataclass(frozen=True)
class Route:
    """One gateway route: the public model name to one vLLM Service."""

    model_name: str
    served_name: str
    service_host: str
    port: int
    timeout_seconds: int
    max_input_tokens: int


# ---- Pod Security "restricted" building blocks shared by every serving workload -------------------


def pod_security(uid: int) -> dict:
    """Pod-level securityContext: non-root as the image's own user, RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(uid: int, *, read_only_root: bool = True) -> dict:
    """Container securityContext: no privilege escalation, every capability dropped."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "runAsUser": uid,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def checkov_skips(reasons: dict[str, str]) -> dict[str, str]:
    """metadata.annotations that make checkov skip these check IDs on this one object only.
    checkov splits each value on '=' into (id, reason), so a reason must not contain one."""
    for cid, why in reasons.items():
        if "=" in why or not why:
            raise ValueError(f"{cid}: a checkov skip needs a reason without '='")
    return {f"checkov.io/skip{i}": f"{cid}={why}" for i, (cid, why) in enumerate(sorted(reasons.items()), 1)}


def image_skips(ref: str) -> dict[str, str]:
    """The image-reference checks a tag-only image fails (no digest, so pull policy matters);
    none once the reference carries its digest (`repo:tag@sha256:…`, see ImagePin.ref)."""
    if "@sha256:" in ref:
        return {}
    why = f"no published digest for {ref} reachable offline; pin it in versions.yaml"
    return {"CKV_K8S_43": why, "CKV_K8S_15": f"IfNotPresent on a pinned tag; {why}"}


# ---- IAM documents (one builder; every role and inline policy of the stack uses it) -------------


def policy_document(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow_policy(resource: str | list[str], actions: list[str]) -> str:
    """An inline policy of one Allow statement: these actions on these resources."""
    return json.dumps(policy_document({"Effect": "Allow", "Resource": resource, "Action": actions}))


def trust_policy(service: str, *, tag_session: bool = False) -> str:
    """The assume-role policy letting one AWS service principal assume a role."""
    actions: str | list[str] = ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole"
    return json.dumps(policy_document({"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}))


def pod_identity_trust() -> str:
    """EKS Pod Identity: the agent assumes the role for a (namespace, service account) association."""
    return trust_policy("pods.eks.amazonaws.com", tag_session=True)


def service_host(name: str, namespace: str) -> str:
    """The in-cluster DNS name of Service `name` in `namespace` (routes and component outputs agree)."""
    return f"{name}.{namespace}.svc.cluster.local"


def taint(key: str) -> dict:
    """A taint this stack sets, as Kubernetes (and Karpenter's NodePool) spells it."""
    return {"key": key, "value": "true", "effect": TAINT_EFFECT}


def tcp_ingress_from(port: int, source_security_group: Any, description: str) -> dict:
    """One security-group ingress rule: TCP `port` from the members of `source_security_group` only."""
    return {
        "protocol": "tcp",
        "from_port": port,
        "to_port": port,
        "description": description,
        "security_groups": [source_security_group],
    }


ZONE_KEY = "topology.kubernetes.io/zone"


def zone_spread(selector: dict[str, str]) -> list[dict]:
    """Spread the pods `selector` matches across zones, best effort (a zone short of capacity does not
    block scheduling)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": ZONE_KEY,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
    ]


def tolerate(key: str) -> dict:
    """The toleration of `taint(key)`: same key, same effect."""
    return {"key": key, "operator": "Exists", "effect": TAINT_EFFECT}


# ---- account-global names --------------------------------------------------------------------------
# IAM roles, instance profiles and Budgets are named once per account, not per region. The cluster name
# is unique per region (EKS refuses a second one), so cluster name + region code is unique per account.
IAM_NAME_MAX = 64  # IAM role and instance-profile names (IAM quotas: "Role name ... 64 characters")
_DIRECTIONS = {
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "central": "c",
    "northeast": "ne",
    "northwest": "nw",
    "southeast": "se",
    "southwest": "sw",
    "gov": "g",
}


def region_code(region: str) -> str:
    """us-east-1 -> use1, ap-southeast-2 -> apse2, us-gov-west-1 -> usgw1 (the usual short form)."""
    parts = region.split("-")
    return parts[0] + "".join(_DIRECTIONS.get(p, p) for p in parts[1:])


def global_name(prefix: str, cluster_name: str, region: str) -> str:
    """An account-global name unique per stack and region: `<prefix>-<cluster>-<region code>`."""
    return f"{prefix}-{cluster_name}-{region_code(region)}"


# The EKS `kubernetes` Service address: the first address of the service range EKS picks when the
# cluster sets none (10.100.0.0/16, or 172.20.0.0/16 when the VPC lies in 10.0.0.0/8). The VPC CNI's
# policy agent matches a pod's egress to the API server on this address, before it is translated.
KUBE_API_SERVICE_IPS = ("10.100.0.1/32", "172.20.0.1/32")
