"""The layering contract (`[tool.importlinter]` in pyproject.toml) holds, and it is not vacuous.

`lint-imports` reads the contracts and the import graph of stacks/, components/ and incluster/. The
negative controls copy those packages, add one import that breaks one contract, and check that
exactly that contract is reported broken.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.shared import ROOT

LINT = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("stacks", "components", "incluster")


def lint(cwd: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    # --no-cache: the cache directory would land in the checkout (or the copy).
    args = [str(LINT), "--no-cache", "--no-logo", *(a for c in contracts for a in ("--contract", c))]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_program_keeps_its_layering_contract():
    res = lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    # Six contracts, all kept: a contract dropped from pyproject.toml would show here.
    assert "Contracts: 6 kept, 0 broken." in res.stdout, res.stdout


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "examples"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_untouched_copy_keeps_every_contract(copy: Path):
    """Control for the cases below: what breaks there is the added import, not the copying."""
    res = lint(copy)
    assert res.returncode == 0, res.stdout + res.stderr


# (contract id, file in the copy, line appended to it): each breaks that one contract.
VIOLATIONS = [
    ("layers", "stacks/yamlio.py", "import stacks.catalog"),
    ("layers", "stacks/config/schema.py", "from stacks.config import resolve"),
    ("layers", "stacks/capacity/planner.py", "import stacks.report"),
    ("layers", "stacks/compose/platform.py", "import stacks.offline.runtime"),
    ("layers", "components/types.py", "import stacks.yamlio"),
    ("components", "components/vllm.py", "from components import keda"),
    ("components", "components/newcomer.py", "from components import types"),
    ("incluster-out", "incluster/reconciler/reconcile.py", "import components.types"),
    ("incluster-in", "stacks/compose/serving.py", "import incluster.gateway_auth.custom_auth"),
    ("incluster-apart", "incluster/gateway_auth/custom_auth.py", "import incluster.reconciler.reconcile"),
    ("acyclic", "stacks/compose/platform.py", "import stacks.compose.serving"),
]


@pytest.mark.parametrize(("contract", "rel", "line"), VIOLATIONS, ids=[f"{c}:{r}" for c, r, _ in VIOLATIONS])
def test_a_violating_import_is_caught(copy: Path, contract: str, rel: str, line: str):
    target = copy / rel
    text = target.read_text() if target.exists() else ""
    target.write_text(f"{text}\n{line}\n")
    after = lint(copy, contract)
    assert after.returncode == 1, after.stdout + after.stderr
    assert "0 kept, 1 broken." in after.stdout, after.stdout
