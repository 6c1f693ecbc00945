"""The plan CLI contract: outputs, determinism, exit codes."""

import json
import subprocess
import sys
from pathlib import Path

from stacks.plan import main as plan_main
from stacks.yamlio import load_yaml

ROOT = Path(__file__).resolve().parents[2]


def test_dev_plan_writes_the_four_outputs(tmp_path, capsys):
    assert plan_main(["dev", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "qwen3-0-6b" in table and "resources:" in table
    res = json.loads((tmp_path / "resources.json").read_text())
    assert res and all(set(r) == {"urn", "type", "name", "parent", "custom", "inputs", "dependencies"} for r in res)
    assert len(list((tmp_path / "manifests").glob("*.yaml"))) == 66  # kinds counted in test_rendered.py
    helm = {}
    for h in (tmp_path / "helm").glob("*.yaml"):
        doc = load_yaml(h.read_text())
        assert set(doc) == {"chart", "repo", "version", "namespace", "values"}
        helm[h.stem] = (doc["repo"], doc["chart"], doc["version"], doc["namespace"])
    # the pins decided for this round (Karpenter 1.14.1, GPU operator v26.3.3)
    assert helm == {
        "karpenter-crd": ("oci://public.ecr.aws/karpenter", "karpenter-crd", "1.14.1", "kube-system"),
        "karpenter": ("oci://public.ecr.aws/karpenter", "karpenter", "1.14.1", "kube-system"),
        "gpu-operator": ("https://helm.ngc.nvidia.com/nvidia", "gpu-operator", "v26.3.3", "gpu-operator"),
        "kube-prometheus-stack": (
            "https://prometheus-community.github.io/helm-charts",
            "kube-prometheus-stack",
            "88.5.3",
            "monitoring",
        ),
        "keda": ("https://kedacore.github.io/charts", "keda", "2.20.2", "keda"),
    }
    s = json.loads((tmp_path / "summary.json").read_text())
    keys = {"stack", "resourceCount", "hourlyUsd", "pools", "models", "deployTime", "stackHourlyUsd", "costByTeam"}
    assert set(s) == keys
    assert s["resourceCount"] == len(res)
    m = s["models"][0]
    assert set(m) == {
        "name",
        "hfId",
        "accelerator",
        "instanceType",
        "replicas",
        "tensorParallel",
        "maxModelLen",
        "maxNumSeqs",
        "weightsGiBPerDevice",
        "kvBytesPerToken",
        "kvGiBPerDevice",
        "kvTokens",
        "maxConcurrency",
        "fits",
        "warnings",
        "hourlyUsd",
        "autoscaling",
        "startup",
        "spotHourlyUsd",
    }
    # dev autoscales qwen3-0.6b 1-2 on g6.xlarge ($0.8048/h each): 0.75 x min(19.6 max concurrency, 16 seqs)
    # = 12 running, the default queue depth 8 waiting; scale-down waits the 420 s startup budget.
    assert m["replicas"] == {"min": 1, "max": 2} and m["hourlyUsd"] == {"min": 0.8048, "max": 1.6096}
    a = m["autoscaling"]
    got = (a["targetRunning"], a["targetWaiting"], a["scaleDownWindowSeconds"], a["scaleToZero"])
    assert got == (12, 8, 420, False)
    assert "autoscaling qwen3-0-6b: 1-2 replicas on 12 running / 8 waiting requests per replica" in table
    assert "$0.80/h at min, $1.61/h at max" in table


def test_plan_is_deterministic(tmp_path, plan_of):
    """Byte-identical output from two processes with different hash seeds (set and dict order): this
    session's plan of the stack, and one more process with a seed other than this one's."""
    import os

    stack_file = ROOT / "stacks" / "examples" / "Pulumi.seed000-inf2-llama-qwen-webui.yaml"
    _, _, a = plan_of(stack_file)
    b = tmp_path / "b"
    seed = "4242" if os.environ.get("PYTHONHASHSEED") == "1" else "1"  # unset: this process's is random
    r = subprocess.run(
        [sys.executable, "-m", "stacks.plan", "seed000-inf2-llama-qwen-webui", "--config", str(stack_file)]
        + ["--out", str(b)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONHASHSEED": seed},
    )
    assert r.returncode == 0, r.stderr
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb
    for f in fa:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_secrets_never_reach_the_outputs(tmp_path):
    cfg = tmp_path / "Pulumi.sec.yaml"
    cfg.write_text(
        "config:\n  llm-serving:hfToken: {secure: v1:zzz}\n"
        "  llm-serving:models:\n    llama: {preset: llama-3.1-8b-instruct}\n"
    )
    out = tmp_path / "out"
    assert plan_main(["sec", "--config", str(cfg), "--out", str(out)]) == 0
    for f in out.rglob("*"):
        if f.is_file():
            assert "[offline-secret]" not in f.read_text(), f


def test_cli_as_a_process_invalid_config_exit_2(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("config:\n  llm-serving:modles: {}\n")
    r = subprocess.run(
        [sys.executable, "-m", "stacks.plan", "x", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.strip() == "error: llm-serving:modles: unknown config key — did you mean llm-serving:models?"


def test_a_config_error_raised_inside_the_program_is_still_exit_2(monkeypatch, capsys):
    """`stacks.config.load()` in the program raises pulumi.RunError; the CLI prints its lines, exit 2."""
    import pulumi

    from stacks import plan

    def boom(stack, stack_file):
        raise pulumi.RunError(
            "invalid stack config:\nerror: llm-serving:team: Input should be a valid dictionary — "
            "write a mapping (key: value)"
        )

    monkeypatch.setattr(plan, "run_program", boom)
    assert plan_main(["dev"]) == 2
    cap = capsys.readouterr()
    assert cap.err == "error: llm-serving:team: Input should be a valid dictionary — write a mapping (key: value)\n"
    assert cap.out == ""


def test_file_and_runtime_readers_agree_on_null_sections(tmp_path):
    """`llm-serving:team: null` reaches the program as the string "null": both readers take it as unset."""
    cfg = tmp_path / "Pulumi.n.yaml"
    cfg.write_text(
        "config:\n  llm-serving:team: null\n  llm-serving:hfToken: null\n"
        "  llm-serving:models:\n    tiny: {preset: qwen3-0.6b}\n"
    )
    assert plan_main(["n", "--config", str(cfg)]) == 0
