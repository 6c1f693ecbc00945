"""Component tier: renderers with hand-made records, and components alone under mocks."""

import dataclasses
import re
import subprocess

import pulumi
import pytest

from components.litellm import render_litellm_config
from components.model_cache import (
    DOWNLOAD_SCRIPT,
    SERVICE_ACCOUNT,
    CacheItem,
    ModelCache,
    ModelCacheArgs,
    render_job_spec,
)
from components.nodepool import KarpenterNodePool, NodePoolArgs, render_node_pool
from components.types import CrdsHandle, PoolSpec, Route, ServerSpec
from components.vllm import (
    EXIT_MARGIN_S,
    NEURON_ARTIFACTS_DIR,
    VLLM_CACHE_DIR,
    WAIT_SCRIPT,
    VllmServer,
    VllmServerArgs,
    neuron_artifacts_subpath,
    probe_budget,
    ready_marker,
    render_pod_spec,
)
from stacks.offline import runtime

SPEC = ServerSpec(
    name="m1",
    served_name="m1-served",
    hf_id="org/m1",
    revision="abc",
    kind="nvidia",
    image="img:1",
    args=("org/m1", "--served-model-name", "m1-served"),
    env=(("A", "1"),),
    pool="gpu",
    instance_type="g6.xlarge",
    tensor_parallel=1,
    accelerator_count=1,
    cpu="3",
    memory="12Gi",
    shm_size="2Gi",
    replicas=2,
    startup_budget_seconds=600,
    shutdown_timeout_seconds=600,
)
POOL = PoolSpec(
    name="gpu",
    kind="nvidia",
    families=("g6",),
    capacity_types=("on-demand",),
    node_class="nvidia",
    cpu_limit=100,
    memory_limit_gib=400,
    accelerator_limit=8,
    consolidate_after="30m",
    expire_after="720h",
    termination_grace_period="2h",
    disruption_budget_nodes="1",
)


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container["env"]}


def _job(item, token_secret="hf-token"):
    return render_job_spec(
        item,
        image="py:1",
        claim="model-cache",
        token_secret=token_secret,
        system_toleration="T",
    )["template"]["spec"]


def test_cache_job_writes_the_marker_the_server_waits_for():
    marker = ready_marker("org/m1", "abc")
    item = CacheItem(name="m1", hf_id="org/m1", revision="abc", gated=True, marker=marker, deadline_seconds=900)
    job = _job(item)
    pod = render_pod_spec(SPEC, cache_claim="model-cache", api_key_secret="k", service_account="m1")
    dl, wait = job["containers"][0], pod["initContainers"][0]
    assert _env(dl)["READY_MARKER"] == _env(wait)["READY_MARKER"] == marker
    # A hash names the marker: neither the Hub id nor the revision is part of any path.
    assert re.fullmatch(r"/models/ready/[0-9a-f]{64}", marker) and marker != ready_marker("org/m1", None)
    assert _env(dl)["HF_ID"] == "org/m1" and _env(dl)["HF_REVISION"] == "abc"
    assert "--include '*.safetensors'" in dl["command"][-1] and '-- "$HF_ID"' in dl["command"][-1]
    # The token is a mounted file read through HF_TOKEN_PATH, never an environment variable.
    assert "HF_TOKEN" not in _env(dl) and _env(dl)["HF_TOKEN_PATH"] == "/var/run/secrets/huggingface/token"
    tok = next(v for v in job["volumes"] if v["name"] == "hf-token")
    assert tok["secret"]["secretName"] == "hf-token"
    assert {"name": "hf-token", "mountPath": "/var/run/secrets/huggingface", "readOnly": True} in dl["volumeMounts"]
    assert all("HF_TOKEN" not in e["name"] for e in pod["containers"][0]["env"])
    public = _job(dataclasses.replace(item, gated=False))
    assert "HF_TOKEN_PATH" not in _env(public["containers"][0]) and all(
        v["name"] != "hf-token" for v in public["volumes"]
    )


