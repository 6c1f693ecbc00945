"""`python -m stacks.size` and the config.json reader behind it (stacks/capacity/hfconfig.py).

The config.json fixtures in tests/configs/hf/ are the public configs of each model (values from the
model cards' config.json). Expected parameter counts are worked out by hand in the comments, from the
shapes: per layer attention q,o = hidden x heads*head_dim, k,v = hidden x kv_heads*head_dim (+ biases,
+ q/k norms), gated MLP 3 x hidden x intermediate, 2 norms of hidden; plus embedding vocab x hidden,
lm_head (unless tied) and the final norm.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import catalog
from stacks import size as size_cli
from stacks.capacity import hfconfig

ROOT = Path(__file__).resolve().parents[2]
HF = ROOT / "tests" / "configs" / "hf"
GIB = 2**30


def cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m stacks.size ARGS`, run in this process (each subprocess paid ~2 s of SDK imports);
    argparse's own errors exit through SystemExit. One test below runs the real module entry point."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = size_cli.main(list(args))
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
    return subprocess.CompletedProcess(["stacks.size", *args], rc, out.getvalue(), err.getvalue())


def test_the_module_entry_point_runs_main():
    r = subprocess.run(
        [sys.executable, "-m", "stacks.size", "--preset", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and r.stdout == "" and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def sized(*args: str) -> dict:
    r = cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def raw(name: str) -> dict:
    return json.loads((HF / f"{name}.config.json").read_text())


# ---- parameter counts --------------------------------------------------------------------------------

# (config, total by hand, active by hand, model card's total, active, and the tolerance the active figure's
# precision allows: "3.3B" is 3.35 cut to one decimal (2 %), "22B" has two digits (1 %))
COUNTS = [
    # Qwen3-8B: attn 4096*4096*2 + 4096*1024*2 = 41,943,040 + q/k norm 256; MLP 3*4096*12288 = 150,994,944;
    # norms 8,192 -> 192,946,432/layer x 36 = 6,946,071,552; + 2 x 151936*4096 (622,329,856 each) + 4,096
    ("Qwen3-8B", 8_190_735_360, 8_190_735_360, 8.19e9, 8.19e9, 0.005),
    # Qwen3-0.6B (tied): attn 1024*2048*2 + 1024*1024*2 = 6,291,456 + 256; MLP 3*1024*3072 = 9,437,184;
    # norms 2,048 -> 15,730,944 x 28 = 440,466,432; + 151936*1024 = 155,582,464 once + 1,024
    ("Qwen3-0.6B", 596_049_920, 596_049_920, 0.596e9, 0.596e9, 0.005),
    # Llama-3.1-8B (no head_dim key: 4096/32 = 128): attn 41,943,040; MLP 3*4096*14336 = 176,160,768;
    # norms 8,192 -> 218,112,000 x 32 = 6,979,584,000; + 2 x 128256*4096 (525,336,576) + 4,096
    ("Llama-3.1-8B", 8_030_261_248, 8_030_261_248, 8.03e9, 8.03e9, 0.005),
    # Mistral-7B-v0.1: the Llama layer (218,112,000 x 32) + 2 x 32000*4096 (131,072,000) + 4,096
    ("Mistral-7B-v0.1", 7_241_732_096, 7_241_732_096, 7.24e9, 7.24e9, 0.005),
    # Qwen2.5-7B-Instruct (q/k/v biases 3584 + 512 + 512): attn 3584*3584*2 + 3584*512*2 + 4,608 = 29,364,736;
    # MLP 3*3584*18944 = 203,685,888; norms 7,168 -> 233,057,792 x 28 = 6,525,618,176; + 2 x 152064*3584
    # (544,997,376) + 3,584
    ("Qwen2.5-7B-Instruct", 7_615_616_512, 7_615_616_512, 7.62e9, 7.62e9, 0.005),
    # Qwen3-30B-A3B: attn 2048*4096*2 + 2048*512*2 + 256 = 18,874,624; norms 4,096; router 2048*128 = 262,144;
    # expert 3*2048*768 = 4,718,592 -> x128 = 603,979,776; layer 623,120,640 x 48 = 29,909,790,720;
    # + 2 x 151936*2048 (311,164,928) + 2,048. Active: 8 experts (37,748,736) -> 56,889,600 x 48
    # = 2,730,700,800 + 622,331,904. Card: 30.5B total, 3.3B activated (one decimal, truncated).
    ("Qwen3-30B-A3B", 30_532_122_624, 3_353_032_704, 30.5e9, 3.3e9, 0.02),
    # Qwen3-235B-A22B: attn 4096*8192*2 + 4096*512*2 + 256 = 71,303,424; norms 8,192; router 524,288;
    # expert 3*4096*1536 = 18,874,368 -> x128 = 2,415,919,104; layer 2,487,755,008 x 94 = 233,848,970,752;
    # + 2 x 622,329,856 + 4,096. Active: 8 experts 150,994,944 -> 222,830,848 x 94 = 20,946,099,712
    # + 1,244,663,808. Card: 235B total, 22B activated.
    ("Qwen3-235B-A22B", 235_093_634_560, 22_190_763_520, 235e9, 22e9, 0.01),
    # Mixtral-8x7B: attn 41,943,040; norms 8,192; router 4096*8 = 32,768; expert 3*4096*14336 = 176,160,768
    # -> x8 = 1,409,286,144; layer 1,451,270,144 x 32 = 46,440,644,608; + 2 x 131,072,000 + 4,096.
    # Active: 2 experts 352,321,536 -> 394,305,536 x 32 = 12,617,777,152 + 262,148,096. Card: 46.7B / 12.9B.
    ("Mixtral-8x7B-v0.1", 46_702_792_704, 12_879_925_248, 46.7e9, 12.9e9, 0.005),
    # Qwen1.5-MoE-A2.7B (qwen2_moe: q/k/v biases, a shared expert): attn 4 x 2048*2048 + 3 x 2048 = 16,783,360;
    # norms 4,096; router 2048*60 = 122,880; expert 3*2048*1408 = 8,650,752 -> x60 = 519,045,120; shared expert
    # 3*2048*5632 + its 2048 x 1 gate = 34,605,056; layer 570,560,512 x 24 = 13,693,452,288; + 2 x 311,164,928
    # + 2,048. Active: 4 experts 34,603,008 -> 86,118,400 x 24 = 2,066,841,600 + 622,331,904. Card: 14.3B / 2.7B.
    ("Qwen1.5-MoE-A2.7B", 14_315_784_192, 2_689_173_504, 14.3e9, 2.7e9, 0.005),
]


@pytest.mark.parametrize("name,total,active,pub_total,pub_active,pub_tol", COUNTS, ids=[c[0] for c in COUNTS])
def test_parameter_count_matches_hand_and_model_card(name, total, active, pub_total, pub_active, pub_tol):
    m = hfconfig.architecture(raw(name))
    assert m.params is not None
    assert m.params.total == pytest.approx(total, rel=0.005)
    assert m.params.active == pytest.approx(active, rel=0.005)
    assert m.fields.params == pytest.approx(total / 1e9, rel=1e-9)
    assert m.params.total == pytest.approx(pub_total, rel=0.005)
    assert m.params.active == pytest.approx(pub_active, rel=pub_tol)


# What the checkpoints themselves hold: model.safetensors.index.json `metadata.total_size` (bytes of all
# tensors) in each model's public repository. Every tensor is bf16 there, so the count is that / 2 exactly.
CHECKPOINT_BYTES = {
    "Qwen3-8B": 16_381_470_720,
    "Llama-3.1-8B": 16_060_522_496,
    "Mistral-7B-v0.1": 14_483_464_192,
    "Qwen2.5-7B-Instruct": 15_231_233_024,
    "Qwen3-30B-A3B": 61_064_245_248,
    "Qwen3-235B-A22B": 470_187_269_120,
    "Mixtral-8x7B-v0.1": 93_405_585_408,
    "Qwen1.5-MoE-A2.7B": 28_631_568_384,
}


@pytest.mark.parametrize("name", CHECKPOINT_BYTES)
def test_count_equals_the_checkpoint_tensors(name):
    assert hfconfig.architecture(raw(name)).params.total * 2 == CHECKPOINT_BYTES[name]


def test_dense_layers_inside_a_moe():
    """Qwen3-MoE layers listed in mlp_only_layers, or off the decoder_sparse_step, use the dense MLP.
    Qwen3-30B-A3B: a sparse block is router 262,144 + experts 603,979,776 = 604,241,920 (active 262,144 +
    8 x 4,718,592 = 38,010,880); a dense one 3 x 2048 x 6144 = 37,748,736."""
    one_dense = hfconfig.architecture({**raw("Qwen3-30B-A3B"), "mlp_only_layers": [0]}).params
    assert one_dense.total == 30_532_122_624 - 604_241_920 + 37_748_736
    assert one_dense.active == 3_353_032_704 - 38_010_880 + 37_748_736
    # every second layer sparse: 48 x (attention 18,874,624 + norms 4,096) + 24 sparse + 24 dense + 622,331,904
    half = hfconfig.architecture({**raw("Qwen3-30B-A3B"), "decoder_sparse_step": 2}).params
    assert half.total == 48 * 18_878_720 + 24 * 604_241_920 + 24 * 37_748_736 + 622_331_904


@pytest.mark.parametrize(
    "preset,config",
    [
        ("qwen3-0.6b", "Qwen3-0.6B"),
        ("qwen3-8b", "Qwen3-8B"),
        ("qwen3-8b-fp8", "Qwen3-8B-FP8"),
        ("qwen2.5-7b-instruct", "Qwen2.5-7B-Instruct"),
        ("llama-3.1-8b-instruct", "Llama-3.1-8B"),  # the instruct model shares the base model's config
    ],
)
def test_catalog_rows_agree_with_config_json(preset, config):
    """The catalog's hand-copied facts and this reader agree (either could be the one that drifted)."""
    a = catalog.models()[preset]
    m = hfconfig.architecture(raw(config))
    f = m.fields
    assert (a.layers, a.hidden, a.intermediate, a.heads, a.kv_heads, a.head_dim) == (
        f.layers,
        f.hidden,
        f.intermediate,
        f.heads,
        f.kvHeads,
        f.headDim,
    )
    assert (a.vocab, a.max_positions, a.dtype, a.quantization) == (f.vocab, f.maxPositions, f.dtype, m.quantization)
    assert a.params == pytest.approx(f.params, rel=0.005)


