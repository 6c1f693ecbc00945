"""Load for the spot-drain test, with the official OpenAI Python client (run by .e2e/litellm's Python).

Two modes, each its own process:

- `gateway base_url key model streams workers`: opens `streams` long streams through the gateway and keeps
  `workers` threads sending short non-streamed chats through it. Prints "STREAMING" once every stream has
  its first chunk, then waits for a line on stdin (the test has sent SIGTERM to one replica), keeps the load
  up for AFTER_S more seconds, waits for the streams and prints one JSON document of what every request saw.
- `direct base_url key model streams choices`: opens `streams` long streams of `choices` choices each
  (`n`) at once, straight to one replica (the one that will be drained), prints "FIRST" when one of them
  has its first chunk, waits for them and prints what each saw. Each choice is a sequence of its own in the
  engine, which runs two at a time there: at the first chunk, seconds of work are queued behind it.
"""

import json
import sys
import threading
import time

import openai

AFTER_S = 10  # the drained replica takes longer than this to exit: calls land on it while it drains
STREAM_TOKENS = 240  # the tiny model serves 256 positions


def stream(client, model: str, first: threading.Event, out: list, n: int = 1) -> None:
    """One streamed completion of `n` choices; "finish" is "length" once every choice ended so. Per choice:
    "partial" counts those that had text and then no end (cut part way), "never" those without a chunk."""
    got: dict = {"chunks": 0, "finish": None, "error": None, "end": None}
    ends: dict[int, str] = {}
    texted: set[int] = set()
    try:
        s = client.completions.create(
            model=model, prompt="hello", max_tokens=STREAM_TOKENS, n=n, stream=True, extra_body={"ignore_eos": True}
        )
        for chunk in s:
            got["chunks"] += 1
            first.set()
            ends.update({c.index: c.finish_reason for c in chunk.choices if c.finish_reason})
            texted.update(c.index for c in chunk.choices if c.text)
    except Exception as e:  # what the client raises is the finding
        got["error"] = type(e).__name__
    got["finish"] = "length" if list(ends.values()) == ["length"] * n else (sorted(set(ends.values())) or None)
    got["partial"] = len(texted - ends.keys())
    got["never"] = n - len(texted | ends.keys())
    got["end"] = time.monotonic()
    first.set()
    out.append(got)


def worker(client, model: str, stop: threading.Event, out: list) -> None:
    while not stop.is_set():
        try:
            r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
            out.append({"ok": bool(r.choices), "error": None})
        except Exception as e:
            out.append({"ok": False, "error": f"{type(e).__name__}: {str(e)[:200]}"})


def client_for(base_url: str, key: str):
    # max_retries=0: every retry is the gateway's, none the client's
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)


def gateway(base_url: str, key: str, model: str, n_streams: str, n_workers: str) -> None:
    client = client_for(base_url, key)
    streams: list = []
    calls: list = []
    firsts = [threading.Event() for _ in range(int(n_streams))]
    threads = [threading.Thread(target=stream, args=(client, model, f, streams)) for f in firsts]
    stop = threading.Event()
    workers = [threading.Thread(target=worker, args=(client, model, stop, calls)) for _ in range(int(n_workers))]
    for t in threads + workers:
        t.start()
    for f in firsts:
        f.wait(120)
    print("STREAMING", flush=True)
    sys.stdin.readline()
    before = len(calls)
    time.sleep(AFTER_S)
    stop.set()
    for t in threads + workers:
        t.join(180)
    print(json.dumps({"streams": streams, "calls": calls, "callsAfterKill": len(calls) - before}), flush=True)


def direct(base_url: str, key: str, model: str, n_streams: str, n_choices: str) -> None:
    client = client_for(base_url, key)
    streams: list = []
    first = threading.Event()
    threads = [
        threading.Thread(target=stream, args=(client, model, first, streams, int(n_choices)))
        for _ in range(int(n_streams))
    ]
    for t in threads:
        t.start()
    first.wait(120)
    print("FIRST", flush=True)
    for t in threads:
        t.join(300)
    print(json.dumps({"streams": streams}), flush=True)


if __name__ == "__main__":
    {"gateway": gateway, "direct": direct}[sys.argv[1]](*sys.argv[2:])
