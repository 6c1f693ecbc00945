"""Relations tier: what one rendered object says about another holds in every stack.

A table over every stack (Pulumi.dev.yaml, stacks/examples/*.yaml, tests/configs/*.ok.yaml) times
every check in tests/support/relations.py, so a new stack or example is covered without new code.
The expectations below are written by hand from what the system must do (who calls whom, which
secret is which, which path a server answers); nothing is recomputed with the code under test.
Each check has a negative control further down: a rendered object mutated the way a one-line bug
would, and the check reporting it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.types import S3_WEIGHTS_LABEL
from stacks.offline import runtime
from stacks.yamlio import dump_yaml, load_yaml
from tests.conftest import ROOT
from tests.support import relations as R

STACKS = sorted(
    [
        ROOT / "Pulumi.dev.yaml",
        *(ROOT / "stacks" / "examples").glob("*.yaml"),
        *(ROOT / "tests" / "configs").glob("*.ok.yaml"),
    ]
)
SEED000 = ROOT / "stacks" / "examples" / "Pulumi.seed000-inf2-llama-qwen-webui.yaml"
DEV = ROOT / "Pulumi.dev.yaml"
TEAM = ROOT / "stacks" / "examples" / "Pulumi.team-search.yaml"
DB = ROOT / "tests" / "configs" / "gateway-database.ok.yaml"

# Who a pod is, by the labels the workloads carry (app.kubernetes.io conventions).
ROLES = (
    ({"app.kubernetes.io/component": "vllm"}, "vllm"),
    ({"app.kubernetes.io/component": "model-cache"}, "model-cache"),
    ({"app.kubernetes.io/name": "litellm"}, "gateway"),
    ({"app.kubernetes.io/name": "open-webui"}, "ui"),
    ({"app.kubernetes.io/name": "neuron-monitor"}, "neuron-monitor"),
    ({"app.kubernetes.io/name": "litellm-reconciler"}, "reconciler"),
    ({"app.kubernetes.io/name": "gateway-frontdoor"}, "frontdoor"),
    ({"app.kubernetes.io/component": "router"}, "router"),
    ({"app.kubernetes.io/component": "compile-warm"}, "warm"),
)
SERVING_ROLES = ("vllm", "model-cache", "gateway", "ui", "frontdoor", "router", "warm")

# Every connection the system relies on; any other connection a policy admits is a finding.
RELIED_ON = {
    ("gateway", "vllm", 8000, "TCP"),  # LiteLLM -> vLLM OpenAI API
    ("gateway", "router", 8080, "TCP"),  # LiteLLM -> a model's cache-aware router
    ("router", "vllm", 8000, "TCP"),  # the router -> the replicas of its model
    ("ui", "gateway", 4000, "TCP"),  # Open WebUI -> LiteLLM
    ("vpc", "frontdoor", 4080, "TCP"),  # the NLB (via node ports) -> the front door's nginx
    ("frontdoor", "gateway", 4000, "TCP"),  # the front door forwards the client routes to LiteLLM
    ("model-cache", "internet", 443, "TCP"),  # the cache Job downloads from the Hugging Face Hub
    *((role, "kube-dns", 53, proto) for role in SERVING_ROLES for proto in ("UDP", "TCP")),
}
# Weights from S3: the servers (and a warm Job, which runs the server once) stream them over HTTPS.
RELIED_ON_WITH_S3_WEIGHTS = {("vllm", "internet", 443, "TCP"), ("warm", "internet", 443, "TCP")}
RELIED_ON_WITH_DATABASE = {
    ("gateway", "vpc", 5432, "TCP"),  # LiteLLM -> RDS Postgres in the VPC
    ("reconciler", "gateway", 4000, "TCP"),  # the teams Job -> LiteLLM's management API
    *(("reconciler", "kube-dns", 53, proto) for proto in ("UDP", "TCP")),
}

# (Secret name, key) -> the material it carries; who may hold it; who needs it.
MATERIAL = {
    ("hf-token", "token"): "hf-token",
    ("vllm-api-key", "api-key"): "vllm-key",
    ("litellm", "vllm-api-key"): "vllm-key",
    ("litellm", "master-key"): "master-key",
    ("litellm", "salt-key"): "salt-key",
    ("litellm", "database-url"): "database-url",
    ("open-webui", "api-key"): "webui-key",  # Open WebUI calls the gateway with its own key, not the master key
    ("open-webui", "secret-key"): "webui-secret",
    ("litellm-keys", "keys.json"): "key-hashes",  # SHA-256 of the team keys (components/team_keys.py)
    ("litellm", "redis-host"): "redis",
    ("litellm", "redis-password"): "redis",
    ("litellm-team-keys", "keys.json"): "team-keys",  # the reconciler's key values (database path)
}
ALLOWED = {
    "hf-token": {"model-cache"},
    "vllm-key": {"vllm", "gateway", "warm"},  # the warm Job runs the server's own pod once
    "master-key": {"gateway", "reconciler"},
    "webui-key": {"ui"},
    "key-hashes": {"gateway"},
    "redis": {"gateway"},
    "salt-key": {"gateway"},
    "database-url": {"gateway"},
    "webui-secret": {"ui"},
    "team-keys": {"reconciler"},
}
NEEDS = {
    "vllm": {"vllm-key"},
    "gateway": {"vllm-key", "master-key", "salt-key"},
    "ui": {"webui-key", "webui-secret"},
    "reconciler": {"master-key"},
}

# Health endpoints each server answers (vLLM /health; LiteLLM /health/liveliness and
# /health/readiness, its own spelling; Open WebUI /health; the front door's nginx forwards
# /health/liveliness to LiteLLM and 404s /health/readiness).
HEALTH_PATHS = {
    "vllm": {"/health"},
    "litellm": {"/health/liveliness", "/health/readiness"},
    "open-webui": {"/health"},
    "nginx": {"/health/liveliness"},
    # vllm-router 0.1.17: /liveness (the process), /readiness (503 until a worker is healthy), /health.
    "router": {"/liveness", "/readiness", "/health"},
}

# Pods the Helm releases create: (values section, None for a controller / the extended resource
# whose every node a DaemonSet must reach).
HELM_PODS = {
    "karpenter": [("", None)],
    "gpu-operator": [
        ("operator", None),
        ("node-feature-discovery.master", None),
        ("node-feature-discovery.gc", None),
        ("daemonsets", "nvidia.com/gpu"),
        ("node-feature-discovery.worker", "nvidia.com/gpu"),
    ],
    "neuron": [("devicePlugin", "aws.amazon.com/neuron"), ("scheduler", None), ("scheduler.customScheduler", None)],
    "kube-prometheus-stack": [
        ("prometheusOperator", None),
        ("prometheusOperator.admissionWebhooks.patch", None),
        ("prometheus.prometheusSpec", None),
        ("alertmanager.alertmanagerSpec", None),
        ("grafana", None),
        ("kube-state-metrics", None),
        ("prometheus-node-exporter", "nvidia.com/gpu"),
        ("prometheus-node-exporter", "aws.amazon.com/neuron"),
    ],
    "keda": [("", None)],
}

# Known violations, each with its reason. (check, subject glob, what glob) -> why. An entry that no
# stack needs any more fails test_every_exception_is_still_needed, so a fix removes its entry.
EXCEPTIONS = {
    # Reasoned, permanent: Hub files come from a CDN with no fixed addresses, so the cache Job's :443
    # egress names no peer and also reaches :443 inside the VPC.
    ("call-paths", "model-cache -> vpc", "443/TCP is admitted but not relied on"): "Hub egress cannot name its peers",
    # Reasoned, permanent: S3 has no fixed addresses either (a NetworkPolicy cannot name the gateway
    # endpoint's prefix list), so the :443 egress for weights from S3 also reaches :443 inside the VPC.
    ("call-paths", "vllm -> vpc", "443/TCP is admitted but not relied on"): "S3 egress cannot name its peers",
    ("call-paths", "warm -> vpc", "443/TCP is admitted but not relied on"): "S3 egress cannot name its peers",
    # Reasoned, permanent: a cache-aware router discovers its model's pods through the API server, with
    # a Role that may only read pods in the models namespace (components/router.py).
    ("security", "Deployment/*/*-router", "automountServiceAccountToken is not false"): "pod discovery",
    # Reasoned, permanent: neuron-monitor reads the node's Neuron devices and driver counters (AWS runs
    # it privileged, as root); the Observability component's NetworkPolicy admits only the scraper.
    **{
        ("security", "DaemonSet/kube-system/neuron-monitor/neuron-monitor", what): "Neuron device access"
        for what in ("runAsNonRoot", "allowPrivilegeEscalation", "privileged", "capabilities", "readOnlyRootFilesystem")
    },
}


def role_of(w: R.Workload):
    for labels, role in ROLES:
        if all(w.labels.get(k) == v for k, v in labels.items()):
            return role
    return None


@dataclass
class Stack:
    file: Path
    doc: dict
    r: R.Rendered
    platform: R.Rendered  # itself, or the platform stack a team stack attaches to
    intent: object

    @property
    def cidr(self) -> str:
        # An existing VPC is not a resource of the stack: its CIDR is what AWS answers (the mock's getVpc).
        return R.vpc_cidr(self.platform) or runtime.EXISTING_VPC_CIDR

    @property
    def internal_lb(self) -> bool:
        return ((self.doc.get("config") or {}).get("llm-serving:gateway") or {}).get("internalLoadBalancer", True)

    @property
    def database(self) -> bool:
        return bool(self.r.aws("aws:rds/instance:Instance"))

    def gated_jobs(self) -> set[str]:
        gated = {m.hf_id for m in self.intent.models.values() if m.arch.gated}
        return {w.name for w in R.workloads(self.r) if w.kind == "Job" and R.job_hf_id(w) in gated}

    @property
    def s3_weights(self) -> bool:
        (key, value), *_ = S3_WEIGHTS_LABEL.items()
        return any(w.labels.get(key) == value for w in R.workloads(self.r))

    def relied_on(self) -> set:
        return (
            RELIED_ON
            | (RELIED_ON_WITH_DATABASE if self.database else set())
            | (RELIED_ON_WITH_S3_WEIGHTS if self.s3_weights else set())
        )


_stacks: dict[Path, Stack] = {}


def stack(path: Path, plan_of) -> Stack:
    """The stack's plan, loaded once per process (the checks only read it; negative controls copy it)."""
    if path not in _stacks:
        _stacks[path] = _load_stack(path, plan_of)
    return _stacks[path]


