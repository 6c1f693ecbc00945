"""The stack config schema: one pydantic model tree (`extra="forbid"`, frozen), its field validators,
and the constants the checks derive from (name limits, default pools, accepted values)."""

from __future__ import annotations

import importlib.resources
import ipaddress
import re
import urllib.parse
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from stacks import catalog
from stacks.config import s3url, vllm_flags

DNS1123 = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
# The extraArgs policy lives in stacks/config/vllm_flags.py (kept here under the old names for callers).
FORBIDDEN_VLLM_FLAGS = vllm_flags.FORBIDDEN
MANAGED_VLLM_FLAGS = set(vllm_flags.MANAGED)
# Values that reach file paths, markers and command lines of the cache Job and the servers.
# Hub repo ids (huggingface_hub validate_repo_id): each part starts and ends with a letter or digit,
# no '--' or '..', at most 96 characters.
_HUB_PART = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
HF_ID = re.compile(rf"\A(?!.*(--|\.\.)){_HUB_PART}/{_HUB_PART}\Z")
REVISION_SHA = re.compile(r"\A[0-9a-f]{40}\Z")
# A branch or tag (git check-ref-format): no leading '-' (it would read as a flag on a command line)
# or '.', no trailing '.' or '.lock'.
REVISION_REF = re.compile(r"\A(?!.*(\.lock|\.)\Z)[A-Za-z0-9_][A-Za-z0-9._-]{0,95}\Z")
SERVED_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._/-]{0,127}\Z")
AWS_REGION = re.compile(r"\A[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}\Z")
# Kubernetes label keys ([prefix/]name) and values.
LABEL_NAME = re.compile(r"\A([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
LABEL_PREFIX = re.compile(r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
# Label domains the program (llm-serving/), Karpenter or Kubernetes own: Karpenter's NodePool CRD
# refuses most of them, and the program's own pool label must stay the program's.
RESERVED_LABEL_DOMAINS = ("llm-serving", "kubernetes.io", "k8s.io", "karpenter.sh", "karpenter.k8s.aws")
# Kubernetes object names derived from a model name: the cache Job `cache-<model>` (63 max).
MODEL_NAME_MAX = 63 - len("cache-")
# IAM role names (64 max) derived from the cluster name; the longest is KarpenterControllerRole-<cluster>.
CLUSTER_NAME_MAX = 64 - len("KarpenterControllerRole-")


def team_namespaces(team: str) -> tuple[str, str]:
    """(models, gateway) namespaces of a team stack; access entries for the team are scoped to them."""
    return f"{team}-models", f"{team}-gateway"


# Team namespaces (team_namespaces) must fit 63 characters.
TEAM_NAME_MAX = 63 - max(len(ns) for ns in team_namespaces(""))
# An ACM certificate (the gateway's TLS listener): arn:aws:acm:<region>:<account>:certificate/<uuid>.
ACM_CERTIFICATE_ARN = re.compile(
    r"\Aarn:aws(-[a-z]+)*:acm:([a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}):(\d{12}):certificate/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"
)
# An IAM role (EKS access entries take roles and users; teams get roles).
IAM_ROLE_ARN = re.compile(
    r"\Aarn:aws(-[a-z]+)*:iam::([0-9]{12}):role/([A-Za-z0-9_+=,.@-]+/)*([A-Za-z0-9_+=,.@-]{1,64})\Z"
)
# NLB TLS listener policies (ELBv2 security policies) that allow TLS 1.2 and 1.3 only. Without one the
# controller leaves the listener on ELBSecurityPolicy-2016-08, which still accepts TLS 1.0.
NlbTlsPolicy = Literal[
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
]
NLB_TLS_POLICIES: tuple[str, ...] = get_args(NlbTlsPolicy)


def SUPPORTED_KUBERNETES(pinned: str) -> tuple[str, ...]:
    """The version the catalog pins (EKS standard support, the AMI alias, Karpenter and the GPU operator
    are pinned and tested for it; ../shared/reference/versions.md)."""
    return (pinned,)


# Edit distance at which a config namespace is taken for a misspelling of ours.
NAMESPACE_TYPO_DISTANCE = 2
DEFAULT_MAX_MODEL_LEN = 8192
DEFAULT_MAX_NUM_SEQS = 16


LIMITS = catalog.limits()
INT32_MAX = LIMITS["kubernetesInt32"]
GP3_MAX_GIB = LIMITS["gp3VolumeGiB"]
RDS_STORAGE_MAX_GIB = LIMITS["rdsPostgresStorageGiB"]
SECURITY_GROUP_RULES = LIMITS["securityGroupRules"]
# The front door's NLB (EKS's legacy service controller, instance targets) adds to the cluster security
# group, per source range, a client rule and an ICMP path-MTU rule, and per NLB subnet one health-check
# rule: 2N + subnets (one per AZ). EKS's own self-referencing rule is already there. The cap is per
# stack; several stacks' NLBs share the one group (docs/known-limits.md).
MAX_AZS = 6  # zones a stack spans (VpcConfig)
MAX_SOURCE_RANGES = (SECURITY_GROUP_RULES - 1 - MAX_AZS) // 2


def _leaf_types(annotation: Any) -> set[Any]:
    args = get_args(annotation)
    return set().union(*(_leaf_types(a) for a in args)) if args else {annotation}


def _numbers_in(v: Any) -> list[Any]:
    if isinstance(v, dict):
        return [x for item in v.values() for x in _numbers_in(item)]
    if isinstance(v, list):
        return [x for item in v for x in _numbers_in(item)]
    return [v]


class _M(BaseModel):
    # No NaN or infinity anywhere: a budget of .inf is no budget, and NaN compares false to every bound.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        """Numbers stay numbers: YAML `true` is not 1 (pydantic would take it as 1), and no count
        passes the int32 the Kubernetes fields it lands in hold. Sections check their own fields."""
        if info.field_name is None:
            return v
        leaves = _leaf_types(cls.model_fields[info.field_name].annotation)
        if bool in leaves or any(isinstance(t, type) and issubclass(t, BaseModel) for t in leaves):
            return v
        if not leaves & {int, float}:
            return v
        for x in _numbers_in(v):
            if isinstance(x, bool):
                raise ValueError(
                    f"{x} is a boolean, not a number — write a number (YAML reads true/yes/on as booleans)"
                )
            if isinstance(x, int) and abs(x) > INT32_MAX:
                raise ValueError(f"{x} is past the int32 range Kubernetes stores counts in — use at most {INT32_MAX}")
        return v


def dns_problem(v: str, what: str = "name") -> tuple[str, str] | None:
    """(what is wrong, how to fix it) when `v` is not a DNS-1123 label, else None."""
    if not DNS1123.fullmatch(v) or len(v) > 63:
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
    azCount: int = Field(3, ge=2, le=MAX_AZS)
    # Explicit zone names (e.g. [us-east-1a, us-east-1c]); unset = the first azCount EKS-supported zones.
    availabilityZones: list[str] | None = Field(None, min_length=2, max_length=MAX_AZS)
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


# EC2 instance type and RDS instance class names: <family>.<size>, db.<family>.<size>. The family
# has a generation digit; letters after it name processor and options (g: Graviton, arm64).
_SIZES = r"(nano|micro|small|medium|large|xlarge|[1-9][0-9]?xlarge|metal(-[1-9][0-9]?xl)?)"
EC2_INSTANCE_TYPE = re.compile(rf"\A(?P<family>[a-z]+(-[0-9]+tb)?[0-9]+(?P<attrs>[a-z-]*))\.{_SIZES}\Z")
RDS_INSTANCE_CLASS = re.compile(rf"\Adb\.[a-z]+[0-9]+[a-z-]*\.{_SIZES}\Z")


class SystemNodesConfig(_M):
    instanceTypes: list[str] = Field(default_factory=lambda: ["m7i.xlarge", "m6i.xlarge"], min_length=1)
    minSize: int = Field(2, ge=2)
    desiredSize: int = Field(2, ge=2)
    maxSize: int = Field(4, ge=2)
    diskGiB: int = Field(50, ge=20, le=GP3_MAX_GIB)  # a gp3 root volume

    @field_validator("instanceTypes")
    @classmethod
    def _types(cls, v):
        for t in v:
            m = EC2_INSTANCE_TYPE.fullmatch(t)
            if not m:
                raise ValueError(f"{t!r} is not an EC2 instance type — write <family>.<size>, e.g. m7i.xlarge")
            if "g" in m.group("attrs"):
                raise ValueError(
                    f"{t} is a Graviton (arm64) type; the system node group runs the x86_64 AL2023 AMI "
                    "— use an x86 type such as m7i.xlarge or m7a.xlarge"
                )
        if len(set(v)) != len(v):
            raise ValueError("an instance type is listed twice — list each once")
        return v

    @model_validator(mode="after")
    def _sizes(self):
        if not self.minSize <= self.desiredSize <= self.maxSize:
            raise ValueError(
                f"minSize {self.minSize}, desiredSize {self.desiredSize}, maxSize {self.maxSize}: EKS needs "
                "minSize ≤ desiredSize ≤ maxSize — raise maxSize or lower minSize"
            )
        return self


# Domain labels start and end with a letter or digit; the top-level domain is letters.
EMAIL = re.compile(
    r"\A[A-Za-z0-9_%+-]([A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\Z"
)


class BudgetConfig(_M):
    """An AWS Budget on the account's monthly cost: e-mail at 80 % of actual and 100 % of forecast."""

    monthlyUsd: float = Field(ge=0.01)

    @field_validator("monthlyUsd")
    @classmethod
    def _cents(cls, v):
        # AWS Budgets keeps dollars and cents; 0.004 would become a budget of 0.00.
        if round(v, 2) != v:
            raise ValueError(f"{v} has more than two decimals — write the amount in dollars and cents, e.g. 250.00")
        return v

    emails: list[str] = Field(min_length=1, max_length=10)  # AWS Budgets: at most 10 e-mail subscribers

    @field_validator("emails")
    @classmethod
    def _emails(cls, v):
        bad = [e for e in v if not EMAIL.fullmatch(e) or len(e) > 254]
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


# IPv4 space that is not reachable from the internet (RFC 6890 special-purpose blocks): it does not
# count towards how much of the internet an allow-list opens.
NON_PUBLIC_IPV4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/3",
    )
)
# The most public address space an allow-list may open together: a /8 (16.7 million addresses) is
# already more than any organisation's own networks; more is the internet in pieces.
MAX_PUBLIC_ADDRESSES = 2**24


