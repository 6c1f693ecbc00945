"""The scraper's key against the real LiteLLM 1.106.12: `/metrics` and nothing else.

The gateway runs the rendered config and auth hook of the session's stack (tests/e2e/servers.py); its
key table is rendered by components.team_keys.render_key_table with a fixed test metrics key and one
team key. No vLLM is started: every model route the metrics key tries must be refused before any
upstream is called, and the team key's chat only needs to pass authentication (a 5xx from the missing
upstream is not a 401/403)."""

from __future__ import annotations

import pytest

from components.team_keys import KeyGrant, render_key_table
from tests.e2e.servers import MASTER_KEY, free_port, gateway_for, http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

METRICS_KEY = "sk-e2e-metrics-0123456789abcdef"
TEAM_KEY = "sk-e2e-team-0123456789abcdef"
REFUSED = {401, 403}


@pytest.fixture(scope="module")
def base(rendered, tmp_path_factory, e2e_ready):
    workdir = tmp_path_factory.mktemp("metrics-gw")
    s = gateway_for(rendered, free_port(), workdir)  # a port nothing listens on: no upstream
    grant = KeyGrant("search-ci", "search", (rendered.litellm_config["model_list"][0]["model_name"],))
    (workdir / "keys.json").write_text(render_key_table([TEAM_KEY], (grant,), METRICS_KEY))
    s.start()
    yield f"http://127.0.0.1:{s.port}"
    s.stop()


def test_metrics_key_scrapes_metrics(base):
    status, text = http("GET", f"{base}/metrics", key=METRICS_KEY)
    assert status == 200, text
    assert "# TYPE" in text  # Prometheus exposition, not an error page


def test_without_a_key_metrics_is_refused(base):
    """Negative control: /metrics does need a key, so the 200 above is the metrics key's doing."""
    assert http("GET", f"{base}/metrics")[0] == 401
    assert http("GET", f"{base}/metrics", key="sk-not-a-key")[0] == 401


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/v1/models", None),
        ("GET", "/models", None),
        ("POST", "/v1/chat/completions", {"model": "qwen3-0.6b", "messages": [{"role": "user", "content": "hi"}]}),
        ("POST", "/v1/completions", {"model": "qwen3-0.6b", "prompt": "hi"}),
        ("POST", "/v1/embeddings", {"model": "qwen3-0.6b", "input": "hi"}),
        ("POST", "/key/generate", {}),
        ("GET", "/key/info", None),
        ("POST", "/team/new", {"team_alias": "x"}),
        ("GET", "/team/list", None),
        ("POST", "/user/new", {}),
        ("GET", "/model/info", None),
        ("GET", "/v1/model/info", None),
        ("GET", "/global/spend/logs", None),
        ("GET", "/spend/logs", None),
        ("POST", "/config/update", {}),
    ],
)
def test_metrics_key_is_refused_every_other_route(base, method, path, body):
    status, text = http(method, f"{base}{path}", body, key=METRICS_KEY)
    assert status in REFUSED, (status, text[:300])


def test_master_key_unchanged(base):
    assert http("GET", f"{base}/metrics", key=MASTER_KEY)[0] == 200
    status, text = http("GET", f"{base}/v1/models", key=MASTER_KEY)
    assert status == 200, text


def test_team_key_still_authenticates(base):
    """The table's new field does not change a team key: its model list is served to it."""
    status, text = http("GET", f"{base}/v1/models", key=TEAM_KEY)
    assert status == 200, text
    assert "qwen3-0.6b" in text
