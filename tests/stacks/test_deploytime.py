"""Modelled `pulumi up` time: the critical path, with hand-computed graphs."""

import json
from dataclasses import dataclass, field

import pytest

from stacks import catalog
from stacks.capacity import deploytime
from stacks.plan import main as plan_main
from tests.conftest import ROOT, STACK_FILES

D = catalog.Duration


@dataclass
class N:
    urn: str
    type: str = "t:x:Slow"
    parent: str | None = None
    custom: bool = True
    inputs: dict = field(default_factory=dict)
    dependencies: tuple = ()
    providers: tuple = ()

    @property
    def name(self):
        return self.urn


TABLE = catalog.Durations(
    default=D(1, "test"),
    component=D(0, "test"),
    types={
        "t:x:Slow": D(10, "test"),
        "t:x:Fast": D(3, "test"),
        "t:x:Remote": D(100, "test"),
        "kubernetes:skipAwait": D(2, "test"),
        "kubernetes:default": D(4, "test"),
        "kubernetes:core/v1:Service": D(20, "test"),
        "kubernetes:core/v1:Service|LoadBalancer": D(180, "test"),
        "kubernetes:helm.sh/v3:Release": D(120, "test"),
        "kubernetes:helm.sh/v3:Release|karpenter-crd": D(15, "test"),
    },
)


def test_hand_made_graph_critical_path():
    # a(10) -> b(3) -> d(10); a -> c(100, remote component) ; e(3) child of component p which depends on c
    # finishes: a 10, b 13, c 110, d 23, p 110 (component, 0 s), e 113, f = child of custom d: 23 + 10 = 33
    nodes = [
        N("a"),
        N("b", "t:x:Fast", dependencies=("a",)),
        N("c", "t:x:Remote", custom=False, dependencies=("a",)),
        N("d", dependencies=("b",)),
        N("p", "test:index:Comp", custom=False, dependencies=("c",)),
        N("e", "t:x:Fast", parent="p"),
        N("f", parent="d"),
        N("g", dependencies=("not-recorded",)),
    ]
    dt = deploytime.critical_path(nodes, TABLE)
    assert dt.seconds == 113
    assert [s.name for s in dt.path] == ["a", "c", "e"]  # p takes 0 s and is left out of the path
    assert [s.finish for s in dt.path] == [10, 110, 113]


def test_provider_is_waited_for_and_variants_apply():
    cluster = N("cluster", "t:x:Remote", custom=False)
    prov = N("prov", "pulumi:providers:kubernetes", dependencies=("cluster",))
    ns = N("ns", "kubernetes:core/v1:Namespace", providers=("prov",))
    lb = N(
        "lb",
        "kubernetes:core/v1:Service",
        inputs={"spec": {"type": "LoadBalancer"}},
        dependencies=("ns",),
        providers=("prov",),
    )
    crd = N(
        "crd",
        "kubernetes:helm.sh/v3:Release",
        inputs={"chart": "oci://public.ecr.aws/karpenter/karpenter-crd"},
        providers=("prov",),
    )
    skip = N(
        "dep",
        "kubernetes:apps/v1:Deployment",
        inputs={"metadata": {"annotations": {"pulumi.com/skipAwait": "true"}}},
        providers=("prov",),
    )
    dt = deploytime.critical_path([cluster, prov, ns, lb, crd, skip], TABLE)
    # cluster 100, provider (default 1) 101, namespace 105, LoadBalancer Service 285
    assert dt.seconds == 285 and [s.name for s in dt.path] == ["cluster", "prov", "ns", "lb"]
    assert deploytime.duration(crd, TABLE).seconds == 15
    assert deploytime.duration(skip, TABLE).seconds == 2
    assert deploytime.duration(N("svc", "kubernetes:core/v1:Service", inputs={"spec": {}}), TABLE).seconds == 20


def test_a_cycle_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="cycle"):
        deploytime.critical_path([N("a", dependencies=("b",)), N("b", dependencies=("a",))], TABLE)


def test_every_duration_names_a_source():
    t = catalog.durations()
    for key, d in [("default", t.default), ("component", t.component), *t.types.items()]:
        assert len(d.source) > 10, key


def test_dev_deploy_time_runs_through_the_eks_cluster(tmp_path, capsys):
    assert plan_main(["dev", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    dt = json.loads((tmp_path / "summary.json").read_text())["deployTime"]
    names = [s["name"] for s in dt["path"]]
    assert "cluster-eks" in names and "system-ng" in names
    assert dt["seconds"] == sum(s["seconds"] for s in dt["path"])
    assert dt["seconds"] >= 960 + 300  # control plane, then the system node group
    assert "modelled pulumi up:" in table and "cluster-eks" in table


def test_a_job_counts_its_own_deadline_when_shorter_than_its_row():
    table = catalog.Durations(default=D(1, "t"), component=D(0, "t"), types={"kubernetes:batch/v1:Job": D(600, "t")})
    short = N("j1", type="kubernetes:batch/v1:Job", inputs={"spec": {"activeDeadlineSeconds": 300}})
    long = N("j2", type="kubernetes:batch/v1:Job", inputs={"spec": {"activeDeadlineSeconds": 3600}})
    bare = N("j3", type="kubernetes:batch/v1:Job")
    flag = N("j4", type="kubernetes:batch/v1:Job", inputs={"spec": {"activeDeadlineSeconds": True}})
    assert [deploytime.duration(n, table).seconds for n in (short, long, bare, flag)] == [300, 600, 600, 600]


def uncovered_types(types: set[str], table: catalog.Durations) -> set[str]:
    """Cloud types without a row of their own; Kubernetes objects fall to kubernetes:default by design."""
    return {t for t in types if not t.startswith("kubernetes:") and table.lookup(t) is None}


STACKS_WITH_EVERY_PATH = [
    *STACK_FILES,
    *(ROOT / "tests" / "configs" / f for f in ("gateway-database.ok.yaml", "gateway-teams.ok.yaml")),
]


@pytest.mark.parametrize("stack_file", STACKS_WITH_EVERY_PATH, ids=lambda p: p.stem)
def test_every_type_a_stack_creates_has_a_duration_row(stack_file, plan_of):
    _intent, rec, _out = plan_of(stack_file)
    types = {r.type for r in rec.resources if r.custom}
    assert uncovered_types(types, catalog.durations()) == set()


def test_the_row_check_can_fail():
    table = catalog.Durations(default=D(5, "t"), component=D(0, "t"), types={"aws:iam/role:Role": D(5, "t")})
    got = uncovered_types({"aws:iam/role:Role", "aws:x/y:Z", "kubernetes:core/v1:Pod"}, table)
    assert got == {"aws:x/y:Z"}
