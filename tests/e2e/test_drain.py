"""Graceful drain on the real vLLM: SIGTERM (what kubelet sends after the preStop sleep) with the
rendered --shutdown-timeout lets in-flight requests finish and refuses new ones."""

import json
import os
import re
import signal
import threading
import time
import urllib.request

import pytest

from tests.e2e.servers import VLLM_KEY, http

pytestmark = pytest.mark.e2e
TOKENS = 240  # the tiny model serves 256 positions here
STREAMS = 12


def stream(port: int, out: list, first: threading.Event) -> None:
    body = {
        "model": "qwen3-0.6b",
        "prompt": "hello",
        "max_tokens": TOKENS,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {VLLM_KEY}", "Content-Type": "application/json"},
    )
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
    except Exception as e:
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
    for ev in firsts:  # SIGTERM once every stream is generating
        assert ev.wait(60)
    os.kill(server.proc.pid, signal.SIGTERM)  # the container's PID 1 (`vllm serve`), as kubelet does
    late = []
    for _ in range(3):  # new requests while draining (or after exit) are refused
        try:
            late.append(
                http(
                    "POST",
                    f"http://127.0.0.1:{server.port}/v1/completions",
                    {"model": "qwen3-0.6b", "prompt": "x", "max_tokens": 2},
                    VLLM_KEY,
                    timeout=10,
                )[0]
            )
        except OSError:
            late.append("refused")
        time.sleep(0.2)
    for t in threads:
        t.join(150)
    assert not any(t.is_alive() for t in threads), "a request hung"
    server.proc.wait(300)
    return results, late


def drained_completely(results: list) -> bool:
    return len(results) == STREAMS and all(
        r["status"] == 200 and r["done"] and (r["usage"] or {}).get("completion_tokens") == TOKENS for r in results
    )


ATTEMPTS = 3  # a busy machine can finish every stream before SIGTERM reaches the engine: that proves nothing


@pytest.mark.timeout(1800)
def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(rendered, vllm_server):
    args = rendered.vllm_container["args"]
    timeout = int(args[args.index("--shutdown-timeout") + 1])
    assert timeout > 0 and vllm_server.args[vllm_server.args.index("--shutdown-timeout") + 1] == str(timeout)
    # The engine stays stopped after the test: tests/e2e/conftest.py starts it again for a later module.
    for attempt in range(1, ATTEMPTS + 1):
        if vllm_server.proc.poll() is not None:
            vllm_server.start()
        log_start = vllm_server.log.stat().st_size
        t0 = time.time()
        results, late = sigterm_with_requests_in_flight(vllm_server)
        log = vllm_server.log.read_text(errors="replace")[log_start:]
        # The engine still had the requests when SIGTERM landed, and drained instead of aborting.
        m = re.search(r"draining in-flight requests count=(\d+) timeout=(\d+)s", log)
        if m is None and "aborting in-flight requests" not in log and drained_completely(results):
            print(f"attempt {attempt}: every stream finished before the engine saw SIGTERM; again")
            continue
        assert m and int(m.group(1)) >= 1 and int(m.group(2)) == timeout, log[-3000:]
        assert "aborting in-flight requests" not in log
        assert drained_completely(results), results
        assert all(s != 200 for s in late), late
        assert time.time() - t0 < timeout  # exits when drained, not at the end of the budget
        return
    pytest.fail(f"inconclusive {ATTEMPTS} times: the streams always finished before SIGTERM reached the engine")


def test_the_drain_check_fails_on_cut_streams():
    """Negative control of the check above. With vLLM's default --shutdown-timeout 0 (abort), the
    engine logs "aborting in-flight requests" and the streams end without [DONE] and without all
    tokens (seen on this vLLM build: they stay open until the client times out)."""
    whole = {"status": 200, "done": True, "usage": {"completion_tokens": TOKENS}}
    assert drained_completely([whole] * STREAMS)
    assert not drained_completely([whole] * (STREAMS - 1) + [{"status": 200, "done": False, "usage": None}])
    assert not drained_completely([whole] * (STREAMS - 1) + [{**whole, "usage": {"completion_tokens": 17}}])
    assert not drained_completely([whole] * (STREAMS - 1) + [{"status": None, "done": False, "usage": None}])
