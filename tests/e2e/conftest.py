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
def vllm_session(rendered, tiny_model, tmp_path_factory):
    s = vllm_server_for(rendered, tiny_model, tmp_path_factory.mktemp("logs") / "vllm.log")
    s.start()
    s.argv.append(EAGER)  # the tests that restart it (drain, recovery) need no second compile
    yield s
    s.stop()


@pytest.fixture(scope="module")
def vllm_server(vllm_session):
    """The session's engine, running: a test that stopped it (the drain) does not start it again, the
    next module that needs it does. Run last (below), the drain module then costs no restart."""
    if vllm_session.proc.poll() is not None:
        vllm_session.start()
    return vllm_session


@pytest.fixture(scope="session")
def gateway_session(rendered, vllm_session, tmp_path_factory):
    s = gateway_for(rendered, vllm_session.port, tmp_path_factory.mktemp("litellm"))
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def gateway(gateway_session, vllm_server):
    """The session's gateway, with its engine running (vllm_server)."""
    return gateway_session


# Modules that stop the session's engine and leave it stopped: each worker runs them after the rest.
STOPS_THE_ENGINE = ("test_drain.py",)


@pytest.hookimpl(trylast=True)  # after tests/conftest.py's own order (slow fixtures first)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name in STOPS_THE_ENGINE)
