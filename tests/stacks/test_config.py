"""Config tier: every fixture and committed stack file either loads or fails naming the key."""

import contextlib
import re
from pathlib import Path

import pytest

from stacks import config
from stacks.plan import main as plan_main
from stacks.yamlio import load_yaml
from tests.conftest import STACK_FILES

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
OK = sorted(CONFIGS.glob("*.ok.yaml"))
ERR = sorted(CONFIGS.glob("*.error.*.yaml"))
# A stack-file key as written (e.g. a misspelt namespace `llm-servng:models`), for problems of the key itself.
CONFIG_KEY = re.compile(r"^[\w.-]+(:[\w.-]+)?: ")


def expectations(path: Path) -> list[str]:
    text = path.read_bytes().decode("utf-8", errors="replace")  # one fixture is deliberately not UTF-8
    return [m.group(1).strip() for m in re.finditer(r"^# expect: (.+)$", text, re.M)]


@pytest.mark.parametrize("path", OK, ids=lambda p: p.name)
def test_ok_fixture_loads(path):
    intent = config.load_file(path, stack="t")
    assert intent.models or intent.config.nodePools


@pytest.mark.parametrize("path", ERR, ids=lambda p: p.name)
def test_error_fixture_names_the_key(path):
    want = expectations(path)
    assert want, f"{path.name} has no '# expect:' line"
    with pytest.raises(config.ConfigError) as e:
        config.load_file(path, stack="t")
    text = "\n".join(e.value.problems)
    for w in want:
        assert w in text, f"expected {w!r} in:\n{text}"
    for line in e.value.problems:
        # a config key path, or the file's position for problems of the file itself
        assert line.startswith(("llm-serving:", str(path))) or CONFIG_KEY.match(line), line
        assert " — " in line, f"no fix in: {line}"


def test_there_are_at_least_60_error_fixtures():
    assert len(ERR) >= 60


@pytest.mark.parametrize("path", ERR, ids=lambda p: p.name)
def test_plan_cli_exits_2_without_traceback(path, capsys, tmp_path):
    out = tmp_path / "out"
    assert plan_main(["t", "--config", str(path), "--out", str(out)]) == 2
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and cap.out == ""
    lines = cap.err.strip().splitlines()
    assert lines and all(
        line.startswith(("error: llm-serving:", f"error: {path}")) or CONFIG_KEY.match(line.removeprefix("error: "))
        for line in lines
    ), lines
    assert all(" — " in line for line in lines), lines
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_committed_stack_files_load(path):
    config.load_file(path)


def test_every_error_reason_has_a_fixture():
    reasons = {p.name.split(".error.")[1].removesuffix(".yaml") for p in ERR}
    for r in [
        "unknown-top-level",
        "unknown-preset",
        "unknown-instance-type",
        "instance-not-in-pool",
        "tp-not-dividing-heads",
        "tp-exceeds-devices",
        "does-not-fit",
        "duplicate-served-name",
        "not-dns1123",
        "removed-flag",
        "replicas-min-gt-max",
        "gated-without-token",
        "neuron-model-on-gpu-pool",
        "gpu-model-on-neuron-pool",
    ]:
        assert r in reasons


