"""E2E fixtures: one real vLLM and one real LiteLLM per session, configured from the rendered plan
(tests/e2e/servers.py has the substitutions and the start/stop logic)."""

from __future__ import annotations

import os

import pytest

from tests.e2e.servers import (
    EAGER,
    LITELLM_BIN,
    VLLM_PY,
    Rendered,
    build_tiny_model,
    gateway_for,
    render_stack,
    vllm_server_for,
)


@pytest.fixture(scope="session")
def e2e_ready():
    missing = [p for p in (VLLM_PY, LITELLM_BIN) if not p.exists()]
    if missing:
        msg = f"e2e environment missing ({', '.join(map(str, missing))}): run scripts/setup-e2e.sh"
        if os.environ.get("E2E_REQUIRED"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> Rendered:
    return render_stack(tmp_path_factory.mktemp("plan"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, e2e_ready):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def vllm_server(rendered, tiny_model, tmp_path_factory):
    s = vllm_server_for(rendered, tiny_model, tmp_path_factory.mktemp("logs") / "vllm.log")
    s.start()
    s.argv.append(EAGER)  # the tests that restart it (drain, recovery) need no second compile
    yield s
    s.stop()


@pytest.fixture(scope="session")
def gateway(rendered, vllm_server, tmp_path_factory):
    s = gateway_for(rendered, vllm_server.port, tmp_path_factory.mktemp("litellm"))
    s.start()
    yield s
    s.stop()
