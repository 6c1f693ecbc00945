"""Relations written inside config text, followed the way their readers follow them:

- the front door's nginx.conf: every `proxy_pass` names a defined `upstream` (or a host:port), and every
  upstream `server host:port` is a Service port of the stack, on pods that listen there and that the
  NetworkPolicies let the front door reach;
- KEDA's `serverAddress`: a Service of the Prometheus the stack deploys (the kube-prometheus-stack parent
  chart, rendered by helm) with that port, selecting the pods the Prometheus operator makes;
- PodMonitor / ServiceMonitor endpoints: each selects pods, and its port exists on every one of them
  (the operator silently drops an endpoint whose port matches nothing);
- volume claims: the access mode allows every pod that mounts the claim at once (replicas spread over
  nodes, Jobs beside servers, the surge pod of a rolling update).

LiteLLM's `api_base` and base-URL env vars are followed by tests/stacks/test_relations.py (`urls`).
Each check has a negative control: one mutated object, the check reports it.
"""

from __future__ import annotations

import re
import shutil
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stacks.yamlio import dump_yaml, load_yaml
from tests.stacks.test_relations import DEV, SEED000, STACKS, Stack, mutated, obj, stack
from tests.support import helm
from tests.support import relations as R

UPSTREAM = re.compile(r"upstream\s+(\S+)\s*\{(.*?)\}", re.S)
SERVER = re.compile(r"^\s*server\s+(\S+?)(?::(\d+))?(\s[^;]*)?;\s*$", re.M)
PROXY_PASS = re.compile(r"proxy_pass\s+(\S+);")
KPS_RELEASE = "kube-prometheus-stack"
# The labels the Prometheus operator puts on the pods of a `Prometheus` object named <n>
# (prometheus-operator pkg/prometheus/statefulset.go, shard 0); a Service must select within them.
OPERATOR_POD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "operator.prometheus.io/name",
    "prometheus",
)


def operator_pod_labels(name: str) -> dict:
    return {
        "app.kubernetes.io/name": "prometheus",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "prometheus-operator",
        "operator.prometheus.io/name": name,
        "operator.prometheus.io/shard": "0",
        "prometheus": name,
    }


# ---- nginx ---------------------------------------------------------------------------------------------------


def nginx_confs(r: R.Rendered) -> list[tuple[dict, str, str]]:
    """(ConfigMap, key, text) of every nginx.conf in the plan."""
    return [
        (cm, key, text)
        for cm in r.kind("ConfigMap")
        for key, text in (cm.get("data") or {}).items()
        if isinstance(text, str) and "upstream " in text and "proxy_pass" in text
    ]


def readers_of(r: R.Rendered, cm: dict) -> list[R.Workload]:
    return [
        w
        for w in R.workloads(r)
        if w.namespace == R.namespace_of(cm)
        and any((v.get("configMap") or {}).get("name") == R.name_of(cm) for v in w.pod.get("volumes") or [])
    ]


def check_nginx(r: R.Rendered, cidr: str) -> list[R.Problem]:
    out = []
    ev = R.PolicyEvaluator.of(r)
    for cm, key, text in nginx_confs(r):
        subject = f"ConfigMap/{R.namespace_of(cm)}/{R.name_of(cm)}/{key}"
        upstreams = {m.group(1): SERVER.findall(m.group(2)) for m in UPSTREAM.finditer(text)}
        readers = readers_of(r, cm)
        if not readers:
            out.append(R.Problem("nginx", subject, "no workload mounts this config"))
        for url in PROXY_PASS.findall(text):
            host = urlsplit(url).netloc
            if host not in upstreams and not re.fullmatch(r"[\w.-]+:\d+", host):
                out.append(R.Problem("nginx", subject, f"proxy_pass {url}: no upstream {host!r}, and no host:port"))
        for name, servers in upstreams.items():
            if not servers:
                out.append(R.Problem("nginx", subject, f"upstream {name} has no server"))
            for host, port, _params in servers:
                for w in readers:
                    probs, _ = R.trace_url(r, f"http://{host}:{port or 80}/", w, ev, cidr)
                    out += [R.Problem("nginx", subject, f"upstream {name}: {p}") for p in probs]
    return out


