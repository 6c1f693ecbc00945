"""One list of PromQL queries; the dashboards, the alerts (PrometheusRule) and the recording rules are
all generated from it, so a metric name is written once.

Metric names are those the pinned servers export (checked against the installed programs and, in
tests/e2e/test_prometheus.py, against a real Prometheus scraping them):
- vLLM 0.32 V1 engine (vllm/v1/metrics/loggers.py): `vllm:*`, labels `model_name`, `engine`. The V0
  names (`vllm:gpu_cache_usage_perc`, …) are gone; `vllm:kv_cache_usage_perc` is 0-1.
- LiteLLM 1.106.12 prometheus callback (litellm/integrations/prometheus.py): `litellm_*`, counters with
  the `_total` suffix; `requested_model`, `model`, `team`, `hashed_api_key`, `status_code`.
- kube-state-metrics, Karpenter, the DCGM exporter and neuron-monitor for what the servers cannot tell.

Placeholders: `$model` and `$deployment` (Grafana template variables; alerts substitute one model),
`$__rate_interval` (Grafana's; alerts use RULE_WINDOW), `<models_ns>` and `<gateway_ns>` (the stack's
namespaces, replaced at render time: PromQL has no `<` in that position, so a missed one fails to parse).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

Source = Literal["vllm", "litellm", "kube-state-metrics", "karpenter", "dcgm", "neuron"]

RULE_WINDOW = "5m"  # the rate window of alert expressions ($__rate_interval in dashboards)
MODELS_NS = "<models_ns>"
GATEWAY_NS = "<gateway_ns>"
# Every selector of the stack's own servers names its namespace: a team stack shares the cluster's
# Prometheus, and two stacks may serve the same model name (the PodMonitor targets carry `namespace`).
G = f'namespace="{GATEWAY_NS}"'
M = f'namespace="{MODELS_NS}", model_name=~"$model"'
D = f'namespace="{MODELS_NS}", deployment=~"$deployment"'


@dataclass(frozen=True)
class Query:
    key: str
    expr: str
    source: Source
    legend: str = ""
    unit: str = "short"


def _sel(metric: str, sel: str) -> str:
    return f"{metric}{{{sel}}}" if sel else metric


def _quantiles(key: str, metric: str, what: str, source: Source = "vllm", by: str = "model_name", sel: str = M):
    return [
        Query(
            f"{key}_p{q}",
            f"histogram_quantile(0.{q}, sum by (le, {by}) (rate({_sel(metric + '_bucket', sel)}[$__rate_interval])))",
            source,
            f"p{q} {what} {{{{{by}}}}}",
            "s",
        )
        for q in (50, 95, 99)
    ]


def _rate(metric: str, sel: str = M, by: str = "model_name") -> str:
    return f"sum by ({by}) (rate({_sel(metric, sel)}[$__rate_interval]))"


GATEWAY_5XX_RATIO = (
    f'(sum(rate(litellm_proxy_total_requests_metric_total{{{G}, status_code=~"5.."}}[$__rate_interval])) or vector(0))'
    f" / sum(rate(litellm_proxy_total_requests_metric_total{{{G}}}[$__rate_interval]))"
)

QUERIES: tuple[Query, ...] = (
    # ---- model serving (vLLM) ----
    Query("request_rate", _rate("vllm:request_success_total"), "vllm", "{{model_name}}", "reqps"),
    *_quantiles("ttft", "vllm:time_to_first_token_seconds", "TTFT"),
    *_quantiles("itl", "vllm:inter_token_latency_seconds", "inter-token"),
    *_quantiles("e2e", "vllm:e2e_request_latency_seconds", "end-to-end"),
    *_quantiles("queue_time", "vllm:request_queue_time_seconds", "queue time"),
    Query("running", f"sum by (model_name) (vllm:num_requests_running{{{M}}})", "vllm", "running {{model_name}}"),
    Query("waiting", f"sum by (model_name) (vllm:num_requests_waiting{{{M}}})", "vllm", "waiting {{model_name}}"),
    Query(
        "kv_cache", f"max by (model_name) (vllm:kv_cache_usage_perc{{{M}}})", "vllm", "{{model_name}}", "percentunit"
    ),
    Query(
        "prefix_hit_rate",
        f"{_rate('vllm:prefix_cache_hits_total')} / {_rate('vllm:prefix_cache_queries_total')}",
        "vllm",
        "{{model_name}}",
        "percentunit",
    ),
    # Per replica (the `pod` label the PodMonitor adds): does routing keep each prefix on one replica?
    Query(
        "prefix_hit_rate_by_replica",
        f"{_rate('vllm:prefix_cache_hits_total', by='model_name, pod')}"
        f" / {_rate('vllm:prefix_cache_queries_total', by='model_name, pod')}",
        "vllm",
        "{{model_name}} {{pod}}",
        "percentunit",
    ),
    # The busiest replica's request rate over the mean per replica (N x its share): 1 is an even
    # spread; prefix stickiness without load feedback shows here first.
    Query(
        "hotspot",
        f"max by (model_name) ({_rate('vllm:request_success_total', by='model_name, pod')})"
        f" / (sum by (model_name) ({_rate('vllm:request_success_total', by='model_name, pod')})"
        f" / count by (model_name) ({_rate('vllm:request_success_total', by='model_name, pod')}))",
        "vllm",
        "{{model_name}}",
        "short",
    ),
    Query("preemptions", _rate("vllm:num_preemptions_total"), "vllm", "{{model_name}}", "ops"),
    Query("prompt_tokens", _rate("vllm:prompt_tokens_total"), "vllm", "prompt {{model_name}}", "short"),
    Query("generation_tokens", _rate("vllm:generation_tokens_total"), "vllm", "generation {{model_name}}", "short"),
    # ---- autoscaling loop ----
    Query(
        "demand",
        f"sum by (model_name) (vllm:num_requests_waiting{{{M}}} + vllm:num_requests_running{{{M}}})",
        "vllm",
        "demand {{model_name}}",
    ),
    Query(
        "desired_replicas",
        f"sum by (deployment) (kube_deployment_spec_replicas{{{D}}})",
        "kube-state-metrics",
        "desired {{deployment}}",
    ),
    Query(
        "ready_replicas",
        f"sum by (deployment) (kube_deployment_status_replicas_ready{{{D}}})",
        "kube-state-metrics",
        "ready {{deployment}}",
    ),
    Query(
        "pending_pods",
        f'sum(kube_pod_status_phase{{namespace="{MODELS_NS}", phase="Pending"}})',
        "kube-state-metrics",
        "pending pods",
    ),
    Query(
        "node_launches",
        "sum by (nodepool) (increase(karpenter_nodeclaims_created_total[1h]))",
        "karpenter",
        "{{nodepool}}",
    ),
    Query(
        "nodes_by_pool",
        'count by (nodepool) (karpenter_nodes_allocatable{resource_type="cpu"})',
        "karpenter",
        "{{nodepool}}",
    ),
    # ---- gateway and teams (LiteLLM) ----
    Query(
        "gw_requests",
        _rate("litellm_proxy_total_requests_metric_total", G, "status_code"),
        "litellm",
        "{{status_code}}",
        "reqps",
    ),
    Query(
        "gw_failures",
        _rate("litellm_proxy_failed_requests_metric_total", G, "exception_status, exception_class"),
        "litellm",
        "{{exception_status}} {{exception_class}}",
        "reqps",
    ),
    Query("gw_5xx_ratio", GATEWAY_5XX_RATIO, "litellm", "5xx ratio", "percentunit"),
    *_quantiles("gw_latency", "litellm_request_total_latency_metric", "gateway total", "litellm", "model", G),
    *_quantiles("gw_upstream", "litellm_llm_api_latency_metric", "upstream", "litellm", "model", G),
    Query(
        "gw_overhead",
        f"{_rate('litellm_overhead_latency_metric_sum', G, 'model_group')}"
        f" / {_rate('litellm_overhead_latency_metric_count', G, 'model_group')}",
        "litellm",
        "overhead {{model_group}}",
        "s",
    ),
    Query(
        "tokens_by_team",
        _rate("litellm_total_tokens_metric_total", G, "team, team_alias"),
        "litellm",
        "{{team_alias}} {{team}}",
    ),
    Query(
        "tokens_by_key",
        _rate("litellm_total_tokens_metric_total", G, "hashed_api_key, api_key_alias"),
        "litellm",
        "{{api_key_alias}} {{hashed_api_key}}",
    ),
    Query(
        "spend_by_team",
        f"3600 * {_rate('litellm_spend_metric_total', G, 'team, team_alias')}",
        "litellm",
        "{{team_alias}} {{team}}",
        "currencyUSD",
    ),
    Query(
        "spend_by_key",
        f"3600 * {_rate('litellm_spend_metric_total', G, 'hashed_api_key, api_key_alias')}",
        "litellm",
        "{{api_key_alias}} {{hashed_api_key}}",
        "currencyUSD",
    ),
    # ---- accelerators ----
    Query("gpu_util", "avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)", "dcgm", "{{Hostname}} gpu{{gpu}}", "percent"),
    Query("gpu_mem_used", "sum by (Hostname) (DCGM_FI_DEV_FB_USED) * 1048576", "dcgm", "{{Hostname}}", "bytes"),
    Query(
        "neuroncore_util",
        "avg by (instance_id, neuroncore) (neuroncore_utilization_ratio)",
        "neuron",
        "{{instance_id}} core{{neuroncore}}",
        "percentunit",
    ),
    Query(
        "neuron_mem_used",
        "sum by (instance_id) (neuron_runtime_memory_used_bytes)",
        "neuron",
        "{{instance_id}}",
        "bytes",
    ),
    Query(
        "node_cost",
        'sum(count by (instance_type, capacity_type, zone) (karpenter_nodes_allocatable{resource_type="cpu"})'
        " * on (instance_type, capacity_type, zone)"
        " max by (instance_type, capacity_type, zone) (karpenter_cloudprovider_instance_type_offering_price_estimate))",
        "karpenter",
        "$/h of running nodes",
        "currencyUSD",
    ),
)
BY_KEY = {q.key: q for q in QUERIES}


# ---- dashboards --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[str, ...]  # keys of QUERIES

    @property
    def unit(self) -> str:
        return BY_KEY[self.queries[0]].unit


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]
    variables: tuple[str, ...] = ()  # "model", "deployment"


def _p(title: str, *keys: str) -> Panel:
    return Panel(title, keys)


def _pq(title: str, key: str) -> Panel:
    return Panel(title, tuple(f"{key}_p{q}" for q in (50, 95, 99)))


DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard(
        "llm-model-serving",
        "LLM serving: models",
        (
            _p("Requests / s", "request_rate"),
            _pq("Time to first token", "ttft"),
            _pq("Inter-token latency", "itl"),
            _pq("End-to-end latency", "e2e"),
            _pq("Queue time", "queue_time"),
            _p("Running and waiting requests", "running", "waiting"),
            _p("KV-cache use", "kv_cache"),
            _p("Prefix-cache hit rate", "prefix_hit_rate"),
            _p("Prefix-cache hit rate by replica", "prefix_hit_rate_by_replica"),
            _p("Hotspot: busiest replica / fair share", "hotspot"),
            _p("Preemptions / s", "preemptions"),
            _p("Tokens / s", "prompt_tokens", "generation_tokens"),
        ),
        ("model",),
    ),
    Dashboard(
        "llm-autoscaling",
        "LLM serving: autoscaling loop",
        (
            _p("Demand (waiting + running)", "demand", "waiting"),
            _p("Desired vs ready replicas", "desired_replicas", "ready_replicas"),
            _p("Pending model pods", "pending_pods"),
            _p("Node launches (1 h)", "node_launches"),
            _p("Nodes by pool", "nodes_by_pool"),
        ),
        ("model", "deployment"),
    ),
    Dashboard(
        "llm-gateway",
        "LLM serving: gateway and teams",
        (
            _p("Requests / s by status", "gw_requests"),
            _p("Failures / s", "gw_failures"),
            _p("5xx ratio", "gw_5xx_ratio"),
            _pq("Gateway latency", "gw_latency"),
            _pq("Upstream (vLLM) latency", "gw_upstream"),
            _p("Gateway overhead (mean)", "gw_overhead"),
            _p("Tokens / s by team", "tokens_by_team"),
            _p("Tokens / s by key", "tokens_by_key"),
            _p("Spend $/h by team", "spend_by_team"),
            _p("Spend $/h by key", "spend_by_key"),
        ),
    ),
    Dashboard(
        "llm-accelerators",
        "LLM serving: accelerators",
        (
            _p("GPU utilisation", "gpu_util"),
            _p("GPU memory used", "gpu_mem_used"),
            _p("NeuronCore utilisation", "neuroncore_util"),
            _p("Neuron device memory used", "neuron_mem_used"),
            _p("$/h of running nodes", "node_cost"),
        ),
    ),
)

# Grafana template variables: the query each one takes its values from.
VARIABLES = {
    "model": (f'vllm:num_requests_running{{namespace="{MODELS_NS}"}}', "model_name"),
    "deployment": (f'kube_deployment_spec_replicas{{namespace="{MODELS_NS}"}}', "deployment"),
}


def _ns(expr: str, models_ns: str, gateway_ns: str = GATEWAY_NS) -> str:
    return expr.replace(MODELS_NS, models_ns).replace(GATEWAY_NS, gateway_ns)


def _target(q: Query, ref: str, namespaces: tuple[str, str]) -> dict:
    return {
        "refId": ref,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": _ns(q.expr, *namespaces),
        "legendFormat": q.legend,
    }


def _variable(name: str, namespaces: tuple[str, str]) -> dict:
    metric, label = VARIABLES[name]
    query = f"label_values({_ns(metric, *namespaces)}, {label})"
    return {
        "name": name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
    }


def dashboard_json(d: Dashboard, namespaces: tuple[str, str], prefix: str = "") -> dict:
    """The Grafana dashboard model (schemaVersion 39): one time-series panel per Panel, two per row."""
    panels = []
    for i, p in enumerate(d.panels):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": p.title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "targets": [_target(BY_KEY[k], chr(ord("A") + j), namespaces) for j, k in enumerate(p.queries)],
            }
        )
    ds = {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"}
    return {
        "uid": prefix + d.uid,
        "title": f"{d.title} ({prefix.rstrip('-')})" if prefix else d.title,
        "tags": ["llm-serving"],
        "schemaVersion": 39,
        "editable": False,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [ds, *(_variable(v, namespaces) for v in d.variables)]},
        "panels": panels,
    }


def dashboards(namespaces: tuple[str, str], prefix: str = "") -> dict[str, str]:
    """uid -> dashboard JSON text (what the Grafana sidecar ConfigMaps carry); a team stack's uids
    and titles carry its prefix, so they sit beside the platform's in one Grafana."""
    return {
        prefix + d.uid: json.dumps(dashboard_json(d, namespaces, prefix), indent=1, sort_keys=True) for d in DASHBOARDS
    }


