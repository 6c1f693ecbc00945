"""docs/config-reference.md is the generator's output for the schema, and the generator sees every field."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stacks.config import reference
from stacks.config.schema import StackConfig
from tests.conftest import ROOT


def test_committed_reference_is_the_generators_output():
    committed = (ROOT / "docs" / "config-reference.md").read_text()
    assert committed == reference.render(StackConfig), (
        f"docs/config-reference.md is stale; regenerate it: {reference.REGENERATE}"
    )


def test_reference_lines_written_by_hand_from_the_schema():
    page = reference.render(StackConfig).splitlines()
    # Read off stacks/config/schema.py: VpcConfig.azCount = Field(3, ge=2, le=6); ScheduledFloor.replicas
    # = Field(ge=1); ModelConfig.kvCacheDtype's Literal; GatewayTeam.rpmLimit; hfToken: SecretStr | None.
    for want in (
        "- `cluster.vpc.azCount` (integer; default `3`; ≥ 2; ≤ 6)",
        "- `models.<model>.replicas.floors[].replicas` (integer; required; ≥ 1)",
        '- `models.<model>.kvCacheDtype` (one of `"auto"`, `"fp8"`, `"fp8_e4m3"`, `"fp8_e5m2"`; default `"auto"`)',
        "- `gateway.teams.<team>.rpmLimit` (integer, optional; default unset; ≥ 1)",
        "- `hfToken` (secret string, optional; default unset)",
        "## `llm-serving:observability`",
    ):
        assert want in page, want


class _Inner(BaseModel):
    """An inner section."""

    model_config = ConfigDict(extra="forbid")
    # How many: a comment above the field.
    count: int = Field(4, ge=1, le=9)
    mode: Literal["a", "b"] = "a"  # a trailing comment
    url: str = "http://x#y"  # the '#' inside the string is not a comment


class _Toy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: _Inner = _Inner()
    byName: dict[str, _Inner] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, min_length=1, description="from description=")


class _ToyPlusOne(_Toy):
    # A field the reference did not have before.
    added: float | None = Field(None, gt=0)


def test_toy_model_rows():
    got = {r.path: r for r in reference.rows(_Toy)}
    assert list(got) == [
        "inner",
        "inner.count",
        "inner.mode",
        "inner.url",
        "byName",
        "byName.<key>.count",
        "byName.<key>.mode",
        "byName.<key>.url",
        "tags",
    ]
    assert got["inner"].about == "An inner section."
    assert got["inner.count"] == reference.Row(
        "inner.count", "integer", "`4`", ("≥ 1", "≤ 9"), "How many: a comment above the field."
    )
    assert got["inner.mode"].type == 'one of `"a"`, `"b"`'
    assert got["inner.mode"].about == "a trailing comment"
    assert got["inner.url"].default == '`"http://x#y"`'
    assert got["inner.url"].about == "the '#' inside the string is not a comment"
    assert got["tags"].about == "from description="
    assert got["tags"].constraints == ("at least 1 item(s)",)


def test_a_field_added_to_a_model_shows_up():
    # Negative control for the freshness test: the page changes when the schema gains a field.
    before, after = reference.render(_Toy), reference.render(_ToyPlusOne)
    assert "`added`" not in before
    assert "- `added` (number, optional; default unset; > 0): A field the reference did not have before." in after
    assert before != after


def test_angle_brackets_outside_code_are_escaped():
    row = reference.Row("x", "string", "", (), "see models.<m>.y and `<kept>`")
    assert reference._bullet(row) == "- `x` (string): see models.&lt;m&gt;.y and `<kept>`"
