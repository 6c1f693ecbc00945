"""The stack config: one pydantic model tree, validated once, offline, before any resource exists.

Two ways in, one validation:
- `load()` in a real run reads every `llm-serving:*` key from Pulumi config;
- `load_file(path)` reads a `Pulumi.<stack>.yaml`-format file (the plan CLI and tests).
Both end in `resolve(raw)`, which raises `ConfigError` with one line per problem:
`llm-serving:<key path>: <what> — <how to fix>`.
"""
from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from components.types import InstanceType, ModelArch
from stacks import catalog, planner, vllm_flags
from stacks.yamlio import YamlError, YamlIssue, load_untrusted, read_text

PROJECT = "llm-serving"
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
def SUPPORTED_KUBERNETES(pinned: str) -> tuple[str, ...]:  # noqa: N802 (reads as a constant)
    """The version the catalog pins (EKS standard support, the AMI alias, Karpenter and the GPU operator
    are pinned and tested for it; ../shared/reference/versions.md)."""
    return (pinned,)


# Edit distance at which a config namespace is taken for a misspelling of ours.
NAMESPACE_TYPO_DISTANCE = 2
DEFAULT_MAX_MODEL_LEN = 8192
DEFAULT_MAX_NUM_SEQS = 16


class ConfigError(Exception):
    """Invalid stack config. `problems` are the lines to print, one per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _dns(v: str, what: str = "name") -> str:
    if not DNS1123.match(v) or len(v) > 63:
        raise ValueError(f"{what} {v!r} is not a DNS-1123 label — use lowercase letters, digits and '-', "
                         f"starting and ending with a letter or digit, at most 63 characters")
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
            raise ValueError(f"{', '.join(bad)} {'is not a subnet id' if len(bad) == 1 else 'are not subnet ids'} "
                             "— write them as subnet-0123abcd")
        if len(set(v)) != len(v):
            raise ValueError("a subnet is listed twice — list each subnet once, one private subnet per AZ")
        return v


# AZ ids where EKS cannot place a control plane (CreateCluster: UnsupportedAvailabilityZoneException).
EKS_UNSUPPORTED_ZONE_IDS = ("use1-az3", "usw1-az2", "cac1-az3")


class VpcConfig(_M):
    cidr: str = "10.0.0.0/16"
    azCount: int = Field(3, ge=2, le=6)
    # Explicit zone names (e.g. [us-east-1a, us-east-1c]); unset = the first azCount EKS-supported zones.
    availabilityZones: Optional[list[str]] = Field(None, min_length=2, max_length=6)
    existing: Optional[ExistingVpc] = None

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
            raise ValueError(f"{v} is a /{net.prefixlen}; the subnet plan needs exactly a /16 — use e.g. "
                             f"{net.supernet(new_prefix=16) if net.prefixlen > 16 else '10.0.0.0/16'}")
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


def _cidr(v: str) -> str:
    """An IPv4 network (EKS refuses IPv6 CIDRs on an IPv4 cluster's public endpoint)."""
    import ipaddress
    try:
        net = ipaddress.ip_network(v, strict=True)
    except ValueError:
        raise ValueError(f"{v!r} is not a network CIDR — write it like 203.0.113.7/32 "
                         f"(no host bits set after the prefix)") from None
    if net.version != 4:
        raise ValueError(f"{v!r} is IPv6; the cluster is IPv4 and EKS accepts only IPv4 CIDRs here "
                         f"— list the IPv4 networks you deploy from")
    return str(net)


def covers_all_ipv4(cidrs: list[str]) -> bool:
    """True when the allow-list admits every IPv4 address (0.0.0.0/0, or halves like 0.0.0.0/1 + 128.0.0.0/1)."""
    import ipaddress
    v4 = [n for n in (ipaddress.ip_network(c) for c in cidrs) if n.version == 4]
    return list(ipaddress.collapse_addresses(v4)) == [ipaddress.ip_network("0.0.0.0/0")]


# The retention periods CloudWatch Logs accepts (PutRetentionPolicy); anything else fails at `up`.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)


class ClusterConfig(_M):
    name: Optional[str] = None
    kubernetesVersion: Optional[str] = None
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

    @field_validator("logRetentionDays")
    @classmethod
    def _retention(cls, v):
        if v not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs does not accept {v} days — use one of {', '.join(map(str, LOG_RETENTION_DAYS))}")
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
            raise ValueError(f"{', '.join(out)} opens the API server to the internet — list your office/VPN/CI "
                             "CIDRs (e.g. [203.0.113.7/32]), or leave publicAccessCidrs unset for EKS's open "
                             "default (the plan warns)")
        return out


class NodePoolConfig(_M):
    accelerator: Literal["nvidia", "neuron"]
    families: Optional[list[str]] = Field(None, min_length=1)
    capacityTypes: list[Literal["on-demand", "spot", "reserved"]] = Field(default_factory=lambda: ["on-demand"], min_length=1)
    maxAccelerators: int = Field(16, ge=1)
    maxCpu: int = Field(1000, ge=1)
    maxMemoryGiB: int = Field(8000, ge=1)
    consolidateAfter: str = "30m"
    expireAfter: str = "720h"
    terminationGracePeriod: str = "2h"
    disruptionBudgetNodes: str = "1"
    labels: dict[str, str] = Field(default_factory=dict)
    weight: Optional[int] = Field(None, ge=1, le=100)

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
            raise ValueError(f"{v!r} blocks every disruption, so empty accelerator nodes are never removed "
                             f"— use 1 (or a percentage above 0)")
        return v

    @field_validator("capacityTypes")
    @classmethod
    def _capacity(cls, v):
        # Karpenter finds reserved capacity only through capacityReservationSelectorTerms on the
        # EC2NodeClass, which this program does not render: a reserved-only pool would never launch.
        if "reserved" in v:
            raise ValueError("reserved capacity needs capacity reservations selected on the EC2NodeClass, which "
                             "this program does not configure — use on-demand and/or spot")
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
                raise ValueError(f"label {k!r}: value {val!r} is not a Kubernetes label value — at most 63 "
                                 f"letters, digits, '-', '_', '.', starting and ending with a letter or digit")
        return v

    @field_validator("consolidateAfter")
    @classmethod
    def _consolidate(cls, v):
        if _duration_s(v) < 1800:
            raise ValueError(f"{v!r} is under 30m — accelerator nodes take minutes to start and load a "
                             f"model; use 30m or more")
        return v

    @field_validator("expireAfter")
    @classmethod
    def _expire(cls, v):
        # Karpenter: a duration or "Never". Under an hour, nodes (and the models on them) churn.
        if v == "Never":
            return v
        if _duration_s(v) < 3600:
            raise ValueError(f"{v!r} replaces every node (and restarts its model) more than once an hour "
                             f"— use 720h, or Never")
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


def _label_key_problem(k: str) -> Optional[str]:
    prefix, slash, name = k.rpartition("/")
    if not name or len(name) > 63 or not LABEL_NAME.match(name) or (
            slash and (not prefix or len(prefix) > 253 or not LABEL_PREFIX.match(prefix))):
        return ("not a Kubernetes label key — write [dns.prefix/]name, the name at most 63 letters, digits, "
                "'-', '_', '.'")
    if slash and any(prefix == d or prefix.endswith("." + d) for d in RESERVED_LABEL_DOMAINS):
        return (f"the {prefix}/ domain is reserved (the program, Karpenter or Kubernetes set it) "
                f"— use your own prefix, e.g. example.com/{name}")
    return None


class Replicas(_M):
    min: int = Field(1, ge=0)
    max: int = Field(1, ge=1)


class Architecture(catalog.ArchitectureFields):
    """Facts for a model that is not in the catalog (from its config.json)."""

    # The checkpoint's own quantization (config.json quantization_config.quant_method), if any.
    quantization: Optional[Literal["fp8", "awq", "gptq"]] = None

    @model_validator(mode="after")
    def _attention(self):
        # Grouped-query attention: each KV head serves a whole number of query heads.
        if self.kvHeads > self.heads or self.heads % self.kvHeads:
            raise ValueError(f"kvHeads {self.kvHeads} must divide heads {self.heads} (num_key_value_heads and "
                             f"num_attention_heads in config.json) — copy both from the checkpoint's config.json")
        return self


class ModelConfig(_M):
    preset: Optional[str] = None
    hfId: Optional[str] = None
    revision: Optional[str] = None
    architecture: Optional[Architecture] = None
    servedName: Optional[str] = None
    accelerator: Optional[Literal["nvidia", "neuron"]] = None
    pool: Optional[str] = None
    instanceType: Optional[str] = None
    tensorParallel: Optional[int] = Field(None, ge=1)
    maxModelLen: Optional[int] = Field(None, ge=16)
    maxNumSeqs: Optional[int] = Field(None, ge=1)
    maxNumBatchedTokens: Optional[int] = Field(None, ge=16)
    gpuMemoryUtilization: Optional[float] = Field(None, gt=0.1, le=0.98)
    quantization: Optional[Literal["fp8", "awq", "gptq"]] = None
    kvCacheDtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    tools: Optional[bool] = None
    reasoning: Optional[bool] = None
    replicas: Replicas = Replicas()
    extraArgs: list[str] = Field(default_factory=list)
    requestTimeoutSeconds: int = Field(600, ge=10, le=86400)
    # The checkpoint needs its own Python from the Hub (`--trust-remote-code`); needs a pinned revision.
    trustRemoteCode: bool = False

    @field_validator("hfId")
    @classmethod
    def _hf_id(cls, v):
        if v is not None and (not HF_ID.match(v) or ".." in v or len(v) > 200):
            raise ValueError(f"{v!r} is not a Hugging Face model id — write <organization>/<model> with letters, "
                             f"digits, '.', '_', '-' (no '..', no spaces)")
        return v

    @field_validator("revision")
    @classmethod
    def _revision(cls, v):
        if v is not None and not REVISION_SHA.match(v) and (not REVISION_REF.match(v) or ".." in v):
            raise ValueError(f"{v!r} is not a Hub revision — use the 40-hex commit sha (best), or a tag/branch of "
                             f"letters, digits, '.', '_', '-' (at most 96, no '..')")
        return v

    @field_validator("servedName")
    @classmethod
    def _served(cls, v):
        if v is not None and (not SERVED_NAME.match(v) or ".." in v or "//" in v or v.endswith("/")):
            raise ValueError(f"{v!r} is not a usable model name — use letters, digits, '.', '_', '-', '/' "
                             f"(at most 128, no '..' or '//')")
        return v


class DatabaseConfig(_M):
    enabled: bool = False
    instanceClass: str = "db.t4g.medium"
    allocatedStorageGiB: int = Field(20, ge=20)
    multiAz: bool = True


class GatewayConfig(_M):
    replicas: int = Field(2, ge=2)
    database: DatabaseConfig = DatabaseConfig()
    # Seconds LiteLLM keeps an idle upstream connection; vLLM's keep-alive is rendered above it.
    idleConnectionSeconds: int = Field(60, ge=5)
    internalLoadBalancer: bool = True


class UiConfig(_M):
    enabled: bool = False


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
            raise ValueError(f"team name {v!r} is {len(v)} characters; its namespace {v}-gateway must fit 63 "
                             f"— use at most {TEAM_NAME_MAX} characters")
        return v


class StackConfig(_M):
    cluster: ClusterConfig = ClusterConfig()
    nodePools: dict[str, NodePoolConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    gateway: GatewayConfig = GatewayConfig()
    ui: UiConfig = UiConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    team: Optional[TeamConfig] = None
    platformStack: Optional[str] = None
    hfToken: Optional[SecretStr] = None


TOP_LEVEL_KEYS = sorted(StackConfig.model_fields)

# Pools the program creates when a model needs an accelerator kind and the config names no pool.
DEFAULT_POOLS = {
    "nvidia": ("gpu", NodePoolConfig(accelerator="nvidia", families=["g5", "g6", "g6e", "p4d", "p4de", "p5"])),
    "neuron": ("neuron", NodePoolConfig(accelerator="neuron", families=["inf2", "trn1"])),
}


# ---- resolved intent (what the stack layer consumes) -----------------------------------------


@dataclass(frozen=True)
class ResolvedPool:
    name: str
    spec: NodePoolConfig
    instances: tuple[InstanceType, ...]


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    served_name: str
    hf_id: str
    revision: Optional[str]
    arch: ModelArch
    kind: Literal["nvidia", "neuron"]
    pool: str
    sizing: planner.Sizing
    quantization: Optional[str]
    kv_cache_dtype: str
    tool_parser: Optional[str]
    reasoning_parser: Optional[str]
    replicas_min: int
    replicas_max: int
    extra_args: tuple[str, ...]
    request_timeout_seconds: int
    warnings: tuple[str, ...]
    trust_remote_code: bool = False

    @property
    def hourly_usd(self) -> tuple[float, float]:
        return planner.hourly_usd(self.sizing.instance, self.replicas_min, self.replicas_max)


@dataclass(frozen=True)
class StackIntent:
    stack: str
    region: str
    cluster_name: str
    kubernetes_version: str
    config: StackConfig
    pools: dict[str, ResolvedPool]
    models: dict[str, ResolvedModel]
    warnings: tuple[str, ...] = ()  # stack-level (per-model ones are on ResolvedModel)

    @property
    def hourly_usd(self) -> tuple[float, float]:
        lo = sum(m.hourly_usd[0] for m in self.models.values())
        hi = sum(m.hourly_usd[1] for m in self.models.values())
        return round(lo, 4), round(hi, 4)

    @property
    def is_team_stack(self) -> bool:
        return self.config.platformStack is not None


# ---- loading --------------------------------------------------------------------------------


def key(*path: Any) -> str:
    head, *rest = [str(p) for p in path]
    return ".".join([f"{PROJECT}:{head}", *rest])


_TYPE_FIXES = {
    "string_type": "quote the value (YAML reads 1.35 as a number and yes/no as booleans)",
    "int_parsing": "write a whole number", "int_type": "write a whole number",
    "bool_parsing": "write true or false", "bool_type": "write true or false",
    "dict_type": "write a mapping (key: value)", "model_type": "write a mapping (key: value)",
    "list_type": "write a list ([a, b])", "literal_error": "use one of the listed values",
    "missing": "add it",
}


def _pydantic_problems(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = [p for p in e["loc"]]
        typ = e["type"]
        if typ == "extra_forbidden":
            bad = str(loc[-1])
            parent = loc[:-1]
            if not parent:
                close = difflib.get_close_matches(bad, TOP_LEVEL_KEYS, n=1)
                hint = f"did you mean {key(close[0])}?" if close else f"known keys: {', '.join(TOP_LEVEL_KEYS)}"
                out.append(f"{key(bad)}: unknown config key — {hint}")
            else:
                out.append(f"{key(*loc)}: unknown field — remove it (check the spelling against README 'Stack config')")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        fix = "" if "—" in msg else f" — {_TYPE_FIXES.get(typ, 'fix the value in the stack file')}"
        out.append(f"{key(*loc) if loc else PROJECT}: {msg}{fix}")
    return out


def _where(path: str | Path, issue: YamlIssue) -> str:
    pos = f"{path}:{issue.line}:{issue.column}" if issue.line is not None else str(path)
    keys = issue.path[1:] if issue.path[:1] == ("config",) and len(issue.path) > 1 else issue.path
    return f"{pos}: {'.'.join(keys)}: " if keys else f"{pos}: "


def read_stack_document(path: str | Path) -> dict[str, Any]:
    """A Pulumi.<stack>.yaml document, read strictly (stacks/yamlio.py); ConfigError with
    `file:line:column: key: what — fix` lines for anything that is not a clean mapping."""
    try:
        doc = load_untrusted(read_text(Path(path)))
    except YamlError as e:
        raise ConfigError([f"{_where(path, i)}{i.what} — {i.fix}" for i in e.issues]) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError([f"{path}: the document is a {type(doc).__name__}, not a mapping — a stack file "
                           f"is a mapping with a config: section"])
    cfg = doc.get("config")
    if cfg is not None and not isinstance(cfg, dict):
        raise ConfigError([f"{path}: config: is a {type(cfg).__name__}, not a mapping — write it as a mapping "
                           f"of {PROJECT}:<key>: <value> entries"])
    return doc


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def namespace_problems(keys: list[str]) -> list[str]:
    """Config keys that look like ours but are not read (a misspelt namespace drops a whole section)."""
    out = []
    for k in keys:
        ns, colon, name = str(k).partition(":")
        if not colon:
            out.append(f"{k}: config key without a namespace — write {PROJECT}:{k}")
        elif ns != PROJECT and _edit_distance(ns.lower(), PROJECT) <= NAMESPACE_TYPO_DISTANCE:
            out.append(f"{k}: namespace {ns!r} looks like a misspelling of {PROJECT!r}, so nothing under it is "
                       f"read — rename the key to {PROJECT}:{name}")
    return out


def _plaintext_token() -> str:
    return (f"{key('hfToken')}: the Hugging Face token is in plain text in the stack file — remove it and run "
            f"`pulumi config set --secret {PROJECT}:hfToken hf_…` (stores it encrypted as secure:)")


def parse_stack_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """Read a Pulumi.<stack>.yaml file: ({llm-serving key: value}, aws region). Secure values
    (`{secure: ...}`) cannot be decrypted offline and stand in as a placeholder secret."""
    cfg = read_stack_document(path).get("config") or {}
    problems = namespace_problems(list(cfg))
    raw: dict[str, Any] = {}
    region = "us-east-1"
    for k, v in cfg.items():
        if k == "aws:region":
            region = str(v)
            if not AWS_REGION.match(region):
                problems.append(f"aws:region: {v!r} is not an AWS region name — write it like us-east-1")
            continue
        ns, _, name = str(k).partition(":")
        if ns != PROJECT or not name:
            continue  # other packages' config (aws:profile, kubernetes:…) is not ours to judge
        if isinstance(v, dict) and set(v) == {"secure"}:
            v = "[offline-secret]"
        elif name == "hfToken" and v is not None:
            problems.append(_plaintext_token())
        raw[name] = v
    if problems:
        raise ConfigError(problems)
    return raw, region


def load_file(path: str | Path, stack: Optional[str] = None) -> StackIntent:
    raw, region = parse_stack_file(path)
    if stack is None:
        stack = Path(path).name.removeprefix("Pulumi.").removesuffix(".yaml")
    return resolve(raw, stack=stack, region=region)


def load() -> StackIntent:
    """Read the stack config inside a Pulumi program (real run, or under mocks)."""
    import pulumi
    from pulumi.runtime import config as rc

    raw: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    all_cfg = {**rc.get_config_env(), **rc.CONFIG.get()}
    problems = namespace_problems([k for k in all_cfg if ":" in k])
    token = f"{prefix}hfToken"
    if all_cfg.get(token) not in (None, "null") and not (rc.is_config_secret(token)
                                                         or token in rc.get_config_secret_keys_env()):
        problems.append(_plaintext_token())  # runtime path: tests/stacks/test_config.py test_runtime_load_*
    if problems:
        raise pulumi.RunError("invalid stack config:\n" + "\n".join(f"error: {p}" for p in problems))
    for k, v in all_cfg.items():
        if k.startswith(prefix):
            name = k[len(prefix):]
            try:
                # objects travel as JSON; a YAML null arrives as the string "null"
                raw[name] = json.loads(v) if isinstance(v, str) and (v[:1] in "[{" or v == "null") else v
            except json.JSONDecodeError:
                raw[name] = v
    region = pulumi.Config("aws").get("region") or "us-east-1"
    try:
        return resolve(raw, stack=pulumi.get_stack(), region=region)
    except ConfigError as e:
        raise pulumi.RunError("invalid stack config:\n" + "\n".join(f"error: {p}" for p in e.problems)) from None


def resolve(raw: dict[str, Any], *, stack: str, region: str = "us-east-1") -> StackIntent:
    try:
        cfg = StackConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_pydantic_problems(err)) from None
    return _Resolver(cfg, stack, region).run()


# ---- cross-checks ---------------------------------------------------------------------------


class _Resolver:
    def __init__(self, cfg: StackConfig, stack: str, region: str):
        self.cfg, self.stack, self.region = cfg, stack, region
        self.problems: list[str] = []
        self.instances = catalog.instances()
        self.presets = catalog.models()

    def err(self, path: tuple, what: str, fix: str) -> None:
        self.problems.append(f"{key(*path)}: {what} — {fix}")

    def run(self) -> StackIntent:
        cfg = self.cfg
        versions = catalog.versions()
        cluster_name = cfg.cluster.name or _dns_safe(f"llm-{self.stack}")
        pools = self._declared_pools()
        models: dict[str, ResolvedModel] = {}
        for name, m in cfg.models.items():
            r = self._model(name, m, pools)
            if r is not None:
                models[name] = r
        self._duplicates(models)
        self._capacity(models, pools)
        self._kubernetes_version(versions.kubernetes)
        self._derived_name_lengths(cluster_name)
        if cfg.team is not None and cfg.platformStack is None:
            self.err(("team",), "a team stack needs the platform stack it attaches to",
                     "set llm-serving:platformStack to organization/llm-serving/<platform stack>")
        if cfg.platformStack is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+/[\w.-]+", cfg.platformStack, re.ASCII):
            self.err(("platformStack",), f"{cfg.platformStack!r} is not a fully qualified stack name",
                     "write it as <organization>/llm-serving/<stack> (self-managed backends: organization/llm-serving/<stack>)")
        for section in ("observability", "autoscaling"):
            if getattr(cfg, section).enabled:
                self.err((section, "enabled"), f"{section} is not built by this version of the program",
                         "set it to false (the section is reserved; nothing would be deployed for it)")
        warnings = self._cluster_checks()
        if self.problems:
            raise ConfigError(self.problems)
        # Only pools some model uses, or the config names explicitly, exist.
        used = {m.pool for m in models.values()}
        pools = {n: p for n, p in pools.items() if n in used or n in cfg.nodePools}
        return StackIntent(
            stack=self.stack, region=self.region, cluster_name=cluster_name,
            kubernetes_version=cfg.cluster.kubernetesVersion or versions.kubernetes,
            config=cfg, pools=dict(sorted(pools.items())), models=models, warnings=tuple(warnings),
        )

    def _cluster_checks(self) -> list[str]:
        """Endpoint reachability (review D2) and VPC/AZ choices; returns stack-level warnings."""
        c = self.cfg.cluster
        warnings: list[str] = []
        if c.deployFromVpc and c.vpc.existing is None:
            self.err(("cluster", "deployFromVpc"), "only an existing VPC can hold the machine that runs `pulumi up` "
                     "(this program creates the VPC during that same run)",
                     "set cluster.vpc.existing, or drop deployFromVpc and keep endpointPublicAccess: true")
        if not c.endpointPublicAccess and not c.deployFromVpc:
            self.err(("cluster", "endpointPublicAccess"), "a private-only API endpoint is unreachable from the machine "
                     "running `pulumi up`, so every Kubernetes object would time out",
                     "keep endpointPublicAccess: true with publicAccessCidrs, or deploy from inside an existing VPC "
                     "(cluster.vpc.existing + cluster.deployFromVpc: true)")
        if (self.cfg.platformStack is None and c.endpointPublicAccess
                and not c.publicAccessCidrs):
            warnings.append(f"{key('cluster', 'publicAccessCidrs')}: the public API endpoint is open to the whole "
                            "internet (IAM-authenticated) — set it to your office/VPN/CI CIDRs, e.g. [203.0.113.7/32]")
        if not c.endpointPublicAccess and c.publicAccessCidrs:
            self.err(("cluster", "publicAccessCidrs"), "has no effect with endpointPublicAccess: false",
                     "remove publicAccessCidrs or turn the public endpoint on")
        zones = c.vpc.availabilityZones or []
        foreign = [z for z in zones if not re.fullmatch(re.escape(self.region) + r"[a-z]", z)]
        if foreign:
            self.err(("cluster", "vpc", "availabilityZones"), f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} "
                     f"not availability zones of {self.region}",
                     f"use zone names like {self.region}a (Local/Wavelength Zones cannot host EKS subnets)")
        if zones and c.vpc.existing is not None:
            self.err(("cluster", "vpc", "availabilityZones"), "the zones of an existing VPC are its subnets' zones",
                     "remove availabilityZones, or drop vpc.existing")
        return warnings

    def _declared_pools(self) -> dict[str, ResolvedPool]:
        pools: dict[str, ResolvedPool] = {}
        for name, p in self.cfg.nodePools.items():
            path = ("nodePools", name)
            try:
                _dns(name, "pool name")
            except ValueError as e:
                self.err(path, str(e).split(" — ")[0], str(e).split(" — ")[1])
                continue
            fams = p.families or DEFAULT_POOLS[p.accelerator][1].families
            known = catalog.families(p.accelerator)
            bad = [f for f in fams if f not in known]
            if bad:
                other = [f for f in bad if f in catalog.families()]
                why = (f"{', '.join(other)} {'is' if len(other) == 1 else 'are'} not {p.accelerator} families"
                       if other else f"unknown instance families {', '.join(bad)}")
                self.err(path + ("families",), why, f"use {p.accelerator} families: {', '.join(known)}")
                continue
            insts = tuple(i for i in self.instances.values() if i.family in fams)
            pools[name] = ResolvedPool(name, p.model_copy(update={"families": list(fams)}), insts)
        return pools

    def _pool_for(self, name: str, m: ModelConfig, kind: Optional[str], pools: dict[str, ResolvedPool]):
        path = ("models", name)
        if m.pool is not None:
            if m.pool not in pools:
                self.err(path + ("pool",), f"no node pool named {m.pool!r}",
                         f"define llm-serving:nodePools.{m.pool} or use one of: {', '.join(pools) or '(none defined)'}")
                return None
            p = pools[m.pool]
            if kind is not None and p.spec.accelerator != kind:
                self.err(path + ("pool",), f"pool {m.pool!r} is {p.spec.accelerator}-only but the model needs {kind}",
                         f"choose a {kind} pool or a {p.spec.accelerator} instance type")
                return None
            return p
        if kind is None:
            # With pools of only one accelerator kind declared, that is the kind meant.
            declared = {p.spec.accelerator for n, p in pools.items() if n in self.cfg.nodePools}
            kind = declared.pop() if len(declared) == 1 else "nvidia"
        same = [p for p in pools.values() if p.spec.accelerator == kind]
        if len(same) == 1:
            return same[0]
        if len(same) > 1:
            self.err(path + ("pool",), f"several {kind} pools ({', '.join(p.name for p in same)})",
                     "set pool: to the one this model runs on")
            return None
        dname, dspec = DEFAULT_POOLS[kind]
        if dname in pools and pools[dname].spec.accelerator != kind:
            # The default name is taken by a pool of the other kind: never place the model there.
            self.err(path + ("pool",), f"the model needs {kind} and no {kind} pool is defined; the default "
                     f"{kind} pool would be named {dname!r}, which is the {pools[dname].spec.accelerator} pool",
                     f"define a pool with accelerator: {kind} in llm-serving:nodePools (and set pool: to it), "
                     f"or rename nodePools.{dname}")
            return None
        insts = tuple(i for i in self.instances.values() if i.family in dspec.families)
        pools.setdefault(dname, ResolvedPool(dname, dspec, insts))
        return pools[dname]

    def _arch(self, name: str, m: ModelConfig) -> Optional[ModelArch]:
        path = ("models", name)
        if m.preset is not None:
            if m.preset not in self.presets:
                close = difflib.get_close_matches(m.preset, list(self.presets), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"presets: {', '.join(sorted(self.presets))}"
                self.err(path + ("preset",), f"unknown preset {m.preset!r}", hint)
                return None
            arch = self.presets[m.preset]
            if m.hfId and m.hfId != arch.hf_id and m.architecture is None:
                self.err(path + ("hfId",), f"{m.hfId} overrides preset {m.preset} ({arch.hf_id}) without facts",
                         "drop hfId, or give architecture: facts for the other checkpoint")
                return None
            return arch
        if m.hfId is None:
            self.err(path, "neither preset nor hfId", f"set preset: (one of {', '.join(sorted(self.presets))}) or hfId: with architecture:")
            return None
        for a in self.presets.values():
            if a.hf_id == m.hfId and m.architecture is None:
                return a
        if m.architecture is None:
            self.err(path + ("architecture",), f"{m.hfId} is not in the catalog, so its size is unknown",
                     "add architecture: {params, layers, hidden, intermediate, heads, kvHeads, headDim, vocab, maxPositions} from its config.json")
            return None
        a = m.architecture
        return ModelArch(hf_id=m.hfId, params=a.params, layers=a.layers, hidden=a.hidden,
                         intermediate=a.intermediate, heads=a.heads, kv_heads=a.kvHeads, head_dim=a.headDim,
                         vocab=a.vocab, max_positions=a.maxPositions, dtype=a.dtype, gated=a.gated,
                         quantization=a.quantization)

    def _model_name(self, name: str) -> None:
        path = ("models", name)
        try:
            _dns(name, "model name")
        except ValueError as e:
            self.err(path, *str(e).split(" — "))
            return
        if len(name) > MODEL_NAME_MAX:
            self.err(path, f"model name {name!r} is {len(name)} characters; its cache Job cache-{name} must fit 63",
                     f"use at most {MODEL_NAME_MAX} characters")
        if name in ("default", "kubernetes"):
            # Each model gets a ServiceAccount and a Service of its name; every namespace already has
            # the ServiceAccount `default`, and a Service `kubernetes` shadows the API server's variables.
            self.err(path, f"the model name {name!r} is taken in every namespace (ServiceAccount default, "
                     "Service kubernetes)", "rename the model; set servedName: to keep the name clients use")
        if name == "vllm" or name.startswith("vllm-"):
            # The Service is named after the model; Kubernetes injects <SERVICE>_PORT/_SERVICE_HOST
            # variables into every pod of the namespace, and vLLM reads VLLM_* (VLLM_PORT breaks it).
            self.err(path, f"a model named {name!r} makes Kubernetes inject VLLM_* variables (e.g. VLLM_PORT) "
                     "into every vLLM pod, and vLLM refuses to start", "rename the model (e.g. qwen3-8b); set "
                     "servedName: to keep the name clients use")

    def _extra_args(self, name: str, m: ModelConfig, kind: str) -> list[vllm_flags.Used]:
        path = ("models", name, "extraArgs")
        used, problems = vllm_flags.check(list(m.extraArgs), kind, trust_remote_code=m.trustRemoteCode)
        for what, fix in problems:
            self.err(path, what, fix)
        return used

    def _model(self, name: str, m: ModelConfig, pools: dict[str, ResolvedPool]) -> Optional[ResolvedModel]:
        path = ("models", name)
        n0 = len(self.problems)
        self._model_name(name)
        served = m.servedName or name
        if m.replicas.min > m.replicas.max:
            self.err(path + ("replicas",), f"min {m.replicas.min} > max {m.replicas.max}", "make min ≤ max")
        if m.trustRemoteCode and not (m.revision and REVISION_SHA.match(m.revision)):
            self.err(path + ("trustRemoteCode",), "remote code runs in the server, so it must be pinned",
                     "set revision: to the 40-hex commit sha you reviewed")
        arch = self._arch(name, m)
        inst: Optional[InstanceType] = None
        if m.instanceType is not None:
            inst = self.instances.get(m.instanceType)
            if inst is None:
                close = difflib.get_close_matches(m.instanceType, list(self.instances), n=1)
                hint = f"did you mean {close[0]}?" if close else "see stacks/catalog/instances.yaml"
                self.err(path + ("instanceType",), f"unknown instance type {m.instanceType!r}", hint)
        kind = m.accelerator or (inst.kind if inst else None)
        if inst is not None and m.accelerator is not None and inst.kind != m.accelerator:
            self.err(path + ("instanceType",), f"{inst.name} is a {inst.kind} instance but accelerator is {m.accelerator}",
                     f"pick a {m.accelerator} instance type or change accelerator")
        pool = self._pool_for(name, m, kind, pools)
        used = self._extra_args(name, m, pool.spec.accelerator if pool else (kind or "nvidia"))
        if arch is None or pool is None or len(self.problems) > n0:
            return None
        kind = pool.spec.accelerator
        if arch.gated and self.cfg.hfToken is None:
            self.err(path + ("preset" if m.preset else "hfId",), f"{arch.hf_id} is gated on Hugging Face and no token is configured",
                     f"accept its licence on the Hub, then `pulumi config set --secret {PROJECT}:hfToken hf_…`")
        if inst is not None and inst.family not in pool.spec.families:
            self.err(path + ("instanceType",), f"{inst.name} is not allowed by pool {pool.name!r} (families {', '.join(pool.spec.families)})",
                     f"add {inst.family} to llm-serving:nodePools.{pool.name}.families or pick an allowed type")
            return None
        max_len = m.maxModelLen or min(arch.max_positions, DEFAULT_MAX_MODEL_LEN)
        if max_len > arch.max_positions:
            self.err(path + ("maxModelLen",), f"{max_len} exceeds the model's {arch.max_positions} positions",
                     f"set maxModelLen ≤ {arch.max_positions}")
            return None
        seqs = m.maxNumSeqs or DEFAULT_MAX_NUM_SEQS
        quant = m.quantization if m.quantization is not None else arch.quantization
        kw = dict(batched_tokens=m.maxNumBatchedTokens, utilization=m.gpuMemoryUtilization,
                  kv_cache_dtype=m.kvCacheDtype, quantization=quant)
        if kind == "neuron" and (m.kvCacheDtype != "auto" or quant):
            what = ("quantization / kvCacheDtype are GPU settings here" if m.kvCacheDtype != "auto" or m.quantization
                    else f"{arch.hf_id} is a {quant} checkpoint; the Neuron image serves bf16/fp16 checkpoints")
            self.err(path, what, "remove them for Neuron models" if m.kvCacheDtype != "auto" or m.quantization
                     else "use the bf16 preset of this model on Neuron, or an nvidia pool")
            return None
        if not self._quantization_ok(path, arch, m.quantization):
            return None
        if inst is not None and m.tensorParallel is not None:
            why = planner.tp_problem(arch, inst, m.tensorParallel)
            if why:
                self.err(path + ("tensorParallel",), why, f"use one of {planner.valid_tps(arch, inst)}")
                return None
        candidates = [inst] if inst is not None else list(pool.instances)
        if m.tensorParallel is not None and inst is None and not any(
                planner.tp_problem(arch, c, m.tensorParallel) is None for c in candidates):
            self.err(path + ("tensorParallel",), f"no instance in pool {pool.name!r} can run TP {m.tensorParallel} "
                     f"({arch.heads} heads)", "choose a TP that divides the heads and fits an instance")
            return None
        sizing = planner.choose(arch, candidates, max_len, seqs, tp=m.tensorParallel, **kw)
        if sizing is None:
            ctx, where = planner.best_context(arch, candidates, seqs, **kw)
            where_all = planner.choose(arch, list(pool.instances), max_len, seqs, **kw)
            fix = []
            if ctx:
                fix.append(f"maxModelLen: {ctx} fits on {where}")
            if where_all is not None and inst is not None:
                fix.append(f"instanceType: {where_all.instance.name} (TP {where_all.tensor_parallel}) fits {max_len} tokens")
            if not fix:
                fix.append(f"no instance in pool {pool.name!r} fits it: add larger families or quantize")
            target = (("instanceType",) if inst is not None else ()) or (("maxModelLen",))
            if inst is not None:
                tps = [m.tensorParallel] if m.tensorParallel else planner.valid_tps(arch, inst)
                s0 = planner.size(arch, inst, max(tps), max_len, seqs, **kw)
                if not s0.host_memory_ok:
                    fix.insert(0, f"{inst.name} leaves the pod {s0.host_memory_gib:.0f} GiB of host memory, "
                                  f"loading needs ~{s0.host_memory_needed_gib:.0f} GiB")
            self.err(path + target, f"{arch.hf_id} does not fit ({max_len}-token context, "
                     f"{'TP ' + str(m.tensorParallel) + ' on ' if m.tensorParallel else ''}"
                     f"{inst.name if inst else 'pool ' + pool.name})", "; or ".join(fix))
            return None
        if not self._batching_ok(path, m, sizing, kind, used):
            return None
        warnings = []
        if not sizing.meets_concurrency:
            hints = planner.fix_hints(arch, sizing, list(pool.instances), **kw)
            warnings.append(
                f"max concurrency {sizing.max_concurrency:.1f} < maxNumSeqs {seqs} "
                f"(KV budget {sizing.kv_gib_per_device:.2f} GiB/device); fix: " + "; or ".join(hints))
        revision = m.revision or arch.revision
        if revision is None:
            warnings.append("revision not pinned: set revision: <commit sha> so every replica loads the same weights")
        tools = m.tools if m.tools is not None else arch.tool_parser is not None
        reasoning = m.reasoning if m.reasoning is not None else arch.reasoning_parser is not None
        if tools and arch.tool_parser is None:
            self.err(path + ("tools",), f"no tool parser is known for {arch.hf_id}", "set tools: false")
        if reasoning and arch.reasoning_parser is None:
            self.err(path + ("reasoning",), f"no reasoning parser is known for {arch.hf_id}", "set reasoning: false")
        return ResolvedModel(
            name=name, served_name=served, hf_id=m.hfId or arch.hf_id, revision=revision, arch=arch,
            kind=kind, pool=pool.name, sizing=sizing, quantization=quant, kv_cache_dtype=m.kvCacheDtype,
            tool_parser=arch.tool_parser if tools else None,
            reasoning_parser=arch.reasoning_parser if reasoning else None,
            replicas_min=m.replicas.min, replicas_max=m.replicas.max, extra_args=tuple(m.extraArgs),
            request_timeout_seconds=m.requestTimeoutSeconds, warnings=tuple(warnings),
            trust_remote_code=m.trustRemoteCode,
        )

    def _quantization_ok(self, path: tuple, arch: ModelArch, asked: Optional[str]) -> bool:
        """vLLM reads AWQ/GPTQ weights from a checkpoint quantized that way; it cannot produce them from
        bf16 (fp8 it can, online). A quantized checkpoint is served with its own method."""
        have = arch.quantization
        if asked is None or asked == have:
            return True
        if have is not None:
            self.err(path + ("quantization",), f"{arch.hf_id} is a {have} checkpoint; vLLM cannot serve it as {asked}",
                     f"remove quantization: (it is {have} already), or use another checkpoint")
            return False
        if asked in ("awq", "gptq"):
            self.err(path + ("quantization",), f"{asked} needs a checkpoint quantized with {asked}; {arch.hf_id} is "
                     f"{arch.dtype}", f"use an {asked} checkpoint (hfId: + architecture: with quantization: {asked}), "
                     "or quantization: fp8 (vLLM quantizes bf16 weights to fp8 on load)")
            return False
        return True

    def _batching_ok(self, path: tuple, m: ModelConfig, s: planner.Sizing, kind: str,
                     used: list[vllm_flags.Used]) -> bool:
        """vLLM 0.32 SchedulerConfig.verify_max_model_len: refuses to start when the batched tokens are
        below max-num-seqs, or below max-model-len with chunked prefill off."""
        if kind == "neuron":
            return True
        target = path + (("maxNumBatchedTokens",) if m.maxNumBatchedTokens else ("maxNumSeqs",))
        if s.max_num_batched_tokens < s.max_num_seqs:
            self.err(target, f"max-num-batched-tokens {s.max_num_batched_tokens} < maxNumSeqs {s.max_num_seqs}; "
                     "vLLM refuses to start", f"set maxNumBatchedTokens ≥ {s.max_num_seqs}, or lower maxNumSeqs")
            return False
        if vllm_flags.chunked_prefill_disabled(used) and s.max_num_batched_tokens < s.max_model_len:
            self.err(target, f"with chunked prefill off, max-num-batched-tokens {s.max_num_batched_tokens} < "
                     f"maxModelLen {s.max_model_len}; vLLM refuses to start",
                     f"set maxNumBatchedTokens ≥ {s.max_model_len}, or keep chunked prefill on")
            return False
        return True

    def _capacity(self, models: dict[str, ResolvedModel], pools: dict[str, ResolvedPool]) -> None:
        per_pool: dict[str, list[ResolvedModel]] = {}
        for m in models.values():
            per_pool.setdefault(m.pool, []).append(m)
        for pname, ms in per_pool.items():
            self._pool_limits(pname, pools[pname].spec, ms)
        if self.cfg.team is not None:
            self._team_quota(self.cfg.team, list(models.values()))

    def _pool_limits(self, pname: str, spec: NodePoolConfig, ms: list[ResolvedModel]) -> None:
        """Replicas at their maximum must fit the NodePool limits; Karpenter counts whole nodes' capacity."""
        need = {"maxAccelerators": 0, "maxCpu": 0, "maxMemoryGiB": 0}
        for m in ms:
            inst = m.sizing.instance
            per_node = max(1, inst.devices // planner.accelerator_devices(inst, m.sizing.tensor_parallel))
            nodes = -(-m.replicas_max // per_node)
            need["maxAccelerators"] += nodes * inst.devices
            need["maxCpu"] += nodes * inst.vcpu
            need["maxMemoryGiB"] += nodes * inst.memory_mib // 1024
        units = {"maxAccelerators": "accelerators", "maxCpu": "vCPUs", "maxMemoryGiB": "GiB"}
        for field, want in need.items():
            have = getattr(spec, field)
            if want > have:
                path = ("nodePools", pname, field) if pname in self.cfg.nodePools else ("models", ms[0].name, "replicas")
                self.err(path, f"the models on pool {pname!r} ({', '.join(m.name for m in ms)}) at replicas.max need "
                         f"nodes with {want} {units[field]}, over the pool limit {have}",
                         f"raise nodePools.{pname}.{field} to {want} or lower replicas.max")

    def _team_quota(self, team: TeamConfig, ms: list[ResolvedModel]) -> None:
        """The team's ResourceQuota counts requests, per resource (nvidia.com/gpu, aws.amazon.com/neuron)."""
        per_kind: dict[str, int] = {}
        for m in ms:
            devices = planner.accelerator_devices(m.sizing.instance, m.sizing.tensor_parallel)
            per_kind[m.kind] = per_kind.get(m.kind, 0) + m.replicas_max * devices
        asked = max(per_kind.values(), default=0)
        if asked > team.maxAccelerators:
            self.err(("team", "maxAccelerators"), f"the team's models at replicas.max request {asked} "
                     f"accelerators, over the quota {team.maxAccelerators}",
                     f"raise team.maxAccelerators to {asked} or lower replicas.max")

    def _derived_name_lengths(self, cluster_name: str) -> None:
        if len(cluster_name) > CLUSTER_NAME_MAX:
            given = self.cfg.cluster.name is not None
            self.err(("cluster", "name"), f"cluster name {cluster_name!r} ({'given' if given else 'llm-<stack>'}) is "
                     f"{len(cluster_name)} characters; IAM role KarpenterControllerRole-{cluster_name} must fit 64",
                     f"set cluster.name to at most {CLUSTER_NAME_MAX} characters")

    def _kubernetes_version(self, pinned: str) -> None:
        v = self.cfg.cluster.kubernetesVersion
        if v is not None and v not in SUPPORTED_KUBERNETES(pinned):
            self.err(("cluster", "kubernetesVersion"), f"{v!r} is not a supported Kubernetes version",
                     f"use {' or '.join(SUPPORTED_KUBERNETES(pinned))} (charts, AMI alias and Karpenter are pinned "
                     "for it), or leave it unset")

    def _duplicates(self, models: dict[str, ResolvedModel]) -> None:
        seen: dict[str, str] = {}
        for name, m in self.cfg.models.items():
            served = m.servedName or name
            if served in seen:
                self.err(("models", name, "servedName"), f"served name {served!r} is also used by model {seen[served]!r}",
                         "give each model a distinct servedName")
            seen.setdefault(served, name)


def _dns_safe(s: str) -> str:
    s = re.sub(r"[^a-z0-9-]", "-", s.lower()).strip("-")
    return s[:63] or "llm"
