"""Teams and keys as code: the custom-auth hook's lookup, the rendered gateway config, validation,
and what the program builds (only when asked, no plaintext keys)."""

from __future__ import annotations

import json

from components.gateway_auth import custom_auth
from components.litellm import render_gateway_pod, render_litellm_config
from components.types import Route
from stacks import catalog

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
    env = {e["name"]: e for e in c["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "litellm", "key": "redis-password"}
    assert env["REDIS_PORT"]["value"] == "6379"
