"""A real Prometheus (Debian's `prometheus` package) for the e2e suite.

`Prometheus(workdir).start(jobs, rule_files)` writes a scrape config for the given loopback targets,
starts the server on a free port with its own TSDB directory under `workdir`, and waits until it is
ready. `.query(expr)` evaluates an instant query through the HTTP API (`/api/v1/query`) and raises on
an error status; `.wait_until(expr, predicate, timeout)` polls it. Every wait is bounded; `.stop()`
ends the process it started (by its process group id).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stacks.yamlio import dump_yaml
from tests.e2e.servers import free_port, stop

PROMETHEUS_BIN = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL_BIN = os.environ.get("PROMTOOL_BIN") or shutil.which("promtool") or "/usr/bin/promtool"


class PromQLError(RuntimeError):
    """The server answered a query with an error status (bad expression, unknown function, ...)."""


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    targets: list[str]  # "host:port"
    metrics_path: str = "/metrics"
    bearer_token: str | None = None
    interval_s: float = 1
    # Target labels the Kubernetes discovery would attach (namespace, pod, container, endpoint).
    labels: dict[str, str] = field(default_factory=dict)


def scrape_config(jobs: Sequence[ScrapeJob], rule_files: Iterable[Path] = ()) -> dict:
    """The prometheus.yml for `jobs`: one static job per entry, rules evaluated every second."""
    scrape = []
    for j in jobs:
        entry: dict = {
            "job_name": j.name,
            "metrics_path": j.metrics_path,
            "scrape_interval": f"{int(j.interval_s * 1000)}ms",
            "scrape_timeout": f"{int(j.interval_s * 1000)}ms",
            "static_configs": [{"targets": list(j.targets), **({"labels": dict(j.labels)} if j.labels else {})}],
        }
        if j.bearer_token is not None:
            entry["authorization"] = {"type": "Bearer", "credentials": j.bearer_token}
        scrape.append(entry)
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": scrape,
    }


class Prometheus:
    def __init__(self, workdir: Path, start_timeout: float = 120):
        self.workdir = Path(workdir)
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "prometheus.log"
        self.retried = 0  # API calls sent again after a timeout (see _get)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, jobs: Sequence[ScrapeJob], rule_files: Iterable[Path] = ()) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(dump_yaml(scrape_config(jobs, rule_files), sort_keys=False))
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        self.port = free_port()
        argv = [
            PROMETHEUS_BIN,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        end = time.time() + self.start_timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"prometheus not ready in {self.start_timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    def _get(self, path: str, params: dict | None = None, timeout: float = 30, budget: float = 240) -> dict:
        """One API call. A read is idempotent, so a call that times out or loses its connection (the
        server starved of CPU while vLLM saturates the shared cores: measured once in CI, a 30 s
        timeout) is sent again until `budget` seconds have passed; an error status raises at once."""
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        end = time.monotonic() + budget
        while True:
            try:
                body = self._read(url, timeout)
                break
            except (TimeoutError, ConnectionError, urllib.error.URLError) as e:
                if isinstance(e, urllib.error.HTTPError) or time.monotonic() > end:
                    raise
                if self.proc is not None and self.proc.poll() is not None:
                    log = self.log.read_text()[-3000:]
                    raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {log}") from e
                self.retried += 1
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    @staticmethod
    def _read(url: str, timeout: float) -> dict:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return json.loads(r.read().decode())
        except urllib.error.HTTPError as e:  # the API's error statuses carry a JSON body
            return json.loads(e.read().decode() or "{}")

    def query(self, expr: str) -> list[dict]:
        """Instant vector (or scalar wrapped in a one-element list) for `expr` at now."""
        data = self._get("/api/v1/query", {"query": expr})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets")["activeTargets"]

    def rules(self) -> list[dict]:
        """Rule groups as loaded and last evaluated (each rule has `health` and `lastError`)."""
        return self._get("/api/v1/rules")["groups"]

    def label_values(self, label: str, match: str) -> list[str]:
        """What Grafana's `label_values(match, label)` template query returns."""
        return self._get(f"/api/v1/label/{label}/values", {"match[]": match})

    def wait_until(
        self, expr: str, predicate: Callable[[list[dict]], bool] = bool, timeout: float = 120, every: float = 0.5
    ) -> list[dict]:
        """Poll `expr` until `predicate(result)` holds; return that result. Query errors raise at once."""
        end = time.time() + timeout
        last: list[dict] = []
        while time.time() < end:
            last = self.query(expr)
            if predicate(last):
                return last
            time.sleep(every)
        raise TimeoutError(f"{expr!r} did not satisfy the predicate in {timeout:.0f}s; last result: {last}")

    def wait_targets_up(self, timeout: float = 120) -> None:
        """Every configured target scraped successfully at least once."""
        end, ts = time.time() + timeout, []
        while time.time() < end:
            ts = self.targets()
            if ts and all(t["health"] == "up" for t in ts):
                return
            time.sleep(0.5)
        state = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in ts]
        raise TimeoutError(f"targets not all up in {timeout:.0f}s: {state}")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def values(result: list[dict]) -> list[float]:
    """The sample values of an instant-query result."""
    return [float(r["value"][1]) for r in result]