def test_the_count_tolerance_can_fail():
    """Negative control: the tied-embedding and q/k-norm terms are each caught at 0.5 %."""
    untied = {**raw("Qwen3-0.6B"), "tie_word_embeddings": False}  # + 155,582,464 lm_head: +26 %
    assert hfconfig.architecture(untied).params.total != pytest.approx(596_049_920, rel=0.005)
    as_qwen2 = {**raw("Qwen3-8B"), "model_type": "qwen2"}  # q/k/v biases instead of q/k norms
    assert hfconfig.architecture(as_qwen2).params.total != 8_190_735_360


def test_architecture_fields_from_config():
    f = hfconfig.architecture(raw("Qwen3-30B-A3B")).fields
    assert (f.layers, f.hidden, f.heads, f.kvHeads, f.headDim, f.vocab, f.maxPositions) == (
        48,
        2048,
        32,
        4,
        128,
        151936,
        40960,
    )
    assert (f.experts, f.expertsPerToken, f.moeIntermediate, f.tieWordEmbeddings) == (128, 8, 768, False)
    mixtral = hfconfig.architecture(raw("Mixtral-8x7B-v0.1")).fields
    assert (mixtral.experts, mixtral.expertsPerToken, mixtral.moeIntermediate, mixtral.headDim) == (8, 2, 14336, 128)
    assert hfconfig.architecture(raw("Qwen3-0.6B")).fields.tieWordEmbeddings is True


