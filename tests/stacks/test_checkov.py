"""checkov on every example's rendered manifests: no findings, and every accepted finding is a
skip annotation on the one object it applies to (.checkov.yaml skips nothing globally)."""

import json
import os
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, STACK_FILES

CHECKOV = ROOT / ".e2e" / "checkov" / "bin" / "checkov"


@pytest.fixture(scope="module")
def checkov():
    if not CHECKOV.exists():
        if os.environ.get("E2E_REQUIRED") or os.environ.get("CI"):
            pytest.fail("checkov missing: run scripts/setup-e2e.sh")
        pytest.skip("checkov missing: run scripts/setup-e2e.sh")
    return CHECKOV


def scan(checkov, directory, *, skipped=False):
    quiet = [] if skipped else ["--quiet"]  # --quiet drops the skipped checks from the report
    r = subprocess.run(
        [
            str(checkov),
            "-d",
            str(directory),
            "--config-file",
            str(ROOT / ".checkov.yaml"),
            "--skip-download",
            *quiet,
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        cwd=ROOT,
    )
    docs = json.loads(r.stdout)
    docs = docs if isinstance(docs, list) else [docs]
    key = "skipped_checks" if skipped else "failed_checks"
    return [(f["check_id"], f["resource"]) for d in docs for f in d.get("results", {}).get(key, [])]


def test_rendered_manifests_pass_checkov(checkov, plan_of, tmp_path):
    # One scan over all examples' manifests (checkov startup dominates).
    for f in STACK_FILES:
        _, _, out = plan_of(f)
        d = tmp_path / f.stem
        d.mkdir()
        for m in (out / "manifests").glob("*.yaml"):
            (d / m.name).write_text(m.read_text())
    assert scan(checkov, tmp_path) == []


def test_checkov_finds_a_bad_pod(checkov, tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: models}\n"
        "spec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: busybox\n"
        "    securityContext: {privileged: true}\n"
    )
    ids = {i for i, _ in scan(checkov, tmp_path)}
    assert {"CKV_K8S_16", "CKV_K8S_19"} <= ids  # privileged, hostNetwork


def test_skips_are_scoped_to_the_objects_that_need_them(checkov, plan_of, tmp_path):
    """dev: the accepted findings, per object (hand-written), and a regression on the vLLM server
    (writable root) or a lost annotation on the gateway still fails the scan."""
    _, _, out = plan_of(ROOT / "Pulumi.dev.yaml")
    for m in (out / "manifests").glob("*.yaml"):
        (tmp_path / m.name).write_text(m.read_text())
    tag_only = {"CKV_K8S_43", "CKV_K8S_15"}
    expected = {
        "Deployment.gateway.litellm": {"CKV_K8S_11", "CKV_K8S_35", *tag_only},
        "Deployment.gateway.gateway-frontdoor": {"CKV_K8S_11", "CKV_K8S_40", *tag_only},
        "Deployment.models.qwen3-0-6b": {"CKV_K8S_11", "CKV_K8S_35", "CKV_K8S_40", *tag_only},
        "Job.models.cache-qwen3-0-6b": {"CKV_K8S_11", "CKV_K8S_40", *tag_only},
    }
    got = {}
    for cid, res in scan(checkov, tmp_path, skipped=True):
        got.setdefault(res, set()).add(cid)
    assert got == expected

    vllm = tmp_path / "deployment-models-qwen3-0-6b.yaml"
    d = yaml.safe_load(vllm.read_text())
    d["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    vllm.write_text(yaml.safe_dump(d))
    gw = tmp_path / "deployment-gateway-litellm.yaml"
    d = yaml.safe_load(gw.read_text())
    d["metadata"]["annotations"] = {
        k: v for k, v in d["metadata"]["annotations"].items() if not v.startswith("CKV_K8S_35=")
    }
    gw.write_text(yaml.safe_dump(d))
    assert sorted(scan(checkov, tmp_path)) == [
        ("CKV_K8S_22", "Deployment.models.qwen3-0-6b"),
        ("CKV_K8S_35", "Deployment.gateway.litellm"),
    ]
