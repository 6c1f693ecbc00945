"""Cache-aware routing (`models.<m>.routing: cache-aware`): what the router renders, and the relation
checks that follow LiteLLM -> router -> vLLM, each with a negative control.

The fixture tests/configs/autoscaling.ok.yaml routes `chat` by cache and `batch` through its Service,
so the stack-wide relation table (test_relations.py) covers both paths; the controls below mutate it.
Expected values are written by hand from what the router must do.
"""

from __future__ import annotations

import copy
import json
import re

from stacks import catalog
from stacks.yamlio import dump_yaml, load_yaml
from tests.conftest import ROOT
from tests.stacks import test_relations as T
from tests.support import relations as R

FIXTURE = ROOT / "tests" / "configs" / "autoscaling.ok.yaml"
CHAT_LABELS = {
    "app.kubernetes.io/name": "chat",
    "app.kubernetes.io/part-of": "llm-serving",
    "app.kubernetes.io/component": "vllm",
}


def _stack(plan_of) -> T.Stack:
    return T.mutated(FIXTURE, plan_of)


def _router_pod(s: T.Stack) -> dict:
    return T.pod(s.r, "Deployment", "chat-router")


def _args(s: T.Stack) -> list[str]:
    return _router_pod(s)["containers"][0]["args"]


def test_router_command_line_watches_the_models_pods_only(plan_of):
    args = _args(_stack(plan_of))
    assert args[args.index("--policy") + 1] == "cache_aware"
    assert "--service-discovery" in args
    i = args.index("--selector") + 1
    j = next(k for k in range(i, len(args)) if args[k].startswith("--"))
    assert dict(a.split("=", 1) for a in args[i:j]) == CHAT_LABELS
    assert args[args.index("--service-discovery-namespace") + 1] == "models"
    assert args[args.index("--service-discovery-port") + 1] == "8000"
    assert args[args.index("--host") + 1] == "0.0.0.0" and args[args.index("--port") + 1] == "8080"
    assert args[args.index("--prometheus-host") + 1] == "0.0.0.0"
    assert args[args.index("--prometheus-port") + 1] == "29000"


def test_cache_routed_replicas_serve_prompt_rendering_others_do_not(plan_of):
    # The router gets a prompt's token ids from a replica's /render endpoints, which vLLM 0.32 only
    # serves with --enable-scale-out; `batch` (routed through its Service) keeps them closed.
    s = _stack(plan_of)
    vllm_args = {n: T.pod(s.r, "Deployment", n)["containers"][0]["args"] for n in ("chat", "batch")}
    assert vllm_args["chat"].count("--enable-scale-out") == 1
    assert "--enable-scale-out" not in vllm_args["batch"]


def test_worker_flags_exist_in_each_images_vllm():
    # Neuron's vLLM 0.16 parser exits on --enable-scale-out: only the kinds whose parser knows a flag get it.
    from stacks.compose import routing

    table = json.loads((ROOT / "stacks" / "catalog" / "vllm-serve-flags.json").read_text())
    assert routing.WORKER_ARGS["nvidia"] == ("--enable-scale-out",)
    assert "--enable-scale-out" not in table["neuron"]["options"]  # control: why Neuron gets none
    for kind, flags in routing.WORKER_ARGS.items():
        assert all(f in table[kind]["options"] for f in flags), (kind, flags)


def test_router_deployment_is_pinned_hardened_and_highly_available(plan_of):
    s = _stack(plan_of)
    dep = T.obj(s.r, "Deployment", "chat-router")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "docker.io/vllm/vllm-router:v0.1.17"
    assert c["command"] == ["vllm-router"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True and sc["runAsUser"] == 65534
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/liveness", "port": 8080}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readiness", "port": 8080}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    assert pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == (
        "chat-router"
    )
    assert {"key": "CriticalAddonsOnly", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    pdb = T.obj(s.r, "PodDisruptionBudget", "chat-router")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    # Neither waits in `pulumi up`: the router is ready only once a replica of the model is.
    assert dep["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert T.obj(s.r, "Service", "chat-router")["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    # A model routed through its Service gets no router.
    assert not [o for o in s.r.objects if R.name_of(o) == "batch-router"]


def test_discovery_rbac_is_read_only_pods_in_the_models_namespace(plan_of):
    s = _stack(plan_of)
    role = T.obj(s.r, "Role", "chat-router")
    assert R.namespace_of(role) == "models"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = T.obj(s.r, "RoleBinding", "chat-router")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "chat-router"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "chat-router", "namespace": "models"}]
    assert _router_pod(s)["serviceAccountName"] == "chat-router"
    assert not s.r.kind("ClusterRoleBinding") or all(
        "router" not in R.name_of(b) for b in s.r.kind("ClusterRoleBinding")
    )