def test_cache_job_is_bounded_has_its_own_identity_and_a_small_image():
    item = CacheItem(
        name="m1",
        hf_id="org/m1",
        revision=None,
        gated=False,
        marker=ready_marker("org/m1", None),
        deadline_seconds=1234,
    )
    spec = render_job_spec(
        item,
        image="py:1",
        claim="c",
        token_secret=None,
        system_toleration="T",
    )
    pod = spec["template"]["spec"]
    assert spec["activeDeadlineSeconds"] == 1234 and pod["serviceAccountName"] == SERVICE_ACCOUNT != "default"
    install, dl = pod["initContainers"][0], pod["containers"][0]
    # The CLI is installed without a shell, from the mounted lock, hashes required, nothing resolved.
    assert install["command"][:3] == ["python", "-m", "pip"] and install["command"][-2:] == [
        "-r",
        "/etc/model-cache-pip/requirements.lock",
    ]
    assert {"--require-hashes", "--no-deps"} <= set(install["command"])
    assert install["image"] == dl["image"] == "py:1"
    env = _env(dl)
    assert env["HF_REVISION"] == "main"  # unpinned: the default branch, stated
    # hf_xet's chunk cache off, its other state on EFS (not the 4 Gi /tmp emptyDir).
    assert env["HF_XET_CHUNK_CACHE_SIZE_BYTES"] == "0" and env["HF_XET_CACHE"].startswith("/models/xet/")
    assert pod["tolerations"] == [{"key": "T", "operator": "Exists", "effect": "NoSchedule"}]


