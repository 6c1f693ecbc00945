"""Autoscaling decisions: per-model targets, windows, queries and the config cross-checks.

Pure functions over the resolved stack (no Pulumi resources): `stacks.compose.serving` turns them into a
`components.keda.ScalingSpec` per model, the plan table and summary.json show them, and the
e2e suite evaluates exactly these queries on a real Prometheus scraping a real vLLM.

The loop (KEDA makes one HPA per model; for AverageValue metrics the HPA sets
desired = ceil(metric / target) per trigger, takes the largest, clamps it to [min, max]):
- running: `sum(vllm:num_requests_running{namespace=<models ns>, model_name=<served name>})` against `targetRunning`,
  by default `runningFraction` (0.75) x the planner's concurrency per replica
  (min(max concurrency, max-num-seqs): vLLM never runs more than max-num-seqs at once), so a replica
  is added before the running batch is full;
- waiting: `sum(vllm:num_requests_waiting{…})` against `targetWaiting` (default
  `autoscaling.queueDepthPerReplica`): a queue that builds means the batch is full;
- scale to zero (opt-in): no replica exports vLLM metrics, so the gateway's request counters for the
  model (successful and failed) wake it; the first requests fail or wait a whole cold start;
- floors: KEDA cron triggers hold `replicas` between `start` and `end` (office hours).
Windows come from the planner's cold-start estimate (`planner.startup_budget_seconds`): scale up at
once (a new replica takes that long anyway), scale down only after demand stayed low for at least
one cold start, one replica per minute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from components.keda import Floor, ScalingSpec
from components.prometheus_stack import RELEASE as OBSERVABILITY_RELEASE
from components.types import GATEWAY_NS, MODELS_NS, service_host
from stacks.capacity import planner
from stacks.config.schema import ModelConfig, StackConfig, team_namespaces

# vLLM 0.32 (vllm/v1/metrics/loggers.py): gauges labelled model_name=<served name>, engine=<index>.
RUNNING_METRIC = "vllm:num_requests_running"
WAITING_METRIC = "vllm:num_requests_waiting"
# LiteLLM 1.106 (integrations/prometheus.py): counters labelled requested_model=<public model name>;
# prometheus_client adds `_total`. The proxy counts successes and failures in separate counters.
GATEWAY_REQUESTS = "litellm_proxy_(total|failed)_requests_metric_total"
# Scale-to-zero: gateway requests over this window keep one replica; the trigger only activates
# (threshold high enough that it never asks for more than one replica).
WAKE_WINDOW = "10m"
WAKE_THRESHOLD = 1_000_000
# HPA defaults we keep as floors: 300 s scale-down stabilization; KEDA polls every 15 s.
MIN_SCALE_DOWN_WINDOW_S = 300
POLLING_INTERVAL_S = 15
SCALE_DOWN_PODS_PER_MINUTE = 1
# Prometheus unreachable for this many polls: KEDA holds `fallback` replicas (or more, if running).
FALLBACK_FAILURES = 3
# The Prometheus of the kube-prometheus-stack release (observability). Its Service is named by the
# chart's fullname rule (templates/_helpers.tpl: the release name when it contains the chart name).
KPS_CHART = "kube-prometheus-stack"
KPS_RELEASE = OBSERVABILITY_RELEASE
PROMETHEUS_PORT = 9090


@dataclass(frozen=True)
class Targets:
    running: int  # running requests per replica
    waiting: int  # waiting requests per replica


@dataclass(frozen=True)
class Windows:
    scale_up_s: int
    scale_down_s: int
    cooldown_s: int  # KEDA: idle this long before the last replica goes (scale to zero only)


def per_replica_concurrency(max_concurrency: float, max_num_seqs: int) -> int:
    """What one replica runs at once: its KV cache's concurrency, never above max-num-seqs."""
    return max(1, int(min(max_concurrency, max_num_seqs)))