def public_addresses(cidrs: list[str]) -> int:
    """How many internet-routable IPv4 addresses the networks admit together (overlaps counted once)."""
    nets = list(ipaddress.collapse_addresses(ipaddress.IPv4Network(c) for c in cidrs))
    total = sum(n.num_addresses for n in nets)
    for n in nets:
        for private in NON_PUBLIC_IPV4:
            if n.overlaps(private):
                total -= min(n.num_addresses, private.num_addresses)
    return total


def too_open(cidrs: list[str]) -> bool:
    """The whole internet (0.0.0.0/0, halves) or more public space together than MAX_PUBLIC_ADDRESSES."""
    return covers_all_ipv4(cidrs) or public_addresses(cidrs) > MAX_PUBLIC_ADDRESSES


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


class TeamAccessConfig(_M):
    """Kubernetes access for one team's IAM roles, scoped to that team's namespaces."""

    principalArns: list[str] = Field(min_length=1)
    access: Literal["edit", "view"] = "edit"

    @field_validator("principalArns")
    @classmethod
    def _roles(cls, v):
        return _role_arns(v)


def _role_arns(v: list[str]) -> list[str]:
    """Full IAM role ARNs, each once: no wildcards (EKS access entries name one principal each)."""
    bad = [a for a in v if not IAM_ROLE_ARN.fullmatch(a)]
    if bad:
        raise ValueError(
            f"{', '.join(map(repr, bad))} {'is not an IAM role ARN' if len(bad) == 1 else 'are not IAM role ARNs'} "
            "— write the full ARN arn:aws:iam::<12-digit account>:role/<name> (no wildcards)"
        )
    if len(set(v)) != len(v):
        raise ValueError("a role is listed twice — list each role once")
    return v


