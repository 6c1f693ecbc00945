"""Measured cold-start phases of a deployed model, set against the plan's (stacks/capacity/startup.py).

Sources, all read through `kubectl` (verify's injectable runner):
  - node launch:   a node created after the pod (Karpenter launched it for this pod): the node's Ready
                   condition time - the pod's creationTimestamp; a pod on a warm node has no launch phase;
  - image pull:    the kubelet's `Pulled` event of the vllm container ("... in 1m2.5s ..."); an image
                   already on the node pulls in 0 s;
  - weight load, compile, graph capture: vLLM's own log lines (the largest over its workers);
  - readiness:     what the container spends beyond those (imports, profiling, KV cache, probes):
                   container start -> pod Ready, less the three log phases.
A phase more than 50 % over its plan is flagged (not failed: a slow start is a finding, not an outage).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

OVER = 1.5  # measured / planned above this is flagged
CONTAINER = "vllm"

# vLLM 0.32's log lines (vllm/model_executor/model_loader/default_loader.py, v1/worker/gpu_model_runner.py,
# compilation/monitor.py); "Model loading took" stands in when the loader's own line is absent.
LOG_PHASES = {
    "weight load": (
        re.compile(r"Loading weights took (\d+(?:\.\d+)?) seconds"),
        re.compile(r"Model loading took \S+ GiB memory and (\d+(?:\.\d+)?) seconds"),
    ),
    "compile": (re.compile(r"torch\.compile took (\d+(?:\.\d+)?) s in total"),),
    "graph capture": (re.compile(r"Graph capturing finished in (\d+(?:\.\d+)?) secs"),),
}
# The CPU build logs no compile total: its compile is the warm-up between these two lines (their
# timestamps are month-day and time of day).
CPU_WARMUP = (
    re.compile(r"(\d\d-\d\d \d\d:\d\d:\d\d) \[cpu_model_runner\.py:\d+\] Warming up model for the compilation"),
    re.compile(r"(\d\d-\d\d \d\d:\d\d:\d\d) \[cpu_model_runner\.py:\d+\] Warming up done"),
)
GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
PULLED = re.compile(r'Successfully pulled image "[^"]*" in (\S+?)(?: \(|\.?$| )')


def ts(value: str) -> datetime:
    """An RFC 3339 timestamp as the API server writes it (2026-12-07T06:51:47Z)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def go_duration(text: str) -> float:
    """Seconds of a Go duration string ("1m2.345s", "850ms"); ValueError when it is not one."""
    parts = GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * GO_UNITS[u] for n, u in parts)


def _cpu_compile(log: str) -> float | None:
    start, done = (p.search(log) for p in CPU_WARMUP)
    if not start or not done:
        return None
    # A leap year, so that 02-29 parses; a start that spans New Year comes out negative and is dropped.
    t0, t1 = (datetime.strptime(f"2024-{m.group(1)}", "%Y-%m-%d %H:%M:%S") for m in (start, done))
    seconds = (t1 - t0).total_seconds()
    return seconds if seconds >= 0 else None


def log_phases(log: str) -> dict[str, float]:
    """Seconds of each phase vLLM logs; a phase it did not log is absent."""
    out = {}
    for name, patterns in LOG_PHASES.items():
        for pat in patterns:
            found = [float(x) for x in pat.findall(log)]
            if found:
                out[name] = max(found)
                break
    cpu = _cpu_compile(log)
    if "compile" not in out and cpu is not None:
        out["compile"] = cpu
    return out


def _condition(obj: dict, kind: str) -> datetime | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True" and c.get("lastTransitionTime"):
            return ts(c["lastTransitionTime"])
    return None


def node_launch(pod: dict, node: dict | None) -> float | None:
    """Seconds from the pod's creation to its node's Ready, when the node joined after the pod."""
    if not node:
        return None
    created, joined = ts(pod["metadata"]["creationTimestamp"]), ts(node["metadata"]["creationTimestamp"])
    ready = _condition(node, "Ready")
    if joined < created or ready is None:
        return None
    return (ready - created).total_seconds()


def image_pull(pod_name: str, events: list[dict]) -> float | None:
    """The kubelet's own pull duration for the server container (0 when the image was present)."""
    for e in events:
        obj = e.get("involvedObject") or {}
        if obj.get("name") != pod_name or f"{{{CONTAINER}}}" not in str(obj.get("fieldPath", "")):
            continue
        msg = str(e.get("message", ""))
        if e.get("reason") == "Pulled" and "already present on machine" in msg:
            return 0.0
        m = PULLED.search(msg)
        if e.get("reason") == "Pulled" and m:
            return go_duration(m.group(1))
    return None


