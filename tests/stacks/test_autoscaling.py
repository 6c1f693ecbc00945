"""Autoscaling: targets and windows by hand, the ScaledObject against its CRD schema and the
objects it relates to, KEDA rendered by the real chart, and nothing of it when autoscaling is off."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from components.keda import Floor, ScalingSpec, render_scaled_object_spec
from components.types import SYSTEM_TAINT, tolerate
from stacks import catalog
from stacks.capacity import planner
from stacks.capacity import scaling as A
from stacks.config.schema import AutoscalingConfig, ModelConfig, Replicas, StackConfig
from stacks.yamlio import dump_yaml, load_yaml
from tests.support import helm, shared
from tests.support.policy import pss_restricted_violations

ROOT = Path(__file__).resolve().parents[2]
SCALING = ROOT / "tests" / "configs" / "autoscaling.ok.yaml"
OFF = ROOT / "stacks" / "examples" / "Pulumi.minimal.yaml"
KUBE = catalog.versions().kubernetes + ".0"


def objects(out: Path, kind: str) -> list[dict]:
    docs = [load_yaml(f.read_text()) for f in sorted((out / "manifests").glob("*.yaml"))]
    return [d for d in docs if d["kind"] == kind]


def scaled_object_schema() -> dict:
    return json.loads(shared.shared_path("schemas/keda.sh_v1alpha1_ScaledObject.json").read_text())


# ---- pure: targets, windows, the HPA formula ------------------------------------------------------


def cfg_with(**replicas) -> tuple[StackConfig, ModelConfig]:
    m = ModelConfig(preset="qwen3-0.6b", replicas=Replicas(**replicas))
    return StackConfig(models={"m": m}, autoscaling=AutoscalingConfig(enabled=True)), m


@pytest.mark.parametrize(
    ("max_conc", "seqs", "over", "want"),
    [
        (19.6, 16, {}, (12, 8)),  # 0.75 x min(19.6, 16) = 12; queue depth default 8
        (5.3, 16, {}, (3, 8)),  # the KV cache holds 5 max-length requests: 0.75 x 5 = 3.75 -> 3
        (1.0, 16, {}, (1, 8)),  # never below one
        (19.6, 16, {"targetRunning": 5, "targetWaiting": 2}, (5, 2)),  # overrides win
    ],
)
def test_targets_from_the_planner_concurrency(max_conc, seqs, over, want):
    cfg, m = cfg_with(min=1, max=2, **over)
    t = A.targets(cfg, m, max_conc, seqs)
    assert (t.running, t.waiting) == want


def test_windows_follow_the_cold_start_estimate():
    assert A.windows(420) == A.Windows(scale_up_s=0, scale_down_s=420, cooldown_s=420)
    assert A.windows(120).scale_down_s == 300  # never below the HPA's own 300 s default


@pytest.mark.parametrize(
    ("values", "want"),
    [
        ({"running": 2, "waiting": 5}, 3),  # ceil(2/1)=2, ceil(5/2)=3 -> 3
        ({"running": 2, "waiting": 0}, 2),
        ({"running": 0, "waiting": 0}, 1),  # clamped up to min
        ({"running": 9, "waiting": 30}, 4),  # clamped down to max
    ],
)
def test_desired_replicas_is_the_hpa_formula(values, want):
    assert A.desired_replicas(values, {"running": 1, "waiting": 2}, 1, 4) == want


def test_queries_filter_on_the_namespace_and_the_served_name_label_vllm_sets():
    assert (
        A.running_query("qwen3-0.6b", "models")
        == 'sum(vllm:num_requests_running{namespace="models", model_name="qwen3-0.6b"})'
    )
    assert (
        A.waiting_query("a/b", "t-models") == 'sum(vllm:num_requests_waiting{namespace="t-models", model_name="a/b"})'
    )


def test_vllm_exports_the_metric_names_and_label_the_queries_use():
    """The installed vLLM 0.32 (the e2e venv) registers these gauges with a model_name label."""
    src = sorted((ROOT / ".e2e" / "vllm" / "lib").glob("python*/site-packages/vllm/v1/metrics/loggers.py"))
    if not src:
        pytest.skip(".e2e/vllm not installed: run scripts/setup-e2e.sh")
    text = src[0].read_text()
    for name in (A.RUNNING_METRIC, A.WAITING_METRIC):
        assert f'name="{name}"' in text
    assert 'labelnames = ["model_name", "engine"]' in text
    assert 'name="vllm:gpu_cache_usage_perc"' not in text  # negative control: a V0 name is gone


# ---- config cross-checks --------------------------------------------------------------------------


def problems_of(doc: dict) -> list[str]:
    cfg = StackConfig.model_validate(doc)
    return [f"{'.'.join(map(str, p))}: {w}" for p, w, _ in A.problems(cfg)]


def test_range_without_autoscaling_is_refused_and_a_fixed_count_is_not():
    assert problems_of({"models": {"m": {"preset": "qwen3-0.6b", "replicas": {"min": 2, "max": 2}}}}) == []
    got = problems_of({"models": {"m": {"preset": "qwen3-0.6b", "replicas": {"min": 1, "max": 2}}}})
    assert got == ["models.m.replicas.max: max 2 > min 1 does nothing while autoscaling is off (the model runs 1)"]


def test_scale_to_zero_needs_opt_in_and_autoscaling():
    on = {"autoscaling": {"enabled": True}, "observability": {"enabled": True}}
    zero = {"min": 0, "max": 1}
    assert problems_of({**on, "models": {"m": {"preset": "x", "replicas": {**zero, "scaleToZero": True}}}}) == []
    assert [p.split(":")[0] for p in problems_of({**on, "models": {"m": {"preset": "x", "replicas": zero}}})] == [
        "models.m.replicas.min"
    ]
    off = problems_of({"models": {"m": {"preset": "x", "replicas": {**zero, "scaleToZero": True}}}})
    assert [p.split(":")[0] for p in off] == ["models.m.replicas.max", "models.m.replicas.scaleToZero"]


# ---- the ScaledObject: schema and relations ---------------------------------------------------------


def test_scaled_objects_validate_and_relate(plan_of):
    intent, _, out = plan_of(SCALING)
    schema = scaled_object_schema()
    deployments = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in objects(out, "Deployment")}
    sos = {s["metadata"]["name"]: s for s in objects(out, "ScaledObject")}
    assert sorted(sos) == ["batch", "chat"]
    for name, so in sos.items():
        jsonschema.validate(so, schema)
        spec, ns = so["spec"], so["metadata"]["namespace"]
        ref = spec["scaleTargetRef"]
        dep = deployments[(ns, ref["name"])]  # a Deployment of that name in the same namespace
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment")
        assert "replicas" not in dep["spec"]  # the HPA owns it
        args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        served = args[args.index("--served-model-name") + 1]
        m = intent.models[name]
        assert served == m.served_name
        r = intent.config.models[name].replicas
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (r.min, r.max)
        prom = {t["name"]: t["metadata"] for t in spec["triggers"] if t["type"] == "prometheus"}
        sel = f'namespace="models", model_name="{served}"'  # a platform stack's models namespace
        assert prom["running"]["query"] == f"sum(vllm:num_requests_running{{{sel}}})"
        assert prom["waiting"]["query"] == f"sum(vllm:num_requests_waiting{{{sel}}})"
        # qwen3-0.6b on g6.xlarge: max concurrency 19.6 > 16 seqs -> 0.75 x 16 = 12 running
        assert prom["running"]["threshold"] == "12"
        budget = planner.startup_budget_seconds(m.arch, m.kind, m.quantization)
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == max(300, budget)
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
        assert spec["fallback"]["replicas"] == max(1, r.min)
        assert {t["metadata"]["serverAddress"] for t in spec["triggers"] if t["type"] == "prometheus"} == {
            "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090"
        }
    chat, batch = sos["chat"]["spec"], sos["batch"]["spec"]
    assert [t["metadata"] for t in chat["triggers"] if t["type"] == "cron"] == [
        {"timezone": "Europe/Berlin", "start": "0 8 * * 1-5", "end": "0 18 * * 1-5", "desiredReplicas": "2"}
    ]
    assert {t["name"] for t in chat["triggers"]} == {"running", "waiting", "floor-0"}
    assert chat["triggers"][1]["metadata"]["threshold"] == "4"  # targetWaiting: 4 in the stack file
    wake = next(t for t in batch["triggers"] if t["name"] == "wake")["metadata"]
    s = '{__name__=~"litellm_proxy_(total|failed)_requests_metric_total",namespace="gateway",requested_model="batch"}'
    assert wake["query"] == f"(sum(increase({s}[10m])) or vector(0)) + (count({s} unless {s} offset 10m) or vector(0))"


def test_schema_check_can_fail():
    """Negative control: a fallback without replicas and a trigger without metadata are rejected."""
    spec = ScalingSpec("x", 1, 2, "http://p:9090", (("running", "q", 1, 0),), 0, 300, 1, 300, 15, 1, 3)
    so = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x", "namespace": "models"},
        "spec": render_scaled_object_spec(spec, deployment="x"),
    }
    schema = scaled_object_schema()
    jsonschema.validate(so, schema)
    for breaks in (("fallback", "replicas"), ("triggers", 0, "metadata")):
        bad = copy.deepcopy(so)
        *head, last = breaks
        node = bad["spec"]
        for k in head:
            node = node[k]
        del node[last]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_cron_floor_renders_as_a_keda_cron_trigger():
    spec = ScalingSpec(
        "x", 1, 3, "http://p:9090", (), 0, 300, 1, 300, 15, 1, 3, floors=(Floor("UTC", "0 8 * * *", "0 9 * * *", 2),)
    )
    (t,) = render_scaled_object_spec(spec, deployment="d")["triggers"]
    assert t == {
        "type": "cron",
        "name": "floor-0",
        "metadata": {"timezone": "UTC", "start": "0 8 * * *", "end": "0 9 * * *", "desiredReplicas": "2"},
    }


def test_gateway_hpa_on_cpu_targets_the_gateway_deployment(plan_of):
    _, _, out = plan_of(SCALING)
    (hpa,) = objects(out, "HorizontalPodAutoscaler")
    # The gateway namespace also runs the front door (nginx); the HPA scales LiteLLM's Deployment.
    (dep,) = (
        d
        for d in objects(out, "Deployment")
        if d["metadata"]["namespace"] == hpa["metadata"]["namespace"]
        and d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") == "litellm"
    )
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"] == "litellm"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }
    assert "replicas" not in dep["spec"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["requests"]["cpu"]  # Utilization is relative to the request
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    pdbs = [
        p
        for p in objects(out, "PodDisruptionBudget")
        if p["metadata"]["namespace"] == hpa["metadata"]["namespace"]
        and p["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(pdbs) == 1  # LiteLLM's own PDB


def test_metrics_server_addon_iff_autoscaling(plan_of):
    for stack_file, want in ((SCALING, True), (OFF, False)):
        _, rec, _ = plan_of(stack_file)
        names = {r.inputs.get("addonName") for r in rec.by_type("aws:eks/addon:Addon")}
        assert ("metrics-server" in names) is want, stack_file.name


# ---- off means off ---------------------------------------------------------------------------------


def test_autoscaling_off_renders_none_of_it(plan_of):
    _, _, out = plan_of(OFF)
    assert objects(out, "ScaledObject") == [] and objects(out, "HorizontalPodAutoscaler") == []
    assert not (out / "helm" / "keda.yaml").exists()
    assert all("replicas" in d["spec"] for d in objects(out, "Deployment"))
    summary = json.loads((out / "summary.json").read_text())
    assert [m["autoscaling"] for m in summary["models"]] == [None]
    # negative control: the same checks see all of it in the autoscaling stack
    _, _, on = plan_of(SCALING)
    assert objects(on, "ScaledObject") and (on / "helm" / "keda.yaml").exists()


# ---- KEDA by the real chart ---------------------------------------------------------------------------


def test_keda_renders_on_the_system_nodes_restricted(plan_of):
    _, _, out = plan_of(SCALING)
    doc = load_yaml((out / "helm" / "keda.yaml").read_text())
    chart = helm.chart_dir(doc["chart"], str(doc["version"]))
    assert helm.unknown_keys(doc["values"], chart) == []
    assert helm.unknown_keys({**doc["values"], "tolerationz": []}, chart)  # negative control
    objs = helm.render("keda", chart, doc["namespace"], doc["values"], KUBE)
    deps = [o for o in objs if o["kind"] == "Deployment"]
    assert sorted(d["metadata"]["name"] for d in deps) == [
        "keda-admission-webhooks",
        "keda-operator",
        "keda-operator-metrics-apiserver",
    ]
    crds = {o["spec"]["names"]["kind"] for o in objs if o["kind"] == "CustomResourceDefinition"}
    assert "ScaledObject" in crds
    for d in deps:
        pod = d["spec"]["template"]["spec"]
        assert tolerate(SYSTEM_TAINT) in pod["tolerations"], d["metadata"]["name"]
        assert pod["nodeSelector"]["llm-serving/node-role"] == "system"
        # the keda namespace enforces Pod Security "restricted": the chart's pods must pass it
        assert pss_restricted_violations(pod) == [], d["metadata"]["name"]


def test_prometheus_address_is_the_kube_prometheus_stack_service(tmp_path):
    """The chart names its Prometheus Service from the release; render it and find ours. The shared
    copy lacks the subcharts (only crds/ is unpacked), so a copy without them renders, all disabled."""
    import shutil

    chart = tmp_path / "kube-prometheus-stack"
    shutil.copytree(helm.chart_dir("kube-prometheus-stack", "88.5.3"), chart)
    meta = load_yaml((chart / "Chart.yaml").read_text())
    meta["dependencies"] = [d for d in meta["dependencies"] if d["name"] == "crds"]
    (chart / "Chart.yaml").write_text(dump_yaml(meta))
    off = {k: {"enabled": False} for k in ("crds", "kubeStateMetrics", "nodeExporter", "grafana", "windowsMonitoring")}
    objs = helm.render(A.KPS_RELEASE, chart, "monitoring", off, KUBE)
    svcs = {(o["metadata"]["name"], p["port"]) for o in objs if o["kind"] == "Service" for p in o["spec"]["ports"]}
    url = A.prometheus_url(StackConfig())
    host, port = url.removeprefix("http://").split(":")
    assert (host.split(".")[0], int(port)) in svcs
    assert host.split(".")[1] == "monitoring"
    assert A.kps_fullname("monitoring") == "monitoring-kube-prometheus"  # 26-character cut, as the chart does
    assert (A.kps_fullname("monitoring") + "-prometheus", 9090) not in svcs  # negative control


def test_gateway_range_and_floor_windows_are_checked():
    on = {"autoscaling": {"enabled": True, "gatewayMaxReplicas": 2}, "observability": {"enabled": True}}
    floor = {"timezone": "UTC", "start": "0 8 * * *", "end": "0 8 * * *", "replicas": 1}
    got = problems_of(
        {**on, "gateway": {"replicas": 3}, "models": {"m": {"preset": "x", "replicas": {"max": 2, "floors": [floor]}}}}
    )
    assert got == [
        "autoscaling.gatewayMaxReplicas: 2 is below gateway.replicas 3 (the HPA's minimum)",
        "models.m.replicas.floors.0.end: equals start: the floor never holds",
    ]
