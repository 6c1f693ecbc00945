"""One vLLM model server: ServiceAccount, Deployment, Service (port 8000), PDB when replicas >= 2.

Pure renderers (`render_pod_spec`, `render_service_spec`) carry all the decisions so tests and the
e2e suite read exactly what the cluster would run.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import (ACCELERATOR_RESOURCE, POOL_LABEL, VLLM_SELECTOR, ServerSpec, container_security,
                              pod_security, tolerate)
from components.types import checkov_skips, image_skips

PORT = 8000
UID = 2000  # user `vllm` in the upstream image
HOME = "/home/vllm"
HUB_CACHE = "/models/hub"
READY_DIR = "/models/ready"
WRITABLE = "/models/writable"
API_KEY_ENV = "VLLM_API_KEY"
# checkov findings accepted on model-server Deployments only (tests/stacks/test_checkov.py).
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit: CFS throttling of a latency-critical server; CPU requests are set",
    "CKV_K8S_35": "vLLM reads VLLM_API_KEY from env only",
    "CKV_K8S_40": "the image user vllm is UID 2000 and the EFS access point enforces 2000; restricted PSS holds",
}


def labels(spec: ServerSpec) -> dict:
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/part-of": "llm-serving", **VLLM_SELECTOR}


def ready_marker(spec: ServerSpec) -> str:
    """File the cache Job writes when this model's weights are complete."""
    return f"{READY_DIR}/{spec.name}-{spec.revision or 'unpinned'}"


def probe_budget(seconds: int, period: int = 10) -> int:
    return max(1, -(-seconds // period))


def render_container(spec: ServerSpec, *, api_key_secret: str) -> dict:
    res_name = ACCELERATOR_RESOURCE[spec.kind]
    res = {"cpu": spec.cpu, "memory": spec.memory, res_name: str(spec.accelerator_count)}
    health = {"httpGet": {"path": "/health", "port": PORT}}
    env = [{"name": k, "value": v} for k, v in spec.env]
    env.append({"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": api_key_secret, "key": "api-key"}}})
    return {
        "name": "vllm",
        "image": spec.image,
        "args": list(spec.args),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        # Requests = limits for memory and accelerators (Guaranteed memory; whole devices).
        "resources": {"requests": dict(res), "limits": {"memory": spec.memory, res_name: str(spec.accelerator_count)}},
        "startupProbe": {**health, "periodSeconds": 10, "timeoutSeconds": 5,
                         "failureThreshold": probe_budget(spec.startup_budget_seconds)},
        "readinessProbe": {**health, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 20, "timeoutSeconds": 10, "failureThreshold": 3},
        "securityContext": {**container_security(UID), "runAsGroup": UID},
        "volumeMounts": [
            {"name": "model-cache", "mountPath": "/models", "readOnly": True},
            {"name": "writable", "mountPath": WRITABLE, "subPath": f"writable/{spec.name}"},
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "home", "mountPath": HOME},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def render_pod_spec(spec: ServerSpec, *, cache_claim: str, api_key_secret: str, service_account: str) -> dict:
    wait = {
        "name": "wait-for-weights",
        "image": spec.image,
        "command": ["sh", "-c", f"until [ -f {ready_marker(spec)} ]; do echo waiting for {spec.hf_id}; sleep 10; done"],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}},
        "securityContext": container_security(UID),
        "volumeMounts": [{"name": "model-cache", "mountPath": "/models", "readOnly": True}],
    }
    pod = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(UID),
        "terminationGracePeriodSeconds": 60,
        "nodeSelector": {POOL_LABEL: spec.pool, "node.kubernetes.io/instance-type": spec.instance_type},
        "tolerations": [tolerate(ACCELERATOR_RESOURCE[spec.kind])],
        "initContainers": [wait],
        "containers": [render_container(spec, api_key_secret=api_key_secret)],
        "volumes": [
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": cache_claim}},
            {"name": "writable", "persistentVolumeClaim": {"claimName": cache_claim}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}},
            {"name": "home", "emptyDir": {"sizeLimit": "4Gi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "8Gi"}},
        ],
    }
    if spec.scheduler_name:
        pod["schedulerName"] = spec.scheduler_name
    if spec.replicas >= 2:
        pod["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                             "whenUnsatisfiable": "ScheduleAnyway",
                                             "labelSelector": {"matchLabels": labels(spec)}}]
    return pod


@dataclass(frozen=True)
class VllmServerArgs:
    spec: ServerSpec
    namespace: str
    cache_claim: str
    api_key_secret: str
    after: tuple[pulumi.Resource, ...] = ()


class VllmServer(pulumi.ComponentResource):
    service_host: str

    def __init__(self, name: str, args: VllmServerArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:serving:VllmServer", name, None, opts)
        spec = args.spec
        if spec.name == "vllm":
            raise ValueError("a Service named 'vllm' makes Kubernetes inject VLLM_PORT and vLLM refuses to start")
        lab = labels(spec)
        meta = {"name": spec.name, "namespace": args.namespace, "labels": lab}
        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta, automount_service_account_token=False,
                                        opts=ResourceOptions(parent=self, depends_on=list(args.after)))
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={**meta, "annotations": {
                # A GPU node and a model load take longer than Pulumi's await; readiness is the probes' job.
                "pulumi.com/skipAwait": "true",
                **checkov_skips({**CHECKOV_SKIPS, **image_skips(spec.image)})}},
            spec={
                "replicas": spec.replicas,
                "selector": {"matchLabels": lab},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0 if spec.replicas > 1 else 1, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": lab, "annotations": {"karpenter.sh/do-not-disrupt": "true"}},
                    "spec": render_pod_spec(spec, cache_claim=args.cache_claim, api_key_secret=args.api_key_secret,
                                            service_account=spec.name),
                },
            },
            opts=ResourceOptions(parent=self, depends_on=[sa, *args.after]))
        k8s.core.v1.Service(f"{name}-service", metadata=meta, spec={
            "selector": lab, "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]},
            opts=ResourceOptions(parent=self, depends_on=list(args.after)))
        if spec.replicas >= 2:
            k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata=meta, spec={
                "maxUnavailable": 1, "selector": {"matchLabels": lab}},
                opts=ResourceOptions(parent=self, depends_on=list(args.after)))
        self.service_host = f"{spec.name}.{args.namespace}.svc.cluster.local"
        self.register_outputs({"service_host": self.service_host})
