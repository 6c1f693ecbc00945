"""checkov on every example's rendered manifests: no findings, and every accepted finding is a
skip annotation on the one object it applies to (.checkov.yaml skips nothing globally)."""

from tests.conftest import STACK_FILES
from tests.support.checkov import of


def test_rendered_manifests_pass_checkov(checkov_k8s):
    scanned = {f.stem for f in STACK_FILES}
    assert [(d, v["failed"]) for d, v in sorted(checkov_k8s.items()) if d in scanned and v["failed"]] == []
    # the scan read every stack: each has skip annotations (the gateway's, at least)
    assert {d for d, v in checkov_k8s.items() if v["skipped"]} >= scanned


def test_checkov_finds_a_bad_pod(checkov_k8s):
    ids = {i for i, _ in of(checkov_k8s, "bad-pod", "failed")}
    assert {"CKV_K8S_16", "CKV_K8S_19"} <= ids  # privileged, hostNetwork


def test_skips_are_scoped_to_the_objects_that_need_them(checkov_k8s):
    """dev: the accepted findings, per object (hand-written), and a regression on the vLLM server
    (writable root) or a lost annotation on the gateway still fails the scan."""
    tag_only = {"CKV_K8S_43", "CKV_K8S_15"}
    expected = {
        "Deployment.gateway.litellm": {"CKV_K8S_11", "CKV_K8S_35", *tag_only},
        "Deployment.gateway.gateway-frontdoor": {"CKV_K8S_11", "CKV_K8S_40", *tag_only},
        "Deployment.models.qwen3-0-6b": {"CKV_K8S_11", "CKV_K8S_35", "CKV_K8S_40", *tag_only},
        "Job.models.cache-qwen3-0-6b": {"CKV_K8S_11", "CKV_K8S_40", *tag_only},
    }
    got: dict = {}
    for cid, res in of(checkov_k8s, "Pulumi.dev", "skipped"):
        got.setdefault(res, set()).add(cid)
    assert got == expected
    assert sorted(of(checkov_k8s, "dev-regressed", "failed")) == [
        ("CKV_K8S_22", "Deployment.models.qwen3-0-6b"),
        ("CKV_K8S_35", "Deployment.gateway.litellm"),
    ]
