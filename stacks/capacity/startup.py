"""A replica's cold start as phases, each from a sourced row of stacks/catalog/startup.yaml.

    node launch    Karpenter NodeClaim -> node Ready with its accelerators        (per instance family)
    image pull     compressed image GiB / registry MiB/s                            (first pull on a node)
    weight load    the planner's weights GiB / the weight source's MiB/s            (EFS today; S3, NVMe)
    compile        torch.compile (NVIDIA) or the Neuron compile, or a cached Neuron artifact's load
    graph capture  CUDA graphs (NVIDIA; Neuron's warm-up stands in)
    readiness      the probes see the healthy server: startup period + readiness period

The startupProbe budget (planner.startup_budget_seconds) is the older, coarser model with a 2x safety
factor over a slower EFS figure; it only has to cover what happens inside the container (weight load,
compile, graph capture, readiness): `probe_covers` checks that it does. Node launch and image pull
happen before the container starts, so no probe waits for them; they count in the scale-up time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from components.types import GIB, InstanceType, ModelArch
from components.vllm import PROBE_PERIOD_S, probe_budget
from stacks.capacity import planner
from stacks.yamlio import load_yaml

CATALOG = Path(__file__).resolve().parents[1] / "catalog" / "startup.yaml"
MIB = 1024**2
# Phases that run inside the container, after it starts (what the startupProbe waits for).
IN_POD = ("weight load", "compile", "graph capture", "readiness")


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Seconds(_Row):
    seconds: float = Field(gt=0)
    source: str = Field(min_length=1)


class _NodeLaunch(_Row):
    default: _Seconds
    families: dict[str, _Seconds]


class _Image(_Row):
    compressedGiB: float = Field(gt=0)
    source: str = Field(min_length=1)


class _ImagePull(_Row):
    mibPerSecond: float = Field(gt=0)
    source: str = Field(min_length=1)
    images: dict[str, _Image]


class _Rate(_Row):
    mibPerSecond: float = Field(gt=0)
    source: str = Field(min_length=1)


class _NvidiaCompile(_Row):
    torchCompileSeconds: float = Field(ge=0)
    graphCaptureSeconds: float = Field(ge=0)
    source: str = Field(min_length=1)


class _NeuronCompile(_Row):
    compileSecondsPerGiB: float = Field(ge=0)
    cachedLoadSeconds: float = Field(ge=0)
    warmupSeconds: float = Field(ge=0)
    source: str = Field(min_length=1)


class _Compile(_Row):
    nvidia: _NvidiaCompile
    neuron: _NeuronCompile


class StartupCatalog(_Row):
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    nodeLaunch: _NodeLaunch
    imagePull: _ImagePull
    weightSources: dict[str, _Rate]
    compile: _Compile


@functools.cache
def table() -> StartupCatalog:
    return StartupCatalog.model_validate(load_yaml(CATALOG.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class WeightSource:
    """Where a replica reads its weights from and how fast one pod reads it. Another loader (an S3
    streamer, a local copy) passes its own figure; the default is the catalog's row of that name."""

    name: str
    mib_per_s: float


def weight_source(name: str = "efs") -> WeightSource:
    return WeightSource(name, table().weightSources[name].mibPerSecond)


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    basis: str  # how the figure was reached, in one short clause


@dataclass(frozen=True)
class StartupPlan:
    phases: tuple[Phase, ...]

    @property
    def total(self) -> float:
        return sum(p.seconds for p in self.phases)

    @property
    def in_pod(self) -> float:
        return sum(p.seconds for p in self.phases if p.name in IN_POD)

    def seconds(self, name: str) -> float:
        return next(p.seconds for p in self.phases if p.name == name)

    def as_dict(self) -> dict:
        return {
            "phases": [{"name": p.name, "seconds": round(p.seconds), "basis": p.basis} for p in self.phases],
            "totalSeconds": round(self.total),
            "inPodSeconds": round(self.in_pod),
        }


