"""LiteLLM gateway: config from exactly the deployed routes, keys in a Secret, 2+ replicas, PDB,
in-cluster Service (the front door faces clients); optional Postgres on Amazon RDS (separate AWS-plane component)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi import ResourceOptions

from components.types import (
    GATEWAY_PORT,
    GATEWAY_SELECTOR,
    REDIS_PORT,
    ImagePin,
    Route,
    checkov_skips,
    container_security,
    image_skips,
    pod_security,
    service_host,
    tolerate,
    zone_spread,
)

PORT = GATEWAY_PORT
CONFIG_PATH = "/etc/litellm/config.yaml"
LIVENESS = "/health/liveliness"
READINESS = "/health/readiness"
WORKERS = 2
# uvicorn (>= 0.37, 0.54 in 1.106.12) kills a worker that does not answer its supervisor's ping in
# time, 5 s by default; importing the proxy takes longer on a busy CPU, and the workers were then
# killed and respawned forever (measured here). The probes still catch a hung pod.
WORKER_HEALTHCHECK_S = 60
# One retry (to another replica) after a failure or a timeout, at the router and the call level.
NUM_RETRIES = 1
# Idle limits per hop (client → NLB → front door → LiteLLM → vLLM; docs/connect.md "timeouts per hop"). LiteLLM
# closes an idle kept-alive connection after KEEPALIVE_S (uvicorn's `timeout_keep_alive`, 5 s by
# default): longer than its callers keep one idle (the front door's nginx upstream pool 60 s, httpx 5 s,
# undici 4 s, aiohttp 15 s), so the caller always closes first and never writes to a closed socket.
KEEPALIVE_S = 75
# Production log level: INFO logs a line per request and per routing decision (volume, request
# metadata in the logs); WARNING still shows retries, failed upstreams and errors.
LOG_LEVEL = "WARNING"
# Where the process writes with a read-only root filesystem (each one an emptyDir; the same paths
# are the `writablePaths` of the litellm image row in stacks/catalog/versions.yaml):
TMP = "/tmp"  # HOME, tempfile: token-exchange store (at import), pinned RDS root cert, migration diffs
METRICS_DIR = "/var/lib/litellm/metrics"  # PROMETHEUS_MULTIPROC_DIR: one registry across workers
MIGRATIONS_DIR = "/var/lib/litellm/migrations"  # LITELLM_MIGRATION_DIR: Prisma migrations copied here
# The RDS CA bundle (database path): a ConfigMap mounted read-only; DATABASE_URL's sslrootcert.
RDS_CA_DIR = "/etc/litellm-rds"
RDS_CA_FILE = "global-bundle.pem"
RDS_CA_PATH = f"{RDS_CA_DIR}/{RDS_CA_FILE}"
RDS_CA_CONFIGMAP = "rds-ca-bundle"
WRITABLE = {"tmp": (TMP, "1Gi"), "metrics": (METRICS_DIR, "256Mi"), "migrations": (MIGRATIONS_DIR, "256Mi")}
# Keys as code (incluster/gateway_auth/custom_auth.py): the hook ships in the config ConfigMap beside
# config.yaml (LiteLLM imports `custom_auth` from the config file's directory); the key hashes come
# from a Secret mounted read-only. The hook is on in every stack: a wrong or missing key is a 401.
AUTH_MODULE = "custom_auth"
# The in-pod hook ships as a file; the program never imports it.
AUTH_SOURCE = Path(__file__).resolve().parent.parent / "incluster" / "gateway_auth" / "custom_auth.py"
# The streamed usage chunk as OpenAI's reference has it (`choices: []`): a LiteLLM callback shipped and
# imported like the auth hook (incluster/gateway_usage/usage_chunk.py; its instance is `usage_chunk`).
USAGE_MODULE = "usage_chunk"
USAGE_SOURCE = Path(__file__).resolve().parent.parent / "incluster" / "gateway_usage" / "usage_chunk.py"
KEYS_DIR = "/etc/litellm-keys"
KEYS_FILE = "keys.json"
KEYS_SECRET = "litellm-keys"
# Secret `litellm`: what LiteLLM reads from env (the master key among them).
SECRET_NAME = "litellm"
SECRET_MASTER_KEY = "master-key"
# The scraper's /metrics-only key (a row of the key table): its own Secret, which the PodMonitor
# names, so the Prometheus configuration never holds the master key.
METRICS_SECRET = "litellm-metrics"
METRICS_SECRET_KEY = "metrics-key"
# checkov findings accepted on the gateway Deployment only (reasons contain no '=').
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit: CFS throttling adds gateway latency; CPU requests are set",
    "CKV_K8S_35": "LiteLLM reads its master key, salt key, vLLM key and DATABASE_URL from env only",
}


def auth_module_source() -> str:
    return AUTH_SOURCE.read_text()


def model_entry(r: Route) -> dict:
    """One route as a LiteLLM deployment: vLLM's OpenAI API behind the route's Service."""
    return {
        "model_name": r.model_name,
        "litellm_params": {
            "model": f"hosted_vllm/{r.served_name}",
            "api_base": f"http://{r.service_host}:{r.port}/v1",
            "api_key": "os.environ/VLLM_API_KEY",
            "timeout": r.timeout_seconds,
            "stream_timeout": r.timeout_seconds,
        },
        "model_info": {"mode": "chat", "max_input_tokens": r.max_input_tokens},
    }


def general_settings(*, database: bool, redis: bool) -> dict:
    general: dict = {
        "master_key": "os.environ/LITELLM_MASTER_KEY",
        # Who is calling: our hook (master key = admin, a team key = its team, anything else 401);
        # LiteLLM's own common checks then enforce the key's models and routes.
        "custom_auth": f"{AUTH_MODULE}.user_api_key_auth",
        "custom_auth_run_common_checks": True,
    }
    if database:
        general["database_url"] = "os.environ/DATABASE_URL"
        # A key the hook does not know goes on to LiteLLM's own virtual-key check in Postgres (the
        # hook raises a plain exception for it; litellm_enterprise's `auto` mode falls through).
        general["custom_auth_settings"] = {"mode": "auto"}
    if redis:
        # Rate-limit counters (rpm/tpm/parallel) shared by every gateway replica.
        general["coordination_redis"] = {
            "host": "os.environ/REDIS_HOST",
            "port": "os.environ/REDIS_PORT",
            "password": "os.environ/REDIS_PASSWORD",
            "ssl": True,
        }
    return general


def render_litellm_config(routes: list[Route], *, database: bool, redis: bool = False) -> dict:
    model_list = [model_entry(r) for r in routes]
    general = general_settings(database=database, redis=redis)
    return {
        "model_list": model_list,
        "litellm_settings": {
            "drop_params": True,
            # Model-access checks on what the custom-auth hook returns (key models, fallbacks).
            "enable_post_custom_auth_checks": True,
            "request_timeout": max([r.timeout_seconds for r in routes] or [600]),
            "num_retries": NUM_RETRIES,
            "callbacks": ["prometheus", f"{USAGE_MODULE}.usage_chunk"],
            # /metrics needs a LiteLLM key (the 1.106.12 default, pinned here): the scraper sends one.
            "require_auth_for_metrics_endpoint": True,
            "set_verbose": False,
        },
        # A draining vLLM replica answers 5xx or drops the connection: retry once, and let the
        # retry go to another replica of the same model (weighted failover excludes the one that
        # failed; plain retries may pick it again).
        "router_settings": {
            "routing_strategy": "simple-shuffle",
            "num_retries": NUM_RETRIES,
            "allowed_fails": 3,
            "cooldown_time": 30,
            "enable_weighted_failover": True,
        },
        "general_settings": general,
    }


@dataclass(frozen=True)
class GatewayArgs:
    namespace: str
    image: ImagePin
    routes: tuple[Route, ...]
    replicas: int
    master_key: pulumi.Input[str]
    salt_key: pulumi.Input[str]
    vllm_api_key: pulumi.Input[str]
    system_taint: str
    database_url: pulumi.Input[str] | None = None
    database_ca_bundle: str | None = None  # PEM text of the RDS CA bundle (with database_url)
    after: tuple[pulumi.Resource, ...] = ()
    # Set: an HPA scales the gateway from `replicas` to this on CPU (the Deployment omits spec.replicas).
    max_replicas: int | None = None
    cpu_utilization_percent: int = 70
    # Keys as code: JSON {sha256(key): {team_id, models, limits}} (incluster/gateway_auth); None = master key only.
    key_table: pulumi.Input[str] | None = None
    # The Redis the replicas share rate-limit counters through (TLS, auth token); None = per-replica counters.
    redis_host: pulumi.Input[str] | None = None
    redis_password: pulumi.Input[str] | None = None
    # The scraper's key (its hash is in key_table): Secret METRICS_SECRET, for the PodMonitor only.
    metrics_key: pulumi.Input[str] | None = None


def render_gateway_hpa_spec(*, deployment: str, min_replicas: int, max_replicas: int, cpu_percent: int) -> dict:
    """autoscaling/v2: average CPU use over the pods' CPU requests (metrics-server supplies it)."""
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}},
            }
        ],
    }


