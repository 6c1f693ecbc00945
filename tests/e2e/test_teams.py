"""Keys as code against the real LiteLLM 1.106.12, the real vLLM (CPU, tiny model) and a real Redis.

The gateway config, the custom-auth module and the key table's shape come from the program's plan of
tests/configs/gateway-teams.ok.yaml. Substitutions beyond tests/e2e/servers.py: the Pulumi-generated
keys are fixed test keys (the table is still rendered by components.team_keys.render_key_table from the
program's own grants); ElastiCache is a local redis-server with a password and without TLS
(coordination_redis `ssl: false`); REDIS_HOST/REDIS_PORT/REDIS_PASSWORD point at it."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from components.team_keys import render_key_table
from stacks.compose.serving import key_grants
from stacks.config import load_file
from stacks.yamlio import dump_yaml, load_yaml
from tests.e2e.servers import MASTER_KEY, Server, free_port, gateway_for, http, render_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

STACK = Path(__file__).resolve().parents[1] / "configs" / "gateway-teams.ok.yaml"
REDIS_SERVER = Path("/usr/bin/redis-server")
REDIS_CLI = Path("/usr/bin/redis-cli")
TINY = "qwen3-0.6b"  # served name of `tiny` in the stack file and of the session's vLLM
OTHER = "phi-2"  # served name of `other`: not allowed for team search
RPM = 3  # gateway.teams.search.rpmLimit in the stack file


def key_of(name: str) -> str:
    return f"sk-e2e-{name}-0123456789abcdef"


class Redis(Server):
    def start(self) -> Redis:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                self.argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        for _ in range(100):
            if self.cli("PING").strip() == "PONG":
                return self
            if self.proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        raise RuntimeError(f"redis-server did not start:\n{self.log.read_text()[-2000:]}")

    def cli(self, *cmd: str) -> str:
        r = subprocess.run(
            [str(REDIS_CLI), "-p", str(self.port), "--no-auth-warning", "-a", self.password, *cmd],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return r.stdout


@pytest.fixture(scope="module")
def redis(tmp_path_factory, e2e_ready):
    if not REDIS_SERVER.exists():
        pytest.skip("redis-server missing: scripts/setup-e2e.sh installs it (as root)")
    d = tmp_path_factory.mktemp("redis")
    port, password = free_port(), secrets.token_hex(20)
    argv = [str(REDIS_SERVER), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    s = Redis([*argv, "--requirepass", password, "--dir", str(d)], {}, d / "redis.log", "", 30)
    s.port, s.password = port, password
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def teams_rendered(tmp_path_factory):
    return render_stack(tmp_path_factory.mktemp("plan-teams"), STACK)


@pytest.fixture(scope="module")
def key_table() -> str:
    grants = key_grants(load_file(STACK))
    return render_key_table([key_of(g.name) for g in grants], grants)


def teams_gateway(rendered, vllm_port: int, workdir: Path, redis: Redis, table: str) -> Server:
    s = gateway_for(rendered, vllm_port, workdir, rendered_workers=True)  # the limits hold across workers
    (workdir / "keys.json").write_text(table)
    cfg = load_yaml((workdir / "config.yaml").read_text())
    cfg["general_settings"]["coordination_redis"]["ssl"] = False  # local redis-server, no TLS
    (workdir / "config.yaml").write_text(dump_yaml(cfg))
    s.env.update(REDIS_HOST="127.0.0.1", REDIS_PORT=str(redis.port), REDIS_PASSWORD=redis.password)
    return s


@pytest.fixture(scope="module")
def gateways(teams_rendered, vllm_server, redis, key_table, tmp_path_factory):
    started = []
    try:
        for i in range(2):
            s = teams_gateway(teams_rendered, vllm_server.port, tmp_path_factory.mktemp(f"gw{i}"), redis, key_table)
            started.append(s.start())
        yield [f"http://127.0.0.1:{s.port}" for s in started]
    finally:
        for s in started:
            s.stop()


def chat(base: str, key: str | None, model: str = TINY):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    status, text = http("POST", f"{base}/v1/chat/completions", body, key=key, timeout=120)
    return status, text


def error_of(text: str) -> dict:
    return json.loads(text)["error"]


def test_the_rendered_config_is_what_the_gateways_run(teams_rendered):
    g = teams_rendered.litellm_config["general_settings"]
    assert g["custom_auth"] == "custom_auth.user_api_key_auth" and g["custom_auth_run_common_checks"] is True
    assert g["coordination_redis"]["ssl"] is True  # ElastiCache: TLS (the local Redis substitutes it)
    assert "custom_auth.py" in (teams_rendered.litellm_files or {})


def test_team_key_calls_its_model_and_is_refused_another(gateways):
    base = gateways[0]
    status, text = chat(base, key_of("search-web"))
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"] is not None
    status, text = chat(base, key_of("search-web"), OTHER)
    assert status == 403, text
    err = error_of(text)
    assert err["type"] == "key_model_access_denied" and f"'{OTHER}' is not available for this API key" in err["message"]
    # The other team may call both (phi-2 is not served here: it passes the gateway's check and fails upstream).
    assert chat(base, key_of("research-nb"))[0] == 200
    assert chat(base, key_of("research-nb"), OTHER)[0] not in (401, 403)


def test_models_list_shows_only_the_keys_models(gateways):
    for name, want in (("search-web", [TINY]), ("research-nb", [TINY, OTHER])):
        status, text = http("GET", f"{gateways[1]}/v1/models", key=key_of(name))
        assert status == 200, text
        assert sorted(m["id"] for m in json.loads(text)["data"]) == sorted(want)


def test_wrong_and_missing_keys_get_401_on_every_gateway(gateways):
    for base in gateways:
        for key in ("sk-wrong", None, MASTER_KEY[:-1], ""):
            status, text = chat(base, key)
            assert status == 401, (key, text)
            assert "invalid or missing API key" in error_of(text)["message"]
        assert http("GET", f"{base}/v1/models", key="sk-wrong")[0] == 401


def test_master_key_stays_admin_and_team_keys_reach_no_admin_route(gateways):
    base = gateways[0]
    assert http("GET", f"{base}/v1/models", key=MASTER_KEY)[0] == 200
    status, text = http("POST", f"{base}/key/generate", {}, key=key_of("research-nb"))
    assert status == 401 and "Only proxy admin" in text, text


def test_two_gateways_enforce_one_rpm_limit_through_redis(gateways, redis):
    a, b = gateways
    key = key_of("search-ci")
    got = [chat(base, key)[0] for base in (a, b, a)]
    assert got == [200] * RPM, got
    for base in (b, a):
        status, text = chat(base, key)
        assert status == 429, text
        err = error_of(text)
        assert "Rate limit exceeded" in err["message"] and f"Current limit: {RPM}" in err["message"], err
    # The counters live in the shared Redis (a per-process counter would have let b serve 3 of its own).
    assert int(redis.cli("DBSIZE").strip()) > 0


def test_master_key_is_in_no_rendered_pod_but_the_gateway(teams_rendered):
    holders = []
    for m in teams_rendered.manifests:
        spec = (m.get("spec") or {}).get("template", {}).get("spec") or (m.get("spec") or {}).get("jobTemplate")
        if not spec:
            continue
        for c in [*spec.get("containers", []), *spec.get("initContainers", [])]:
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
                if ref.get("name") == "litellm" and ref.get("key") == "master-key":
                    holders.append(m["metadata"]["name"])
    assert holders == ["litellm"]
    webui = next(
        m for m in teams_rendered.manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "open-webui"
    )
    env = {e["name"]: e for e in webui["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "open-webui", "key": "api-key"}
