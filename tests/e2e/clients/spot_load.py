"""Load for the spot-drain test, with the official OpenAI Python client (run by .e2e/litellm's Python).

argv: base_url key model streams workers direct_url direct_key direct_model direct_streams.

Opens `streams` long streams through the gateway and keeps `workers` threads sending short non-streamed
chats through it. Once every gateway stream has its first chunk, it opens `direct_streams` more straight to
the replica that will be drained and prints "STREAMING" (the test then watches that replica's queue and
sends SIGTERM). It then waits for a line on stdin ("go <monotonic time of the SIGTERM>"), keeps the load up
for AFTER_S more seconds, waits for the streams and prints one JSON document of what every request saw.
"""

import json
import sys
import threading
import time

import openai

AFTER_S = 10  # the drained replica takes longer than this to exit: calls land on it while it drains
STREAM_TOKENS = 240  # the tiny model serves 256 positions


def stream(client, model: str, first: threading.Event, out: list) -> None:
    got = {"chunks": 0, "finish": None, "error": None, "first": None, "end": None}
    try:
        s = client.completions.create(
            model=model, prompt="hello", max_tokens=STREAM_TOKENS, stream=True, extra_body={"ignore_eos": True}
        )
        for chunk in s:
            got["first"] = got["first"] or time.monotonic()
            got["chunks"] += 1
            first.set()
            for c in chunk.choices:
                got["finish"] = c.finish_reason or got["finish"]
    except Exception as e:  # what the client raises is the finding
        got["error"] = type(e).__name__
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


def main() -> None:
    base_url, key, model, n_streams, n_workers, direct_url, direct_key, direct_model, n_direct = sys.argv[1:10]
    # max_retries=0: every retry is the gateway's, none the client's
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)
    direct = openai.OpenAI(base_url=direct_url, api_key=direct_key, max_retries=0, timeout=120)
    streams: list = []
    direct_streams: list = []
    calls: list = []
    firsts = [threading.Event() for _ in range(int(n_streams))]
    threads = [threading.Thread(target=stream, args=(client, model, f, streams)) for f in firsts]
    directs = [
        threading.Thread(target=stream, args=(direct, direct_model, threading.Event(), direct_streams))
        for _ in range(int(n_direct))
    ]
    stop = threading.Event()
    workers = [threading.Thread(target=worker, args=(client, model, stop, calls)) for _ in range(int(n_workers))]
    for t in threads + workers:
        t.start()
    for f in firsts:
        f.wait(120)
    for t in directs:
        t.start()
    print("STREAMING", flush=True)
    sigterm_at = float(sys.stdin.readline().split()[1])
    before = len(calls)
    time.sleep(AFTER_S)
    stop.set()
    for t in threads + directs + workers:
        t.join(180)
    doc = {
        "streams": streams,
        "directStreams": direct_streams,
        "calls": calls,
        "callsAfterKill": len(calls) - before,
        "sigtermAt": sigterm_at,
    }
    print(json.dumps(doc), flush=True)


if __name__ == "__main__":
    main()
