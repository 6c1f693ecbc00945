"""LiteLLM gateway: config from exactly the deployed routes, keys in a Secret, 2+ replicas, PDB,
internal load balancer; optional Postgres on Amazon RDS (separate AWS-plane component)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
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
    trust_policy,
)

PORT = GATEWAY_PORT
CONFIG_PATH = "/etc/litellm/config.yaml"
LIVENESS = "/health/liveliness"
READINESS = "/health/readiness"
WORKERS = 2
# uvicorn (>= 0.37, 0.54 in 1.106.2) kills a worker that does not answer its supervisor's ping in
# time, 5 s by default; importing the proxy takes longer on a busy CPU, and the workers were then
# killed and respawned forever (measured here). The probes still catch a hung pod.
WORKER_HEALTHCHECK_S = 60
# One retry (to another replica) after a failure or a timeout, at the router and the call level.
NUM_RETRIES = 1
# Idle limits per hop (client → NLB → LiteLLM → vLLM). An idle pooled client connection is closed
# by the server after KEEPALIVE_S (uvicorn's `timeout_keep_alive`, 5 s by default): longer than the
# official clients keep one (httpx 5 s, undici 4 s, aiohttp 15 s) so the client closes first, and
# shorter than the NLB's idle timeout so the NLB never forgets a flow both ends still hold.
KEEPALIVE_S = 75
# The NLB drops a TCP flow with no bytes for its idle timeout (listener attribute
# `tcp.idle_timeout.seconds`, 60-6000, default 350; TLS listeners: 350, fixed). A streamed answer
# sends bytes every token; a non-streamed one is silent until LiteLLM has it, up to
# (1 + NUM_RETRIES) route timeouts: the listener must wait that long.
NLB_IDLE_RANGE_S = (60, 6000)
IDLE_MARGIN_S = 30  # covers the router's backoff before its retry (LiteLLM 1.106.2: at most 8 s + jitter)
NLB_IDLE_ANNOTATION = f"service.beta.kubernetes.io/aws-load-balancer-listener-attributes.TCP-{GATEWAY_PORT}"
# Production log level: INFO logs a line per request and per routing decision (volume, request
# metadata in the logs); WARNING still shows retries, failed upstreams and errors.
LOG_LEVEL = "WARNING"
# Where the process writes with a read-only root filesystem (each one an emptyDir; the same paths
# are the `writablePaths` of the litellm image row in stacks/catalog/versions.yaml):
TMP = "/tmp"  # HOME, tempfile: token-exchange store (at import), pinned RDS root cert, migration diffs
METRICS_DIR = "/var/lib/litellm/metrics"  # PROMETHEUS_MULTIPROC_DIR: one registry across workers
MIGRATIONS_DIR = "/var/lib/litellm/migrations"  # LITELLM_MIGRATION_DIR: Prisma migrations copied here
WRITABLE = {"tmp": (TMP, "1Gi"), "metrics": (METRICS_DIR, "256Mi"), "migrations": (MIGRATIONS_DIR, "256Mi")}
# Keys as code (components/gateway_auth/custom_auth.py): the hook ships in the config ConfigMap beside
# config.yaml (LiteLLM imports `custom_auth` from the config file's directory); the key hashes come
# from a Secret mounted read-only. The hook is on in every stack: a wrong or missing key is a 401.
AUTH_MODULE = "custom_auth"
AUTH_SOURCE = Path(__file__).with_name("gateway_auth") / "custom_auth.py"
KEYS_DIR = "/etc/litellm-keys"
KEYS_FILE = "keys.json"
KEYS_SECRET = "litellm-keys"
# checkov findings accepted on the gateway Deployment only (reasons contain no '=').
CHECKOV_SKIPS = {
    "CKV_K8S_11": "no CPU limit: CFS throttling adds gateway latency; CPU requests are set",
    "CKV_K8S_35": "LiteLLM reads its master key, salt key, vLLM key and DATABASE_URL from env only",
}


def auth_module_source() -> str:
    return AUTH_SOURCE.read_text()


def render_litellm_config(routes: list[Route], *, database: bool, redis: bool = False) -> dict:
    model_list = []
    for r in routes:
        model_list.append(
            {
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
        )
    general = {
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
    return {
        "model_list": model_list,
        "litellm_settings": {
            "drop_params": True,
            # Model-access checks on what the custom-auth hook returns (key models, fallbacks).
            "enable_post_custom_auth_checks": True,
            "request_timeout": max([r.timeout_seconds for r in routes] or [600]),
            "num_retries": NUM_RETRIES,
            "callbacks": ["prometheus"],
            # /metrics needs a LiteLLM key (the 1.106.2 default, pinned here): the scraper sends one.
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


def nlb_idle_timeout_seconds(routes: list[Route]) -> int:
    """The longest a request can be silent between client and gateway, bounded by what an NLB allows
    (above it, only streamed answers outlive the listener: README, timeouts per hop)."""
    silent = (1 + NUM_RETRIES) * max([r.timeout_seconds for r in routes] or [600])
    lo, hi = NLB_IDLE_RANGE_S
    return min(hi, max(lo, silent + IDLE_MARGIN_S, KEEPALIVE_S + IDLE_MARGIN_S))


def service_annotations(routes: list[Route], *, internal: bool) -> dict[str, str]:
    """The gateway Service's load-balancer annotations. The idle timeout is a listener attribute the
    AWS Load Balancer Controller (>= v2.9) applies to Services it reconciles; the legacy in-tree
    provider (`aws-load-balancer-type: nlb`) ignores it and the NLB keeps 350 s."""
    annotations = {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        NLB_IDLE_ANNOTATION: f"tcp.idle_timeout.seconds={nlb_idle_timeout_seconds(routes)}",
    }
    if internal:
        annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] = "true"
    return annotations


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
    internal_load_balancer: bool = True
    after: tuple[pulumi.Resource, ...] = ()
    # Keys as code: JSON {sha256(key): {team_id, models, limits}} (components/gateway_auth); None = master key only.
    key_table: pulumi.Input[str] | None = None
    # The Redis the replicas share rate-limit counters through (TLS, auth token); None = per-replica counters.
    redis_host: pulumi.Input[str] | None = None
    redis_password: pulumi.Input[str] | None = None


def gateway_uid(image: ImagePin) -> int:
    if image.user is None:
        raise ValueError(f"{image.ref}: the catalog row needs `user:` (the UID the image runs as)")
    return image.user


def render_gateway_pod(
    image: ImagePin, *, replicas: int, database: bool, system_taint: str, keys: bool = False, redis: bool = False
) -> dict:
    uid = gateway_uid(image)

    def secret_env(name: str, key: str) -> dict:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": "litellm", "key": key}}}

    env = [
        secret_env("LITELLM_MASTER_KEY", "master-key"),
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
    probe = lambda path, **kw: {"httpGet": {"path": path, "port": PORT}, "timeoutSeconds": 5, **kw}  # noqa: E731
    return {
        "automountServiceAccountToken": False,
        "serviceAccountName": "litellm",
        "securityContext": pod_security(uid),
        "tolerations": [tolerate(system_taint)],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": GATEWAY_SELECTOR},
            }
        ],
        "containers": [
            {
                "name": "litellm",
                "image": image.ref,
                "args": [
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
                ],
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
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "litellm-config"}},
            *({"name": n, "emptyDir": {"sizeLimit": size}} for n, (_, size) in WRITABLE.items()),
            # 0440: the kubelet gives the files the pod's fsGroup (= the image user's group), nobody else reads them.
            *([{"name": "keys", "secret": {"secretName": KEYS_SECRET, "defaultMode": 0o440}}] if keys else []),
        ],
    }


def gateway_annotations(image: ImagePin) -> dict[str, str]:
    """checkov skips for the gateway Deployment alone (a regression elsewhere still fails)."""
    return checkov_skips({**CHECKOV_SKIPS, **image_skips(image.ref)})


class LiteLLMGateway(pulumi.ComponentResource):
    url: pulumi.Output[str]

    def __init__(self, name: str, args: GatewayArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:LiteLLMGateway", name, None, opts)
        after = list(args.after)
        ns = args.namespace
        redis = args.redis_host is not None
        config = render_litellm_config(list(args.routes), database=args.database_url is not None, redis=redis)
        config_text = yaml.safe_dump(config, sort_keys=False)
        files = {"config.yaml": config_text, f"{AUTH_MODULE}.py": auth_module_source()}
        cm = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"name": "litellm-config", "namespace": ns},
            data=files,
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        data = {"master-key": args.master_key, "salt-key": args.salt_key, "vllm-api-key": args.vllm_api_key}
        if args.database_url is not None:
            data["database-url"] = args.database_url
        if redis:
            data["redis-host"] = args.redis_host
            data["redis-password"] = args.redis_password
        keys_secret = [
            k8s.core.v1.Secret(
                f"{name}-keys",
                metadata={"name": KEYS_SECRET, "namespace": ns},
                type="Opaque",
                string_data={KEYS_FILE: pulumi.Output.secret(args.key_table)},
                opts=ResourceOptions(parent=self, depends_on=after),
            )
            for _ in [args.key_table]
            if args.key_table is not None
        ]
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": "litellm", "namespace": ns},
            type="Opaque",
            string_data=data,
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={"name": "litellm", "namespace": ns},
            automount_service_account_token=False,
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        chash = hashlib.sha256("".join(files.values()).encode()).hexdigest()[:16]
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                "name": "litellm",
                "namespace": ns,
                "labels": GATEWAY_SELECTOR,
                "annotations": gateway_annotations(args.image),
            },
            spec={
                "replicas": args.replicas,
                "selector": {"matchLabels": GATEWAY_SELECTOR},
                "template": {
                    "metadata": {"labels": GATEWAY_SELECTOR, "annotations": {"llm-serving/config-hash": chash}},
                    "spec": render_gateway_pod(
                        args.image,
                        replicas=args.replicas,
                        database=args.database_url is not None,
                        system_taint=args.system_taint,
                        keys=args.key_table is not None,
                        redis=redis,
                    ),
                },
            },
            opts=ResourceOptions(parent=self, depends_on=[cm, secret, sa, *keys_secret, *after]),
        )
        annotations = service_annotations(list(args.routes), internal=args.internal_load_balancer)
        svc = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": "litellm", "namespace": ns, "annotations": annotations},
            spec={
                "type": "LoadBalancer",
                "selector": GATEWAY_SELECTOR,
                "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
            },
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata={"name": "litellm", "namespace": ns},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": GATEWAY_SELECTOR}},
            opts=ResourceOptions(parent=self, depends_on=after),
        )
        self.in_cluster_url = f"http://{service_host('litellm', ns)}:{PORT}"
        self.url = svc.status.apply(
            lambda s: (
                f"http://{(s.load_balancer.ingress or [None])[0].hostname}:{PORT}"
                if s and s.load_balancer and s.load_balancer.ingress
                else self.in_cluster_url
            )
        )
        self.register_outputs({"url": self.url})


@dataclass(frozen=True)
class DatabaseArgs:
    cluster_name: str
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    client_security_group_id: pulumi.Input[str]
    engine_version: str
    instance_class: str
    allocated_storage_gib: int
    multi_az: bool
    password: pulumi.Input[str]
    # CMK for storage and Performance Insights (the platform's data key); None keeps AWS-managed keys.
    kms_key_arn: pulumi.Input[str] | None = None


# Postgres logging (the parameter group): schema changes always, any statement slower than this.
# Not `all`/`mod`: LiteLLM's writes carry hashed virtual keys and spend rows on every request.
LOG_STATEMENT = "ddl"
SLOW_STATEMENT_MS = 1000
MONITORING_INTERVAL_S = 60  # enhanced monitoring (OS metrics), seconds
MONITORING_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"


def db_parameters(engine_version: str) -> tuple[str, list[dict]]:
    """(parameter group family, parameters): `postgres16` for engine version 16 or 16.x."""
    family = f"postgres{engine_version.split('.')[0]}"
    return family, [
        {"name": "log_statement", "value": LOG_STATEMENT},
        {"name": "log_min_duration_statement", "value": str(SLOW_STATEMENT_MS)},
        # Refuse unencrypted client connections (the gateway connects with TLS; checkov CKV2_AWS_69).
        {"name": "rds.force_ssl", "value": "1"},
    ]


def monitoring_trust() -> str:
    return trust_policy("monitoring.rds.amazonaws.com")


class GatewayDatabase(pulumi.ComponentResource):
    """Postgres for LiteLLM virtual keys, teams and budgets: encrypted, private, protected."""

    url: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:GatewayDatabase", name, None, opts)
        child = ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="Postgres from EKS nodes only",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 5432,
                    "to_port": 5432,
                    "description": "Postgres from EKS nodes (LiteLLM)",
                    "security_groups": [args.client_security_group_id],
                }
            ],
            tags={"Name": f"{args.cluster_name}-litellm-db"},
            opts=child,
        )
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, opts=child)
        family, parameters = db_parameters(args.engine_version)
        params = aws.rds.ParameterGroup(
            f"{name}-params",
            name=f"{args.cluster_name}-litellm",
            family=family,
            parameters=parameters,
            description=f"LiteLLM Postgres of {args.cluster_name}: DDL and slow-query logs",
            opts=child,
        )
        monitoring = aws.iam.Role(f"{name}-monitoring", assume_role_policy=monitoring_trust(), opts=child)
        monitoring_policy = aws.iam.RolePolicyAttachment(
            f"{name}-monitoring", role=monitoring.name, policy_arn=MONITORING_POLICY, opts=child
        )
        cmk = (
            {}
            if args.kms_key_arn is None
            else {"kms_key_id": args.kms_key_arn, "performance_insights_kms_key_id": args.kms_key_arn}
        )
        db = aws.rds.Instance(
            f"{name}-postgres",
            identifier=f"{args.cluster_name}-litellm",
            engine="postgres",
            engine_version=args.engine_version,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gib,
            storage_type="gp3",
            storage_encrypted=True,
            db_name="litellm",
            username="litellm",
            password=args.password,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[sg.id],
            publicly_accessible=False,
            multi_az=args.multi_az,
            deletion_protection=bool(opts and opts.protect),
            backup_retention_period=7,
            copy_tags_to_snapshot=True,
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{args.cluster_name}-litellm-final",
            auto_minor_version_upgrade=True,
            iam_database_authentication_enabled=True,
            performance_insights_enabled=True,
            enabled_cloudwatch_logs_exports=["postgresql"],
            parameter_group_name=params.name,
            monitoring_interval=MONITORING_INTERVAL_S,
            monitoring_role_arn=monitoring.arn,
            **cmk,
            opts=ResourceOptions(parent=self, protect=bool(opts and opts.protect), depends_on=[monitoring_policy]),
        )
        self.url = pulumi.Output.secret(
            pulumi.Output.all(db.address, args.password).apply(
                lambda a: f"postgresql://litellm:{a[1]}@{a[0]}:5432/litellm?sslmode=require"
            )
        )
        self.register_outputs({})
