"""Helm tier: every Helm release the program registers (plan output `helm/<release>.yaml`), in every
committed stack file and example, rendered by the real chart at the pinned version with the real
`helm` binary (tests/support/helm.py):
- every values key we set exists in the chart or its subchart (Helm ignores unknown keys silently);
- the rendered objects pass kubernetes-validate (strict) at the cluster's Kubernetes version, CRDs
  included; custom resources the chart renders are not schema-checked and are counted;
- our nodeSelectors and tolerations reach the chart's pods; every controller pod of a release we
  meant for the system nodes tolerates their taint; every DaemonSet of a release we meant for
  accelerator nodes tolerates the accelerator taint.
The Neuron chart (1.3.0) cannot be rendered here: those stacks say so in a warning.
"""

import functools
import json
import warnings
from pathlib import Path

import kubernetes_validate
import pytest

from components.types import ACCELERATOR_RESOURCE, SYSTEM_TAINT
from stacks import catalog
from stacks.yamlio import load_yaml
from tests.conftest import STACK_FILES
from tests.support import deploy_rules as dr
from tests.support import helm

KUBE = catalog.versions().kubernetes + ".0"


def none(problems: list[str]) -> None:
    assert not problems, "\n" + "\n".join(problems)


def releases(out: Path) -> list[tuple[str, dict]]:
    return [(f.stem, load_yaml(f.read_text())) for f in sorted((out / "helm").glob("*.yaml"))]


def renderable(stack_file, plan_of) -> list[tuple[str, dict, Path]]:
    """(release, plan doc, chart dir) for each release; unrenderable pins are reported as a warning."""
    _, _, out = plan_of(stack_file)
    got = []
    for name, doc in releases(out):
        why = helm.UNRENDERABLE.get((doc["chart"], str(doc["version"])))
        if why:
            warnings.warn(
                f"{stack_file.name}: Helm release {name!r} ({doc['chart']} {doc['version']}) not rendered — {why}",
                stacklevel=1,
            )
            continue
        got.append((name, doc, helm.chart_dir(doc["chart"], str(doc["version"]))))
    return got


def rendered(name: str, doc: dict, chart: Path) -> list[dict]:
    return helm.render(name, chart, doc["namespace"], doc["values"], KUBE)


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_values_keys_exist_in_the_chart(stack_file, plan_of):
    problems = []
    for name, doc, chart in renderable(stack_file, plan_of):
        problems += [f"{name}: {p}" for p in helm.unknown_keys(doc["values"], chart)]
    none(problems)


@functools.cache
def validation(
    name: str, chart: Path, namespace: str, values_json: str
) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    """(problems, custom resources not checked, objects checked) for one rendered release; releases with
    equal values render equal objects, so stacks share the (slow) validation."""
    problems, custom, checked = [], [], 0
    for obj in helm.render(name, chart, namespace, json.loads(values_json), KUBE):
        try:
            kubernetes_validate.validate(obj, KUBE, strict=True)
            checked += 1
        except kubernetes_validate.SchemaNotFoundError:
            custom.append(f"{name}: {obj['apiVersion']} {obj['kind']}")
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            problems.append(f"{name}: {obj['kind']} {obj['metadata'].get('name')}: {where}: {e.message}")
    return tuple(problems), tuple(custom), checked


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_rendered_charts_validate(stack_file, plan_of):
    problems, custom, checked = [], [], 0
    for name, doc, chart in renderable(stack_file, plan_of):
        p, c, n = validation(name, chart, doc["namespace"], json.dumps(doc["values"], sort_keys=True))
        problems += p
        custom += c
        checked += n
    if custom:
        warnings.warn(
            f"{stack_file.name}: {len(custom)} custom resource(s) rendered by charts not schema-checked: "
            + "; ".join(custom),
            stacklevel=1,
        )
    none(problems)
    if any(True for _ in renderable(stack_file, plan_of)):
        assert checked


