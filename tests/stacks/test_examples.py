"""Every example stack plans (exit 0) to what it should, and docs/deploy.md links it."""

import json

import pytest

from stacks.report import table
from tests.conftest import ROOT, STACK_FILES

# Platform stacks leave publicAccessCidrs unset (the deployer's address is the user's to give), so the
# plan warns once per stack; a team stack creates no cluster and is not warned.
OPEN_ENDPOINT = (
    "llm-serving:cluster.publicAccessCidrs: the public API endpoint is open to the whole internet "
    "(IAM-authenticated) — set it to your office/VPN/CI CIDRs, e.g. [203.0.113.7/32]"
)
UNPINNED = "revision not pinned: set revision: <commit sha> so every replica loads the same weights"
# What each committed stack plans to, by hand: model -> (instance, TP, warnings). The planner's
# choices are argued in test_planner.py (e.g. seed003: TP4 on p4d leaves < 1 GiB KV, so TP8).
EXPECTED = {
    "Pulumi.dev.yaml": {"qwen3-0-6b": ("g6.xlarge", 1, [UNPINNED])},
    "Pulumi.minimal.yaml": {"qwen3-0-6b": ("g6.xlarge", 1, [UNPINNED])},
    "Pulumi.seed000-inf2-llama-qwen-webui.yaml": {
        "llama-3-1-8b": ("inf2.8xlarge", 2, [UNPINNED]),
        "qwen3-8b": ("inf2.8xlarge", 2, [UNPINNED]),
    },
    "Pulumi.seed001-trn1-mistral.yaml": {"mistral-7b": ("trn1.2xlarge", 2, [UNPINNED])},
    "Pulumi.seed002-g5-qwen3-14b.yaml": {"qwen3-14b": ("g5.12xlarge", 4, [UNPINNED])},
    "Pulumi.seed003-mistral-llama2-70b.yaml": {
        "mistral-7b": ("g6.12xlarge", 4, [UNPINNED]),
        "llama-2-70b": ("p4d.24xlarge", 8, [UNPINNED]),
    },
    "Pulumi.seed004-qwen3-0-6b-one-gpu.yaml": {"qwen3-0-6b": ("g6e.xlarge", 1, [UNPINNED])},
    "Pulumi.team-search.yaml": {"qwen2-5-7b": ("g6e.xlarge", 1, [UNPINNED])},
    "Pulumi.teams.yaml": {"qwen3-0-6b": ("g6.xlarge", 1, [UNPINNED]), "qwen2-5-7b": ("g6e.xlarge", 1, [UNPINNED])},
}


def table_rows(out: str) -> dict[str, list[str]]:
    """The model table the CLI prints, parsed: model -> cells (the last column is `fits`)."""
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert lines[head].split()[-1] == "fits"
    rows = {}
    for line in lines[head + 2 :]:
        if not line.strip() or line.startswith("warning: "):
            break
        cells = line.split()
        rows[cells[0]] = cells
    return rows


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_example_plans(path, plan_of):
    # This run's plan of the stack and the table `python -m stacks.plan --out` prints from it (the CLI
    # itself, exit codes and all, is test_plan_cli.py's): planning every stack again costs a plan each.
    intent, _, planned = plan_of(path)
    doc = json.loads((planned / "summary.json").read_text())
    out = table(doc, intent.warnings)
    want = EXPECTED[path.name]
    rows = table_rows(out)
    assert sorted(rows) == sorted(want)
    assert all(r[-1] == "yes" for r in rows.values()), rows
    got = {m["name"]: (m["instanceType"], m["tensorParallel"], m["warnings"]) for m in doc["models"]}
    assert got == {k: tuple(v) for k, v in want.items()}
    assert all(m["fits"] is True for m in doc["models"])
    warned = sorted(line for line in out.splitlines() if line.startswith("warning: "))
    stack_warnings = [] if path.name == "Pulumi.team-search.yaml" else [f"warning: {OPEN_ENDPOINT}"]
    assert warned == sorted([*stack_warnings, *(f"warning: {m}: {w}" for m, (_, _, ws) in want.items() for w in ws)])


def test_every_committed_stack_has_expectations():
    assert sorted(p.name for p in STACK_FILES) == sorted(EXPECTED)


def test_seeds_exist_and_the_deploy_page_links_them():
    names = [p.name for p in (ROOT / "stacks" / "examples").glob("*.yaml")]
    page = (ROOT / "docs" / "deploy.md").read_text()
    for seed in ("seed000", "seed001", "seed002", "seed003", "seed004"):
        assert any(n.startswith(f"Pulumi.{seed}-") for n in names), seed
    for n in names:
        assert f"](../stacks/examples/{n})" in page, n
