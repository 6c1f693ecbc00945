"""Wall time of the offline plan, per stack, next to the import time of the SDK modules it uses.

    .venv/bin/python benchmarks/plan_time.py [--runs 5]

Each number is the median of N fresh processes (what a user waits for). Target: <= 2 s per plan
on the 2-core machines here; the SDK import alone is a floor no program change removes.

Two floors. "SDK module import" imports the packages, but pulumi_aws and pulumi_kubernetes load a
subpackage (ec2, iam, networking.v1, ...) only when one of its names is first used, so it leaves out
most of what a plan loads. "SDK modules a plan uses" loads the subpackages whose resources the dev
stack registers: the plan's time above that one is the program's own (its modules, the run, output).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDK_IMPORT = (
    "import pulumi, pulumi_aws.ec2, pulumi_aws.eks, pulumi_aws.iam, pulumi_eks, pulumi_random, "
    "pulumi_kubernetes.core.v1, pulumi_kubernetes.apps.v1, pulumi_kubernetes.helm.v3"
)

# One name from each subpackage the dev stack registers resources of (resources.json types).
SDK_USED = (
    "import pulumi, pulumi_eks, pulumi_random, pulumi_aws as a, pulumi_kubernetes as k; "
    "a.ec2.Vpc, a.iam.Role, a.eks.Addon, a.cloudwatch.LogGroup, a.kms.Key, a.efs.FileSystem, a.sqs.Queue, "
    "k.core.v1.Service, k.apps.v1.Deployment, k.networking.v1.NetworkPolicy, k.storage.v1.StorageClass, "
    "k.batch.v1.Job, k.autoscaling.v2.HorizontalPodAutoscaler, k.policy.v1.PodDisruptionBudget, "
    "k.helm.v3.Release, k.meta.v1.ObjectMetaArgs, k.apiextensions.CustomResource"
)


CPU: dict[tuple[str, ...], float] = {}  # argv -> median CPU seconds (user + system) of its runs


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wall(argv: list[str], runs: int) -> float:
    """Median wall time of `runs` fresh processes; their median CPU time goes to CPU[argv]. On a machine
    others share, wall time measures the others too: the CPU time is the figure to compare."""
    times, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), _cpu()
        subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, timeout=300)
        times.append(time.perf_counter() - t)
        cpu.append(_cpu() - c)
    CPU[tuple(argv)] = statistics.median(cpu)
    return statistics.median(times)


WARM = """
import time
from stacks import plan
plan.run_program({stack!r}, plan.Path({file!r}))
t = time.perf_counter()
plan.run_program({stack!r}, plan.Path({file!r}))
print(time.perf_counter() - t)
"""


def warm(py: str, stack: str, f: Path, runs: int) -> float:
    """The program alone: a second run in a process that has already imported everything."""
    out = []
    for _ in range(runs):
        r = subprocess.run(
            [py, "-c", WARM.format(stack=stack, file=str(f))],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        out.append(float(r.stdout.strip().splitlines()[-1]))
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    py = sys.executable
    stacks = [("dev", ROOT / "Pulumi.dev.yaml")] + [
        (p.stem.removeprefix("Pulumi."), p) for p in sorted((ROOT / "stacks" / "examples").glob("*.yaml"))
    ]
    sdk = wall([py, "-c", SDK_IMPORT], a.runs)
    used = wall([py, "-c", SDK_USED], a.runs)
    bare = wall([py, "-c", "pass"], a.runs)
    used_cpu = CPU[(py, "-c", SDK_USED)]
    print(f"python startup           {bare:6.2f} s")
    print(f"SDK module import        {sdk:6.2f} s   (median of {a.runs})")
    print(f"SDK modules a plan uses  {used:6.2f} s   CPU {used_cpu:.2f} s")
    print(
        f"{'stack':<36} {'cold plan':>9} {'warm run':>9} {'/import':>8} {'/used':>6} {'CPU':>6} {'/used':>6}"
        f"   (cold: a fresh `python -m stacks.plan`; warm: the program re-run in-process, imports done;"
        f" /: cold over each floor; CPU: user + system of the cold plan, over the used floor's)"
    )
    for name, f in stacks:
        argv = [py, "-m", "stacks.plan", name, "--config", str(f)]
        t = wall(argv, a.runs)
        w = warm(py, name, f, max(3, a.runs // 2))
        c = CPU[tuple(argv)]
        print(f"{name:<36} {t:8.2f}s {w:8.2f}s {t / sdk:7.2f}x {t / used:5.2f}x {c:5.2f}s {c / used_cpu:5.2f}x")


if __name__ == "__main__":
    main()
