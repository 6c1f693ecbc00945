"""The gateway's front door: the only thing the load balancer reaches.

An NLB is layer 4, so it cannot filter paths. A small nginx Deployment listens on FRONTDOOR_PORT
behind the load balancer and forwards only the client routes (PUBLIC_PATHS) to LiteLLM's in-cluster
Service; every other path (/key/*, /team/*, /model/*, /ui, /metrics, /config, ...) gets 404 there.
LiteLLM itself stays on a ClusterIP Service that only pods in the cluster reach (NetworkPolicy), so
in-cluster callers (Open WebUI, a reconciler, Prometheus) keep every route.

The load balancer is the one EKS's cloud controller (kubernetes/cloud-provider-aws, the "legacy" service
controller) creates for `aws-load-balancer-type: nlb`; the annotations below are the ones that
controller reads (TLS listener: ssl-cert, ssl-ports, ssl-negotiation-policy; `internal`), and
`loadBalancerSourceRanges` becomes its security-group rules. No AWS Load Balancer Controller is
installed by this program.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import (
    FRONTDOOR_PORT,
    FRONTDOOR_SELECTOR,
    GATEWAY_PORT,
    ImagePin,
    checkov_skips,
    container_security,
    image_skips,
    pod_security,
    service_host,
    tolerate,
    zone_spread,
)

# The client routes (OpenAI API) and LiteLLM's unauthenticated liveness answer (not /health/readiness:
# it tells callers the version, callbacks and database state). Exact paths: each is proxied to itself,
# so what LiteLLM receives is never the client's raw URI.
PUBLIC_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings")
HEALTH_PATHS = ("/health/liveliness",)
TMP = "/tmp"  # pid file and nginx's temp files: the one writable path (an emptyDir)
CONF_DIR = "/etc/nginx/frontdoor"
CONF_FILE = "nginx.conf"
# nginx waits this much longer than the slowest upstream request may take, so LiteLLM's own timeout
# (a JSON error the client can read) always fires first.
READ_TIMEOUT_MARGIN_S = 30
# The NLB forgets a TCP flow with no packet for 350 s (its default, and fixed on TLS listeners; the EKS
# cloud controller sets no listener attributes). A non-streamed answer is silent for up to the read
# timeout, so nginx turns on TCP keepalive on every accepted connection: after KEEPALIVE_IDLE_S of
# silence the kernel probes every KEEPALIVE_INTERVAL_S, and keepalive packets from a target reset the
# NLB's idle timer (Elastic Load Balancing docs, NLB connection idle timeout).
NLB_IDLE_TIMEOUT_S = 350
KEEPALIVE_IDLE_S = 60
KEEPALIVE_INTERVAL_S = 30
KEEPALIVE_PROBES = 5
WORKERS = 2
# Annotations of the EKS cloud controller's NLB (cloud-provider-aws pkg/providers/v1/aws.go).
LB_TYPE = "service.beta.kubernetes.io/aws-load-balancer-type"
LB_INTERNAL = "service.beta.kubernetes.io/aws-load-balancer-internal"
LB_SSL_CERT = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"
LB_SSL_PORTS = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports"
LB_SSL_POLICY = "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy"
# Without it the controller picks one subnet per AZ among all of the VPC's subnets (role tag, then
# cluster tag, then lowest id): in a VPC the program did not make, that can be a database or
# transit subnet, or a public subnet for an internal NLB. Comma-separated subnet ids.
LB_SUBNETS = "service.beta.kubernetes.io/aws-load-balancer-subnets"
HTTPS_PORT = 443
# nginx resolves an upstream's name once, at start-up, unless the server carries `resolve` (open-source
# nginx since 1.27.3; it needs the upstream in a shared `zone` and a `resolver`). With it the front
# door starts before LiteLLM's Service exists (answering 502 until the name resolves) and follows a
# replaced Service's new ClusterIP within RESOLVE_VALID_S, while the upstream block keeps its
# keepalive pool for the proxied requests and the auth subrequests (a variable in proxy_pass would
# re-resolve too, but opens a new connection per request). The resolver is the cluster DNS Service:
# nginx looks its name up once with the pod's own resolver when it reads the configuration (the
# front door waits for CoreDNS), then sends its own queries there.
CLUSTER_DNS = service_host("kube-dns", "kube-system")
RESOLVE_VALID_S = 30
UPSTREAM_ZONE_KIB = 64
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit: CFS throttling adds latency to every request through the proxy; CPU requests are set",
    "CKV_K8S_40": "UID 101 is the nginx user of nginx-unprivileged; restricted PSS holds",
}


@dataclass(frozen=True)
class DoorLimits:
    """What one client may ask of the front door (component arguments; defaults sized below)."""

    # A request body above this is refused (413) before any of it is read. Every catalog model takes
    # text only (no image inputs), and the longest context is 131072 tokens: ~4 characters a token,
    # or at worst a 12-byte JSON escape (a surrogate pair) a token, is 0.5-1.5 MiB. 4 MiB leaves room
    # for the JSON around the messages and for embeddings batches; LiteLLM parses a whole body into
    # Python objects before it authenticates, at about 75x its size, so a cap far above real
    # requests only buys an attacker memory.
    max_body_mib: int = 4
    # Per client address (see CLIENT_ADDRESS): requests a second with a burst answered at once, and
    # requests in progress at the same time. Beyond either: 429, which the OpenAI clients retry.
    requests_per_second: int = 50
    burst: int = 100
    connections: int = 128


# What nginx sees as the client. The EKS cloud controller's NLB registers instance targets, which keep
# the client's source address, but the Service's `externalTrafficPolicy: Cluster` lets kube-proxy SNAT
# a flow to the node it entered by, so $remote_addr is that node (and proxy protocol is a classic-ELB
# annotation there, not an NLB one). The per-address limits are then per node until the Service uses
# `externalTrafficPolicy: Local` (and the front door's NetworkPolicy admits the clients' addresses).
CLIENT_ADDRESS = "$binary_remote_addr"
# The only request headers LiteLLM receives (nginx adds Host, Content-Length, Connection). The OpenAI
# clients authenticate with `Authorization: Bearer`; LiteLLM 1.106 also takes a key from `x-litellm-api-key`
# (which wins over Authorization), `API-Key`, `x-api-key`, `x-goog-api-key` and `Ocp-Apim-Subscription-Key`,
# and reads per-request settings from `x-litellm-*` headers (timeouts, retries, callbacks, tags). None
# of our clients sends them, so forwarding an allow-list drops them all, and whatever a later LiteLLM
# adds, instead of a deny-list that must track it. X-Forwarded-For is nginx's own view, never the client's.
FORWARDED_HEADERS = {
    "Authorization": "$http_authorization",
    "Content-Type": "$content_type",
    "Accept": "$http_accept",
    "User-Agent": "$http_user_agent",
    "X-Forwarded-For": "$remote_addr",
}
# A key's syntax: `Bearer ` (or `bearer `, which LiteLLM also strips) and printable ASCII without spaces.
# Anything else is a 401 from nginx in the rewrite phase, before the body is read or a byte reaches
# LiteLLM; a well-formed key is then checked by LiteLLM on a bodiless subrequest (auth_request, the
# access phase, still before the body is read), so only an authenticated request's body is forwarded.
BEARER = "~^[Bb]earer [!-~]+$"
AUTH_CHECK_PATH = "/v1/models"  # LiteLLM's cheapest authenticated route: the key hook and nothing else
UNAUTHORIZED = (
    '{"error":{"message":"send a valid key as Authorization: Bearer <key>","type":"auth_error","code":"401"}}'
)


def _http_conf(limits: DoorLimits, tmp: str) -> str:
    """http-level settings: temp paths, body cap, client timeouts, the limit zones, the key syntax map."""
    return f"""    access_log /dev/stdout;
    server_tokens off;
    client_body_temp_path {tmp}/client-body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size {limits.max_body_mib}m;
    client_header_timeout 10s;
    client_body_timeout 30s;
    default_type application/json;
    limit_conn_zone {CLIENT_ADDRESS} zone=client_conns:10m;
    limit_req_zone {CLIENT_ADDRESS} zone=client_rate:10m rate={limits.requests_per_second}r/s;
    limit_conn_status 429;
    limit_req_status 429;
    map $http_authorization $bad_bearer {{
        "{BEARER}" 0;
        default 1;
    }}"""


def _server_conf(limits: DoorLimits, read_timeout_s: int) -> str:
    """server-level proxying: one buffered request body, the forwarded headers, the per-client limits."""
    headers = "\n".join(f"        proxy_set_header {k} {v};" for k, v in FORWARDED_HEADERS.items())
    return f"""        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        proxy_request_buffering on;
        proxy_pass_request_headers off;
{headers}
        proxy_read_timeout {read_timeout_s}s;
        proxy_send_timeout {read_timeout_s}s;
        limit_conn client_conns {limits.connections};
        limit_req zone=client_rate burst={limits.burst} nodelay;
        error_page 401 @unauthorized;"""


def _locations() -> str:
    check = "if ($bad_bearer) { return 401; } auth_request /_auth;"
    keyed = "\n".join(f"        location = {p} {{ {check} proxy_pass http://litellm{p}; }}" for p in PUBLIC_PATHS)
    health = "\n".join(f"        location = {p} {{ proxy_pass http://litellm{p}; }}" for p in HEALTH_PATHS)
    return f"""{keyed}
{health}
        location = /_auth {{
            internal;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Connection "";
            proxy_set_header Authorization $http_authorization;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_pass http://litellm{AUTH_CHECK_PATH};
        }}
        location @unauthorized {{
            add_header WWW-Authenticate Bearer always;
            return 401 '{UNAUTHORIZED}';
        }}
        location / {{ return 404; }}"""


def render_frontdoor_conf(
    *, listen_port: int, upstream: str, read_timeout_s: int, tmp: str = TMP, limits: DoorLimits = DoorLimits()
) -> str:
    """nginx.conf: only PUBLIC_PATHS (with a key) and HEALTH_PATHS reach `upstream` (host:port); the
    rest is 404. Streaming answers pass through unbuffered; a request body is read whole, and only
    after its key passed, before it is forwarded."""
    return f"""# Rendered by components/frontdoor.py: the gateway's public routes, nothing else.
