"""The gateway's front door as its consumers read it.

- The load balancer: EKS's cloud controller (kubernetes/cloud-provider-aws, pkg/providers/v1/aws.go)
  builds the NLB from a `type: LoadBalancer` Service annotated `aws-load-balancer-type: nlb` (the AWS
  Load Balancer Controller, which this program does not install, would only take `external`/`nlb-ip`
  or a `loadBalancerClass`). `nlb_listeners` below follows that controller's listener logic
  (EnsureLoadBalancer: a port is TLS iff an ssl-cert is set and ssl-ports is unset/`*` or names the
  port's number or name; getPortSets splits on ',' and takes numbers as ports, the rest as names).
- NetworkPolicy: from outside the cluster only the front door's port is admitted.
- EKS access entries: no team role ever gets cluster admin or cluster scope.
Expected values are written by hand.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from components.frontdoor import DoorLimits, render_frontdoor_conf
from stacks.yamlio import load_yaml
from tests.conftest import ROOT
from tests.support import relations as R

IF = ROOT / "tests" / "configs" / "gateway-internet-facing.ok.yaml"
DEV = ROOT / "Pulumi.dev.yaml"
STACKS = sorted([DEV, *(ROOT / "stacks" / "examples").glob("*.yaml"), *(ROOT / "tests" / "configs").glob("*.ok.yaml")])
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/1a2b3c4d-1a2b-1a2b-1a2b-1a2b3c4d5e6f"

# The Service annotations cloud-provider-aws reads for an NLB (aws.go constants; docs/service_controller.md
# "Valid for ... NLB"). Anything else under service.beta.kubernetes.io/aws-load-balancer-* is ignored there.
LEGACY_NLB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-type",
    "service.beta.kubernetes.io/aws-load-balancer-internal",
    "service.beta.kubernetes.io/aws-load-balancer-ssl-cert",
    "service.beta.kubernetes.io/aws-load-balancer-ssl-ports",
    "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy",
    "service.beta.kubernetes.io/aws-load-balancer-backend-protocol",
    "service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags",
    "service.beta.kubernetes.io/aws-load-balancer-security-groups",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-healthy-threshold",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-timeout",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-unhealthy-threshold",
    "service.beta.kubernetes.io/aws-load-balancer-eip-allocations",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-port",
    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol",
    "service.beta.kubernetes.io/aws-load-balancer-subnets",
    "service.beta.kubernetes.io/aws-load-balancer-target-node-labels",
    "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes",
}
EDIT = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"
VIEW = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
CLUSTER_ADMIN = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def controller_of(svc: dict) -> str:
    spec, ann = svc.get("spec") or {}, (svc.get("metadata") or {}).get("annotations") or {}
    if spec.get("loadBalancerClass") or ann.get("service.beta.kubernetes.io/aws-load-balancer-type") in (
        "external",
        "nlb-ip",
    ):
        return "aws-load-balancer-controller"
    if ann.get("service.beta.kubernetes.io/aws-load-balancer-type") == "nlb":
        return "cloud-provider-aws nlb"
    return "cloud-provider-aws classic elb"


def nlb_listeners(svc: dict) -> list[tuple[int, str, str | None]]:
    """(port, protocol, ssl policy) per listener, as cloud-provider-aws builds them for an NLB."""
    ann = (svc.get("metadata") or {}).get("annotations") or {}
    cert = ann.get("service.beta.kubernetes.io/aws-load-balancer-ssl-cert", "")
    raw = ann.get("service.beta.kubernetes.io/aws-load-balancer-ssl-ports", "")
    ports = None if raw in ("", "*") else raw.split(",")
    out = []
    for p in svc["spec"]["ports"]:
        proto = p.get("protocol", "TCP")
        tls = proto != "UDP" and cert != "" and (ports is None or str(p["port"]) in ports or p.get("name") in ports)
        policy = ann.get("service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy") if tls else None
        out.append((p["port"], "TLS" if tls else proto, policy))
    return out


def lb_problems(svc: dict) -> list[str]:
    ann = (svc.get("metadata") or {}).get("annotations") or {}
    unknown = sorted(
        k
        for k in ann
        if k.startswith("service.beta.kubernetes.io/aws-load-balancer-") and k not in LEGACY_NLB_ANNOTATIONS
    )
    out = [f"{k}: not read by cloud-provider-aws for an NLB" for k in unknown]
    if controller_of(svc) != "cloud-provider-aws nlb":
        out.append(f"handled by {controller_of(svc)}, which this program does not configure")
    return out


def services(out: Path) -> list[dict]:
    return [o for o in R.load(out).kind("Service") if (o.get("spec") or {}).get("type") == "LoadBalancer"]


def test_internet_facing_gateway_gets_a_tls_listener(plan_of):
    _, _, out = plan_of(IF)
    [svc] = services(out)
    assert svc["metadata"]["name"] == "gateway-public"
    assert lb_problems(svc) == []
    assert nlb_listeners(svc) == [(443, "TLS", "ELBSecurityPolicy-TLS13-1-2-Res-2021-06")]
    ann = svc["metadata"]["annotations"]
    assert ann["service.beta.kubernetes.io/aws-load-balancer-ssl-cert"] == CERT
    assert "service.beta.kubernetes.io/aws-load-balancer-internal" not in ann  # internet-facing, as asked
    assert svc["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24", "198.51.100.7/32"]
    assert svc["spec"]["ports"][0]["targetPort"] == 4080
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "gateway-frontdoor"}


def test_internal_gateway_without_tls_listens_on_the_gateway_port(plan_of):
    _, _, out = plan_of(DEV)
    [svc] = services(out)
    assert lb_problems(svc) == []
    assert nlb_listeners(svc) == [(4000, "TCP", None)]
    assert svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
    assert "loadBalancerSourceRanges" not in svc["spec"]


@pytest.mark.parametrize("path", STACKS, ids=lambda p: p.name)
def test_the_only_load_balancer_targets_the_front_door(path, plan_of):
    _, _, out = plan_of(path)
    r = R.load(out)
    lbs = services(out)
    assert [s["metadata"]["name"] for s in lbs] == ["gateway-public"]
    assert lb_problems(lbs[0]) == []
    litellm = [s for s in r.kind("Service") if s["metadata"]["name"] == "litellm"]
    assert [s["spec"]["type"] for s in litellm] == ["ClusterIP"]
    # The policy that admits addresses (ipBlock) in the gateway namespace admits the front door's port only.
    ns = lbs[0]["metadata"]["namespace"]
    for pol in r.kind("NetworkPolicy"):
        if R.namespace_of(pol) != ns:
            continue
        for rule in pol["spec"].get("ingress") or []:
            if any("ipBlock" in peer for peer in rule.get("from") or []):
                sel = pol["spec"]["podSelector"].get("matchLabels")
                assert sel in (
                    {"app.kubernetes.io/name": "gateway-frontdoor"},
                    {"app.kubernetes.io/name": "open-webui"},
                )
                if sel == {"app.kubernetes.io/name": "gateway-frontdoor"}:
                    assert [p["port"] for p in rule["ports"]] == [4080]


def test_control_the_listener_check_fails_on_a_mismatched_port_and_an_unknown_annotation(plan_of):
    _, _, out = plan_of(IF)
    [svc] = services(out)
    bad = copy.deepcopy(svc)
    bad["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"] = "https-typo"
    assert nlb_listeners(bad) == [(443, "TCP", None)]  # plain TCP on 443: TLS never negotiated
    bad["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-ssl-policy"] = "x"
    assert lb_problems(bad) == [
        "service.beta.kubernetes.io/aws-load-balancer-ssl-policy: not read by cloud-provider-aws for an NLB"
    ]
    bad["spec"]["loadBalancerClass"] = "service.k8s.aws/nlb"
    assert "handled by aws-load-balancer-controller" in lb_problems(bad)[-1]


def test_nginx_conf_forwards_exactly_the_client_routes():
    conf = render_frontdoor_conf(
        listen_port=4080, upstream="litellm.gateway.svc.cluster.local:4000", read_timeout_s=1230
    )
    locations = [line.strip() for line in conf.splitlines() if line.strip().startswith("location")]
    check = "if ($bad_bearer) { return 401; } auth_request /_auth;"
    assert locations == [
        f"location = /v1/chat/completions {{ {check} proxy_pass http://litellm/v1/chat/completions; }}",
        f"location = /v1/completions {{ {check} proxy_pass http://litellm/v1/completions; }}",
        f"location = /v1/models {{ {check} proxy_pass http://litellm/v1/models; }}",
        f"location = /v1/embeddings {{ {check} proxy_pass http://litellm/v1/embeddings; }}",
        "location = /health/liveliness { proxy_pass http://litellm/health/liveliness; }",
        "location = /_auth {",
        "location @unauthorized {",
        "location / { return 404; }",
    ]
    assert "proxy_read_timeout 1230s;" in conf and "proxy_buffering off;" in conf
    assert "listen 4080 so_keepalive=60s:30s:5;" in conf


# ---- the front door under hostile clients ---------------------------------------------------------------

# Headers LiteLLM 1.106 takes a key from besides Authorization, and per-request settings it reads
# (litellm/types/proxy/auth/special_headers.py, proxy/litellm_pre_call_utils.py).
KEY_HEADERS = {"x-litellm-api-key", "api-key", "x-api-key", "x-goog-api-key", "ocp-apim-subscription-key"}
SETTING_HEADERS = {"x-litellm-timeout", "x-litellm-num-retries", "x-litellm-disable-callbacks", "x-litellm-tags"}


def server_block(conf: str) -> str:
    """The server's own directives (nested blocks cut out), one per line."""
    body = conf[conf.index("    server {") :]
    return "\n".join(line[8:] for line in body.splitlines() if re.match(r" {8}[a-z]", line) and "{" not in line)