HOSTILE = ["; rm -rf /", "$(id)", "`id`", "../../etc", "a\nb; touch /tmp/x", "'\"$HOME"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_config_values_never_reach_a_script(bad):
    """Scripts are constant text: hostile hfId / revision / name change env values only."""

    def render(hf_id, revision, name):
        spec = dataclasses.replace(SPEC, name=name, hf_id=hf_id, revision=revision)
        item = CacheItem(name=name, hf_id=hf_id, revision=revision, gated=True, marker=ready_marker(hf_id, revision))
        pod = render_pod_spec(spec, cache_claim="model-cache", api_key_secret="k", service_account="sa")
        job = _job(item)
        return job["containers"][0], job["initContainers"][0], pod["initContainers"][0]

    benign = render("org/m1", "abc", "m1")
    for hostile in (render(bad, "abc", "m1"), render("org/m1", bad, "m1"), render("org/m1", "abc", bad)):
        for b, h in zip(benign, hostile, strict=False):
            assert h["command"] == b["command"]  # byte-identical programs
            assert [e["name"] for e in h["env"]] == [e["name"] for e in b["env"]]
            assert re.fullmatch(
                r"/models/ready/[0-9a-f]{64}", _env(h).get("READY_MARKER") or "/models/ready/" + "0" * 64
            )
    # Negative control: the check above does see a difference when a value is spliced into a script.
    assert render(bad, "abc", "m1")[0]["env"] != benign[0]["env"]


def _run_sh(script: str, env: dict, tmp_path, stub_python: bool = True) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if stub_python:  # records its argv, one element per line, instead of downloading
        stub = bin_dir / "python"
        stub.write_text('#!/bin/sh\nfor a in "$@"; do printf \'%s\\n\' "$a"; done > "$ARGV_LOG"\n')
        stub.chmod(0o755)
    full = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ARGV_LOG": str(tmp_path / "argv"), **env}
    return subprocess.run(["sh", "-c", script], env=full, cwd=tmp_path, capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("bad", HOSTILE)
def test_download_script_passes_hostile_values_as_single_arguments_in_a_real_shell(bad, tmp_path):
    pwned = tmp_path / "pwned"
    for hf_id in (bad, f"$(touch {pwned})", f"`touch {pwned}`"):
        env = {
            "HF_ID": hf_id,
            "HF_REVISION": bad,
            "READY_MARKER": str(tmp_path / "ready" / "m"),
            "HF_HUB_CACHE": str(tmp_path / "hub"),
            "HF_XET_CACHE": str(tmp_path / "xet"),
        }
        r = _run_sh(DOWNLOAD_SCRIPT, env, tmp_path)
        assert r.returncode == 0, r.stderr
        argv = (tmp_path / "argv").read_text().split("\n")[:-1]
        if "\n" not in hf_id and "\n" not in bad:
            assert argv[-2:] == ["--", hf_id] and argv[argv.index("--revision") + 1] == bad
        assert not pwned.exists() and (tmp_path / "ready" / "m").exists()


def test_wait_script_in_a_real_shell_succeeds_on_the_marker_and_fails_when_the_bound_is_spent(tmp_path):
    marker = tmp_path / "ready"
    env = {"READY_MARKER": str(marker), "HF_ID": "$(touch pwned)", "WAIT_SECONDS": "0"}
    r = _run_sh(WAIT_SCRIPT, env, tmp_path, stub_python=False)
    assert r.returncode == 1 and "not ready after 0s" in r.stderr and "$(touch pwned)" in r.stderr
    assert not (tmp_path / "pwned").exists()
    marker.touch()
    assert _run_sh(WAIT_SCRIPT, env, tmp_path, stub_python=False).returncode == 0
    pod = render_pod_spec(
        dataclasses.replace(SPEC, weights_wait_seconds=4321), cache_claim="c", api_key_secret="k", service_account="m1"
    )
    assert _env(pod["initContainers"][0])["WAIT_SECONDS"] == "4321"


NEURON = dataclasses.replace(SPEC, kind="neuron", args=("vllm", "serve", "org/m1"), shutdown_timeout_seconds=0)


@pytest.mark.parametrize("spec", [SPEC, NEURON], ids=["gpu", "neuron"])
def test_one_cache_volume_per_pod_and_per_pod_caches(spec):
    pod = render_pod_spec(spec, cache_claim="model-cache", api_key_secret="k", service_account="m1")
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["model-cache"]  # kubelet < 1.35 never mounts a second volume of the same PVC
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = pod["containers"][0]["volumeMounts"]
    assert all("emptyDir" in vols[m["name"]] for m in mounts if m["mountPath"] == VLLM_CACHE_DIR)
    assert any(m["mountPath"] == VLLM_CACHE_DIR for m in mounts)
    writable_cache = [m for m in mounts if m["name"] == "model-cache" and not m.get("readOnly")]
    if spec.kind == "neuron":
        (art,) = writable_cache
        assert art["mountPath"] == NEURON_ARTIFACTS_DIR and re.fullmatch(
            r"neuron-compiled/[0-9a-f]{24}", art["subPath"]
        )
        assert not art["mountPath"].startswith("/models/")  # no mountpoint to create inside the read-only mount
        assert "emptyDir" in vols["var-tmp"] and {"name": "var-tmp", "mountPath": "/var/tmp"} in mounts
        other = dataclasses.replace(spec, args=(*spec.args, "--max-model-len", "4096"))
        assert neuron_artifacts_subpath(other) != art["subPath"]  # new args compile afresh
    else:
        assert writable_cache == [] and "var-tmp" not in vols


@pytest.mark.parametrize("spec", [SPEC, NEURON], ids=["gpu", "neuron"])
def test_grace_period_is_derived_from_prestop_and_drain(spec):
    spec = dataclasses.replace(spec, shutdown_timeout_seconds=0 if spec.kind == "neuron" else 321)
    pod = render_pod_spec(spec, cache_claim="c", api_key_secret="k", service_account="m1")
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]
    assert set(pre_stop) == {"sleep"}  # kubelet's own sleep: no shell, no binary in the image
    expected = pre_stop["sleep"]["seconds"] + spec.shutdown_timeout_seconds + EXIT_MARGIN_S
    assert pod["terminationGracePeriodSeconds"] == expected == (351 if spec.kind == "nvidia" else 30)
    assert pod["enableServiceLinks"] is False


def test_server_pod_startup_budget_spread_and_placement():
    spec = dataclasses.replace(SPEC, instance_types=("g6.xlarge", "g6.2xlarge"))
    pod = render_pod_spec(spec, cache_claim="model-cache", api_key_secret="k", service_account="m1")
    c = pod["containers"][0]
    assert (c["startupProbe"]["failureThreshold"], c["startupProbe"]["periodSeconds"]) == (60, 10)
    # a budget that is not a multiple of the period rounds up, never down: 601 s -> 61 x 10 s
    odd = render_pod_spec(
        dataclasses.replace(SPEC, startup_budget_seconds=601),
        cache_claim="model-cache",
        api_key_secret="k",
        service_account="m1",
    )
    assert odd["containers"][0]["startupProbe"]["failureThreshold"] == 61
    assert probe_budget(1) == 1 and probe_budget(0) == 1 and probe_budget(10) == 1 and probe_budget(11) == 2
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert "nodeSelector" not in pod
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "llm-serving/pool", "operator": "In", "values": ["gpu"]},
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g6.xlarge", "g6.2xlarge"]},
    ]
    # Without a computed list, the planner's chosen type alone.
    alone = render_pod_spec(SPEC, cache_claim="c", api_key_secret="k", service_account="m1")
    assert alone["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"
    ][1]["values"] == ["g6.xlarge"]


