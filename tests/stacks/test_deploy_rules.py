"""Deploy-rules tier: what the Pulumi CLI, the kubelet/scheduler and the network enforce at deploy time,
over every committed stack file and example (users copy examples to Pulumi.<stack>.yaml). The rules
and their sources are in tests/support/deploy_rules.py; each has a negative control here with
expected values computed by hand."""

import json
from pathlib import Path

import pytest

from components.types import SYSTEM_TAINT, ImagePin
from stacks import catalog
from stacks.yamlio import load_yaml
from tests.conftest import ROOT, STACK_FILES
from tests.support import deploy_rules as dr

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
PROJECT = load_yaml((ROOT / "Pulumi.yaml").read_text())


def none(problems: list[str]) -> None:
    """Assert no problems, printing each one in full (pytest would truncate the list)."""
    assert not problems, "\n" + "\n".join(problems)


def stack_name(f: Path) -> str:
    return f.name.removeprefix("Pulumi.").removesuffix(".yaml")


def objects(out: Path) -> list[dict]:
    return [load_yaml(f.read_text()) for f in sorted((out / "manifests").glob("*.yaml"))]


def resources(out: Path) -> list[dict]:
    return json.loads((out / "resources.json").read_text())


# ---- Pulumi CLI ----------------------------------------------------------------------------------


def test_project_file_matches_the_cli_schema():
    schema = json.loads((SCHEMAS / "pulumi-project.json").read_text())
    none(dr.project_schema_problems(PROJECT, schema))


def test_project_schema_check_can_fail():
    schema = json.loads((SCHEMAS / "pulumi-project.json").read_text())
    bad = {k: v for k, v in PROJECT.items() if k != "runtime"} | {"config": {"x": {"type": "map"}}}
    assert dr.project_schema_problems(bad, schema) == [
        "Pulumi.yaml: <root>: 'runtime' is a required property",
        "Pulumi.yaml: config.x: {'type': 'map'} is not valid under any of the given schemas",
    ]


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_stack_sets_every_declared_key(stack_file):
    """`pulumi up -s <stack>` stops before the program if this fails."""
    doc = load_yaml(stack_file.read_text())
    none(dr.stack_config_problems(PROJECT, stack_name(stack_file), doc))


def test_cli_config_check_negative_controls():
    project = {
        "name": "p",
        "config": {
            "need": {"type": "string"},  # no default: every stack must set it
            "also": {"type": "string"},
            "opt": {"type": "string", "default": "x"},  # default: fine when unset
            "aws:region": {"type": "string"},  # other namespace: the CLI does not require it
            "tok": {"type": "string", "secret": True},
            "n": {"type": "integer", "default": 1},
        },
    }
    assert dr.stack_config_problems(project, "dev", {"config": {}}) == [
        "Stack 'dev' is missing configuration values 'also', 'need' and 'tok'"
    ]
    ok = {"config": {"p:need": "a", "also": "b", "p:tok": {"secure": "v1:xx"}, "p:n": 3}}
    assert dr.stack_config_problems(project, "dev", ok) == []
    bad = {"config": {"p:need": "a", "p:also": "b", "p:tok": "plain", "p:n": "three"}}
    assert dr.stack_config_problems(project, "dev", bad) == [  # the CLI stops at the first (sorted keys)
        "Stack 'dev' with configuration key 'n' must be of type 'integer'",
        "Stack 'dev' with configuration key 'tok' must be encrypted as it's secret",
    ]
    one = {"config": {"p:need": "a", "p:tok": {"secure": "v1:xx"}}}
    assert dr.stack_config_problems(project, "dev", one) == ["Stack 'dev' is missing configuration value 'also'"]


# ---- pods: volumes -------------------------------------------------------------------------------


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_no_two_volumes_on_one_claim(stack_file, plan_of):
    _, _, out = plan_of(stack_file)
    none([p for where, _, spec in dr.pods(objects(out)) for p in dr.shared_claim_problems(where, spec)])


