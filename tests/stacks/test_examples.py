"""Every example stack plans (exit 0) and the README links it."""
import pytest

from stacks.plan import main as plan_main
from tests.conftest import ROOT, STACK_FILES


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_example_plans(path, tmp_path, capsys):
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    assert plan_main([stack, "--config", str(path)]) == 0
    assert "fits" in capsys.readouterr().out


def test_seeds_exist_and_readme_links_them():
    names = [p.name for p in (ROOT / "stacks" / "examples").glob("*.yaml")]
    readme = (ROOT / "README.md").read_text()
    for seed in ("seed000", "seed001", "seed002", "seed003", "seed004"):
        assert any(n.startswith(f"Pulumi.{seed}-") for n in names), seed
    for n in names:
        assert f"stacks/examples/{n}" in readme, n
