"""Supply chain in the pods: any `pip install` a rendered pod runs takes a committed lock with every
hash (and resolves nothing itself); the model-cache lock pins the downloader the catalog names."""

from __future__ import annotations

import re

import pytest

from components import model_cache
from stacks import catalog
from stacks.plan import k8s_objects
from tests.conftest import ROOT, STACK_FILES
from tests.support.policy import pod_spec_of

LOCKS = {p.read_text(): p.name for p in (ROOT / "requirements").glob("*.lock")}
REQUIRED = {"--require-hashes", "--no-deps"}


def pip_installs(objects: list[tuple[str, dict]]) -> list[tuple[str, dict, dict]]:
    """(where, container, pod) of every container whose command or args run `pip install`."""
    out = []
    for _, o in objects:
        pod = pod_spec_of(o)
        for c in [*(pod or {}).get("initContainers", []), *(pod or {}).get("containers", [])]:
            argv = [*c.get("command", []), *c.get("args", [])]
            if re.search(r"\bpip3?\b.*\binstall\b", " ".join(argv)):
                out.append((f"{o['kind']}/{o['metadata']['name']}/{c['name']}", c, pod or {}))
    return out


def unlocked(objects: list[tuple[str, dict]]) -> list[str]:
    """Installs without hashes or without a lock the repository holds (mounted from a ConfigMap)."""
    maps = {o["metadata"]["name"]: o.get("data") or {} for _, o in objects if o["kind"] == "ConfigMap"}
    bad = []
    for where, c, pod in pip_installs(objects):
        argv = [*c.get("command", []), *c.get("args", [])]
        if not set(argv) >= REQUIRED or "-r" not in argv:
            bad.append(f"{where}: pip install without {sorted(REQUIRED)} and -r <lock>")
            continue
        path = argv[argv.index("-r") + 1]
        mount = next((m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"] + "/")), None)
        vol = next((v for v in pod.get("volumes", []) if mount and v["name"] == mount["name"]), {})
        text = maps.get((vol.get("configMap") or {}).get("name"), {}).get(path.rsplit("/", 1)[1])
        if text not in LOCKS:
            bad.append(f"{where}: {path} is not a committed lock")
    return bad


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_every_in_pod_pip_install_uses_a_committed_lock(path, plan_of):
    _, rec, _ = plan_of(path)
    objects = k8s_objects(rec)
    assert pip_installs(objects)  # every stack caches a model: there is an install to judge
    assert unlocked(objects) == []


def test_lock_check_can_fail():
    """Negative control: a floating requirement, and a lock that is not the committed one."""
    floating = {"name": "i", "command": ["python", "-m", "pip", "install", "huggingface_hub==2.4.0"]}
    job = lambda c, data: [  # noqa: E731
        (
            "j",
            {
                "kind": "Job",
                "metadata": {"name": "j"},
                "spec": {
                    "template": {
                        "spec": {
                            "initContainers": [c],
                            "containers": [],
                            "volumes": [{"name": "l", "configMap": {"name": "m"}}],
                        }
                    }
                },
            },
        ),
        ("m", {"kind": "ConfigMap", "metadata": {"name": "m"}, "data": data}),
    ]
    assert unlocked(job(floating, {})) == [
        "Job/j/i: pip install without ['--no-deps', '--require-hashes'] and -r <lock>"
    ]
    locked = {
        "name": "i",
        "command": ["pip", "install", "--require-hashes", "--no-deps", "-r", "/l/r.lock"],
        "volumeMounts": [{"name": "l", "mountPath": "/l"}],
    }
    assert unlocked(job(locked, {"r.lock": "huggingface_hub==2.4.0\n"})) == [
        "Job/j/i: /l/r.lock is not a committed lock"
    ]
    assert unlocked(job(locked, {"r.lock": model_cache.lock_text()})) == []


def test_model_cache_lock_pins_the_catalog_version_with_hashes():
    text = model_cache.lock_text()
    pins = dict(re.findall(r"^([a-z0-9._-]+)==(\S+) \\$", text, flags=re.M))
    assert pins["huggingface-hub"] == catalog.versions().huggingface_hub_version
    # Every pinned package carries at least one sha256 (the closure: 15 packages, counted by hand).
    blocks = re.split(r"^(?=[a-z0-9._-]+==)", text, flags=re.M)[1:]
    assert len(blocks) == len(pins) == 15
    assert all("--hash=sha256:" in b for b in blocks)