def hostile_client_problems(conf: str, max_body_mib: int = 4) -> list[str]:
    out = []
    m = re.search(r"client_max_body_size (\d+)m;", conf)
    if m is None or int(m[1]) > max_body_mib:
        out.append(f"body cap {m[1] if m else 'default 1'}m, want <= {max_body_mib}m")
    server = server_block(conf)
    if "proxy_request_buffering on;" not in server:
        out.append("request bodies stream to LiteLLM before they are complete")
    conn_zones = set(re.findall(r"limit_conn_zone \$binary_remote_addr zone=(\w+):", conf))
    rate_zones = set(re.findall(r"limit_req_zone \$binary_remote_addr zone=(\w+):", conf))
    if not conn_zones & set(re.findall(r"^limit_conn (\w+) \d+;", server, re.M)):
        out.append("no per-client connection limit")
    if not rate_zones & set(re.findall(r"^limit_req zone=(\w+) ", server, re.M)):
        out.append("no per-client request rate limit")
    if "proxy_pass_request_headers off;" not in server:
        out.append("client headers are forwarded as sent")
    sent = {h.lower() for h in re.findall(r"^proxy_set_header (\S+) ", server, re.M)}
    if leaked := sorted(sent & (KEY_HEADERS | SETTING_HEADERS)):
        out.append(f"forwards {leaked}")
    return out


