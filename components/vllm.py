"""One vLLM model server: ServiceAccount, Deployment, Service (port VLLM_PORT), PDB when replicas >= 2.

Pure renderers (`render_pod_spec`, `render_service_spec`) carry all the decisions so tests and the
e2e suite read exactly what the cluster would run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import (
    ACCELERATOR_RESOURCE,
    COMPILE_CACHE_CONFIGMAP,
    COMPILE_CACHE_DIR,
    COMPILE_CACHE_EFS_DIR,
    COMPILE_CACHE_SCRIPT_DIR,
    POOL_LABEL,
    S3_WEIGHTS_LABEL,
    VLLM_PORT,
    VLLM_SELECTOR,
    VLLM_UID,
    ServerSpec,
    checkov_skips,
    container_security,
    image_skips,
    pod_security,
    service_host,
    tolerate,
    zone_spread,
)

PORT = VLLM_PORT
UID = VLLM_UID  # user `vllm` in the upstream image
HOME = "/home/vllm"
MODELS = "/models"  # the shared EFS cache, mounted read-only
HUB_CACHE = f"{MODELS}/hub"
READY_DIR = f"{MODELS}/ready"
# Per-pod emptyDir: vLLM loads its cache dirs without integrity checks, so no replica shares one.
VLLM_CACHE_DIR = "/var/cache/vllm"
# Neuron: compiled artifacts persist on EFS (one writable subPath of the same volume, outside the
# read-only /models mount); the compiler's scratch cache is per pod under /var/tmp.
NEURON_ARTIFACTS_DIR = "/var/lib/neuron-compiled"
NEURON_COMPILE_CACHE_DIR = "/var/tmp/neuron-compile-cache"
API_KEY_ENV = "VLLM_API_KEY"
# checkov findings accepted on model-server Deployments only (tests/stacks/test_checkov.py).
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit: CFS throttling of a latency-critical server; CPU requests are set",
    "CKV_K8S_35": "vLLM reads VLLM_API_KEY from env only",
    "CKV_K8S_40": f"the image user vllm is UID {VLLM_UID} and the EFS access point enforces {VLLM_UID}; "
    "restricted PSS holds",
}
CACHE_VOLUME = "model-cache"
WAIT_PERIOD_S = 10
# Graceful drain: the preStop sleep lets endpoint removal reach kube-proxy and the gateway before
# SIGTERM; vLLM then drains in-flight requests for --shutdown-timeout; the margin covers process exit.
PRE_STOP_S = 15
EXIT_MARGIN_S = 15
# The startup and readiness probes' period: a replica that turns healthy is seen at most one period
# later by each, so Ready trails the server by up to two periods (the plan's readiness phase).
PROBE_PERIOD_S = 10

# The init container's whole program. Constant text: every value it uses comes from the environment
# and is expanded inside double quotes, so no config value is ever parsed by the shell.
WAIT_SCRIPT = (
    "waited=0; "
    'while [ ! -f "$READY_MARKER" ]; do '
    'if [ "$waited" -ge "$WAIT_SECONDS" ]; then '
    "printf 'weights of %s not ready after %ss: see the cache Job in this namespace\\n' "
    '"$HF_ID" "$WAIT_SECONDS" >&2; '
    "exit 1; fi; "
    "printf 'waiting for %s\\n' \"$HF_ID\"; "
    f"sleep {WAIT_PERIOD_S}; waited=$((waited + {WAIT_PERIOD_S})); "
    "done"
)


def labels(spec: ServerSpec) -> dict:
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/part-of": "llm-serving", **VLLM_SELECTOR}


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def ready_marker(hf_id: str, revision: str | None) -> str:
    """File the cache Job writes when these weights are complete. A hash names it, so neither the
    Hub id nor the revision ever becomes part of a path."""
    return f"{READY_DIR}/{_digest(hf_id, revision or '')}"


def neuron_artifacts_subpath(spec: ServerSpec) -> str:
    """Where on EFS this server keeps its Neuron compiled artifacts: keyed by everything the compile
    depends on (image and args), so a changed model, TP or length compiles afresh instead of loading
    stale artifacts."""
    return f"neuron-compiled/{_digest(spec.name, spec.image, list(spec.args))[:24]}"


def termination_grace_seconds(spec: ServerSpec) -> int:
    return PRE_STOP_S + spec.shutdown_timeout_seconds + EXIT_MARGIN_S


def probe_budget(seconds: int, period: int = PROBE_PERIOD_S) -> int:
    return max(1, -(-seconds // period))


def node_affinity(spec: ServerSpec) -> dict:
    """Any instance type of the pool this pod fits on (Karpenter launches the cheapest available)."""
    types = list(spec.instance_types or (spec.instance_type,))
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": POOL_LABEL, "operator": "In", "values": [spec.pool]},
                            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": types},
                        ]
                    }
                ]
            }
        }
    }


def render_container(spec: ServerSpec, *, api_key_secret: str) -> dict:
    res_name = ACCELERATOR_RESOURCE[spec.kind]
    res = {"cpu": spec.cpu, "memory": spec.memory, res_name: str(spec.accelerator_count)}
    health = {"httpGet": {"path": "/health", "port": PORT}}
    env: list[dict] = [{"name": k, "value": v} for k, v in spec.env]
    env.append({"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": api_key_secret, "key": "api-key"}}})
    return {
        "name": "vllm",
        "image": spec.image,
        "args": list(spec.args),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        # Requests = limits for memory and accelerators (Guaranteed memory; whole devices).
        "resources": {"requests": dict(res), "limits": {"memory": spec.memory, res_name: str(spec.accelerator_count)}},
        "startupProbe": {
            **health,
            "periodSeconds": PROBE_PERIOD_S,
            "timeoutSeconds": 5,
            "failureThreshold": probe_budget(spec.startup_budget_seconds),
        },
        "readinessProbe": {**health, "periodSeconds": PROBE_PERIOD_S, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 20, "timeoutSeconds": 10, "failureThreshold": 3},
        "securityContext": {**container_security(UID), "runAsGroup": UID},
        "volumeMounts": container_mounts(spec),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_S}}},
    }


def container_mounts(spec: ServerSpec) -> list[dict]:
    """One cache volume (a PVC referenced by two pod volumes is never mounted by kubelet < 1.35):
    read-only at /models; Neuron adds one writable subPath of it for compiled artifacts."""
    mounts: list[dict] = [
        {"name": CACHE_VOLUME, "mountPath": MODELS, "readOnly": True},
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "home", "mountPath": HOME},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "vllm-cache", "mountPath": VLLM_CACHE_DIR},
    ]
    if spec.compile_cache_key:
        mounts.append(compile_cache_mount(spec, read_only=True))
    if spec.kind == "neuron":
        mounts += [
            {"name": CACHE_VOLUME, "mountPath": NEURON_ARTIFACTS_DIR, "subPath": neuron_artifacts_subpath(spec)},
            {"name": "var-tmp", "mountPath": "/var/tmp"},
        ]
    return mounts


def render_wait_container(spec: ServerSpec) -> dict:
    env = [
        {"name": "READY_MARKER", "value": spec.weights_marker or ready_marker(spec.hf_id, spec.revision)},
        {"name": "HF_ID", "value": spec.hf_id},
        {"name": "WAIT_SECONDS", "value": str(spec.weights_wait_seconds)},
    ]
    return {
        "name": "wait-for-weights",
        "image": spec.image,
        "command": ["sh", "-c", WAIT_SCRIPT],
        "env": env,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
        "securityContext": container_security(UID),
        "volumeMounts": [{"name": CACHE_VOLUME, "mountPath": MODELS, "readOnly": True}],
    }


def render_pod_spec(
    spec: ServerSpec, *, cache_claim: str, api_key_secret: str, service_account: str, max_replicas: int = 0
) -> dict:
    volumes = [
        {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": cache_claim}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}},
        {"name": "home", "emptyDir": {"sizeLimit": "4Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}},
        {"name": "vllm-cache", "emptyDir": {"sizeLimit": "8Gi"}},
    ]
    if spec.kind == "neuron":
        volumes.append({"name": "var-tmp", "emptyDir": {"sizeLimit": "32Gi"}})
    if spec.compile_cache_key:
        volumes.append({"name": "compile-cache-script", "configMap": {"name": COMPILE_CACHE_CONFIGMAP}})
    pod = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        # No Service env vars: a Service named like a VLLM_* setting would be injected as one.
        "enableServiceLinks": False,
        "securityContext": pod_security(UID),
        "terminationGracePeriodSeconds": termination_grace_seconds(spec),
        "affinity": node_affinity(spec),
        "tolerations": [tolerate(ACCELERATOR_RESOURCE[spec.kind])],
        "initContainers": [render_wait_container(spec), *compile_cache_init(spec)],
        "containers": [render_container(spec, api_key_secret=api_key_secret)],
        "volumes": volumes,
    }
    if spec.scheduler_name:
        pod["schedulerName"] = spec.scheduler_name
    if max(spec.replicas, max_replicas) >= 2:
        pod["topologySpreadConstraints"] = zone_spread(labels(spec))
    return pod


@dataclass(frozen=True)
class VllmServerArgs:
    spec: ServerSpec
    namespace: str
    cache_claim: str
    api_key_secret: str
    after: tuple[pulumi.Resource, ...] = ()
    # Set when an autoscaler owns the replica count (up to this many): the Deployment then omits
    # spec.replicas, so neither `pulumi up` nor a server-side-apply conflict resets what the HPA chose.
    autoscaled_max: int | None = None


class VllmServer(pulumi.ComponentResource):
    service_host: str
    deployment_name: pulumi.Output[str]

    def __init__(self, name: str, args: VllmServerArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:serving:VllmServer", name, None, opts)
        spec = args.spec
        if spec.name == "vllm":
            raise ValueError("a Service named 'vllm' makes Kubernetes inject VLLM_PORT and vLLM refuses to start")
        lab = labels(spec)
        meta = {"name": spec.name, "namespace": args.namespace, "labels": lab}
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=meta,
            automount_service_account_token=False,
            opts=ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        top = max(spec.replicas, args.autoscaled_max or 0)
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                **meta,
                "annotations": {
                    # A GPU node and a model load take longer than Pulumi's await; readiness is the probes' job.
                    "pulumi.com/skipAwait": "true",
                    **checkov_skips({**CHECKOV_SKIPS, **image_skips(spec.image)}),
                },
            },
            spec=render_deployment_spec(args, top),
            opts=ResourceOptions(parent=self, depends_on=[sa, *args.after]),
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta,
            spec={"selector": lab, "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]},
            opts=ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        if top >= 2:
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=meta,
                spec={"maxUnavailable": 1, "selector": {"matchLabels": lab}},
                opts=ResourceOptions(parent=self, depends_on=list(args.after)),
            )
        self.service_host = service_host(spec.name, args.namespace)
        self.deployment_name = deployment.metadata.name
        self.register_outputs({"service_host": self.service_host})


def render_deployment_spec(args: VllmServerArgs, max_replicas: int) -> dict:
    """Rolling updates that keep a multi-replica model serving; no replica count under an autoscaler."""
    spec = args.spec
    lab = labels(spec)
    replicas = {} if args.autoscaled_max is not None else {"replicas": spec.replicas}
    return {
        **replicas,
        "selector": {"matchLabels": lab},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0 if spec.replicas > 1 else 1, "maxSurge": 1},
        },
        "template": {
            # Pod labels only (not the selector): switching a model's weights source keeps its Deployment.
            "metadata": {
                "labels": {**lab, **(S3_WEIGHTS_LABEL if spec.weights_uri else {})},
                "annotations": {"karpenter.sh/do-not-disrupt": "true"},
            },
            "spec": render_pod_spec(
                spec,
                cache_claim=args.cache_claim,
                api_key_secret=args.api_key_secret,
                service_account=spec.name,
                max_replicas=max_replicas,
            ),
        },
    }


# ---- the compile cache (components/compile_cache.py keys it; incluster/compile_cache/cache.py runs) ----


def compile_cache_mount(spec: ServerSpec, *, read_only: bool) -> dict:
    """This key's directory of the EFS volume: read-only for servers, writable for the warm Job."""
    sub = f"{COMPILE_CACHE_EFS_DIR}/{spec.compile_cache_key}"
    return {"name": CACHE_VOLUME, "mountPath": COMPILE_CACHE_DIR, "subPath": sub, "readOnly": read_only}