def test_checkpoint_quantization_and_dtype():
    assert hfconfig.architecture(raw("Qwen3-8B-AWQ")).quantization == "awq"
    assert hfconfig.architecture(raw("Qwen3-8B-AWQ")).fields.dtype == "float16"
    assert hfconfig.architecture(raw("Qwen3-8B-FP8")).quantization == "fp8"
    gptq = {**raw("Qwen3-8B"), "quantization_config": {"quant_method": "gptq", "bits": 8}}
    m = hfconfig.architecture(gptq)
    assert m.quantization == "gptq" and any("8-bit" in w for w in m.warnings)
    # transformers >= 4.56 writes `dtype`; float32 checkpoints are served as bfloat16 by vLLM's auto dtype
    fp32 = {k: v for k, v in raw("Qwen3-8B").items() if k != "torch_dtype"} | {"dtype": "float32"}
    m = hfconfig.architecture(fp32)
    assert m.fields.dtype == "bfloat16" and any("float32" in w for w in m.warnings)


def test_text_config_nesting():
    inner = {k: v for k, v in raw("Qwen3-8B").items() if k not in ("torch_dtype", "tie_word_embeddings")}
    nested = {"model_type": "some_vl", "torch_dtype": "float16", "tie_word_embeddings": False, "text_config": inner}
    m = hfconfig.architecture(nested)
    assert m.params.total == 8_190_735_360 and m.fields.dtype == "float16" and m.model_type == "qwen3"