def test_front_door_caps_buffers_limits_and_filters_headers(plan_of):
    _, _, out = plan_of(DEV)
    conf = next(o for o in R.load(out).kind("ConfigMap") if o["metadata"]["name"] == "gateway-frontdoor")["data"][
        "nginx.conf"
    ]
    assert hostile_client_problems(conf) == []
    assert "client_max_body_size 4m;" in conf
    assert "limit_conn client_conns 128;" in conf and "rate=50r/s;" in conf and "burst=100 nodelay;" in conf
    assert "limit_conn_status 429;" in conf and "limit_req_status 429;" in conf
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf  # nginx's view, not the client's header
    sent = set(re.findall(r"^proxy_set_header (\S+) ", server_block(conf), re.M))
    assert sent == {"Connection", "Authorization", "Content-Type", "Accept", "User-Agent", "X-Forwarded-For"}


def test_control_each_hostile_client_check_can_fail():
    conf = render_frontdoor_conf(listen_port=4080, upstream="u:4000", read_timeout_s=60)
    assert hostile_client_problems(conf) == []
    breaks = {
        "body cap 32m, want <= 4m": conf.replace("client_max_body_size 4m;", "client_max_body_size 32m;"),
        "body cap default 1m, want <= 4m": conf.replace("client_max_body_size 4m;", ""),
        "request bodies stream to LiteLLM before they are complete": conf.replace(
            "proxy_request_buffering on;", "proxy_request_buffering off;"
        ),
        "no per-client connection limit": conf.replace("limit_conn client_conns 128;", ""),
        "no per-client request rate limit": conf.replace("limit_req zone=client_rate", "limit_req zone=other"),
        "client headers are forwarded as sent": conf.replace("proxy_pass_request_headers off;", ""),
        "forwards ['x-api-key']": conf.replace(
            "proxy_set_header Accept", "proxy_set_header x-api-key $http_x_api_key;\n        proxy_set_header Accept"
        ),
    }
    for problem, bad in breaks.items():
        assert bad != conf, problem
        assert problem in hostile_client_problems(bad), problem


