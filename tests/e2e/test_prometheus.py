"""Real Prometheus (Debian package) against real servers: the fixture itself, then every PromQL
expression the stack ships, evaluated on live vLLM and LiteLLM metrics."""

from __future__ import annotations

import http.server as http_server
import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.team_keys import render_key_table
from stacks.yamlio import dump_yaml
from tests.e2e.prometheus import (
    NOT_EVALUABLE_HERE,
    PROMETHEUS_BIN,
    PROMTOOL_BIN,
    Prometheus,
    PromQLError,
    ScrapeJob,
    Shipped,
    as_bool,
    selectors,
    shipped_expressions,
    source_of,
    values,
)
from tests.e2e.servers import MASTER_KEY, ROOT, Rendered, http, render_stack
from tests.support.shared import missing

# The session's servers start inside the first test that needs them (minutes on 2 shared cores).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

TOKEN = "e2e-scrape-token-0123"


@pytest.fixture(scope="module")
def prom_ready():
    if not Path(PROMETHEUS_BIN).exists():
        missing(f"{PROMETHEUS_BIN} not found", "run scripts/setup-e2e.sh (installs Debian's prometheus)")


class _Metrics(http_server.BaseHTTPRequestHandler):
    """A static exposition behind a bearer token, standing in for a server's /metrics."""

    def do_GET(self):
        ok = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        body = b"fixture_requests_total 7\n" if ok else b"unauthorized\n"
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def static_target():
    srv = http_server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_fixture_scrapes_with_bearer_token_and_raises_on_bad_promql(prom_ready, static_target, tmp_path):
    p = Prometheus(tmp_path).start(
        [ScrapeJob("good", [static_target], bearer_token=TOKEN), ScrapeJob("bad", [static_target], bearer_token="no")]
    )
    try:
        got = p.wait_until('fixture_requests_total{job="good"}', bool, timeout=60)
        assert values(got) == [7.0]
        # The wrong token is refused by the target: `up` is 0 for that job, and its series never appears.
        assert values(p.wait_until('up{job="bad"}', bool, timeout=60)) == [0.0]
        assert p.query('fixture_requests_total{job="bad"}') == []
        with pytest.raises(PromQLError):
            p.query("sum(rate(fixture_requests_total[1m])")  # unbalanced parenthesis
    finally:
        p.stop()
    assert p.proc is None


# ---- every PromQL expression the stack ships, on a real Prometheus scraping real vLLM and LiteLLM -------------

DEV = ROOT / "Pulumi.dev.yaml"
# Secrets the monitors reference, as the e2e servers hold them (servers.SUBSTITUTIONS: fixed test keys).
METRICS_KEY = "sk-e2e-metrics-0123456789abcdef"  # the scraper's key (its hash is in the gateway's table)
SECRET_VALUES = {("litellm", "master-key"): MASTER_KEY, ("litellm-metrics", "metrics-key"): METRICS_KEY}
DASHBOARD_RANGE = "1m"  # $__rate_interval as Grafana computes it for a 15 s scrape interval
SCRAPE_S = 2  # LiteLLM's multi-process /metrics takes ~1 s under load on 2 shared cores
V0_CONTROL = 'max by (model_name) (vllm:gpu_cache_usage_perc{model_name=~"$model"})'


@dataclass
class Scraped:
    prom: Prometheus
    dev: Rendered
    variables: dict[str, str]


def scrape_jobs(dev: Rendered, ports: dict[str, int]) -> list[ScrapeJob]:
    """One job per rendered PodMonitor whose pods run here (`ports`: Deployment name -> local port),
    with the labels the operator's discovery gives its targets and the bearer token from its Secret."""
    jobs = []
    deployments = {m["metadata"]["name"]: m for m in dev.manifests if m["kind"] == "Deployment"}
    for pm in (m for m in dev.manifests if m["kind"] == "PodMonitor"):
        sel = pm["spec"]["selector"]["matchLabels"]
        dep = next(
            d for d in deployments.values() if sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        )
        name = dep["metadata"]["name"]
        for ep in pm["spec"]["podMetricsEndpoints"]:
            container = next(
                c
                for c in dep["spec"]["template"]["spec"]["containers"]
                if any(p["name"] == ep["port"] for p in c["ports"])
            )
            auth = ep.get("authorization")
            token = SECRET_VALUES[(auth["credentials"]["name"], auth["credentials"]["key"])] if auth else None
            ns = pm["metadata"]["namespace"]
            labels = {"namespace": ns, "pod": f"{name}-0", "container": container["name"], "endpoint": ep["port"]}
            target = [f"127.0.0.1:{ports[name]}"]
            jobs.append(ScrapeJob(f"{ns}/{pm['metadata']['name']}", target, ep["path"], token, SCRAPE_S, labels))
    return jobs