def test_params_b_sizes_an_unknown_family():
    cfg = {**raw("Llama-3.1-8B"), "model_type": "granite"}
    with pytest.raises(hfconfig.HfConfigError, match=r"^model_type: 'granite' .* --params-b"):
        hfconfig.architecture(cfg)
    m = hfconfig.architecture(cfg, params_b=8.17)
    assert m.params is None and m.fields.params == 8.17 and m.fields.headDim == 128
    known = hfconfig.architecture(raw("Llama-3.1-8B"), params_b=8.0)  # an override of a counted family is said
    assert known.fields.params == 8.0 and any("replaces the 8.030B" in w for w in known.warnings)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"num_hidden_layers": None}, r"^num_hidden_layers: missing"),
        ({"hidden_size": "4096"}, r"^hidden_size: '4096' is not a positive integer"),
        ({"num_key_value_heads": 5}, r"^num_key_value_heads: 5 does not divide"),
        ({"torch_dtype": "int4"}, r"^torch_dtype: 'int4'"),
        (
            {"quantization_config": {"quant_method": "bitsandbytes"}},
            r"^quantization_config.quant_method: 'bitsandbytes'",
        ),
        ({"model_type": None}, r"^model_type: missing"),
        ({"text_config": [1]}, r"^text_config: not an object"),
    ],
)
def test_config_problems_name_the_key(change, message):
    cfg = {k: v for k, v in {**raw("Qwen3-8B"), **change}.items() if v is not None}
    with pytest.raises(hfconfig.HfConfigError, match=message):
        hfconfig.architecture(cfg)


