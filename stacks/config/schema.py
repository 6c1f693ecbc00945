"""The stack config schema: one pydantic model tree (`extra="forbid"`, frozen), its field validators,
and the constants the checks derive from (name limits, default pools, accepted values)."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from stacks import catalog, vllm_flags

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The extraArgs policy lives in stacks/vllm_flags.py (kept here under the old names for callers).
FORBIDDEN_VLLM_FLAGS = vllm_flags.FORBIDDEN
MANAGED_VLLM_FLAGS = set(vllm_flags.MANAGED)
# Values that reach file paths, markers and command lines of the cache Job and the servers.
HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+$")
REVISION_SHA = re.compile(r"^[0-9a-f]{40}$")
REVISION_REF = re.compile(r"^[A-Za-z0-9._-]{1,96}$")
SERVED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
# Kubernetes label keys ([prefix/]name) and values.
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Label domains the program (llm-serving/), Karpenter or Kubernetes own: Karpenter's NodePool CRD
# refuses most of them, and the program's own pool label must stay the program's.
RESERVED_LABEL_DOMAINS = ("llm-serving", "kubernetes.io", "k8s.io", "karpenter.sh", "karpenter.k8s.aws")
# Kubernetes object names derived from a model name: the cache Job `cache-<model>` (63 max).
MODEL_NAME_MAX = 63 - len("cache-")
# IAM role names (64 max) derived from the cluster name; the longest is KarpenterControllerRole-<cluster>.
CLUSTER_NAME_MAX = 64 - len("KarpenterControllerRole-")
# Team namespaces are `<team>-models` and `<team>-gateway` (63 max).
TEAM_NAME_MAX = 63 - len("-gateway")


def SUPPORTED_KUBERNETES(pinned: str) -> tuple[str, ...]:
    """The version the catalog pins (EKS standard support, the AMI alias, Karpenter and the GPU operator
    are pinned and tested for it; ../shared/reference/versions.md)."""
    return (pinned,)


# Edit distance at which a config namespace is taken for a misspelling of ours.
NAMESPACE_TYPO_DISTANCE = 2
DEFAULT_MAX_MODEL_LEN = 8192
DEFAULT_MAX_NUM_SEQS = 16


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def dns_problem(v: str, what: str = "name") -> tuple[str, str] | None:
    """(what is wrong, how to fix it) when `v` is not a DNS-1123 label, else None."""
    if not DNS1123.match(v) or len(v) > 63:
        return (
            f"{what} {v!r} is not a DNS-1123 label",
            "use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
        )
    return None


def _dns(v: str, what: str = "name") -> str:
    problem = dns_problem(v, what)
    if problem:
        raise ValueError(" — ".join(problem))
    return v


# ---- sections -------------------------------------------------------------------------------


class ExistingVpc(_M):
    vpcId: str = Field(pattern=r"^vpc-[0-9a-f]+$")
    # One private subnet per AZ: EFS allows one mount target per AZ, and Karpenter launches into these
    # (selected by id). The VPC CIDR is looked up (aws.ec2.get_vpc), never assumed.
    privateSubnetIds: list[str] = Field(min_length=2)
    publicSubnetIds: list[str] = Field(default_factory=list)

    @field_validator("privateSubnetIds", "publicSubnetIds")
    @classmethod
    def _subnets(cls, v):
        bad = [s for s in v if not re.fullmatch(r"subnet-[0-9a-f]+", s)]
        if bad:
            raise ValueError(
                f"{', '.join(bad)} {'is not a subnet id' if len(bad) == 1 else 'are not subnet ids'} "
                "— write them as subnet-0123abcd"
            )
        if len(set(v)) != len(v):
            raise ValueError("a subnet is listed twice — list each subnet once, one private subnet per AZ")
        return v


# AZ ids where EKS cannot place a control plane (CreateCluster: UnsupportedAvailabilityZoneException).
EKS_UNSUPPORTED_ZONE_IDS = ("use1-az3", "usw1-az2", "cac1-az3")


class VpcConfig(_M):
    cidr: str = "10.0.0.0/16"
    azCount: int = Field(3, ge=2, le=6)
    # Explicit zone names (e.g. [us-east-1a, us-east-1c]); unset = the first azCount EKS-supported zones.
    availabilityZones: list[str] | None = Field(None, min_length=2, max_length=6)
    existing: ExistingVpc | None = None

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v):
        # The subnet plan (components.network.subnet_cidrs) carves /19s out of a /16, and AWS allows
        # at most a /16 per VPC CIDR block: exactly a /16 network address.
        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError:
            raise ValueError(f"{v!r} is not an IPv4 network — write it like 10.0.0.0/16 (no host bits set)") from None
        if net.prefixlen != 16:
            raise ValueError(
                f"{v} is a /{net.prefixlen}; the subnet plan needs exactly a /16 — use e.g. "
                f"{net.supernet(new_prefix=16) if net.prefixlen > 16 else '10.0.0.0/16'}"
            )
        return v

    @field_validator("availabilityZones")
    @classmethod
    def _zones(cls, v):
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a zone is listed twice — list each availability zone once")
        return v


class SystemNodesConfig(_M):
    instanceTypes: list[str] = Field(default_factory=lambda: ["m7i.xlarge", "m6i.xlarge"], min_length=1)
    minSize: int = Field(2, ge=2)
    desiredSize: int = Field(2, ge=2)
    maxSize: int = Field(4, ge=2)
    diskGiB: int = Field(50, ge=20)


EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class BudgetConfig(_M):
    """An AWS Budget on the account's monthly cost: e-mail at 80 % of actual and 100 % of forecast."""

    monthlyUsd: float = Field(gt=0)
    emails: list[str] = Field(min_length=1, max_length=10)  # AWS Budgets: at most 10 e-mail subscribers

    @field_validator("emails")
    @classmethod
    def _emails(cls, v):
        bad = [e for e in v if not EMAIL.match(e) or len(e) > 254]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))} is not an e-mail address — write it like ops@example.com")
        return v