def rule_file(manifests: list[dict], path: Path) -> Path:
    """Every rendered PrometheusRule's groups as one Prometheus rule file."""
    groups = [g for m in manifests if m["kind"] == "PrometheusRule" for g in m["spec"]["groups"]]
    path.write_text(dump_yaml({"groups": groups}, sort_keys=False))
    return path


def chat(port: int, body: dict) -> int:
    return http("POST", f"http://127.0.0.1:{port}/v1/chat/completions", body, key=MASTER_KEY, timeout=120)[0]


@pytest.fixture(scope="module")
def scraped(prom_ready, vllm_server, gateway, rendered, tmp_path_factory):
    """Dev's observability objects scraping the session's servers (seed004 and dev serve the same
    model under the same names: asserted), while traffic flows, a 4xx included."""
    dev = render_stack(tmp_path_factory.mktemp("dev"), DEV)
    assert dev.litellm_config["model_list"] == rendered.litellm_config["model_list"]
    model = dev.litellm_config["model_list"][0]["model_name"]
    deployments = [m["metadata"]["name"] for m in dev.manifests if m["kind"] == "Deployment"]
    ports = {d: (gateway.port if d == "litellm" else vllm_server.port) for d in deployments}
    # The session gateway's key table holds the scraper's key, as the rendered gateway's does.
    Path(gateway.env["LLM_SERVING_KEYS_FILE"]).write_text(render_key_table([], (), METRICS_KEY))
    work = tmp_path_factory.mktemp("prom")
    prom = Prometheus(work).start(scrape_jobs(dev, ports), [rule_file(dev.manifests, work / "rules.yaml")])
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            chat(gateway.port, {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})

    threads = [threading.Thread(target=traffic, daemon=True) for _ in range(2)]
    try:
        prom.wait_targets_up(90)
        for t in threads:
            t.start()
        assert chat(gateway.port, {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}) == 400
        # Counters moved between scrapes (rates exist), the 4xx is counted, the rules have run.
        prom.wait_until("sum(rate(vllm:request_success_total[1m])) > 0", timeout=180)
        prom.wait_until("sum(rate(litellm_proxy_total_requests_metric_total[1m])) > 0", timeout=180)
        prom.wait_until('litellm_proxy_total_requests_metric_total{status_code="400"}', timeout=120)
        prom.wait_until("vllm:time_to_first_token_seconds_count > 1", timeout=120)
        yield Scraped(prom, dev, {"$model": model, "$deployment": deployments[0]})
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(150)
        prom.stop()


def dashboard_form(expr: str, variables: dict[str, str]) -> str:
    """What Grafana sends for one selected value of each template variable ($model, ...)."""
    out = expr.replace("$__rate_interval", DASHBOARD_RANGE)
    for var, value in variables.items():
        out = out.replace(var, re.escape(value).replace("\\", "\\\\"))
    return out


# Label matchers whose series exist only after a rare event this run cannot cause, each with why.
# Such a selector passes when the metric exists and carries the label (the value is traffic's business).
DATA_DEPENDENT = {
    'status_code=~"5.."': "a gateway 5xx needs a failing upstream; LiteLLM 1.106.12 ignores a client's "
    "mock_response unless a database-backed key allows it",
}


def data_dependent(prom: Prometheus, sel: str) -> bool:
    for matcher in DATA_DEPENDENT:
        if matcher in sel:
            label = matcher.split("=")[0]
            relaxed = re.sub(r",?\s*" + re.escape(matcher), "", sel).replace("{,", "{").replace("{}", "")
            series = prom.query(relaxed)
            return bool(series) and all(label in r["metric"] for r in series)
    return False


