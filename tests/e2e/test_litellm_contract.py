"""The teams reconciler's management requests and the rendered DATABASE_URL, judged by LiteLLM's own
code: the installed 1.106.12, imported in its venv (tests/support/litellm_contract.py). In the e2e tier
because it runs the real LiteLLM (its import alone is about 8 s of CPU); the scenarios are
tests/stacks/test_database.py's, whose hand-computed plans the unit suite checks.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from components.database import database_url
from components.litellm import RDS_CA_PATH
from incluster.reconciler import reconcile as R
from stacks import catalog
from tests.conftest import ROOT
from tests.stacks.test_database import K1, K2, K3, converge, desired, team
from tests.support import fake_litellm as F
from tests.support.shared import missing

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
LITELLM_PY = ROOT / ".e2e" / "litellm" / "bin" / "python"
CONTRACT = ROOT / "tests" / "support" / "litellm_contract.py"

TRANSLATE_THEN_CONTRACT = """
import io, json, runpy, sys, urllib.parse
from litellm.proxy.db.db_url_settings import translate_libpq_ssl_params
job = json.load(sys.stdin)
out = {}
for name, url in job["urls"].items():
    t = translate_libpq_ssl_params(url, resolve_root_cert=lambda path, host, port: path)
    out[name] = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(t).query))
print("translated: " + json.dumps(out))
sys.stdin = io.StringIO(json.dumps(job["contract"]))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
TRANSLATED_URLS = {
    "ours": database_url("db.example", "pw", RDS_CA_PATH),
    "require-only": "postgresql://litellm:pw@db.example:5432/litellm?sslmode=require",  # negative control
}


# ---- every request the reconciler sends, judged by LiteLLM 1.106.12's own routes and models ------


def all_requests() -> list:
    """Every request of the unit suite's scenarios, plus the GETs fetch_current sends."""
    state, v = F.empty_state(), {"search/ci": K1, "ads/batch": K3, "search/web": K2}
    out = []
    for want in (
        desired(
            team(keys=("ci", "web")),
            team("ads", ("m",), rpm=None, tpm=1000, maxp=4, budget=25.0, dur="30d", keys=("batch",)),
        ),
        desired(
            team(rpm=None, tpm=5, maxp=2, budget=10.5, dur="1h", keys=("ci",)), team("ads", ("m", "n"), keys=("batch",))
        ),
        desired(team(keys=("ci", "web"))),
        desired(),
    ):
        out += converge(state, want, v)
    v["search/ci"] = K3 + "x"
    converge(state, desired(team()), {"search/ci": K1})
    out += converge(state, desired(team()), v)
    return out


class Recorder(R.Client):
    def __init__(self):
        self.calls = []

    def call(self, method, route, body=None, query=None):
        self.calls.append((method, route, query or {}))
        return [] if route == "/team/list" else {"keys": [], "total_pages": 1}


@pytest.fixture(scope="module")
def litellm_contract():
    if not LITELLM_PY.exists():
        missing(f"{LITELLM_PY} not found", "run scripts/setup-e2e.sh (the LiteLLM venv)")
    rec = Recorder()
    R.fetch_current(rec)
    sent = all_requests()
    bad = [
        ("POST", "/team/new", {"team_id": "x", "rpm_limt": 5}),  # misspelled field
        ("POST", "/team/create", {"team_id": "x"}),  # no such route
        ("GET", "/team/new", {"team_id": "x"}),  # wrong method
        ("POST", "/key/generate", {"key": K1, "key_alias": "search ci"}),  # alias outside LiteLLM's alphabet
        ("POST", "/team/new", {"team_id": "x", "budget_duration": "a fortnight"}),  # not a LiteLLM duration
        ("POST", "/team/update", {"team_id": "x", "rpm_limit": "lots"}),  # wrong type
        ("POST", "/key/delete", {"aliases": ["a/b"]}),  # KeyRequest says key_aliases
    ]
    spec = {
        "requests": [list(r) for r in sent + bad],
        "queries": [list(c) for c in rec.calls] + [["GET", "/key/list", {"pagesize": 5}]],
        "reads": {
            "TeamListResponseObject": [
                "team_id",
                "team_alias",
                "models",
                "rpm_limit",
                "tpm_limit",
                "max_budget",
                "budget_duration",
                "metadata",
            ],
            "UserAPIKeyAuth": [
                "token",
                "key_alias",
                "team_id",
                "models",
                "rpm_limit",
                "tpm_limit",
                "max_parallel_requests",
                "metadata",
            ],
            "LiteLLM_TeamTable": ["no_such_field"],  # negative control
        },
    }
    # One LiteLLM process (its import is most of the cost) for the contract and the URL translation below.
    r = subprocess.run(
        [str(LITELLM_PY), "-c", TRANSLATE_THEN_CONTRACT, str(CONTRACT)],
        input=json.dumps({"contract": spec, "urls": TRANSLATED_URLS}),
        capture_output=True,
        text=True,
        timeout=170,
        cwd="/tmp",
        # as the rendered gateway runs: no fetch of the cost map at import (a CI run hung past the timeout
        # after the fetch failed, its output already printed)
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    out = json.loads(lines[-1])
    translated = json.loads(next(ln for ln in lines if ln.startswith("translated: ")).removeprefix("translated: "))
    return {"sent": sent, "nbad": len(bad), "ncalls": len(rec.calls), "translated": translated, **out}


def test_the_contract_ran_on_the_pinned_litellm(litellm_contract):
    contract = litellm_contract
    assert contract["version"] == catalog.versions().litellm_version == "1.106.12"
    routes = {(m, r) for m, r, _ in contract["sent"]}
    assert routes == {
        ("POST", p)
        for p in ("/team/new", "/team/update", "/team/delete", "/key/generate", "/key/update", "/key/delete")
    }


def test_every_request_the_reconciler_sends_is_one_litellm_accepts(litellm_contract):
    contract = litellm_contract
    n = len(contract["sent"])
    assert [p for p in contract["problems"] if p[0] < n] == []
    assert [q for q in contract["queries"] if q[0] < contract["ncalls"]] == []
    assert contract["reads"] == ["LiteLLM_TeamTable has no field(s) ['no_such_field']"]


def test_the_contract_check_rejects_each_bad_request(litellm_contract):
    contract = litellm_contract
    n = len(contract["sent"])
    kinds = {}
    for i, kind, _ in contract["problems"]:
        if i >= n:
            kinds.setdefault(i - n, set()).add(kind)
    assert kinds == {
        0: {"unknown-field"},
        1: {"no-route"},
        2: {"no-route"},
        3: {"key-alias"},
        4: {"budget-duration"},
        5: {"invalid"},
        6: {"unknown-field", "invalid"},  # KeyRequest also needs keys or key_aliases
    }
    assert [q[0] for q in contract["queries"]] == [contract["ncalls"]]


def test_litellm_turns_the_url_into_prisma_certificate_verification(litellm_contract):
    contract = litellm_contract
    got = contract["translated"]  # translate_libpq_ssl_params run on TRANSLATED_URLS, in the contract's process
    # Prisma: require TLS, trust only the RDS root (sslcert is its CA file), check chain and hostname
    assert got["ours"] == {"sslmode": "require", "sslcert": RDS_CA_PATH, "sslaccept": "strict"}
    assert got["require-only"] == {"sslmode": "require"}  # encrypted, but no certificate check at all
