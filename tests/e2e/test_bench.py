"""`python -m stacks.bench` for real: the load engine (`vllm bench serve` from .e2e/vllm) drives the rendered
nginx front door, in front of the real LiteLLM running the rendered gateway config, in front of a real vLLM
(CPU, tiny model) started from the rendered Deployment's args.

The engine counts prompt tokens with the tiny model's tokenizer (the stack's hfId would be downloaded).

The knee needs a controlled server. On this shared 2-core machine the tiny vLLM is not what limits a run:
its tokens come faster than LiteLLM relays them, so even with `--max-num-seqs 2` the time to first token
grows with the gateway's CPU backlog at every concurrency (measured: p99 TTFT 166, 876, 1031 ms at 1, 2, 4
streams). The controlled run therefore goes to a second model on the same gateway, front door and engine:
an upstream that answers like vLLM's streaming chat with exactly two slots and a fixed pace (TOKEN_S a
token). Up to two streams start at once; at four, half of the requests wait for a whole request
(OUTPUT_KNEE x TOKEN_S) first. The SLO is half of that whole request, measured in the same run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stacks.verify import chat
from stacks.yamlio import dump_yaml, load_yaml
from tests.conftest import ROOT
from tests.e2e.paced import start_paced
from tests.e2e.servers import E2E, MASTER_KEY, STACK, gateway_for, http
from tests.e2e.test_frontdoor import NGINX, need, start_nginx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
ENGINE = E2E / "vllm" / "bin" / "vllm"
INPUT_LEN, OUTPUT_LEN, REQUESTS = 16, 48, 8
KNEE_MODEL, SLOTS, TOKEN_S, OUTPUT_KNEE = "paced-two-slots", 2, 0.05, 16


def with_paced_model(config: Path, port: int) -> None:
    """Add the paced upstream to the rendered gateway config, as one more vLLM-served model."""
    cfg = load_yaml(config.read_text())
    params = {**cfg["model_list"][0]["litellm_params"], "model": f"hosted_vllm/{KNEE_MODEL}"}
    params["api_base"] = f"http://127.0.0.1:{port}/v1"
    cfg["model_list"].append({"model_name": KNEE_MODEL, "litellm_params": params, "model_info": {"mode": "chat"}})
    config.write_text(dump_yaml(cfg))


@pytest.fixture(scope="module")
def door(rendered, tiny_model, vllm_server, tmp_path_factory):
    need(NGINX, "nginx (Debian nginx-light)")
    work = tmp_path_factory.mktemp("bench")
    paced = start_paced(TOKEN_S, SLOTS, KNEE_MODEL)  # a third request waits, as in vLLM's queue
    (work / "litellm").mkdir()
    gw = gateway_for(rendered, vllm_server.port, work / "litellm")
    with_paced_model(work / "litellm" / "config.yaml", paced.server_address[1])
    gw.timeout = 300
    try:
        gw.start()
        fd = [m for m in rendered.manifests if m["metadata"]["name"] == "gateway-frontdoor"]
        cm = next(m for m in fd if m["kind"] == "ConfigMap")
        dep = next(m for m in fd if m["kind"] == "Deployment")
        command = dep["spec"]["template"]["spec"]["containers"][0]["command"]
        ng = start_nginx(cm["data"]["nginx.conf"], command, gw.port, work / "nginx")
    except BaseException:
        gw.stop()
        raise
    yield {
        "url": f"http://127.0.0.1:{ng.port}",
        "model": rendered.litellm_config["model_list"][0]["model_name"],
        "tokenizer": str(tiny_model),
        "work": work,
    }
    ng.stop()
    gw.stop()
    paced.shutdown()


def run_bench(door, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "stacks.bench", "seed004", "--gateway-url", door["url"], "--engine", str(ENGINE)]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=1100)


def engine_report(log: Path) -> dict[str, float]:
    """The figures the engine printed itself ("Request throughput (req/s):  3.21")."""
    out = {}
    for line in log.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9 ()/.-]+?):\s+(-?[0-9.]+)\s*$", line)
        if m:
            out[m[1]] = float(m[2])
    return out


@pytest.fixture(scope="module")
def real_run(door):
    """One sweep against the real vLLM, with costs from the seed004 config and the engine's files kept."""
    results = door["work"] / "results"
    r = run_bench(
        door,
        *("--api-key", MASTER_KEY, "--model", door["model"], "--tokenizer", door["tokenizer"]),
        *("--config", str(STACK), "--concurrency", "1,2", "--requests", str(REQUESTS)),
        *("--input-len", str(INPUT_LEN), "--output-len", str(OUTPUT_LEN)),
        *("--slo-ttft-ms", "60000", "--slo-itl-ms", "60000", "--results-dir", str(results), "--json"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout), results, r.stderr


def test_the_report_is_the_engines_numbers_for_the_same_run(real_run):
    doc, results, err = real_run
    assert [lv["concurrency"] for lv in doc["levels"]] == [1, 2]
    for i, lv in enumerate(doc["levels"], 1):
        c = lv["concurrency"]
        assert f"concurrency {c} ({i}/2), {REQUESTS} requests" in err  # the progress line
        mine = json.loads((results / f"c{c}.json").read_text())
        printed = engine_report(results / f"c{c}.log")
        assert lv["requestsPerSecond"] == mine["request_throughput"]
        assert lv["outputTokensPerSecond"] == mine["output_throughput"]
        assert lv["goodputRequestsPerSecond"] == mine["request_goodput"]
        assert [lv["ttftMs"][p] for p in ("p50", "p90", "p99")] == [mine[f"p{p}_ttft_ms"] for p in (50, 90, 99)]
        assert lv["itlMs"]["p99"] == mine["p99_itl_ms"] and lv["e2eMs"]["p50"] == mine["p50_e2el_ms"]
        assert round(lv["requestsPerSecond"], 2) == printed["Request throughput (req/s)"]
        assert round(lv["outputTokensPerSecond"], 2) == printed["Output token throughput (tok/s)"]
        assert round(lv["ttftMs"]["p99"], 2) == printed["P99 TTFT (ms)"]
        assert round(lv["itlMs"]["p90"], 2) == printed["P90 ITL (ms)"]
        assert (lv["completed"], lv["failed"]) == (REQUESTS, 0)  # every request streamed through nginx + LiteLLM
    # seed004: one g6e.xlarge at $1.861/h; $/1M = 1.861 / (tok/s x 3600) x 1e6
    k = doc["knee"]
    assert k["concurrency"] == 2  # an SLO of a minute: both levels meet it
    assert k["usdPerMillionOutputTokens"]["acceleratorNodes"] == pytest.approx(
        1.861 / (k["outputTokensPerSecond"] * 3600) * 1e6
    )


def usage_rides_on_a_choice(door) -> bool:
    """Does the gateway put `usage` on a chunk that still has choices (the engine reads it only from a
    chunk without choices, and otherwise re-tokenizes the text, which misses reasoning tokens)?"""
    body = {
        "model": door["model"],
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    status, text = http("POST", f"{door['url']}/v1/chat/completions", body, MASTER_KEY)
    assert status == 200, text
    docs = [json.loads(x[5:]) for x in text.splitlines() if x.startswith("data:") and x != "data: [DONE]"]
    return any(d.get("usage") and d.get("choices") for d in docs)


def test_output_tokens_are_counted_from_usage_through_the_gateway(door, real_run):
    if usage_rides_on_a_choice(door):
        pytest.xfail("the gateway sends usage on a chunk with choices: the engine falls back to counting text")
    doc, _, _ = real_run
    for lv in doc["levels"]:  # --ignore-eos: every request generates exactly --output-len tokens
        assert lv["outputTokens"] == REQUESTS * OUTPUT_LEN


KNEE_ATTEMPTS = 3


def knee_run(door) -> tuple[float, dict]:
    t0 = time.monotonic()
    chat(door["url"], MASTER_KEY, KNEE_MODEL, max_tokens=OUTPUT_KNEE)
    whole = time.monotonic() - t0  # one request end to end, through nginx and LiteLLM
    assert whole >= OUTPUT_KNEE * TOKEN_S
    slo_ttft_ms = whole * 1000 / 2
    r = run_bench(
        door,
        *("--api-key", MASTER_KEY, "--model", KNEE_MODEL, "--tokenizer", door["tokenizer"]),
        *("--concurrency", "1,2,4", "--requests", str(REQUESTS), "--input-len", str(INPUT_LEN)),
        *("--output-len", str(OUTPUT_KNEE), "--slo-ttft-ms", f"{slo_ttft_ms:.1f}", "--slo-itl-ms", "60000", "--json"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return slo_ttft_ms, json.loads(r.stdout)


def test_knee_on_a_controlled_upstream(door):
    """At 4 concurrent requests the upstream's queue makes the SLO fail whatever the machine does; at 1
    and 2 only a stall can (a CI run once saw a 5 s first token at 1 concurrent). A stall only adds
    latency, so a run whose lower levels fail is run again, up to KNEE_ATTEMPTS times."""
    for attempt in range(1, KNEE_ATTEMPTS + 1):
        slo_ttft_ms, doc = knee_run(door)
        meets = [lv["meetsSlo"] for lv in doc["levels"]]
        ttft99 = [lv["ttftMs"]["p99"] for lv in doc["levels"]]
        assert meets[2] is False, (slo_ttft_ms, ttft99)  # the queue: never noise
        assert all((lv["completed"], lv["failed"]) == (REQUESTS, 0) for lv in doc["levels"])
        if meets == [True, True, False]:
            break
        print(f"attempt {attempt}: SLO {slo_ttft_ms:.0f} ms, p99 TTFT {ttft99}: a stall below the knee; again")
    assert meets == [True, True, False], (slo_ttft_ms, ttft99)
    assert doc["knee"]["concurrency"] == SLOTS


def one_line(r: subprocess.CompletedProcess, want: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and want in lines[0], r.stderr


def test_bad_inputs_are_one_line_and_exit_2(door):
    ok = ["--model", door["model"], "--slo-ttft-ms", "1000", "--slo-itl-ms", "100", "--requests", "8"]
    one_line(run_bench(door, "--api-key", "sk-wrong", *ok), "the gateway refused the key")
    one_line(run_bench(door, "--api-key", MASTER_KEY, *ok, "--model", "no-such-model"), "does not serve it")
    one_line(run_bench(door, "--api-key", MASTER_KEY, *ok, "--concurrency", "0"), "at least 1")
    closed = door["url"].rsplit(":", 1)[0] + ":9"  # discard port: nothing listens
    r = run_bench(door, "--api-key", MASTER_KEY, *ok, "--gateway-url", closed)
    one_line(r, "unreachable")
