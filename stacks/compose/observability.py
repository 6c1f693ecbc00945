"""Observability composition: which targets are scraped, how the scraper is admitted, which rules
and dashboards ship, and whether the stack runs its own Prometheus (config `observability`).

Selectors, port names and ports are read from what the workloads render (components.vllm,
components.litellm), so a monitor cannot drift from the pods it scrapes.
"""

from __future__ import annotations

import pulumi

from components import karpenter, litellm, vllm
from components.drivers import GPU_OPERATOR_NAMESPACE
from components.keda import KEDA_NAMESPACE
from components.namespaces import DENY_ALL, DNS_EGRESS, ns_peer, tcp
from components.prometheus_stack import (
    ALERTMANAGER_POD_LABELS,
    ALERTMANAGER_PORT,
    API_CLIENT_NAMES,
    GRAFANA_POD_LABELS,
    NEURON_MONITOR_LABELS,
    NEURON_MONITOR_NAMESPACE,
    OPERATOR_POD_LABELS,
    OPERATOR_WEBHOOK_PORT,
    PROMETHEUS_POD_LABELS,
    PROMETHEUS_PORT,
    NeuronMonitorSpec,
    Observability,
    ObservabilityArgs,
    PrometheusSettings,
    ScrapeAdmission,
    ScrapeTarget,
    render_neuron_monitor_pod,
)
from components.serving_secrets import VLLM_KEY_SECRET
from components.types import (
    ACCELERATOR_RESOURCE,
    GATEWAY_SELECTOR,
    KUBE_API_SERVICE_IPS,
    POOL_LABEL,
    SYSTEM_TAINT,
    VLLM_SELECTOR,
    ServerSpec,
)
from stacks import catalog
from stacks.capacity import queries
from stacks.compose import routing
from stacks.compose.platform import Platform
from stacks.config import StackIntent

# The DCGM exporter's Service, created by the GPU operator from its own assets (not the chart):
# label app=nvidia-dcgm-exporter, port gpu-metrics (9400), in the operator's namespace.
DCGM_NAMESPACE = GPU_OPERATOR_NAMESPACE
DCGM_SELECTOR = {"app": "nvidia-dcgm-exporter"}
DCGM_PORT = "gpu-metrics"
# The Karpenter chart's Service (templates/service.yaml): labels name + instance (the release name,
# components.karpenter), port http-metrics; tests/stacks/test_observability.py renders the chart.
KARPENTER_RELEASE = "karpenter"
KARPENTER_PORT = "http-metrics"


def _port(container: dict) -> tuple[str, int]:
    """(name, number) of a container's first port: the metrics endpoint of vLLM and LiteLLM."""
    p = container["ports"][0]
    return p["name"], p["containerPort"]


def vllm_target(spec: ServerSpec, models_ns: str) -> tuple[ScrapeTarget, int]:
    port_name, port = _port(vllm.render_container(spec, api_key_secret=VLLM_KEY_SECRET))
    return ScrapeTarget(f"vllm-{spec.name}", models_ns, "PodMonitor", vllm.labels(spec), port_name), port


def gateway_target(intent: StackIntent, gateway_ns: str) -> tuple[ScrapeTarget, int]:
    """LiteLLM's /metrics needs a key (require_auth_for_metrics_endpoint): the scraper sends its own
    key, which the gateway's auth hook allows `/metrics` and nothing else (components.team_keys)."""
    pod = litellm.render_gateway_pod(
        catalog.versions().images["litellm"],
        replicas=intent.config.gateway.replicas,
        database=intent.config.gateway.database.enabled,
        system_taint=SYSTEM_TAINT,
    )
    c = pod["containers"][0]
    port_name, port = _port(c)
    secret = (litellm.METRICS_SECRET, litellm.METRICS_SECRET_KEY)
    return ScrapeTarget("litellm", gateway_ns, "PodMonitor", GATEWAY_SELECTOR, port_name, bearer_secret=secret), port


# The KEDA operator reads Prometheus for the ScaledObjects' triggers (the KEDA chart's pod label).
KEDA_OPERATOR_LABELS = {"app.kubernetes.io/name": "keda-operator"}
# Node-level scrape targets, reached at node addresses (hostNetwork or the kubelet itself):
# node exporter 9100, the kubelet and cAdvisor 10250.
NODE_SCRAPE_PORTS = (9100, 10250)
API_SERVER_PORT = 443  # the EKS control plane's ENIs in the VPC, behind the `kubernetes` Service


def _pods(labels: dict) -> dict:
    return {"podSelector": {"matchLabels": dict(labels)}}