def gateway_uid(image: ImagePin) -> int:
    if image.user is None:
        raise ValueError(f"{image.ref}: the catalog row needs `user:` (the UID the image runs as)")
    return image.user


def secret_env(name: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}}


def gateway_env(*, database: bool, redis: bool) -> list[dict]:
    env = [
        secret_env("LITELLM_MASTER_KEY", SECRET_MASTER_KEY),
        secret_env("LITELLM_SALT_KEY", "salt-key"),
        secret_env("VLLM_API_KEY", "vllm-api-key"),
        {"name": "LITELLM_MODE", "value": "PRODUCTION"},
        {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
        {"name": "DISABLE_ADMIN_UI", "value": "True"},
        {"name": "LITELLM_LOG", "value": LOG_LEVEL},
        {"name": "HOME", "value": TMP},
        {"name": "XDG_CACHE_HOME", "value": f"{TMP}/.cache"},
        {"name": "PROMETHEUS_MULTIPROC_DIR", "value": METRICS_DIR},
        {"name": "LLM_SERVING_KEYS_FILE", "value": f"{KEYS_DIR}/{KEYS_FILE}"},
    ]
    if redis:
        env += [
            secret_env("REDIS_HOST", "redis-host"),
            {"name": "REDIS_PORT", "value": str(REDIS_PORT)},
            secret_env("REDIS_PASSWORD", "redis-password"),
        ]
    if database:
        env += [secret_env("DATABASE_URL", "database-url"), {"name": "LITELLM_MIGRATION_DIR", "value": MIGRATIONS_DIR}]
    return env


def gateway_args() -> list[str]:
    return [
        "--config",
        CONFIG_PATH,
        "--port",
        str(PORT),
        "--num_workers",
        str(WORKERS),
        "--timeout_worker_healthcheck",
        str(WORKER_HEALTHCHECK_S),
        "--keepalive_timeout",
        str(KEEPALIVE_S),
    ]


def render_gateway_pod(
    image: ImagePin, *, replicas: int, database: bool, system_taint: str, keys: bool = False, redis: bool = False
) -> dict:
    uid = gateway_uid(image)
    env = gateway_env(database=database, redis=redis)
    ca_mount = [{"name": "rds-ca", "mountPath": RDS_CA_DIR, "readOnly": True}] if database else []
    ca_volume = [{"name": "rds-ca", "configMap": {"name": RDS_CA_CONFIGMAP}}] if database else []
    probe = lambda path, **kw: {"httpGet": {"path": path, "port": PORT}, "timeoutSeconds": 5, **kw}  # noqa: E731
    return {
        "automountServiceAccountToken": False,
        "serviceAccountName": "litellm",
        "securityContext": pod_security(uid),
        "tolerations": [tolerate(system_taint)],
        "topologySpreadConstraints": zone_spread(GATEWAY_SELECTOR),
        "containers": [
            {
                "name": "litellm",
                "image": image.ref,
                "args": gateway_args(),
                "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                "env": env,
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
                "startupProbe": probe(LIVENESS, periodSeconds=5, failureThreshold=60),
                "livenessProbe": probe(LIVENESS, periodSeconds=15, failureThreshold=3),
                "readinessProbe": probe(READINESS, periodSeconds=10, failureThreshold=3),
                "securityContext": container_security(uid, read_only_root=True),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/litellm", "readOnly": True},
                    *({"name": n, "mountPath": path} for n, (path, _) in WRITABLE.items()),
                    *([{"name": "keys", "mountPath": KEYS_DIR, "readOnly": True}] if keys else []),
                    *ca_mount,
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "litellm-config"}},
            *({"name": n, "emptyDir": {"sizeLimit": size}} for n, (_, size) in WRITABLE.items()),
            # 0440: the kubelet gives the files the pod's fsGroup (= the image user's group), nobody else reads them.
            *([{"name": "keys", "secret": {"secretName": KEYS_SECRET, "defaultMode": 0o440}}] if keys else []),
            *ca_volume,
        ],
    }


