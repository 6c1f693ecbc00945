"""Spot capacity: the rules a model on a spot-capable pool must meet, and spot $/h as estimates.

EC2 gives a spot instance a two-minute interruption notice. Karpenter reads it from its SQS
interruption queue (fed by EventBridge), cordons the node and drains its pods, each within its
terminationGracePeriodSeconds. A replica's drain is the preStop sleep, vLLM's --shutdown-timeout (the
model's requestTimeoutSeconds) and the exit margin (components/vllm.py); it must end before the node
does, with a few seconds left for Karpenter to receive the message and start the drain. Requests that
outlive a replica are retried on another one by the gateway, so a spot model needs a second replica,
and a second instance family so one spot pool's reclaim does not take both.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from components.vllm import EXIT_MARGIN_S, PRE_STOP_S
from stacks.yamlio import load_yaml

SPOT = "spot"
NOTICE_S = 120  # EC2 spot interruption notice
# What a drain may take: the notice less ~10 s for EventBridge -> SQS -> Karpenter -> cordon and evict.
DRAIN_LIMIT_S = 110
MAX_REQUEST_TIMEOUT_S = DRAIN_LIMIT_S - PRE_STOP_S - EXIT_MARGIN_S
MIN_REPLICAS = 2
MIN_FAMILIES = 2
CATALOG = Path(__file__).resolve().parents[1] / "catalog" / "spot.yaml"


class SpotCatalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    source: str = Field(min_length=1)
    savingsPercent: dict[str, tuple[float, float]]


@functools.cache
def table() -> SpotCatalog:
    return SpotCatalog.model_validate(load_yaml(CATALOG.read_text(encoding="utf-8")))


def drain_seconds(request_timeout_s: int) -> int:
    """preStop + --shutdown-timeout + exit margin: the replica's terminationGracePeriodSeconds."""
    return PRE_STOP_S + request_timeout_s + EXIT_MARGIN_S


Problem = tuple[tuple, str, str]  # (key path, what, fix)


def _model_problems(name: str, m, replicas_min: int, pool: str) -> list[Problem]:
    out: list[Problem] = []
    if replicas_min < MIN_REPLICAS:
        out.append(
            (
                ("models", name, "replicas", "min"),
                f"{replicas_min} on spot-capable pool {pool!r}: a spot interruption would leave no replica "
                f"to retry on while a new one starts",
                f"set replicas.min to {MIN_REPLICAS} or more, or put the model on an on-demand pool",
            )
        )
    drain = drain_seconds(m.request_timeout_seconds)
    if drain > DRAIN_LIMIT_S:
        out.append(
            (
                ("models", name, "requestTimeoutSeconds"),
                f"{m.request_timeout_seconds} on spot-capable pool {pool!r}: the drain ({PRE_STOP_S} s preStop + "
                f"{m.request_timeout_seconds} s + {EXIT_MARGIN_S} s) is {drain} s, past the {NOTICE_S} s spot "
                f"notice ({DRAIN_LIMIT_S} s usable)",
                f"set requestTimeoutSeconds to {MAX_REQUEST_TIMEOUT_S} or less, or use an on-demand pool",
            )
        )
    return out


def problems(cfg, models: dict, pools: dict) -> list[Problem]:
    """(key path, what, fix) for every spot rule a config breaks. `models`/`pools`: the resolved ones."""
    out: list[Problem] = []
    spot_pools = {n for n, p in pools.items() if SPOT in p.spec.capacityTypes}
    for pname in sorted(spot_pools & {m.pool for m in models.values()}):
        fams = pools[pname].families
        if len(fams) < MIN_FAMILIES:
            path = ("nodePools", pname, "families") if pname in cfg.nodePools else ("nodePools", pname)
            out.append(
                (
                    path,
                    f"spot needs at least {MIN_FAMILIES} instance families to fall back on, pool {pname!r} "
                    f"allows {', '.join(fams)}",
                    "add a second family (e.g. g5 and g6), or drop spot from capacityTypes",
                )
            )
    for name, m in models.items():
        if m.pool in spot_pools:
            out += _model_problems(name, m, cfg.models[name].replicas.min, m.pool)
    return out


def hourly_usd(inst, replicas_min: int, replicas_max: int) -> tuple[float, float] | None:
    """Estimated spot $/h, cheapest at min replicas to dearest at max; None: no estimate for the family."""
    saving = table().savingsPercent.get(inst.family)
    if saving is None:
        return None
    lo, hi = (inst.usd_per_hour * (1 - s / 100) for s in (max(saving), min(saving)))
    return (round(lo * replicas_min, 4), round(hi * replicas_max, 4))


def row(m, pool_capacity_types) -> dict | None:
    """The plan's spot figures of a resolved model (None: its pool allows no spot)."""
    if SPOT not in pool_capacity_types:
        return None
    usd = hourly_usd(m.sizing.instance, m.replicas_min, m.replicas_max)
    if usd is None:
        return None
    return {"min": usd[0], "max": usd[1], "estimate": True, "date": table().date}


def lines(models: list[dict]) -> list[str]:
    out = []
    for m in models:
        s, h = m.get("spotHourlyUsd"), m["hourlyUsd"]
        if s:
            out.append(
                f"spot {m['name']}: ${s['min']:.2f}-${s['max']:.2f}/h on spot (ESTIMATE, {s['date']}: "
                f"stacks/catalog/spot.yaml) vs ${h['min']:.2f}-${h['max']:.2f}/h on-demand; Karpenter prefers "
                f"spot and falls back to on-demand"
            )
    return out
