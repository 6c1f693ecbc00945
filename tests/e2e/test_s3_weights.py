"""Weights from S3: the real vLLM CPU build streams the tiny model from a loopback S3 (moto) with the
rendered `--load-format runai_streamer` arguments and answers token for token what it answers from
disk; a prefix with nothing under it ends the server with one clear line instead of a hang.

Both servers run with --enforce-eager (a substitution: the comparison is about loading, and skipping
the CPU compile saves about a minute per start). Load times are printed; benchmarks/s3_weights.py
measures them repeatedly.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from stacks.config.s3url import parse
from tests.e2e.s3_loopback import MOTO, moto_server, s3_env, s3_stack, upload
from tests.e2e.servers import (
    EAGER,
    VLLM_KEY,
    VLLM_PY,
    Server,
    free_port,
    http,
    render_stack,
    substitute_vllm_args,
    vllm_env,
)

# Generous: vLLM starts take minutes when the shared cores are busy (each wait is still bounded).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
PROMPT = "The quick brown fox"
LOAD_FLAGS = ("--load-format", "--model-loader-extra-config")
# vLLM 0.32's own line when the prefix holds no config.json: it names the local directory it pulled the
# prefix's small files into (VLLM_ASSETS_CACHE/model_streamer/<hash of the URI>), not the URI.
MISSING = re.compile(r"Invalid repository ID or local directory specified: '.*/model_streamer/[0-9a-f]{8}'")


@pytest.fixture(scope="module")
def s3_container(tmp_path_factory, e2e_ready) -> dict:
    if not MOTO.exists():
        pytest.skip("no .e2e/s3 venv: run scripts/setup-e2e.sh")
    out = tmp_path_factory.mktemp("s3plan")
    return render_stack(out, s3_stack(out)).vllm_container


@pytest.fixture(scope="module")
def s3(tmp_path_factory, s3_container, tiny_model):
    """moto on loopback holding the tiny model where the rendered URI points."""
    server = moto_server(tmp_path_factory.mktemp("moto") / "moto.log").start()
    endpoint = f"http://127.0.0.1:{server.port}"
    src, problem = parse(s3_container["args"][0])
    assert src is not None, problem
    upload(endpoint, src.bucket, src.prefix, tiny_model)
    yield endpoint
    server.stop()


def without_load_flags(args: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(args):
        if args[i] in LOAD_FLAGS:
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def vllm(container: dict, model: str, log: Path, *, extra_env: dict, s3_flags: bool, home: Path) -> Server:
    port = free_port()
    args = substitute_vllm_args(container["args"], Path("unused"), port)
    args[0] = model
    if not s3_flags:
        args = without_load_flags(args)
    env = {**vllm_env(container), **extra_env, "HOME": str(home)}
    argv = [str(VLLM_PY), "-m", "vllm.entrypoints.cli.main", "serve", *args, EAGER]
    s = Server(argv, env, log, f"http://127.0.0.1:{port}/health", 600)
    s.port = port
    return s


def completion(port: int, served: str) -> dict:
    body = {"model": served, "prompt": PROMPT, "max_tokens": 16, "temperature": 0, "return_token_ids": True}
    status, text = http("POST", f"http://127.0.0.1:{port}/v1/completions", body, key=VLLM_KEY, timeout=120)
    assert status == 200, text
    return json.loads(text)["choices"][0]


def load_seconds(log: Path) -> float | None:
    """Seconds from vLLM's "Starting to load model" line to its "Warming up" line (1 s resolution)."""
    stamps = {}
    for line in log.read_text(errors="replace").splitlines():
        m = re.search(r"(\d\d):(\d\d):(\d\d) \[", line)
        if m and "Starting to load model" in line:
            stamps["start"] = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
        elif m and ("Warming up" in line or "init engine" in line) and "end" not in stamps:
            stamps["end"] = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
    return stamps["end"] - stamps["start"] if {"start", "end"} <= stamps.keys() else None


def test_rendered_args_stream_from_s3(s3_container):
    args = s3_container["args"]
    assert args[0] == "s3://e2e-weights/models/Qwen/Qwen3-0.6B/0123456789abcdef0123456789abcdef01234567"
    assert args[args.index("--load-format") + 1] == "runai_streamer"
    assert json.loads(args[args.index("--model-loader-extra-config") + 1]) == {"concurrency": 16}
    assert "--revision" not in args  # the pinned revision is part of the URI
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in s3_container["env"]


