"""Observability: kube-prometheus-stack (Prometheus operator, Prometheus, Alertmanager, Grafana,
kube-state-metrics, node exporter) on the system nodes, or a Prometheus the user brings; the
PodMonitors/ServiceMonitors of what the stack runs, its alert rules, its Grafana dashboards
(sidecar ConfigMaps) and the NetworkPolicies that admit the scraper to the metrics ports only.

Every target, rule and dashboard is a record handed in by the stack layer; this module renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import ChartPin, ImagePin, checkov_skips, image_skips, tolerate

RELEASE = "kube-prometheus-stack"
# The Prometheus operator labels every Prometheus server pod it runs with these (ours, or a
# user's operator-managed Prometheus): the scraper NetworkPolicies admit exactly these pods.
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
# The Grafana dashboards sidecar loads every ConfigMap labelled so (kube-prometheus-stack's default).
DASHBOARD_LABEL = ("grafana_dashboard", "1")
# Grafana's sidecars read ConfigMaps of Grafana's own namespace only (dashboards and the datasource
# live there): a Role of ours, not the chart's, whose rule would also read every Secret there.
GRAFANA_SIDECAR_ROLE = "grafana-sidecar-configmaps"
# Pods of the release, by the labels the chart and the operator give them (rendered by the real chart
# in tests/stacks/test_tenancy_monitoring.py).
GRAFANA_POD_LABELS = {"app.kubernetes.io/name": "grafana"}
ALERTMANAGER_POD_LABELS = {"app.kubernetes.io/name": "alertmanager"}
OPERATOR_POD_LABELS = {"app": f"{RELEASE}-operator"}
# The operator's and the admission Jobs' pods (they share this name), kube-state-metrics, Prometheus
# (service discovery) and Grafana's sidecars (ConfigMap watches) call the API server.
API_CLIENT_NAMES = (
    "prometheus",
    "grafana",
    "kube-state-metrics",
    f"{RELEASE}-prometheus-operator",
)
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
OPERATOR_WEBHOOK_PORT = 10250  # the operator's `https` container port (its Service's targetPort)
# node exporter needs the host's network, PIDs and root filesystem (Pod Security "privileged"): it
# runs in a namespace of its own so the rest of the release can run under "restricted".
NODE_EXPORTER_SUFFIX = "-node-exporter"
RESTRICTED = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "audit", "warn")}
PRIVILEGED = {"pod-security.kubernetes.io/enforce": "privileged"}
MONITORING_API = "monitoring.coreos.com/v1"
SCRAPE_INTERVAL = "15s"
# EKS runs the control plane: these scrapers (and their default rules) would only ever alert "down".
MANAGED_CONTROL_PLANE = ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy")


@dataclass(frozen=True)
class ScrapeTarget:
    """One PodMonitor/ServiceMonitor. `namespace` holds the monitor (and the bearer-token Secret);
    `target_namespace`, when set, is where the pods/Services are (else the same namespace)."""

    name: str
    namespace: str
    kind: Literal["PodMonitor", "ServiceMonitor"]
    selector: dict[str, str]
    port_name: str
    path: str = "/metrics"
    target_namespace: str | None = None
    bearer_secret: tuple[str, str] | None = None  # (Secret name, key)


@dataclass(frozen=True)
class ScrapeAdmission:
    """A NetworkPolicy in a default-deny namespace: the scraper may reach `port` of these pods."""

    name: str
    namespace: str
    pod_selector: dict[str, str]
    port: int
    deny_egress: bool = False  # the pods need no connection of their own (the namespace has no default deny)


@dataclass(frozen=True)
class PrometheusSettings:
    """Our own Prometheus (kube-prometheus-stack): where it runs and what it keeps."""

    chart: ChartPin
    node_selector: dict[str, str]
    system_taint: str
    storage_class: pulumi.Input[str]
    storage_gib: int
    retention_days: int
    retention_size_gib: int


# neuron-monitor (aws-neuron-tools) reports NeuronCore use and device memory as JSON; the image's
# neuron-monitor-prometheus.py serves it as Prometheus metrics on the port given by --port.
NEURON_MONITOR_PORT = 9010
NEURON_MONITOR_LABELS = {"app.kubernetes.io/name": "neuron-monitor", "app.kubernetes.io/part-of": "llm-serving"}
NEURON_MONITOR_NAMESPACE = "kube-system"
# A constant program: no config value reaches the shell.
NEURON_MONITOR_COMMAND = f"neuron-monitor | neuron-monitor-prometheus.py --port {NEURON_MONITOR_PORT}"
NEURON_MONITOR_CHECKOV = {
    "CKV_K8S_16": "neuron-monitor reads the Neuron devices and driver counters of its node (AWS runs it privileged)",
    "CKV_K8S_20": "privileged container (the Neuron device files); see CKV_K8S_16",
    "CKV_K8S_23": "the image runs as root to read /dev/neuron*; see CKV_K8S_16",
    "CKV_K8S_40": "the image runs as root to read /dev/neuron*; see CKV_K8S_16",
    "CKV_K8S_22": "the Neuron tools write runtime state under /tmp and /var of the image",
    "CKV_K8S_28": "privileged container; see CKV_K8S_16",
    "CKV_K8S_37": "privileged container; see CKV_K8S_16",
    "CKV_K8S_31": "privileged container; seccomp does not apply",
}


@dataclass(frozen=True)
class NeuronMonitorSpec:
    """One neuron-monitor pod on every node of the Neuron pools."""

    image: ImagePin
    pools: tuple[str, ...]
    pool_label: str
    taint_key: str


def render_neuron_monitor_pod(m: NeuronMonitorSpec) -> dict:
    term = {"matchExpressions": [{"key": m.pool_label, "operator": "In", "values": list(m.pools)}]}
    return {
        "serviceAccountName": "neuron-monitor",
        "automountServiceAccountToken": False,
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}},
        "tolerations": [tolerate(m.taint_key)],
        "containers": [
            {
                "name": "neuron-monitor",
                "image": m.image.ref,
                "command": ["/bin/sh", "-c", NEURON_MONITOR_COMMAND],
                "ports": [{"name": "metrics", "containerPort": NEURON_MONITOR_PORT, "protocol": "TCP"}],
                "resources": {
                    "requests": {"cpu": "50m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                },
                "securityContext": {"privileged": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "readinessProbe": {"tcpSocket": {"port": NEURON_MONITOR_PORT}, "periodSeconds": 30},
                "livenessProbe": {
                    "tcpSocket": {"port": NEURON_MONITOR_PORT},
                    "periodSeconds": 30,
                    "failureThreshold": 5,
                },
            }
        ],
    }


@dataclass(frozen=True)
class ObservabilityArgs:
    namespace: str  # where Prometheus runs (ours or the user's); rules and dashboards go here
    targets: tuple[ScrapeTarget, ...]
    admissions: tuple[ScrapeAdmission, ...]
    rule_groups: tuple[dict, ...]
    dashboards: dict[str, str] = field(default_factory=dict)  # uid -> dashboard JSON
    prometheus: PrometheusSettings | None = None  # None: bring-your-own Prometheus (no chart)
    neuron_monitor: NeuronMonitorSpec | None = None  # only when the stack has a Neuron pool
    rule_name: str = "llm-serving"  # the PrometheusRule's name (team stacks: prefixed)
    after: tuple[pulumi.Resource, ...] = ()
    # NetworkPolicies of our own Prometheus's namespace, name -> spec (default deny and its admits).
    namespace_policies: tuple[tuple[str, dict], ...] = ()


# Requests for every pod the chart puts on the system nodes (the chart sets none): what the scheduler
# reserves for them, and what the plan's system-capacity check counts. Prometheus's memory grows with
# active series; a few models and the platform's exporters stay well under 2 GiB.
REQUESTS = {
    "prometheus": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    "alertmanager": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    "grafana": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    "grafana-sidecar": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    "kube-state-metrics": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    "operator": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    "node-exporter": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
}


def node_exporter_namespace(namespace: str) -> str:
    return f"{namespace}{NODE_EXPORTER_SUFFIX}"


def render_grafana_sidecar_role() -> dict:
    """Role rules: read ConfigMaps (dashboards, datasources) in Grafana's namespace, nothing else."""
    return {"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "watch", "list"]}]}


def grafana_values(system: dict, namespace: str) -> dict:
    """Grafana's sidecars read ConfigMaps in Grafana's namespace only, through our Role."""
    return {
        **system,
        "resources": REQUESTS["grafana"],
        "sidecar": {
            "resources": REQUESTS["grafana-sidecar"],
            "dashboards": {
                "enabled": True,
                "label": DASHBOARD_LABEL[0],
                "labelValue": DASHBOARD_LABEL[1],
                "resource": "configmap",
                # The chart's parent sets ALL; the dashboards of every stack are ConfigMaps here.
                "searchNamespace": namespace,
            },
            "datasources": {"resource": "configmap"},
        },
        # `helm test`'s pod: never run by the deploy; off, so nothing in the release is unused.
        "testFramework": {"enabled": False},
        # Roles in Grafana's namespace only, bound to our ConfigMap-only Role (no ClusterRole).
        "rbac": {"namespaced": True, "useExistingRole": GRAFANA_SIDECAR_ROLE},
    }


def stack_values(p: PrometheusSettings, storage_class: str, namespace: str) -> dict:
    """kube-prometheus-stack values: every controller on the system nodes, Prometheus on a gp3 volume
    with time and size retention, every PodMonitor/ServiceMonitor/PrometheusRule in the cluster
    selected (not only those labelled with the release), the dashboards sidecar on."""
    system = {"nodeSelector": dict(p.node_selector), "tolerations": [tolerate(p.system_taint)]}
    with_requests = lambda pod: {**system, "resources": REQUESTS[pod]}  # noqa: E731
    storage = {
        "volumeClaimTemplate": {
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{p.storage_gib}Gi"}},
            }
        }
    }
    return {
        "crds": {"enabled": True},
        **{c: {"enabled": False} for c in MANAGED_CONTROL_PLANE},
        "defaultRules": {
            "rules": {
                "etcd": False,
                "kubeControllerManager": False,
                "kubeSchedulerAlerting": False,
                "kubeSchedulerRecording": False,
                "kubeProxy": False,
            }
        },
        "prometheusOperator": {**with_requests("operator"), "admissionWebhooks": {"patch": dict(system)}},
        "prometheus": {
            "prometheusSpec": {
                **system,
                "resources": REQUESTS["prometheus"],
                "retention": f"{p.retention_days}d",
                "retentionSize": f"{p.retention_size_gib}GB",
                "storageSpec": storage,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
            }
        },
        "alertmanager": {"alertmanagerSpec": with_requests("alertmanager")},
        "grafana": grafana_values(system, namespace),
        # No Secret metrics: the collector would need a ClusterRole that lists every Secret's data.
        "kube-state-metrics": {**with_requests("kube-state-metrics"), "collectorsExclude": ["secrets"]},
        # Node metrics from every node, accelerator pools included (they are tainted).
        "prometheus-node-exporter": {
            "tolerations": [{"operator": "Exists"}],
            "resources": REQUESTS["node-exporter"],
            "namespaceOverride": node_exporter_namespace(namespace),
        },
    }


