"""Serving composition (placeholder until the serving components land): the planner table."""
from __future__ import annotations

from dataclasses import dataclass, field

from stacks.config import StackIntent


@dataclass
class Served:
    gateway_url: object = None
    model_names: list = field(default_factory=list)
    endpoints: dict = field(default_factory=dict)


def plan_table(intent: StackIntent) -> list[dict]:
    from stacks.summary import model_rows
    return model_rows(intent)


def build(intent: StackIntent, plat) -> Served:
    return Served(model_names=[m.served_name for m in intent.models.values()])