def test_missing_stack_file_is_a_clean_error(capsys):
    assert plan_main(["nope"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_pulumi_config_round_trip_matches_file_loader():
    """The program reads config the way `pulumi up` hands it over (JSON strings), same result."""
    import json

    import pulumi
    from pulumi.runtime import config as rc

    from stacks.plan import pulumi_config

    path = CONFIGS / "neuron-and-gpu.ok.yaml"
    conf, secret = pulumi_config(path)
    pulumi.runtime.set_all_config(conf, secret)
    try:
        a = config.load()
    finally:
        rc.CONFIG.set({})
    b = config.load_file(path, stack=pulumi.get_stack())
    assert a.models.keys() == b.models.keys()
    assert [m.sizing for m in a.models.values()] == [m.sizing for m in b.models.values()]
    assert json.loads(conf["llm-serving:models"])["llama"]["accelerator"] == "neuron"


def test_project_file_declares_only_types_pulumi_accepts():
    """Pulumi's project schema: a declared config key needs a type of string, integer, boolean or
    array; anything else and `pulumi up` refuses the project file."""

    from tests.conftest import ROOT

    proj = load_yaml((ROOT / "Pulumi.yaml").read_text())
    assert proj["name"] == "llm-serving" and proj["runtime"]["name"] == "python"
    for k, decl in (proj.get("config") or {}).items():
        if isinstance(decl, dict):
            assert decl.get("type") in {"string", "integer", "boolean", "array"}, k
            assert set(decl) <= {"type", "items", "description", "secret", "default"}, k


def test_concurrency_shortfall_takes_the_cheapest_fit_and_says_so():
    """256 x 40960 tokens of KV (112 KiB/token) is ~1.1 TiB: nothing meets it. Hand numbers on g6.xlarge
    (L4, 22.04 GiB as CUDA reports it): 0.9 x 22.04 - 1.1101 GiB weights - 0.8364 GiB overheads (sampler
    warm-up 256 x 151,936 x 2 B = 74.2 MiB + 4 MiB kept hidden states, non-torch 0.2, graphs 28 x 0.02)
    = 17.89 GiB of KV, / 114688 B = ~167.5k tokens = 4.1 requests of 40960."""
    m = config.load_file(CONFIGS / "concurrency-shortfall.ok.yaml", stack="t").models["tiny"]
    assert (m.sizing.instance.name, m.sizing.tensor_parallel) == ("g6.xlarge", 1)
    assert m.hourly_usd == (0.8048, 0.8048)  # not p4de/p5 at $27-98/h
    assert m.warnings[0].startswith("max concurrency 4.1 < maxNumSeqs 256 (KV budget 17.89 GiB/device)")


def test_trust_remote_code_is_rendered_only_when_declared():
    from stacks.compose.serving import vllm_args

    m = config.load_file(CONFIGS / "trust-remote-code.ok.yaml", stack="t").models["custom"]
    assert vllm_args(m).count("--trust-remote-code") == 1
    other = config.load_file(CONFIGS / "minimal.ok.yaml", stack="t")
    assert all("--trust-remote-code" not in vllm_args(x) for x in other.models.values())


def test_pool_options_reach_the_resolved_pool_as_karpenter_reads_them():
    pools = config.load_file(CONFIGS / "pool-options.ok.yaml", stack="t").pools
    assert pools["gpu"].spec.expireAfter == "Never" and pools["gpu"].spec.disruptionBudgetNodes == "10%"
    assert pools["big"].spec.disruptionBudgetNodes == "2"  # YAML int 2 → the CRD's string form
    assert pools["gpu"].spec.labels == {"example.com/team": "search", "tier": "1"}


def test_timestamps_stay_strings(tmp_path):
    """Pulumi reads stack files as YAML 1.2: 2026-01-01 is a string (PyYAML's 1.1 would make a date)."""
    f = tmp_path / "Pulumi.t.yaml"
    f.write_text("config:\n  llm-serving:models:\n    tiny: {preset: qwen3-0.6b, revision: 2026-01-01}\n")
    assert config.load_file(f).models["tiny"].revision == "2026-01-01"


def _runtime_load(conf: dict, secret: list):
    import pulumi
    from pulumi.runtime import config as rc

    pulumi.runtime.set_all_config(conf, secret)
    try:
        return config.load()
    finally:
        rc.CONFIG.set({})
        pulumi.runtime.set_all_config({}, [])


def test_runtime_load_raises_run_error_with_one_line_per_problem():
    import pulumi

    with pytest.raises(pulumi.RunError) as e:
        _runtime_load({"llm-serving:models": '{"Bad_Name": {"preset": "qwen3-0.6b"}}'}, [])
    lines = str(e.value).splitlines()
    assert lines[0] == "invalid stack config:"
    assert lines[1].startswith("error: llm-serving:models.Bad_Name: model name 'Bad_Name' is not a DNS-1123 label")


def test_runtime_load_refuses_misspelt_namespace_and_plaintext_token():
    import pulumi

    with pytest.raises(pulumi.RunError, match="namespace 'llm-servng' looks like a misspelling"):
        _runtime_load({"llm-servng:models": "{}"}, [])
    with pytest.raises(pulumi.RunError, match="token is in plain text"):
        _runtime_load({"llm-serving:hfToken": "hf_x", "llm-serving:models": "{}"}, [])
    # negative control: the same token marked secret (what `pulumi config set --secret` does) loads
    _runtime_load({"llm-serving:hfToken": "hf_x", "llm-serving:models": "{}"}, ["llm-serving:hfToken"])


def _error_lines_missed(paths) -> list[str]:
    """Lines of stacks/config/*.py and stacks/config/vllm_flags.py that report a problem (`self.err(`,
    `raise ValueError(`, `problems.append(`, `out.append(`) and that loading `paths` never runs."""
    import sys

    import stacks.config.vllm_flags as vf

    files = {str(f): set() for f in sorted(Path(config.__file__).parent.glob("*.py"))}
    files[vf.__file__] = set()
    for f in files:
        for no, line in enumerate(Path(f).read_text().splitlines(), 1):
            s = line.strip()
            if (
                s.startswith(("self.err(", "raise ValueError(", "problems.append(", "out.append("))
                and "# runtime path" not in s
            ):  # Pulumi-runtime-only lines: test_runtime_load_*
                files[f].add(no)
    hit: set[tuple[str, int]] = set()

    def tracer(frame, event, arg):
        if frame.f_code.co_filename in files:
            if event == "line":
                hit.add((frame.f_code.co_filename, frame.f_lineno))
            return tracer
        return None

    sys.settrace(tracer)
    try:
        for p in paths:
            with contextlib.suppress(config.ConfigError):
                config.load_file(p, stack="t")
    finally:
        sys.settrace(None)
    return sorted(
        f"{Path(f).parent.name}/{Path(f).name}:{n}" for f, lines in files.items() for n in lines if (f, n) not in hit
    )


def test_every_error_branch_of_the_config_has_a_fixture():
    """Derived from the code, not a hand list: every problem-reporting line runs for some fixture."""
    missed_by_ok = _error_lines_missed(OK)
    assert len(missed_by_ok) > 50  # negative control: the ok fixtures alone miss most
    # the gate reads every module of the package (a split that hid lines from it would pass vacuously)
    assert {m.split(":")[0] for m in missed_by_ok} >= {"config/schema.py", "config/load.py", "config/resolve.py"}
    missed = _error_lines_missed([*ERR, *OK])
    assert missed == [], "error branches without a fixture: " + ", ".join(missed)


def test_a_long_stack_name_is_caught_through_the_derived_cluster_name():
    """No cluster.name: the cluster is llm-<stack>; a 32-character stack makes it 36 characters, and
    KarpenterControllerRole-<cluster>-use1 would be 24 + 36 + 5 = 65 > IAM's 64."""
    raw = {"models": {"tiny": {"preset": "qwen3-0.6b"}}}
    stack = "search-team-production-euw1-blue"
    assert len(stack) == 32
    with pytest.raises(config.ConfigError) as e:
        config.resolve(raw, stack=stack)
    assert e.value.problems == [
        f"llm-serving:cluster.name: cluster name 'llm-{stack}' (llm-<stack>) is 36 characters; IAM role "
        f"KarpenterControllerRole-llm-{stack}-use1 must fit 64 — set cluster.name to at most 35 characters"
    ]
    config.resolve(raw, stack=stack[:-1])  # negative control: 35 characters is fine


# What each ok fixture resolves to, by hand. KV bytes per token per device = 2 x layers x
# max(1, kv_heads // TP) x head_dim x 2 B: custom-7b TP2 2x32x16x128x2; Qwen3-0.6B 2x28x8x128x2;
# Qwen3-8B 2x36x8x128x2; Llama-3.1-8B TP2 2x32x4x128x2.
OK_RESOLVED = {
    "full-spec.ok.yaml": {
        "custom-7b": (
            "example/custom-7b",
            "0123456789abcdef0123456789abcdef01234567",
            "nvidia",
            "gpu",
            "g6e.12xlarge",
            2,
            262_144,
        )
    },
    "gateway-database.ok.yaml": {"tiny": ("Qwen/Qwen3-0.6B", None, "nvidia", "gpu", "g6.xlarge", 1, 114_688)},
    "minimal.ok.yaml": {"tiny": ("Qwen/Qwen3-0.6B", None, "nvidia", "gpu", "g6.xlarge", 1, 114_688)},
    "neuron-and-gpu.ok.yaml": {
        "llama": ("meta-llama/Llama-3.1-8B-Instruct", None, "neuron", "neuron", "trn1.2xlarge", 2, 65_536),
        "qwen": ("Qwen/Qwen3-8B", None, "nvidia", "gpu", "g6e.xlarge", 1, 147_456),
    },
}
OK_POOLS = {
    "full-spec.ok.yaml": {"gpu": "nvidia"},
    "gateway-database.ok.yaml": {"gpu": "nvidia"},
    "minimal.ok.yaml": {"gpu": "nvidia"},
    "neuron-and-gpu.ok.yaml": {"gpu": "nvidia", "neuron": "neuron"},
}


@pytest.mark.parametrize("name", sorted(OK_RESOLVED))
def test_ok_fixture_resolves_to_hand_values(name):
    path = CONFIGS / name
    intent = config.load_file(path, stack="t")
    got = {
        n: (
            m.hf_id,
            m.revision,
            m.kind,
            m.pool,
            m.sizing.instance.name,
            m.sizing.tensor_parallel,
            m.sizing.kv_bytes_per_token,
        )
        for n, m in intent.models.items()
    }
    assert got == OK_RESOLVED[path.name]
    assert {n: p.spec.accelerator for n, p in intent.pools.items()} == OK_POOLS[path.name]