def test_shared_claim_negative_control():
    """The old cache layout: two volumes on PVC model-cache. Its fix (one volume, two mounts) passes."""
    d3 = {
        "volumes": [
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": "model-cache"}},
            {"name": "writable", "persistentVolumeClaim": {"claimName": "model-cache"}},
            {"name": "tmp", "emptyDir": {}},
        ]
    }
    assert dr.shared_claim_problems("Deployment models/x", d3) == [
        "Deployment models/x: volumes 'model-cache' and 'writable' both use PVC 'model-cache' — "
        "use one volume and two volumeMounts (subPath) instead"
    ]
    fixed = {"volumes": [d3["volumes"][0], d3["volumes"][2]]}
    assert dr.shared_claim_problems("Deployment models/x", fixed) == []


# ---- pods: image user and writable paths ---------------------------------------------------------


def pinned_images() -> dict[str, ImagePin]:
    return {p.ref: p for p in catalog.versions().images.values()}


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_image_paths_are_writable(stack_file, plan_of):
    """Fails with "facts missing" for a rendered image whose user/writablePaths are not recorded."""
    _, _, out = plan_of(stack_file)
    images = pinned_images()
    problems = []
    for where, _, spec in dr.pods(objects(out)):
        found, _ = dr.writable_path_problems(where, spec, images)
        problems += found
    none(problems)


def test_writable_paths_negative_controls():
    img = "r/app:1"
    pin = ImagePin("r/app", "1", user=1000, writable_paths=("/tmp", "$HOME/.cache", "/app/data", "/etc/app"))
    spec = {
        "securityContext": {"runAsUser": 1000},
        "containers": [
            {
                "name": "c",
                "image": img,
                "env": [{"name": "HOME", "value": "/home/u"}],
                "securityContext": {"readOnlyRootFilesystem": True},
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "home", "mountPath": "/home/u"},
                    {"name": "cfg", "mountPath": "/etc/app"},
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "home", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "x"}},
        ],
    }
    problems, skipped = dr.writable_path_problems("Deployment ns/a", spec, {img: pin})
    assert skipped == 0
    assert problems == [
        "Deployment ns/a container c: r/app:1 writes /app/data, which is on the read-only root filesystem — "
        "mount a writable volume there or redirect it",
        "Deployment ns/a container c: r/app:1 writes /etc/app, but it is on the read-only mount /etc/app",
    ]
    # Writable root, but another UID than the image's owner.
    spec["containers"][0]["securityContext"] = {"readOnlyRootFilesystem": False, "runAsUser": 2000}
    problems, _ = dr.writable_path_problems("Deployment ns/a", spec, {img: pin})
    assert (
        "Deployment ns/a container c: r/app:1 writes /app/data in its own filesystem (owned by UID 1000), "
        "but the pod runs as UID 2000" in problems
    )
    # No facts recorded: a failure, not a pass.
    problems, _ = dr.writable_path_problems("Deployment ns/a", spec, {img: ImagePin("r/app", "1")})
    assert problems and "facts missing for r/app:1" in problems[0]
    # A command override is not the image's process: skipped and counted.
    spec["containers"][0]["command"] = ["sh", "-c", "true"]
    assert dr.writable_path_problems("Deployment ns/a", spec, {img: pin}) == ([], 1)


# ---- pods: requests fit the node ----------------------------------------------------------------


def node(name: str) -> dr.Node:
    data = dr.overhead()
    inst = catalog.instances().get(name)
    if inst is not None:
        return dr.Node(name, inst.vcpu, inst.memory_mib, data["maxPods"][name])
    s = data["systemInstances"][name]
    return dr.Node(name, s["vcpu"], s["memoryMiB"], data["maxPods"][name])


def test_allocatable_by_hand():
    """g6.xlarge (4 vCPU, 16384 MiB, 58 pods): CPU 4000 - (60 + 10 + 10) = 3920m; memory
    16384 - ceil(16384 * 0.075)=1229 -> 15155, - (11*58 + 255)=893, - 100 = 14162 MiB.
    g5.12xlarge (48 vCPU, 196608 MiB, 737 pods): CPU 48000 - (60 + 10 + 10 + 44000*0.0025=110) = 47810m;
    memory 196608 - 14746 - (11*737 + 255)=8362 - 100 = 173400 MiB."""
    assert dr.allocatable(node("g6.xlarge")) == (3920, 14162)
    assert dr.allocatable(node("m7i.xlarge")) == (3920, 14162)
    assert dr.allocatable(node("g5.12xlarge")) == (47810, 173400)