class ClusterConfig(_M):
    name: str | None = None
    kubernetesVersion: str | None = None
    vpc: VpcConfig = VpcConfig()
    # The machine that runs `pulumi up` must reach the API server (review D2): public endpoint on by
    # default, IAM-authenticated; restrict it with publicAccessCidrs.
    endpointPublicAccess: bool = True
    publicAccessCidrs: list[str] = Field(default_factory=list, max_length=SECURITY_GROUP_RULES)
    # Private-only endpoint: allowed only when `pulumi up` runs inside the (existing) VPC.
    deployFromVpc: bool = False
    # Pulumi `protect` on the EFS model cache and the gateway database (+ RDS deletion protection).
    protectData: bool = True
    adminRoleArns: list[str] = Field(default_factory=list)
    # Team name -> IAM roles that get namespace-scoped access (team_namespaces) to the cluster.
    teamAccess: dict[str, TeamAccessConfig] = Field(default_factory=dict)
    systemNodes: SystemNodesConfig = SystemNodesConfig()
    logRetentionDays: int = Field(365, ge=1)
    # Billing guard (off unless set): an AWS Budget on the account's monthly cost.
    budget: BudgetConfig | None = None

    @field_validator("adminRoleArns")
    @classmethod
    def _admins(cls, v):
        return _role_arns(v)

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

    @field_validator("teamAccess")
    @classmethod
    def _teams(cls, v):
        for team in v:
            _team_name(team)
        return v

    @field_validator("publicAccessCidrs")
    @classmethod
    def _cidrs(cls, v):
        out = [_cidr(c) for c in v]
        if out and too_open(out):
            # Written out, an all-internet list is a mistake or a way around this check (0.0.0.0/1 +
            # 128.0.0.0/1); leaving the key unset keeps EKS's open default, which the plan warns about.
            raise ValueError(
                f"{', '.join(out)} opens the API server to the internet — list your office/VPN/CI CIDRs "
                f"(these cover {public_addresses(out):,} public addresses, at most {MAX_PUBLIC_ADDRESSES:,} "
                "together; e.g. [203.0.113.7/32]), or leave publicAccessCidrs unset for EKS's open default "
                "(the plan warns)"
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
        if len(set(v)) != len(v):
            raise ValueError(f"{v} names a capacity type twice — list each once, e.g. [spot, on-demand]")
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
            if val and (len(val) > 63 or not LABEL_NAME.fullmatch(val)):
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
        or not LABEL_NAME.fullmatch(name)
        or (slash and (not prefix or len(prefix) > 253 or not LABEL_PREFIX.fullmatch(prefix)))
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


# KEDA's cron trigger parses standard 5-field cron (minute, hour, day of month, month, day of week
# 0-6); each field a list of `*`, `n` or `a-b`, optionally `/step`. Numbers only (no JAN/MON names).
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
CRON_NAMES = ("minute", "hour", "day of month", "month", "day of week")
CRON_ITEM = re.compile(r"\A(\*|(\d{1,2})(-(\d{1,2}))?)(/(\d{1,2}))?\Z")


def _cron_item_problem(item: str, lo: int, hi: int) -> str | None:
    m = CRON_ITEM.fullmatch(item)
    if not m:
        return f"{item!r} is not *, n, a-b or one of them with /step"
    start, end, step = m.group(2), m.group(4), m.group(6)
    numbers = [int(x) for x in (start, end) if x is not None]
    if any(not lo <= n <= hi for n in numbers):
        return f"{item!r} is outside {lo}-{hi}"
    if end is not None and int(end) < int(start):
        return f"{item!r} is a range that runs backwards"
    if step is not None and not 1 <= int(step) <= hi:
        return f"{item!r} has step {step}; use 1-{hi}"
    return None


def cron_problem(v: str) -> str | None:
    """Why `v` is not a 5-field cron expression KEDA accepts, or None."""
    from croniter import croniter  # type: ignore[import-untyped]  # no stubs published

    fields = v.split()
    if len(fields) != 5 or not v.isascii() or any(c.isspace() and c != " " for c in v):
        return "is not 5 fields separated by spaces"
    for field, (lo, hi), name in zip(fields, CRON_RANGES, CRON_NAMES, strict=True):
        for item in field.split(","):
            problem = _cron_item_problem(item, lo, hi)
            if problem:
                return f"{name}: {problem}"
    if not croniter.is_valid(v):
        return "is not a valid cron expression"
    return None


def _zones() -> frozenset[str]:
    # The IANA zone list shipped in the tzdata package (pinned in requirements.txt), not the planning
    # host's /usr/share/zoneinfo, whose files include non-zones such as `localtime` and `posixrules`.
    return frozenset(importlib.resources.files("tzdata").joinpath("zones").read_text().split())


IANA_ZONES = _zones()


class ScheduledFloor(_M):
    """A replica floor during a recurring window (office hours): a KEDA cron trigger."""

    timezone: str
    start: str  # cron, 5 fields: when the floor begins
    end: str  # cron, 5 fields: when it ends
    replicas: int = Field(ge=1)

    @field_validator("start", "end")
    @classmethod
    def _cron(cls, v):
        problem = cron_problem(v)
        if problem:
            raise ValueError(
                f"{v!r} is not a 5-field cron expression ({problem}) — write it like '0 8 * * 1-5' (08:00 Mon-Fri)"
            )
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v):
        if v not in IANA_ZONES:
            raise ValueError(f"{v!r} is not an IANA time zone — write it like Europe/Berlin or America/New_York")
        return v


