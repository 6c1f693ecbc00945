"""The Redis the gateway replicas share rate-limit counters through (LiteLLM's coordination Redis).

Why Amazon ElastiCache and not a Redis pod in the cluster: the counters are what make a team's
limit one limit across every gateway replica, so the store must survive a node drain or an AZ loss
(Multi-AZ with automatic failover, AWS patches it), be encrypted in transit and at rest with an
auth token (the in-cluster charts leave TLS to the operator), and it keeps a stateful service off
the system node group, which holds only controllers and the gateway. Cost: two cache.t4g.small
nodes (about $0.032/h each on demand in us-east-1; not yet in the plan's cost table)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from components.types import REDIS_PORT, tcp_ingress_from

PORT = REDIS_PORT


@dataclass(frozen=True)
class GatewayCacheArgs:
    cluster_name: str
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    client_security_group_id: pulumi.Input[str]  # the gateway pods' (node) security group
    engine_version: str
    auth_token: pulumi.Input[str]
    node_type: str = "cache.t4g.small"
    kms_key_arn: pulumi.Input[str] | None = None


def replication_group_id(cluster_name: str) -> str:
    """ElastiCache ids: at most 40 characters, letters, digits and '-', no trailing '-'."""
    return f"{cluster_name}-litellm"[:40].rstrip("-")


class GatewayCache(pulumi.ComponentResource):
    host: pulumi.Output[str]

    def __init__(self, name: str, args: GatewayCacheArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:GatewayCache", name, None, opts)
        child = ResourceOptions(parent=self)
        rid = replication_group_id(args.cluster_name)
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="Redis (TLS) from the gateway's nodes only",
            ingress=[tcp_ingress_from(PORT, args.client_security_group_id, "Redis from EKS nodes (LiteLLM gateway)")],
            tags={"Name": rid},
            opts=child,
        )
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-subnets",
            name=rid,
            description=f"private subnets of {args.cluster_name}",
            subnet_ids=args.subnet_ids,
            opts=child,
        )
        group = aws.elasticache.ReplicationGroup(
            f"{name}-redis",
            replication_group_id=rid,
            description=f"LiteLLM rate-limit counters of {args.cluster_name}",
            engine="redis",
            engine_version=args.engine_version,
            node_type=args.node_type,
            num_cache_clusters=2,
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            port=PORT,
            subnet_group_name=subnets.name,
            security_group_ids=[sg.id],
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            auth_token=args.auth_token,
            auth_token_update_strategy="ROTATE",
            auto_minor_version_upgrade=True,
            # Counters live for a minute: nothing worth a snapshot.
            snapshot_retention_limit=0,
            apply_immediately=True,
            tags={"Name": rid},
            **({} if args.kms_key_arn is None else {"kms_key_id": args.kms_key_arn}),
            opts=child,
        )
        self.host = group.primary_endpoint_address
        self.register_outputs({"host": self.host})
