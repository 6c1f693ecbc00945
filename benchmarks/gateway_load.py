"""Bounded loopback load: requests/s and p50/p95 latency direct to vLLM and through LiteLLM.

    .venv/bin/python -m benchmarks.gateway_load [--seconds 10] [--concurrency 8]

Starts the real vLLM (CPU build, tiny random model) and the real LiteLLM proxy exactly as the e2e
suite does (configured from the rendered seed004 stack), runs a fixed-duration closed-loop load on
127.0.0.1 only, prints the numbers and stops both servers. Total run time: at most 2 x --seconds of
load (<= 30 s) plus server starts.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from tests.e2e.servers import MASTER_KEY, VLLM_KEY, build_tiny_model, gateway_for, http, render_stack, vllm_server_for

ROOT = Path(__file__).resolve().parent.parent


def load(url: str, key: str, model: str, seconds: float, concurrency: int) -> tuple[int, int, list[float]]:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    lat: list[float] = []
    errors = [0]
    stop_at = time.time() + seconds
    lock = threading.Lock()

    def worker():
        while time.time() < stop_at:
            t = time.perf_counter()
            status, _ = http("POST", url, body, key, timeout=30)
            d = time.perf_counter() - t
            with lock:
                (lat.append(d) if status == 200 else errors.__setitem__(0, errors[0] + 1))

    ts = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 60)
    return len(lat), errors[0], lat


def report(name: str, n: int, err: int, lat: list[float], seconds: float) -> None:
    lat = sorted(lat)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    print(f"{name:<10} {n / seconds:7.1f} req/s  p50 {p(0.50):7.1f} ms  p95 {p(0.95):7.1f} ms  ok {n}  errors {err}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    a.seconds = min(a.seconds, 15)  # two phases, <= 30 s of load in all
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rendered = render_stack(tmp / "plan")
        model = build_tiny_model(tmp / "tiny")
        t = time.time()
        v = vllm_server_for(rendered, model, tmp / "vllm.log").start()
        print(f"vLLM ready in {time.time() - t:.0f} s", flush=True)
        (tmp / "gw").mkdir()
        g = None
        try:
            t = time.time()
            g = gateway_for(rendered, v.port, tmp / "gw", rendered_workers=True).start()
            print(f"LiteLLM ready in {time.time() - t:.0f} s", flush=True)
            served = rendered.litellm_config["model_list"][0]["model_name"]
            direct = f"http://127.0.0.1:{v.port}/v1/chat/completions"
            via = f"http://127.0.0.1:{g.port}/v1/chat/completions"
            http(
                "POST",
                direct,
                {"model": served, "messages": [{"role": "user", "content": "w"}], "max_tokens": 2},
                VLLM_KEY,
            )
            print(f"closed loop, {a.concurrency} concurrent, max_tokens 4, {a.seconds:.0f} s each")
            report("direct", *load(direct, VLLM_KEY, served, a.seconds, a.concurrency), a.seconds)
            report("gateway", *load(via, MASTER_KEY, served, a.seconds, a.concurrency), a.seconds)
        finally:
            if g is not None:
                g.stop()
            v.stop()


if __name__ == "__main__":
    main()
