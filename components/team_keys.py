"""Keys as code: one generated key per named team key (a secret in Pulumi state and in the stack's
`teamKeys` output), and the table the gateway authenticates with, which holds only SHA-256 hashes
of the keys (incluster/gateway_auth/custom_auth.py reads it; LiteLLM enforces what it says)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi import ResourceOptions

KEY_PREFIX = "sk-"  # what OpenAI clients and LiteLLM expect a key to look like
KEY_LENGTH = 48  # random letters and digits after the prefix (~285 bits)
# The scraper's key: /metrics and nothing else. Its model list names no served model (a name the
# config refuses as a served name), since an empty list means "every model" to LiteLLM.
METRICS_KEY_ALIAS = "metrics-scraper"
METRICS_ROUTES = ("/metrics",)
NO_MODEL = "no-default-models"


@dataclass(frozen=True)
class KeyGrant:
    """One key: its stack-unique name, its team, the served model names it may call, its limits."""

    name: str
    team: str
    models: tuple[str, ...]
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel_requests: int | None = None


@dataclass(frozen=True)
class TeamKeysArgs:
    grants: tuple[KeyGrant, ...]
    metrics_key: bool = False  # also a /metrics-only key for the scraper (in the table, not in `by_team`)


def key_hash(key: str) -> str:
    """SHA-256 hex, the digest the gateway hook (and LiteLLM, for its own virtual keys) compares."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_entry(g: KeyGrant) -> dict:
    """What the gateway hook hands LiteLLM for this key (UserAPIKeyAuth field names)."""
    return {
        "key_alias": g.name,
        "team_id": g.team,
        "models": list(g.models),
        "rpm_limit": g.rpm_limit,
        "tpm_limit": g.tpm_limit,
        "max_parallel_requests": g.max_parallel_requests,
    }


def metrics_entry() -> dict:
    """The scraper's entry: LiteLLM's route check allows it `/metrics` only, and no model."""
    return {
        "key_alias": METRICS_KEY_ALIAS,
        "team_id": None,
        "models": [NO_MODEL],
        "allowed_routes": list(METRICS_ROUTES),
    }


def render_key_table(keys: list[str], grants: tuple[KeyGrant, ...], metrics_key: str | None = None) -> str:
    """The gateway's table: {sha256(key): entry}. Keys and grants pair up by position."""
    table = {key_hash(k): key_entry(g) for k, g in zip(keys, grants, strict=True)}
    if metrics_key is not None:
        table[key_hash(metrics_key)] = metrics_entry()
    return json.dumps(table, sort_keys=True)


class TeamKeys(pulumi.ComponentResource):
    keys: dict[str, pulumi.Output[str]]  # key name -> key (secret)
    by_team: pulumi.Output[dict]  # {team: {key name: key}} (secret): the `teamKeys` stack output
    table: pulumi.Output[str]  # the hash table (secret, though it holds no key)
    metrics_key: pulumi.Output[str] | None  # the scraper's key (secret), when asked for

    def __init__(self, name: str, args: TeamKeysArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:TeamKeys", name, None, opts)
        self.keys = {}
        for g in args.grants:
            r = random.RandomPassword(
                f"{name}-{g.name}", length=KEY_LENGTH, special=False, opts=ResourceOptions(parent=self)
            )
            self.keys[g.name] = pulumi.Output.secret(r.result.apply(lambda v: KEY_PREFIX + v))
        values = [self.keys[g.name] for g in args.grants]
        self.metrics_key = None
        if args.metrics_key:
            r = random.RandomPassword(
                f"{name}-metrics", length=KEY_LENGTH, special=False, opts=ResourceOptions(parent=self)
            )
            self.metrics_key = pulumi.Output.secret(r.result.apply(lambda v: KEY_PREFIX + v))
        n = len(values)
        self.table = pulumi.Output.secret(
            pulumi.Output.all(*values, self.metrics_key).apply(lambda ks: render_key_table(ks[:n], args.grants, ks[n]))
        )
        self.by_team = pulumi.Output.secret(
            pulumi.Output.all(*values).apply(
                lambda ks: {
                    t: {g.name: k for g, k in zip(args.grants, ks, strict=True) if g.team == t}
                    for t in dict.fromkeys(g.team for g in args.grants)
                }
            )
        )
        self.register_outputs({})
