"""An in-memory stand-in for LiteLLM's team/key management API (LiteLLM cannot run with a database
here: Prisma's engines are not downloadable). It keeps the semantics the reconciler relies on, as
LiteLLM 1.106.12's endpoints implement them (read in litellm/proxy/management_endpoints/):

- /team/new creates a team (409-like error if the team_id exists); /team/update sets only the fields
  sent (`exclude_unset`), an explicit null clears a limit; /team/delete deletes the teams AND their
  keys ("delete team and associated team keys"); GET /team/list returns the team rows.
- /key/generate stores `token = sha256(key)` (never the key), refuses a key not starting with "sk-"
  or an alias already taken; /key/update addresses a key by its raw value or its token;
  /key/delete takes `keys` or `key_aliases`; GET /key/list pages (size <= 100) with
  `return_full_object`, `total_pages`.
Every request needs `Authorization: Bearer <master key>` (401 otherwise).
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def empty_state() -> dict:
    return {"teams": {}, "keys": {}}  # team_id -> row; token -> row


def apply(state: dict, method: str, route: str, body: dict) -> object:
    """One management request against `state` (mutated in place); the response body."""
    teams, keys = state["teams"], state["keys"]
    if (method, route) == ("POST", "/team/new"):
        if body["team_id"] in teams:
            raise Refused(400, f"team {body['team_id']} exists")
        teams[body["team_id"]] = copy.deepcopy(body)
        return teams[body["team_id"]]
    if (method, route) == ("POST", "/team/update"):
        if body["team_id"] not in teams:
            raise Refused(404, "team not found")
        teams[body["team_id"]].update(copy.deepcopy(body))
        return teams[body["team_id"]]
    if (method, route) == ("POST", "/team/delete"):
        for tid in body["team_ids"]:
            if tid not in teams:
                raise Refused(404, f"team {tid} not found")
            del teams[tid]
            for tok in [t for t, k in keys.items() if k.get("team_id") == tid]:
                del keys[tok]
        return {"deleted": body["team_ids"]}
    if (method, route) == ("POST", "/key/generate"):
        value = body.get("key") or ""
        if not value.startswith("sk-") or len(value) < 16:
            raise Refused(400, "key must start with sk- and be >= 16 characters")
        if any(k.get("key_alias") == body.get("key_alias") for k in keys.values()):
            raise Refused(400, "key_alias taken")
        if body.get("team_id") and body["team_id"] not in teams:
            raise Refused(400, "team not found")
        row = {k: v for k, v in copy.deepcopy(body).items() if k != "key"}
        keys[sha(value)] = {**row, "token": sha(value)}
        return {"key": value, "token": sha(value)}
    if (method, route) == ("POST", "/key/update"):
        tok = body["key"] if body["key"] in keys else sha(body["key"])
        if tok not in keys:
            raise Refused(404, "key not found")
        keys[tok].update({k: v for k, v in copy.deepcopy(body).items() if k != "key"})
        return keys[tok]
    if (method, route) == ("POST", "/key/delete"):
        gone = [t for t, k in keys.items() if k.get("key_alias") in (body.get("key_aliases") or [])]
        gone += [sha(v) for v in body.get("keys") or [] if sha(v) in keys]
        if not gone:
            raise Refused(404, "no such keys")
        for tok in gone:
            del keys[tok]
        return {"deleted_keys": len(gone)}
    raise Refused(404, f"no route {method} {route}")


def team_list(state: dict) -> list[dict]:
    return [copy.deepcopy(t) for _, t in sorted(state["teams"].items())]


def key_list(state: dict, page: int, size: int) -> dict:
    if not 1 <= size <= 100 or page < 1:
        raise Refused(422, "page >= 1, 1 <= size <= 100")
    rows = [copy.deepcopy(k) for _, k in sorted(state["keys"].items())]
    total_pages = -(-len(rows) // size) if rows else 0
    return {"keys": rows[(page - 1) * size : page * size], "total_count": len(rows), "total_pages": total_pages}


def current(state: dict) -> dict:
    """What the reconciler's fetch_current reads: {"teams": [...], "keys": [...]}."""
    return {"teams": team_list(state), "keys": [copy.deepcopy(k) for _, k in sorted(state["keys"].items())]}


class FakeLiteLLM:
    """The same semantics over HTTP on a loopback port; `log` records (method, path) per request."""

    def __init__(self, master_key: str, state: dict | None = None):
        self.master_key, self.state, self.log = master_key, state or empty_state(), []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, status: int, payload: object) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                fake.log.append((method, url.path))
                if self.headers.get("Authorization") != f"Bearer {fake.master_key}":
                    return self._send(401, {"error": "Authentication Error"})
                try:
                    if method == "GET" and url.path == "/team/list":
                        return self._send(200, team_list(fake.state))
                    if method == "GET" and url.path == "/key/list":
                        q = {k: v[0] for k, v in parse_qs(url.query).items()}
                        return self._send(200, key_list(fake.state, int(q.get("page", 1)), int(q.get("size", 10))))
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length) or b"{}")
                    return self._send(200, apply(fake.state, method, url.path, body))
                except Refused as e:
                    return self._send(e.status, {"error": str(e)})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLiteLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
