"""Planner numbers against hand-computed cases (GiB = 2**30)."""

import pytest

from components.types import GIB
from stacks import catalog
from stacks import planner as p

INSTANCES = catalog.instances()
M = catalog.models()
GPU = [i for i in INSTANCES.values() if i.kind == "nvidia"]


def test_kv_bytes_per_token_hand_computed():
    # Qwen3-14B: 2 x 40 layers x 8 KV heads x 128 x 2 B = 163840 B (160 KiB) at TP1
    assert p.kv_bytes_per_token(M["qwen3-14b"], 1) == 163840
    # TP4 splits the 8 KV heads 2 per rank: 40960 B
    assert p.kv_bytes_per_token(M["qwen3-14b"], 4) == 40960
    # Llama-2-70B at TP 16 would replicate KV heads: max(1, 8 // 16) = 1 head per rank
    assert p.kv_bytes_per_token(M["llama-2-70b-chat"], 16) == 2 * 80 * 1 * 128 * 2
    # fp8 KV halves it
    assert p.kv_bytes_per_token(M["qwen3-8b"], 1, "fp8") == 2 * 36 * 8 * 128 * 1
    # phi-2 is MHA with head_dim 80, fp16
    assert p.kv_bytes_per_token(M["phi-2"], 1) == 2 * 32 * 32 * 80 * 2


def test_weights_per_device():
    s = p.size(M["qwen3-14b"], INSTANCES["g5.12xlarge"], 4, 32768, 8)
    assert s.weights_gib_per_device == pytest.approx(14.77e9 * 2 / 4 / GIB)  # 6.88 GiB
    fp8 = p.size(M["qwen3-8b-fp8"], INSTANCES["g6.xlarge"], 1, 8192, 8)
    assert fp8.weights_gib_per_device == pytest.approx(8.79)  # measured checkpoint size


def test_seed002_qwen3_14b_tp4_g5_12xlarge_32k_8_seqs_fits():
    s = p.size(M["qwen3-14b"], INSTANCES["g5.12xlarge"], 4, 32768, 8)
    # budget 0.90 x 22888 MiB = 20.12 GiB; weights 6.88; overheads: activation 0.75 + 2048x5120x2x24 B
    # (0.47) + non-torch 0.5 + TP 0.5 + graphs 0.5 = 2.72 -> KV 10.52 GiB / 40960 B = 275,760 tokens
    # 20.1164 - 6.8773 - 2.71875 = 10.5198 GiB; 10.5198 GiB / 40960 B = 275,769.x -> 17,235 blocks of 16
    assert s.overhead_gib_per_device == pytest.approx(2.71875)
    assert s.kv_gib_per_device == pytest.approx(10.5198, abs=1e-3)
    assert s.kv_tokens == 275_760
    assert s.fits and s.meets_concurrency
    assert s.max_concurrency == pytest.approx(8.4155, abs=1e-3)  # 275,760 / 32,768


def test_seed003_llama2_70b_tp4_p4d_small_kv_budget_and_fix():
    arch, inst = M["llama-2-70b-chat"], INSTANCES["p4d.24xlarge"]
    s = p.size(arch, inst, 4, 4096, 32)
    # weights 68.98e9 x 2 / 4 = 32.12 GiB of 0.9 x 40 = 36 GiB; overheads: activation 0.75 + 2048 x 8192
    # x 2 x 24 B (0.75) + non-torch 0.5 + TP 0.5 + graphs 0.5 = 3.0 -> KV 0.8787 GiB; per token at TP4
    # 2 x 80 x 2 x 128 x 2 = 81,920 B -> 11,517 tokens -> 719 blocks of 16 = 11,504 -> 2.81 x 4096
    assert s.weights_gib_per_device == pytest.approx(32.1213, abs=1e-3)
    assert s.overhead_gib_per_device == pytest.approx(3.0)
    assert s.kv_gib_per_device == pytest.approx(0.8787, abs=1e-3)
    assert s.kv_tokens == 11_504
    assert s.fits and not s.meets_concurrency
    assert s.max_concurrency == pytest.approx(2.8086, abs=1e-3)
    hints = p.fix_hints(arch, s, GPU)
    assert any(h.startswith("tensorParallel: 8 on p4d.24xlarge") for h in hints)
    tp8 = p.size(arch, inst, 8, 4096, 32)
    assert tp8.meets_concurrency and tp8.max_concurrency > 100


def test_choose_cheapest_fitting_instance_and_smallest_tp():
    s = p.choose(M["qwen3-0.6b"], GPU, 8192, 16)
    assert (s.instance.name, s.tensor_parallel) == ("g6.xlarge", 1)  # cheapest GPU at $0.8048/h
    s = p.choose(M["qwen3-14b"], [INSTANCES["g5.12xlarge"], INSTANCES["g5.24xlarge"]], 32768, 8)
    assert (s.instance.name, s.tensor_parallel) == ("g5.12xlarge", 4)  # TP1/TP2 do not fit 27.5 GiB