# ---- KEDA's serverAddress -------------------------------------------------------------------------------------


@cache
def prometheus_objects(values_yaml: str, namespace: str, tmp: str) -> tuple[dict, ...]:
    """The kube-prometheus-stack parent chart's objects for these values (subcharts and CRDs off, as in
    tests/stacks/test_observability.py)."""
    from stacks import catalog

    src = helm.chart_dir(KPS_RELEASE, catalog.versions().chart(KPS_RELEASE).version)
    dst = Path(tmp) / src.name
    if not dst.exists():
        shutil.copytree(src, dst)
        meta = load_yaml((dst / "Chart.yaml").read_text())
        meta["dependencies"] = [d for d in meta["dependencies"] if (dst / "charts" / d["name"]).is_dir()]
        (dst / "Chart.yaml").write_text(dump_yaml(meta))
    values = load_yaml(values_yaml)
    for k in ("grafana", "nodeExporter", "kubeStateMetrics", "crds"):
        values[k] = {**values.get(k, {}), "enabled": False}
    kube = catalog.versions().kubernetes + ".0"
    return tuple(helm.render(KPS_RELEASE, dst, namespace, values, kube))


def check_keda(s: Stack, tmp: str) -> list[R.Problem]:
    """Each prometheus trigger's serverAddress: a Service of the platform's Prometheus, its port, the
    operator's Prometheus pods behind it, and no policy between KEDA and them that refuses the call."""
    out = []
    release = s.platform.helm.get(KPS_RELEASE)
    for so in s.r.kind("ScaledObject"):
        for t in so["spec"]["triggers"]:
            if t["type"] != "prometheus":
                continue
            subject = f"ScaledObject/{R.namespace_of(so)}/{R.name_of(so)}/{t.get('name')}"
            u = urlsplit(t["metadata"]["serverAddress"])
            if s.intent.config.observability.prometheusUrl or not (u.hostname or "").endswith(".svc.cluster.local"):
                continue  # a Prometheus the user brings (observability.prometheusUrl): not ours to resolve
            if release is None:
                out.append(R.Problem("keda", subject, f"{u.hostname}: the platform deploys no Prometheus"))
                continue
            objs = prometheus_objects(dump_yaml(release["values"]), release["namespace"], tmp)
            chart = R.Rendered("kps", list(objs))
            out += [R.Problem("keda", subject, p) for p in _prometheus_service(chart, u)]
    return out


def _prometheus_service(chart: R.Rendered, u) -> list[str]:
    svc = R.resolve_service(chart, u.hostname or "", "keda")
    if svc is None:
        return [f"{u.hostname}: no such Service in the Prometheus release"]
    if not any(p["port"] == u.port for p in svc["spec"].get("ports") or []):
        return [f"{u.hostname}: Service {R.name_of(svc)} has no port {u.port}"]
    proms = [p for p in chart.kind("Prometheus") if R.namespace_of(p) == R.namespace_of(svc)]
    if not any(R.map_selects(svc["spec"].get("selector"), operator_pod_labels(R.name_of(p))) for p in proms):
        return [f"{u.hostname}: Service {R.name_of(svc)} selects no Prometheus pods"]
    return []


# ---- monitors ------------------------------------------------------------------------------------------------


def check_monitors(r: R.Rendered) -> list[R.Problem]:
    out = []
    ws = R.workloads(r)
    for pm in r.kind("PodMonitor"):
        spec, subject = pm["spec"], f"PodMonitor/{R.namespace_of(pm)}/{R.name_of(pm)}"
        names = (spec.get("namespaceSelector") or {}).get("matchNames") or [R.namespace_of(pm)]
        pods = [w for w in ws if w.namespace in names and R.selects(spec.get("selector"), w.labels)]
        if not pods:
            out.append(R.Problem("monitors", subject, "selects no pods"))
        for ep in spec.get("podMetricsEndpoints") or []:
            for w in pods:
                if not any(ep.get("port") in (n, p) for p, n, _ in w.ports()):
                    out.append(R.Problem("monitors", subject, f"{w.name} has no port {ep.get('port')!r}"))
    for sm in r.kind("ServiceMonitor"):
        spec, subject = sm["spec"], f"ServiceMonitor/{R.namespace_of(sm)}/{R.name_of(sm)}"
        names = (spec.get("namespaceSelector") or {}).get("matchNames") or [R.namespace_of(sm)]
        svcs = [
            s
            for s in r.kind("Service")
            if R.namespace_of(s) in names
            and R.selects(spec.get("selector"), (s.get("metadata") or {}).get("labels") or {})
        ]
        for svc in svcs:  # Services of charts (Karpenter, DCGM) are not in the manifests: only ours are checked
            port_names = {p.get("name") for p in svc["spec"].get("ports") or []}
            for ep in spec.get("endpoints") or []:
                if ep.get("port") is not None and ep["port"] not in port_names:
                    out.append(R.Problem("monitors", subject, f"Service {R.name_of(svc)} has no port {ep['port']!r}"))
    return out


