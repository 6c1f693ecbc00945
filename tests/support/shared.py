"""Reference data outside the repository (`../shared`: CRD schemas, chart sources, the Pulumi project
schema), found through one setting: the environment variable LLM_SERVING_SHARED, default `../shared`
beside the checkout.

A clone without it still runs the suite: a test that needs a missing piece skips with a reason that
names the path. Under CI (`E2E_REQUIRED=1` or `CI`), a missing piece is a failure, never a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("LLM_SERVING_SHARED") or ROOT.parent / "shared")


def required() -> bool:
    """CI runs every tier: a skip there would hide a test that never ran."""
    return bool(os.environ.get("E2E_REQUIRED") or os.environ.get("CI"))


def missing(what: str, fix: str) -> None:
    """Skip (locally) or fail (CI) a test whose inputs are not on this machine."""
    msg = f"{what} — {fix}"
    if required():
        pytest.fail(f"required under CI: {msg}")
    pytest.skip(msg)


def shared_path(rel: str) -> Path:
    """`SHARED/rel`, or skip/fail naming exactly what is missing and the setting that finds it."""
    p = SHARED / rel
    if not p.exists():
        missing(f"{p} not found", "put the project's shared/ beside the checkout or set LLM_SERVING_SHARED")
    return p
