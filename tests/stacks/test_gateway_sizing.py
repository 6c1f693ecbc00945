"""gateway.peakRequestsPerSecond: replicas from the measured CPU per request, and the refusals.

Hand values: the catalog's 17 ms CPU per request; a LiteLLM replica requests 1 CPU; with autoscaling on
the HPA adds a replica past 70 % (gatewayCpuPercent default) of it, so 0.7 CPU per replica; an
m7i.xlarge system node has 4 vCPUs - kube-reserved (60 + 10 + 2 x 5 = 80 m) - 300 m of DaemonSets = 3.62
CPU: dev's 3 nodes give 10.86, 2 nodes 7.24.
"""

import pytest

from stacks import catalog, config, plan
from stacks.capacity import gateway_sizing
from stacks.yamlio import dump_yaml, load_yaml
from tests.conftest import ROOT

DEV = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())


def stack_file(tmp_path, gateway=None, autoscaling=None, system=None):
    doc = load_yaml(dump_yaml(DEV))
    c = doc["config"]
    if gateway is not None:
        c["llm-serving:gateway"] = gateway
    if autoscaling is not None:
        c["llm-serving:autoscaling"] = {**c["llm-serving:autoscaling"], **autoscaling}
        if autoscaling.get("enabled") is False:  # a fixed replica count, as autoscaling off requires
            c["llm-serving:models"]["qwen3-0-6b"]["replicas"] = {"min": 1, "max": 1}
    if system is not None:
        c["llm-serving:cluster"] = {**c["llm-serving:cluster"], "systemNodes": system}
    p = tmp_path / "Pulumi.t.yaml"
    p.write_text(dump_yaml(doc))
    return p


def problems_of(path):
    with pytest.raises(config.ConfigError) as e:
        config.load_file(path, stack="t")
    return e.value.problems


def test_the_catalog_row_is_the_measured_figure_for_the_pinned_gateway():
    cost = catalog.gateway_cost()
    assert cost.cpu_seconds_per_request == 0.017
    assert cost.source.startswith("benchmarks/gateway_cost.py") and str(cost.measured) == "2026-12-07"
    assert cost.litellm_version == catalog.versions().images["litellm"].tag.removeprefix("v")


def test_replicas_needed_by_hand(tmp_path):
    # 100 req/s x 0.017 s = 1.7 CPU / 0.7 per replica = 2.43 -> 3
    s = gateway_sizing.size(config.load_file(stack_file(tmp_path, {"peakRequestsPerSecond": 100}), "t").config)
    assert s is not None
    assert (s.replicas_needed, s.replicas_allowed, s.allowed_key) == (3, 6, "autoscaling.gatewayMaxReplicas")
    assert s.cpu_request == 1.0 and s.usable_cpu_per_replica == pytest.approx(0.7)
    assert s.system_cpu == pytest.approx(10.86)
    # 247 req/s: 4.199 CPU / 0.7 = 5.998 -> 6, exactly the HPA's maximum: accepted
    s = gateway_sizing.size(config.load_file(stack_file(tmp_path, {"peakRequestsPerSecond": 247}), "t").config)
    assert s is not None and s.replicas_needed == 6


def test_unset_peak_sizes_nothing(tmp_path):
    intent = config.load_file(stack_file(tmp_path), "t")
    assert gateway_sizing.size(intent.config) is None and gateway_sizing.problems(intent.config) == []
    assert gateway_sizing.lines(None) == []


def test_a_peak_above_the_hpa_maximum_is_refused(tmp_path):
    # 250 req/s: 4.25 CPU / 0.7 = 6.07 -> 7 replicas, above gatewayMaxReplicas 6
    assert problems_of(stack_file(tmp_path, {"peakRequestsPerSecond": 250})) == [
        "llm-serving:gateway.peakRequestsPerSecond: 250 req/s x 17 ms CPU needs 7 replicas (0.7 CPU usable each), "
        "above autoscaling.gatewayMaxReplicas 6 — raise autoscaling.gatewayMaxReplicas to 7 or lower the peak"
    ]


