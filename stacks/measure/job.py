"""`stacks.bench --in-cluster`: the benchmark as a Kubernetes Job, rendered by a pure function and run
with `kubectl` behind an injectable runner (apply -> wait -> logs -> delete; delete even on failure).

Where it runs and why:
  - in the models namespace, on the system nodes: it mounts the model cache read-only, so the engine
    reads the model's tokenizer offline (HF_HUB_OFFLINE=1) and the pod needs no route to the internet;
  - egress to the LiteLLM pods' port and to DNS only; a second policy in the gateway namespace admits
    these pods to LiteLLM's port (policies add up, so the deployed ones stay as they are);
  - the image is the pinned vLLM server image: it ships `vllm bench serve`, the engine the local CLI
    runs, at the release the e2e tests prove, and its user, HOME and writable paths are already
    recorded in the version catalog. It needs no accelerator to generate load;
  - the gateway key comes from a Secret the run creates and deletes, never from an argument.
The in-pod program (incluster/bench/run.py, standard library only) runs the engine once per level and
prints every level's JSON between two marker lines; `parse_log` reads them back.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from components.types import (
    GATEWAY_PORT,
    GATEWAY_SELECTOR,
    SYSTEM_TAINT,
    ImagePin,
    checkov_skips,
    container_security,
    image_skips,
    pod_security,
    tolerate,
)
from stacks.measure import engine as eng

RUNNER = Path(__file__).resolve().parents[2] / "incluster" / "bench" / "run.py"
BEGIN = "=== stacks-bench result begin ==="  # the same lines incluster/bench/run.py prints
END = "=== stacks-bench result end ==="
NAME = "stacks-bench"
GATEWAY_SERVICE = "litellm"  # LiteLLM's Service, as components/litellm.py names it (a test compares)
SELECTOR = {"app.kubernetes.io/name": NAME}
KEY_SECRET = f"{NAME}-api-key"
RESULT_DIR = "/results"
MODELS = "/models"  # where the servers mount the model cache (components/vllm.py)
DNS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
# Image pull of the multi-GB vLLM image onto a system node and the engine's start, before the first level.
START_MARGIN_S = 900
# The Job and its pod stay this long after finishing if the CLI could not delete them.
TTL_AFTER_FINISHED_S = 600
CPU = "2"  # the load generator's own CPU: a throttled client would add latency to every figure
MEMORY = "4Gi"


@dataclass(frozen=True)
class JobSpec:
    models_ns: str
    gateway_ns: str
    image: ImagePin
    cache_claim: str
    run: eng.Run  # engine "vllm" (the image's CLI), base_url the in-cluster LiteLLM URL
    levels: tuple[tuple[int, int], ...]  # (concurrency, requests)
    level_timeout_s: float


def plan_argument(spec: JobSpec) -> str:
    """The in-pod program's one argument: every level's engine command line."""
    levels = [
        {
            "concurrency": c,
            "resultFile": f"c{c}.json",
            "argv": eng.argv(spec.run, c, n, Path(RESULT_DIR), f"c{c}.json"),
        }
        for c, n in spec.levels
    ]
    return json.dumps({"resultDir": RESULT_DIR, "levels": levels}, separators=(",", ":"))


def container_args(spec: JobSpec) -> list[str]:
    """command + args of the Job's container (the e2e test runs exactly these, locally)."""
    return ["python3", "-c", RUNNER.read_text(encoding="utf-8"), plan_argument(spec)]


def deadline_seconds(spec: JobSpec) -> int:
    return int(START_MARGIN_S + spec.level_timeout_s * len(spec.levels))


def _volumes(spec: JobSpec) -> tuple[list[dict], list[dict]]:
    scratch = {path: f"scratch-{i}" for i, path in enumerate((*spec.image.writable_paths, RESULT_DIR))}
    volumes = [{"name": "model-cache", "persistentVolumeClaim": {"claimName": spec.cache_claim, "readOnly": True}}]
    volumes += [{"name": v, "emptyDir": {"sizeLimit": "1Gi"}} for v in scratch.values()]
    mounts = [{"name": "model-cache", "mountPath": MODELS, "readOnly": True}]
    mounts += [{"name": v, "mountPath": p} for p, v in scratch.items()]
    return volumes, mounts


