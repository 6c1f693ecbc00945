"""Cache-aware routing against a round-robin stand-in for the model's Service, measured in one run.

    .venv/bin/python -m benchmarks.router_cache [--groups 8] [--per-group 12] [--concurrency 8]

Two real vLLM CPU replicas of the tiny model, the real LiteLLM (rendered config) and the real
vllm-router 0.1.17 (rendered command line), all as tests/e2e/router_fleet.py sets them up for the
`chat` model of tests/configs/autoscaling.ok.yaml. One LiteLLM serves three names of the same model,
each through its own router process, so every arm crosses the same hops:

- `single`: a router with replica A alone: the single-replica prefix-cache hit rate;
- `round-robin`: a router with `--policy round_robin` over both replicas. The stand-in for today's
  ClusterIP Service (kube-proxy spreads connections, blind to prefixes) with the same proxy cost;
- `cache-aware`: the router as rendered (`--policy cache_aware`) over both replicas.

Each arm sends a concurrent shared-prefix workload (`--groups` system prompts, `--per-group` user turns
each, interleaved, streamed, `max_tokens` 4) with prefixes no other arm used, so no arm inherits another's
cache. Hit rates come from vLLM's own counters (vllm:prefix_cache_hits_total / _queries_total) as
the real Prometheus scrapes them; TTFT is measured by the client through LiteLLM; the request split
from each replica's vllm:request_success_total. Prints the numbers and the issue's target verdicts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from stacks.yamlio import dump_yaml, load_yaml
from tests.e2e import router_fleet as F
from tests.e2e.prometheus import Prometheus, ScrapeJob, values
from tests.e2e.servers import build_tiny_model

ARMS = ("single", "round-robin", "cache-aware")
PODS = ("chat-a", "chat-b")


def gateway_config(workdir: Path, routers: dict[str, int]) -> None:
    """The rendered LiteLLM config with one `chat` entry per arm, each to its own router."""
    cfg = load_yaml((workdir / "config.yaml").read_text())
    base = next(m for m in cfg["model_list"] if m["model_name"] == F.MODEL)
    cfg["model_list"] = [
        {
            **base,
            "model_name": arm,
            "litellm_params": {**base["litellm_params"], "api_base": f"http://127.0.0.1:{p}/v1"},
        }
        for arm, p in routers.items()
    ]
    (workdir / "config.yaml").write_text(dump_yaml(cfg))


METRICS = ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total", "vllm:request_success_total")


def snapshot(reps, prom: Prometheus, timeout: float = 90) -> dict[str, dict[str, float]]:
    """Each counter by pod as the real Prometheus holds it, once that equals what the replicas export
    now (read again on every try: a replica updates its counters a moment after it answers)."""
    end = time.monotonic() + timeout
    while True:
        direct = [F.counters(r.port) for r in reps]
        want = {m: {p: c.get(m, 0.0) for p, c in zip(PODS, direct, strict=True)} for m in METRICS}
        got = {
            m: {x["metric"]["pod"]: float(x["value"][1]) for x in prom.query(f"sum by (pod) ({m})")} for m in METRICS
        }
        if got == want:
            return got
        if time.monotonic() > end:
            raise TimeoutError(f"Prometheus {got} never matched the replicas {want}")
        time.sleep(0.5)


def arm(name: str, first_group: int, a, gw_port: int, reps, prom: Prometheus) -> dict:
    before = snapshot(reps, prom)
    bodies = F.interleaved(list(range(first_group, first_group + a.groups)), a.per_group, stream=True)
    for b in bodies:
        b["model"] = name
    t = time.perf_counter()
    load = F.run(f"http://127.0.0.1:{gw_port}/v1/chat/completions", bodies, a.concurrency)
    wall = time.perf_counter() - t
    after = snapshot(reps, prom)
    d = {m: {p: after[m][p] - before[m][p] for p in PODS} for m in after}
    used = list(PODS[:1] if name == "single" else PODS)  # the replicas this arm's router knows
    hits, asked = (
        sum(d[m][p] for p in used) for m in ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total")
    )
    served = d["vllm:request_success_total"]
    total = sum(served[p] for p in used)
    ttfts = sorted(r.ttft for r in load.results if r.ttft is not None)
    return {
        "arm": name,
        "ok": sum(r.status == 200 for r in load.results),
        "errors": sum(r.status != 200 for r in load.results),
        "req_s": len(bodies) / wall,
        "hit_rate": hits / asked if asked else float("nan"),
        "ttft_p50_ms": statistics.median(ttfts) * 1000 if ttfts else float("nan"),
        "ttft_p90_ms": ttfts[int(0.9 * (len(ttfts) - 1))] * 1000 if ttfts else float("nan"),
        "split": {p: int(served[p]) for p in PODS},
        "hotspot": len(used) * max(served[p] for p in used) / total if total else float("nan"),
    }


def verdicts(r: dict[str, dict]) -> list[str]:
    single, rr, ca = r["single"], r["round-robin"], r["cache-aware"]
    hit = ca["hit_rate"] / single["hit_rate"]
    ttft = 1 - ca["ttft_p50_ms"] / rr["ttft_p50_ms"]
    errors = sum(x["errors"] for x in r.values())
    return [
        f"fleet hit rate {ca['hit_rate']:.3f} = {hit:.0%} of one replica's {single['hit_rate']:.3f} "
        f"(target >= 90 %): {'MET' if hit >= 0.9 else 'MISSED'}",
        f"TTFT p50 {ca['ttft_p50_ms']:.0f} ms vs round-robin {rr['ttft_p50_ms']:.0f} ms: {ttft:.0%} lower "
        f"(target >= 30 %): {'MET' if ttft >= 0.3 else 'MISSED'}",
        f"busiest replica {ca['hotspot']:.2f}x its fair share (target <= 1.3x): "
        f"{'MET' if ca['hotspot'] <= 1.3 else 'MISSED'}",
        f"client-visible errors: {errors} (the replica-kill case is asserted in tests/e2e/test_router.py)",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--per-group", type=int, default=12)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stack = F.render(tmp / "plan")
        model = build_tiny_model(tmp / "tiny")
        reps = [F.replica(stack, model, tmp / f"{p}.log") for p in PODS]
        started: list = []
        try:
            t = time.time()
            F.start_all(reps)
            started += reps
            print(f"2 vLLM replicas ready in {time.time() - t:.0f} s", flush=True)
            routers = {
                "single": F.router(stack, reps[:1], tmp / "r-single.log"),
                "round-robin": F.router(stack, reps, tmp / "r-rr.log", policy="round_robin"),
                "cache-aware": F.router(stack, reps, tmp / "r-ca.log"),
            }
            for r in routers.values():
                started.append(r.start())
            (tmp / "gw").mkdir()
            gw = F.gateway(stack, routers["cache-aware"].port, tmp / "gw", rendered_workers=True)
            gateway_config(tmp / "gw", {k: r.port for k, r in routers.items()})
            started.append(gw.start())
            jobs = [
                ScrapeJob(f"models/vllm-{p}", [f"127.0.0.1:{r.port}"], labels={"pod": p})
                for r, p in zip(reps, PODS, strict=True)
            ]
            prom = Prometheus(tmp / "prom").start(jobs)
            started.append(prom)
            prom.wait_targets_up(120)
            print(
                f"{a.groups} prefixes x {a.per_group} turns, {a.concurrency} concurrent, streamed, max_tokens 4, "
                f"block size {F.BLOCK}",
                flush=True,
            )
            results = {}
            for i, name in enumerate(ARMS):
                results[name] = arm(name, 100 * (i + 1), a, gw.port, reps, prom)
                x = results[name]
                print(
                    f"{name:<12} ok {x['ok']:4d} err {x['errors']:2d}  {x['req_s']:5.1f} req/s  hit rate "
                    f"{x['hit_rate']:.3f}  TTFT p50 {x['ttft_p50_ms']:6.0f} ms p90 {x['ttft_p90_ms']:6.0f} ms  "
                    f"split {x['split']}  hotspot {x['hotspot']:.2f}",
                    flush=True,
                )
            fleet = values(prom.query("sum(vllm:prefix_cache_hits_total) / sum(vllm:prefix_cache_queries_total)"))
            print(f"whole run, fleet hit rate (Prometheus): {fleet[0]:.3f}")
            print("\n".join(verdicts(results)))
        finally:
            for s in reversed(started):
                s.stop()


if __name__ == "__main__":
    main()
