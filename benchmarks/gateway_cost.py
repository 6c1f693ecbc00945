"""What the gateway itself costs: CPU seconds per request and added latency, against an instant stub.

    .venv/bin/python -m benchmarks.gateway_cost [--seconds 3] [--variants rendered,no-hook,...]

A stub OpenAI-compatible backend (its own process, asyncio, answers at once, streamed and not) is
measured three ways at concurrency 1, 16 and 64 on 127.0.0.1: directly; through the nginx front door
alone (the floor: a proxy that does nothing per request); through the real LiteLLM started from the
RENDERED config, ConfigMap files (auth hook, usage callback) and flags. A variant changes one setting
of the rendered gateway, to see what each one costs.

CPU per request = the CPU time (user + system, from /proc) of the gateway's whole process tree over
the run, reaped children included, divided by the requests it served. Unlike latency it does not
depend on how busy the machine is, so it is the figure to compare (and to size replicas with).
Added latency = gateway p50/p99 minus direct p50/p99 at the same concurrency and mode.
Total run time: about 10 x --seconds per variant, plus LiteLLM's start (20-70 s on a busy machine).

Measured with LiteLLM 1.106.12 on 2 shared cores (load average 15-25 from other runs), CPU ms per request:
rendered 14-17 plain, 23 streamed with 4 tokens, 46-56 with 64 (about 0.45 ms per chunk); nginx 0.02-0.1.
No setting reaches 3 ms: one worker, Granian, the auth hook off, fewer metrics each stay within the
noise; only dropping the Prometheus callback saves about a third (9-12 ms), and the plan reads its
metrics. A worker start costs about 11 CPU-seconds, so --max_requests_before_restart N adds 11/N s to
each request (1.1 ms at 10000): left off. A CPU profile (--profile) splits a plain request into the
HTTP stack with auth and pre-call checks (~40%), the router and upstream call (~27%) and the success
logging after the answer (~28%: Prometheus half of it, cost calculation a quarter); the hook is ~1%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "stub"
PROMPT_TOKENS = 7
# Tokens (= content chunks) per answer; --tokens sets it for the stub process (streaming cost grows
# with the chunks, so a second run with more of them splits CPU per request from CPU per chunk).
COMPLETION_TOKENS = int(os.environ.get("GATEWAY_COST_TOKENS", "4"))
CONCURRENCY = (1, 16, 64)
TICK = os.sysconf("SC_CLK_TCK")


# ---- the stub backend: answers a chat completion at once, streamed (with usage) or not ----


def stub_bodies(include_usage: bool) -> tuple[bytes, bytes]:
    """(JSON answer, SSE stream): 4 one-token deltas; the usage chunk has empty `choices` (the reference)."""
    usage = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }
    words = [f" w{i}" for i in range(COMPLETION_TOKENS)]
    head = {"id": "c1", "created": 0, "model": MODEL}
    answer = {
        **head,
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "".join(words)}}],
        "usage": usage,
    }
    chunk = {**head, "object": "chat.completion.chunk"}
    deltas = [{"role": "assistant", "content": ""}] + [{"content": w} for w in words]
    events = [{**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        events.append({**chunk, "choices": [], "usage": usage})
    sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return json.dumps(answer).encode(), sse.encode()


def _response(status: str, ctype: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


PLAIN, STREAMED = stub_bodies(False)
STREAMED_USAGE = stub_bodies(True)[1]
MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()


async def _stub_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            if not head.startswith(b"POST"):
                writer.write(_response("200 OK", "application/json", MODELS))
            elif b'"stream": true' in body or b'"stream":true' in body:
                sse = STREAMED_USAGE if b"include_usage" in body else STREAMED
                writer.write(_response("200 OK", "text/event-stream", sse))
            else:
                writer.write(_response("200 OK", "application/json", PLAIN))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def run_stub(port: int) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_stub_conn, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---- the load client: keep-alive connections, closed loop, raw HTTP/1.1 ----


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, the server closes the connection after it)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    close = headers.get("connection", "").lower() == "close"
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"])), close
    parts = []
    while True:  # chunked
        size = int((await reader.readline()).split(b";")[0], 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return status, b"".join(parts), close
        parts.append(data[:-2])


def request_bytes(port: int, key: str, stream: bool, model: str = MODEL) -> bytes:
    body: dict = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": COMPLETION_TOKENS}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")


async def closed_loop(port: int, key: str, stream: bool, concurrency: int, seconds: float, model: str = MODEL) -> Run:
    req, run = request_bytes(port, key, stream, model), Run()
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                writer.write(req)
                status, _, close = await asyncio.wait_for(read_response(reader), 60)
                if status == 200:
                    run.latencies.append(time.perf_counter() - t)
                else:
                    run.errors += 1
                if close:  # nginx ends a kept-alive connection after `keepalive_requests` (1000)
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return run


async def one(port: int, key: str, stream: bool, model: str = MODEL) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(port, key, stream, model))
        status, body, _ = await asyncio.wait_for(read_response(reader), 60)
        return status, body
    finally:
        writer.close()


# ---- process-tree CPU time from /proc ----


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of `root` and every live descendant, plus what each has reaped (cutime + cstime):
    an exited worker (recycled or crashed) is counted once, by the process that waited for it."""
    stats, parent = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        f = raw[raw.rindex(")") + 2 :].split()
        parent[int(d)] = int(f[1])
        stats[int(d)] = sum(int(x) for x in f[11:15])
    tree, grew = {root}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in tree and p not in tree}
        tree |= new
        grew = bool(new)
    return sum(stats.get(p, 0) for p in tree) / TICK


