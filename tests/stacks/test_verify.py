"""`python -m stacks.verify`: fake stack outputs (from the dev plan's real exports), a stubbed kubectl and a
small streaming gateway on loopback; exit codes 0 / 1 / 2."""

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from stacks import verify
from tests.conftest import ROOT

KEY = "sk-test-key"


class FakeGateway(BaseHTTPRequestHandler):
    models: ClassVar[set[str]] = {"qwen3-0.6b"}

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            return self._send(401, b'{"error": "bad key"}')
        if body["model"] not in self.models or not body.get("stream"):
            return self._send(400, b'{"error": "no such model"}')
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        time.sleep(0.05)  # time to first token
        for word in ("Kube", "rnetes", " runs"):
            self._event({"choices": [{"index": 0, "delta": {"content": word}}]})
            time.sleep(0.05)
        self._event({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}})
        self.wfile.write(b"data: [DONE]\n\n")

    def _event(self, doc):
        self.wfile.write(f"data: {json.dumps(doc)}\n\n".encode())
        self.wfile.flush()

    def _send(self, code, text):
        self.send_response(code)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


@pytest.fixture(scope="module")
def gateway_url():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeGateway)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture
def outputs(plan_of, gateway_url, tmp_path):
    """The dev stack's real export names and shapes (what `pulumi stack output --json` prints)."""
    _, rec, _ = plan_of(ROOT / "Pulumi.dev.yaml")
    doc = json.loads(json.dumps(rec.outputs))
    doc["gatewayUrl"] = gateway_url
    doc["gatewayMasterKey"] = KEY  # the mock's value stands for the secret
    return doc


def write(tmp_path, doc):
    f = tmp_path / "outputs.json"
    f.write_text(json.dumps(doc))
    return str(f)


def node(labels, ready=True):
    return {
        "metadata": {"labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


NODES = {
    "items": [
        node({"llm-serving/node-role": "system"}),
        node({"llm-serving/node-role": "system"}),
        node({"llm-serving/pool": "gpu"}),
    ]
}


def deployments(ready):
    return {
        "items": [
            {
                "metadata": {"name": "qwen3-0-6b", "namespace": "models"},
                "spec": {"replicas": 1},
                "status": {"readyReplicas": ready},
            }
        ]
    }


def kubectl(ready=1, calls=None):
    def run(cmd):
        if calls is not None:
            calls.append(cmd)
        assert cmd[0] == "kubectl" and cmd[1] == "--kubeconfig" and cmd[-2:] == ["-o", "json"]
        if cmd[3:5] == ["get", "nodes"]:
            return json.dumps(NODES)
        if cmd[3:7] == ["get", "deployments", "-n", "models"]:
            return json.dumps(deployments(ready))
        if cmd[3:6] == ["get", "pods", "--all-namespaces"]:
            return json.dumps({"items": []})
        raise AssertionError(cmd)

    return run


def test_all_checks_pass(outputs, tmp_path, capsys):
    calls = []
    assert verify.main(["dev", "--outputs", write(tmp_path, outputs)], run=kubectl(1, calls)) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0] + " " + line.split()[1]: line for line in out.splitlines()[1:]}
    assert "2/2 Ready" in rows["nodes system"] and "1/1 Ready (nvidia)" in rows["nodes pool"]
    assert "1/1 replicas ready" in rows["ready qwen3-0.6b"]
    chat = rows["chat qwen3-0.6b"]
    assert " ok " in chat and "3 tokens" in chat and "tok/s" in chat
    # TTFT >= the fake's 50 ms wait; 2 tokens after the first over ~100 ms: ~20 tok/s, surely below 100
    ttft = float(chat.split("TTFT ")[1].split("s")[0])
    rate = float(chat.split("tokens, ")[1].split(" tok/s")[0])
    assert ttft >= 0.05 and 5 < rate < 100
    assert len(calls) == 3  # nodes, every pod (accelerator nodes), then the models namespace
    assert "ok" in rows["accelerator nodes"]


