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
import selectors
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.paced import start_paced
from tests.e2e.servers import (
    E2E,
    MASTER_KEY,
    TINY_MAX_LEN,
    VLLM_PY,
    build_tiny_model,
    gateway_for,
    http,
    vllm_server_for,
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


SLOW_MAX_LEN, LONG_TOKENS = 1024, 900  # make_slow_model.py's positions; conformance LONG max_tokens

# ---- On a dedicated vLLM + gateway pair with a slower random model (a generation lasts seconds),
# so that a request is still running in the engine when it is cancelled or its backend stops.


@pytest.fixture(scope="module")
def slow_pair(rendered, e2e_ready, tmp_path_factory):
    clients_ready()
    d = tmp_path_factory.mktemp("slow")
    model = build_tiny_model(d / "model")
    slow = [str(VLLM_PY), str(CLIENTS_DIR / "make_slow_model.py"), str(model)]
    subprocess.run(slow, check=True, timeout=600, capture_output=True)
    vllm = vllm_server_for(rendered, model, d / "vllm.log", eager=True)
    vllm.argv[vllm.argv.index("--max-model-len") + 1] = str(SLOW_MAX_LEN)  # long generations
    vllm.timeout = 900  # compiling takes minutes when the shared cores are busy
    vllm.start()
    try:
        gw = gateway_for(rendered, vllm.port, d)
        gw.start()
    except BaseException:
        vllm.stop()
        raise
    yield vllm, gw
    gw.stop()
    vllm.stop()


def warm_up(port: int) -> None:
    """A fresh gateway's first requests stall for seconds (measured here: 1-3 s silences inside the
    first streams of a new LiteLLM, none in the same streams straight from vLLM; its workers load code
    paths on first use): a few short chats and streams from both clients first, so that the timing
    tests measure the proxy they are about, not a cold start."""
    for _ in range(2):
        for client in CLIENTS:
            got = run_cases(client, ["chat", "stream_usage"], f"http://127.0.0.1:{port}/v1")
            assert all("result" in r for r in got.values()), got


# ---- On a paced upstream (tests/e2e/paced.py) behind the rendered gateway: answers that last seconds
# and cost no CPU, for the tests about what the gateway and the clients do with time and transport. On
# the slow pair, the engine decoding those answers took a core for minutes (the idle tests alone decoded
# 5,400 tokens). The paced tokens are as far apart as the slow pair's were in a busy e2e run (900 in 21 s).
PACED_TOKEN_S = 0.022
PACED_SLOTS = 8  # more than the tests run at once: an abandoned answer keeps its slot until its end


@pytest.fixture(scope="module")
def paced_gateway(rendered, e2e_ready, tmp_path_factory):
    """(paced upstream, gateway in front of it)."""
    clients_ready()
    upstream = start_paced(PACED_TOKEN_S, PACED_SLOTS, MODEL)
    gw = gateway_for(rendered, upstream.server_address[1], tmp_path_factory.mktemp("paced"))
    try:
        gw.start()
        warm_up(gw.port)
    except BaseException:
        gw.stop()
        upstream.shutdown()
        raise
    yield upstream, gw
    gw.stop()
    upstream.shutdown()


def vllm_metric(port: int, name: str, labels: str = "") -> float:
    status, text = http("GET", f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    pat = rf"^{re.escape(name)}\{{[^}}]*{re.escape(labels)}[^}}]*\}} (\S+)$"
    return sum(float(v) for v in re.findall(pat, text, re.M))


def wait_idle(port: int, timeout: float = 120) -> float:
    """Seconds until vLLM runs no request (polled)."""
    t = time.monotonic()
    while vllm_metric(port, "vllm:num_requests_running") != 0:
        assert time.monotonic() - t < timeout, "vLLM still running a request"
        time.sleep(0.2)
    return time.monotonic() - t


CANCEL_ATTEMPTS = 5


@pytest.mark.parametrize("client", CLIENTS)
def test_cancelled_stream_frees_the_slot(slow_pair, client):
    """The client drops a 900-token stream after two chunks: LiteLLM closes its upstream stream and
    vLLM aborts the request: its running count returns to 0 well before the 900th token (a request
    aborted by its client is not counted in request_success_total; the token counter shows it).
    With the Node client the whole generation sometimes runs on after the abort (measured: 1 run of 3
    here, once in CI; the Python client always stopped within 2-5 tokens; docs/known-limits.md): such
    a run is tried again, up to CANCEL_ATTEMPTS times, and the test passes only on a run that stopped."""
    vllm, gw = slow_pair
    runs = []
    for _ in range(CANCEL_ATTEMPTS):
        wait_idle(vllm.port)
        tokens = vllm_metric(vllm.port, "vllm:generation_tokens_total")
        got = run_cases(client, ["cancel"], f"http://127.0.0.1:{gw.port}/v1")["cancel"]
        assert got["result"] == {"chunks_read": 2}, got
        idle = wait_idle(vllm.port)
        generated = vllm_metric(vllm.port, "vllm:generation_tokens_total") - tokens
        runs.append(generated)
        print(f"{client}: idle {idle:.2f} s after the cancel; {generated:.0f} of {LONG_TOKENS} tokens generated")
        if generated < LONG_TOKENS / 2:
            break
    assert 0 < runs[-1] < LONG_TOKENS / 2, runs


class IdleProxy:
    """A TCP relay that resets a connection after `idle` seconds without a byte in either direction,
    as an NLB forgets a flow after its idle timeout (and answers the next packet with a reset); or,
    with `reset_after`, once that many bytes have gone down to the client (a connection lost part-way)."""

    def __init__(self, upstream_port: int, idle: float, reset_after: int | None = None):
        self.upstream, self.idle, self.cut = upstream_port, idle, 0
        self.reset_after = reset_after
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, down: socket.socket) -> None:
        up = socket.create_connection(("127.0.0.1", self.upstream))
        peer = {down: up, up: down}
        sel = selectors.DefaultSelector()
        for s in peer:
            sel.register(s, selectors.EVENT_READ)
        last, open_, sent_down = time.monotonic(), True, 0
        while open_:
            events = sel.select(0.05)
            if not events and time.monotonic() - last > self.idle:
                self.cut += 1
                break
            for key, _ in events:
                data = key.fileobj.recv(65536)
                if not data:
                    open_ = False
                    break
                peer[key.fileobj].sendall(data)
                last = time.monotonic()
                sent_down += len(data) if key.fileobj is up else 0
                if self.reset_after is not None and sent_down >= self.reset_after:
                    self.cut += 1
                    open_ = False
                    break
        for s in peer:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
            s.close()

    def close(self) -> None:
        self.server.close()


IDLE_ATTEMPTS = 5
LONG_PAIR = ("long_stream", "long_chat")
IDLE_SHARE = 0.6  # the proxy's idle limit, as a share of the unstreamed answer's silence (its whole time)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_stream_outlives_the_idle_timeout_a_silent_answer_does_not(paced_gateway, client):
    """Between client and gateway, an idle timeout shorter than the generation: the stream's tokens
    keep the flow alive; the same generation unstreamed is silent until complete and is cut. Hence
    a silent (non-streamed) answer needs the front door's TCP keepalive to outlive the NLB's 350 s idle
    timeout; streams need only their first token within it (components/frontdoor.py: so_keepalive).

    On a busy machine a stream can fall silent for longer than the limit (the Node client on these
    machines sometimes leaves a stream unread for seconds: a longest silence over 5 s in 6 of 17 runs of
    a 10 s stream, straight from vLLM as through LiteLLM; the Python client's under 0.2 s;
    docs/known-limits.md); then the proxy cuts the stream. Such an attempt is tried again, up to IDLE_ATTEMPTS times,
    and the test passes only on one where the stream completed through the limit and the silent answer
    was cut (a silent answer that completed faster than the limit is also tried again)."""
    _, gw = paced_gateway
    attempts: list[dict] = []
    for _ in range(IDLE_ATTEMPTS):
        direct = run_cases(client, ["long_chat"], f"http://127.0.0.1:{gw.port}/v1")["long_chat"]
        assert direct["result"]["completion_tokens"] == LONG_TOKENS, direct  # control: without the proxy it completes
        idle = IDLE_SHARE * direct["result"]["seconds"]
        proxy = IdleProxy(gw.port, idle)
        # Both through the proxy at once, a client process each: the engine shares its steps between
        # them, so the silent answer is silent longer than in the control run, and no less cut.
        procs = {case: start_cases(client, [case], f"http://127.0.0.1:{proxy.port}/v1") for case in LONG_PAIR}
        try:
            got = {case: collect(proc, [case])[case] for case, proc in procs.items()}
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
            proxy.close()
        attempts.append({"idle": idle, "cuts": proxy.cut, **got})
        # Tried again: a stream cut part-way, or a silent answer that (the machine less busy than in
        # its control run) completed within the limit. A silent answer that completed past it is not.
        fast = got["long_chat"].get("result", {}).get("seconds", idle) < idle
        if "result" in got["long_stream"] and not fast:
            break
    stream, cut, last = got["long_stream"], got["long_chat"], attempts[-1]
    assert "result" in stream, f"the stream was cut in every attempt: {attempts}"
    assert stream["result"]["completion_tokens"] == LONG_TOKENS, stream
    # It outlived the limit. (Its longest silence as the client saw it may even exceed the limit: a
    # client slow to read leaves the bytes on its side while the connection is never that long idle.)
    assert stream["result"]["seconds"] > idle, (idle, stream)
    assert (cut.get("error"), cut.get("status")) == ("APIConnectionError", None), cut
    # The cut answer, and (undici keeps an idle connection 4 s) maybe the stream's pooled connection.
    assert last["cuts"] >= 1
    print(
        f"{client}: stream {stream['result']['seconds']:.1f} s (longest silence {stream['result']['max_gap']:.2f} s) "
        f"through a {idle:.1f} s idle limit; cuts {last['cuts']}; attempt {len(attempts)} of {IDLE_ATTEMPTS}"
    )
    for a in attempts[:-1]:
        print(f"  attempt tried again: idle {a['idle']:.1f} s, {a['long_stream']}, {a['long_chat']}")


CUT_CLASS = {  # what each client raises when a stream's connection is reset part-way: not the SDK's own
    "python": ("ReadError", "RemoteProtocolError"),  # httpx.TransportError subclasses, not APIConnectionError
    "node": ("TypeError",),  # undici's TypeError('terminated'), not an OpenAIError
}
CUT_CAUSE = ("ECONNRESET", "UND_ERR_SOCKET")  # the Node error's cause.code: reset seen on read, or on close


@pytest.mark.parametrize("client", CLIENTS)
def test_a_stream_cut_part_way_is_an_error_not_a_short_answer(paced_gateway, client):
    """The connection is reset after the first few KB of a 900-token stream (as a pod or load
    balancer lost mid-answer): each client raises, after having delivered some chunks, instead of
    ending the stream as if the answer were complete. What it raises is what an application must catch."""
    _, gw = paced_gateway
    proxy = IdleProxy(gw.port, idle=600, reset_after=4096)
    try:
        got = run_cases(client, ["long_stream"], f"http://127.0.0.1:{proxy.port}/v1")["long_stream"]
    finally:
        proxy.close()
    assert "error" in got, got  # a truncated stream never passes for a finished one
    assert got["error"] in CUT_CLASS[client], got
    assert got["partial"]["chunks"] > 0, got
    if client == "node":
        assert got["cause"] in CUT_CAUSE, got
    print(f"{client}: reset after {got['partial']['chunks']} chunks -> {got['error']}: {got['message'][:100]!r}")


def test_backend_down_is_a_5xx_the_clients_retry_then_success_after_recovery(slow_pair):
    """vLLM stops: each client gets a 5xx and retries it (max_retries 2: three attempts, then
    InternalServerError). vLLM restarts while a client is retrying: the same call succeeds."""
    vllm, gw = slow_pair
    url = f"http://127.0.0.1:{gw.port}/v1"
    vllm.stop()
    for client in CLIENTS:
        got = run_cases(client, ["recover"], url, MAX_RETRIES="2")["recover"]
        assert got["error"] == "InternalServerError" and 500 <= got["status"] < 600, got
        assert got["attempts"] == 3, got
        print(f"{client} with vLLM down: {got['status']} {got['message'][:120]!r}")
    retrying = {c: start_cases(c, ["recover"], url, MAX_RETRIES="40") for c in CLIENTS}
    try:
        vllm.start()
    finally:
        results = {c: collect(p, ["recover"], timeout=900)["recover"] for c, p in retrying.items()}
    for client, got in results.items():
        assert got["result"]["completion_tokens"] == 8 and got["attempts"] > 1, got
        print(f"{client} recovered after {got['attempts']} attempts")


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


ROUTE_TOKENS = 200  # 4.4 s of paced stream: longer than the route's 1 s timeouts, in chunks 22 ms apart


def test_route_timeout_bounds_a_silent_answer_not_a_stream(paced_gateway, rendered, tmp_path):
    """LiteLLM's per-route `timeout` ends a non-streamed call that takes longer (the client gets a
    timeout error); `stream_timeout` bounds the wait for each chunk, so a stream longer than it
    completes. So requestTimeoutSeconds limits the silent time, the same thing the front door's read
    timeout and TCP keepalive must cover (components/frontdoor.py)."""
    upstream, _ = paced_gateway
    short = copy.deepcopy(rendered)
    for m in short.litellm_config["model_list"]:
        m["litellm_params"].update(timeout=1, stream_timeout=1)
    gw = gateway_for(short, upstream.server_address[1], tmp_path)
    gw.start()
    try:
        url = f"http://127.0.0.1:{gw.port}/v1"
        got = run_cases("python", ["long_stream", "long_chat"], url, LONG_TOKENS=str(ROUTE_TOKENS))
    finally:
        gw.stop()
    stream, chat = got["long_stream"], got["long_chat"]
    assert stream["result"]["completion_tokens"] == ROUTE_TOKENS and stream["result"]["seconds"] > 2, stream
    # 408 has no class of its own in the client (APIStatusError); the clients retry it by default.
    assert (chat["error"], chat["status"]) == ("APIStatusError", 408) and "litellm.Timeout" in chat["message"], chat
    # Two attempts of 1 s and the router's backoff between them: (1 + retries) x timeout + backoff.
    assert chat["took"] >= 2, chat
    print(f"stream {stream['result']['seconds']:.1f} s passed a 1 s stream_timeout; 408 after {chat['took']} s")
