"""The gateway's front door, for real: Debian's nginx runs the rendered nginx.conf (the ConfigMap the
plan registers) in front of the real LiteLLM 1.106.12 running the rendered gateway config.

From the front door's port (what the load balancer reaches) only the client routes pass; the admin
and management routes are 404 there, path tricks included. LiteLLM's own port (the in-cluster
Service) still serves every route, and /metrics there needs a key.

Substitutions (the cluster's names and paths that do not exist here), each checked to occur:
the pod's command runs with Debian's /usr/sbin/nginx and this test's copy of the conf;
`listen <FRONTDOOR_PORT>` -> a free loopback port; the upstream `litellm.gateway.svc.cluster.local:4000`
-> LiteLLM's loopback port; `/tmp/` -> this test's directory. LiteLLM's vLLM upstream is a stub that
answers like vLLM's OpenAI API (the behaviour under test is nginx's and LiteLLM's).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components.frontdoor import TMP
from components.types import FRONTDOOR_PORT, GATEWAY_PORT, service_host
from tests.e2e.paced import send_json
from tests.e2e.servers import LITELLM_BIN, MASTER_KEY, Server, free_port, gateway_for, http, render_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class _Vllm(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self._send(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "stub"),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    def _send(self, doc: dict):
        send_json(self, doc)


def need(path: str, what: str) -> None:
    if not Path(path).exists():
        msg = f"{what} missing ({path}): run scripts/setup-e2e.sh"
        if os.environ.get("E2E_REQUIRED"):
            pytest.fail(msg)
        pytest.skip(msg)


def substituted(conf: str, listen: int, upstream: int, tmp: Path) -> str:
    """The rendered nginx.conf with this machine's ports and directory; each replaced token must occur."""
    swaps = [
        (f"listen {FRONTDOOR_PORT} ", f"listen 127.0.0.1:{listen} "),
        # Debian's nginx 1.22 predates `resolve` (1.27.3; the pod runs 1.29): a loopback address needs
        # no resolving, and the resolver (the cluster DNS name, unknown here) is never asked.
        (f"server {service_host('litellm', 'gateway')}:{GATEWAY_PORT} resolve;", f"server 127.0.0.1:{upstream};"),
        ("resolver kube-dns.kube-system.svc.cluster.local valid=30s;", "resolver 127.0.0.1 valid=30s;"),
        (f"{TMP}/", f"{tmp}/"),
    ]
    for old, new in swaps:
        assert old in conf, f"the rendered nginx.conf no longer has {old!r}: update the substitution"
        conf = conf.replace(old, new)
    return conf


def argv_of(command: list[str], conf: Path) -> list[str]:
    """The pod's command with this machine's nginx binary and conf file (each must be there to replace)."""
    assert command[0] == "nginx" and "-c" in command, command
    argv = [NGINX, *command[1:]]
    argv[argv.index("-c") + 1] = str(conf)
    return argv


def start_nginx(rendered_conf: str, command: list[str], upstream_port: int, d: Path) -> Server:
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o777)  # nginx's workers (nobody, when the master runs as root) write temp files here
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(substituted(rendered_conf, port, upstream_port, d))
    argv = argv_of(command, conf)
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    s = Server(
        argv,
        dict(os.environ),
        d / "nginx.log",
        f"http://127.0.0.1:{port}/health/liveliness",
        60,
    )
    s.port = port
    return s.start()


@pytest.fixture(scope="module")
def door(tmp_path_factory):
    need(str(LITELLM_BIN), "LiteLLM")
    need(NGINX, "nginx (Debian nginx-light)")
    work = tmp_path_factory.mktemp("frontdoor")
    rendered = render_stack(work / "plan")
    cm = next(
        m for m in rendered.manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "gateway-frontdoor"
    )
    dep = next(
        m for m in rendered.manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "gateway-frontdoor"
    )
    stub = ThreadingHTTPServer(("127.0.0.1", 0), _Vllm)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    (work / "litellm").mkdir()
    gw = gateway_for(rendered, stub.server_address[1], work / "litellm")
    gw.timeout = 300
    gw.start()
    try:
        command = dep["spec"]["template"]["spec"]["containers"][0]["command"]
        ng = start_nginx(cm["data"]["nginx.conf"], command, gw.port, work / "nginx")
    except BaseException:
        gw.stop()
        raise
    yield {
        "outside": f"http://127.0.0.1:{ng.port}",
        "inside": f"http://127.0.0.1:{gw.port}",
        "model": rendered.litellm_config["model_list"][0]["model_name"],
        "conf": cm["data"]["nginx.conf"],
        "pod": dep["spec"]["template"]["spec"],
        "gw_port": gw.port,
    }
    ng.stop()
    gw.stop()
    stub.shutdown()


