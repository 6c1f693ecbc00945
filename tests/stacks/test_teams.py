"""Teams and keys as code: the custom-auth hook's lookup, the rendered gateway config, validation,
and what the program builds (only when asked, no plaintext keys)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from components.litellm import render_gateway_pod, render_litellm_config
from components.types import Route
from incluster.gateway_auth import custom_auth
from stacks import catalog
from stacks import plan as plancli
from stacks.offline import runtime
from stacks.yamlio import dump_yaml, load_yaml
from tests.conftest import ROOT

ROUTE = Route("a", "a", "a.models.svc.cluster.local", 8000, 120, 4096)
# sha256("sk-team-key"), computed once with `printf %s sk-team-key | sha256sum`.
TEAM_KEY_SHA = "e125c17718a154f30f802a1b434c10911a25d6de7349173466e1ecca5e212491"


def test_key_hash_is_sha256_hex_as_litellm_hashes_virtual_keys():
    assert custom_auth.key_hash("sk-team-key") == TEAM_KEY_SHA
    assert len(custom_auth.key_hash("x")) == 64


def test_identify_master_team_and_unknown():
    entry = {"key_alias": "ci", "team_id": "search", "models": ["a"], "rpm_limit": 5}
    table = {custom_auth.key_hash("sk-team-key"): entry}
    assert custom_auth.identify("sk-master", table, "sk-master") == {"admin": True}
    got = custom_auth.identify("sk-team-key", table, "sk-master")
    assert got == {
        "key_alias": "ci",
        "team_id": "search",
        "models": ["a"],
        "rpm_limit": 5,
        "tpm_limit": None,
        "max_parallel_requests": None,
    }
    assert custom_auth.identify("sk-wrong", table, "sk-master") is None
    assert custom_auth.identify("", table, "sk-master") is None
    # No master key configured: an empty key must not match it.
    assert custom_auth.identify("", table, "") is None and custom_auth.identify("", table, None) is None
    # The hash itself is not a key.
    assert custom_auth.identify(custom_auth.key_hash("sk-team-key"), table, "sk-master") is None


def test_table_file_absent_is_empty_and_reloads_on_change(tmp_path):
    f = tmp_path / "keys.json"
    assert custom_auth.load_table(str(f)) == {}
    f.write_text(json.dumps({"h1": {"team_id": "t"}}))
    assert custom_auth.load_table(str(f)) == {"h1": {"team_id": "t"}}
    f.write_text(json.dumps({"h2": {"team_id": "u"}, "h3": {}}))
    assert set(custom_auth.load_table(str(f))) == {"h2", "h3"}


def test_gateway_config_always_runs_our_hook_and_litellm_checks():
    for database in (False, True):
        cfg = render_litellm_config([ROUTE], database=database)
        g = cfg["general_settings"]
        assert g["custom_auth"] == "custom_auth.user_api_key_auth"
        assert g["custom_auth_run_common_checks"] is True
        assert cfg["litellm_settings"]["enable_post_custom_auth_checks"] is True
        assert "coordination_redis" not in g
        # With the database, unknown keys fall through to LiteLLM's virtual keys; without it, 401.
        assert g.get("custom_auth_settings") == ({"mode": "auto"} if database else None)
    g = render_litellm_config([ROUTE], database=False, redis=True)["general_settings"]
    assert g["coordination_redis"] == {
        "host": "os.environ/REDIS_HOST",
        "port": "os.environ/REDIS_PORT",
        "password": "os.environ/REDIS_PASSWORD",
        "ssl": True,
    }


def test_gateway_pod_mounts_key_hashes_read_only_only_when_keys_exist():
    pin = catalog.versions().images["litellm"]
    plain = render_gateway_pod(pin, replicas=2, database=False, system_taint="T")
    c = plain["containers"][0]
    assert {"name": "LLM_SERVING_KEYS_FILE", "value": "/etc/litellm-keys/keys.json"} in c["env"]
    assert not [v for v in plain["volumes"] if v["name"] == "keys"]
    keyed = render_gateway_pod(pin, replicas=2, database=False, system_taint="T", keys=True, redis=True)
    c = keyed["containers"][0]
    assert {"name": "keys", "mountPath": "/etc/litellm-keys", "readOnly": True} in c["volumeMounts"]
    assert {"name": "keys", "secret": {"secretName": "litellm-keys", "defaultMode": 0o440}} in keyed["volumes"]
    # 0440 is readable by the process only through the group the kubelet gives the files: the fsGroup.
    assert keyed["securityContext"]["fsGroup"] == keyed["securityContext"]["runAsGroup"] == pin.user
    env = {e["name"]: e for e in c["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "litellm", "key": "redis-password"}
    assert env["REDIS_PORT"]["value"] == "6379"


# ---- the whole program under mocks ----------------------------------------------------------------
TEAMS = ROOT / "stacks" / "examples" / "Pulumi.teams.yaml"
DEV = ROOT / "Pulumi.dev.yaml"


def mock_key(resource_name: str) -> str:
    """What a team key is under the harness mocks: "sk-" + the RandomPassword mock result
    ("mock-" + sha1(resource name)[:17], stacks/offline/runtime.py)."""
    return "sk-mock-" + hashlib.sha1(resource_name.encode()).hexdigest()[:17]


def _unmasked(v):
    if isinstance(v, dict):
        if v.get(runtime.SIG_KEY) == runtime.SECRET_SIG:
            return _unmasked(v.get("value"))
        return {k: _unmasked(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_unmasked(x) for x in v]
    return v


def types_of(rec) -> set[str]:
    return {r.type for r in rec.resources}


def by_name(rec, typ: str) -> dict:
    return {r.name: r for r in rec.resources if r.type == typ}


def test_dev_has_the_hook_and_nothing_else_of_teams(plan_of):
    _intent, rec, out = plan_of(DEV)
    # The only generated key of the table is the scraper's (tests/stacks/test_tenancy.py).
    assert [n for n in by_name(rec, "random:index/randomPassword:RandomPassword") if n.startswith("team-keys")] == [
        "team-keys-metrics"
    ]
    assert "llm-serving:access:GatewayCache" not in types_of(rec)
    assert not [t for t in types_of(rec) if t.startswith("aws:elasticache")]
    assert "serving-gateway-to-redis" not in by_name(rec, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
    cm = load_yaml((out / "manifests" / "configmap-gateway-litellm-config.yaml").read_text())
    assert cm["data"]["custom_auth.py"] == (ROOT / "incluster" / "gateway_auth" / "custom_auth.py").read_text()
    cfg = load_yaml(cm["data"]["config.yaml"])
    assert cfg["general_settings"]["custom_auth"] == "custom_auth.user_api_key_auth"
    assert "coordination_redis" not in cfg["general_settings"]
    assert rec.outputs["teamKeySecrets"] == {} and "gatewayMasterKey" not in rec.outputs


def test_teams_stack_builds_keys_redis_and_the_wiring(plan_of):
    _intent, rec, out = plan_of(TEAMS)
    pw = by_name(rec, "random:index/randomPassword:RandomPassword")
    for k in ("search-ci", "search-prod", "research-notebooks", "open-webui"):
        assert pw[f"team-keys-{k}"].inputs == {"length": 48, "special": False}
    rg = by_name(rec, "aws:elasticache/replicationGroup:ReplicationGroup")["gateway-cache-redis"].inputs
    assert rg["atRestEncryptionEnabled"] is True and rg["transitEncryptionEnabled"] is True
    assert rg["authToken"] == "[secret]" and rg["engine"] == "redis" and rg["engineVersion"] == "7.1"
    assert rg["multiAzEnabled"] is True and rg["numCacheClusters"] == 2 and rg["port"] == 6379
    assert rg["replicationGroupId"] == "llm-teams-litellm"
    sg = by_name(rec, "aws:ec2/securityGroup:SecurityGroup")["gateway-cache-sg"].inputs
    assert [(i["fromPort"], i["toPort"], i["securityGroups"]) for i in sg["ingress"]] == [
        (6379, 6379, ["sg-eksclustersg"])
    ]
    assert "cidrBlocks" not in sg["ingress"][0]
    np = by_name(rec, "kubernetes:networking.k8s.io/v1:NetworkPolicy")["serving-gateway-to-redis"].inputs["spec"]
    assert np["egress"] == [
        {"ports": [{"port": 6379, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.0.0.0/16"}}]}
    ]
    secret = by_name(rec, "kubernetes:core/v1:Secret")
    assert secret["gateway-secret"].inputs["stringData"]["redis-password"] == "[secret]"
    assert set(secret["gateway-keys"].inputs["stringData"]) == {"keys.json"}
    cfg = load_yaml(
        load_yaml((out / "manifests" / "configmap-gateway-litellm-config.yaml").read_text())["data"]["config.yaml"]
    )
    assert cfg["general_settings"]["coordination_redis"]["host"] == "os.environ/REDIS_HOST"
    # One Secrets Manager secret per team that hands out keys (Open WebUI's key stays in the cluster).
    assert set(rec.outputs["teamKeySecrets"]) == {"search", "research"}


def test_redis_subnets_are_the_private_ones(plan_of):
    _intent, rec, _out = plan_of(TEAMS)
    subnets = by_name(rec, "aws:elasticache/subnetGroup:SubnetGroup")["gateway-cache-subnets"].inputs["subnetIds"]
    private = {
        f"subnet-{hashlib.sha1(r.name.encode()).hexdigest()[:17]}"
        for r in rec.resources
        if r.type == "aws:ec2/subnet:Subnet" and "kubernetes.io/role/internal-elb" in r.inputs.get("tags", {})
    }
    assert len(private) == 3 and set(subnets) == private


@pytest.fixture(scope="module")
def unmasked_plan():
    """The teams plan with secrets left unmasked, once for the tests below that read it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runtime, "_plain", _unmasked)
        # past tests/conftest.py's once-per-content cache, which holds the masked plan
        return plancli.run_program.__wrapped__("teams", TEAMS)


