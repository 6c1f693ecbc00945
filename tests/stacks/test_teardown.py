"""Teardown: every object that makes an EBS volume waits (transitively) for the EBS CSI add-on, so on
`pulumi destroy` it is deleted first and the add-on's controller is still there to delete the volume.

Pulumi deletes in reverse dependency order. A claim deleted after (or beside) the add-on leaves its
`reclaimPolicy: Delete` volume behind, billed. Objects that make EBS volumes: a PersistentVolumeClaim on
an EBS StorageClass (or none: the default class), a StatefulSet's volumeClaimTemplates, a Prometheus or
Alertmanager CR's storage volumeClaimTemplate, a Helm release whose values ask for one. Over every
example and ok fixture; team stacks have no add-on of their own (the platform's outlives them when the
team stacks are destroyed first, docs/operate.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.stacks.test_awaited_readiness import STACKS, waits_for

ADDON = "aws:eks/addon:Addon"
EBS_ADDON = "aws-ebs-csi-driver"
EBS_PROVISIONER = "ebs.csi.aws.com"


def _asks_for_volume(values) -> bool:
    """A Helm values tree that asks for a volume: a volumeClaimTemplate, or persistence enabled."""
    if isinstance(values, dict):
        if "volumeClaimTemplate" in values or (values.get("persistence") or {}).get("enabled") is True:
            return True
        return any(_asks_for_volume(v) for v in values.values())
    if isinstance(values, list):
        return any(_asks_for_volume(v) for v in values)
    return False


def makes_ebs_volume(r, ebs_classes: set[str]) -> bool:
    i = r.inputs or {}
    spec = i.get("spec") or {}
    if r.type == "kubernetes:core/v1:PersistentVolumeClaim":
        return spec.get("storageClassName", None) in ebs_classes | {None}
    if r.type == "kubernetes:apps/v1:StatefulSet":
        return bool(spec.get("volumeClaimTemplates"))
    if r.type in ("kubernetes:monitoring.coreos.com/v1:Prometheus", "kubernetes:monitoring.coreos.com/v1:Alertmanager"):
        return bool((spec.get("storage") or {}).get("volumeClaimTemplate"))
    if r.type == "kubernetes:helm.sh/v3:Release":
        return _asks_for_volume(i.get("values") or {})
    return False


def problems(resources) -> list[str]:
    addons = [r for r in resources if r.type == ADDON and (r.inputs or {}).get("addonName") == EBS_ADDON]
    if not addons:
        return []  # a team stack: the platform stack owns the add-on
    ebs_classes = {
        ((r.inputs.get("metadata") or {}).get("name", r.name))
        for r in resources
        if r.type == "kubernetes:storage.k8s.io/v1:StorageClass" and r.inputs.get("provisioner") == EBS_PROVISIONER
    }
    out = []
    for r in resources:
        if makes_ebs_volume(r, ebs_classes) and addons[0].urn not in waits_for(resources, r.urn):
            out.append(f"{r.type} {r.name}: makes an EBS volume but does not wait for the {EBS_ADDON} add-on")
    return out


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: Path(p).stem)
def test_every_volume_maker_waits_for_the_ebs_csi_addon(stack_file, plan_of):
    _intent, rec, _out = plan_of(stack_file)
    assert problems(rec.resources) == []


def test_the_prometheus_release_and_the_ui_claim_are_checked(plan_of):
    """The rule sees the two volume makers of the UI fixture (not vacuous)."""
    _intent, rec, _out = plan_of(ROOT / "tests/configs/gateway-teams.ok.yaml")
    classes = {"gp3"}
    makers = sorted(r.name for r in rec.resources if makes_ebs_volume(r, classes))
    assert makers == ["webui-data"]
    _intent, rec, _out = plan_of(ROOT / "Pulumi.dev.yaml")
    assert sorted(r.name for r in rec.resources if makes_ebs_volume(r, classes)) == ["observability-release"]


def test_control_a_claim_beside_the_addon_is_caught(plan_of):
    """Negative control: the dev plan's observability objects (the Prometheus release and what it waits
    for: its namespaces, policies, the Grafana Role) with their dependencies cut to the namespaces."""
    _intent, rec, _out = plan_of(ROOT / "Pulumi.dev.yaml")
    ns = [r.urn for r in rec.resources if r.type == "kubernetes:core/v1:Namespace"]

    class Cut:
        def __init__(self, r):
            self.__dict__.update(r.__dict__)
            if r.name.startswith("observability-"):
                self.dependencies = tuple(u for u in r.dependencies if u in ns)

    cut = [Cut(r) for r in rec.resources]
    assert problems(rec.resources) == []
    assert problems(cut) == [
        "kubernetes:helm.sh/v3:Release observability-release: makes an EBS volume but does not wait for the "
        "aws-ebs-csi-driver add-on"
    ]


# ---- before a platform destroy: the team stacks still on the cluster (stacks.verify --before-destroy) ----


def _ns(*names):
    return {"items": [{"metadata": {"name": n}} for n in names]}


def _lb(ns, name, kind="LoadBalancer"):
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"type": kind}}


def test_leftovers_name_the_team_and_its_load_balancer():
    from stacks.verify import leftover_checks

    ns = _ns("default", "gateway", "models", "monitoring", "search-models", "search-gateway", "solo-models")
    svcs = {
        "items": [_lb("gateway", "gateway-public"), _lb("search-gateway", "gateway-public"), _lb("x", "y", "ClusterIP")]
    }
    checks = leftover_checks(ns, svcs, {"gateway"})
    fix = "run `pulumi destroy` on each team stack first, then this one"
    assert [(c.name, c.ok, c.detail) for c in checks] == [
        ("team stacks", False, f"still on the cluster: search — {fix}"),
        ("load balancers", False, f"outside the platform: search-gateway/gateway-public — {fix}"),
    ]


def test_control_a_platform_alone_passes(tmp_path, capsys):
    """Negative control, through the CLI: only the platform's namespaces and its own load balancer: exit 0."""
    import json

    from stacks import verify

    answers = {
        "namespaces": _ns("default", "gateway", "models", "monitoring"),
        "services": {"items": [_lb("gateway", "gateway-public")]},
    }
    calls = []

    def run(cmd):
        calls.append(cmd)
        return json.dumps(answers[cmd[4]])

    out = tmp_path / "outputs.json"
    out.write_text(json.dumps({"kubeconfig": "{}"}))
    assert verify.main(["dev", "--outputs", str(out), "--before-destroy"], run=run) == 0
    assert [c[3:5] for c in calls] == [["get", "namespaces"], ["get", "services"]]
    answers["namespaces"] = _ns("gateway", "a-models", "a-gateway")
    assert verify.main(["dev", "--outputs", str(out), "--before-destroy"], run=run) == 1
    assert "still on the cluster: a" in capsys.readouterr().out
