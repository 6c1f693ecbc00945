"""A cache-routed model on loopback, for tests/e2e/test_router.py and benchmarks/router_cache.py.

Everything comes from the rendered plan of tests/configs/autoscaling.ok.yaml, whose `chat` model is
routed by cache: two real vLLM CPU replicas of the tiny model (the `chat` container's args), the real
vllm-router 0.1.17 (the rendered `chat-router` command line) and the real LiteLLM (the rendered config,
`chat`'s api_base the router). What replaces what the cluster has:

- the router's pod discovery (`--service-discovery --selector ... --service-discovery-namespace
  ... --service-discovery-port`) -> `--worker-urls` of the two loopback replicas (no API server here);
- the router's `--host 0.0.0.0`, `--port`, `--prometheus-host/--prometheus-port` -> 127.0.0.1 and free ports;
- the vLLM replicas: the substitutions of tests/e2e/servers.py, plus `--enable-prefix-caching`
  (already vLLM's default; said explicitly since the test depends on it) and `--block-size 32`: the
  CPU build's default block is 128 tokens, half the tiny model's 256-token window, so a shared prefix
  would be cached in one coarse block (GPUs cache in blocks of 16).
"""

from __future__ import annotations

import http.client as httpclient
import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.servers import (
    E2E,
    EAGER,
    MASTER_KEY,
    ROOT,
    VLLM_PY,
    Rendered,
    Server,
    free_port,
    gateway_for,
    http,
    render_stack,
    substitute_vllm_args,
    vllm_env,
)

FIXTURE = ROOT / "tests" / "configs" / "autoscaling.ok.yaml"
MODEL = "chat"  # the cache-aware model of the fixture (config name and served name)
ROUTER_BIN = E2E / "router" / "bin" / "vllm-router"
BLOCK = 32
DISCOVERY_FLAGS = ("--service-discovery-namespace", "--service-discovery-port")


@dataclass
class RoutedStack:
    rendered: Rendered  # LiteLLM's container, config and files
    vllm_container: dict  # the chat Deployment's vLLM container
    router_container: dict  # the chat-router Deployment's container


def _container(manifests: list[dict], name: str) -> dict:
    dep = next(m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == name)
    return dep["spec"]["template"]["spec"]["containers"][0]


def render(out: Path) -> RoutedStack:
    r = render_stack(out, FIXTURE)
    return RoutedStack(r, _container(r.manifests, MODEL), _container(r.manifests, f"{MODEL}-router"))


def replica(stack: RoutedStack, model_dir: Path, log: Path, *, eager: bool = False) -> Server:
    """`eager`: servers.vllm_server_for's."""
    port = free_port()
    args = [
        *substitute_vllm_args(stack.vllm_container["args"], model_dir, port),
        "--enable-prefix-caching",
        "--block-size",
        str(BLOCK),
    ]
    argv = [str(VLLM_PY), "-m", "vllm.entrypoints.cli.main", "serve", *args, *([EAGER] if eager else [])]
    s = Server(argv, vllm_env(stack.vllm_container), log, f"http://127.0.0.1:{port}/health", 480)
    s.port = port
    return s


def router_argv(container: dict, workers: list[str], port: int, metrics_port: int, policy: str | None = None):
    """The rendered router command line with the loopback substitutions (module docstring)."""
    src, out, i = [str(a) for a in container["args"]], [], 0
    values = {"--host": "127.0.0.1", "--port": str(port), "--prometheus-host": "127.0.0.1"}
    values["--prometheus-port"] = str(metrics_port)
    if policy:
        values["--policy"] = policy
    while i < len(src):
        a = src[i]
        if a == "--service-discovery":
            i += 1
        elif a == "--selector":
            i += 1
            while i < len(src) and not src[i].startswith("--"):
                i += 1
        elif a in DISCOVERY_FLAGS:
            i += 2
        elif a in values:
            out += [a, values[a]]
            i += 2
        else:
            out.append(a)
            i += 1
    return [str(ROUTER_BIN), *container["command"][1:], *out, "--worker-urls", *workers]


def router(stack: RoutedStack, workers: list[Server], log: Path, policy: str | None = None) -> Server:
    port, mport = free_port(), free_port()
    urls = [f"http://127.0.0.1:{w.port}" for w in workers]
    argv = router_argv(stack.router_container, urls, port, mport, policy)
    s = Server(argv, {"PATH": "/usr/bin:/bin"}, log, f"http://127.0.0.1:{port}/readiness", 120)
    s.port, s.metrics_port = port, mport
    return s


