"""Real vLLM (CPU build, same release as the image) and real LiteLLM, driven by the rendered stack."""

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from components.types import VLLM_SELECTOR
from stacks.yamlio import load_yaml
from tests.conftest import STACK_FILES
from tests.e2e.servers import E2E, MASTER_KEY, VLLM_KEY, VLLM_PY, http

NEURON_PARSER_PY = E2E / "vllm-neuron-parser" / "bin" / "python"

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent
REDUMP = "tests/e2e/vllm_parser.py --table"
# Metric names the stack relies on (autoscaling trigger, dashboards/alerts in docs).
VLLM_METRICS = [
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_success_total",
    "vllm:num_preemptions_total",
]


class Parser:
    """One `tests/e2e/vllm_parser.py` process per interpreter for the whole module (importing vLLM
    costs ~8 s of CPU); `ask` sends one request and reads its answer."""

    running: ClassVar[dict[Path, subprocess.Popen]] = {}

    @classmethod
    def ask(cls, python: Path, request: dict):
        p = cls.running.get(python)
        if p is None:
            p = cls.running[python] = subprocess.Popen(
                [str(python), str(HERE / "vllm_parser.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                env={**os.environ, "VLLM_TARGET_DEVICE": "cpu"},
            )
        assert p.stdin and p.stdout
        p.stdin.write(json.dumps(request) + "\n")
        p.stdin.flush()
        line = p.stdout.readline()
        assert line, f"{python} vllm_parser.py exited {p.wait(timeout=60)}; run it by hand to see why"
        return json.loads(line)

    @classmethod
    def close(cls) -> None:
        for p in cls.running.values():
            p.kill()
            p.wait(timeout=60)
        cls.running.clear()


@pytest.fixture(scope="module", autouse=True)
def _parsers():
    yield
    Parser.close()


def parse_with_real_vllm(lists: dict[str, list[str]], python=VLLM_PY) -> dict:
    return Parser.ask(python, {"op": "check", "lists": lists})


# Every committed stack file and example, and every config fixture that validates.
CONFIG_FIXTURES = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.ok.yaml"))


def rendered_arg_lists(plan_of, neuron: bool) -> dict[str, list[str]]:
    out = {}
    for f in [*STACK_FILES, *CONFIG_FIXTURES]:
        _, _, d = plan_of(f)
        for p in (d / "manifests").glob("deployment-*models-*.yaml"):
            template = load_yaml(p.read_text())["spec"]["template"]
            if not VLLM_SELECTOR.items() <= template["metadata"]["labels"].items():
                continue  # another Deployment in a models namespace (a model's cache-aware router)
            c = template["spec"]["containers"][0]
            is_neuron = "aws.amazon.com/neuron" in c["resources"]["limits"]
            if is_neuron == neuron:
                args = c["args"][2:] if c["args"][:2] == ["vllm", "serve"] else c["args"]
                out[f"{f.name}:{p.stem}"] = args
    return out


def test_every_rendered_gpu_arg_list_passes_the_real_parser(e2e_ready, plan_of):
    lists = rendered_arg_lists(plan_of, neuron=False)
    assert len(lists) >= 5
    assert any(k.startswith("extra-args.ok.yaml:") for k in lists)  # the extraArgs-heavy fixture is in
    # Proof the check can fail: a removed flag and an unknown flag are rejected by the same parser.
    lists["bad:swap-space"] = ["m", "--swap-space", "4"]
    lists["bad:disable-log-requests"] = ["m", "--disable-log-requests"]
    res = parse_with_real_vllm(lists)
    assert res.pop("bad:swap-space") is not None
    assert res.pop("bad:disable-log-requests") is not None
    assert {k: v for k, v in res.items() if v is not None} == {}


def test_every_rendered_neuron_arg_list_passes_the_neuron_images_vllm_parser(e2e_ready, plan_of):
    """Neuron servers run the vLLM release inside the Neuron image (0.16): its parser judges them."""
    assert NEURON_PARSER_PY.exists(), "run scripts/setup-e2e.sh"
    lists = rendered_arg_lists(plan_of, neuron=True)
    assert len(lists) >= 3
    lists["bad:unknown"] = ["m", "--no-such-flag"]
    res = parse_with_real_vllm(lists, NEURON_PARSER_PY)
    assert res.pop("bad:unknown") is not None
    assert {k: v for k, v in res.items() if v is not None} == {}


def test_chat_through_the_gateway(gateway):
    url = f"http://127.0.0.1:{gateway.port}/v1/chat/completions"
    body = {"model": "qwen3-0.6b", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    status, text = http("POST", url, body, MASTER_KEY)
    assert status == 200, text
    assert json.loads(text)["choices"][0]["message"] is not None


def test_streaming_chat_through_the_gateway(gateway):
    import urllib.request

    req = urllib.request.Request(
        f"http://127.0.0.1:{gateway.port}/v1/chat/completions",
        method="POST",
        data=json.dumps(
            {"model": "qwen3-0.6b", "stream": True, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
        ).encode(),
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        lines = [ln for ln in r.read().decode().splitlines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and len(lines) >= 2


def test_gateway_refuses_without_key_and_unknown_model(gateway):
    url = f"http://127.0.0.1:{gateway.port}/v1/chat/completions"
    body = {"model": "qwen3-0.6b", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    assert http("POST", url, body)[0] == 401
    status, _ = http("POST", url, {**body, "model": "no-such-model"}, MASTER_KEY)
    assert 400 <= status < 500


def test_vllm_requires_its_api_key(vllm_server):
    url = f"http://127.0.0.1:{vllm_server.port}/v1/models"
    assert http("GET", url)[0] == 401
    assert http("GET", url, key=VLLM_KEY)[0] == 200


def test_every_rendered_probe_path_answers(rendered, vllm_server, gateway):
    ports = {8000: vllm_server.port, 4000: gateway.port}
    checked = 0
    for m in rendered.manifests:
        # Open WebUI does not run here; the front door's probes run through the real nginx in test_frontdoor.py.
        if m["kind"] != "Deployment" or m["metadata"]["name"] in ("open-webui", "gateway-frontdoor"):
            continue
        for c in m["spec"]["template"]["spec"]["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                p = c[probe]["httpGet"]
                status, text = http("GET", f"http://127.0.0.1:{ports[p['port']]}{p['path']}")
                assert status == 200, (m["metadata"]["name"], probe, p, text[:200])
                checked += 1
    assert checked == 6


def test_metric_names_exist_in_real_vllm(vllm_server, gateway):
    http(
        "POST",
        f"http://127.0.0.1:{gateway.port}/v1/chat/completions",
        {"model": "qwen3-0.6b", "messages": [{"role": "user", "content": "m"}], "max_tokens": 2},
        MASTER_KEY,
    )
    status, text = http("GET", f"http://127.0.0.1:{vllm_server.port}/metrics")
    assert status == 200
    names = set(re.findall(r"^(vllm:[a-z0-9_]+?)(?:_bucket|_count|_sum|_created)?[{ ]", text, re.M))
    missing = [m for m in VLLM_METRICS if m not in names]
    assert not missing, missing
    assert 'model_name="qwen3-0.6b"' in text  # the served name labels the metrics


def test_gateway_survives_vllm_death(vllm_server, gateway):
    """Kill vLLM with requests in flight: clean 5xx within the timeout, then success after restart."""
    url = f"http://127.0.0.1:{gateway.port}/v1/chat/completions"
    body = {"model": "qwen3-0.6b", "messages": [{"role": "user", "content": "long"}], "max_tokens": 200}
    results = []

    def call():
        t = time.time()
        results.append((http("POST", url, body, MASTER_KEY, timeout=120)[0], time.time() - t))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    vllm_server.stop()
    for t in threads:
        t.join(150)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert all(s == 200 or 500 <= s < 600 for s, _ in results), results
    status, _ = http("POST", url, {**body, "max_tokens": 2}, MASTER_KEY, timeout=120)
    assert 500 <= status < 600
    vllm_server.start()
    end = time.time() + 60
    while time.time() < end:
        status, text = http("POST", url, {**body, "max_tokens": 2}, MASTER_KEY, timeout=60)
        if status == 200:
            break
        time.sleep(2)  # LiteLLM may keep the deployment in cooldown for a few seconds
    assert status == 200, text


def test_committed_option_tables_are_the_real_parsers(e2e_ready):
    """stacks/catalog/vllm-serve-flags.json is what the pinned releases' parsers accept (the offline
    extraArgs check resolves flags against it)."""
    from stacks.config import vllm_flags

    assert NEURON_PARSER_PY.exists(), "run scripts/setup-e2e.sh"
    for kind, py in (("nvidia", VLLM_PY), ("neuron", NEURON_PARSER_PY)):
        real = Parser.ask(py, {"op": "table"})
        assert real["vllm"] == vllm_flags.table_version(kind)
        assert real["options"] == vllm_flags.table(kind), f"re-dump the {kind} table ({REDUMP})"


def test_spellings_the_offline_check_refuses_really_turn_the_flag_on(e2e_ready):
    """The bypasses are real: vLLM's own parser turns each spelling into trust_remote_code=True /
    hf_overrides / tensor_parallel_size; the offline check refuses every one of them."""
    from stacks.config import vllm_flags

    cases = {
        "underscore": (["m", "--trust_remote_code"], "trust_remote_code", True),
        "abbreviated": (["m", "--trust-remote"], "trust_remote_code", True),
        "abbreviated-underscore": (["m", "--trust_remote_c"], "trust_remote_code", True),
        "dotted": (
            ["m", "--hf_overrides.auto_map.AutoConfig", "x.C"],
            "hf_overrides",
            {"auto_map": {"AutoConfig": "x.C"}},
        ),
        "short-alias": (["m", "-tp=2"], "tensor_parallel_size", 2),
        "attached-short": (["m", "-qfp8"], "quantization", "fp8"),
        "control": (["m"], "trust_remote_code", False),  # negative control: default off
    }
    attrs = sorted({c[1] for c in cases.values()})
    got = Parser.ask(VLLM_PY, {"op": "attrs", "attrs": attrs, "lists": {k: v[0] for k, v in cases.items()}})
    for name, (args, attr, want) in cases.items():
        assert got[name][attr] == want, (name, got[name])
        refused = vllm_flags.check(args[1:], "nvidia")[1]
        assert bool(refused) == (name != "control"), (name, refused)
