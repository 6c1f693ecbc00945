"""Open WebUI (optional), talking to the gateway's OpenAI-compatible API."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import (
    UI_SELECTOR,
    WEBUI_PORT,
    ImagePin,
    checkov_skips,
    container_security,
    image_skips,
    pod_security,
    tolerate,
)

PORT = WEBUI_PORT
TMP = "/tmp"
# The PVC: outside /app/backend/data, whose cache/ subtree holds the embedding model and tiktoken
# files baked into the image (SENTENCE_TRANSFORMERS_HOME, TIKTOKEN_CACHE_DIR, HF_HOME point there).
DATA_DIR = "/var/lib/open-webui"
SERVICE_ACCOUNT = "open-webui"
# The egress policy lets the UI reach only the gateway and DNS: no Hub downloads, no telemetry.
OFFLINE_ENV = {
    "OFFLINE_MODE": "true",
    "HF_HUB_OFFLINE": "1",
    "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
    "RAG_RERANKING_MODEL_AUTO_UPDATE": "false",
    "ANONYMIZED_TELEMETRY": "false",
}
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit on the UI; CPU requests are set",
    "CKV_K8S_35": "Open WebUI reads OPENAI_API_KEY and WEBUI_SECRET_KEY from env only",
    "CKV_K8S_40": (
        "UID 1000: the image is built for UID 0 and takes any non-root UID with HOME set; restricted PSS holds"
    ),
}


def webui_uid(image: ImagePin) -> int:
    if image.user is None:
        raise ValueError(f"{image.ref}: the catalog row needs `user:` (the UID the pod runs it as)")
    return image.user


def access_env(allow_signup: bool) -> list[dict]:
    """Who gets an account. Open WebUI's signup route creates the first account (the admin) even with
    sign-up off; after it, only the admin adds users unless `ui.allowSignup`, and a new account waits
    for the admin's approval (`pending`). Persistent config off: these come from the stack file on
    every start, not from what the database kept from an earlier one."""
    return [
        {"name": "WEBUI_AUTH", "value": "true"},
        {"name": "ENABLE_SIGNUP", "value": "true" if allow_signup else "false"},
        {"name": "DEFAULT_USER_ROLE", "value": "pending"},
        {"name": "ENABLE_PERSISTENT_CONFIG", "value": "false"},
    ]


def render_webui_pod(image: ImagePin, *, gateway_url: str, system_taint: str, allow_signup: bool = False) -> dict:
    uid = webui_uid(image)

    def secret_env(name: str, key: str) -> dict:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": "open-webui", "key": key}}}

    return {
        "automountServiceAccountToken": False,
        "serviceAccountName": SERVICE_ACCOUNT,
        "securityContext": pod_security(uid),
        "tolerations": [tolerate(system_taint)],
        "containers": [
            {
                "name": "open-webui",
                "image": image.ref,
                "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                "env": [
                    {"name": "OPENAI_API_BASE_URL", "value": f"{gateway_url}/v1"},
                    secret_env("OPENAI_API_KEY", "api-key"),
                    secret_env("WEBUI_SECRET_KEY", "secret-key"),
                    {"name": "ENABLE_OLLAMA_API", "value": "false"},
                    *access_env(allow_signup),
                    *({"name": k, "value": v} for k, v in OFFLINE_ENV.items()),
                    {"name": "HOME", "value": TMP},
                    {"name": "DATA_DIR", "value": DATA_DIR},
                ],
                "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                "startupProbe": {
                    "httpGet": {"path": "/health", "port": PORT},
                    "periodSeconds": 5,
                    "failureThreshold": 60,
                },
                "readinessProbe": {"httpGet": {"path": "/health", "port": PORT}, "periodSeconds": 10},
                "livenessProbe": {"httpGet": {"path": "/health", "port": PORT}, "periodSeconds": 20},
                "securityContext": container_security(uid, read_only_root=True),
                "volumeMounts": [{"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": TMP}],
            }
        ],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "open-webui"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
    }


@dataclass(frozen=True)
class WebUiArgs:
    namespace: str
    image: ImagePin
    gateway_url: str
    api_key: pulumi.Input[str]
    secret_key: pulumi.Input[str]
    storage_class: pulumi.Input[str]
    system_taint: str
    allow_signup: bool = False  # ui.allowSignup
    after: tuple[pulumi.Resource, ...] = ()


class OpenWebUi(pulumi.ComponentResource):
    def __init__(self, name: str, args: WebUiArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:OpenWebUi", name, None, opts)
        after = list(args.after)
        ns = args.namespace
        o = lambda *extra: ResourceOptions(parent=self, depends_on=[*after, *extra])  # noqa: E731
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": "open-webui", "namespace": ns},
            string_data={"api-key": args.api_key, "secret-key": args.secret_key},
            opts=o(),
        )
        pvc = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-data",
            metadata={"name": "open-webui", "namespace": ns},
            spec={
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": args.storage_class,
                "resources": {"requests": {"storage": "10Gi"}},
            },
            opts=o(),
        )
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={"name": SERVICE_ACCOUNT, "namespace": ns},
            automount_service_account_token=False,
            opts=o(),
        )
        # One replica: Open WebUI runs more only with a shared Postgres and Redis (for its websockets).
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                "name": "open-webui",
                "namespace": ns,
                "labels": UI_SELECTOR,
                "annotations": checkov_skips({**CHECKOV_SKIPS, **image_skips(args.image.ref)}),
            },
            spec={
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": UI_SELECTOR},
                "template": {
                    "metadata": {"labels": UI_SELECTOR},
                    "spec": render_webui_pod(
                        args.image,
                        gateway_url=args.gateway_url,
                        system_taint=args.system_taint,
                        allow_signup=args.allow_signup,
                    ),
                },
            },
            opts=o(secret, pvc, sa),
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": "open-webui", "namespace": ns},
            spec={"selector": UI_SELECTOR, "ports": [{"name": "http", "port": 80, "targetPort": PORT}]},
            opts=o(),
        )
        self.register_outputs({})
