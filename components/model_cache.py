"""Shared model cache: one RWX PVC on EFS and a warm Job per model that downloads its weights once.

The Job is the only pod that sees the Hugging Face token (a mounted file, gated models only) and the
only one that mounts the cache read-write (servers mount it read-only and run with HF_HUB_OFFLINE=1).
When a model's files are complete it writes a ready marker the servers' init container waits for.

The Job runs a small Python image on the system nodes: an init container installs `huggingface_hub`
(its `hf` CLI) and its whole closure into an emptyDir, without a shell, from a committed lock of exact
versions and sha256 hashes (requirements/model-cache.lock, shipped in a ConfigMap: pip refuses any
file whose hash differs and resolves nothing itself), then a constant shell script
downloads. Every value the script uses comes from the environment, quoted, so no config value is
ever parsed by a shell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import (
    CACHE_SELECTOR,
    VLLM_UID,
    checkov_skips,
    container_security,
    image_skips,
    pod_security,
    tolerate,
)

UID = VLLM_UID
# checkov findings accepted on cache Jobs only (tests/stacks/test_checkov.py).
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit on a one-off download; CPU requests are set",
    "CKV_K8S_40": f"UID {VLLM_UID} like the vLLM image user; the EFS access point enforces {VLLM_UID}",
}
MODELS = "/models"
HUB_CACHE = f"{MODELS}/hub"
# hf_xet keeps per-Job state on EFS (no size limit, no eviction) and its chunk cache is off: a 10 GB
# default chunk cache on the 4 Gi /tmp emptyDir would get the pod evicted on large models.
XET_CACHE_DIR = f"{MODELS}/xet"
HF_CLI_DIR = "/opt/hf"
# The downloader's lock (`pip-compile --generate-hashes`; scripts/lock.sh model-cache): every wheel of
# the closure for the image's CPython 3.12 on linux x86_64 is in it, so `--no-deps` leaves nothing out.
LOCK_SOURCE = Path(__file__).resolve().parent.parent / "requirements" / "model-cache.lock"
LOCK_CONFIGMAP = "model-cache-pip-lock"
LOCK_DIR = "/etc/model-cache-pip"
LOCK_FILE = "requirements.lock"
TOKEN_DIR = "/var/run/secrets/huggingface"
TOKEN_KEY = "token"
SERVICE_ACCOUNT = "model-cache"
# Weights as safetensors only, plus what the tokenizer and config need.
INCLUDE = ("*.safetensors", "*.json", "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.jinja")


@dataclass(frozen=True)
class CacheItem:
    name: str
    hf_id: str
    revision: str | None
    gated: bool
    marker: str  # file written when complete (see components.vllm.ready_marker)
    deadline_seconds: int = 3600  # the Job fails (visibly) after this long, retries included


def _download_script() -> str:
    """The download container's whole program (constant text; values come from the environment).
    `--` ends the options, so a Hub id can never be read as a flag."""
    inc = " ".join(f"--include '{p}'" for p in INCLUDE)
    return (
        "set -eu; "
        'mkdir -p "$(dirname "$READY_MARKER")" "$HF_HUB_CACHE" "$HF_XET_CACHE"; '
        f'python -m huggingface_hub.cli.hf download --revision "$HF_REVISION" {inc} '
        '--cache-dir "$HF_HUB_CACHE" -- "$HF_ID"; '
        'touch "$READY_MARKER"'
    )


DOWNLOAD_SCRIPT = _download_script()


def render_download_env(item: CacheItem) -> list[dict]:
    """Everything item-specific the download script reads (and the only place config values go)."""
    return [
        {"name": "HF_ID", "value": item.hf_id},
        {"name": "HF_REVISION", "value": item.revision or "main"},
        {"name": "READY_MARKER", "value": item.marker},
        {"name": "HF_XET_CACHE", "value": f"{XET_CACHE_DIR}/{item.marker.rsplit('/', 1)[-1]}"},
    ]


def lock_text() -> str:
    return LOCK_SOURCE.read_text()


def render_install_container(image: str) -> dict:
    """The init container that installs the locked `huggingface_hub` closure into an emptyDir: hashes
    required, no dependency resolution, wheels only (no build step runs code from a source archive)."""
    return {
        "name": "install-hf-cli",
        "image": image,
        # Exec form, no shell.
        "command": [
            "python",
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--require-hashes",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--target",
            HF_CLI_DIR,
            "-r",
            f"{LOCK_DIR}/{LOCK_FILE}",
        ],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": container_security(UID),
        "volumeMounts": [
            {"name": "hf-cli", "mountPath": HF_CLI_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "pip-lock", "mountPath": LOCK_DIR, "readOnly": True},
        ],
    }


def render_download_container(item: CacheItem, image: str, token_secret: str | None) -> tuple[dict, list[dict]]:
    """The download container and the volumes it mounts (the token's only for a gated model)."""
    env = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "USER", "value": "hf"},
        {"name": "PYTHONPATH", "value": HF_CLI_DIR},
        {"name": "HF_HUB_CACHE", "value": HUB_CACHE},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
        {"name": "HF_XET_CHUNK_CACHE_SIZE_BYTES", "value": "0"},
        *render_download_env(item),
    ]
    mounts = [
        {"name": "model-cache", "mountPath": MODELS},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "hf-cli", "mountPath": HF_CLI_DIR, "readOnly": True},
    ]
    volumes: list[dict] = []
    if item.gated and token_secret:
        # huggingface_hub reads the token from HF_TOKEN_PATH: a file, never an environment variable.
        env.append({"name": "HF_TOKEN_PATH", "value": f"{TOKEN_DIR}/{TOKEN_KEY}"})
        mounts.append({"name": "hf-token", "mountPath": TOKEN_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "hf-token",
                "secret": {
                    "secretName": token_secret,
                    "defaultMode": 0o440,
                    "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}],
                },
            }
        )
    container = {
        "name": "download",
        "image": image,
        "command": ["sh", "-c", DOWNLOAD_SCRIPT],
        "env": env,
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
        "securityContext": container_security(UID),
        "volumeMounts": mounts,
    }
    return container, volumes


