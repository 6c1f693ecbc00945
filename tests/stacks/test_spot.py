"""Spot pools (stacks/capacity/spot.py): the drain arithmetic by hand, the rendered NodePool requirement,
spot $/h as estimates, and the deploy rule that a spot pool has its interruption path: the EventBridge rule
for the spot warning targets the SQS queue Karpenter's settings.interruptionQueue names."""

import json
from pathlib import Path

import pytest

from stacks import catalog
from stacks.capacity import spot
from stacks.yamlio import load_yaml
from tests.conftest import ROOT, STACK_FILES

SPOT_OK = ROOT / "tests" / "configs" / "spot.ok.yaml"
SPOT_WARNING = "EC2 Spot Instance Interruption Warning"


def test_drain_budget_by_hand():
    # preStop 15 s + requestTimeoutSeconds + exit margin 15 s; the 120 s notice less 10 s for Karpenter.
    assert spot.drain_seconds(600) == 630  # the default: far past the notice
    assert spot.drain_seconds(80) == 110
    assert spot.MAX_REQUEST_TIMEOUT_S == 80


def test_spot_estimate_by_hand():
    g6 = catalog.instances()["g6.xlarge"]  # $0.8048/h on-demand, g6 savings 40-65 %
    assert spot.hourly_usd(g6, 2, 3) == (round(2 * 0.8048 * 0.35, 4), round(3 * 0.8048 * 0.60, 4))
    assert spot.hourly_usd(g6, 2, 3) == (0.5634, 1.4486)


def test_every_family_has_a_spot_estimate():
    assert set(catalog.families()) <= set(spot.table().savingsPercent)
    assert all(0 < lo <= hi < 100 for lo, hi in spot.table().savingsPercent.values())


def manifests(out: Path) -> list[dict]:
    return [load_yaml(f.read_text()) for f in sorted((out / "manifests").glob("*.yaml"))]


def capacity_types(out: Path) -> dict[str, list[str]]:
    pools = [d for d in manifests(out) if d and d.get("kind") == "NodePool"]
    return {
        p["metadata"]["name"]: next(
            r["values"]
            for r in p["spec"]["template"]["spec"]["requirements"]
            if r["key"] == "karpenter.sh/capacity-type"
        )
        for p in pools
    }


def test_nodepool_renders_the_capacity_types(plan_of):
    _, _, out = plan_of(SPOT_OK)
    assert capacity_types(out) == {"gpu": ["spot", "on-demand"]}
    _, _, dev = plan_of(ROOT / "Pulumi.dev.yaml")  # negative control: the default stays on-demand
    assert set(map(tuple, capacity_types(dev).values())) == {("on-demand",)}


def test_plan_shows_spot_as_an_estimate(plan_of):
    _, _, out = plan_of(SPOT_OK)
    m = json.loads((out / "summary.json").read_text())["models"][0]
    assert m["spotHourlyUsd"] == {"min": 0.5634, "max": 0.9658, "estimate": True, "date": "2026-12-07"}
    (line,) = spot.lines([m])
    assert line.startswith("spot chat: $0.56-$0.97/h on spot (ESTIMATE, 2026-12-07")
    assert "vs $1.61-$1.61/h on-demand" in line


def interruption_problems(resources: list[dict], karpenter_values: dict) -> list[str]:
    """A spot pool is only drained in time if Karpenter hears the warning: its settings name a queue, the
    queue exists, EventBridge may send to it, and a rule for the spot warning targets it."""
    queue_name = (karpenter_values.get("settings") or {}).get("interruptionQueue")
    if not queue_name:
        return ["karpenter settings.interruptionQueue is not set"]
    queues = [r for r in resources if r["type"] == "aws:sqs/queue:Queue" and r["inputs"].get("name") == queue_name]
    if not queues:
        return [f"no SQS queue named {queue_name!r}"]
    q = queues[0]
    problems = []
    policies = [r for r in resources if r["type"] == "aws:sqs/queuePolicy:QueuePolicy" and r["name"] == q["name"]]
    if not any("events.amazonaws.com" in json.dumps(p["inputs"]) for p in policies):
        problems.append(f"queue {queue_name!r}: no policy lets EventBridge send to it")
    rules = {
        r["name"]
        for r in resources
        if r["type"] == "aws:cloudwatch/eventRule:EventRule"
        and SPOT_WARNING in json.loads(r["inputs"].get("eventPattern") or "{}").get("detail-type", [])
    }
    targets = [
        r
        for r in resources
        if r["type"] == "aws:cloudwatch/eventTarget:EventTarget"
        and r["name"] in rules
        and str(r["inputs"].get("arn", "")).startswith("arn:aws:sqs:")
        and str(r["inputs"]["arn"]).rsplit(":", 1)[-1] in (q["name"], queue_name)
    ]
    if not targets:
        problems.append(f"no EventBridge rule sends {SPOT_WARNING!r} to queue {queue_name!r}")
    return problems


def karpenter_values(out: Path) -> dict:
    return load_yaml((out / "helm" / "karpenter.yaml").read_text())["values"]


@pytest.mark.parametrize("stack_file", [*STACK_FILES, SPOT_OK], ids=lambda p: p.name)
def test_spot_pool_has_its_interruption_path(stack_file, plan_of):
    """Whenever a stack renders a spot-capable NodePool (the team stacks render no platform)."""
    _, _, out = plan_of(stack_file)
    if not any("spot" in v for v in capacity_types(out).values()):
        assert stack_file != SPOT_OK
        return
    resources = json.loads((out / "resources.json").read_text())
    assert interruption_problems(resources, karpenter_values(out)) == []


@pytest.mark.parametrize(
    "drop, want",
    [
        ("rule", "no EventBridge rule sends 'EC2 Spot Instance Interruption Warning' to queue"),
        ("policy", "no policy lets EventBridge send to it"),
        ("setting", "karpenter settings.interruptionQueue is not set"),
    ],
)
def test_interruption_path_negative_controls(plan_of, drop, want):
    _, _, out = plan_of(SPOT_OK)
    resources = json.loads((out / "resources.json").read_text())
    values = karpenter_values(out)
    if drop == "rule":
        resources = [r for r in resources if not r["name"].endswith("-spot-interruption")]
    elif drop == "policy":
        resources = [r for r in resources if r["type"] != "aws:sqs/queuePolicy:QueuePolicy"]
    else:
        values = {**values, "settings": {k: v for k, v in values["settings"].items() if k != "interruptionQueue"}}
    problems = interruption_problems(resources, values)
    assert len(problems) == 1 and want in problems[0]
