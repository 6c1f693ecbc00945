"""stacks.measure: the SLO check, the knee, $ per 1M tokens, and the load engine's argv and JSON result.
Expected numbers are worked out by hand in the comments."""

import pytest

from stacks import measure
from stacks.measure import engine as eng


def level(c, ttft99, itl99, failed=0, out_rate=100.0, completed=10):
    return measure.Level(
        concurrency=c,
        completed=completed,
        failed=failed,
        duration_s=10.0,
        output_tokens=1000,
        request_rate=1.0,
        output_rate=out_rate,
        goodput=1.0,
        ttft=measure.Spread(ttft99 / 2, ttft99 * 0.9, ttft99),
        itl=measure.Spread(itl99 / 2, itl99 * 0.9, itl99),
        e2el=measure.Spread(1000, 1100, 1200),
    )


SLO = measure.Slo(ttft_ms=500, itl_ms=20)


def test_knee_is_the_largest_concurrency_within_both_p99_bounds():
    levels = [level(1, 100, 10), level(2, 200, 12), level(4, 400, 30), level(8, 900, 50)]
    # c=4 misses ITL (30 > 20), c=8 misses both: the knee is 2
    assert measure.knee(levels, SLO).concurrency == 2


def test_a_bound_met_exactly_counts_and_one_over_does_not():
    assert measure.meets_slo(level(4, 500, 20), SLO)
    assert not measure.meets_slo(level(4, 500.01, 20), SLO)
    assert not measure.meets_slo(level(4, 500, 20.01), SLO)


def test_no_knee_when_no_level_meets_the_slo():
    assert measure.knee([level(1, 600, 10), level(2, 700, 30)], SLO) is None
    assert measure.knee([], SLO) is None


def test_the_rule_takes_the_largest_passing_level_even_after_a_miss():
    # stated rule: largest tested concurrency that meets the SLO, not the last before the first miss
    assert measure.knee([level(1, 100, 10), level(2, 900, 10), level(4, 300, 15)], SLO).concurrency == 4


def test_failed_requests_disqualify_a_level():
    assert measure.knee([level(1, 100, 10), level(2, 100, 10, failed=1)], SLO).concurrency == 1
    assert not measure.meets_slo(level(1, 100, 10, completed=0), SLO)


def test_usd_per_million_output_tokens():
    # 50 tok/s x 3600 s = 180,000 tokens per hour; $3.60 / 180,000 x 1,000,000 = $20.00
    assert measure.usd_per_million_tokens(3.6, 50) == pytest.approx(20.0)
    # 1000 tok/s = 3.6M tokens per hour; $1.006 / 3.6 = $0.27944...
    assert measure.usd_per_million_tokens(1.006, 1000) == pytest.approx(0.279444, rel=1e-5)
    assert measure.usd_per_million_tokens(3.6, 0) is None


@pytest.mark.parametrize("text,want", [("1,2,4,8", [1, 2, 4, 8]), ("3", [3]), ("1, 16", [1, 16])])
def test_parse_concurrency(text, want):
    assert measure.parse_concurrency(text) == want


@pytest.mark.parametrize(
    "text,why", [("1,x", "integers"), ("0,2", "at least 1"), ("4,2", "increasing"), ("2,2", "once")]
)
def test_parse_concurrency_refuses(text, why):
    with pytest.raises(ValueError, match=why):
        measure.parse_concurrency(text)


def test_requests_for_duration():
    # 30 s at 2 s per request: 15 requests per stream, x 4 streams = 60
    assert measure.requests_for_duration(30, 4, 2.0) == 60
    # a request slower than the duration still gets one per stream
    assert measure.requests_for_duration(1, 8, 5.0) == 8
    assert measure.requests_for_duration(30, 3, 0.0) == 3


RUN = eng.Run(
    engine="/opt/vllm/bin/vllm",
    base_url="http://gw:4000/",
    model="qwen3-0.6b",
    tokenizer="Qwen/Qwen3-0.6B",
    dataset="random",
    input_len=512,
    output_len=128,
    slo=SLO,
)


def _after(argv, flag, n=1):
    i = argv.index(flag)
    return argv[i + 1 : i + 1 + n]


