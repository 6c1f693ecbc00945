"""Start time of the real vLLM CPU build: weights from local disk vs streamed from a loopback S3 (moto),
and (--compile) a compile-cache start vs a cold one, through the real in-pod cache script.

    .venv/bin/python -m benchmarks.s3_weights [--runs 3] [--compile]

The tiny e2e model (about 1 MB) makes the weight read itself a rounding error: what this measures is
the fixed cost each path adds (the streamer's S3 listing and config pull vs a local open). GB/s from
real S3 is not measurable here; the figures for AWS are the streamer's published ones (docs/cold-start.md).
Numbers depend on the machine's load (the figures in the docs say what it was).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stacks.config.s3url import parse
from tests.e2e.s3_loopback import moto_server, s3_env, s3_stack, upload
from tests.e2e.servers import VLLM_PY, build_tiny_model, render_stack
from tests.e2e.test_s3_weights import completion, load_seconds, vllm

ROOT = Path(__file__).resolve().parent.parent
CACHE_SCRIPT = ROOT / "incluster" / "compile_cache" / "cache.py"


def start(container: dict, model: str, work: Path, label: str, env: dict, s3_flags: bool) -> tuple[float, float | None]:
    """(seconds to /health, weight-load seconds from vLLM's log) of one start, answered once."""
    log = work / f"{label}.log"
    server = vllm(container, model, log, extra_env=env, s3_flags=s3_flags, home=work / label)
    t0 = time.monotonic()
    server.start()
    ready = time.monotonic() - t0
    try:
        served = container["args"][container["args"].index("--served-model-name") + 1]
        completion(server.port, served)
    finally:
        server.stop()
    return ready, load_seconds(log)


def s3_vs_disk(work: Path, runs: int) -> None:
    tiny = build_tiny_model(work / "tiny")
    container = render_stack(work / "plan", s3_stack(work)).vllm_container
    moto = moto_server(work / "moto.log").start()
    try:
        endpoint = f"http://127.0.0.1:{moto.port}"
        src, _ = parse(container["args"][0])
        assert src is not None
        upload(endpoint, src.bucket, src.prefix, tiny)
        rows = {"disk": [], "s3": []}
        for i in range(runs):
            rows["disk"].append(start(container, str(tiny), work, f"disk{i}", {}, False))
            rows["s3"].append(start(container, container["args"][0], work, f"s3{i}", s3_env(endpoint), True))
    finally:
        moto.stop()
    for label, r in rows.items():
        ready = statistics.median(x for x, _ in r)
        loads = [y for _, y in r if y is not None]
        load = f"{statistics.median(loads):.0f}s" if loads else "n/a"
        print(f"{label:5} ready (median of {runs}): {ready:6.1f}s   weight-load phase (log, 1 s steps): {load}")


def compile_starts(work: Path) -> None:
    """A cold start (warm mode of the cache script writes the cache), then a start from the restored cache."""
    tiny = build_tiny_model(work / "tiny-cc")
    container = render_stack(work / "plan-cc").vllm_container
    from tests.e2e.servers import free_port, substitute_vllm_args, vllm_env

    port = free_port()
    args = substitute_vllm_args(container["args"], tiny, port)
    argv = [str(VLLM_PY), "-m", "vllm.entrypoints.cli.main", "serve", *args]
    cache = work / "efs"
    cache.mkdir()
    env = {**vllm_env(container), "HOME": str(work / "home"), "CACHE_KEY": "bench", "CACHE_DIR": str(cache)}
    for label in ("cold", "cached"):
        root = work / f"root-{label}"
        e = {**env, "VLLM_CACHE_ROOT": str(root), "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor")}
        e["HEALTH_URL"] = f"http://127.0.0.1:{port}/health"
        if label == "cached":
            subprocess.run([sys.executable, str(CACHE_SCRIPT), "restore"], env=e, check=True, timeout=300)
            shutil_rm(cache / "manifest.json")  # so `warm` runs the server again, timing the cached start
        t0 = time.monotonic()
        subprocess.run([sys.executable, str(CACHE_SCRIPT), "warm", "--", *argv], env=e, check=True, timeout=1800)
        print(f"compile cache {label:6}: server ready in {time.monotonic() - t0:6.1f}s")


def shutil_rm(p: Path) -> None:
    if p.exists():
        p.unlink()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time a compile-cache start against a cold one")
    a = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as d:
        s3_vs_disk(Path(d), a.runs)
        if a.compile:
            compile_starts(Path(d))


if __name__ == "__main__":
    main()