# ---- volume claims ---------------------------------------------------------------------------------------------


def claim_users(r: R.Rendered, pvc: dict) -> list[tuple[R.Workload, int, bool]]:
    """(workload, most pods at once, mounts read-only) for each workload that mounts the claim."""
    out = []
    for w in R.workloads(r):
        if w.namespace != R.namespace_of(pvc):
            continue
        vols = {
            v["name"]
            for v in w.pod.get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName") == R.name_of(pvc)
        }
        if not vols:
            continue
        mounts = [m for c in w.containers() for m in c.get("volumeMounts") or [] if m["name"] in vols]
        most = R.max_replicas(r, w)
        strategy = ((w.owner.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate")
        if w.kind == "Deployment" and strategy == "RollingUpdate":
            most += 1  # the surge pod starts before an old one stops (maxSurge 25 % rounds up to 1)
        out.append((w, most, all(m.get("readOnly") for m in mounts)))
    return out


def check_claims(r: R.Rendered) -> list[R.Problem]:
    """ReadWriteOnce: one node at a time; pods of several workloads, or several pods of one spread over
    nodes, need ReadWriteMany (ReadOnlyMany when every mount is read-only)."""
    out = []
    for pvc in r.kind("PersistentVolumeClaim"):
        modes = set(pvc["spec"].get("accessModes") or [])
        users = claim_users(r, pvc)
        pods = sum(n for _, n, _ in users)
        if pods <= 1 or "ReadWriteMany" in modes:
            continue
        if "ReadOnlyMany" in modes and all(ro for _, _, ro in users):
            continue
        who = ", ".join(f"{w.id} x{n}" for w, n, _ in users)
        out.append(
            R.Problem(
                "claims", f"PersistentVolumeClaim/{R.namespace_of(pvc)}/{R.name_of(pvc)}", f"{sorted(modes)} but {who}"
            )
        )
    return out


# ---- over every stack ------------------------------------------------------------------------------------------


def run(name: str, s: Stack, tmp: str) -> list[R.Problem]:
    if name == "nginx":
        return check_nginx(s.r, s.cidr)
    if name == "keda":
        return check_keda(s, tmp)
    if name == "monitors":
        return check_monitors(s.r)
    if name == "claims":
        return check_claims(s.r)
    raise KeyError(name)


CHECKS = ("nginx", "keda", "monitors", "claims")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("kps"))


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("path", STACKS, ids=lambda p: p.name)
def test_config_relation_holds(path, check, plan_of, tmp):
    probs = run(check, stack(path, plan_of), tmp)
    assert not probs, "\n".join(map(str, probs))


def test_each_check_finds_something_to_check(plan_of):
    """Not vacuous: dev has an nginx.conf with an upstream, a ScaledObject, monitors and a claim."""
    s = stack(DEV, plan_of)
    (conf,) = [t for _, _, t in nginx_confs(s.r)]
    assert UPSTREAM.search(conf) and PROXY_PASS.findall(conf)
    assert [t for so in s.r.kind("ScaledObject") for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
    assert s.r.kind("PodMonitor") and s.r.kind("PersistentVolumeClaim")
    assert any(n > 1 for pvc in s.r.kind("PersistentVolumeClaim") for _, n, _ in claim_users(s.r, pvc))


# ---- negative controls --------------------------------------------------------------------------------------


def frontdoor_conf(s: Stack) -> dict:
    cm = obj(s.r, "ConfigMap", "gateway-frontdoor")
    return cm["data"]


@pytest.mark.parametrize(
    "old,new,expect",
    [
        (":4000 resolve;", ":4001 resolve;", "has no port 4001"),
        ("server litellm.gateway.", "server litellm.models.", "is no Service of the stack"),
        ("proxy_pass http://litellm/v1/models;", "proxy_pass http://litelm/v1/models;", "no upstream 'litelm'"),
    ],
)
def test_control_nginx_upstream(old, new, expect, plan_of, tmp):
    s = mutated(DEV, plan_of)
    data = frontdoor_conf(s)
    key = next(iter(data))
    assert old in data[key]
    data[key] = data[key].replace(old, new, 1)
    assert expect in "\n".join(map(str, run("nginx", s, tmp)))


def test_control_nginx_upstream_refused_by_policy(plan_of, tmp):
    s = mutated(DEV, plan_of)
    for np in s.r.kind("NetworkPolicy"):
        for rule in np["spec"].get("ingress") or []:
            for peer in rule.get("from") or []:
                if peer.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "gateway-frontdoor"}:
                    peer["podSelector"] = {"matchLabels": {"app.kubernetes.io/name": "someone-else"}}
    assert "NetworkPolicies do not admit gateway-frontdoor -> litellm" in "\n".join(map(str, run("nginx", s, tmp)))


@pytest.mark.parametrize(
    "old,new,expect",
    [(":9090", ":9091", "has no port 9091"), ("kube-prometheus-stack-prometheus.", "prometheus.", "no such Service")],
)
def test_control_keda_server_address(old, new, expect, plan_of, tmp):
    s = mutated(DEV, plan_of)
    (so,) = s.r.kind("ScaledObject")
    for t in so["spec"]["triggers"]:
        if t["type"] == "prometheus":
            assert old in t["metadata"]["serverAddress"]
            t["metadata"]["serverAddress"] = t["metadata"]["serverAddress"].replace(old, new)
    assert expect in "\n".join(map(str, run("keda", s, tmp)))


def test_control_keda_service_selects_no_prometheus():
    chart = R.Rendered(
        "kps",
        [
            {
                "kind": "Service",
                "metadata": {"name": "p", "namespace": "m"},
                "spec": {"selector": {"prometheus": "x"}, "ports": [{"port": 9090}]},
            },
            {"kind": "Prometheus", "metadata": {"name": "y", "namespace": "m"}},
        ],
    )
    assert _prometheus_service(chart, urlsplit("http://p.m.svc.cluster.local:9090")) == [
        "p.m.svc.cluster.local: Service p selects no Prometheus pods"
    ]
    chart.objects[1]["metadata"]["name"] = "x"  # control of the control: now it selects
    assert _prometheus_service(chart, urlsplit("http://p.m.svc.cluster.local:9090")) == []


def test_control_pod_monitor_port(plan_of, tmp):
    s = mutated(DEV, plan_of)
    pm = next(p for p in s.r.kind("PodMonitor") if R.namespace_of(p) == "models")
    pm["spec"]["podMetricsEndpoints"][0]["port"] = "metrics"
    assert "has no port 'metrics'" in "\n".join(map(str, run("monitors", s, tmp)))
    pm["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/component": "nothing"}}
    assert "selects no pods" in "\n".join(map(str, run("monitors", s, tmp)))


def test_control_claim_access_mode(plan_of, tmp):
    s = mutated(SEED000, plan_of)
    pvc = obj(s.r, "PersistentVolumeClaim", "model-cache")
    pvc["spec"]["accessModes"] = ["ReadWriteOnce"]
    text = "\n".join(map(str, run("claims", s, tmp)))
    assert "PersistentVolumeClaim/models/model-cache: ['ReadWriteOnce'] but" in text
    assert "Job/models/" in text  # the cache Jobs mount it beside the servers
    pvc["spec"]["accessModes"] = ["ReadOnlyMany"]  # the Jobs write: read-only-many is not enough either
    assert "['ReadOnlyMany'] but" in "\n".join(map(str, run("claims", s, tmp)))