# ---- one target (direct, nginx, a gateway variant) across modes and concurrencies ----


@dataclass
class Cell:
    target: str
    stream: bool
    concurrency: int
    served: int
    errors: int
    cpu_s: float | None
    p50: float
    p99: float
    seconds: float

    @property
    def rps(self) -> float:
        return self.served / self.seconds

    @property
    def cpu_ms_per_request(self) -> float | None:
        return None if self.cpu_s is None or not self.served else self.cpu_s / self.served * 1000


def measure(target: str, port: int, key: str, pid: int | None, seconds: float, model: str = MODEL) -> list[Cell]:
    cells = []
    for stream in (False, True):
        for c in CONCURRENCY:
            asyncio.run(closed_loop(port, key, stream, c, min(1.0, seconds / 3), model))  # warm the connections
            cpu0 = tree_cpu_seconds(pid) if pid else None
            run = asyncio.run(closed_loop(port, key, stream, c, seconds, model))
            cpu = tree_cpu_seconds(pid) - cpu0 if pid and cpu0 is not None else None
            cell = Cell(target, stream, c, len(run.latencies), run.errors, cpu, run.pct(0.5), run.pct(0.99), seconds)
            cpu_txt = f"{cell.cpu_ms_per_request:6.2f} ms CPU/req" if cell.cpu_ms_per_request else ""
            mode = "stream" if stream else "plain"
            print(
                f"  {target:<14} {mode:<6} c={c:<3} {cell.rps:7.0f} req/s  p50 {cell.p50:7.2f} ms"
                f"  p99 {cell.p99:7.2f} ms  {cpu_txt}  errors {run.errors}",
                flush=True,
            )
            cells.append(cell)
    return cells


def table(cells: list[Cell]) -> str:
    direct = {(c.stream, c.concurrency): c for c in cells if c.target == "direct"}
    rows = [f"{'target':<14} {'mode':<6} {'conc':>4} {'CPU ms/req':>10} {'+p50 ms':>8} {'+p99 ms':>8} {'req/s':>7}"]
    for c in cells:
        if c.target == "direct":
            continue
        d = direct[(c.stream, c.concurrency)]
        cpu = f"{c.cpu_ms_per_request:10.2f}" if c.cpu_ms_per_request is not None else f"{'-':>10}"
        rows.append(
            f"{c.target:<14} {'stream' if c.stream else 'plain':<6} {c.concurrency:>4} {cpu}"
            f" {c.p50 - d.p50:8.2f} {c.p99 - d.p99:8.2f} {c.rps:7.0f}"
        )
    return "\n".join(rows)


# ---- the gateway variants: the rendered settings, and one change each ----


def _set_flag(args: list[str], flag: str, value: str | None) -> list[str]:
    """`flag value` set (value None: the flag alone), replacing it when present."""
    out = list(args)
    if flag in out:
        i = out.index(flag)
        del out[i : i + (1 if value is None or i + 1 >= len(out) or out[i + 1].startswith("--") else 2)]
    return out + [flag] + ([] if value is None else [value])


def _drop_flag(args: list[str], flag: str) -> list[str]:
    out = list(args)
    if flag in out:
        i = out.index(flag)
        del out[i : i + (2 if i + 1 < len(out) and not out[i + 1].startswith("--") else 1)]
    return out


