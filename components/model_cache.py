"""Shared model cache: one RWX PVC on EFS and a warm Job per model that downloads its weights once.

The Job is the only pod that sees the Hugging Face token and the only one that mounts the cache
read-write (servers mount it read-only and run with HF_HUB_OFFLINE=1). When a model's files are
complete it writes a ready marker the servers' init container waits for.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import CACHE_SELECTOR, container_security, pod_security, tolerate
from components.types import checkov_skips, image_skips

UID = 2000
# checkov findings accepted on cache Jobs only (tests/stacks/test_checkov.py).
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit on a one-off download; CPU requests are set",
    "CKV_K8S_40": "UID 2000 like the vLLM image user; the EFS access point enforces 2000",
}
# Only when a gated model adds HF_TOKEN: huggingface_hub could read a token file (HF_TOKEN_PATH) instead.
GATED_SKIPS = {"CKV_K8S_35": "HF_TOKEN as env for gated downloads; a mounted token file is the tracked fix"}
# Weights as safetensors only, plus what the tokenizer and config need.
INCLUDE = ("*.safetensors", "*.json", "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.jinja")


@dataclass(frozen=True)
class CacheItem:
    name: str
    hf_id: str
    revision: Optional[str]
    gated: bool
    marker: str  # file written when complete (see components.vllm.ready_marker)


def render_download_command(item: CacheItem, hub_cache: str) -> list[str]:
    rev = f" --revision {shlex.quote(item.revision)}" if item.revision else ""
    inc = " ".join(f"--include {shlex.quote(p)}" for p in INCLUDE)
    marker_dir = item.marker.rsplit("/", 1)[0]
    script = (f"set -eu; mkdir -p {marker_dir} {hub_cache}; "
              f"hf download {shlex.quote(item.hf_id)}{rev} {inc} --cache-dir {hub_cache}; "
              f"touch {item.marker}")
    return ["sh", "-c", script]


def render_job_spec(item: CacheItem, *, image: str, claim: str, token_secret: Optional[str],
                    system_toleration: str) -> dict:
    env = [{"name": "HF_HUB_CACHE", "value": "/models/hub"}, {"name": "HOME", "value": "/tmp"},
           {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}]
    if item.gated and token_secret:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}}})
    return {
        "backoffLimit": 6,
        "template": {
            "metadata": {"labels": {**CACHE_SELECTOR, "app.kubernetes.io/name": f"cache-{item.name}"}},
            "spec": {
                "restartPolicy": "OnFailure",
                "automountServiceAccountToken": False,
                "securityContext": pod_security(UID),
                # Runs on the system nodes: downloading needs no accelerator.
                "tolerations": [tolerate(system_toleration)],
                "containers": [{
                    "name": "download", "image": image,
                    "command": render_download_command(item, "/models/hub"),
                    "env": env,
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
                    "securityContext": container_security(UID),
                    "volumeMounts": [{"name": "model-cache", "mountPath": "/models"},
                                     {"name": "tmp", "mountPath": "/tmp"}],
                }],
                "volumes": [{"name": "model-cache", "persistentVolumeClaim": {"claimName": claim}},
                            {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}],
            },
        },
    }


@dataclass(frozen=True)
class ModelCacheArgs:
    namespace: str
    storage_class: pulumi.Input[str]
    items: tuple[CacheItem, ...]
    image: str
    hf_token: Optional[pulumi.Input[str]]
    system_toleration: str
    after: tuple[pulumi.Resource, ...] = ()


class ModelCache(pulumi.ComponentResource):
    claim_name: str = "model-cache"

    def __init__(self, name: str, args: ModelCacheArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:serving:ModelCache", name, None, opts)
        after = list(args.after)
        pvc = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-pvc", metadata={"name": self.claim_name, "namespace": args.namespace},
            spec={"accessModes": ["ReadWriteMany"], "storageClassName": args.storage_class,
                  "resources": {"requests": {"storage": "1Ti"}}},  # EFS is elastic; the size is nominal
            opts=ResourceOptions(parent=self, depends_on=after, protect=False))
        token_secret = None
        if args.hf_token is not None and any(i.gated for i in args.items):
            token_secret = "hf-token"
            k8s.core.v1.Secret(f"{name}-hf-token", metadata={"name": token_secret, "namespace": args.namespace},
                               type="Opaque", string_data={"token": args.hf_token},
                               opts=ResourceOptions(parent=self, depends_on=after))
        for item in args.items:
            k8s.batch.v1.Job(
                f"{name}-{item.name}",
                metadata={"name": f"cache-{item.name}", "namespace": args.namespace,
                          # Large downloads outlast Pulumi's await; servers wait on the ready marker.
                          "annotations": {"pulumi.com/skipAwait": "true", **checkov_skips({
                              **CHECKOV_SKIPS, **(GATED_SKIPS if item.gated and token_secret else {}),
                              **image_skips(args.image)})}},
                spec=render_job_spec(item, image=args.image, claim=self.claim_name, token_secret=token_secret,
                                     system_toleration=args.system_toleration),
                opts=ResourceOptions(parent=self, depends_on=[pvc, *after]))
        self.register_outputs({})
