"""What the Pulumi CLI checks in project/stack config before the program runs (test-only).

`missing_config` follows pulumi/pulumi `sdk/go/common/workspace/config.go`
(ValidateStackConfigAndMergeProjectConfig): a key declared in Pulumi.yaml, in the project's own
namespace, with neither `default` nor `value`, that the stack file does not set, is "missing" and
`pulumi up` stops with `Stack '<s>' is missing configuration values ...` before creating anything.
"""
from __future__ import annotations


def missing_config(project: dict, stack_doc: dict) -> list[str]:
    """Declared project keys the CLI would report missing for this stack file (sorted short names)."""
    name = project["name"]
    stack_cfg = (stack_doc or {}).get("config") or {}
    missing = []
    for k, decl in (project.get("config") or {}).items():
        full = k if ":" in k else f"{name}:{k}"
        namespace = full.split(":", 1)[0]
        has_value = isinstance(decl, dict) and ("default" in decl or "value" in decl)
        if not isinstance(decl, dict):
            has_value = True  # a bare value is a value
        if full in stack_cfg or has_value or namespace != name:
            continue
        missing.append(full.split(":", 1)[1])
    return sorted(missing)