def _load_stack(path: Path, plan_of) -> Stack:
    intent, _, out = plan_of(path)
    doc = load_yaml(path.read_text())
    r = R.load(out, path.name)
    ref = (doc.get("config") or {}).get("llm-serving:platformStack")
    platform = r
    if ref:  # organization/llm-serving/<stack> -> Pulumi.<stack>.yaml, as planned here
        _, _, pout = plan_of(ROOT / f"Pulumi.{ref.rsplit('/', 1)[1]}.yaml")
        platform = R.load(pout)
    return Stack(path, doc, r, platform, intent)


def scraper(s: Stack):
    """The metrics scraper, where the stack renders ServiceMonitors/PodMonitors: (endpoint, paths)."""
    targets = R.scrape_targets(s.r)
    if not targets:
        return [], set()
    rules = [R.namespace_of(o) for o in s.r.kind("PrometheusRule")]
    ns = next((d.get("namespace") for name, d in s.r.helm.items() if "prometheus" in str(d.get("chart"))), None)
    ns = ns or next(iter(rules), "monitoring")  # a Prometheus the user brings: where the stack puts its rules
    ep = R.Endpoint("scraper", ns, {"app.kubernetes.io/name": "prometheus"}, None, ())
    return [ep], {("scraper", role_of(w), port, proto) for w, port, proto in targets}


