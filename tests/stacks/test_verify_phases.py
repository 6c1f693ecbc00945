"""Measured startup phases (stacks/verify_phases.py) from realistic kubectl JSON and vLLM log lines,
with every expected figure worked out by hand from the fixture's timestamps."""

import json

import pytest

from stacks import verify_phases as vp

# Lines of a real vLLM 0.32 CPU start in this repository's e2e setup (tests/e2e/servers.py), and the
# GPU-only lines in the format of vLLM 0.32's own logger calls (gpu_model_runner.py, monitor.py).
CPU_LOG = """\
(Worker pid=25519) INFO 12-07 06:52:56 [cpu_model_runner.py:68] Starting to load model /tmp/colda-vlog/model...
(Worker pid=25519) INFO 12-07 06:52:56 [base_loader.py:82] Initializing model took 0.536631 seconds
Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00, 55.63it/s]
(Worker pid=25519) INFO 12-07 06:52:56 [default_loader.py:501] Loading weights took 0.02 seconds
(Worker pid=25519) INFO 12-07 06:53:00 [cpu_model_runner.py:87] Warming up model for the compilation...
(Worker pid=25519) INFO 12-07 06:54:51 [monitor.py:91] [backbone] Initial profiling/warmup run took 0.02 s
(Worker pid=25519) INFO 12-07 06:54:53 [cpu_model_runner.py:91] Warming up done.
(EngineCore pid=25065) INFO 12-07 06:54:55 [core.py:402] \
init engine (profile, create kv cache, warmup model) took 115.27 s
"""
GPU_LOG = """\
(EngineCore pid=1) INFO 12-07 10:00:40 [default_loader.py:501] Loading weights took 41.73 seconds
(EngineCore pid=1) INFO 12-07 10:00:41 [gpu_model_runner.py:5150] \
Model loading took 14.99 GiB memory and 43.100000 seconds
(EngineCore pid=1) INFO 12-07 10:02:20 [monitor.py:20] torch.compile took 97.52 s in total
(EngineCore pid=1) INFO 12-07 10:03:05 [gpu_model_runner.py:6582] Graph capturing finished in 38 secs, took 0.52 GiB
"""
TP2_LOG = """\
(Worker_TP0 pid=7) INFO [default_loader.py:501] Loading weights took 30.10 seconds
(Worker_TP1 pid=8) INFO [default_loader.py:501] Loading weights took 31.40 seconds
"""

POD = {
    "metadata": {"name": "chat-7d9f-abcde", "creationTimestamp": "2026-12-07T10:00:00Z"},
    "status": {
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-07T10:02:31Z"},
            {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-07T10:02:31Z"},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-07T10:12:00Z"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T10:12:00Z"},
        ],
        "containerStatuses": [
            {"name": "vllm", "ready": True, "state": {"running": {"startedAt": "2026-12-07T10:07:40Z"}}}
        ],
    },
}
NODE = {  # Karpenter's node: joined after the pod was created, Ready 2m30s after the pod
    "metadata": {"name": "ip-10-0-1-5.ec2.internal", "creationTimestamp": "2026-12-07T10:01:40Z"},
    "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-07T10:02:30Z"}]},
}
WARM_NODE = {**NODE, "metadata": {**NODE["metadata"], "creationTimestamp": "2026-12-01T08:00:00Z"}}


def event(reason: str, message: str, container: str = "vllm", pod: str = "chat-7d9f-abcde") -> dict:
    return {
        "reason": reason,
        "message": message,
        "involvedObject": {"kind": "Pod", "name": pod, "fieldPath": f"spec.containers{{{container}}}"},
    }


EVENTS = [
    event("Pulling", 'Pulling image "docker.io/vllm/vllm-openai:v0.32.0"'),
    event(
        "Pulled",
        'Successfully pulled image "docker.io/vllm/vllm-openai:v0.32.0" in 4m58.512s (4m58.512s including '
        "waiting). Image size: 10737418240 bytes.",
    ),
    event("Pulled", 'Successfully pulled image "busybox" in 850ms (850ms including waiting)', container="wait"),
]


def test_go_durations_by_hand():
    assert vp.go_duration("4m58.512s") == pytest.approx(298.512)
    assert vp.go_duration("850ms") == pytest.approx(0.85)
    assert vp.go_duration("1h2m3s") == 3723
    with pytest.raises(ValueError):
        vp.go_duration("4 minutes")


def test_log_phases_real_cpu_lines():
    # compile on the CPU build: warm-up 06:53:00 -> done 06:54:53 = 113 s
    assert vp.log_phases(CPU_LOG) == {"weight load": 0.02, "compile": 113}
    assert vp.log_phases(CPU_LOG.replace("Warming up done", "Warming up")) == {"weight load": 0.02}


