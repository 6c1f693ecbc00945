"""checkov on the AWS resources each stack plans (VPC, EKS, IAM, KMS, SQS, EFS, RDS, ...).

checkov has no Pulumi framework: tests/support/tf_translate.py turns every plan's `resources.json` into
Terraform JSON (one module per stack) and checkov scans them all in one run with `--framework
terraform_json`. A finding fails the test unless checkov_aws_skips.yaml names its check and resource
with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks.yamlio import load_yaml
from tests.conftest import ROOT, STACK_FILES
from tests.support import checkov as checkov_support
from tests.support import tf_translate
from tests.support.shared import missing

CHECKOV = ROOT / ".e2e" / "checkov" / "bin" / "checkov"
SKIPS = Path(__file__).with_name("checkov_aws_skips.yaml")
# Every committed stack, plus the fixture that turns the gateway database (RDS) on.
STACKS = [*STACK_FILES, ROOT / "tests" / "configs" / "gateway-database.ok.yaml"]


@pytest.fixture(scope="module")
def checkov() -> Path:
    if not CHECKOV.exists():
        missing(f"{CHECKOV} not found", "run scripts/setup-e2e.sh (or make test)")
    return CHECKOV


def scan(checkov: Path, directory: Path) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """(check id, stack dir, `aws_type.name`) per failed check, and the number of passed checks per
    stack dir (without --quiet the report lists them)."""
    docs = checkov_support.run(checkov, directory, "--framework", "terraform_json", cwd=directory, timeout=600)
    failed = [
        (f["check_id"], Path(f["file_path"]).parent.name, tf_translate.address(f))
        for d in docs
        for f in d.get("results", {}).get("failed_checks", [])
    ]
    passed: dict[str, int] = {}
    for d in docs:
        for f in d.get("results", {}).get("passed_checks", []):
            stack = Path(f["file_path"]).parent.name
            passed[stack] = passed.get(stack, 0) + 1
    return failed, passed


BARE = "bare"  # the negative controls' folder in the one scan (no stack file is named so)


@pytest.fixture(scope="module")
def scanned(checkov, plan_of, session_once, tmp_path_factory):
    """One checkov run over every stack's module and the negative controls' (checkov's start-up costs
    more than its checks)."""

    def run():
        root = tmp_path_factory.mktemp("checkov-aws")
        for f in STACKS:
            _, _, out = plan_of(f)
            doc = tf_translate.translate(json.loads((out / "resources.json").read_text()))
            tf_translate.write(root / f.stem.removeprefix("Pulumi."), doc)
        tf_translate.write(root / BARE, bare_resources())
        return scan(checkov, root)

    return session_once("checkov-aws", run)


def skips() -> dict[tuple[str, str], str]:
    rows = load_yaml(SKIPS.read_text()) or []
    out = {}
    for row in rows:
        assert set(row) == {"check", "resource", "reason"} and row["reason"].strip(), row
        out[(row["check"], row["resource"])] = row["reason"]
    return out


def test_aws_resources_pass_checkov(scanned):
    failed, passed = scanned
    failed = [(c, s, a) for c, s, a in failed if s != BARE]
    allowed = skips()
    # the scan really ran over every stack's resources
    assert sum(n for s, n in passed.items() if s != BARE) > 100 * len(STACKS) // 2
    unexpected = sorted({(c, a): s for c, s, a in failed if (c, a) not in allowed}.items())
    assert not unexpected, "checkov findings not in checkov_aws_skips.yaml:\n" + "\n".join(
        f"  {c} {a} (e.g. stack {s})" for (c, a), s in unexpected
    )
    # A skip that no longer matches anything is stale: remove it.
    assert set(allowed) <= {(c, a) for c, _, a in failed}, set(allowed) - {(c, a) for c, _, a in failed}


def _res(typ: str, resource_name: str, **inputs) -> dict:
    return {
        "urn": f"urn:pulumi:t::p::{typ}::{resource_name}",
        "type": typ,
        "name": resource_name,
        "parent": None,
        "custom": True,
        "inputs": inputs,
    }


def bare_resources() -> dict:
    """Negative controls: an unencrypted, unretained log group and a bare S3 bucket; a VPC whose flow log
    names it by the mock ID, and a VPC without one."""
    resources = [
        _res("aws:cloudwatch/logGroup:LogGroup", "bare-logs", name="/bare"),
        _res("aws:s3/bucket:Bucket", "bare-bucket", bucket="bare"),
        _res("aws:ec2/vpc:Vpc", "logged-vpc", cidrBlock="10.1.0.0/16"),
        _res("aws:ec2/vpc:Vpc", "silent-vpc", cidrBlock="10.2.0.0/16"),
        _res(
            "aws:cloudwatch/logGroup:LogGroup",
            "flow-logs",
            name="/flow",
            retentionInDays=400,
            kmsKeyId="arn:aws:kms:us-east-1:123456789012:key/x",
        ),
    ]
    from stacks.offline.runtime import _fake_id  # the mock's VPC IDs, as the plan would hand them over

    resources.append(
        _res(
            "aws:ec2/flowLog:FlowLog",
            "flow",
            vpcId="vpc-" + _fake_id("logged-vpc"),
            logDestinationType="cloud-watch-logs",
            trafficType="ALL",
            logDestination="arn:aws:cloudwatch:us-east-1:123456789012:flow-logs",
        )
    )
    return tf_translate.translate(resources)


def test_checkov_flags_bare_resources_and_follows_references(scanned):
    """The bare log group and bucket are flagged; the VPC whose flow log names it by the mock ID passes
    the flow-log graph check, the VPC without one fails it."""
    doc = bare_resources()
    assert doc["resource"]["aws_flow_log"]["flow"]["vpc_id"] == "${aws_vpc.logged-vpc.id}"
    failed = {(c, a) for c, s, a in scanned[0] if s == BARE}
    assert {
        ("CKV_AWS_158", "aws_cloudwatch_log_group.bare-logs"),
        ("CKV_AWS_338", "aws_cloudwatch_log_group.bare-logs"),
        ("CKV2_AWS_11", "aws_vpc.silent-vpc"),
    } <= failed
    assert any(a == "aws_s3_bucket.bare-bucket" for _, a in failed)
    assert ("CKV2_AWS_11", "aws_vpc.logged-vpc") not in failed
    assert not any(a == "aws_cloudwatch_log_group.flow-logs" and c in ("CKV_AWS_158", "CKV_AWS_338") for c, a in failed)


def test_translation_by_hand():
    """Type names, snake_case keys, blocks, free-form maps kept, and the EKS cluster's blocks."""
    assert tf_translate.tf_type("aws:ec2/flowLog:FlowLog") == "aws_flow_log"
    assert tf_translate.tf_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == "aws_iam_role_policy_attachment"
    assert tf_translate.tf_type("aws:rds/instance:Instance") == "aws_db_instance"
    assert tf_translate.tf_type("kubernetes:core/v1:Service") is None
    role = _res("aws:iam/role:Role", "svc", name="svc-role", assumeRolePolicy="{}")
    key = _res("aws:kms/key:Key", "k", enableKeyRotation=True)
    lt = _res(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "lt",
        metadataOptions={"httpTokens": "required"},
        tags={"Name": "x", "karpenter.sh/discovery": "c"},
    )
    eks = {
        **_res(
            "eks:index:Cluster",
            "eks",
            name="c",
            version="1.35",
            serviceRole=role["urn"],
            endpointPublicAccess=False,
            privateSubnetIds=["subnet-a"],
            encryptionConfigKeyArn="arn:aws:kms:us-east-1:123456789012:k",
        ),
        "custom": False,
    }
    doc = tf_translate.translate([role, key, lt, eks])["resource"]
    assert doc["aws_launch_template"]["lt"] == {
        "metadata_options": [{"http_tokens": "required"}],
        "tags": {"Name": "x", "karpenter.sh/discovery": "c"},
    }
    assert doc["aws_eks_cluster"]["eks"] == {
        "name": "c",
        "version": "1.35",
        "role_arn": "${aws_iam_role.svc.arn}",
        "vpc_config": [{"subnet_ids": ["subnet-a"], "endpoint_private_access": False, "endpoint_public_access": False}],
        "enabled_cluster_log_types": [],
        "tags": {},
        "encryption_config": [{"provider": [{"key_arn": "${aws_kms_key.k.arn}"}], "resources": ["secrets"]}],
    }
