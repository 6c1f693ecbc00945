"""Size one model on one accelerator without a stack: `python -m stacks.size`.

The model is a Hugging Face config.json (--hf-config) or a catalog preset (--preset); the accelerator is
a catalog instance type (--instance) or a GPU given by its memory (--gpu-memory-gib: total memory as CUDA
reports it, torch.cuda.mem_get_info()[1] / 2**30, e.g. H100 79.18, L40S 44.39; not the marketing size);
the vLLM knobs are the ones the stack renders; unset knobs take the stack's defaults. The numbers are the
planner's (stacks/capacity/planner.py), per device (one tensor-parallel rank):
  weights     GiB of weights on each device (total params x bytes / TP)
  overheads   activation peak of vLLM's profiling run, non-torch memory (CUDA context, NCCL), CUDA graphs
              (and the sampler warm-up where the planner models it)
  KV          budget = gpu-memory-utilization x device memory - weights - overheads
  KV tokens   KV / bytes per token, rounded down to whole blocks (vLLM's "GPU KV cache size")
  max conc    KV tokens / max-model-len: full-length requests served at once ("Maximum concurrency")
  fits        one max-model-len request fits (and, on a catalog instance, the pod's host memory suffices)
Exit 0 when it sizes (fits or not: the output says which; with --check, 1 when it does not fit);
2 on bad input (one line on stderr: an unreadable or unsupported config.json, an unknown preset or
instance, an impossible knob). Offline: no network.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from components.types import GIB, InstanceType, ModelArch
from stacks import catalog
from stacks.capacity import hfconfig, planner
from stacks.config.schema import DEFAULT_MAX_MODEL_LEN, DEFAULT_MAX_NUM_SEQS

PROG = "python -m stacks.size"
QUANTIZATIONS = ("fp8", "awq", "gptq")  # what the stack schema accepts (stacks/config/schema.py)
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")
CUSTOM_HOST_MEMORY_MIB = 1 << 30  # --gpu-memory-gib: host memory unknown, never the limit (not checked)
# The planner's overhead terms (Sizing fields, GiB per device) that add up to overhead_gib_per_device,
# and the sampler warm-up, a part of the activation peak reported on its own.
OVERHEAD_TERMS = ("activation_gib", "non_torch_gib", "cudagraph_gib")
SAMPLER_TERM = "sampler_gib"
STACK_KEY_FLAGS = {
    "maxModelLen: ": "--max-model-len ",
    "maxNumSeqs: ": "--max-num-seqs ",
    "gpuMemoryUtilization: ": "--gpu-memory-utilization ",
    "tensorParallel: ": "--tp ",
    "a larger instance type or tensorParallel": "a larger --instance or --tp",
}


class SizeError(ValueError):
    """Bad input: exit 2 with this one-line message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(2, f"error: {message} — see {PROG} --help\n")


@dataclass(frozen=True)
class Model:
    arch: ModelArch
    source: str  # "preset NAME" or "config.json PATH"
    model_type: str | None
    params_active_b: float | None
    warnings: tuple[str, ...] = ()


# ---- arguments ----------------------------------------------------------------------------------------


