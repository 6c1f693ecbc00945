"""Rendered tier: every manifest validates (kubernetes-validate strict; Karpenter CRD schemas)."""

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from stacks import catalog
from stacks.yamlio import load_yaml
from tests.conftest import STACK_FILES
from tests.support.shared import shared_path

# Vendored (tests/schemas/README.md names the source), so a clone without ../shared runs this tier.
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
CRD_SCHEMA = {
    ("karpenter.sh/v1", "NodePool"): "karpenter.sh_v1_NodePool.json",
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): "karpenter.k8s.aws_v1_EC2NodeClass.json",
}
# Prometheus-operator kinds: their CRD schemas are in ../shared/schemas (found through tests/support/shared.py).
SHARED_CRD_SCHEMA = {
    ("monitoring.coreos.com/v1", k): f"schemas/monitoring.coreos.com_v1_{k}.json"
    for k in ("PodMonitor", "ServiceMonitor", "PrometheusRule")
}
SHARED_CRD_SCHEMA[("keda.sh/v1alpha1", "ScaledObject")] = "schemas/keda.sh_v1alpha1_ScaledObject.json"


def manifests(out: Path):
    for f in sorted((out / "manifests").glob("*.yaml")):
        yield f.name, load_yaml(f.read_text())


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_manifests_validate(stack_file, plan_of):
    _, _, out = plan_of(stack_file)
    version = catalog.versions().kubernetes + ".0"
    seen, shared_kinds = 0, []
    for _name, obj in manifests(out):
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_SCHEMA:
            schema = json.loads((SCHEMAS / CRD_SCHEMA[key]).read_text())
            jsonschema.validate(obj, schema)  # the whole object: apiVersion, kind, metadata, spec
        elif key in SHARED_CRD_SCHEMA:
            shared_kinds.append((key, obj))  # after the rest: a clone without ../shared still checks those
            continue
        else:
            kubernetes_validate.validate(obj, version, strict=True)
        seen += 1
    if stack_file.name == "Pulumi.dev.yaml":
        kinds = {}
        for _, obj in manifests(out):
            kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
        # one model, no UI: 2 serving namespaces + gpu-operator; NetworkPolicies; vLLM, LiteLLM and the gateway's
        # front door: Deployments, Services (+ the front door's load balancer), ServiceAccounts (+ the cache Job's
        # own); LiteLLM's and nginx's ConfigMaps, the downloader's pip lock, their PDBs; the cache Job, PVC;
        # vllm-api-key and litellm Secrets, the key table and the scraper's key Secrets.
        # Observability: the monitoring namespace and node exporter's, 4 dashboard ConfigMaps, 2 scraper
        # NetworkPolicies and 9 of the monitoring namespace (default deny and its admits), Grafana's sidecar Role,
        # PodMonitors for vLLM and LiteLLM, ServiceMonitors for Karpenter and DCGM, 1 rule set.
        # Autoscaling: the keda Namespace, a ScaledObject, the gateway's HPA, the model's PDB.
        assert kinds == {
            "ConfigMap": 7,
            "Deployment": 3,
            "EC2NodeClass": 1,
            "HorizontalPodAutoscaler": 1,
            "Job": 1,
            "Namespace": 6,
            "NetworkPolicy": 22,
            "NodePool": 1,
            "PersistentVolumeClaim": 1,
            "PodDisruptionBudget": 3,
            "PodMonitor": 2,
            "PrometheusRule": 1,
            "ServiceMonitor": 2,
            "Role": 1,
            "ScaledObject": 1,
            "Secret": 4,
            "Service": 3,
            "ServiceAccount": 4,
            "StorageClass": 2,
        }
    # Last: the kinds whose schemas live in ../shared (a clone without it has checked everything else).
    for key, obj in shared_kinds:
        # Not jsonschema.validate: these schemas carry Go regexes (`(?i)` mid-pattern) that Python's
        # metaschema check rejects; patterns we do not set are never evaluated.
        schema = json.loads(shared_path(SHARED_CRD_SCHEMA[key]).read_text())
        jsonschema.validators.validator_for(schema)(schema).validate(obj)
        seen += 1
    assert seen == len(list((out / "manifests").glob("*.yaml")))


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
