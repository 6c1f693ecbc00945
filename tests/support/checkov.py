"""checkov on rendered Kubernetes manifests: one scan per test run over every folder the tests read
(checkov's start-up costs more than its checks). tests/conftest.py's `checkov_k8s` fixture runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from stacks.yamlio import dump_yaml, load_yaml

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".e2e" / "checkov" / "bin" / "checkov"


def run(checkov, directory, *options: str, cwd=ROOT, timeout: int = 300) -> list[dict]:
    """checkov's JSON report on `directory`, one document per framework; `options` add to the common ones."""
    # Without --quiet the report holds the skipped (and passed) checks beside the failed ones: one run gives both.
    r = subprocess.run(
        [str(checkov), "-d", str(directory), *options, "--skip-download", "--compact", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        cwd=cwd,
    )
    assert r.stdout.strip(), f"checkov printed nothing (exit {r.returncode}): {r.stderr[-2000:]}"
    docs = json.loads(r.stdout)
    return docs if isinstance(docs, list) else [docs]


def _findings(docs: list[dict], kind: str) -> list[tuple[str, str, str]]:
    """(check id, resource, first folder of the file under the scanned directory) per finding."""
    return [
        (f["check_id"], f["resource"], Path(f["file_path"]).parts[Path(f["file_path"]).is_absolute()])
        for d in docs
        for f in d.get("results", {}).get(f"{kind}_checks", [])
    ]


BAD_POD = (
    "apiVersion: v1\nkind: Pod\nmetadata: {name: bad, namespace: models}\n"
    "spec:\n  hostNetwork: true\n  containers:\n  - name: c\n    image: busybox\n"
    "    securityContext: {privileged: true}\n"
)


def _copy_manifests(out: Path, d: Path) -> None:
    d.mkdir()
    for m in (out / "manifests").glob("*.yaml"):
        (d / m.name).write_text(m.read_text())


def _regress_dev(d: Path) -> None:
    """dev with a writable root on the vLLM server and the gateway's CKV_K8S_35 annotation lost."""
    vllm = d / "deployment-models-qwen3-0-6b.yaml"
    doc = load_yaml(vllm.read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    vllm.write_text(dump_yaml(doc))
    gw = d / "deployment-gateway-litellm.yaml"
    doc = load_yaml(gw.read_text())
    doc["metadata"]["annotations"] = {
        k: v for k, v in doc["metadata"]["annotations"].items() if not v.startswith("CKV_K8S_35=")
    }
    gw.write_text(dump_yaml(doc))


def scan_folders(checkov: Path, root: Path, plan_of, stack_files: list[Path], extra: dict | None = None) -> dict:
    """{folder: {"failed": [...], "skipped": [...]}} from one scan of: each stack's manifests (a folder
    named after its file), a bad pod ("bad-pod"), dev regressed ("dev-regressed", see _regress_dev) and
    `extra` ({folder: [objects]}: what other tests render outside a stack, e.g. the bench Job)."""
    for f in stack_files:
        _copy_manifests(plan_of(f)[2], root / f.stem)
    for folder, objects in (extra or {}).items():
        (root / folder).mkdir()
        for i, obj in enumerate(objects):
            (root / folder / f"{i}.yaml").write_text(dump_yaml(obj))
    (root / "bad-pod").mkdir()
    (root / "bad-pod" / "bad.yaml").write_text(BAD_POD)
    _copy_manifests(plan_of(ROOT / "Pulumi.dev.yaml")[2], root / "dev-regressed")
    _regress_dev(root / "dev-regressed")
    docs = run(checkov, root, "--config-file", str(ROOT / ".checkov.yaml"))
    out: dict = {}
    for kind in ("failed", "skipped"):
        for cid, res, folder in _findings(docs, kind):
            out.setdefault(folder, {"failed": [], "skipped": []})[kind].append((cid, res))
    return out


def of(findings, folder: str, kind: str) -> list[tuple[str, str]]:
    return findings.get(folder, {}).get(kind, [])