def run_check(name: str, s: Stack) -> list[R.Problem]:
    r = s.r
    if name == "selectors":
        return R.check_selectors(r)
    if name == "load-balancers":
        return R.check_load_balancers(r, internal=s.internal_lb)
    if name == "probes":
        return R.check_probes(r, HEALTH_PATHS)
    if name == "call-paths":
        extra, paths = scraper(s)
        return R.check_call_paths(r, role_of=role_of, cidr=s.cidr, expected=s.relied_on() | paths, extra=extra)
    if name == "policy-ports":
        return R.check_policy_ports(r)
    if name == "placement":
        caps = R.capacities(s.platform)
        unknown = [
            R.Problem("placement", f"helm/{rel}", "no HELM_PODS entry: say where its pods run")
            for rel in r.helm
            if rel not in HELM_PODS and rel != "karpenter-crd"
        ]  # CRDs only, no pods
        return unknown + R.check_placement(R.workload_placements(r) + R.helm_placements(r, HELM_PODS), caps)
    if name == "node-classes":
        existing = (((s.doc.get("config") or {}).get("llm-serving:cluster") or {}).get("vpc") or {}).get(
            "existing"
        ) or {}
        return R.check_node_classes(r, tuple(existing.get("privateSubnetIds") or ()))
    if name == "urls":
        return R.check_urls(r, s.cidr)
    if name == "secrets":
        return R.check_secrets(
            r, material=MATERIAL, allowed=ALLOWED, needs=NEEDS, role_of=role_of, gated_jobs=s.gated_jobs()
        )
    if name == "security":
        return R.check_security(r)
    if name == "quotas":
        return R.check_quotas(r)
    if name == "storage":
        return R.check_storage_identity(r, s.platform.kind("StorageClass"))
    raise KeyError(name)


