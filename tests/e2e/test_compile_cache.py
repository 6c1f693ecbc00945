"""The compile cache's in-pod script, for real: `warm` runs a server until /health answers, stores what
it compiled with a sha256 manifest; `restore` copies only a cache every file of which matches, and
otherwise leaves the pod's cache empty with one log line (the server then compiles privately).

The server here is a stand-in that writes compile artifacts the way vLLM does (under VLLM_CACHE_ROOT/
torch_compile_cache and the Inductor cache) and then serves /health: vLLM CPU 0.32 does compile
(torch.compile with Inductor, mode DYNAMO_TRACE_ONCE) and writes its AOT artifact, but cannot load it
back ("Compiling model again due to a load failure ... 'function' object has no attribute
'finalize_loading'"), so a real second start cannot show vLLM's "Directly load" line on this machine;
benchmarks/compile_cache.py runs the real server through the same script and prints both starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.servers import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "incluster" / "compile_cache" / "cache.py"
KEY = "0123456789abcdef0123456789abcdef"

FAKE_SERVER = """
import http.server, os, pathlib, sys
root = pathlib.Path(os.environ["VLLM_CACHE_ROOT"])
aot = root / "torch_compile_cache" / "torch_aot_compile" / "abc" / "rank_0_0"
aot.mkdir(parents=True, exist_ok=True)
(aot / "model").write_bytes(b"compiled graph " * 100)
(root / "inductor" / "fxgraph").mkdir(parents=True, exist_ok=True)
(root / "inductor" / "fxgraph" / "entry").write_bytes(b"kernel")
(root / "modelinfos").mkdir(exist_ok=True)
(root / "modelinfos" / "not-cached.json").write_text("{}")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def run(mode: list[str], cache: Path, root: Path, key: str = KEY, **env) -> subprocess.CompletedProcess:
    full = {"PATH": os.environ["PATH"], "CACHE_KEY": key, "CACHE_DIR": str(cache), "VLLM_CACHE_ROOT": str(root), **env}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *mode], env=full, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def warmed(tmp_path) -> Path:
    """A cache directory filled by the real `warm` mode around the stand-in server."""
    cache, root, port = tmp_path / "efs", tmp_path / "warm-root", free_port()
    cache.mkdir()
    server = [sys.executable, "-c", FAKE_SERVER, str(port)]
    r = run(
        ["warm", "--", *server], cache, root, HEALTH_URL=f"http://127.0.0.1:{port}/health", WARM_TIMEOUT_SECONDS="60"
    )
    assert r.returncode == 0, r.stderr
    assert "wrote 2 files" in r.stdout, r.stdout
    return cache


def test_warm_writes_artifacts_and_a_manifest_of_their_hashes(warmed):
    manifest = json.loads((warmed / "manifest.json").read_text())
    assert manifest["key"] == KEY
    # the stand-in wrote b"kernel"; its sha256 computed here, not by the script
    assert manifest["files"]["inductor/fxgraph/entry"] == hashlib.sha256(b"kernel").hexdigest()
    assert set(manifest["files"]) == {
        "inductor/fxgraph/entry",
        "torch_compile_cache/torch_aot_compile/abc/rank_0_0/model",
    }


def test_a_second_warm_of_the_same_key_does_nothing(warmed, tmp_path):
    r = run(["warm", "--", "false"], warmed, tmp_path / "again", HEALTH_URL="http://127.0.0.1:9/health")
    assert r.returncode == 0 and "already cached" in r.stdout, r.stdout + r.stderr


def test_restore_copies_a_verified_cache(warmed, tmp_path):
    dest = tmp_path / "pod-cache"
    r = run(["restore"], warmed, dest)
    assert r.returncode == 0, r.stderr
    assert "verified 2 files" in r.stdout
    assert (dest / "inductor" / "fxgraph" / "entry").read_bytes() == b"kernel"


@pytest.mark.parametrize(
    "tamper, reason",
    [
        (lambda c: (c / "files/inductor/fxgraph/entry").write_bytes(b"evil"), "does not match its sha256"),
        (lambda c: (c / "files/inductor/fxgraph/entry").unlink(), "missing"),
        (lambda c: (c / "files/inductor/extra.py").write_text("x"), "not in the manifest"),
        (lambda c: (c / "manifest.json").unlink(), "no manifest"),
        (lambda c: (c / "manifest.json").write_text("{"), "unreadable manifest"),
    ],
)
def test_a_tampered_cache_is_not_used(warmed, tmp_path, tamper, reason):
    tamper(warmed)
    dest = tmp_path / "pod-cache"
    r = run(["restore"], warmed, dest)
    assert r.returncode == 0, r.stderr  # the server still starts, compiling privately
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("compile-cache:")]
    assert len(lines) == 1 and reason in lines[0] and "compiling into the pod's own cache" in lines[0], r.stdout
    assert not (dest / "inductor").exists() and not (dest / "torch_compile_cache").exists()


def test_another_key_is_not_used(warmed, tmp_path):
    r = run(["restore"], warmed, tmp_path / "pod-cache", key="f" * 32)
    assert "is not" in r.stdout and "compiling into the pod's own cache" in r.stdout
    assert not (tmp_path / "pod-cache" / "inductor").exists()