# ---- the PromQL a rendered stack ships, and how much of it this machine can evaluate -----------------------

# Where a metric comes from, by name. `up` is the scraper's own series about each target.
SOURCES = (
    ("vllm:", "vllm"),
    ("litellm_", "litellm"),
    ("kube_", "kube-state-metrics"),
    ("karpenter_", "karpenter"),
    ("DCGM_", "dcgm"),
    ("neuron", "neuron"),
    ("up", "scrape"),
)
# Exporters that cannot run on this machine, with the reason. Only these may be skipped: vLLM,
# LiteLLM and the scrape itself are real here (tests/e2e/test_prometheus.py checks this table).
NOT_EVALUABLE_HERE = {
    "kube-state-metrics": "no Kubernetes API server here: kube-state-metrics has no Deployments or Pods to export",
    "karpenter": "no cluster and no EC2 here: the Karpenter controller does not run",
    "dcgm": "no NVIDIA GPU here: the DCGM exporter needs one",
    "neuron": "no Neuron device here: neuron-monitor needs one",
}


def source_of(metric: str) -> str:
    for prefix, src in SOURCES:
        if metric == prefix or (prefix != "up" and metric.startswith(prefix)):
            return src
    raise ValueError(f"{metric}: no known exporter exports this name")


_TOKEN = re.compile(
    r"\s+|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|\{[^}]*\}|\[[^\]]*\]|[A-Za-z_:][A-Za-z0-9_:]*"
    r"|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|==|!=|>=|<=|=~|!~|[-+*/%^(),<>=]"
)
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_COMPARISONS = {"==", "!=", ">=", "<=", ">", "<"}


def tokens(expr: str) -> list[str]:
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot tokenize {expr[pos : pos + 20]!r} in {expr!r}")
        if not m.group().isspace():
            out.append(m.group())
        pos = m.end()
    return out


def selectors(expr: str) -> list[str]:
    """The instant-vector selectors (`name{matchers}`) an expression reads, functions and label lists aside."""
    t, out, i = tokens(expr), [], 0
    while i < len(t):
        tok = t[i]
        nxt = t[i + 1] if i + 1 < len(t) else ""
        if tok in _LABEL_LISTS and nxt == "(":
            i = t.index(")", i) + 1
            continue
        # A name followed by `(` is a function; by `by`/`without`, an aggregation.
        if (
            re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", tok)
            and tok not in _KEYWORDS
            and nxt not in ("(", "by", "without")
        ):
            out.append(tok + (nxt if nxt.startswith("{") else ""))
        i += 1
    return out


def as_bool(expr: str) -> str:
    """Every comparison with the `bool` modifier: 0/1 instead of a filter, so the result is non-empty
    whenever the compared series exist, firing or not."""
    t, out = tokens(expr), []
    for i, tok in enumerate(t):
        out.append(tok)
        if tok in _COMPARISONS and (t[i + 1] if i + 1 < len(t) else "") != "bool":
            out.append("bool")
    return " ".join(out)


@dataclass(frozen=True)
class Shipped:
    origin: str  # "PrometheusRule llm-serving: LLMKVCacheHigh", "dashboard llm-gateway: panel 3 A", ...
    expr: str


def shipped_expressions(manifests: list[dict]) -> list[Shipped]:
    """Every PromQL expression in the rendered objects, collected by kind: PrometheusRule rules,
    Grafana dashboard ConfigMaps (panel targets and template-variable queries), KEDA ScaledObject
    prometheus triggers."""
    out: list[Shipped] = []
    for m in manifests:
        kind, name = m["kind"], m["metadata"]["name"]
        if kind == "PrometheusRule":
            for g in m["spec"]["groups"]:
                for r in g["rules"]:
                    out.append(Shipped(f"{kind} {name}: {g['name']}: {r.get('alert') or r.get('record')}", r["expr"]))
        elif kind == "ConfigMap" and (m["metadata"].get("labels") or {}).get("grafana_dashboard"):
            for text in m["data"].values():
                out += dashboard_expressions(json.loads(text))
        elif kind == "ScaledObject":
            for i, trig in enumerate(m["spec"].get("triggers") or []):
                if trig.get("type") == "prometheus":
                    out.append(Shipped(f"{kind} {name}: trigger {i}", trig["metadata"]["query"]))
    return out


def dashboard_expressions(d: dict) -> list[Shipped]:
    out = []
    for p in d.get("panels") or []:
        for t in p.get("targets") or []:
            out.append(Shipped(f"dashboard {d['uid']}: {p['title']}: {t['refId']}", t["expr"]))
    for v in (d.get("templating") or {}).get("list") or []:
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)", q)
            out.append(Shipped(f"dashboard {d['uid']}: variable ${v['name']}", m.group(1) if m else q))
    return out
