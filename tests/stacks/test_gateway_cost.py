"""benchmarks/gateway_cost.py's own parts: the stub answers like vLLM (one request each way), the
process-tree CPU counter sees a child's CPU, and the variants change exactly one setting."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import pytest

from benchmarks import gateway_cost as gc


@pytest.fixture(scope="module")
def stub_port():
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(gc._stub_conn, "127.0.0.1", 0))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    yield server.sockets[0].getsockname()[1]
    loop.call_soon_threadsafe(loop.stop)


def events(body: bytes) -> list:
    return [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e]


def test_the_stub_answers_a_plain_request_with_usage(stub_port):
    status, body = asyncio.run(gc.one(stub_port, "k", False))
    doc = json.loads(body)
    assert status == 200 and doc["object"] == "chat.completion"
    assert doc["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


def test_the_stub_streams_like_vllm_with_a_reference_usage_chunk(stub_port):
    status, body = asyncio.run(gc.one(stub_port, "k", True))
    evs = events(body)
    assert status == 200 and evs[-1] == "[DONE]"
    chunks = [json.loads(e) for e in evs[:-1]]
    # role, four one-token deltas (the default), the finish chunk, then usage with empty choices
    assert len(chunks) == 7
    assert [len(c["choices"]) for c in chunks] == [1, 1, 1, 1, 1, 1, 0]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == " w0 w1 w2 w3"
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert all("usage" not in c for c in chunks[:-1])


def test_the_stub_keeps_the_connection_for_the_next_request(stub_port):
    run = asyncio.run(gc.closed_loop(stub_port, "k", False, 2, 0.3))
    assert run.errors == 0 and len(run.latencies) > 2


def reaped_child_cpu(code: str) -> float:
    """This process tree's CPU seconds over a child that runs `code`, exits and is reaped."""
    before = gc.tree_cpu_seconds(os.getpid())
    subprocess.run([sys.executable, "-S", "-c", code], check=True, timeout=60)
    return gc.tree_cpu_seconds(os.getpid()) - before


def test_tree_cpu_counts_a_reaped_child_and_not_its_sleep():
    busy = reaped_child_cpu("x = sum(i * i for i in range(4_000_000))")
    idle = reaped_child_cpu("import time; time.sleep(0.5)")
    assert busy >= 0.1  # ~0.3 s of pure CPU in the child lands in this process's cutime
    assert idle < busy / 2  # negative control: half a second asleep is not CPU


def test_each_variant_changes_its_setting_only():
    base = {"litellm_settings": {"callbacks": ["prometheus", "usage_chunk.usage_chunk"]}, "general_settings": {}}
    ctr = {"args": ["--config", "c", "--num_workers", "2", "--timeout_worker_healthcheck", "60"], "env": []}

    def apply(name):
        cfg, c = json.loads(json.dumps(base)), json.loads(json.dumps(ctr))
        gc.VARIANTS[name](cfg, c)
        return cfg, c

    assert apply("rendered") == (base, ctr)
    assert apply("1-worker")[1]["args"] == ["--config", "c", "--timeout_worker_healthcheck", "60", "--num_workers", "1"]
    assert apply("no-prometheus")[0]["litellm_settings"]["callbacks"] == ["usage_chunk.usage_chunk"]
    assert apply("no-usage-cb")[0]["litellm_settings"]["callbacks"] == ["prometheus"]
    assert apply("granian")[1]["args"] == ["--config", "c", "--num_workers", "2", "--run_granian"]
    assert apply("log-error")[1]["env"] == [{"name": "LITELLM_LOG", "value": "ERROR"}]
