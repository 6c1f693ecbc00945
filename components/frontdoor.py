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
# Requests nginx accepts: a long prompt in JSON (128k tokens x ~4 characters, escaped) fits well.
MAX_BODY = "32m"
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
HTTPS_PORT = 443
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit: CFS throttling adds latency to every request through the proxy; CPU requests are set",
    "CKV_K8S_40": "UID 101 is the nginx user of nginx-unprivileged; restricted PSS holds",
}


def render_frontdoor_conf(*, listen_port: int, upstream: str, read_timeout_s: int, tmp: str = TMP) -> str:
    """nginx.conf: only PUBLIC_PATHS and HEALTH_PATHS reach `upstream` (host:port); the rest is 404.
    Streaming answers pass through unbuffered; request bodies stream too."""
    locations = "\n".join(
        f"        location = {p} {{ proxy_pass http://litellm{p}; }}" for p in (*PUBLIC_PATHS, *HEALTH_PATHS)
    )
    return f"""# Rendered by components/frontdoor.py: the gateway's public routes, nothing else.
worker_processes {WORKERS};
daemon off;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log /dev/stdout;
    server_tokens off;
    client_body_temp_path {tmp}/client-body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size {MAX_BODY};
    upstream litellm {{
        server {upstream};
        keepalive 32;
    }}
    server {{
        listen {listen_port} so_keepalive={KEEPALIVE_IDLE_S}s:{KEEPALIVE_INTERVAL_S}s:{KEEPALIVE_PROBES};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        proxy_request_buffering off;
        proxy_read_timeout {read_timeout_s}s;
        proxy_send_timeout {read_timeout_s}s;
{locations}
        location / {{ return 404; }}
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


def listener_port(e: Exposure) -> int:
    return HTTPS_PORT if e.certificate_arn else e.plain_port


def render_lb_service(e: Exposure) -> tuple[dict[str, str], dict]:
    """(annotations, spec) of the LoadBalancer Service in front of the nginx pods."""
    annotations = {LB_TYPE: "nlb"}
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
    after: tuple[pulumi.Resource, ...] = ()


class GatewayFrontDoor(pulumi.ComponentResource):
    url: pulumi.Output[str]

    def __init__(self, name: str, args: FrontDoorArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:GatewayFrontDoor", name, None, opts)
        after = list(args.after)
        ns, cm_name = args.namespace, "gateway-frontdoor"
        conf = render_frontdoor_conf(
            listen_port=FRONTDOOR_PORT, upstream=args.upstream, read_timeout_s=args.read_timeout_seconds
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