def _cidr(v: str) -> str:
    """An IPv4 network (EKS refuses IPv6 CIDRs on an IPv4 cluster's public endpoint)."""
    import ipaddress

    try:
        net = ipaddress.ip_network(v, strict=True)
    except ValueError:
        raise ValueError(
            f"{v!r} is not a network CIDR — write it like 203.0.113.7/32 (no host bits set after the prefix)"
        ) from None
    if net.version != 4:
        raise ValueError(
            f"{v!r} is IPv6; the cluster is IPv4 and EKS accepts only IPv4 CIDRs here "
            f"— list the IPv4 networks you deploy from"
        )
    return str(net)


def covers_all_ipv4(cidrs: list[str]) -> bool:
    """True when the allow-list admits every IPv4 address (0.0.0.0/0, or halves like 0.0.0.0/1 + 128.0.0.0/1)."""
    import ipaddress

    v4 = [n for n in (ipaddress.ip_network(c) for c in cidrs) if n.version == 4]
    return list(ipaddress.collapse_addresses(v4)) == [ipaddress.ip_network("0.0.0.0/0")]


# The retention periods CloudWatch Logs accepts (PutRetentionPolicy); anything else fails at `up`.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


class ClusterConfig(_M):
    name: str | None = None
    kubernetesVersion: str | None = None
    vpc: VpcConfig = VpcConfig()
    # The machine that runs `pulumi up` must reach the API server (review D2): public endpoint on by
    # default, IAM-authenticated; restrict it with publicAccessCidrs.
    endpointPublicAccess: bool = True
    publicAccessCidrs: list[str] = Field(default_factory=list)
    # Private-only endpoint: allowed only when `pulumi up` runs inside the (existing) VPC.
    deployFromVpc: bool = False
    # Pulumi `protect` on the EFS model cache and the gateway database (+ RDS deletion protection).
    protectData: bool = True
    adminRoleArns: list[str] = Field(default_factory=list)
    systemNodes: SystemNodesConfig = SystemNodesConfig()
    logRetentionDays: int = Field(365, ge=1)
    # Billing guard (off unless set): an AWS Budget on the account's monthly cost.
    budget: BudgetConfig | None = None

    @field_validator("logRetentionDays")
    @classmethod
    def _retention(cls, v):
        if v not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"CloudWatch Logs does not accept {v} days — use one of {', '.join(map(str, LOG_RETENTION_DAYS))}"
            )
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return None if v is None else _dns(v, "cluster name")

    @field_validator("publicAccessCidrs")
    @classmethod
    def _cidrs(cls, v):
        out = [_cidr(c) for c in v]
        if out and covers_all_ipv4(out):
            # Written out, an all-internet list is a mistake or a way around this check (0.0.0.0/1 +
            # 128.0.0.0/1); leaving the key unset keeps EKS's open default, which the plan warns about.
            raise ValueError(
                f"{', '.join(out)} opens the API server to the internet — list your office/VPN/CI "
                "CIDRs (e.g. [203.0.113.7/32]), or leave publicAccessCidrs unset for EKS's open "
                "default (the plan warns)"
            )
        return out


