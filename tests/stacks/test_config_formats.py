"""Whole-string formats: no pattern of the config package, the catalog loader or the YAML reader
accepts a value with a trailing newline (Python's `$` matches before a final "\\n")."""

import re
import types
from typing import Annotated

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

import stacks.catalog
import stacks.config.load
import stacks.config.resolve
import stacks.config.schema
import stacks.config.vllm_flags
import stacks.yamlio
from stacks.config import schema

MODULES = [
    stacks.config.schema,
    stacks.config.load,
    stacks.config.resolve,
    stacks.config.vllm_flags,
    stacks.catalog,
    stacks.yamlio,
]


def compiled_patterns(module: types.ModuleType) -> dict[str, re.Pattern]:
    return {k: v for k, v in vars(module).items() if isinstance(v, re.Pattern)}


def end_anchor_problem(p: re.Pattern) -> str | None:
    """Why `p` could accept a trailing newline: an unescaped `$` (matches before a final newline)."""
    src = p.pattern
    i = 0
    while i < len(src):
        if src[i] == "\\":
            i += 2
            continue
        if src[i] == "$":
            return f"{src!r} uses $ (matches before a trailing newline); use \\Z and fullmatch"
        i += 1
    return None


def test_the_checker_catches_a_dollar_anchor():
    """Negative control: `^a$` is flagged and really accepts 'a\\n' with match; `\\Aa\\Z` is not flagged."""
    bad, good = re.compile(r"^a$"), re.compile(r"\Aa\Z")
    assert bad.match("a\n") and end_anchor_problem(bad)
    assert not good.match("a\n") and end_anchor_problem(good) is None
    assert end_anchor_problem(re.compile(r"\A\$5\Z")) is None  # an escaped dollar is a literal


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_no_compiled_pattern_uses_dollar(module):
    found = compiled_patterns(module)
    problems = {k: end_anchor_problem(p) for k, p in found.items() if end_anchor_problem(p)}
    assert not problems, problems


# Each format with a value it accepts: the same value plus "\n" must be refused by the pattern
# (with match, fullmatch and search) — the behaviour, not just the source text.
SAMPLES = {
    "DNS1123": "qwen3",
    "HF_ID": "Qwen/Qwen3-0.6B",
    "REVISION_SHA": "0" * 40,
    "REVISION_REF": "main",
    "SERVED_NAME": "qwen3",
    "AWS_REGION": "us-east-1",
    "LABEL_NAME": "team-a",
    "LABEL_PREFIX": "example.com",
    "ACM_CERTIFICATE_ARN": "arn:aws:acm:us-east-1:123456789012:certificate/1a2b3c4d-1a2b-1a2b-1a2b-1a2b3c4d5e6f",
    "IAM_ROLE_ARN": "arn:aws:iam::123456789012:role/admins",
    "EMAIL": "ops@example.com",
    "BUDGET_DURATION": "30d",
    "CRON_ITEM": "1-5/2",
    "URL_HOST": "prometheus.monitoring.svc",
    "URL_PATH": "/api/v1",
    "EC2_INSTANCE_TYPE": "m7i.xlarge",
    "RDS_INSTANCE_CLASS": "db.t4g.medium",
}


def test_every_schema_pattern_has_a_sample():
    assert set(compiled_patterns(schema)) <= set(SAMPLES), "add a sample for the new pattern"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_pattern_refuses_trailing_newline(name):
    p = getattr(schema, name)
    assert p.fullmatch(SAMPLES[name]) and p.match(SAMPLES[name])
    for v in (SAMPLES[name] + "\n", SAMPLES[name] + "\r\n", "\n" + SAMPLES[name]):
        assert not p.match(v) and not p.fullmatch(v) and not p.search(v), repr(v)


def pydantic_pattern_fields():
    """(model, field, pattern) for every `pattern=` constraint in the config and catalog models."""
    seen, out = set(), []
    found = [v for m in (schema, stacks.catalog) for v in vars(m).values()]
    stack = [v for v in found if isinstance(v, type) and issubclass(v, BaseModel)]
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        for fname, f in model.model_fields.items():
            for meta in f.metadata:
                pat = getattr(meta, "pattern", None)
                if pat:
                    out.append((model, fname, f.annotation, pat))
    return out


PYDANTIC_SAMPLES = {
    "vpcId": "vpc-0abc123",
    "kind": "nvidia",
    "digest": "sha256:" + "0" * 64,
    "caBundleSha256": "0" * 64,
    "amiAlias": "al2023@v20261201",
}


def test_pydantic_patterns_are_found():
    """Negative control for the scan below: it sees the constraints we know of."""
    assert {f for _, f, _, _ in pydantic_pattern_fields()} >= {"vpcId", "kind", "amiAlias"}


@pytest.mark.parametrize("entry", pydantic_pattern_fields(), ids=lambda e: f"{e[0].__name__}.{e[1]}")
def test_pydantic_pattern_refuses_trailing_newline(entry):
    """pydantic-core checks `pattern=` with Rust's regex, whose `$` is the end of the text: test it."""
    model, fname, annotation, _ = entry
    assert fname in PYDANTIC_SAMPLES, f"add a sample for {model.__name__}.{fname}"
    field = model.model_fields[fname]
    adapter = TypeAdapter(Annotated[(annotation, *field.metadata)])
    good = PYDANTIC_SAMPLES[fname]
    adapter.validate_python(good)
    with pytest.raises(ValidationError):
        adapter.validate_python(good + "\n")