CHECKS = (
    "selectors",
    "load-balancers",
    "probes",
    "call-paths",
    "policy-ports",
    "placement",
    "node-classes",
    "urls",
    "secrets",
    "security",
    "quotas",
    "storage",
)


def unexcused(problems):
    return [p for p in problems if R.excepted(p, EXCEPTIONS) is None]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("path", STACKS, ids=lambda p: p.name)
def test_relation_holds(path, check, plan_of):
    probs = unexcused(run_check(check, stack(path, plan_of)))
    assert not probs, "\n".join(map(str, probs))


def test_every_exception_is_still_needed(plan_of):
    used = set()
    for path in STACKS:
        s = stack(path, plan_of)
        for check in CHECKS:
            for p in run_check(check, s):
                e = R.excepted(p, EXCEPTIONS)
                if e:
                    used.add(e)
    assert set(EXCEPTIONS) - used == set(), "stale exceptions (the finding is fixed: remove the entry)"


def test_the_stack_table_covers_every_kind_of_stack():
    names = {p.name for p in STACKS}
    assert {
        "Pulumi.dev.yaml",
        "Pulumi.team-search.yaml",
        "gateway-database.ok.yaml",
        "neuron-and-gpu.ok.yaml",
    } <= names and len(STACKS) >= 11


# ---- negative controls: one mutated object, the check reports it -------------------------------------------


def mutated(path, plan_of) -> Stack:
    s = stack(path, plan_of)
    return Stack(s.file, s.doc, copy.deepcopy(s.r), copy.deepcopy(s.platform), s.intent)


def obj(r: R.Rendered, kind: str, name: str, ns: str | None = None) -> dict:
    hits = [
        o for o in r.objects if o["kind"] == kind and R.name_of(o) == name and (ns is None or R.namespace_of(o) == ns)
    ]
    assert len(hits) == 1, (kind, name, ns)
    return hits[0]


def pod(r: R.Rendered, kind: str, name: str) -> dict:
    return obj(r, kind, name)["spec"]["template"]["spec"]


def whats(problems) -> str:
    return "\n".join(map(str, unexcused(problems)))


def test_control_service_selector_shared_by_two_models(plan_of):
    s = mutated(SEED000, plan_of)
    obj(s.r, "Service", "llama-3-1-8b")["spec"]["selector"] = {"app.kubernetes.io/component": "vllm"}
    assert "Service/models/llama-3-1-8b: selects 2 workloads" in whats(run_check("selectors", s))


def test_control_service_target_port_and_pdb_selector(plan_of):
    s = mutated(DEV, plan_of)
    obj(s.r, "Service", "qwen3-0-6b")["spec"]["ports"][0]["targetPort"] = 8001
    obj(s.r, "PodDisruptionBudget", "litellm")["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": "lite"}}
    out = whats(run_check("selectors", s))
    assert "port 8000 targets 8001, not a containerPort of qwen3-0-6b" in out
    assert "PodDisruptionBudget/gateway/litellm: selects 0 workloads" in out


