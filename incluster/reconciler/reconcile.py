"""Reconcile LiteLLM teams and virtual keys with the stack config (the database path).

Runs as a Kubernetes Job after each deploy, in the gateway namespace, with the standard library only
(a pinned python image; no shell, no pip). Inputs:

- `RECONCILE_DESIRED`: JSON file (ConfigMap) `{"teams": [{"name", "models", "rpm", "tpm",
  "maxParallel", "maxBudget", "budgetDuration", "keys": [key aliases "<team>/<key>"]}]}`; no secret
  in it. The program writes it (components/team_reconciler.py); this script never computes an alias.
- `RECONCILE_KEYS`: JSON file (Secret) `{"<team>/<key>": "sk-..."}`: each key's value, made by Pulumi.
- `LITELLM_URL`, `LITELLM_MASTER_KEY` (env, the latter from the gateway's Secret).

Teams and keys it manages carry `metadata.managed-by = llm-serving`; it never touches others. The
logic is one pure function, `plan_requests(desired, current)`: re-running it against the state it
produced plans nothing, a team removed from the config is deleted (its keys first), a changed
limit is updated in place, a rotated key value is deleted and generated again.
Keys are compared by hash (LiteLLM stores `sha256(key)` as the key's `token`); values never leave
the Secret except in the `/key/generate` body.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

MANAGED_BY = "llm-serving"
MARK = {"managed-by": MANAGED_BY}
KEY_PAGE_SIZE = 100  # /key/list caps `size` at 100
TIMEOUT_S = 30

Request = tuple[str, str, dict]  # (method, route, JSON body)


def key_hash(value: str) -> str:
    """What LiteLLM stores as a key's `token` (litellm.proxy._types.hash_token)."""
    return hashlib.sha256(value.encode()).hexdigest()


def team_body(t: dict) -> dict:
    """The fields of a team we own (NewTeamRequest / UpdateTeamRequest names)."""
    return {
        "team_alias": t["name"],
        "models": sorted(t["models"]),
        "rpm_limit": t.get("rpm"),
        "tpm_limit": t.get("tpm"),
        "max_budget": t.get("maxBudget"),
        "budget_duration": t.get("budgetDuration"),
    }


def key_body(t: dict) -> dict:
    """The fields of a key we own (GenerateKeyRequest / UpdateKeyRequest names): the team's limits."""
    return {
        "team_id": t["name"],
        "models": sorted(t["models"]),
        "rpm_limit": t.get("rpm"),
        "tpm_limit": t.get("tpm"),
        "max_parallel_requests": t.get("maxParallel"),
    }


def _differs(want: dict, have: dict) -> dict:
    """The fields of `want` that `have` does not hold (lists compared as sets, numbers as numbers)."""

    def norm(v: object) -> object:
        return sorted(v) if isinstance(v, list) else (float(v) if isinstance(v, int | float) else v)

    return {k: v for k, v in want.items() if norm(v) != norm(have.get(k))}


def managed(obj: dict) -> bool:
    return (obj.get("metadata") or {}).get("managed-by") == MANAGED_BY


def _team_requests(want: dict[str, dict], have: dict[str, dict]) -> tuple[list[Request], list[Request]]:
    """(creates and updates, deletes) for teams."""
    upserts: list[Request] = []
    for name, t in sorted(want.items()):
        body = team_body(t)
        if name not in have:
            upserts.append(("POST", "/team/new", {"team_id": name, **body, "metadata": dict(MARK)}))
        elif changed := _differs(body, have[name]):
            upserts.append(("POST", "/team/update", {"team_id": name, **changed}))
    gone = sorted(n for n, t in have.items() if n not in want and managed(t))
    return upserts, ([("POST", "/team/delete", {"team_ids": gone})] if gone else [])


