"""Observability objects (config `observability`): present only when on, schema-valid, derived from
the workloads they watch, and the kube-prometheus-stack release rendered by the real chart.

The real-Prometheus evaluation of every shipped expression is tests/e2e/test_prometheus.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from components import prometheus_stack as obs
from components.types import SYSTEM_TAINT
from stacks import catalog
from stacks.capacity import queries
from stacks.yamlio import dump_yaml, load_yaml
from tests.conftest import ROOT
from tests.support import helm
from tests.support.shared import shared_path

DEV = ROOT / "Pulumi.dev.yaml"
OFF = ROOT / "stacks" / "examples" / "Pulumi.seed004-qwen3-0-6b-one-gpu.yaml"
BYO = ROOT / "tests" / "configs" / "observability-byo.ok.yaml"
NEURON = ROOT / "tests" / "configs" / "observability-neuron.ok.yaml"
KUBE = catalog.versions().kubernetes + ".0"
KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


def objects(out: Path) -> list[dict]:
    return [load_yaml(f.read_text()) for f in sorted((out / "manifests").glob("*.yaml"))]


def releases(out: Path) -> dict[str, dict]:
    return {f.stem: load_yaml(f.read_text()) for f in (out / "helm").glob("*.yaml")}


def of_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def dashboards(objs: list[dict]) -> list[dict]:
    return [
        json.loads(text)
        for o in of_kind(objs, "ConfigMap")
        if (o["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"
        for text in o["data"].values()
    ]


# ---- on / off / bring your own ----------------------------------------------------------------------------


def test_off_renders_no_chart_monitor_rule_or_dashboard(plan_of):
    _, _, out = plan_of(OFF)
    objs = objects(out)
    assert [o["kind"] for o in objs if o["kind"] in KINDS] == []
    assert dashboards(objs) == []
    assert "kube-prometheus-stack" not in releases(out)
    assert not [o for o in of_kind(objs, "NetworkPolicy") if o["metadata"]["name"].endswith("-from-prometheus")]


def test_dev_renders_the_stack_monitors_rules_and_four_dashboards(plan_of):
    _, _, out = plan_of(DEV)
    objs = objects(out)
    names = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs if o["kind"] in KINDS}
    assert names == {
        ("PodMonitor", "models", "vllm-qwen3-0-6b"),
        ("PodMonitor", "gateway", "litellm"),
        ("ServiceMonitor", "monitoring", "karpenter"),
        ("ServiceMonitor", "monitoring", "dcgm-exporter"),
        ("PrometheusRule", "monitoring", "llm-serving"),
    }
    assert sorted(d["uid"] for d in dashboards(objs)) == [
        "llm-accelerators",
        "llm-autoscaling",
        "llm-gateway",
        "llm-model-serving",
    ]
    rel = releases(out)["kube-prometheus-stack"]
    assert (rel["chart"], rel["version"], rel["namespace"]) == ("kube-prometheus-stack", "88.5.3", "monitoring")


def test_bring_your_own_prometheus_gets_monitors_rules_dashboards_but_no_chart(plan_of):
    _, _, out = plan_of(BYO)
    objs = objects(out)
    assert "kube-prometheus-stack" not in releases(out)
    assert not [o for o in of_kind(objs, "Namespace") if o["metadata"]["name"] == "prometheus"]  # theirs
    assert {o["metadata"]["namespace"] for o in of_kind(objs, "PrometheusRule")} == {"prometheus"}
    assert len(dashboards(objs)) == 4
    # The scraper admitted is the user's Prometheus, in the namespace they named.
    for np in (o for o in of_kind(objs, "NetworkPolicy") if o["metadata"]["name"].endswith("-from-prometheus")):
        peer = np["spec"]["ingress"][0]["from"][0]
        assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "prometheus"}
    # TTFT target from ttftP95SecondsByModel (4.5 s for model m), not the 2 s default.
    rules = {r["alert"]: r for g in of_kind(objs, "PrometheusRule")[0]["spec"]["groups"] for r in g["rules"]}
    assert rules["LLMTTFTHigh"]["expr"].endswith(" > 4.5")


# ---- schemas --------------------------------------------------------------------------------------------


def validator(kind: str):
    schema = json.loads(shared_path(f"schemas/monitoring.coreos.com_v1_{kind}.json").read_text())
    # The CRD schemas carry Go regexes Python's metaschema check rejects: validate without it.
    return jsonschema.validators.validator_for(schema)(schema)


def test_monitors_and_rules_validate_against_the_crd_schemas(plan_of):
    _, _, out = plan_of(DEV)
    seen = 0
    for o in objects(out):
        if o["kind"] in KINDS:
            validator(o["kind"]).validate(o)
            seen += 1
    assert seen == 5


def test_schema_check_can_fail(plan_of):
    _, _, out = plan_of(DEV)
    pm = next(o for o in objects(out) if o["kind"] == "PodMonitor")
    pm["spec"]["podMetricsEndpoints"][0]["authorization"] = {"type": "Bearer", "credentials": "plaintext"}
    with pytest.raises(jsonschema.ValidationError):
        validator("PodMonitor").validate(pm)
    rule = next(o for o in objects(out) if o["kind"] == "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    with pytest.raises(jsonschema.ValidationError):
        validator("PrometheusRule").validate(rule)


# ---- relations: monitors and policies follow the pods they watch --------------------------------------------


def pod_templates(objs: list[dict]) -> list[tuple[str, dict]]:
    return [
        (o["metadata"]["namespace"], o["spec"]["template"]) for o in objs if o["kind"] in ("Deployment", "DaemonSet")
    ]


def scraper_policy(np: dict) -> bool:
    peers = [p for r in np["spec"].get("ingress") or [] for p in r.get("from") or []]
    # Admissions in the targets' namespaces name the scraper's namespace (the monitoring namespace's
    # own policies are judged in tests/stacks/test_tenancy_monitoring.py).
    return any(
        "namespaceSelector" in p and (p.get("podSelector") or {}).get("matchLabels") == obs.PROMETHEUS_POD_LABELS
        for p in peers
    )


def monitor_relation_problems(objs: list[dict]) -> list[str]:
    """Each PodMonitor selects some pods of its namespace whose container has the named port; each
    scraper NetworkPolicy's port is a container port of the pods it selects."""
    out = []
    for pm in of_kind(objs, "PodMonitor"):
        sel = pm["spec"]["selector"]["matchLabels"]
        ns = (pm["spec"].get("namespaceSelector") or {}).get("matchNames", [pm["metadata"]["namespace"]])[0]
        pods = [t for n, t in pod_templates(objs) if n == ns and sel.items() <= t["metadata"]["labels"].items()]
        if not pods:
            out.append(f"PodMonitor {ns}/{pm['metadata']['name']}: selects no pods")
        for ep in pm["spec"]["podMetricsEndpoints"]:
            names = {p["name"] for t in pods for c in t["spec"]["containers"] for p in c.get("ports", [])}
            if ep["port"] not in names:
                out.append(f"PodMonitor {ns}/{pm['metadata']['name']}: no container port named {ep['port']}")
    for np in (o for o in of_kind(objs, "NetworkPolicy") if scraper_policy(o)):
        ns, sel = np["metadata"]["namespace"], np["spec"]["podSelector"]["matchLabels"]
        ports = {
            p["containerPort"]
            for n, t in pod_templates(objs)
            if n == ns and sel.items() <= t["metadata"]["labels"].items()
            for c in t["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for rule in np["spec"]["ingress"]:
            for p in rule["ports"]:
                if p["port"] not in ports:
                    out.append(f"NetworkPolicy {ns}/{np['metadata']['name']}: port {p['port']} is no container port")
    return out


def test_monitors_and_scraper_policies_match_the_pods(plan_of):
    for stack in (DEV, BYO, NEURON):
        _, _, out = plan_of(stack)
        assert monitor_relation_problems(objects(out)) == []


def test_monitor_relations_can_fail(plan_of):
    _, _, out = plan_of(DEV)
    objs = objects(out)
    pm = next(o for o in of_kind(objs, "PodMonitor") if o["metadata"]["name"] == "litellm")
    pm["spec"]["podMetricsEndpoints"][0]["port"] = "metrics"
    np = next(o for o in of_kind(objs, "NetworkPolicy") if o["metadata"]["name"] == "vllm-from-prometheus")
    np["spec"]["ingress"][0]["ports"][0]["port"] = 9090
    assert monitor_relation_problems(objs) == [
        "PodMonitor gateway/litellm: no container port named metrics",
        "NetworkPolicy models/vllm-from-prometheus: port 9090 is no container port",
    ]


def test_litellm_scrape_token_is_the_scrapers_own_secret(plan_of):
    """The monitor's bearer token is the scraper's key, in a Secret of the gateway namespace that holds
    only it (the master key stays out of the monitoring configuration: tests/stacks/test_tenancy.py)."""
    _, _, out = plan_of(DEV)
    objs = objects(out)
    cred = of_kind(objs, "PodMonitor")
    cred = next(o for o in cred if o["metadata"]["name"] == "litellm")["spec"]["podMetricsEndpoints"][0]
    assert cred["authorization"] == {"type": "Bearer", "credentials": {"name": "litellm-metrics", "key": "metrics-key"}}
    secret = next(
        s for s in of_kind(objs, "Secret") if s["metadata"] == {"namespace": "gateway", "name": "litellm-metrics"}
    )
    assert set(secret["stringData"]) == {"metrics-key"}


def test_karpenter_monitor_selects_the_chart_service(plan_of):
    """Rendered by the real Karpenter chart with the plan's values: our selector is a subset of the
    metrics Service's labels, in its namespace, and the port name is the Service's."""
    _, _, out = plan_of(DEV)
    sm = next(o for o in objects(out) if o["kind"] == "ServiceMonitor" and o["metadata"]["name"] == "karpenter")
    doc = releases(out)["karpenter"]
    svc = next(
        o
        for o in helm.render(
            "karpenter", helm.chart_dir(doc["chart"], doc["version"]), doc["namespace"], doc["values"], KUBE
        )
        if o["kind"] == "Service"
    )
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [doc["namespace"]]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}


# ---- alerts and dashboards from the one query list -------------------------------------------------------


def test_alerts_per_model_and_startup_budget(plan_of):
    _, _, out = plan_of(DEV)
    objs = objects(out)
    groups = of_kind(objs, "PrometheusRule")[0]["spec"]["groups"]
    assert [g["name"] for g in groups] == ["llm-serving-model-qwen3-0.6b", "llm-serving-gateway"]
    rules = {r["alert"]: r for r in groups[0]["rules"]}
    assert set(rules) == {
        "LLMModelNoReadyReplica",
        "LLMModelTargetDown",
        "LLMQueueAtMaxReplicas",
        "LLMKVCacheHigh",
        "LLMTTFTHigh",
        "LLMReplicasBelowDesired",
    }
    # dev: replicas max 2 (Pulumi.dev.yaml), default TTFT target 2 s, KV cache 90 %.
    assert rules["LLMQueueAtMaxReplicas"]["expr"].endswith(">= 2)")
    assert rules["LLMTTFTHigh"]["expr"].endswith(" > 2")
    assert rules["LLMKVCacheHigh"]["expr"].endswith(" > 0.9")
    assert (
        rules["LLMModelTargetDown"]["expr"] == 'up{namespace="models", job="models/vllm-qwen3-0-6b"} == 0'
    )  # <ns>/<PodMonitor>
    # Below desired for longer than the startup budget: the same budget the startup probe allows.
    vllm = next(o for o in of_kind(objs, "Deployment") if o["metadata"]["namespace"] == "models")
    probe = vllm["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    budget = int(rules["LLMReplicasBelowDesired"]["for"].removesuffix("s"))
    assert probe["failureThreshold"] * probe["periodSeconds"] - probe["periodSeconds"] < budget
    assert budget <= probe["failureThreshold"] * probe["periodSeconds"]


def test_every_query_is_used_and_every_variable_declared():
    used = {k for d in queries.DASHBOARDS for p in d.panels for k in p.queries}
    assert set(queries.BY_KEY) - used == set()
    for d in queries.DASHBOARDS:
        j = queries.dashboard_json(d, ("models", "gateway"))
        declared = {v["name"] for v in j["templating"]["list"]}
        for p in j["panels"]:
            for t in p["targets"]:
                assert "<models_ns>" not in t["expr"] and "<gateway_ns>" not in t["expr"]
                for var in re.findall(r"\$(\w+)", t["expr"]):
                    assert var.startswith("__") or var in declared, (d.uid, var)


def test_no_v0_metric_names():
    """vLLM V0 names the V1 engine (0.32) no longer exports."""
    v0 = (
        "vllm:gpu_cache_usage_perc",
        "vllm:cpu_cache_usage_perc",
        "vllm:num_requests_swapped",
        "vllm:time_per_output_token_seconds",
    )
    for q in queries.QUERIES:
        assert not any(n in q.expr for n in v0), q.key


# ---- kube-prometheus-stack rendered by the real chart (parent chart; see helm.UNRENDERABLE) -------------


def parent_chart(tmp_path: Path) -> tuple[Path, list[str]]:
    """The pinned chart with the dependencies ../shared lacks removed from Chart.yaml."""
    src = helm.chart_dir("kube-prometheus-stack", catalog.versions().chart("kube-prometheus-stack").version)
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    meta = load_yaml((dst / "Chart.yaml").read_text())
    missing = [d["name"] for d in meta["dependencies"] if not (dst / "charts" / d["name"]).is_dir()]
    meta["dependencies"] = [d for d in meta["dependencies"] if d["name"] not in missing]
    (dst / "Chart.yaml").write_text(dump_yaml(meta))
    return dst, missing


def test_stack_values_keys_exist_in_the_chart(plan_of):
    _, _, out = plan_of(DEV)
    values = releases(out)["kube-prometheus-stack"]["values"]
    chart = helm.chart_dir("kube-prometheus-stack", "88.5.3")
    assert helm.unknown_keys(values, chart) == []
    bogus = {**values, "prometheus": {"prometheusSpec": {"retentionSise": "1GB"}}}
    where = "(not in kube-prometheus-stack-88.5.3/values.yaml nor read by its templates)"
    assert helm.unknown_keys(bogus, chart) == [f"prometheus.prometheusSpec.retentionSise {where}"]


def test_parent_chart_renders_prometheus_on_the_system_nodes_with_storage(plan_of, tmp_path):
    _, _, out = plan_of(DEV)
    doc = releases(out)["kube-prometheus-stack"]
    chart, missing = parent_chart(tmp_path)
    assert set(missing) <= {"grafana", "kube-state-metrics", "prometheus-node-exporter", "prometheus-windows-exporter"}
    # Their templates reach into the absent subcharts (.Subcharts): off for this render only. CRDs off
    # too: PyYAML's safe loader cannot read the operator's CRDs (an enum value `=` is YAML's value tag).
    absent = {
        "grafana": {"enabled": False},
        "nodeExporter": {"enabled": False},
        "kubeStateMetrics": {"enabled": False},
        "crds": {"enabled": False},
    }
    values = {**doc["values"], **{k: {**doc["values"].get(k, {}), **v} for k, v in absent.items()}}
    objs = helm.render(obs.RELEASE, chart, doc["namespace"], values, KUBE)
    checked = 0
    for o in objs:
        try:
            kubernetes_validate.validate(o, KUBE, strict=True)
            checked += 1
        except kubernetes_validate.SchemaNotFoundError:
            pass
    assert checked > 20
    prom = next(o for o in objs if o["kind"] == "Prometheus")["spec"]
    assert prom["retention"] == "15d" and prom["retentionSize"] == "45GB"  # dev: defaults, 90 % of 50 GiB
    claim = prom["storage"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi" and claim["storageClassName"]
    assert prom["nodeSelector"] == {"llm-serving/node-role": "system"}
    assert {"key": SYSTEM_TAINT, "operator": "Exists", "effect": "NoSchedule"} in prom["tolerations"]
    # Every monitor and rule in the cluster is selected, not only those labelled with the release.
    for k in ("serviceMonitorSelector", "podMonitorSelector", "ruleSelector"):
        assert prom[k] == {}, k
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            spec = o["spec"]["template"]["spec"]
            assert any(t.get("key") == SYSTEM_TAINT for t in spec.get("tolerations", [])), o["metadata"]["name"]


def test_neuron_monitor_only_with_a_neuron_pool(plan_of):
    """neuron-monitor runs on the Neuron pools (affinity on the pool label, Neuron taint tolerated),
    is scraped by a PodMonitor and reachable only by the scraper; a GPU-only stack has none of it."""
    _, _, out = plan_of(NEURON)
    objs = objects(out)
    ds = next(o for o in of_kind(objs, "DaemonSet") if o["metadata"]["name"] == "neuron-monitor")
    pod = ds["spec"]["template"]["spec"]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"] == [{"key": "llm-serving/pool", "operator": "In", "values": ["neuron"]}]
    assert pod["tolerations"] == [{"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}]
    pm = next(o for o in of_kind(objs, "PodMonitor") if o["metadata"]["name"] == "neuron-monitor")
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["kube-system"]}
    np = next(o for o in of_kind(objs, "NetworkPolicy") if o["metadata"]["name"] == "neuron-monitor")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"] and "egress" not in np["spec"]
    assert np["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9010}]
    assert not [o for o in of_kind(objs, "ServiceMonitor") if o["metadata"]["name"] == "dcgm-exporter"]
    _, _, dev = plan_of(DEV)
    assert not [o for o in objects(dev) if o["metadata"]["name"] == "neuron-monitor"]


def test_team_stack_dashboards_and_rules_do_not_collide_with_the_platform(plan_of, tmp_path):
    """A team stack uses the platform's Prometheus: no chart, its rule and dashboards prefixed with the
    team, its gateway queries on its own gateway namespace."""
    doc = load_yaml((ROOT / "stacks" / "examples" / "Pulumi.team-search.yaml").read_text())
    doc["config"]["llm-serving:observability"] = {"enabled": True}
    f = tmp_path / "Pulumi.teamobs.yaml"
    f.write_text(dump_yaml(doc))
    _, _, out = plan_of(f)
    objs = objects(out)
    assert releases(out).keys() <= {
        "karpenter",
        "karpenter-crd",
        "gpu-operator",
    } and "kube-prometheus-stack" not in releases(out)
    assert [o["metadata"]["name"] for o in of_kind(objs, "PrometheusRule")] == ["search-llm-serving"]
    uids = sorted(d["uid"] for d in dashboards(objs))
    assert uids == [
        "search-llm-accelerators",
        "search-llm-autoscaling",
        "search-llm-gateway",
        "search-llm-model-serving",
    ]
    gw = next(d for d in dashboards(objs) if d["uid"] == "search-llm-gateway")
    assert all('namespace="search-gateway"' in t["expr"] for p in gw["panels"] for t in p["targets"])