class Replicas(_M):
    min: int = Field(1, ge=0)
    max: int = Field(1, ge=1)
    # Per-replica targets the autoscaler keeps (stacks/capacity/scaling.py: defaults from the planner).
    targetRunning: int | None = Field(None, ge=1)
    targetWaiting: int | None = Field(None, ge=1)
    # min: 0 only with this opt-in: the first request after idle waits a whole cold start.
    scaleToZero: bool = False
    floors: list[ScheduledFloor] = Field(default_factory=list, max_length=8)


class Architecture(_M, catalog.ArchitectureFields):
    """Facts for a model that is not in the catalog (from its config.json); numbers checked as in
    every section (no booleans, no NaN or infinity)."""

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


class SloConfig(_M):
    """p99 latency targets for a model's requests: `python -m stacks.bench` finds the knee (the largest
    concurrency that meets both) and prices a million output tokens there."""

    ttftMs: float = Field(gt=0, le=3_600_000)  # time to first token, ms
    itlMs: float = Field(gt=0, le=3_600_000)  # inter-token latency, ms


class WeightsConfig(_M):
    """Where the servers read the weights from: `s3://<bucket>/<prefix>` streams them with vLLM's Run:ai
    Model Streamer (the stack creates that bucket; a Job copies the pinned revision there once)."""

    source: str

    @field_validator("source")
    @classmethod
    def _source(cls, v):
        problem = s3url.parse(v)[1]
        if problem:
            raise ValueError(problem)
        return v


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
    slo: SloConfig | None = None  # else the stack-wide `slo`
    weights: WeightsConfig | None = None  # unset: the shared EFS cache.
    # A warm Job compiles once into a content-addressed cache on EFS; servers verify it before use.
    compileCache: bool = False
    # How the gateway reaches the replicas: `service` (the model's ClusterIP Service, one replica per
    # pooled connection) or `cache-aware` (a vllm-router in front of the replicas sends a request to the
    # replica most likely to hold its prompt prefix in KV cache; see docs/routing.md).
    routing: Literal["service", "cache-aware"] = "service"

    @field_validator("hfId")
    @classmethod
    def _hf_id(cls, v):
        if v is not None and (not HF_ID.fullmatch(v) or ".." in v or len(v) > 200):
            raise ValueError(
                f"{v!r} is not a Hugging Face model id — write <organization>/<model> with letters, "
                f"digits, '.', '_', '-' (no '..', no spaces)"
            )
        return v

    @field_validator("revision")
    @classmethod
    def _revision(cls, v):
        if v is not None and not REVISION_SHA.fullmatch(v) and (not REVISION_REF.fullmatch(v) or ".." in v):
            raise ValueError(
                f"{v!r} is not a Hub revision — use the 40-hex commit sha (best), or a tag/branch of "
                f"letters, digits, '.', '_', '-' (at most 96, no '..', not starting with '-' or '.')"
            )
        return v

    @field_validator("servedName")
    @classmethod
    def _served(cls, v):
        if v is not None and (not SERVED_NAME.fullmatch(v) or ".." in v or "//" in v or v.endswith("/")):
            raise ValueError(
                f"{v!r} is not a usable model name — use letters, digits, '.', '_', '-', '/' "
                f"(at most 128, no '..' or '//')"
            )
        return v


