"""Weights on S3: the bucket, a Job per model that copies its pinned revision there once, and the
Pod Identity roles (the Job read-write on its prefixes, each server read-only on its own prefix).

The bucket is the stack's own (named in the config's `weights.source`): SSE-KMS with the platform
key and a bucket key, versioning, every public access blocked, ACLs off, requests without TLS denied.
The Job copies from the shared EFS cache (the cache Job's download) after its ready marker exists,
then writes a marker of its own on EFS that the servers' init container waits for.
Pod Identity: the agent (an EKS add-on, installed with the cluster) answers on 169.254.170.23:80,
so the Job and the servers get a NetworkPolicy egress rule to it besides HTTPS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import (
    CACHE_SELECTOR,
    S3_WEIGHTS_LABEL,
    VLLM_UID,
    checkov_skips,
    container_security,
    image_skips,
    pod_identity_trust,
    pod_security,
    tolerate,
)

SCRIPT = Path(__file__).resolve().parent.parent / "incluster" / "weights_sync" / "sync.py"
SERVICE_ACCOUNT = "weights-sync"
MODELS = "/models"
LIB_DIR = "/opt/s3"
SCRIPT_DIR = "/opt/sync"
# The EKS Pod Identity agent's link-local address (IPv4) and port on every node.
POD_IDENTITY_AGENT = ("169.254.170.23/32", 80)
NONCURRENT_DAYS = 30
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit on a one-off copy; CPU requests are set",
    "CKV_K8S_40": f"UID {VLLM_UID} like the cache Job; the EFS access point enforces {VLLM_UID}",
}


@dataclass(frozen=True)
class SyncItem:
    name: str  # the model's config key
    bucket: str
    prefix: str  # <prefix>/<hfId>/<revision>, no slashes at either end
    src_dir: str  # the revision's snapshot on EFS
    src_marker: str  # the cache Job's ready marker
    done_marker: str  # written on EFS when the prefix is complete
    reader_service_account: str  # the model server's ServiceAccount (read-only on `prefix`)
    wait_seconds: int = 3600


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def tls_only_policy(bucket: str) -> str:
    """Deny every request that is not over TLS (aws:SecureTransport false)."""
    arn = bucket_arn(bucket)
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [arn, f"{arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def access_policy(items: tuple[SyncItem, ...], kms_key_arn: str, region: str, *, write: bool) -> str:
    """S3 on exactly these prefixes (listing limited by the s3:prefix condition), and the key use SSE-KMS
    needs through S3 only: Decrypt to read; GenerateDataKey too to write (multipart uploads read parts
    back, so writers need Decrypt as well)."""
    objects = ["s3:GetObject"] + (["s3:PutObject", "s3:AbortMultipartUpload"] if write else [])
    statements: list[dict] = []
    for bucket in sorted({i.bucket for i in items}):
        prefixes = sorted(i.prefix for i in items if i.bucket == bucket)
        statements.append(
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn(bucket),
                "Condition": {"StringLike": {"s3:prefix": [p for x in prefixes for p in (x, f"{x}/*")]}},
            }
        )
        statements.append(
            {"Effect": "Allow", "Action": objects, "Resource": [f"{bucket_arn(bucket)}/{p}/*" for p in prefixes]}
        )
    statements.append(
        {
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"] if write else ["kms:Decrypt"],
            "Resource": kms_key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        }
    )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def agent_egress_policy() -> dict:
    """Egress to the Pod Identity agent and HTTPS (S3) for the pods that use Pod Identity here."""
    cidr, port = POD_IDENTITY_AGENT
    return {
        "podSelector": {"matchLabels": S3_WEIGHTS_LABEL},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": port}]},
            {"ports": [{"protocol": "TCP", "port": 443}]},
        ],
    }


def render_install_container(image: str, boto3_requirement: str) -> dict:
    """The init container that installs the pinned boto3 into an emptyDir (exec form, no shell)."""
    return {
        "name": "install-boto3",
        "image": image,
        "command": ["python", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check"]
        + ["--no-warn-script-location", "--target", LIB_DIR, boto3_requirement],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": container_security(VLLM_UID),
        "volumeMounts": [{"name": "lib", "mountPath": LIB_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def render_job_spec(item: SyncItem, *, image: str, boto3_requirement: str, claim: str, toleration: str) -> dict:
    env = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONPATH", "value": LIB_DIR},
        {"name": "SRC_DIR", "value": item.src_dir},
        {"name": "SRC_MARKER", "value": item.src_marker},
        {"name": "DONE_MARKER", "value": item.done_marker},
        {"name": "BUCKET", "value": item.bucket},
        {"name": "PREFIX", "value": item.prefix},
        {"name": "WAIT_SECONDS", "value": str(item.wait_seconds)},
    ]
    security = container_security(VLLM_UID)
    copy = {
        "name": "sync",
        "image": image,
        "command": ["python", f"{SCRIPT_DIR}/sync.py"],
        "env": env,
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
        "securityContext": security,
        "volumeMounts": [
            {"name": "model-cache", "mountPath": MODELS},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "lib", "mountPath": LIB_DIR, "readOnly": True},
            {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True},
        ],
    }
    return {
        "backoffLimit": 6,
        "activeDeadlineSeconds": 2 * item.wait_seconds,
        "template": {
            "metadata": {
                "labels": {**CACHE_SELECTOR, **S3_WEIGHTS_LABEL, "app.kubernetes.io/name": f"sync-{item.name}"}
            },
            "spec": {
                "restartPolicy": "OnFailure",
                "serviceAccountName": SERVICE_ACCOUNT,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": pod_security(VLLM_UID),
                "tolerations": [tolerate(toleration)],
                "initContainers": [render_install_container(image, boto3_requirement)],
                "containers": [copy],
                "volumes": [
                    {"name": "model-cache", "persistentVolumeClaim": {"claimName": claim}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
                    {"name": "lib", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "script", "configMap": {"name": "weights-sync", "defaultMode": 0o444}},
                ],
            },
        },
    }


@dataclass(frozen=True)
class WeightsSyncArgs:
    cluster_name: pulumi.Input[str]
    region: str
    namespace: str
    items: tuple[SyncItem, ...]
    kms_key_arn: pulumi.Input[str]
    image: str
    boto3_requirement: str  # e.g. "boto3==1.44.18" (pinned in the version catalog)
    cache_claim: str
    system_toleration: str
    after: tuple[pulumi.Resource, ...] = ()


class WeightsSync(pulumi.ComponentResource):
    def __init__(self, name: str, args: WeightsSyncArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:serving:WeightsSync", name, None, opts)
        child = ResourceOptions(parent=self)
        buckets = [self._bucket(name, b, args, child) for b in sorted({i.bucket for i in args.items})]
        writer = self._role(f"{name}-writer", SERVICE_ACCOUNT, args.items, args, buckets, write=True)
        # Model name -> its servers' read association. A pod gets Pod Identity credentials only if the
        # association exists when the pod is created: the servers and warm Jobs wait for it.
        self.readers: dict[str, pulumi.Resource] = {
            item.name: self._role(
                f"{name}-{item.name}-reader", item.reader_service_account, (item,), args, buckets, write=False
            )
            for item in args.items
        }
        self._k8s(name, args, writer)
        self.register_outputs({"buckets": [b.bucket for b in buckets]})

    def _bucket(self, name: str, bucket: str, args: WeightsSyncArgs, child: ResourceOptions) -> aws.s3.Bucket:
        """The bucket and its settings, one after another: S3 refuses concurrent changes to one bucket's
        configuration (OperationAborted), which would fail a first `pulumi up` at random."""
        b = aws.s3.Bucket(f"{name}-{bucket}", bucket=bucket, force_destroy=False, opts=child)
        last: pulumi.Resource = b

        def after_last() -> ResourceOptions:
            return ResourceOptions(parent=self, depends_on=[last])

        last = aws.s3.BucketPublicAccessBlock(
            f"{name}-{bucket}-public-access",
            bucket=b.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=after_last(),
        )
        last = aws.s3.BucketOwnershipControls(
            f"{name}-{bucket}-ownership",
            bucket=b.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=after_last(),
        )
        sse = {"sse_algorithm": "aws:kms", "kms_master_key_id": args.kms_key_arn}
        last = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-{bucket}-sse",
            bucket=b.id,
            rules=[{"apply_server_side_encryption_by_default": sse, "bucket_key_enabled": True}],
            opts=after_last(),
        )
        last = aws.s3.BucketVersioning(
            f"{name}-{bucket}-versioning",
            bucket=b.id,
            versioning_configuration={"status": "Enabled"},
            opts=after_last(),
        )
        last = aws.s3.BucketPolicy(
            f"{name}-{bucket}-tls-only", bucket=b.id, policy=tls_only_policy(bucket), opts=after_last()
        )
        # Versioning keeps overwritten objects: they expire; so do the parts of an upload that never finished.
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-{bucket}-lifecycle",
            bucket=b.id,
            rules=[
                {
                    "id": "noncurrent-and-incomplete",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": NONCURRENT_DAYS},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                }
            ],
            opts=after_last(),
        )
        return b

    def _role(
        self,
        name: str,
        service_account: str,
        items: tuple[SyncItem, ...],
        args: WeightsSyncArgs,
        buckets: list[aws.s3.Bucket],
        *,
        write: bool,
    ) -> aws.eks.PodIdentityAssociation:
        child = ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-role", assume_role_policy=pod_identity_trust(), opts=child)
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.from_input(args.kms_key_arn).apply(
                lambda key: access_policy(items, key, args.region, write=write)
            ),
            opts=ResourceOptions(parent=self, depends_on=list(buckets)),
        )
        return aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=args.cluster_name,
            namespace=args.namespace,
            service_account=service_account,
            role_arn=role.arn,
            opts=child,
        )

    def _k8s(self, name: str, args: WeightsSyncArgs, writer: aws.eks.PodIdentityAssociation) -> None:
        kopts = ResourceOptions(parent=self, depends_on=list(args.after))
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={"name": SERVICE_ACCOUNT, "namespace": args.namespace},
            automount_service_account_token=False,
            opts=kopts,
        )
        cm = k8s.core.v1.ConfigMap(
            f"{name}-script",
            metadata={"name": "weights-sync", "namespace": args.namespace},
            data={"sync.py": SCRIPT.read_text(encoding="utf-8")},
            opts=kopts,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-egress",
            metadata={"name": "s3-weights-egress", "namespace": args.namespace},
            spec=agent_egress_policy(),
            opts=kopts,
        )
        deps = ResourceOptions(parent=self, depends_on=[sa, cm, writer, *args.after])
        for item in args.items:
            k8s.batch.v1.Job(
                f"{name}-{item.name}",
                metadata={
                    "name": f"sync-{item.name}",
                    "namespace": args.namespace,
                    "annotations": {
                        "pulumi.com/skipAwait": "true",
                        **checkov_skips({**CHECKOV_SKIPS, **image_skips(args.image)}),
                    },
                },
                spec=render_job_spec(
                    item,
                    image=args.image,
                    boto3_requirement=args.boto3_requirement,
                    claim=args.cache_claim,
                    toleration=args.system_toleration,
                ),
                opts=deps,
            )
