"""The e2e harness itself: a server whose port was taken before it could bind starts on another one."""

from __future__ import annotations

import socket
import sys

import pytest

from tests.e2e.servers import Server, free_port

pytestmark = pytest.mark.e2e

# Binds --port and answers 200 on /health; binding a taken port ends it with Python's EADDRINUSE line.
TINY = """
import sys, http.server
port = int(sys.argv[sys.argv.index("--port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def test_a_taken_port_is_replaced_and_other_exits_are_not_retried(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = Server(
            [sys.executable, "-c", TINY, "--port", str(port)],
            {},
            tmp_path / "tiny.log",
            f"http://127.0.0.1:{port}/health",
            60,
        )
        s.start()
        try:
            assert s.port != port and s.argv[-1] == str(s.port)
            assert s.health == f"http://127.0.0.1:{s.port}/health"
            assert b"Address already in use" in (tmp_path / "tiny.log").read_bytes()  # it did meet the taken port
        finally:
            s.stop()
    # Negative control: a server that fails for another reason fails once, with its log.
    broken = Server(
        [sys.executable, "-c", "raise SystemExit(4)", "--port", str(free_port())],
        {},
        tmp_path / "broken.log",
        "http://127.0.0.1:1/health",
        60,
    )
    with pytest.raises(RuntimeError, match="server exited with 4"):
        broken.start()
