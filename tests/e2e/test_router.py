"""Cache-aware routing, end to end: client -> LiteLLM -> vllm-router 0.1.17 -> two real vLLM replicas.

All of it as rendered for tests/configs/autoscaling.ok.yaml (`chat: routing: cache-aware`), with the
loopback substitutions of tests/e2e/router_fleet.py; the real Prometheus scrapes both replicas and
computes the shipped dashboard queries. Correctness only (the numbers are benchmarks/router_cache.py's):
requests succeed through the router, each shared prefix stays on one replica while both replicas
serve, vLLM's prefix-cache hit counters move, and a replica killed mid-run costs no client an error.
"""

from __future__ import annotations

import os
import re
import signal
import threading

import pytest

from stacks.capacity import queries
from tests.e2e import router_fleet as F
from tests.e2e.prometheus import Prometheus, ScrapeJob, values
from tests.e2e.servers import build_tiny_model

# Two vLLM engines start side by side on two shared cores: minutes on a busy machine, hence the budget.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPLICAS = ("chat-a", "chat-b")  # the `pod` label the PodMonitor's discovery would give each replica


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, e2e_ready):
    if not F.ROUTER_BIN.exists():
        pytest.skip(f"{F.ROUTER_BIN} missing: run scripts/setup-e2e.sh")
    tmp = tmp_path_factory.mktemp("router")
    stack = F.render(tmp / "plan")
    model = build_tiny_model(tmp / "tiny")
    reps = [F.replica(stack, model, tmp / f"{n}.log", eager=True) for n in REPLICAS]
    started = []
    try:
        F.start_all(reps)
        started += reps
        rt = F.router(stack, reps, tmp / "router.log").start()
        started.append(rt)
        (tmp / "gw").mkdir()
        gw = F.gateway(stack, rt.port, tmp / "gw").start()
        started.append(gw)
        jobs = [
            ScrapeJob(f"models/vllm-{n}", [f"127.0.0.1:{r.port}"], labels={"namespace": "models", "pod": n})
            for r, n in zip(reps, REPLICAS, strict=True)
        ]
        jobs.append(ScrapeJob("models/chat-router", [f"127.0.0.1:{rt.metrics_port}"], labels={"pod": "chat-router-0"}))
        prom = Prometheus(tmp / "prom").start(jobs)
        started.append(prom)
        prom.wait_targets_up(120)
        yield stack, reps, rt, gw, prom
    finally:
        for s in reversed(started):
            s.stop()


def url(gw) -> str:
    return f"http://127.0.0.1:{gw.port}/v1/chat/completions"


def test_litellm_is_rendered_to_call_the_router(fleet):
    stack = fleet[0]
    bases = {m["model_name"]: m["litellm_params"]["api_base"] for m in stack.rendered.litellm_config["model_list"]}
    assert bases["chat"] == "http://chat-router.models.svc.cluster.local:8080/v1"
    args = stack.router_container["args"]
    assert "--service-discovery" in args and args[args.index("--policy") + 1] == "cache_aware"


def routing_decisions(rt) -> dict[str, float]:
    """The router's cache_aware decisions by outcome, from its metrics port."""
    _, text = F.http("GET", f"http://127.0.0.1:{rt.metrics_port}/metrics")
    out: dict[str, float] = {}
    for m in re.finditer(
        r'^vllm_router_prefix_routing_decisions_total\{[^}]*outcome="([a-z_]+)"[^}]*\} (\S+)$', text, re.M
    ):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def test_each_prefix_stays_on_one_replica_and_both_replicas_serve(fleet):
    _, reps, rt, gw, _ = fleet
    groups, turns = range(4), 3
    decided = routing_decisions(rt)
    # The prefixes arrive together: a prefix the router has not seen goes to a replica picked by load,
    # so prefixes arriving one at a time onto idle replicas would all start on the same one.
    firsts = F.run(url(gw), [F.request(g, 0) for g in groups], concurrency=len(groups))
    assert [r.status for r in firsts.results] == [200] * len(groups), [r.body for r in firsts.results]
    homes = []
    for group in groups:
        before = [F.served(r.port) for r in reps]
        load = F.run(url(gw), [F.request(group, i) for i in range(1, turns + 1)], concurrency=turns)
        assert [r.status for r in load.results] == [200] * turns, [r.body for r in load.results]
        delta = [F.served(r.port) - b for r, b in zip(reps, before, strict=True)]
        assert sorted(delta) == [0, turns], f"group {group} split across replicas: {delta}"
        homes.append(delta.index(turns))
    # Where new prefixes land depends on load (ties go to the same replica): the spread is the
    # benchmark's measure (benchmarks/router_cache.py), not a gate here; affinity is.
    # The router routed on the prompts' token ids (the replicas rendered every prompt), not blind.
    now = routing_decisions(rt)
    change = {k: now.get(k, 0) - decided.get(k, 0) for k in ("missing_tokens", "prefix_hit")}
    assert change["missing_tokens"] == 0 and change["prefix_hit"] >= len(groups) * turns, change