class DatabaseConfig(_M):
    enabled: bool = False
    instanceClass: str = "db.t4g.medium"

    @field_validator("instanceClass")
    @classmethod
    def _class(cls, v):
        if not RDS_INSTANCE_CLASS.fullmatch(v):
            raise ValueError(f"{v!r} is not an RDS instance class — write db.<family>.<size>, e.g. db.t4g.medium")
        return v

    allocatedStorageGiB: int = Field(20, ge=20, le=RDS_STORAGE_MAX_GIB)
    multiAz: bool = True


# ---- gateway teams: keys as code (components/team_keys.py, incluster/gateway_auth) ----------------
# LiteLLM's budget_duration: a count and a unit (seconds, minutes, hours, days, months).
BUDGET_DURATION = re.compile(r"\A[1-9][0-9]{0,3}(s|m|h|d|mo)\Z")
WEBUI_KEY = "open-webui"  # the name of Open WebUI's own key (reserved when ui.enabled)


class GatewayTeam(_M):
    """Who may call which models of this stack's gateway, at what rate. Limits apply to each key."""

    allowedModels: list[str] = Field(min_length=1)  # keys of `models:` on this stack
    keys: list[str] = Field(min_length=1)  # key names; Pulumi generates each key (teamKeySecrets says where)
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
        if v is not None and not BUDGET_DURATION.fullmatch(v):
            raise ValueError(f"{v!r} is not a budget period — write it like 30d, 1mo, 24h")
        return v

    @property
    def limited(self) -> bool:
        return any(x is not None for x in (self.rpmLimit, self.tpmLimit, self.maxParallelRequests))