def targets(cfg: StackConfig, m: ModelConfig, max_concurrency: float, max_num_seqs: int) -> Targets:
    r, a = m.replicas, cfg.autoscaling
    running = r.targetRunning or max(
        1, math.floor(a.runningFraction * per_replica_concurrency(max_concurrency, max_num_seqs))
    )
    return Targets(running=running, waiting=r.targetWaiting or a.queueDepthPerReplica)


def windows(startup_budget_s: int) -> Windows:
    down = max(MIN_SCALE_DOWN_WINDOW_S, startup_budget_s)
    return Windows(scale_up_s=0, scale_down_s=down, cooldown_s=down)


def stack_namespaces(cfg: StackConfig) -> tuple[str, str]:
    """(models, gateway) namespaces: shared names on a platform stack, team-prefixed on a team stack."""
    if cfg.team is not None:
        return team_namespaces(cfg.team.name)
    return MODELS_NS, GATEWAY_NS


def _selector(served_name: str, namespace: str) -> str:
    # PromQL string literals: served names are [A-Za-z0-9._/-] (config.SERVED_NAME) and namespaces DNS
    # labels, nothing to escape. The namespace keeps two stacks serving one name from scaling each other.
    return f'namespace="{namespace}", model_name="{served_name}"'


def running_query(served_name: str, models_ns: str) -> str:
    return f"sum({RUNNING_METRIC}{{{_selector(served_name, models_ns)}}})"


def waiting_query(served_name: str, models_ns: str) -> str:
    return f"sum({WAITING_METRIC}{{{_selector(served_name, models_ns)}}})"


def wake_query(served_name: str, gateway_ns: str) -> str:
    """Gateway requests for the model in the last WAKE_WINDOW. `increase` alone misses the first one:
    a counter series born at 1 has no earlier sample to increase from (measured, tests/e2e), so
    series that did not exist WAKE_WINDOW ago count too (a gateway restart also wakes the model once)."""
    s = f'{{__name__=~"{GATEWAY_REQUESTS}",namespace="{gateway_ns}",requested_model="{served_name}"}}'
    return (
        f"(sum(increase({s}[{WAKE_WINDOW}])) or vector(0)) + (count({s} unless {s} offset {WAKE_WINDOW}) or vector(0))"
    )


def desired_replicas(values: dict[str, float], thresholds: dict[str, float], lo: int, hi: int) -> int:
    """What the HPA sets for AverageValue metrics: max over triggers of ceil(value / threshold),
    clamped to [lo, hi] (KEDA's cron triggers report their desired count with threshold 1)."""
    want = max((math.ceil(values[k] / thresholds[k]) for k in values), default=0)
    return min(hi, max(lo, want))


def kps_fullname(release: str, chart: str = KPS_CHART) -> str:
    """kube-prometheus-stack.fullname (no fullnameOverride): 26 characters at most."""
    name = release if chart in release else f"{release}-{chart}"
    return name[:26].rstrip("-")


def prometheus_url(cfg: StackConfig) -> str:
    """Where KEDA reads the metrics: the observability section's Prometheus (bring-your-own
    `observability.prometheusUrl`, else the kube-prometheus-stack release in `observability.namespace`)."""
    o = cfg.observability
    if o.prometheusUrl:
        return o.prometheusUrl
    svc = f"{kps_fullname(KPS_RELEASE)}-prometheus"
    return f"http://{service_host(svc, o.namespace)}:{PROMETHEUS_PORT}"


# ---- config cross-checks: (key path, what, how to fix) --------------------------------------------


def problems(cfg: StackConfig) -> list[tuple[tuple, str, str]]:
    """Every autoscaling problem of the config, each naming its key."""
    out: list[tuple[tuple, str, str]] = []
    a = cfg.autoscaling
    if a.enabled and not cfg.observability.enabled:
        out.append(
            (
                ("autoscaling", "enabled"),
                "autoscaling reads vLLM's queue from Prometheus, and observability is off (no Prometheus)",
                "set observability.enabled: true (the stack's Prometheus, or yours with observability.prometheusUrl)",
            )
        )
    if a.enabled and a.gatewayMaxReplicas < cfg.gateway.replicas:
        out.append(
            (
                ("autoscaling", "gatewayMaxReplicas"),
                f"{a.gatewayMaxReplicas} is below gateway.replicas {cfg.gateway.replicas} (the HPA's minimum)",
                f"use at least {cfg.gateway.replicas}",
            )
        )
    for name, m in cfg.models.items():
        out += model_problems(cfg, name, m)
    return out