def _node_launch(family: str) -> Phase:
    row = table().nodeLaunch.families.get(family, table().nodeLaunch.default)
    return Phase("node launch", row.seconds, f"{family} node to Ready")


def _image_pull(image: str) -> Phase:
    pull = table().imagePull
    gib = pull.images[image].compressedGiB
    return Phase("image pull", gib * 1024 / pull.mibPerSecond, f"{gib:g} GiB at {pull.mibPerSecond:g} MiB/s")


def _compile(kind: str, weights_gib: float, neuron_cached: bool) -> list[Phase]:
    c = table().compile
    if kind == "neuron":
        n = c.neuron
        if neuron_cached:
            first = Phase("compile", n.cachedLoadSeconds, "cached Neuron artifacts")
        else:
            first = Phase(
                "compile", weights_gib * n.compileSecondsPerGiB, f"Neuron compile, {n.compileSecondsPerGiB:g} s/GiB"
            )
        return [first, Phase("graph capture", n.warmupSeconds, "Neuron warm-up")]
    return [
        Phase("compile", c.nvidia.torchCompileSeconds, "torch.compile"),
        Phase("graph capture", c.nvidia.graphCaptureSeconds, "CUDA graphs"),
    ]


def plan(
    arch: ModelArch,
    instance: InstanceType,
    quantization: str | None = None,
    *,
    source: WeightSource | None = None,
    neuron_cached: bool = False,
) -> StartupPlan:
    """The phases of one replica's cold start on a new node (first start: no compiled artifacts yet)."""
    src = source or weight_source()
    gib = planner.weight_bytes_total(arch, quantization) / GIB
    load = Phase("weight load", gib * 1024 / src.mib_per_s, f"{gib:.1f} GiB from {src.name} at {src.mib_per_s:g} MiB/s")
    image = "vllm-neuron" if instance.kind == "neuron" else "vllm"
    ready = Phase("readiness", 2 * PROBE_PERIOD_S, f"startup + readiness probe periods ({PROBE_PERIOD_S} s)")
    return StartupPlan(
        (
            _node_launch(instance.family),
            _image_pull(image),
            load,
            *_compile(instance.kind, gib, neuron_cached),
            ready,
        )
    )


def probe_seconds(budget_s: int) -> int:
    """What the rendered startupProbe allows: failureThreshold x period."""
    return probe_budget(budget_s) * PROBE_PERIOD_S


def probe_covers(p: StartupPlan, budget_s: int) -> bool:
    """The startupProbe lets the in-container phases finish before it restarts the container."""
    return probe_seconds(budget_s) >= math.ceil(p.in_pod)


def summary_of(p: StartupPlan, budget_s: int) -> dict:
    probe = probe_seconds(budget_s)
    return p.as_dict() | {"probeSeconds": probe, "probeCovers": probe_covers(p, budget_s)}


def summary(m) -> dict:
    """A resolved model's planned phases, with the startupProbe's allowance and whether it covers them."""
    budget = planner.startup_budget_seconds(m.arch, m.kind, m.quantization)
    return summary_of(plan(m.arch, m.sizing.instance, m.quantization), budget)


def lines(models: list[dict]) -> list[str]:
    """The plan's startup lines: one per model, phases and total on a new node, then the probe's cover."""
    out = []
    for m in models:
        s = m.get("startup")
        if not s:
            continue
        parts = " + ".join(f"{p['name']} {p['seconds']}s" for p in s["phases"])
        margin = s["probeSeconds"] / max(1, s["inPodSeconds"])
        out.append(
            f"startup {m['name']}: {parts} = {s['totalSeconds']}s on a new node; startupProbe "
            f"{s['probeSeconds']}s {'covers' if s['probeCovers'] else 'DOES NOT cover'} the "
            f"{s['inPodSeconds']}s in the container (x{margin:.1f}; phases: stacks/catalog/startup.yaml)"
        )
    return out