def _callbacks(cfg: dict, drop: str) -> None:
    cfg["litellm_settings"]["callbacks"] = [c for c in cfg["litellm_settings"]["callbacks"] if c != drop]


def _env(container: dict, name: str, value: str) -> None:
    container["env"] = [e for e in container["env"] if e["name"] != name] + [{"name": name, "value": value}]


def _no_hook(cfg: dict) -> None:
    for k in ("custom_auth", "custom_auth_run_common_checks"):
        cfg["general_settings"].pop(k, None)


# The LiteLLM metrics the plan's queries and alerts read (stacks/capacity/queries.py and the rules).
USED_METRICS = [
    "litellm_proxy_total_requests_metric",
    "litellm_proxy_failed_requests_metric",
    "litellm_total_tokens_metric",
    "litellm_spend_metric",
    "litellm_request_total_latency_metric",
    "litellm_llm_api_latency_metric",
    "litellm_overhead_latency_metric",
]


def _prom_used(cfg: dict) -> None:
    cfg["litellm_settings"]["prometheus_metrics_config"] = [{"group": "llm-serving", "metrics": USED_METRICS}]


VARIANTS = {
    "rendered": lambda cfg, ctr: None,
    "1-worker": lambda cfg, ctr: ctr.__setitem__("args", _set_flag(ctr["args"], "--num_workers", "1")),
    "4-workers": lambda cfg, ctr: ctr.__setitem__("args", _set_flag(ctr["args"], "--num_workers", "4")),
    "granian": lambda cfg, ctr: ctr.__setitem__(
        "args", _set_flag(_drop_flag(ctr["args"], "--timeout_worker_healthcheck"), "--run_granian", None)
    ),
    "no-prometheus": lambda cfg, ctr: _callbacks(cfg, "prometheus"),
    "no-usage-cb": lambda cfg, ctr: _callbacks(cfg, "usage_chunk.usage_chunk"),
    "no-hook": lambda cfg, ctr: _no_hook(cfg),
    "prom-used": lambda cfg, ctr: _prom_used(cfg),
    "log-error": lambda cfg, ctr: _env(ctr, "LITELLM_LOG", "ERROR"),
    "max-requests": lambda cfg, ctr: ctr.__setitem__(
        "args", _set_flag(ctr["args"], "--max_requests_before_restart", "10000")
    ),
}


def variant_of(rendered, name: str):
    import copy

    r = copy.deepcopy(rendered)
    VARIANTS[name](r.litellm_config, r.litellm_container)
    return r


def start_stub() -> tuple[subprocess.Popen, int]:
    from tests.e2e.servers import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.gateway_cost", "--stub", str(port)],
        cwd=ROOT,
        start_new_session=True,
        env={**os.environ, "GATEWAY_COST_TOKENS": str(COMPLETION_TOKENS)},
    )
    for _ in range(100):
        try:
            asyncio.run(one(port, "x", False))
            return proc, port
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("the stub did not start")


def check_stub_and_gateway(stub_port: int, gw_port: int, key: str, model: str) -> None:
    """One request each way and mode before measuring: 200s, and the same usage both ways."""
    for stream in (False, True):
        for port, k, m in ((stub_port, "x", MODEL), (gw_port, key, model)):
            status, body = asyncio.run(one(port, k, stream, m))
            if status != 200 or f'"completion_tokens":{COMPLETION_TOKENS}'.encode() not in body.replace(b" ", b""):
                raise RuntimeError(f"port {port} stream={stream}: {status} {body[:300]!r}")


def run_gateway(rendered, name: str, stub_port: int, seconds: float, tmp: Path) -> list[Cell]:
    from tests.e2e.servers import MASTER_KEY, gateway_for

    work = tmp / name
    work.mkdir()
    g = gateway_for(variant_of(rendered, name), stub_port, work, rendered_workers=True)
    g.timeout = 300
    t = time.time()
    g.start()
    try:
        started = tree_cpu_seconds(g.proc.pid)  # what a (re)start costs: a recycled worker pays it again
        print(f"LiteLLM {name}: ready in {time.time() - t:.0f} s, start-up CPU {started:.1f} s", flush=True)
        model = rendered.litellm_config["model_list"][0]["model_name"]
        check_stub_and_gateway(stub_port, g.port, MASTER_KEY, model)
        time.sleep(2)  # start-up work settles before the idle CPU is read
        cpu0 = tree_cpu_seconds(g.proc.pid)
        time.sleep(2)
        print(f"  {name}: idle CPU {(tree_cpu_seconds(g.proc.pid) - cpu0) / 2 * 1000:.0f} ms/s", flush=True)
        return measure(name, g.port, MASTER_KEY, g.proc.pid, seconds, model)
    finally:
        g.stop()


