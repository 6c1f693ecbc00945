"""Component tier: renderers with hand-made records, and components alone under mocks."""
import pulumi
import pytest

from components.litellm import render_litellm_config
from components.model_cache import CacheItem, render_job_spec
from components.nodepool import KarpenterNodePool, NodePoolArgs, render_node_pool
from components.types import CrdsHandle, PoolSpec, Route, ServerSpec
from components.vllm import VllmServer, VllmServerArgs, probe_budget, ready_marker, render_pod_spec
from stacks import harness

SPEC = ServerSpec(name="m1", served_name="m1-served", hf_id="org/m1", revision="abc", kind="nvidia",
                  image="img:1", args=("org/m1", "--served-model-name", "m1-served"), env=(("A", "1"),),
                  pool="gpu", instance_type="g6.xlarge", tensor_parallel=1, accelerator_count=1, cpu="3",
                  memory="12Gi", shm_size="2Gi", replicas=2, startup_budget_seconds=600)
POOL = PoolSpec(name="gpu", kind="nvidia", families=("g6",), capacity_types=("on-demand",), node_class="nvidia",
                cpu_limit=100, memory_limit_gib=400, accelerator_limit=8, consolidate_after="30m",
                expire_after="720h", termination_grace_period="2h", disruption_budget_nodes="1")


def test_cache_job_writes_the_marker_the_server_waits_for():
    item = CacheItem(name="m1", hf_id="org/m1", revision="abc", gated=True, marker=ready_marker(SPEC))
    job = render_job_spec(item, image="img:1", claim="model-cache", token_secret="hf-token", system_toleration="T")
    script = job["template"]["spec"]["containers"][0]["command"][-1]
    pod = render_pod_spec(SPEC, cache_claim="model-cache", api_key_secret="k", service_account="m1")
    wait = pod["initContainers"][0]["command"][-1]
    assert f"touch {ready_marker(SPEC)}" in script and f"[ -f {ready_marker(SPEC)} ]" in wait
    assert "--revision abc" in script and "--include '*.safetensors'" in script
    env = {e["name"] for e in job["template"]["spec"]["containers"][0]["env"]}
    assert "HF_TOKEN" in env  # only the Job gets it
    assert all(e["name"] != "HF_TOKEN" for e in pod["containers"][0]["env"])


def test_server_pod_startup_budget_and_spread():
    pod = render_pod_spec(SPEC, cache_claim="model-cache", api_key_secret="k", service_account="m1")
    c = pod["containers"][0]
    assert (c["startupProbe"]["failureThreshold"], c["startupProbe"]["periodSeconds"]) == (60, 10)
    # a budget that is not a multiple of the period rounds up, never down: 601 s -> 61 x 10 s
    import dataclasses
    odd = render_pod_spec(dataclasses.replace(SPEC, startup_budget_seconds=601), cache_claim="model-cache",
                          api_key_secret="k", service_account="m1")
    assert odd["containers"][0]["startupProbe"]["failureThreshold"] == 61
    assert probe_budget(1) == 1 and probe_budget(0) == 1 and probe_budget(10) == 1 and probe_budget(11) == 2
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert pod["nodeSelector"]["node.kubernetes.io/instance-type"] == "g6.xlarge"


def test_litellm_config_routes_exactly_the_given_routes():
    routes = [Route("a", "a", "a.models.svc.cluster.local", 8000, 120, 4096),
              Route("b", "b", "b.models.svc.cluster.local", 8000, 900, 8192)]
    cfg = render_litellm_config(routes, database=False)
    assert [m["model_name"] for m in cfg["model_list"]] == ["a", "b"]
    assert cfg["model_list"][1]["litellm_params"]["timeout"] == 900
    assert cfg["litellm_settings"]["drop_params"] is True and "database_url" not in cfg["general_settings"]
    assert cfg["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"


def test_nodepool_render_limits_taint_and_disruption():
    np = render_node_pool(POOL)
    assert np["limits"] == {"cpu": "100", "memory": "400Gi", "nvidia.com/gpu": "8"}
    assert np["template"]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert np["disruption"]["consolidationPolicy"] == "WhenEmpty" and np["disruption"]["consolidateAfter"] == "30m"


def _run(build):
    return harness.run(build, config={}, timeout=30)


def test_vllm_server_alone_under_mocks_names_and_parentage():
    def build():
        VllmServer("vllm-m1", VllmServerArgs(spec=SPEC, namespace="models", cache_claim="model-cache",
                                             api_key_secret="k"))
    rec = _run(build)
    comp = [r for r in rec.resources if r.type == "llm-serving:serving:VllmServer"][0]
    kids = [r for r in rec.resources if r.parent == comp.urn]
    assert sorted(r.name for r in kids) == ["vllm-m1-deployment", "vllm-m1-pdb", "vllm-m1-sa", "vllm-m1-service"]
    svc = [r for r in kids if r.type == "kubernetes:core/v1:Service"][0]
    assert svc.inputs["metadata"]["name"] == "m1" and svc.inputs["spec"]["ports"][0]["port"] == 8000


def test_vllm_server_refuses_the_name_vllm():
    import dataclasses
    bad = dataclasses.replace(SPEC, name="vllm")
    with pytest.raises(ValueError, match="VLLM_PORT"):
        _run(lambda: VllmServer("x", VllmServerArgs(spec=bad, namespace="models", cache_claim="c", api_key_secret="k")))


def test_nodepool_component_depends_on_crds():
    def build():
        crd = pulumi.CustomResource("test:index:Crd", "crds", {})
        nc = pulumi.CustomResource("test:index:Nc", "nc", {})
        KarpenterNodePool("pool-gpu", NodePoolArgs(spec=POOL, crds=CrdsHandle(release=crd), node_class=nc))
    rec = _run(build)
    np = [r for r in rec.resources if r.type == "kubernetes:karpenter.sh/v1:NodePool"][0]
    assert np.name == "pool-gpu-nodepool" and np.inputs["metadata"]["name"] == "gpu"
    assert any(d.endswith("::crds") for d in np.dependencies) and any(d.endswith("::nc") for d in np.dependencies)
