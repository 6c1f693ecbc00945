"""Client conformance: the official OpenAI clients (Python `openai` 2.x from the LiteLLM venv's lock,
Node `openai` pinned in tests/e2e/clients/package.json) against the real LiteLLM → real vLLM.

Each client runs its script (tests/e2e/clients/conformance.{py,mjs}) once per case list and prints
what it got; every assertion here is about what the client saw: its result, or its error class and
HTTP status, the way an application branches on them. Same cases, same expectations, both clients.
"""

from __future__ import annotations

import copy
import http.client as http_client
import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.servers import (
    E2E,
    MASTER_KEY,
    TINY_MAX_LEN,
    gateway_for,
)

# The keys-as-code gateway's fixtures and helpers, as the teams tier runs it.
from tests.e2e.test_teams import RPM, key_of, key_table, redis, teams_gateway, teams_rendered  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
CLIENTS_DIR = Path(__file__).with_name("clients")
PYTHON = E2E / "litellm" / "bin" / "python"  # its lock pins openai (2.x), as an application's would
NODE = "node"
NODE_OPENAI = CLIENTS_DIR / "node_modules" / "openai" / "package.json"
MODEL = "qwen3-0.6b"  # the dev stack's served name (stacks/examples seed004, the session fixtures)
CLIENTS = ("python", "node")
LONG_TOKENS = 900  # the conformance scripts' long answer (LONG), unless LONG_TOKENS is set
CASES = [
    *("models", "chat", "stream_usage", "completions", "max_tokens", "stop", "n", "seed"),
    *("json_object", "json_schema", "concurrent"),
    *("missing_key", "wrong_key", "unknown_model", "context_too_long"),
]


def clients_ready() -> None:
    if not NODE_OPENAI.exists():
        msg = f"{NODE_OPENAI} missing: run scripts/setup-e2e.sh (npm ci in tests/e2e/clients)"
        if os.environ.get("E2E_REQUIRED"):
            pytest.fail(msg)
        pytest.skip(msg)