def run_nginx(rendered, stub_port: int, seconds: float, tmp: Path) -> list[Cell]:
    from tests.e2e.test_frontdoor import start_nginx

    door = {m["kind"]: m for m in rendered.manifests if m["metadata"]["name"] == "gateway-frontdoor"}
    cm, dep = door["ConfigMap"], door["Deployment"]
    command = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    ng = start_nginx(cm["data"]["nginx.conf"], command, stub_port, tmp / "nginx")
    try:
        return measure("nginx", ng.port, "x", ng.proc.pid, seconds)
    finally:
        ng.stop()


# Runs LiteLLM's CLI in its own process with a profiler that SIGUSR1 starts (after the start-up
# imports) and SIGUSR2 stops and writes (uvicorn owns SIGINT/SIGTERM and the exit path).
PROFILER = """
import cProfile, runpy, signal, sys, time
out, sys.argv = sys.argv[1], sys.argv[2:]
prof = cProfile.Profile(time.process_time)  # CPU time: a busy machine's waits are not the gateway's
def dump(*_):
    prof.disable()
    prof.dump_stats(out)
signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
signal.signal(signal.SIGUSR2, dump)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def profile_gateway(rendered, stub_port: int, seconds: float, tmp: Path, top: int = 30) -> None:
    """Where a one-worker gateway spends its CPU under plain load: cProfile, top functions by own time."""
    import io
    import pstats
    import signal

    from tests.e2e.servers import E2E, MASTER_KEY, gateway_for

    work, prof = tmp / "profile", Path(tempfile.gettempdir()) / "gateway_cost.prof"
    prof.unlink(missing_ok=True)
    work.mkdir()
    g = gateway_for(variant_of(rendered, "1-worker"), stub_port, work, rendered_workers=True)
    g.argv = [str(E2E / "litellm" / "bin" / "python"), "-c", PROFILER, str(prof), *g.argv]
    g.timeout = 300
    g.start()
    try:
        model = rendered.litellm_config["model_list"][0]["model_name"]
        asyncio.run(closed_loop(g.port, MASTER_KEY, False, 4, 2, model))  # warm
        os.kill(g.proc.pid, signal.SIGUSR1)
        run = asyncio.run(closed_loop(g.port, MASTER_KEY, False, 16, seconds, model))
        print(f"profiled: {len(run.latencies)} plain requests at concurrency 16", flush=True)
        os.kill(g.proc.pid, signal.SIGUSR2)
        for _ in range(300):
            if prof.exists() and prof.stat().st_size:
                break
            time.sleep(0.1)
        time.sleep(1)
    finally:
        g.stop()
    out = io.StringIO()
    stats = pstats.Stats(str(prof), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    print(out.getvalue())
    print(f"profile kept: {prof} (python -m pstats {prof})")


def main() -> None:
    global COMPLETION_TOKENS
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--tokens", type=int, default=COMPLETION_TOKENS, help="content chunks per streamed answer")
    ap.add_argument("--variants", default="rendered", help=f"comma-separated, of: {','.join(VARIANTS)}")
    ap.add_argument("--profile", action="store_true", help="cProfile a one-worker gateway instead")
    ap.add_argument("--stub", type=int, help=argparse.SUPPRESS)  # run only the stub on this port
    a = ap.parse_args()
    if a.stub:
        run_stub(a.stub)
        return
    from tests.e2e.servers import render_stack

    names = a.variants.split(",")
    if unknown := set(names) - set(VARIANTS):
        sys.exit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    seconds = min(a.seconds, 10)
    COMPLETION_TOKENS = a.tokens  # the stub process gets it through its environment
    stub, port = start_stub()
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            rendered = render_stack(tmp / "plan")
            if a.profile:
                profile_gateway(rendered, port, seconds, tmp)
                return
            print(f"stub on {port}; {seconds:.0f} s per cell; concurrency {CONCURRENCY}", flush=True)
            cells = measure("direct", port, "x", stub.pid, seconds)
            cells += run_nginx(rendered, port, seconds, tmp)
            for name in names:
                cells += run_gateway(rendered, name, port, seconds, tmp)
            print("\nadded over direct (same mode and concurrency); CPU of the proxy's process tree")
            print(table(cells))
    finally:
        os.killpg(stub.pid, 15)
        stub.wait(10)


if __name__ == "__main__":
    main()
