"""The real LiteLLM 1.106.12 with the rendered gateway settings: retry to another replica when one
drains, one Prometheus registry across workers, and the rendered pod's file-system contract
(UID and read-only root with only the rendered emptyDirs writable).

The retry test puts the real vLLM (the session's server) and a stub replica that answers 503 or
drops the connection, like a draining pod, behind one model name. The other tests use small
in-process stubs of vLLM's OpenAI API: the behaviour under test is LiteLLM's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stacks.yamlio import dump_yaml
from tests.e2e.servers import (
    LITELLM_BIN,
    MASTER_KEY,
    VLLM_KEY,
    Rendered,
    Server,
    free_port,
    http,
    litellm_args,
    render_stack,
)

# LiteLLM with two workers needs 20-70 s to start on these shared cores.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
REQUESTS = 12


class _Upstream(BaseHTTPRequestHandler):
    mode = "ok"  # "ok" | "503" | "close"
    served = 0  # 200s sent
    hits = 0  # chat requests received

    def log_message(self, *a):  # keep pytest output clean
        pass

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        cls = type(self)
        cls.hits += 1
        if cls.mode == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if cls.mode == "503":
            self._send(503, {"error": {"message": "draining", "type": "server_error"}})
            return
        cls.served += 1
        self._send(
            200,
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def _send(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def upstream(mode: str):
    handler = type(f"Upstream_{mode}", (_Upstream,), {"mode": mode, "served": 0, "hits": 0})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, handler


@pytest.fixture(scope="module")
def gw_rendered(tmp_path_factory) -> Rendered:
    if not LITELLM_BIN.exists():
        msg = f"LiteLLM missing ({LITELLM_BIN}): run scripts/setup-e2e.sh"
        if os.environ.get("E2E_REQUIRED"):
            pytest.fail(msg)
        pytest.skip(msg)
    return render_stack(tmp_path_factory.mktemp("plan"))


def rendered_env(r: Rendered) -> dict[str, str]:
    return {e["name"]: e["value"] for e in r.litellm_container["env"] if "value" in e}


def gateway_config(r: Rendered, bases: list[str], **overrides) -> dict:
    """The rendered config with its one route served by the given replicas (same model name)."""
    cfg = json.loads(json.dumps(r.litellm_config))
    route = cfg["model_list"][0]
    cfg["model_list"] = [{**route, "litellm_params": {**route["litellm_params"], "api_base": b}} for b in bases]
    for section, values in overrides.items():
        cfg[section] = {**cfg.get(section, {}), **values}
    return cfg


def start_gateway(
    r: Rendered,
    cfg: dict,
    workdir: Path,
    env_over: dict | None = None,
    wrap: list[str] | None = None,
    *,
    rendered_workers: bool = False,
) -> Server:
    """`rendered_workers`: as in servers.gateway_for (otherwise ONE_WORKER: servers.SUBSTITUTIONS)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(dump_yaml(cfg))
    for fname, text in (r.litellm_files or {}).items():  # the custom-auth module beside the config
        (workdir / fname).write_text(text)
    port = free_port()
    args = litellm_args(r.litellm_container, workdir / "config.yaml", port, rendered_workers=rendered_workers)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "VLLM_", "PROMETHEUS_"))}
    env.update(rendered_env(r))
    env.update(LITELLM_MASTER_KEY=MASTER_KEY, LITELLM_SALT_KEY="sk-e2e-salt-abcdef0123456789", VLLM_API_KEY=VLLM_KEY)
    # Container paths -> this run's directories (the sandbox test below keeps the real paths).
    env.update(
        HOME=str(workdir), XDG_CACHE_HOME=str(workdir / ".cache"), PROMETHEUS_MULTIPROC_DIR=str(workdir / "multiproc")
    )
    (workdir / "multiproc").mkdir(exist_ok=True)
    env.update(env_over or {})
    s = Server(
        [*(wrap or []), str(LITELLM_BIN), *args, "--host", "127.0.0.1"],
        env,
        workdir / "litellm.log",
        f"http://127.0.0.1:{port}/health/liveliness",
        300,
    )
    s.port = port
    return s.start()


