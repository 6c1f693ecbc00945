"""Real Prometheus (Debian package) against real servers: the fixture itself, then every PromQL
expression the stack ships, evaluated on live vLLM and LiteLLM metrics."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from tests.e2e.prometheus import PROMETHEUS_BIN, Prometheus, PromQLError, ScrapeJob, values
from tests.support.shared import missing

pytestmark = pytest.mark.e2e

TOKEN = "e2e-scrape-token-0123"


@pytest.fixture(scope="module")
def prom_ready():
    if not Path(PROMETHEUS_BIN).exists():
        missing(f"{PROMETHEUS_BIN} not found", "run scripts/setup-e2e.sh (installs Debian's prometheus)")


class _Metrics(http.server.BaseHTTPRequestHandler):
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


@pytest.fixture(scope="module")
def static_target():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
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
