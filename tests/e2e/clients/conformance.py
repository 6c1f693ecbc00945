"""OpenAI-API conformance cases, run through the official `openai` Python client (2.x).

Run with the LiteLLM venv's python (its lock pins the client): `python conformance.py CASE...`.
Reads BASE_URL (…/v1), API_KEY and MODEL from the environment; prints one JSON object per case:
what the client returned or raised (class name and HTTP status), never a judgement: the assertions
live in tests/e2e/test_clients.py, shared with the Node twin (conformance.mjs), case for case.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import httpx
import openai

BASE_URL, KEY, MODEL = os.environ["BASE_URL"], os.environ["API_KEY"], os.environ["MODEL"]
RETRIES = int(os.environ.get("MAX_RETRIES", "0"))
TIMEOUT_S = float(os.environ.get("TIMEOUT_S", "120"))
MSG = [{"role": "user", "content": "Say something."}]
# The served model (Qwen3's template and reasoning parser) thinks by default: its text is then in
# `reasoning_content`. Cases that compare text turn thinking off, as an application would.
NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}
attempts = 0  # HTTP requests the client sent (its retries included)


def _count(_request: httpx.Request) -> None:
    global attempts
    attempts += 1


def client(key: str = KEY, **kw: Any) -> openai.OpenAI:
    http = httpx.Client(event_hooks={"request": [_count]}, timeout=TIMEOUT_S)
    kw.setdefault("max_retries", RETRIES)
    return openai.OpenAI(base_url=BASE_URL, api_key=key, http_client=http, **kw)


def chat(c: openai.OpenAI, **kw: Any):
    return c.chat.completions.create(model=MODEL, messages=kw.pop("messages", MSG), **kw)


def case_models(c):
    return {"ids": sorted(m.id for m in c.models.list())}


def case_chat(c):
    r = chat(c, max_tokens=8)
    ch = r.choices[0]
    return {
        "object": r.object,
        "content": ch.message.content,
        "role": ch.message.role,
        "reasoning_content": (ch.message.model_extra or {}).get("reasoning_content"),
        "finish_reason": ch.finish_reason,
        "completion_tokens": r.usage.completion_tokens,
    }


def case_stream_usage(c):
    chunks, text, usage, finish = 0, "", None, None
    for ev in chat(c, max_tokens=8, stream=True, stream_options={"include_usage": True}):
        chunks += 1
        if ev.usage is not None:
            usage = {
                "at_chunk": chunks,
                "choices": len(ev.choices),
                **ev.usage.model_dump(include={"prompt_tokens", "completion_tokens"}),
            }
        for ch in ev.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    return {"chunks": chunks, "text": text, "usage": usage, "finish_reason": finish}


def case_completions(c):
    r = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=6)
    return {"object": r.object, "text": r.choices[0].text, "completion_tokens": r.usage.completion_tokens}


def case_max_tokens(c):
    r = chat(c, max_tokens=5, temperature=0)
    return {"finish_reason": r.choices[0].finish_reason, "completion_tokens": r.usage.completion_tokens}


def case_stop(c):
    """Greedy output is reproducible: stop on a piece of it and the answer ends right before it."""
    full = chat(c, max_tokens=24, temperature=0, extra_body=NO_THINKING).choices[0].message.content
    stop = next(full[i : i + 3] for i in range(2, len(full) - 3) if "\ufffd" not in full[i : i + 3])
    r = chat(c, max_tokens=24, temperature=0, stop=[stop], extra_body=NO_THINKING)
    return {
        "full": full,
        "stop": stop,
        "content": r.choices[0].message.content,
        "finish_reason": r.choices[0].finish_reason,
    }


def case_n(c):
    r = chat(c, max_tokens=6, temperature=1.0, n=3)
    return {"indexes": sorted(ch.index for ch in r.choices)}


def case_seed(c):
    a, b, d = (
        chat(c, max_tokens=12, temperature=1.0, seed=s, extra_body=NO_THINKING).choices[0].message.content
        for s in (7, 7, 8)
    )
    return {"same": a == b, "other": a != d, "sample": a}


def case_json_object(c):
    r = chat(
        c,
        max_tokens=120,
        response_format={"type": "json_object"},
        extra_body=NO_THINKING,
        messages=[{"role": "user", "content": "Answer in JSON."}],
    )
    return {"content": r.choices[0].message.content, "finish_reason": r.choices[0].finish_reason}


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}


def case_json_schema(c):
    r = chat(
        c,
        max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}},
        extra_body=NO_THINKING,
        messages=[{"role": "user", "content": "yes or no?"}],
    )
    return {"content": r.choices[0].message.content, "finish_reason": r.choices[0].finish_reason}


# The slow pair serves 1024 tokens; LONG_TOKENS: a shorter long answer, where a test needs only seconds.
LONG = {"max_tokens": int(os.environ.get("LONG_TOKENS", "900")), "extra_body": {"ignore_eos": True}}


def case_long_stream(c):
    """Read a long stream. `headers`: seconds until the response began; `max_gap`: the longest silence
    after that (the wait for the first chunk included), before chunk number `gap_at` (1 = the first)."""
    t = time.monotonic()
    chunks, usage, gap, gap_at, headers = 0, None, 0.0, 0, None
    last = t
    try:
        stream = chat(c, stream=True, stream_options={"include_usage": True}, **LONG)
        last = time.monotonic()
        headers = last - t
        for ev in stream:
            now = time.monotonic()
            chunks += 1
            if now - last > gap:
                gap, gap_at = now - last, chunks
            last = now
            usage = ev.usage or usage
    except (openai.OpenAIError, httpx.HTTPError) as e:
        # What had arrived before the error (run() reports it), as conformance.mjs does.
        e.partial = {"headers": headers, "chunks": chunks, "max_gap": gap, "silent_at_cut": time.monotonic() - last}
        raise
    return {
        **{"chunks": chunks, "completion_tokens": usage.completion_tokens, "seconds": last - t},
        **{"headers": headers, "max_gap": gap, "gap_at": gap_at},
    }


def case_long_chat(c):
    t = time.monotonic()
    r = chat(c, **LONG)
    return {"completion_tokens": r.usage.completion_tokens, "seconds": time.monotonic() - t}


def case_cancel(c):
    """Read two chunks of a long stream, then drop it, as an application does on a user's 'stop'."""
    stream = chat(c, stream=True, **LONG)
    got = 0
    for _ in stream:
        got += 1
        if got == 2:
            break
    stream.close()
    return {"chunks_read": got}