def gateway_annotations(image: ImagePin) -> dict[str, str]:
    """checkov skips for the gateway Deployment alone (a regression elsewhere still fails)."""
    return checkov_skips({**CHECKOV_SKIPS, **image_skips(image.ref)})


def secret_data(args: GatewayArgs) -> dict[str, pulumi.Input[str]]:
    """Secret `litellm`: the keys and URLs LiteLLM reads from env."""
    data = {SECRET_MASTER_KEY: args.master_key, "salt-key": args.salt_key, "vllm-api-key": args.vllm_api_key}
    if args.database_url is not None:
        data["database-url"] = args.database_url
    if args.redis_host is not None and args.redis_password is not None:
        data["redis-host"] = args.redis_host
        data["redis-password"] = args.redis_password
    return data


class LiteLLMGateway(pulumi.ComponentResource):
    url: pulumi.Output[str]

    def __init__(self, name: str, args: GatewayArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:LiteLLMGateway", name, None, opts)
        self._name, self._args, self._after = name, args, list(args.after)
        config = render_litellm_config(
            list(args.routes), database=args.database_url is not None, redis=args.redis_host is not None
        )
        files = {"config.yaml": yaml.safe_dump(config, sort_keys=False), f"{AUTH_MODULE}.py": auth_module_source()}
        files[f"{USAGE_MODULE}.py"] = USAGE_SOURCE.read_text()
        inputs = self._inputs(files)
        deployment = self._deployment(hashlib.sha256("".join(files.values()).encode()).hexdigest()[:16], inputs)
        self._service_and_budget()
        if args.max_replicas is not None:
            self._autoscaler(deployment, args.max_replicas)
        self.in_cluster_url = f"http://{service_host('litellm', args.namespace)}:{PORT}"
        self.url = pulumi.Output.from_input(self.in_cluster_url)
        self.register_outputs({"url": self.url})

    def _opts(self, *depends: pulumi.Resource) -> ResourceOptions:
        return ResourceOptions(parent=self, depends_on=[*depends, *self._after])

    def _inputs(self, files: dict[str, str]) -> list[pulumi.Resource]:
        """What the pod mounts or reads: config files, key table, secrets, RDS CA, service account."""
        name, args, ns = self._name, self._args, self._args.namespace
        out: list[pulumi.Resource] = [
            k8s.core.v1.ConfigMap(
                f"{name}-config",
                metadata={"name": "litellm-config", "namespace": ns},
                data=files,
                opts=self._opts(),
            )
        ]
        if args.key_table is not None:
            out.append(
                k8s.core.v1.Secret(
                    f"{name}-keys",
                    metadata={"name": KEYS_SECRET, "namespace": ns},
                    type="Opaque",
                    string_data={KEYS_FILE: pulumi.Output.secret(args.key_table)},
                    opts=self._opts(),
                )
            )
        out.append(
            k8s.core.v1.Secret(
                f"{name}-secret",
                metadata={"name": SECRET_NAME, "namespace": ns},
                type="Opaque",
                string_data=secret_data(args),
                opts=self._opts(),
            )
        )
        if args.metrics_key is not None:
            out.append(
                k8s.core.v1.Secret(
                    f"{name}-metrics-key",
                    metadata={"name": METRICS_SECRET, "namespace": ns},
                    type="Opaque",
                    string_data={METRICS_SECRET_KEY: pulumi.Output.secret(args.metrics_key)},
                    opts=self._opts(),
                )
            )
        out += self._rds_ca()
        out.append(
            k8s.core.v1.ServiceAccount(
                f"{name}-sa",
                metadata={"name": "litellm", "namespace": ns},
                automount_service_account_token=False,
                opts=self._opts(),
            )
        )
        return out

    def _rds_ca(self) -> list[pulumi.Resource]:
        args = self._args
        if args.database_url is None:
            return []
        if not args.database_ca_bundle:
            raise ValueError("the gateway database needs the RDS CA bundle (sslmode=verify-full)")
        return [
            k8s.core.v1.ConfigMap(
                f"{self._name}-rds-ca",
                metadata={"name": RDS_CA_CONFIGMAP, "namespace": args.namespace},
                data={RDS_CA_FILE: args.database_ca_bundle},
                opts=self._opts(),
            )
        ]

    def _deployment(self, config_hash: str, inputs: list[pulumi.Resource]) -> k8s.apps.v1.Deployment:
        args = self._args
        replicas = {} if args.max_replicas is not None else {"replicas": args.replicas}
        return k8s.apps.v1.Deployment(
            f"{self._name}-deployment",
            metadata={
                "name": "litellm",
                "namespace": args.namespace,
                "labels": GATEWAY_SELECTOR,
                "annotations": gateway_annotations(args.image),
            },
            spec={
                **replicas,
                "selector": {"matchLabels": GATEWAY_SELECTOR},
                "template": {
                    "metadata": {"labels": GATEWAY_SELECTOR, "annotations": {"llm-serving/config-hash": config_hash}},
                    "spec": render_gateway_pod(
                        args.image,
                        replicas=args.replicas,
                        database=args.database_url is not None,
                        system_taint=args.system_taint,
                        keys=args.key_table is not None,
                        redis=args.redis_host is not None,
                    ),
                },
            },
            opts=self._opts(*inputs),
        )

    def _service_and_budget(self) -> None:
        # In-cluster only: the load balancer reaches the front door (components/frontdoor.py), which
        # forwards the client routes here; NetworkPolicy admits only pods of the cluster to this port.
        ns = self._args.namespace
        k8s.core.v1.Service(
            f"{self._name}-service",
            metadata={"name": "litellm", "namespace": ns},
            spec={
                "type": "ClusterIP",
                "selector": GATEWAY_SELECTOR,
                "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
            },
            opts=self._opts(),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-pdb",
            metadata={"name": "litellm", "namespace": ns},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": GATEWAY_SELECTOR}},
            opts=self._opts(),
        )

    def _autoscaler(self, deployment: k8s.apps.v1.Deployment, max_replicas: int) -> None:
        args = self._args
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{self._name}-hpa",
            metadata={"name": "litellm", "namespace": args.namespace},
            spec=deployment.metadata.name.apply(
                lambda d: render_gateway_hpa_spec(
                    deployment=d,
                    min_replicas=args.replicas,
                    max_replicas=max_replicas,
                    cpu_percent=args.cpu_utilization_percent,
                )
            ),
            opts=self._opts(deployment),
        )
