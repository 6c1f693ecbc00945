"""`stacks.bench --in-cluster`: the Job's objects against the Kubernetes schemas and the Pod Security
check the rendered tier uses, its NetworkPolicies, the in-pod program run for real with the stub engine,
and the kubectl orchestration driven by a fake kubectl (apply -> wait -> logs -> delete)."""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from unittest import mock

import kubernetes_validate
import pytest

from components.types import GATEWAY_PORT, GATEWAY_SELECTOR
from stacks import bench, catalog, measure
from stacks.measure import engine as eng
from stacks.measure import job
from stacks.yamlio import load_yaml
from tests.stacks.test_bench_cli import MODEL, SEED004, engine  # noqa: F401  (the stub engine fixture)
from tests.support.policy import pod_spec_of, pss_restricted_violations

RUN = eng.Run(
    engine="vllm",
    base_url="http://litellm.gateway.svc.cluster.local:4000",
    model=MODEL,
    tokenizer="Qwen/Qwen3-0.6B",
    dataset="random",
    input_len=64,
    output_len=16,
    slo=measure.Slo(250, 50),
)
SPEC = job.JobSpec(
    models_ns="models",
    gateway_ns="gateway",
    image=catalog.versions().images["vllm"],
    cache_claim="model-cache",
    run=RUN,
    levels=((1, 4), (2, 8)),
    level_timeout_s=600,
)
KEY = "sk-bench"


def by_kind(objs):
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_objects_validate_and_pass_restricted():
    objs = job.render(SPEC, KEY)
    version = catalog.versions().kubernetes + ".0"
    for obj in objs:
        kubernetes_validate.validate(obj, version, strict=True)
    assert [o["kind"] for o in objs] == ["ServiceAccount", "Secret", "NetworkPolicy", "NetworkPolicy", "Job"]
    j = by_kind(objs)[("Job", "stacks-bench")]
    pod = pod_spec_of(j)
    assert pss_restricted_violations(pod) == []
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "stacks-bench"
    assert by_kind(objs)[("ServiceAccount", "stacks-bench")]["automountServiceAccountToken"] is False
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["image"] == "docker.io/vllm/vllm-openai:v0.32.0"
    # 900 s for the image pull and start, then 600 s per level, two levels
    assert j["spec"]["activeDeadlineSeconds"] == 2100 and j["spec"]["ttlSecondsAfterFinished"] == 600
    assert j["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    # every path the image writes, and the results directory, is an emptyDir; the cache is read-only
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}
    for path in ("/home/vllm", "/tmp", "/var/cache/vllm", "/results"):
        assert "emptyDir" in mounts[path], path
    assert mounts["/models"]["persistentVolumeClaim"] == {"claimName": "model-cache", "readOnly": True}
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_HUB_OFFLINE"]["value"] == "1" and env["HF_HUB_CACHE"]["value"] == "/models/hub"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "stacks-bench-api-key", "key": "api-key"}
    assert KEY not in json.dumps(j)  # the key is in the Secret only


def test_policy_checker_is_not_vacuous_on_the_job():
    pod = pod_spec_of(job.render_job(SPEC))
    pod["containers"][0]["securityContext"] = {}
    del pod["securityContext"]["runAsNonRoot"]
    found = pss_restricted_violations(pod)
    assert any("runAsNonRoot" in p for p in found) and any("capabilities" in p for p in found)


def test_network_policies_admit_the_job_to_the_gateway_port_only():
    egress, ingress = job.render_policies(SPEC)
    assert egress["metadata"]["namespace"] == "models" and ingress["metadata"]["namespace"] == "gateway"
    e = egress["spec"]
    assert e["podSelector"]["matchLabels"] == job.SELECTOR and "ingress" not in e
    assert sorted(e["policyTypes"]) == ["Egress", "Ingress"]
    ports = sorted((p["protocol"], p["port"]) for rule in e["egress"] for p in rule["ports"])
    assert ports == [("TCP", 53), ("TCP", GATEWAY_PORT), ("UDP", 53)]
    to_gateway = next(r for r in e["egress"] if r["ports"] == [{"protocol": "TCP", "port": 4000}])
    assert to_gateway["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}},
            "podSelector": {"matchLabels": GATEWAY_SELECTOR},
        }
    ]
    i = ingress["spec"]
    assert i["podSelector"]["matchLabels"] == GATEWAY_SELECTOR and i["policyTypes"] == ["Ingress"]
    assert i["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "models"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "stacks-bench"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 4000}],
        }
    ]
    # and the pod carries the label the policies select
    assert pod_spec_of(job.render_job(SPEC)) is not None
    assert job.render_job(SPEC)["spec"]["template"]["metadata"]["labels"] == job.SELECTOR


