"""Capacity, fit and cost: pure functions over catalog records (no Pulumi, no I/O).

Model of how vLLM sizes memory on one tensor-parallel rank (a GPU, or a NeuronCore):

    budget      = utilization x rank memory as CUDA reports it        (what vLLM may use)
    weights     = params x bytes(dtype | quantization) / TP           (embeddings and lm_head stay 16-bit
                                                                        when quantized; or weightsGiB / TP)
    overheads   = activation peak (forward or sampler warm-up) + non-torch + CUDA graphs (GPU; below)
    KV budget   = budget - weights - overheads
    KV B/token  = 2 x layers x max(1, kv_heads // TP) x head_dim x bytes(kv dtype)
    KV tokens   = floor(KV budget / KV B/token), rounded down to whole blocks
    concurrency = KV tokens / max-model-len;  fits iff one max-length request fits.

Neuron (inf2/trn1) preallocates its KV cache: blocks = ceil(max-model-len / block) x max-num-seqs,
and the model fits iff weights + that cache + runtime scratch fit the NeuronCore's share of HBM.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from components.types import GIB, InstanceType, ModelArch

# ---- constants and where they come from ----------------------------------------------------
# The GPU memory model follows vLLM 0.32's start-up (vllm/v1/worker/gpu_worker.py
# determine_available_memory, vllm/utils/mem_utils.py memory_profiling, and Model Runner V2's
# v1/worker/gpu/model_runner.py profile_run / _dummy_sampler_run / cudagraph_utils.profile_cudagraph_memory;
# V2 is 0.32's runner for every generative model, config/vllm.py use_v2_model_runner):
#   requested   = gpu_memory_utilization x total memory as CUDA reports it
#   KV budget   = requested - consumed (weights + non-torch growth after the start snapshot, which is
#                 taken after CUDA and NCCL init, so the context itself is outside the budget)
#                 - transient activation peak of the profiling run (a forward of
#                   max-num-batched-tokens, then the sampler warm-up on min(max-num-seqs, batched)
#                   rows x vocab logits) - the CUDA-graph estimate (subtracted since vLLM 0.21,
#                   VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1; 0 with --enforce-eager)
# The fitted constants below (non-torch, CUDA graphs, the older engines' sampler bytes per logit) come
# from public start-up logs in benchmarks/kv_cases.yaml, each fitting case marked `fitted: true` and left
# out of the benchmark's statistics; the forward term and 0.32's sampler warm-up are counted from the
# model shape and the code.
DEFAULT_GPU_UTILIZATION = 0.90
# CUDA block size (vLLM default on CUDA).
GPU_BLOCK_SIZE = 16
# Non-torch growth after the start snapshot (cuBLAS/attention workspaces, allocator slack) and the
# extra per rank with TP > 1 (communicator buffers): 0.2 GiB (vLLM 0.19 logs 0.24-0.27 GiB on one H100,
# kv_cases.yaml) and 0.6 GiB at TP > 1 (vLLM logs 0.6 GiB at TP4 in PR #48601; 0.19 still allocated
# ~2.1 GiB of NCCL buffers after the snapshot, 0.32 initialises the communicators before it).
NON_TORCH_GIB = 0.2
NON_TORCH_TP_EXTRA_GIB = 0.4
# CUDA-graph estimate vLLM subtracts before the KV cache (vLLM >= 0.21), per decoder layer: fitted on the
# estimates vLLM 0.19 logs for 13 dense/MoE models on H100 (0.55-1.82 GiB, kv_cases.yaml
# logged.cudagraph_gib); the benchmark prints the error of this term separately. The estimates the vLLM
# >= 0.21 logs subtract (0.28-0.52 GiB at 256 sequences) are 0.20-0.30 GiB below it: kept, on the safe side.
CUDA_GRAPH_GIB_PER_LAYER = 0.02
# vLLM versions that subtract the CUDA-graph estimate (default since 0.21).
CUDA_GRAPH_ESTIMATE_SINCE = (0, 21)
# Sampler warm-up after the profiling forward, bytes per logit of the [rows, vocab] logits, by the engine
# path that ran it (rows = min(max-num-seqs, max-num-batched-tokens)):
#   "v2" (vLLM 0.32, Model Runner V2: the default for every generative model; v1/worker/gpu/model_runner.py
#     _dummy_sampler_run): the dummy batch asks for no top-k/top-p, logprobs or logits processing, so the
#     warm-up holds only compute_logits' output in the model dtype (2 B; at TP > 1 also the rank's vocab
#     shard before the gather, + 2/TP B) and the Gumbel kernel's per-block maxima. Counted from the code.
#   "triton" (Model Runner V1 of vLLM 0.19-0.22: FlashInfer first, then apply_top_k_top_p_triton): 15 B,
#     fitted on one vLLM 0.19 H100 log (Llama-3.1-8B: 1.89 GiB at 1,024 x 128,256).
#   "sort" (PyTorch-native sort-based top-k/top-p of older engines: fp32 logits, sorted values, int64
#     indices, softmax, cumsum, mask, probs): 38 B, fitted on one vLLM 0.11 H100 row (Qwen3-0.6B: 5.56 GiB
#     at 1,024 x 151,936); Llama-3.1-8B and Qwen3-32B at TP1/TP2 imply 38.3-38.4 B, a 0.10.1 log 30 B.
#   "flashinfer" (engines that warmed only FlashInfer's sampler, e.g. 0.10): 10 B, fitted on one 0.10.1 log.
SAMPLER_BYTES_PER_LOGIT = {"v2": 2, "triton": 15, "sort": 38, "flashinfer": 10}
# The sampler path vLLM 0.32 (the engine we pin) warms.
DEFAULT_SAMPLER = "v2"
# Forward peak of the profiling run, per token (16-bit): the larger of the MLP's transients (gate/up
# output 2 x I / TP and its activation I / TP) and the attention's (q, k, v and output), which are not
# alive at once, plus ~4 hidden-sized tensors (residual, normed input, layer output, kept hidden states).
ACTIVATION_HIDDEN_TENSORS = 4
# Error band of the model: benchmarks/kv_accuracy.py measures a worst |KV error| of 6.2 % on the 8 vLLM
# >= 0.21 logs and 6.3 % on the 0.19 ones (bar one 0.19 TP2 config with the NCCL buffers 0.32 no longer
# counts); the band is about twice that, with an absolute floor for small budgets (~0.25 GiB of
# overhead error). A fit whose KV cache is within the band of one max-length request is a warning.
KV_ERROR_BAND = 0.10
KV_ERROR_FLOOR_GIB = 0.25


# vLLM's default max-num-batched-tokens for `vllm serve` (engine/arg_utils.py): 8192 on devices of
# >= 70 GiB except A100s (excluded on purpose, PR #17885), 2048 on the rest.
def default_batched_tokens(rank_memory_gib: float, device: str = "") -> int:
    return 8192 if rank_memory_gib >= 70 and "a100" not in device.lower() else 2048


# Neuron: block size we render, the usable HBM fraction and runtime scratch per NeuronCore
# (compiled graphs, collectives buffers). Conservative: NxD Inference reserves memory per rank.
NEURON_BLOCK_SIZE = 32
NEURON_UTILIZATION = 0.90
NEURON_SCRATCH_GIB = 1.0

# Load-time model for the startup probe budget: weights read from EFS at a conservative
# per-client rate, plus engine warm-up (torch.compile + CUDA graphs), with a 2x safety factor.
EFS_READ_GIB_PER_S = 0.25
GPU_WARMUP_S = 180
# Neuron compiles on first start when no compiled artifacts exist (~15 min for a ~15 GB model).
NEURON_COMPILE_S_PER_GIB = 60
NEURON_WARMUP_S = 300

# Host memory a replica needs while loading (estimates): vLLM on GPUs streams safetensors to the
# device (a fraction of the checkpoint in flight); NxD Inference on Neuron holds the whole checkpoint
# in host memory while it shards and loads it. Plus the server's own process memory.
HOST_MEMORY_FACTOR = {"nvidia": 0.25, "neuron": 1.25}
HOST_MEMORY_BASE_GIB = 4
# Share of a node's memory a pod may request (kubelet reservations, system and device-plugin pods).
POD_MEMORY_FRACTION = 0.8

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
KV_DTYPE_BYTES = {"auto": None, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "bfloat16": 2, "float16": 2}


# ---- sizing ---------------------------------------------------------------------------------


# Bytes per weight of the quantized linear layers: AWQ/GPTQ pack 4-bit weights and keep a 16-bit
# scale and a 4-bit zero point per group of 128 inputs (0.5 + 2.5 / 128); FP8 and INT8 store one byte
# (per-channel or per-block scales are < 0.1 %). Embeddings and lm_head stay 16-bit in vLLM.
QUANT_BYTES = {"fp8": 1.0, "awq": 0.5 + 2.5 / 128, "gptq": 0.5 + 2.5 / 128, "int8": 1.0}


def embedding_params(arch: ModelArch) -> float:
    """Parameters of the token embedding and lm_head (one matrix when tied)."""
    return arch.vocab * arch.hidden * (1 if arch.tie_word_embeddings else 2)


def weight_bytes_total(arch: ModelArch, quantization: str | None = None) -> float:
    """Bytes of weights loaded on the devices (all ranks together): quantized layers at the
    quantization's bytes per weight, embeddings and lm_head at the 16-bit dtype."""
    quant = quantization if quantization is not None else arch.quantization
    if arch.weights_gib is not None and quant == arch.quantization:
        return arch.weights_gib * GIB
    dtype_b = DTYPE_BYTES[arch.dtype]
    if not quant:
        return arch.params * 1e9 * dtype_b
    embed = embedding_params(arch)
    return (arch.params * 1e9 - embed) * QUANT_BYTES[quant] + embed * dtype_b