def _container(spec: JobSpec, uid: int, mounts: list[dict]) -> dict:
    command = container_args(spec)
    env = [
        {"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": KEY_SECRET, "key": "api-key"}}},
        {"name": "HOME", "value": spec.image.writable_paths[0] if spec.image.writable_paths else "/tmp"},
        {"name": "USER", "value": "bench"},  # torch asks getpass.getuser() at import
        {"name": "HF_HUB_CACHE", "value": f"{MODELS}/hub"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    return {
        "name": "bench",
        "image": spec.image.ref,
        "imagePullPolicy": "IfNotPresent",
        "command": command[:3],
        "args": command[3:],
        "env": env,
        "resources": {"requests": {"cpu": CPU, "memory": MEMORY}, "limits": {"cpu": CPU, "memory": MEMORY}},
        "securityContext": {**container_security(uid), "runAsGroup": uid},
        "volumeMounts": mounts,
    }


def render_job(spec: JobSpec) -> dict:
    uid = spec.image.user if spec.image.user else 65534
    volumes, mounts = _volumes(spec)
    skips = {
        **image_skips(spec.image.ref),
        "CKV_K8S_35": "the load engine reads the gateway key from OPENAI_API_KEY only",
        "CKV_K8S_40": f"UID {uid} is the image's own user (vllm); restricted Pod Security holds",
        "CKV_K8S_8": "a run-to-completion load generator: nothing to probe",
        "CKV_K8S_9": "a run-to-completion load generator: nothing to probe",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": NAME,
            "namespace": spec.models_ns,
            "labels": SELECTOR,
            "annotations": checkov_skips(skips),
        },
        "spec": {
            "backoffLimit": 0,  # a re-run would measure twice and mix the results
            "activeDeadlineSeconds": deadline_seconds(spec),
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_S,
            "template": {
                "metadata": {"labels": SELECTOR},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security(uid),
                    "tolerations": [tolerate(SYSTEM_TAINT)],
                    "containers": [_container(spec, uid, mounts)],
                    "volumes": volumes,
                },
            },
        },
    }


def render_policies(spec: JobSpec) -> list[dict]:
    """Egress from the Job to LiteLLM's port and DNS; ingress to LiteLLM from the Job."""
    gateway_pods = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": spec.gateway_ns}},
        "podSelector": {"matchLabels": GATEWAY_SELECTOR},
    }
    bench_pods = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": spec.models_ns}},
        "podSelector": {"matchLabels": SELECTOR},
    }
    port = [{"protocol": "TCP", "port": GATEWAY_PORT}]
    egress = {
        "podSelector": {"matchLabels": SELECTOR},
        "policyTypes": ["Egress", "Ingress"],  # and no ingress at all
        "egress": [{"to": [gateway_pods], "ports": port}, {"to": [DNS_PEER], "ports": DNS}],
    }
    ingress = {
        "podSelector": {"matchLabels": GATEWAY_SELECTOR},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [bench_pods], "ports": port}],
    }
    meta = {"labels": SELECTOR}
    return [
        _obj("networking.k8s.io/v1", "NetworkPolicy", f"{NAME}-egress", spec.models_ns, meta, spec=egress),
        _obj("networking.k8s.io/v1", "NetworkPolicy", f"{NAME}-to-gateway", spec.gateway_ns, meta, spec=ingress),
    ]


def _obj(api: str, kind: str, name: str, ns: str, meta: dict, **body) -> dict:
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns, **meta}, **body}


def render(spec: JobSpec, api_key: str) -> list[dict]:
    """Every object of one run, in apply order: ServiceAccount, key Secret, policies, the Job."""
    meta = {"labels": SELECTOR}
    return [
        _obj("v1", "ServiceAccount", NAME, spec.models_ns, meta, automountServiceAccountToken=False),
        _obj("v1", "Secret", KEY_SECRET, spec.models_ns, meta, type="Opaque", stringData={"api-key": api_key}),
        *render_policies(spec),
        render_job(spec),
    ]


# --- reading the result back -----------------------------------------------------------------------


