"""The autoscaling decision end to end, without Kubernetes: a real vLLM (CPU, the tiny model) with a small
max-num-seqs so requests queue, a real Prometheus scraping it, and the ScaledObject's own rendered
triggers (query + threshold) evaluated there. The replica count the HPA would set is computed by hand
from those values (AverageValue: ceil(value / threshold) per trigger, the largest, clamped to
[minReplicaCount, maxReplicaCount]); it rises while requests wait and falls back when the queue drains.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from stacks.capacity import scaling
from stacks.yamlio import dump_yaml
from tests.e2e.prometheus import PROMETHEUS_BIN, Prometheus, ScrapeJob, values
from tests.e2e.servers import VLLM_KEY, http, render_stack, vllm_server_for
from tests.support.shared import missing

# vLLM start (CPU), the load, the drain and the servers' stop share one module: roomy bounds.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SERVED = "scale-e2e"
SEQS = 2  # vLLM runs 2 requests at once; the rest wait
CLIENTS = 9  # so at saturation 2 run and up to 7 wait (fewer for a moment, while a client sends its next)
# The stack under test: autoscaling on, one model 1-4 replicas, 2 waiting requests per replica.
STACK = {
    "config": {
        "aws:region": "us-east-1",
        "llm-serving:observability": {"enabled": True},
        "llm-serving:autoscaling": {"enabled": True},
        "llm-serving:models": {
            "scale": {
                "preset": "qwen3-0.6b",
                "servedName": SERVED,
                "maxModelLen": 4096,
                "maxNumSeqs": SEQS,
                "replicas": {"min": 1, "max": 4, "targetWaiting": 2},
            }
        },
    }
}
# By hand: targetRunning = floor(0.75 x min(max concurrency, 2 seqs)) = floor(1.5) = 1, targetWaiting 2.
# Saturated: running 2 -> ceil(2/1) = 2; waiting 5 or 6 -> 3, 7 -> 4; the HPA takes the larger (within 1..4).
# Drained: 0 and 0 -> 0, clamped up to min 1.
# The first sample at 2 running and at least 5 waiting counts as saturated: waiting for one exact count
# (7 clients, 5 waiting) took 16-250 s of load in earlier runs, a client between two requests each time.
RUNNING, MIN_WAITING = 2.0, 5.0
WANT_SATURATED = {5.0: 3, 6.0: 3, 7.0: 4}  # by waiting requests
WANT_DRAINED = 1


def hpa_desired(vals: dict[str, float], thresholds: dict[str, float], lo: int, hi: int) -> int:
    """The HPA's rule for AverageValue external metrics, written out here (not the code under test)."""
    per_trigger = [math.ceil(vals[k] / thresholds[k]) for k in vals]
    return min(hi, max(lo, max(per_trigger)))


@pytest.fixture(scope="module")
def prom_ready():
    if not Path(PROMETHEUS_BIN).exists():
        missing(f"{PROMETHEUS_BIN} not found", "run scripts/setup-e2e.sh (installs Debian's prometheus)")


@pytest.fixture(scope="module")
def scaled(tmp_path_factory, e2e_ready, prom_ready):
    d = tmp_path_factory.mktemp("scale-plan")
    stack_file = d / "Pulumi.e2e-scale.yaml"
    stack_file.write_text(dump_yaml(STACK))
    return render_stack(d / "out", stack_file)


@pytest.fixture(scope="module")
def server(scaled, tiny_model, tmp_path_factory):
    s = vllm_server_for(scaled, tiny_model, tmp_path_factory.mktemp("scale-logs") / "vllm.log", eager=True)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def prom(scaled, server, tmp_path_factory):
    # The PodMonitor's target labels: the operator's discovery gives every target its pod's namespace.
    labels = {"namespace": namespace_of(scaled, "ScaledObject")}
    p = Prometheus(tmp_path_factory.mktemp("scale-prom")).start(
        [ScrapeJob("vllm", [f"127.0.0.1:{server.port}"], labels=labels)]
    )
    try:
        p.wait_targets_up(timeout=120)
        yield p
    finally:
        p.stop()


