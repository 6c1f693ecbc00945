"""Idle limits per hop on the way client → NLB → front door (nginx) → LiteLLM → vLLM, over every stack.

Each hop's rule, checked on the rendered objects (expected values by hand):
- a kept-alive connection is closed by the side that waits longer only after the other side gave up:
  LiteLLM's `--keepalive_timeout` outlasts nginx's upstream pool (nginx's `keepalive_timeout` in an
  `upstream` block, 60 s by default) and the official clients' pools (httpx 5 s, undici 4 s, aiohttp 15 s);
- a non-streamed answer is silent for up to (1 + retries) route timeouts: nginx's proxy_read_timeout
  waits longer than that (tests/stacks/test_frontdoor.py), and nginx's TCP keepalive keeps the NLB
  (350 s idle, fixed on TLS listeners) from forgetting the flow meanwhile (same file, and the real
  nginx in tests/e2e/test_frontdoor.py).
"""

import re

import pytest

from stacks.yamlio import load_yaml
from tests.conftest import STACK_FILES

CLIENT_POOL_IDLE_S = {"httpx (openai python)": 5, "undici (openai node)": 4, "aiohttp (open webui)": 15}
NGINX_UPSTREAM_KEEPALIVE_DEFAULT_S = 60  # nginx docs: upstream keepalive_timeout, default 60s


def nginx_upstream_idle_s(conf: str) -> int:
    upstream = re.search(r"upstream litellm \{(.*?)\}", conf, re.S)
    assert upstream, "no upstream block in the front door's nginx.conf"
    m = re.search(r"keepalive_timeout (\d+)s;", upstream[1])
    return int(m[1]) if m else NGINX_UPSTREAM_KEEPALIVE_DEFAULT_S


def keepalive_problems(litellm_args: list[str], nginx_conf: str) -> list[str]:
    keepalive = int(litellm_args[litellm_args.index("--keepalive_timeout") + 1])
    callers = {**CLIENT_POOL_IDLE_S, "nginx upstream pool": nginx_upstream_idle_s(nginx_conf)}
    return [
        f"LiteLLM closes idle connections after {keepalive} s, before {who} ({idle} s) does"
        for who, idle in callers.items()
        if keepalive <= idle
    ]


def rendered(out):
    mans = [load_yaml(p.read_text()) for p in (out / "manifests").glob("*.yaml")]
    dep = next(m for m in mans if m["kind"] == "Deployment" and m["metadata"]["name"] == "litellm")
    door = next(m for m in mans if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "gateway-frontdoor")
    return dep["spec"]["template"]["spec"]["containers"][0]["args"], door["data"]["nginx.conf"]


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.stem)
def test_litellm_outlasts_every_caller_keepalive(plan_of, stack_file):
    _, _, out = plan_of(stack_file)
    args, conf = rendered(out)
    assert keepalive_problems(args, conf) == []


def test_the_keepalive_checker_can_fail():
    conf = "upstream litellm {\n server x:4000;\n keepalive 32;\n}"
    assert keepalive_problems(["--keepalive_timeout", "75"], conf) == []
    assert keepalive_problems(["--keepalive_timeout", "5"], conf)  # uvicorn's default: every caller races it
    longer_pool = conf.replace("keepalive 32;", "keepalive 32;\n keepalive_timeout 90s;")
    assert keepalive_problems(["--keepalive_timeout", "75"], longer_pool) == [
        "LiteLLM closes idle connections after 75 s, before nginx upstream pool (90 s) does"
    ]
