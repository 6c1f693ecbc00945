"""The streamed usage chunk through the gateway, as OpenAI's API reference defines it.

With `stream_options: {"include_usage": true}` the reference sends usage on a last chunk whose
`choices` is always empty. A client written to it takes that chunk (empty `choices`, `usage` set) as
the usage and every chunk with choices as a delta. It runs here with the official `openai` Python
client (the LiteLLM venv's pin) against the real vLLM directly and through the real LiteLLM with the
rendered config: the same prompt and completion token counts both ways. The negative control is the
same gateway without the usage callback: that client then finds no usage (LiteLLM's usage chunk has
one empty choice), so the comparison can fail.
"""

from __future__ import annotations

import copy
import json
import subprocess

import pytest

from tests.e2e.servers import E2E, MASTER_KEY, VLLM_KEY, gateway_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
PYTHON = E2E / "litellm" / "bin" / "python"
CALLBACK = "usage_chunk.usage_chunk"
# A gateway start on a machine shared with other test runs can take minutes.
START_S = 600

# A reference-following streaming client: prints what it took as the usage, and what the usage-only
# chunks looked like. Deterministic output (temperature 0, a seed) so both paths generate the same.
CLIENT = """
import json, sys, openai
base, key, model = sys.argv[1:4]
c = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)
usage, text, shapes = None, "", []
for ch in c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=8, temperature=0, seed=7, stream=True, stream_options={"include_usage": True}):
    if ch.usage is not None:
        shapes.append([x.model_dump(exclude_none=True) for x in ch.choices])
    if not ch.choices:  # the reference: the usage chunk, and only it, has empty choices
        usage = {"prompt_tokens": ch.usage.prompt_tokens, "completion_tokens": ch.usage.completion_tokens}
        continue
    text += ch.choices[0].delta.content or ""
print(json.dumps({"usage": usage, "text": text, "usage_chunk_choices": shapes}))
"""


def reference_client(base: str, key: str, model: str) -> dict:
    out = subprocess.run(
        [str(PYTHON), "-c", CLIENT, base, key, model], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def start(server):
    server.timeout = START_S
    return server.start()


@pytest.fixture(scope="module")
def vllm(vllm_server):
    return vllm_server  # the session's engine: the callback is the gateway's, any engine of the render will do


@pytest.fixture(scope="module")
def gateway_as_rendered(gateway):
    return gateway  # the session's: the rendered config in front of the session's engine


@pytest.fixture(scope="module")
def gateway_without_callback(rendered, vllm, tmp_path_factory):
    r = copy.deepcopy(rendered)
    cbs = r.litellm_config["litellm_settings"]["callbacks"]
    assert CALLBACK in cbs, "the rendered gateway no longer lists the usage callback"
    r.litellm_config["litellm_settings"]["callbacks"] = [c for c in cbs if c != CALLBACK]
    s = start(gateway_for(r, vllm.port, tmp_path_factory.mktemp("litellm-no-usage-cb")))
    yield s
    s.stop()


def served(rendered) -> tuple[str, str]:
    """(the gateway's model name, vLLM's served name) of the one route."""
    m = rendered.litellm_config["model_list"][0]
    return m["model_name"], m["litellm_params"]["model"].removeprefix("hosted_vllm/")


def test_a_reference_client_counts_the_same_tokens_direct_and_through_the_gateway(rendered, vllm, gateway_as_rendered):
    name, vllm_name = served(rendered)
    direct = reference_client(f"http://127.0.0.1:{vllm.port}/v1", VLLM_KEY, vllm_name)
    via = reference_client(f"http://127.0.0.1:{gateway_as_rendered.port}/v1", MASTER_KEY, name)
    assert direct["usage"] is not None and direct["usage"]["completion_tokens"] > 0, direct
    assert direct["usage_chunk_choices"] == [[]], direct  # vLLM follows the reference
    assert via["usage"] == direct["usage"], (direct, via)
    assert via["usage_chunk_choices"] == [[]], via
    assert via["text"] == direct["text"]


def test_without_the_callback_the_reference_client_misses_the_usage(rendered, gateway_without_callback):
    name, _ = served(rendered)
    via = reference_client(f"http://127.0.0.1:{gateway_without_callback.port}/v1", MASTER_KEY, name)
    assert via["usage"] is None, via
    assert via["usage_chunk_choices"] and via["usage_chunk_choices"][-1] != [], via