def test_requests_succeed_through_the_router_and_both_replicas_serve(fleet):
    _, reps, rt, gw, _ = fleet
    before = [F.served(r.port) for r in reps]
    load = F.run(url(gw), F.interleaved([30, 31, 32, 33], 4), concurrency=4)
    assert [r.status for r in load.results] == [200] * 16, [r.body[:200] for r in load.results if r.status != 200]
    delta = [F.served(r.port) - b for r, b in zip(reps, before, strict=True)]
    assert sum(delta) == 16, delta  # the spread is measured by benchmarks/router_cache.py
    # The router counts what it sent where (its own metrics port, as the PodMonitor scrapes it).
    _, text = F.http("GET", f"http://127.0.0.1:{rt.metrics_port}/metrics")
    assert "vllm_router_processed_requests_total" in text


def test_prefix_cache_hits_move_and_prometheus_agrees(fleet):
    _, reps, _, gw, prom = fleet
    load = F.run(url(gw), F.interleaved([10, 11, 12, 13], 5), concurrency=4)
    assert all(r.status == 200 for r in load.results), [r.body for r in load.results if r.status != 200]
    direct = [F.counters(r.port) for r in reps]
    hits = sum(c["vllm:prefix_cache_hits_total"] for c in direct)
    asked = sum(c["vllm:prefix_cache_queries_total"] for c in direct)
    assert hits > 0 and asked > hits
    # The fleet hit rate as Prometheus computes it from the scraped counters, once it has the last scrape.
    got = prom.wait_until("sum(vllm:prefix_cache_queries_total)", lambda r: values(r) == [asked], timeout=60)
    assert got
    rate = values(prom.query("sum(vllm:prefix_cache_hits_total) / sum(vllm:prefix_cache_queries_total)"))
    assert rate == [pytest.approx(hits / asked)]
    # The shipped per-replica panel answers for both replicas.
    expr = queries.BY_KEY["prefix_hit_rate_by_replica"].expr.replace("$__rate_interval", "1m")
    expr = expr.replace(queries.MODELS_NS, "models")  # the stack's namespace, as the render puts it
    per_pod = prom.query(expr.replace('model_name=~"$model"', 'model_name="chat"'))
    assert {r["metric"]["pod"] for r in per_pod} == set(REPLICAS)


def test_no_client_error_when_a_replica_dies_mid_run(fleet):
    _, reps, _, gw, _ = fleet
    bodies = F.interleaved([20, 21, 22, 23], 10)
    load = F.Load()
    killed = threading.Event()

    def kill_when_busy() -> None:
        # Once a quarter of the run is answered, SIGKILL the replica (API server and engine).
        while not killed.is_set():
            with load.lock:
                n = len(load.results)
            if n >= len(bodies) // 4:
                os.killpg(reps[1].proc.pid, signal.SIGKILL)
                killed.set()
            else:
                killed.wait(0.05)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    F.run(url(gw), bodies, concurrency=4, load=load)
    killed.set()
    killer.join()
    assert reps[1].proc.wait(30) is not None
    errors = [(r.status, r.body[:200]) for r in load.results if r.status != 200]
    assert len(load.results) == len(bodies)
    assert not errors, errors