def test_body_cap_and_limits_are_arguments():
    conf = render_frontdoor_conf(
        listen_port=1,
        upstream="u:1",
        read_timeout_s=1,
        limits=DoorLimits(8, requests_per_second=5, burst=7, connections=3),
    )
    assert "client_max_body_size 8m;" in conf and "rate=5r/s;" in conf
    assert "burst=7 nodelay;" in conf and "limit_conn client_conns 3;" in conf
    assert hostile_client_problems(conf) == ["body cap 8m, want <= 4m"]


def bearer_pattern(conf: str) -> re.Pattern:
    """The map's regex from the rendered conf (PCRE; this one is also valid Python `re`)."""
    m = re.search(r'map \$http_authorization \$bad_bearer \{\s*"~(.+?)" 0;\s*default 1;', conf)
    assert m is not None, "no key-syntax map in the conf"
    return re.compile(m[1])


@pytest.mark.parametrize(
    "header,passes",
    [
        ("Bearer sk-abc_123.XYZ", True),
        ("bearer sk-abc", True),  # LiteLLM strips `bearer ` too
        ("", False),
        ("Bearer ", False),
        ("Bearer  sk-abc", False),
        ("Bearer sk abc", False),
        ("BEARER sk-abc", False),  # LiteLLM would refuse it anyway
        ("Basic c2s6", False),
        ("sk-abc", False),
        ("Bearer sk-\u00e9", False),
    ],
)
def test_only_a_bearer_key_passes_to_the_key_check(header, passes):
    conf = render_frontdoor_conf(listen_port=1, upstream="u:1", read_timeout_s=1)
    assert (bearer_pattern(conf).fullmatch(header) is not None) is passes


def test_every_client_route_checks_the_key_before_the_body_and_health_does_not():
    conf = render_frontdoor_conf(listen_port=1, upstream="u:1", read_timeout_s=1)
    keyed = re.findall(r"location = (\S+) \{ if \(\$bad_bearer\) \{ return 401; \} auth_request /_auth; ", conf)
    assert keyed == ["/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings"]
    assert "location = /health/liveliness { proxy_pass" in conf
    auth = conf[conf.index("location = /_auth {") :]
    auth = auth[: auth.index("}")]
    for d in ("internal;", "proxy_pass_request_body off;", 'proxy_set_header Content-Length "";'):
        assert d in auth, d
    assert "error_page 401 @unauthorized;" in conf


def silent_flow_problem(conf: str, nlb_idle_s: int = 350) -> str | None:
    """What the NLB does to a connection that is silent for the whole read timeout (a non-streamed
    answer): without TCP keepalive it forgets the flow after nlb_idle_s; with it, the first probe
    (idle) and each next one (interval) must come before that."""
    read = int(re.search(r"proxy_read_timeout (\d+)s;", conf)[1])
    m = re.search(r"listen \d+ so_keepalive=(\d+)s:(\d+)s:(\d+);", conf)
    if m is None:
        return None if read < nlb_idle_s else f"silent up to {read} s, the NLB forgets the flow at {nlb_idle_s} s"
    idle, interval = int(m[1]), int(m[2])
    if idle >= nlb_idle_s or interval >= nlb_idle_s:
        return f"first keepalive at {idle} s, then every {interval} s: the NLB forgets the flow at {nlb_idle_s} s"
    return None


def test_a_silent_answer_outlives_the_nlb_idle_timeout(plan_of):
    """dev: a non-streamed answer may be silent for 1230 s, the NLB's idle timeout is 350 s (fixed on TLS
    listeners): nginx's keepalive probes (60 s, then every 30 s) keep the flow. Negative controls: the
    same conf without so_keepalive, and with a first probe after 400 s."""
    _, _, out = plan_of(DEV)
    conf = next(o for o in R.load(out).kind("ConfigMap") if o["metadata"]["name"] == "gateway-frontdoor")["data"][
        "nginx.conf"
    ]
    assert silent_flow_problem(conf) is None
    assert silent_flow_problem(re.sub(r" so_keepalive=\S+;", ";", conf)) is not None
    assert silent_flow_problem(conf.replace("so_keepalive=60s:", "so_keepalive=400s:")) is not None


def test_read_timeout_outlasts_litellms_own(plan_of):
    # dev: one route with requestTimeoutSeconds 600 (default); LiteLLM tries twice (num_retries 1): 2 x 600 + 30.
    _, _, out = plan_of(DEV)
    cm = next(o for o in R.load(out).kind("ConfigMap") if o["metadata"]["name"] == "gateway-frontdoor")
    assert "proxy_read_timeout 1230s;" in cm["data"]["nginx.conf"]
    litellm = next(o for o in R.load(out).kind("ConfigMap") if o["metadata"]["name"] == "litellm-config")
    settings = load_yaml(litellm["data"]["config.yaml"])["litellm_settings"]
    assert (settings["request_timeout"], settings["num_retries"]) == (600, 1)


