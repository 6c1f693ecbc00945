"""E2E helpers shared by the fixtures and the benchmarks: the rendered plan drives real servers.

Everything the servers get comes from the rendered manifests; `SUBSTITUTIONS` lists, in one place,
what cannot exist on this machine and what replaces it. Servers bind 127.0.0.1, every wait is
bounded, and both are stopped by PID at the end of the session.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stacks.yamlio import dump_yaml, load_yaml

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / ".e2e"
VLLM_PY = E2E / "vllm" / "bin" / "python"
LITELLM_BIN = E2E / "litellm" / "bin" / "litellm"
STACK = ROOT / "stacks" / "examples" / "Pulumi.seed004-qwen3-0-6b-one-gpu.yaml"
MASTER_KEY = "sk-e2e-master-0123456789abcdef"
VLLM_KEY = "e2e-vllm-key-0123456789"
TINY_MAX_LEN = 256
EAGER = "--enforce-eager"
ONE_WORKER = "1"  # LiteLLM's --num_workers where a test is not about its workers (SUBSTITUTIONS)
INPROC_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING=0"

# What the cluster has and this machine does not, and what stands in for it.
SUBSTITUTIONS = {
    "model (first arg)": "the tiny random-weight model built by make_tiny_model.py",
    "--host 0.0.0.0": "--host 127.0.0.1",
    "--port 8000": "a free loopback port",
    "--max-model-len": f"{TINY_MAX_LEN} (the tiny model has 512 positions)",
    "--gpu-memory-utilization": "dropped (CPU build; VLLM_CPU_KVCACHE_SPACE=1 GiB instead)",
    "--tensor-parallel-size": "1 (one CPU process)",
    "--max-num-seqs": "kept, capped at 16",
    "env HF_HOME/HF_HUB_CACHE/VLLM_CACHE_ROOT/HOME/USER": "dropped (container paths)",
    "env VLLM_API_KEY (from Secret)": "a fixed test key",
    "LiteLLM api_base http://<svc>.models.svc.cluster.local:8000/v1": "http://127.0.0.1:<vllm port>/v1",
    "LiteLLM secrets (master key, salt key, vLLM key)": "fixed test keys",
    "LiteLLM --config /etc/litellm/config.yaml --port 4000": "a temp file and a free loopback port",
    "LiteLLM env PROMETHEUS_MULTIPROC_DIR (an emptyDir in the pod)": "a directory in the test's workdir",
    "LiteLLM ConfigMap files beside config.yaml (custom_auth.py)": "written beside the temp config file",
    "LiteLLM env LLM_SERVING_KEYS_FILE (Secret volume)": "<workdir>/keys.json (written by a test that needs keys)",
    "LiteLLM --num_workers": f"{ONE_WORKER}, except for the tests about what the workers share "
    "(one Prometheus registry, the teams' limits in Redis, the hostile clients' memory bound, the sandboxed "
    "pod) and the spot drain's load: each worker imports LiteLLM again (the dev gateway measured 17.2 s of "
    "CPU to start with 2 workers, 5.5 s with 1, 2026-12-07)",
    EAGER: "added to the session server's restarts and to the engines of the spot, router, autoscaling and "
    "client tests: the CPU build compiles the model again at each start (about 12 s of CPU of 34, measured "
    "2026-12-07); the session server's first start keeps it; benchmarks start engines as rendered",
    "vLLM's process layout": f"{INPROC_ENV}: the CPU build otherwise runs the model in a third process (its "
    "'mp' executor; a GPU server with one device runs the model inside its engine core, as here), so each "
    "start imports vLLM once less (25 -> 17 s of CPU for an eager start, measured 2026-12-07). The engine "
    "core stays a process of its own, as in the pod. The benchmarks' engines (vllm_env) run so too",
}


ADDRESS_IN_USE = b"address already in use"  # EADDRINUSE as asyncio (uvicorn) and Python print it, lowercased


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, key: str | None = None, timeout: float = 60):
    """(status, text). Never raises for HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if http("GET", url, timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)  # a refused connect costs nothing; each server start waits at most this long extra
    raise TimeoutError(f"{url} not ready in {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@dataclass
class Rendered:
    out: Path
    vllm_container: dict
    litellm_config: dict
    litellm_container: dict
    manifests: list[dict]
    litellm_files: dict | None = None  # the ConfigMap's other files (the custom-auth module)


def substitute_vllm_args(args: list[str], model_dir: Path, port: int) -> list[str]:
    a = list(args)
    if a[:2] == ["vllm", "serve"]:
        a = a[2:]
    a[0] = str(model_dir)
    out, i = [], 0
    while i < len(a):
        flag = a[i]
        val = a[i + 1] if i + 1 < len(a) else None
        if flag == "--host":
            out += [flag, "127.0.0.1"]
            i += 2
            continue
        if flag == "--port":
            out += [flag, str(port)]
            i += 2
            continue
        if flag == "--max-model-len":
            out += [flag, str(TINY_MAX_LEN)]
            i += 2
            continue
        if flag == "--tensor-parallel-size":
            out += [flag, "1"]
            i += 2
            continue
        if flag == "--max-num-seqs":
            out += [flag, str(min(16, int(val)))]
            i += 2
            continue
        if flag == "--gpu-memory-utilization":
            i += 2
            continue
        out.append(flag)
        i += 1
    return out


class Server:
    """A server process, ready when `health` answers 200. `port` is read after `start()`: a port taken
    between `free_port()` and the server's bind (another process may get the same free port; LiteLLM binds
    seconds after it starts) is replaced by a new one, up to PORT_TRIES times, if the argv has `--port`."""

    PORT_TRIES = 3

    def __init__(self, argv: list[str], env: dict, log: Path, health: str, timeout: float):
        self.argv, self.env, self.log, self.health, self.timeout = argv, env, log, health, timeout
        self.proc: subprocess.Popen | None = None
        if "--port" in argv:
            self.port = int(argv[argv.index("--port") + 1])

    def start(self) -> Server:
        for _ in range(self.PORT_TRIES - 1):
            logged = self.log.stat().st_size if self.log.exists() else 0
            try:
                return self._start()
            except RuntimeError:
                if "--port" not in self.argv or ADDRESS_IN_USE not in self.log.read_bytes()[logged:].lower():
                    raise
            self._move_to(free_port())
        return self._start()

    def _start(self) -> Server:
        # The child holds its own copy of the log descriptor; the parent's closes once it is started.
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_http(self.health, self.proc, self.log, self.timeout)
        return self

    def _move_to(self, port: int) -> None:
        old = self.argv[self.argv.index("--port") + 1]
        self.argv[self.argv.index("--port") + 1] = str(port)
        self.health = self.health.replace(f":{old}/", f":{port}/", 1)
        self.port = port

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


def vllm_env(container: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "HF_"))}
    for e in container["env"]:
        if "value" in e and e["name"] not in {"HOME", "USER", "HF_HOME", "HF_HUB_CACHE", "VLLM_CACHE_ROOT"}:
            env[e["name"]] = e["value"]
    env["VLLM_API_KEY"] = VLLM_KEY
    env["VLLM_CPU_KVCACHE_SPACE"] = "1"
    name, value = INPROC_ENV.split("=")
    env[name] = value  # SUBSTITUTIONS: "vLLM's process layout"
    # One compute thread, as that executor gives its worker. It also bound the thread to a core (core 0
    # unless told otherwise, so two xdist workers' engines shared it); without it the kernel places them.
    env["OMP_NUM_THREADS"] = "1"
    return env