def gateway(stack: RoutedStack, router_port: int, workdir: Path, *, rendered_workers: bool = False) -> Server:
    """LiteLLM as rendered (but for servers.gateway_for's `rendered_workers`); `chat`'s api_base (the
    router's Service) becomes the loopback router."""
    return gateway_for(stack.rendered, router_port, workdir, rendered_workers=rendered_workers)


def start_all(servers: list[Server]) -> None:
    """Start servers side by side (each start waits for its health URL); re-raise the first failure."""
    errors: list[BaseException] = []

    def one(s: Server) -> None:
        try:
            s.start()
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=one, args=(s,)) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


# ---- workload ----------------------------------------------------------------------------------------------

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "kubernetes",
    "schedules",
    "pods",
    "onto",
    "nodes",
]


def shared_prefix(group: int, words: int = 80) -> str:
    """A system prompt of `words` words, different for every group (its first words name it)."""
    body = " ".join(WORDS[(group * 7 + i * 3) % len(WORDS)] for i in range(words))
    return f"Group {group} instructions. {body}."


def request(group: int, i: int, *, stream: bool = False, max_tokens: int = 4, words: int = 80) -> dict:
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": shared_prefix(group, words)},
            {"role": "user", "content": f"Question {i}: one two three {i}?"},
        ],
        "max_tokens": max_tokens,
        "stream": stream,
    }


@dataclass
class Result:
    status: int
    seconds: float
    ttft: float | None = None
    body: str = ""


def _delta_text(delta: dict) -> str:
    """The text a streamed delta carries: the tiny model's output goes to the reasoning parser's field."""
    return "".join(str(delta.get(k) or "") for k in ("content", "reasoning_content", "reasoning"))


def call(url: str, body: dict, key: str = MASTER_KEY, timeout: float = 120) -> Result:
    """One request; streamed bodies report the time to the first content chunk."""
    t0 = time.perf_counter()
    if not body.get("stream"):
        try:
            status, text = http("POST", url, body, key, timeout=timeout)
        except OSError as e:
            return Result(-1, time.perf_counter() - t0, body=str(e))
        return Result(status, time.perf_counter() - t0, body=text)
    u = urllib.parse.urlsplit(url)
    conn = httpclient.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(
            "POST", u.path, json.dumps(body), {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        )
        resp = conn.getresponse()
        ttft = None
        for raw in resp:
            line = raw.decode().strip()
            if ttft is None and line.startswith("data:") and line != "data: [DONE]":
                chunk = json.loads(line[5:])
                if any(_delta_text(c.get("delta") or {}) for c in chunk.get("choices") or []):
                    ttft = time.perf_counter() - t0
        return Result(resp.status, time.perf_counter() - t0, ttft)
    except OSError as e:
        return Result(-1, time.perf_counter() - t0, body=str(e))
    finally:
        conn.close()


@dataclass
class Load:
    results: list[Result] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def run(url: str, bodies: list[dict], concurrency: int, load: Load | None = None) -> Load:
    """Closed loop: `concurrency` workers take the bodies in order until none is left."""
    load = load or Load()
    todo = list(reversed(bodies))
    take = threading.Lock()

    def worker() -> None:
        while True:
            with take:
                if not todo:
                    return
                b = todo.pop()
            r = call(url, b)
            with load.lock:
                load.results.append(r)

    ts = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return load


def interleaved(groups: list[int], per_group: int, **kw) -> list[dict]:
    """Requests of the groups in turn (g0 q0, g1 q0, ..., g0 q1, ...): concurrent shared-prefix traffic."""
    return [request(g, i, **kw) for i in range(per_group) for g in groups]


# ---- vLLM's own counters -----------------------------------------------------------------------------------

METRIC = re.compile(r"^(vllm:[a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$")


def counters(port: int) -> dict[str, float]:
    """One replica's vLLM counters (summed over label sets), read from its /metrics."""
    _, text = http("GET", f"http://127.0.0.1:{port}/metrics")
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = METRIC.match(line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def served(port: int) -> float:
    return counters(port).get("vllm:request_success_total", 0.0)
