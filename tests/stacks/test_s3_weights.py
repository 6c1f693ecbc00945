"""Weights from S3: the `weights.source` URL rules, the cross-checks, the IAM policies, and what a stack
with S3 weights renders (bucket, Pod Identity, sync Job, server args and egress)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.weights_sync import SyncItem, access_policy, agent_egress_policy, tls_only_policy
from stacks import config
from stacks.compose.cold import s3_args
from stacks.config.s3url import parse
from stacks.yamlio import dump_yaml
from tests.stacks.test_awaited_readiness import waits_for

SHA = "c1899de289a04d12100db370d81485cdf75e47ca"
KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def model(**extra) -> dict:
    return {"models": {"m": {"preset": "qwen3-0.6b", "revision": SHA, **extra}}}


@pytest.mark.parametrize(
    "url, bucket, prefix",
    [
        ("s3://llm-weights/models", "llm-weights", "models"),
        ("s3://llm-weights/models/", "llm-weights", "models"),
        ("s3://abc", "abc", ""),
        ("s3://a1-b2/x/y_z/v1.2", "a1-b2", "x/y_z/v1.2"),
    ],
)
def test_valid_sources_parse(url, bucket, prefix):
    src, problem = parse(url)
    assert problem is None and src is not None
    assert (src.bucket, src.prefix) == (bucket, prefix)


@pytest.mark.parametrize(
    "url, words",
    [
        ("https://llm-weights/models", "not an s3:// URL"),
        ("s3:///models", "not an s3:// URL"),
        ("s3://ab/models", "not an S3 bucket name"),
        ("s3://" + "a" * 64, "not an S3 bucket name"),
        ("s3://Weights/models", "not an S3 bucket name"),
        ("s3://my.weights/models", "no dots"),
        ("s3://-weights/models", "not an S3 bucket name"),
        ("s3://xn--weights/models", "reserves"),
        ("s3://weights-s3alias/models", "reserves"),
        ("s3://192.168.1.1/models", "not an S3 bucket name"),  # dots refused before the IP rule
        ("s3://weights:9000/models", "port"),
        ("s3://user@weights/models", "credentials"),
        ("s3://weights/models?versionId=1", "query"),
        ("s3://weights/models#x", "fragment"),
        ("s3://weights/a/../b", "not a plain key prefix"),
        ("s3://weights/a//b", "not a plain key prefix"),
        ("s3://weights/.hidden", "not a plain key prefix"),
        ("s3://weights/a b", "spaces"),
        ("s3://weights/modèles", "non-ASCII"),
    ],
)
def test_invalid_sources_say_why(url, words):
    src, problem = parse(url)
    assert src is None and problem is not None and words in problem


def test_model_uri_puts_the_pinned_revision_under_the_prefix():
    src, _ = parse("s3://llm-weights/models")
    assert src is not None
    assert src.model_uri("Qwen/Qwen3-0.6B", SHA) == f"s3://llm-weights/models/Qwen/Qwen3-0.6B/{SHA}"
    bare, _ = parse("s3://llm-weights")
    assert bare is not None and bare.model_prefix("org/m", SHA) == f"org/m/{SHA}"


def problems_of(raw: dict, stack: str = "s3") -> list[str]:
    with pytest.raises(config.ConfigError) as e:
        config.resolve(raw, stack=stack)
    return e.value.problems


def test_a_bad_source_names_its_key():
    (line,) = problems_of(model(weights={"source": "s3://Bad_Bucket/x"}))
    assert line.startswith("llm-serving:models.m.weights.source") and "bucket" in line


def test_a_valid_source_resolves():
    intent = config.resolve(model(weights={"source": "s3://llm-weights/models"}), stack="s3")
    assert intent.config.models["m"].weights is not None  # negative control for the refusals below


def test_s3_weights_need_a_commit_sha():
    raw = model(weights={"source": "s3://llm-weights/models"})
    raw["models"]["m"]["revision"] = "main"
    lines = problems_of(raw)
    assert any(ln.startswith("llm-serving:models.m.revision:") and "40-hex" in ln for ln in lines), lines


def test_s3_weights_refuse_the_load_flags_in_extra_args():
    lines = problems_of(model(weights={"source": "s3://llm-weights/m"}, extraArgs=["--load-format=safetensors"]))
    assert any(ln.startswith("llm-serving:models.m.extraArgs:") for ln in lines), lines


def test_s3_weights_are_refused_on_a_team_stack():
    raw = {**model(weights={"source": "s3://llm-weights/m"}), "team": {"name": "t1"}}
    raw["platformStack"] = "org/llm-serving/platform"
    lines = problems_of(raw)
    assert any(ln.startswith("llm-serving:models.m.weights:") and "team stack" in ln for ln in lines), lines


def test_server_args_stream_from_the_uri_without_a_revision_flag():
    args = ("Qwen/Qwen3-0.6B", "--served-model-name", "q", "--revision", SHA, "--port", "8000")
    out = s3_args(args, "s3://b/p")
    assert out[:5] == ("s3://b/p", "--served-model-name", "q", "--port", "8000")
    assert out[5:7] == ("--load-format", "runai_streamer")
    assert json.loads(out[8]) == {"concurrency": 16}


ITEM = SyncItem(
    name="m",
    bucket="llm-weights",
    prefix=f"models/org/m/{SHA}",
    src_dir="/models/hub/x",
    src_marker="/models/ready/a",
    done_marker="/models/ready/a-s3",
    reader_service_account="m",
)


def statements(policy: str) -> list[dict]:
    return json.loads(policy)["Statement"]


def test_reader_policy_is_read_only_on_its_prefix():
    st = statements(access_policy((ITEM,), KEY, "us-east-1", write=False))
    listing, objects, kms = st
    assert listing["Action"] == "s3:ListBucket" and listing["Resource"] == "arn:aws:s3:::llm-weights"
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [f"models/org/m/{SHA}", f"models/org/m/{SHA}/*"]
    assert objects["Action"] == ["s3:GetObject"]
    assert objects["Resource"] == [f"arn:aws:s3:::llm-weights/models/org/m/{SHA}/*"]
    assert kms == {
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": KEY,
        "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
    }


def test_writer_policy_adds_put_and_data_keys_only():
    st = statements(access_policy((ITEM,), KEY, "us-east-1", write=True))
    assert st[1]["Action"] == ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    assert st[2]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert all("*" not in json.dumps(s["Action"]) for s in st)  # no wildcard action


def test_bucket_policy_denies_requests_without_tls():
    (deny,) = statements(tls_only_policy("llm-weights"))
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == ["arn:aws:s3:::llm-weights", "arn:aws:s3:::llm-weights/*"]


def test_egress_reaches_the_pod_identity_agent_and_https():
    rules = agent_egress_policy()["egress"]
    assert rules[0] == {"to": [{"ipBlock": {"cidr": "169.254.170.23/32"}}], "ports": [{"protocol": "TCP", "port": 80}]}
    assert rules[1] == {"ports": [{"protocol": "TCP", "port": 443}]}


# ---- the rendered stack ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    from stacks.plan import k8s_objects, run_program

    root = tmp_path_factory.mktemp("s3w")
    doc = {
        "config": {
            "aws:region": "us-east-1",
            "llm-serving:models": model(weights={"source": "s3://llm-weights/models"})["models"],
        }
    }
    path: Path = root / "Pulumi.s3w.yaml"
    path.write_text(dump_yaml(doc))
    _, rec = run_program("s3w", path)
    return rec, {(o["kind"], o["metadata"]["name"]): o for _, o in k8s_objects(rec)}


def test_the_bucket_is_encrypted_private_versioned(rendered):
    rec, _ = rendered
    (bucket,) = rec.by_type("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucket"] == "llm-weights"
    (sse,) = rec.by_type("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    rule = sse.inputs["rules"][0]
    assert rule["bucketKeyEnabled"] is True
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"]  # the platform data key
    (pab,) = rec.by_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    assert all(pab.inputs[k] is True for k in flags)
    (ver,) = rec.by_type("aws:s3/bucketVersioning:BucketVersioning")
    assert ver.inputs["versioningConfiguration"]["status"] == "Enabled"
    (life,) = rec.by_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    rule = life.inputs["rules"][0]
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 30
    assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7


def test_pod_identity_for_the_sync_job_and_the_server(rendered):
    rec, _ = rendered
    assoc = {
        r.inputs["serviceAccount"]: r.inputs["namespace"]
        for r in rec.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    }
    assert assoc["weights-sync"] == "models" and assoc["m"] == "models"


def test_the_server_is_created_after_its_read_access(rendered):
    """Pod Identity credentials reach a pod only if the association exists when the pod is created."""
    rec, _ = rendered
    (reader,) = [
        r
        for r in rec.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r.inputs["serviceAccount"] == "m"
    ]
    (server,) = [r for r in rec.by_type("kubernetes:apps/v1:Deployment") if r.name == "vllm-m-deployment"]
    assert reader.urn in waits_for(rec.resources, server.urn)
    # negative control: the sync Job's writer association is not something the server waits for
    (writer,) = [
        r
        for r in rec.by_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r.inputs["serviceAccount"] == "weights-sync"
    ]
    assert writer.urn not in waits_for(rec.resources, server.urn)


def test_the_server_streams_and_waits_for_the_sync_marker(rendered):
    _, objs = rendered
    pod = objs[("Deployment", "m")]["spec"]["template"]
    c = pod["spec"]["containers"][0]
    assert c["args"][0] == f"s3://llm-weights/models/Qwen/Qwen3-0.6B/{SHA}"
    assert "runai_streamer" in c["args"]
    assert {"name": "AWS_REGION", "value": "us-east-1"} in c["env"]
    assert pod["metadata"]["labels"]["llm-serving.io/weights"] == "s3"
    wait = pod["spec"]["initContainers"][0]
    marker = next(e["value"] for e in wait["env"] if e["name"] == "READY_MARKER")
    sync = objs[("Job", "sync-m")]["spec"]["template"]["spec"]["containers"][0]
    assert marker.endswith("-s3") and {"name": "DONE_MARKER", "value": marker} in sync["env"]
    assert ("NetworkPolicy", "s3-weights-egress") in objs


def test_a_model_without_weights_renders_no_s3(plan_of):
    """Negative control: the seed stacks render no bucket and no sync Job."""
    from tests.conftest import ROOT

    _, rec, _ = plan_of(ROOT / "stacks" / "examples" / "Pulumi.seed004-qwen3-0-6b-one-gpu.yaml")
    assert not rec.by_type("aws:s3/bucket:Bucket")
