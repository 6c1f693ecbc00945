"""LiteLLM gateway: config from exactly the deployed routes, keys in a Secret, 2+ replicas, PDB,
internal load balancer; optional Postgres on Amazon RDS (separate AWS-plane component)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml
from pulumi import ResourceOptions

from components.types import GATEWAY_SELECTOR, Route, container_security, pod_security, tolerate

PORT = 4000
UID = 1000
CONFIG_PATH = "/etc/litellm/config.yaml"
LIVENESS = "/health/liveliness"
READINESS = "/health/readiness"


def render_litellm_config(routes: list[Route], *, database: bool) -> dict:
    model_list = []
    for r in routes:
        model_list.append({
            "model_name": r.model_name,
            "litellm_params": {
                "model": f"hosted_vllm/{r.served_name}",
                "api_base": f"http://{r.service_host}:{r.port}/v1",
                "api_key": "os.environ/VLLM_API_KEY",
                "timeout": r.timeout_seconds,
                "stream_timeout": r.timeout_seconds,
            },
            "model_info": {"mode": "chat", "max_input_tokens": r.max_input_tokens},
        })
    general = {"master_key": "os.environ/LITELLM_MASTER_KEY"}
    if database:
        general["database_url"] = "os.environ/DATABASE_URL"
    return {
        "model_list": model_list,
        "litellm_settings": {
            "drop_params": True,
            "request_timeout": max([r.timeout_seconds for r in routes] or [600]),
            "num_retries": 1,
            "callbacks": ["prometheus"],
            "set_verbose": False,
        },
        "router_settings": {"routing_strategy": "simple-shuffle", "num_retries": 1, "allowed_fails": 3,
                            "cooldown_time": 30},
        "general_settings": general,
    }


@dataclass(frozen=True)
class GatewayArgs:
    namespace: str
    image: str
    routes: tuple[Route, ...]
    replicas: int
    master_key: pulumi.Input[str]
    salt_key: pulumi.Input[str]
    vllm_api_key: pulumi.Input[str]
    system_taint: str
    database_url: Optional[pulumi.Input[str]] = None
    internal_load_balancer: bool = True
    after: tuple[pulumi.Resource, ...] = ()


def render_gateway_pod(args_image: str, *, replicas: int, database: bool, system_taint: str) -> dict:
    def secret_env(name: str, key: str) -> dict:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": "litellm", "key": key}}}
    env = [secret_env("LITELLM_MASTER_KEY", "master-key"), secret_env("LITELLM_SALT_KEY", "salt-key"),
           secret_env("VLLM_API_KEY", "vllm-api-key"),
           {"name": "LITELLM_MODE", "value": "PRODUCTION"},
           {"name": "LITELLM_LOCAL_MODEL_COST_MAP", "value": "True"},
           {"name": "DISABLE_ADMIN_UI", "value": "True"},
           {"name": "LITELLM_LOG", "value": "INFO"},
           {"name": "HOME", "value": "/tmp"}]
    if database:
        env.append(secret_env("DATABASE_URL", "database-url"))
    probe = lambda path, **kw: {"httpGet": {"path": path, "port": PORT}, "timeoutSeconds": 5, **kw}  # noqa: E731
    return {
        "automountServiceAccountToken": False,
        "serviceAccountName": "litellm",
        "securityContext": pod_security(UID),
        "tolerations": [tolerate(system_taint)],
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": GATEWAY_SELECTOR}}],
        "containers": [{
            "name": "litellm", "image": args_image,
            "args": ["--config", CONFIG_PATH, "--port", str(PORT), "--num_workers", "2"],
            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
            "env": env,
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
            "startupProbe": probe(LIVENESS, periodSeconds=5, failureThreshold=60),
            "livenessProbe": probe(LIVENESS, periodSeconds=15, failureThreshold=3),
            "readinessProbe": probe(READINESS, periodSeconds=10, failureThreshold=3),
            "securityContext": container_security(UID, read_only_root=False),
            "volumeMounts": [{"name": "config", "mountPath": "/etc/litellm", "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "config", "configMap": {"name": "litellm-config"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }


class LiteLLMGateway(pulumi.ComponentResource):
    url: pulumi.Output[str]

    def __init__(self, name: str, args: GatewayArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:LiteLLMGateway", name, None, opts)
        after = list(args.after)
        ns = args.namespace
        config = render_litellm_config(list(args.routes), database=args.database_url is not None)
        config_text = yaml.safe_dump(config, sort_keys=False)
        cm = k8s.core.v1.ConfigMap(f"{name}-config", metadata={"name": "litellm-config", "namespace": ns},
                                   data={"config.yaml": config_text}, opts=ResourceOptions(parent=self, depends_on=after))
        data = {"master-key": args.master_key, "salt-key": args.salt_key, "vllm-api-key": args.vllm_api_key}
        if args.database_url is not None:
            data["database-url"] = args.database_url
        secret = k8s.core.v1.Secret(f"{name}-secret", metadata={"name": "litellm", "namespace": ns}, type="Opaque",
                                    string_data=data, opts=ResourceOptions(parent=self, depends_on=after))
        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata={"name": "litellm", "namespace": ns},
                                        automount_service_account_token=False,
                                        opts=ResourceOptions(parent=self, depends_on=after))
        chash = hashlib.sha256(config_text.encode()).hexdigest()[:16]
        k8s.apps.v1.Deployment(f"{name}-deployment", metadata={"name": "litellm", "namespace": ns, "labels": GATEWAY_SELECTOR},
                               spec={"replicas": args.replicas, "selector": {"matchLabels": GATEWAY_SELECTOR},
                                     "template": {"metadata": {"labels": GATEWAY_SELECTOR,
                                                               "annotations": {"llm-serving/config-hash": chash}},
                                                  "spec": render_gateway_pod(args.image, replicas=args.replicas,
                                                                             database=args.database_url is not None,
                                                                             system_taint=args.system_taint)}},
                               opts=ResourceOptions(parent=self, depends_on=[cm, secret, sa, *after]))
        annotations = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
        if args.internal_load_balancer:
            annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] = "true"
        svc = k8s.core.v1.Service(f"{name}-service", metadata={"name": "litellm", "namespace": ns, "annotations": annotations},
                                  spec={"type": "LoadBalancer", "selector": GATEWAY_SELECTOR,
                                        "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]},
                                  opts=ResourceOptions(parent=self, depends_on=after))
        k8s.policy.v1.PodDisruptionBudget(f"{name}-pdb", metadata={"name": "litellm", "namespace": ns},
                                          spec={"maxUnavailable": 1, "selector": {"matchLabels": GATEWAY_SELECTOR}},
                                          opts=ResourceOptions(parent=self, depends_on=after))
        self.in_cluster_url = f"http://litellm.{ns}.svc.cluster.local:{PORT}"
        self.url = svc.status.apply(lambda s: f"http://{(s.load_balancer.ingress or [None])[0].hostname}:{PORT}"
                                    if s and s.load_balancer and s.load_balancer.ingress else self.in_cluster_url)
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


class GatewayDatabase(pulumi.ComponentResource):
    """Postgres for LiteLLM virtual keys, teams and budgets: encrypted, private, protected."""

    url: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:GatewayDatabase", name, None, opts)
        child = ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(f"{name}-sg", vpc_id=args.vpc_id, description="Postgres from EKS nodes only",
                                   ingress=[{"protocol": "tcp", "from_port": 5432, "to_port": 5432,
                                             "security_groups": [args.client_security_group_id]}],
                                   tags={"Name": f"{args.cluster_name}-litellm-db"}, opts=child)
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, opts=child)
        db = aws.rds.Instance(
            f"{name}-postgres", identifier=f"{args.cluster_name}-litellm", engine="postgres",
            engine_version=args.engine_version, instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gib, storage_type="gp3", storage_encrypted=True,
            db_name="litellm", username="litellm", password=args.password,
            db_subnet_group_name=subnets.name, vpc_security_group_ids=[sg.id], publicly_accessible=False,
            multi_az=args.multi_az, deletion_protection=bool(opts and opts.protect), backup_retention_period=7,
            copy_tags_to_snapshot=True, skip_final_snapshot=False,
            final_snapshot_identifier=f"{args.cluster_name}-litellm-final",
            auto_minor_version_upgrade=True, iam_database_authentication_enabled=True,
            performance_insights_enabled=True, enabled_cloudwatch_logs_exports=["postgresql"],
            opts=ResourceOptions(parent=self, protect=bool(opts and opts.protect)))
        self.url = pulumi.Output.secret(pulumi.Output.all(db.address, args.password).apply(
            lambda a: f"postgresql://litellm:{a[1]}@{a[0]}:5432/litellm?sslmode=require"))
        self.register_outputs({})