def test_nothing_fits_returns_none_and_largest_context_is_zero():
    arch = M["llama-3.1-70b-instruct"]
    assert p.choose(arch, [INSTANCES["g5.xlarge"]], 8192, 1) is None
    assert p.largest_context(arch, INSTANCES["g5.xlarge"], 1, 1) == 0


def test_valid_tps_divide_heads_and_neuron_powers_of_two():
    # TP 5 divides qwen3-14b's 40 heads but not its 8 KV heads (nor 17408 MLP width); TP 7 divides
    # qwen2.5's 28 heads but not its 4 KV heads (7 % 4) — vLLM fails to shard both at load.
    assert p.valid_tps(M["qwen3-14b"], INSTANCES["g5.48xlarge"]) == [1, 2, 4, 8]
    assert p.valid_tps(M["qwen2.5-7b-instruct"], INSTANCES["g5.48xlarge"]) == [1, 2, 4]
    assert "8 KV heads" in p.tp_problem(M["qwen3-14b"], INSTANCES["g5.48xlarge"], 5)
    assert p.valid_tps(M["llama-3.1-8b-instruct"], INSTANCES["inf2.24xlarge"]) == [1, 2, 4, 8]
    assert "does not divide" in p.tp_problem(M["qwen3-14b"], INSTANCES["g5.12xlarge"], 3)
    assert "exceeds the 4 GPUs" in p.tp_problem(M["qwen3-14b"], INSTANCES["g5.12xlarge"], 8)


def test_neuron_sizing_preallocates_blocks():
    arch, inst = M["llama-3.1-8b-instruct"], INSTANCES["inf2.8xlarge"]
    assert inst.unit_memory_gib == 16  # 32 GiB chip, 2 NeuronCores
    s = p.size(arch, inst, 2, 4096, 4)
    assert s.block_size == 32 and s.num_blocks == 4096 // 32 * 4
    assert s.kv_tokens == 4096 * 4
    assert s.kv_bytes_per_token == 2 * 32 * 4 * 128 * 2
    # 512 blocks x 32 tokens x 65,536 B = exactly 1 GiB of KV per core; weights 8.03e9 x 2 / 2 = 7.4785 GiB;
    # headroom 0.9 x 16 - 7.4785 - 1.0 scratch = 5.92 GiB >= 1 GiB
    assert s.kv_gib_per_device == pytest.approx(1.0)
    assert s.weights_gib_per_device == pytest.approx(7.4785, abs=1e-3)
    assert s.fits
    big = p.size(arch, inst, 2, 32768, 16)
    assert not big.fits


def test_cost_is_price_times_replicas():
    assert p.hourly_usd(INSTANCES["g5.12xlarge"], 1, 3) == (5.672, 17.016)


def test_startup_budget_hand_values():
    """2 x (weights GiB / 0.25 GiB/s EFS + 180 s GPU warm-up), or on Neuron + 60 s compile per GiB +
    300 s warm-up, rounded up to whole minutes."""
    # qwen3-0.6b: 1.110 GiB -> 2 x (4.4 + 180) = 369 s -> 420
    assert p.startup_budget_seconds(M["qwen3-0.6b"], "nvidia") == 420
    # llama-2-70b: 128.49 GiB -> 2 x (514 + 180) = 1388 s -> 1440
    assert p.startup_budget_seconds(M["llama-2-70b-chat"], "nvidia") == 1440
    # llama-3.1-8b on Neuron: 14.96 GiB -> 2 x (59.8 + 897.4 + 300) = 2514 s -> 2520
    assert p.startup_budget_seconds(M["llama-3.1-8b-instruct"], "neuron") == 2520
    # the same on a GPU: 2 x (59.8 + 180) = 480 s
    assert p.startup_budget_seconds(M["llama-3.1-8b-instruct"], "nvidia") == 480


def test_host_memory_rules_out_small_neuron_hosts():
    """inf2.xlarge has 16 GiB of host memory: a pod gets 12; loading Llama-3.1-8B (14.96 GiB of bf16
    weights) on Neuron needs 4 + 1.25 x 14.96 = 22.7 GiB. inf2.8xlarge (128 GiB) is the fit."""
    arch = M["llama-3.1-8b-instruct"]
    small = p.size(arch, INSTANCES["inf2.xlarge"], 2, 4096, 4)
    assert small.host_memory_gib == 12 and small.host_memory_needed_gib == pytest.approx(22.7, abs=0.05)
    assert not small.host_memory_ok and not small.fits
    s = p.choose(arch, [i for i in INSTANCES.values() if i.family == "inf2"], 4096, 4)
    assert s.instance.name == "inf2.8xlarge"
    # GPUs stream weights: the same model on g6e.xlarge (32 GiB host) needs 4 + 0.25 x 14.96
    assert p.size(arch, INSTANCES["g6e.xlarge"], 1, 4096, 4).host_memory_ok