class GatewayTlsConfig(_M):
    """TLS on the gateway's load balancer: an ACM certificate in the stack's region."""

    certificateArn: str
    sslPolicy: NlbTlsPolicy = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"

    @field_validator("certificateArn")
    @classmethod
    def _arn(cls, v):
        if not ACM_CERTIFICATE_ARN.fullmatch(v):
            raise ValueError(
                f"{v!r} is not an ACM certificate ARN — copy it from ACM, like "
                "arn:aws:acm:us-east-1:123456789012:certificate/1a2b3c4d-1a2b-1a2b-1a2b-1a2b3c4d5e6f"
            )
        return v


class GatewayFrontDoorConfig(_M):
    """Per-client limits of the gateway's nginx front door (components/frontdoor.py DoorLimits, whose
    defaults these are; tests/stacks/test_tenancy.py keeps the two equal)."""

    # Bodies above this are refused (413) unread. At most 16: LiteLLM holds a parsed body at ~75x its
    # size, and 16 MiB is then over half of a gateway container's 2 GiB.
    maxBodyMiB: int = Field(4, ge=1, le=16)
    # Per client address: requests a second, the burst answered at once, connections at a time (each
    # proxied connection takes two of a worker's 4096).
    ratePerSecond: int = Field(50, ge=1, le=10000)
    burst: int = Field(100, ge=0, le=100000)
    maxConnections: int = Field(128, ge=1, le=2048)


