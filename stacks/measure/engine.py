"""The load engine: `vllm bench serve` (shipped with vLLM), run by `stacks.bench` as a subprocess.

This module only builds its argument list and reads its saved JSON result; it never imports vLLM.
Facts about the engine this relies on (vLLM's benchmarks/serve.py):
  - `--backend openai-chat` streams `/v1/chat/completions` with `stream_options.include_usage` and takes
    the output token count from the `usage` chunk (it tokenizes the text only when no usage arrived);
  - the API key travels in the `OPENAI_API_KEY` environment variable (sent as `Authorization: Bearer`),
    so it never appears in a process list;
  - `--goodput ttft:MS tpot:MS` counts a request as good when its TTFT and its mean time per output token
    after the first are within the bounds; the JSON has `request_goodput` (req/s);
  - `--percentile-metrics ttft,itl,e2el --metric-percentiles 50,90,99` puts `p50_ttft_ms` … in the JSON;
  - `--save-result --result-dir D --result-filename F` writes that JSON to D/F.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stacks.measure import PERCENTILES, Level, Slo, Spread

ENDPOINT = "/v1/chat/completions"
DATASETS = {"random": "random", "shared-prefix": "prefix_repetition"}
# shared-prefix: this share of --input-len is one prefix every request repeats (a long system prompt).
SHARED_PREFIX_SHARE = 0.75


@dataclass(frozen=True)
class Run:
    engine: str
    base_url: str
    model: str  # the gateway's model name
    tokenizer: str  # Hugging Face id or local directory the engine counts prompt tokens with
    dataset: str  # random | shared-prefix | path to a JSONL file of {"prompt": ...}
    input_len: int
    output_len: int
    slo: Slo
    ignore_eos: bool = True
    seed: int = 0


def dataset_args(run: Run) -> list[str]:
    if run.dataset == "random":
        return ["--dataset-name", "random", "--random-input-len", str(run.input_len)]
    if run.dataset == "shared-prefix":
        prefix = max(1, round(run.input_len * SHARED_PREFIX_SHARE))
        return [
            "--dataset-name",
            "prefix_repetition",
            "--prefix-repetition-prefix-len",
            str(prefix),
            "--prefix-repetition-suffix-len",
            str(max(1, run.input_len - prefix)),
            "--prefix-repetition-num-prefixes",
            "1",
            "--prefix-repetition-output-len",
            str(run.output_len),
        ]
    return ["--dataset-name", "custom", "--dataset-path", run.dataset, "--skip-chat-template"]


def argv(run: Run, concurrency: int, requests: int, result_dir: Path, result_file: str) -> list[str]:
    """The engine's command line for one concurrency level (a list: no shell)."""
    out = [
        run.engine,
        "bench",
        "serve",
        "--backend",
        "openai-chat",
        "--base-url",
        run.base_url.rstrip("/"),
        "--endpoint",
        ENDPOINT,
        "--model",
        run.model,
        "--served-model-name",
        run.model,
        "--tokenizer",
        run.tokenizer,
        *dataset_args(run),
        "--output-len",
        str(run.output_len),
        "--num-prompts",
        str(requests),
        "--max-concurrency",
        str(concurrency),
        "--request-rate",
        "inf",
        "--num-warmups",  # one per stream first: the first requests after idle pay connection set-up
        str(concurrency),
        "--goodput",
        f"ttft:{run.slo.ttft_ms:g}",
        f"tpot:{run.slo.itl_ms:g}",
        "--percentile-metrics",
        "ttft,itl,e2el",
        "--metric-percentiles",
        ",".join(str(p) for p in PERCENTILES),
        "--seed",
        str(run.seed),
        "--disable-tqdm",
        "--save-result",
        "--result-dir",
        str(result_dir),
        "--result-filename",
        result_file,
    ]
    return [*out, "--ignore-eos"] if run.ignore_eos else out


def _spread(doc: dict, metric: str) -> Spread:
    p50, p90, p99 = (float(doc[f"p{p}_{metric}_ms"]) for p in PERCENTILES)
    return Spread(p50, p90, p99)


def level(doc: dict, concurrency: int) -> Level:
    """A `Level` from the engine's saved JSON; KeyError/ValueError when a field is missing or not a number."""
    goodput = doc.get("request_goodput")
    return Level(
        concurrency=concurrency,
        completed=int(doc["completed"]),
        failed=int(doc["failed"]),
        duration_s=float(doc["duration"]),
        output_tokens=int(doc["total_output_tokens"]),
        request_rate=float(doc["request_throughput"]),
        output_rate=float(doc["output_throughput"]),
        goodput=None if goodput is None else float(goodput),
        ttft=_spread(doc, "ttft"),
        itl=_spread(doc, "itl"),
        e2el=_spread(doc, "e2el"),
    )
