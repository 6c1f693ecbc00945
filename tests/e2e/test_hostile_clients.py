"""The front door under hostile clients, for real: Debian's nginx runs the rendered nginx.conf in front of
the real LiteLLM 1.106.12 (rendered gateway config, 2 workers as in the pod), substituted as in
tests/e2e/test_frontdoor.py.

One run, three phases: a quiet baseline of authenticated chat requests; the same authenticated load
while 50 unauthenticated clients each push a 32 MiB body at the same time (half with a Content-Length,
half chunked) and 20 more send a well-formed but unknown key with a 3 MiB body (under the cap, so only
the key check stops it); then checks. What must hold: every hostile request gets 413 or 401, LiteLLM's
process tree stays under half the container's memory limit (read from the rendered Deployment) with
the same processes as before, and every authenticated request succeeds. Latencies are printed, not
asserted (a shared machine); benchmarks/hostile_load.py holds the "p99 within 2x of quiet" target.

Each client uses its own loopback source address (127.0.0.0/8), as distinct clients would: the
per-address limits of the front door then apply per client, as they are meant to.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.servers import LITELLM_BIN, MASTER_KEY, Server, gateway_for, render_stack
from tests.e2e.test_frontdoor import NGINX, _Vllm, need, start_nginx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
MiB = 1 << 20
HOSTILE = 50
HOSTILE_BODY = 32 * MiB
WRONG_KEY_CLIENTS = 20
WRONG_KEY_BODY = 3 * MiB
AUTH_CLIENTS = 4
AUTH_REQUESTS = 20  # per client and phase
WAVE = HOSTILE + WRONG_KEY_CLIENTS
MAX_WAVES = 40
HOLD = "hold this request"
CHUNK = 256 * 1024
UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


def quantity_bytes(q: str) -> int:
    """A Kubernetes memory quantity with a binary suffix (what the rendered limits use)."""
    for suffix, factor in UNITS.items():
        if q.endswith(suffix):
            return int(q[: -len(suffix)]) * factor
    return int(q)


def tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc/<pid>/task/*/children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for t in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in t.read_text().split()]
            except OSError:
                continue
    return out


def summed(pids: list[int], path: str, field: str) -> int:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/{path}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def rss_bytes(pids: list[int]) -> int:
    return summed(pids, "status", "VmRSS:")


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size: a page shared by the processes counts once over the tree (as the
    container's memory cgroup charges it), where summed RSS counts it in every process."""
    return summed(pids, "smaps_rollup", "Pss:")


