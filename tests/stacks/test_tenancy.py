"""Tenant boundaries on the plan: the scraper's key, what stack outputs carry, who may read a team's
secret. The e2e half (the real LiteLLM refusing the metrics key everything but /metrics) is
tests/e2e/test_metrics_key.py."""

from __future__ import annotations

import json

import pytest

from components.team_keys import METRICS_KEY_ALIAS, NO_MODEL, KeyGrant, render_key_table
from incluster.gateway_auth import custom_auth
from stacks import config
from stacks.plan import k8s_objects
from tests.conftest import STACK_FILES

MONITOR_KINDS = {"PodMonitor", "ServiceMonitor"}


def master_key_refs(objects: list[tuple[str, dict]]) -> set[tuple[str, str, str]]:
    """(namespace, Secret, key) of every env var LITELLM_MASTER_KEY of a rendered pod template."""
    out = set()
    for _, o in objects:
        pod = (((o.get("spec") or {}).get("template") or {}).get("spec")) or {}
        for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if e["name"] == "LITELLM_MASTER_KEY" and ref:
                    out.add((o["metadata"]["namespace"], ref["name"], ref["key"]))
    return out


def monitor_credentials(objects: list[tuple[str, dict]]) -> set[tuple[str, str, str]]:
    """(namespace, Secret, key) every PodMonitor/ServiceMonitor endpoint sends as a credential."""
    out = set()
    for _, o in objects:
        if o["kind"] not in MONITOR_KINDS:
            continue
        spec = o["spec"]
        for ep in [*spec.get("podMetricsEndpoints", []), *spec.get("endpoints", [])]:
            for field in ("authorization", "bearerTokenSecret", "basicAuth"):
                v = ep.get(field) or {}
                refs = [v.get("credentials"), v if "key" in v else None, v.get("username"), v.get("password")]
                out |= {(o["metadata"]["namespace"], r["name"], r["key"]) for r in refs if r}
    return out


def test_hook_gives_the_metrics_entry_its_routes_and_a_team_key_none():
    table = json.loads(render_key_table(["sk-team"], (KeyGrant("ci", "search", ("a",)),), "sk-metrics"))
    scraper = custom_auth.identify("sk-metrics", table, "sk-master")
    assert scraper is not None
    assert scraper["allowed_routes"] == ["/metrics"] and scraper["models"] == [NO_MODEL]
    assert scraper["key_alias"] == METRICS_KEY_ALIAS and scraper["team_id"] is None
    team = custom_auth.identify("sk-team", table, "sk-master")
    assert team is not None and "allowed_routes" not in team and team["models"] == ["a"]
    assert len(table) == 2  # one row per key, nothing for the master key


def test_the_no_model_name_cannot_be_served():
    """The scraper's model list must name no model a stack can serve: the config refuses it."""
    raw = {"models": {"tiny": {"preset": "qwen3-0.6b", "servedName": NO_MODEL}}}
    with pytest.raises(config.ConfigError) as e:
        config.resolve(raw, stack="t")
    assert any(p.startswith("llm-serving:models.tiny.servedName: ") for p in e.value.problems), e.value.problems


def test_master_key_check_can_fail():
    """Negative control: a monitor that sends the gateway's master key is found."""
    gw = {
        "kind": "Deployment",
        "metadata": {"namespace": "gateway", "name": "litellm"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "env": [
                                {
                                    "name": "LITELLM_MASTER_KEY",
                                    "valueFrom": {"secretKeyRef": {"name": "litellm", "key": "master-key"}},
                                }
                            ]
                        }
                    ]
                }
            }
        },
    }
    ep = {"authorization": {"type": "Bearer", "credentials": {"name": "litellm", "key": "master-key"}}}
    mon = {
        "kind": "PodMonitor",
        "metadata": {"namespace": "gateway", "name": "m"},
        "spec": {"podMetricsEndpoints": [ep]},
    }
    objs = [("a", gw), ("b", mon)]
    assert master_key_refs(objs) & monitor_credentials(objs) == {("gateway", "litellm", "master-key")}


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_no_monitor_sends_the_master_key(path, plan_of):
    _, rec, _ = plan_of(path)
    objects = k8s_objects(rec)
    masters = master_key_refs(objects)
    assert masters  # every stack runs a gateway: the check has something to compare against
    creds = monitor_credentials(objects)
    assert not masters & creds
    secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for _, o in objects if o["kind"] == "Secret"}
    for ns, name, key in creds:  # what a monitor sends is a Secret of the plan holding that one key
        assert set(secrets[(ns, name)]["stringData"]) == {key}
