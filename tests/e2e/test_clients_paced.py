"""The official clients (tests/e2e/test_clients.py has the setup) through the rendered gateway in front of
a paced upstream (tests/e2e/paced.py): answers that last seconds and cost no CPU, for what the gateway and
the clients do with time and transport (idle and route timeouts, a connection cut part-way)."""

from __future__ import annotations

import copy
import selectors
import socket
import struct
import threading
import time

import pytest

from tests.e2e.paced import start_paced
from tests.e2e.servers import gateway_for
from tests.e2e.test_clients import CLIENTS, LONG_TOKENS, MODEL, clients_ready, collect, run_cases, start_cases

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
# On test_clients_slow.py's engine these answers took a core for minutes (the idle tests alone decoded
# 5,400 tokens). The paced tokens are as far apart as that engine's were in a busy e2e run (900 in 21 s).
PACED_TOKEN_S = 0.022
PACED_SLOTS = 8  # more than the tests run at once: an abandoned answer keeps its slot until its end


SHORT = f"{MODEL}-1s"  # a route beside the rendered ones, with 1 s timeouts (the route-timeout test)


def with_short_route(rendered):
    """The rendered gateway config plus SHORT: the same upstream model with `timeout` and `stream_timeout`
    of 1 s, so the route-timeout test needs no gateway of its own."""
    paced = copy.deepcopy(rendered)
    route = copy.deepcopy(next(m for m in rendered.litellm_config["model_list"] if m["model_name"] == MODEL))
    route["model_name"] = SHORT
    route["litellm_params"].update(timeout=1, stream_timeout=1)
    paced.litellm_config["model_list"].append(route)
    return paced


@pytest.fixture(scope="module")
def paced_gateway(rendered, e2e_ready, tmp_path_factory):
    """(paced upstream, gateway in front of it: the rendered config and SHORT)."""
    clients_ready()
    upstream = start_paced(PACED_TOKEN_S, PACED_SLOTS, MODEL)
    gw = gateway_for(with_short_route(rendered), upstream.server_address[1], tmp_path_factory.mktemp("paced"))
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


def warm_up(port: int) -> None:
    """A fresh gateway's first requests stall for seconds (measured here: 1-3 s silences inside the
    first streams of a new LiteLLM, none in the same streams straight from vLLM; its workers load code
    paths on first use): a few short chats and streams from both clients first, so that the timing
    tests measure the proxy they are about, not a cold start."""
    for _ in range(2):
        for client in CLIENTS:
            got = run_cases(client, ["chat", "stream_usage"], f"http://127.0.0.1:{port}/v1")
            assert all("result" in r for r in got.values()), got


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
                try:
                    data = key.fileobj.recv(65536)
                    peer[key.fileobj].sendall(data)
                except OSError:  # a side reset its end (e.g. a client process killed after an attempt)
                    data = b""
                if not data:
                    open_ = False
                    break
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
    # The unstreamed answer is silent until complete: LONG_TOKENS paced tokens (tests/e2e/paced.py).
    idle = IDLE_SHARE * LONG_TOKENS * PACED_TOKEN_S
    attempts: list[dict] = []
    for _ in range(IDLE_ATTEMPTS):
        proxy = IdleProxy(gw.port, idle)
        # Both through the proxy, and the control straight to the gateway, at once: a client process each.
        procs = {case: start_cases(client, [case], f"http://127.0.0.1:{proxy.port}/v1") for case in LONG_PAIR}
        procs["control"] = start_cases(client, ["long_chat"], f"http://127.0.0.1:{gw.port}/v1")
        try:
            got = {case: collect(proc, [case])[case] for case, proc in procs.items() if case != "control"}
            direct = collect(procs["control"], ["long_chat"])["long_chat"]
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
            proxy.close()
        # Control: without the proxy the same silent answer completes, and takes longer than the limit.
        assert direct["result"]["completion_tokens"] == LONG_TOKENS, direct
        assert direct["result"]["seconds"] > idle, (idle, direct)
        attempts.append({"idle": idle, "cuts": proxy.cut, **got})
        # Tried again: a stream cut part-way, or a silent answer that completed within the limit (the
        # pacing makes that impossible; the check keeps the proof honest if it changes).
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


ROUTE_TOKENS = 200  # 4.4 s of paced stream: longer than the route's 1 s timeouts, in chunks 22 ms apart


def test_route_timeout_bounds_a_silent_answer_not_a_stream(paced_gateway):
    """LiteLLM's per-route `timeout` ends a non-streamed call that takes longer (the client gets a
    timeout error); `stream_timeout` bounds the wait for each chunk, so a stream longer than it
    completes. So requestTimeoutSeconds limits the silent time, the same thing the front door's read
    timeout and TCP keepalive must cover (components/frontdoor.py). On the route SHORT (1 s each)."""
    _, gw = paced_gateway
    url = f"http://127.0.0.1:{gw.port}/v1"
    got = run_cases("python", ["long_stream", "long_chat"], url, LONG_TOKENS=str(ROUTE_TOKENS), MODEL=SHORT)
    stream, chat = got["long_stream"], got["long_chat"]
    assert stream["result"]["completion_tokens"] == ROUTE_TOKENS and stream["result"]["seconds"] > 2, stream
    # 408 has no class of its own in the client (APIStatusError); the clients retry it by default.
    assert (chat["error"], chat["status"]) == ("APIStatusError", 408) and "litellm.Timeout" in chat["message"], chat
    # Two attempts of 1 s and the router's backoff between them: (1 + retries) x timeout + backoff.
    assert chat["took"] >= 2, chat
    print(f"stream {stream['result']['seconds']:.1f} s passed a 1 s stream_timeout; 408 after {chat['took']} s")
