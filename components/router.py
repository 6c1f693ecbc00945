"""Cache-aware routing for one model: a vllm-router Deployment between the gateway and the model's replicas.

LiteLLM keeps keys, teams and limits and sends the model's requests to this router's Service; the
router picks the replica whose KV cache most likely holds the prompt's prefix (`--policy
cache_aware`: a prefix tree per replica of the prompts' token ids, which a replica renders for it;
stacks/compose/routing.py starts those replicas so they may, with a load-balance fallback).

Worker discovery: vllm-router finds workers either from a static URL list or by watching pods
through the Kubernetes API (`--service-discovery`); a headless Service's DNS name would be a single
worker to it. So the router watches the model's pods, with a ServiceAccount whose Role may only
get/list/watch pods in the models namespace, and a NetworkPolicy that lets it reach the API
server's Service address and the model's pods on the vLLM port, nothing else.

Pure renderers carry every decision so tests (and the e2e suite) read what the cluster would run.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import (
    GATEWAY_SELECTOR,
    KUBE_API_SERVICE_IPS,
    ROUTER_METRICS_PORT,
    ROUTER_PORT,
    ROUTER_SELECTOR,
    ImagePin,
    checkov_skips,
    container_security,
    image_skips,
    pod_security,
    service_host,
    tolerate,
    zone_spread,
)

POLICY = "cache_aware"
METRICS_PORT_NAME = "metrics"  # the container port the PodMonitor scrapes
# The router's own load balancing takes over from the prefix tree when the busiest replica has this
# many more in-flight requests than the idlest one AND this many times as many. The upstream default
# (64 requests) never triggers on a fleet of a few replicas that each run a few dozen sequences, and
# prefix stickiness without load feedback piles a hot prefix onto one replica.
BALANCE_ABS_THRESHOLD = 4
BALANCE_REL_THRESHOLD = 1.5
# A dead replica leaves the pool after this many failed health checks this far apart.
HEALTH_INTERVAL_S = 5
HEALTH_FAILURES = 2
KUBE_API_PORT = 443
# checkov findings accepted on the router Deployment only (tests/stacks/test_checkov.py).
CHECKOV_SKIPS = {
    "CKV_K8S_38": "the router discovers its workers through the API server: it needs its token",
    "CKV_K8S_11": "no CPU limit: CFS throttling adds latency to every request it forwards; CPU requests are set",
}


def router_name(model: str) -> str:
    """The router's Deployment, Service and ServiceAccount name for a model (its config name)."""
    return f"{model}-router"


@dataclass(frozen=True)
class RouterSpec:
    """One model's router, resolved by the stack layer."""

    model: str  # the model's config name: its Deployment and Service are named so
    namespace: str  # the models namespace (router and workers)
    gateway_namespace: str
    image: ImagePin
    worker_labels: tuple[tuple[str, str], ...]  # the labels every pod of the model carries
    worker_port: int
    request_timeout_seconds: int
    system_taint: str
    replicas: int = 2

    @property
    def name(self) -> str:
        return router_name(self.model)

    @property
    def uid(self) -> int:
        if self.image.user is None:
            raise ValueError(f"{self.image.repository}: versions.yaml must say which UID the router runs as")
        return self.image.user


def labels(model: str) -> dict[str, str]:
    """The labels of a model's router pods (the Service, PDB, policies and PodMonitor select them)."""
    return {"app.kubernetes.io/name": router_name(model), "app.kubernetes.io/part-of": "llm-serving", **ROUTER_SELECTOR}


def router_args(spec: RouterSpec) -> list[str]:
    """vllm-router's command line: pod discovery in the models namespace, metrics on all addresses."""
    return [
        "--host",
        "0.0.0.0",
        "--port",
        str(ROUTER_PORT),
        "--policy",
        POLICY,
        "--balance-abs-threshold",
        str(BALANCE_ABS_THRESHOLD),
        "--balance-rel-threshold",
        str(BALANCE_REL_THRESHOLD),
        "--service-discovery",
        "--selector",
        *(f"{k}={v}" for k, v in spec.worker_labels),
        "--service-discovery-namespace",
        spec.namespace,
        "--service-discovery-port",
        str(spec.worker_port),
        "--health-check-endpoint",
        "/health",
        "--health-check-interval-secs",
        str(HEALTH_INTERVAL_S),
        "--health-failure-threshold",
        str(HEALTH_FAILURES),
        "--request-timeout-secs",
        str(spec.request_timeout_seconds),
        "--prometheus-host",
        "0.0.0.0",
        "--prometheus-port",
        str(ROUTER_METRICS_PORT),
    ]


