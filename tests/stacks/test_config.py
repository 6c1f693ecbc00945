"""Config tier: every fixture and committed stack file either loads or fails naming the key."""
import re
from pathlib import Path

import pytest

from stacks import config
from stacks.plan import main as plan_main

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
OK = sorted(CONFIGS.glob("*.ok.yaml"))
ERR = sorted(CONFIGS.glob("*.error.*.yaml"))
from tests.conftest import STACK_FILES  # noqa: E402


def expectations(path: Path) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^# expect: (.+)$", path.read_text(), re.M)]


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
        assert line.startswith("llm-serving:"), line
        assert " — " in line, f"no fix in: {line}"


@pytest.mark.parametrize("path", ERR[:3] + ERR[-3:], ids=lambda p: p.name)
def test_plan_cli_exits_2_without_traceback(path, capsys):
    assert plan_main(["t", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert all(line.startswith("error: llm-serving:") for line in err.strip().splitlines())


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_committed_stack_files_load(path):
    config.load_file(path)


def test_every_error_reason_has_a_fixture():
    reasons = {p.name.split(".error.")[1].removesuffix(".yaml") for p in ERR}
    for r in ["unknown-top-level", "unknown-preset", "unknown-instance-type", "instance-not-in-pool",
              "tp-not-dividing-heads", "tp-exceeds-devices", "does-not-fit", "duplicate-served-name",
              "not-dns1123", "removed-flag", "replicas-min-gt-max", "gated-without-token",
              "neuron-model-on-gpu-pool", "gpu-model-on-neuron-pool"]:
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
    import yaml as _yaml

    from tests.conftest import ROOT
    proj = _yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert proj["name"] == "llm-serving" and proj["runtime"]["name"] == "python"
    for k, decl in (proj.get("config") or {}).items():
        if isinstance(decl, dict):
            assert decl.get("type") in {"string", "integer", "boolean", "array"}, k
            assert set(decl) <= {"type", "items", "description", "secret", "default"}, k


# What each ok fixture resolves to, by hand. KV bytes per token per device = 2 x layers x
# max(1, kv_heads // TP) x head_dim x 2 B: custom-7b TP2 2x32x16x128x2; Qwen3-0.6B 2x28x8x128x2;
# Qwen3-8B 2x36x8x128x2; Llama-3.1-8B TP2 2x32x4x128x2.
OK_RESOLVED = {
    "full-spec.ok.yaml": {"custom-7b": ("example/custom-7b", "0123456789abcdef0123456789abcdef01234567", "nvidia",
                                        "gpu", "g6e.12xlarge", 2, 262_144)},
    "gateway-database.ok.yaml": {"tiny": ("Qwen/Qwen3-0.6B", None, "nvidia", "gpu", "g6.xlarge", 1, 114_688)},
    "minimal.ok.yaml": {"tiny": ("Qwen/Qwen3-0.6B", None, "nvidia", "gpu", "g6.xlarge", 1, 114_688)},
    "neuron-and-gpu.ok.yaml": {"llama": ("meta-llama/Llama-3.1-8B-Instruct", None, "neuron", "neuron", "trn1.2xlarge",
                                         2, 65_536),
                               "qwen": ("Qwen/Qwen3-8B", None, "nvidia", "gpu", "g6e.xlarge", 1, 147_456)},
}
OK_POOLS = {"full-spec.ok.yaml": {"gpu": "nvidia"}, "gateway-database.ok.yaml": {"gpu": "nvidia"},
            "minimal.ok.yaml": {"gpu": "nvidia"}, "neuron-and-gpu.ok.yaml": {"gpu": "nvidia", "neuron": "neuron"}}


@pytest.mark.parametrize("path", OK, ids=lambda p: p.name)
def test_ok_fixture_resolves_to_hand_values(path):
    intent = config.load_file(path, stack="t")
    got = {n: (m.hf_id, m.revision, m.kind, m.pool, m.sizing.instance.name, m.sizing.tensor_parallel,
               m.sizing.kv_bytes_per_token) for n, m in intent.models.items()}
    assert got == OK_RESOLVED[path.name]
    assert {n: p.spec.accelerator for n, p in intent.pools.items()} == OK_POOLS[path.name]
