"""Tenant boundaries on the plan: the scraper's key, what stack outputs carry, who may read a team's
secret. The e2e half (the real LiteLLM refusing the metrics key everything but /metrics) is
tests/e2e/test_metrics_key.py."""

from __future__ import annotations

import hashlib
import json

import pytest

from components.frontdoor import DoorLimits
from components.team_keys import METRICS_KEY_ALIAS, NO_MODEL, KeyGrant, render_key_table
from incluster.gateway_auth import custom_auth
from stacks import config
from stacks import plan as plancli
from stacks.plan import k8s_objects
from stacks.yamlio import dump_yaml, load_yaml
from tests.conftest import ROOT, STACK_FILES
from tests.support import relations as R

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


# ---- stack outputs carry no key; each team's secret is its team's ------------------------------

TEAMS = ROOT / "stacks" / "examples" / "Pulumi.teams.yaml"
SEARCH_ROLE = "arn:aws:iam::123456789012:role/search-devs"
RESEARCH_ROLE = "arn:aws:iam::123456789012:role/research-devs"
ADMIN_ROLE = "arn:aws:iam::123456789012:role/platform-admins"
DEPLOYER = "arn:aws:iam::123456789012:user/deployer"  # the mocks' caller (stacks/offline/runtime.py)


def generated_values(rec) -> set[str]:
    """Every generated key or password of a plan: the mocks' RandomPassword result is "mock-" and the
    first 17 hex digits of sha1(resource name) (stacks/offline/runtime.py)."""
    return {
        "mock-" + hashlib.sha1(r.name.encode()).hexdigest()[:17]
        for r in rec.resources
        if r.type == "random:index/randomPassword:RandomPassword"
    }


def key_material(outputs: dict, values: set[str]) -> list[str]:
    """The output names whose JSON contains any of the values (without a key prefix)."""
    return [k for k, v in outputs.items() if any(x.removeprefix("sk-") in json.dumps(v) for x in values)]


@pytest.fixture(scope="module")
def teams_with_access(tmp_path_factory):
    src = load_yaml(TEAMS.read_text())
    src["config"]["llm-serving:cluster"].update(
        adminRoleArns=[ADMIN_ROLE],
        teamAccess={"search": {"principalArns": [SEARCH_ROLE]}, "research": {"principalArns": [RESEARCH_ROLE]}},
    )
    f = tmp_path_factory.mktemp("teams-access") / "Pulumi.teams-access.yaml"
    f.write_text(dump_yaml(src))
    return plancli.run_program("teams-access", f)


def test_output_check_can_fail():
    """Negative control: an output holding a generated key (with or without its prefix) is found."""
    values = {"sk-abcdef0123456789"}
    assert key_material({"teamKeys": {"search": {"ci": "sk-abcdef0123456789"}}, "models": ["m"]}, values) == [
        "teamKeys"
    ]
    assert key_material({"x": "abcdef0123456789"}, values) == ["x"]
    assert key_material({"models": ["m"]}, values) == []


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_no_stack_output_carries_key_material(path, plan_of):
    _, rec, _ = plan_of(path)  # the recorded outputs are the values themselves, secrets unmasked
    values = generated_values(rec)
    assert values  # every stack generates keys: the check has something to look for
    assert key_material(rec.outputs, values) == []
    assert {"gatewayMasterKey", "teamKeys"}.isdisjoint(rec.outputs)


def policy_of(rec, secret: str) -> dict:
    r = next(r for r in rec.resources if r.type == "aws:secretsmanager/secretPolicy:SecretPolicy" and r.name == secret)
    return json.loads(r.inputs["policy"])


def readers(policy: dict) -> tuple[set[str], set[str]]:
    """(principals allowed to read, principals the deny spares)."""
    allow = {p for s in policy["Statement"] if s["Effect"] == "Allow" for p in s["Principal"]["AWS"]}
    deny = next(s for s in policy["Statement"] if s["Effect"] == "Deny")
    assert deny["Principal"] == "*" and deny["Action"] == ["secretsmanager:GetSecretValue"]
    # whoever may rewrite the policy may read: only the deployer may change it or the value
    (change,) = [s for s in policy["Statement"] if s["Effect"] == "Deny" and s is not deny]
    assert change["Principal"] == "*" and {
        "secretsmanager:PutResourcePolicy",
        "secretsmanager:DeleteResourcePolicy",
    } <= set(change["Action"])
    assert change["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == [DEPLOYER]
    return allow, set(deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])


