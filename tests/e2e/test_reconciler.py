"""The database path end to end, as far as this machine allows (pytest -m e2e).

1. The reconciler Job's script, exactly as rendered into its ConfigMap and run with the rendered
   Job's command and env names, against an in-memory LiteLLM management API over HTTP
   (tests/support/fake_litellm.py: LiteLLM cannot run with a database here). Proves: the script is
   self-contained (standard library, runs from a bare directory), converges, re-running sends only
   reads, removal deletes, pagination is followed, a wrong master key fails the Job in one line
   without leaking a key.
2. DATABASE_URL's TLS contract with a real Postgres 15 (Debian's, TLS on, certificate from a test
   "regional root" that sits among decoy roots in a bundle, like the RDS global bundle): real libpq
   (psql) connects with the URL this program renders (`sslmode=verify-full`, `sslrootcert=<bundle>`)
   and refuses a server whose name does not match; LiteLLM 1.106.12's own `pin_bundle_root` picks
   out the one root that verifies the server (what Prisma then gets as `sslcert`) and keeps the
   bundle (fail closed) when no root verifies it. Not proven: Prisma's own handshake.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from components.database import database_url
from components.team_reconciler import DesiredTeam, desired_json
from stacks.yamlio import load_yaml
from tests.conftest import ROOT, planned
from tests.e2e.servers import free_port
from tests.support import fake_litellm as F
from tests.support.shared import missing

pytestmark = pytest.mark.e2e

DB = ROOT / "tests" / "configs" / "gateway-database.ok.yaml"
LITELLM_PY = ROOT / ".e2e" / "litellm" / "bin" / "python"
MASTER = "sk-master-test-0000000000"
K1, K2 = "sk-search-ci-000000000001", "sk-ads-batch-000000000002"


@pytest.fixture(scope="module")
def rendered_job(tmp_path_factory):
    """(script text, Job container) from the plan of the database stack."""
    _, _, out = planned(DB, tmp_path_factory.mktemp("plans"))
    docs = [load_yaml(p.read_text()) for p in (out / "manifests").glob("*.yaml")]
    job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].startswith("litellm-reconcile-"))
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == job["metadata"]["name"])
    return cm["data"]["reconcile.py"], job["spec"]["template"]["spec"]["containers"][0]


def run_job(rendered_job, tmp_path, url, teams, values, master=MASTER):
    """Run the rendered command with the rendered env, the in-cluster values swapped for local ones."""
    script, container = rendered_job
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "reconcile.py").write_text(script)
    (code / "desired.json").write_text(desired_json(teams))
    (tmp_path / "keys.json").write_text(json.dumps(values))
    local = {
        "LITELLM_URL": url,
        "LITELLM_MASTER_KEY": master,
        "RECONCILE_DESIRED": str(code / "desired.json"),
        "RECONCILE_KEYS": str(tmp_path / "keys.json"),
    }
    names = [e["name"] for e in container["env"]]
    assert {"LITELLM_URL", "LITELLM_MASTER_KEY", "RECONCILE_DESIRED"} <= set(names)
    env = {n: local.get(n) or e.get("value", "") for n, e in zip(names, container["env"], strict=True)}
    env["RECONCILE_KEYS"] = local["RECONCILE_KEYS"]  # the stack mounts it once team keys exist
    cmd = [sys.executable if c == "python" else c for c in container["command"]]
    cmd[-1] = str(code / Path(cmd[-1]).name)
    return subprocess.run(
        cmd, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


TEAMS = (
    DesiredTeam("search", ("qwen3-0.6b",), rpm=60, keys=("ci",)),
    DesiredTeam(
        "ads",
        ("qwen3-0.6b", "llama"),
        tpm=1000,
        max_parallel=4,
        max_budget=25.0,
        budget_duration="30d",
        keys=("batch",),
    ),
)
VALUES = {"search/ci": K1, "ads/batch": K2}


def test_the_job_converges_and_a_rerun_only_reads(rendered_job, tmp_path):
    with F.FakeLiteLLM(MASTER) as api:
        first = run_job(rendered_job, tmp_path, api.url, TEAMS, VALUES)
        assert first.returncode == 0, first.stderr
        assert sorted(api.state["teams"]) == ["ads", "search"]
        assert {k["key_alias"]: k["token"] for k in api.state["keys"].values()} == {
            "search/ci": F.sha(K1),
            "ads/batch": F.sha(K2),
        }
        assert api.state["teams"]["ads"]["max_budget"] == 25.0 and api.state["teams"]["ads"]["budget_duration"] == "30d"
        assert first.stdout.splitlines()[-1] == "applied 4 request(s); 0 left"
        api.log.clear()
        second = run_job(rendered_job, tmp_path, api.url, TEAMS, VALUES)
        assert second.returncode == 0 and second.stdout.splitlines() == ["applied 0 request(s); 0 left"]
        assert {m for m, _ in api.log} == {"GET"}
        for out in (first.stdout + first.stderr, second.stdout + second.stderr):
            assert K1 not in out and K2 not in out and F.sha(K1) not in out


def test_a_removed_team_and_a_changed_limit_over_http(rendered_job, tmp_path):
    with F.FakeLiteLLM(MASTER) as api:
        assert run_job(rendered_job, tmp_path, api.url, TEAMS, VALUES).returncode == 0
        search = (DesiredTeam("search", ("qwen3-0.6b",), rpm=30, keys=("ci",)),)
        r = run_job(rendered_job, tmp_path, api.url, search, VALUES)
        assert r.returncode == 0, r.stderr
        assert list(api.state["teams"]) == ["search"] and api.state["teams"]["search"]["rpm_limit"] == 30
        assert [k["rpm_limit"] for k in api.state["keys"].values()] == [30]


def test_keys_beyond_the_first_page_are_seen(rendered_job, tmp_path):
    state = F.empty_state()
    for i in range(150):  # someone else's keys, sorted around ours
        F.apply(state, "POST", "/key/generate", {"key": f"sk-other-{i:012d}", "key_alias": f"other/{i}"})
    with F.FakeLiteLLM(MASTER, state) as api:
        assert run_job(rendered_job, tmp_path, api.url, TEAMS, VALUES).returncode == 0
        api.log.clear()
        again = run_job(rendered_job, tmp_path, api.url, TEAMS, VALUES)
        assert again.returncode == 0, again.stderr
        assert api.log.count(("GET", "/key/list")) == 2 * 2  # two pages, before and after
        assert len(api.state["keys"]) == 152


def test_a_wrong_master_key_fails_the_job_in_one_line(rendered_job, tmp_path):
    with F.FakeLiteLLM(MASTER) as api:
        r = run_job(rendered_job, tmp_path, api.url, TEAMS, VALUES, master="sk-wrong-00000000000")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("error: GET /team/list: HTTP 401") and "sk-wrong" not in r.stderr


# ---- DATABASE_URL against a real TLS Postgres ------------------------------------------------------


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """Three self-signed roots (one real, two decoys) in a bundle; a server cert for localhost."""
    for name in ("decoy1", "root", "decoy2"):
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=Test {name} Root CA",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.pem",
            cwd=d,
        )
    (d / "bundle.pem").write_text("".join((d / f"{n}.pem").read_text() for n in ("decoy1", "root", "decoy2")))
    (d / "decoys.pem").write_text("".join((d / f"{n}.pem").read_text() for n in ("decoy1", "decoy2")))
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=d,
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "root.pem",
        "-CAkey",
        "root.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
        cwd=d,
    )


@pytest.fixture(scope="module")
def tls_postgres():
    pg_bin = Path("/usr/lib/postgresql/15/bin")
    if not (pg_bin / "postgres").exists() or not shutil.which("psql") or not shutil.which("runuser"):
        missing("PostgreSQL 15 server/psql not installed", "apt-get install postgresql-15 postgresql-client")
    # not under pytest's tmp root: its parents are 0700, and the server runs as the postgres user
    d = Path(tempfile.mkdtemp(prefix="llm-serving-pg-"))
    d.chmod(0o755)
    make_pki(d)
    data = d / "data"
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    shutil.chown(d, "postgres") if as_pg else None
    for f in ("server.key", "server.pem"):
        shutil.chown(d / f, "postgres") if as_pg else None
        (d / f).chmod(0o600)
    pwfile = d / "pw"
    pwfile.write_text("s3cret/p@ss\n")
    shutil.chown(pwfile, "postgres") if as_pg else None
    subprocess.run(
        [
            *as_pg,
            str(pg_bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "litellm",
            "--pwfile",
            str(pwfile),
            "-A",
            "scram-sha-256",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    conf = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{d}'",
        "ssl": "on",
        "ssl_cert_file": f"'{d / 'server.pem'}'",
        "ssl_key_file": f"'{d / 'server.key'}'",
    }
    with open(data / "postgresql.conf", "a") as fh:
        fh.write("".join(f"{k} = {v}\n" for k, v in conf.items()))
    (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 scram-sha-256\n")
    shutil.chown(data / "pg_hba.conf", "postgres") if as_pg else None
    proc = subprocess.Popen(
        [*as_pg, str(pg_bin / "postgres"), "-D", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode:
            assert proc.poll() is None and time.monotonic() < deadline, "postgres did not start"
            time.sleep(0.5)
        yield d, port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


def psql(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", url, "-Atc", "select ssl from pg_stat_ssl where pid = pg_backend_pid()"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_libpq_connects_with_the_rendered_url_and_verifies_the_server(tls_postgres):
    d, port = tls_postgres
    url = database_url("localhost", "s3cret/p@ss", str(d / "bundle.pem")).replace(":5432/", f":{port}/")
    ok = psql(url.replace("/litellm?", "/postgres?"))
    assert ok.returncode == 0 and ok.stdout.strip() == "t", ok.stderr
    # negative controls: the server's root absent from the bundle, or a name the certificate lacks
    no_root = psql(url.replace("/litellm?", "/postgres?").replace("bundle.pem", "decoys.pem"))
    assert no_root.returncode != 0 and "certificate verify failed" in no_root.stderr
    wrong_name = psql(url.replace("localhost", "127.0.0.1").replace("/litellm?", "/postgres?"))
    assert wrong_name.returncode != 0 and "does not match host name" in wrong_name.stderr


PIN = """
import json, sys
from litellm.proxy.db.db_url_settings import pin_bundle_root
a = json.load(sys.stdin)
print(json.dumps([pin_bundle_root(b, "localhost", a["port"]) for b in a["bundles"]]))
"""


def test_litellm_pins_the_one_root_that_verifies_the_server(tls_postgres, tmp_path):
    if not LITELLM_PY.exists():
        missing(f"{LITELLM_PY} not found", "run scripts/setup-e2e.sh (the LiteLLM venv)")
    d, port = tls_postgres
    spec = {"port": port, "bundles": [str(d / "bundle.pem"), str(d / "decoys.pem")]}
    r = subprocess.run(
        [str(LITELLM_PY), "-c", PIN],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    pinned, decoys = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(pinned).parent == tmp_path and Path(pinned).read_text() == (d / "root.pem").read_text()
    assert decoys == str(d / "decoys.pem")  # nothing verifies: the bundle stays, Prisma fails closed