def test_a_model_not_ready_fails_with_exit_1(outputs, tmp_path, capsys):
    assert verify.main(["dev", "--outputs", write(tmp_path, outputs)], run=kubectl(ready=0)) == 1
    assert re.search(r"ready qwen3-0.6b\s+FAIL\s+0/1 replicas ready", capsys.readouterr().out)


def test_a_refused_chat_fails_with_exit_1(outputs, tmp_path, capsys):
    outputs["gatewayMasterKey"] = "sk-wrong"
    assert verify.main(["dev", "--outputs", write(tmp_path, outputs), "--skip-cluster"]) == 1
    assert "HTTP 401" in capsys.readouterr().out


def test_unknown_model_fails(outputs, tmp_path, capsys):
    outputs["models"] = ["qwen3-0.6b", "not-deployed"]
    assert verify.main(["dev", "--outputs", write(tmp_path, outputs), "--skip-cluster"]) == 1
    out = capsys.readouterr().out
    assert "chat qwen3-0.6b" in out and "HTTP 400" in out


def test_unreachable_cluster_is_a_failed_check(outputs, tmp_path, capsys):
    def down(cmd):
        raise subprocess.CalledProcessError(1, cmd, stderr="Unable to connect to the server: dial tcp: i/o timeout\n")

    assert verify.main(["dev", "--outputs", write(tmp_path, outputs)], run=down) == 1
    assert re.search(r"cluster reachable\s+FAIL\s+Unable to connect", capsys.readouterr().out)


def test_gateway_url_and_key_overrides(outputs, tmp_path, gateway_url):
    outputs["gatewayUrl"] = "http://internal-lb.invalid:4000"
    del outputs["gatewayMasterKey"], outputs["gatewayAdminKey"]
    f = write(tmp_path, outputs)
    assert verify.main(["dev", "--outputs", f, "--skip-cluster"]) == 2  # no key
    assert verify.main(["dev", "--outputs", f, "--skip-cluster", "--gateway-url", gateway_url, "--api-key", KEY]) == 0


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "stacks.verify", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env
    )


def test_bad_input_is_exit_2_one_line_no_traceback(outputs, tmp_path):
    del outputs["gatewayMasterKey"], outputs["gatewayAdminKey"]
    r = cli("dev", "--outputs", write(tmp_path, outputs), "--skip-cluster")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("error: stack output gatewayAdminKey: missing — ") and r.stderr.count("\n") == 1