def render_job_spec(
    item: CacheItem,
    *,
    image: str,
    claim: str,
    token_secret: str | None,
    system_toleration: str,
) -> dict:
    download, token_volumes = render_download_container(item, image, token_secret)
    volumes = [
        {"name": "model-cache", "persistentVolumeClaim": {"claimName": claim}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
        {"name": "hf-cli", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "pip-lock", "configMap": {"name": LOCK_CONFIGMAP}},
        *token_volumes,
    ]
    return {
        "backoffLimit": 6,
        "activeDeadlineSeconds": item.deadline_seconds,
        "template": {
            "metadata": {"labels": {**CACHE_SELECTOR, "app.kubernetes.io/name": f"cache-{item.name}"}},
            "spec": {
                "restartPolicy": "OnFailure",
                "serviceAccountName": SERVICE_ACCOUNT,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": pod_security(UID),
                # Runs on the system nodes: downloading needs no accelerator.
                "tolerations": [tolerate(system_toleration)],
                "initContainers": [render_install_container(image)],
                "containers": [download],
                "volumes": volumes,
            },
        },
    }


@dataclass(frozen=True)
class ModelCacheArgs:
    namespace: str
    storage_class: pulumi.Input[str]
    items: tuple[CacheItem, ...]
    image: str
    hf_token: pulumi.Input[str] | None
    system_toleration: str
    after: tuple[pulumi.Resource, ...] = ()


class ModelCache(pulumi.ComponentResource):
    claim_name: str = "model-cache"

    def _lock(self, name: str, namespace: str, after: list[pulumi.Resource]) -> k8s.core.v1.ConfigMap:
        """The downloader's hash lock, mounted by the install container."""
        return k8s.core.v1.ConfigMap(
            f"{name}-pip-lock",
            metadata={"name": LOCK_CONFIGMAP, "namespace": namespace},
            data={LOCK_FILE: lock_text()},
            opts=ResourceOptions(parent=self, depends_on=after),
        )

    def __init__(self, name: str, args: ModelCacheArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:serving:ModelCache", name, None, opts)
        after = list(args.after)
        pvc = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-pvc",
            metadata={"name": self.claim_name, "namespace": args.namespace},
            spec={
                "accessModes": ["ReadWriteMany"],
                "storageClassName": args.storage_class,
                "resources": {"requests": {"storage": "1Ti"}},
            },  # EFS is elastic; the size is nominal
            opts=ResourceOptions(parent=self, depends_on=after, protect=False),
        )
        # Its own identity (no API token mounted): never the namespace's default ServiceAccount.
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={"name": SERVICE_ACCOUNT, "namespace": args.namespace},
            automount_service_account_token=False,
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        deps = [pvc, sa, self._lock(name, args.namespace, after), *after]
        token_secret = None
        if args.hf_token is not None and any(i.gated for i in args.items):
            token_secret = "hf-token"
            deps.append(
                k8s.core.v1.Secret(
                    f"{name}-hf-token",
                    metadata={"name": token_secret, "namespace": args.namespace},
                    type="Opaque",
                    string_data={TOKEN_KEY: args.hf_token},
                    opts=ResourceOptions(parent=self, depends_on=after),
                )
            )
        for item in args.items:
            k8s.batch.v1.Job(
                f"{name}-{item.name}",
                metadata={
                    "name": f"cache-{item.name}",
                    "namespace": args.namespace,
                    # Large downloads outlast Pulumi's await; servers wait on the ready marker.
                    "annotations": {
                        "pulumi.com/skipAwait": "true",
                        **checkov_skips({**CHECKOV_SKIPS, **image_skips(args.image)}),
                    },
                },
                spec=render_job_spec(
                    item,
                    image=args.image,
                    claim=self.claim_name,
                    token_secret=token_secret,
                    system_toleration=args.system_toleration,
                ),
                opts=ResourceOptions(parent=self, depends_on=deps),
            )
        self.register_outputs({})