def test_hashes_in_the_secret_are_the_generated_keys_and_team_secrets_hold_the_keys(unmasked_plan):
    _intent, rec = unmasked_plan
    table = json.loads(by_name(rec, "kubernetes:core/v1:Secret")["gateway-keys"].inputs["stringData"]["keys.json"])
    want = {
        hashlib.sha256(mock_key("team-keys-search-ci").encode()).hexdigest(): (
            "search-ci",
            "search",
            ["qwen3-0.6b"],
            60,
        ),
        hashlib.sha256(mock_key("team-keys-search-prod").encode()).hexdigest(): (
            "search-prod",
            "search",
            ["qwen3-0.6b"],
            60,
        ),
        hashlib.sha256(mock_key("team-keys-research-notebooks").encode()).hexdigest(): (
            "research-notebooks",
            "research",
            ["qwen3-0.6b", "qwen2.5-7b"],
            None,
        ),
        hashlib.sha256(mock_key("team-keys-open-webui").encode()).hexdigest(): (
            "open-webui",
            "open-webui",
            ["qwen3-0.6b", "qwen2.5-7b"],
            600,
        ),
    }
    # The scraper's key is in the table only when observability is on (tests/stacks/test_tenancy.py).
    table.pop(hashlib.sha256(mock_key("team-keys-metrics").encode()).hexdigest(), None)
    assert {h: (e["key_alias"], e["team_id"], e["models"], e["rpm_limit"]) for h, e in table.items()} == want
    assert table[hashlib.sha256(mock_key("team-keys-search-ci").encode()).hexdigest()]["max_parallel_requests"] == 8
    value = by_name(rec, "aws:secretsmanager/secretVersion:SecretVersion")["team-search-keys-value"]
    assert json.loads(value.inputs["secretString"]) == {
        "search-ci": mock_key("team-keys-search-ci"),
        "search-prod": mock_key("team-keys-search-prod"),
    }
    # Open WebUI holds its own key, not the master key.
    webui = by_name(rec, "kubernetes:core/v1:Secret")["webui-secret"].inputs["stringData"]["api-key"]
    assert webui == mock_key("team-keys-open-webui")
    assert webui != by_name(rec, "kubernetes:core/v1:Secret")["gateway-secret"].inputs["stringData"]["master-key"]


