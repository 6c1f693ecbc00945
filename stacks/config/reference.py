"""The stack config reference (docs/config-reference.md), generated from the pydantic schema.

    .venv/bin/python -m stacks.config.reference > docs/config-reference.md

Walks the model tree from `StackConfig` and prints every key path with its type, default, bounds and
what the schema says about it: the field's `description`, else the comment written above or beside the
field in the class body, plus the docstring of a nested model. The schema carries no prose of its own
for most fields, and a second hand-written copy would drift: the comments are the documentation.
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import json
import operator
import sys
import textwrap
import tokenize
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from stacks.config.errors import PROJECT

# The map keys a user chooses, by the name of the map that holds them.
PLACEHOLDERS = {
    "models": "<model>",
    "nodePools": "<pool>",
    "teams": "<team>",
    "teamAccess": "<team>",
    "labels": "<label>",
    "ttftP95SecondsByModel": "<model>",
}
SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", SecretStr: "secret string"}
REGENERATE = ".venv/bin/python -m stacks.config.reference > docs/config-reference.md"


@dataclass(frozen=True)
class Row:
    path: str
    type: str
    default: str
    constraints: tuple[str, ...]
    about: str


@functools.cache
def _module_classes(filename: str) -> dict[str, str]:
    """Name -> source of each class defined at a module's top level: one parse per module, where
    `inspect.getsource` parses the whole module again for every class."""
    with tokenize.open(filename) as f:
        source = f.read()
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    return {n.name: "".join(lines[n.lineno - 1 : n.end_lineno]) for n in tree.body if isinstance(n, ast.ClassDef)}


def _source(cls: type) -> str | None:
    try:
        filename = inspect.getsourcefile(cls)
        if filename and cls.__qualname__ in (top := _module_classes(filename)):
            return top[cls.__qualname__]
        return textwrap.dedent(inspect.getsource(cls))  # a class nested in a function or another class
    except (OSError, TypeError):
        return None


def _comments(cls: type) -> dict[str, str]:
    """Field name -> the comment block right above its line in `cls`'s body, plus a trailing comment."""
    source = _source(cls)
    if source is None:
        return {}
    by_line: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = tok.string.lstrip("#").strip()
    out: dict[str, str] = {}
    pending: list[str] = []
    for number, line in enumerate(source.splitlines(), start=1):
        body = line[4:] if line.startswith("    ") and not line.startswith("     ") else None
        if body is not None and body.startswith("#"):
            pending.append(by_line.get(number, ""))
            continue
        name = body.split(":", 1)[0] if body and ":" in body else ""
        if name.isidentifier() and name in getattr(cls, "__annotations__", {}):
            trailing = [by_line[number]] if number in by_line else []
            out[name] = " ".join([*pending, *trailing])
        pending = []
    return out


def _field_comments(model: type[BaseModel]) -> dict[str, str]:
    """Comments of every field, inherited ones from the class that declares them."""
    out: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel:
            out.update(_comments(cls))
    return out


def _strip_none(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None was allowed)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        return functools.reduce(operator.or_, args), optional
    return annotation, False


def type_name(annotation: Any) -> str:
    """A reader's name for a field type: `integer`, `list of string`, `one of "a", "b"`, `map of ...`."""
    inner, optional = _strip_none(annotation)
    origin = get_origin(inner)
    if origin is Literal:
        name = "one of " + ", ".join(f"`{json.dumps(a)}`" for a in get_args(inner))
    elif origin is list:
        name = "list of " + type_name(get_args(inner)[0])
    elif origin is dict:
        name = "map of string to " + type_name(get_args(inner)[1])
    elif origin in (Union, types.UnionType):
        name = " or ".join(type_name(a) for a in get_args(inner))
    elif isinstance(inner, type) and issubclass(inner, BaseModel):
        name = "mapping"
    else:
        name = SCALARS.get(inner, getattr(inner, "__name__", str(inner)))
    return f"{name}, optional" if optional else name


def _literal(value: Any) -> str:
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, SecretStr):
        return "`(secret)`"
    return f"`{json.dumps(value)}`" if isinstance(value, str) else f"`{json.dumps(value, default=str)}`"