def test_without_autoscaling_the_fixed_replicas_must_serve_it(tmp_path):
    off = {"enabled": False}
    # 100 req/s: 1.7 CPU / 1.0 (the whole request, no HPA threshold) -> 2 = gateway.replicas: accepted
    s = gateway_sizing.size(config.load_file(stack_file(tmp_path, {"peakRequestsPerSecond": 100}, off), "t").config)
    assert s is not None and (s.replicas_needed, s.replicas_allowed, s.allowed_key) == (2, 2, "gateway.replicas")
    # 120 req/s: 2.04 CPU -> 3 replicas
    (p,) = problems_of(stack_file(tmp_path, {"peakRequestsPerSecond": 120}, off))
    assert p.startswith("llm-serving:gateway.peakRequestsPerSecond: 120 req/s x 17 ms CPU needs 3 replicas")
    assert p.endswith("— raise gateway.replicas to 3 or lower the peak")


def test_a_peak_the_system_nodes_cannot_hold_is_refused(tmp_path):
    wide = {"gatewayMaxReplicas": 20}
    two = {"minSize": 2, "desiredSize": 2}  # 2 x m7i.xlarge: 7.24 CPU
    # 285 req/s: 4.845 / 0.7 = 6.92 -> 7 replicas x 1 CPU <= 7.24: accepted
    config.load_file(stack_file(tmp_path, {"peakRequestsPerSecond": 285}, wide, two), "t")
    # 290 req/s: 4.93 / 0.7 = 7.04 -> 8 replicas x 1 CPU > 7.24
    assert problems_of(stack_file(tmp_path, {"peakRequestsPerSecond": 290}, wide, two)) == [
        "llm-serving:gateway.peakRequestsPerSecond: 290 req/s x 17 ms CPU needs 8 replicas requesting 8 CPU, more "
        "than the system nodes' 7.24 allocatable CPU — raise cluster.systemNodes.desiredSize or use larger "
        "cluster.systemNodes.instanceTypes"
    ]
    # three 2xlarge nodes: 8 vCPUs - (60 + 10 + 10 + 4 x 2.5 = 90 m) - 300 m = 7.61 each, 22.83 in all
    bigger = {"instanceTypes": ["m7i.2xlarge"], "minSize": 3, "desiredSize": 3, "maxSize": 4}
    intent = config.load_file(stack_file(tmp_path, {"peakRequestsPerSecond": 290}, wide, bigger), "t")
    s = gateway_sizing.size(intent.config)
    assert s is not None and s.system_cpu == pytest.approx(22.83)


def test_a_size_not_in_the_catalog_is_not_checked(tmp_path):
    odd = {"instanceTypes": ["m7i.metal-24xl"]}
    intent = config.load_file(stack_file(tmp_path, {"peakRequestsPerSecond": 100}, None, odd), "t")
    s = gateway_sizing.size(intent.config)
    assert s is not None and s.system_cpu is None
    assert gateway_sizing.lines(s.as_dict())[-1].startswith("gateway: the system nodes' CPU is not checked")


@pytest.mark.parametrize("bad", [0, -5, ".inf", ".nan", "many", True])
def test_the_peak_is_a_positive_finite_number(tmp_path, bad):
    p = stack_file(tmp_path)
    line = f"  llm-serving:gateway: {{peakRequestsPerSecond: {bad}}}\n"
    p.write_text(p.read_text().replace("config:\n", "config:\n" + line))
    (problem,) = problems_of(p)
    assert problem.startswith("llm-serving:gateway.peakRequestsPerSecond: ")


def test_cpu_quantity():
    assert gateway_sizing.cpu_quantity("1") == 1.0
    assert gateway_sizing.cpu_quantity("500m") == 0.5
    assert gateway_sizing.cpu_quantity("1.5") == 1.5


def test_plan_reports_and_refuses(tmp_path, capsys):
    code = plan.main(["t", "--config", str(stack_file(tmp_path, {"peakRequestsPerSecond": 100}))])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert (
        "gateway: peak 100 req/s x 17 ms CPU per request (measured) / 0.7 CPU per replica -> 3 replicas "
        "(autoscaling.gatewayMaxReplicas 6)"
    ) in out
    code = plan.main(["t", "--config", str(stack_file(tmp_path, {"peakRequestsPerSecond": 250}))])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines() == [f"error: {problems_of(stack_file(tmp_path, {'peakRequestsPerSecond': 250}))[0]}"]