def test_daemonset_overhead_by_hand():
    """GPU node: kube-proxy 100 + aws-node 25 + ebs-csi-node 30 + NMA 10 + NFD worker 5 = 170m;
    120 + 30 + 64 = 214 MiB. System node: 165m, 150 MiB. Neuron node: 175m, 230 MiB."""
    assert dr.daemonset_requests("nvidia") == (170, 214)
    assert dr.daemonset_requests("system") == (165, 150)
    assert dr.daemonset_requests("neuron") == (175, 230)


def test_every_catalog_instance_has_max_pods():
    assert sorted(set(catalog.instances()) - set(dr.overhead()["maxPods"])) == []


def test_fit_negative_control():
    """g6.xlarge offers 3920 - 170 = 3750m and 14162 - 214 = 13948 MiB to a vLLM pod."""

    def pod(cpu, mem, init_mem="32Mi"):
        return {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "10m", "memory": init_mem}}}],
        }

    assert dr.fit_problems("p", pod("3750m", "13948Mi"), node("g6.xlarge"), "nvidia") == []
    assert dr.fit_problems("p", pod("3751m", "13949Mi"), node("g6.xlarge"), "nvidia") == [
        "p: requests 3751m CPU, g6.xlarge offers 3750m after kube-reserved and DaemonSets",
        "p: requests 13949 MiB memory, g6.xlarge offers 13948 MiB after VM overhead, kube-reserved, "
        "eviction threshold and DaemonSets",
    ]
    # An init container larger than the main containers sets the pod's request.
    assert dr.fit_problems("p", pod("1", "1Gi", init_mem="14Gi"), node("g6.xlarge"), "nvidia") != []


def system_instance_types(intent, res: list[dict]) -> list[str]:
    groups = [r for r in res if r["type"] == "aws:eks/nodeGroup:NodeGroup"]
    if groups:
        return sorted({t for g in groups for t in g["inputs"].get("instanceTypes") or []})
    return list(intent.config.cluster.systemNodes.instanceTypes)  # team stack: the platform's system nodes


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_requests_fit_the_chosen_node(stack_file, plan_of):
    """Every pod on its instance type (vLLM: the type it selects; controllers, gateway and cache Jobs:
    every system node group type). Every node is tainted, so a pod that selects no accelerator
    instance type and does not tolerate the system taint runs nowhere."""
    intent, _, out = plan_of(stack_file)
    res = resources(out)
    system = system_instance_types(intent, res)
    problems, checked = [], 0
    for where, _, spec in dr.pods(objects(out)):
        chosen = dr.chosen_instance_types(spec)
        if chosen:
            targets = [(t, catalog.instances()[t].kind if t in catalog.instances() else "?") for t in chosen]
        elif dr.tolerates(spec, SYSTEM_TAINT):
            targets = [(t, "system") for t in system]
        else:
            problems.append(
                f"{where}: selects no instance type and does not tolerate {SYSTEM_TAINT} — no node takes it"
            )
            continue
        for t, kind in targets:
            if t not in dr.overhead()["maxPods"]:
                problems.append(f"{where}: no node facts for {t} — add it to tests/support/node_overhead.yaml")
                continue
            problems += dr.fit_problems(where, spec, node(t), kind)
            checked += 1
    none(problems)
    assert checked


# ---- network -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_deployer_reaches_the_api(stack_file, plan_of):
    """A team stack creates no cluster (it uses the platform's): nothing to check."""
    _, _, out = plan_of(stack_file)
    none(dr.endpoint_problems(resources(out)))


def test_endpoint_negative_controls():
    vpc = {"type": "aws:ec2/vpc:Vpc", "name": "vpc", "inputs": {}}
    private = {
        "type": "eks:index:Cluster",
        "name": "cluster-eks",
        "inputs": {"endpointPublicAccess": False, "endpointPrivateAccess": True},
    }
    public = {**private, "inputs": {"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.7/32"]}}
    assert len(dr.endpoint_problems([vpc, private])) == 1
    assert dr.endpoint_problems([vpc, public]) == []
    assert dr.endpoint_problems([private]) == []  # existing VPC: deploy from inside it
