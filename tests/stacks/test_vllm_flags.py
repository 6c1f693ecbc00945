"""extraArgs resolved the way vLLM 0.32's FlexibleArgumentParser + argparse read them (hand cases),
and the policy tables kept honest against the pinned option tables."""

import pytest

from stacks.config import vllm_flags as vf
from stacks.yamlio import load_yaml


def flags(args, kind="nvidia"):
    used, problems = vf.parse(args, kind)
    assert problems == [], problems
    return [(u.flag, u.negated, u.value) for u in used]


def problems(args, kind="nvidia", trust=False):
    return [w for w, _ in vf.check(args, kind, trust_remote_code=trust)[1]]


def test_spellings_vllm_accepts_resolve_to_the_canonical_flag():
    assert flags(["--trust_remote_code"]) == [("--trust-remote-code", False, None)]
    assert flags(["--max_log_len=100"]) == [("--max-log-len", False, "100")]
    assert flags(["--max-log-len", "100"]) == [("--max-log-len", False, "100")]
    assert flags(["-tp", "2"]) == [("--tensor-parallel-size", False, "2")]
    assert flags(["-tp=2"]) == [("--tensor-parallel-size", False, "2")]
    assert flags(["-qfp8"]) == [("--quantization", False, "fp8")]
    assert flags(["-O3"]) == [("--optimization-level", False, "3")]
    assert flags(["-O=2"]) == [("--optimization-level", False, "2")]
    assert flags(["-O", "1"]) == [("--optimization-level", False, "1")]
    assert flags(["--no-enable-prefix-caching"]) == [("--enable-prefix-caching", True, None)]
    # dotted keys: only the part before the first '.' is rewritten, and the value may follow
    assert flags(["--hf_overrides.auto_map.AutoConfig", "x.Config"]) == [("--hf-overrides", False, "x.Config")]
    assert flags(["--compilation-config.mode=3"]) == [("--compilation-config", False, "3")]
    # negative numbers are values, not options
    assert flags(["--seed", "-1"]) == [("--seed", False, "-1")]


def test_parser_mistakes_vllm_would_refuse():
    assert problems(["--trust-remote"]) == ["--trust-remote: abbreviation of --trust-remote-code (vLLM expands it)"]
    assert problems(["--no-such-flag"]) == ["--no-such-flag: unknown flag in vLLM 0.32.0"]
    assert problems(["--enforce-eager", "yes"])[0].startswith("'yes' is not the value of any flag")
    assert problems(["--seed"]) == ["--seed needs a value"]
    assert problems(["--seed", "--enforce-eager"]) == ["--seed needs a value"]
    assert problems(["--enforce-eager=1"]) == ["--enforce-eager=1: --enforce-eager takes no value"]
    assert problems(["-O", "fast"])[0].startswith("-O: unknown flag")
    assert problems(["--"]) == ["'--' ends vLLM's options"]
    assert problems(["m"])[0].startswith("'m' is not the value of any flag")


def test_policy_refuses_every_spelling_of_a_dangerous_or_managed_flag():
    for spelled in (["--trust-remote-code"], ["--trust_remote_code"], ["--trust-remote"], ["--trust-remote-c"]):
        assert problems(spelled), spelled
    for spelled in (["-tp", "2"], ["--tensor_parallel_size=2"], ["-tp=2"], ["--max-model-len", "4096"], ["-q", "awq"]):
        assert len(problems(spelled)) == 1 and "rendered by the program" in problems(spelled)[0], spelled
    assert "rewrites the model config" in problems(["--hf-overrides.architectures+", "X"])[0]
    assert "rewrites the model config" in problems(['--hf-overrides={"auto_map":{}}'])[0]
    assert "prints help" in problems(["-h"])[0] and "prints help" in problems(["--help=all"])[0]


def test_removed_flags_keep_their_specific_message():
    assert problems(["--swap-space=4"]) == ["--swap-space: removed in the V1 engine"]
    assert problems(["--swap_space", "4"])[0] == "--swap_space (= --swap-space): removed in the V1 engine"
    assert problems(["--disable-log-stats"])[0].startswith("--disable-log-stats: removes every vllm:*")


def test_negated_forms_of_dangerous_switches_are_fine_and_trust_is_declared_not_passed():
    assert problems(["--no-enable-prompt-embeds"]) == []
    assert problems(["--no-trust-remote-code"]) == [
        "--no-trust-remote-code (= --trust-remote-code) is rendered by the program from trustRemoteCode"
    ]
    # trustRemoteCode renders the flag itself; passing it as well is still refused (managed)
    assert "rendered by the program from trustRemoteCode" in problems(["--trust-remote-code"], trust=True)[0]


def test_harmless_flags_pass():
    assert (
        problems(
            [
                "--enable-prefix-caching",
                "--max-log-len",
                "100",
                "-O3",
                "--seed=7",
                "--generation-config",
                "vllm",
                "--no-enable-chunked-prefill",
            ]
        )
        == []
    )