SECRETS = [mock_key(f"team-keys-{k}") for k in ("search-ci", "search-prod", "research-notebooks", "open-webui")] + [
    "mock-" + hashlib.sha1(b"keys-redis-auth-token").hexdigest()[:17]
]


def leaks(out: Path, *texts: str) -> list[tuple[str, str]]:
    """(where, value) for every generated key or token found in the plan's files or the given texts."""
    files = {str(f): f.read_text() for f in [out / "resources.json", *(out / "manifests").glob("*.yaml")]}
    assert len(files) > 10
    found = {**files, **{f"text{i}": t for i, t in enumerate(texts)}}
    return [(where, v) for where, t in found.items() for v in SECRETS if v.removeprefix("sk-") in t]


def test_no_key_or_token_in_plain_text_in_the_plan_output(tmp_path, capsys):
    assert plancli.main(["teams", "--config", str(TEAMS), "--out", str(tmp_path)]) == 0
    r = capsys.readouterr()
    assert leaks(tmp_path, r.out, r.err) == []
    assert "[secret]" in (tmp_path / "manifests" / "secret-gateway-litellm-keys.yaml").read_text()


def test_the_leak_check_finds_keys_when_secrets_are_not_masked(tmp_path, unmasked_plan):
    """Negative control: the same plan written without secret masking shows every key: the team keys
    in their Secrets Manager values, Open WebUI's key (its pod needs it), the Redis token."""
    intent, rec = unmasked_plan
    plancli.write_outputs(tmp_path, intent, rec)
    assert {v for _, v in leaks(tmp_path)} == set(SECRETS)


