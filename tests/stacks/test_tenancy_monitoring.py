"""The monitoring namespace, judged on what the real kube-prometheus-stack chart renders with the plan's
values: Pod Security "restricted" for every pod but node exporter (its own privileged namespace), no
ClusterRole that reads Secrets except the operator's, and a default-deny NetworkPolicy whose admits
are exactly the paths the release uses (the relations tier's evaluator)."""

from __future__ import annotations

import copy

import pytest

from components import prometheus_stack as obs
from stacks import catalog
from tests.conftest import ROOT
from tests.support import helm
from tests.support import relations as R
from tests.support.policy import pod_spec_of, pss_restricted_violations

DEV = ROOT / "Pulumi.dev.yaml"
KUBE = catalog.versions().kubernetes + ".0"
READ = {"get", "list", "watch", "*"}
# The one ClusterRole allowed to read Secrets everywhere: the operator copies the credentials a
# PodMonitor/ServiceMonitor names (in the target's namespace) into the Prometheus configuration.
SECRET_READERS = {f"{obs.RELEASE}-operator"}
# What prometheus-operator puts on every container it generates (prometheus, config-reloader,
# alertmanager: pkg/prometheus/server/statefulset.go, pkg/operator/config_reloader.go,
# pkg/alertmanager/statefulset.go); the pod's securityContext comes from the custom resource.
OPERATOR_CONTAINER_SECURITY = {
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def chart_objects(values: dict, namespace: str) -> list[dict]:
    # CRDs off: PyYAML's safe loader cannot read the operator's CRDs (an enum value `=`).
    values = {**values, "crds": {"enabled": False}}
    return helm.render(obs.RELEASE, helm.chart_dir("kube-prometheus-stack", "88.5.3"), namespace, values, KUBE)


@pytest.fixture(scope="module")
def dev(plan_of):
    _, _, out = plan_of(DEV)
    r = R.load(out)
    doc = next(d for d in r.helm.values() if d.get("chart") == "kube-prometheus-stack")
    return r, doc, chart_objects(doc["values"], doc["namespace"])


def operator_pod(cr: dict) -> dict:
    """The pod the operator makes of a Prometheus/Alertmanager resource, as far as Pod Security sees it."""
    c = {"securityContext": OPERATOR_CONTAINER_SECURITY}
    return {
        "securityContext": cr["spec"].get("securityContext") or {},
        "containers": [{"name": "main", **c}, {"name": "config-reloader", **c}],
        "initContainers": [{"name": "init-config-reloader", **c}],
    }


def pods_by_namespace(objs: list[dict], default_ns: str) -> dict[str, list[tuple[str, dict]]]:
    out: dict[str, list[tuple[str, dict]]] = {}
    for o in objs:
        pod = pod_spec_of(o) if o["kind"] not in ("Prometheus", "Alertmanager") else operator_pod(o)
        if pod is not None:
            ns = o["metadata"].get("namespace", default_ns)
            out.setdefault(ns, []).append((f"{o['kind']}/{o['metadata']['name']}", pod))
    return out


def test_monitoring_pods_pass_restricted_and_node_exporter_is_apart(dev):
    r, doc, objs = dev
    ns = doc["namespace"]
    node_ns = obs.node_exporter_namespace(ns)
    pods = pods_by_namespace(objs, ns)
    assert set(pods) == {ns, node_ns}
    names = [n for n, _ in pods[ns]]
    assert {"Prometheus/kube-prometheus-stack-prometheus", "Deployment/kube-prometheus-stack-grafana"} <= set(names)
    assert len(names) == 7  # operator, Grafana, kube-state-metrics, 2 admission Jobs, Prometheus, Alertmanager
    for name, pod in pods[ns]:
        assert pss_restricted_violations(pod) == [], name
    # Negative control: node exporter would not pass, so the check above is not vacuous.
    [(name, node_pod)] = pods[node_ns]
    assert "hostNetwork is true" in pss_restricted_violations(node_pod), name
    labels = {o["metadata"]["name"]: o["metadata"].get("labels", {}) for o in r.kind("Namespace")}
    assert labels[ns] == {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "audit", "warn")}
    assert labels[node_ns] == {"pod-security.kubernetes.io/enforce": "privileged"}