def _key_requests(want: dict[str, dict], have: list[dict], values: dict[str, str]) -> list[Request]:
    """Deletes (removed or rotated keys) first, then generates and updates."""
    wanted = {alias: t for t in want.values() for alias in t.get("keys", [])}
    current = {k["key_alias"]: k for k in have if managed(k) and k.get("key_alias")}
    deletes, upserts = [], []
    for alias, k in sorted(current.items()):
        rotated = alias in wanted and alias in values and k.get("token") != key_hash(values[alias])
        if alias not in wanted or rotated:
            deletes.append(alias)
    for alias, t in sorted(wanted.items()):
        body = key_body(t)
        if alias not in current or alias in deletes:
            if alias not in values:
                raise ValueError(f"key {alias}: no value in the keys file — the stack must generate it")
            gen = {"key": values[alias], "key_alias": alias, **body, "metadata": dict(MARK)}
            upserts.append(("POST", "/key/generate", gen))
        elif changed := _differs(body, current[alias]):
            upserts.append(("POST", "/key/update", {"key": current[alias]["token"], **changed}))
    return ([("POST", "/key/delete", {"key_aliases": deletes})] if deletes else []) + upserts


def plan_requests(desired: dict, current: dict, key_values: dict[str, str] | None = None) -> list[Request]:
    """Management requests that turn `current` into `desired`, in a safe order: teams are created
    before their keys, keys are deleted before their team. Empty when nothing differs.

    desired: {"teams": [DesiredTeam.to_json()...]}
    current: {"teams": [/team/list rows], "keys": [/key/list?return_full_object=true rows]}
    key_values: {"<team>/<key>": "sk-..."}
    """
    want = {t["name"]: t for t in desired.get("teams", [])}
    have = {t["team_id"]: t for t in current.get("teams", [])}
    team_upserts, team_deletes = _team_requests(want, have)
    keys = _key_requests(want, current.get("keys", []), key_values or {})
    return team_upserts + keys + team_deletes


# ---- the Job: read state over HTTP, apply the plan ----------------------------------------------


class Client:
    def __init__(self, base_url: str, master_key: str):
        self.base = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {master_key}", "Content-Type": "application/json"}

    def call(self, method: str, route: str, body: dict | None = None, query: dict | None = None) -> Any:
        url = self.base + route + ("?" + urllib.parse.urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise RuntimeError(f"{method} {route}: HTTP {e.code}: {detail}") from None


def fetch_current(client: Client) -> dict:
    teams = client.call("GET", "/team/list")
    teams = teams if isinstance(teams, list) else (teams or {}).get("teams", [])
    keys, page = [], 1
    while True:
        q = {"return_full_object": "true", "page": page, "size": KEY_PAGE_SIZE}
        resp = client.call("GET", "/key/list", query=q) or {}
        keys += [k for k in resp.get("keys", []) if isinstance(k, dict)]
        if page >= int(resp.get("total_pages") or 0):
            return {"teams": teams, "keys": keys}
        page += 1


def describe(req: Request) -> str:
    """A log line for one request: route and names only, never a key value or hash."""
    _, route, body = req
    names = body.get("key_alias") or body.get("key_aliases") or body.get("team_id") or body.get("team_ids") or ""
    return f"{route} {names}" if route != "/key/update" else f"{route} (limits of one managed key)"


def main() -> int:
    with open(os.environ["RECONCILE_DESIRED"], encoding="utf-8") as fh:
        desired = json.load(fh)
    values: dict[str, str] = {}
    if os.path.exists(os.environ.get("RECONCILE_KEYS", "")):
        with open(os.environ["RECONCILE_KEYS"], encoding="utf-8") as fh:
            values = json.load(fh)
    client = Client(os.environ["LITELLM_URL"], os.environ["LITELLM_MASTER_KEY"])
    try:
        plan = plan_requests(desired, fetch_current(client), values)
        for req in plan:
            print(describe(req), flush=True)
            client.call(req[0], req[1], req[2])
        left = plan_requests(desired, fetch_current(client), values)
    except (RuntimeError, ValueError, OSError) as e:  # one line, never a request body
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    print(f"applied {len(plan)} request(s); {len(left)} left", flush=True)
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