def model_problems(cfg: StackConfig, name: str, m: ModelConfig) -> list[tuple[tuple, str, str]]:
    r, on = m.replicas, cfg.autoscaling.enabled
    path = ("models", name, "replicas")
    out: list[tuple[tuple, str, str]] = []
    if r.min == 0 and not r.scaleToZero:
        out.append(
            (
                path + ("min",),
                "0 replicas means the model serves nothing until a request wakes it (a whole cold start)",
                "set replicas.scaleToZero: true (with autoscaling.enabled: true) to opt in, or min: 1",
            )
        )
    if r.scaleToZero and r.min != 0:
        out.append(
            (path + ("scaleToZero",), f"min is {r.min}, so it never scales to zero", "set min: 0, or drop scaleToZero")
        )
    if not on:
        # Refused rather than warned: a range nothing acts on is the silent no-op users complain about.
        if r.max > r.min:
            out.append(
                (
                    path + ("max",),
                    f"max {r.max} > min {r.min} does nothing while autoscaling is off (the model runs {r.min})",
                    f"set autoscaling.enabled: true, or max: {r.min}",
                )
            )
        for field in ("scaleToZero", "targetRunning", "targetWaiting", "floors"):
            if field in r.model_fields_set:
                out.append(
                    (
                        path + (field,),
                        "has no effect while autoscaling is off",
                        "set autoscaling.enabled: true, or remove it",
                    )
                )
    for i, f in enumerate(r.floors):
        if f.replicas > r.max:
            out.append((path + ("floors", i, "replicas"), f"{f.replicas} is above max {r.max}", f"use at most {r.max}"))
        if f.start == f.end:
            out.append((path + ("floors", i, "end"), "equals start: the floor never holds", "give the window an end"))
    return out


def startup_budget(m) -> int:
    """The planner's cold-start budget of a resolved model (startupProbe and the windows share it)."""
    return planner.startup_budget_seconds(m.arch, m.kind, m.quantization)


def model_targets(cfg: StackConfig, m) -> Targets:
    """The targets of a resolved model (config overrides, else the planner's defaults)."""
    return targets(cfg, cfg.models[m.name], m.sizing.max_concurrency, m.sizing.max_num_seqs)


def scaling_spec(cfg: StackConfig, m) -> ScalingSpec:
    """One resolved model's ScaledObject, as the component renders it."""
    t, w = model_targets(cfg, m), windows(startup_budget(m))
    r = cfg.models[m.name].replicas
    models_ns, gateway_ns = stack_namespaces(cfg)
    queries = [
        ("running", running_query(m.served_name, models_ns), t.running, 0),
        ("waiting", waiting_query(m.served_name, models_ns), t.waiting, 0),
    ]
    if r.min == 0:
        queries.append(("wake", wake_query(m.served_name, gateway_ns), WAKE_THRESHOLD, 0))
    return ScalingSpec(
        name=m.name,
        min_replicas=m.replicas_min,
        max_replicas=m.replicas_max,
        server_address=prometheus_url(cfg),
        queries=tuple(queries),
        scale_up_window_s=w.scale_up_s,
        scale_down_window_s=w.scale_down_s,
        scale_down_pods_per_minute=SCALE_DOWN_PODS_PER_MINUTE,
        cooldown_s=w.cooldown_s,
        polling_interval_s=POLLING_INTERVAL_S,
        fallback_replicas=max(1, m.replicas_min),
        fallback_failures=FALLBACK_FAILURES,
        floors=tuple(Floor(f.timezone, f.start, f.end, f.replicas) for f in r.floors),
    )
