"""Every pod in the restricted namespaces passes Pod Security "restricted"; the check can fail."""

import pytest

from components.drivers import NEURON_SCHEDULER_NAME
from stacks.config import FORBIDDEN_VLLM_FLAGS
from stacks.yamlio import load_yaml
from tests.conftest import STACK_FILES
from tests.support.policy import pod_spec_of, pss_restricted_violations

RESTRICTED_NS = {"models", "gateway"}
# Pods in the serving namespaces per stack, by hand: one vLLM Deployment and one cache Job per
# model, the gateway, and Open WebUI where the UI is on (seed000, teams).
# Pod specs in the serving namespaces: per model a server and a cache Job, LiteLLM, the gateway's
# front door (nginx), Open WebUI where enabled.
PODS = {
    "Pulumi.dev.yaml": 4,
    "Pulumi.minimal.yaml": 4,
    "Pulumi.seed000-inf2-llama-qwen-webui.yaml": 7,
    "Pulumi.seed001-trn1-mistral.yaml": 4,
    "Pulumi.seed002-g5-qwen3-14b.yaml": 4,
    "Pulumi.seed003-mistral-llama2-70b.yaml": 6,
    "Pulumi.seed004-qwen3-0-6b-one-gpu.yaml": 4,
    "Pulumi.team-search.yaml": 4,
    "Pulumi.teams.yaml": 7,
}
# startupProbe failureThreshold x 10 s = the planner's budget (hand values in test_planner.py):
# qwen3-0.6b 420 s, Neuron llama-3.1-8b 2520 s, Neuron qwen3-8b 2580 s, Neuron mistral-7b 2340 s,
# qwen3-14b 600 s, mistral-7b (GPU) 480 s, llama-2-70b 1440 s, qwen2.5-7b 480 s.
STARTUP_THRESHOLD = {
    "qwen3-0-6b": 42,
    "llama-3-1-8b": 252,
    "qwen3-8b": 258,
    "mistral-7b": {"neuron": 234, "nvidia": 48},
    "qwen3-14b": 60,
    "llama-2-70b": 144,
    "qwen2-5-7b": 48,
}
# Gateway idle pool time (gateway.idleConnectionSeconds, default 60, no stack overrides it) + 15 s.
KEEP_ALIVE = "75"


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_pods_in_restricted_namespaces_pass(stack_file, plan_of):
    _, _, out = plan_of(stack_file)
    objs = [(f, load_yaml(f.read_text())) for f in sorted((out / "manifests").glob("*.yaml"))]
    serving_ns = {
        o["metadata"]["name"]
        for _, o in objs
        if o["kind"] == "Namespace" and o["metadata"]["name"].endswith(tuple(RESTRICTED_NS))
    }
    assert len(serving_ns) == 2
    pods = 0
    for f, obj in objs:
        if obj["kind"] == "Namespace" and obj["metadata"]["name"] in serving_ns:
            labels = obj["metadata"]["labels"]
            assert all(labels[f"pod-security.kubernetes.io/{m}"] == "restricted" for m in ("enforce", "audit", "warn"))
        pod = pod_spec_of(obj)
        if pod is None or obj["metadata"].get("namespace") not in serving_ns:
            continue
        assert pss_restricted_violations(pod) == [], f.name
        assert pod.get("automountServiceAccountToken") is False, f.name
        pods += 1
    assert pods == PODS[stack_file.name]


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_vllm_pod_details(stack_file, plan_of):
    _, _, out = plan_of(stack_file)
    for f in (out / "manifests").glob("deployment-*models-*.yaml"):
        d = load_yaml(f.read_text())
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert d["spec"]["template"]["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
        assert d["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
        req, lim = c["resources"]["requests"], c["resources"]["limits"]
        acc = "nvidia.com/gpu" if "nvidia.com/gpu" in lim else "aws.amazon.com/neuron"
        assert req["memory"] == lim["memory"] and req[acc] == lim[acc]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/models"]["readOnly"] is True
        env = {e["name"]: e for e in c["env"]}
        assert env["HF_HUB_OFFLINE"]["value"] == "1" and "secretKeyRef" in env["VLLM_API_KEY"]["valueFrom"]
        assert env["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"]["value"] == KEEP_ALIVE
        shm = next(v for v in pod["volumes"] if v["name"] == "shm")
        assert shm["emptyDir"]["medium"] == "Memory"
        assert c["startupProbe"]["httpGet"]["path"] == "/health"
        want = STARTUP_THRESHOLD[d["metadata"]["name"]]
        if isinstance(want, dict):
            want = want["neuron" if "aws.amazon.com/neuron" in lim else "nvidia"]
        assert (c["startupProbe"]["failureThreshold"], c["startupProbe"]["periodSeconds"]) == (want, 10), f.name
        assert d["metadata"]["name"] != "vllm"
        flags = {a.split("=", 1)[0] for a in c["args"] if a.startswith("--")}
        assert not flags & set(FORBIDDEN_VLLM_FLAGS), f.name
        if "aws.amazon.com/neuron" in lim:
            n = int(lim["aws.amazon.com/neuron"])
            assert n & (n - 1) == 0 and pod["schedulerName"] == NEURON_SCHEDULER_NAME
            assert {"--block-size", "--num-gpu-blocks-override"} <= flags and c["args"][:2] == ["vllm", "serve"]
            assert "NEURON_COMPILED_ARTIFACTS" in env


def test_checker_flags_a_privileged_root_pod():
    pod = {
        "containers": [{"name": "x", "securityContext": {"privileged": True, "runAsUser": 0}}],
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
    }
    v = pss_restricted_violations(pod)
    assert any("privileged" in x for x in v) and any("hostNetwork" in x for x in v)
    assert any("hostPath" in x for x in v) and any("runAsNonRoot" in x for x in v)
