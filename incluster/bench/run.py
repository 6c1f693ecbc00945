"""Run the load engine once per concurrency level inside the benchmark Job, then print every level's
saved JSON result on stdout between two marker lines, for `stacks.bench --in-cluster` to read back
from the pod log.

Standard library only; passed to the image's python as `python3 -c <this file>` with one argument, the
plan: `{"resultDir": DIR, "levels": [{"concurrency": C, "resultFile": F, "argv": [...]}]}`. Each `argv`
is the engine's full command line (a list, run without a shell) that saves its result to DIR/F. The
engine's own output goes to stderr, so stdout holds the result block alone. The first level that fails
stops the run: the block still comes out, with `error` naming that level and the engine's last line.
Exit 0 when every level produced a result, 1 otherwise.
"""

import json
import os
import subprocess
import sys

BEGIN = "=== stacks-bench result begin ==="
END = "=== stacks-bench result end ==="
TAIL_LINES = 20


def run_level(level: dict, result_dir: str) -> tuple[dict | None, str | None]:
    """(the engine's saved result, None) or (None, why it failed)."""
    proc = subprocess.run(level["argv"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    sys.stderr.write("\n".join(lines[-TAIL_LINES:]) + "\n")
    path = os.path.join(result_dir, level["resultFile"])
    if proc.returncode != 0 or not os.path.isfile(path):
        last = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        return None, f"concurrency {level['concurrency']}: the engine failed: {last[:300]}"
    with open(path, encoding="utf-8") as f:
        return json.load(f), None


def main(plan_text: str) -> int:
    plan = json.loads(plan_text)
    done: list[dict] = []
    error = None
    for level in plan["levels"]:
        sys.stderr.write(f"bench: concurrency {level['concurrency']} ...\n")
        sys.stderr.flush()
        result, error = run_level(level, plan["resultDir"])
        if error is not None:
            break
        done.append({"concurrency": level["concurrency"], "result": result})
    sys.stdout.write(f"{BEGIN}\n{json.dumps({'levels': done, 'error': error})}\n{END}\n")
    sys.stdout.flush()
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
