"""Typed loaders for the catalogs (data files beside this module). Loaded once per process."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from components.types import AcceleratorKind, ChartPin, ImagePin, InstanceType, ModelArch
from stacks.yamlio import load_yaml

HERE = Path(__file__).parent


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _InstanceRow(_Row):
    family: str
    kind: str = Field(pattern="^(nvidia|neuron)$")
    device: str
    devices: int = Field(gt=0)
    deviceMemoryMiB: int = Field(gt=0)
    neuronCores: int = Field(ge=0)
    vcpu: int = Field(gt=0)
    memoryMiB: int = Field(gt=0)
    localNvmeGB: int = Field(ge=0)
    usdPerHour: float = Field(gt=0)


class _AcceleratorRow(_Row):
    """One accelerator model: the memory CUDA reports for it (what vLLM multiplies by
    gpu_memory_utilization), with the logs it was read from."""

    cudaMemoryGiB: float = Field(gt=0)
    sources: list[str] = Field(min_length=1)


class ArchitectureFields(_Row):
    """A checkpoint's architecture facts (from its config.json); the planner sizes memory from them.
    Shared by the catalog and by full model specs in the stack config."""

    params: float = Field(gt=0, description="total parameters, billions")
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    intermediate: int = Field(gt=0)
    heads: int = Field(gt=0)
    kvHeads: int = Field(gt=0)
    headDim: int = Field(gt=0)
    vocab: int = Field(gt=0)
    maxPositions: int = Field(gt=0)
    dtype: Literal["bfloat16", "float16"] = "bfloat16"
    gated: bool = False
    # config.json tie_word_embeddings: lm_head shares the embedding matrix (counted once).
    tieWordEmbeddings: bool = False
    # Mixture of experts (num_experts / num_local_experts, num_experts_per_tok, moe_intermediate_size):
    # all experts are in memory (params), only expertsPerToken of them run per token (active params).
    experts: int | None = Field(None, gt=0)
    expertsPerToken: int | None = Field(None, gt=0)
    moeIntermediate: int | None = Field(None, gt=0)


class _ModelRow(ArchitectureFields):
    hfId: str
    quantization: str | None = None
    weightsGiB: float | None = None
    toolParser: str | None = None
    reasoningParser: str | None = None
    revision: str | None = None


class _ChartRow(_Row):
    repo: str
    chart: str
    version: str


class _ImageRow(_Row):
    repository: str
    tag: str
    # Optional content digest, only when a source publishes it for this tag (recorded in `sources`).
    digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    vllmVersion: str | None = None
    litellmVersion: str | None = None
    huggingfaceHubVersion: str | None = None  # installed at run time (the model-cache downloader)
    boto3Version: str | None = None  # installed at run time (the weights-sync Job)
    # What the image's process needs at run time (checked by the deploy-rules tier against every pod
    # that runs it): the user it runs as, the paths it writes, and where those facts come from.
    user: int | None = None
    writablePaths: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)


class _RdsRow(_Row):
    postgresEngineVersion: str
    caBundleFile: str
    caBundleSha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _ElastiCacheRow(_Row):
    redisEngineVersion: str


class _VersionsFile(_Row):
    kubernetes: str
    amiAlias: str = Field(pattern=r"^al2023@v\d{8}$")
    charts: dict[str, _ChartRow]
    images: dict[str, _ImageRow]
    rds: _RdsRow
    elasticache: _ElastiCacheRow


@dataclass(frozen=True)
class Versions:
    kubernetes: str
    ami_alias: str
    charts: dict[str, ChartPin]
    images: dict[str, ImagePin]
    vllm_version: str
    vllm_neuron_version: str
    litellm_version: str
    postgres_engine_version: str
    huggingface_hub_version: str = ""
    redis_engine_version: str = ""
    boto3_version: str = ""

    def chart(self, name: str) -> ChartPin:
        return self.charts[name]

    def image(self, name: str) -> str:
        return self.images[name].ref


def _read(name: str) -> dict:
    return load_yaml((HERE / name).read_text())


def model_arch(hf_id: str, facts: ArchitectureFields, **extra: Any) -> ModelArch:
    """The planner's record of a checkpoint from its config.json facts (catalog row, stack config,
    `stacks.size`, the accuracy benchmark); `extra` sets the fields that are not architecture
    (quantization, weights_gib, parsers, revision)."""
    return ModelArch(
        hf_id=hf_id,
        params=facts.params,
        layers=facts.layers,
        hidden=facts.hidden,
        intermediate=facts.intermediate,
        heads=facts.heads,
        kv_heads=facts.kvHeads,
        head_dim=facts.headDim,
        vocab=facts.vocab,
        max_positions=facts.maxPositions,
        dtype=facts.dtype,
        gated=facts.gated,
        tie_word_embeddings=facts.tieWordEmbeddings,
        experts=facts.experts,
        experts_per_token=facts.expertsPerToken,
        moe_intermediate=facts.moeIntermediate,
        **extra,
    )


@functools.cache
def instances() -> dict[str, InstanceType]:
    data = _read("instances.yaml")
    rows = data["instances"]
    accel = {k: _AcceleratorRow.model_validate(v) for k, v in data.get("accelerators", {}).items()}
    out = {}
    for name, raw in rows.items():
        r = _InstanceRow.model_validate(raw)
        cuda = accel.get(r.device)
        out[name] = InstanceType(
            name=name,
            family=r.family,
            kind=cast(AcceleratorKind, r.kind),  # the row's pattern admits only nvidia and neuron
            device=r.device,
            devices=r.devices,
            device_memory_mib=r.deviceMemoryMiB,
            neuron_cores=r.neuronCores,
            vcpu=r.vcpu,
            memory_mib=r.memoryMiB,
            local_nvme_gb=r.localNvmeGB,
            usd_per_hour=r.usdPerHour,
            cuda_memory_gib=cuda.cudaMemoryGiB if cuda else None,
        )
    return out


@functools.cache
def models() -> dict[str, ModelArch]:
    rows = _read("models.yaml")["models"]
    out = {}
    for name, raw in rows.items():
        r = _ModelRow.model_validate(raw)
        out[name] = model_arch(
            r.hfId,
            r,
            quantization=r.quantization,
            weights_gib=r.weightsGiB,
            tool_parser=r.toolParser,
            reasoning_parser=r.reasoningParser,
            revision=r.revision,
        )
    return out


@functools.cache
def versions() -> Versions:
    v = _VersionsFile.model_validate(_read("versions.yaml"))
    return Versions(
        kubernetes=v.kubernetes,
        ami_alias=v.amiAlias,
        charts={k: ChartPin(name=k, repo=c.repo, chart=c.chart, version=c.version) for k, c in v.charts.items()},
        images={
            k: ImagePin(
                repository=i.repository, tag=i.tag, user=i.user, writable_paths=tuple(i.writablePaths), digest=i.digest
            )
            for k, i in v.images.items()
        },
        vllm_version=v.images["vllm"].vllmVersion or "",
        vllm_neuron_version=v.images["vllm-neuron"].vllmVersion or "",
        litellm_version=v.images["litellm"].litellmVersion or "",
        postgres_engine_version=v.rds.postgresEngineVersion,
        huggingface_hub_version=v.images["hf-downloader"].huggingfaceHubVersion or "",
        redis_engine_version=v.elasticache.redisEngineVersion,
        boto3_version=v.images["hf-downloader"].boto3Version or "",
    )


def rds_ca_bundle() -> str:
    """The RDS CA bundle (PEM) the gateway trusts for its database, checked against its pin."""
    row = _VersionsFile.model_validate(_read("versions.yaml")).rds
    data = (HERE / row.caBundleFile).read_bytes()
    if hashlib.sha256(data).hexdigest() != row.caBundleSha256:
        raise ValueError(f"stacks/catalog/{row.caBundleFile}: sha256 differs from versions.yaml rds.caBundleSha256")
    return data.decode("ascii")


def families(kind: str | None = None) -> list[str]:
    return sorted({i.family for i in instances().values() if kind is None or i.kind == kind})


class _FixedIn(_Row):
    advisory: str
    severity: str = ""
    affects: str = Field(min_length=3)
    versions: list[str] = Field(min_length=1)  # the first fixed release of each affected line


class _FloorRow(_Row):
    minimum: str
    never: list[str] = Field(default_factory=list)
    advisories: list[str] = Field(default_factory=list)
    fixedIn: list[_FixedIn] = Field(default_factory=list)

    def problem(self, version: str) -> str | None:
        """Why `version` must not be pinned (a never-release, or below the fix on its line), or None."""
        if version in self.never:
            return f"{version} is on the never list (a compromised or withdrawn release)"
        line = version_tuple(version)[:2]
        for fix in self.fixedIn:
            for fixed in fix.versions:
                if version_tuple(fixed)[:2] == line and version_tuple(version) < version_tuple(fixed):
                    on = ".".join(map(str, line))
                    return f"{version} is below {fixed}, the fix for {fix.advisory} on the {on} line"
        return None


class _AcceptedRisk(_Row):
    package: str
    image: str
    version: str
    reason: str
    reviewBy: date


class _AdvisoriesFile(_Row):
    floors: dict[str, _FloorRow]
    sources: list[str] = Field(min_length=1)
    acceptedRisks: list[_AcceptedRisk] = Field(default_factory=list)


@functools.cache
def advisories() -> _AdvisoriesFile:
    """Security advisory floors per package and the risks accepted where no fixed release exists."""
    return _AdvisoriesFile.model_validate(_read("advisories.yaml"))


class _Limit(_Row):
    value: int = Field(gt=0)
    source: str = Field(min_length=3)


class _LimitsFile(_Row):
    limits: dict[str, _Limit]


@functools.cache
def limits() -> dict[str, int]:
    """Service maxima by name (limits.yaml), each recorded with its source."""
    return {k: v.value for k, v in _LimitsFile.model_validate(_read("limits.yaml")).limits.items()}


class _ReservedName(_Row):
    name: str = Field(min_length=1)
    match: Literal["exact", "contains"] = "exact"
    source: str = Field(min_length=3)


class _ReservedFile(_Row):
    release: str
    modelNames: list[_ReservedName]
    teamIds: list[_ReservedName]


@dataclass(frozen=True)
class Reserved:
    """Names LiteLLM treats specially (litellm-reserved.yaml): (name, how it matches, where it is defined)."""

    release: str
    model_names: tuple[tuple[str, str, str], ...]
    team_ids: tuple[tuple[str, str, str], ...]

    @staticmethod
    def _hit(rows: tuple[tuple[str, str, str], ...], value: str) -> str | None:
        for name, match, source in rows:
            if value == name or (match == "contains" and name in value):
                return source
        return None

    def model_name(self, value: str) -> str | None:
        """Where LiteLLM gives `value` a meaning as a model name, or None."""
        return self._hit(self.model_names, value)

    def team_id(self, value: str) -> str | None:
        return self._hit(self.team_ids, value)


@functools.cache
def litellm_reserved() -> Reserved:
    f = _ReservedFile.model_validate(_read("litellm-reserved.yaml"))
    rows = lambda xs: tuple((x.name, x.match, x.source) for x in xs)  # noqa: E731
    return Reserved(f.release, rows(f.modelNames), rows(f.teamIds))


def version_tuple(v: str) -> tuple[int, ...]:
    """'0.16.0' -> (0, 16, 0); a local suffix ('+cpu') or pre-release tail is ignored."""
    head = v.split("+", 1)[0]
    return tuple(int("".join(ch for ch in part if ch.isdigit()) or 0) for part in head.split("."))


class _Duration(_Row):
    seconds: float = Field(ge=0)
    source: str = Field(min_length=3)


class _DurationsFile(_Row):
    default: _Duration
    component: _Duration
    types: dict[str, _Duration]


@dataclass(frozen=True)
class Duration:
    seconds: float
    source: str


@dataclass(frozen=True)
class Durations:
    """How long `pulumi up` waits for a create, by type token (or `<type>|<variant>`); durations.yaml."""

    default: Duration
    component: Duration
    types: dict[str, Duration]

    def lookup(self, key: str) -> Duration | None:
        return self.types.get(key)


@functools.cache
def durations() -> Durations:
    d = _DurationsFile.model_validate(_read("durations.yaml"))
    conv = lambda r: Duration(seconds=r.seconds, source=r.source)  # noqa: E731
    return Durations(
        default=conv(d.default), component=conv(d.component), types={k: conv(v) for k, v in d.types.items()}
    )


class _Priced(_Row):
    source: str = Field(min_length=3)


class _EksPrice(_Priced):
    standardUsdPerHour: float = Field(gt=0)
    extendedUsdPerHour: float = Field(gt=0)


class _HourlyTable(_Priced):
    usdPerHour: dict[str, float]


class _Hourly(_Priced):
    usdPerHour: float = Field(gt=0)


class _Efs(_Priced):
    usdPerGbMonth: float = Field(gt=0)
    assumedStoredGB: float = Field(ge=0)


class _AzPair(_Row):
    singleAz: float = Field(gt=0)
    multiAz: float = Field(gt=0)


class _Rds(_Priced):
    usdPerHour: dict[str, _AzPair]
    storageUsdPerGbMonth: _AzPair


class _Ebs(_Priced):
    gp3UsdPerGbMonth: float = Field(gt=0)
    gp3IopsUsdPerMonth: float = Field(gt=0)
    gp3ThroughputUsdPerMbpsMonth: float = Field(gt=0)


class _Logs(_Priced):
    ingestUsdPerGb: float = Field(gt=0)
    storageUsdPerGbMonth: float = Field(gt=0)
    unsetRetentionDays: int = Field(gt=0)
    assumedGbPerDay: dict[str, float]


class _PricesFile(_Row):
    region: str
    hoursPerMonth: float = Field(gt=0)
    eksControlPlane: _EksPrice
    ec2: _HourlyTable
    natGateway: _Hourly
    publicIpv4: _Hourly
    networkLoadBalancer: _Hourly
    efs: _Efs
    rds: _Rds
    ebs: _Ebs
    elasticache: _HourlyTable
    cloudwatchLogs: _Logs


@dataclass(frozen=True)
class Prices:
    """On-demand list prices for what the platform runs besides accelerators (prices.yaml)."""

    region: str
    hours_per_month: float
    eks_standard: float
    eks_extended: float
    ec2: dict[str, float]
    nat_gateway: float
    public_ipv4: float
    nlb: float
    efs_gb_month: float
    efs_assumed_gb: float
    rds: dict[str, tuple[float, float]]  # class -> (single-AZ, Multi-AZ) $/h
    rds_storage_gb_month: tuple[float, float]
    gp3_gb_month: float = 0.0
    gp3_iops_month: float = 0.0  # per IOPS above GP3_BASE_IOPS
    gp3_mbps_month: float = 0.0  # per MB/s above GP3_BASE_MBPS
    elasticache: dict[str, float] = field(default_factory=dict)
    logs_ingest_gb: float = 0.0
    logs_storage_gb_month: float = 0.0
    logs_unset_retention_days: int = 365
    logs_gb_per_day: dict[str, float] = field(default_factory=dict)  # assumption, per log type

    def instance_usd(self, name: str) -> float | None:
        """Any EC2 instance: platform rows here, accelerator rows from instances.yaml; None for a
        type the catalog does not price (valid types are many more than the priced ones)."""
        if name in self.ec2:
            return self.ec2[name]
        row = instances().get(name)
        return row.usd_per_hour if row is not None else None

    def rds_usd(self, instance_class: str, multi_az: bool) -> float | None:
        pair = self.rds.get(instance_class)
        return None if pair is None else pair[multi_az]


@functools.cache
def prices() -> Prices:
    p = _PricesFile.model_validate(_read("prices.yaml"))
    return Prices(
        region=p.region,
        hours_per_month=p.hoursPerMonth,
        eks_standard=p.eksControlPlane.standardUsdPerHour,
        eks_extended=p.eksControlPlane.extendedUsdPerHour,
        ec2=dict(p.ec2.usdPerHour),
        nat_gateway=p.natGateway.usdPerHour,
        public_ipv4=p.publicIpv4.usdPerHour,
        nlb=p.networkLoadBalancer.usdPerHour,
        efs_gb_month=p.efs.usdPerGbMonth,
        efs_assumed_gb=p.efs.assumedStoredGB,
        rds={k: (v.singleAz, v.multiAz) for k, v in p.rds.usdPerHour.items()},
        rds_storage_gb_month=(p.rds.storageUsdPerGbMonth.singleAz, p.rds.storageUsdPerGbMonth.multiAz),
        gp3_gb_month=p.ebs.gp3UsdPerGbMonth,
        gp3_iops_month=p.ebs.gp3IopsUsdPerMonth,
        gp3_mbps_month=p.ebs.gp3ThroughputUsdPerMbpsMonth,
        elasticache=dict(p.elasticache.usdPerHour),
        logs_ingest_gb=p.cloudwatchLogs.ingestUsdPerGb,
        logs_storage_gb_month=p.cloudwatchLogs.storageUsdPerGbMonth,
        logs_unset_retention_days=p.cloudwatchLogs.unsetRetentionDays,
        logs_gb_per_day=dict(p.cloudwatchLogs.assumedGbPerDay),
    )


class _Measured(_Row):
    date: date
    source: str = Field(min_length=3)


class _CpuPerRequest(_Measured):
    value: float = Field(gt=0)


class _VcpuBySize(_Measured):
    value: dict[str, int]


class _GatewayCostFile(_Row):
    litellmVersion: str
    cpuSecondsPerRequest: _CpuPerRequest
    vcpuBySize: _VcpuBySize


@dataclass(frozen=True)
class GatewayCost:
    """The gateway's measured CPU seconds per request (gateway-cost.yaml) and vCPUs per EC2 size."""

    litellm_version: str
    cpu_seconds_per_request: float
    source: str
    measured: date
    vcpu_by_size: dict[str, int]


@functools.cache
def gateway_cost() -> GatewayCost:
    f = _GatewayCostFile.model_validate(_read("gateway-cost.yaml"))
    c = f.cpuSecondsPerRequest
    return GatewayCost(f.litellmVersion, c.value, c.source, c.date, dict(f.vcpuBySize.value))