@pytest.mark.parametrize(
    "content,message",
    [
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"hidden_size": NaN}', "NaN is not a JSON number"),
        (b"[1, 2]", "the top level is a list"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{" * 100_000, "not valid JSON"),
        (b" " * (hfconfig.MAX_CONFIG_BYTES + 1), "larger than"),
    ],
    ids=["duplicate", "nan", "list", "utf8", "deep", "big"],
)
def test_unreadable_config_is_a_clean_error(tmp_path, content, message):
    p = tmp_path / "config.json"
    p.write_bytes(content)
    with pytest.raises(hfconfig.HfConfigError, match=message):
        hfconfig.read(tmp_path)  # a directory means its config.json


# ---- the CLI -----------------------------------------------------------------------------------------

Q8 = str(HF / "Qwen3-8B.config.json")


# Bad input: (args, what the one-line message says). Run at once (each is a fresh interpreter).
BAD = [
    (["--hf-config", "/nonexistent/config.json", "--gpu-memory-gib", "80"], "cannot read"),
    (["--hf-config", str(ROOT / "README.md"), "--gpu-memory-gib", "80"], "not valid JSON"),
    (["--preset", "qwen3-9b", "--instance", "g6e.xlarge"], "unknown preset — did you mean 'qwen3-8b'?"),
    (["--preset", "qwen3-8b", "--instance", "g6e.xlarg"], "not in the catalog — did you mean 'g6e.xlarge'?"),
    (["--hf-config", Q8, "--instance", "g6e.12xlarge", "--tp", "3"], "--tp 3: 3 does not divide the model's 32"),
    (["--hf-config", Q8, "--instance", "g6e.xlarge", "--tp", "2"], "--tp 2: 2 exceeds the 1 GPUs"),
    (["--hf-config", Q8, "--gpu-memory-gib", "80", "--max-model-len", "50000"], "exceeds the model's 40960"),
    (["--hf-config", Q8, "--gpu-memory-gib", "80", "--gpu-memory-utilization", "1.5"], "a fraction"),
    (["--hf-config", Q8, "--gpu-memory-gib", "80", "--quantization", "awq"], "needs a checkpoint quantized"),
    (
        ["--hf-config", Q8, "--gpu-memory-gib", "80", "--max-num-seqs", "64", "--max-num-batched-tokens", "32"],
        "below --max-num-seqs 64",
    ),
    (["--hf-config", Q8, "--gpu-memory-gib", "-1"], "must be greater than 0"),
    (["--hf-config", Q8, "--instance", "g6e.xlarge", "--gpus", "2"], "--gpus: only with --gpu-memory-gib"),
    (["--hf-config", Q8], "one of the arguments --instance --gpu-memory-gib is required"),
    (["--hf-config", Q8, "--preset", "qwen3-8b", "--gpu-memory-gib", "80"], "not allowed with"),
]
BAD_IDS = [
    "missing-file",
    "not-json",
    "preset",
    "instance",
    "tp-heads",
    "tp-gpus",
    "max-model-len",
    "utilization",
    "awq-on-bf16",
    "batched-tokens",
    "negative-memory",
    "gpus-with-instance",
    "no-accelerator",
    "two-models",
]


@pytest.fixture(scope="module")
def bad_runs() -> list[tuple[int, str, str]]:
    return [(r.returncode, r.stdout, r.stderr) for r in (cli(*args) for args, _ in BAD)]


@pytest.mark.parametrize("case", range(len(BAD)), ids=BAD_IDS)
def test_bad_input_exits_2_with_one_line(bad_runs, case):
    rc, out, err = bad_runs[case]
    message = BAD[case][1]
    assert rc == 2, out
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err


def test_unknown_family_needs_params_b(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({**raw("Llama-3.1-8B"), "model_type": "granite"}))
    r = cli("--hf-config", str(tmp_path), "--gpu-memory-gib", "44.39")
    assert r.returncode == 2 and "model_type: 'granite'" in r.stderr and "--params-b" in r.stderr
    doc = sized("--hf-config", str(tmp_path), "--gpu-memory-gib", "44.39", "--params-b", "8.17")
    assert doc["params_total_b"] == 8.17 and doc["params_active_b"] is None
    assert doc["weights_gib"] == round(8.17e9 * 2 / GIB, 2)  # 15.22


def test_json_fields():
    doc = sized("--hf-config", Q8, "--instance", "g6e.xlarge")
    required = {"weights_gib", "kv_gib", "kv_tokens", "max_concurrency", "fits", "warnings"}
    required |= {"params_total_b", "params_active_b", "activation_gib", "non_torch_gib", "cudagraph_gib"}
    assert required <= set(doc)
    assert doc["model"] == "Qwen3-8B" and doc["tensor_parallel"] == 1 and doc["fits"] is True
    # stack defaults: max-model-len min(8192, 40960), max-num-seqs 16
    assert (doc["max_model_len"], doc["max_num_seqs"]) == (8192, 16)
    assert doc["max_concurrency"] == pytest.approx(doc["kv_tokens"] / 8192, abs=0.01)
    assert doc["overhead_terms"] and sum(doc[k] for k in doc["overhead_terms"]) == pytest.approx(
        doc["overhead_gib"], abs=0.002
    )


def test_neuron_preallocates():
    """inf2 at TP 2 (one Inferentia2 chip, 2 NeuronCores): Neuron allocates ceil(8192 / 32) = 256 blocks of
    32 tokens per sequence, x 4 sequences = 32,768 tokens, whatever memory is left over."""
    doc = sized("--preset", "qwen3-8b", "--instance", "inf2.8xlarge", "--tp", "2", "--max-num-seqs", "4")
    assert (doc["accelerator"], doc["kv_tokens"], doc["block_size"], doc["fits"]) == ("neuron", 32_768, 32, True)


def test_kv_tokens_by_hand():
    """Qwen3-8B, bf16, TP 1, GPU of 40 GiB (as CUDA reports it), utilization 0.9.
    KV bytes/token = layers 36 x kv heads 8 x head_dim 128 x 2 (K and V) x 2 bytes = 147,456.
    Weights = 8,190,735,360 params x 2 bytes = 16,381,470,720 B = 15.26 GiB.
    KV tokens = (0.9 x 40 GiB - 15.26 GiB - overheads) / 147,456 B, rounded down to 16-token blocks.
    The overhead terms are the planner's (they change as its model improves); the part that does not
    depend on them: 8 GiB more device memory is 0.9 x 8 GiB = 7,730,941,132.8 B more KV, i.e.
    52,428.8 tokens = 52,416 or 52,432 after block rounding."""
    base = ["--hf-config", Q8, "--tp", "1", "--gpu-memory-utilization", "0.9", "--max-num-batched-tokens", "2048"]
    a = sized(*base, "--gpu-memory-gib", "40")
    b = sized(*base, "--gpu-memory-gib", "48")
    assert a["kv_bytes_per_token"] == 147_456
    assert a["weights_gib"] == 15.26
    assert a["budget_gib"] == 36.0
    kv = 36.0 * GIB - 16_381_470_720 - a["overhead_gib"] * GIB
    assert abs(a["kv_tokens"] - kv / 147_456) <= 16 + 0.0005 * GIB / 147_456  # block + rounding of overhead_gib
    assert a["kv_tokens"] % 16 == 0
    assert b["kv_tokens"] - a["kv_tokens"] in (52_416, 52_432)


def test_preset_and_its_config_json_size_alike():
    """qwen3-8b's catalog row rounds params to 8.19B; the config count is 8.1907B: 1.3 MiB of weights,
    about 10 tokens, so KV tokens agree to two blocks and everything else exactly."""
    p = sized("--preset", "qwen3-8b", "--instance", "g6e.xlarge")
    h = sized("--hf-config", Q8, "--instance", "g6e.xlarge")
    for k in ("kv_bytes_per_token", "weights_gib", "overhead_gib", "fits", "max_model_len", "max_num_seqs"):
        assert p[k] == h[k], k
    assert abs(p["kv_tokens"] - h["kv_tokens"]) <= 32


def test_moe_weights_come_from_total_parameters():
    """Qwen3-30B-A3B: all 128 experts sit in memory: 30,532,122,624 x 2 B = 56.87 GiB, although only
    3.35B parameters run per token. On one 79.18 GiB H100 that leaves 0.9 x 79.18 - 56.87 = 14.4 GiB
    minus overheads for KV; on a 44.39 GiB L40S it does not fit at all."""
    doc = sized("--hf-config", str(HF / "Qwen3-30B-A3B.config.json"), "--gpu-memory-gib", "79.18")
    assert doc["weights_gib"] == 56.87
    assert doc["params_total_b"] == pytest.approx(30.532, abs=0.001)
    assert doc["params_active_b"] == pytest.approx(3.353, abs=0.001)
    assert doc["kv_bytes_per_token"] == 48 * 4 * 128 * 2 * 2  # 98,304
    assert doc["fits"] is True and 0 < doc["kv_gib"] < 0.9 * 79.18 - 56.87
    small = sized("--hf-config", str(HF / "Qwen3-30B-A3B.config.json"), "--gpu-memory-gib", "44.39")
    assert small["fits"] is False and small["kv_tokens"] == 0
    assert any("does not fit" in w for w in small["warnings"])


def test_table_and_check_exit_code():
    r = cli("--hf-config", str(HF / "Mixtral-8x7B-v0.1.config.json"), "--instance", "g6e.xlarge")
    assert r.returncode == 0 and r.stderr == ""
    assert "weights GiB/dev" in r.stdout and "does NOT fit" in r.stdout and "46.703B total, 12.88B active" in r.stdout
    assert "--instance g6e.12xlarge --tp 4" in r.stdout  # where it would fit, cheapest first
    r = cli("--hf-config", str(HF / "Mixtral-8x7B-v0.1.config.json"), "--instance", "g6e.xlarge", "--check")
    assert r.returncode == 1
    assert cli("--preset", "qwen3-0.6b", "--instance", "g6e.xlarge", "--check").returncode == 0


def test_marginal_fit_warns():
    """Qwen3-8B at 32768 tokens needs 32768 x 147,456 B = 4.5 GiB of KV for one request. A GPU whose KV
    budget is 8 % above that fits, inside the 15 % error band: a warning; 50 % above: no warning."""
    base = ["--hf-config", Q8, "--max-model-len", "32768", "--max-num-seqs", "1", "--max-num-batched-tokens", "2048"]
    probe = sized(*base, "--gpu-memory-gib", "40")
    fixed = probe["weights_gib"] + probe["overhead_gib"]  # what the planner takes before KV
    need = 32768 * 147_456 / GIB
    tight = sized(*base, "--gpu-memory-gib", f"{(fixed + 1.08 * need) / 0.9:.3f}")
    assert tight["fits"] is True and any("error band" in w for w in tight["warnings"]), tight
    roomy = sized(*base, "--gpu-memory-gib", f"{(fixed + 1.5 * need) / 0.9:.3f}")
    assert roomy["fits"] is True and not any("error band" in w for w in roomy["warnings"]), roomy


def test_help_says_what_the_numbers_mean():
    r = cli("--help")
    assert r.returncode == 0
    for phrase in ("per device", "KV tokens", "max-model-len", "as CUDA reports it", "--check", "Exit 0", "exit"):
        assert phrase in r.stdout, phrase
