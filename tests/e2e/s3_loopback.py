"""A loopback S3 for the e2e suite and the benchmarks: moto's server mode (.e2e/s3), filled with boto3
from the same venv, and a stack whose model reads its weights from it.

Substitutions for the S3 path (beside servers.SUBSTITUTIONS): the bucket is moto on 127.0.0.1 instead
of S3 (AWS_ENDPOINT_URL; path-style addressing, since a loopback IP has no bucket subdomains), and
static test credentials stand in for Pod Identity. The object layout, the URI, the load-format flags
and the region come from the rendered plan.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from stacks.yamlio import dump_yaml, load_yaml
from tests.e2e.servers import E2E, STACK, Server, free_port

S3_PY = E2E / "s3" / "bin" / "python"
MOTO = E2E / "s3" / "bin" / "moto_server"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
SOURCE = "s3://e2e-weights/models"
REVISION = "0123456789abcdef0123456789abcdef01234567"

UPLOAD = """
import sys, pathlib, boto3
endpoint, bucket, prefix, src = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
s3.create_bucket(Bucket=bucket)
for f in sorted(pathlib.Path(src).iterdir()):
    s3.upload_file(str(f), bucket, f"{prefix}/{f.name}")
"""


def moto_server(log: Path) -> Server:
    port = free_port()
    s = Server([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], {"PATH": "/usr/bin:/bin"}, log, "", 60)
    s.health = f"http://127.0.0.1:{port}/moto-api/"
    s.port = port
    return s


def upload(endpoint: str, bucket: str, prefix: str, model_dir: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **CREDENTIALS}
    subprocess.run(
        [str(S3_PY), "-c", UPLOAD, endpoint, bucket, prefix, str(model_dir)],
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )


def s3_stack(out: Path) -> Path:
    """The seed stack with its model's weights on S3 (and a pinned revision, which S3 weights need)."""
    doc = load_yaml(STACK.read_text())
    for m in doc["config"]["llm-serving:models"].values():
        m["weights"] = {"source": SOURCE}
        m["revision"] = REVISION
    path = out / "Pulumi.e2e-s3-weights.yaml"
    path.write_text(dump_yaml(doc))
    return path


def s3_env(endpoint: str) -> dict:
    """What the pod gets from Pod Identity and the network, on loopback."""
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0"}