worker_processes {WORKERS};
daemon off;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 4096;
}}
http {{
{_http_conf(limits, tmp)}
    resolver {CLUSTER_DNS} valid={RESOLVE_VALID_S}s;
    upstream litellm {{
        zone litellm {UPSTREAM_ZONE_KIB}k;
        server {upstream} resolve;
        keepalive 32;
    }}
    server {{
        listen {listen_port} so_keepalive={KEEPALIVE_IDLE_S}s:{KEEPALIVE_INTERVAL_S}s:{KEEPALIVE_PROBES};
{_server_conf(limits, read_timeout_s)}
{_locations()}
    }}
}}
"""


def frontdoor_uid(image: ImagePin) -> int:
    if image.user is None:
        raise ValueError(f"{image.ref}: the catalog row needs `user:` (the UID the image runs as)")
    return image.user


def render_frontdoor_pod(image: ImagePin, *, config_map: str, system_taint: str) -> dict:
    uid = frontdoor_uid(image)
    return {
        "automountServiceAccountToken": False,
        "serviceAccountName": "gateway-frontdoor",
        "securityContext": pod_security(uid),
        "tolerations": [tolerate(system_taint)],
        "topologySpreadConstraints": zone_spread(FRONTDOOR_SELECTOR),
        "containers": [
            {
                "name": "nginx",
                "image": image.ref,
                # Not the image's entrypoint script: it edits files under /etc/nginx (read-only here).
                # `-e stderr`: the start-up error log too (before nginx.conf is read) goes to stderr.
                "command": ["nginx", "-e", "stderr", "-c", f"{CONF_DIR}/{CONF_FILE}"],
                "ports": [{"name": "http", "containerPort": FRONTDOOR_PORT, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                # Live while nginx accepts connections; ready while LiteLLM behind it answers.
                "livenessProbe": {"tcpSocket": {"port": FRONTDOOR_PORT}, "periodSeconds": 15, "failureThreshold": 3},
                "readinessProbe": {
                    "httpGet": {"path": HEALTH_PATHS[0], "port": FRONTDOOR_PORT},
                    "periodSeconds": 10,
                    "timeoutSeconds": 5,
                    "failureThreshold": 3,
                },
                "securityContext": container_security(uid, read_only_root=True),
                "volumeMounts": [
                    {"name": "config", "mountPath": CONF_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": TMP},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }


@dataclass(frozen=True)
class Exposure:
    """How the load balancer faces clients (validated in stacks/config)."""

    internal: bool = True
    certificate_arn: str | None = None  # ACM certificate: a TLS listener on 443
    ssl_policy: str | None = None
    source_ranges: tuple[str, ...] = ()
    plain_port: int = GATEWAY_PORT  # the listener port without TLS (clients' URLs keep the gateway's port)
    # The NLB's subnets, named (LB_SUBNETS); None leaves the choice to the controller's tag rules.
    subnet_ids: pulumi.Input[Sequence[str]] | None = None


def listener_port(e: Exposure) -> int:
    return HTTPS_PORT if e.certificate_arn else e.plain_port


def render_lb_service(e: Exposure) -> tuple[dict[str, pulumi.Input[str]], dict]:
    """(annotations, spec) of the LoadBalancer Service in front of the nginx pods."""
    annotations: dict[str, pulumi.Input[str]] = {LB_TYPE: "nlb"}
    if e.subnet_ids is not None:
        ids = e.subnet_ids
        annotations[LB_SUBNETS] = (
            ",".join(ids) if isinstance(ids, list | tuple) else pulumi.Output.from_input(ids).apply(",".join)
        )
    if e.internal:
        annotations[LB_INTERNAL] = "true"
    port_name = "http"
    if e.certificate_arn:
        port_name = "https"
        annotations[LB_SSL_CERT] = e.certificate_arn
        annotations[LB_SSL_PORTS] = str(HTTPS_PORT)
        if e.ssl_policy:
            annotations[LB_SSL_POLICY] = e.ssl_policy
    spec = {
        "type": "LoadBalancer",
        "selector": FRONTDOOR_SELECTOR,
        "ports": [{"name": port_name, "port": listener_port(e), "targetPort": FRONTDOOR_PORT, "protocol": "TCP"}],
    }
    if e.source_ranges:
        spec["loadBalancerSourceRanges"] = list(e.source_ranges)
    return annotations, spec


def lb_hostname(status) -> str | None:
    if status and status.load_balancer and status.load_balancer.ingress:
        return status.load_balancer.ingress[0].hostname
    return None


def frontdoor_url(hostname: str | None, e: Exposure, fallback: str) -> str:
    if not hostname:
        return fallback
    return f"https://{hostname}" if e.certificate_arn else f"http://{hostname}:{e.plain_port}"


@dataclass(frozen=True)
class FrontDoorArgs:
    namespace: str
    image: ImagePin
    upstream: str  # host:port of LiteLLM's in-cluster Service
    replicas: int
    read_timeout_seconds: int
    system_taint: str
    exposure: Exposure
    in_cluster_url: str  # the URL output until the load balancer has an address
    limits: DoorLimits = DoorLimits()
    after: tuple[pulumi.Resource, ...] = ()


class GatewayFrontDoor(pulumi.ComponentResource):
    url: pulumi.Output[str]

    def __init__(self, name: str, args: FrontDoorArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:GatewayFrontDoor", name, None, opts)
        after = list(args.after)
        ns, cm_name = args.namespace, "gateway-frontdoor"
        conf = render_frontdoor_conf(
            listen_port=FRONTDOOR_PORT,
            upstream=args.upstream,
            read_timeout_s=args.read_timeout_seconds,
            limits=args.limits,
        )
        cm = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"name": cm_name, "namespace": ns},
            data={CONF_FILE: conf},
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={"name": "gateway-frontdoor", "namespace": ns},
            automount_service_account_token=False,
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                "name": "gateway-frontdoor",
                "namespace": ns,
                "labels": FRONTDOOR_SELECTOR,
                "annotations": checkov_skips({**CHECKOV_SKIPS, **image_skips(args.image.ref)}),
            },
            spec={
                "replicas": args.replicas,
                "selector": {"matchLabels": FRONTDOOR_SELECTOR},
                "template": {
                    "metadata": {
                        "labels": FRONTDOOR_SELECTOR,
                        "annotations": {"llm-serving/config-hash": hashlib.sha256(conf.encode()).hexdigest()[:16]},
                    },
                    "spec": render_frontdoor_pod(args.image, config_map=cm_name, system_taint=args.system_taint),
                },
            },
            opts=ResourceOptions(parent=self, depends_on=[cm, sa, *after]),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata={"name": "gateway-frontdoor", "namespace": ns},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": FRONTDOOR_SELECTOR}},
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        annotations, spec = render_lb_service(args.exposure)
        svc = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": "gateway-public", "namespace": ns, "annotations": annotations},
            spec=spec,
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        e = args.exposure
        self.url = svc.status.apply(lambda s: frontdoor_url(lb_hostname(s), e, args.in_cluster_url))
        self.register_outputs({"url": self.url})