def test_webui_secret_depends_on_its_own_key_not_the_master_key(plan_of):
    _intent, rec, _out = plan_of(TEAMS)
    urn = {r.name: r.urn for r in rec.resources}
    deps = set(by_name(rec, "kubernetes:core/v1:Secret")["webui-secret"].dependencies)
    assert urn["team-keys-open-webui"] in deps or urn["team-keys"] in deps
    assert urn["keys-litellm-master-key"] not in deps


def test_team_stack_with_limits_warns_and_builds_no_redis(plan_of, tmp_path):
    src = load_yaml((ROOT / "stacks" / "examples" / "Pulumi.team-search.yaml").read_text())
    src["config"]["llm-serving:gateway"] = {
        "teams": {"web": {"allowedModels": ["qwen2-5-7b"], "keys": ["web-1"], "rpmLimit": 10}}
    }
    f = tmp_path / "Pulumi.team-limits.yaml"
    f.write_text(dump_yaml(src))
    intent, rec, _out = plan_of(f)
    assert any("no shared Redis" in w for w in intent.warnings)
    assert not [t for t in types_of(rec) if t.startswith("aws:")]
    assert "team-keys-web-1" in by_name(rec, "random:index/randomPassword:RandomPassword")


def test_team_without_limits_builds_keys_but_no_redis(plan_of, tmp_path):
    f = tmp_path / "Pulumi.team-nolimits.yaml"
    f.write_text(
        dump_yaml(
            {
                "config": {
                    "aws:region": "us-east-1",
                    "llm-serving:models": {"m": {"preset": "qwen3-0.6b"}},
                    "llm-serving:gateway": {"teams": {"a": {"allowedModels": ["m"], "keys": ["a-1"]}}},
                }
            }
        )
    )
    _intent, rec, _out = plan_of(f)
    assert "llm-serving:access:TeamKeys" in types_of(rec)
    assert "llm-serving:access:GatewayCache" not in types_of(rec)
