"""The vocabulary of a config problem: the project's key namespace, the key path, the error.

Every problem is one line, `llm-serving:<key path>: <what> — <how to fix>`.
"""

from __future__ import annotations

from typing import Any

PROJECT = "llm-serving"


class ConfigError(Exception):
    """Invalid stack config. `problems` are the lines to print, one per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _shown(part: Any) -> str:
    # A key with a newline or other control character would split the one-line problem; show it quoted.
    text = str(part)
    return text if text.isprintable() else repr(text)


def key(*path: Any) -> str:
    head, *rest = [_shown(p) for p in path]
    return ".".join([f"{PROJECT}:{head}", *rest])
