"""Names that are global in an AWS account (IAM roles, instance profiles, Budgets) are unique per stack
and region, within IAM's length limit; the RDS final snapshot's name is unique per create.

Over every example and ok fixture. The cluster name is unique per region (EKS refuses a second cluster
of the same name there) and, by default, `llm-<stack>`; so each global name must carry the cluster name
and the region's short code. Region codes are written out by hand here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, STACK_FILES

STACKS = [*STACK_FILES, *sorted((ROOT / "tests" / "configs").glob("*.ok.yaml"))]
REGION_CODE = {"us-east-1": "use1", "us-west-2": "usw2", "eu-west-1": "euw1", "ap-southeast-2": "apse2"}
# Account-global resource types -> their name limit (IAM quotas: role 64, instance profile 128;
# AWS Budgets: budget name 100).
GLOBAL = {
    "aws:iam/role:Role": 64,
    "aws:iam/instanceProfile:InstanceProfile": 128,
    "aws:budgets/budget:Budget": 100,
}
RDS = "aws:rds/instance:Instance"
RANDOM_ID = "random:index/randomId:RandomId"


def name_problems(resources, cluster: str, region: str) -> list[str]:
    """A fixed `name` on a global type without the cluster name and region code, or too long. Types
    without a `name` input get a Pulumi auto-name (logical name + random suffix), unique already."""
    code = REGION_CODE[region]
    out = []
    for r in resources:
        limit = GLOBAL.get(r.type)
        fixed = (r.inputs or {}).get("name")
        if limit is None or not fixed:
            continue
        if not fixed.endswith(f"-{cluster}-{code}"):
            out.append(f"{r.type} {fixed}: not unique per stack and region (no '-{cluster}-{code}' suffix)")
        if len(fixed) > limit:
            out.append(f"{r.type} {fixed}: {len(fixed)} characters, over {limit}")
    return out


def snapshot_problems(resources) -> list[str]:
    """Each RDS instance's final snapshot name comes from a RandomId of the same component (so a rebuilt
    database gets a new one), and ends with that id's hex."""
    by_urn = {r.urn: r for r in resources}
    out = []
    for db in (r for r in resources if r.type == RDS):
        ids = [by_urn[u] for u in db.dependencies if u in by_urn and by_urn[u].type == RANDOM_ID]
        final = db.inputs.get("finalSnapshotIdentifier", "")
        if not ids or ids[0].parent != db.parent:
            out.append(f"{db.name}: finalSnapshotIdentifier {final!r} does not come from a RandomId")
        elif not final.startswith(db.inputs["identifier"] + "-final-") or len(final.rsplit("-", 1)[1]) != 8:
            out.append(f"{db.name}: finalSnapshotIdentifier {final!r} is not <identifier>-final-<8 hex>")
    return out


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: Path(p).stem)
def test_global_names_carry_the_stack_and_region(stack_file, plan_of):
    intent, rec, _ = plan_of(stack_file)
    assert name_problems(rec.resources, intent.cluster_name, intent.region) == []
    assert snapshot_problems(rec.resources) == []
    if intent.config.cluster.name is None and intent.config.team is None:
        assert intent.stack.replace(".", "-") in intent.cluster_name  # DNS-safe: a dot becomes a hyphen


def test_the_karpenter_and_budget_names_by_hand(plan_of):
    _, rec, _ = plan_of(ROOT / "tests/configs/cluster-budget.ok.yaml")
    names = sorted(r.inputs["name"] for r in rec.resources if r.type in GLOBAL and r.inputs.get("name"))
    assert names == [
        "KarpenterControllerRole-llm-cluster-budget-ok-use1",
        "KarpenterNodeInstanceProfile-llm-cluster-budget-ok-use1",
        "KarpenterNodeRole-llm-cluster-budget-ok-use1",
        "monthly-llm-cluster-budget-ok-use1",
    ]


def test_database_snapshot_name_by_hand(plan_of):
    _, rec, _ = plan_of(ROOT / "tests/configs/gateway-database.ok.yaml")
    (db,) = [r for r in rec.resources if r.type == RDS]
    (rid,) = [r for r in rec.resources if r.type == RANDOM_ID]
    assert rid.inputs["byteLength"] == 4 and rid.inputs["keepers"]["identifier"] == db.inputs["identifier"]
    assert db.inputs["finalSnapshotIdentifier"] == "llm-gateway-database-ok-litellm-final-" + rid_hex(rid.name)


def rid_hex(name: str) -> str:
    import hashlib

    return hashlib.sha1(name.encode()).hexdigest()[:8]  # the mocks' fake id, first 4 bytes


class _R:
    def __init__(self, type, inputs, urn="u", parent=None, dependencies=(), name="n"):
        self.type, self.inputs, self.urn, self.parent, self.dependencies, self.name = (
            type,
            inputs,
            urn,
            parent,
            dependencies,
            name,
        )


def test_control_fixed_names_are_caught():
    fixed = [
        _R("aws:iam/role:Role", {"name": "KarpenterNodeRole-llm-dev"}),
        _R("aws:budgets/budget:Budget", {"name": "llm-dev-monthly"}),
        _R("aws:iam/role:Role", {"name": "K" * 60 + "-llm-dev-use1"}),
        _R("aws:iam/role:Role", {}),  # auto-named: fine
    ]
    assert name_problems(fixed, "llm-dev", "us-east-1") == [
        "aws:iam/role:Role KarpenterNodeRole-llm-dev: not unique per stack and region (no '-llm-dev-use1' suffix)",
        "aws:budgets/budget:Budget llm-dev-monthly: not unique per stack and region (no '-llm-dev-use1' suffix)",
        f"aws:iam/role:Role {'K' * 60}-llm-dev-use1: 73 characters, over 64",
    ]
    db = _R(RDS, {"identifier": "llm-db-litellm", "finalSnapshotIdentifier": "llm-db-litellm-final"}, name="pg")
    assert snapshot_problems([db]) == [
        "pg: finalSnapshotIdentifier 'llm-db-litellm-final' does not come from a RandomId"
    ]
