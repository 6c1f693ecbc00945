"""Client conformance: the official OpenAI clients (Python `openai` 2.x from the LiteLLM venv's lock,
Node `openai` pinned in tests/e2e/clients/package.json) against the real LiteLLM → real vLLM.

Each client runs its script (tests/e2e/clients/conformance.{py,mjs}) once per case list and prints
what it got; every assertion here is about what the client saw: its result, or its error class and
HTTP status, the way an application branches on them. Same cases, same expectations, both clients.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.servers import E2E, MASTER_KEY, TINY_MAX_LEN, http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
CLIENTS_DIR = Path(__file__).with_name("clients")
PYTHON = E2E / "litellm" / "bin" / "python"  # its lock pins openai (2.x), as an application's would
NODE = "node"
NODE_OPENAI = CLIENTS_DIR / "node_modules" / "openai" / "package.json"
MODEL = "qwen3-0.6b"  # the dev stack's served name (stacks/examples seed004, the session fixtures)
CLIENTS = ("python", "node")
CASES = (
    "models chat stream_usage completions max_tokens stop n seed json_object json_schema concurrent "
    "missing_key wrong_key unknown_model context_too_long"
).split()
# Until the custom-auth hook (branch wt/teams, issue 14) is in the rendered config, LiteLLM 1.106.2
# without a database answers any key that is not the master key with `400 No connected db.`.
NO_KEY_AUTH = "LiteLLM without a database and without the custom-auth hook of branch wt/teams: 400 No connected db."


def clients_ready() -> None:
    if not NODE_OPENAI.exists():
        msg = f"{NODE_OPENAI} missing: run scripts/setup-e2e.sh (npm ci in tests/e2e/clients)"
        if os.environ.get("E2E_REQUIRED"):
            pytest.fail(msg)
        pytest.skip(msg)


def run_cases(client: str, cases: list[str], base_url: str, key: str = MASTER_KEY, timeout: float = 600, **env):
    """Run `cases` in one client process; {case: what the client reported}."""
    argv = [str(PYTHON), "conformance.py"] if client == "python" else [NODE, "conformance.mjs"]
    full_env = {**os.environ, "BASE_URL": base_url, "API_KEY": key, "MODEL": MODEL, **env}
    r = subprocess.run(
        [*argv, *cases], cwd=CLIENTS_DIR, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = {d["case"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert sorted(out) == sorted(cases), r.stdout[-2000:]
    return out


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
    assert (r["content"] or r["reasoning_content"]), r


@pytest.mark.parametrize("client", CLIENTS)
def test_streaming_sends_a_usage_chunk(results, client):
    r = ok(results, client, "stream_usage")
    assert r["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 8 and r["usage"]["prompt_tokens"] > 0
    # The usage chunk comes last. vLLM sends it with `choices: []` (OpenAI's shape); LiteLLM 1.106.2
    # re-emits it with one empty-delta choice, so `if not chunk.choices` does not find the usage.
    assert r["usage"]["at_chunk"] == r["chunks"]
    assert r["usage"]["choices"] == 1
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
def test_wrong_key_is_authentication_error(results, rendered, client):
    got = failed(results, client, "wrong_key")
    if "custom_auth" not in rendered.litellm_config["general_settings"]:
        assert (got["error"], got["status"], got["body"]["type"]) == ("BadRequestError", 400, "no_db_connection")
        pytest.xfail(NO_KEY_AUTH)
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


def running(vllm_port: int) -> float:
    status, text = http("GET", f"http://127.0.0.1:{vllm_port}/metrics")
    assert status == 200
    return sum(float(v) for v in re.findall(r"^vllm:num_requests_running\{[^}]*\} (\S+)$", text, re.M))


@pytest.mark.parametrize("client", CLIENTS)
def test_cancelled_stream_frees_the_slot(gateway, vllm_server, client):
    clients_ready()
    got = run_cases(client, ["cancel"], f"http://127.0.0.1:{gateway.port}/v1")["cancel"]
    assert got["result"] == {"chunks_read": 2}, got
    end = time.time() + 60
    while running(vllm_server.port) != 0 and time.time() < end:
        time.sleep(0.5)
    assert running(vllm_server.port) == 0


def snippet_env(gateway) -> dict:
    return {**os.environ, "LLM_BASE_URL": f"http://127.0.0.1:{gateway.port}/v1", "LLM_API_KEY": MASTER_KEY}


@pytest.mark.parametrize("argv", [[str(PYTHON), "connect.py"], [NODE, "connect.mjs"]], ids=["python", "node"])
def test_readme_snippet_runs(gateway, argv):
    """The README's "Connect an application" quotes tests/e2e/clients/connect.{py,mjs} verbatim."""
    clients_ready()
    r = subprocess.run(argv, cwd=CLIENTS_DIR, env=snippet_env(gateway), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"\[\d+ tokens\]$", r.stdout.strip()), r.stdout[-500:]