def test_control_internet_facing_gateway(plan_of):
    s = mutated(DEV, plan_of)
    annotations = obj(s.r, "Service", "gateway-public")["metadata"]["annotations"]
    del annotations["service.beta.kubernetes.io/aws-load-balancer-internal"]
    assert "internal=False, the stack asks internal=True" in whats(run_check("load-balancers", s))


def test_control_probe_path_and_port(plan_of):
    s = mutated(DEV, plan_of)
    c = pod(s.r, "Deployment", "qwen3-0-6b")["containers"][0]
    c["livenessProbe"]["httpGet"]["path"] = "/healthz"
    c["readinessProbe"]["httpGet"]["port"] = 8001
    out = whats(run_check("probes", s))
    assert "livenessProbe path '/healthz'" in out and "readinessProbe port 8001" in out


def test_control_policy_port_breaks_gateway_to_vllm(plan_of):
    s = mutated(DEV, plan_of)
    obj(s.r, "NetworkPolicy", "vllm-from-gateway")["spec"]["ingress"][0]["ports"][0]["port"] = 8080
    assert "gateway -> vllm: 8000/TCP is not admitted" in whats(run_check("call-paths", s))
    assert "ingress port 8080/TCP: no selected pod listens on it" in whats(run_check("policy-ports", s))


def test_control_missing_default_deny_admits_other_paths(plan_of):
    s = mutated(SEED000, plan_of)
    s.r.objects.remove(obj(s.r, "NetworkPolicy", "models-default-deny"))
    assert whats(run_check("call-paths", s)) == ""  # the DNS policy still isolates egress: nothing opens
    s.r.objects.remove(obj(s.r, "NetworkPolicy", "models-dns"))
    out = whats(run_check("call-paths", s))
    assert "vllm -> internet: 443/TCP is admitted but not relied on" in out
    assert "vllm -> frontdoor: 4080/TCP is admitted but not relied on" in out  # front door admits the VPC
    assert "vllm -> gateway: 4000" not in out  # LiteLLM's own port admits named pods only
    s = mutated(SEED000, plan_of)
    obj(s.r, "NetworkPolicy", "gateway-to-vllm")["spec"]["egress"][0]["to"][0]["namespaceSelector"] = {}
    assert whats(run_check("call-paths", s)) == ""  # a wider peer, same pods in this stack: still fine
    obj(s.r, "NetworkPolicy", "ui-to-gateway")["spec"]["egress"][0]["to"] = []
    assert "ui -> vllm" not in whats(run_check("call-paths", s))  # vLLM ingress still holds the line
    assert "ui -> internet: 443/TCP is admitted" not in whats(run_check("call-paths", s))
    obj(s.r, "NetworkPolicy", "ui-to-gateway")["spec"]["egress"][0].pop("ports")
    assert "ui -> internet: 443/TCP is admitted but not relied on" in whats(run_check("call-paths", s))


def test_control_egress_peer_that_selects_nothing(plan_of):
    s = mutated(DEV, plan_of)
    obj(s.r, "NetworkPolicy", "gateway-to-vllm")["spec"]["egress"][0]["to"][0]["podSelector"] = {
        "matchLabels": {"app.kubernetes.io/component": "vllm-server"}
    }
    assert "egress peer selects no pod" in whats(run_check("policy-ports", s))


def test_control_system_taint_effect(plan_of):
    s = mutated(DEV, plan_of)
    for res in s.platform.resources:
        if res["type"] == "aws:eks/nodeGroup:NodeGroup":
            res["inputs"]["taints"][0]["effect"] = "NO_EXECUTE"
    out = whats(run_check("placement", s))
    assert "Deployment/gateway/litellm: tolerates no matching capacity" in out
    assert "helm/karpenter/.: tolerates no matching capacity" in out


