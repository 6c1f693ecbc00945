"""The stack config: one pydantic model tree, validated once, offline, before any resource exists.

Two ways in, one validation:
- `load()` in a real run reads every `llm-serving:*` key from Pulumi config;
- `load_file(path)` reads a `Pulumi.<stack>.yaml`-format file (the plan CLI and tests).
Both end in `resolve(raw)`, which raises `ConfigError` with one line per problem:
`llm-serving:<key path>: <what> — <how to fix>`.

One job per module: `schema` (the pydantic models and their field checks), `load` (stack files, the
Pulumi runtime config, pydantic errors as problem lines), `resolve` (cross-checks, pool, architecture
and size resolution into a `StackIntent`); `errors` is the problem vocabulary they share.
"""
from stacks.config.errors import PROJECT, ConfigError, key
from stacks.config.load import load, load_file, namespace_problems, parse_stack_file, read_stack_document, resolve
from stacks.config.resolve import ResolvedModel, ResolvedPool, StackIntent, resolve_config
from stacks.config.schema import (AWS_REGION, CLUSTER_NAME_MAX, DEFAULT_MAX_MODEL_LEN, DEFAULT_MAX_NUM_SEQS,
                                  DEFAULT_POOLS, DNS1123, EKS_UNSUPPORTED_ZONE_IDS, FORBIDDEN_VLLM_FLAGS, HF_ID,
                                  LABEL_NAME, LABEL_PREFIX, LOG_RETENTION_DAYS, MANAGED_VLLM_FLAGS, MODEL_NAME_MAX,
                                  NAMESPACE_TYPO_DISTANCE, RESERVED_LABEL_DOMAINS, REVISION_REF, REVISION_SHA,
                                  SERVED_NAME, SUPPORTED_KUBERNETES, TEAM_NAME_MAX, TOP_LEVEL_KEYS, Architecture,
                                  AutoscalingConfig, ClusterConfig, DatabaseConfig, ExistingVpc, GatewayConfig,
                                  ModelConfig, NodePoolConfig, ObservabilityConfig, Replicas, StackConfig,
                                  SystemNodesConfig, TeamConfig, UiConfig, VpcConfig, covers_all_ipv4, dns_problem)

__all__ = [
    "PROJECT", "ConfigError", "key",
    "load", "load_file", "namespace_problems", "parse_stack_file", "read_stack_document", "resolve",
    "ResolvedModel", "ResolvedPool", "StackIntent", "resolve_config",
    "AWS_REGION", "CLUSTER_NAME_MAX", "DEFAULT_MAX_MODEL_LEN", "DEFAULT_MAX_NUM_SEQS", "DEFAULT_POOLS", "DNS1123",
    "EKS_UNSUPPORTED_ZONE_IDS", "FORBIDDEN_VLLM_FLAGS", "HF_ID", "LABEL_NAME", "LABEL_PREFIX", "LOG_RETENTION_DAYS",
    "MANAGED_VLLM_FLAGS", "MODEL_NAME_MAX", "NAMESPACE_TYPO_DISTANCE", "RESERVED_LABEL_DOMAINS", "REVISION_REF",
    "REVISION_SHA", "SERVED_NAME", "SUPPORTED_KUBERNETES", "TEAM_NAME_MAX", "TOP_LEVEL_KEYS",
    "Architecture", "AutoscalingConfig", "ClusterConfig", "DatabaseConfig", "ExistingVpc", "GatewayConfig",
    "ModelConfig", "NodePoolConfig", "ObservabilityConfig", "Replicas", "StackConfig", "SystemNodesConfig",
    "TeamConfig", "UiConfig", "VpcConfig", "covers_all_ipv4", "dns_problem",
]