def placement_problems(name: str, values: dict, objs: list[dict]) -> list[str]:
    """Our values' tolerations and nodeSelectors reach the chart's pods, and every pod lands where
    we meant: controllers (non-DaemonSet pods) on the system nodes if our values tolerate the system
    taint, DaemonSets on accelerator nodes if our values tolerate an accelerator taint."""
    out = []
    pods = list(dr.pods(objs))
    tol_lists = [t for o in objs for t in helm.lists_named(o, "tolerations")]
    for want in (t for tl in helm.lists_named(values, "tolerations") for t in tl):
        if not any(want in tl for tl in tol_lists):
            out.append(f"{name}: our toleration {want} is on none of the chart's objects")
    for sel in helm.selectors_in(values):
        if not any(sel.items() <= (spec.get("nodeSelector") or {}).items() for _, _, spec in pods):
            out.append(f"{name}: our nodeSelector {sel} is on none of the chart's pods")
    meant = helm.toleration_keys(values)
    accel = [k for k in ACCELERATOR_RESOURCE.values() if k in meant]
    for where, obj, spec in pods:
        if obj["kind"] == "DaemonSet":
            out += [f"{name}: {where} does not tolerate {k}" for k in accel if not dr.tolerates(spec, k)]
        elif SYSTEM_TAINT in meant and not dr.tolerates(spec, SYSTEM_TAINT):
            out.append(f"{name}: {where} does not tolerate {SYSTEM_TAINT} — it cannot run on the system nodes")
    # The GPU operator's own DaemonSets (device plugin, DCGM exporter, GFD, validator) are created by the
    # operator from the ClusterPolicy's spec.daemonsets.tolerations, not by the chart.
    for obj in objs:
        if obj["kind"] == "ClusterPolicy":
            ds = {"tolerations": ((obj.get("spec") or {}).get("daemonsets") or {}).get("tolerations")}
            out += [
                f"{name}: ClusterPolicy spec.daemonsets does not tolerate {k}" for k in accel if not dr.tolerates(ds, k)
            ]
    return out


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_chart_pods_land_where_we_meant(stack_file, plan_of):
    problems = []
    for name, doc, chart in renderable(stack_file, plan_of):
        problems += placement_problems(name, doc["values"], rendered(name, doc, chart))
    none(problems)


# ---- negative controls and data checks (against the real charts) ----------------------------------


