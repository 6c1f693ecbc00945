"""Shared fixtures (the per-session plan cache) and the test tiers.

Every test belongs to exactly one tier, a pytest marker given here by module (`pytest -m <tier>`):

    config        user intent at the boundary: schema, errors naming the key path, extraArgs, catalog data
    planner       capacity numbers by hand: memory fit, KV cache, costs, showback, deploy time, scaling
    wiring        the program under mocks: components alone, the plan CLI, its outputs and graph
    relations     what one rendered object says about another, in every stack
    deploy_rules  what AWS, the Pulumi CLI and the kubelet/scheduler enforce at deploy time
    helm          the real Helm charts rendered with the program's values
    rendered      manifests valid against the cluster's Kubernetes schemas and the CRD schemas
    policy        security policy on the plan: Pod Security "restricted", checkov, hardened pods
    habits        the repository itself: lock files, layout, constants defined once, README snippets
    e2e           real servers (vLLM, LiteLLM, nginx, Prometheus, Redis, Postgres); deselected by default

`policy` and `habits` are beyond the eight tiers first named: checkov and Pod Security judge the plan
by rules that neither the schemas (rendered) nor AWS (deploy_rules) enforce, and the habits tests judge
the repository, not the program. A test module missing from TIER_OF stops collection with its name.
"""

import fcntl
import functools
import gc
import hashlib
import os
import pickle
from pathlib import Path

import pytest
from kubernetes_validate import utils as kubernetes_validate_utils

from stacks import plan as plancli

ROOT = Path(__file__).resolve().parent.parent

# kubernetes-validate reads a kind's schema and its 1.5 MB definitions file from disk for every object it
# validates, and the suite validates thousands: read each file once per process. The schemas are only
# read, never changed, by the validators built on them.
kubernetes_validate_utils.schema_contents = functools.cache(kubernetes_validate_utils.schema_contents)

# module (relative to tests/) -> tier; a trailing "/" takes every module of that directory.
TIER_OF = {
    "stacks/test_config.py": "config",
    "stacks/test_yaml_safety.py": "config",
    "stacks/test_vllm_flags.py": "config",
    "stacks/test_catalog.py": "config",
    "stacks/test_config_bounds.py": "config",
    "stacks/test_config_formats.py": "config",
    "stacks/test_config_prices.py": "config",
    "stacks/test_advisories.py": "policy",
    "stacks/test_object_collisions.py": "relations",
    "stacks/test_tenancy.py": "relations",
    "stacks/test_planner.py": "planner",
    "stacks/test_size.py": "planner",
    "stacks/test_costs.py": "planner",
    "stacks/test_deploytime.py": "planner",
    "stacks/test_bench_measure.py": "planner",
    "stacks/test_bench_cli.py": "planner",
    "stacks/test_bench_job.py": "policy",
    "stacks/test_gateway_sizing.py": "planner",
    "stacks/test_bench_plan.py": "planner",
    "stacks/test_showback.py": "planner",
    "stacks/test_autoscaling.py": "planner",
    "stacks/test_startup.py": "planner",
    "stacks/test_spot.py": "deploy_rules",
    "stacks/test_wiring.py": "wiring",
    "stacks/test_plan_cli.py": "wiring",
    "stacks/test_plan_graph.py": "wiring",
    "stacks/test_examples.py": "wiring",
    "stacks/test_teams.py": "wiring",
    "stacks/test_database.py": "wiring",
    "stacks/test_verify.py": "wiring",
    "stacks/test_verify_phases.py": "wiring",
    "stacks/test_canary.py": "wiring",
    "stacks/test_team_rbac.py": "wiring",
    "components/test_serving_components.py": "wiring",
    "components/test_platform_components.py": "wiring",
    "stacks/test_relations.py": "relations",
    "stacks/test_relations_config.py": "relations",
    "stacks/test_serving_placement.py": "relations",
    "stacks/test_frontdoor.py": "relations",
    "stacks/test_router.py": "relations",
    "components/test_gateway_timeouts.py": "relations",
    "stacks/test_deploy_rules.py": "deploy_rules",
    "stacks/test_awaited_readiness.py": "deploy_rules",
    "stacks/test_global_names.py": "deploy_rules",
    "stacks/test_teardown.py": "deploy_rules",
    "stacks/test_system_fit.py": "deploy_rules",
    "stacks/test_platform_deploy.py": "deploy_rules",
    "stacks/test_helm.py": "helm",
    "stacks/test_tenancy_monitoring.py": "helm",
    "stacks/test_rendered.py": "rendered",
    "stacks/test_observability.py": "rendered",
    "stacks/test_policy.py": "policy",
    "stacks/test_checkov.py": "policy",
    "stacks/test_checkov_aws.py": "policy",
    "stacks/test_review_replay.py": "policy",
    "components/test_gateway_hardening.py": "policy",
    "stacks/test_habits.py": "habits",
    "stacks/test_tenancy_supply.py": "habits",
    "stacks/test_config_package.py": "habits",
    "stacks/test_function_size.py": "habits",
    "stacks/test_layers.py": "habits",
    "stacks/test_promql.py": "rendered",
    "stacks/test_nca.py": "relations",
    "stacks/test_readme_snippets.py": "habits",
    "stacks/test_docs.py": "habits",
    "stacks/test_config_reference.py": "config",
    "stacks/test_usage_chunk.py": "wiring",
    "stacks/test_gateway_cost.py": "wiring",
    "stacks/test_s3_weights.py": "wiring",
    "stacks/test_compile_cache.py": "wiring",
    "e2e/": "e2e",
}
TIERS = tuple(dict.fromkeys(TIER_OF.values()))


