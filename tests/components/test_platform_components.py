"""Pure platform render functions, against hand-written expectations."""

import json

import pytest

from components.cluster import kubeconfig_with_profile, logs_key_policy
from components.nodepool import render_node_class
from components.storage import efs_lifecycle_policies
from components.types import NodeClassSpec
from stacks.config import covers_all_ipv4


def spec(**kw):
    base = {
        "name": "nvidia",
        "kind": "nvidia",
        "ami_alias": "al2023@v20260818",
        "root_volume_gib": 200,
        "root_volume_throughput": 125,
    }
    return NodeClassSpec(**{**base, **kw})


def test_node_class_subnets_by_id_or_by_discovery_tag():
    by_tag = render_node_class(spec(), cluster_name="c1", instance_profile="p")
    assert by_tag["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "c1"}}]
    by_id = render_node_class(spec(subnet_ids=("subnet-1", "subnet-2")), cluster_name="c1", instance_profile="p")
    assert by_id["subnetSelectorTerms"] == [{"id": "subnet-1"}, {"id": "subnet-2"}]
    assert by_id["securityGroupSelectorTerms"] == [{"tags": {"aws:eks:cluster-name": "c1"}}]


def test_node_class_raid0_only_when_asked():
    assert "instanceStorePolicy" not in render_node_class(spec(), cluster_name="c", instance_profile="p")
    out = render_node_class(spec(instance_store_raid0=True), cluster_name="c", instance_profile="p")
    assert out["instanceStorePolicy"] == "RAID0"
    assert out["blockDeviceMappings"][0]["ebs"]["iops"] == 3000


def test_logs_key_policy_scopes_cloudwatch_to_the_named_groups():
    doc = json.loads(
        logs_key_policy(
            account_id="111122223333", region="eu-west-1", partition="aws", log_group_names=("/aws/eks/c/cluster",)
        )
    )
    admin, logs = doc["Statement"]
    assert admin["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert logs["Principal"] == {"Service": "logs.eu-west-1.amazonaws.com"}
    assert "kms:GenerateDataKey*" in logs["Action"] and "kms:Decrypt*" in logs["Action"]
    assert logs["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"] == [
        "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/eks/c/cluster"
    ]


def test_kubeconfig_profile_is_set_once_on_exec_users():
    kc = {
        "users": [
            {
                "name": "aws",
                "user": {
                    "exec": {
                        "command": "aws",
                        "env": [{"name": "AWS_PROFILE", "value": "old"}, {"name": "X", "value": "1"}],
                    }
                },
            },
            {"name": "token", "user": {"token": "t"}},
        ]
    }
    out = json.loads(kubeconfig_with_profile(json.dumps(kc), "ops"))
    assert out["users"][0]["user"]["exec"]["env"] == [
        {"name": "X", "value": "1"},
        {"name": "AWS_PROFILE", "value": "ops"},
    ]
    assert out["users"][1]["user"] == {"token": "t"}


def test_efs_lifecycle_returns_files_on_first_read():
    assert {"transition_to_primary_storage_class": "AFTER_1_ACCESS"} in efs_lifecycle_policies()


@pytest.mark.parametrize(
    "cidrs,open_",
    [
        (["0.0.0.0/0"], True),
        (["0.0.0.0/1", "128.0.0.0/1"], True),
        (["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/2"], True),
        (["0.0.0.0/1", "128.0.0.0/2"], False),
        (["203.0.113.7/32"], False),
        (["::/0"], False),
    ],
)
def test_covers_all_ipv4(cidrs, open_):
    assert covers_all_ipv4(cidrs) is open_
