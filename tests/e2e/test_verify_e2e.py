"""`python -m stacks.verify` against the real LiteLLM gateway in front of real vLLM (CPU, tiny model).

The outputs file is the seed004 plan's real stack outputs (export names and shapes as `pulumi stack output
--json` prints them) with the gateway's address and key replaced by the local ones; kubectl has no cluster
here, so --skip-cluster (the cluster checks are unit-tested with a stubbed kubectl)."""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.e2e.servers import MASTER_KEY, STACK

pytestmark = pytest.mark.e2e


@pytest.fixture
def outputs_file(plan_of, gateway, tmp_path):
    _, rec, _ = plan_of(STACK)
    doc = json.loads(json.dumps(rec.outputs))
    doc["gatewayUrl"] = f"http://127.0.0.1:{gateway.port}"
    doc["gatewayMasterKey"] = MASTER_KEY
    f = tmp_path / "outputs.json"
    f.write_text(json.dumps(doc))
    return f, doc


def verify(*args):
    return subprocess.run(
        [sys.executable, "-m", "stacks.verify", "seed004", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_verify_chats_with_every_model_through_the_real_gateway(outputs_file):
    f, doc = outputs_file
    r = verify("--outputs", str(f), "--skip-cluster")
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout)
    for model in doc["models"]:
        m = re.search(rf"chat {re.escape(model)}\s+ok\s+TTFT (\d+\.\d+)s, (\d+) tokens, (\d+\.\d+) tok/s", r.stdout)
        assert m, r.stdout
        ttft, tokens, rate = float(m[1]), int(m[2]), float(m[3])
        # usage came from the stream (no "~"), vLLM honoured max_tokens, and the rate is a real measurement
        assert 0 < ttft < 60 and 1 < tokens <= 32 and rate > 0


def test_verify_fails_on_a_model_the_gateway_does_not_serve(outputs_file, tmp_path):
    _f, doc = outputs_file
    doc["models"] = [*doc["models"], "not-deployed"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = verify("--outputs", str(bad), "--skip-cluster")
    assert r.returncode == 1 and re.search(r"chat not-deployed\s+FAIL\s+HTTP 4\d\d", r.stdout), r.stdout


def test_verify_with_url_and_key_overrides_and_a_wrong_key(outputs_file, gateway):
    f, _ = outputs_file
    url = f"http://127.0.0.1:{gateway.port}"
    assert verify("--outputs", str(f), "--skip-cluster", "--gateway-url", url, "--api-key", MASTER_KEY).returncode == 0
    r = verify("--outputs", str(f), "--skip-cluster", "--api-key", "sk-wrong")
    # LiteLLM refuses an unknown key with 401, or with 400 "No connected db." when it runs without a database
    assert r.returncode == 1 and re.search(r"chat \S+\s+FAIL\s+HTTP 4\d\d", r.stdout), r.stdout
