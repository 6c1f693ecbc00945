"""First-node canaries (stacks/verify_canary.py): the pods are what the model servers run as, the Neuron
script really finds an unwritable path and a failing `neuron-ls` (run here with sh), and the kubectl
orchestration behind verify's runner creates, waits, reads and always deletes (a fake runner)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path

import kubernetes_validate
import pytest

from components.types import ImagePin
from stacks import catalog, verify
from stacks import verify_canary as C
from stacks.yamlio import load_yaml
from tests.conftest import ROOT
from tests.support.policy import pss_restricted_violations

DEV = ROOT / "Pulumi.dev.yaml"
INF2 = ROOT / "stacks" / "examples" / "Pulumi.seed000-inf2-llama-qwen-webui.yaml"
# images.vllm-neuron.writablePaths in stacks/catalog/versions.yaml, written out
NEURON_PATHS = ["/home/vllm", "/tmp", "/var/cache/vllm", "/var/tmp", "/var/lib/neuron-compiled"]
GPU_IMAGE = ImagePin(repository="docker.io/vllm/vllm-openai", tag="v0.32.0", user=2000)
NEURON_IMAGE = ImagePin(repository="r/neuron", tag="t", user=2000, writable_paths=tuple(NEURON_PATHS))


def pods_of(plan_of, stack: Path) -> list[dict]:
    _, _, out = plan_of(stack)
    docs = [load_yaml(f.read_text()) for f in (out / "manifests").glob("*.yaml")]
    return [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["namespace"] == "models"]


# ---- the renders ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,image,resource", [("nvidia", GPU_IMAGE, "nvidia.com/gpu"), ("neuron", NEURON_IMAGE, "aws.amazon.com/neuron")]
)
def test_a_canary_pod_is_a_valid_restricted_pod_with_one_device(kind, image, resource):
    pod = C.render_canary_pod(kind, image, "ip-10-0-1-5.ec2.internal", "models", "neuron-scheduler")
    kubernetes_validate.validate(pod, catalog.versions().kubernetes + ".0", strict=True)
    assert pss_restricted_violations(pod["spec"]) == []
    (c,) = pod["spec"]["containers"]
    assert c["resources"]["limits"][resource] == c["resources"]["requests"][resource] == "1"
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "ip-10-0-1-5.ec2.internal"}
    assert {"key": resource, "operator": "Exists", "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["activeDeadlineSeconds"] == 300
    assert pod["spec"].get("schedulerName") == ("neuron-scheduler" if kind == "neuron" else None)


def test_the_gpu_canary_runs_nvidia_smi_and_the_neuron_one_writes_every_image_path():
    gpu = C.render_canary_pod("nvidia", GPU_IMAGE, "n", "models")["spec"]
    assert gpu["containers"][0]["command"][:2] == ["sh", "-c"] and "nvidia-smi" in gpu["containers"][0]["command"][2]
    assert gpu["volumes"] == []
    neuron = C.render_canary_pod("neuron", NEURON_IMAGE, "n", "models")["spec"]
    (c,) = neuron["containers"]
    assert c["command"][3:] == ["canary", *NEURON_PATHS]  # $0, then each path as an argument
    assert sorted(m["mountPath"] for m in c["volumeMounts"]) == sorted(NEURON_PATHS)
    emptydirs = {v["name"] for v in neuron["volumes"] if "emptyDir" in v}
    assert {m["name"] for m in c["volumeMounts"]} == emptydirs
    assert not any(m.get("readOnly") for m in c["volumeMounts"])
    # the catalog's row is the list above (the canary reads it, not this copy)
    assert list(catalog.versions().images["vllm-neuron"].writable_paths) == NEURON_PATHS


@pytest.mark.parametrize("stack,kind", [(DEV, "nvidia"), (INF2, "neuron")], ids=["gpu", "inf2"])
def test_the_canary_runs_as_the_rendered_model_servers_do(plan_of, stack, kind):
    deployments = pods_of(plan_of, stack)
    assert deployments
    image = catalog.versions().images[C.IMAGE_OF_KIND[kind]]
    canary = C.render_canary_pod(kind, image, "n", "models")["spec"]
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        vllm = next(c for c in pod["containers"] if c["name"] == "vllm")
        assert canary["securityContext"] == pod["securityContext"]
        assert canary["containers"][0]["securityContext"] == vllm["securityContext"]
        assert canary["containers"][0]["image"] == vllm["image"]
        assert canary["tolerations"] == [t for t in pod["tolerations"] if t["key"] in C.ACCELERATOR_RESOURCE.values()]


# ---- the Neuron script, run by sh ---------------------------------------------------------------------------


def run_neuron_script(paths: list[str], neuron_ls: str | None) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as bindir:
        if neuron_ls is not None:
            exe = Path(bindir) / "neuron-ls"
            exe.write_text(f"#!/bin/sh\n{neuron_ls}\n")
            exe.chmod(0o755)
        env = {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin"}
        return subprocess.run(
            ["sh", "-c", C.NEURON_SCRIPT, "canary", *paths], capture_output=True, text=True, env=env, timeout=30
        )


def test_the_neuron_script_passes_when_every_path_is_writable_and_neuron_ls_works(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    r = run_neuron_script([str(d) for d in dirs], "echo 'NEURON DEVICE 0'")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [f"writable {dirs[0]}", f"writable {dirs[1]}", "NEURON DEVICE 0"]
    assert not any(d.joinpath(".canary").exists() for d in dirs)  # it cleans up after itself


def test_the_neuron_script_names_an_unwritable_path_and_a_failing_neuron_ls(tmp_path):
    missing = tmp_path / "not-mounted"  # a path the pod has no volume for: touch fails
    r = run_neuron_script([str(tmp_path), str(missing)], "echo ok")
    assert r.returncode == 1 and f"NOT WRITABLE {missing}" in r.stdout.splitlines()
    r = run_neuron_script([str(tmp_path)], "exit 1")
    assert r.returncode == 3 and "NEURON-LS FAILED" in r.stdout
    r = run_neuron_script([str(tmp_path)], None)  # not in the image at all
    assert r.returncode == 3


# ---- verdicts: what passed, what to change -------------------------------------------------------------------


def test_verdicts_name_what_to_change():
    ok = C.verdict("nvidia", "n1", "Succeeded", "GPU 0: NVIDIA L4 (UUID: GPU-1)\nname, driver_version\n")
    assert ok.ok and "GPU 0: NVIDIA L4" in ok.detail
    gpu = C.verdict("nvidia", "n1", "Failed", "Failed to initialize NVML: Unknown Error\n")
    assert not gpu.ok and "cdi.enabled: false" in gpu.detail and "Failed to initialize NVML" in gpu.detail
    neuron = C.verdict("neuron", "n2", "Failed", "writable /tmp\nNOT WRITABLE /opt/neuron\nNEURON-LS FAILED\n")
    assert not neuron.ok and "cannot write /opt/neuron" in neuron.detail and "writablePaths" in neuron.detail
    assert "neuron-ls failed as UID 2000" in neuron.detail
    pending = C.verdict("nvidia", "n1", "Pending", "", "0/3 nodes: Insufficient nvidia.com/gpu")
    assert not pending.ok and "did not run" in pending.detail and "Insufficient nvidia.com/gpu" in pending.detail


def node(name: str, pool: str, ready: bool = True) -> dict:
    return {
        "metadata": {"name": name, "labels": {"llm-serving/pool": pool}},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_the_first_ready_node_of_each_kind_is_chosen():
    nodes = {
        "items": [
            node("ip-3", "gpu"),
            node("ip-1", "gpu", ready=False),
            node("ip-2", "gpu"),
            node("ip-0", "system"),
            node("ip-9", "inf"),
        ]
    }
    assert C.first_nodes(nodes, {"gpu": "nvidia", "inf": "neuron"}) == {"nvidia": "ip-2", "neuron": "ip-9"}
    assert C.first_nodes({"items": [node("ip-1", "gpu", ready=False)]}, {"gpu": "nvidia"}) == {}


# ---- the orchestration behind verify's runner -----------------------------------------------------------------


class FakeKubectl:
    """Answers `kubectl` like a cluster where the pod goes Pending, then `final`; records every call."""

    def __init__(self, final: str = "Succeeded", log: str = "GPU 0: NVIDIA L4\n", fail_apply: bool = False):
        self.calls: list[list[str]] = []
        self.phases = ["Pending", "Running", final]
        self.log, self.fail_apply, self.applied = log, fail_apply, None

    def __call__(self, cmd: list[str]) -> str:
        assert cmd[:2] == ["kubectl", "--kubeconfig"]
        verb = cmd[3]
        self.calls.append(cmd[3:])
        if verb == "apply":
            if self.fail_apply:
                raise subprocess.CalledProcessError(1, cmd, stderr="forbidden: exceeded quota")
            self.applied = json.loads(Path(cmd[cmd.index("-f") + 1]).read_text())
            return ""
        if verb == "get" and cmd[4] == "pod":
            return json.dumps({"status": {"phase": self.phases.pop(0) if len(self.phases) > 1 else self.phases[0]}})
        if verb == "get" and cmd[4] == "nodes":
            return json.dumps({"items": [node("ip-2", "gpu")]})
        if verb == "logs":
            return self.log
        if verb == "delete":
            return ""
        raise AssertionError(cmd)


def test_the_canary_is_created_awaited_read_and_deleted():
    fake, slept = FakeKubectl(), []
    pod = C.render_canary_pod("nvidia", GPU_IMAGE, "ip-2", "models")
    r = C.run_canary(fake, "/kc", pod, sleep=slept.append)
    assert r.ok and r.node == "ip-2" and "GPU 0: NVIDIA L4" in r.detail
    verbs = [c[0] for c in fake.calls]
    assert verbs == ["apply", "get", "get", "get", "logs", "delete"]
    assert fake.applied == pod and slept == [C.POLL_S, C.POLL_S]
    assert fake.calls[-1] == [
        "delete",
        "pod",
        "llm-canary-nvidia",
        "-n",
        "models",
        "--ignore-not-found",
        "--wait=false",
    ]


def test_a_failed_create_still_deletes_and_a_pod_that_never_runs_is_reported():
    fake = FakeKubectl(fail_apply=True)
    with pytest.raises(subprocess.CalledProcessError):
        C.run_canary(fake, "/kc", C.render_canary_pod("nvidia", GPU_IMAGE, "n", "models"), sleep=lambda s: None)
    assert [c[0] for c in fake.calls] == ["apply", "delete"]
    stuck = FakeKubectl(final="Pending")
    r = C.run_canary(stuck, "/kc", C.render_canary_pod("nvidia", GPU_IMAGE, "n", "models"), sleep=lambda s: None)
    assert not r.ok and "did not run" in r.detail
    assert "logs" not in [c[0] for c in stuck.calls] and stuck.calls[-1][0] == "delete"


def test_verify_reports_a_canary_per_kind_and_skips_a_kind_without_a_node(monkeypatch):
    # the fake pod goes Pending -> Running -> done at once: waiting between polls would only wait
    monkeypatch.setattr(C, "run_canary", functools.partial(C.run_canary, sleep=lambda _s: None))
    fake = FakeKubectl()
    outputs = {"platform": {"pools": {"gpu": "nvidia", "inf": "neuron"}, "neuronScheduler": "neuron-scheduler"}}
    checks = verify.canary_checks(
        outputs, fake, "/kc", json.loads(fake(["kubectl", "--kubeconfig", "k", "get", "nodes"])), "models"
    )
    assert [(c.name, c.ok) for c in checks] == [("canary neuron on -", True), ("canary nvidia on ip-2", True)]
    assert "skipped: no Ready neuron node" in checks[0].detail
    assert fake.applied["spec"]["containers"][0]["image"] == catalog.versions().images["vllm"].ref
    refused = verify.canary_checks(outputs, FakeKubectl(fail_apply=True), "/kc", {"items": [node("ip-2", "gpu")]}, "m")
    assert [(c.name, c.ok) for c in refused] == [("canary", False)] and "exceeded quota" in refused[0].detail
