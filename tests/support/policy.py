"""Offline policy checks over rendered manifests (pure functions, no cluster needed).

`pss_restricted_violations` implements the Kubernetes Pod Security Standards "restricted" profile
(baseline + restricted controls) for one pod spec, as the admission controller would judge it.
"""

from __future__ import annotations

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def pod_spec_of(obj: dict) -> dict | None:
    if obj.get("kind") == "Pod":
        return obj.get("spec")
    if obj.get("kind") in POD_KINDS:
        return obj["spec"]["template"]["spec"]
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pss_restricted_violations(pod: dict) -> list[str]:
    out: list[str] = []
    psc = pod.get("securityContext") or {}
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(f):
            out.append(f"{f} is true")
    for v in pod.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            out.append(f"volume {v['name']}: type {sorted(kinds - ALLOWED_VOLUME_TYPES)} not allowed")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    pod_non_root = psc.get("runAsNonRoot")
    if psc.get("runAsUser") == 0:
        out.append("pod runAsUser is 0")
    containers = [
        *(pod.get("initContainers") or []),
        *(pod.get("containers") or []),
        *(pod.get("ephemeralContainers") or []),
    ]
    for c in containers:
        n = c["name"]
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{n}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{n}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{n}: capabilities must drop ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            out.append(f"{n}: adds capabilities {sorted(extra)}")
        if not (sc.get("runAsNonRoot") is True or (sc.get("runAsNonRoot") is None and pod_non_root is True)):
            out.append(f"{n}: runAsNonRoot must be true (container or pod)")
        if sc.get("runAsUser") == 0:
            out.append(f"{n}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{n}: seccompProfile must be RuntimeDefault or Localhost")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append(f"{n}: hostPort {p['hostPort']}")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"{n}: procMount {sc['procMount']}")
    return out
