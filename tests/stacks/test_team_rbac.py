"""What a team stack needs from Kubernetes, against what a team's own role is granted.

Every object the team stack renders is created, read, patched (server-side apply) and deleted by the
Pulumi Kubernetes provider, so each needs those verbs on its resource, in its namespace (or at cluster
scope). A team role gets AmazonEKSEditPolicy scoped to the team's namespaces (components/access.py);
its rules are written out below from the EKS user guide ("Review access policy permissions",
AmazonEKSEditPolicy). The comparison shows the team role cannot run its team stack: Namespaces are
cluster-scoped and the policy only reads ResourceQuotas, so a cluster admin (`cluster.adminRoleArns`)
runs team stacks, and the team roles are for day-to-day kubectl in their namespaces.
"""

from __future__ import annotations

import pytest

from components.access import render_access_scope
from stacks.yamlio import load_yaml
from tests.conftest import ROOT

TEAM_STACK = ROOT / "stacks" / "examples" / "Pulumi.team-search.yaml"
TEAM_NAMESPACES = ("search-models", "search-gateway")
PROVIDER_VERBS = ("create", "get", "patch", "delete")  # create, read back, server-side apply, destroy
WRITE = ("create", "delete", "deletecollection", "patch", "update")
READ = ("get", "list", "watch")
# kind -> (API group, resource, namespaced): the kinds a team stack renders (a new kind fails the test).
RESOURCES = {
    "ConfigMap": ("", "configmaps", True),
    "Deployment": ("apps", "deployments", True),
    "Job": ("batch", "jobs", True),
    "Namespace": ("", "namespaces", False),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies", True),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims", True),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets", True),
    "ResourceQuota": ("", "resourcequotas", True),
    "Secret": ("", "secrets", True),
    "Service": ("", "services", True),
    "ServiceAccount": ("", "serviceaccounts", True),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers", True),
    "ScaledObject": ("keda.sh", "scaledobjects", True),
    "PodMonitor": ("monitoring.coreos.com", "podmonitors", True),
    "PrometheusRule": ("monitoring.coreos.com", "prometheusrules", True),
}
# AmazonEKSEditPolicy, (group, resource) -> verbs (namespaced rules; the resources a team stack uses).
EDIT_POLICY = {
    ("apps", "deployments"): WRITE + READ,
    ("autoscaling", "horizontalpodautoscalers"): WRITE + READ,
    ("batch", "jobs"): WRITE + READ,
    ("networking.k8s.io", "networkpolicies"): WRITE + READ,
    ("policy", "poddisruptionbudgets"): WRITE + READ,
    ("", "configmaps"): WRITE + READ,
    ("", "persistentvolumeclaims"): WRITE + READ,
    ("", "secrets"): WRITE + READ,
    ("", "serviceaccounts"): (*WRITE, *READ, "impersonate"),
    ("", "services"): WRITE + READ,
    ("", "resourcequotas"): READ,
    ("", "namespaces"): READ,
}


def required(manifests: list[dict]) -> set[tuple[str, str, str, str]]:
    """(namespace or '<cluster>', API group, resource, verb) the provider needs for these objects."""
    out = set()
    for m in manifests:
        assert m["kind"] in RESOURCES, f"{m['kind']}: add its API group and resource to RESOURCES"
        group, resource, namespaced = RESOURCES[m["kind"]]
        where = m["metadata"]["namespace"] if namespaced else "<cluster>"
        out |= {(where, group, resource, v) for v in PROVIDER_VERBS}
    return out


def granted(need: tuple[str, str, str, str], policy: dict, scope: dict) -> bool:
    """A namespace-scoped access policy: its rules, in the scope's namespaces only."""
    where, group, resource, verb = need
    in_scope = scope["type"] == "cluster" or where in scope.get("namespaces", [])
    return in_scope and verb in policy.get((group, resource), ())


def team_manifests(plan_of) -> list[dict]:
    _, _, out = plan_of(TEAM_STACK)
    return [load_yaml(f.read_text()) for f in sorted((out / "manifests").glob("*.yaml"))]


def test_the_team_stack_needs_what_its_own_role_is_not_granted(plan_of):
    need = required(team_manifests(plan_of))
    assert len(need) >= 40  # every object kind, four verbs each: not an empty list
    scope = render_access_scope(TEAM_NAMESPACES)
    denied = {n for n in need if not granted(n, EDIT_POLICY, scope)}
    # Written by hand: the two Namespaces (cluster scope) and the accelerator quota (read-only in edit).
    assert {(w, r, v) for w, _, r, v in denied} == {
        *(("<cluster>", "namespaces", v) for v in PROVIDER_VERBS),
        *(("search-models", "resourcequotas", v) for v in ("create", "patch", "delete")),
    }
    # Everything else a team stack creates lies in the team's namespaces, with verbs edit grants.
    rest = need - denied
    assert {w for w, _, _, _ in rest} <= set(TEAM_NAMESPACES) | {"<cluster>"}


@pytest.mark.parametrize(
    "policy,scope,denies",
    [
        ({}, {"type": "cluster"}, True),  # no rules: everything denied
        (dict.fromkeys(EDIT_POLICY, (*WRITE, *READ)), {"type": "cluster"}, False),  # a cluster-wide writer
        (dict.fromkeys(EDIT_POLICY, (*WRITE, *READ)), {"type": "namespace", "namespaces": ["other"]}, True),
    ],
)
def test_controls_of_the_comparison(plan_of, policy, scope, denies):
    need = required(team_manifests(plan_of))
    assert any(not granted(n, policy, scope) for n in need) is denies


def test_a_kind_without_a_row_is_refused():
    with pytest.raises(AssertionError, match="Ingress: add its API group"):
        required([{"kind": "Ingress", "metadata": {"name": "x", "namespace": "search-gateway"}}])
