"""Copy one pinned model revision from the shared EFS cache to S3, once.

Runs in the weights-sync Job (python image + a pinned boto3 installed into an emptyDir). Every value
comes from the environment:
  SRC_DIR      the revision's snapshot directory on EFS (written by the cache Job)
  SRC_MARKER   the cache Job's ready marker for that revision (waited for, up to WAIT_SECONDS)
  BUCKET, PREFIX   where the files go: s3://BUCKET/PREFIX/<file>
  DONE_MARKER  written on EFS when the prefix is complete (the servers' init container waits for it)
The prefix is complete when its `.complete` object exists: a rerun finds it and only writes DONE_MARKER.
Objects are encrypted by the bucket's default (SSE-KMS with the platform key, bucket key on).
Credentials come from EKS Pod Identity through boto3's container credential provider.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

COMPLETE = ".complete"
POLL_S = 10


def wait_for(marker: Path, seconds: int) -> None:
    waited = 0
    while not marker.exists():
        if waited >= seconds:
            sys.exit(f"weights-sync: the cache Job's marker {marker} is missing after {seconds}s")
        print(f"weights-sync: waiting for {marker}", flush=True)
        time.sleep(POLL_S)
        waited += POLL_S


def files_of(src: Path) -> list[Path]:
    """The snapshot's files (the Hub cache links them to blobs: read through the links)."""
    return sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))


def exists(s3, bucket: str, key: str) -> bool:
    """By listing, not HeadObject: the role may list only under its prefix (an s3:prefix condition), and
    without a matching ListBucket a HeadObject of a missing key answers 403, not 404."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    return any(o.get("Key") == key for o in listed)


def sync(s3, src: Path, bucket: str, prefix: str) -> int:
    """Upload every file, then the `.complete` object listing them; the number of files uploaded."""
    if exists(s3, bucket, f"{prefix}/{COMPLETE}"):
        print(f"weights-sync: s3://{bucket}/{prefix}/ is already complete", flush=True)
        return 0
    files = files_of(src)
    if not any(p.suffix == ".safetensors" for p in files):
        sys.exit(f"weights-sync: no .safetensors file under {src}: the runai_streamer loader reads only those")
    listing = {}
    for p in files:
        rel = p.relative_to(src).as_posix()
        s3.upload_file(str(p), bucket, f"{prefix}/{rel}")
        listing[rel] = p.stat().st_size
    body = json.dumps({"files": listing}, sort_keys=True).encode()
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{COMPLETE}", Body=body)
    return len(files)


def main() -> None:
    import boto3

    env = os.environ
    wait_for(Path(env["SRC_MARKER"]), int(env.get("WAIT_SECONDS", "3600")))
    n = sync(boto3.client("s3"), Path(env["SRC_DIR"]), env["BUCKET"], env["PREFIX"].strip("/"))
    done = Path(env["DONE_MARKER"])
    done.parent.mkdir(parents=True, exist_ok=True)
    done.touch()
    print(f"weights-sync: {n} files uploaded to s3://{env['BUCKET']}/{env['PREFIX']}/", flush=True)


if __name__ == "__main__":
    main()
