"""Serving namespaces (Pod Security `restricted`) and their NetworkPolicies."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import (
    CACHE_SELECTOR,
    FRONTDOOR_PORT,
    FRONTDOOR_SELECTOR,
    GATEWAY_PORT,
    GATEWAY_SELECTOR,
    REDIS_PORT,
    UI_SELECTOR,
    VLLM_PORT,
    VLLM_SELECTOR,
)

PSA = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "audit", "warn")}
DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}


def tcp(port: int) -> dict:
    """A NetworkPolicy port entry for one of the shared ports (components.types)."""
    return {"protocol": "TCP", "port": port}


DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def ns_peer(ns: str, labels: dict) -> dict:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "podSelector": {"matchLabels": labels},
    }


DENY_ALL = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
DNS_EGRESS = {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [DNS_PEER], "ports": DNS_PORTS}]}


def render_policies(
    *, models_ns: str, gateway_ns: str, vpc_cidr: str, database: bool, redis: bool = False
) -> dict[str, tuple[str, dict]]:
    """name -> (namespace, NetworkPolicy spec)."""
    out = {
        **render_models_policies(models_ns=models_ns, gateway_ns=gateway_ns),
        **render_gateway_policies(models_ns=models_ns, gateway_ns=gateway_ns),
        **render_edge_policies(gateway_ns=gateway_ns, vpc_cidr=vpc_cidr),
    }
    if database:
        out["gateway-to-database"] = (
            gateway_ns,
            {
                "podSelector": {"matchLabels": GATEWAY_SELECTOR},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": vpc_cidr}}], "ports": [{"protocol": "TCP", "port": 5432}]}],
            },
        )
    if redis:
        out["gateway-to-redis"] = (
            gateway_ns,
            {
                "podSelector": {"matchLabels": GATEWAY_SELECTOR},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": vpc_cidr}}], "ports": [tcp(REDIS_PORT)]}],
            },
        )
    return out


def render_models_policies(*, models_ns: str, gateway_ns: str) -> dict[str, tuple[str, dict]]:
    """The models namespace: default deny, DNS, vLLM from the gateway, the cache Job to the Hub."""
    return {
        "models-default-deny": (models_ns, DENY_ALL),
        "models-dns": (models_ns, DNS_EGRESS),
        "vllm-from-gateway": (
            models_ns,
            {
                "podSelector": {"matchLabels": VLLM_SELECTOR},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [ns_peer(gateway_ns, GATEWAY_SELECTOR)], "ports": [tcp(VLLM_PORT)]}],
            },
        ),
        # The cache Job downloads from the Hugging Face Hub over HTTPS; nothing else leaves the namespace.
        "model-cache-egress": (
            models_ns,
            {
                "podSelector": {"matchLabels": CACHE_SELECTOR},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"protocol": "TCP", "port": 443}]}],
            },
        ),
    }


def render_gateway_policies(*, models_ns: str, gateway_ns: str) -> dict[str, tuple[str, dict]]:
    """The gateway namespace: default deny, DNS, LiteLLM in (named pods) and out (vLLM)."""
    return {
        "gateway-default-deny": (gateway_ns, DENY_ALL),
        "gateway-dns": (gateway_ns, DNS_EGRESS),
        # LiteLLM (every route, admin included) only from named pods of the cluster; clients outside
        # it reach the front door's port alone, which forwards the client routes (components/frontdoor.py).
        "gateway-ingress": (
            gateway_ns,
            {
                "podSelector": {"matchLabels": GATEWAY_SELECTOR},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {"matchLabels": FRONTDOOR_SELECTOR}},
                            {"podSelector": {"matchLabels": UI_SELECTOR}},
                        ],
                        "ports": [tcp(GATEWAY_PORT)],
                    }
                ],
            },
        ),
        "gateway-to-vllm": (
            gateway_ns,
            {
                "podSelector": {"matchLabels": GATEWAY_SELECTOR},
                "policyTypes": ["Egress"],
                "egress": [{"to": [ns_peer(models_ns, VLLM_SELECTOR)], "ports": [tcp(VLLM_PORT)]}],
            },
        ),
    }


def render_edge_policies(*, gateway_ns: str, vpc_cidr: str) -> dict[str, tuple[str, dict]]:
    """What the VPC reaches: the front door (which forwards to LiteLLM) and the UI (which calls it)."""
    return {
        "frontdoor-ingress": (
            gateway_ns,
            {
                "podSelector": {"matchLabels": FRONTDOOR_SELECTOR},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"ipBlock": {"cidr": vpc_cidr}}], "ports": [tcp(FRONTDOOR_PORT)]}],
            },
        ),
        "frontdoor-to-gateway": (
            gateway_ns,
            {
                "podSelector": {"matchLabels": FRONTDOOR_SELECTOR},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchLabels": GATEWAY_SELECTOR}}], "ports": [tcp(GATEWAY_PORT)]}],
            },
        ),
        "ui-to-gateway": (
            gateway_ns,
            {
                "podSelector": {"matchLabels": UI_SELECTOR},
                "policyTypes": ["Egress", "Ingress"],
                "egress": [
                    {
                        "to": [{"podSelector": {"matchLabels": GATEWAY_SELECTOR}}],
                        "ports": [tcp(GATEWAY_PORT)],
                    }
                ],
                # No ingress: users reach the UI with `kubectl port-forward`, which enters the pod
                # from its node and is not subject to NetworkPolicy; no pod or VPC host needs it.
                "ingress": [],
            },
        ),
    }


def render_accelerator_quota(n: int) -> dict:
    return {"requests.nvidia.com/gpu": str(n), "requests.aws.amazon.com/neuron": str(n)}


@dataclass(frozen=True)
class NamespacesArgs:
    models_ns: str
    gateway_ns: str
    vpc_cidr: pulumi.Input[str]
    database: bool = False
    redis: bool = False  # egress to the shared rate-limit Redis (components/gateway_redis.py)
    accelerator_quota: int | None = None  # team stacks: GPUs / Neuron devices the team may request


class ServingNamespaces(pulumi.ComponentResource):
    def __init__(self, name: str, args: NamespacesArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:serving:ServingNamespaces", name, None, opts)
        self.namespaces = {}
        for ns in (args.models_ns, args.gateway_ns):
            self.namespaces[ns] = k8s.core.v1.Namespace(
                f"{name}-{ns}", metadata={"name": ns, "labels": PSA}, opts=ResourceOptions(parent=self)
            )
        policies = pulumi.Output.from_input(args.vpc_cidr).apply(
            lambda cidr: render_policies(
                models_ns=args.models_ns,
                gateway_ns=args.gateway_ns,
                vpc_cidr=cidr,
                database=args.database,
                redis=args.redis,
            )
        )
        for pname, (ns, _) in render_policies(
            models_ns=args.models_ns,
            gateway_ns=args.gateway_ns,
            vpc_cidr="0.0.0.0/32",
            database=args.database,
            redis=args.redis,
        ).items():

            def policy_spec(p: dict[str, tuple[str, dict]], n: str = pname) -> dict:
                return p[n][1]

            k8s.networking.v1.NetworkPolicy(
                f"{name}-{pname}",
                metadata={"name": pname, "namespace": ns},
                spec=policies.apply(policy_spec),
                opts=ResourceOptions(parent=self, depends_on=[self.namespaces[ns]]),
            )
        if args.accelerator_quota is not None:
            k8s.core.v1.ResourceQuota(
                f"{name}-accelerators",
                metadata={"name": "accelerators", "namespace": args.models_ns},
                spec={"hard": render_accelerator_quota(args.accelerator_quota)},
                opts=ResourceOptions(parent=self, depends_on=[self.namespaces[args.models_ns]]),
            )
        self.register_outputs({})
