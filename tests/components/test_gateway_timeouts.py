"""Idle limits per hop on the way client → NLB → LiteLLM → vLLM, over every committed stack.

A non-streamed answer is silent until LiteLLM has it: up to (1 + retries) route timeouts when the
first replica times out. The NLB forgets a flow idle longer than its listener's
`tcp.idle_timeout.seconds` (60-6000), so the listener must wait at least that long; LiteLLM's
keep-alive must be shorter than it (a clean FIN, never a flow the NLB has forgotten) and longer than
the official clients keep an idle connection (httpx 5 s, undici 4 s, aiohttp 15 s).
Expected numbers are worked out by hand.
"""

import re

import pytest
import yaml

from components.litellm import nlb_idle_timeout_seconds, service_annotations
from components.types import Route
from tests.conftest import STACK_FILES

LBC_LISTENER = re.compile(r"service\.beta\.kubernetes\.io/aws-load-balancer-listener-attributes\.(TCP|TLS|UDP)-(\d+)")
CLIENT_POOL_IDLE_S = {"httpx (openai python)": 5, "undici (openai node)": 4, "aiohttp (open webui)": 15}


def route(timeout: int) -> Route:
    return Route("m", "m", "m.models.svc.cluster.local", 8000, timeout, 4096)


@pytest.mark.parametrize(
    ("timeouts", "want"),
    [
        ([600], 1230),  # 2 x 600 + 30
        ([900, 120], 1830),  # the longest route: 2 x 900 + 30
        ([10], 105),  # 2 x 10 + 30 = 50, but above the keep-alive: 75 + 30
        ([2985], 6000),  # 2 x 2985 + 30 = 6000, the NLB's maximum
        ([5000], 6000),  # clamped: above 6000 s only streamed answers outlive the listener
    ],
)
def test_nlb_idle_timeout_outlasts_a_silent_answer(timeouts, want):
    assert nlb_idle_timeout_seconds([route(t) for t in timeouts]) == want


def idle_problems(service: dict, litellm_config: dict, litellm_args: list[str]) -> list[str]:
    """What the AWS Load Balancer Controller and the NLB would make of the rendered gateway."""
    problems = []
    ports = {(p.get("protocol", "TCP"), p["port"]) for p in service["spec"]["ports"]}
    listeners = {k: v for k, v in service["metadata"]["annotations"].items() if "listener-attributes" in k}
    if len(listeners) != 1:
        return [f"expected one listener-attributes annotation, got {sorted(listeners)}"]
    ((key, value),) = listeners.items()
    m = LBC_LISTENER.fullmatch(key)
    if not m or (m[1], int(m[2])) not in ports:
        problems.append(f"{key} names no listener of the Service (ports {sorted(ports)})")
    attrs = dict(kv.split("=", 1) for kv in value.split(","))
    idle = int(attrs["tcp.idle_timeout.seconds"])
    if not 60 <= idle <= 6000:
        problems.append(f"idle {idle} outside the NLB's 60-6000")
    retries = litellm_config["router_settings"]["num_retries"]
    silent = (1 + retries) * max(m["litellm_params"]["timeout"] for m in litellm_config["model_list"])
    if idle < min(silent, 6000):
        problems.append(f"idle {idle} < {silent} s a non-streamed answer may be silent")
    keepalive = int(litellm_args[litellm_args.index("--keepalive_timeout") + 1])
    if not max(CLIENT_POOL_IDLE_S.values()) < keepalive < idle:
        problems.append(f"keep-alive {keepalive} not between the clients' pool idle and the NLB's {idle}")
    return problems


def rendered_gateway(out):
    mans = [yaml.safe_load(p.read_text()) for p in (out / "manifests").glob("*.yaml")]
    svc = next(m for m in mans if m["kind"] == "Service" and m["metadata"]["name"] == "litellm")
    cm = next(m for m in mans if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "litellm-config")
    dep = next(m for m in mans if m["kind"] == "Deployment" and m["metadata"]["name"] == "litellm")
    return svc, yaml.safe_load(cm["data"]["config.yaml"]), dep["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.stem)
def test_every_gateway_holds_its_longest_silent_answer(plan_of, stack_file):
    _, _, out = plan_of(stack_file)
    if not (out / "manifests").exists() or not any((out / "manifests").glob("*litellm*")):
        pytest.skip("no gateway in this stack")
    svc, cfg, args = rendered_gateway(out)
    assert idle_problems(svc, cfg, args) == []


def test_the_idle_checker_can_fail():
    routes = [route(900)]
    svc = {
        "metadata": {"annotations": service_annotations(routes, internal=True)},
        "spec": {"ports": [{"port": 4000, "protocol": "TCP"}]},
    }
    cfg = {"router_settings": {"num_retries": 1}, "model_list": [{"litellm_params": {"timeout": 900}}]}
    args = ["--keepalive_timeout", "75"]
    assert idle_problems(svc, cfg, args) == []
    assert "names no listener" in idle_problems({**svc, "spec": {"ports": [{"port": 443}]}}, cfg, args)[0]
    longer = {**cfg, "model_list": [{"litellm_params": {"timeout": 1200}}]}
    assert "may be silent" in idle_problems(svc, longer, args)[0]
    assert "keep-alive" in idle_problems(svc, cfg, ["--keepalive_timeout", "5"])[0]
