"""Showback in the plan: accelerator $/h by team (summary.json `costByTeam`, a plan-table block).

Rule: each model's accelerator $/h (min and max, the planner's `hourlyUsd`) is split equally among the
teams allowed to call it; a model no team may call is "(unassigned)". Expected values by hand.
"""

from __future__ import annotations

import json

import pytest

from stacks import report
from stacks.capacity import costs
from tests.conftest import ROOT

TEAM = ROOT / "stacks" / "examples" / "Pulumi.team-search.yaml"
SEED000 = ROOT / "stacks" / "examples" / "Pulumi.seed000-inf2-llama-qwen-webui.yaml"
TEAMS = ROOT / "stacks" / "examples" / "Pulumi.teams.yaml"


def test_equal_split_by_hand():
    # a: $1.00-2.00/h used by x and y; b: $0.50/h used by x; c: $0.30-0.60/h used by nobody.
    got = costs.cost_by_team(
        {"a": (1.0, 2.0), "b": (0.5, 0.5), "c": (0.3, 0.6)},
        {"x": ["a", "b"], "y": ["a"], "z": []},
    )
    assert got == {
        "(unassigned)": {"min": 0.3, "max": 0.6, "models": {"c": 1.0}},
        "x": {"min": 1.0, "max": 1.5, "models": {"a": 0.5, "b": 1.0}},
        "y": {"min": 0.5, "max": 1.0, "models": {"a": 0.5}},
    }


def test_three_way_split_rounds_but_sums():
    got = costs.cost_by_team({"a": (1.0, 1.0)}, {"p": ["a"], "q": ["a"], "r": ["a"]})
    assert [got[t]["min"] for t in "pqr"] == [0.3333, 0.3333, 0.3333]
    assert got["p"]["models"] == {"a": 0.3333}


def test_control_a_model_counted_twice_would_show():
    """The check can fail: a wrong split (every user pays the whole model) breaks the sum."""
    got = costs.cost_by_team({"a": (1.0, 1.0)}, {"p": ["a"], "q": ["a"]})
    assert sum(r["min"] for r in got.values()) == pytest.approx(1.0)
    wrong = {t: {"min": 1.0} for t in got}
    assert sum(r["min"] for r in wrong.values()) != pytest.approx(1.0)


def test_team_stack_pays_for_its_own_models(plan_of):
    _, _, out = plan_of(TEAM)
    doc = json.loads((out / "summary.json").read_text())
    # qwen2-5-7b on g6e.xlarge, 1 replica: $1.861/h (instances.yaml), all the search team's.
    assert doc["costByTeam"] == {"search": {"min": 1.861, "max": 1.861, "models": {"qwen2-5-7b": 1.0}}}
    assert doc["hourlyUsd"] == {"min": 1.861, "max": 1.861}
    text = report.table(doc)
    assert "accelerator $/h by team (each model's accelerator $/h split equally" in text
    assert "  search  $1.86-$1.86  qwen2-5-7b" in text


def test_platform_without_teams_leaves_it_unassigned(plan_of):
    _, _, out = plan_of(SEED000)
    doc = json.loads((out / "summary.json").read_text())
    assert list(doc["costByTeam"]) == ["(unassigned)"]
    assert doc["costByTeam"]["(unassigned)"]["min"] == doc["hourlyUsd"]["min"]
    assert "by team" not in report.table(doc)  # no teams, no showback block


def test_platform_teams_split_shared_models(plan_of):
    """gateway.teams of the teams example: search may call qwen3-0-6b; research qwen3-0-6b and qwen2-5-7b.
    By the rule: search pays half of qwen3-0-6b, research the other half plus all of qwen2-5-7b."""
    intent, _, out = plan_of(TEAMS)
    assert report.team_models(intent) == {"search": {"qwen3-0-6b"}, "research": {"qwen3-0-6b", "qwen2-5-7b"}}
    doc = json.loads((out / "summary.json").read_text())
    small, large = intent.models["qwen3-0-6b"].hourly_usd, intent.models["qwen2-5-7b"].hourly_usd
    assert doc["costByTeam"]["search"] == {
        "min": round(small[0] / 2, 4),
        "max": round(small[1] / 2, 4),
        "models": {"qwen3-0-6b": 0.5},
    }
    assert doc["costByTeam"]["research"]["min"] == round(small[0] / 2 + large[0], 4)
    assert doc["costByTeam"]["research"]["models"] == {"qwen3-0-6b": 0.5, "qwen2-5-7b": 1.0}
    assert "(unassigned)" not in doc["costByTeam"]
    assert sum(r["min"] for r in doc["costByTeam"].values()) == pytest.approx(doc["hourlyUsd"]["min"], abs=1e-3)
    assert "accelerator $/h by team" in report.table(doc)
