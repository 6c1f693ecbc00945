"""Valid types the price table lacks plan with "no price" and a warning; invalid ones exit 2 with one
line; the plan CLI never prints a traceback (the invalid ones run as a process, the way a user runs
it; the valid ones plan in this process: a program that completes leaves no SDK state behind)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def stack_file(tmp_path: Path, body: str) -> Path:
    f = tmp_path / "Pulumi.t.yaml"
    f.write_text("config:\n  llm-serving:models:\n    tiny: {preset: qwen3-0.6b}\n" + body)
    return f


def plan(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    f = stack_file(tmp_path, body)
    return subprocess.run(
        [sys.executable, "-m", "stacks.plan", "t", "--config", str(f), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "body,shown",
    [
        ("  llm-serving:cluster:\n    systemNodes: {instanceTypes: [m7i.4xlarge]}\n", "2x m7i.4xlarge (no price"),
        (
            "  llm-serving:gateway:\n    database: {enabled: true, instanceClass: db.r6g.large}\n",
            "db.r6g.large Multi-AZ, 20 GB (no price",
        ),
    ],
)
def test_valid_but_unpriced_plans_with_no_price_and_a_warning(tmp_path, capsys, body, shown):
    from stacks.plan import main

    f = stack_file(tmp_path, body)
    assert main(["t", "--config", str(f), "--out", str(tmp_path / "out")]) == 0  # an exception fails here
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    assert shown in out
    assert "has no price in stacks/catalog/prices.yaml" in out + err


@pytest.mark.parametrize(
    "body,key",
    [
        (
            "  llm-serving:cluster:\n    systemNodes: {instanceTypes: [not-a-type]}\n",
            "cluster.systemNodes.instanceTypes",
        ),
        (
            "  llm-serving:gateway:\n    database: {enabled: true, instanceClass: banana}\n",
            "gateway.database.instanceClass",
        ),
    ],
)
def test_invalid_type_exits_2_with_one_line(tmp_path, body, key):
    r = plan(tmp_path, body)
    assert r.returncode == 2 and r.stdout == ""
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: llm-serving:{key}: ") and " — " in lines[0], lines
