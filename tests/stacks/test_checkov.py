"""checkov on every example's rendered manifests: no findings beyond .checkov.yaml's skip list."""
import json
import os
import subprocess

import pytest

from tests.conftest import ROOT, STACK_FILES

CHECKOV = ROOT / ".e2e" / "checkov" / "bin" / "checkov"


@pytest.fixture(scope="module")
def checkov():
    if not CHECKOV.exists():
        if os.environ.get("E2E_REQUIRED") or os.environ.get("CI"):
            pytest.fail("checkov missing: run scripts/setup-e2e.sh")
        pytest.skip("checkov missing: run scripts/setup-e2e.sh")
    return CHECKOV


def scan(checkov, directory):
    r = subprocess.run([str(checkov), "-d", str(directory), "--config-file", str(ROOT / ".checkov.yaml"),
                        "--skip-download", "--quiet", "--compact", "-o", "json"], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"}, cwd=ROOT)
    docs = json.loads(r.stdout)
    docs = docs if isinstance(docs, list) else [docs]
    return [(f["check_id"], f["resource"]) for d in docs for f in d.get("results", {}).get("failed_checks", [])]


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
        "    securityContext: {privileged: true}\n")
    ids = {i for i, _ in scan(checkov, tmp_path)}
    assert {"CKV_K8S_16", "CKV_K8S_19"} <= ids  # privileged, hostNetwork