def render_container(spec: RouterSpec) -> dict:
    probe = lambda path, **kw: {"httpGet": {"path": path, "port": ROUTER_PORT}, "timeoutSeconds": 5, **kw}  # noqa: E731
    return {
        "name": "router",
        "image": spec.image.ref,
        "command": ["vllm-router"],
        "args": router_args(spec),
        "ports": [
            {"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"},
            {"name": METRICS_PORT_NAME, "containerPort": ROUTER_METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "livenessProbe": probe("/liveness", periodSeconds=10, failureThreshold=3),
        "readinessProbe": probe("/readiness", periodSeconds=5, failureThreshold=2),
        "securityContext": container_security(spec.uid),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def render_pod_spec(spec: RouterSpec) -> dict:
    return {
        "serviceAccountName": spec.name,
        # The router's only credential: it lists and watches the model's pods.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": pod_security(spec.uid),
        "tolerations": [tolerate(spec.system_taint)],
        "topologySpreadConstraints": zone_spread(labels(spec.model)),
        "containers": [render_container(spec)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }


def render_deployment_spec(spec: RouterSpec) -> dict:
    lab = labels(spec.model)
    return {
        "replicas": spec.replicas,
        "selector": {"matchLabels": lab},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": lab}, "spec": render_pod_spec(spec)},
    }


def role_rules() -> list[dict]:
    """Pods of the models namespace, read only: what pod discovery needs, and nothing else."""
    return [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


def _peer(ns: str, selector: dict[str, str]) -> dict:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "podSelector": {"matchLabels": selector},
    }


def render_policies(spec: RouterSpec) -> dict[str, tuple[str, dict]]:
    """name -> (namespace, NetworkPolicy spec): gateway -> router -> the model's pods, and the API server."""
    router, workers = labels(spec.model), dict(spec.worker_labels)
    tcp = lambda port: {"protocol": "TCP", "port": port}  # noqa: E731
    api = [{"ipBlock": {"cidr": cidr}} for cidr in KUBE_API_SERVICE_IPS]
    return {
        f"{spec.name}-from-gateway": (
            spec.namespace,
            {
                "podSelector": {"matchLabels": router},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [_peer(spec.gateway_namespace, GATEWAY_SELECTOR)], "ports": [tcp(ROUTER_PORT)]}],
            },
        ),
        f"{spec.name}-egress": (
            spec.namespace,
            {
                "podSelector": {"matchLabels": router},
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [_peer(spec.namespace, workers)], "ports": [tcp(spec.worker_port)]},
                    {"to": api, "ports": [tcp(KUBE_API_PORT)]},
                ],
            },
        ),
        f"{spec.model}-from-router": (
            spec.namespace,
            {
                "podSelector": {"matchLabels": workers},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [_peer(spec.namespace, router)], "ports": [tcp(spec.worker_port)]}],
            },
        ),
        f"gateway-to-{spec.name}": (
            spec.gateway_namespace,
            {
                "podSelector": {"matchLabels": GATEWAY_SELECTOR},
                "policyTypes": ["Egress"],
                "egress": [{"to": [_peer(spec.namespace, router)], "ports": [tcp(ROUTER_PORT)]}],
            },
        ),
    }


@dataclass(frozen=True)
class RouterArgs:
    spec: RouterSpec
    after: tuple[pulumi.Resource, ...] = ()


class ModelRouter(pulumi.ComponentResource):
    service_host: str

    def __init__(self, name: str, args: RouterArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:serving:ModelRouter", name, None, opts)
        spec = args.spec
        meta = {"name": spec.name, "namespace": spec.namespace, "labels": labels(spec.model)}
        child = ResourceOptions(parent=self, depends_on=list(args.after))
        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta, opts=child)
        role = k8s.rbac.v1.Role(f"{name}-role", metadata=meta, rules=role_rules(), opts=child)
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-rolebinding",
            metadata=meta,
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": spec.name},
            subjects=[{"kind": "ServiceAccount", "name": spec.name, "namespace": spec.namespace}],
            opts=ResourceOptions(parent=self, depends_on=[sa, role, *args.after]),
        )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                **meta,
                "annotations": {
                    # Ready only once a replica of the model is: that waits for a node and a model load.
                    "pulumi.com/skipAwait": "true",
                    **checkov_skips({**CHECKOV_SKIPS, **image_skips(spec.image.ref)}),
                },
            },
            spec=render_deployment_spec(spec),
            opts=ResourceOptions(parent=self, depends_on=[binding, *args.after]),
        )
        k8s.core.v1.Service(
            f"{name}-service",
            # pulumi-kubernetes would wait for ready endpoints: the router is ready once a model replica is.
            metadata={**meta, "annotations": {"pulumi.com/skipAwait": "true"}},
            spec={
                "type": "ClusterIP",
                "selector": labels(spec.model),
                "ports": [{"name": "http", "port": ROUTER_PORT, "targetPort": ROUTER_PORT, "protocol": "TCP"}],
            },
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta,
            spec={"maxUnavailable": 1, "selector": {"matchLabels": labels(spec.model)}},
            opts=child,
        )
        for pname, (ns, pspec) in render_policies(spec).items():
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{pname}", metadata={"name": pname, "namespace": ns}, spec=pspec, opts=child
            )
        self.service_host = service_host(spec.name, spec.namespace)
        self.register_outputs({"service_host": self.service_host})
