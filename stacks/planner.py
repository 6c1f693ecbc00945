"""Capacity, fit and cost: pure functions over catalog records (no Pulumi, no I/O).

Model of how vLLM sizes memory on one tensor-parallel rank (a GPU, or a NeuronCore):

    budget      = utilization x rank memory                           (what vLLM may use)
    weights     = params x bytes(dtype | quantization) / TP           (or the measured weightsGiB / TP)
    overheads   = activation peak + non-torch memory + CUDA graphs    (GPU; constants below)
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
from dataclasses import dataclass, field

from components.types import GIB, InstanceType, ModelArch

# ---- constants and where they come from ----------------------------------------------------
# vLLM V1 reserves this fraction of device memory by default since 0.21 (reference/serving.md);
# we render it explicitly and default a little lower to keep headroom for fragmentation.
DEFAULT_GPU_UTILIZATION = 0.90
# CUDA block size (vLLM default on CUDA).
GPU_BLOCK_SIZE = 16
# Non-torch memory (CUDA context, cuBLAS workspaces; NCCL buffers when TP > 1). Reported 0.1-1.5 GiB.
NON_TORCH_GIB = 0.5
NON_TORCH_TP_EXTRA_GIB = 0.5
# CUDA-graph capture memory, estimated and subtracted by vLLM since 0.21. Reported 0.2-1.3 GiB.
CUDA_GRAPH_GIB = 0.5
# Activation peak of the profiling run: a floor plus transient buffers that grow with the batched
# tokens (QKV, attention output, gated-MLP up/gate, residuals: ~24 hidden-sized bf16 tensors per
# token). At 2048 batched tokens this gives 1.1-1.5 GiB for 7-70B dense models, inside the 1-4 GiB
# reported in the wild (reference/serving.md).
ACTIVATION_FLOOR_GIB = 0.75
ACTIVATION_HIDDEN_FACTOR = 24


# vLLM's default max-num-batched-tokens: 2048 below 70 GiB devices, 8192 above.
def default_batched_tokens(rank_memory_gib: float) -> int:
    return 8192 if rank_memory_gib >= 70 else 2048


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
QUANT_BYTES = {"fp8": 1.0, "awq": 0.5, "gptq": 0.5, "int8": 1.0}
KV_DTYPE_BYTES = {"auto": None, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "bfloat16": 2, "float16": 2}


# ---- sizing ---------------------------------------------------------------------------------


def weight_bytes_total(arch: ModelArch, quantization: str | None = None) -> float:
    """Bytes of weights loaded on the devices (all ranks together)."""
    quant = quantization if quantization is not None else arch.quantization
    if arch.weights_gib is not None and quant == arch.quantization:
        return arch.weights_gib * GIB
    per_param = QUANT_BYTES[quant] if quant else DTYPE_BYTES[arch.dtype]
    return arch.params * 1e9 * per_param


def kv_bytes_per_token(arch: ModelArch, tp: int, kv_cache_dtype: str = "auto") -> int:
    """KV cache bytes one token costs on one rank (after TP; KV heads replicate when fewer than TP)."""
    b = KV_DTYPE_BYTES.get(kv_cache_dtype) or DTYPE_BYTES[arch.dtype]
    return 2 * arch.layers * max(1, arch.kv_heads // tp) * arch.head_dim * b


def activation_gib(arch: ModelArch, batched_tokens: int) -> float:
    return ACTIVATION_FLOOR_GIB + batched_tokens * arch.hidden * 2 * ACTIVATION_HIDDEN_FACTOR / GIB


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
) -> Sizing:
    """Size one replica of a model on one instance type at a given TP."""
    rank_gib = inst.unit_memory_gib
    weights = weight_bytes_total(arch, quantization) / tp / GIB
    host_gib = float(pod_memory_gib(inst, tp))
    host_needed_gib = round(host_memory_needed_gib(arch, inst.kind, quantization), 2)
    host_ok = host_gib >= host_needed_gib
    kvb = kv_bytes_per_token(arch, tp, kv_cache_dtype)
    if inst.kind == "neuron":
        util = utilization if utilization is not None else NEURON_UTILIZATION
        bt = batched_tokens or max_model_len
        block = NEURON_BLOCK_SIZE
        blocks = math.ceil(max_model_len / block) * max_num_seqs
        need_kv = blocks * block * kvb / GIB
        overhead = NEURON_SCRATCH_GIB
        available = util * rank_gib - weights - overhead
        fits = available >= need_kv and host_ok
        kv_gib = need_kv
        kv_tokens = blocks * block
        conc = float(max_num_seqs) if fits else max(0.0, available) * GIB / kvb / max_model_len
        return Sizing(
            inst,
            tp,
            max_model_len,
            max_num_seqs,
            bt,
            util,
            weights,
            overhead,
            kvb,
            kv_gib,
            kv_tokens,
            conc,
            fits,
            block,
            blocks,
            host_memory_gib=host_gib,
            host_memory_needed_gib=host_needed_gib,
        )
    util = utilization if utilization is not None else DEFAULT_GPU_UTILIZATION
    bt = batched_tokens or default_batched_tokens(rank_gib)
    overhead = (
        activation_gib(arch, bt)
        + NON_TORCH_GIB
        + (NON_TORCH_TP_EXTRA_GIB if tp > 1 else 0)
        + (0 if enforce_eager else CUDA_GRAPH_GIB)
    )
    kv_gib = util * rank_gib - weights - overhead
    blocks = max(0, int(kv_gib * GIB // kvb) // GPU_BLOCK_SIZE)
    kv_tokens = blocks * GPU_BLOCK_SIZE
    conc = kv_tokens / max_model_len
    fits = kv_tokens >= max_model_len and host_ok
    return Sizing(
        inst,
        tp,
        max_model_len,
        max_num_seqs,
        bt,
        util,
        weights,
        overhead,
        kvb,
        max(kv_gib, 0.0),
        kv_tokens,
        conc,
        fits,
        GPU_BLOCK_SIZE,
        blocks,
        host_memory_gib=host_gib,
        host_memory_needed_gib=host_needed_gib,
    )


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
# or GPU operator) take about 0.3 CPU and 0.5 GiB (deploy review estimate).
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