class GatewayConfig(_M):
    replicas: int = Field(2, ge=2)
    frontDoor: GatewayFrontDoorConfig = GatewayFrontDoorConfig()
    database: DatabaseConfig = DatabaseConfig()
    # Seconds LiteLLM keeps an idle upstream connection; vLLM's keep-alive is rendered above it.
    idleConnectionSeconds: int = Field(60, ge=5)
    internalLoadBalancer: bool = True
    # Teams and their keys (keys as code); none = only the master key is accepted.
    teams: dict[str, GatewayTeam] = Field(default_factory=dict)
    # Requests per second the gateway must serve at peak; the plan sizes its replicas from it and the
    # gateway's measured CPU per request (stacks/capacity/gateway_sizing.py). Unset: not sized.
    peakRequestsPerSecond: float | None = Field(None, gt=0)

    @field_validator("teams")
    @classmethod
    def _team_names(cls, v):
        for name in v:
            _dns(name, "team name")
        return v

    # TLS listener on 443 (unset: plain HTTP on the gateway port, internal load balancers only).
    tls: GatewayTlsConfig | None = None
    # Client networks the load balancer admits (the Service's loadBalancerSourceRanges).
    sourceRanges: list[str] = Field(default_factory=list)

    @field_validator("sourceRanges")
    @classmethod
    def _ranges(cls, v):
        if len(v) > MAX_SOURCE_RANGES:
            raise ValueError(
                f"{len(v)} ranges: EKS's load-balancer controller writes 2 inbound rules per range plus one "
                f"health-check rule per subnet (up to {MAX_AZS}) into the cluster security group, whose "
                f"quota is {SECURITY_GROUP_RULES} inbound rules (shared with every stack's load balancer) — list "
                f"at most {MAX_SOURCE_RANGES}, merged into wider CIDRs, or raise the quota and this cap together"
            )
        out = [_cidr(c) for c in v]
        if out and too_open(out):
            raise ValueError(
                f"{', '.join(out)} admits the whole internet or a large part of it ({public_addresses(out):,} "
                f"public addresses, at most {MAX_PUBLIC_ADDRESSES:,}) — list your clients' networks (office, VPN, "
                "partner CIDRs), e.g. [203.0.113.0/24]"
            )
        return out


class UiConfig(_M):
    enabled: bool = False
    # Open WebUI's own gateway key (not the master key): every model, these limits.
    rpmLimit: int = Field(600, ge=1)
    maxParallelRequests: int = Field(16, ge=1)
    # Anyone who reaches the UI may create an account (pending the admin's approval); off: only the
    # first account (the admin) signs up, the admin adds everyone else.
    allowSignup: bool = False


