"""The warm path of a model server: weights streamed from S3 (`weights.source`) and the
content-addressed compile cache (`compileCache`). `server_spec` turns a server's spec into the one
that uses them; `weights_sync` and `compile_cache` are the serving steps that fill them."""

from __future__ import annotations

import dataclasses
import json

import pulumi
from pulumi import ResourceOptions

from components.compile_cache import CompileCache, CompileCacheArgs, WarmJob, cache_key
from components.types import SYSTEM_TAINT, ServerSpec, image_skips
from components.vllm import CHECKOV_SKIPS as VLLM_CHECKOV_SKIPS
from components.vllm import HUB_CACHE, VLLM_CACHE_DIR, ready_marker, render_warm_job_spec
from components.weights_sync import SyncItem, WeightsSync, WeightsSyncArgs
from stacks import catalog
from stacks.capacity import planner
from stacks.config import StackIntent
from stacks.config.s3url import S3Source, parse

# The Run:ai Model Streamer's parallel reads per process; vLLM accepts concurrency, memory_limit and
# distributed in --model-loader-extra-config. 16 is the streamer's documented example for S3.
STREAMER_CONCURRENCY = 16


def source(intent: StackIntent, name: str) -> S3Source | None:
    w = intent.config.models[name].weights
    return parse(w.source)[0] if w is not None else None


def s3_marker(hf_id: str, revision: str) -> str:
    """The EFS file the weights-sync Job writes when the S3 prefix is complete."""
    return f"{ready_marker(hf_id, revision)}-s3"


def s3_args(args: tuple[str, ...], uri: str) -> tuple[str, ...]:
    """The model argument becomes the S3 URI (the revision is in it, so no --revision); the weights
    stream through the Run:ai Model Streamer. vLLM pulls config and tokenizer files from the same prefix."""
    out = [uri]
    i = 1
    while i < len(args):
        if args[i] == "--revision":
            i += 2
            continue
        out.append(args[i])
        i += 1
    extra = json.dumps({"concurrency": STREAMER_CONCURRENCY}, separators=(",", ":"))
    return (*out, "--load-format", "runai_streamer", "--model-loader-extra-config", extra)


def server_spec(intent: StackIntent, name: str, spec: ServerSpec) -> ServerSpec:
    """The spec with S3 weights and the compile cache applied (unchanged when the model uses neither)."""
    m = intent.config.models[name]
    src = source(intent, name)
    if src is not None and spec.revision:
        uri = src.model_uri(spec.hf_id, spec.revision)
        # The streamer reads the region from the environment; credentials come from Pod Identity.
        env = (*spec.env, ("AWS_REGION", intent.region), ("AWS_DEFAULT_REGION", intent.region))
        spec = dataclasses.replace(
            spec,
            args=s3_args(spec.args, uri),
            env=env,
            weights_uri=uri,
            weights_marker=s3_marker(spec.hf_id, spec.revision),
        )
    if m.compileCache:
        key = cache_key(
            model=spec.hf_id,
            revision=spec.revision,
            image=spec.image,
            args=spec.args,
            accelerator=f"{spec.kind}:{','.join(spec.instance_types or (spec.instance_type,))}",
        )
        # Inductor's own cache under VLLM_CACHE_ROOT, so the warm Job's copy holds all of it.
        env = (*spec.env, ("TORCHINDUCTOR_CACHE_DIR", f"{VLLM_CACHE_DIR}/inductor"))
        spec = dataclasses.replace(spec, env=env, compile_cache_key=key)
    return spec


def weights_sync(
    intent: StackIntent,
    specs: dict[str, ServerSpec],
    *,
    namespace: str,
    cluster_name: pulumi.Input[str],
    kms_key_arn: pulumi.Input[str] | None,
    cache_claim: str,
    after: tuple[pulumi.Resource, ...],
    opts: ResourceOptions,
) -> WeightsSync | None:
    """The bucket(s), the copy Jobs and the Pod Identity roles, when some model reads its weights from S3."""
    items = []
    for name, s in specs.items():
        src = source(intent, name)
        if src is None or not s.revision or not s.weights_marker:
            continue
        items.append(
            SyncItem(
                name=name,
                bucket=src.bucket,
                prefix=src.model_prefix(s.hf_id, s.revision),
                src_dir=f"{HUB_CACHE}/models--{s.hf_id.replace('/', '--')}/snapshots/{s.revision}",
                src_marker=ready_marker(s.hf_id, s.revision),
                done_marker=s.weights_marker,
                reader_service_account=s.name,
                wait_seconds=planner.download_deadline_seconds(intent.models[name].arch),
            )
        )
    if not items:
        return None
    assert kms_key_arn is not None, "S3 weights are refused on team stacks, so the platform key exists"
    versions = catalog.versions()
    return WeightsSync(
        "weights-sync",
        WeightsSyncArgs(
            cluster_name=cluster_name,
            region=intent.region,
            namespace=namespace,
            items=tuple(items),
            kms_key_arn=kms_key_arn,
            image=versions.image("hf-downloader"),
            boto3_requirement=f"boto3=={versions.boto3_version}",
            cache_claim=cache_claim,
            system_toleration=SYSTEM_TAINT,
            after=after,
        ),
        opts=opts,
    )


def compile_cache(
    specs: dict[str, ServerSpec],
    *,
    namespace: str,
    cache_claim: str,
    api_key_secret: str,
    after: tuple[pulumi.Resource, ...],
    opts: ResourceOptions,
) -> CompileCache | None:
    """One warm Job per compile-cache key (a model with compileCache: true)."""
    jobs = tuple(
        WarmJob(
            name=name,
            key=s.compile_cache_key,
            job_spec=render_warm_job_spec(
                s, cache_claim=cache_claim, api_key_secret=api_key_secret, deadline_seconds=2 * s.startup_budget_seconds
            ),
            checkov={**VLLM_CHECKOV_SKIPS, **image_skips(s.image)},
        )
        for name, s in specs.items()
        if s.compile_cache_key
    )
    if not jobs:
        return None
    return CompileCache("compile-cache", CompileCacheArgs(namespace=namespace, jobs=jobs, after=after), opts=opts)
