"""Rendered tier: every manifest validates (kubernetes-validate strict; Karpenter CRD schemas)."""

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from stacks import catalog
from tests.conftest import STACK_FILES

# Vendored (tests/schemas/README.md names the source), so a clone without ../shared runs this tier.
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
CRD_SCHEMA = {
    ("karpenter.sh/v1", "NodePool"): "karpenter.sh_v1_NodePool.json",
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): "karpenter.k8s.aws_v1_EC2NodeClass.json",
}


def manifests(out: Path):
    for f in sorted((out / "manifests").glob("*.yaml")):
        yield f.name, yaml.safe_load(f.read_text())


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_manifests_validate(stack_file, plan_of):
    _, _, out = plan_of(stack_file)
    version = catalog.versions().kubernetes + ".0"
    seen = 0
    for _name, obj in manifests(out):
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_SCHEMA:
            schema = json.loads((SCHEMAS / CRD_SCHEMA[key]).read_text())
            jsonschema.validate(obj, schema)  # the whole object: apiVersion, kind, metadata, spec
        else:
            kubernetes_validate.validate(obj, version, strict=True)
        seen += 1
    assert seen == len(list((out / "manifests").glob("*.yaml")))
    if stack_file.name == "Pulumi.dev.yaml":
        kinds = {}
        for _, obj in manifests(out):
            kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
        # one model, no UI: 2 serving namespaces + gpu-operator; 5 + 6 NetworkPolicies; vLLM, LiteLLM and the
        # gateway's front door: Deployments, Services (+ the front door's load balancer), ServiceAccounts (+ the
        # cache Job's own); LiteLLM's and nginx's ConfigMaps, their PDBs; the cache Job, PVC; vllm-api-key and
        # litellm Secrets.
        assert kinds == {
            "ConfigMap": 2,
            "Deployment": 3,
            "EC2NodeClass": 1,
            "Job": 1,
            "Namespace": 3,
            "NetworkPolicy": 11,
            "NodePool": 1,
            "PersistentVolumeClaim": 1,
            "PodDisruptionBudget": 2,
            "Secret": 2,
            "Service": 3,
            "ServiceAccount": 4,
            "StorageClass": 2,
        }


def test_bad_nodepool_fails_the_schema():
    """The schema check can fail: an unknown consolidation policy is rejected."""
    schema = json.loads((SCHEMAS / CRD_SCHEMA[("karpenter.sh/v1", "NodePool")]).read_text())
    spec = {
        "template": {
            "spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "x"},
                "requirements": [],
            }
        },
        "disruption": {"consolidationPolicy": "Sometimes"},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(spec, schema["properties"]["spec"])
