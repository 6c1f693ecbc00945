"""What a load run measures, as pure functions: one row per tested concurrency, the SLO check, the knee
and the $ per 1M output tokens at the knee. No I/O here: `stacks.bench` runs the load engine and feeds
its JSON result in (stacks/measure/engine.py turns that result into a `Level`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PERCENTILES = (50, 90, 99)
SECONDS_PER_HOUR = 3600
TOKENS_PER_MILLION = 1_000_000


@dataclass(frozen=True)
class Slo:
    """Per-model latency objective: time to first token and inter-token latency, in milliseconds."""

    ttft_ms: float
    itl_ms: float


@dataclass(frozen=True)
class Spread:
    """p50 / p90 / p99 of one latency, in milliseconds."""

    p50: float
    p90: float
    p99: float

    def as_dict(self) -> dict:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}


@dataclass(frozen=True)
class Level:
    """One run of the load engine at a fixed concurrency."""

    concurrency: int
    completed: int
    failed: int
    duration_s: float
    output_tokens: int
    request_rate: float  # completed requests per second
    output_rate: float  # output tokens per second
    goodput: float | None  # requests per second that met the SLO (None: no SLO given to the engine)
    ttft: Spread
    itl: Spread
    e2el: Spread

    def as_dict(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "completed": self.completed,
            "failed": self.failed,
            "durationSeconds": self.duration_s,
            "outputTokens": self.output_tokens,
            "requestsPerSecond": self.request_rate,
            "outputTokensPerSecond": self.output_rate,
            "goodputRequestsPerSecond": self.goodput,
            "ttftMs": self.ttft.as_dict(),
            "itlMs": self.itl.as_dict(),
            "e2eMs": self.e2el.as_dict(),
        }


KNEE_RULE = (
    "knee = the largest tested concurrency whose p99 TTFT and p99 ITL are both within the SLO "
    "and whose requests all succeeded"
)


def meets_slo(level: Level, slo: Slo) -> bool:
    """p99 TTFT and p99 ITL within the SLO (a bound met exactly counts), and no failed request."""
    return level.failed == 0 and level.completed > 0 and level.ttft.p99 <= slo.ttft_ms and level.itl.p99 <= slo.itl_ms


def knee(levels: Sequence[Level], slo: Slo) -> Level | None:
    """The level with the largest concurrency that meets the SLO (KNEE_RULE); None when none does."""
    ok = [lv for lv in levels if meets_slo(lv, slo)]
    return max(ok, key=lambda lv: lv.concurrency) if ok else None


def usd_per_million_tokens(usd_per_hour: float, output_tokens_per_s: float) -> float | None:
    """$ per 1M output tokens = $/h / (tokens/s x 3600) x 1e6; None when nothing was generated."""
    if output_tokens_per_s <= 0:
        return None
    return usd_per_hour / (output_tokens_per_s * SECONDS_PER_HOUR) * TOKENS_PER_MILLION


def token_shortfall(level: Level, output_len: int) -> str | None:
    """With the engine's `--ignore-eos` every request generates exactly `output_len` tokens; a count
    below that means the engine did not get `usage` from the stream and counted the text instead."""
    want = level.completed * output_len
    if level.output_tokens >= want:
        return None
    return (
        f"concurrency {level.concurrency}: the engine counted {level.output_tokens} output tokens for "
        f"{level.completed} requests of {output_len} ({want}) — it read no usage from the stream (a gateway "
        f"that sends usage on a chunk with choices); output tok/s and $ per 1M tokens are off"
    )


def parse_concurrency(text: str) -> list[int]:
    """`1,2,4,8` -> [1, 2, 4, 8]: positive integers, each once, in increasing order."""
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of integers — e.g. 1,2,4,8") from None
    if any(v < 1 for v in values):
        raise ValueError(f"{text!r}: every concurrency must be at least 1 — e.g. 1,2,4,8")
    if values != sorted(set(values)):
        raise ValueError(f"{text!r}: list each concurrency once, in increasing order — e.g. 1,2,4,8")
    return values


def requests_for_duration(duration_s: float, concurrency: int, seconds_per_request: float) -> int:
    """How many requests keep `concurrency` streams busy for about `duration_s`, each taking
    `seconds_per_request` (at least one per stream, so every stream is exercised)."""
    if seconds_per_request <= 0:
        return concurrency
    per_stream = max(1, round(duration_s / seconds_per_request))
    return per_stream * concurrency