# Instance metadata endpoints: a URL the program calls or renders must never point at them.
METADATA_HOSTS = ("metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal")
METADATA_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fd00:ec2::254/128", "fe80::/10"))
URL_HOST = re.compile(r"\A([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
URL_PATH = re.compile(r"\A(/(?!\.\.?(/|\Z))[A-Za-z0-9._~-]*)*\Z")  # no . or .. segments


def _host_problem(host: str) -> str | None:
    try:
        ip = ipaddress.ip_address(host)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    except ValueError:
        if not URL_HOST.fullmatch(host) or len(host) > 253:
            return f"has host {host!r}, not a DNS name (its last label starts with a letter) or an IP address"
        if host.lower().rstrip(".") in METADATA_HOSTS:
            return f"points at the instance metadata service ({host})"
        return None
    if any(ip in net for net in METADATA_NETWORKS) or ip.is_unspecified or ip.is_multicast:
        return f"points at {ip}, a link-local, metadata, unspecified or multicast address"
    return None


def url_problem(v: str) -> str | None:
    """Why `v` is not a plain http(s) URL of a service (scheme, host, port 1-65535, path), or None."""
    if not v.isascii() or not v.isprintable() or any(c.isspace() for c in v):
        return "has spaces, control or non-ASCII characters"
    parts = urllib.parse.urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "is not an http:// or https:// URL"
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment or "#" in v:
        return "carries credentials, a query or a fragment"
    try:
        port = parts.port
    except ValueError:
        return "has a port outside 1-65535"
    if port == 0 or (parts.netloc.endswith(":") and port is None):
        return "has a port outside 1-65535"
    if not parts.hostname:
        return "has no host"
    host_problem = _host_problem(parts.hostname)
    if host_problem:
        return host_problem
    if not URL_PATH.fullmatch(parts.path):
        return f"has path {parts.path!r}; use letters, digits and . _ ~ - between slashes"
    return None


class ObservabilityConfig(_M):
    """Metrics, dashboards and alerts. With `prometheusUrl` the stack brings no Prometheus of its
    own: monitors, rules and dashboards go to yours (it must run the Prometheus operator, select
    them, and live in `namespace`)."""

    enabled: bool = False
    # Where Prometheus runs (ours, or yours with prometheusUrl): the scraper NetworkPolicies admit it.
    namespace: str = "monitoring"
    prometheusUrl: str | None = None
    retentionDays: int = Field(15, ge=1, le=3650)
    storageGiB: int = Field(50, ge=10, le=GP3_MAX_GIB)  # a gp3 volume
    # TSDB size cap; default: 90 % of storageGiB (the volume must never fill up before retention).
    retentionSizeGiB: int | None = Field(None, ge=1)
    # Alert when the 95th percentile time to first token stays above this (per model: ttftP95SecondsByModel).
    ttftP95Seconds: float = Field(2.0, gt=0, le=600)
    ttftP95SecondsByModel: dict[str, float] = Field(default_factory=dict)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v):
        return _dns(v, "namespace")

    @field_validator("prometheusUrl")
    @classmethod
    def _url(cls, v):
        problem = None if v is None else url_problem(v)
        if problem:
            raise ValueError(
                f"{v!r} is not an http(s) URL of a Prometheus: it {problem} "
                "— e.g. http://prometheus.monitoring.svc:9090"
            )
        return v

    @field_validator("ttftP95SecondsByModel")
    @classmethod
    def _ttft(cls, v):
        bad = [f"{k}={t}" for k, t in v.items() if not 0 < t <= 600]
        if bad:
            raise ValueError(f"{', '.join(bad)}: a TTFT target is seconds in (0, 600] — e.g. 2.5")
        return v

    @field_validator("retentionSizeGiB")
    @classmethod
    def _retention_size(cls, v, info):
        storage = info.data.get("storageGiB")
        if v is not None and storage is not None and v >= storage:
            raise ValueError(
                f"{v} GiB is not below storageGiB {storage} "
                "— Prometheus stops writing when its volume fills; leave it unset for 90 %"
            )
        return v

    @property
    def retention_size_gib(self) -> int:
        return self.retentionSizeGiB if self.retentionSizeGiB is not None else self.storageGiB * 9 // 10


class AutoscalingConfig(_M):
    enabled: bool = False
    # Default waiting requests per replica (models.<m>.replicas.targetWaiting overrides it).
    queueDepthPerReplica: int = Field(8, ge=1)
    # Default target running requests per replica: this fraction of the planner's max concurrency.
    runningFraction: float = Field(0.75, gt=0, le=1)
    # The gateway's HPA: from gateway.replicas up to this, on average CPU use over its requests.
    gatewayMaxReplicas: int = Field(6, ge=2)
    gatewayCpuPercent: int = Field(70, ge=10, le=100)


class TeamConfig(_M):
    name: str
    maxAccelerators: int = Field(8, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        return _team_name(v)


def _team_name(v: str) -> str:
    _dns(v, "team name")
    if len(v) > TEAM_NAME_MAX:
        raise ValueError(
            f"team name {v!r} is {len(v)} characters; its namespace {team_namespaces(v)[1]} must fit 63 "
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
    slo: SloConfig | None = None  # the default latency targets of every model without its own


TOP_LEVEL_KEYS = sorted(StackConfig.model_fields)

# Pools the program creates when a model needs an accelerator kind and the config names no pool.
DEFAULT_POOLS = {
    "nvidia": ("gpu", NodePoolConfig(accelerator="nvidia", families=["g5", "g6", "g6e", "p4d", "p4de", "p5"])),
    "neuron": ("neuron", NodePoolConfig(accelerator="neuron", families=["inf2", "trn1"])),
}
