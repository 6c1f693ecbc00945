"""`python -m stacks.bench` against a stub gateway (a local HTTP server) and a stub load engine (a script
that writes the JSON `vllm bench serve --save-result` writes): flags, bad inputs, the report, the knee and
the $ figures. The real engine, gateway and vLLM are in tests/e2e/test_bench.py."""

import json
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stacks import bench, measure
from tests.conftest import ROOT

KEY = "sk-good"
MODEL = "qwen3-0.6b"
SEED004 = ROOT / "stacks" / "examples" / "Pulumi.seed004-qwen3-0-6b-one-gpu.yaml"


class Gateway(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code, body, ctype="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self):
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self._send(401, json.dumps({"error": {"message": "Authentication Error"}}))
            return False
        return True

    def do_GET(self):
        if self.path == "/v1/models" and self._authorized():
            self._send(200, json.dumps({"data": [{"id": MODEL}, {"id": "other"}]}))

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self._authorized():
            chunks = [{"choices": [{"delta": {"content": w}}]} for w in ("a", "b", "c")]
            chunks.append({"choices": [], "usage": {"completion_tokens": 3}})
            body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self._send(200, body, "text/event-stream")


@pytest.fixture(scope="module")
def gateway_url():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


# At concurrency c the stub reports p99 TTFT 100*c ms, p99 ITL 5*c ms and 50*c output tok/s.
STUB_ENGINE = """#!{python}
import json, os, sys
a = sys.argv[1:]
arg = lambda f: a[a.index(f) + 1]
c, n, out = int(arg("--max-concurrency")), int(arg("--num-prompts")), int(arg("--output-len"))
with open(os.path.join(os.path.dirname(__file__), "calls.jsonl"), "a") as f:
    f.write(json.dumps({{"argv": a, "key": os.environ.get("OPENAI_API_KEY")}}) + "\\n")
if os.environ.get("STUB_FAIL"):
    print("ValueError: something broke inside the engine")
    sys.exit(1)
short = int(os.environ.get("STUB_SHORT", 0))
doc = {{"duration": n / c, "completed": n, "failed": 0, "total_output_tokens": out * n - short,
       "request_throughput": c, "request_goodput": c / 2, "output_throughput": 50.0 * c}}
for m, v in (("ttft", 100), ("itl", 5), ("e2el", 1000)):
    doc.update({{f"p50_{{m}}_ms": v * c / 2, f"p90_{{m}}_ms": v * c * 0.9, f"p99_{{m}}_ms": v * c}})
with open(os.path.join(arg("--result-dir"), arg("--result-filename")), "w") as f:
    json.dump(doc, f)
"""


@pytest.fixture
def engine(tmp_path):
    p = tmp_path / "engine" / "vllm"
    p.parent.mkdir()
    p.write_text(STUB_ENGINE.format(python=sys.executable))
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def calls(engine):
    return [json.loads(x) for x in (engine.parent / "calls.jsonl").read_text().splitlines()]


def run(capsys, *args):
    try:
        code = bench.main(["nostack", *args])
    except SystemExit as e:  # argparse refuses a flag before main's body runs
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def base(url, engine, *extra):
    return ["--gateway-url", url, "--api-key", KEY, "--model", MODEL, "--engine", str(engine), *extra]


SLO = ["--slo-ttft-ms", "250", "--slo-itl-ms", "50"]


def test_sweep_report_and_knee(capsys, gateway_url, engine):
    args = base(gateway_url, engine, "--concurrency", "1,2,4", "--requests", "8", *SLO, "--json")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    doc = json.loads(out)
    # p99 TTFT 100/200/400 ms against 250: c=1 and c=2 meet it (ITL 5/10 <= 50), c=4 does not
    assert [lv["meetsSlo"] for lv in doc["levels"]] == [True, True, False]
    assert doc["knee"]["concurrency"] == 2 and doc["knee"]["outputTokensPerSecond"] == 100.0
    assert doc["levels"][2]["ttftMs"] == {"p50": 200.0, "p90": 360.0, "p99": 400.0}
    assert doc["levels"][1]["goodputRequestsPerSecond"] == 1.0
    assert doc["knee"]["usdPerMillionOutputTokens"] == {"acceleratorNodes": None, "wholeStack": None}
    assert doc["slo"] == {"ttftMs": 250.0, "itlMs": 50.0, "source": "flags"}
    assert doc["warnings"] == [] and doc["levels"][0]["outputTokens"] == 8 * 128  # default --output-len 128
    made = calls(engine)
    assert [c["argv"][c["argv"].index("--max-concurrency") + 1] for c in made] == ["1", "2", "4"]
    assert all(c["key"] == KEY and KEY not in c["argv"] for c in made)  # the key travels in the environment
    assert err.count("concurrency") >= 6 and "meets SLO" in err and "misses SLO" in err  # progress on stderr


def test_table_and_no_knee(capsys, gateway_url, engine):
    code, out, _ = run(capsys, *base(gateway_url, engine, "--concurrency", "4,8", "--requests", "8", *SLO))
    assert code == 0
    assert "knee: none" in out  # c=4: p99 TTFT 400 ms > 250
    # c=8: TTFT p50 400, p90 720, p99 800 ms in its row
    assert any(line.startswith("8 ") and "400/720/800" in line for line in out.splitlines()), out


def test_costs_and_slo_from_the_stack_config(capsys, gateway_url, engine, tmp_path):
    results = tmp_path / "results"
    args = base(gateway_url, engine, "--concurrency", "1,2,4", "--requests", "4", *SLO)
    code, out, err = run(capsys, *args, "--config", str(SEED004), "--results-dir", str(results), "--json")
    assert code == 0, err
    doc = json.loads(out)
    # seed004: one g6e.xlarge replica at $1.861/h (stacks/catalog/instances.yaml)
    assert doc["hourlyUsd"]["acceleratorNodes"] == pytest.approx(1.861)
    whole = doc["hourlyUsd"]["wholeStack"]
    assert whole > 1.861 + 0.10  # + EKS control plane ($0.10/h) and more
    # knee c=2 at 100 tok/s = 360,000 tokens/h: $1.861 / 0.36 = $5.1694 per 1M
    per_m = doc["knee"]["usdPerMillionOutputTokens"]
    assert per_m["acceleratorNodes"] == pytest.approx(5.169444, rel=1e-5)
    assert per_m["wholeStack"] == pytest.approx(whole / 0.36)
    assert sorted(p.name for p in results.glob("*.json")) == ["c1.json", "c2.json", "c4.json"]
    assert calls(engine)[0]["argv"][calls(engine)[0]["argv"].index("--tokenizer") + 1] == "Qwen/Qwen3-0.6B"


def test_duration_sizes_the_levels_from_a_test_chat(capsys, gateway_url, engine):
    code, _, err = run(capsys, *base(gateway_url, engine, "--concurrency", "1,2", "--duration", "5", *SLO))
    assert code == 0, err
    n = [int(c["argv"][c["argv"].index("--num-prompts") + 1]) for c in calls(engine)]
    # the stub chat answers at once: at least one request per stream; the second level is sized from the
    # first's p50 end-to-end (500 ms): 5 s / 0.5 s = 10 per stream, x 2 streams = 20
    assert n[0] >= 1 and n[1] == 20


def one_line_error(code, out, err, want):
    assert code == 2 and out == "", out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and want in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "extra,want",
    [
        (["--concurrency", "1,x"], "not a comma-separated list"),
        (["--concurrency", "4,2"], "increasing order"),
        (["--requests", "0"], "must be greater than 0"),
        (["--requests", "2", "--duration", "3"], "not allowed with"),
        (["--requests", "2", "--concurrency", "1,4"], "fewer than the highest concurrency 4"),
        (["--input-len", "abc"], "not a number"),
        (["--dataset", "/no/such/file.jsonl"], "--dataset /no/such/file.jsonl"),
        (["--api-key", "sk-wrong"], "refused the key (HTTP 401)"),
        (["--model", "nope"], "model 'nope': the gateway does not serve it (it serves: other, qwen3-0.6b)"),
        (["--engine", "/no/such/vllm"], "/no/such/vllm: not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, gateway_url, engine, extra, want):
    one_line_error(*run(capsys, *base(gateway_url, engine, "--requests", "8", *SLO), *extra), want)


def test_no_slo_anywhere_is_bad_input(capsys, gateway_url, engine):
    one_line_error(*run(capsys, *base(gateway_url, engine, "--slo-itl-ms", "9")), "go together")
    one_line_error(*run(capsys, *base(gateway_url, engine, "--requests", "8")), "no SLO — pass --slo-ttft-ms")


def test_unreachable_gateway(capsys, engine):
    import socket

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        one_line_error(*run(capsys, *base(url, engine, *SLO)), "unreachable")
    one_line_error(*run(capsys, *base("ftp://x", engine, *SLO)), "not an http(s) URL")


def test_stack_outputs_and_their_absence(capsys, gateway_url, engine, tmp_path):
    f = tmp_path / "outputs.json"
    f.write_text(json.dumps({"gatewayUrl": gateway_url, "gatewayMasterKey": KEY, "models": [MODEL]}))
    args = ["--outputs", str(f), "--engine", str(engine), "--requests", "2", "--concurrency", "1,2", *SLO]
    code, out, err = run(capsys, *args)
    assert code == 0 and "knee: concurrency 2" in out, err
    f.write_text(json.dumps({"gatewayUrl": gateway_url, "gatewayMasterKey": KEY, "models": [MODEL, "other"]}))
    one_line_error(*run(capsys, *args), "the stack serves qwen3-0.6b, other — pass --model NAME")
    f.write_text(json.dumps({"gatewayUrl": gateway_url, "models": [MODEL]}))
    one_line_error(*run(capsys, *args), "stack output gatewayAdminKey: missing")


def test_an_engine_failure_is_exit_1_with_its_last_line(capsys, gateway_url, engine, monkeypatch):
    monkeypatch.setenv("STUB_FAIL", "1")
    code, out, err = run(capsys, *base(gateway_url, engine, "--requests", "8", *SLO))
    assert code == 1 and out == ""
    assert "the engine failed: ValueError: something broke inside the engine" in err and "Traceback" not in err


def test_a_token_count_short_of_the_requests_is_warned(capsys, gateway_url, engine, monkeypatch):
    monkeypatch.setenv("STUB_SHORT", "5")
    code, out, err = run(capsys, *base(gateway_url, engine, "--concurrency", "2", "--requests", "4", *SLO))
    assert code == 0
    # 4 requests x 128 tokens = 512 expected, the engine counted 507
    want = "concurrency 2: the engine counted 507 output tokens for 4 requests of 128 (512)"
    assert f"warning: {want}" in out and f"warning: {want}" in err


def test_the_slo_comes_from_flags_before_the_stack_config():
    facts = bench.StackFacts(key="m-key", slo=measure.Slo(300, 30), source="Pulumi.x.yaml")
    flags = bench.parser().parse_args(["x", "--slo-ttft-ms", "100", "--slo-itl-ms", "10"])
    none = bench.parser().parse_args(["x"])
    assert bench.slo_of(flags, facts, "m") == (measure.Slo(100, 10), "flags")
    assert bench.slo_of(none, facts, "m") == (measure.Slo(300, 30), "Pulumi.x.yaml (models.m-key.slo)")
    with pytest.raises(bench.BadInput, match="no SLO"):
        bench.slo_of(none, bench.StackFacts(), "m")


def test_a_model_slo_wins_over_the_stack_default():
    """tests/configs/slo.ok.yaml: `tiny` has its own targets, `other` takes the stack-wide ones."""
    cfg = ROOT / "tests" / "configs" / "slo.ok.yaml"
    own = bench.stack_facts("slo", cfg, "tiny")
    default = bench.stack_facts("slo", cfg, "other")
    assert (own.slo.ttft_ms, own.slo.itl_ms) == (500, 50)
    assert (default.slo.ttft_ms, default.slo.itl_ms) == (2000, 100)