def chat(port: int, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    return http("POST", f"http://127.0.0.1:{port}/v1/chat/completions", body, MASTER_KEY, timeout=60)[0]


def metric_total(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@pytest.mark.parametrize("failure", ["503", "close"])
def test_a_draining_replica_is_retried_on_the_other_one(rendered, vllm_server, tmp_path, failure):
    bad, bad_h = upstream(failure)
    model = rendered.litellm_config["model_list"][0]["model_name"]
    cfg = gateway_config(
        rendered, [f"http://127.0.0.1:{bad.server_port}/v1", f"http://127.0.0.1:{vllm_server.port}/v1"]
    )
    gw = start_gateway(rendered, cfg, tmp_path / "gw")
    try:
        codes = [chat(gw.port, model) for _ in range(REQUESTS)]
    finally:
        gw.stop()
        bad.shutdown()
    assert codes == [200] * REQUESTS, (codes, (tmp_path / "gw" / "litellm.log").read_text()[-3000:])
    assert bad_h.hits >= 1  # the draining replica was tried, and its failures were retried on vLLM


def test_without_retry_settings_the_client_sees_the_draining_replica(gw_rendered, tmp_path):
    """Negative control: the same two replicas with retries and failover off leak failures."""
    bad, _ = upstream("503")
    good, _ = upstream("ok")
    model = gw_rendered.litellm_config["model_list"][0]["model_name"]
    cfg = gateway_config(
        gw_rendered,
        [f"http://127.0.0.1:{bad.server_port}/v1", f"http://127.0.0.1:{good.server_port}/v1"],
        router_settings={"num_retries": 0, "enable_weighted_failover": False},
        litellm_settings={"num_retries": 0},
    )
    gw = start_gateway(gw_rendered, cfg, tmp_path / "gw")
    try:
        codes = [chat(gw.port, model) for _ in range(REQUESTS)]
    finally:
        gw.stop()
        bad.shutdown()
        good.shutdown()
    assert any(c != 200 for c in codes), codes


def test_metrics_count_every_request_across_workers(gw_rendered, tmp_path):
    env = rendered_env(gw_rendered)
    args = gw_rendered.litellm_container["args"]
    assert int(args[args.index("--num_workers") + 1]) >= 2 and "PROMETHEUS_MULTIPROC_DIR" in env
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    good, good_h = upstream("ok")
    model = gw_rendered.litellm_config["model_list"][0]["model_name"]
    cfg = gateway_config(gw_rendered, [f"http://127.0.0.1:{good.server_port}/v1"])
    multiproc_env = {"PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    gw = start_gateway(gw_rendered, cfg, tmp_path / "gw", env_over=multiproc_env, rendered_workers=True)
    try:
        assert [chat(gw.port, model) for _ in range(REQUESTS)] == [200] * REQUESTS
        url = f"http://127.0.0.1:{gw.port}/metrics/"
        # Each scrape lands on one worker; every one must report all requests.
        totals = []
        for _ in range(6):
            status, text = http("GET", url, key=MASTER_KEY)
            assert status == 200, text[:500]
            totals.append(metric_total(text, "litellm_proxy_total_requests_metric_total"))
        assert http("GET", url)[0] == 401  # require_auth_for_metrics_endpoint
    finally:
        gw.stop()
        good.shutdown()
    assert good_h.served == REQUESTS
    assert totals == [REQUESTS] * len(totals), totals
    assert list(multiproc.glob("*.db")), "workers did not write to the rendered PROMETHEUS_MULTIPROC_DIR"


# ---- the pod's file-system contract: UID, read-only root, rendered emptyDirs ----------------------

SANDBOX = r"""
set -eu
mount --make-rprivate /
# Each rendered emptyDir: a fresh tmpfs. A mount point missing on this host gets a scaffold tmpfs
# on its nearest existing ancestor, made read-only again below.
scaffolds=""
for p in "$@"; do
  if [ ! -d "$p" ]; then
    a="$p"; while [ ! -d "$a" ]; do a=$(dirname "$a"); done
    inside=no; for sc in $scaffolds; do case "$a/" in "$sc"/*) inside=yes;; esac; done
    if [ $inside = no ]; then mount -t tmpfs -o mode=755 tmpfs "$a"; scaffolds="$scaffolds $a"; fi
    mkdir -p "$p"
  fi
done
for p in "$@"; do mount -t tmpfs -o mode=1777,size=256m tmpfs "$p"; done
# This host's Python lives under a root-only directory (an image's interpreter is world-readable):
# expose just the interpreter, read-only, behind a read-only tmpfs on that directory.
if [ -n "${SANDBOX_EXPOSE:-}" ]; then
  stash="$SANDBOX_WORK/expose"; mkdir -p "$stash"
  mount --bind "$SANDBOX_EXPOSE" "$stash"
  mount -t tmpfs -o mode=755 tmpfs "$SANDBOX_EXPOSE_TOP"
  mkdir -p "$SANDBOX_EXPOSE"
  mount --move "$stash" "$SANDBOX_EXPOSE"
  mount -o remount,bind,ro "$SANDBOX_EXPOSE"
  mount -o remount,ro "$SANDBOX_EXPOSE_TOP"
fi
for a in $scaffolds; do mount -o remount,ro "$a"; done
mount -o remount,bind,ro /
# The argv has no spaces (paths under /dev/shm, fixed flags); it never passes through a config value.
exec setpriv --reuid "$SANDBOX_UID" --regid "$SANDBOX_UID" --clear-groups --inh-caps=-all \
  -- "$SANDBOX_EXEC" $(cat "$SANDBOX_ARGV")
"""


def _sandbox_available() -> str | None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        return "needs root with unshare and setpriv (a private mount namespace)"
    r = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            "mount --make-rprivate / && mount -o remount,bind,ro / && ! touch /ro-probe 2>/dev/null",
        ],
        capture_output=True,
        timeout=30,
    )
    return None if r.returncode == 0 else f"cannot remount / read-only in a mount namespace: {r.stderr[-300:]!r}"


def writable_mounts(r: Rendered) -> list[str]:
    gw = next(m for m in r.manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "litellm")
    pod = gw["spec"]["template"]["spec"]
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    return [m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if m["name"] in empty]


def _interpreter_exposure() -> dict[str, str]:
    """The venv's base interpreter prefix and its first ancestor that others cannot traverse."""
    cfg = (LITELLM_BIN.parent.parent / "pyvenv.cfg").read_text()
    home = next(line.split("=", 1)[1].strip() for line in cfg.splitlines() if line.startswith("home"))
    prefix = Path(home).resolve().parent
    closed = [a for a in reversed(prefix.parents) if not os.stat(a).st_mode & 0o001]
    return {"SANDBOX_EXPOSE": str(prefix), "SANDBOX_EXPOSE_TOP": str(closed[0])} if closed else {}


def start_sandboxed(r: Rendered, cfg: dict, writable: list[str], uid: int) -> tuple[Server, Path]:
    """LiteLLM as `uid` with / read-only and tmpfs only at `writable` (+ /dev/shm, as in a pod).
    The config and log live under /dev/shm, which stays writable like a container's."""
    work = Path(tempfile.mkdtemp(prefix="gw-ro-", dir="/dev/shm"))
    os.chmod(work, 0o755)
    script = work / "sandbox.sh"
    script.write_text(SANDBOX)
    (work / "config.yaml").write_text(dump_yaml(cfg))
    for fname, text in (r.litellm_files or {}).items():  # the custom-auth module beside the config
        (work / fname).write_text(text)
    port = free_port()
    args = litellm_args(r.litellm_container, work / "config.yaml", port, rendered_workers=True)  # as in the pod
    argv_file = work / "argv"
    argv_file.write_text(" ".join([*args, "--host", "127.0.0.1"]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "VLLM_", "PROMETHEUS_", "TMP"))}
    env.update(rendered_env(r))
    env.update(
        LITELLM_MASTER_KEY=MASTER_KEY,
        LITELLM_SALT_KEY="sk-e2e-salt-abcdef0123456789",
        VLLM_API_KEY=VLLM_KEY,
        LITELLM_NON_ROOT="true",  # set by the non_root image
        SANDBOX_UID=str(uid),
        SANDBOX_EXEC=str(LITELLM_BIN),
        SANDBOX_ARGV=str(argv_file),
        SANDBOX_WORK=str(work),
        **_interpreter_exposure(),
    )
    s = Server(
        ["unshare", "-m", "sh", str(script), *writable],
        env,
        work / "litellm.log",
        f"http://127.0.0.1:{port}/health/liveliness",
        300,
    )
    s.port = port
    return s, work


