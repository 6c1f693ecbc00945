"""A Hugging Face `config.json` as the catalog's architecture facts, with the parameter count.

`read(path)` parses the file safely (size-limited, strict JSON: no NaN, no duplicate keys, a mapping at
the top); `architecture(raw)` turns it into `ArchitectureFields` plus the checkpoint quantization and
the parameter count, total and active, computed from the shapes for the families below. Every problem
is an `HfConfigError` with a one-line message naming the config key.

Parameter count (weights only, no buffers), per decoder layer:
    attention  q: hidden x heads*head_dim, k and v: hidden x kv_heads*head_dim, o: heads*head_dim x hidden
               (+ biases where the family has them: Qwen2 q/k/v; Llama/Qwen3 when attention_bias)
               (+ q_norm and k_norm, head_dim each, on Qwen3 and Qwen3-MoE)
    MLP        gated: 3 x hidden x intermediate (gate, up, down)
    MoE        router hidden x experts + experts x 3 x hidden x expert_intermediate
               (+ Qwen2-MoE's shared expert: 3 x hidden x shared_intermediate + a hidden x 1 gate);
               active = router + experts_per_token experts (+ the shared expert)
    norms      2 x hidden
plus the embedding (vocab x hidden), the final norm (hidden) and lm_head (vocab x hidden) unless
tie_word_embeddings. Families: llama, mistral, qwen2, qwen3 (dense); qwen3_moe, qwen2_moe, mixtral (MoE).
Any other model_type sizes only with the count given by the caller (`params_b`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stacks.catalog import ArchitectureFields

MAX_CONFIG_BYTES = 2 * 1024 * 1024  # real config.json files are a few KiB; vocab-in-config ones < 1 MiB

DENSE = ("llama", "mistral", "qwen2", "qwen3")
MOE = ("qwen3_moe", "qwen2_moe", "mixtral")
QK_NORM = ("qwen3", "qwen3_moe")
QKV_BIAS = ("qwen2", "qwen2_moe")  # q/k/v always carry a bias, o_proj never does
DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32", "bf16": "bfloat16", "fp16": "float16"}
QUANT_METHODS = {"awq": "awq", "gptq": "gptq", "fp8": "fp8"}


class HfConfigError(ValueError):
    """A config.json the sizer cannot read or size; str() is the one-line message."""


@dataclass(frozen=True)
class ParamCount:
    total: int
    active: int
    embedding: int  # vocab x hidden (input embedding)
    lm_head: int  # 0 when tied to the embedding


@dataclass(frozen=True)
class HfModel:
    """What a config.json says about a checkpoint."""

    name: str  # _name_or_path, else the directory name
    model_type: str
    fields: ArchitectureFields
    quantization: str | None  # the checkpoint's own (quantization_config.quant_method)
    params: ParamCount | None  # None when the count came from the caller
    params_active_b: float | None  # active parameters, billions (MoE < total; None if unknown)
    warnings: tuple[str, ...]


# ---- reading -----------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def read(path: Path) -> dict:
    """The parsed config.json (a directory means its config.json); HfConfigError when unreadable."""
    p = path / "config.json" if path.is_dir() else path
    try:
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise HfConfigError(
            f"{p}: cannot read ({e.strerror or e}) — pass a config.json file or its directory"
        ) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise HfConfigError(f"{p}: larger than {MAX_CONFIG_BYTES // 1024} KiB — is this a config.json?")
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique)
    except UnicodeDecodeError:
        raise HfConfigError(f"{p}: not UTF-8 text — pass the model's config.json") from None
    except (ValueError, RecursionError) as e:
        raise HfConfigError(f"{p}: not valid JSON ({str(e).splitlines()[0]}) — pass the model's config.json") from None
    if not isinstance(raw, dict):
        raise HfConfigError(f"{p}: the top level is a {type(raw).__name__}, not an object — pass a config.json")
    return raw


def text_part(raw: dict) -> dict:
    """The language model's keys: `text_config` when nested (multimodal checkpoints), with the keys
    such configs keep at the top level (dtype, quantization, tying, model_type) filled in."""
    inner = raw.get("text_config")
    if inner is None:
        return raw
    if not isinstance(inner, dict):
        raise HfConfigError("text_config: not an object — pass the model's config.json unchanged")
    merged = dict(inner)
    for k in ("torch_dtype", "dtype", "quantization_config", "tie_word_embeddings", "_name_or_path"):
        if k not in merged and k in raw:
            merged[k] = raw[k]
    merged.setdefault("model_type", raw.get("model_type"))
    return merged


# ---- typed access --------------------------------------------------------------------------------


def _int(cfg: dict, key: str, default: int | None = None) -> int:
    v = cfg.get(key)
    if v is None:
        if default is not None:
            return default
        raise HfConfigError(f"{key}: missing from config.json — a {cfg.get('model_type')} config needs it")
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise HfConfigError(f"{key}: {v!r} is not a positive integer — check the model's config.json")
    return v


def _flag(cfg: dict, key: str, default: bool) -> bool:
    v = cfg.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise HfConfigError(f"{key}: {v!r} is not true/false — check the model's config.json")
    return v


def _dtype(cfg: dict) -> tuple[str, list[str]]:
    """The dtype vLLM serves with `--dtype auto`: the checkpoint's 16-bit type; float32 (or none given)
    is served as bfloat16 on the GPUs we place models on (vLLM 0.32 config/model.py _resolve_auto_dtype)."""
    v = cfg.get("dtype") if cfg.get("dtype") is not None else cfg.get("torch_dtype")
    if v is None:
        return "bfloat16", ["config.json names no torch_dtype/dtype; vLLM serves such checkpoints as bfloat16"]
    if not isinstance(v, str) or v.removeprefix("torch.") not in DTYPES:
        raise HfConfigError(f"torch_dtype: {v!r} is not one of {', '.join(DTYPES)} — check the model's config.json")
    d = DTYPES[v.removeprefix("torch.")]
    if d == "float32":
        return "bfloat16", ["the checkpoint is float32; vLLM (--dtype auto) serves it as bfloat16, sized so"]
    return d, []


def _quantization(cfg: dict) -> tuple[str | None, list[str]]:
    q = cfg.get("quantization_config")
    if q is None:
        return None, []
    if not isinstance(q, dict):
        raise HfConfigError("quantization_config: not an object — check the model's config.json")
    method = q.get("quant_method")
    if method not in QUANT_METHODS:
        raise HfConfigError(
            f"quantization_config.quant_method: {method!r} is not one the planner sizes "
            f"({', '.join(QUANT_METHODS)}) — use an awq, gptq or fp8 checkpoint"
        )
    warn = []
    bits = q.get("bits", q.get("w_bit"))
    if method in ("awq", "gptq") and bits not in (None, 4):
        warn.append(f"{method} with {bits}-bit weights: sized as 4-bit (the planner's {method} size)")
    return QUANT_METHODS[method], warn


# ---- shapes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    intermediate: int | None
    tie: bool


def _shape(cfg: dict, model_type: str) -> _Shape:
    hidden = _int(cfg, "hidden_size")
    heads = _int(cfg, "num_attention_heads")
    kv = _int(cfg, "num_key_value_heads", heads)
    if kv > heads or heads % kv:
        raise HfConfigError(
            f"num_key_value_heads: {kv} does not divide num_attention_heads {heads} — check the model's config.json"
        )
    if cfg.get("head_dim") is None and hidden % heads:
        raise HfConfigError(f"head_dim: missing and hidden_size {hidden} is not a multiple of {heads} heads")
    head_dim = _int(cfg, "head_dim", hidden // heads)
    inter = cfg.get("intermediate_size")
    return _Shape(
        model_type=model_type,
        layers=_int(cfg, "num_hidden_layers"),
        hidden=hidden,
        heads=heads,
        kv_heads=kv,
        head_dim=head_dim,
        vocab=_int(cfg, "vocab_size"),
        intermediate=_int(cfg, "intermediate_size") if inter is not None else None,
        tie=_flag(cfg, "tie_word_embeddings", False),
    )


def attention_params(cfg: dict, s: _Shape) -> int:
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    n = s.hidden * q + 2 * s.hidden * kv + q * s.hidden
    if s.model_type in QKV_BIAS:
        n += q + 2 * kv
    elif s.model_type != "mistral" and _flag(cfg, "attention_bias", False):
        n += q + 2 * kv + s.hidden
    if s.model_type in QK_NORM:
        n += 2 * s.head_dim
    return n


def dense_mlp_params(cfg: dict, s: _Shape) -> int:
    if s.intermediate is None:
        raise HfConfigError(f"intermediate_size: missing from config.json — a {s.model_type} config needs it")
    n = 3 * s.hidden * s.intermediate
    if s.model_type == "llama" and _flag(cfg, "mlp_bias", False):
        n += 2 * s.intermediate + s.hidden
    return n


@dataclass(frozen=True)
class _Moe:
    experts: int
    per_token: int
    expert_intermediate: int
    shared_intermediate: int  # 0: no shared expert
    sparse_layers: frozenset[int]


def _moe(cfg: dict, s: _Shape) -> _Moe:
    if s.model_type == "mixtral":
        experts, inter = _int(cfg, "num_local_experts"), _int(cfg, "intermediate_size")
        return _Moe(experts, _int(cfg, "num_experts_per_tok"), inter, 0, frozenset(range(s.layers)))
    experts, inter = _int(cfg, "num_experts"), _int(cfg, "moe_intermediate_size")
    step = _int(cfg, "decoder_sparse_step", 1)
    dense_only = cfg.get("mlp_only_layers") or []
    if not isinstance(dense_only, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in dense_only):
        raise HfConfigError(f"mlp_only_layers: {dense_only!r} is not a list of layer indices")
    sparse = frozenset(i for i in range(s.layers) if i not in dense_only and (i + 1) % step == 0)
    shared = cfg.get("shared_expert_intermediate_size") or 0
    if shared:
        shared = _int(cfg, "shared_expert_intermediate_size")
    per_token = _int(cfg, "num_experts_per_tok")
    if per_token > experts:
        raise HfConfigError(f"num_experts_per_tok: {per_token} exceeds the {experts} experts")
    return _Moe(experts, per_token, inter, shared, sparse)


def _moe_layer(s: _Shape, m: _Moe) -> tuple[int, int]:
    """(total, active) parameters of one sparse MLP block."""
    expert = 3 * s.hidden * m.expert_intermediate
    fixed = s.hidden * m.experts  # router
    if m.shared_intermediate:
        fixed += 3 * s.hidden * m.shared_intermediate + s.hidden  # shared expert and its gate
    return fixed + m.experts * expert, fixed + m.per_token * expert


def count_params(cfg: dict, s: _Shape) -> ParamCount:
    """Total and active parameters of a supported family (see the module docstring)."""
    attn = attention_params(cfg, s) + 2 * s.hidden
    total = active = s.layers * attn
    if s.model_type in MOE:
        m = _moe(cfg, s)
        sparse_total, sparse_active = _moe_layer(s, m)
        dense = 0 if len(m.sparse_layers) == s.layers else dense_mlp_params(cfg, s)
        total += len(m.sparse_layers) * sparse_total + (s.layers - len(m.sparse_layers)) * dense
        active += len(m.sparse_layers) * sparse_active + (s.layers - len(m.sparse_layers)) * dense
    else:
        mlp = dense_mlp_params(cfg, s)
        total += s.layers * mlp
        active += s.layers * mlp
    embedding = s.vocab * s.hidden
    lm_head = 0 if s.tie else s.vocab * s.hidden
    rest = embedding + lm_head + s.hidden  # + final norm
    return ParamCount(total=total + rest, active=active + rest, embedding=embedding, lm_head=lm_head)


# ---- the whole reading ------------------------------------------------------------------------------


def _model_type(cfg: dict, params_b: float | None) -> str:
    mt = cfg.get("model_type")
    if not isinstance(mt, str) or not mt:
        raise HfConfigError("model_type: missing from config.json — pass the model's own config.json")
    if mt not in DENSE + MOE and params_b is None:
        raise HfConfigError(
            f"model_type: {mt!r} is not a family whose parameters this tool counts "
            f"({', '.join(DENSE + MOE)}) — pass --params-b with the model card's total (billions)"
        )
    return mt


def _sliding_warning(cfg: dict, max_positions: int) -> list[str]:
    w = cfg.get("sliding_window")
    if isinstance(w, int) and not isinstance(w, bool) and w < max_positions and cfg.get("use_sliding_window", True):
        return [f"sliding_window {w}: sized as full attention (vLLM may keep less KV per request)"]
    return []


def architecture(raw: dict, *, params_b: float | None = None, name: str = "") -> HfModel:
    """The checkpoint's facts from its parsed config.json; `params_b` overrides the computed count."""
    cfg = text_part(raw)
    mt = _model_type(cfg, params_b)
    s = _shape(cfg, mt)
    dtype, warnings = _dtype(cfg)
    quant, qwarn = _quantization(cfg)
    counted = count_params(cfg, s) if mt in DENSE + MOE else None
    moe = _moe(cfg, s) if mt in MOE else None
    max_pos = _int(cfg, "max_position_embeddings")
    if params_b is not None and counted is not None:
        warnings.append(f"--params-b {params_b} replaces the {counted.total / 1e9:.3f}B counted from config.json")
    total_b = params_b if params_b is not None else counted.total / 1e9  # type: ignore[union-attr]
    active_b = None
    if counted is not None:
        active_b = total_b if moe is None else counted.active / 1e9
    try:
        fields = ArchitectureFields(
            params=total_b,
            layers=s.layers,
            hidden=s.hidden,
            intermediate=s.intermediate or (moe.expert_intermediate if moe else s.hidden),
            heads=s.heads,
            kvHeads=s.kv_heads,
            headDim=s.head_dim,
            vocab=s.vocab,
            maxPositions=max_pos,
            dtype=dtype,  # type: ignore[arg-type]
            tieWordEmbeddings=s.tie,
            experts=moe.experts if moe else None,
            expertsPerToken=moe.per_token if moe else None,
            moeIntermediate=moe.expert_intermediate if moe else None,
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise HfConfigError(f"{'.'.join(map(str, err['loc']))}: {err['msg']} — check the model's config.json") from None
    label = cfg.get("_name_or_path") if isinstance(cfg.get("_name_or_path"), str) else ""
    return HfModel(
        name=label or name,
        model_type=mt,
        fields=fields,
        quantization=quant,
        params=counted,
        params_active_b=active_b,
        warnings=tuple(warnings + qwarn + _sliding_warning(cfg, max_pos)),
    )


def load(path: Path, *, params_b: float | None = None) -> HfModel:
    """read() + architecture(); the model is named after the config's directory (or `NAME.config.json`)
    when the config names none."""
    p = path / "config.json" if path.is_dir() else path
    stem = p.name.removesuffix(".config.json") if p.name.endswith(".config.json") else p.resolve().parent.name
    return architecture(read(path), params_b=params_b, name=stem)