class PeakRss:
    """Samples the process tree's summed RSS and PSS until stopped; keeps the peaks."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.peak_pss, self.samples = pid, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            pids = tree(self.pid)
            self.peak = max(self.peak, rss_bytes(pids))
            self.peak_pss = max(self.peak_pss, pss_bytes(pids))
            self.samples += 1
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)


def hostile_request(port: int, source: str, *, body: int, chunked: bool, key: str | None) -> str:
    """Send headers, then the body in chunks until nginx answers; return the status (or what broke)."""
    head = ["POST /v1/chat/completions HTTP/1.1", "Host: gateway", "Content-Type: application/json"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {body}")
    if key:
        head.append(f"Authorization: Bearer {key}")
    s = socket.create_connection(("127.0.0.1", port), timeout=120, source_address=(source, 0))
    try:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        block = b"[" + b"{}," * (CHUNK // 3 - 1) + b"{}"
        sent = 0
        while sent < body:
            s.settimeout(0)
            try:
                if s.recv(1, socket.MSG_PEEK):
                    break  # nginx answered before the whole body: stop pushing, read it
            except BlockingIOError:
                pass
            s.settimeout(120)
            piece = block[: body - sent]
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent += len(piece)
        else:
            s.sendall(b"0\r\n\r\n" if chunked else b"")
        s.settimeout(120)
        line = s.makefile("rb").readline().decode(errors="replace")
        return line.split()[1] if line.startswith("HTTP/1.1 ") else f"no status: {line!r}"
    except OSError as e:
        return f"{type(e).__name__}"
    finally:
        s.close()


def chat(port: int, source: str, model: str, prompt: str = "hi") -> tuple[int, float]:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 4})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300, source_address=(source, 0))
    t0 = time.perf_counter()
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            body,
            {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
        )
        r = conn.getresponse()
        r.read()
        return r.status, time.perf_counter() - t0
    finally:
        conn.close()


def authenticated_load(port: int, model: str, n: int = AUTH_REQUESTS) -> list[tuple[int, float]]:
    def client(i: int) -> list[tuple[int, float]]:
        return [chat(port, f"127.0.1.{i + 1}", model) for _ in range(n)]

    with ThreadPoolExecutor(AUTH_CLIENTS) as pool:
        return [r for rs in pool.map(client, range(AUTH_CLIENTS)) for r in rs]


def hostile_wave(port: int) -> list[str]:
    jobs = [
        {"body": HOSTILE_BODY, "chunked": i % 2 == 1, "key": None, "source": f"127.0.2.{i + 1}"} for i in range(HOSTILE)
    ]
    jobs += [
        {"body": WRONG_KEY_BODY, "chunked": False, "key": "sk-not-a-key", "source": f"127.0.3.{i + 1}"}
        for i in range(WRONG_KEY_CLIENTS)
    ]
    start = threading.Barrier(len(jobs))

    def run(j: dict) -> str:
        start.wait(60)
        return hostile_request(port, j["source"], body=j["body"], chunked=j["chunked"], key=j["key"])

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def hostile_waves(port: int, stop: threading.Event) -> list[str]:
    """Waves back to back until `stop` (at most MAX_WAVES): the keyed load runs under attack throughout."""
    out: list[str] = []
    for _ in range(MAX_WAVES):
        out += hostile_wave(port)
        if stop.is_set():
            break
    return out


def quantiles(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49], q[98]


class _HeldVllm(_Vllm):
    """The stub vLLM, except that a request whose prompt is HOLD waits until `release` is set."""

    release = threading.Event()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if any(m.get("content") == HOLD for m in body.get("messages", [])):
            self.release.wait(300)
        message = {"role": "assistant", "content": "hi"}
        self._send(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "stub"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


@contextmanager
def front_door(work: Path) -> Iterator[dict]:
    """The stub vLLM, the real LiteLLM and the real nginx, configured from the rendered dev-like stack."""
    rendered = render_stack(work / "plan")
    by_name = {(m["kind"], m["metadata"]["name"]): m for m in rendered.manifests}
    cm, dep = by_name[("ConfigMap", "gateway-frontdoor")], by_name[("Deployment", "gateway-frontdoor")]
    stub = ThreadingHTTPServer(("127.0.0.1", 0), _HeldVllm)
    stub.request_queue_size = 512  # many held connections from LiteLLM at once
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    (work / "litellm").mkdir()
    gw: Server = gateway_for(rendered, stub.server_address[1], work / "litellm", rendered_workers=True)
    gw.timeout = 300
    try:
        gw.start()
        command = dep["spec"]["template"]["spec"]["containers"][0]["command"]
        ng = start_nginx(cm["data"]["nginx.conf"], command, gw.port, work / "nginx")
        try:
            yield {
                "port": ng.port,
                "gateway": gw,
                "model": rendered.litellm_config["model_list"][0]["model_name"],
                "limit": rendered.litellm_container["resources"]["limits"]["memory"],
                "conf": cm["data"]["nginx.conf"],
                "log": work / "nginx" / "nginx.log",
            }
        finally:
            ng.stop()
    finally:
        gw.stop()
        stub.shutdown()


@dataclass
class Run:
    warm: list[tuple[int, float]]
    quiet: list[tuple[int, float]]
    loaded: list[tuple[int, float]]
    statuses: list[str]
    procs_before: list[int]
    procs_after: list[int]
    rss_before: int
    pss_before: int
    peak: PeakRss

    def p50_p99(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return quantiles([t for _, t in self.quiet]), quantiles([t for _, t in self.loaded])


def hostile_run(door: dict, requests: int = AUTH_REQUESTS) -> Run:
    port, model, pid = door["port"], door["model"], door["gateway"].proc.pid
    warm = authenticated_load(port, model, 3)  # each worker's first requests import and build lazily
    quiet = authenticated_load(port, model, requests)
    procs_before = sorted(tree(pid))
    rss_before, pss_before = rss_bytes(procs_before), pss_bytes(procs_before)
    stop = threading.Event()
    with PeakRss(pid) as peak, ThreadPoolExecutor(1) as bg:
        hostile = bg.submit(hostile_waves, port, stop)
        try:
            loaded = authenticated_load(port, model, requests)
        finally:
            stop.set()
        statuses = hostile.result(timeout=600)
    return Run(warm, quiet, loaded, statuses, procs_before, sorted(tree(pid)), rss_before, pss_before, peak)


def summary(run: Run, limit: str) -> str:
    (q50, q99), (l50, l99) = run.p50_p99()
    counts = {s: run.statuses.count(s) for s in sorted(set(run.statuses))}
    return (
        f"LiteLLM tree ({len(run.procs_before)} processes): RSS {run.rss_before / MiB:.0f} MiB before, peak "
        f"{run.peak.peak / MiB:.0f} MiB; PSS {run.pss_before / MiB:.0f} MiB before, peak "
        f"{run.peak.peak_pss / MiB:.0f} MiB ({run.peak.samples} samples); container limit {limit}\n"
        f"hostile requests ({len(run.statuses) // WAVE} waves of {WAVE}): {counts}\n"
        f"keyed chat p50/p99 over {len(run.quiet)} requests: quiet {q50 * 1000:.0f}/{q99 * 1000:.0f} ms, "
        f"under attack {l50 * 1000:.0f}/{l99 * 1000:.0f} ms (p99 ratio {l99 / q99:.2f})"
    )


@pytest.fixture(scope="module")
def door(tmp_path_factory):
    need(str(LITELLM_BIN), "LiteLLM")
    need(NGINX, "nginx (Debian nginx-light)")
    with front_door(tmp_path_factory.mktemp("hostile")) as d:
        yield d


def test_hostile_bodies_never_reach_litellm_and_keyed_clients_are_served(door):
    run = hostile_run(door)
    print("\n" + summary(run, door["limit"]))
    budget = quantity_bytes(door["limit"]) // 2
    assert run.peak.samples > 0 and run.rss_before > 50 * MiB, "the sampler does not see LiteLLM"  # not vacuous
    waves = [run.statuses[i : i + WAVE] for i in range(0, len(run.statuses), WAVE)]
    assert waves and all(len(w) == WAVE for w in waves)
    for w in waves:
        assert set(w[:HOSTILE]) <= {"413", "401"}, w[:HOSTILE]
        assert set(w[HOSTILE:]) == {"401"}, w[HOSTILE:]  # a well-formed unknown key: LiteLLM said no, bodiless
    # The attack adds no more than buffers (one 32 MiB body parsed by LiteLLM costs it ~2.4 GB).
    assert run.peak.peak - run.rss_before < 64 * MiB, f"RSS grew {(run.peak.peak - run.rss_before) / MiB:.0f} MiB"
    # Against the limit, PSS: summed RSS counts the workers' shared pages once per process.
    assert run.peak.peak_pss < budget, f"PSS peak {run.peak.peak_pss / MiB:.0f} MiB >= {budget / MiB:.0f} MiB"
    assert run.procs_after == run.procs_before, "a LiteLLM process was replaced"
    assert [s for s, _ in run.warm + run.quiet + run.loaded] == [200] * ((3 + 2 * AUTH_REQUESTS) * AUTH_CLIENTS)


def test_one_client_past_its_limits_gets_429_and_others_are_served(door):
    """One address opens more requests than its connection limit, all held open upstream: the excess is
    429 at once (nginx's log names the zone); another address is served meanwhile; released, the held
    ones complete."""
    port, model = door["port"], door["model"]
    conns = int(re.search(r"limit_conn client_conns (\d+);", door["conf"])[1])
    n = conns + 12
    with ThreadPoolExecutor(n) as pool:
        held = [pool.submit(chat, port, "127.0.4.1", model, HOLD) for _ in range(n)]
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                wait([f for f in held if not f.done()], timeout=5, return_when=FIRST_COMPLETED)
                if sum(f.result()[0] == 429 for f in held if f.done()) >= n - conns:
                    break
            other = chat(port, "127.0.4.2", model)
        finally:
            _HeldVllm.release.set()
        statuses = [f.result(timeout=300)[0] for f in held]
    _HeldVllm.release.clear()
    log = door["log"].read_text()
    zones = {z: log.count(f'by zone "{z}"') for z in ("client_conns", "client_rate")}
    print(f"\n{n} held requests from one address: {statuses.count(429)} x 429, {statuses.count(200)} x 200; {zones}")
    assert other[0] == 200  # per address, not per front door
    assert statuses.count(429) >= n - conns and statuses.count(200) + statuses.count(429) == n, statuses
    assert sum(zones.values()) >= n - conns, zones