# ---- EKS access entries -------------------------------------------------------------------------------


def team_access_problems(resources: list[dict], team_roles: dict[str, str]) -> list[str]:
    """`team_roles`: role ARN -> team. A team role may hold Edit/View scoped to its own namespaces only."""
    out = []
    for r in resources:
        if r["type"] != "aws:eks/accessPolicyAssociation:AccessPolicyAssociation":
            continue
        i = r["inputs"]
        team = team_roles.get(i["principalArn"])
        if team is None:
            continue
        scope = i.get("accessScope") or {}
        if i["policyArn"] not in (EDIT, VIEW):
            out.append(f"{r['name']}: {i['policyArn']}")
        if scope.get("type") != "namespace" or sorted(scope.get("namespaces") or []) != sorted(
            [f"{team}-models", f"{team}-gateway"]
        ):
            out.append(f"{r['name']}: scope {scope}")
    return out


def team_roles_of(path: Path) -> dict[str, str]:
    cfg = (load_yaml(path.read_text()).get("config") or {}).get("llm-serving:cluster") or {}
    return {arn: team for team, t in (cfg.get("teamAccess") or {}).items() for arn in t["principalArns"]}


@pytest.mark.parametrize("path", STACKS, ids=lambda p: p.name)
def test_no_team_role_gets_cluster_admin_or_cluster_scope(path, plan_of):
    _, _, out = plan_of(path)
    rs = R.load(out).resources
    assert team_access_problems(rs, team_roles_of(path)) == []
    for r in rs:
        if r["type"] == "eks:index:Cluster":
            for entry in (r["inputs"].get("accessEntries") or {}).values():
                assert entry["principalArn"] not in team_roles_of(path)


def test_team_roles_get_namespace_scoped_entries(plan_of):
    _, _, out = plan_of(IF)
    rs = R.load(out).resources
    entries = sorted(
        (r["inputs"]["principalArn"], r["inputs"]["type"])
        for r in rs
        if r["type"] == "aws:eks/accessEntry:AccessEntry" and r["inputs"]["type"] == "STANDARD"
    )
    assert entries == [
        ("arn:aws:iam::123456789012:role/research-readers", "STANDARD"),
        ("arn:aws:iam::123456789012:role/search-deployer", "STANDARD"),
        ("arn:aws:iam::123456789012:role/teams/search-oncall", "STANDARD"),
    ]
    assoc = sorted(
        (
            r["inputs"]["principalArn"].rsplit("/", 1)[1],
            r["inputs"]["policyArn"].rsplit("/", 1)[1],
            tuple(r["inputs"]["accessScope"]["namespaces"]),
        )
        for r in rs
        if r["type"] == "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"
    )
    assert assoc == [
        ("research-readers", "AmazonEKSViewPolicy", ("research-models", "research-gateway")),
        ("search-deployer", "AmazonEKSEditPolicy", ("search-models", "search-gateway")),
        ("search-oncall", "AmazonEKSEditPolicy", ("search-models", "search-gateway")),
    ]
    # each association waits for its entry (EKS refuses a policy for a principal without an entry)
    by_name = {r["name"]: r for r in rs}
    for r in rs:
        if r["type"] == "aws:eks/accessPolicyAssociation:AccessPolicyAssociation":
            entry = by_name[r["name"].rsplit("-", 1)[0]]
            assert entry["urn"] in r["dependencies"]


def test_control_cluster_admin_or_cluster_scope_is_reported(plan_of):
    _, _, out = plan_of(IF)
    rs = copy.deepcopy(R.load(out).resources)
    roles = team_roles_of(IF)
    assoc = [r for r in rs if r["type"] == "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"]
    assoc[0]["inputs"]["policyArn"] = CLUSTER_ADMIN
    assoc[1]["inputs"]["accessScope"] = {"type": "cluster"}
    assoc[2]["inputs"]["accessScope"]["namespaces"] = ["gateway"]
    problems = team_access_problems(rs, roles)
    assert len(problems) == 3 and CLUSTER_ADMIN in problems[0]


# ---- the upstream's name is resolved again while nginx runs ------------------------------------------------