def test_gateway_service_name_is_the_rendered_one(plan_of):
    _, _, out = plan_of(SEED004)
    services = [load_yaml(f.read_text()) for f in (out / "manifests").glob("service-gateway-*.yaml")]
    litellm = [s for s in services if s["spec"]["selector"] == GATEWAY_SELECTOR]
    assert [s["metadata"]["name"] for s in litellm] == [job.GATEWAY_SERVICE]
    assert {p["port"] for p in litellm[0]["spec"]["ports"]} == {GATEWAY_PORT}


def run_container(engine, spec=SPEC):  # noqa: F811
    """The Job's container command line, run here with the stub engine as `vllm` on PATH."""
    cmd = job.container_args(spec)
    plan = json.loads(cmd[3])
    assert [lv["argv"][0] for lv in plan["levels"]] == ["vllm", "vllm"]
    return subprocess.run(
        [sys.executable, *cmd[1:]],
        env={**os.environ, "PATH": f"{engine.parent}{os.pathsep}{os.environ['PATH']}", "OPENAI_API_KEY": KEY},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(job, "RESULT_DIR", str(tmp_path / "results"))
    (tmp_path / "results").mkdir()
    return tmp_path / "results"


def test_in_pod_program_prints_what_parse_log_reads(engine, results_dir):  # noqa: F811
    proc = run_container(engine)
    assert proc.returncode == 0, proc.stderr
    levels, error = job.parse_log(proc.stdout + proc.stderr)
    assert error is None and [c for c, _ in levels] == [1, 2]
    # the stub reports 50*c output tok/s and p99 TTFT 100*c ms
    lv = eng.level(levels[1][1], 2)
    assert lv.output_rate == 100.0 and lv.ttft.p99 == 200.0 and lv.completed == 8


def test_in_pod_program_reports_the_failed_level(engine, results_dir, monkeypatch):  # noqa: F811
    monkeypatch.setenv("STUB_FAIL", "1")
    proc = run_container(engine)
    assert proc.returncode == 1
    levels, error = job.parse_log(proc.stdout)
    assert levels == [] and error == "concurrency 1: the engine failed: ValueError: something broke inside the engine"


def test_parse_log_refuses_a_log_without_the_block():
    with pytest.raises(job.JobFailed, match="no result block"):
        job.parse_log("Traceback (most recent call last):\n  ...\n")
    with pytest.raises(job.JobFailed, match="not the expected JSON"):
        job.parse_log(f"{job.BEGIN}\n{{not json\n{job.END}\n")


# --- the kubectl orchestration, with a fake kubectl ------------------------------------------------


def result_log(levels):
    docs = [{"concurrency": c, "result": stub_result(c, n)} for c, n in levels]
    return f"engine noise\n{job.BEGIN}\n{json.dumps({'levels': docs, 'error': None})}\n{job.END}\n"


def stub_result(c, n):
    doc = {"duration": n / c, "completed": n, "failed": 0, "total_output_tokens": 16 * n}
    doc |= {"request_throughput": c, "request_goodput": c / 2, "output_throughput": 50.0 * c}
    for m, v in (("ttft", 100), ("itl", 5), ("e2el", 1000)):
        doc |= {f"p50_{m}_ms": v * c / 2, f"p90_{m}_ms": v * c * 0.9, f"p99_{m}_ms": v * c}
    return doc


class FakeKubectl:
    def __init__(self, states=("running", "Complete"), log=None, fail=None):
        self.calls, self.states, self.log, self.fail = [], list(states), log, fail or {}
        self.applied = None

    def __call__(self, argv):
        assert argv[:2] == ["kubectl", "--kubeconfig"] and os.path.isfile(argv[2])
        verb = argv[3]
        self.calls.append(verb)
        if verb in self.fail:
            raise subprocess.CalledProcessError(1, argv, stderr=self.fail[verb])
        if verb == "apply":
            with open(argv[argv.index("-f") + 1]) as f:
                self.applied = json.load(f)
            assert oct(os.stat(argv[argv.index("-f") + 1]).st_mode & 0o777) == "0o600"
            return ""
        if verb == "get":
            state = self.states.pop(0)
            conds = [] if state == "running" else [{"type": state, "status": "True"}]
            return json.dumps({"status": {"conditions": conds}})
        if verb == "logs":
            return self.log if self.log is not None else result_log(SPEC.levels)
        return ""


def cluster(fake, tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text("{}")
    return job.Cluster(fake, str(kc), sleep=lambda _s: None)


def test_apply_wait_logs_delete(tmp_path):
    fake = FakeKubectl(states=("running", "running", "Complete"))
    levels = job.run_job(cluster(fake, tmp_path), SPEC, KEY)
    assert fake.calls == ["apply", "get", "get", "get", "logs", "delete"]
    assert [c for c, _ in levels] == [1, 2]
    items = fake.applied["items"]
    assert fake.applied["kind"] == "List" and items == job.render(SPEC, KEY)


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        (
            FakeKubectl(fail={"apply": 'namespaces "models" not found'}),
            'kubectl apply -f: namespaces "models" not found',
        ),
        (
            FakeKubectl(
                states=("Failed",), log=f"{job.BEGIN}\n" + '{"levels": [], "error": "concurrency 1: boom"}\n' + job.END
            ),
            "concurrency 1: boom",
        ),
        (FakeKubectl(states=("Failed",), fail={"logs": "pod not found"}), "the Job ended failed and left no log"),
        (FakeKubectl(log="no markers here"), "no result block"),
    ],
    ids=["apply-refused", "engine-failed", "no-pod", "no-block"],
)
def test_failures_still_delete(tmp_path, fake, message):
    with pytest.raises(job.JobFailed, match=message):
        job.run_job(cluster(fake, tmp_path), SPEC, KEY)
    assert fake.calls[-1] == "delete"


