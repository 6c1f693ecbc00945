"""The compile cache: the key changes with every input it hashes, and a stack with `compileCache: true`
renders one warm Job that runs the server's own image and arguments, and servers that verify before use."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.compile_cache import cache_key
from stacks import config
from stacks.yamlio import dump_yaml

SHA = "c1899de289a04d12100db370d81485cdf75e47ca"
BASE = {
    "model": "Qwen/Qwen3-0.6B",
    "revision": SHA,
    "image": "vllm/vllm-openai:v0.32.0",
    "args": ("Qwen/Qwen3-0.6B", "--max-model-len", "8192"),
    "accelerator": "nvidia:g6e.xlarge",
}
CHANGES = {
    "model": "Qwen/Qwen3-1.7B",
    "revision": "0" * 40,
    "image": "vllm/vllm-openai:v0.32.1",
    "args": ("Qwen/Qwen3-0.6B", "--max-model-len", "4096"),
    "accelerator": "nvidia:g5.xlarge",
}


def test_the_same_inputs_give_the_same_key():
    assert cache_key(**BASE) == cache_key(**dict(BASE))
    key = cache_key(**BASE)
    assert len(key) == 32 and all(c in "0123456789abcdef" for c in key)


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_changing_any_input_changes_the_key(field):
    assert cache_key(**{**BASE, field: CHANGES[field]}) != cache_key(**BASE)


def test_argument_order_is_part_of_the_key():
    swapped = {**BASE, "args": ("Qwen/Qwen3-0.6B", "8192", "--max-model-len")}
    assert cache_key(**swapped) != cache_key(**BASE)


def test_no_revision_is_not_confused_with_an_empty_argument_list():
    a = cache_key(**{**BASE, "revision": None, "args": ("x",)})
    b = cache_key(**{**BASE, "revision": "x", "args": ()})
    assert a != b


def test_compile_cache_is_refused_on_neuron():
    raw = {"models": {"m": {"preset": "qwen3-0.6b", "accelerator": "neuron", "compileCache": True}}}
    with pytest.raises(config.ConfigError) as e:
        config.resolve(raw, stack="cc")
    assert any(p.startswith("llm-serving:models.m.compileCache:") for p in e.value.problems), e.value.problems


@pytest.fixture(scope="module")
def objs(tmp_path_factory):
    from stacks.plan import k8s_objects, run_program

    path: Path = tmp_path_factory.mktemp("cc") / "Pulumi.cc.yaml"
    models = {"m": {"preset": "qwen3-0.6b", "revision": SHA, "compileCache": True}}
    path.write_text(dump_yaml({"config": {"aws:region": "us-east-1", "llm-serving:models": models}}))
    _, rec = run_program("cc", path)
    return {(o["kind"], o["metadata"]["name"]): o for _, o in k8s_objects(rec)}


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_one_warm_job_runs_the_servers_image_and_args(objs):
    (job,) = [o for (kind, name), o in objs.items() if kind == "Job" and name.startswith("warm-")]
    server = objs[("Deployment", "m")]["spec"]["template"]["spec"]
    warm = job["spec"]["template"]["spec"]["containers"][0]
    serve = server["containers"][0]
    assert warm["image"] == serve["image"] and warm["args"] == serve["args"]
    assert warm["command"][-4:] == ["warm", "--", "vllm", "serve"]
    assert job["spec"]["template"]["spec"]["affinity"] == server["affinity"]  # the same accelerator
    key = env_of(warm)["CACHE_KEY"]
    assert job["metadata"]["name"] == f"warm-{key[:16]}"
    mount = next(m for m in warm["volumeMounts"] if m["mountPath"] == "/var/lib/compile-cache")
    assert mount["subPath"] == f"compile-cache/{key}" and mount["readOnly"] is False


def test_servers_verify_the_same_key_read_only(objs):
    (job,) = [o for (kind, name), o in objs.items() if kind == "Job" and name.startswith("warm-")]
    key = env_of(job["spec"]["template"]["spec"]["containers"][0])["CACHE_KEY"]
    server = objs[("Deployment", "m")]["spec"]["template"]["spec"]
    init = next(c for c in server["initContainers"] if c["name"] == "compile-cache")
    assert init["command"][-1] == "restore" and env_of(init)["CACHE_KEY"] == key
    assert env_of(init)["VLLM_CACHE_ROOT"] == env_of(server["containers"][0])["VLLM_CACHE_ROOT"]
    for c in (init, server["containers"][0]):
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/var/lib/compile-cache")
        assert mount["readOnly"] is True and mount["subPath"] == f"compile-cache/{key}"
    inductor = env_of(server["containers"][0])["TORCHINDUCTOR_CACHE_DIR"]
    assert inductor.startswith(env_of(init)["VLLM_CACHE_ROOT"] + "/")
    assert ("ConfigMap", "compile-cache-script") in objs


def test_without_the_switch_there_is_no_warm_job(plan_of):
    """Negative control: the seed stack has no warm Job and no compile-cache init container."""
    from tests.conftest import ROOT

    _, rec, _ = plan_of(ROOT / "stacks" / "examples" / "Pulumi.seed004-qwen3-0-6b-one-gpu.yaml")
    from stacks.plan import k8s_objects

    names = [(o["kind"], o["metadata"]["name"]) for _, o in k8s_objects(rec)]
    assert not [n for k, n in names if k == "Job" and n.startswith("warm-")]
    assert ("ConfigMap", "compile-cache-script") not in names
