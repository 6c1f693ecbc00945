"""Loading: a `Pulumi.<stack>.yaml` file (the plan CLI, tests) or the Pulumi runtime config (a real run)
becomes the raw `llm-serving:*` values, which `resolve` validates (pydantic) and cross-checks."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stacks.config.errors import PROJECT, ConfigError, key
from stacks.config.resolve import StackIntent, resolve_config
from stacks.config.schema import AWS_REGION, NAMESPACE_TYPO_DISTANCE, TOP_LEVEL_KEYS, StackConfig
from stacks.yamlio import YamlError, YamlIssue, load_untrusted, read_text

_TYPE_FIXES = {
    "string_type": "quote the value (YAML reads 1.35 as a number and yes/no as booleans)",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "dict_type": "write a mapping (key: value)",
    "model_type": "write a mapping (key: value)",
    "list_type": "write a list ([a, b])",
    "literal_error": "use one of the listed values",
    "missing": "add it",
    "finite_number": "write a finite number (not .inf or .nan)",
}


def _pydantic_problems(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = list(e["loc"])
        typ = e["type"]
        if typ == "extra_forbidden":
            bad = str(loc[-1])
            parent = loc[:-1]
            if not parent:
                close = difflib.get_close_matches(bad, TOP_LEVEL_KEYS, n=1)
                hint = f"did you mean {key(close[0])}?" if close else f"known keys: {', '.join(TOP_LEVEL_KEYS)}"
                out.append(f"{key(bad)}: unknown config key — {hint}")
            else:
                out.append(f"{key(*loc)}: unknown field — remove it (check the spelling in docs/config-reference.md)")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        fix = "" if "—" in msg else f" — {_TYPE_FIXES.get(typ, 'fix the value in the stack file')}"
        out.append(f"{key(*loc) if loc else PROJECT}: {msg}{fix}")
    return out


def _where(path: str | Path, issue: YamlIssue) -> str:
    pos = f"{path}:{issue.line}:{issue.column}" if issue.line is not None else str(path)
    keys = issue.path[1:] if issue.path[:1] == ("config",) and len(issue.path) > 1 else issue.path
    return f"{pos}: {'.'.join(keys)}: " if keys else f"{pos}: "


def read_stack_document(path: str | Path) -> dict[str, Any]:
    """A Pulumi.<stack>.yaml document, read strictly (stacks/yamlio.py); ConfigError with
    `file:line:column: key: what — fix` lines for anything that is not a clean mapping."""
    try:
        doc = load_untrusted(read_text(Path(path)))
    except YamlError as e:
        raise ConfigError([f"{_where(path, i)}{i.what} — {i.fix}" for i in e.issues]) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(
            [
                f"{path}: the document is a {type(doc).__name__}, not a mapping — a stack file "
                f"is a mapping with a config: section"
            ]
        )
    cfg = doc.get("config")
    if cfg is not None and not isinstance(cfg, dict):
        raise ConfigError(
            [
                f"{path}: config: is a {type(cfg).__name__}, not a mapping — write it as a mapping "
                f"of {PROJECT}:<key>: <value> entries"
            ]
        )
    return doc


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


# Config namespaces something reads: this project, Pulumi itself and the providers the program uses
# (requirements.txt: pulumi-aws, pulumi-eks, pulumi-kubernetes, pulumi-random). A key under any
# other namespace is read by nothing.
KNOWN_NAMESPACES = (PROJECT, "pulumi", "aws", "eks", "kubernetes", "random")


def namespace_problems(keys: list[str]) -> list[str]:
    """Config keys that look like ours but are not read (a misspelt namespace drops a whole section)."""
    out = []
    for k in keys:
        ns, colon, name = str(k).partition(":")
        if not colon:
            out.append(f"{k}: config key without a namespace — write {PROJECT}:{k}")
        elif ns != PROJECT and _edit_distance(ns.lower(), PROJECT) <= NAMESPACE_TYPO_DISTANCE:
            out.append(
                f"{k}: namespace {ns!r} looks like a misspelling of {PROJECT!r}, so nothing under it is "
                f"read — rename the key to {PROJECT}:{name}"
            )
        elif ns not in KNOWN_NAMESPACES:
            out.append(
                f"{k}: nothing reads the namespace {ns!r} (known: {', '.join(KNOWN_NAMESPACES)}) "
                f"— remove the key, or write it as {PROJECT}:<key> if it is a setting of this program"
            )
    return out


def _plaintext_token() -> str:
    return (
        f"{key('hfToken')}: the Hugging Face token is in plain text in the stack file — remove it and run "
        f"`pulumi config set --secret {PROJECT}:hfToken hf_…` (stores it encrypted as secure:)"
    )


def parse_stack_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """Read a Pulumi.<stack>.yaml file: ({llm-serving key: value}, aws region). Secure values
    (`{secure: ...}`) cannot be decrypted offline and stand in as a placeholder secret."""
    cfg = read_stack_document(path).get("config") or {}
    problems = namespace_problems(list(cfg))
    raw: dict[str, Any] = {}
    region = "us-east-1"
    for k, v in cfg.items():
        if k == "aws:region":
            region = str(v)
            if not AWS_REGION.fullmatch(region):
                problems.append(f"aws:region: {v!r} is not an AWS region name — write it like us-east-1")
            continue
        ns, _, name = str(k).partition(":")
        if ns != PROJECT or not name:
            continue  # other packages' config (aws:profile, kubernetes:…) is not ours to judge
        if isinstance(v, dict) and set(v) == {"secure"}:
            v = "[offline-secret]"
        elif name == "hfToken" and v is not None:
            problems.append(_plaintext_token())
        raw[name] = v
    if problems:
        raise ConfigError(problems)
    return raw, region


def load_file(path: str | Path, stack: str | None = None) -> StackIntent:
    raw, region = parse_stack_file(path)
    if stack is None:
        stack = Path(path).name.removeprefix("Pulumi.").removesuffix(".yaml")
    return resolve(raw, stack=stack, region=region)


def load() -> StackIntent:
    """Read the stack config inside a Pulumi program (real run, or under mocks)."""
    import pulumi
    from pulumi.runtime import config as rc

    raw: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    all_cfg = {**rc.get_config_env(), **rc.CONFIG.get()}
    problems = namespace_problems([k for k in all_cfg if ":" in k])
    token = f"{prefix}hfToken"
    if all_cfg.get(token) not in (None, "null") and not (
        rc.is_config_secret(token) or token in rc.get_config_secret_keys_env()
    ):
        problems.append(_plaintext_token())  # runtime path: tests/stacks/test_config.py test_runtime_load_*
    if problems:
        raise pulumi.RunError("invalid stack config:\n" + "\n".join(f"error: {p}" for p in problems))
    for k, v in all_cfg.items():
        if k.startswith(prefix):
            name = k[len(prefix) :]
            try:
                # objects travel as JSON; a YAML null arrives as the string "null"
                raw[name] = json.loads(v) if isinstance(v, str) and (v[:1] in "[{" or v == "null") else v
            except json.JSONDecodeError:
                raw[name] = v
    region = pulumi.Config("aws").get("region") or "us-east-1"
    try:
        return resolve(raw, stack=pulumi.get_stack(), region=region)
    except ConfigError as e:
        raise pulumi.RunError("invalid stack config:\n" + "\n".join(f"error: {p}" for p in e.problems)) from None


def resolve(raw: dict[str, Any], *, stack: str, region: str = "us-east-1") -> StackIntent:
    try:
        cfg = StackConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_pydantic_problems(err)) from None
    return resolve_config(cfg, stack=stack, region=region)