def karpenter_values() -> dict:
    return {
        "replicas": 2,
        "nodeSelector": {"llm-serving/node-role": "system"},
        "tolerations": [{"key": SYSTEM_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
        "controller": {"resources": {"requests": {"cpu": "500m"}}},
        "settings": {"clusterName": "c"},
    }


def test_bogus_values_keys_are_reported():
    chart = helm.chart_dir("karpenter", catalog.versions().chart("karpenter").version)
    values = karpenter_values() | {"replica": 2}
    values["settings"] = {"clusterName": "c", "featureGates": {"nodeRepiar": True}}
    assert helm.unknown_keys(values, chart) == [
        "settings.featureGates.nodeRepiar (not in karpenter-1.14.1/values.yaml nor read by its templates)",
        "replica (not in karpenter-1.14.1/values.yaml nor read by its templates)",
    ]
    # Free-form maps are ours (nodeSelector keys, resources): not reported.
    assert helm.unknown_keys(karpenter_values(), chart) == []


def test_bogus_subchart_key_is_reported():
    pin = catalog.versions().chart("gpu-operator")
    chart = helm.chart_dir(pin.chart, pin.version)
    values = {"node-feature-discovery": {"worker": {"tolerationz": []}, "gc": {"tolerations": []}}}
    assert helm.unknown_keys(values, chart) == [
        "node-feature-discovery.worker.tolerationz"
        " (not in node-feature-discovery/values.yaml nor read by its templates)"
    ]


def test_a_pin_without_chart_source_fails():
    with pytest.raises(pytest.fail.Exception, match=r"no chart source for karpenter 9\.9\.9"):
        helm.chart_dir("karpenter", "9.9.9")


def test_placement_negative_control():
    """The GPU operator's controller without the system toleration, and NFD workers without the GPU
    toleration, while other values say we meant system and GPU nodes."""
    pin = catalog.versions().chart("gpu-operator")
    chart = helm.chart_dir(pin.chart, pin.version)
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    values = {
        "operator": {"tolerations": []},
        "daemonsets": {"tolerations": [gpu]},
        "node-feature-discovery": {
            "worker": {"tolerations": []},
            "master": {"tolerations": [{"key": SYSTEM_TAINT, "operator": "Exists"}]},
            "gc": {"tolerations": [{"key": SYSTEM_TAINT, "operator": "Exists"}]},
        },
    }
    problems = placement_problems(
        "gpu-operator", values, helm.render("gpu-operator", chart, "gpu-operator", values, KUBE)
    )
    assert (
        "gpu-operator: Deployment gpu-operator/gpu-operator does not tolerate CriticalAddonsOnly"
        " — it cannot run on the system nodes" in problems
    )
    assert any(
        "DaemonSet gpu-operator/gpu-operator-node-feature-discovery-worker does not tolerate nvidia.com/gpu" in p
        for p in problems
    )


def test_rendered_chart_validation_can_fail():
    """kubernetes-validate rejects a rendered object with a field the API does not have."""
    pin = catalog.versions().chart("karpenter")
    objs = helm.render("karpenter", helm.chart_dir(pin.chart, pin.version), "kube-system", karpenter_values(), KUBE)
    dep = next(o for o in objs if o["kind"] == "Deployment")
    bad = {**dep, "spec": {**dep["spec"], "replicaz": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE, strict=True)


def test_daemonset_overhead_data_matches_the_gpu_chart():
    """tests/support/node_overhead.yaml's GPU DaemonSet rows equal what the pinned chart renders: the
    ClusterPolicy component requests (operator-created DaemonSets) and the NFD worker DaemonSet."""
    pin = catalog.versions().chart("gpu-operator")
    from components.drivers import gpu_operator_values

    objs = helm.render(
        "gpu-operator", helm.chart_dir(pin.chart, pin.version), "gpu-operator", gpu_operator_values(), KUBE
    )
    policy = next(o for o in objs if o["kind"] == "ClusterPolicy")["spec"]
    daemonsets = {o["metadata"]["name"]: o for o in objs if o["kind"] == "DaemonSet"}
    problems = []
    for row in dr.overhead()["daemonsets"]:
        if "clusterPolicy" in row:
            req = ((policy.get(row["clusterPolicy"]) or {}).get("resources") or {}).get("requests") or {}
        elif "renderedDaemonSet" in row:
            ds = daemonsets.get(row["renderedDaemonSet"])
            if ds is None:
                problems.append(f"{row['name']}: the chart renders no DaemonSet {row['renderedDaemonSet']}")
                continue
            cpu, mem = dr.pod_requests(ds["spec"]["template"]["spec"])
            req = {"cpu": f"{cpu}m", "memory": f"{mem}Mi"}
        else:
            continue
        got = (dr.cpu_milli(req.get("cpu", "0")), dr.mem_mib(req.get("memory", "0")))
        if got != (dr.cpu_milli(row["cpu"]), dr.mem_mib(row["memory"])):
            problems.append(
                f"{row['name']}: data says {row['cpu']}/{row['memory']}, the chart renders {got[0]}m/{got[1]:.0f}Mi"
            )
    none(problems)


def test_neuron_chart_is_the_only_unrenderable_pin():
    """Say plainly which pinned chart this tier cannot check, and keep the list from growing silently.
    kube-prometheus-stack: its parent chart is rendered by tests/stacks/test_observability.py."""
    pins = {(p.chart, p.version) for p in catalog.versions().charts.values()}
    assert set(helm.UNRENDERABLE) <= pins, "an UNRENDERABLE entry no longer matches a pin: remove it"
    assert set(helm.UNRENDERABLE) == {("neuron-helm-chart", "1.3.0"), ("kube-prometheus-stack", "88.5.3")}


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_chart_controllers_fit_the_system_nodes(stack_file, plan_of):
    """The charts' controller pods (Karpenter with our resources, the GPU operator, NFD master/gc) fit
    one system node of every node-group type after its DaemonSets (the deploy-rules fit rule)."""
    from tests.stacks.test_deploy_rules import node, resources, system_instance_types

    intent, _, out = plan_of(stack_file)
    system = system_instance_types(intent, resources(out))
    problems = []
    for name, doc, chart in renderable(stack_file, plan_of):
        for where, obj, spec in dr.pods(rendered(name, doc, chart)):
            if obj["kind"] != "DaemonSet" and dr.tolerates(spec, SYSTEM_TAINT):
                problems += [f"{name}: {p}" for t in system for p in dr.fit_problems(where, spec, node(t), "system")]
    none(problems)