def _on_demand_only() -> list[Literal["on-demand", "spot", "reserved"]]:
    return ["on-demand"]


class NodePoolConfig(_M):
    accelerator: Literal["nvidia", "neuron"]
    families: list[str] | None = Field(None, min_length=1)
    capacityTypes: list[Literal["on-demand", "spot", "reserved"]] = Field(default_factory=_on_demand_only, min_length=1)
    maxAccelerators: int = Field(16, ge=1)
    maxCpu: int = Field(1000, ge=1)
    maxMemoryGiB: int = Field(8000, ge=1)
    consolidateAfter: str = "30m"
    expireAfter: str = "720h"
    terminationGracePeriod: str = "2h"
    disruptionBudgetNodes: str = "1"
    labels: dict[str, str] = Field(default_factory=dict)
    weight: int | None = Field(None, ge=1, le=100)

    @field_validator("disruptionBudgetNodes", mode="before")
    @classmethod
    def _budget(cls, v):
        # Karpenter's budget `nodes`: a count or a percentage (NodePool CRD pattern).
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ValueError(f"{v!r} is not a node count or percentage — write 1, 2 or 10%")
        v = str(v)
        if not re.fullmatch(r"(100|[0-9]{1,2})%|[0-9]+", v):
            raise ValueError(f"{v!r} is not a node count or percentage — write 1, 2 or 10%")
        if int(v.rstrip("%")) == 0:
            raise ValueError(
                f"{v!r} blocks every disruption, so empty accelerator nodes are never removed "
                f"— use 1 (or a percentage above 0)"
            )
        return v

    @field_validator("capacityTypes")
    @classmethod
    def _capacity(cls, v):
        # Karpenter finds reserved capacity only through capacityReservationSelectorTerms on the
        # EC2NodeClass, which this program does not render: a reserved-only pool would never launch.
        if "reserved" in v:
            raise ValueError(
                "reserved capacity needs capacity reservations selected on the EC2NodeClass, which "
                "this program does not configure — use on-demand and/or spot"
            )
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v):
        if len(v) > 99:  # the NodePool CRD caps template labels at 100, one is the program's pool label
            raise ValueError(f"{len(v)} labels — use at most 99 (Karpenter's limit is 100 with the pool label)")
        for k, val in v.items():
            problem = _label_key_problem(k)
            if problem:
                raise ValueError(f"label {k!r}: {problem}")
            if val and (len(val) > 63 or not LABEL_NAME.match(val)):
                raise ValueError(
                    f"label {k!r}: value {val!r} is not a Kubernetes label value — at most 63 "
                    f"letters, digits, '-', '_', '.', starting and ending with a letter or digit"
                )
        return v

    @field_validator("consolidateAfter")
    @classmethod
    def _consolidate(cls, v):
        if _duration_s(v) < 1800:
            raise ValueError(
                f"{v!r} is under 30m — accelerator nodes take minutes to start and load a model; use 30m or more"
            )
        return v

    @field_validator("expireAfter")
    @classmethod
    def _expire(cls, v):
        # Karpenter: a duration or "Never". Under an hour, nodes (and the models on them) churn.
        if v == "Never":
            return v
        if _duration_s(v) < 3600:
            raise ValueError(
                f"{v!r} replaces every node (and restarts its model) more than once an hour — use 720h, or Never"
            )
        return v

    @field_validator("terminationGracePeriod")
    @classmethod
    def _grace(cls, v):
        if _duration_s(v) == 0:
            raise ValueError(f"{v!r} kills serving pods without draining — use 2h or at least a few minutes")
        return v