def test_s3_answers_token_for_token_what_disk_answers(s3, s3_container, tiny_model, tmp_path):
    served = s3_container["args"][s3_container["args"].index("--served-model-name") + 1]
    results = {}
    for label, model, env, flags in (
        ("disk", str(tiny_model), {}, False),
        ("s3", s3_container["args"][0], s3_env(s3), True),
    ):
        log = tmp_path / f"vllm-{label}.log"
        server = vllm(s3_container, model, log, extra_env=env, s3_flags=flags, home=tmp_path / label)
        t0 = time.monotonic()
        server.start()
        ready = time.monotonic() - t0
        try:
            results[label] = completion(server.port, served)
        finally:
            server.stop()
        print(f"{label}: ready in {ready:.1f}s, weights load {load_seconds(log)}s (from vLLM's log)")
        if label == "s3":
            assert "Runai Model Streamer" in log.read_text(errors="replace")
    assert results["s3"]["token_ids"] == results["disk"]["token_ids"]
    assert results["s3"]["text"] == results["disk"]["text"]
    assert len(results["s3"]["token_ids"]) == 16  # negative control: the comparison is not of two empty lists


def test_a_prefix_without_the_model_fails_visibly(s3, s3_container, tmp_path):
    """A wrong prefix: vLLM exits (no hang) and its log says which model it could not find."""
    wrong = s3_container["args"][0].replace("/models/", "/nothing-here/")
    log = tmp_path / "vllm-missing.log"
    server = vllm(s3_container, wrong, log, extra_env=s3_env(s3), s3_flags=True, home=tmp_path / "missing")
    with pytest.raises(RuntimeError, match="server exited"):
        server.start()
    text = log.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if MISSING.search(ln)]
    assert len(lines) == 1, text[-3000:]
    assert wrong in text  # the URI it was given is in the log (vLLM's argument line)
    print("missing prefix:", lines[0][:300])


def test_moto_serves_range_reads(s3, s3_container):
    """The streamer reads objects in ranges: the loopback S3 must honour Range (else the proof is void)."""
    src, _ = parse(s3_container["args"][0])
    assert src is not None
    code = (
        "import sys, boto3; s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1'); "
        "r = s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3], Range='bytes=0-7'); print(len(r['Body'].read()))"
    )
    from tests.e2e.s3_loopback import CREDENTIALS, S3_PY

    r = subprocess.run(
        [str(S3_PY), "-c", code, s3, src.bucket, f"{src.prefix}/model.safetensors"],
        env={"PATH": "/usr/bin:/bin", **CREDENTIALS},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.stdout.strip() == "8", r.stderr


def test_the_sync_script_copies_a_snapshot_once(s3, tiny_model, tmp_path):
    """incluster/weights_sync/sync.py with the e2e boto3 against the loopback S3: a Hub-cache snapshot
    (files linked to blobs) lands under the prefix with a `.complete` object and the EFS marker; a
    second run finds `.complete` and uploads nothing."""
    from tests.e2e.s3_loopback import CREDENTIALS, S3_PY

    snap = tmp_path / "hub" / "snapshots" / "abc"
    blobs = tmp_path / "hub" / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    for f in tiny_model.iterdir():
        (blobs / f.name).write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(blobs / f.name)
    (tmp_path / "ready").mkdir()
    (tmp_path / "ready" / "src").touch()
    env = {
        "PATH": "/usr/bin:/bin",
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": s3,
        "AWS_REGION": "us-east-1",
        "SRC_DIR": str(snap),
        "SRC_MARKER": str(tmp_path / "ready" / "src"),
        "DONE_MARKER": str(tmp_path / "ready" / "src-s3"),
        "BUCKET": "e2e-weights",
        "PREFIX": "synced/org/tiny/abc",
    }
    script = Path(__file__).resolve().parents[2] / "incluster" / "weights_sync" / "sync.py"
    runs = [
        subprocess.run([str(S3_PY), str(script)], env=env, capture_output=True, text=True, timeout=120) for _ in "12"
    ]
    assert all(r.returncode == 0 for r in runs), [r.stderr[-2000:] for r in runs]
    n = len(list(tiny_model.iterdir()))
    assert f"{n} files uploaded" in runs[0].stdout and "already complete" in runs[1].stdout
    assert (tmp_path / "ready" / "src-s3").exists()
    listing = (
        "import json, sys, boto3; s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1'); "
        "print(json.dumps([o['Key'] for o in s3.list_objects_v2(Bucket='e2e-weights', Prefix='synced/')['Contents']]))"
    )
    r = subprocess.run([str(S3_PY), "-c", listing, s3], env=env, capture_output=True, text=True, timeout=60)
    keys = json.loads(r.stdout)
    assert sorted(keys) == sorted(
        [f"synced/org/tiny/abc/{f.name}" for f in tiny_model.iterdir()] + ["synced/org/tiny/abc/.complete"]
    )
