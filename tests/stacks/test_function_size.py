"""No function in product code is over 60 lines, so each one reads as one step."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("__main__.py", "components", "stacks", "incluster")
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


def product_files() -> list[Path]:
    files: list[Path] = []
    for entry in PRODUCT:
        path = ROOT / entry
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def test_no_product_function_is_over_60_lines():
    files = {f.relative_to(ROOT).as_posix(): f for f in product_files()}
    # The walk reaches every product tree.
    assert {"__main__.py", "components/cluster.py", "stacks/compose/serving.py", "stacks/config/load.py"} <= set(files)
    assert any(name.startswith("incluster/") for name in files)
    found = {name: long_functions(f.read_text()) for name, f in files.items()}
    assert {name: v for name, v in found.items() if v} == {}


def test_long_function_check_can_fail():
    """Negative control: a 61-line method (def + 60 statements) is caught, a 60-line one is not."""

    def source(statements: int) -> str:
        body = "".join(f"        x{i} = {i}\n" for i in range(statements))
        return f"class C:\n    @staticmethod\n    def f():\n{body}\n\n"

    assert long_functions(source(60)) == [("f", 61)]
    assert long_functions(source(59)) == []
    nested = "def outer():\n    def inner():\n" + "".join(f"        y{i} = {i}\n" for i in range(61))
    assert ("inner", 62) in long_functions(nested)
