"""The system node group fits everything scheduled on it with every autoscaler at its maximum; the plan
refuses (exit 2, one line naming cluster.systemNodes) when it does not. Over every example and ok fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks.capacity import system_fit
from tests.conftest import ROOT
from tests.stacks.test_awaited_readiness import STACKS

DEV = ROOT / "Pulumi.dev.yaml"


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: Path(p).stem)
def test_the_system_group_fits_at_the_maxima(stack_file, plan_of):
    _intent, rec, _out = plan_of(stack_file)
    assert system_fit.problems_of(rec.resources) == []


def test_dev_requests_by_hand(plan_of):
    """Millicores at the maxima, from the rendered objects and the chart/add-on rows:
    gateway 6 (HPA max) x 1000 + cache Job 1000 + front door 2 x 100 + GPU operator 200 + NFD 100 + 10
    + KEDA 3 x 100 + Karpenter 2 x 500 + Prometheus 500 + Alertmanager 50 + Grafana 100 + 50
    + kube-state-metrics 50 + operator 100 + CoreDNS 2 x 100 + metrics-server 2 x 100 + EBS CSI 2 x 60
    = 10180. m7i.xlarge: 4000 - kube-reserved (60 + 10 + 2 x 5) - DaemonSet allowance 300 = 3620 each."""
    _intent, rec, _out = plan_of(DEV)
    fit = system_fit.system_fit(rec.resources)
    assert fit is not None and fit.want[0] == 10180
    assert fit.offer[0] == 3620 and fit.nodes == 3 and fit.instance_type == "m7i.xlarge"
    gateway = [p for p in fit.pods if p.name == "litellm"]
    assert gateway == [system_fit.Pods("litellm", 6, 1000, 2048.0)]


def test_every_system_pod_has_requests(plan_of):
    """Rendered workloads on system nodes and every chart component on them request CPU and memory
    (the EFS CSI controller is the add-on's own default, no requests; it is not ours to set)."""
    _intent, rec, _out = plan_of(DEV)
    ours = system_fit.workloads(rec.resources) + system_fit.chart_pods(rec.resources)
    assert {p.name for p in ours} >= {"litellm", "prometheus", "grafana", "kube-state-metrics", "karpenter"}
    assert [p.name for p in ours if p.cpu_m == 0 or p.mem_mib == 0] == []


def test_control_two_nodes_are_refused(plan_of):
    """Negative control: the dev plan on its former two system nodes does not fit: 10180 m > 2 x 3620 m."""
    _intent, rec, _out = plan_of(DEV)

    class Two:
        def __init__(self, r):
            self.__dict__.update(r.__dict__)
            if r.type == "aws:eks/nodeGroup:NodeGroup":
                self.inputs = {**r.inputs, "scalingConfig": {**r.inputs["scalingConfig"], "desiredSize": 2}}

    assert system_fit.problems_of([Two(r) for r in rec.resources]) == [
        "llm-serving:cluster.systemNodes: with every autoscaler at its maximum the system pods request "
        "10.18 vCPU > 7.24 that 2x m7i.xlarge offer after kube-reserved and DaemonSets — set desiredSize and "
        "minSize to 3, choose a larger instanceTypes[0], or lower autoscaling.gatewayMaxReplicas"
    ]


def test_the_plan_exits_2_with_one_line(tmp_path, capsys):
    from stacks.plan import main

    cfg = tmp_path / "Pulumi.small.yaml"
    cfg.write_text(DEV.read_text().replace("systemNodes: {minSize: 3, desiredSize: 3}", "systemNodes: {}"))
    assert main(["small", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: llm-serving:cluster.systemNodes: ")


def test_quantities_by_hand():
    from stacks.capacity import quantity

    assert quantity.millicores("500m") == 500 and quantity.millicores("2") == 2000 and quantity.millicores(1.5) == 1500
    assert quantity.mib("12Gi") == 12288 and quantity.mib("64Mi") == 64 and quantity.gib("200Gi") == 200
    assert quantity.value("1G") == 1e9
    with pytest.raises(ValueError):
        quantity.value("12 GB")
