"""The cache Job's script run by a real shell with the real `hf` CLI (huggingface_hub of the e2e venv,
the version pinned for the downloader), offline against a prepared Hub cache."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from components.model_cache import DOWNLOAD_SCRIPT, CacheItem, render_download_env
from components.vllm import ready_marker
from stacks import catalog
from tests.e2e.servers import VLLM_PY

pytestmark = pytest.mark.e2e
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_version() -> str:
    r = subprocess.run(
        [str(VLLM_PY), "-c", "import huggingface_hub as h; print(h.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r.stdout.strip()


@pytest.fixture
def box(tmp_path, e2e_ready):
    snap = tmp_path / "hub" / "models--org--m1" / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--m1" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--m1" / "refs" / "main").write_text(COMMIT)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `python` in the image is the interpreter the pinned huggingface_hub was installed for.
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{VLLM_PY}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    return tmp_path


def run(box: Path, item: CacheItem) -> subprocess.CompletedProcess:
    env = {
        "PATH": f"{box / 'bin'}:/usr/bin:/bin",
        "HOME": str(box),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(box / "hub"),
    }
    for e in render_download_env(item):
        env[e["name"]] = e["value"].replace("/models/", f"{box}/models/")
    return subprocess.run(["sh", "-c", DOWNLOAD_SCRIPT], env=env, capture_output=True, text=True, timeout=120)


def test_the_pinned_hub_version_is_the_one_tested_here(e2e_ready):
    assert _hub_version() == catalog.versions().huggingface_hub_version


def test_real_hf_cli_accepts_the_script_and_the_marker_appears(box):
    item = CacheItem(name="m1", hf_id="org/m1", revision=None, gated=False, marker=ready_marker("org/m1", None))
    r = run(box, item)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (box / item.marker.lstrip("/")).exists()


@pytest.mark.parametrize("bad", ["$(touch PWNED)", "`touch PWNED`", "org/m1; touch PWNED", "--help", "../../x"])
def test_hostile_ids_fail_without_running_anything_or_writing_the_marker(box, bad):
    item = CacheItem(
        name="m1",
        hf_id=bad.replace("PWNED", str(box / "pwned")),
        revision=None,
        gated=False,
        marker=ready_marker(bad, None),
    )
    r = run(box, item)
    assert r.returncode != 0
    assert not (box / "pwned").exists() and not (box / item.marker.lstrip("/")).exists()


def test_token_is_read_from_a_read_only_file(tmp_path, e2e_ready):
    d = tmp_path / "secret"
    d.mkdir()
    (d / "token").write_text("hf_filetoken123")
    d.chmod(0o555)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_TOKEN_PATH=str(d / "token"), HOME=str(tmp_path))
    r = subprocess.run(
        [str(VLLM_PY), "-c", "from huggingface_hub import get_token; print(get_token())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.stdout.strip() == "hf_filetoken123", r.stderr[-1000:]


def test_the_downloader_lock_installs_with_hashes_required(tmp_path, e2e_ready):
    """The Job's install command, run here into a fresh directory from PyPI: every pinned file is found
    and matches its hash (this machine's CPython; the lock holds every wheel of each pinned version)."""
    from components.model_cache import LOCK_SOURCE, render_install_container

    argv = render_install_container("unused")["command"]
    argv = [str(VLLM_PY) if a == "python" else a for a in argv]
    argv[argv.index("--target") + 1] = str(tmp_path / "hf")
    argv[-1] = str(LOCK_SOURCE)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "hf" / "huggingface_hub").is_dir()
    # Negative control: every hash of the first package changed (pip accepts a file matching any one
    # of its package's hashes), and pip refuses the install.
    text = LOCK_SOURCE.read_text()
    first, rest = text.split("\n    # via", 1)
    tampered = re.sub(r"--hash=sha256:([0-9a-f])", lambda m: "--hash=sha256:" + "10"[m[1] == "1"], first)
    (tmp_path / "tampered.lock").write_text(tampered + "\n    # via" + rest)
    argv[-1] = str(tmp_path / "tampered.lock")
    argv[argv.index("--target") + 1] = str(tmp_path / "hf2")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)})
    assert r.returncode != 0 and "HASHES" in r.stderr.upper()
