"""Check management requests against the installed LiteLLM's OWN route table and request models.

Run with the LiteLLM venv's python (`.e2e/litellm/bin/python tests/support/litellm_contract.py`),
JSON on stdin: {"requests": [[method, path, body]], "queries": [[method, path, {param: value}]]}.
Optional "reads": {"<class in litellm.proxy._types>": [fields the reconciler reads from a row]}.
Prints JSON: {"version", "problems": [[index, kind, what]...], "queries": [[index, what]...], "reads"}.

For each request: the (method, path) is served by the proxy app (`litellm.proxy.proxy_server.app`,
walking its included routers); the body model is the one that route's endpoint declares (FastAPI's
body param, not a table of ours); every body field is a field of that model (the models do not
forbid extras: a misspelled field would be dropped silently); the model validates the body; an
explicit null survives `exclude_unset` (how /team/update and /key/update clear a limit); a
`key_alias` passes LiteLLM's alias format check; a `budget_duration` parses with its duration parser.
"""

from __future__ import annotations

import json
import logging
import sys


def served_routes(app) -> dict[tuple[str, str], object]:
    out: dict[tuple[str, str], object] = {}

    def walk(routes) -> None:
        for r in routes:
            inner = getattr(r, "original_router", None)
            if inner is not None:
                walk(inner.routes)
            for m in getattr(r, "methods", None) or ():
                out.setdefault((m, getattr(r, "path", "")), r)

    walk(app.routes)
    return out


def body_model(route):
    params = route.dependant.body_params
    if len(params) != 1:
        return None
    f = params[0]
    return getattr(f, "type_", None) or f.field_info.annotation


def check_body(i: int, model, body: dict, problems: list) -> None:
    from litellm.litellm_core_utils.duration_parser import duration_in_seconds
    from litellm.proxy.management_endpoints.key_management_endpoints import _validate_key_alias_format

    unknown = sorted(set(body) - set(model.model_fields))
    if unknown:
        problems.append([i, "unknown-field", f"{model.__name__} has no field(s) {unknown}"])
    try:
        parsed = model.model_validate(body)
    except Exception as e:  # pydantic.ValidationError
        problems.append([i, "invalid", f"{model.__name__}: {str(e).splitlines()[0:3]}"])
        return
    kept = parsed.model_dump(exclude_unset=True)
    dropped = sorted(k for k in body if k in model.model_fields and k not in kept)
    if dropped:
        problems.append([i, "dropped", f"{model.__name__} drops {dropped} under exclude_unset"])
    if body.get("key_alias") is not None:
        import litellm

        # the strictest setting: LiteLLM checks its built-in alias pattern only when this is on
        litellm.enable_key_alias_format_validation = True
        try:
            _validate_key_alias_format(key_alias=body["key_alias"])
        except Exception as e:
            problems.append([i, "key-alias", str(e)[:200]])
    if body.get("budget_duration") is not None:
        try:
            duration_in_seconds(body["budget_duration"])
        except Exception as e:
            problems.append([i, "budget-duration", str(e)[:200]])


def main() -> int:
    logging.disable(logging.WARNING)
    spec = json.load(sys.stdin)
    import litellm
    from litellm.proxy.proxy_server import app

    table = served_routes(app)
    problems: list = []
    for i, (method, path, body) in enumerate(spec.get("requests", [])):
        route = table.get((method, path))
        if route is None:
            problems.append([i, "no-route", f"{method} {path} is not served by the proxy"])
            continue
        model = body_model(route)
        if model is None:
            problems.append([i, "no-body-model", f"{method} {path} declares no single JSON body model"])
            continue
        check_body(i, model, body, problems)
    queries: list = []
    for i, (method, path, params) in enumerate(spec.get("queries", [])):
        route = table.get((method, path))
        if route is None:
            queries.append([i, f"{method} {path} is not served by the proxy"])
            continue
        known = {q.alias or q.name for q in route.dependant.query_params}
        if set(params) - known:
            queries.append([i, f"{method} {path} has no query parameter(s) {sorted(set(params) - known)}"])
    from litellm.proxy import _types as T

    reads: list = []
    for cls_name, fields in (spec.get("reads") or {}).items():
        cls = getattr(T, cls_name, None)
        if cls is None:
            reads.append(f"litellm.proxy._types has no {cls_name}")
            continue
        have = set(getattr(cls, "model_fields", None) or getattr(cls, "__annotations__", {}))
        for base in getattr(cls, "__mro__", ())[1:]:
            have |= set(getattr(base, "__annotations__", {}))
        if set(fields) - have:
            reads.append(f"{cls_name} has no field(s) {sorted(set(fields) - have)}")
    version = getattr(litellm, "__version__", None)
    if not version:
        from importlib.metadata import version as dist_version

        version = dist_version("litellm")
    print(json.dumps({"version": version, "problems": problems, "queries": queries, "reads": reads}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