def default_text(field: FieldInfo) -> str:
    """`required`, the default value as YAML/JSON would write it, or "" for a nested section."""
    if field.is_required():
        return "required"
    factory = field.default_factory
    value = factory() if factory is not None else field.default  # type: ignore[call-arg]
    if value is None:
        return "unset"
    return _literal(value)


def constraints(field: FieldInfo) -> tuple[str, ...]:
    """Bounds, lengths and patterns pydantic enforces on the field, in words."""
    said: list[str] = []
    words = (
        (at.Ge, "ge", "≥ {}"),
        (at.Gt, "gt", "> {}"),
        (at.Le, "le", "≤ {}"),
        (at.Lt, "lt", "< {}"),
        (at.MinLen, "min_length", "at least {} item(s)"),
        (at.MaxLen, "max_length", "at most {} item(s)"),
    )
    for meta in field.metadata:
        for kind, attr, text in words:
            if isinstance(meta, kind):
                said.append(text.format(getattr(meta, attr)))
        pattern = getattr(meta, "pattern", None)
        if pattern is not None:
            said.append(f"matches `{pattern}`")
    return tuple(said)


def _nested(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """(the model a field holds, the path suffix to reach it: "", ".<key>" for maps, "[]" for lists)."""
    inner, _ = _strip_none(annotation)
    origin = get_origin(inner)
    if origin is dict:
        inner, suffix = get_args(inner)[1], ".{key}"
    elif origin is list:
        inner, suffix = get_args(inner)[0], "[]"
    else:
        suffix = ""
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return inner, suffix
    return None, ""


def rows(model: type[BaseModel], prefix: str = "") -> list[Row]:
    """One row per key path under `model`, depth first in declaration order."""
    table: list[Row] = []
    comments = _field_comments(model)
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        child, suffix = _nested(field.annotation)
        about = [field.description or comments.get(name, "")]
        if child is not None and child.__doc__:
            about.append(inspect.cleandoc(child.__doc__))
        text = " ".join(" ".join(a.split()) for a in about if a)
        default = default_text(field)
        table.append(Row(path, type_name(field.annotation), default, constraints(field), text))
        if child is not None:
            placeholder = PLACEHOLDERS.get(name, "<key>")
            table.extend(rows(child, path + suffix.format(key=placeholder) + "."))
    return table


def _escape(text: str) -> str:
    """`<`, `>` as entities outside code spans, so `<model>` in a comment is not taken for HTML."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _bullet(row: Row) -> str:
    facts = [row.type]
    if row.default:
        facts.append("required" if row.default == "required" else f"default {row.default}")
    facts.extend(row.constraints)
    line = f"- `{row.path}` ({'; '.join(facts)})"
    return f"{line}: {_escape(row.about)}" if row.about else line


def render(model: type[BaseModel], title: str = "Stack config reference") -> str:
    """The whole page: an introduction, then one section per top-level key."""
    lines = [
        f"# {title}",
        "",
        "Generated from `stacks/config/schema.py`; do not edit by hand. Regenerate it with",
        "",
        f"    {REGENERATE}",
        "",
        "(a unit test compares this file with the generator's output). What the keys do, with examples:",
        "[deploy](deploy.md), [models and sizing](models-and-sizing.md), [operate](operate.md),",
        "[teams](teams.md), [security](security.md).",
        "",
        f"Every key is set in `Pulumi.<stack>.yaml` under `config:` as `{PROJECT}:<top-level key>`, or with",
        f"`pulumi config set --path '{PROJECT}:<key path>' <value>`. Unknown keys are refused. `<model>`,",
        "`<pool>`, `<team>` stand for names you choose; `[]` marks the items of a list. Checks that involve",
        "more than one field (a tensor-parallel size that divides the model's heads, pool limits, ...) run",
        "after these; every problem is reported as `error: <key path>: <what> — <how to fix>`.",
    ]
    for row in rows(model):
        if "." not in row.path:
            lines += ["", f"## `{PROJECT}:{row.path}`", ""]
        lines.append(_bullet(row))
    return "\n".join(lines) + "\n"


def main() -> int:
    from stacks.config.schema import StackConfig

    sys.stdout.write(render(StackConfig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