def in_container(pod: dict) -> float | None:
    """Seconds from the server container's start to the pod's Ready."""
    ready = _condition(pod, "Ready")
    for s in (pod.get("status") or {}).get("containerStatuses") or []:
        started = ((s.get("state") or {}).get("running") or {}).get("startedAt")
        if s.get("name") == CONTAINER and started and ready:
            return (ready - ts(started)).total_seconds()
    return None


def measure(pod: dict, events: list[dict], node: dict | None, log: str) -> dict[str, float]:
    """Measured seconds by phase name (the plan's names); phases without evidence are absent."""
    out: dict[str, float] = {}
    launch, pull = node_launch(pod, node), image_pull(pod["metadata"]["name"], events)
    if launch is not None:
        out["node launch"] = launch
    if pull is not None:
        out["image pull"] = pull
    out |= log_phases(log)
    inside = in_container(pod)
    if inside is not None:
        out["readiness"] = max(0.0, inside - sum(out.get(k, 0.0) for k in LOG_PHASES))
    return out


@dataclass(frozen=True)
class Row:
    phase: str
    planned: float | None
    measured: float | None

    @property
    def over(self) -> bool:
        return self.planned is not None and self.measured is not None and self.measured > OVER * self.planned


def compare(planned: dict[str, float], measured: dict[str, float]) -> list[Row]:
    names = list(planned) + [n for n in measured if n not in planned]
    return [Row(n, planned.get(n), measured.get(n)) for n in names]


def table(model: str, rows: list[Row]) -> str:
    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}s"

    out = [f"startup phases of {model} (planned vs measured; FLAG: over {OVER:g}x the plan)"]
    for r in rows:
        flag = "  FLAG" if r.over else ""
        out.append(f"  {r.phase:<14} {s(r.planned):>9} {s(r.measured):>9}{flag}")
    return "\n".join(out) + "\n"


Kubectl = Callable[..., str]  # kubectl(*args) -> stdout, the kubeconfig already chosen


def planned_phases(summary_doc: dict) -> dict[str, dict[str, float]]:
    """Model name -> planned seconds by phase, from the plan's summary.json."""
    out = {}
    for m in summary_doc.get("models") or []:
        phases = ((m.get("startup") or {}).get("phases")) or []
        out[m["name"]] = {p["name"]: float(p["seconds"]) for p in phases}
    return out


def _newest_ready_pod(pods: dict) -> dict | None:
    ready = [p for p in pods.get("items") or [] if _condition(p, "Ready") is not None]
    return max(ready, key=lambda p: p["metadata"]["creationTimestamp"], default=None)


def model_phases(kubectl: Kubectl, ns: str, name: str, nodes: dict) -> tuple[str, dict[str, float]]:
    """(pod name, measured phases) of the newest Ready replica of one model; ("", {}) when none is Ready."""
    pod = _newest_ready_pod(
        json.loads(kubectl("get", "pods", "-n", ns, "-l", f"app.kubernetes.io/name={name}", "-o", "json"))
    )
    if pod is None:
        return "", {}
    pname = pod["metadata"]["name"]
    events = (
        json.loads(
            kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={pname}", "-o", "json")
        ).get("items")
        or []
    )
    node_name = (pod.get("spec") or {}).get("nodeName")
    node = next((n for n in nodes.get("items") or [] if n["metadata"]["name"] == node_name), None)
    log = kubectl("logs", "-n", ns, pname, "-c", CONTAINER)
    return pname, measure(pod, events, node, log)


def checks(kubectl: Kubectl, targets: dict[str, tuple[str, str]], summary_doc: dict) -> list[tuple[str, bool, str]]:
    """(name, ok, detail) per model and phase: planned against measured; a flag is a finding, ok stays True.
    `targets`: served name -> (namespace, Deployment name); the Deployment is named after the model."""
    plans = planned_phases(summary_doc)
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))
    out = []
    for served in sorted(targets):
        ns, name = targets[served]
        pod, measured = model_phases(kubectl, ns, name, nodes)
        if not pod:
            out.append((f"phases {served}", False, f"no Ready pod of {ns}/{name} to measure"))
            continue
        for r in compare(plans.get(name, {}), measured):
            plan = "-" if r.planned is None else f"{r.planned:.0f}s"
            got = "not seen" if r.measured is None else f"{r.measured:.1f}s"
            flag = f"  FLAG: over {OVER:g}x the plan" if r.over else ""
            out.append((f"phase {served} {r.phase}", True, f"planned {plan}, measured {got} ({pod}){flag}"))
    return out