def test_each_team_secret_is_readable_by_its_team_alone(teams_with_access):
    _, rec = teams_with_access
    assert readers(policy_of(rec, "team-search-keys-policy")) == ({SEARCH_ROLE}, {SEARCH_ROLE, DEPLOYER})
    assert readers(policy_of(rec, "team-research-keys-policy")) == ({RESEARCH_ROLE}, {RESEARCH_ROLE, DEPLOYER})
    assert readers(policy_of(rec, "gateway-admin-key-policy")) == ({ADMIN_ROLE}, {ADMIN_ROLE, DEPLOYER})
    out = rec.outputs
    assert set(out["teamKeySecrets"]) == {"search", "research"}
    assert all(set(v) == {"secretsManagerArn"} for v in out["teamKeySecrets"].values())


def test_team_secrets_use_the_platform_cmk_and_grants_name_the_secret(teams_with_access):
    _, rec = teams_with_access
    secrets = {r.name: r for r in rec.resources if r.type == "aws:secretsmanager/secret:Secret"}
    data_key = next(r for r in rec.resources if r.type == "aws:kms/key:Key" and r.name.endswith("-data"))
    assert set(secrets) >= {"team-search-keys-secret", "team-research-keys-secret", "gateway-admin-key-secret"}
    assert all(s.dependencies and data_key.urn in s.dependencies for s in secrets.values() if "keys" in s.name)
    grants = [r for r in rec.resources if r.type == "aws:kms/grant:Grant"]
    by_grantee = {g.inputs["granteePrincipal"]: g for g in grants}
    assert set(by_grantee) == {SEARCH_ROLE, RESEARCH_ROLE, ADMIN_ROLE}
    for g in grants:
        assert g.inputs["operations"] == ["Decrypt"]
        assert set(g.inputs["constraints"][0]["encryptionContextSubset"]) == {"SecretARN"}


def test_team_stack_keys_stay_in_its_own_namespace(plan_of, tmp_path):
    src = load_yaml((ROOT / "stacks" / "examples" / "Pulumi.team-search.yaml").read_text())
    src["config"]["llm-serving:gateway"] = {"teams": {"web": {"allowedModels": ["qwen2-5-7b"], "keys": ["web-1"]}}}
    f = tmp_path / "Pulumi.team-keys.yaml"
    f.write_text(dump_yaml(src))
    _, rec, _ = plan_of(f)
    assert not [r for r in rec.resources if r.type.startswith("aws:")]
    assert rec.outputs["teamKeySecrets"] == {
        "web": {"kubernetesSecret": "search-gateway/litellm-team-keys", "key": "web.json"}
    }
    assert rec.outputs["gatewayAdminKey"] == {"kubernetesSecret": "search-gateway/litellm", "key": "master-key"}
    secret = next(
        o for _, o in k8s_objects(rec) if o["kind"] == "Secret" and o["metadata"]["name"] == "litellm-team-keys"
    )
    assert secret["metadata"]["namespace"] == "search-gateway"


@pytest.mark.parametrize("ns", ["search-models", "search-gateway", "kube-system"])
def test_observability_namespace_is_no_team_or_system_namespace(ns):
    raw = {
        "models": {"tiny": {"preset": "qwen3-0.6b"}},
        "cluster": {"teamAccess": {"search": {"principalArns": [SEARCH_ROLE]}}},
        "observability": {"enabled": True, "namespace": ns},
    }
    with pytest.raises(config.ConfigError) as e:
        config.resolve(raw, stack="t")
    assert any(p.startswith("llm-serving:observability.namespace: ") for p in e.value.problems), e.value.problems
    raw["observability"]["namespace"] = "monitoring"  # control: the default is accepted
    config.resolve(raw, stack="t")


# ---- the front door's limits are config ------------------------------------------------------