def check(prom: Prometheus, shipped: list[Shipped], variables: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems, not evaluated here). Each expression must evaluate without error; each selector it
    reads from an exporter that runs here must return series; an expression reading only such
    exporters must return data as a whole (comparisons as `bool`, so a quiet alert still answers)."""
    problems, skipped = [], []
    for s in shipped:
        expr = dashboard_form(s.expr, variables)
        try:
            prom.query(expr)
        except PromQLError as e:
            problems.append(f"{s.origin}: {e}")
            continue
        sources = set()
        for sel in selectors(expr):
            src = source_of(sel.split("{")[0])
            sources.add(src)
            if src not in NOT_EVALUABLE_HERE and not prom.query(sel) and not data_dependent(prom, sel):
                problems.append(f"{s.origin}: {sel} returns no series (the server does not export it)")
        away = sorted(sources & set(NOT_EVALUABLE_HERE))
        if away:
            skipped.append(f"{s.origin}: reads {', '.join(away)} — {'; '.join(NOT_EVALUABLE_HERE[a] for a in away)}")
        elif not prom.query(as_bool(expr)):
            problems.append(f"{s.origin}: no data for {expr}")
    return problems, skipped


def test_every_shipped_expression_returns_data(scraped):
    shipped = shipped_expressions(scraped.dev.manifests)
    kinds = {s.origin.split(" ")[0] for s in shipped}
    assert {"PrometheusRule", "dashboard"} <= kinds, kinds
    problems, skipped = check(scraped.prom, shipped, scraped.variables)
    assert not problems, "\n".join(problems)
    evaluated = len(shipped) - len(skipped)
    print(f"\n{evaluated} of {len(shipped)} shipped expressions evaluated with data; not evaluable here:")
    print("\n".join(skipped))
    assert evaluated >= 35


def test_a_v0_metric_name_fails_the_check(scraped):
    """Negative controls: the V0 KV-cache name, a misspelt LiteLLM counter, a syntax error, a wrong model."""
    for origin, expr, variables in [
        ("V0 name", V0_CONTROL, scraped.variables),
        ("no _total", "sum(rate(litellm_proxy_total_requests_metric[1m]))", scraped.variables),
        ("syntax", "sum(rate(vllm:num_requests_running[1m])", scraped.variables),
        ("other model", V0_CONTROL.replace("gpu_cache", "kv_cache"), {"$model": "other"}),
        # The 5xx relaxation still needs the label: LiteLLM's failure counter has exception_status instead.
        ("no such label", 'sum(litellm_proxy_failed_requests_metric_total{status_code=~"5.."})', scraped.variables),
    ]:
        problems, _ = check(scraped.prom, [Shipped(origin, expr)], variables)
        assert problems and all(p.startswith(f"{origin}: ") for p in problems), (origin, problems)
    problems, _ = check(scraped.prom, [Shipped("V0", V0_CONTROL)], scraped.variables)
    assert 'V0: vllm:gpu_cache_usage_perc{model_name=~"qwen3\\\\-0\\\\.6b"} returns no series' in problems[0]
    # ...and the V1 name it replaces passes the same check.
    assert check(scraped.prom, [Shipped("V1", V0_CONTROL.replace("gpu_cache", "kv_cache"))], scraped.variables)[0] == []


def test_not_evaluable_list_names_only_exporters_absent_here():
    assert set(NOT_EVALUABLE_HERE) <= {"kube-state-metrics", "karpenter", "dcgm", "neuron"}
    assert not {"vllm", "litellm", "scrape"} & set(NOT_EVALUABLE_HERE)


def test_dashboard_variables_resolve_on_the_real_servers(scraped):
    """Grafana's `label_values(...)` for $model lists the served model (what the panels then filter on)."""
    found = {}
    for m in scraped.dev.manifests:
        if m["kind"] == "ConfigMap" and (m["metadata"].get("labels") or {}).get("grafana_dashboard"):
            for text in m["data"].values():
                for v in json.loads(text)["templating"]["list"]:
                    if v["type"] == "query":
                        match, label = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["query"]["query"]).groups()
                        if source_of(match.split("{")[0]) not in NOT_EVALUABLE_HERE:
                            found[v["name"]] = scraped.prom.label_values(label, match)
    assert found == {"model": [scraped.variables["$model"]]}


def test_rules_load_and_evaluate_on_the_real_prometheus(scraped):
    """The rendered rules, loaded by the real server: every rule evaluated without error."""
    want = sum(
        len(g["rules"]) for m in scraped.dev.manifests if m["kind"] == "PrometheusRule" for g in m["spec"]["groups"]
    )
    deadline = time.time() + 60
    while True:
        rules = [r for g in scraped.prom.rules() for r in g["rules"]]
        if all(r["health"] != "unknown" for r in rules) or time.time() > deadline:
            break
        time.sleep(1)
    assert len(rules) == want
    bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad


# dev and the seeds that ran with metrics and autoscaling (their rules follow their own models)
RULE_STACKS = [DEV, *sorted((ROOT / "stacks" / "examples").glob("Pulumi.seed00[23]-*.yaml"))]


@pytest.mark.parametrize("stack_file", RULE_STACKS, ids=lambda p: p.stem)
def test_promtool_checks_every_rendered_rule_file(prom_ready, tmp_path, stack_file):
    assert len(RULE_STACKS) == 3
    rendered = render_stack(tmp_path / "plan", stack_file)
    rules = [m for m in rendered.manifests if m["kind"] == "PrometheusRule"]
    assert rules
    for m in rules:
        f = tmp_path / f"{m['metadata']['name']}.yaml"
        f.write_text(dump_yaml({"groups": m["spec"]["groups"]}, sort_keys=False))
        r = subprocess.run([PROMTOOL_BIN, "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "SUCCESS" in r.stdout
    # Negative control: promtool rejects a rule with a broken expression.
    bad = tmp_path / "bad.yaml"
    bad.write_text(dump_yaml({"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(up"}]}]}))
    r = subprocess.run([PROMTOOL_BIN, "check", "rules", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
