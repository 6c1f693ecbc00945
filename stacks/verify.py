"""Post-deploy check: `python -m stacks.verify STACK [--outputs FILE] [--skip-cluster]
[--gateway-url URL] [--api-key KEY] [--before-destroy]`.

Run after `pulumi up`. Reads the stack outputs (`pulumi stack output --json --show-secrets -s STACK`, or
FILE holding that JSON) and checks, in a short table:
  - nodes: Ready nodes of the system group and of every accelerator pool (`kubectl`, kubeconfig from outputs);
  - readiness: each model's Deployment has ready replicas;
  - accelerator nodes: no pod outside the models' namespaces runs on one without requesting the
    accelerator (per-node agents aside);
  - chat: one streamed chat per model through the gateway (time to first token, tokens/s);
  - with --canaries: a device canary pod on the first node of each accelerator kind (stacks/verify_canary.py:
    `nvidia-smi`, or the Neuron image's write paths and `neuron-ls`, as the servers' user), then deleted.
Needs the `pulumi` CLI (unless --outputs), `kubectl` and the `aws` CLI the kubeconfig calls (unless
--skip-cluster), and a route to the gateway: its load balancer is internal by default, so from outside
the VPC run `kubectl -n gateway port-forward svc/litellm 4000:4000` and pass --gateway-url http://127.0.0.1:4000.
With --before-destroy (a platform stack, before `pulumi destroy`): lists the team stacks still on the
cluster (their `<team>-models`/`<team>-gateway` namespaces) and load balancers outside the platform's
gateway namespace, which keep ENIs and security-group rules in the platform's VPC; exit 1 while any remain.
Exit 0 when every check passes, 1 when one fails, 2 on bad input (one line, no traceback).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from components.cluster import SYSTEM_LABEL
from components.types import ACCELERATOR_RESOURCE, GATEWAY_NS, MODELS_NS, POOL_LABEL
from stacks import verify_canary

Runner = Callable[[list[str]], str]
ACCELERATOR_RESOURCES = frozenset(ACCELERATOR_RESOURCE.values())
NEURON_RESOURCE_PREFIX = "aws.amazon.com/neuron"  # neuron, neuroncore, neurondevice
PROMPT = "In one sentence, what is Kubernetes?"
MAX_TOKENS = 32


class BadInput(Exception):
    """Exit 2: the check could not start (outputs missing, a CLI absent)."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_command(cmd: list[str], timeout: float = 120) -> str:
    """Run a CLI; a missing binary is bad input, a failing one raises CalledProcessError."""
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout
    except FileNotFoundError:
        hint = {
            "pulumi": "install the Pulumi CLI or pass --outputs FILE",
            "kubectl": "install kubectl (https://kubernetes.io/docs/tasks/tools/) or pass --skip-cluster",
        }
        raise BadInput(f"{cmd[0]}: command not found — {hint.get(cmd[0], 'install it')}") from None
    except subprocess.TimeoutExpired:
        raise subprocess.CalledProcessError(-1, cmd, stderr=f"{cmd[0]} timed out after {timeout:.0f}s") from None


def _first_line(e: Exception) -> str:
    if not isinstance(e, subprocess.CalledProcessError):
        return f"{type(e).__name__}: {e}"
    text = (e.stderr or e.stdout or "").strip()
    return text.splitlines()[0] if text else f"exit code {e.returncode}"


def load_outputs(stack: str, outputs_file: str | None, run: Runner) -> dict:
    if outputs_file:
        try:
            with open(outputs_file) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            raise BadInput(
                f"{outputs_file}: cannot read stack outputs ({e}) — pass the JSON of "
                f"`pulumi stack output --json --show-secrets -s {stack}`"
            ) from None
    else:
        try:
            doc = json.loads(run(["pulumi", "stack", "output", "--json", "--show-secrets", "-s", stack]))
        except subprocess.CalledProcessError as e:
            raise BadInput(
                f"pulumi stack output -s {stack}: {_first_line(e)} — run `pulumi up -s {stack}` first "
                f"or pass --outputs FILE"
            ) from None
        except ValueError:
            raise BadInput(f"pulumi stack output -s {stack}: not JSON — pass --outputs FILE") from None
    if not isinstance(doc, dict):
        raise BadInput(
            "stack outputs: expected a JSON object of output names — pass "
            "`pulumi stack output --json --show-secrets` output"
        )
    return doc