def test_gateway_runs_as_its_uid_on_a_read_only_root_with_only_the_rendered_emptydirs(gw_rendered):
    why = _sandbox_available()
    if why:
        if os.environ.get("E2E_REQUIRED"):
            pytest.fail(why)
        pytest.skip(why)
    from stacks import catalog

    pin = catalog.versions().images["litellm"]
    gw = next(m for m in gw_rendered.manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "litellm")
    c = gw["spec"]["template"]["spec"]["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    uid = c["securityContext"]["runAsUser"]
    assert uid == pin.user == 65534
    writable = writable_mounts(gw_rendered)
    assert sorted(writable) == sorted(pin.writable_paths)
    good, good_h = upstream("ok")
    model = gw_rendered.litellm_config["model_list"][0]["model_name"]
    cfg = gateway_config(gw_rendered, [f"http://127.0.0.1:{good.server_port}/v1"])
    s, work = start_sandboxed(gw_rendered, cfg, writable, uid)
    try:
        s.start()
        assert [chat(s.port, model) for _ in range(4)] == [200] * 4
        status, text = http("GET", f"http://127.0.0.1:{s.port}/metrics/", key=MASTER_KEY)
        assert status == 200 and metric_total(text, "litellm_proxy_total_requests_metric_total") == 4, text[:500]
        log = (work / "litellm.log").read_text()
        # The one difference from the image: Dockerfile.non_root ships the admin UI pre-restructured
        # at /var/lib/litellm/ui (LITELLM_NON_ROOT=true), so the proxy does not try to create it.
        denied = [
            line
            for line in log.splitlines()
            if ("Read-only file system" in line or "Permission denied" in line) and "/var/lib/litellm/ui" not in line
        ]
        assert denied == [], "\n".join(denied)
    finally:
        s.stop()
        good.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    assert good_h.served == 4


def test_without_the_tmp_emptydir_the_gateway_does_not_start(gw_rendered):
    """Negative control for the sandbox: drop the rendered /tmp emptyDir and LiteLLM fails."""
    why = _sandbox_available()
    if why:
        pytest.skip(why)
    writable = [p for p in writable_mounts(gw_rendered) if p != "/tmp"]
    cfg = gateway_config(gw_rendered, ["http://127.0.0.1:9/v1"])
    s, work = start_sandboxed(gw_rendered, cfg, writable, 65534)
    try:
        with pytest.raises((RuntimeError, TimeoutError)) as failed:
            s.start()
        # It fails at import: litellm keeps a token store under tempfile.gettempdir().
        assert "No usable temporary directory" in str(failed.value), str(failed.value)[-1500:]
    finally:
        s.stop()
        shutil.rmtree(work, ignore_errors=True)