def secret_readers(objs: list[dict]) -> set[str]:
    """ClusterRoles whose rules read Secrets (any name, any namespace once bound cluster-wide)."""
    return {
        o["metadata"]["name"]
        for o in objs
        if o["kind"] == "ClusterRole"
        for rule in o.get("rules") or []
        if {"secrets", "*"} & set(rule.get("resources") or []) and READ & set(rule.get("verbs") or [])
    }


def test_no_cluster_role_reads_secrets_but_the_operators(dev):
    _, _, objs = dev
    assert secret_readers(objs) == SECRET_READERS


def test_secret_reader_check_can_fail(dev):
    """Negative control: the chart's own Grafana and kube-state-metrics settings read every Secret."""
    _, doc, _ = dev
    values = copy.deepcopy(doc["values"])
    del values["grafana"]["rbac"], values["kube-state-metrics"]["collectorsExclude"]
    got = secret_readers(chart_objects(values, doc["namespace"]))
    assert got - SECRET_READERS == {f"{obs.RELEASE}-grafana-clusterrole", f"{obs.RELEASE}-kube-state-metrics"}


def test_grafana_sidecar_reads_configmaps_of_its_namespace_only(dev):
    r, doc, objs = dev
    binding = next(o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["name"].endswith("-grafana"))
    assert binding["metadata"]["namespace"] == doc["namespace"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": obs.GRAFANA_SIDECAR_ROLE,
    }
    role = next(o for o in r.kind("Role") if o["metadata"]["name"] == obs.GRAFANA_SIDECAR_ROLE)
    assert role["metadata"]["namespace"] == doc["namespace"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "watch", "list"]}]
    grafana = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-grafana"))
    for c in grafana["spec"]["template"]["spec"]["containers"]:
        if c["name"].startswith("grafana-sc-"):
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            assert env["RESOURCE"] == "configmap", c["name"]
            assert env.get("NAMESPACE", doc["namespace"]) == doc["namespace"], c["name"]  # unset: its own


# ---- NetworkPolicy: default deny and the admitted paths ---------------------------------------


def endpoint(objs: list[dict], kind: str, suffix: str, ns: str, ip: str) -> R.Endpoint:
    o = next(o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(suffix))
    labels = o["spec"]["template"]["metadata"]["labels"]
    ports = tuple(
        (p["containerPort"], p.get("name"), p.get("protocol", "TCP"))
        for c in o["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports") or []
    )
    return R.Endpoint(suffix.strip("-"), ns, labels, ip, ports)


@pytest.fixture(scope="module")
def paths(dev):
    r, doc, objs = dev
    ns = doc["namespace"]
    ev = R.PolicyEvaluator.of(r)
    ends = {
        "grafana": endpoint(objs, "Deployment", "-grafana", ns, "10.0.1.1"),
        "operator": endpoint(objs, "Deployment", "-operator", ns, "10.0.1.2"),
        "ksm": endpoint(objs, "Deployment", "-kube-state-metrics", ns, "10.0.1.3"),
        # The operator's pods carry these labels (app.kubernetes.io/name set by the operator).
        "prometheus": R.Endpoint(
            "prometheus", ns, dict(obs.PROMETHEUS_POD_LABELS), "10.0.1.4", ((9090, "web", "TCP"),)
        ),
        "alertmanager": R.Endpoint(
            "alertmanager", ns, dict(obs.ALERTMANAGER_POD_LABELS), "10.0.1.5", ((9093, "web", "TCP"),)
        ),
        "keda": R.Endpoint("keda", "keda", {"app.kubernetes.io/name": "keda-operator"}, "10.0.2.1", ()),
        "litellm": R.Endpoint(
            "litellm", "gateway", {"app.kubernetes.io/name": "litellm"}, "10.0.3.1", ((4000, "http", "TCP"),)
        ),
        # A pod whose namespace restricts nothing: only the monitoring side's policies decide.
        "intruder": R.Endpoint("intruder", "kube-system", {"app": "intruder"}, "10.0.3.2", ()),
        "node": R.Endpoint("node", None, {}, "10.0.200.1", ()),  # a node / the API server's ENI (VPC)
        # the `kubernetes` Service address, as the VPC CNI's policy agent sees a pod's API calls
        "api": R.Endpoint("api", None, {}, "10.100.0.1", ()),
        "internet": R.Endpoint("internet", None, {}, R.INTERNET_IP, ()),
        "dns": R.KUBE_DNS,
    }
    return ev, ends