def compile_cache_env(spec: ServerSpec) -> list[dict]:
    return [
        {"name": "CACHE_KEY", "value": spec.compile_cache_key or ""},
        {"name": "CACHE_DIR", "value": COMPILE_CACHE_DIR},
        {"name": "VLLM_CACHE_ROOT", "value": VLLM_CACHE_DIR},
    ]


def compile_cache_init(spec: ServerSpec) -> list[dict]:
    """The init container that copies the verified cache into the pod's own VLLM_CACHE_ROOT (or leaves
    it empty, saying why, so vLLM compiles there)."""
    if not spec.compile_cache_key:
        return []
    return [
        {
            "name": "compile-cache",
            "image": spec.image,
            "command": ["python3", f"{COMPILE_CACHE_SCRIPT_DIR}/cache.py", "restore"],
            "env": compile_cache_env(spec),
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
            "securityContext": container_security(UID),
            "volumeMounts": [
                compile_cache_mount(spec, read_only=True),
                {"name": "vllm-cache", "mountPath": VLLM_CACHE_DIR},
                {"name": "compile-cache-script", "mountPath": COMPILE_CACHE_SCRIPT_DIR, "readOnly": True},
            ],
        }
    ]


def render_warm_job_spec(spec: ServerSpec, *, cache_claim: str, api_key_secret: str, deadline_seconds: int) -> dict:
    """The warm Job: the server's own pod (image, args, env, node, resources) whose command runs the
    server once through cache.py, which stores its compile artifacts under the key with a manifest."""
    pod = render_pod_spec(spec, cache_claim=cache_claim, api_key_secret=api_key_secret, service_account=spec.name)
    pod["initContainers"] = [render_wait_container(spec)]
    pod.pop("topologySpreadConstraints", None)
    pod["restartPolicy"] = "OnFailure"
    c = pod["containers"][0]
    for k in ("startupProbe", "readinessProbe", "livenessProbe", "lifecycle", "ports"):
        c.pop(k, None)
    c["command"] = ["python3", f"{COMPILE_CACHE_SCRIPT_DIR}/cache.py", "warm", "--", "vllm", "serve"]
    c["env"] = [e for e in c["env"] if e["name"] != "VLLM_CACHE_ROOT"] + compile_cache_env(spec)
    c["env"] += [
        {"name": "HEALTH_URL", "value": f"http://127.0.0.1:{PORT}/health"},
        {"name": "WARM_TIMEOUT_SECONDS", "value": str(spec.startup_budget_seconds)},
    ]
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m.get("mountPath") != COMPILE_CACHE_DIR]
    c["volumeMounts"] += [
        compile_cache_mount(spec, read_only=False),
        {"name": "compile-cache-script", "mountPath": COMPILE_CACHE_SCRIPT_DIR, "readOnly": True},
    ]
    return {
        "backoffLimit": 2,
        "activeDeadlineSeconds": deadline_seconds,
        "template": {
            "metadata": {
                "labels": {
                    "app.kubernetes.io/name": f"warm-{spec.name}",
                    "app.kubernetes.io/component": "compile-warm",
                    **(S3_WEIGHTS_LABEL if spec.weights_uri else {}),
                }
            },
            "spec": pod,
        },
    }