def test_control_node_pool_taint_and_device_plugin(plan_of):
    s = mutated(DEV, plan_of)
    obj(s.platform, "NodePool", "gpu")["spec"]["template"]["spec"]["taints"][0]["key"] = "nvidia.com/gpu-x"
    out = whats(run_check("placement", s))
    assert "Deployment/models/qwen3-0-6b: tolerates no matching capacity" in out
    assert "helm/gpu-operator/daemonsets: misses nodepool/gpu" in out
    s = mutated(DEV, plan_of)
    terms = pod(s.r, "Deployment", "qwen3-0-6b")["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    next(e for e in terms[0]["matchExpressions"] if e["key"] == "llm-serving/pool")["values"] = ["gpus"]
    assert "Deployment/models/qwen3-0-6b: no node group or pool matches" in whats(run_check("placement", s))


def test_control_team_stack_placed_on_the_platform_pools(plan_of):
    s = mutated(TEAM, plan_of)
    s.platform.objects.remove(obj(s.platform, "NodePool", "gpu"))
    assert "Deployment/search-models/qwen2-5-7b: no node group or pool matches" in whats(run_check("placement", s))


def test_control_node_class_subnets_and_ref(plan_of):
    s = mutated(DEV, plan_of)
    obj(s.r, "EC2NodeClass", "nvidia")["spec"]["subnetSelectorTerms"] = [{"tags": {"kubernetes.io/role/elb": "1"}}]
    obj(s.r, "NodePool", "gpu")["spec"]["template"]["spec"]["nodeClassRef"]["name"] = "neuron"
    out = whats(run_check("node-classes", s))
    assert "matches 3 subnets (3 public)" in out and "names no EC2NodeClass" in out


def _litellm(s: Stack) -> dict:
    [(cm, key, doc)] = R.litellm_configs(s.r)
    return cm, key, doc


def _set_litellm(s: Stack, doc: dict):
    cm, key, _ = _litellm(s)
    cm["data"][key] = dump_yaml(doc)


@pytest.mark.parametrize(
    "url,expect",
    [
        ("https://qwen3-0-6b.models.svc.cluster.local:8000/v1", "scheme https but Service port 8000 speaks 'http'"),
        ("http://qwen3-0-6b.models.svc.cluster.local:8080/v1", "Service qwen3-0-6b has no port 8080"),
        ("http://qwen3-0-6b.model.svc.cluster.local:8000/v1", "is no Service of the stack"),
        ("http://qwen3-0-6b.models.svc.cluster.local:8000", "path is not /v1"),
    ],
)
def test_control_api_base(url, expect, plan_of):
    s = mutated(DEV, plan_of)
    _, _, doc = _litellm(s)
    doc["model_list"][0]["litellm_params"]["api_base"] = url
    _set_litellm(s, doc)
    assert expect in whats(run_check("urls", s))


def test_control_route_reaches_a_server_with_another_name(plan_of):
    s = mutated(SEED000, plan_of)
    args = pod(s.r, "Deployment", "qwen3-8b")["containers"][0]["args"]
    args[args.index("--served-model-name") + 1] = "llama-3.1-8b-instruct"
    assert "route 'hosted_vllm/qwen3-8b' reaches qwen3-8b, which serves ['llama-3.1-8b-instruct']" in whats(
        run_check("urls", s)
    )


def test_control_ui_base_url_and_config_path(plan_of):
    s = mutated(SEED000, plan_of)
    env = pod(s.r, "Deployment", "open-webui")["containers"][0]["env"]
    base = next(e for e in env if e["name"] == "OPENAI_API_BASE_URL")
    base["value"] = "http://litellm.gateway.svc.cluster.local:4001/v1"
    args = pod(s.r, "Deployment", "litellm")["containers"][0]["args"]
    args[args.index("--config") + 1] = "/etc/litellm/litellm.yaml"
    out = whats(run_check("urls", s))
    assert "OPENAI_API_BASE_URL" in out and "Service litellm has no port 4001" in out
    assert "--config /etc/litellm/litellm.yaml is not where the ConfigMap puts config.yaml" in out


def test_control_hf_token_in_a_non_gated_job_and_keys_in_the_wrong_pod(plan_of):
    s = mutated(SEED000, plan_of)
    job = pod(s.r, "Job", "cache-qwen3-8b")
    token = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    job["containers"][0]["env"].append(token)
    vllm = pod(s.r, "Deployment", "llama-3-1-8b")["containers"][0]
    vllm["env"] = [e for e in vllm["env"] if e["name"] != "VLLM_API_KEY"]
    vllm["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}})
    out = whats(run_check("secrets", s))
    assert "Job/models/cache-qwen3-8b: hf-token held; gated model: False" in out
    assert "Deployment/models/llama-3-1-8b: role vllm holds hf-token" in out
    assert "Deployment/models/llama-3-1-8b: role vllm needs vllm-key and does not get it" in out


def test_control_gated_job_without_token_and_dangling_secret(plan_of):
    s = mutated(SEED000, plan_of)
    job = pod(s.r, "Job", "cache-llama-3-1-8b")
    job["volumes"] = [v for v in job["volumes"] if "secret" not in v]  # the mounted token file
    job["containers"][0]["volumeMounts"] = [m for m in job["containers"][0]["volumeMounts"] if m["name"] != "hf-token"]
    obj(s.r, "Secret", "vllm-api-key")["metadata"]["name"] = "vllm-key"
    out = whats(run_check("secrets", s))
    assert "cache-llama-3-1-8b: hf-token missing; gated model: True" in out
    assert "reads Secret vllm-api-key/api-key, which the stack does not create" in out


def test_control_writable_root_and_privilege(plan_of):
    s = mutated(DEV, plan_of)
    p = pod(s.r, "Deployment", "qwen3-0-6b")
    p["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    p["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    p["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    out = whats(run_check("security", s))
    assert "qwen3-0-6b/vllm: readOnlyRootFilesystem" in out
    assert "qwen3-0-6b/wait-for-weights: allowPrivilegeEscalation" in out and "hostPath volume h" in out


def test_control_team_quota_below_the_models_need(plan_of):
    s = mutated(TEAM, plan_of)
    obj(s.r, "ResourceQuota", "accelerators")["spec"]["hard"]["requests.nvidia.com/gpu"] = "0"
    assert "requests.nvidia.com/gpu: workloads request 1 > 0" in whats(run_check("quotas", s))


def test_control_default_service_account(plan_of):
    s = mutated(DEV, plan_of)
    del pod(s.r, "Deployment", "qwen3-0-6b")["serviceAccountName"]
    assert "Deployment/models/qwen3-0-6b: serviceAccountName default" in whats(run_check("security", s))


def test_control_efs_access_point_uid(plan_of):
    s = mutated(DEV, plan_of)
    obj(s.platform, "StorageClass", "efs")["parameters"]["uid"] = "1000"
    out = whats(run_check("storage", s))
    assert "Job/models/cache-qwen3-0-6b/download: writes EFS class efs (uid 1000, gid 2000) as uid 2000" in out
    obj(s.platform, "StorageClass", "efs")["parameters"]["gid"] = "1000"
    assert "Deployment/models/qwen3-0-6b/vllm: reads EFS class efs" in whats(run_check("storage", s))


def test_control_scraper_paths_come_from_monitors(plan_of):
    """A ServiceMonitor makes the scraper's path a relied-on one; without the scraper NetworkPolicy
    (components/prometheus_stack.py) the default-deny policies do not admit it."""
    s = mutated(DEV, plan_of)
    admit = ("NetworkPolicy", "vllm-from-prometheus")
    s.r.objects[:] = [o for o in s.r.objects if (o["kind"], o["metadata"]["name"]) != admit]
    obj(s.r, "Service", "qwen3-0-6b")["metadata"]["labels"]["monitor"] = "yes"
    s.r.objects.append(
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "vllm", "namespace": "models"},
            "spec": {"selector": {"matchLabels": {"monitor": "yes"}}, "endpoints": [{"port": "http"}]},
        }
    )
    assert "scraper -> vllm: 8000/TCP is not admitted" in whats(run_check("call-paths", s))


# ---- the evaluator follows Kubernetes semantics (hand cases) ------------------------------------------------

A = R.Endpoint("a", "ns1", {"app": "a"}, "10.0.0.1", ((80, "http", "TCP"),))
B = R.Endpoint("b", "ns2", {"app": "b"}, "10.0.0.2", ((8000, "http", "TCP"), (53, "dns", "UDP")))
OUT = R.Endpoint("out", None, {}, "203.0.113.5", ((443, None, "TCP"),))


def ev(*policies, ns_labels=None):
    pols = [
        {"kind": "NetworkPolicy", "metadata": {"name": f"p{i}", "namespace": ns}, "spec": spec}
        for i, (ns, spec) in enumerate(policies)
    ]
    return R.PolicyEvaluator(pols, ns_labels or {"ns1": {"team": "x"}, "ns2": {}})


def test_no_policy_admits_everything_and_an_empty_ingress_denies():
    assert ev().admitted(A, B, 8000)
    deny_in = ("ns2", {"podSelector": {}, "policyTypes": ["Ingress"]})
    assert not ev(deny_in).admitted(A, B, 8000)
    assert ev(deny_in).admitted(B, A, 80)  # egress of b is not isolated by an Ingress-only policy


def test_policy_types_default_from_sections():
    # no policyTypes + an egress section -> isolates both directions
    p = ("ns1", {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}]})
    assert ev(p).admitted(A, OUT, 443) and not ev(p).admitted(A, B, 8000)
    assert not ev(p).admitted(B, A, 80)  # Ingress is implied, with no rules
    # no policyTypes, ingress only -> egress untouched
    q = ("ns1", {"podSelector": {"matchLabels": {"app": "a"}}, "ingress": [{}]})
    assert ev(q).admitted(A, B, 8000) and ev(q).admitted(B, A, 80)


