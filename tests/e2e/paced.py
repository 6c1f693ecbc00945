"""A paced upstream: answers chat completions in vLLM's OpenAI shape, one token every `token_s` seconds,
at most `slots` requests at a time (the rest wait, as in vLLM's queue). It sleeps between tokens, so a
long answer costs seconds of time and no CPU: for the tests about what the gateway and the clients do
with time (idle and route timeouts, a knee), where an engine decoding for that long would take a core.

Streamed: one chunk per token, the usage in a chunk of its own with no choices, then `[DONE]` (vLLM's
shape with `stream_options.include_usage`). Not streamed: silent until the last token, then the answer.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_TOKENS = 16  # when the request names no max_tokens


def send_json(handler: BaseHTTPRequestHandler, doc: dict) -> None:
    """A 200 with `doc` as its JSON body, sized (what a stub upstream answers to a non-streamed call)."""
    data = json.dumps(doc).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def paced_handler(token_s: float, slots: int, model: str) -> type[BaseHTTPRequestHandler]:
    gate = threading.BoundedSemaphore(slots)

    class Paced(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            n = int(body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_TOKENS)
            usage = {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}
            with gate:
                if body.get("stream"):
                    self._stream(n, usage)
                else:
                    time.sleep(n * token_s)
                    message = {"role": "assistant", "content": "".join(f"t{i} " for i in range(n))}
                    choice = {"index": 0, "message": message, "finish_reason": "length"}
                    send_json(self, {"id": "paced", "object": "chat.completion", "created": 0, "model": model,
                                  "choices": [choice], "usage": usage})  # fmt: skip

        def _chunk(self, doc: dict | str) -> None:
            data = f"data: {doc if isinstance(doc, str) else json.dumps(doc)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _stream(self, n: int, usage: dict) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            base = {"id": "paced", "object": "chat.completion.chunk", "created": 0, "model": model}
            for i in range(n):
                time.sleep(token_s)
                # A different text each time: LiteLLM ends a stream that repeats one chunk 100 times.
                delta = {"content": f"t{i} "}
                choice = {"index": 0, "delta": delta, "finish_reason": "length" if i == n - 1 else None}
                self._chunk({**base, "choices": [choice]})
            self._chunk({**base, "choices": [], "usage": usage})
            self._chunk("[DONE]")
            self.wfile.write(b"0\r\n\r\n")

    return Paced


def start_paced(token_s: float, slots: int, model: str) -> ThreadingHTTPServer:
    """The paced upstream on a free loopback port, served by a daemon thread; `.shutdown()` stops it."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), paced_handler(token_s, slots, model))
    srv.daemon_threads = True
    # A client that left mid-answer (a cut or timed-out test request) breaks the pipe: expected, not news.
    srv.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv
