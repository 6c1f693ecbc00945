"""The gateway's usage-chunk callback: which streamed chunk it rewrites (only the usage-only one) and
that the plan ships and registers it (the e2e tier checks it against the real LiteLLM)."""

from __future__ import annotations

import asyncio
import importlib.util
from types import SimpleNamespace as NS

from components.litellm import render_litellm_config
from components.types import Route
from incluster.gateway_usage import usage_chunk as uc
from stacks.yamlio import load_yaml
from tests.conftest import ROOT

USAGE = NS(prompt_tokens=7, completion_tokens=4, total_tokens=11)


def delta(**fields):
    base = {"content": None, "role": None, "tool_calls": None, "function_call": None}
    return NS(**{**base, **fields})


def choice(finish_reason=None, logprobs=None, **d):
    return NS(index=0, finish_reason=finish_reason, logprobs=logprobs, delta=delta(**d))


def chunk(choices, usage=None):
    return NS(choices=choices, usage=usage)


def test_the_usage_only_chunk_gets_empty_choices():
    # What LiteLLM 1.106.12 emitted: usage plus one choice with an empty delta.
    c = uc.conform(chunk([choice()], USAGE))
    assert c.choices == [] and c.usage is USAGE
    # Already right (no choices at all): left as it is.
    assert uc.conform(chunk([], USAGE)).choices == []


def test_chunks_that_carry_anything_else_are_untouched():
    cases = [
        chunk([choice(content="hi")]),  # a content delta
        chunk([choice(content="hi")], USAGE),  # content with usage (continuous usage stats)
        chunk([choice(finish_reason="stop")], USAGE),  # the finish chunk, should usage ride on it
        chunk([choice(role="assistant")], USAGE),  # the role chunk
        chunk([choice(logprobs={"content": []})], USAGE),
        chunk([choice(tool_calls=[{"index": 0}])], USAGE),
        chunk([choice()]),  # an empty delta without usage is not the usage chunk
    ]
    for c in cases:
        before = list(c.choices)
        assert uc.conform(c).choices == before, c


def test_the_stream_hook_rewrites_in_order_and_drops_nothing():
    async def upstream():
        for c in stream:
            yield c

    async def collect():
        hook = uc.usage_chunk.async_post_call_streaming_iterator_hook(None, upstream(), {})
        return [c async for c in hook]

    stream = [chunk([choice(role="assistant")]), chunk([choice(content="a")]), chunk([choice("stop")])]
    stream.append(chunk([choice()], USAGE))
    out = asyncio.run(collect())
    assert out == stream  # the same objects, same order
    assert [len(c.choices) for c in out] == [1, 1, 1, 0]


def test_the_gateway_config_registers_the_callback_by_module_and_instance():
    cfg = render_litellm_config([Route("a", "a", "a.models.svc.cluster.local", 8000, 120, 4096)], database=False)
    cbs = cfg["litellm_settings"]["callbacks"]
    assert "usage_chunk.usage_chunk" in cbs and "prometheus" in cbs
    # LiteLLM loads `<module>.<instance>` from the file `<module>.py` beside config.yaml.
    spec = importlib.util.spec_from_file_location("usage_chunk", ROOT / "incluster/gateway_usage/usage_chunk.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert hasattr(mod.usage_chunk, "async_post_call_streaming_iterator_hook")


def test_the_plan_ships_the_callback_beside_the_config(plan_of):
    _intent, _rec, out = plan_of(ROOT / "Pulumi.dev.yaml")
    cm = load_yaml((out / "manifests" / "configmap-gateway-litellm-config.yaml").read_text())
    assert cm["data"]["usage_chunk.py"] == (ROOT / "incluster" / "gateway_usage" / "usage_chunk.py").read_text()
    assert "usage_chunk.usage_chunk" in load_yaml(cm["data"]["config.yaml"])["litellm_settings"]["callbacks"]