def test_front_door_defaults_are_the_components():
    """One sizing: the schema's defaults are the component's DoorLimits defaults (4 MiB, 50/s, 100, 128)."""
    d = config.StackConfig.model_validate({}).gateway.frontDoor
    assert (d.maxBodyMiB, d.ratePerSecond, d.burst, d.maxConnections) == (4, 50, 100, 128)
    lim = DoorLimits()
    assert (lim.max_body_mib, lim.requests_per_second, lim.burst, lim.connections) == (4, 50, 100, 128)


def test_front_door_limits_reach_nginx(tmp_path, plan_of):
    src = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())
    src["config"]["llm-serving:gateway"] = {
        **(src["config"].get("llm-serving:gateway") or {}),
        "frontDoor": {"maxBodyMiB": 2, "ratePerSecond": 7, "burst": 9, "maxConnections": 11},
    }
    f = tmp_path / "Pulumi.door.yaml"
    f.write_text(dump_yaml(src))
    _, rec, _ = plan_of(f)
    conf = next(
        o["data"]["nginx.conf"]
        for _, o in k8s_objects(rec)
        if o["kind"] == "ConfigMap" and "nginx.conf" in (o.get("data") or {})
    )
    for line in ("client_max_body_size 2m;", "rate=7r/s;", "burst=9 nodelay;", "limit_conn client_conns 11;"):
        assert line in conf, line


@pytest.mark.parametrize(
    "door,where",
    [
        ({"maxBodyMiB": 17}, "maxBodyMiB"),
        ({"maxBodyMiB": 0}, "maxBodyMiB"),
        ({"ratePerSecond": True}, "ratePerSecond"),
        ({"burst": -1}, "burst"),
        ({"maxConnections": 4096}, "maxConnections"),
        ({"maxConnection": 5}, "maxConnection"),
    ],
)
def test_front_door_limits_are_bounded(door, where):
    raw = {"models": {"tiny": {"preset": "qwen3-0.6b"}}, "gateway": {"frontDoor": door}}
    with pytest.raises(config.ConfigError) as e:
        config.resolve(raw, stack="t")
    assert any(p.startswith(f"llm-serving:gateway.frontDoor.{where}: ") for p in e.value.problems), e.value.problems


# ---- Open WebUI: no ingress but port-forward, sign-up closed after the admin --------------------

SEED000 = ROOT / "stacks" / "examples" / "Pulumi.seed000-inf2-llama-qwen-webui.yaml"


def webui_env(rec) -> dict:
    dep = next(o for _, o in k8s_objects(rec) if o["kind"] == "Deployment" and o["metadata"]["name"] == "open-webui")
    return {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_webui_signup_closed_unless_allowed(plan_of, tmp_path):
    _, rec, _ = plan_of(SEED000)
    env = webui_env(rec)
    assert env["ENABLE_SIGNUP"] == "false" and env["DEFAULT_USER_ROLE"] == "pending"
    assert env["WEBUI_AUTH"] == "true" and env["ENABLE_PERSISTENT_CONFIG"] == "false"
    src = load_yaml(SEED000.read_text())
    src["config"]["llm-serving:ui"] = {**src["config"]["llm-serving:ui"], "allowSignup": True}
    f = tmp_path / "Pulumi.webui-signup.yaml"
    f.write_text(dump_yaml(src))
    _, rec, _ = plan_of(f)
    assert webui_env(rec)["ENABLE_SIGNUP"] == "true"  # the switch reaches the pod (the check can fail)


def test_webui_admits_no_ingress(plan_of):
    """Users port-forward to the UI (kubelet path, outside NetworkPolicy); no pod or VPC host reaches it."""
    _, _, out = plan_of(SEED000)
    r = R.load(out)
    ev = R.PolicyEvaluator.of(r)
    ui_labels = next(
        o["spec"]["template"]["metadata"]["labels"]
        for o in r.kind("Deployment")
        if o["metadata"]["name"] == "open-webui"
    )
    ui = R.Endpoint("ui", "gateway", ui_labels, "10.0.5.1", ((8080, "http", "TCP"),))
    vpc_host = R.Endpoint("vpc", None, {}, "10.0.200.1", ())
    pod = R.Endpoint("pod", "kube-system", {"app": "x"}, "10.0.6.1", ())
    assert not ev.admitted(vpc_host, ui, 8080) and not ev.admitted(pod, ui, 8080)
    assert R.PolicyEvaluator([], {}).admitted(vpc_host, ui, 8080)  # control: without policies it would be