class JobFailed(Exception):
    """The Job could not run or its result could not be read (one line)."""


def parse_log(log: str) -> tuple[list[tuple[int, dict]], str | None]:
    """[(concurrency, the engine's saved JSON)] and the in-pod error (None when every level ran)."""
    lines = log.splitlines()
    try:
        start = lines.index(BEGIN)
        stop = lines.index(END, start)
    except ValueError:
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "(empty)")
        raise JobFailed(f"the Job's log has no result block; its last line: {last[:300]}") from None
    try:
        doc = json.loads("\n".join(lines[start + 1 : stop]))
        levels = [(int(lv["concurrency"]), dict(lv["result"])) for lv in doc["levels"]]
        error = doc.get("error")
    except (KeyError, TypeError, ValueError) as e:
        raise JobFailed(f"the Job's result block is not the expected JSON ({e!r})") from None
    return levels, None if error is None else str(error)


# --- kubectl ---------------------------------------------------------------------------------------

Runner = Callable[[list[str]], str]
POLL_S = 5.0


def job_state(doc: dict) -> str:
    """'complete', 'failed' or 'running' from `kubectl get job -o json`."""
    for cond in (doc.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"].lower()
    return "running"


def _first_line(e: Exception) -> str:
    if isinstance(e, subprocess.CalledProcessError):
        text = (e.stderr or e.stdout or "").strip()
        return text.splitlines()[0] if text else f"exit code {e.returncode}"
    return f"{type(e).__name__}: {e}"


@dataclass
class Cluster:
    """kubectl against one kubeconfig; `run` is the subprocess call (a fake one in unit tests)."""

    run: Runner
    kubeconfig: str
    sleep: Callable[[float], None] = time.sleep
    progress: Callable[[str], None] = lambda _text: None

    def kubectl(self, *args: str) -> str:
        try:
            return self.run(["kubectl", "--kubeconfig", self.kubeconfig, *args])
        except subprocess.CalledProcessError as e:
            raise JobFailed(f"kubectl {' '.join(args[:2])}: {_first_line(e)}") from None

    def wait(self, ns: str, deadline_s: int) -> str:
        waited = 0.0
        while waited <= deadline_s:
            try:
                state = job_state(json.loads(self.kubectl("get", "job", NAME, "-n", ns, "-o", "json")))
            except ValueError:
                raise JobFailed(f"kubectl get job {NAME}: not JSON") from None
            if state != "running":
                return state
            self.progress(f"bench (in-cluster): job {ns}/{NAME} running, {waited:.0f}s")
            self.sleep(POLL_S)
            waited += POLL_S
        raise JobFailed(f"the Job did not finish within its deadline of {deadline_s}s")


def _measure(cluster: Cluster, spec: JobSpec, path: str) -> list[tuple[int, dict]]:
    cluster.kubectl("apply", "-f", path)
    state = cluster.wait(spec.models_ns, deadline_seconds(spec))
    try:
        log = cluster.kubectl("logs", f"job/{NAME}", "-n", spec.models_ns, "-c", "bench")
    except JobFailed as e:
        raise JobFailed(f"the Job ended {state} and left no log ({e})") from None
    levels, error = parse_log(log)
    if error is not None:
        raise JobFailed(error)
    if state != "complete" or len(levels) != len(spec.levels):
        raise JobFailed(f"the Job ended {state} with {len(levels)} of {len(spec.levels)} levels measured")
    return levels


def run_job(cluster: Cluster, spec: JobSpec, api_key: str) -> list[tuple[int, dict]]:
    """apply -> wait -> logs -> delete (always, the first failure is the one reported).
    Raises JobFailed with one line on any failure."""
    fd, path = tempfile.mkstemp(prefix="stacks-bench-job-", suffix=".json")  # mode 0600: it holds the key
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": render(spec, api_key)}, f)
        try:
            levels = _measure(cluster, spec, path)
        except JobFailed:
            with contextlib.suppress(JobFailed):
                cluster.kubectl("delete", "-f", path, "--ignore-not-found", "--wait=false")
            raise
        cluster.kubectl("delete", "-f", path, "--ignore-not-found", "--wait=false")
        return levels
    finally:
        os.unlink(path)