def re_resolution_problems(conf: str) -> list[str]:
    """Why nginx would keep the upstream address it resolved at start-up (or fail to start without it)."""
    out = []
    upstream = re.search(r"upstream litellm \{(.*?)\}", conf, re.S)
    body = upstream.group(1) if upstream else ""
    if not re.search(r"^\s*zone litellm \d+k;$", body, re.M):
        out.append("the upstream has no shared zone (`resolve` needs one)")
    servers = re.findall(r"^\s*server (\S+)(.*);$", body, re.M)
    if not servers or any("resolve" not in params.split() for _, params in servers):
        out.append(f"an upstream server without `resolve`: {servers}")
    if not re.search(r"^\s*resolver kube-dns\.kube-system\.svc\.cluster\.local valid=30s;$", conf, re.M):
        out.append("no resolver at the cluster DNS with a 30 s cache")
    passes = re.findall(r"proxy_pass (\S+);", conf)
    if not passes or any(not p.startswith("http://litellm/") for p in passes):
        out.append(f"a proxy_pass that bypasses the upstream block (and its keepalive pool): {passes}")
    return out


def test_nginx_re_resolves_the_gateway_service():
    conf = render_frontdoor_conf(listen_port=4080, upstream="litellm.gateway.svc.cluster.local:4000", read_timeout_s=60)
    assert re_resolution_problems(conf) == []
    assert "server litellm.gateway.svc.cluster.local:4000 resolve;" in conf


@pytest.mark.parametrize(
    "old,new",
    [
        (" resolve;", ";"),  # resolved once at start-up
        ("zone litellm 64k;", ""),  # nginx refuses `resolve` without a zone
        ("valid=30s", "valid=1h"),  # a replaced Service followed an hour late
        ("proxy_pass http://litellm/v1/models;", "proxy_pass http://litellm.gateway.svc.cluster.local:4000;"),
    ],
)
def test_a_front_door_that_keeps_a_stale_address_is_caught(old, new):
    conf = render_frontdoor_conf(listen_port=4080, upstream="litellm.gateway.svc.cluster.local:4000", read_timeout_s=60)
    assert old in conf
    assert re_resolution_problems(conf.replace(old, new, 1))


# ---- where the NLB goes, and how many security-group rules it writes --------------------------------------

EXISTING = ROOT / "tests" / "configs" / "cluster-existing-vpc.ok.yaml"
INTERNET = ROOT / "tests" / "configs" / "gateway-internet-facing.ok.yaml"
SUBNETS = "service.beta.kubernetes.io/aws-load-balancer-subnets"


def lb_annotations(out: Path) -> dict:
    (svc,) = [
        d
        for f in sorted((out / "manifests").glob("*.yaml"))
        if (d := load_yaml(f.read_text()))["kind"] == "Service" and d["spec"].get("type") == "LoadBalancer"
    ]
    return svc["metadata"].get("annotations") or {}


def test_an_internal_nlb_in_an_existing_vpc_goes_to_its_private_subnets(plan_of):
    _, _, out = plan_of(EXISTING)
    # the fixture's privateSubnetIds, one per AZ (written out from the file)
    assert lb_annotations(out)[SUBNETS] == "subnet-0a1,subnet-0b2,subnet-0c3"


def test_an_internet_facing_nlb_in_an_existing_vpc_goes_to_its_public_subnets():
    from components.frontdoor import Exposure, render_lb_service

    annotations, _ = render_lb_service(Exposure(internal=False, subnet_ids=("subnet-1a1", "subnet-1b2")))
    assert annotations[SUBNETS] == "subnet-1a1,subnet-1b2"
    # control: no list, no annotation (the program's own VPC tags its public subnets for the controller)
    assert SUBNETS not in render_lb_service(Exposure(internal=False))[0]


def test_the_program_vpcs_internet_facing_nlb_is_left_to_the_role_tags(plan_of):
    _, _, out = plan_of(INTERNET)
    assert SUBNETS not in lb_annotations(out)


def test_source_ranges_fit_the_cluster_security_group_quota():
    from stacks.config import schema

    # 2 rules per range + one health-check rule per subnet (6 AZs at most) + EKS's own rule <= 60
    assert 2 * 26 + 6 + 1 <= 60 < 2 * 27 + 6 + 1
    assert schema.MAX_SOURCE_RANGES == 26
    ok = [f"198.51.100.{i}/32" for i in range(26)]
    assert schema.GatewayConfig(sourceRanges=ok).sourceRanges == ok
    with pytest.raises(ValueError, match="27 ranges"):
        schema.GatewayConfig(sourceRanges=[*ok, "203.0.113.0/24"])
