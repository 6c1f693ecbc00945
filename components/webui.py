"""Open WebUI (optional), talking to the gateway's OpenAI-compatible API."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import UI_SELECTOR, container_security, pod_security, tolerate

PORT = 8080
UID = 1000


def render_webui_pod(image: str, *, gateway_url: str, system_taint: str) -> dict:
    def secret_env(name: str, key: str) -> dict:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": "open-webui", "key": key}}}
    return {
        "automountServiceAccountToken": False,
        "securityContext": pod_security(UID),
        "tolerations": [tolerate(system_taint)],
        "containers": [{
            "name": "open-webui", "image": image,
            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
            "env": [{"name": "OPENAI_API_BASE_URL", "value": f"{gateway_url}/v1"},
                    secret_env("OPENAI_API_KEY", "api-key"), secret_env("WEBUI_SECRET_KEY", "secret-key"),
                    {"name": "ENABLE_OLLAMA_API", "value": "false"},
                    {"name": "HOME", "value": "/tmp"}, {"name": "DATA_DIR", "value": "/app/backend/data"}],
            "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "startupProbe": {"httpGet": {"path": "/health", "port": PORT}, "periodSeconds": 5, "failureThreshold": 60},
            "readinessProbe": {"httpGet": {"path": "/health", "port": PORT}, "periodSeconds": 10},
            "livenessProbe": {"httpGet": {"path": "/health", "port": PORT}, "periodSeconds": 20},
            "securityContext": container_security(UID, read_only_root=False),
            "volumeMounts": [{"name": "data", "mountPath": "/app/backend/data"}, {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "open-webui"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }


@dataclass(frozen=True)
class WebUiArgs:
    namespace: str
    image: str
    gateway_url: str
    api_key: pulumi.Input[str]
    secret_key: pulumi.Input[str]
    storage_class: pulumi.Input[str]
    system_taint: str
    after: tuple[pulumi.Resource, ...] = ()


class OpenWebUi(pulumi.ComponentResource):
    def __init__(self, name: str, args: WebUiArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:OpenWebUi", name, None, opts)
        after = list(args.after)
        ns = args.namespace
        o = lambda *extra: ResourceOptions(parent=self, depends_on=[*after, *extra])  # noqa: E731
        secret = k8s.core.v1.Secret(f"{name}-secret", metadata={"name": "open-webui", "namespace": ns},
                                    string_data={"api-key": args.api_key, "secret-key": args.secret_key}, opts=o())
        pvc = k8s.core.v1.PersistentVolumeClaim(f"{name}-data", metadata={"name": "open-webui", "namespace": ns},
                                                spec={"accessModes": ["ReadWriteOnce"], "storageClassName": args.storage_class,
                                                      "resources": {"requests": {"storage": "10Gi"}}}, opts=o())
        # One replica: more need Postgres and Redis websockets (reference/serving.md).
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata={"name": "open-webui", "namespace": ns, "labels": UI_SELECTOR},
                               spec={"replicas": 1, "strategy": {"type": "Recreate"},
                                     "selector": {"matchLabels": UI_SELECTOR},
                                     "template": {"metadata": {"labels": UI_SELECTOR},
                                                  "spec": render_webui_pod(args.image, gateway_url=args.gateway_url,
                                                                           system_taint=args.system_taint)}},
                               opts=o(secret, pvc))
        k8s.core.v1.Service(f"{name}-service", metadata={"name": "open-webui", "namespace": ns},
                            spec={"selector": UI_SELECTOR, "ports": [{"name": "http", "port": 80, "targetPort": PORT}]},
                            opts=o())
        self.register_outputs({})
