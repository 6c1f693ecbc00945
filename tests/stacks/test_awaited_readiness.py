"""An awaited workload is ready only when what its readiness reaches is ready: `pulumi up` must create
that first, or the await times out (pulumi-kubernetes gives a Deployment 10 minutes).

The relation, over every example and ok fixture: when an awaited Deployment's readiness probe path is
proxied by its own nginx config (a mounted ConfigMap: `location = <path> { proxy_pass http://<upstream>… }`
with `upstream <name> { server <svc>.<ns>.svc.cluster.local:<port>; }`), the Deployment waits, through
its dependencies (a component dependency waits for all the component's children), for the Deployment
behind that Service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, STACK_FILES

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
HOST = re.compile(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local")


def proxied_hosts(conf: str, path: str) -> set[tuple[str, str]]:
    """(service, namespace) an nginx config sends `path` to: through an upstream block or directly."""
    loc = re.search(r"location = " + re.escape(path) + r" \{[^}]*?proxy_pass http://([^/;\s]+)", conf)
    if not loc:
        return set()
    target = loc.group(1)
    block = re.search(r"upstream " + re.escape(target) + r" \{([^}]*)\}", conf)
    return set(HOST.findall(block.group(1) if block else target))


def readiness_paths(d) -> set[str]:
    spec = d.inputs["spec"]["template"].get("spec", {})
    return {
        c["readinessProbe"]["httpGet"]["path"]
        for c in spec.get("containers") or []
        if "httpGet" in (c.get("readinessProbe") or {})
    }


STACKS = [*STACK_FILES, *sorted((ROOT / "tests" / "configs").glob("*.ok.yaml"))]


def meta(r) -> tuple[str, str]:
    m = (r.inputs or {}).get("metadata") or {}
    return m.get("namespace", "default"), m.get("name", "")


def awaited(r) -> bool:
    notes = ((r.inputs or {}).get("metadata") or {}).get("annotations") or {}
    return str(notes.get("pulumi.com/skipAwait", "")).lower() != "true"


def mounted_config_maps(r) -> set[str]:
    spec = ((r.inputs or {}).get("spec") or {}).get("template", {}).get("spec", {})
    return {v["configMap"]["name"] for v in spec.get("volumes") or [] if "configMap" in v}


def backing(resources, ns: str, svc: str) -> list:
    """The Deployments whose pod labels the Service's selector matches."""
    services = [r for r in resources if r.type == SERVICE and meta(r) == (ns, svc)]
    if not services:
        return []
    selector = (services[0].inputs.get("spec") or {}).get("selector") or {}
    out = []
    for d in (r for r in resources if r.type == DEPLOYMENT and meta(r)[0] == ns):
        labels = (d.inputs["spec"]["template"].get("metadata") or {}).get("labels") or {}
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            out.append(d)
    return out


def waits_for(resources, urn: str) -> set[str]:
    """Every URN `urn` waits for: dependencies, transitively, a component expanding to its children."""
    by_urn = {r.urn: r for r in resources}
    children: dict[str, list[str]] = {}
    for r in resources:
        if r.parent:
            children.setdefault(r.parent, []).append(r.urn)
    seen: set[str] = set()
    todo = list(by_urn[urn].dependencies)
    while todo:
        u = todo.pop()
        if u in seen or u not in by_urn:
            continue
        seen.add(u)
        todo.extend(by_urn[u].dependencies)
        todo.extend(children.get(u, []))
    return seen


def problems(resources) -> list[str]:
    cms = {meta(r): r for r in resources if r.type == CONFIG_MAP}
    out = []
    for d in (r for r in resources if r.type == DEPLOYMENT and awaited(r)):
        ns, name = meta(d)
        confs = [
            v
            for c in mounted_config_maps(d)
            if (ns, c) in cms
            for v in (cms[(ns, c)].inputs.get("data") or {}).values()
        ]
        reached = {h for conf in confs for p in readiness_paths(d) for h in proxied_hosts(str(conf), p)}
        before = waits_for(resources, d.urn)
        for svc, svc_ns in sorted(reached):
            for target in backing(resources, svc_ns, svc):
                if target.urn != d.urn and target.urn not in before:
                    out.append(f"{ns}/{name} reaches {svc}.{svc_ns} but does not wait for {meta(target)[1]}")
    return out


@pytest.mark.parametrize("stack_file", STACKS, ids=lambda p: Path(p).stem)
def test_awaited_workloads_wait_for_what_their_readiness_reaches(stack_file, plan_of):
    _intent, rec, _out = plan_of(stack_file)
    assert problems(rec.resources) == []


def test_control_a_front_door_created_beside_litellm_is_caught(plan_of):
    """Negative control: the dev plan with the front door's dependency on the gateway removed."""
    _intent, rec, _out = plan_of(ROOT / "Pulumi.dev.yaml")
    gateway = {r.urn for r in rec.resources if r.name == "gateway"}
    assert gateway, "the LiteLLM component is named 'gateway'"
    while True:  # the component and all its descendants
        more = {r.urn for r in rec.resources if r.parent in gateway} - gateway
        if not more:
            break
        gateway |= more

    class Cut:
        def __init__(self, r):
            self.__dict__.update(r.__dict__)
            if r.name.startswith("gateway-frontdoor"):
                self.dependencies = tuple(u for u in r.dependencies if u not in gateway)

    cut = [Cut(r) for r in rec.resources]
    assert problems(rec.resources) == []
    assert problems(cut) == ["gateway/gateway-frontdoor reaches litellm.gateway but does not wait for litellm"]
