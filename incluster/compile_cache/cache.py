"""The content-addressed compile cache, in the pod: `warm` fills it once, `restore` checks it before use.

  cache.py warm -- vllm serve ...   (the warm Job) unless the cache already holds a manifest for
      CACHE_KEY: run the server until /health answers, stop it, copy the compile artifacts from
      VLLM_CACHE_ROOT to CACHE_DIR/files and write CACHE_DIR/manifest.json (sha256 of every file) last.
  cache.py restore                  (the servers' init container) copy CACHE_DIR (mounted read-only)
      into VLLM_CACHE_ROOT (the pod's own emptyDir), hashing what it copies; any difference from the
      manifest (a missing, extra or changed file, another key) empties the copy and logs one line, so
      vLLM compiles into the empty directory instead of loading what the manifest does not vouch for.
Environment: CACHE_KEY, CACHE_DIR, VLLM_CACHE_ROOT; warm also HEALTH_URL and WARM_TIMEOUT_SECONDS.
Exit status: 0 unless the arguments or the environment are wrong (warm: or the server never got ready).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

MANIFEST = "manifest.json"
FILES = "files"
# What vLLM and Inductor write that a later start reuses (the rest of VLLM_CACHE_ROOT is per-pod state).
CACHED = ("torch_compile_cache", "inductor")
CHUNK = 1 << 20


def log(msg: str) -> None:
    print(f"compile-cache: {msg}", flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tree(root: Path) -> dict[str, Path]:
    """Relative POSIX path -> file, for every regular file under root (symlinks are not followed)."""
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def manifest_problem(cache: Path, key: str) -> tuple[dict | None, str | None]:
    """(the manifest's files, None) when it is readable and for this key, else (None, why not)."""
    path = cache / MANIFEST
    if not path.is_file():
        return None, f"no manifest at {path}"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"unreadable manifest {path}: {e}"
    if manifest.get("key") != key:
        return None, f"manifest key {manifest.get('key')!r} is not {key!r}"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return None, "the manifest lists no files"
    return files, None


def copy_verified(src: Path, dest: Path, files: dict[str, str]) -> str | None:
    """Copy src's files to dest, hashing the copies; why the copy does not match `files`, or None."""
    present = tree(src)
    extra = sorted(set(present) - set(files))
    if extra:
        return f"{extra[0]} is not in the manifest"
    for rel, digest in sorted(files.items()):
        if rel not in present:
            return f"{rel} is in the manifest but missing"
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(present[rel], target)
        if sha256(target) != digest:
            return f"{rel} does not match its sha256 in the manifest"
    return None


def restore(cache: Path, dest: Path, key: str) -> bool:
    """True when dest now holds the verified cache; False (dest's cached dirs emptied) otherwise."""
    files, problem = manifest_problem(cache, key)
    if files is not None:
        problem = copy_verified(cache / FILES, dest, files)
    if problem is None:
        log(f"verified {len(files or {})} files for key {key}; using them")
        return True
    for name in CACHED:
        shutil.rmtree(dest / name, ignore_errors=True)
    log(f"not used ({problem}); compiling into the pod's own cache")
    return False


def write_manifest(src: Path, cache: Path, key: str) -> int:
    """Copy the compile artifacts under src into cache/files and write the manifest last (atomically)."""
    files: dict[str, str] = {}
    for name in CACHED:
        for rel, path in tree(src / name).items():
            target = cache / FILES / name / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            files[f"{name}/{rel}"] = sha256(target)
    tmp = cache / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"key": key, "files": files}, sort_keys=True, indent=1))
    tmp.replace(cache / MANIFEST)
    return len(files)


def serve_until_ready(argv: list[str], health: str, timeout: float) -> None:
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc.poll() is not None:
                sys.exit(f"compile-cache: the server exited with {proc.returncode} before it was ready")
            try:
                with urllib.request.urlopen(health, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(2)
        sys.exit(f"compile-cache: the server was not ready in {timeout:.0f}s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()


def warm(cache: Path, src: Path, key: str, argv: list[str]) -> None:
    if manifest_problem(cache, key)[0] is not None:
        log(f"key {key} is already cached")
        return
    serve_until_ready(argv, os.environ["HEALTH_URL"], float(os.environ.get("WARM_TIMEOUT_SECONDS", "3600")))
    shutil.rmtree(cache / FILES, ignore_errors=True)
    log(f"wrote {write_manifest(src, cache, key)} files for key {key}")


def main(argv: list[str]) -> None:
    env = os.environ
    cache, dest, key = Path(env["CACHE_DIR"]), Path(env["VLLM_CACHE_ROOT"]), env["CACHE_KEY"]
    if argv[:1] == ["restore"]:
        restore(cache, dest, key)
    elif argv[:2] == ["warm", "--"] and len(argv) > 2:
        warm(cache, dest, key, argv[2:])
    else:
        sys.exit("usage: cache.py restore | cache.py warm -- <server command>")


if __name__ == "__main__":
    main(sys.argv[1:])
