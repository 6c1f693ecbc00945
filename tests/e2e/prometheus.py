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
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

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


def scrape_config(jobs: Sequence[ScrapeJob], rule_files: Iterable[Path] = ()) -> dict:
    """The prometheus.yml for `jobs`: one static job per entry, rules evaluated every second."""
    scrape = []
    for j in jobs:
        entry: dict = {
            "job_name": j.name,
            "metrics_path": j.metrics_path,
            "scrape_interval": f"{int(j.interval_s * 1000)}ms",
            "scrape_timeout": f"{int(j.interval_s * 1000)}ms",
            "static_configs": [{"targets": list(j.targets)}],
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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, jobs: Sequence[ScrapeJob], rule_files: Iterable[Path] = ()) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(jobs, rule_files), sort_keys=False))
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

    def _get(self, path: str, params: dict | None = None, timeout: float = 30) -> dict:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                body = json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read().decode() or "{}")
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant vector (or scalar wrapped in a one-element list) for `expr` at now."""
        data = self._get("/api/v1/query", {"query": expr})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets")["activeTargets"]

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