def _scraper_policies(vpc: dict) -> tuple[tuple[str, dict], ...]:
    """Prometheus scrapes any pod of the cluster (each target namespace admits it on the metrics port
    only) and the nodes' exporters; every pod of the release exposes metrics to it."""
    prometheus = {"podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)}}
    scrapes = {
        **_pods(PROMETHEUS_POD_LABELS),
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP"}]},
            {"to": [vpc], "ports": [tcp(p) for p in NODE_SCRAPE_PORTS]},
        ],
    }
    scraped = {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [prometheus]}]}
    return (("prometheus-scrapes", scrapes), ("from-prometheus", scraped))


def _alertmanager_policy() -> tuple[str, dict]:
    """Grafana reads Alertmanager's API (its alerting view), beside Prometheus's pushes."""
    grafana = {"podSelector": {"matchLabels": dict(GRAFANA_POD_LABELS)}}
    return (
        "alertmanager-from-grafana",
        {
            **_pods(ALERTMANAGER_POD_LABELS),
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [grafana], "ports": [tcp(ALERTMANAGER_PORT)]}],
        },
    )


def _reader_policies() -> tuple[tuple[str, dict], ...]:
    """Who reads Prometheus: Grafana (and Alertmanager's API) and KEDA's operator (the triggers)."""
    grafana = {"podSelector": {"matchLabels": dict(GRAFANA_POD_LABELS)}}
    readers = {
        **_pods(PROMETHEUS_POD_LABELS),
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [grafana, ns_peer(KEDA_NAMESPACE, KEDA_OPERATOR_LABELS)], "ports": [tcp(PROMETHEUS_PORT)]}
        ],
    }
    grafana_out = {
        **_pods(GRAFANA_POD_LABELS),
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)}}], "ports": [tcp(PROMETHEUS_PORT)]},
            {
                "to": [{"podSelector": {"matchLabels": dict(ALERTMANAGER_POD_LABELS)}}],
                "ports": [tcp(ALERTMANAGER_PORT)],
            },
        ],
    }
    return (("prometheus-readers", readers), ("grafana-to-prometheus", grafana_out))


def monitoring_policies(vpc_cidr: pulumi.Input[str]) -> tuple[tuple[str, dict], ...]:
    """Our Prometheus's namespace: default deny both ways, then one admit per path the release uses.
    Port-forwarded connections (how users reach Grafana and Prometheus) enter the pod from the node
    and are not subject to NetworkPolicy. The API server's ENIs are VPC addresses, as are pods'; a pod
    reaches it through the `kubernetes` Service address, which the policy agent sees untranslated."""
    vpc = {"ipBlock": {"cidr": vpc_cidr}}
    names = {"key": "app.kubernetes.io/name", "operator": "In", "values": list(API_CLIENT_NAMES)}
    api: dict = {"podSelector": {"matchExpressions": [names]}, "policyTypes": ["Egress"]}
    service_ips = [{"ipBlock": {"cidr": cidr}} for cidr in KUBE_API_SERVICE_IPS]
    api["egress"] = [{"to": [vpc, *service_ips], "ports": [tcp(API_SERVER_PORT)]}]
    # The API server calls the operator's admission webhook (PrometheusRule, AlertmanagerConfig).
    webhook: dict = {**_pods(OPERATOR_POD_LABELS), "policyTypes": ["Ingress"]}
    webhook["ingress"] = [{"from": [vpc], "ports": [tcp(OPERATOR_WEBHOOK_PORT)]}]
    return (
        ("default-deny", DENY_ALL),
        ("dns", DNS_EGRESS),
        ("api-server", api),
        *_scraper_policies(vpc),
        *_reader_policies(),
        _alertmanager_policy(),
        ("operator-webhook", webhook),
    )


def neuron_admission(intent: StackIntent) -> list[ScrapeAdmission]:
    """kube-system has no default deny: the monitor's own policy admits the scraper and nothing else."""
    nm = neuron_monitor(intent)
    if nm is None:
        return []
    _, port = _port(render_neuron_monitor_pod(nm)["containers"][0])
    return [ScrapeAdmission("neuron-monitor", NEURON_MONITOR_NAMESPACE, NEURON_MONITOR_LABELS, port, deny_egress=True)]