class Load:
    """CLIENTS threads, each sending one long completion after another until stopped."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/v1/completions"
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _run(self) -> None:
        body = {"model": SERVED, "prompt": "hello", "max_tokens": 200, "ignore_eos": True, "temperature": 0}
        while not self.stop.is_set():
            try:
                status, _ = http("POST", self.url, body, key=VLLM_KEY, timeout=300)
                if status != 200:
                    self.errors.append(f"HTTP {status}")
            except Exception as e:  # reported by the test
                self.errors.append(repr(e))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=300)


def namespace_of(rendered, kind: str, name: str | None = None) -> str:
    """The namespace of the rendered object of `kind` (and `name`)."""
    return next(
        m["metadata"]["namespace"]
        for m in rendered.manifests
        if m["kind"] == kind and name in (None, m["metadata"]["name"])
    )


def trigger_table(scaled) -> tuple[dict, dict, dict[str, float], int, int]:
    so = next(m for m in scaled.manifests if m["kind"] == "ScaledObject")
    spec = so["spec"]
    prom = {t["name"]: t["metadata"] for t in spec["triggers"] if t["type"] == "prometheus"}
    return (
        so,
        prom,
        {k: float(v["threshold"]) for k, v in prom.items()},
        spec["minReplicaCount"],
        spec["maxReplicaCount"],
    )


def sample(p: Prometheus, prom: dict) -> dict[str, float]:
    """Each trigger's own query, as KEDA runs it: one sample, or empty (KEDA: ignoreNullValues -> 0)."""
    out = {}
    for name, meta in prom.items():
        got = values(p.query(meta["query"]))
        assert len(got) <= 1, f"{name}: KEDA needs one sample, got {got}"
        out[name] = got[0] if got else 0.0
    return out


def test_rendered_scaled_object_is_what_the_hand_numbers_assume(scaled):
    so, prom, thresholds, lo, hi = trigger_table(scaled)
    assert so["spec"]["scaleTargetRef"]["name"] == "scale"
    assert set(prom) == {"running", "waiting"}
    assert thresholds == {"running": 1.0, "waiting": 2.0} and (lo, hi) == (1, 4)
    assert all(f'model_name="{SERVED}"' in m["query"] for m in prom.values())
    args = scaled.vllm_container["args"]
    assert args[args.index("--max-num-seqs") + 1] == str(SEQS)


def test_queue_on_real_vllm_drives_the_replica_count_up_and_back(scaled, server, prom):
    _, triggers, thresholds, lo, hi = trigger_table(scaled)
    seen: list[dict[str, float]] = []
    t0 = time.time()
    with Load(server.port) as load:
        end = time.time() + 240
        while time.time() < end:
            now = sample(prom, triggers)
            seen.append(now)
            if now["running"] == RUNNING and now["waiting"] >= MIN_WAITING:
                t_up = time.time() - t0
                break
            time.sleep(0.5)
        # Negative control while the queue is full: the same trigger on a V0 metric name (gone in V1)
        # reads nothing, and the formula would sit at min: a wrong name is caught, not silently inert.
        v0 = triggers["waiting"]["query"].replace(scaling.WAITING_METRIC, "vllm:num_requests_swapped")
        assert prom.query(v0) == []
        # And the namespace matcher is live: the same trigger for another stack's namespace reads nothing.
        other = triggers["waiting"]["query"].replace('namespace="models"', 'namespace="other-models"')
        assert other != triggers["waiting"]["query"] and prom.query(other) == []
        assert load.errors == [], load.errors[:3]
    saturated = seen[-1] if seen else {}
    assert saturated.get("waiting", 0) >= MIN_WAITING, f"never saturated; last samples {seen[-5:]}"
    assert saturated["running"] == RUNNING
    up = hpa_desired(saturated, thresholds, lo, hi)
    assert up == WANT_SATURATED[saturated["waiting"]]
    assert scaling.desired_replicas(saturated, thresholds, lo, hi) == up  # the module agrees with the rule
    # The waiting trigger decides here (3 > 2): without it the count would stay at 2.
    assert hpa_desired({"running": saturated["running"]}, thresholds, lo, hi) == 2

    drained = prom.wait_until(
        triggers["waiting"]["query"], lambda r: values(r) == [0.0], timeout=300
    )  # every client stopped, every request finished
    assert values(drained) == [0.0]
    now = prom.wait_until(triggers["running"]["query"], lambda r: values(r) == [0.0], timeout=300)
    assert values(now) == [0.0]
    assert hpa_desired(sample(prom, triggers), thresholds, lo, hi) == WANT_DRAINED
    print(
        f"\nautoscaling e2e: saturated {saturated} after {t_up:.1f}s ({len(seen)} samples) -> {up} replicas; "
        f"drained -> {WANT_DRAINED} after {time.time() - t0 - t_up:.1f}s more; "
        f"Prometheus calls retried after a timeout: {prom.retried}"
    )


