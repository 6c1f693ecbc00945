"""The in-cluster benchmark Job's command line, exactly as rendered (container command + args), run here:
python with the in-pod program (incluster/bench/run.py), the real load engine (`vllm bench serve` from
.e2e/vllm) as `vllm` on PATH like in the image, the key in OPENAI_API_KEY, straight to the real LiteLLM
running the rendered gateway config (as the Job reaches it, without the front door).

No cluster here, so what this proves is that the rendered arguments work with the real engine and
gateway and that `parse_log` reads what the program prints. Behind LiteLLM is an upstream that answers
like vLLM's streaming chat at once (tests/e2e/paced.py with no pause): starting a real vLLM
server is what test_bench.py does already, and it is not what the Job's arguments depend on.
"""

from __future__ import annotations

import subprocess

import pytest

from stacks import catalog, measure
from stacks.measure import engine as eng
from stacks.measure import job
from tests.e2e.paced import start_paced
from tests.e2e.servers import E2E, MASTER_KEY, gateway_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
ENGINE = E2E / "vllm" / "bin" / "vllm"
INPUT_LEN, OUTPUT_LEN = 16, 12
LEVELS = ((1, 2), (2, 4))  # (concurrency, requests)
INSTANT_SLOTS = 8  # more than the highest level's concurrency: none waits


@pytest.fixture(scope="module")
def litellm(rendered, tiny_model, tmp_path_factory):
    model = rendered.litellm_config["model_list"][0]["model_name"]
    upstream = start_paced(0.0, INSTANT_SLOTS, model)  # no pause between tokens: an instant answer
    gw = gateway_for(rendered, upstream.server_address[1], tmp_path_factory.mktemp("litellm"))
    gw.timeout = 300
    try:
        gw.start()
        yield {
            "url": f"http://127.0.0.1:{gw.port}",
            "model": model,
            "tokenizer": str(tiny_model),
        }
    finally:
        gw.stop()
        upstream.shutdown()


def test_the_jobs_command_line_runs_the_engine_through_the_gateway(litellm, tmp_path, monkeypatch):
    monkeypatch.setattr(job, "RESULT_DIR", str(tmp_path / "results"))  # the pod's emptyDir
    (tmp_path / "results").mkdir()
    run = eng.Run(
        "vllm",
        litellm["url"],
        litellm["model"],
        litellm["tokenizer"],
        "random",
        INPUT_LEN,
        OUTPUT_LEN,
        measure.Slo(1e5, 1e4),
    )
    image = catalog.versions().images["vllm"]
    spec = job.JobSpec("models", "gateway", image, "model-cache", run, LEVELS, 600)
    container = job.render_job(spec)["spec"]["template"]["spec"]["containers"][0]
    cmd = [*container["command"], *container["args"]]
    assert cmd[0] == "python3" and cmd == job.container_args(spec)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= {"HOME": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hub")}  # the pod's volumes, here
    env |= {"PATH": f"{ENGINE.parent}:/usr/bin:/bin", "OPENAI_API_KEY": MASTER_KEY}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    levels, error = job.parse_log(p.stdout)
    assert error is None and [c for c, _ in levels] == [1, 2]
    for (c, doc), (_, n) in zip(levels, LEVELS, strict=True):
        lv = eng.level(doc, c)
        assert (lv.completed, lv.failed) == (n, 0)
        assert lv.output_tokens == n * OUTPUT_LEN  # from the usage chunk, through the gateway


def test_a_refused_key_fails_every_request(litellm, tmp_path, monkeypatch):
    """The engine exits 0 with every request failed when the gateway refuses the key; the CLI turns
    that into its one-line refusal (tests/stacks/test_bench_job.py)."""
    monkeypatch.setattr(job, "RESULT_DIR", str(tmp_path / "results"))
    (tmp_path / "results").mkdir()
    slo = measure.Slo(1e5, 1e4)
    run = eng.Run("vllm", litellm["url"], litellm["model"], litellm["tokenizer"], "random", INPUT_LEN, OUTPUT_LEN, slo)
    spec = job.JobSpec("models", "gateway", catalog.versions().images["vllm"], "model-cache", run, LEVELS[:1], 600)
    env = {"HOME": str(tmp_path), "PATH": f"{ENGINE.parent}:/usr/bin:/bin", "OPENAI_API_KEY": "sk-wrong"}
    p = subprocess.run(job.container_args(spec), env=env, capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    levels, error = job.parse_log(p.stdout)
    assert error is None and len(levels) == 1
    lv = eng.level(levels[0][1], 1)
    assert (lv.completed, lv.failed) == (0, 2)