def test_log_phases_gpu_lines_and_tp_takes_the_slowest_rank():
    assert vp.log_phases(GPU_LOG) == {"weight load": 41.73, "compile": 97.52, "graph capture": 38.0}
    assert vp.log_phases(TP2_LOG) == {"weight load": 31.4}
    # the loader's own line missing: the model runner's total stands in
    assert vp.log_phases(GPU_LOG.splitlines()[1]) == {"weight load": 43.1}
    assert vp.log_phases("no phase lines here") == {}


def test_measure_a_pod_on_a_new_node_by_hand():
    got = vp.measure(POD, EVENTS, NODE, GPU_LOG)
    # node launch: node Ready 10:02:30 - pod created 10:00:00 = 150 s
    # image pull: the vllm container's Pulled event, 4m58.512s (the wait container's is ignored)
    # readiness: started 10:07:40 -> Ready 10:12:00 = 260 s, less 41.73 + 97.52 + 38 = 82.75 s
    assert got == pytest.approx(
        {
            "node launch": 150,
            "image pull": 298.512,
            "weight load": 41.73,
            "compile": 97.52,
            "graph capture": 38.0,
            "readiness": 82.75,
        }
    )


def test_measure_a_pod_on_a_warm_node_with_the_image_present():
    present = [event("Pulled", 'Container image "docker.io/vllm/vllm-openai:v0.32.0" already present on machine')]
    got = vp.measure(POD, present, WARM_NODE, CPU_LOG)
    assert "node launch" not in got and got["image pull"] == 0
    assert vp.measure(POD, [], None, "")["readiness"] == 260  # no log phases: the whole container time


def test_compare_flags_over_half_again_and_not_at_it():
    rows = vp.compare({"weight load": 44, "compile": 120, "readiness": 20}, {"weight load": 66.1, "compile": 180})
    flags = {r.phase: r.over for r in rows}
    assert flags == {"weight load": True, "compile": False, "readiness": False}  # 66.1 > 66; 180 = 1.5 x 120
    text = vp.table("chat", rows)
    assert "weight load        44.0s     66.1s  FLAG" in text
    assert "readiness          20.0s         -" in text


def test_fixture_is_json_as_kubectl_prints_it():
    # the fixture shapes survive a JSON round trip (what `kubectl get -o json` hands the parser)
    assert vp.measure(*json.loads(json.dumps([POD, EVENTS, NODE, GPU_LOG])))["node launch"] == 150


def test_verify_cluster_checks_print_planned_against_measured(plan_of):
    """stacks.verify --phases: the kubectl calls behind verify's runner, the plan's summary.json."""
    from stacks import verify
    from tests.conftest import ROOT

    _, rec, out = plan_of(ROOT / "Pulumi.dev.yaml")
    outputs = json.loads(json.dumps(rec.outputs))
    summary = json.loads((out / "summary.json").read_text())
    pod = {
        **POD,
        "metadata": {**POD["metadata"], "name": "qwen3-0-6b-1"},
        "spec": {"nodeName": NODE["metadata"]["name"]},
    }
    events = [event(e["reason"], e["message"], pod="qwen3-0-6b-1") for e in EVENTS[:2]]
    deployment = {"metadata": {"name": "qwen3-0-6b"}, "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    calls = []

    def run(cmd):
        calls.append(cmd[3:])
        args = cmd[3:]
        if args[:2] == ["get", "nodes"]:
            return json.dumps({"items": [NODE]})
        if args[:2] == ["get", "deployments"]:
            return json.dumps({"items": [deployment]})
        if args == ["get", "pods", "--all-namespaces", "-o", "json"]:  # the accelerator-sharing check
            return json.dumps({"items": []})
        if args[:2] == ["get", "pods"]:
            assert "app.kubernetes.io/name=qwen3-0-6b" in args
            return json.dumps({"items": [pod]})
        if args[:2] == ["get", "events"]:
            assert "involvedObject.name=qwen3-0-6b-1" in args
            return json.dumps({"items": events})
        if args[0] == "logs":
            assert args[-2:] == ["-c", "vllm"]
            return GPU_LOG
        raise AssertionError(cmd)

    rows = {c.name: c for c in verify.cluster_checks(outputs, run, summary)}
    # the dev plan: image pull 186 s (10 GiB at 55 MiB/s); measured 298.5 s = 1.6x -> flagged
    pull = rows["phase qwen3-0.6b image pull"]
    assert pull.ok and pull.detail.startswith("planned 186s, measured 298.5s") and "FLAG" in pull.detail
    launch = rows["phase qwen3-0.6b node launch"]  # planned 150 s (g6), measured 150 s
    assert launch.detail.startswith("planned 150s, measured 150.0s") and "FLAG" not in launch.detail
    assert rows["phase qwen3-0.6b compile"].detail.startswith("planned 120s, measured 97.5s")
    assert ["logs", "-n", "models", "qwen3-0-6b-1", "-c", "vllm"] in calls
