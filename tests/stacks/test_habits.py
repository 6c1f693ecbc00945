"""Developer habits that a reviewer would otherwise check by hand: every venv installs from a lock file
that matches its hand-edited requirements, every locked package carries a hash, every requirements
path the Makefile and scripts read exists, every test sits in exactly one tier, and imports resolve
through pytest's `pythonpath` rather than `sys.path` edits."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TIER_OF, TIERS, tier_of

# hand-edited requirements file -> the lock file its venv installs from (scripts/lock.sh). The product's
# top level, requirements.txt, stays at the root; dev.txt includes it.
LOCKS = {
    "requirements/pip.txt": "requirements/pip.lock",
    "requirements/dev.txt": "requirements/dev.lock",
    "requirements/e2e-vllm.txt": "requirements/e2e-vllm.lock",
    "requirements/e2e-gateway.txt": "requirements/e2e-gateway.lock",
    "requirements/checkov.txt": "requirements/checkov.lock",
    "requirements/e2e-neuron-parser.txt": "requirements/e2e-neuron-parser.lock",
    "requirements/nca.txt": "requirements/nca.lock",
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_pins(path: Path) -> dict[str, str]:
    """name -> version of every `name[extras]==version` line, following `-r other.txt`."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out |= direct_pins(path.parent / line[3:].strip())
        elif line:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line)
            assert m, f"{path.name}: {line!r} is not an exact pin (name==version)"
            out[norm(m[1])] = m[3]
    return out