# ---- alerts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelTarget:
    """One model as the alerts see it: its served name (vLLM's model_name), its Deployment and the
    limits the alerts compare against."""

    served_name: str
    deployment: str
    max_replicas: int
    ttft_p95_seconds: float
    startup_budget_seconds: int
    scrape_job: str  # the `job` label its PodMonitor gives its targets: <namespace>/<PodMonitor name>


def promql_regex(value: str) -> str:
    """`value` as an exact-match regex inside a PromQL double-quoted string."""
    return re.escape(value).replace("\\", "\\\\")


def for_model(expr: str, m: ModelTarget, models_ns: str) -> str:
    return (
        _ns(expr, models_ns)
        .replace("$model", promql_regex(m.served_name))
        .replace("$deployment", promql_regex(m.deployment))
        .replace("$__rate_interval", RULE_WINDOW)
    )


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    labels: dict = field(default_factory=dict)


def model_alerts(m: ModelTarget, models_ns: str) -> list[Alert]:
    q = lambda key: for_model(BY_KEY[key].expr, m, models_ns)  # noqa: E731
    s = m.served_name
    return [
        Alert("LLMModelNoReadyReplica", f"{q('ready_replicas')} < 1", "5m", "critical", f"{s}: no ready replica"),
        Alert(
            "LLMModelTargetDown",
            f'up{{namespace="{models_ns}", job="{m.scrape_job}"}} == 0',
            "5m",
            "warning",
            f"{s}: a server does not answer /metrics",
        ),
        Alert(
            "LLMQueueAtMaxReplicas",
            f"{q('waiting')} > 0 and on () ({q('desired_replicas')} >= {m.max_replicas})",
            "10m",
            "warning",
            f"{s}: requests wait while already at max replicas ({m.max_replicas})",
        ),
        Alert("LLMKVCacheHigh", f"{q('kv_cache')} > 0.9", "10m", "warning", f"{s}: KV cache above 90 %"),
        Alert(
            "LLMTTFTHigh",
            f"{q('ttft_p95')} > {m.ttft_p95_seconds:g}",
            "10m",
            "warning",
            f"{s}: p95 time to first token above {m.ttft_p95_seconds:g} s",
        ),
        Alert(
            "LLMReplicasBelowDesired",
            f"{q('ready_replicas')} < on (deployment) {q('desired_replicas')}",
            f"{m.startup_budget_seconds}s",
            "warning",
            f"{s}: fewer ready replicas than desired for longer than the startup budget ({m.startup_budget_seconds}s)",
        ),
    ]