def test_litellm_config_routes_exactly_the_given_routes():
    routes = [
        Route("a", "a", "a.models.svc.cluster.local", 8000, 120, 4096),
        Route("b", "b", "b.models.svc.cluster.local", 8000, 900, 8192),
    ]
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
    return runtime.run(build, config={}, timeout=30)


def test_vllm_server_alone_under_mocks_names_and_parentage():
    def build():
        VllmServer(
            "vllm-m1", VllmServerArgs(spec=SPEC, namespace="models", cache_claim="model-cache", api_key_secret="k")
        )

    rec = _run(build)
    comp = next(r for r in rec.resources if r.type == "llm-serving:serving:VllmServer")
    kids = [r for r in rec.resources if r.parent == comp.urn]
    assert sorted(r.name for r in kids) == ["vllm-m1-deployment", "vllm-m1-pdb", "vllm-m1-sa", "vllm-m1-service"]
    svc = next(r for r in kids if r.type == "kubernetes:core/v1:Service")
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
    np = next(r for r in rec.resources if r.type == "kubernetes:karpenter.sh/v1:NodePool")
    assert np.name == "pool-gpu-nodepool" and np.inputs["metadata"]["name"] == "gpu"
    assert any(d.endswith("::crds") for d in np.dependencies) and any(d.endswith("::nc") for d in np.dependencies)


def test_model_cache_alone_under_mocks_gives_the_job_its_own_service_account():
    item = CacheItem(name="m1", hf_id="org/m1", revision=None, gated=True, marker=ready_marker("org/m1", None))

    def build():
        ModelCache(
            "model-cache",
            ModelCacheArgs(
                namespace="models",
                storage_class="efs",
                items=(item,),
                image="py:1",
                hf_token="hf_x",
                system_toleration="T",
            ),
        )

    rec = _run(build)
    by_name = {r.name: r for r in rec.resources}
    sa, job = by_name["model-cache-sa"], by_name["model-cache-m1"]
    assert sa.type == "kubernetes:core/v1:ServiceAccount" and sa.inputs["metadata"]["name"] == SERVICE_ACCOUNT
    assert sa.inputs["automountServiceAccountToken"] is False
    assert job.inputs["spec"]["template"]["spec"]["serviceAccountName"] == SERVICE_ACCOUNT
    assert sa.urn in job.dependencies and by_name["model-cache-hf-token"].urn in job.dependencies