def render_stack(out: Path, stack_file: Path = STACK) -> Rendered:
    """Plan the stack into `out` and pick the objects the servers are configured from."""
    from stacks import plan as plancli

    intent, rec = plancli.run_program(stack_file.stem.removeprefix("Pulumi."), stack_file)
    plancli.write_outputs(out, intent, rec)
    mans = [load_yaml(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))]
    dep = next(m for m in mans if m["kind"] == "Deployment" and m["metadata"]["namespace"] == "models")
    gw = next(m for m in mans if m["kind"] == "Deployment" and m["metadata"]["name"] == "litellm")
    cm = next(m for m in mans if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "litellm-config")
    return Rendered(
        out=out,
        vllm_container=dep["spec"]["template"]["spec"]["containers"][0],
        litellm_config=load_yaml(cm["data"]["config.yaml"]),
        litellm_container=gw["spec"]["template"]["spec"]["containers"][0],
        manifests=mans,
        litellm_files={k: v for k, v in cm["data"].items() if k != "config.yaml"},
    )


def build_tiny_model(d: Path) -> Path:
    subprocess.run(
        [str(VLLM_PY), str(Path(__file__).with_name("make_tiny_model.py")), str(d)],
        check=True,
        timeout=180,
        capture_output=True,
    )
    return d