def test_litellm_calls_the_router_for_the_cache_aware_model_only(plan_of):
    s = _stack(plan_of)
    _, _, doc = T._litellm(s)
    bases = {e["model_name"]: e["litellm_params"]["api_base"] for e in doc["model_list"]}
    assert bases == {
        "chat": "http://chat-router.models.svc.cluster.local:8080/v1",
        "batch": "http://batch.models.svc.cluster.local:8000/v1",
    }


def test_scraper_reaches_router_metrics(plan_of):
    s = _stack(plan_of)
    pm = T.obj(s.r, "PodMonitor", "chat-router")
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    _, paths = T.scraper(s)
    assert ("scraper", "router", 29000, "TCP") in paths
    assert not T.unexcused(T.run_check("call-paths", s))


# ---- negative controls: the relation checks see a broken router path ---------------------------------------


def test_control_router_selector_picks_another_models_pods(plan_of):
    s = _stack(plan_of)
    args = _args(s)
    i = args.index("app.kubernetes.io/name=chat")
    args[i] = "app.kubernetes.io/name=batch"
    assert "route 'hosted_vllm/chat' reaches batch, which serves ['batch']" in T.whats(T.run_check("urls", s))


def test_control_router_selector_selects_nothing(plan_of):
    s = _stack(plan_of)
    args = _args(s)
    args[args.index("--service-discovery-namespace") + 1] = "default"
    assert "chat-router: --selector" in T.whats(T.run_check("urls", s))


def test_control_router_service_selects_no_pods(plan_of):
    s = _stack(plan_of)
    T.obj(s.r, "Service", "chat-router")["spec"]["selector"]["app.kubernetes.io/name"] = "chat-routr"
    assert "Service chat-router selects no pods" in T.whats(T.run_check("urls", s))


def test_control_model_pods_do_not_admit_the_router(plan_of):
    s = _stack(plan_of)
    s.r.objects.remove(T.obj(s.r, "NetworkPolicy", "chat-from-router"))
    out = T.whats(T.run_check("urls", s))
    assert "NetworkPolicies do not admit chat-router -> chat:8000" in out
    assert "router -> vllm: 8000/TCP is not admitted" in T.whats(T.run_check("call-paths", s))


def test_control_gateway_may_not_reach_the_router(plan_of):
    s = _stack(plan_of)
    s.r.objects.remove(T.obj(s.r, "NetworkPolicy", "gateway-to-chat-router"))
    assert "gateway -> router: 8080/TCP is not admitted" in T.whats(T.run_check("call-paths", s))
    assert "do not admit litellm -> chat-router:8080" in T.whats(T.run_check("urls", s))


def test_control_router_discovers_on_the_wrong_port(plan_of):
    s = _stack(plan_of)
    args = _args(s)
    args[args.index("--service-discovery-port") + 1] = "80"
    assert "chat-router: worker chat declares no port 80" in T.whats(T.run_check("urls", s))


def test_control_router_probe_path(plan_of):
    s = _stack(plan_of)
    _router_pod(s)["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/ready"
    assert "readinessProbe path '/ready'" in T.whats(T.run_check("probes", s))


def test_non_router_backends_pass_through_unchanged(plan_of):
    s = _stack(plan_of)
    ev = R.PolicyEvaluator.of(s.r)
    batch = next(w for w in R.workloads(s.r) if w.name == "batch" and w.kind == "Deployment")
    assert R.discovered_workers(s.r, batch, ev, s.cidr) == ([], [batch])


# ---- pins and config -------------------------------------------------------------------------------------


def test_router_image_and_e2e_wheel_are_the_same_release():
    pin = re.search(r"^vllm-router==(\S+)$", (ROOT / "requirements" / "e2e-router.txt").read_text(), re.M)
    assert pin is not None
    assert catalog.versions().images["vllm-router"].tag == f"v{pin.group(1)}"
    lock = (ROOT / "requirements" / "e2e-router.lock").read_text()
    assert f"vllm-router=={pin.group(1)} \\" in lock


def test_routing_defaults_to_the_service(tmp_path):
    from stacks import config

    f = tmp_path / "s.yaml"
    f.write_text(dump_yaml({"config": {"llm-serving:models": {"m": {"preset": "qwen3-0.6b"}}}}))
    intent = config.load_file(f, stack="t")
    assert intent.config.models["m"].routing == "service"
    doc = copy.deepcopy(load_yaml(f.read_text()))
    doc["config"]["llm-serving:models"]["m"]["routing"] = "cache-aware"
    f.write_text(dump_yaml(doc))
    assert config.load_file(f, stack="t").config.models["m"].routing == "cache-aware"