def _duration_s(v: str) -> int:
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", v)
    if not v or not m or not any(m.groups()):
        raise ValueError(f"{v!r} is not a duration — write it like 30m, 2h or 720h")
    h, mi, s = (int(x or 0) for x in m.groups())
    return h * 3600 + mi * 60 + s


def _label_key_problem(k: str) -> str | None:
    prefix, slash, name = k.rpartition("/")
    if (
        not name
        or len(name) > 63
        or not LABEL_NAME.match(name)
        or (slash and (not prefix or len(prefix) > 253 or not LABEL_PREFIX.match(prefix)))
    ):
        return (
            "not a Kubernetes label key — write [dns.prefix/]name, the name at most 63 letters, digits, '-', '_', '.'"
        )
    if slash and any(prefix == d or prefix.endswith("." + d) for d in RESERVED_LABEL_DOMAINS):
        return (
            f"the {prefix}/ domain is reserved (the program, Karpenter or Kubernetes set it) "
            f"— use your own prefix, e.g. example.com/{name}"
        )
    return None


class Replicas(_M):
    min: int = Field(1, ge=0)
    max: int = Field(1, ge=1)


class Architecture(catalog.ArchitectureFields):
    """Facts for a model that is not in the catalog (from its config.json)."""

    # The checkpoint's own quantization (config.json quantization_config.quant_method), if any.
    quantization: Literal["fp8", "awq", "gptq"] | None = None

    @model_validator(mode="after")
    def _attention(self):
        # Grouped-query attention: each KV head serves a whole number of query heads.
        if self.kvHeads > self.heads or self.heads % self.kvHeads:
            raise ValueError(
                f"kvHeads {self.kvHeads} must divide heads {self.heads} (num_key_value_heads and "
                f"num_attention_heads in config.json) — copy both from the checkpoint's config.json"
            )
        return self


class ModelConfig(_M):
    preset: str | None = None
    hfId: str | None = None
    revision: str | None = None
    architecture: Architecture | None = None
    servedName: str | None = None
    accelerator: Literal["nvidia", "neuron"] | None = None
    pool: str | None = None
    instanceType: str | None = None
    tensorParallel: int | None = Field(None, ge=1)
    maxModelLen: int | None = Field(None, ge=16)
    maxNumSeqs: int | None = Field(None, ge=1)
    maxNumBatchedTokens: int | None = Field(None, ge=16)
    gpuMemoryUtilization: float | None = Field(None, gt=0.1, le=0.98)
    quantization: Literal["fp8", "awq", "gptq"] | None = None
    kvCacheDtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    tools: bool | None = None
    reasoning: bool | None = None
    replicas: Replicas = Replicas()
    extraArgs: list[str] = Field(default_factory=list)
    requestTimeoutSeconds: int = Field(600, ge=10, le=86400)
    # The checkpoint needs its own Python from the Hub (`--trust-remote-code`); needs a pinned revision.
    trustRemoteCode: bool = False

    @field_validator("hfId")
    @classmethod
    def _hf_id(cls, v):
        if v is not None and (not HF_ID.match(v) or ".." in v or len(v) > 200):
            raise ValueError(
                f"{v!r} is not a Hugging Face model id — write <organization>/<model> with letters, "
                f"digits, '.', '_', '-' (no '..', no spaces)"
            )
        return v

    @field_validator("revision")
    @classmethod
    def _revision(cls, v):
        if v is not None and not REVISION_SHA.match(v) and (not REVISION_REF.match(v) or ".." in v):
            raise ValueError(
                f"{v!r} is not a Hub revision — use the 40-hex commit sha (best), or a tag/branch of "
                f"letters, digits, '.', '_', '-' (at most 96, no '..')"
            )
        return v

    @field_validator("servedName")
    @classmethod
    def _served(cls, v):
        if v is not None and (not SERVED_NAME.match(v) or ".." in v or "//" in v or v.endswith("/")):
            raise ValueError(
                f"{v!r} is not a usable model name — use letters, digits, '.', '_', '-', '/' "
                f"(at most 128, no '..' or '//')"
            )
        return v