def tier_of(module: str) -> str | None:
    """The tier of a test module, by its path relative to tests/ (POSIX separators)."""
    if module in TIER_OF:
        return TIER_OF[module]
    folder = module.rsplit("/", 1)[0] + "/"
    return TIER_OF.get(folder) if "/" in module else None


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is imported by now (the SDKs' modules and classes: most of a worker's objects) lives until
    the end. Frozen, it is left out of every later full collection, which otherwise walks all of it
    again (measured: 17 s of the unit suite's 116 s of CPU, 2026-12-07)."""
    gc.collect()
    gc.freeze()


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection reads the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unknown = set()
    for item in items:
        module = item.path.relative_to(ROOT / "tests").as_posix()
        tier = tier_of(module)
        if tier is None:
            unknown.add(module)
            continue
        item.add_marker(getattr(pytest.mark, tier))
    if unknown:
        names = ", ".join(sorted(unknown))
        raise pytest.UsageError(f"test modules without a tier (add them to TIER_OF in tests/conftest.py): {names}")
    # Tests whose fixtures run an external tool for seconds (checkov) go first: the
    # two xdist workers then end together, not one idle while the other starts a slow tool late.
    items.sort(key=lambda item: not SLOW_FIXTURES & set(getattr(item, "fixturenames", ())))


SLOW_FIXTURES = {"checkov_k8s", "scanned"}


_once: dict = {}


def once(root: Path, name: str, compute):
    """`compute()` once per test session, shared by the pytest-xdist workers: whichever worker needs it
    first computes it (under a lock on a file named after it) and leaves it pickled in `root` for the
    others. For what is expensive and the same for every test: a plan, one scan of an external tool.
    Keyed by root and name: a result whose files were written under one root is not another root's."""
    key = str(root / name)
    if key not in _once:
        with open(root / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = root / f"{name}.pickle"
            if done.exists():
                _once[key] = pickle.loads(done.read_bytes())
            else:
                _once[key] = compute()
                done.write_bytes(pickle.dumps(_once[key]))
    return _once[key]


def planned(stack_file: Path, tmp_root: Path):
    """(intent, recording, out dir) of a stack file: planned once per run (`plans_run_once`), its files
    written once per run under `tmp_root`."""
    stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
    out = tmp_root / stack
    intent, rec = plancli.run_program(stack, stack_file)
    once(tmp_root, f"outputs-{stack}", lambda: plancli.write_outputs(out, intent, rec))
    return intent, rec, out


def _shared_root(tmp_path_factory) -> Path:
    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process: a directory of this session's own
        return tmp_path_factory.mktemp("plans")
    # xdist: the run's base directory, shared by its workers and by no other run
    root = tmp_path_factory.getbasetemp().parent / "plans"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory) -> Path:
    """A directory this run's workers share (and no other run): `once` keeps its results here."""
    return _shared_root(tmp_path_factory)


@pytest.fixture(scope="session", autouse=True)
def plans_run_once(shared_root):
    """An in-process plan (`stacks.plan.run_program`, which the CLI's `main` calls too) of a stack name
    and file content already planned in this run is the earlier result: seven tests run the plan CLI
    on dev alone. Only results are kept; a refused config is refused again each time. A test that
    changes the runtime first calls the real one: `plancli.run_program.__wrapped__`."""
    real = plancli.run_program

    @functools.wraps(real)
    def run_program(stack: str, stack_file: Path, timeout: float = 60.0):
        try:
            content = Path(stack_file).read_bytes()
        except OSError:  # no file there: the real one says so
            return real(stack, stack_file, timeout)
        key = hashlib.sha256(stack.encode() + b"\0" + content).hexdigest()[:20]
        return once(shared_root, f"run-{key}", lambda: real(stack, stack_file, timeout))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plancli, "run_program", run_program)
        yield


@pytest.fixture(scope="session")
def plan_of(shared_root):
    return lambda stack_file: planned(Path(stack_file), shared_root)


@pytest.fixture(scope="session")
def session_once(shared_root):
    """`session_once(name, compute)`: compute's result, computed once for the whole run (see `once`)."""
    return lambda name, compute: once(shared_root, name, compute)


STACK_FILES = sorted([ROOT / "Pulumi.dev.yaml", *(ROOT / "stacks" / "examples").glob("*.yaml")])


@pytest.fixture(scope="session")
def checkov_k8s(plan_of, session_once, tmp_path_factory):
    """The suite's one checkov scan of rendered manifests (tests/support/checkov.py has its folders):
    every committed stack and the gateway-database fixture, each in a folder named after its file."""
    from tests.support import checkov
    from tests.support.shared import missing

    if not checkov.CHECKOV.exists():
        missing(f"{checkov.CHECKOV} not found", "run scripts/setup-e2e.sh")
    from tests.stacks.test_bench_job import checkov_folders as bench_job_folders

    stacks = [*STACK_FILES, ROOT / "tests" / "configs" / "gateway-database.ok.yaml"]
    return session_once(
        "checkov-k8s",
        lambda: checkov.scan_folders(
            checkov.CHECKOV, tmp_path_factory.mktemp("checkov"), plan_of, stacks, bench_job_folders()
        ),
    )