def kv_bytes_per_token(arch: ModelArch, tp: int, kv_cache_dtype: str = "auto") -> int:
    """KV cache bytes one token costs on one rank (after TP; KV heads replicate when fewer than TP)."""
    b = KV_DTYPE_BYTES.get(kv_cache_dtype) or DTYPE_BYTES[arch.dtype]
    return 2 * arch.layers * max(1, arch.kv_heads // tp) * arch.head_dim * b


def mlp_width(arch: ModelArch) -> int:
    """Width of the MLP a token runs through: the dense intermediate size, or for MoE the routed
    experts' (experts per token x expert width)."""
    if arch.experts_per_token and arch.moe_intermediate:
        return arch.experts_per_token * arch.moe_intermediate
    return arch.intermediate


def forward_peak_gib(arch: ModelArch, batched_tokens: int, tp: int = 1) -> float:
    """Transient peak of the profiling forward pass over max-num-batched-tokens tokens on one rank."""
    attn = (2 * arch.heads + 2 * arch.kv_heads) * arch.head_dim
    per_token = max(3 * mlp_width(arch), attn) / tp + ACTIVATION_HIDDEN_TENSORS * arch.hidden
    return batched_tokens * per_token * DTYPE_BYTES[arch.dtype] / GIB


def sampler_gib(
    arch: ModelArch, max_num_seqs: int, batched_tokens: int, sampler: str = DEFAULT_SAMPLER, tp: int = 1
) -> float:
    """The sampler warm-up after the profiling forward: min(max-num-seqs, batched tokens) rows of
    full-vocabulary logits (gathered over TP ranks) and the path's temporaries."""
    rows = min(max_num_seqs, batched_tokens)
    per_logit = float(SAMPLER_BYTES_PER_LOGIT[sampler])
    if sampler == "v2" and tp > 1:
        per_logit += SAMPLER_BYTES_PER_LOGIT["v2"] / tp  # the rank's vocab shard before the gather
    return rows * arch.vocab * per_logit / GIB


def activation_gib(
    arch: ModelArch, batched_tokens: int, tp: int = 1, max_num_seqs: int = 0, sampler: str = DEFAULT_SAMPLER
) -> float:
    """Peak activation vLLM measures: the larger of the forward peak and the sampler warm-up (on top
    of the hidden states the forward returned) — they are not alive at the same time."""
    kept = batched_tokens * arch.hidden * DTYPE_BYTES[arch.dtype] / GIB
    return max(
        forward_peak_gib(arch, batched_tokens, tp),
        kept + sampler_gib(arch, max_num_seqs, batched_tokens, sampler, tp),
    )


def cudagraph_gib(arch: ModelArch, enforce_eager: bool = False, vllm_version: str | None = None) -> float:
    """The CUDA-graph memory estimate vLLM (>= 0.21, graphs on) takes from the KV budget."""
    if enforce_eager or not _version_at_least(vllm_version, CUDA_GRAPH_ESTIMATE_SINCE):
        return 0.0
    return arch.layers * CUDA_GRAPH_GIB_PER_LAYER


def _version_at_least(version: str | None, floor: tuple[int, int]) -> bool:
    if version is None:
        return True
    parts = [int("".join(c for c in x if c.isdigit()) or 0) for x in version.split("+")[0].split(".")[:2]]
    return tuple(parts) >= floor


@dataclass(frozen=True)
class Sizing:
    instance: InstanceType
    tensor_parallel: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    utilization: float
    weights_gib_per_device: float
    overhead_gib_per_device: float
    kv_bytes_per_token: int
    kv_gib_per_device: float
    kv_tokens: int
    max_concurrency: float
    fits: bool
    block_size: int
    num_blocks: int  # Neuron: --num-gpu-blocks-override; GPU: blocks vLLM will allocate
    host_memory_gib: float = 0.0  # what the pod may request on this instance
    host_memory_needed_gib: float = 0.0  # what loading the model needs
    warnings: tuple[str, ...] = field(default=())
    # The GPU terms of overhead_gib_per_device (GiB per rank; 0 on Neuron) and the memory they come from.
    device_memory_gib: float = 0.0  # total per rank as CUDA reports it (Neuron: the core's HBM share)
    requested_gib: float = 0.0  # utilization x device_memory_gib
    activation_gib: float = 0.0  # peak of the profiling run: max(forward, kept hidden + sampler)
    sampler_gib: float = 0.0  # the sampler warm-up part of that peak (rows x vocab)
    non_torch_gib: float = 0.0
    cudagraph_gib: float = 0.0
    margin_gib: float = 0.0  # the model's error band around kv_gib_per_device
    near_limit: bool = False  # fits, but within the error band of not fitting one request

    @property
    def host_memory_ok(self) -> bool:
        return self.host_memory_gib >= self.host_memory_needed_gib

    @property
    def meets_concurrency(self) -> bool:
        return self.fits and self.max_concurrency >= self.max_num_seqs


def accelerator_devices(inst: InstanceType, tp: int) -> int:
    """Devices one replica requests: GPUs = TP; Neuron chips for TP cores, rounded up to a power of two."""
    if inst.kind != "neuron":
        return tp
    n = max(1, math.ceil(tp / (inst.neuron_cores // inst.devices)))
    return 1 << (n - 1).bit_length()


def pod_memory_gib(inst: InstanceType, tp: int) -> int:
    share = accelerator_devices(inst, tp) / inst.devices
    return int(inst.memory_mib / 1024 * share * POD_MEMORY_FRACTION)


def host_memory_needed_gib(arch: ModelArch, kind: str, quantization: str | None = None) -> float:
    return HOST_MEMORY_BASE_GIB + HOST_MEMORY_FACTOR[kind] * weight_bytes_total(arch, quantization) / GIB


def rank_memory_gib(inst: InstanceType, gpu_memory_gib: float | None = None) -> float:
    """Memory of one TP rank: on GPUs as CUDA reports it (catalog cudaMemoryGiB, else the spec)."""
    if gpu_memory_gib is not None:
        return gpu_memory_gib
    if inst.kind != "neuron" and inst.cuda_memory_gib is not None:
        return inst.cuda_memory_gib
    return inst.unit_memory_gib


def size(
    arch: ModelArch,
    inst: InstanceType,
    tp: int,
    max_model_len: int,
    max_num_seqs: int,
    *,
    batched_tokens: int | None = None,
    utilization: float | None = None,
    kv_cache_dtype: str = "auto",
    quantization: str | None = None,
    enforce_eager: bool = False,
    gpu_memory_gib: float | None = None,
    vllm_version: str | None = None,
    sampler_warmup: str = DEFAULT_SAMPLER,
) -> Sizing:
    """Size one replica of a model on one instance type at a given TP. `gpu_memory_gib` overrides the
    device memory (as CUDA reports it); `vllm_version` older than 0.21 drops the CUDA-graph term;
    `sampler_warmup` names the sampler path the engine warms ("v2": vLLM 0.32's Model Runner V2)."""
    shape = _Shape(
        inst=inst,
        tp=tp,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        batched_tokens=batched_tokens,
        utilization=utilization,
        kvb=kv_bytes_per_token(arch, tp, kv_cache_dtype),
        weights=weight_bytes_total(arch, quantization) / tp / GIB,
        host_gib=float(pod_memory_gib(inst, tp)),
        host_needed_gib=round(host_memory_needed_gib(arch, inst.kind, quantization), 2),
        rank_gib=rank_memory_gib(inst, gpu_memory_gib),
    )
    if inst.kind == "neuron":
        return _size_neuron(shape)
    return _size_gpu(arch, shape, enforce_eager=enforce_eager, vllm_version=vllm_version, sampler=sampler_warmup)


@dataclass(frozen=True)
class _Shape:
    """What sizing one replica starts from, on either accelerator."""

    inst: InstanceType
    tp: int
    max_model_len: int
    max_num_seqs: int
    batched_tokens: int | None
    utilization: float | None
    kvb: int  # KV-cache bytes per token per rank
    weights: float  # GiB of weights per rank
    host_gib: float
    host_needed_gib: float
    rank_gib: float


def _size_gpu(arch: ModelArch, c: _Shape, *, enforce_eager: bool, vllm_version: str | None, sampler: str) -> Sizing:
    """vLLM profiles a forward pass, then gives the KV cache what is left of the requested memory."""
    util = c.utilization if c.utilization is not None else DEFAULT_GPU_UTILIZATION
    bt = c.batched_tokens or default_batched_tokens(c.rank_gib, c.inst.device)
    act = activation_gib(arch, bt, c.tp, c.max_num_seqs, sampler)
    smp = sampler_gib(arch, c.max_num_seqs, bt, sampler, c.tp)
    non_torch = NON_TORCH_GIB + (NON_TORCH_TP_EXTRA_GIB if c.tp > 1 else 0)
    graphs = cudagraph_gib(arch, enforce_eager, vllm_version)
    overhead = act + non_torch + graphs
    requested = util * c.rank_gib
    kv_gib = requested - c.weights - overhead
    blocks = max(0, int(kv_gib * GIB // c.kvb) // GPU_BLOCK_SIZE)
    kv_tokens = blocks * GPU_BLOCK_SIZE
    fits = kv_tokens >= c.max_model_len and c.host_gib >= c.host_needed_gib
    margin = max(KV_ERROR_BAND * max(kv_gib, 0.0), KV_ERROR_FLOOR_GIB)
    near = fits and (kv_gib - margin) * GIB / c.kvb < c.max_model_len
    s = Sizing(
        instance=c.inst,
        tensor_parallel=c.tp,
        max_model_len=c.max_model_len,
        max_num_seqs=c.max_num_seqs,
        max_num_batched_tokens=bt,
        utilization=util,
        weights_gib_per_device=c.weights,
        overhead_gib_per_device=overhead,
        kv_bytes_per_token=c.kvb,
        kv_gib_per_device=max(kv_gib, 0.0),
        kv_tokens=kv_tokens,
        max_concurrency=kv_tokens / c.max_model_len,
        fits=fits,
        block_size=GPU_BLOCK_SIZE,
        num_blocks=blocks,
        host_memory_gib=c.host_gib,
        host_memory_needed_gib=c.host_needed_gib,
        device_memory_gib=c.rank_gib,
        requested_gib=requested,
        activation_gib=act,
        sampler_gib=smp,
        non_torch_gib=non_torch,
        cudagraph_gib=graphs,
        margin_gib=margin,
        near_limit=near,
    )
    return replace(s, warnings=(near_limit_warning(s, arch),)) if near else s


def near_limit_warning(s: Sizing, arch: ModelArch) -> str:
    """What to change when one max-length request fits only inside the model's error band."""
    need = s.max_model_len * s.kv_bytes_per_token / GIB
    safe_len = max(0, int((s.kv_gib_per_device - s.margin_gib) * GIB / s.kv_bytes_per_token)) // GPU_BLOCK_SIZE
    fixes = []
    if safe_len * GPU_BLOCK_SIZE >= GPU_BLOCK_SIZE:
        fixes.append(f"maxModelLen: {safe_len * GPU_BLOCK_SIZE}")
    if s.sampler_gib > 0.25 and s.max_num_seqs > 64:
        fixes.append(f"maxNumSeqs: {max(1, s.max_num_seqs // 2)} (sampler warm-up {s.sampler_gib:.2f} GiB)")
    if s.utilization < 0.95:
        fixes.append(f"gpuMemoryUtilization: {min(0.95, s.utilization + 0.05):.2f}")
    fixes.append("a larger instance type or tensorParallel")
    return (
        f"one {s.max_model_len}-token request needs {need:.2f} GiB of KV cache and the planner estimates "
        f"{s.kv_gib_per_device:.2f} GiB ± {s.margin_gib:.2f} GiB (its error band against vLLM start-up logs): "
        "vLLM may refuse to start; fix: " + "; or ".join(fixes)
    )


def _size_neuron(c: _Shape) -> Sizing:
    """Neuron preallocates max-num-seqs x ceil(max-model-len / block) blocks."""
    util = c.utilization if c.utilization is not None else NEURON_UTILIZATION
    block = NEURON_BLOCK_SIZE
    blocks = math.ceil(c.max_model_len / block) * c.max_num_seqs
    need_kv = blocks * block * c.kvb / GIB
    overhead = NEURON_SCRATCH_GIB
    available = util * c.rank_gib - c.weights - overhead
    fits = available >= need_kv and c.host_gib >= c.host_needed_gib
    conc = float(c.max_num_seqs) if fits else max(0.0, available) * GIB / c.kvb / c.max_model_len
    return Sizing(
        instance=c.inst,
        tensor_parallel=c.tp,
        max_model_len=c.max_model_len,
        max_num_seqs=c.max_num_seqs,
        max_num_batched_tokens=c.batched_tokens or c.max_model_len,
        utilization=util,
        weights_gib_per_device=c.weights,
        overhead_gib_per_device=overhead,
        kv_bytes_per_token=c.kvb,
        kv_gib_per_device=need_kv,
        kv_tokens=blocks * block,
        max_concurrency=conc,
        fits=fits,
        block_size=block,
        num_blocks=blocks,
        host_memory_gib=c.host_gib,
        host_memory_needed_gib=c.host_needed_gib,
        device_memory_gib=c.rank_gib,
        requested_gib=util * c.rank_gib,
    )


# vLLM's CPU backend does not profile: its KV cache is exactly VLLM_CPU_KVCACHE_SPACE GiB (cpu_worker:
# "Explicitly set (N/total) GiB for KV cache"). The e2e tests run it; the stacks deploy only GPU/Neuron.
def cpu_kv_tokens(arch: ModelArch, kvcache_space_gib: float, kv_cache_dtype: str = "auto") -> int:
    """Tokens the vLLM CPU engine's KV cache holds: VLLM_CPU_KVCACHE_SPACE / bytes per token, in blocks."""
    kvb = kv_bytes_per_token(arch, 1, kv_cache_dtype)
    return int(kvcache_space_gib * GIB // kvb) // GPU_BLOCK_SIZE * GPU_BLOCK_SIZE


def _shards(arch: ModelArch, tp: int) -> bool:
    """vLLM shards attention heads and the MLP's intermediate width evenly over TP ranks; KV heads
    either split evenly (kv_heads % tp == 0) or are replicated (tp % kv_heads == 0)."""
    kv_ok = arch.kv_heads % tp == 0 if arch.kv_heads >= tp else tp % arch.kv_heads == 0
    return arch.heads % tp == 0 and kv_ok and arch.intermediate % tp == 0


def valid_tps(arch: ModelArch, inst: InstanceType) -> list[int]:
    """TP sizes that shard the model evenly (_shards) and fit the instance (powers of two on Neuron)."""
    out = []
    for tp in range(1, inst.parallel_units + 1):
        if not _shards(arch, tp):
            continue
        if inst.kind == "neuron" and tp & (tp - 1):
            continue
        out.append(tp)
    return out


def tp_problem(arch: ModelArch, inst: InstanceType, tp: int) -> str | None:
    if arch.heads % tp:
        divisors = list(valid_tps(arch, inst))
        return f"{tp} does not divide the model's {arch.heads} attention heads (valid here: {divisors})"
    if not _shards(arch, tp):
        return (
            f"{tp} does not shard the model's {arch.kv_heads} KV heads / {arch.intermediate} MLP width evenly "
            f"(valid here: {valid_tps(arch, inst)})"
        )
    if tp > inst.parallel_units:
        unit = "NeuronCores" if inst.kind == "neuron" else "GPUs"
        return f"{tp} exceeds the {inst.parallel_units} {unit} of {inst.name}"
    if inst.kind == "neuron" and tp & (tp - 1):
        return f"{tp} is not a power of two (Neuron devices are allocated in powers of two)"
    return None


def choose(
    arch: ModelArch,
    candidates: Iterable[InstanceType],
    max_model_len: int,
    max_num_seqs: int,
    *,
    tp: int | None = None,
    **kw,
) -> Sizing | None:
    """Cheapest instance (then smallest TP) that fits with concurrency >= max-num-seqs;
    failing that, the cheapest that fits at all; None when nothing fits."""
    meets: list[Sizing] = []
    fits: list[Sizing] = []
    for inst in candidates:
        tps = [tp] if tp is not None else valid_tps(arch, inst)
        for t in tps:
            if tp_problem(arch, inst, t):
                continue
            s = size(arch, inst, t, max_model_len, max_num_seqs, **kw)
            if s.meets_concurrency:
                meets.append(s)
            elif s.fits:
                fits.append(s)
    key = lambda s: (s.instance.usd_per_hour, s.tensor_parallel, s.instance.name)  # noqa: E731
    if meets:
        return min(meets, key=key)
    if fits:
        # Concurrency cannot be met anywhere: the cheapest that fits; the caller states the shortfall
        # (never the most expensive instance in the pool just because it comes closest).
        return min(fits, key=key)
    return None


def largest_context(arch: ModelArch, inst: InstanceType, tp: int, max_num_seqs: int, **kw) -> int:
    """The largest max-model-len (multiple of the block size) one request fits at, 0 if none."""
    lo, hi = 0, arch.max_positions
    step = NEURON_BLOCK_SIZE if inst.kind == "neuron" else GPU_BLOCK_SIZE
    seqs = 1 if inst.kind == "neuron" else max_num_seqs
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size(arch, inst, tp, mid, seqs, **kw).fits:
            lo = mid
        else:
            hi = mid - 1
    return lo // step * step


def best_context(arch: ModelArch, candidates: Iterable[InstanceType], max_num_seqs: int, **kw) -> tuple[int, str]:
    """Largest context any candidate at any valid TP admits, with where."""
    best = (0, "")
    for inst in candidates:
        for t in valid_tps(arch, inst):
            c = largest_context(arch, inst, t, max_num_seqs, **kw)
            if c > best[0]:
                best = (c, f"{inst.name} TP{t}")
    return best


def startup_budget_seconds(arch: ModelArch, kind: str, quantization: str | None = None) -> int:
    """How long the startupProbe lets a replica load before it is restarted."""
    gib = weight_bytes_total(arch, quantization) / GIB
    if kind == "neuron":
        est = gib / EFS_READ_GIB_PER_S + gib * NEURON_COMPILE_S_PER_GIB + NEURON_WARMUP_S
    else:
        est = gib / EFS_READ_GIB_PER_S + GPU_WARMUP_S
    return int(math.ceil(2 * est / 60) * 60)


def hourly_usd(inst: InstanceType, replicas_min: int, replicas_max: int) -> tuple[float, float]:
    """One replica per node (the pod pins the instance type): on-demand $/h x replicas."""
    return (round(inst.usd_per_hour * replicas_min, 4), round(inst.usd_per_hour * replicas_max, 4))


def fix_hints(arch: ModelArch, s: Sizing, candidates: list[InstanceType], **kw) -> list[str]:
    """What would raise concurrency to max-num-seqs (or make the model fit)."""
    hints = []
    for t in valid_tps(arch, s.instance):
        if t > s.tensor_parallel:
            alt = size(arch, s.instance, t, s.max_model_len, s.max_num_seqs, **kw)
            if alt.meets_concurrency:
                hints.append(f"tensorParallel: {t} on {s.instance.name} (max concurrency {alt.max_concurrency:.1f})")
                break
    other = choose(arch, [c for c in candidates if c.name != s.instance.name], s.max_model_len, s.max_num_seqs, **kw)
    if other is not None and other.meets_concurrency:
        hints.append(
            f"instanceType: {other.instance.name} with tensorParallel: {other.tensor_parallel} "
            f"(max concurrency {other.max_concurrency:.1f}, ${other.instance.usd_per_hour}/h)"
        )
    ctx = largest_context(arch, s.instance, s.tensor_parallel, s.max_num_seqs, **kw)
    if s.instance.kind != "neuron" and s.kv_tokens:
        seqs = max(1, int(s.kv_tokens // s.max_model_len))
        hints.append(f"maxNumSeqs: {seqs} at this size")
    if ctx and ctx < s.max_model_len:
        hints.append(f"maxModelLen: {ctx} (largest that fits)")
    return hints


# ---- placement: which instance types of a pool can run the same pod ----------------------------
# Allocatable as Karpenter estimates it for AL2023 nodes (kubelet reservations the way EKS sets them):
# memory = capacity x (1 - VM overhead) - kube-reserved (11 MiB per pod + 255 MiB) - eviction threshold;
# cpu = capacity - kube-reserved (6% of the first core, 1% of the second, 0.5% of cores 3-4, 0.25%
# beyond). Max pods: the kubelet default 110 (ENI-limited counts are lower on small types, so this
# reserves more, never less). DaemonSets (CNI, kube-proxy, CSI nodes, monitoring agent, device plugin
# or GPU operator) take about 0.3 CPU and 0.5 GiB (an estimate, not a measurement).
VM_MEMORY_OVERHEAD = 0.075
EVICTION_HARD_MIB = 100
MAX_PODS_ASSUMED = 110
DAEMONSET_CPU_M = 300
DAEMONSET_MEMORY_MIB = 512


def kube_reserved_cpu_m(vcpu: int) -> float:
    steps = ((1, 60.0), (1, 10.0), (2, 5.0))
    left, out = vcpu, 0.0
    for cores, per in steps:
        take = min(left, cores)
        out += take * per
        left -= take
    return out + left * 2.5


def allocatable(inst: InstanceType) -> tuple[float, float]:
    """(millicores, MiB) a workload pod may request on an empty node of this type."""
    cpu = inst.vcpu * 1000 - kube_reserved_cpu_m(inst.vcpu) - DAEMONSET_CPU_M
    mem = (
        inst.memory_mib * (1 - VM_MEMORY_OVERHEAD)
        - (11 * MAX_PODS_ASSUMED + 255)
        - EVICTION_HARD_MIB
        - DAEMONSET_MEMORY_MIB
    )
    return cpu, mem


def fitting_instance_types(
    chosen: InstanceType, tp: int, cpu: int, memory_gib: int, pool: Iterable[InstanceType]
) -> list[str]:
    """Instance types of the pool the same pod runs on unchanged: the same accelerator device (so the
    same memory per rank, the same sizing and, on Neuron, the same compile target), enough devices
    for its request, and its CPU and memory requests within the node's allocatable. Cheapest first;
    Karpenter launches the cheapest one available, so the others are capacity fallbacks."""
    devices = accelerator_devices(chosen, tp)
    out = []
    for inst in pool:
        if inst.kind != chosen.kind or inst.device != chosen.device or inst.parallel_units < tp:
            continue
        if accelerator_devices(inst, tp) != devices or inst.devices < devices:
            continue
        cpu_m, mem_mib = allocatable(inst)
        if cpu * 1000 <= cpu_m and memory_gib * 1024 <= mem_mib:
            out.append(inst)
    return [i.name for i in sorted(out, key=lambda i: (i.usd_per_hour, i.name))]


# ---- the weights download Job ----------------------------------------------------------------
# A conservative per-Job rate from the Hub to EFS, a fixed allowance for pod start and `pip install`,
# and a 2x factor for retries. The Job's activeDeadlineSeconds; servers wait a little longer.
HUB_DOWNLOAD_GIB_PER_S = 0.05
DOWNLOAD_BASE_S = 600
WEIGHTS_WAIT_MARGIN_S = 900  # the GPU node and the Job start at different times


def checkpoint_gib(arch: ModelArch) -> float:
    """Size of the checkpoint on the Hub (its own dtype or quantization, not a serving-time override)."""
    return weight_bytes_total(arch, arch.quantization) / GIB


def download_deadline_seconds(arch: ModelArch) -> int:
    est = DOWNLOAD_BASE_S + 2 * checkpoint_gib(arch) / HUB_DOWNLOAD_GIB_PER_S
    return int(math.ceil(est / 60) * 60)
