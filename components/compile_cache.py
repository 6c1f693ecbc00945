"""The content-addressed compile cache: one warm Job per key runs the model server once and stores its
compile artifacts on EFS under the key with a sha256 manifest (incluster/compile_cache/cache.py);
servers copy them into their own emptyDir only when every file matches (components/vllm.py).

The key hashes everything the compile depends on, so a changed input can never load another input's
artifacts: a new key is a new directory, compiled afresh.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import COMPILE_CACHE_CONFIGMAP, checkov_skips

SCRIPT = Path(__file__).resolve().parent.parent / "incluster" / "compile_cache" / "cache.py"
KEY_HEX = 32


def cache_key(*, model: str, revision: str | None, image: str, args: tuple[str, ...], accelerator: str) -> str:
    """sha256 over (model, revision, image, arguments, accelerator), as 32 hex characters. Arguments
    keep their order: vLLM reads flags in order, so a reordered list may be another configuration."""
    blob = json.dumps([model, revision or "", image, list(args), accelerator], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:KEY_HEX]


@dataclass(frozen=True)
class WarmJob:
    name: str  # the model's config key
    key: str
    job_spec: dict  # the warm Job (components.vllm.render_warm_job_spec)
    checkov: dict  # checkov findings accepted on it (check id -> reason)


@dataclass(frozen=True)
class CompileCacheArgs:
    namespace: str
    jobs: tuple[WarmJob, ...]
    after: tuple[pulumi.Resource, ...] = ()


class CompileCache(pulumi.ComponentResource):
    def __init__(self, name: str, args: CompileCacheArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:serving:CompileCache", name, None, opts)
        after = list(args.after)
        cm = k8s.core.v1.ConfigMap(
            f"{name}-script",
            metadata={"name": COMPILE_CACHE_CONFIGMAP, "namespace": args.namespace},
            data={"cache.py": SCRIPT.read_text(encoding="utf-8")},
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        for job in args.jobs:
            k8s.batch.v1.Job(
                f"{name}-{job.name}",
                metadata={
                    # Named by its key: a new key (new image, args, revision) is a new Job.
                    "name": f"warm-{job.key[:16]}",
                    "namespace": args.namespace,
                    "annotations": {"pulumi.com/skipAwait": "true", **checkov_skips(job.checkov)},
                },
                spec=job.job_spec,
                opts=ResourceOptions(parent=self, depends_on=[cm, *after]),
            )
        self.register_outputs({})