def locked(text: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a pip-compile --generate-hashes file."""
    out: dict[str, tuple[str, int]] = {}
    name = ""
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            name = norm(m[1])
            out[name] = (m[2], 0)
        elif "--hash=sha256:" in line and name:
            out[name] = (out[name][0], out[name][1] + 1)
    return out


def mismatches(pins: dict[str, str], lock: dict[str, tuple[str, int]]) -> list[str]:
    bad = [f"{n}=={v} not in the lock" for n, v in pins.items() if n not in lock or lock[n][0].split("+")[0] != v]
    return bad + [f"{n} has no hash" for n, (_, hashes) in lock.items() if hashes == 0]


@pytest.mark.parametrize("req", sorted(LOCKS))
def test_lock_matches_requirements_and_has_hashes(req):
    lock = ROOT / LOCKS[req]
    assert lock.exists(), f"{LOCKS[req]} missing: run bash scripts/lock.sh"
    assert mismatches(direct_pins(ROOT / req), locked(lock.read_text())) == []


def test_lock_check_can_fail():
    lock = locked("pydantic==2.13.4 \\\n    --hash=sha256:ab\nrequests==2.0\n")
    assert mismatches({"pydantic": "2.13.5"}, lock) == ["pydantic==2.13.5 not in the lock", "requests has no hash"]
    assert mismatches({"pydantic": "2.13.4"}, {"pydantic": ("2.13.4", 1)}) == []


def venvs_without_pinned_pip(script: str) -> list[str]:
    """Lines that create a venv and then install anything before the pinned pip (requirements/pip.lock)."""
    lines = script.splitlines()
    bad = []
    for i, line in enumerate(lines):
        if " -m venv " not in line or line.lstrip().startswith("#"):
            continue
        after = " ".join([line, *lines[i + 1 : i + 3]])
        first = after.find(" install ")
        second = after.find(" install ", first + 1)
        segment = after[first : second if second > 0 else None] if first >= 0 else ""
        if "pip_lock" not in segment and "requirements/pip.lock" not in segment:
            bad.append(line.strip())
    return bad


@pytest.mark.parametrize("script", ["Makefile", "scripts/setup-e2e.sh"])
def test_every_venv_installs_the_pinned_pip_first(script):
    # The pip that `python3 -m venv` bundles resolved an extra against the newest release on the index
    # instead of the locked one; the pinned pip does not.
    assert venvs_without_pinned_pip((ROOT / script).read_text()) == []


def test_pinned_pip_check_can_fail():
    assert venvs_without_pinned_pip('python3 -m venv "$1"; "$1/bin/pip" install -r x.lock') != []


def test_torch_is_the_cpu_build_in_both_vllm_venvs():
    """The local CPU wheel (2.13.0+cpu), never a CUDA build from the index."""
    for lock in ("requirements/e2e-vllm.lock", "requirements/e2e-neuron-parser-deps.lock"):
        assert locked((ROOT / lock).read_text())["torch"][0] == "2.13.0+cpu", lock


# Every requirements path a build step reads, as written in it (a variable's value included).
REQ_PATH = re.compile(r"requirements(?:[/-][\w.-]+?)?\.(?:txt|lock)")


def missing_paths(text: str) -> list[str]:
    return sorted({p for p in REQ_PATH.findall(text) if not (ROOT / p).is_file()})


@pytest.mark.parametrize("script", ["Makefile", "scripts/setup-e2e.sh", "scripts/lock.sh"])
def test_every_requirements_path_a_build_step_reads_exists(script):
    assert missing_paths((ROOT / script).read_text()) == []


def test_missing_path_check_can_fail():
    assert missing_paths("-r requirements/pip.lock -r requirements-e2e.lock") == ["requirements-e2e.lock"]
    found = REQ_PATH.findall("cat requirements/pip.lock requirements.txt")
    assert found == ["requirements/pip.lock", "requirements.txt"]


def test_only_the_top_level_requirements_file_stays_at_the_root():
    assert sorted(p.name for p in ROOT.glob("requirements*") if p.is_file()) == ["requirements.txt"]
    assert (ROOT / "requirements/dev.txt").read_text().splitlines()[0] == "-r ../requirements.txt"


# ---- tiers (tests/conftest.py): every test in exactly one, each selectable with -m ----


def tiers_of(item: pytest.Item) -> set[str]:
    return {m.name for m in item.iter_markers() if m.name in TIERS}


def test_every_collected_test_has_exactly_one_tier(request):
    wrong = [f"{item.nodeid}: {sorted(tiers_of(item))}" for item in request.session.items if len(tiers_of(item)) != 1]
    assert wrong == []


def test_every_test_module_is_in_the_tier_table():
    modules = sorted(p.relative_to(ROOT / "tests").as_posix() for p in (ROOT / "tests").rglob("test_*.py"))
    assert [m for m in modules if tier_of(m) is None] == []
    # the table names no module that is gone
    assert [m for m in TIER_OF if not m.endswith("/") and not (ROOT / "tests" / m).is_file()] == []


def test_one_tier_check_can_fail():
    class TwoTiers:
        def iter_markers(self):
            return [pytest.mark.config.mark, pytest.mark.wiring.mark, pytest.mark.timeout.mark]

    assert tiers_of(TwoTiers()) == {"config", "wiring"}


def test_tier_lookup_can_fail():
    assert tier_of("stacks/test_relations.py") == "relations"
    assert tier_of("e2e/test_anything_new.py") == "e2e"
    assert tier_of("stacks/test_not_in_the_table.py") is None
    assert tier_of("test_at_the_top.py") is None


def test_pytest_m_relations_selects_the_relations_tier():
    """`pytest -m relations` run for real over two modules of different tiers: it collects the relations
    module's tests and none of the other's (the markers are given before pytest's -m deselection)."""
    files = ["tests/stacks/test_relations.py", "tests/stacks/test_habits.py"]
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "relations", "-p", "no:xdist", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    ids = [line for line in r.stdout.splitlines() if "::" in line]
    assert ids != []
    assert [i for i in ids if not i.startswith(files[0])] == []


def test_tiers_are_the_registered_markers():
    import tomllib

    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert sorted(m.split(":", 1)[0] for m in ini["markers"]) == sorted(TIERS)
    assert "--strict-markers" in ini["addopts"].split()


def test_no_sys_path_edits():
    """pytest's `pythonpath = ["."]` and `python -m` resolve imports; no module edits sys.path."""
    offenders = [
        str(p.relative_to(ROOT))
        for d in ("tests", "benchmarks", "stacks", "components")
        for p in (ROOT / d).rglob("*.py")
        if "sys.path.insert" in p.read_text() and p.name != "test_habits.py"
    ]
    assert offenders == []


# ---- one rule, one definition (a port, a UID, a taint effect, a policy ARN is defined once) ----

SHARED_LITERALS = {
    r"\b8000\b": "VLLM_PORT",
    r"\b4000\b": "GATEWAY_PORT",
    r"\b8080\b": "WEBUI_PORT",
    r"\b2000\b": "VLLM_UID",
    r'"NoSchedule"|"NO_SCHEDULE"': "TAINT_EFFECT / taint() / tolerate()",
    r"AmazonEKSWorkerNodePolicy|AmazonEC2ContainerRegistryPullOnly": "WORKER_NODE_POLICIES",
    r"\.svc\.cluster\.local": "service_host()",
}


def spelled_again(text: str) -> list[str]:
    """Shared constants written as literals outside components/types.py (comments and docstrings too:
    a number in prose drifts from the code just the same)."""
    return [f"{pat} (use {name})" for pat, name in SHARED_LITERALS.items() if re.search(pat, text)]


def test_shared_constants_are_defined_once():
    found = {}
    for path in sorted([*ROOT.glob("components/*.py"), *ROOT.glob("stacks/**/*.py")]):
        if path.name == "types.py" and path.parent.name == "components":
            continue
        hits = spelled_again(path.read_text())
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    # The exceptions, each a different quantity that reads the same: a default memory limit of 8000 GiB,
    # and the port-forward command line the verify CLI prints for a user to copy.
    assert found == {
        "stacks/config/schema.py": [r"\b8000\b (use VLLM_PORT)"],
        "stacks/verify.py": [r"\b4000\b (use GATEWAY_PORT)"],
    }, found


def test_the_spelled_again_check_can_fail():
    assert spelled_again('ports = [{"port": 8000}]') == [r"\b8000\b (use VLLM_PORT)"]
    assert spelled_again('{"effect": "NO_SCHEDULE"}') == [
        '"NoSchedule"|"NO_SCHEDULE" (use TAINT_EFFECT / taint() / tolerate())'
    ]
    assert spelled_again("port = VLLM_PORT") == []