def read_plan(path: str | None) -> dict | None:
    if path is None:
        return None
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise BadInput(
            f"{path}: cannot read the plan summary ({e}) — pass summary.json of `python -m stacks.plan`"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise BadInput(f"{path}: not a plan summary (no models list) — pass summary.json of `python -m stacks.plan`")
    return doc


def need(outputs: dict, key: str, why: str):
    if outputs.get(key) in (None, "", [], {}):
        raise BadInput(f"stack output {key}: missing — {why}")
    return outputs[key]


# --- cluster checks (kubectl) -------------------------------------------------------------------


def kubectl_json(run: Runner, kubeconfig: str, *args: str) -> dict:
    return json.loads(run(["kubectl", "--kubeconfig", kubeconfig, *args, "-o", "json"]))


def _ready(node: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def node_checks(nodes: dict, pools: dict[str, str]) -> list[Check]:
    """System nodes must be Ready; accelerator pools are reported (Karpenter scales them to the models)."""
    items = nodes.get("items") or []
    labels = [((n.get("metadata") or {}).get("labels") or {}, _ready(n)) for n in items]
    sys_key, sys_val = SYSTEM_LABEL
    system = [r for lab, r in labels if lab.get(sys_key) == sys_val]
    out = [Check("nodes system", sum(system) >= 1, f"{sum(system)}/{len(system)} Ready")]
    for pool in sorted(pools):
        mine = [r for lab, r in labels if lab.get(POOL_LABEL) == pool]
        out.append(Check(f"nodes pool {pool}", True, f"{sum(mine)}/{len(mine)} Ready ({pools[pool]})"))
    return out


def model_targets(endpoints: dict[str, str]) -> dict[str, tuple[str, str]]:
    """served name -> (namespace, Deployment name), from the in-cluster URLs `http://<svc>.<ns>.svc…`."""
    out = {}
    for served, url in endpoints.items():
        host = urlparse(url).hostname or ""
        parts = host.split(".")
        if len(parts) < 3 or parts[2] != "svc":
            raise BadInput(f"stack output modelEndpoints.{served}: {url!r} is not an in-cluster Service URL")
        out[served] = (parts[1], parts[0])
    return out


def readiness_checks(deployments: dict[str, dict], targets: dict[str, tuple[str, str]]) -> list[Check]:
    """`deployments`: namespace -> `kubectl get deployments -o json` of that namespace."""
    out = []
    for served in sorted(targets):
        ns, name = targets[served]
        dep = next(
            (
                d
                for d in (deployments.get(ns) or {}).get("items") or []
                if (d.get("metadata") or {}).get("name") == name
            ),
            None,
        )
        if dep is None:
            out.append(Check(f"ready {served}", False, f"no Deployment {ns}/{name}"))
            continue
        want = int((dep.get("spec") or {}).get("replicas", 1))
        have = int((dep.get("status") or {}).get("readyReplicas", 0) or 0)
        out.append(Check(f"ready {served}", have >= 1, f"{have}/{want} replicas ready"))
    return out


def canary_checks(outputs: dict, run: Runner, kubeconfig: str, nodes: dict, namespace: str) -> list[Check]:
    platform = outputs.get("platform") or {}
    try:
        results = verify_canary.canary_results(
            run, kubeconfig, nodes, platform.get("pools") or {}, namespace, platform.get("neuronScheduler")
        )
    except (subprocess.CalledProcessError, ValueError) as e:
        return [Check("canary", False, _first_line(e))]
    return [Check(f"canary {r.kind} on {r.node}", r.ok, r.detail) for r in results]


@contextlib.contextmanager
def kubeconfig_file(outputs: dict):
    """The stack's kubeconfig output in a private temporary file (removed afterwards)."""
    kubeconfig = need(outputs, "kubeconfig", "a platform or team stack exports it; or pass --skip-cluster")
    if not isinstance(kubeconfig, str):
        kubeconfig = json.dumps(kubeconfig)
    fd, path = tempfile.mkstemp(prefix="verify-kubeconfig-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp: mode 0600
            f.write(kubeconfig)
        yield path
    finally:
        os.unlink(path)


def _requests_accelerator(pod: dict) -> bool:
    for c in [*pod["spec"].get("initContainers", []), *pod["spec"].get("containers", [])]:
        res = c.get("resources") or {}
        names = {*(res.get("limits") or {}), *(res.get("requests") or {})}
        if any(n in ACCELERATOR_RESOURCES or n.startswith(NEURON_RESOURCE_PREFIX) for n in names):
            return True
    return False


def unshared_violations(pods: dict, nodes: dict, pools: dict[str, str], model_namespaces: set[str]) -> list[str]:
    """Pods on an accelerator node that do not request the accelerator, outside the models'
    namespaces: they share a node (and, if the runtime exposes devices without a request, its GPUs or
    NeuronCores) with another tenant's model. Per-node agents (DaemonSet pods) and finished pods are
    not counted."""
    accel = {
        n["metadata"].get("name")
        for n in nodes.get("items", [])
        if (n["metadata"].get("labels") or {}).get(POOL_LABEL) in pools
    }
    out = []
    for p in pods.get("items", []):
        meta, node = p["metadata"], p["spec"].get("nodeName")
        if node not in accel or meta["namespace"] in model_namespaces:
            continue
        if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
            continue
        if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed") or _requests_accelerator(p):
            continue
        out.append(f"{meta['namespace']}/{meta['name']} on {node}")
    return sorted(out)


def sharing_check(
    run: Runner, kubeconfig: str, nodes: dict, pools: dict[str, str], model_namespaces: set[str]
) -> Check:
    name = "accelerator nodes"
    try:
        pods = kubectl_json(run, kubeconfig, "get", "pods", "--all-namespaces")
    except (subprocess.CalledProcessError, ValueError) as e:
        return Check(name, False, _first_line(e))
    bad = unshared_violations(pods, nodes, pools, model_namespaces)
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        return Check(name, False, "not requesting the accelerator: " + ", ".join(bad[:3]) + more)
    return Check(name, True, "only model pods and node agents")


def cluster_checks(outputs: dict, run: Runner, phases_plan: dict | None = None, canaries: bool = False) -> list[Check]:
    endpoints = outputs.get("modelEndpoints") or {}
    pools = (outputs.get("platform") or {}).get("pools") or {}
    with kubeconfig_file(outputs) as path:
        try:
            nodes = kubectl_json(run, path, "get", "nodes")
        except (subprocess.CalledProcessError, ValueError) as e:
            return [Check("cluster reachable", False, _first_line(e))]
        checks = node_checks(nodes, pools)
        targets = model_targets(endpoints)
        checks.append(sharing_check(run, path, nodes, pools, {ns for ns, _ in targets.values()}))
        if canaries:  # in the models namespace (restricted Pod Security, the servers' quota)
            namespace = min((ns for ns, _ in targets.values()), default=MODELS_NS)
            checks += canary_checks(outputs, run, path, nodes, namespace)
        deployments = {}
        for ns in sorted({ns for ns, _ in targets.values()}):
            try:
                deployments[ns] = kubectl_json(run, path, "get", "deployments", "-n", ns)
            except (subprocess.CalledProcessError, ValueError) as e:
                checks.append(Check(f"deployments in {ns}", False, _first_line(e)))
        checks += readiness_checks(deployments, targets)
        if phases_plan is not None:
            checks += phase_checks(run, path, targets, phases_plan)
        return checks


def phase_checks(run: Runner, kubeconfig: str, targets: dict[str, tuple[str, str]], plan: dict) -> list[Check]:
    """Each model's measured startup phases against the plan's (stacks/verify_phases.py)."""
    from stacks import verify_phases

    kubectl = lambda *args: run(["kubectl", "--kubeconfig", kubeconfig, *args])  # noqa: E731
    try:
        return [Check(*c) for c in verify_phases.checks(kubectl, targets, plan)]
    except (subprocess.CalledProcessError, ValueError, KeyError) as e:
        return [Check("phases", False, _first_line(e))]


def leftover_checks(namespaces: dict, services: dict, platform_namespaces: set[str]) -> list[Check]:
    """What a platform destroy would strand: team stacks (both team namespaces present) and
    LoadBalancer Services outside the platform's namespaces (their NLBs hold subnets and SG rules)."""
    names = {(n.get("metadata") or {}).get("name", "") for n in namespaces.get("items") or []}
    teams = sorted(
        n.removesuffix("-models") for n in names if n.endswith("-models") and n.replace("-models", "-gateway") in names
    )
    lbs = sorted(
        f"{m.get('namespace')}/{m.get('name')}"
        for svc in services.get("items") or []
        if (svc.get("spec") or {}).get("type") == "LoadBalancer"
        and (m := svc.get("metadata") or {}).get("namespace") not in platform_namespaces
    )
    fix = "run `pulumi destroy` on each team stack first, then this one"
    return [
        Check("team stacks", not teams, f"still on the cluster: {', '.join(teams)} — {fix}" if teams else "none"),
        Check("load balancers", not lbs, f"outside the platform: {', '.join(lbs)} — {fix}" if lbs else "none"),
    ]


def before_destroy(outputs: dict, run: Runner) -> list[Check]:
    with kubeconfig_file(outputs) as path:
        try:
            ns = kubectl_json(run, path, "get", "namespaces")
            svcs = kubectl_json(run, path, "get", "services", "--all-namespaces")
        except (subprocess.CalledProcessError, ValueError) as e:
            return [Check("cluster reachable", False, _first_line(e))]
        return leftover_checks(ns, svcs, {GATEWAY_NS})


def admin_key(outputs: dict, run: Runner) -> str:
    """The gateway's admin key. The stack exports only where it is (`gatewayAdminKey`): a Secrets
    Manager secret (platform stack; the `aws` CLI reads it as an admin role) or the gateway's
    Kubernetes Secret (team stack). An outputs file may also carry the key itself as `gatewayMasterKey`."""
    if outputs.get("gatewayMasterKey"):
        return outputs["gatewayMasterKey"]
    where = need(outputs, "gatewayAdminKey", "redeploy with this version or pass --api-key")
    try:
        if "secretsManagerArn" in where:
            arn = where["secretsManagerArn"]
            cmd = ["aws", "secretsmanager", "get-secret-value", "--secret-id", arn, "--query", "SecretString"]
            return run([*cmd, "--output", "text"]).strip()
        ns, name = where["kubernetesSecret"].split("/", 1)
        with kubeconfig_file(outputs) as path:
            data = kubectl_json(run, path, "get", "secret", name, "-n", ns)["data"][where["key"]]
        return base64.b64decode(data).decode()
    except (subprocess.CalledProcessError, KeyError, ValueError, TypeError) as e:
        raise BadInput(f"gateway admin key: cannot read it ({_first_line(e)}) — pass --api-key") from None


# --- gateway chat -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatResult:
    ttft_s: float
    tokens: int
    tokens_per_s: float
    counted: bool  # tokens counted from chunks (the gateway sent no usage)


def chat(base_url: str, api_key: str, model: str, timeout: float = 120, max_tokens: int = MAX_TOKENS) -> ChatResult:
    """One streamed chat; TTFT = first content chunk, tokens/s over the decode after it."""
    body = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    req = urllib.request.Request(
        f"{base_url.rstrip('/')}/v1/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    t0 = time.monotonic()
    first, last, chunks, usage = None, None, 0, None
    with urllib.request.urlopen(req, timeout=timeout) as r:
        for raw in r:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            doc = json.loads(line[5:])
            usage = doc.get("usage") or usage
            for choice in doc.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"):
                    now = time.monotonic()
                    first = first if first is not None else now
                    last, chunks = now, chunks + 1
    if first is None:
        raise ValueError("the stream carried no tokens")
    tokens = int((usage or {}).get("completion_tokens") or 0)
    counted = tokens == 0
    tokens = tokens or chunks
    decode = (last or first) - first
    rate = (tokens - 1) / decode if decode > 0 and tokens > 1 else 0.0
    return ChatResult(ttft_s=first - t0, tokens=tokens, tokens_per_s=rate, counted=counted)


def chat_checks(base_url: str, api_key: str, models: list[str], timeout: float) -> list[Check]:
    out = []
    for m in models:
        try:
            r = chat(base_url, api_key, m, timeout)
        except urllib.error.HTTPError as e:
            out.append(Check(f"chat {m}", False, f"HTTP {e.code}: {e.read()[:160].decode('utf-8', 'replace')}"))
            continue
        except (urllib.error.URLError, OSError, ValueError) as e:
            out.append(Check(f"chat {m}", False, f"{type(e).__name__}: {e}"[:200]))
            continue
        approx = "~" if r.counted else ""
        out.append(
            Check(f"chat {m}", True, f"TTFT {r.ttft_s:.2f}s, {approx}{r.tokens} tokens, {r.tokens_per_s:.1f} tok/s")
        )
    return out


def table(checks: list[Check]) -> str:
    rows = [("check", "result", "detail")] + [(c.name, "ok" if c.ok else "FAIL", c.detail) for c in checks]
    w = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0].ljust(w[0])}  {r[1].ljust(w[1])}  {r[2]}".rstrip() for r in rows) + "\n"


def verify(a: argparse.Namespace, run: Runner = run_command) -> tuple[int, list[Check]]:
    outputs = load_outputs(a.stack, a.outputs, run)
    if a.before_destroy:
        checks = before_destroy(outputs, run)
        return (0 if all(c.ok for c in checks) else 1), checks
    url = a.gateway_url or need(outputs, "gatewayUrl", "the stack exports it from the LiteLLM gateway")
    key = a.api_key or admin_key(outputs, run)
    models = need(outputs, "models", "the stack has no models to check")
    checks = [] if a.skip_cluster else cluster_checks(outputs, run, read_plan(a.phases), a.canaries)
    checks += chat_checks(url, key, list(models), a.timeout)
    return (0 if all(c.ok for c in checks) else 1), checks


def main(argv: list[str] | None = None, run: Runner = run_command) -> int:
    ap = argparse.ArgumentParser(prog="python -m stacks.verify", description=__doc__.split("\n\n")[0])
    ap.add_argument("stack")
    ap.add_argument("--outputs", help="JSON of `pulumi stack output --json --show-secrets` (default: ask pulumi)")
    ap.add_argument("--gateway-url", help="reach the gateway here instead of the gatewayUrl output (port-forward)")
    ap.add_argument("--api-key", help="gateway key instead of the admin key the gatewayAdminKey output locates")
    ap.add_argument("--skip-cluster", action="store_true", help="only the chat checks (no kubectl)")
    ap.add_argument(
        "--phases",
        metavar="SUMMARY",
        help="also measure each model's startup phases against the plan (its summary.json from stacks.plan --out)",
    )
    ap.add_argument(
        "--canaries",
        action="store_true",
        help="run a device canary pod on the first node of each accelerator kind (needs a free device)",
    )
    ap.add_argument("--timeout", type=float, default=120, help="seconds per chat (default 120)")
    ap.add_argument("--before-destroy", action="store_true", help="list team stacks left before a platform destroy")
    a = ap.parse_args(argv)
    try:
        code, checks = verify(a, run)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(table(checks))
    return code


if __name__ == "__main__":
    sys.exit(main())
