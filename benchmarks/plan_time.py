"""Wall time of the offline plan, per stack, next to the import time of the SDK modules it uses.

    .venv/bin/python benchmarks/plan_time.py [--runs 5]

Each number is the median of N fresh processes (what a user waits for). Target: <= 2 s per plan
on the 2-core machines here; the SDK import alone is a floor no program change removes.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDK_IMPORT = ("import pulumi, pulumi_aws.ec2, pulumi_aws.eks, pulumi_aws.iam, pulumi_eks, pulumi_random, "
              "pulumi_kubernetes.core.v1, pulumi_kubernetes.apps.v1, pulumi_kubernetes.helm.v3")


def wall(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=120)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    py = sys.executable
    stacks = [("dev", ROOT / "Pulumi.dev.yaml")] + [
        (p.stem.removeprefix("Pulumi."), p) for p in sorted((ROOT / "stacks" / "examples").glob("*.yaml"))]
    sdk = wall([py, "-c", SDK_IMPORT], a.runs)
    bare = wall([py, "-c", "pass"], a.runs)
    print(f"python startup           {bare:6.2f} s")
    print(f"SDK module import        {sdk:6.2f} s   (median of {a.runs})")
    for name, f in stacks:
        t = wall([py, "-m", "stacks.plan", name, "--config", str(f)], a.runs)
        print(f"plan {name:<34} {t:6.2f} s   program beyond SDK import: {t - sdk:5.2f} s")


if __name__ == "__main__":
    main()
