"""LiteLLM callback for llm-serving (shipped in the gateway ConfigMap beside config.yaml and listed in
`litellm_settings.callbacks`): the streamed usage chunk as the OpenAI API reference defines it.

With `stream_options: {"include_usage": true}` the last chunk before `[DONE]` carries `usage` and an
EMPTY `choices` list (OpenAI's reference; vLLM sends it so). LiteLLM 1.106.12 rebuilds that chunk as a
`ModelResponseStream`, whose constructor turns a missing `choices` into one empty choice, so clients
saw `"choices": [{"index": 0, "delta": {}}]`: a client written to the reference takes it for a
content delta and misses the usage. This callback empties `choices` on exactly that chunk (usage set,
every choice without content, role, tool call, finish reason or logprobs) and passes every other
chunk through untouched.

LiteLLM calls `async_post_call_streaming_iterator_hook` once per stream with the chunk iterator (the
per-chunk `async_post_call_streaming_hook` only sees the response text, it cannot rewrite a chunk).
LiteLLM is imported only when present, so the chunk logic is testable without it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # the unit tests run without LiteLLM; the pod always has it
    CustomLogger = object


def _empty_delta(delta: Any) -> bool:
    if delta is None:
        return True
    fields = delta.model_dump() if hasattr(delta, "model_dump") else dict(vars(delta))
    return all(v is None for v in fields.values())


def _empty_choice(choice: Any) -> bool:
    return (
        getattr(choice, "finish_reason", None) is None
        and getattr(choice, "logprobs", None) is None
        and _empty_delta(getattr(choice, "delta", None))
    )


def is_usage_chunk(chunk: Any) -> bool:
    """The chunk that carries only usage (what the reference sends with `choices: []`)."""
    if getattr(chunk, "usage", None) is None:
        return False
    return all(_empty_choice(c) for c in getattr(chunk, "choices", None) or [])


def conform(chunk: Any) -> Any:
    if is_usage_chunk(chunk) and chunk.choices:
        chunk.choices = []
    return chunk


class UsageChunk(CustomLogger):
    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: AsyncIterator[Any], request_data: dict
    ) -> AsyncIterator[Any]:
        async for chunk in response:
            yield conform(chunk)


# The instance LiteLLM loads: `callbacks: ["usage_chunk.usage_chunk"]`.
usage_chunk = UsageChunk()