def test_missing_clis_are_exit_2(outputs, tmp_path):
    env = {"PATH": str(tmp_path / "empty")}  # neither pulumi nor kubectl
    r = cli("dev", env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: pulumi: command not found — ")
    r = cli("dev", "--outputs", write(tmp_path, outputs), env=env)
    assert r.returncode == 2 and r.stderr.startswith("error: kubectl: command not found — ")
    assert "Traceback" not in r.stderr


def test_pulumi_failure_is_exit_2(capsys):
    def no_stack(cmd):
        assert cmd == ["pulumi", "stack", "output", "--json", "--show-secrets", "-s", "dev"]
        raise subprocess.CalledProcessError(255, cmd, stderr="error: no stack named 'dev' found\n")

    assert verify.main(["dev"], run=no_stack) == 2
    assert "no stack named 'dev' found" in capsys.readouterr().err


def test_model_targets_come_from_the_endpoint_urls():
    assert verify.model_targets({"a.b": "http://m-1.team-models.svc.cluster.local:8000/v1"}) == {
        "a.b": ("team-models", "m-1")
    }
    with pytest.raises(verify.BadInput):
        verify.model_targets({"x": "http://example.com/v1"})


def test_the_stack_exports_what_verify_reads_and_the_key_stays_secret(plan_of):
    _, rec, _ = plan_of(ROOT / "Pulumi.dev.yaml")
    assert {"gatewayUrl", "gatewayAdminKey", "models", "modelEndpoints", "kubeconfig", "platform"} <= set(rec.outputs)
    assert "kubeconfig" in rec.secret_outputs and "gatewayMasterKey" not in rec.outputs
    assert "gatewayUrl" not in rec.secret_outputs  # the check can fail


def test_admin_key_from_secrets_manager_or_the_team_gateway_secret(outputs):
    """The stack exports where the admin key is; verify reads it with the aws CLI or kubectl."""
    del outputs["gatewayMasterKey"]
    arn = outputs["gatewayAdminKey"]["secretsManagerArn"]
    calls = []

    def aws(cmd):
        calls.append(cmd)
        return "sk-from-secrets-manager\n"

    assert verify.admin_key(outputs, aws) == "sk-from-secrets-manager"
    assert calls[0][:5] == ["aws", "secretsmanager", "get-secret-value", "--secret-id", arn]
    team = {**outputs, "gatewayAdminKey": {"kubernetesSecret": "search-gateway/litellm", "key": "master-key"}}

    def kubectl_secret(cmd):
        assert cmd[0] == "kubectl" and cmd[3:7] == ["get", "secret", "litellm", "-n"] and cmd[7] == "search-gateway"
        return json.dumps({"data": {"master-key": "c2stdGVhbQ=="}})  # base64 of "sk-team"

    assert verify.admin_key(team, kubectl_secret) == "sk-team"
    with pytest.raises(verify.BadInput, match="cannot read it"):
        verify.admin_key(
            {**team, "gatewayAdminKey": {"kubernetesSecret": "search-gateway/litellm", "key": "x"}}, kubectl_secret
        )


# ---- accelerator nodes run only model pods (and node agents) ----------------------------------


def _pod(ns, name, node, *, gpu=False, daemonset=False, phase="Running"):
    res = {"limits": {"nvidia.com/gpu": "1"}} if gpu else {"requests": {"cpu": "100m"}}
    meta = {"namespace": ns, "name": name}
    if daemonset:
        meta["ownerReferences"] = [{"kind": "DaemonSet", "name": "agent"}]
    return {
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "c", "resources": res}]},
        "status": {"phase": phase},
    }


ACCEL_NODES = {
    "items": [
        {"metadata": {"name": "gpu-1", "labels": {"llm-serving/pool": "gpu"}}},
        {"metadata": {"name": "sys-1", "labels": {"llm-serving/node-role": "system"}}},
    ]
}


def test_sharing_check_flags_pods_without_the_accelerator_on_gpu_nodes():
    pods = {
        "items": [
            _pod("models", "vllm-a", "gpu-1", gpu=True),
            _pod("team-b-models", "vllm-b", "gpu-1", gpu=True),  # another tenant, with its own GPU
            _pod("gpu-operator", "dcgm", "gpu-1", daemonset=True),  # a node agent
            _pod("team-b-models", "sidecar-job", "gpu-1", phase="Succeeded"),
            _pod("other", "web", "sys-1"),  # not an accelerator node
        ]
    }
    assert verify.unshared_violations(pods, ACCEL_NODES, {"gpu": "nvidia"}, {"models"}) == []
    # Negative control: a pod that tolerates the taint but asks for no GPU is found.
    pods["items"].append(_pod("team-b-models", "notebook", "gpu-1"))
    pods["items"].append(_pod("default", "debug", "gpu-1"))
    got = verify.unshared_violations(pods, ACCEL_NODES, {"gpu": "nvidia"}, {"models"})
    assert got == ["default/debug on gpu-1", "team-b-models/notebook on gpu-1"]
    # Inside a model namespace the same pod is not counted (the brief's scope: other namespaces).
    assert (
        verify.unshared_violations(pods, ACCEL_NODES, {"gpu": "nvidia"}, {"models", "team-b-models", "default"}) == []
    )


def test_sharing_check_is_a_row_of_verify():
    nodes = ACCEL_NODES
    bad = {"items": [_pod("default", "debug", "gpu-1")]}
    run = lambda cmd: json.dumps(bad)  # noqa: E731
    c = verify.sharing_check(run, "kc", nodes, {"gpu": "nvidia"}, {"models"})
    assert not c.ok and "default/debug on gpu-1" in c.detail
    ok = verify.sharing_check(lambda cmd: json.dumps({"items": []}), "kc", nodes, {"gpu": "nvidia"}, {"models"})
    assert ok.ok