def _positive(kind: type):
    def conv(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not v > 0 or v != v or v == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return v

    conv.__name__ = kind.__name__
    return conv


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = ap.add_mutually_exclusive_group(required=True)
    model.add_argument("--hf-config", type=Path, metavar="PATH", help="the model's config.json (or its directory)")
    model.add_argument("--preset", metavar="NAME", help="a model of stacks/catalog/models.yaml")
    accel = ap.add_mutually_exclusive_group(required=True)
    accel.add_argument("--instance", metavar="TYPE", help="an instance type of stacks/catalog/instances.yaml")
    accel.add_argument(
        "--gpu-memory-gib", type=_positive(float), metavar="G", help="memory of one GPU as CUDA reports it (GiB)"
    )
    ap.add_argument("--gpus", type=_positive(int), metavar="N", help="GPUs of that kind (default: --tp)")
    ap.add_argument("--tp", type=_positive(int), default=1, metavar="N", help="--tensor-parallel-size (default 1)")
    ap.add_argument(
        "--max-model-len",
        type=_positive(int),
        metavar="N",
        help=f"default: the stack's, min({DEFAULT_MAX_MODEL_LEN}, max_position_embeddings)",
    )
    ap.add_argument(
        "--max-num-seqs", type=_positive(int), metavar="N", help=f"default: the stack's, {DEFAULT_MAX_NUM_SEQS}"
    )
    ap.add_argument(
        "--max-num-batched-tokens",
        type=_positive(int),
        metavar="N",
        help="default: vLLM's for the device (2048, 8192 on large GPUs)",
    )
    ap.add_argument(
        "--gpu-memory-utilization",
        type=_positive(float),
        metavar="U",
        help=f"default {planner.DEFAULT_GPU_UTILIZATION}",
    )
    ap.add_argument("--quantization", choices=QUANTIZATIONS, help="default: the checkpoint's own")
    ap.add_argument("--kv-cache-dtype", choices=KV_CACHE_DTYPES, default="auto")
    ap.add_argument(
        "--params-b",
        type=_positive(float),
        metavar="B",
        help="total parameters in billions (when config.json cannot give them)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--check", action="store_true", help="exit 1 when the model does not fit")
    return ap


# ---- model and accelerator ------------------------------------------------------------------------------


def _suggest(word: str, known: list[str], what: str) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f"did you mean {close[0]!r}?" if close else f"{what}: {', '.join(sorted(known))}"


def _model_arch(name: str, f: catalog.ArchitectureFields, quantization: str | None) -> ModelArch:
    """A ModelArch from config.json facts."""
    return catalog.model_arch(name, f, quantization=quantization)


def model_from_config(path: Path, params_b: float | None) -> Model:
    try:
        hf = hfconfig.load(path, params_b=params_b)
    except hfconfig.HfConfigError as e:
        raise SizeError(f"{path}: {e}" if not str(e).startswith(str(path)) else str(e)) from None
    return Model(
        arch=_model_arch(hf.name, hf.fields, hf.quantization),
        source=f"config.json {path}",
        model_type=hf.model_type,
        params_active_b=hf.params_active_b,
        warnings=hf.warnings,
    )


def model_from_preset(name: str, params_b: float | None) -> Model:
    presets = catalog.models()
    if name not in presets:
        raise SizeError(f"--preset {name!r}: unknown preset — {_suggest(name, list(presets), 'presets')}")
    arch = presets[name]
    if params_b is not None:
        arch = dataclasses.replace(arch, params=params_b)
    dense = getattr(arch, "experts", None) is None  # a preset row has no active count for MoE
    return Model(arch=arch, source=f"preset {name}", model_type=None, params_active_b=arch.params if dense else None)


def accelerator(a: argparse.Namespace) -> InstanceType:
    if a.instance is not None:
        known = catalog.instances()
        if a.instance not in known:
            raise SizeError(
                f"--instance {a.instance!r}: not in the catalog — {_suggest(a.instance, list(known), 'types')}"
            )
        if a.gpus is not None:
            raise SizeError("--gpus: only with --gpu-memory-gib (an instance type has its own GPU count)")
        return known[a.instance]
    gpus = a.gpus or a.tp
    return InstanceType(
        name=f"{gpus}x{a.gpu_memory_gib:g}GiB",
        family="custom",
        kind="nvidia",
        device="custom",
        devices=gpus,
        device_memory_mib=round(a.gpu_memory_gib * 1024),
        neuron_cores=0,
        vcpu=1,
        memory_mib=CUSTOM_HOST_MEMORY_MIB,
        local_nvme_gb=0,
        usd_per_hour=0.0,
        cuda_memory_gib=a.gpu_memory_gib,
    )


# ---- knobs ---------------------------------------------------------------------------------------------


def _quantization_problem(arch: ModelArch, asked: str | None) -> str | None:
    """vLLM serves a quantized checkpoint with its own method; from 16-bit it can only make fp8 (online)."""
    have = arch.quantization
    if asked is None or asked == have:
        return None
    if have is not None:
        return f"--quantization {asked}: {arch.hf_id} is quantized with {have} already — drop --quantization"
    if asked in ("awq", "gptq"):
        return f"--quantization {asked}: needs a checkpoint quantized with {asked} — use one, or --quantization fp8"
    return None


def knob_problems(arch: ModelArch, inst: InstanceType, a: argparse.Namespace, max_len: int, seqs: int) -> list[str]:
    out = []
    if why := planner.tp_problem(arch, inst, a.tp):
        out.append(f"--tp {a.tp}: {why} — pick one of those")
    if max_len > arch.max_positions:
        out.append(f"--max-model-len {max_len}: exceeds the model's {arch.max_positions} positions — use at most that")
    if a.max_num_batched_tokens is not None and a.max_num_batched_tokens < seqs:
        out.append(
            f"--max-num-batched-tokens {a.max_num_batched_tokens}: below --max-num-seqs {seqs} (vLLM refuses) "
            "— raise it"
        )
    if a.gpu_memory_utilization is not None and a.gpu_memory_utilization > 1:
        out.append(f"--gpu-memory-utilization {a.gpu_memory_utilization}: a fraction of device memory — use 0 < u <= 1")
    if inst.kind == "neuron" and (a.quantization or a.kv_cache_dtype != "auto"):
        out.append("--quantization / --kv-cache-dtype: GPU settings; Neuron serves 16-bit checkpoints — drop them")
    if q := _quantization_problem(arch, a.quantization):
        out.append(q)
    return out


# ---- sizing --------------------------------------------------------------------------------------------


def overhead_terms(s: planner.Sizing) -> dict[str, float]:
    """The overhead terms per device that add up to the planner's overhead (the sampler warm-up among them
    only where the planner adds it rather than counting it inside the activation peak); {} on Neuron
    and whenever the terms do not add up."""
    if s.instance.kind == "neuron":
        return {}
    terms = {t: float(getattr(s, t)) for t in OVERHEAD_TERMS}
    with_sampler = {**terms, SAMPLER_TERM: float(s.sampler_gib)}
    for candidate in (terms, with_sampler):
        if abs(sum(candidate.values()) - s.overhead_gib_per_device) < 1e-6:
            return candidate
    return {}


def margin_warnings(s: planner.Sizing) -> list[str]:
    """A concurrency inside the planner's error band is a warning that says what to change (a single
    request inside the band is the planner's own near-limit warning, in s.warnings)."""
    if not s.fits or s.instance.kind == "neuron" or s.near_limit:
        return []
    low = max(0.0, (s.kv_gib_per_device - s.margin_gib) * GIB / s.kv_bytes_per_token)
    if not s.max_concurrency >= s.max_num_seqs > low / s.max_model_len:
        return []
    return [
        f"max concurrency {s.max_concurrency:.1f} is within the KV error band ({s.margin_gib:.2f} GiB) of "
        f"--max-num-seqs {s.max_num_seqs}: requests may queue — lower --max-num-seqs or --max-model-len"
    ]


def as_flags(warning: str) -> str:
    """The planner words its fixes as stack keys; this CLI takes flags."""
    for key, flag in STACK_KEY_FLAGS.items():
        warning = warning.replace(key, flag)
    return warning


def fit_hints(model: Model, s: planner.Sizing, kw: dict) -> list[str]:
    """What to change when the model does not fit, or runs fewer than max-num-seqs at once."""
    arch, out = model.arch, []
    if not s.fits and s.host_memory_gib < s.host_memory_needed_gib:
        out.append(
            f"host memory: loading needs {s.host_memory_needed_gib:.0f} GiB, the pod gets {s.host_memory_gib:.0f}"
        )
    if s.fits:  # one request fits, so at least one
        out.append(f"--max-num-seqs {s.kv_tokens // s.max_model_len} fits at this size")
    ctx = planner.largest_context(arch, s.instance, s.tensor_parallel, s.max_num_seqs, **kw)
    if ctx < s.max_model_len:
        out.append(f"--max-model-len {ctx} is the largest that fits" if ctx else "no context fits at this TP")
    for t in planner.valid_tps(arch, s.instance):
        alt = planner.size(arch, s.instance, t, s.max_model_len, s.max_num_seqs, **kw) if t > s.tensor_parallel else s
        if alt.meets_concurrency if s.fits else alt.fits:
            out.append(f"--tp {t} on {s.instance.name} (max concurrency {alt.max_concurrency:.1f})")
            break
    return out + _elsewhere(arch, s, kw)


def _elsewhere(arch: ModelArch, s: planner.Sizing, kw: dict) -> list[str]:
    """The cheapest catalog instance of the same kind that fits it at full --max-num-seqs."""
    if s.instance.family == "custom" or s.meets_concurrency:
        return []
    kind = [i for i in catalog.instances().values() if i.kind == s.instance.kind and i.name != s.instance.name]
    best = planner.choose(arch, kind, s.max_model_len, s.max_num_seqs, **kw)
    if best is None or not (best.meets_concurrency if s.fits else best.fits):
        return []
    return [
        f"--instance {best.instance.name} --tp {best.tensor_parallel} (max concurrency {best.max_concurrency:.1f}, "
        f"${best.instance.usd_per_hour}/h on demand)"
    ]


def plan(model: Model, inst: InstanceType, a: argparse.Namespace) -> dict[str, Any]:
    """The sizing as one JSON-ready object (raises SizeError for an impossible knob)."""
    arch = model.arch
    max_len = a.max_model_len or min(arch.max_positions, DEFAULT_MAX_MODEL_LEN)
    seqs = a.max_num_seqs or DEFAULT_MAX_NUM_SEQS
    problems = knob_problems(arch, inst, a, max_len, seqs)
    if problems:
        raise SizeError(problems[0])
    kw = {
        "batched_tokens": a.max_num_batched_tokens,
        "utilization": a.gpu_memory_utilization,
        "kv_cache_dtype": a.kv_cache_dtype,
        "quantization": a.quantization if a.quantization is not None else arch.quantization,
    }
    s = planner.size(arch, inst, a.tp, max_len, seqs, **kw)
    warnings = [*model.warnings, *map(as_flags, s.warnings), *margin_warnings(s)]
    if not s.meets_concurrency:
        warnings += [
            f"does not fit: {h}" if not s.fits else f"max concurrency below --max-num-seqs: {h}"
            for h in fit_hints(model, s, kw)
        ]
    return _doc(model, inst, s, kw, warnings)


def _doc(model: Model, inst: InstanceType, s: planner.Sizing, kw: dict, warnings: list[str]) -> dict:
    arch = model.arch
    custom = inst.family == "custom"
    terms = overhead_terms(s)
    sampler = {SAMPLER_TERM: float(getattr(s, SAMPLER_TERM))} if hasattr(s, SAMPLER_TERM) else {}
    device_gib = getattr(s, "device_memory_gib", 0.0) or inst.unit_memory_gib  # as CUDA reports it, if known
    return {
        "model": arch.hf_id,
        "source": model.source,
        "model_type": model.model_type,
        "params_total_b": round(arch.params, 4),
        "params_active_b": round(model.params_active_b, 4) if model.params_active_b is not None else None,
        "dtype": arch.dtype,
        "quantization": kw["quantization"],
        "kv_cache_dtype": kw["kv_cache_dtype"],
        "accelerator": inst.kind,
        "instance": inst.name,
        "device_memory_gib": round(device_gib, 2),
        "tensor_parallel": s.tensor_parallel,
        "max_model_len": s.max_model_len,
        "max_num_seqs": s.max_num_seqs,
        "max_num_batched_tokens": s.max_num_batched_tokens,
        "gpu_memory_utilization": s.utilization,
        "budget_gib": round(s.utilization * device_gib, 2),
        "weights_gib": round(s.weights_gib_per_device, 2),
        **{k: round(v, 3) for k, v in {**terms, **sampler}.items()},
        "overhead_terms": list(terms),  # the *_gib keys that add up to overhead_gib
        "overhead_gib": round(s.overhead_gib_per_device, 3),
        "margin_gib": round(s.margin_gib, 3),
        "kv_bytes_per_token": s.kv_bytes_per_token,
        "kv_gib": round(s.kv_gib_per_device, 2),
        "kv_tokens": s.kv_tokens,
        "block_size": s.block_size,
        "max_concurrency": round(s.max_concurrency, 2),
        "fits": s.fits,
        "meets_max_num_seqs": s.meets_concurrency,
        "host_memory_gib": None if custom else s.host_memory_gib,
        "host_memory_needed_gib": s.host_memory_needed_gib,
        "warnings": list(dict.fromkeys(warnings)),
    }


# ---- output --------------------------------------------------------------------------------------------

_COLUMNS = (
    ("model", "model"),
    ("accel", "accelerator"),
    ("instance", "instance"),
    ("TP", "tensor_parallel"),
    ("ctx", "max_model_len"),
    ("seqs", "max_num_seqs"),
    ("weights GiB/dev", "weights_gib"),
    ("KV GiB/dev", "kv_gib"),
    ("KV tokens", "kv_tokens"),
    ("max conc", "max_concurrency"),
    ("fits", "fits"),
)


def _cell(key: str, v: Any) -> str:
    if key == "fits":
        return "yes" if v else "NO"
    if key == "max_concurrency":
        return f"{v:.1f}"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _kv_phrase(doc: dict) -> str:
    if doc["accelerator"] != "neuron":
        return f"KV {doc['kv_gib']:.2f} GiB"
    free = doc["budget_gib"] - doc["weights_gib"] - doc["overhead_gib"]  # Neuron preallocates its KV cache
    return f"{free:.2f} GiB free for a preallocated KV cache of {doc['kv_gib']:.2f} GiB"


def table(doc: dict) -> str:
    """The plan's model row for this sizing, then the memory arithmetic and the warnings."""
    head = [h for h, _ in _COLUMNS]
    row = [_cell(k, doc[k]) for _, k in _COLUMNS]
    widths = [max(len(h), len(c)) for h, c in zip(head, row, strict=True)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    lines = [fmt(head), fmt(["-" * w for w in widths]), fmt(row), ""]
    active = (
        f", {doc['params_active_b']:.2f}B active" if doc["params_active_b"] not in (None, doc["params_total_b"]) else ""
    )
    quant = doc["quantization"] or doc["dtype"]
    lines.append(f"params: {doc['params_total_b']:.3f}B total{active} ({quant}; from {doc['source']})")
    terms = [f"{k.removesuffix('_gib').replace('_', '-')} {doc[k]:.2f}" for k in doc["overhead_terms"]]
    scratch = "Neuron runtime scratch" if doc["accelerator"] == "neuron" else "overheads"
    parts = " - ".join(terms) or f"{scratch} {doc['overhead_gib']:.2f}"
    if doc.get(SAMPLER_TERM) and SAMPLER_TERM not in doc["overhead_terms"]:
        parts = parts.replace("activation ", f"activation peak (sampler warm-up {doc[SAMPLER_TERM]:.2f}) ", 1)
    lines.append(
        f"per device: {doc['gpu_memory_utilization']:g} x {doc['device_memory_gib']:.2f} GiB = {doc['budget_gib']:.2f} "
        f"- weights {doc['weights_gib']:.2f} - {parts} = {_kv_phrase(doc)}"
    )
    kv_dtype = doc["kv_cache_dtype"] if doc["kv_cache_dtype"] != "auto" else f"auto = {doc['dtype']}"
    lines.append(
        f"KV: {doc['kv_bytes_per_token']} B/token/device ({kv_dtype}) -> {doc['kv_tokens']} tokens "
        f"= {doc['max_concurrency']:.1f} requests of {doc['max_model_len']} tokens"
    )
    verdict = "fits" if doc["fits"] else "does NOT fit"
    lines.append(f"{verdict}; max concurrency {doc['max_concurrency']:.1f} vs --max-num-seqs {doc['max_num_seqs']}")
    lines += [f"warning: {w}" for w in doc["warnings"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        if a.hf_config is not None:
            model = model_from_config(a.hf_config, a.params_b)
        else:
            model = model_from_preset(a.preset, a.params_b)
        doc = plan(model, accelerator(a), a)
    except SizeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if a.json else table(doc))
    return 1 if a.check and not doc["fits"] else 0


if __name__ == "__main__":
    sys.exit(main())