def vllm_server_for(rendered: Rendered, model_dir: Path, log: Path, *, eager: bool = False) -> Server:
    """`eager`: skip the model compile (SUBSTITUTIONS); `s.args` stay the rendered ones either way."""
    port = free_port()
    args = substitute_vllm_args(rendered.vllm_container["args"], model_dir, port)
    # The module entry point of the `vllm` console script.
    argv = [str(VLLM_PY), "-m", "vllm.entrypoints.cli.main", "serve", *args, *([EAGER] if eager else [])]
    # Generous: a start measured 233 s on two cores shared with other jobs (load ~16).
    s = Server(argv, vllm_env(rendered.vllm_container), log, f"http://127.0.0.1:{port}/health", 600)
    s.port, s.args = port, args
    return s


def litellm_args(container: dict, config: Path, port: int, *, rendered_workers: bool = False) -> list[str]:
    """The rendered LiteLLM args with this machine's config file and port (SUBSTITUTIONS), and ONE_WORKER
    unless `rendered_workers`."""
    args = list(container["args"])
    args[args.index("--config") + 1] = str(config)
    args[args.index("--port") + 1] = str(port)
    if not rendered_workers:
        args[args.index("--num_workers") + 1] = ONE_WORKER
    return args


def gateway_for(
    rendered: Rendered,
    vllm_port: int,
    workdir: Path,
    more_replicas: tuple[int, ...] = (),
    *,
    rendered_workers: bool = False,
) -> Server:
    """`more_replicas`: ports of further vLLM replicas, each a deployment of the same model (the Service's
    endpoints in the cluster; LiteLLM's own balancing stands in for kube-proxy here).
    `rendered_workers`: keep the rendered `--num_workers` (otherwise ONE_WORKER: SUBSTITUTIONS)."""
    port = free_port()
    cfg = json.loads(json.dumps(rendered.litellm_config))
    for m in cfg["model_list"]:
        m["litellm_params"]["api_base"] = f"http://127.0.0.1:{vllm_port}/v1"
    cfg["model_list"] += [
        {**m, "litellm_params": {**m["litellm_params"], "api_base": f"http://127.0.0.1:{p}/v1"}}
        for p in more_replicas
        for m in cfg["model_list"]
    ]
    (workdir / "config.yaml").write_text(dump_yaml(cfg))
    for fname, text in (rendered.litellm_files or {}).items():
        (workdir / fname).write_text(text)
    args = litellm_args(rendered.litellm_container, workdir / "config.yaml", port, rendered_workers=rendered_workers)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "VLLM_"))}
    for e in rendered.litellm_container["env"]:
        if "value" in e and e["name"] != "HOME":
            env[e["name"]] = e["value"]
    if "LLM_SERVING_KEYS_FILE" in env:
        env["LLM_SERVING_KEYS_FILE"] = str(workdir / "keys.json")
    env.update(LITELLM_MASTER_KEY=MASTER_KEY, LITELLM_SALT_KEY="sk-e2e-salt-abcdef0123456789", VLLM_API_KEY=VLLM_KEY)
    if "PROMETHEUS_MULTIPROC_DIR" in env:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prometheus-multiproc")
        (workdir / "prometheus-multiproc").mkdir(exist_ok=True)
    argv = [str(LITELLM_BIN), *args, "--host", "127.0.0.1"]
    s = Server(argv, env, workdir / "litellm.log", f"http://127.0.0.1:{port}/health/liveliness", 120)
    s.port = port
    return s