def test_a_failing_delete_does_not_hide_the_first_failure(tmp_path):
    fake = FakeKubectl(log="no markers here", fail={"delete": "forbidden"})
    with pytest.raises(job.JobFailed, match="no result block"):
        job.run_job(cluster(fake, tmp_path), SPEC, KEY)
    fake = FakeKubectl(fail={"delete": "forbidden"})
    with pytest.raises(job.JobFailed, match="forbidden"):  # after a good run it is the failure
        job.run_job(cluster(fake, tmp_path), SPEC, KEY)


def test_deadline_ends_the_wait(tmp_path):
    spec = job.JobSpec(**{**SPEC.__dict__, "levels": ((1, 4),), "level_timeout_s": 0})
    fake = FakeKubectl(states=["running"] * 1000)
    with pytest.raises(job.JobFailed, match="did not finish within its deadline of 900s"):
        job.run_job(cluster(fake, tmp_path), spec, KEY)
    # 900 s of margin polled every 5 s: 181 polls (0 s … 900 s), then the delete
    assert fake.calls == ["apply", *["get"] * 181, "delete"]


# --- the CLI ------------------------------------------------------------------------------------


OUTPUTS = {
    "models": [MODEL],
    "modelEndpoints": {MODEL: "http://qwen3-0-6b.models.svc.cluster.local:8000"},
    "gatewayMasterKey": KEY,
    "kubeconfig": {"apiVersion": "v1", "kind": "Config"},
}


@dataclass
class InstantCluster(job.Cluster):
    """The fake cluster answers at once: sleeping POLL_S between its answers would only wait."""

    sleep: Callable[[float], None] = lambda _s: None


def cli(capsys, tmp_path, fake, *args, outputs=OUTPUTS):
    f = tmp_path / "outputs.json"
    f.write_text(json.dumps(outputs))
    with mock.patch.object(job, "Cluster", InstantCluster):
        code = bench.main(["nostack", "--in-cluster", "--outputs", str(f), *args], run=fake)
    out, err = capsys.readouterr()
    return code, out, err


SLO = ["--slo-ttft-ms", "250", "--slo-itl-ms", "50", "--tokenizer", "Qwen/Qwen3-0.6B"]