def start_cases(client: str, cases: list[str], base_url: str, key: str = MASTER_KEY, **env) -> subprocess.Popen:
    argv = [str(PYTHON), "conformance.py"] if client == "python" else [NODE, "conformance.mjs"]
    full_env = {**os.environ, "BASE_URL": base_url, "API_KEY": key, "MODEL": MODEL, **env}
    return subprocess.Popen(
        [*argv, *cases], cwd=CLIENTS_DIR, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def collect(proc: subprocess.Popen, cases: list[str], timeout: float = 600) -> dict[str, dict]:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    out = {d["case"]: d for d in map(json.loads, stdout.splitlines())}
    assert sorted(out) == sorted(cases), stdout[-2000:]
    return out


def run_cases(client: str, cases: list[str], base_url: str, key: str = MASTER_KEY, **env) -> dict[str, dict]:
    """Run `cases` in one client process; {case: what the client reported}."""
    return collect(start_cases(client, cases, base_url, key, **env), cases)


@pytest.fixture(scope="module")
def results(gateway, rendered):
    clients_ready()
    url = f"http://127.0.0.1:{gateway.port}/v1"
    return {c: run_cases(c, CASES, url) for c in CLIENTS}


def ok(results, client: str, case: str) -> dict:
    got = results[client][case]
    assert "error" not in got, got
    return got["result"]


def failed(results, client: str, case: str) -> dict:
    got = results[client][case]
    assert "error" in got, got
    return got


@pytest.mark.parametrize("client", CLIENTS)
def test_client_is_the_pinned_release(results, client):
    want = {"python": r"2\.\d+\.\d+", "node": r"6\.49\.0"}[client]
    assert re.fullmatch(want, results[client]["models"]["version"])


@pytest.mark.parametrize("client", CLIENTS)
def test_models_lists_the_served_names(results, client):
    assert ok(results, client, "models")["ids"] == [MODEL]


@pytest.mark.parametrize("client", CLIENTS)
def test_chat(results, client):
    r = ok(results, client, "chat")
    assert (r["object"], r["role"], r["finish_reason"], r["completion_tokens"]) == (
        "chat.completion",
        "assistant",
        "length",
        8,
    )
    # Qwen3 thinks by default: vLLM's reasoning parser puts unfinished thinking in reasoning_content.
    assert r["content"] or r["reasoning_content"], r


@pytest.mark.parametrize("client", CLIENTS)
def test_streaming_sends_a_usage_chunk(results, client):
    r = ok(results, client, "stream_usage")
    assert r["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 8 and r["usage"]["prompt_tokens"] > 0
    # The usage chunk comes last, with `choices: []` as OpenAI's reference has it (vLLM's shape; the
    # gateway's usage callback restores it, LiteLLM 1.106.12 alone re-emits one empty-delta choice).
    assert r["usage"]["at_chunk"] == r["chunks"]
    assert r["usage"]["choices"] == 0
    assert r["chunks"] >= 3


@pytest.mark.parametrize("client", CLIENTS)
def test_legacy_completions(results, client):
    r = ok(results, client, "completions")
    assert r["object"] == "text_completion" and r["completion_tokens"] == 6 and r["text"]


@pytest.mark.parametrize("client", CLIENTS)
def test_max_tokens(results, client):
    assert ok(results, client, "max_tokens") == {"finish_reason": "length", "completion_tokens": 5}


@pytest.mark.parametrize("client", CLIENTS)
def test_stop_ends_the_answer_before_the_stop_string(results, client):
    r = ok(results, client, "stop")
    assert r["stop"] in r["full"]
    assert r["content"] == r["full"][: r["full"].index(r["stop"])]
    assert r["finish_reason"] == "stop"


@pytest.mark.parametrize("client", CLIENTS)
def test_n_returns_n_choices(results, client):
    assert ok(results, client, "n")["indexes"] == [0, 1, 2]


@pytest.mark.parametrize("client", CLIENTS)
def test_seed_makes_sampling_reproducible(results, client):
    r = ok(results, client, "seed")  # temperature 1.0: without the seed two answers differ
    assert r["same"] and r["other"], r


@pytest.mark.parametrize("client", CLIENTS)
def test_json_schema_output_parses_and_validates(results, client):
    """vLLM's structured outputs (xgrammar on the CPU build) constrain even a random-weight model."""
    r = ok(results, client, "json_schema")
    assert r["finish_reason"] == "stop"
    assert json.loads(r["content"]) in ({"answer": "yes"}, {"answer": "no"})


@pytest.mark.parametrize("client", CLIENTS)
def test_json_object_mode_is_constrained(results, client):
    """json_object leaves keys and strings free: a random model fills max_tokens inside a string, so
    the answer is a JSON text or (finish_reason length) a prefix of one; it starts with '{' where the
    same prompt unconstrained starts with whatever the random weights say (the stop case's text)."""
    r = ok(results, client, "json_object")
    text = r["content"].lstrip()
    assert text.startswith("{"), r
    if r["finish_reason"] == "stop":
        assert isinstance(json.loads(text), dict)
    else:
        assert r["finish_reason"] == "length"
    assert not ok(results, client, "stop")["full"].lstrip().startswith("{")  # control


@pytest.mark.parametrize("client", CLIENTS)
def test_concurrent_streams_all_finish_with_usage(results, client):
    assert ok(results, client, "concurrent") == {"streams": 4, "with_usage": 4, "finished": 4}


@pytest.mark.parametrize("client", CLIENTS)
def test_missing_key_is_authentication_error(results, client):
    got = failed(results, client, "missing_key")
    assert (got["error"], got["status"]) == ("AuthenticationError", 401), got


@pytest.mark.parametrize("client", CLIENTS)
def test_wrong_key_is_authentication_error(results, client):
    """The gateway's custom-auth hook answers a key it does not know with 401 (LiteLLM 1.106.12 alone,
    without a database, says `400 No connected db.`: a BadRequestError to the clients)."""
    got = failed(results, client, "wrong_key")
    assert (got["error"], got["status"]) == ("AuthenticationError", 401), got


@pytest.mark.parametrize("client", CLIENTS)
def test_unknown_model_is_bad_request_in_openai_shape(results, client):
    """LiteLLM refuses a model name its router does not have before any upstream call, with 400
    (route_llm_request.ProxyModelNotFoundError), not OpenAI's 404 model_not_found."""
    got = failed(results, client, "unknown_model")
    assert (got["error"], got["status"]) == ("BadRequestError", 400), got
    assert got["body"]["type"] == "invalid_request_error"
    assert "Invalid model name passed in model=no-such-model" in got["body"]["message"]


@pytest.mark.parametrize("client", CLIENTS)
def test_context_too_long_is_bad_request_naming_the_limit(results, client):
    got = failed(results, client, "context_too_long")
    assert (got["error"], got["status"]) == ("BadRequestError", 400), got
    assert f"maximum context length is {TINY_MAX_LEN} tokens" in got["body"]["message"]


# ---- The keys-as-code shape (tests/configs/gateway-teams.ok.yaml, as tests/e2e/test_teams.py runs it:
# rendered config and custom-auth module, fixed test keys, a local Redis for the limit counters).


@pytest.fixture(scope="module")
def team_gateway(teams_rendered, vllm_server, redis, key_table, tmp_path_factory):  # noqa: F811 (imported fixtures)
    clients_ready()
    s = teams_gateway(teams_rendered, vllm_server.port, tmp_path_factory.mktemp("team-gw"), redis, key_table)
    s.start()
    yield f"http://127.0.0.1:{s.port}/v1"
    s.stop()


@pytest.mark.parametrize("client", CLIENTS)
def test_team_key_sees_its_models_and_bad_keys_are_authentication_errors(team_gateway, client):
    got = run_cases(client, ["models", "wrong_key", "missing_key"], team_gateway, key=key_of("search-web"))
    assert got["models"]["result"]["ids"] == [MODEL]  # team search may call qwen3-0.6b only, not phi-2
    for case in ("wrong_key", "missing_key"):
        assert (got[case]["error"], got[case]["status"]) == ("AuthenticationError", 401), got[case]


def test_past_the_keys_rpm_limit_both_clients_get_rate_limit_error(team_gateway):
    """One key (limit RPM per minute) used by both clients in turn: together they pass RPM chats,
    then each gets RateLimitError (429), as the clients' own backoff logic expects."""
    got = {c: run_cases(c, ["rate"], team_gateway, key=key_of("search-ci"))["rate"]["result"] for c in CLIENTS}
    for r in got.values():
        assert (r.get("error"), r.get("status")) == ("RateLimitError", 429), got
        assert "Rate limit exceeded" in r["message"], r
    assert sum(r["ok"] for r in got.values()) == RPM, got


def idle_connection_lifetime(port: int, watch_s: float) -> float | None:
    """Seconds until the server closes an idle keep-alive connection, None if open after watch_s."""
    conn = http_client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/health/liveliness")
    assert conn.getresponse().read() and conn.sock is not None
    t = time.monotonic()
    try:
        while time.monotonic() - t < watch_s:
            if select.select([conn.sock], [], [], 0.5)[0]:
                return time.monotonic() - t
        conn.request("GET", "/health/liveliness")  # the same connection still serves
        assert conn.getresponse().status == 200
        return None
    finally:
        conn.close()


def test_gateway_keeps_an_idle_client_connection_longer_than_the_clients_do(gateway, rendered, tmp_path):
    """uvicorn closes an idle keep-alive connection after 5 s by default, the time the clients' pools
    keep one (httpx 5 s, undici 4 s): each may reuse a connection the other is closing. The rendered
    `--keepalive_timeout` holds it open past that (and past nginx's upstream pool, 60 s)."""
    assert idle_connection_lifetime(gateway.port, 7) is None
    # Control: the same gateway with uvicorn's default closes it at 5 s.
    control = copy.deepcopy(rendered)
    args = control.litellm_container["args"]
    args[args.index("--keepalive_timeout") + 1] = "5"
    s = gateway_for(control, 1, tmp_path)
    s.start()
    try:
        closed = idle_connection_lifetime(s.port, 7)
    finally:
        s.stop()
    assert closed is not None and 4.5 < closed < 6.5, closed