def test_peers_namespace_and_pod_selectors():
    same_ns_only = (
        "ns2",
        {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}],
        },
    )
    assert not ev(same_ns_only).admitted(A, B, 8000)  # podSelector alone = the policy's namespace
    by_name = (
        "ns2",
        {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ns1"}},
                            "podSelector": {"matchLabels": {"app": "a"}},
                        }
                    ]
                }
            ],
        },
    )
    assert ev(by_name).admitted(A, B, 8000)
    by_label = (
        "ns2",
        {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchExpressions": [{"key": "team", "operator": "In", "values": ["x"]}]
                            }
                        }
                    ]
                }
            ],
        },
    )
    assert ev(by_label).admitted(A, B, 8000)
    assert not ev(by_label, ns_labels={"ns1": {"team": "y"}}).admitted(A, B, 8000)
    any_ns = (
        "ns2",
        {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"namespaceSelector": {}}]}]},
    )
    assert ev(any_ns).admitted(A, B, 8000) and not ev(any_ns).admitted(OUT, B, 8000)


def test_ip_blocks_ports_and_union():
    blk = (
        "ns2",
        {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/31"]}}]}],
        },
    )
    assert not ev(blk).admitted(A, B, 8000)  # 10.0.0.1 is excepted
    assert ev(blk).admitted(R.Endpoint("c", None, {}, "10.0.9.9"), B, 8000)
    named = (
        "ns2",
        {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]},
    )
    assert ev(named).admitted(A, B, 53, "UDP") and not ev(named).admitted(A, B, 53, "TCP")
    assert not ev(named).admitted(A, B, 8000)
    rng = (
        "ns2",
        {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 7000, "endPort": 8000}]}]},
    )
    assert ev(rng).admitted(A, B, 8000) and not ev(rng).admitted(A, B, 53, "UDP")
    only53 = (
        "ns2",
        {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]},
    )
    only8000 = (
        "ns2",
        {
            "podSelector": {"matchLabels": {"app": "b"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": 8000}]}],
        },
    )
    assert ev(only53, only8000).admitted(A, B, 8000) and ev(only53, only8000).admitted(A, B, 53, "UDP")
    assert not ev(only53).admitted(A, B, 8000)


def test_tolerations_match_key_value_and_effect():
    taint = {"key": "k", "value": "true", "effect": "NoSchedule"}
    assert R.tolerates([{"key": "k", "operator": "Exists"}], taint)
    assert R.tolerates([{"operator": "Exists"}], taint)
    assert R.tolerates([{"key": "k", "value": "true", "effect": "NoSchedule"}], taint)
    assert not R.tolerates([{"key": "k", "value": "false"}], taint)
    assert not R.tolerates([{"key": "k", "operator": "Exists", "effect": "NoExecute"}], taint)
    assert not R.tolerates([{"key": "j", "operator": "Exists"}], taint)
    assert not R.tolerates([], taint)


def test_label_selectors():
    assert R.selects({}, {"a": "1"}) and not R.selects(None, {"a": "1"})
    assert R.selects({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["2"]}]}, {"a": "1"})
    assert not R.selects({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"})
    assert not R.map_selects({}, {"a": "1"}) and R.map_selects({"a": "1"}, {"a": "1", "b": "2"})
