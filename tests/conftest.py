from pathlib import Path

import pytest

from stacks import plan as plancli

ROOT = Path(__file__).resolve().parent.parent

_plans: dict = {}


def planned(stack_file: Path, tmp_root: Path):
    """Run the plan for a stack file once per test session; (intent, recording, out dir)."""
    key = str(stack_file)
    if key not in _plans:
        stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
        intent, rec = plancli.run_program(stack, stack_file)
        out = tmp_root / stack
        plancli.write_outputs(out, intent, rec)
        _plans[key] = (intent, rec, out)
    return _plans[key]


@pytest.fixture(scope="session")
def plan_of(tmp_path_factory):
    root = tmp_path_factory.mktemp("plans")
    return lambda stack_file: planned(Path(stack_file), root)


STACK_FILES = sorted([ROOT / "Pulumi.dev.yaml", *(ROOT / "stacks" / "examples").glob("*.yaml")])