# ---- scale to zero: the gateway's request counters wake the model -----------------------------------

ZERO_STACK = {
    "config": {
        "aws:region": "us-east-1",
        "llm-serving:observability": {"enabled": True},
        "llm-serving:autoscaling": {"enabled": True},
        "llm-serving:models": {
            "idle": {
                "preset": "qwen3-0.6b",
                "servedName": "idle-e2e",
                "replicas": {"min": 0, "max": 2, "scaleToZero": True},
            }
        },
    }
}


def keda_replicas(
    vals: dict[str, float], metas: dict[str, dict], thresholds: dict[str, float], lo: int, hi: int
) -> int:
    """KEDA with minReplicaCount 0: no trigger above its activationThreshold -> 0 replicas; otherwise
    the HPA's rule, at least 1."""
    if not any(vals[k] > float(metas[k]["activationThreshold"]) for k in vals):
        return 0
    return hpa_desired(vals, thresholds, max(lo, 1), hi)


def test_scale_to_zero_wakes_on_gateway_requests(tmp_path, e2e_ready, prom_ready):
    from tests.e2e.servers import MASTER_KEY, free_port, gateway_for

    stack_file = tmp_path / "Pulumi.e2e-zero.yaml"
    stack_file.write_text(dump_yaml(ZERO_STACK))
    rendered = render_stack(tmp_path / "out", stack_file)
    _, triggers, thresholds, lo, hi = trigger_table(rendered)
    assert (lo, hi) == (0, 2) and set(triggers) == {"running", "waiting", "wake"}
    (tmp_path / "gw").mkdir()
    # Zero replicas: the model's Service has no endpoint, so the gateway's upstream refuses connections.
    gw = gateway_for(rendered, free_port(), tmp_path / "gw").start()
    try:
        p = Prometheus(tmp_path / "prom").start(
            [
                ScrapeJob(
                    "litellm",
                    [f"127.0.0.1:{gw.port}"],
                    bearer_token=MASTER_KEY,
                    interval_s=2,
                    labels={"namespace": namespace_of(rendered, "Deployment", "litellm")},
                )
            ]
        )
        try:
            p.wait_targets_up(timeout=120)
            assert keda_replicas(sample(p, triggers), triggers, thresholds, lo, hi) == 0  # idle: stays at zero
            body = {"model": "idle-e2e", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
            status, _ = http(
                "POST", f"http://127.0.0.1:{gw.port}/v1/chat/completions", body, key=MASTER_KEY, timeout=120
            )
            assert status >= 500  # nothing serves it yet: the cold-start cost the plan shows
            woke = p.wait_until(triggers["wake"]["query"], lambda r: bool(values(r)) and values(r)[0] > 0, timeout=120)
            vals = {**sample(p, triggers), "wake": values(woke)[0]}
            assert keda_replicas(vals, triggers, thresholds, lo, hi) == 1
            print(f"\nscale to zero e2e: failed request -> wake {vals['wake']:.2f} -> 1 replica")
        finally:
            p.stop()
    finally:
        gw.stop()
