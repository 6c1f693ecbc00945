"""The config package stays split by job, in small functions (at most 60 lines each)."""

import ast
from pathlib import Path

import stacks.config

PACKAGE = Path(stacks.config.__file__).parent
MAX_LINES = 60


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function or method, nested ones included, longer than `limit` lines
    (from its `def` line through its last statement; decorators and the blank lines after excluded)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out.append((node.name, n))
    return out


def test_no_function_in_the_config_package_is_over_60_lines():
    files = sorted(PACKAGE.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "schema.py", "load.py", "resolve.py"}
    found = {f.name: long_functions(f.read_text()) for f in files}
    assert all(not v for v in found.values()), found


def test_long_function_check_can_fail():
    """Negative control: a 61-line method (def + 60 statements) is caught, a 60-line one is not."""

    def source(statements: int) -> str:
        body = "".join(f"        x{i} = {i}\n" for i in range(statements))
        return f"class C:\n    @staticmethod\n    def f():\n{body}\n\n"

    assert long_functions(source(60)) == [("f", 61)]
    assert long_functions(source(59)) == []


def test_the_old_single_module_is_gone_and_the_package_answers_for_it():
    """Callers import `stacks.config` names; they come from the package's modules, one object each.
    The modules `load` and `resolve` share their names with the functions callers use
    (`config.load()`, `config.resolve(raw, ...)`): the package attribute must be the function."""
    import importlib
    import sys

    load_mod = importlib.import_module("stacks.config.load")
    resolve_mod = sys.modules["stacks.config.resolve"]
    schema_mod = sys.modules["stacks.config.schema"]
    assert not (PACKAGE.parent / "config.py").exists()
    assert stacks.config.load is load_mod.load and stacks.config.resolve is load_mod.resolve
    assert stacks.config.ConfigError is resolve_mod.ConfigError is load_mod.ConfigError
    assert stacks.config.StackIntent is resolve_mod.StackIntent
    assert stacks.config.load_file is load_mod.load_file and stacks.config.DEFAULT_POOLS is schema_mod.DEFAULT_POOLS
