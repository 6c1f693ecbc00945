"""Keyed latency through the front door while hostile clients push oversized and unauthenticated bodies.

    .venv/bin/python -m benchmarks.hostile_load [--requests 40]

Runs the real nginx (rendered nginx.conf) in front of the real LiteLLM (rendered gateway config) and a
stub vLLM, on 127.0.0.1 only, exactly as tests/e2e/test_hostile_clients.py does: a quiet baseline of
keyed chat requests, then the same load while waves of 50 unauthenticated 32 MiB bodies and 20
unknown-key 3 MiB bodies hit the front door. Prints the numbers; exits 1 when the p99 under attack is
more than TARGET_RATIO times the quiet p99 (or a keyed request failed), 0 otherwise. Bounded: at most
MAX_WAVES waves and 2 x --requests requests per client after the servers start.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.e2e.test_hostile_clients import front_door, hostile_run, summary

TARGET_RATIO = 2.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=40, help="keyed requests per client and phase (4 clients)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d, front_door(Path(d)) as door:
        run = hostile_run(door, a.requests)
    print(summary(run, door["limit"]))
    (_, q99), (_, l99) = run.p50_p99()
    failed = [s for s, _ in run.quiet + run.loaded if s != 200]
    if failed:
        print(f"FAIL: {len(failed)} keyed requests failed: {sorted(set(failed))}")
        return 1
    if l99 > TARGET_RATIO * q99:
        print(f"FAIL: p99 under attack {l99 * 1000:.0f} ms > {TARGET_RATIO} x quiet {q99 * 1000:.0f} ms")
        return 1
    print(f"OK: p99 under attack within {TARGET_RATIO} x quiet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
