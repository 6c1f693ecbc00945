"""The database path (`gateway.database`): RDS + Secrets Manager + verify-full TLS, and the teams
reconciler. Expected values are written by hand; LiteLLM's own code (the installed 1.106.12, run in
its venv) judges the management requests and the DATABASE_URL in the e2e tier
(tests/e2e/test_litellm_contract.py, on the scenarios of this module).

What is NOT proven here: LiteLLM cannot run with a database on this machine (Prisma's engines are
not downloadable), so no request reaches a real LiteLLM, and Prisma's own TLS handshake is not run.
tests/e2e/test_reconciler.py runs the Job's script over HTTP against an in-memory stand-in, and
real libpq (psql) against a real TLS Postgres with the URL this program renders.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pulumi
import pytest

from components.database import CA_CERT_IDENTIFIER, database_url, secret_document
from components.litellm import RDS_CA_PATH
from components.team_reconciler import DesiredTeam, ReconcilerArgs, TeamReconciler, desired_json, job_name
from components.types import ImagePin
from incluster.reconciler import reconcile as R
from stacks import catalog
from stacks.offline import runtime
from stacks.yamlio import load_yaml
from tests.conftest import ROOT
from tests.support import fake_litellm as F

DB = ROOT / "tests" / "configs" / "gateway-database.ok.yaml"
DEV = ROOT / "Pulumi.dev.yaml"
MARK = {"managed-by": "llm-serving"}
K1 = "sk-search-ci-000000000001"
K2 = "sk-search-ci-000000000002"
K3 = "sk-ads-batch-0000000000003"


def team(name="search", models=("qwen-b", "qwen-a"), rpm=60, tpm=None, maxp=None, budget=None, dur=None, keys=("ci",)):
    return DesiredTeam(name, tuple(models), rpm, tpm, maxp, budget, dur, tuple(keys)).to_json()


def desired(*teams):
    return {"teams": list(teams)}


def converge(state, want, values):
    """Apply the plan to the in-memory LiteLLM; return the requests sent."""
    reqs = R.plan_requests(want, F.current(state), values)
    for m, route, body in reqs:
        F.apply(state, m, route, body)
    return reqs


# ---- plan_requests: hand-computed plans ---------------------------------------------------------


def test_first_run_creates_the_team_then_its_key():
    reqs = R.plan_requests(desired(team()), {"teams": [], "keys": []}, {"search/ci": K1})
    assert reqs == [
        (
            "POST",
            "/team/new",
            {
                "team_id": "search",
                "team_alias": "search",
                "models": ["qwen-a", "qwen-b"],
                "rpm_limit": 60,
                "tpm_limit": None,
                "max_budget": None,
                "budget_duration": None,
                "metadata": MARK,
            },
        ),
        (
            "POST",
            "/key/generate",
            {
                "key": K1,
                "key_alias": "search/ci",
                "team_id": "search",
                "models": ["qwen-a", "qwen-b"],
                "rpm_limit": 60,
                "tpm_limit": None,
                "max_parallel_requests": None,
                "metadata": MARK,
            },
        ),
    ]


def test_rerunning_changes_nothing():
    state, values = F.empty_state(), {"search/ci": K1, "ads/batch": K3}
    want = desired(team(), team("ads", ("m",), rpm=None, tpm=1000, maxp=4, budget=25.0, dur="30d", keys=("batch",)))
    assert len(converge(state, want, values)) == 4
    assert R.plan_requests(want, F.current(state), values) == []
    # the stand-in stores the key's hash, never the key (as LiteLLM does)
    assert K1 not in json.dumps(state) and F.sha(K1) in state["keys"]


def test_a_changed_limit_is_updated_in_place():
    state, values = F.empty_state(), {"search/ci": K1}
    converge(state, desired(team()), values)
    reqs = converge(state, desired(team(rpm=30)), values)
    assert reqs == [
        ("POST", "/team/update", {"team_id": "search", "rpm_limit": 30}),
        ("POST", "/key/update", {"key": F.sha(K1), "rpm_limit": 30}),
    ]
    assert R.plan_requests(desired(team(rpm=30)), F.current(state), values) == []


def test_a_cleared_limit_is_sent_as_null():
    state, values = F.empty_state(), {"search/ci": K1}
    converge(state, desired(team(rpm=60)), values)
    assert converge(state, desired(team(rpm=None)), values) == [
        ("POST", "/team/update", {"team_id": "search", "rpm_limit": None}),
        ("POST", "/key/update", {"key": F.sha(K1), "rpm_limit": None}),
    ]


def test_a_budget_change_touches_only_the_team():
    state, values = F.empty_state(), {"search/ci": K1}
    converge(state, desired(team(budget=100.0, dur="30d")), values)
    assert converge(state, desired(team(budget=150.0, dur="30d")), values) == [
        ("POST", "/team/update", {"team_id": "search", "max_budget": 150.0})
    ]


def test_a_removed_team_is_deleted_after_its_keys():
    state, values = F.empty_state(), {"search/ci": K1, "ads/batch": K3}
    converge(state, desired(team(), team("ads", ("m",), keys=("batch",))), values)
    reqs = converge(state, desired(team()), values)
    assert reqs == [
        ("POST", "/key/delete", {"key_aliases": ["ads/batch"]}),
        ("POST", "/team/delete", {"team_ids": ["ads"]}),
    ]
    assert set(state["teams"]) == {"search"} and [k["key_alias"] for k in state["keys"].values()] == ["search/ci"]
    assert R.plan_requests(desired(team()), F.current(state), values) == []


def test_a_rotated_key_is_replaced_and_a_removed_key_deleted():
    state = F.empty_state()
    converge(state, desired(team(keys=("ci", "web"))), {"search/ci": K1, "search/web": K3})
    reqs = converge(state, desired(team(keys=("ci",))), {"search/ci": K2})
    assert [(r[1], r[2].get("key_aliases") or r[2].get("key_alias")) for r in reqs] == [
        ("/key/delete", ["search/ci", "search/web"]),
        ("/key/generate", "search/ci"),
    ]
    assert list(state["keys"]) == [F.sha(K2)]


def test_teams_and_keys_not_ours_are_left_alone():
    state = F.empty_state()
    F.apply(state, "POST", "/team/new", {"team_id": "manual", "models": ["x"]})
    F.apply(
        state, "POST", "/key/generate", {"key": "sk-made-by-hand-0001", "key_alias": "manual/k", "team_id": "manual"}
    )
    assert R.plan_requests(desired(), F.current(state), {}) == []
    assert converge(state, desired(team()), {"search/ci": K1})[0][1] == "/team/new"
    assert "manual" in state["teams"] and len(state["keys"]) == 2


def test_a_key_without_a_value_is_an_error_naming_it():
    with pytest.raises(ValueError, match="search/ci"):
        R.plan_requests(desired(team()), {"teams": [], "keys": []}, {})


def test_log_lines_never_carry_a_key_or_its_hash():
    state, values = F.empty_state(), {"search/ci": K1}
    reqs = converge(state, desired(team()), values) + converge(state, desired(team(rpm=1)), values)
    lines = " ".join(R.describe(r) for r in reqs)
    assert K1 not in lines and F.sha(K1) not in lines and "search/ci" in lines


# ---- DATABASE_URL: verify-full as LiteLLM translates it for Prisma ------------------------------


def test_database_url_is_libpq_verify_full_with_the_bundle_and_a_quoted_password():
    url = database_url("db.example", "p@ss/w:rd", "/etc/litellm-rds/global-bundle.pem")
    assert url == (
        "postgresql://litellm:p%40ss%2Fw%3Ard@db.example:5432/litellm"
        "?sslmode=verify-full&sslrootcert=%2Fetc%2Flitellm-rds%2Fglobal-bundle.pem"
    )
    assert json.loads(secret_document("db.example", "pw")) == {
        "engine": "postgres",
        "host": "db.example",
        "port": 5432,
        "dbname": "litellm",
        "username": "litellm",
        "password": "pw",
    }


# ---- the RDS CA bundle --------------------------------------------------------------------------


def bundle_subjects(pem: str, tmp_path: Path) -> list[str]:
    f = tmp_path / "bundle.pem"
    f.write_text(pem)
    p7 = subprocess.run(["openssl", "crl2pkcs7", "-nocrl", "-certfile", str(f)], capture_output=True, check=True)
    out = subprocess.run(
        ["openssl", "pkcs7", "-print_certs", "-noout"], input=p7.stdout, capture_output=True, check=True
    )
    return re.findall(r"^subject=(.*)$", out.stdout.decode(), flags=re.M)


def test_the_bundle_holds_the_roots_of_the_regions_we_deploy_to(tmp_path):
    subjects = bundle_subjects(catalog.rds_ca_bundle(), tmp_path)
    assert len(subjects) == 102 and all("OU = Amazon RDS" in s for s in subjects)
    regions = set()
    for f in [DEV, *(ROOT / "stacks" / "examples").glob("*.yaml"), *(ROOT / "tests" / "configs").glob("*.ok.yaml")]:
        regions.add(((load_yaml(f.read_text()) or {}).get("config") or {}).get("aws:region", "us-east-1"))
    for region in regions:  # CA_CERT_IDENTIFIER rds-ca-rsa2048-g1 -> "Amazon RDS <region> Root CA RSA2048 G1"
        assert any(f"CN = Amazon RDS {region} Root CA RSA2048 G1" in s for s in subjects), region
    assert CA_CERT_IDENTIFIER == "rds-ca-rsa2048-g1"


def test_a_tampered_bundle_is_refused(tmp_path, monkeypatch):
    (tmp_path / "versions.yaml").write_text((catalog.HERE / "versions.yaml").read_text())
    pem = (catalog.HERE / "rds-global-bundle.pem").read_text()
    (tmp_path / "rds-global-bundle.pem").write_text(pem.replace("MII", "MIJ", 1))
    monkeypatch.setattr(catalog, "HERE", tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        catalog.rds_ca_bundle()


# ---- under mocks: what exists, and that no password is in plain text -----------------------------

DB_TYPES = (
    "aws:rds/instance:Instance",
    "aws:secretsmanager/secret:Secret",
    "aws:secretsmanager/secretVersion:SecretVersion",
)


def kinds_named(out: Path, kind: str, prefix: str) -> list[dict]:
    docs = [load_yaml(p.read_text()) for p in sorted((out / "manifests").glob("*.yaml"))]
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix)]


def test_without_a_database_there_is_no_rds_secret_or_reconciler(plan_of):
    _, rec, out = plan_of(DEV)
    # The key secrets (stacks/compose/tenancy.py) are Secrets Manager too, and not the database's.
    keys = ("gateway-admin-key-", "team-")
    assert [r.type for r in rec.resources if r.type in DB_TYPES and not r.name.startswith(keys)] == []
    assert kinds_named(out, "Job", "litellm-reconcile") == [] and kinds_named(out, "ConfigMap", "rds-ca") == []
    assert kinds_named(out, "ServiceAccount", "litellm-reconciler") == []


def test_with_a_database_rds_is_hardened_and_the_credentials_are_in_secrets_manager(plan_of):
    _, rec, out = plan_of(DB)
    db = rec.one("aws:rds/instance:Instance", "gateway-db-postgres").inputs
    assert db["storageEncrypted"] is True and db["publiclyAccessible"] is False
    assert db["caCertIdentifier"] == "rds-ca-rsa2048-g1" and db["backupRetentionPeriod"] == 7
    assert db["deletionProtection"] is True and db["password"] == "[secret]"
    secret = rec.one("aws:secretsmanager/secret:Secret", "gateway-db-credentials").inputs
    assert secret["kmsKeyId"] == db["kmsKeyId"] and secret["kmsKeyId"].startswith("arn:aws:kms:")
    assert secret["namePrefix"] == "llm-gateway-database-ok-litellm-database-"
    version = rec.one("aws:secretsmanager/secretVersion:SecretVersion", "gateway-db-credentials").inputs
    assert version["secretString"] == "[secret]"
    # the gateway's copy: one Kubernetes Secret key, secret in the plan
    (gw_secret,) = kinds_named(out, "Secret", "litellm")
    assert gw_secret["stringData"]["database-url"] == "[secret]"
    private = [r.name for r in rec.resources if r.type == "aws:ec2/subnet:Subnet" and "private" in r.name]
    subnets = rec.one("aws:rds/subnetGroup:SubnetGroup", "gateway-db-subnets").inputs["subnetIds"]
    assert len(subnets) == len(private) == 3 and all(s.startswith("subnet-") for s in subnets)


def test_the_gateway_mounts_the_bundle_the_url_names(plan_of):
    _, _, out = plan_of(DB)
    (cm,) = kinds_named(out, "ConfigMap", "rds-ca-bundle")
    assert cm["data"] == {"global-bundle.pem": catalog.rds_ca_bundle()}
    (dep,) = kinds_named(out, "Deployment", "litellm")
    pod = dep["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if v.get("configMap", {}).get("name") == "rds-ca-bundle")
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == vol["name"])
    assert mount == {"name": vol["name"], "mountPath": "/etc/litellm-rds", "readOnly": True}
    assert RDS_CA_PATH == "/etc/litellm-rds/global-bundle.pem"


def test_the_reconciler_job_runs_our_script_without_a_shell(plan_of):
    _, _, out = plan_of(DB)
    (job,) = kinds_named(out, "Job", "litellm-reconcile-")
    (cm,) = kinds_named(out, "ConfigMap", "litellm-reconcile-")
    assert cm["metadata"]["name"] == job["metadata"]["name"]
    assert json.loads(cm["data"]["desired.json"]) == {"teams": []}  # no gateway.teams on this branch yet
    assert cm["data"]["reconcile.py"] == (ROOT / "incluster" / "reconciler" / "reconcile.py").read_text()
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "/opt/reconciler/reconcile.py"] and "args" not in c
    env = {e["name"]: e for e in c["env"]}
    assert env["LITELLM_MASTER_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "litellm", "key": "master-key"}}
    assert env["LITELLM_URL"]["value"] == "http://litellm.gateway.svc.cluster.local:4000"
    assert job["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"


def plaintext_hits(out: Path, values: list[str]) -> list[str]:
    return [f"{p.name}: {v}" for p in sorted(out.rglob("*")) if p.is_file() for v in values if v in p.read_text()]


def test_no_password_or_key_in_plain_text_anywhere(plan_of, tmp_path):
    _, _, out = plan_of(DB)
    # what the mocked RandomPasswords return (stacks/offline/runtime.py): the database password, the master key
    values = [
        "mock-" + runtime._fake_id("keys-database-password"),
        "sk-mock-" + runtime._fake_id("keys-litellm-master-key"),
    ]
    assert len(list(out.rglob("*.yaml"))) > 20 and (out / "resources.json").exists()
    assert plaintext_hits(out, values) == []
    # negative control: a URL built from that password, planted in a copy, is found
    planted = tmp_path / "manifests"
    planted.mkdir()
    (planted / "leak.yaml").write_text(database_url("h", values[0], RDS_CA_PATH))
    assert plaintext_hits(tmp_path, values) == [f"leak.yaml: {values[0]}"]


def test_the_job_name_follows_the_desired_state():
    a, b = desired_json([DesiredTeam("a", ("m",))]), desired_json([DesiredTeam("a", ("m",), rpm=1)])
    assert job_name(a, "s", "img") == job_name(a, "s", "img") != job_name(b, "s", "img")
    assert job_name(a, "s", "img") != job_name(a, "s2", "img") != job_name(a, "s", "img2")
    assert re.fullmatch(r"litellm-reconcile-[0-9a-f]{10}", job_name(a, "s", "img"))


def test_the_component_mounts_key_values_from_a_secret_only():
    values = {"search/ci": K1}

    def build():
        TeamReconciler(
            "teams",
            ReconcilerArgs(
                namespace="gw",
                image=ImagePin("python", "3", user=65534),
                gateway_url="http://litellm.gw.svc.cluster.local:4000",
                master_key_secret=("litellm", "master-key"),
                teams=(DesiredTeam("search", ("m",), rpm=5, keys=("ci",)),),
                system_taint="T",
                key_values=pulumi.Output.secret(values),
            ),
        )

    rec = runtime.run(build, config={}, timeout=30)
    secret = rec.one("kubernetes:core/v1:Secret", "teams-keys").inputs
    assert secret["stringData"] == {"keys.json": "[secret]"}
    cm = next(r for r in rec.resources if r.type == "kubernetes:core/v1:ConfigMap").inputs
    assert json.loads(cm["data"]["desired.json"]) == {
        "teams": [
            {
                "name": "search",
                "models": ["m"],
                "rpm": 5,
                "tpm": None,
                "maxParallel": None,
                "maxBudget": None,
                "budgetDuration": None,
                "keys": ["search/ci"],
            }
        ]
    }
    assert K1 not in json.dumps([r.inputs for r in rec.resources], default=str)
    job = rec.one("kubernetes:batch/v1:Job", "teams-job").inputs
    mounts = job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "keys", "mountPath": "/etc/reconciler-keys", "readOnly": True} in mounts
    # the rotation trigger: sha256 of the sorted keys JSON, in the clear (the spec must stay reviewable)
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
    assert job["spec"]["template"]["metadata"]["annotations"] == {"llm-serving/keys-sha256": digest}


# ---- the database stack's objects through the same tiers as the examples (which have no database) --


def test_database_manifests_validate_and_pods_are_restricted(plan_of):
    import kubernetes_validate

    from tests.support.policy import pod_spec_of, pss_restricted_violations

    _, _, out = plan_of(DB)
    version = catalog.versions().kubernetes + ".0"
    pods = []
    for f in sorted((out / "manifests").glob("*.yaml")):
        obj = load_yaml(f.read_text())
        if obj["apiVersion"].startswith("karpenter"):
            continue  # CRD schemas: the rendered tier covers them
        kubernetes_validate.validate(obj, version, strict=True)
        pod = pod_spec_of(obj)
        if pod is not None and obj["metadata"].get("namespace") == "gateway":
            assert pss_restricted_violations(pod) == [], f.name
            assert pod["automountServiceAccountToken"] is False, f.name
            pods.append(obj["metadata"]["name"])
    reconcile = next(n for n in pods if n.startswith("litellm-reconcile-"))
    assert sorted(pods) == sorted(["litellm", "gateway-frontdoor", reconcile])


def test_database_manifests_pass_checkov_with_per_object_skips(checkov_k8s, plan_of):
    from tests.support.checkov import of

    _, _, out = plan_of(DB)
    folder = DB.stem  # the database stack's folder in the suite's one checkov scan
    assert of(checkov_k8s, folder, "failed") == []
    (job,) = kinds_named(out, "Job", "litellm-reconcile-")
    name = job["metadata"]["name"]
    skipped = {cid for cid, res in of(checkov_k8s, folder, "skipped") if res == f"Job.gateway.{name}"}
    assert skipped == {"CKV_K8S_11", "CKV_K8S_35", "CKV_K8S_43", "CKV_K8S_15"}


# ---- from config (gateway.teams) to the reconciler's input ----------------------------------------


def test_desired_teams_route_by_served_name_and_keep_limits_and_budget():
    from types import SimpleNamespace as NS

    from stacks.compose.serving import desired_teams

    search = NS(
        allowedModels=["qwen"],
        keys=["ci", "web"],
        rpmLimit=60,
        tpmLimit=None,
        maxParallelRequests=2,
        maxBudget=50.0,
        budgetDuration="30d",
    )
    intent = NS(config=NS(gateway=NS(teams={"search": search})), models={"qwen": NS(served_name="qwen3-0.6b")})
    assert desired_teams(intent) == (DesiredTeam("search", ("qwen3-0.6b",), 60, None, 2, 50.0, "30d", ("ci", "web")),)
    assert desired_teams(NS(config=NS(gateway=NS(teams={})), models={})) == ()


def test_team_key_values_pair_each_alias_with_its_generated_key():
    from stacks.compose.serving import team_key_values

    teams = (DesiredTeam("search", ("m",), keys=("ci",)), DesiredTeam("ads", ("m",), keys=("batch",)))
    got = {}

    def build():
        out = team_key_values(teams, {"ci": pulumi.Output.secret(K1), "batch": pulumi.Output.secret(K3)})
        out.apply(got.update)
        assert team_key_values((DesiredTeam("x", ("m",)),), {}) is None

    runtime.run(build, config={}, timeout=30)
    assert got == {"search/ci": K1, "ads/batch": K3}


def test_the_plan_cli_prints_no_password(tmp_path, capsys):
    from stacks.plan import main

    assert main(["gateway-database", "--config", str(DB), "--out", str(tmp_path / "o")]) == 0
    r = capsys.readouterr()  # .out and .err, as a process would print them
    assert "teams-job" in r.out  # the reconciler is in the plan (its modelled deploy step)
    values = [
        "mock-" + runtime._fake_id("keys-database-password"),
        "sk-mock-" + runtime._fake_id("keys-litellm-master-key"),
    ]
    assert not [v for v in values if v in r.out + r.err]
    assert plaintext_hits(tmp_path / "o", values) == []


TEAMS_BUDGET = ROOT / "tests" / "configs" / "gateway-teams-budget.ok.yaml"  # arrives with gateway.teams (wt/teams)


def test_a_teams_stack_with_a_database_hands_the_reconciler_its_teams_and_keys(plan_of):
    if not TEAMS_BUDGET.exists():
        pytest.skip("needs gateway.teams and its fixture (the teams work, merged by the lead)")
    _, _, out = plan_of(TEAMS_BUDGET)
    (cm,) = kinds_named(out, "ConfigMap", "litellm-reconcile-")
    # by hand from the fixture: team search, model `tiny` (served as tiny), key search-ci, $100 per 30d
    assert json.loads(cm["data"]["desired.json"]) == {
        "teams": [
            {
                "name": "search",
                "models": ["tiny"],
                "rpm": None,
                "tpm": None,
                "maxParallel": None,
                "maxBudget": 100.0,
                "budgetDuration": "30d",
                "keys": ["search/search-ci"],
            }
        ]
    }
    (secret,) = kinds_named(out, "Secret", "litellm-team-keys")
    assert secret["stringData"] == {"keys.json": "[secret]"}
    (job,) = kinds_named(out, "Job", "litellm-reconcile-")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "RECONCILE_KEYS", "value": "/etc/reconciler-keys/keys.json"} in c["env"]
    assert re.fullmatch(r"[0-9a-f]{64}", job["spec"]["template"]["metadata"]["annotations"]["llm-serving/keys-sha256"])


def test_the_postgres_log_group_is_ours_with_retention_and_the_logs_key(plan_of):
    """RDS would create /aws/rds/instance/<id>/postgresql itself (kept forever, no CMK): the program
    makes it first, and the logs key's policy names it (CloudWatch encrypts only named groups)."""
    intent, rec, _ = plan_of(DB)
    db = rec.one("aws:rds/instance:Instance", "gateway-db-postgres")
    group = rec.one("aws:cloudwatch/logGroup:LogGroup", "gateway-db-logs")
    assert group.inputs["name"] == "/aws/rds/instance/llm-gateway-database-ok-litellm/postgresql"
    assert db.inputs["identifier"] == "llm-gateway-database-ok-litellm"  # the group's middle part
    assert db.inputs["enabledCloudwatchLogsExports"] == ["postgresql"]  # the group's last part
    assert group.inputs["retentionInDays"] == intent.config.cluster.logRetentionDays == 365
    assert group.urn in db.dependencies  # created before the instance starts exporting
    logs_key = rec.one("aws:kms/key:Key", "keys-logs").inputs
    assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:")
    arns = json.loads(logs_key["policy"])["Statement"][1]["Condition"]["ArnEquals"][
        "kms:EncryptionContext:aws:logs:arn"
    ]
    assert any(a.endswith(":log-group:" + group.inputs["name"]) for a in arns), arns
    # control: without a database neither the group nor its name in the key policy
    _, dev, _ = plan_of(DEV)
    assert not [r for r in dev.by_type("aws:cloudwatch/logGroup:LogGroup") if "/aws/rds/" in r.inputs["name"]]
    assert "/aws/rds/" not in dev.one("aws:kms/key:Key", "keys-logs").inputs["policy"]
