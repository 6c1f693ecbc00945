"""How the gateway reaches each model's replicas (config `models.<m>.routing`).

`service`: the model's ClusterIP Service. `cache-aware`: a vllm-router per model (components/router.py)
that LiteLLM calls instead; it watches the model's pods and sends each request to the replica most
likely to hold its prompt prefix in KV cache.
"""

from __future__ import annotations

from dataclasses import replace

import pulumi

from components import router, vllm
from components.prometheus_stack import ScrapeAdmission, ScrapeTarget
from components.types import (
    ROUTER_METRICS_PORT,
    ROUTER_PORT,
    ROUTER_SELECTOR,
    SYSTEM_TAINT,
    VLLM_PORT,
    ServerSpec,
    service_host,
)
from stacks import catalog
from stacks.config import StackIntent

# `cache_aware` keys its prefix tree on the prompt's token ids, which the router asks a replica for
# (`POST /v1/chat/completions/render`, `/v1/completions/render`). vLLM 0.32 answers those with 403
# unless started with this flag (the router then counts every request as `missing_tokens` and
# routes blind). It also opens the token-in/token-out endpoints; callers of the vLLM port are
# limited to the gateway and the router by NetworkPolicy. vLLM 0.16 (the Neuron image) has no such
# flag (its parser exits on it) and serves /render unconditionally.
WORKER_ARGS = {"nvidia": ("--enable-scale-out",), "neuron": ()}


def cache_aware(intent: StackIntent) -> list[str]:
    """The models (config names) routed by cache, in config order."""
    return [name for name, m in intent.config.models.items() if m.routing == "cache-aware"]


def with_worker_args(intent: StackIntent, specs: dict[str, ServerSpec]) -> dict[str, ServerSpec]:
    """The model servers, those routed by cache with the vLLM flags their router depends on."""
    routed = cache_aware(intent)
    return {n: replace(s, args=(*s.args, *WORKER_ARGS[s.kind])) if n in routed else s for n, s in specs.items()}


def router_spec(spec: ServerSpec, namespaces: tuple[str, str]) -> router.RouterSpec:
    models_ns, gateway_ns = namespaces
    return router.RouterSpec(
        model=spec.name,
        namespace=models_ns,
        gateway_namespace=gateway_ns,
        image=catalog.versions().images["vllm-router"],
        worker_labels=tuple(sorted(vllm.labels(spec).items())),
        worker_port=VLLM_PORT,
        request_timeout_seconds=spec.request_timeout_seconds,
        system_taint=SYSTEM_TAINT,
    )


def upstream(intent: StackIntent, name: str, models_ns: str) -> tuple[str, int]:
    """(host, port) LiteLLM sends model `name`'s requests to: its router, or its Service."""
    if name in cache_aware(intent):
        return service_host(router.router_name(name), models_ns), ROUTER_PORT
    return service_host(name, models_ns), VLLM_PORT


def build(
    intent: StackIntent,
    specs: dict[str, ServerSpec],
    namespaces: tuple[str, str],
    after: tuple[pulumi.Resource, ...],
    opts: pulumi.ResourceOptions,
) -> dict[str, router.ModelRouter]:
    """One router per cache-aware model; created before the gateway that calls it."""
    return {
        name: router.ModelRouter(
            f"router-{name}", router.RouterArgs(spec=router_spec(specs[name], namespaces), after=after), opts=opts
        )
        for name in cache_aware(intent)
    }


def scrape(
    intent: StackIntent, specs: dict[str, ServerSpec], models_ns: str
) -> tuple[list[ScrapeTarget], list[ScrapeAdmission]]:
    """A PodMonitor per router (its metrics port) and the policy admitting the scraper there."""
    names = cache_aware(intent)
    targets = [
        ScrapeTarget(router.router_name(n), models_ns, "PodMonitor", router.labels(n), router.METRICS_PORT_NAME)
        for n in names
    ]
    admissions = (
        [ScrapeAdmission("router-from-prometheus", models_ns, dict(ROUTER_SELECTOR), ROUTER_METRICS_PORT)]
        if names
        else []
    )
    return targets, admissions