def test_characters_count_and_length_are_capped():
    assert "whitespace" in problems(["--max-log-len 100"])[0]
    assert "whitespace" in problems(["--seed=1\x07"])[0]
    assert "whitespace" in problems(["--served-model-name=é"])[0]
    assert problems(["--enforce-eager"] * vf.MAX_ARGS) == []  # the cap itself is allowed (negative control)
    assert problems(["--enforce-eager"] * (vf.MAX_ARGS + 1)) == [f"{vf.MAX_ARGS + 1} elements (at most {vf.MAX_ARGS})"]
    assert "characters (at most" in problems(["--seed=" + "1" * vf.MAX_ARG_LEN])[0]


def test_neuron_models_are_judged_by_the_neuron_images_release():
    assert problems(["--enable-per-request-metrics"], "neuron") == [
        "--enable-per-request-metrics: unknown flag in vLLM 0.16.0"
    ]
    assert problems(["--enable-per-request-metrics"], "nvidia") == []


def test_chunked_prefill_state_follows_the_last_spelling():
    used, _ = vf.parse(["--no-enable-chunked-prefill"], "nvidia")
    assert vf.chunked_prefill_disabled(used)
    used, _ = vf.parse(["--no-enable-chunked-prefill", "--enable_chunked_prefill"], "nvidia")
    assert not vf.chunked_prefill_disabled(used)


@pytest.mark.parametrize("kind,image", [("nvidia", "vllm"), ("neuron", "vllm-neuron")])
def test_option_tables_are_the_pinned_images_releases(kind, image):
    """Bumping an image without re-dumping its option table (tests/e2e/vllm_parser.py --table) fails here."""

    rows = load_yaml((vf.TABLE_FILE.parent / "versions.yaml").read_text())["images"]
    assert vf.table_version(kind) == rows[image]["vllmVersion"]


def test_every_policy_entry_names_a_flag_the_pinned_vllm_has():
    """A misspelt entry would be dead policy: each managed/dangerous flag exists in vLLM 0.32's table."""
    known = {e["flag"] for e in vf.table("nvidia").values()}
    missing = sorted(f for f in {*vf.MANAGED, *vf.DANGEROUS} if f not in known)
    assert missing == []


def test_values_that_point_outside_the_pod_or_weaken_it():
    assert "reads files other than the model's snapshot" in problems(["--tokenizer", "org/tok"])[0]
    assert "reads files other than" in problems(["--chat-template=/models/t.jinja"])[0]
    assert "draft model is not in the pod" in problems(['--speculative-config={"model":"a/b"}'])[0]
    assert "draft model is not in the pod" in problems(["--speculative-config.model", "a/b"])[0]
    assert "API keys included" in problems(["--uvicorn-log-level", "TRACE"])[0]
    assert "random weights" in problems(["--load-format=dummy"])[0]
    assert "is a path" in problems(['--compilation-config={"cache_dir":"/etc"}'])[0]
    assert "is a path" in problems(["--max-log-len=../x"])[0]
    # negative controls: model-free speculation, defaults, URLs and Hub-style names are not paths
    assert problems(['--speculative-config={"method":"ngram","num_speculative_tokens":3}']) == []
    assert (
        problems(["--generation-config", "vllm", "--load-format", "safetensors", "--uvicorn-log-level", "info"]) == []
    )
    # an endpoint the NetworkPolicies do not model is refused whatever it points at
    assert "NetworkPolicies do not allow" in problems(["--otlp-traces-endpoint", "http://collector:4317"])[0]


@pytest.mark.parametrize(
    "args,why",
    [
        (["--distributed-executor-backend=ray"], "NetworkPolicies do not allow"),
        (["--load-format=tensorizer"], "accepts auto, safetensors here"),
        (["--load-format", "pt"], "accepts auto, safetensors here"),
        (["--tokenizer-revision=main"], "reads files other than the model's snapshot"),
        (["--enable-sleep-mode"], "is not on the extraArgs allow-list"),
        (["--kv-offloading-backend", "native"], "is not on the extraArgs allow-list"),
        (["--scheduling-policy=lifo"], "accepts fcfs, priority here"),
        (["--log-level", "trace"], "accepts critical, error, warning, info, debug here"),
    ],
)
def test_flags_outside_the_allow_list_or_its_values_are_refused(args, why):
    found = problems(args)
    assert len(found) == 1 and why in found[0], found


def test_allow_list_entries_are_real_flags_with_reasons_and_disjoint_from_the_refusals():
    known = {e["flag"] for e in vf.table("nvidia").values()}
    allowed = vf.allowed()
    assert len(allowed) > 20
    assert sorted(f for f in allowed if f not in known) == []
    assert all(len(entry["why"]) > 10 for entry in allowed.values())
    refused = {*vf.MANAGED, *vf.DANGEROUS, *vf.FORBIDDEN, *vf.OTHER_FILES}
    assert sorted(set(allowed) & refused) == []
    # every flag the table knows is either allowed or refused by the policy itself (not by the parser)
    unlisted = sorted(known - set(allowed))
    assert len(unlisted) > 200
    slipped = [f for f in unlisted if not vf.policy_problems([vf.Used(f, f, False, "1")], trust_remote_code=False)]
    assert slipped == []
    assert vf.policy_problems([vf.Used("--seed", "--seed", False, "1")], trust_remote_code=False) == []
