"""Serving credentials, generated once and kept (secret) in state: the vLLM API key (also as a
Kubernetes Secret beside the model servers), the gateway's master and salt keys, and optional extras."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pulumi import ResourceOptions

VLLM_KEY_SECRET = "vllm-api-key"


@dataclass(frozen=True)
class ServingKeysArgs:
    models_namespace: str
    database_password: bool = False
    webui_secret: bool = False
    redis_auth_token: bool = False  # the shared rate-limit Redis (ElastiCache auth token: 16-128 characters)
    after: tuple[pulumi.Resource, ...] = ()


class ServingKeys(pulumi.ComponentResource):
    vllm_api_key: pulumi.Output[str]
    master_key: pulumi.Output[str]
    salt_key: pulumi.Output[str]

    def __init__(self, name: str, args: ServingKeysArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:ServingKeys", name, None, opts)

        def key(role: str, length: int, prefix: str = "") -> pulumi.Output[str]:
            r = random.RandomPassword(f"{name}-{role}", length=length, special=False, opts=ResourceOptions(parent=self))
            return pulumi.Output.secret(r.result.apply(lambda v: prefix + v))

        self.vllm_api_key = key("vllm-api-key", 40)
        # LiteLLM requires master keys to start with "sk-".
        self.master_key = key("litellm-master-key", 40, prefix="sk-")
        self.salt_key = key("litellm-salt-key", 40, prefix="sk-")
        self.database_password = key("database-password", 32) if args.database_password else None
        self.webui_secret = key("webui-secret-key", 40) if args.webui_secret else None
        self.redis_auth_token = key("redis-auth-token", 40) if args.redis_auth_token else None
        self.vllm_secret = k8s.core.v1.Secret(
            f"{name}-vllm-api-key",
            metadata={"name": VLLM_KEY_SECRET, "namespace": args.models_namespace},
            type="Opaque",
            string_data={"api-key": self.vllm_api_key},
            opts=ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.register_outputs({})


@dataclass(frozen=True)
class KeysSecretArgs:
    """Keys handed to the roles of one namespace (a team stack: only that team's roles edit it)."""

    namespace: str
    name: str
    values: pulumi.Input[dict]  # {entry: key} (secret)
    after: tuple[pulumi.Resource, ...] = ()


class KeysSecret(pulumi.ComponentResource):
    """A Kubernetes Secret in the stack's own namespace: how a team stack, which creates no AWS
    resource, hands its keys to its team without a stack output."""

    def __init__(self, name: str, args: KeysSecretArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:KeysSecret", name, None, opts)
        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": args.name, "namespace": args.namespace},
            type="Opaque",
            string_data=pulumi.Output.secret(args.values),
            opts=ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.register_outputs({})