class DatabaseConfig(_M):
    enabled: bool = False
    instanceClass: str = "db.t4g.medium"
    allocatedStorageGiB: int = Field(20, ge=20)
    multiAz: bool = True


# ---- gateway teams: keys as code (components/teamkeys.py, components/gateway_auth) ----------------
# LiteLLM's budget_duration: a count and a unit (seconds, minutes, hours, days, months).
BUDGET_DURATION = re.compile(r"^[1-9][0-9]{0,3}(s|m|h|d|mo)$")
WEBUI_KEY = "open-webui"  # the name of Open WebUI's own key (reserved when ui.enabled)


class GatewayTeam(_M):
    """Who may call which models of this stack's gateway, at what rate. Limits apply to each key."""

    allowedModels: list[str] = Field(min_length=1)  # keys of `models:` on this stack
    keys: list[str] = Field(min_length=1)  # key names; Pulumi generates each key (a secret stack output)
    rpmLimit: int | None = Field(None, ge=1)
    tpmLimit: int | None = Field(None, ge=1)
    maxParallelRequests: int | None = Field(None, ge=1)
    maxBudget: float | None = Field(None, gt=0)  # USD; needs gateway.database (LiteLLM tracks spend there)
    budgetDuration: str | None = None

    @field_validator("keys")
    @classmethod
    def _keys(cls, v):
        for k in v:
            _dns(k, "key name")
        if len(set(v)) != len(v):
            raise ValueError("a key name is listed twice — name each key once")
        return v

    @field_validator("budgetDuration")
    @classmethod
    def _duration(cls, v):
        if v is not None and not BUDGET_DURATION.match(v):
            raise ValueError(f"{v!r} is not a budget period — write it like 30d, 1mo, 24h")
        return v

    @property
    def limited(self) -> bool:
        return any(x is not None for x in (self.rpmLimit, self.tpmLimit, self.maxParallelRequests))


class GatewayConfig(_M):
    replicas: int = Field(2, ge=2)
    database: DatabaseConfig = DatabaseConfig()
    # Seconds LiteLLM keeps an idle upstream connection; vLLM's keep-alive is rendered above it.
    idleConnectionSeconds: int = Field(60, ge=5)
    internalLoadBalancer: bool = True
    # Teams and their keys (keys as code); none = only the master key is accepted.
    teams: dict[str, GatewayTeam] = Field(default_factory=dict)

    @field_validator("teams")
    @classmethod
    def _team_names(cls, v):
        for name in v:
            _dns(name, "team name")
        return v


class UiConfig(_M):
    enabled: bool = False
    # Open WebUI's own gateway key (not the master key): every model, these limits.
    rpmLimit: int = Field(600, ge=1)
    maxParallelRequests: int = Field(16, ge=1)


class ObservabilityConfig(_M):
    enabled: bool = False


class AutoscalingConfig(_M):
    enabled: bool = False
    queueDepthPerReplica: int = Field(8, ge=1)


class TeamConfig(_M):
    name: str
    maxAccelerators: int = Field(8, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        _dns(v, "team name")
        if len(v) > TEAM_NAME_MAX:
            raise ValueError(
                f"team name {v!r} is {len(v)} characters; its namespace {v}-gateway must fit 63 "
                f"— use at most {TEAM_NAME_MAX} characters"
            )
        return v


class StackConfig(_M):
    cluster: ClusterConfig = ClusterConfig()
    nodePools: dict[str, NodePoolConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    gateway: GatewayConfig = GatewayConfig()
    ui: UiConfig = UiConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    team: TeamConfig | None = None
    platformStack: str | None = None
    hfToken: SecretStr | None = None


TOP_LEVEL_KEYS = sorted(StackConfig.model_fields)

# Pools the program creates when a model needs an accelerator kind and the config names no pool.
DEFAULT_POOLS = {
    "nvidia": ("gpu", NodePoolConfig(accelerator="nvidia", families=["g5", "g6", "g6e", "p4d", "p4de", "p5"])),
    "neuron": ("neuron", NodePoolConfig(accelerator="neuron", families=["inf2", "trn1"])),
}
