"""Typed loaders for the catalogs (data files beside this module). Loaded once per process."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from components.types import ChartPin, ImagePin, InstanceType, ModelArch
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
    vllmVersion: str | None = None
    litellmVersion: str | None = None
    huggingfaceHubVersion: str | None = None  # installed at run time (the model-cache downloader)
    # What the image's process needs at run time (checked by the deploy-rules tier against every pod
    # that runs it): the user it runs as, the paths it writes, and where those facts come from.
    user: int | None = None
    writablePaths: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)


class _RdsRow(_Row):
    postgresEngineVersion: str


class _VersionsFile(_Row):
    kubernetes: str
    amiAlias: str = Field(pattern=r"^al2023@v\d{8}$")
    charts: dict[str, _ChartRow]
    images: dict[str, _ImageRow]
    rds: _RdsRow


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

    def chart(self, name: str) -> ChartPin:
        return self.charts[name]

    def image(self, name: str) -> str:
        return self.images[name].ref


def _read(name: str) -> dict:
    return load_yaml((HERE / name).read_text())


@functools.cache
def instances() -> dict[str, InstanceType]:
    rows = _read("instances.yaml")["instances"]
    out = {}
    for name, raw in rows.items():
        r = _InstanceRow.model_validate(raw)
        out[name] = InstanceType(
            name=name, family=r.family, kind=r.kind, device=r.device, devices=r.devices,
            device_memory_mib=r.deviceMemoryMiB, neuron_cores=r.neuronCores, vcpu=r.vcpu,
            memory_mib=r.memoryMiB, local_nvme_gb=r.localNvmeGB, usd_per_hour=r.usdPerHour,
        )
    return out


@functools.cache
def models() -> dict[str, ModelArch]:
    rows = _read("models.yaml")["models"]
    out = {}
    for name, raw in rows.items():
        r = _ModelRow.model_validate(raw)
        out[name] = ModelArch(
            hf_id=r.hfId, params=r.params, layers=r.layers, hidden=r.hidden,
            intermediate=r.intermediate, heads=r.heads, kv_heads=r.kvHeads, head_dim=r.headDim,
            vocab=r.vocab, max_positions=r.maxPositions, dtype=r.dtype, quantization=r.quantization,
            weights_gib=r.weightsGiB, gated=r.gated, tool_parser=r.toolParser,
            reasoning_parser=r.reasoningParser, revision=r.revision,
        )
    return out


@functools.cache
def versions() -> Versions:
    v = _VersionsFile.model_validate(_read("versions.yaml"))
    return Versions(
        kubernetes=v.kubernetes,
        ami_alias=v.amiAlias,
        charts={k: ChartPin(name=k, repo=c.repo, chart=c.chart, version=c.version) for k, c in v.charts.items()},
        images={k: ImagePin(repository=i.repository, tag=i.tag, user=i.user, writable_paths=tuple(i.writablePaths))
                for k, i in v.images.items()},
        vllm_version=v.images["vllm"].vllmVersion or "",
        vllm_neuron_version=v.images["vllm-neuron"].vllmVersion or "",
        litellm_version=v.images["litellm"].litellmVersion or "",
        postgres_engine_version=v.rds.postgresEngineVersion,
        huggingface_hub_version=v.images["hf-downloader"].huggingfaceHubVersion or "",
    )


def families(kind: str | None = None) -> list[str]:
    return sorted({i.family for i in instances().values() if kind is None or i.kind == kind})