def platform_targets(intent: StackIntent, namespace: str) -> list[ScrapeTarget]:
    """Cluster-wide exporters the platform stack runs (team stacks leave them to it)."""
    if intent.is_team_stack:
        return []
    out = [
        ScrapeTarget(
            "karpenter",
            namespace,
            "ServiceMonitor",
            {"app.kubernetes.io/name": "karpenter", "app.kubernetes.io/instance": KARPENTER_RELEASE},
            KARPENTER_PORT,
            target_namespace=karpenter.NAMESPACE,
        )
    ]
    nm = neuron_monitor(intent)
    if nm is not None:
        port_name, _ = _port(render_neuron_monitor_pod(nm)["containers"][0])
        out.append(
            ScrapeTarget(
                "neuron-monitor",
                namespace,
                "PodMonitor",
                NEURON_MONITOR_LABELS,
                port_name,
                target_namespace=NEURON_MONITOR_NAMESPACE,
            )
        )
    if any(p.spec.accelerator == "nvidia" for p in intent.pools.values()):
        out.append(
            ScrapeTarget(
                "dcgm-exporter",
                namespace,
                "ServiceMonitor",
                DCGM_SELECTOR,
                DCGM_PORT,
                target_namespace=DCGM_NAMESPACE,
            )
        )
    return out


def neuron_monitor(intent: StackIntent) -> NeuronMonitorSpec | None:
    """neuron-monitor on the Neuron pools of a platform stack; None without one."""
    pools = tuple(n for n, p in intent.pools.items() if p.spec.accelerator == "neuron")
    if not pools or intent.is_team_stack:
        return None
    return NeuronMonitorSpec(
        image=catalog.versions().images["neuron-monitor"],
        pools=pools,
        pool_label=POOL_LABEL,
        taint_key=ACCELERATOR_RESOURCE["neuron"],
    )


def model_targets(intent: StackIntent, specs: dict[str, ServerSpec], models_ns: str) -> list[queries.ModelTarget]:
    o = intent.config.observability
    return [
        queries.ModelTarget(
            served_name=s.served_name,
            deployment=s.name,
            max_replicas=intent.models[n].replicas_max,
            ttft_p95_seconds=o.ttftP95SecondsByModel.get(n, o.ttftP95Seconds),
            startup_budget_seconds=s.startup_budget_seconds,
            scrape_job=f"{models_ns}/vllm-{s.name}",
        )
        for n, s in specs.items()
    ]


def prometheus_settings(intent: StackIntent, plat: Platform) -> PrometheusSettings | None:
    """Our own kube-prometheus-stack, unless the user brings a Prometheus or this is a team stack."""
    o = intent.config.observability
    if o.prometheusUrl is not None or intent.is_team_stack or plat.system_nodes is None:
        return None
    sn = plat.system_nodes
    return PrometheusSettings(
        chart=catalog.versions().chart("kube-prometheus-stack"),
        node_selector={sn.label_key: sn.label_value},
        system_taint=sn.taint_key,
        storage_class=plat.storage.ebs_storage_class,
        storage_gib=o.storageGiB,
        retention_days=o.retentionDays,
        retention_size_gib=o.retention_size_gib,
    )


def build(
    intent: StackIntent,
    plat: Platform,
    specs: dict[str, ServerSpec],
    namespaces: tuple[str, str],
    after: tuple[pulumi.Resource, ...],
    opts: pulumi.ResourceOptions,
) -> Observability | None:
    o = intent.config.observability
    if not o.enabled:
        return None
    models_ns, gateway_ns = namespaces
    # A team stack's rules and dashboards sit beside the platform's in the shared Prometheus/Grafana.
    prefix = f"{intent.config.team.name}-" if intent.config.team is not None else ""
    targets, admissions = [], []
    vllm_port = None
    for spec in specs.values():
        t, vllm_port = vllm_target(spec, models_ns)
        targets.append(t)
    if vllm_port is not None:
        admissions.append(ScrapeAdmission("vllm-from-prometheus", models_ns, VLLM_SELECTOR, vllm_port))
    gw, gw_port = gateway_target(intent, gateway_ns)
    targets.append(gw)
    admissions.append(ScrapeAdmission("litellm-from-prometheus", gateway_ns, GATEWAY_SELECTOR, gw_port))
    targets += platform_targets(intent, o.namespace)
    router_targets, router_admissions = routing.scrape(intent, specs, models_ns)
    targets += router_targets
    admissions += router_admissions
    admissions += neuron_admission(intent)
    prom = prometheus_settings(intent, plat)
    return Observability(
        "observability",
        ObservabilityArgs(
            namespace=o.namespace,
            targets=tuple(targets),
            admissions=tuple(admissions),
            rule_groups=tuple(queries.rule_groups(model_targets(intent, specs, models_ns), namespaces)),
            dashboards=queries.dashboards(namespaces, prefix),
            rule_name=f"{prefix}llm-serving",
            prometheus=prom,
            neuron_monitor=neuron_monitor(intent),
            # Prometheus's claim is deleted (with its namespace) before the EBS CSI add-on on destroy.
            after=(*after, *(plat.storage.ready if prom is not None else ())),
            namespace_policies=monitoring_policies(plat.vpc_cidr),
        ),
        opts=opts,
    )
