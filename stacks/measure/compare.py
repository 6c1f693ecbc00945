"""`stacks.plan --bench RESULT.json`: each benchmarked model's measured knee and $ per 1M output tokens
beside the planner's max concurrency, with a warning where they differ by more than 20 %.

RESULT.json is what `python -m stacks.bench STACK --json` prints (one model), or a JSON list of those.
The planner's max concurrency is per replica (KV cache tokens / context length); the gateway spreads a
benchmark over the replicas that were up, so the comparison is with planned x the minimum replicas.
The knee is one of the tested concurrencies, so it is only as fine as the levels the run tried.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TOLERANCE = 0.20


class BadResult(Exception):
    """Exit 2: the result file cannot be used (one line)."""


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class _UsdPerMillion(_Doc):
    acceleratorNodes: float | None = Field(None, ge=0)
    wholeStack: float | None = Field(None, ge=0)


class _Knee(_Doc):
    concurrency: int = Field(ge=1)
    outputTokensPerSecond: float = Field(ge=0)
    usdPerMillionOutputTokens: _UsdPerMillion


class _Level(_Doc):
    concurrency: int = Field(ge=1)


class _Result(_Doc):
    model: str = Field(min_length=1)
    levels: list[_Level] = Field(min_length=1)
    knee: _Knee | None


@dataclass(frozen=True)
class Planned:
    key: str  # the model's key under `models:`
    max_concurrency: float  # per replica, from the planner
    replicas: int  # the configured minimum


def _where(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    return f"{loc}: {err['msg']}"


def read_results(path: Path) -> list[_Result]:
    fix = "pass the JSON `python -m stacks.bench STACK --json` printed"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise BadResult(f"--bench {path}: cannot read it ({e.strerror or e}) — {fix}") from None
    except ValueError as e:
        raise BadResult(f"--bench {path}: not JSON ({e}) — {fix}") from None
    docs = doc if isinstance(doc, list) else [doc]
    out = []
    for i, d in enumerate(docs):
        try:
            out.append(_Result.model_validate(d))
        except ValidationError as e:
            at = f"[{i}]." if isinstance(doc, list) else ""
            raise BadResult(f"--bench {path}: {at}{_where(e)} — {fix}") from None
    if not out:
        raise BadResult(f"--bench {path}: an empty list — {fix}")
    return out


def compare(results: list[_Result], planned: dict[str, Planned]) -> list[str]:
    """Report lines; BadResult when a result names a model the stack does not serve."""
    lines: list[str] = []
    for r in results:
        p = planned.get(r.model)
        if p is None:
            names = ", ".join(sorted(planned)) or "none"
            raise BadResult(f"--bench: model {r.model!r} is not in this stack (it serves: {names}) — pass its result")
        lines += _model_lines(r, p)
    return lines


def _model_lines(r: _Result, p: Planned) -> list[str]:
    plan = p.max_concurrency * p.replicas
    tested = ",".join(str(lv.concurrency) for lv in r.levels)
    head = f"bench {p.key}: planned max concurrency {plan:.1f} ({p.max_concurrency:.1f} x {p.replicas} replicas)"
    if r.knee is None:
        return [
            f"{head}; measured: no knee",
            f"warning: {p.key}: no tested concurrency ({tested}) met the SLO; the planned {plan:.1f} is unconfirmed",
        ]
    k = r.knee
    usd = k.usdPerMillionOutputTokens
    money = ", ".join(
        f"{label} {'n/a' if v is None else f'${v:.2f}'}"
        for label, v in (("accelerator nodes", usd.acceleratorNodes), ("whole stack", usd.wholeStack))
    )
    diff = (k.concurrency - plan) / plan if plan > 0 else float("inf")
    out = [
        f"{head}; measured knee {k.concurrency} (tested {tested}, {diff:+.0%}); "
        f"$ per 1M output tokens at the knee: {money}"
    ]
    if abs(diff) > TOLERANCE:
        out.append(
            f"warning: {p.key}: the measured knee {k.concurrency} differs from the planned max concurrency "
            f"{plan:.1f} by {diff:+.0%} (more than {TOLERANCE:.0%})"
        )
    return out
