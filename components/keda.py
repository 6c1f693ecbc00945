"""KEDA (operator, metrics API server, admission webhooks) on the system nodes, and one ScaledObject per
model: an HPA on vLLM's running/waiting requests from Prometheus, with cron floors and a fallback.

Pure renderers (`keda_values`, `render_scaled_object_spec`) carry the decisions, so unit tests and the
e2e suite read exactly what the cluster would run.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import ChartPin, tolerate

KEDA_NAMESPACE = "keda"
KEDA_RELEASE = "keda"


@dataclass(frozen=True)
class Floor:
    """A replica floor between two cron times (KEDA cron trigger)."""

    timezone: str
    start: str
    end: str
    replicas: int


@dataclass(frozen=True)
class ScalingSpec:
    """One model's autoscaling, resolved by the stack layer (stacks/capacity/scaling.py)."""

    name: str
    min_replicas: int
    max_replicas: int
    server_address: str
    # (trigger name, PromQL returning one sample, per-replica threshold, activation threshold)
    queries: tuple[tuple[str, str, float, float], ...]
    scale_up_window_s: int
    scale_down_window_s: int
    scale_down_pods_per_minute: int
    cooldown_s: int
    polling_interval_s: int
    fallback_replicas: int
    fallback_failures: int
    floors: tuple[Floor, ...] = ()


def keda_values(system_taint: str, node_selector: dict[str, str]) -> dict:
    """Every KEDA pod (operator, metrics API server, webhooks) on the system nodes: the chart's
    top-level tolerations and nodeSelector apply to all three Deployments."""
    return {
        "crds": {"install": True},
        "tolerations": [tolerate(system_taint)],
        "nodeSelector": dict(node_selector),
        # The chart's default injects Service env vars; nothing here reads them.
        "enableServiceLinks": False,
    }


def _number(x: float) -> str:
    """KEDA reads thresholds from strings; integral values without a trailing '.0'."""
    return str(int(x)) if float(x).is_integer() else str(x)


def render_triggers(spec: ScalingSpec) -> list[dict]:
    triggers = [
        {
            "type": "prometheus",
            "name": name,
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": spec.server_address,
                "query": query,
                "threshold": _number(threshold),
                "activationThreshold": _number(activation),
                # No replica yet (or none exporting): an empty result is 0, not an error.
                "ignoreNullValues": "true",
            },
        }
        for name, query, threshold, activation in spec.queries
    ]
    for i, f in enumerate(spec.floors):
        triggers.append(
            {
                "type": "cron",
                "name": f"floor-{i}",
                "metadata": {
                    "timezone": f.timezone,
                    "start": f.start,
                    "end": f.end,
                    "desiredReplicas": str(f.replicas),
                },
            }
        )
    return triggers


def render_scaled_object_spec(spec: ScalingSpec, *, deployment: str) -> dict:
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicaCount": spec.min_replicas,
        "maxReplicaCount": spec.max_replicas,
        "pollingInterval": spec.polling_interval_s,
        "cooldownPeriod": spec.cooldown_s,
        # Prometheus unreachable: hold at least `replicas`, never scale down blind.
        "fallback": {
            "failureThreshold": spec.fallback_failures,
            "replicas": spec.fallback_replicas,
            "behavior": "currentReplicasIfHigher",
        },
        "advanced": {
            "horizontalPodAutoscalerConfig": {
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": spec.scale_up_window_s},
                    "scaleDown": {
                        "stabilizationWindowSeconds": spec.scale_down_window_s,
                        "policies": [{"type": "Pods", "value": spec.scale_down_pods_per_minute, "periodSeconds": 60}],
                    },
                }
            }
        },
        "triggers": render_triggers(spec),
    }


@dataclass(frozen=True)
class KedaArgs:
    chart: ChartPin
    system_taint: str
    node_selector: dict[str, str]
    after: tuple[pulumi.Resource, ...] = ()


class Keda(pulumi.ComponentResource):
    """The KEDA release; ScaledObjects depend on `release` (it installs their CRD)."""

    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: KedaArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:Keda", name, None, opts)
        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": KEDA_NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
            opts=ResourceOptions(parent=self),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name=KEDA_RELEASE,
            chart=args.chart.chart,
            version=args.chart.version,
            repository_opts={"repo": args.chart.repo},
            namespace=KEDA_NAMESPACE,
            values=keda_values(args.system_taint, args.node_selector),
            # Controllers on the system nodes: the node group must exist first.
            opts=ResourceOptions(parent=self, depends_on=[ns, *args.after]),
        )
        self.register_outputs({})


@dataclass(frozen=True)
class ModelAutoscalerArgs:
    spec: ScalingSpec
    namespace: str
    deployment: pulumi.Input[str]  # the scaled Deployment's metadata.name (from the VllmServer)
    keda: pulumi.Resource | None  # the KEDA release (CRD); None on team stacks (the platform's KEDA)
    after: tuple[pulumi.Resource, ...] = ()


class ModelAutoscaler(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelAutoscalerArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:serving:ModelAutoscaler", name, None, opts)
        spec = pulumi.Output.from_input(args.deployment).apply(
            lambda d: render_scaled_object_spec(args.spec, deployment=d)
        )
        # The CR needs its CRD, which the KEDA release installs.
        deps = [*args.after, *([args.keda] if args.keda is not None else [])]
        k8s.apiextensions.CustomResource(
            f"{name}-scaledobject",
            api_version="keda.sh/v1alpha1",
            kind="ScaledObject",
            metadata={
                "name": args.spec.name,
                "namespace": args.namespace,
                "labels": {"app.kubernetes.io/name": args.spec.name, "app.kubernetes.io/part-of": "llm-serving"},
            },
            spec=spec,
            opts=ResourceOptions(parent=self, depends_on=deps),
        )
        self.register_outputs({})
