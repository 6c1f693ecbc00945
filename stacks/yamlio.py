"""YAML reading.

`load_yaml`, `load_all_yaml` and `dump_yaml` read and write YAML the program trusts (its catalogs, the
files a plan writes, what the tests read back) with libyaml's C loader and emitter when PyYAML has them:
the pure-Python ones were ~0.25 s of every plan and a fifth of the unit suite's CPU. The same documents
either way; ruff bans `yaml.safe_load`/`safe_dump` everywhere else, so this is the one choice.

`load_untrusted` reads a user's file (a stack file) and refuses, cheaply and before anything is
built from it, what the C loader would otherwise turn into a crash, a silent surprise or a memory
blow-up: more than one document, duplicate keys (PyYAML keeps the last one silently), anchors and
aliases beyond a small budget or expanding past a node budget (an "alias bomb"), recursive aliases,
nesting deeper than a limit (libyaml's composer recurses in C and overflows the stack), tags other
than the plain JSON-like ones, files over a size cap and bytes that are not UTF-8. Timestamps stay
strings (Pulumi reads the file as YAML 1.2, where `2026-01-01` is a string), and a plain scalar that
YAML 1.1 (PyYAML) and 1.2 (Pulumi's reader) resolve differently — `yes`/`off`, `1:30`, `0777`, `1e3`,
`1_000` — is refused with a hint to quote it, so the plan never judges a value the deploy reads otherwise.
Every problem is a `YamlIssue` with its line and column; the caller formats the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml import events, nodes

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

MAX_BYTES = 1024 * 1024  # a stack file is a few KiB; 1 MiB is far beyond any real one
MAX_ALIASES = 16  # anchors/aliases are rare in stack files; a handful is plenty
MAX_NODES = 100_000  # nodes after expanding aliases (a real stack file has a few hundred)
MAX_DEPTH = 64  # nesting levels (a stack file needs about 8)

_STR = "tag:yaml.org,2002:str"
_PLAIN_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:merge",
}


_FLOAT = "tag:yaml.org,2002:float"
# YAML 1.2 core schema (what Pulumi's YAML reader resolves plain scalars by), by tag.
_CORE_12 = (
    ("tag:yaml.org,2002:null", re.compile(r"\A(~|null|Null|NULL|)\Z")),
    ("tag:yaml.org,2002:bool", re.compile(r"\A(true|True|TRUE|false|False|FALSE)\Z")),
    ("tag:yaml.org,2002:int", re.compile(r"\A([-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z")),
    (
        _FLOAT,
        re.compile(r"\A([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))\Z"),
    ),
)
_KIND = {
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:int": "an integer",
    _FLOAT: "a number",
    "tag:yaml.org,2002:timestamp": "a string",
    _STR: "a string",
}


def _core12_tag(text: str) -> str:
    return next((tag for tag, pattern in _CORE_12 if pattern.fullmatch(text)), _STR)


def _yaml_versions_problem(node: nodes.ScalarNode) -> str | None:
    """How a plain scalar reads differently in YAML 1.1 (this reader) and 1.2 (Pulumi's), or None.
    A decimal with an unsigned exponent (1.0e9) is a number to both readers' users: it is read as one."""
    if node.style:  # quoted or block scalars are strings to both (plain: None, or "" from libyaml)
        return None
    old, new = node.tag, _core12_tag(node.value)
    if old == _STR and new == _FLOAT and "." in node.value and node.value.lstrip("+-")[:1].isdigit():
        node.tag = _FLOAT
        return None
    if _KIND.get(old) != _KIND.get(new):
        return f"{_KIND.get(old, old)} to this plan (YAML 1.1) but {_KIND[new]} to Pulumi (YAML 1.2)"
    if new == "tag:yaml.org,2002:int" and re.fullmatch(r"[-+]?0[0-9]+", node.value):
        return "octal to this plan (YAML 1.1) but decimal to Pulumi (YAML 1.2)"
    return None


def load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def load_all_yaml(text: str) -> list:
    return list(yaml.load_all(text, Loader=_Loader))


def dump_yaml(data: Any, stream: Any = None, **options: Any) -> Any:
    """`yaml.safe_dump` through libyaml: `options` as there (sort_keys, default_flow_style, ...)."""
    return yaml.dump(data, stream, Dumper=_Dumper, **options)


@dataclass(frozen=True)
class YamlIssue:
    line: int | None  # 1-based; None when the problem is the whole file
    column: int | None
    path: tuple[str, ...]  # keys from the document root to the offending node
    what: str
    fix: str


class YamlError(Exception):
    def __init__(self, issues: list[YamlIssue]):
        self.issues = issues
        super().__init__("; ".join(i.what for i in issues))


class _StrictLoader(_Loader):  # type: ignore[misc, valid-type]
    """The safe loader, with timestamps kept as the strings they are written as."""


_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _issue(mark, path: tuple[str, ...], what: str, fix: str) -> YamlIssue:
    if mark is None:
        return YamlIssue(None, None, path, what, fix)
    return YamlIssue(mark.line + 1, mark.column + 1, path, what, fix)


def read_text(path: Path) -> str:
    """The file's text, or YamlError for what is not a readable, reasonably sized UTF-8 file."""
    whole = lambda what, fix: YamlError([YamlIssue(None, None, (), what, fix)])  # noqa: E731
    if path.is_dir():
        raise whole("is a directory, not a stack file", "pass the Pulumi.<stack>.yaml file itself")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise whole("no such file", "check the path, or create the stack file") from None
    except OSError as e:
        raise whole(f"cannot be read ({e.strerror or e})", "check the path and its permissions") from None
    if len(data) > MAX_BYTES:
        raise whole(f"is larger than {MAX_BYTES // 1024} KiB", "a stack file is a few KiB; pass the right file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise YamlError(
            [YamlIssue(line, col, (), f"byte 0x{data[e.start]:02x} is not UTF-8", "save the file as UTF-8")]
        ) from None


def _scan_events(text: str) -> None:
    """One pass over the parser's events (iterative, no composition): document count, nesting
    depth, alias budget and recursive aliases are checked before any node graph exists."""
    loader = _Loader(text)
    try:
        depth, docs, aliases = 0, 0, 0
        open_anchors: list[str | None] = []
        while loader.check_event():
            ev = loader.get_event()
            if isinstance(ev, events.DocumentStartEvent):
                docs += 1
                if docs > 1:
                    raise YamlError(
                        [
                            _issue(
                                ev.start_mark,
                                (),
                                "more than one YAML document",
                                "keep a single document (remove the '---' separator)",
                            )
                        ]
                    )
            elif isinstance(ev, (events.MappingStartEvent, events.SequenceStartEvent)):
                depth += 1
                open_anchors.append(ev.anchor)
                if depth > MAX_DEPTH:
                    raise YamlError(
                        [_issue(ev.start_mark, (), f"nesting deeper than {MAX_DEPTH} levels", "flatten the document")]
                    )
            elif isinstance(ev, (events.MappingEndEvent, events.SequenceEndEvent)):
                depth -= 1
                open_anchors.pop()
            elif isinstance(ev, events.AliasEvent):
                aliases += 1
                if ev.anchor in open_anchors:
                    raise YamlError(
                        [
                            _issue(
                                ev.start_mark,
                                (),
                                f"alias *{ev.anchor} refers to a node that contains it",
                                "write the value out instead of a recursive alias",
                            )
                        ]
                    )
                if aliases > MAX_ALIASES:
                    raise YamlError(
                        [
                            _issue(
                                ev.start_mark,
                                (),
                                f"more than {MAX_ALIASES} YAML aliases",
                                "write the values out instead of using anchors and aliases",
                            )
                        ]
                    )
    finally:
        loader.dispose()


def _key_text(node: nodes.Node) -> str:
    if isinstance(node, nodes.ScalarNode):
        return str(node.value)
    assert isinstance(node, (nodes.SequenceNode, nodes.MappingNode)), "a YAML node is a scalar, a sequence or a mapping"
    return f"<{node.id}>"


def _scalar_issues(node: nodes.ScalarNode, path: tuple[str, ...]) -> list[YamlIssue]:
    differs = _yaml_versions_problem(node)
    if not differs:
        return []
    fix = f'quote it ("{node.value}") if it is text, or write the number or true/false plainly'
    return [_issue(node.start_mark, path, f"{node.value!r} is {differs}", fix)]


def _node_issues(node: nodes.Node, path: tuple[str, ...]) -> list[YamlIssue]:
    if node.tag not in _PLAIN_TAGS:
        what = f"YAML tag {node.tag} is not supported"
        return [_issue(node.start_mark, path, what, "remove the tag; write a plain value")]
    if isinstance(node, nodes.ScalarNode):
        return _scalar_issues(node, path)
    return []


def _duplicate_keys(node: nodes.MappingNode, path: tuple[str, ...], seen: set[int]) -> list[YamlIssue]:
    """Keys given twice in one mapping (`seen`: key nodes already reported, for aliased mappings)."""
    first: dict[str, Any] = {}
    out = []
    for k, _ in node.value:
        name = _key_text(k)
        if k.tag == "tag:yaml.org,2002:merge":
            continue
        if name in first and id(k) not in seen:
            seen.add(id(k))
            what = f"duplicate key (first at line {first[name].line + 1}); YAML keeps only the last"
            out.append(_issue(k.start_mark, path + (name,), what, "merge the two entries into one"))
        else:
            first.setdefault(name, k.start_mark)
    return out


def _children(node: nodes.Node, path: tuple[str, ...]) -> list[tuple[nodes.Node, tuple[str, ...]]]:
    if isinstance(node, nodes.MappingNode):
        return [(x, path + (_key_text(k),)) for k, v in node.value for x in (k, v)]
    if isinstance(node, nodes.SequenceNode):
        return [(v, path + (str(i),)) for i, v in enumerate(node.value)]
    return []


def _check_graph(root: nodes.Node) -> list[YamlIssue]:
    """Duplicate keys, unsupported tags, scalars the YAML versions read differently, and the size of
    the document once aliases are expanded."""
    issues: list[YamlIssue] = []
    size: dict[int, int] = {}
    seen_dups: set[int] = set()

    def walk(node: nodes.Node, path: tuple[str, ...]) -> int:
        if id(node) in size:  # an alias: counted again (that is what expansion costs), not re-walked
            return size[id(node)]
        issues.extend(_node_issues(node, path))
        if isinstance(node, nodes.MappingNode):
            issues.extend(_duplicate_keys(node, path, seen_dups))
        n = 1
        for child, child_path in _children(node, path):
            n += walk(child, child_path)
            if n > MAX_NODES:
                break
        size[id(node)] = n
        return n

    if walk(root, ()) > MAX_NODES:
        what = f"expands to more than {MAX_NODES} nodes through aliases"
        issues.append(_issue(root.start_mark, (), what, "write the values out instead of nesting aliases"))
    return issues


def load_untrusted(text: str) -> Any:
    """Parse a user's YAML document strictly (see the module docstring); YamlError on any problem."""
    try:
        _scan_events(text)
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            issues = _check_graph(node)
            if issues:
                raise YamlError(issues)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(x for x in (e.context, e.problem) if x) or "invalid YAML"
        raise YamlError([_issue(mark, (), f"YAML syntax: {what}", "fix the YAML at that position")]) from None
    except yaml.YAMLError as e:
        raise YamlError([_issue(None, (), f"YAML: {e}", "fix the YAML")]) from None