@pytest.mark.parametrize(
    "src,dst,port,proto,want",
    [
        ("grafana", "prometheus", 9090, "TCP", True),
        ("keda", "prometheus", 9090, "TCP", True),
        ("intruder", "prometheus", 9090, "TCP", False),  # no other pod queries the metrics
        ("intruder", "grafana", 3000, "TCP", False),
        ("intruder", "alertmanager", 9093, "TCP", False),
        ("intruder", "ksm", 8080, "TCP", False),
        ("prometheus", "litellm", 4000, "TCP", True),
        ("prometheus", "grafana", 3000, "TCP", True),
        ("prometheus", "ksm", 8080, "TCP", True),
        ("prometheus", "node", 9100, "TCP", True),
        ("prometheus", "node", 10250, "TCP", True),
        ("prometheus", "alertmanager", 9093, "TCP", True),
        ("node", "operator", 10250, "TCP", True),  # the API server calls the admission webhook
        ("operator", "node", 443, "TCP", True),
        ("grafana", "node", 443, "TCP", True),
        ("ksm", "node", 443, "TCP", True),
        ("operator", "api", 443, "TCP", True),
        ("grafana", "api", 443, "TCP", True),
        ("ksm", "api", 443, "TCP", True),
        ("alertmanager", "api", 443, "TCP", False),
        ("grafana", "alertmanager", 9093, "TCP", True),  # Grafana's alerting view
        ("grafana", "dns", 53, "UDP", True),
        ("alertmanager", "dns", 53, "UDP", True),
        ("grafana", "internet", 443, "TCP", False),
        ("prometheus", "internet", 443, "TCP", False),
        ("operator", "internet", 443, "TCP", False),
        ("alertmanager", "node", 443, "TCP", False),  # Alertmanager needs no API access
        ("grafana", "litellm", 4000, "TCP", False),
        ("node", "grafana", 3000, "TCP", False),  # users port-forward; nothing else reaches Grafana
    ],
)
def test_monitoring_paths(paths, src, dst, port, proto, want):
    ev, ends = paths
    assert ev.admitted(ends[src], ends[dst], port, proto) is want


def test_monitoring_paths_without_default_deny_would_admit_more(dev, paths):
    """Negative control: without the namespace's policies (as before) Grafana reaches the internet and
    any pod reaches Grafana; the default deny alone refuses both."""
    r, doc, _ = dev
    _, ends = paths
    others = [p for p in r.kind("NetworkPolicy") if p["metadata"]["namespace"] != doc["namespace"]]
    ev = R.PolicyEvaluator(others, {})
    assert ev.admitted(ends["grafana"], ends["internet"], 443)
    assert ev.admitted(ends["intruder"], ends["grafana"], 3000)
    deny = [p for p in r.kind("NetworkPolicy") if p["metadata"]["name"] == "default-deny"]
    ev = R.PolicyEvaluator(others + deny, {})
    assert not ev.admitted(ends["grafana"], ends["internet"], 443)
    assert not ev.admitted(ends["intruder"], ends["grafana"], 3000)