def test_cli_reports_like_the_local_run(capsys, tmp_path):
    fake = FakeKubectl()
    code, out, err = cli(capsys, tmp_path, fake, "--concurrency", "1,2", "--requests", "8", *SLO, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["gatewayUrl"] == "http://litellm.gateway.svc.cluster.local:4000"
    # p99 TTFT 100 / 200 ms and p99 ITL 5 / 10 ms against 250 / 50: both levels meet it
    assert doc["knee"]["concurrency"] == 2 and doc["knee"]["outputTokensPerSecond"] == 100.0
    job_obj = fake.applied["items"][-1]
    plan = json.loads(job_obj["spec"]["template"]["spec"]["containers"][0]["args"][0])
    assert [lv["argv"][lv["argv"].index("--num-prompts") + 1] for lv in plan["levels"]] == ["8", "8"]
    secret = fake.applied["items"][1]
    assert secret["kind"] == "Secret" and secret["stringData"] == {"api-key": KEY}
    assert "Job models/stacks-bench" in err


def test_cli_team_namespaces(capsys, tmp_path):
    outputs = {**OUTPUTS, "modelEndpoints": {MODEL: "http://qwen3-0-6b.search-models.svc.cluster.local:8000"}}
    fake = FakeKubectl()
    code, _, err = cli(capsys, tmp_path, fake, "--requests", "8", "--concurrency", "1,2", *SLO, outputs=outputs)
    assert code == 0, err
    namespaces = [(o["kind"], o["metadata"]["namespace"]) for o in fake.applied["items"]]
    assert namespaces[-1] == ("Job", "search-models") and ("NetworkPolicy", "search-gateway") in namespaces


@pytest.mark.parametrize(
    ("args", "fake", "message"),
    [
        (["--duration", "30"], FakeKubectl(), "--duration: the Job cannot time"),
        (["--dataset", "prompts.jsonl"], FakeKubectl(), "--dataset prompts.jsonl: the Job has no local files"),
        (["--model", "other"], FakeKubectl(), "model 'other': the gateway does not serve it"),
        ([], FakeKubectl(fail={"apply": "Unauthorized"}), "in-cluster bench: kubectl apply -f: Unauthorized"),
        ([], FakeKubectl(states=("Failed",), log="oops"), "in-cluster bench: the Job's log has no result block"),
    ],
    ids=["duration", "file-dataset", "unknown-model", "apply-refused", "job-failed"],
)
def test_cli_bad_input_is_one_line(capsys, tmp_path, args, fake, message):
    size = [] if "--duration" in args else ["--requests", "8"]
    code, out, err = cli(capsys, tmp_path, fake, *size, "--concurrency", "1,2", *SLO, *args)
    assert code == 2 and out == ""
    errors = [ln for ln in err.splitlines() if not ln.startswith("bench ")]  # the rest is progress
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in err, err
    if fake.calls:
        assert fake.calls[-1] == "delete"


def test_cli_refuses_a_level_whose_requests_all_failed(capsys, tmp_path):
    # what the engine saves when the gateway refuses the key: 0 completed, 4 failed
    dead = {**stub_result(1, 4), "completed": 0, "failed": 4}
    log = f"{job.BEGIN}\n{json.dumps({'levels': [{'concurrency': 1, 'result': dead}], 'error': None})}\n{job.END}\n"
    fake = FakeKubectl(log=log)
    code, out, err = cli(capsys, tmp_path, fake, "--requests", "4", "--concurrency", "1", *SLO)
    assert code == 2 and out == "" and fake.calls[-1] == "delete"
    assert err.splitlines()[-1] == (
        "error: in-cluster bench: concurrency 1: all 4 requests failed — check the key (--api-key) and that "
        "the gateway serves 'qwen3-0.6b'"
    )


def test_cli_without_tokenizer_or_config(capsys, tmp_path):
    code, _, err = cli(capsys, tmp_path, FakeKubectl(), "--requests", "8", *SLO[:4], "--model", MODEL)
    assert code == 2 and "no tokenizer — pass --tokenizer" in err


def checkov_folders() -> dict:
    """For the suite's one checkov scan (tests/conftest.py): the Job's objects, and as a negative
    control the same Job without its skip annotations."""
    bare = job.render_job(SPEC)
    del bare["metadata"]["annotations"]
    return {"bench-job": job.render(SPEC, KEY), "bench-job-bare": [bare]}


def test_objects_pass_checkov(checkov_k8s):
    from tests.support.checkov import of

    assert of(checkov_k8s, "bench-job", "failed") == []
    assert {"CKV_K8S_43", "CKV_K8S_35"} <= {cid for cid, _ in of(checkov_k8s, "bench-job-bare", "failed")}