def chat_body(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


def test_client_routes_pass_the_front_door(door):
    out = door["outside"]
    status, text = http("GET", f"{out}/v1/models", key=MASTER_KEY)
    assert status == 200 and door["model"] in [m["id"] for m in json.loads(text)["data"]]
    assert http("GET", f"{out}/v1/models?return_wildcard_routes=false", key=MASTER_KEY)[0] == 200  # query kept
    status, text = http("POST", f"{out}/v1/chat/completions", chat_body(door["model"]), MASTER_KEY)
    assert status == 200 and json.loads(text)["choices"][0]["message"]["content"] == "hi"
    assert http("GET", f"{out}/health/liveliness")[0] == 200
    # LiteLLM still authenticates behind the door: no key -> 401; a wrong key is refused by LiteLLM
    # (without a database 1.106.12 answers 400 "No connected db."; the custom-auth hook makes it 401).
    assert http("GET", f"{out}/v1/models")[0] == 401
    status, text = http("POST", f"{out}/v1/chat/completions", chat_body(door["model"]), "sk-wrong")
    assert status in (400, 401) and "error" in json.loads(text), text[:200]


ADMIN = [
    ("POST", "/key/generate"),
    ("GET", "/key/info"),
    ("POST", "/team/new"),
    ("POST", "/user/new"),
    ("GET", "/model/info"),
    ("GET", "/v1/model/info"),
    ("GET", "/metrics"),
    ("GET", "/metrics/"),
    ("GET", "/ui"),
    ("GET", "/ui/"),
    ("GET", "/config/yaml"),
    ("GET", "/get/config/callbacks"),
    ("GET", "/spend/logs"),
    ("GET", "/health"),
    ("GET", "/health/readiness"),
    ("GET", "/routes"),
    ("GET", "/chat/completions"),  # LiteLLM's un-prefixed alias: not a published route
    ("POST", "/openai/deployments/x/chat/completions"),
    ("GET", "/"),
]
# Paths that normalise to an admin route, or that try to smuggle one past a prefix match.
TRICKS = [
    "/v1/models/../../key/generate",
    "/v1/%2e%2e/key/generate",
    "/v1/chat/completions/../../../metrics",
    "/v1/models%2f..%2f..%2fmetrics",
    "/V1/models",
    "/v1/models/",
    "/v1/chat/completions/x",
    "//metrics",
]


@pytest.mark.parametrize("method,path", ADMIN, ids=[f"{m} {p}" for m, p in ADMIN])
def test_admin_routes_are_404_from_outside(door, method, path):
    body = {} if method == "POST" else None
    status, _ = http(method, door["outside"] + path, body, MASTER_KEY)
    assert status == 404, f"{method} {path}: {status}"


@pytest.mark.parametrize("path", TRICKS)
def test_path_tricks_do_not_reach_admin_routes(door, path):
    # urllib sends the path as written (no client-side normalisation)
    status, text = http("GET", door["outside"] + path, None, MASTER_KEY)
    assert status == 404, f"{path}: {status} {text[:200]}"


def test_inside_the_cluster_every_route_is_served(door):
    inside = door["inside"]
    status, text = http("POST", f"{inside}/key/generate", {}, MASTER_KEY)
    assert status != 404, text[:200]  # LiteLLM answers (no database here: it says so), not "not found"
    assert http("GET", f"{inside}/model/info", key=MASTER_KEY)[0] == 200
    assert http("GET", f"{inside}/metrics", key=MASTER_KEY)[0] == 200
    assert http("GET", f"{inside}/health/readiness")[0] == 200


def test_metrics_need_a_key_on_the_real_litellm(door):
    assert http("GET", f"{door['inside']}/metrics")[0] == 401
    assert http("GET", f"{door['inside']}/metrics", key="sk-wrong")[0] == 401


def test_negative_control_a_prefix_location_would_leak(door, tmp_path):
    """The checks can fail: a conf that forwards /v1/ as a prefix lets an admin route under /v1 through."""
    assert "location / { return 404; }" in door["conf"]
    leaky = door["conf"].replace("location / { return 404; }", "location /v1/ { proxy_pass http://litellm; }")
    ng = start_nginx(leaky, door["pod"]["containers"][0]["command"], door["gw_port"], tmp_path / "leaky")
    try:
        assert http("GET", f"http://127.0.0.1:{ng.port}/v1/model/info", key=MASTER_KEY)[0] == 200
    finally:
        ng.stop()


def test_the_pod_runs_the_rendered_file(door):
    """The Deployment runs nginx on exactly the ConfigMap's file (not the image's entrypoint script)."""
    c = door["pod"]["containers"][0]
    mount = next(v["mountPath"] for v in c["volumeMounts"] if v["name"] == "config")
    assert c["command"] == ["nginx", "-e", "stderr", "-c", f"{mount}/nginx.conf"]
    assert c["ports"][0]["containerPort"] == FRONTDOOR_PORT


def test_the_rendered_probes_answer_through_the_real_nginx(door):
    """The kubelet's view: the readiness probe's path answers 200 on the front door's port (nginx, then
    LiteLLM), and the liveness probe's port accepts a connection. A path the front door does not forward
    would leave every replica unready and the load balancer with no target."""
    c = door["pod"]["containers"][0]
    ready = c["readinessProbe"]["httpGet"]
    assert ready["port"] == c["ports"][0]["containerPort"] == FRONTDOOR_PORT
    status, text = http("GET", f"{door['outside']}{ready['path']}")
    assert status == 200, (ready, text[:200])
    assert c["livenessProbe"]["tcpSocket"]["port"] == FRONTDOOR_PORT
    assert http("GET", f"{door['outside']}/health/readiness")[0] == 404  # negative control: not forwarded


def test_the_real_nginx_keeps_accepted_connections_alive(door):
    """The NLB forgets a flow silent for 350 s; the rendered `listen … so_keepalive=60s:30s:5` must make
    the real nginx arm TCP keepalive on each accepted connection (what resets the NLB's idle timer).
    Read from the kernel: `ss -o` shows a keepalive timer on nginx's side of an open client connection."""
    import socket

    port = int(door["outside"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n")
        client.recv(4096)  # an answer: the connection is accepted and kept open (HTTP/1.1 keep-alive)
        local = client.getsockname()[1]
        out = subprocess.run(
            ["ss", "-tno", "state", "established", f"( sport = :{port} and dport = :{local} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert "timer:(keepalive," in out, out