def test_engine_argv(tmp_path):
    a = eng.argv(RUN, 4, 40, tmp_path, "c4.json")
    assert a[:3] == ["/opt/vllm/bin/vllm", "bench", "serve"]
    assert _after(a, "--base-url") == ["http://gw:4000"]  # the engine appends the endpoint itself
    assert _after(a, "--endpoint") == ["/v1/chat/completions"]
    assert _after(a, "--backend") == ["openai-chat"]
    assert _after(a, "--max-concurrency") == ["4"] and _after(a, "--num-prompts") == ["40"]
    assert _after(a, "--goodput", 2) == ["ttft:500", "tpot:20"]
    assert _after(a, "--metric-percentiles") == ["50,90,99"]
    assert _after(a, "--served-model-name") == ["qwen3-0.6b"] and _after(a, "--tokenizer") == ["Qwen/Qwen3-0.6B"]
    assert _after(a, "--random-input-len") == ["512"] and _after(a, "--output-len") == ["128"]
    assert _after(a, "--result-dir") == [str(tmp_path)] and _after(a, "--result-filename") == ["c4.json"]
    assert "--ignore-eos" in a
    assert all(isinstance(x, str) for x in a)


def test_engine_datasets(tmp_path):
    shared = eng.argv(eng.Run(**{**RUN.__dict__, "dataset": "shared-prefix"}), 1, 1, tmp_path, "x.json")
    # 512 prompt tokens: 3/4 shared (384), the rest (128) per request; one prefix for all
    assert _after(shared, "--dataset-name") == ["prefix_repetition"]
    assert _after(shared, "--prefix-repetition-prefix-len") == ["384"]
    assert _after(shared, "--prefix-repetition-suffix-len") == ["128"]
    assert _after(shared, "--prefix-repetition-num-prefixes") == ["1"]
    assert _after(shared, "--prefix-repetition-output-len") == ["128"]
    own = eng.argv(eng.Run(**{**RUN.__dict__, "dataset": "/data/p.jsonl"}), 1, 1, tmp_path, "x.json")
    assert _after(own, "--dataset-name") == ["custom"] and _after(own, "--dataset-path") == ["/data/p.jsonl"]


ENGINE_DOC = {
    "duration": 12.5,
    "completed": 40,
    "failed": 0,
    "total_output_tokens": 5120,
    "request_throughput": 3.2,
    "request_goodput": 2.4,
    "output_throughput": 409.6,
    "p50_ttft_ms": 80.0,
    "p90_ttft_ms": 150.0,
    "p99_ttft_ms": 210.5,
    "p50_itl_ms": 9.0,
    "p90_itl_ms": 11.0,
    "p99_itl_ms": 19.5,
    "p50_e2el_ms": 1200.0,
    "p90_e2el_ms": 1400.0,
    "p99_e2el_ms": 1500.0,
    "mean_ttft_ms": 99.0,
}


def test_engine_result_to_level():
    lv = eng.level(ENGINE_DOC, 4)
    assert (lv.concurrency, lv.completed, lv.failed, lv.output_tokens) == (4, 40, 0, 5120)
    assert (lv.request_rate, lv.output_rate, lv.goodput, lv.duration_s) == (3.2, 409.6, 2.4, 12.5)
    assert lv.ttft == measure.Spread(80.0, 150.0, 210.5)
    assert lv.itl == measure.Spread(9.0, 11.0, 19.5)
    assert lv.e2el == measure.Spread(1200.0, 1400.0, 1500.0)
    assert measure.meets_slo(lv, SLO)  # 210.5 <= 500, 19.5 <= 20


def test_engine_result_missing_a_field():
    doc = {k: v for k, v in ENGINE_DOC.items() if k != "p99_itl_ms"}
    with pytest.raises(KeyError):
        eng.level(doc, 1)
    assert eng.level({**ENGINE_DOC, "request_goodput": None}, 1).goodput is None


def test_token_shortfall():
    # 10 completed requests of 128 tokens with --ignore-eos: 1280 expected
    assert measure.token_shortfall(level(2, 100, 10), 100) is None  # level() counts 1000 tokens = 10 x 100
    short = measure.token_shortfall(level(2, 100, 10), 128)
    assert short is not None and "counted 1000 output tokens for 10 requests of 128 (1280)" in short