def render_monitor(t: ScrapeTarget) -> dict:
    """spec of a PodMonitor or ServiceMonitor (monitoring.coreos.com/v1)."""
    endpoint: dict = {"port": t.port_name, "path": t.path, "interval": SCRAPE_INTERVAL}
    if t.bearer_secret is not None:
        name, key = t.bearer_secret
        endpoint["authorization"] = {"type": "Bearer", "credentials": {"name": name, "key": key}}
    spec: dict = {"selector": {"matchLabels": dict(t.selector)}}
    spec["podMetricsEndpoints" if t.kind == "PodMonitor" else "endpoints"] = [endpoint]
    if t.target_namespace is not None:
        spec["namespaceSelector"] = {"matchNames": [t.target_namespace]}
    return spec


def render_admission(a: ScrapeAdmission, scraper_namespace: str) -> dict:
    """NetworkPolicy spec: ingress to the metrics port from the Prometheus pods of that namespace."""
    return {
        "podSelector": {"matchLabels": dict(a.pod_selector)},
        "policyTypes": ["Ingress", "Egress"] if a.deny_egress else ["Ingress"],
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": scraper_namespace}},
                        "podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": a.port}],
            }
        ],
    }


class Observability(pulumi.ComponentResource):
    def __init__(self, name: str, args: ObservabilityArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:Observability", name, None, opts)
        after = list(args.after)
        self._policies = args.namespace_policies
        prom = args.prometheus
        crds = self._prometheus(name, prom, args.namespace, after) if prom is not None else []
        # Monitors and rules are custom resources: their CRDs come with the release (or the user's operator).
        self._monitors_rules_dashboards(name, args, ResourceOptions(parent=self, depends_on=[*crds, *after]))
        if args.neuron_monitor is not None:
            self._neuron_monitor(name, args.neuron_monitor, after)
        for a in args.admissions:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{a.name}",
                metadata={"name": a.name, "namespace": a.namespace},
                spec=render_admission(a, args.namespace),
                opts=ResourceOptions(parent=self, depends_on=after),
            )
        self.register_outputs({})

    def _prometheus(
        self, name: str, p: PrometheusSettings, namespace: str, after: list[pulumi.Resource]
    ) -> list[pulumi.Resource]:
        """The namespace and the kube-prometheus-stack release (which brings the monitoring CRDs)."""
        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": namespace, "labels": dict(RESTRICTED)},
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        node_ns = k8s.core.v1.Namespace(
            f"{name}-node-exporter-ns",
            # node exporter reads the host's /proc, /sys and / with hostNetwork and hostPID.
            metadata={"name": node_exporter_namespace(namespace), "labels": dict(PRIVILEGED)},
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        role = k8s.rbac.v1.Role(
            f"{name}-grafana-sidecar",
            metadata={"name": GRAFANA_SIDECAR_ROLE, "namespace": namespace},
            **render_grafana_sidecar_role(),
            opts=ResourceOptions(parent=self, depends_on=[ns]),
        )
        for pol_name, spec in self._policies:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{pol_name}",
                metadata={"name": pol_name, "namespace": namespace},
                spec=spec,
                opts=ResourceOptions(parent=self, depends_on=[ns]),
            )
        release = k8s.helm.v3.Release(
            f"{name}-release",
            name=RELEASE,
            chart=p.chart.chart,
            version=p.chart.version,
            repository_opts={"repo": p.chart.repo},
            namespace=namespace,
            values=pulumi.Output.from_input(p.storage_class).apply(lambda sc: stack_values(p, sc, namespace)),
            opts=ResourceOptions(parent=self, depends_on=[ns, node_ns, role, *after]),
        )
        return [release]

    def _monitors_rules_dashboards(self, name: str, args: ObservabilityArgs, cr_opts: ResourceOptions) -> None:
        for t in args.targets:
            k8s.apiextensions.CustomResource(
                f"{name}-{t.name}",
                api_version=MONITORING_API,
                kind=t.kind,
                metadata={"name": t.name, "namespace": t.namespace},
                spec=render_monitor(t),
                opts=cr_opts,
            )
        if args.rule_groups:
            k8s.apiextensions.CustomResource(
                f"{name}-rules",
                api_version=MONITORING_API,
                kind="PrometheusRule",
                metadata={"name": args.rule_name, "namespace": args.namespace},
                spec={"groups": list(args.rule_groups)},
                opts=cr_opts,
            )
        for uid, text in args.dashboards.items():
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{uid}",
                metadata={"name": f"dashboard-{uid}", "namespace": args.namespace, "labels": dict([DASHBOARD_LABEL])},
                data={f"{uid}.json": text},
                opts=cr_opts,
            )

    def _neuron_monitor(self, name: str, m: NeuronMonitorSpec, after: list[pulumi.Resource]) -> None:
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-neuron-monitor-sa",
            metadata={"name": "neuron-monitor", "namespace": NEURON_MONITOR_NAMESPACE},
            automount_service_account_token=False,
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        k8s.apps.v1.DaemonSet(
            f"{name}-neuron-monitor",
            metadata={
                "name": "neuron-monitor",
                "namespace": NEURON_MONITOR_NAMESPACE,
                "labels": dict(NEURON_MONITOR_LABELS),
                "annotations": checkov_skips({**NEURON_MONITOR_CHECKOV, **image_skips(m.image.ref)}),
            },
            spec={
                "selector": {"matchLabels": dict(NEURON_MONITOR_LABELS)},
                "template": {
                    "metadata": {"labels": dict(NEURON_MONITOR_LABELS)},
                    "spec": render_neuron_monitor_pod(m),
                },
            },
            opts=ResourceOptions(parent=self, depends_on=[sa, *after]),
        )