GATEWAY_5XX_THRESHOLD = 0.05


def gateway_alerts(gateway_ns: str) -> list[Alert]:
    expr = _ns(GATEWAY_5XX_RATIO, MODELS_NS, gateway_ns).replace("$__rate_interval", RULE_WINDOW)
    return [
        Alert(
            "LLMGatewayHigh5xxRatio",
            f"{expr} > {GATEWAY_5XX_THRESHOLD}",
            "5m",
            "critical",
            f"gateway: more than {GATEWAY_5XX_THRESHOLD:.0%} of requests fail with 5xx",
        )
    ]


def _rule(a: Alert, model: str | None) -> dict:
    labels = {"severity": a.severity, **({"model": model} if model else {}), **a.labels}
    return {
        "alert": a.name,
        "expr": a.expr,
        "for": a.for_,
        "labels": labels,
        "annotations": {"summary": a.summary},
    }


def rule_groups(models: list[ModelTarget], namespaces: tuple[str, str]) -> list[dict]:
    """PrometheusRule spec.groups: one group per model, one for the gateway."""
    groups = [
        {
            "name": f"llm-serving-model-{m.served_name}",
            "rules": [_rule(a, m.served_name) for a in model_alerts(m, namespaces[0])],
        }
        for m in models
    ]
    groups.append({"name": "llm-serving-gateway", "rules": [_rule(a, None) for a in gateway_alerts(namespaces[1])]})
    return groups
