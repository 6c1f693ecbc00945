"""Graceful drain on the real vLLM: SIGTERM (what kubelet sends after the preStop sleep) with the
rendered --shutdown-timeout lets in-flight requests finish and refuses new ones; the abort default
(--shutdown-timeout 0) cuts them, which shows the check can fail."""
import json
import os
import signal
import threading
import time
import urllib.request

import pytest

from tests.e2e.servers import VLLM_KEY, http

pytestmark = pytest.mark.e2e
TOKENS = 200
STREAMS = 4


def stream(port: int, out: list, first: threading.Event) -> None:
    body = {"model": "qwen3-0.6b", "prompt": "hello", "max_tokens": TOKENS, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 method="POST", headers={"Authorization": f"Bearer {VLLM_KEY}",
                                                         "Content-Type": "application/json"})
    got = {"status": None, "usage": None, "done": False, "finish": None}
    try:
        with urllib.request.urlopen(req, timeout=45) as r:  # abort mode leaves streams open until this
            got["status"] = r.status
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                first.set()
                if line == "data: [DONE]":
                    got["done"] = True
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    got["usage"] = chunk["usage"]
                for c in chunk.get("choices") or []:
                    got["finish"] = c.get("finish_reason") or got["finish"]
    except Exception as e:  # noqa: BLE001 reported to the test
        got["error"] = repr(e)
    first.set()
    out.append(got)


def sigterm_with_requests_in_flight(server) -> tuple[list, list]:
    results, firsts, threads = [], [], []
    for _ in range(STREAMS):
        ev = threading.Event()
        firsts.append(ev)
        threads.append(threading.Thread(target=stream, args=(server.port, results, ev)))
    for t in threads:
        t.start()
    for ev in firsts:
        assert ev.wait(60)
    os.kill(server.proc.pid, signal.SIGTERM)  # the container's PID 1 (`vllm serve`), as kubelet does
    late = []
    for _ in range(3):  # new requests while draining (or after exit) are refused
        try:
            late.append(http("POST", f"http://127.0.0.1:{server.port}/v1/completions",
                             {"model": "qwen3-0.6b", "prompt": "x", "max_tokens": 2}, VLLM_KEY, timeout=10)[0])
        except OSError:
            late.append("refused")
        time.sleep(0.2)
    for t in threads:
        t.join(150)
    assert not any(t.is_alive() for t in threads), "a request hung"
    server.proc.wait(120)  # exits once drained, well before the 600 s budget
    return results, late


@pytest.mark.timeout(1200)
def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(rendered, vllm_server):
    args = rendered.vllm_container["args"]
    timeout = int(args[args.index("--shutdown-timeout") + 1])
    assert timeout > 0 and vllm_server.args[vllm_server.args.index("--shutdown-timeout") + 1] == str(timeout)
    log_start = vllm_server.log.stat().st_size
    try:
        results, late = sigterm_with_requests_in_flight(vllm_server)
        log = vllm_server.log.read_text(errors="replace")[log_start:]
        assert "draining in-flight requests" in log, log[-3000:]  # SIGTERM landed mid-generation
        assert len(results) == STREAMS
        for r in results:
            assert r["status"] == 200 and r["done"] and r["usage"]["completion_tokens"] == TOKENS, r
        assert all(s != 200 for s in late), late

        # Negative control: the same flow with vLLM's default (abort) loses the in-flight tokens.
        i = vllm_server.argv.index("--shutdown-timeout")
        vllm_server.argv[i + 1] = "0"
        vllm_server.start()
        results, _ = sigterm_with_requests_in_flight(vllm_server)
        assert any(r.get("error") or not r["usage"] or r["usage"]["completion_tokens"] < TOKENS for r in results), results
    finally:
        i = vllm_server.argv.index("--shutdown-timeout")
        vllm_server.argv[i + 1] = str(timeout)
        if vllm_server.proc.poll() is not None:
            vllm_server.start()  # the session's server, as rendered, for the tests that follow
