"""Mutation score of the unit suite: apply one mutation at a time to a copy of the repository, run
the unit suite, and see whether it fails (caught) or passes (survived).

    .venv/bin/python benchmarks/mutations.py [--only ID ...] [--timeout 900] [--list]

The mutations are data (benchmarks/mutations.yaml: file, exact original fragment, replacement,
what it breaks). A fragment that is not in its file (the code moved on) is "not applicable", not
an error; one that occurs more than once is "ambiguous". The repository itself is never touched:
the copy lives in a temporary directory, and each mutated file is restored before the next one.
Prints one line per mutation and the score; exits 0 (a benchmark, not a gate). Takes minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stacks.yamlio import load_yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
# The whole unit suite (pyproject's addopts deselect the e2e tier); -x stops at the first failure.
SUITE = ["tests"]


def load(path: Path) -> list[dict]:
    doc = load_yaml(path.read_text())
    for m in doc["mutations"]:
        missing = {"id", "file", "original", "replacement", "breaks"} - set(m)
        if missing:
            raise SystemExit(f"{path}: mutation {m.get('id')!r} lacks {sorted(missing)}")
    return doc["mutations"]


def copy_repo(dest: Path) -> None:
    shutil.copytree(
        ROOT, dest, symlinks=True, ignore=shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", "*.pyc")
    )


def run_suite(repo: Path, timeout: float) -> tuple[str, float, str]:
    """('pass' | 'fail' | 'timeout', seconds, first failing test)."""
    shared = os.environ.get("LLM_SERVING_SHARED") or str(ROOT.parent / "shared")
    env = {**os.environ, "LLM_SERVING_SHARED": shared, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CI", None)
    env.pop("E2E_REQUIRED", None)
    t = time.perf_counter()
    try:
        r = subprocess.run(
            [str(PYTHON), "-m", "pytest", "-q", "-x", "-rfE", "-p", "no:randomly", "-p", "no:cacheprovider", *SUITE],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t, ""
    first = next(
        (
            line.split(" ", 1)[1].split(" - ")[0]
            for line in r.stdout.splitlines()
            if line.startswith(("FAILED ", "ERROR "))
        ),
        "",
    )
    return ("pass" if r.returncode == 0 else "fail"), time.perf_counter() - t, first


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutations", type=Path, default=ROOT / "benchmarks" / "mutations.yaml")
    ap.add_argument("--only", nargs="*", help="run only these mutation ids")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per suite run")
    ap.add_argument("--list", action="store_true", help="check the fragments and stop")
    ap.add_argument("--skip-baseline", action="store_true")
    a = ap.parse_args(argv)
    muts = [m for m in load(a.mutations) if not a.only or m["id"] in a.only]
    results: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="mutations-") as tmp:
        repo = Path(tmp) / "repo"
        copy_repo(repo)
        if not a.list and not a.skip_baseline:
            status, secs, first = run_suite(repo, a.timeout)
            print(f"baseline: suite {status} in {secs:.0f}s {first}".rstrip(), flush=True)
            if status != "pass":
                print("baseline does not pass: every mutation would count as caught; fix the suite first")
                return 0
        for m in muts:
            path = repo / m["file"]
            text = path.read_text() if path.exists() else ""
            n = text.count(m["original"])
            if n != 1:
                verdict = "not applicable" if n == 0 else f"ambiguous ({n} matches)"
                results.append((m["id"], verdict))
                print(f"{m['id']:28} {verdict:15} {m['file']}", flush=True)
                continue
            if a.list:
                results.append((m["id"], "applicable"))
                print(f"{m['id']:28} {'applicable':15} {m['file']}", flush=True)
                continue
            path.write_text(text.replace(m["original"], m["replacement"]))
            try:
                status, secs, first = run_suite(repo, a.timeout)
            finally:
                path.write_text(text)
            verdict = {"fail": "caught", "pass": "SURVIVED", "timeout": "timeout"}[status]
            results.append((m["id"], verdict))
            print(f"{m['id']:28} {verdict:15} {secs:5.0f}s  {first or m['breaks']}", flush=True)
    if a.list:
        return 0
    applicable = [v for _, v in results if v in ("caught", "SURVIVED", "timeout")]
    caught = sum(v == "caught" for v in applicable)
    print(f"score: {caught}/{len(applicable)} caught ({len(results) - len(applicable)} not applicable / ambiguous)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