def case_concurrent(c):
    out: list[dict] = []

    def one():
        out.append(case_stream_usage(c))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S)
    return {
        "streams": len(out),
        "with_usage": sum(1 for r in out if r["usage"]),
        "finished": sum(1 for r in out if r["finish_reason"]),
    }


def case_wrong_key(_c):
    return case_models(client("sk-not-a-key-0000"))


def case_missing_key(_c):
    # The client refuses to send without a key unless the header is omitted explicitly.
    return {"ids": [m.id for m in client("unused").models.list(extra_headers={"Authorization": openai.omit})]}


def case_unknown_model(c):
    return {"r": c.chat.completions.create(model="no-such-model", messages=MSG, max_tokens=2).id}


def case_context_too_long(c):
    return case_chat_of(c, "word " * 600)


def case_chat_of(c, text: str):
    return {"r": chat(c, max_tokens=4, messages=[{"role": "user", "content": text}]).id}


def case_rate(c):
    """Chats until the key's RPM limit answers: how many passed, then what the client raised."""
    done = 0
    try:
        for _ in range(6):
            chat(c, max_tokens=2)
            done += 1
    except openai.APIStatusError as e:
        return {"ok": done, "error": type(e).__name__, "status": e.status_code, "message": e.message}
    return {"ok": done}


def case_recover(c):
    """A chat while the backend is down or coming back: the client's own retries carry it."""
    return case_chat(c)


def run(name: str) -> dict:
    global attempts
    attempts, t = 0, time.monotonic()
    try:
        res: dict[str, Any] = {"result": globals()[f"case_{name}"](client())}
    except openai.APIStatusError as e:
        res = {"error": type(e).__name__, "status": e.status_code, "message": e.message, "body": e.body}
    except (openai.OpenAIError, httpx.HTTPError) as e:  # a stream cut mid-way raises httpx's own error
        res = {"error": type(e).__name__, "status": None, "message": str(e)}
        if hasattr(e, "partial"):
            res["partial"] = e.partial
    took = round(time.monotonic() - t, 2)
    return {"case": name, "client": "python", "version": openai.__version__, "attempts": attempts, "took": took, **res}


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(json.dumps(run(name), default=str), flush=True)
