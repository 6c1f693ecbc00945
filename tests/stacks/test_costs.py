"""Whole-stack $/h from the recorded resources, with totals computed by hand (us-east-1 list prices)."""

from dataclasses import dataclass, field

import pytest

from stacks.capacity import costs
from stacks.plan import run_program
from tests.conftest import ROOT

# Hand arithmetic, shared by dev and seed002 (3 AZs, 2 system nodes, one internal NLB, one EFS):
# EKS 0.10 + 2 x m7i.xlarge 0.2016 + 3 NAT x 0.045 + 3 EIP x 0.005 + NLB 0.0225 + EFS 100 GB x 0.30 / 730
PLATFORM = 0.10 + 0.4032 + 0.135 + 0.015 + 0.0225 + 30 / 730  # = 0.7168959


def items(doc):
    return {i["name"]: i for i in doc["items"]}


def test_dev_stack_cost(plan_of):
    _intent, rec, _ = plan_of(ROOT / "Pulumi.dev.yaml")
    doc = costs.stack_cost(rec.resources, {"qwen3-0-6b": 2}).as_dict()
    # g6.xlarge 0.8048 x 1 (min) / x 2 (max)
    assert doc["min"] == pytest.approx(1.5216, abs=1e-4)
    assert doc["min"] == pytest.approx(PLATFORM + 0.8048, abs=1e-4)
    assert doc["max"] == pytest.approx(2.3264, abs=1e-4)
    it = items(doc)
    assert it["NAT gateways"]["count"] == 3 and it["system nodes"]["min"] == pytest.approx(0.4032)
    assert it["accelerator nodes: qwen3-0-6b"]["note"] == "1-2x g6.xlarge (+7 capacity-fallback types, priced higher)"


def test_seed002_stack_cost(plan_of):
    _, rec, _ = plan_of(ROOT / "stacks/examples/Pulumi.seed002-g5-qwen3-14b.yaml")
    doc = costs.stack_cost(rec.resources, {"qwen3-14b": 1}).as_dict()
    assert doc["min"] == pytest.approx(PLATFORM + 5.672, abs=1e-4)  # one g5.12xlarge
    assert doc["max"] == doc["min"]


def test_rds_multi_az_is_priced_from_the_registered_instance(tmp_path):
    cfg = tmp_path / "Pulumi.db.yaml"
    cfg.write_text((ROOT / "Pulumi.dev.yaml").read_text() + "  llm-serving:gateway:\n    database: {enabled: true}\n")
    _, rec = run_program("db", cfg)
    it = items(costs.stack_cost(rec.resources).as_dict())
    # db.t4g.medium Multi-AZ 0.130 + 20 GB x 0.23 / 730
    assert it["RDS"]["min"] == pytest.approx(0.130 + 20 * 0.23 / 730, abs=1e-4)


@dataclass
class R:
    type: str
    inputs: dict = field(default_factory=dict)
    urn: str = "u"
    name: str = "n"


def test_cost_follows_the_records_not_the_config():
    # One NAT gateway recorded (e.g. a single-NAT network): one NAT hour, whatever the config said.
    recs = [R("aws:ec2/natGateway:NatGateway"), R("eks:index:Cluster")]
    it = items(costs.stack_cost(recs).as_dict())
    assert it["NAT gateways"]["min"] == pytest.approx(0.045) and "RDS" not in it and "EFS" not in it


def test_an_unpriced_rds_class_is_shown_without_a_price():
    """The config validates the class; the cost counts its storage only and says so. 100 GB Multi-AZ at
    $0.23/GB-month over 730 h = $0.031507/h."""
    rec = R("aws:rds/instance:Instance", {"instanceClass": "db.x9.huge", "multiAz": True, "allocatedStorage": 100})
    it = items(costs.stack_cost([rec]).as_dict())
    assert it["RDS"]["min"] == pytest.approx(0.0315, abs=1e-4)
    assert "db.x9.huge Multi-AZ, 100 GB (no price in stacks/catalog/prices.yaml" in it["RDS"]["note"]


def test_the_plan_table_prints_the_breakdown_and_total(tmp_path, capsys):
    from stacks.plan import main as plan_main

    assert plan_main(["dev"]) == 0
    out = capsys.readouterr().out
    assert "whole stack $/h" in out
    total = [line for line in out.splitlines() if line.strip().startswith("total ")]
    assert total and total[0].split()[1:] == ["$1.5216", "$2.3264"]
