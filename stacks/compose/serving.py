"""Serving composition: namespaces, model cache, one vLLM server per model, the gateway, the UI."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi import ResourceOptions

from components.database import DatabaseArgs, GatewayDatabase
from components.frontdoor import READ_TIMEOUT_MARGIN_S, DoorLimits, Exposure, FrontDoorArgs, GatewayFrontDoor
from components.gateway_redis import GatewayCache, GatewayCacheArgs
from components.keda import ModelAutoscaler, ModelAutoscalerArgs
from components.litellm import RDS_CA_PATH, GatewayArgs, LiteLLMGateway, render_litellm_config
from components.model_cache import CacheItem, ModelCache, ModelCacheArgs
from components.namespaces import NamespacesArgs, ServingNamespaces
from components.serving_secrets import VLLM_KEY_SECRET, ServingKeys, ServingKeysArgs
from components.team_keys import KeyGrant, TeamKeys, TeamKeysArgs
from components.team_reconciler import DesiredTeam, ReconcilerArgs, TeamReconciler, key_alias
from components.types import (
    GATEWAY_PORT,
    SYSTEM_TAINT,
    VLLM_PORT,
    InstanceType,
    Route,
    ServerSpec,
    service_host,
)
from components.vllm import (
    HOME,
    HUB_CACHE,
    NEURON_ARTIFACTS_DIR,
    NEURON_COMPILE_CACHE_DIR,
    VLLM_CACHE_DIR,
    VllmServer,
    VllmServerArgs,
    ready_marker,
)
from components.webui import OpenWebUi, WebUiArgs
from stacks import catalog
from stacks.capacity import planner, scaling
from stacks.compose import cold, observability, routing, tenancy
from stacks.compose.platform import Platform
from stacks.config import ResolvedModel, StackIntent
from stacks.config.schema import WEBUI_KEY
from stacks.report import model_rows


def namespaces(intent: StackIntent) -> tuple[str, str]:
    """(models, gateway) namespaces: shared names on a platform stack, team-prefixed on a team stack."""
    return scaling.stack_namespaces(intent.config)


# vLLM keeps idle HTTP connections this much longer than the gateway pools them.
KEEPALIVE_MARGIN_S = 15


@dataclass
class Served:
    gateway_url: pulumi.Output
    model_names: list[str]
    endpoints: dict[str, str]
    key_locations: dict  # where the admin key and each team's keys are (stacks/compose/tenancy.py): no key


def plan_table(intent: StackIntent) -> list[dict]:
    return model_rows(intent)


def shutdown_timeout_seconds(m: ResolvedModel) -> int:
    """How long vLLM drains in-flight requests after SIGTERM: as long as the gateway lets one run.
    0 on Neuron: the Neuron image's vLLM 0.16 has no --shutdown-timeout (its parser rejects it)."""
    return 0 if m.kind == "neuron" else m.request_timeout_seconds


def vllm_args(m: ResolvedModel) -> list[str]:
    """The container args of one model server (the image's entrypoint is `vllm serve`)."""
    s = m.sizing
    args = [
        m.hf_id,
        "--served-model-name",
        m.served_name,
        "--host",
        "0.0.0.0",
        "--port",
        str(VLLM_PORT),
        "--tensor-parallel-size",
        str(s.tensor_parallel),
        "--max-model-len",
        str(s.max_model_len),
        "--max-num-seqs",
        str(s.max_num_seqs),
    ]
    if m.revision:
        args += ["--revision", m.revision]
    if m.kind == "neuron":
        args = [
            "vllm",
            "serve",
            *args,
            "--block-size",
            str(s.block_size),
            "--num-gpu-blocks-override",
            str(s.num_blocks),
        ]
    else:
        args += [
            "--max-num-batched-tokens",
            str(s.max_num_batched_tokens),
            "--gpu-memory-utilization",
            f"{s.utilization:.2f}",
            "--dtype",
            m.arch.dtype,
        ]
        if m.quantization:
            args += ["--quantization", m.quantization]
        if m.kv_cache_dtype != "auto":
            args += ["--kv-cache-dtype", m.kv_cache_dtype]
    if shutdown_timeout_seconds(m):
        args += ["--shutdown-timeout", str(shutdown_timeout_seconds(m))]
    if m.tool_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", m.tool_parser]
    if m.reasoning_parser:
        args += ["--reasoning-parser", m.reasoning_parser]
    if m.trust_remote_code:  # the model entry declares it (config.ModelConfig.trustRemoteCode)
        args.append("--trust-remote-code")
    return [*args, *m.extra_args]


def pod_resources(m: ResolvedModel) -> tuple[str, str, str, int]:
    """(cpu, memory, shm size, accelerator count): the pod's share of the instance, leaving room for
    the kubelet, system daemons and device-plugin pods."""
    inst, tp = m.sizing.instance, m.sizing.tensor_parallel
    devices = planner.accelerator_devices(inst, tp)  # Neuron: powers of two, or pods can stay Pending
    share = devices / inst.devices
    cpu = max(1, int(inst.vcpu * share) - (1 if share == 1 else 0))
    mem_gib = planner.pod_memory_gib(inst, tp)
    shm_gib = min(max(1, 2 * tp), mem_gib // 4)
    return str(cpu), f"{mem_gib}Gi", f"{shm_gib}Gi", devices


def server_spec(
    m: ResolvedModel, plat: Platform, gateway_idle_s: int, pool_instances: tuple[InstanceType, ...] = ()
) -> ServerSpec:
    v = catalog.versions()
    cpu, mem, shm, devices = pod_resources(m)
    budget = planner.startup_budget_seconds(m.arch, m.kind, m.quantization)
    env = [
        ("USER", "vllm"),
        ("HOME", HOME),
        ("HF_HOME", f"{HOME}/.cache/huggingface"),
        ("HF_HUB_CACHE", HUB_CACHE),
        ("HF_HUB_OFFLINE", "1"),
        ("VLLM_NO_USAGE_STATS", "1"),
        ("VLLM_CACHE_ROOT", VLLM_CACHE_DIR),
        ("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", str(gateway_idle_s + KEEPALIVE_MARGIN_S)),
        ("VLLM_ENGINE_READY_TIMEOUT_S", str(budget)),
    ]
    if m.kind == "neuron":
        # Compiled artifacts persist on EFS; the compiler's own cache is per-pod scratch (unverified
        # which other paths the inf2/trn1 DLC writes: /var/tmp is writable for its defaults).
        env += [
            ("NEURON_COMPILED_ARTIFACTS", NEURON_ARTIFACTS_DIR),
            ("NEURON_COMPILE_CACHE_URL", NEURON_COMPILE_CACHE_DIR),
        ]
    else:
        # vLLM 0.32 refuses a request whose `n` exceeds this (default 16384): one request may not ask
        # for more parallel sequences than the server runs at once (0.16 on Neuron has no such knob).
        env += [("VLLM_MAX_N_SEQUENCES", str(m.sizing.max_num_seqs))]
    return ServerSpec(
        name=m.name,
        served_name=m.served_name,
        hf_id=m.hf_id,
        revision=m.revision,
        kind=m.kind,
        image=v.image("vllm-neuron" if m.kind == "neuron" else "vllm"),
        args=tuple(vllm_args(m)),
        env=tuple(env),
        pool=m.pool,
        instance_type=m.sizing.instance.name,
        tensor_parallel=m.sizing.tensor_parallel,
        accelerator_count=devices,
        cpu=cpu,
        memory=mem,
        shm_size=shm,
        replicas=m.replicas_min,
        startup_budget_seconds=budget,
        scheduler_name=plat.neuron_scheduler if m.kind == "neuron" else None,
        max_model_len=m.sizing.max_model_len,
        request_timeout_seconds=m.request_timeout_seconds,
        instance_types=tuple(
            planner.fitting_instance_types(
                m.sizing.instance, m.sizing.tensor_parallel, int(cpu), int(mem.removesuffix("Gi")), pool_instances
            )
        ),
        weights_wait_seconds=planner.download_deadline_seconds(m.arch) + planner.WEIGHTS_WAIT_MARGIN_S,
        shutdown_timeout_seconds=shutdown_timeout_seconds(m),
    )


def routes(intent: StackIntent) -> list[Route]:
    models_ns = namespaces(intent)[0]
    return [
        Route(
            model_name=m.served_name,
            served_name=m.served_name,
            service_host=routing.upstream(intent, name, models_ns)[0],
            port=routing.upstream(intent, name, models_ns)[1],
            timeout_seconds=m.request_timeout_seconds,
            max_input_tokens=m.sizing.max_model_len,
        )
        for name, m in intent.models.items()
    ]


def key_grants(intent: StackIntent) -> tuple[KeyGrant, ...]:
    """One grant per team key (gateway.teams), plus Open WebUI's own key when the UI is on."""
    cfg = intent.config
    served = {name: m.served_name for name, m in intent.models.items()}
    grants = [
        KeyGrant(k, team, tuple(served[m] for m in t.allowedModels), t.rpmLimit, t.tpmLimit, t.maxParallelRequests)
        for team, t in cfg.gateway.teams.items()
        for k in t.keys
    ]
    if cfg.ui.enabled:
        everything = tuple(served.values())
        grants.append(KeyGrant(WEBUI_KEY, WEBUI_KEY, everything, cfg.ui.rpmLimit, None, cfg.ui.maxParallelRequests))
    return tuple(grants)


def shared_limits(intent: StackIntent) -> bool:
    """A Redis for rate-limit counters shared by the gateway replicas (always 2 or more): when a team
    has limits, on a platform stack (team stacks create no AWS resources; they warn instead)."""
    cfg = intent.config
    return cfg.platformStack is None and any(t.limited for t in cfg.gateway.teams.values())


def gateway_cache(intent: StackIntent, plat: Platform, auth_token: pulumi.Output) -> GatewayCache:
    return GatewayCache(
        "gateway-cache",
        GatewayCacheArgs(
            cluster_name=intent.cluster_name,
            vpc_id=plat.vpc_id,
            subnet_ids=plat.private_subnet_ids,
            client_security_group_id=plat.node_security_group_id,
            engine_version=catalog.versions().redis_engine_version,
            auth_token=auth_token,
            kms_key_arn=plat.data_key_arn,
        ),
    )


def desired_teams(intent: StackIntent) -> tuple[DesiredTeam, ...]:
    """The teams the database reconciler keeps in LiteLLM, from `gateway.teams` (name -> allowed
    models (config keys, routed by served name), per-key limits, optional budget, key names). No
    teams: the Job only removes teams it created earlier."""
    teams = intent.config.gateway.teams
    served = {name: m.served_name for name, m in intent.models.items()}
    return tuple(
        DesiredTeam(
            name=name,
            models=tuple(served[m] for m in t.allowedModels),
            rpm=t.rpmLimit,
            tpm=t.tpmLimit,
            max_parallel=t.maxParallelRequests,
            max_budget=t.maxBudget,
            budget_duration=t.budgetDuration,
            keys=tuple(t.keys),
        )
        for name, t in sorted(teams.items())
    )


def team_key_values(teams: tuple[DesiredTeam, ...], keys: dict[str, pulumi.Output[str]]) -> pulumi.Output | None:
    """{"<team>/<key>": value} of the Pulumi-generated team keys (secret), for the reconciler's
    Secret; `keys` is key name -> key (TeamKeys.keys). None when there is no key."""
    pairs = [(key_alias(t.name, k), keys[k]) for t in teams for k in t.keys]
    if not pairs:
        return None
    return pulumi.Output.secret(
        pulumi.Output.all(*[v for _, v in pairs]).apply(lambda vs: {a: v for (a, _), v in zip(pairs, vs, strict=True)})
    )


def exposure(intent: StackIntent, plat: Platform) -> Exposure:
    g = intent.config.gateway
    return Exposure(
        internal=g.internalLoadBalancer,
        certificate_arn=g.tls.certificateArn if g.tls else None,
        ssl_policy=g.tls.sslPolicy if g.tls else None,
        source_ranges=tuple(g.sourceRanges),
        plain_port=GATEWAY_PORT,
        subnet_ids=nlb_subnets(intent, plat),
    )


def nlb_subnets(intent: StackIntent, plat: Platform) -> pulumi.Input[list[str]] | None:
    """Where the front door's NLB goes: an internal one in the cluster's private subnets (a team
    stack's are the platform's); an internet-facing one in an existing VPC's public subnets. The
    program's own VPC tags its public subnets for the controller, so those need no list."""
    existing = intent.config.cluster.vpc.existing
    if intent.config.gateway.internalLoadBalancer:
        return plat.private_subnet_ids
    return list(existing.publicSubnetIds) if existing is not None else None


def frontdoor_read_timeout(rs: list[Route]) -> int:
    """The longest a request may take in LiteLLM (the slowest route, tried 1 + num_retries times) plus
    a margin, so LiteLLM's timeout answers before the front door gives up."""
    settings = render_litellm_config(rs, database=False)["litellm_settings"]
    return settings["request_timeout"] * (1 + settings["num_retries"]) + READ_TIMEOUT_MARGIN_S


@dataclass(frozen=True)
class Scope:
    """What every serving step shares: where things go, what they wait for, how they are deployed."""

    models_ns: str
    gateway_ns: str
    # The namespaces (with their policies and quotas): everything in them waits for these.
    ns_ready: tuple[pulumi.Resource, ...]
    kopts: ResourceOptions
    versions: catalog.Versions


@dataclass(frozen=True)
class Gateway:
    """The LiteLLM gateway and the team keys it serves (None when no key is granted)."""

    litellm: LiteLLMGateway
    team_keys: TeamKeys | None


def build(intent: StackIntent, plat: Platform) -> Served:
    """Serving in deploy order: namespaces, secrets, model cache, model servers (and their
    autoscalers), database, gateway, front door, team reconciler, UI, observability."""
    scope = serving_namespaces(intent, plat)
    keys = serving_keys(intent, scope)
    specs = {
        name: server_spec(m, plat, intent.config.gateway.idleConnectionSeconds, intent.pools[m.pool].instances)
        for name, m in intent.models.items()
    }
    # the router's worker flags first: the compile cache's key hashes the final arguments
    specs = routing.with_worker_args(intent, specs)
    specs = {name: cold.server_spec(intent, name, s) for name, s in specs.items()}
    model_cache(intent, plat, scope, specs)
    readers = warm_path(intent, plat, scope, specs)
    endpoints = model_servers(intent, plat, scope, keys, specs, readers)
    routing.build(
        intent, specs, (scope.models_ns, scope.gateway_ns), (*scope.ns_ready, *plat.system_ready), scope.kopts
    )
    db_url = gateway_database(intent, plat, scope, keys)
    gateway = litellm_gateway(intent, plat, scope, keys, db_url)
    front = front_door(intent, plat, scope, gateway.litellm)
    team_reconciler(intent, scope, gateway)
    web_ui(intent, plat, scope, keys, gateway)
    after = (*scope.ns_ready, *plat.system_ready)
    observability.build(intent, plat, specs, (scope.models_ns, scope.gateway_ns), after, scope.kopts)
    where = tenancy.deliver(
        intent, plat.data_key_arn, scope.gateway_ns, keys.master_key, gateway.team_keys, after, scope.kopts
    )
    return Served(
        gateway_url=front.url,
        model_names=[m.served_name for m in intent.models.values()],
        endpoints=endpoints,
        key_locations=where,
    )


def serving_namespaces(intent: StackIntent, plat: Platform) -> Scope:
    """The models and gateway namespaces, their network policies and (team stacks) quota."""
    cfg = intent.config
    kopts = ResourceOptions(providers={"kubernetes": plat.k8s})
    models_ns, gateway_ns = namespaces(intent)
    ns = ServingNamespaces(
        "serving",
        NamespacesArgs(
            models_ns=models_ns,
            gateway_ns=gateway_ns,
            vpc_cidr=plat.vpc_cidr,
            database=cfg.gateway.database.enabled,
            redis=shared_limits(intent),
            accelerator_quota=cfg.team.maxAccelerators if cfg.team else None,
        ),
        opts=kopts,
    )
    return Scope(models_ns, gateway_ns, tuple(ns.namespaces.values()), kopts, catalog.versions())


def serving_keys(intent: StackIntent, scope: Scope) -> ServingKeys:
    """The generated secrets: vLLM's API key, the gateway's keys, and those the options need."""
    cfg = intent.config
    return ServingKeys(
        "keys",
        ServingKeysArgs(
            models_namespace=scope.models_ns,
            database_password=cfg.gateway.database.enabled,
            webui_secret=cfg.ui.enabled,
            redis_auth_token=shared_limits(intent),
            after=scope.ns_ready,
        ),
        opts=scope.kopts,
    )


def model_cache(intent: StackIntent, plat: Platform, scope: Scope, specs: dict[str, ServerSpec]) -> None:
    """The EFS volume the weights download to, once, before any server starts (none without models)."""
    if not specs:
        return
    v, cfg = scope.versions, intent.config
    items = tuple(
        CacheItem(
            name=s.name,
            hf_id=s.hf_id,
            revision=s.revision,
            gated=intent.models[n].arch.gated,
            marker=ready_marker(s.hf_id, s.revision),
            deadline_seconds=planner.download_deadline_seconds(intent.models[n].arch),
        )
        for n, s in specs.items()
    )
    ModelCache(
        "model-cache",
        ModelCacheArgs(
            namespace=scope.models_ns,
            storage_class=plat.storage.efs_storage_class,
            image=v.image("hf-downloader"),
            items=items,
            hf_token=pulumi.Output.secret(cfg.hfToken.get_secret_value()) if cfg.hfToken else None,
            system_toleration=SYSTEM_TAINT,
            after=(*scope.ns_ready, *plat.storage.ready),
        ),
        opts=scope.kopts,
    )


def warm_path(
    intent: StackIntent, plat: Platform, scope: Scope, specs: dict[str, ServerSpec]
) -> dict[str, pulumi.Resource]:
    """Weights copied to S3 (models with weights.source) and the warm compile-cache Jobs (compileCache);
    model name -> the S3 read access its pods must find in place when they are created."""
    after = (*scope.ns_ready, *plat.storage.ready)
    sync = cold.weights_sync(
        intent,
        specs,
        namespace=scope.models_ns,
        cluster_name=plat.cluster_name,
        kms_key_arn=plat.data_key_arn,
        cache_claim=ModelCache.claim_name,
        after=after,
        opts=scope.kopts,
    )
    readers = sync.readers if sync is not None else {}
    warm = (*after, *plat.ready, *readers.values())
    cold.compile_cache(
        specs,
        namespace=scope.models_ns,
        cache_claim=ModelCache.claim_name,
        api_key_secret=VLLM_KEY_SECRET,
        after=warm,
        opts=scope.kopts,
    )
    return readers


def model_servers(
    intent: StackIntent,
    plat: Platform,
    scope: Scope,
    keys: ServingKeys,
    specs: dict[str, ServerSpec],
    readers: dict[str, pulumi.Resource],
) -> dict[str, str]:
    """One vLLM server per model, each with its autoscaler when autoscaling is on; served name -> URL."""
    cfg = intent.config
    autoscaled = cfg.autoscaling.enabled
    endpoints = {}
    for name, spec in specs.items():
        server = VllmServer(
            f"vllm-{name}",
            VllmServerArgs(
                spec=spec,
                namespace=scope.models_ns,
                cache_claim=ModelCache.claim_name,
                api_key_secret=VLLM_KEY_SECRET,
                after=(*scope.ns_ready, keys.vllm_secret, *plat.ready, *((readers[name],) if name in readers else ())),
                autoscaled_max=intent.models[name].replicas_max if autoscaled else None,
            ),
            opts=scope.kopts,
        )
        if autoscaled:
            ModelAutoscaler(
                f"scale-{name}",
                ModelAutoscalerArgs(
                    spec=scaling.scaling_spec(cfg, intent.models[name]),
                    namespace=scope.models_ns,
                    deployment=server.deployment_name,
                    keda=plat.keda,
                    after=scope.ns_ready,
                ),
                opts=scope.kopts,
            )
        endpoints[spec.served_name] = f"http://{server.service_host}:{VLLM_PORT}/v1"
    return endpoints


def gateway_database(intent: StackIntent, plat: Platform, scope: Scope, keys: ServingKeys) -> pulumi.Output | None:
    """The gateway's Postgres when `gateway.database` is on; its URL (secret), else None."""
    cfg = intent.config
    if not cfg.gateway.database.enabled:
        return None
    d = cfg.gateway.database
    assert keys.database_password is not None, "ServingKeys makes the database password when the database is on"
    db = GatewayDatabase(
        "gateway-db",
        DatabaseArgs(
            cluster_name=intent.cluster_name,
            vpc_id=plat.vpc_id,
            subnet_ids=plat.private_subnet_ids,
            client_security_group_id=plat.node_security_group_id,
            engine_version=scope.versions.postgres_engine_version,
            instance_class=d.instanceClass,
            allocated_storage_gib=d.allocatedStorageGiB,
            multi_az=d.multiAz,
            password=keys.database_password,
            ca_bundle_path=RDS_CA_PATH,
            kms_key_arn=plat.data_key_arn,
            log_retention_days=cfg.cluster.logRetentionDays,
            logs_key_arn=plat.logs_key_arn,
        ),
        opts=pulumi.ResourceOptions(protect=cfg.cluster.protectData),
    )
    return db.url


def litellm_gateway(
    intent: StackIntent, plat: Platform, scope: Scope, keys: ServingKeys, db_url: pulumi.Output | None
) -> Gateway:
    """The team keys, the shared rate-limit Redis (when a team has limits) and LiteLLM itself."""
    cfg = intent.config
    grants = key_grants(intent)
    scraped = cfg.observability.enabled  # the scraper gets its own /metrics-only key
    team_keys = TeamKeys("team-keys", TeamKeysArgs(grants, metrics_key=scraped)) if grants or scraped else None
    cache = gateway_cache(intent, plat, keys.redis_auth_token) if keys.redis_auth_token is not None else None
    autoscaled = cfg.autoscaling.enabled
    gateway = LiteLLMGateway(
        "gateway",
        GatewayArgs(
            namespace=scope.gateway_ns,
            image=scope.versions.images["litellm"],
            routes=tuple(routes(intent)),
            replicas=cfg.gateway.replicas,
            master_key=keys.master_key,
            salt_key=keys.salt_key,
            vllm_api_key=keys.vllm_api_key,
            system_taint=SYSTEM_TAINT,
            database_url=db_url,
            database_ca_bundle=catalog.rds_ca_bundle() if cfg.gateway.database.enabled else None,
            after=(*scope.ns_ready, *plat.system_ready),
            max_replicas=cfg.autoscaling.gatewayMaxReplicas if autoscaled else None,
            cpu_utilization_percent=cfg.autoscaling.gatewayCpuPercent,
            key_table=team_keys.table if team_keys else None,
            redis_host=cache.host if cache else None,
            redis_password=keys.redis_auth_token,
            metrics_key=team_keys.metrics_key if team_keys else None,
        ),
        opts=scope.kopts,
    )
    return Gateway(gateway, team_keys)


def door_limits(intent: StackIntent) -> DoorLimits:
    d = intent.config.gateway.frontDoor
    return DoorLimits(d.maxBodyMiB, d.ratePerSecond, d.burst, d.maxConnections)


def front_door(intent: StackIntent, plat: Platform, scope: Scope, gateway: LiteLLMGateway) -> GatewayFrontDoor:
    cfg = intent.config
    return GatewayFrontDoor(
        "gateway-frontdoor",
        FrontDoorArgs(
            namespace=scope.gateway_ns,
            image=scope.versions.images["nginx-frontdoor"],
            upstream=f"{service_host('litellm', scope.gateway_ns)}:{GATEWAY_PORT}",
            replicas=cfg.gateway.replicas,
            read_timeout_seconds=frontdoor_read_timeout(routes(intent)),
            system_taint=SYSTEM_TAINT,
            exposure=exposure(intent, plat),
            in_cluster_url=gateway.in_cluster_url,
            limits=door_limits(intent),
            # The door's readiness probe is proxied to LiteLLM, and nginx resolves the LiteLLM Service at
            # start: created before LiteLLM is ready (a database stack waits for RDS first), the awaited
            # door would time out and fail the first `pulumi up`.
            after=(*scope.ns_ready, *plat.system_ready, gateway),
        ),
        opts=scope.kopts,
    )


def team_reconciler(intent: StackIntent, scope: Scope, gateway: Gateway) -> None:
    """The Job that keeps LiteLLM's teams as configured; it needs the database."""
    if not intent.config.gateway.database.enabled:
        return
    teams = desired_teams(intent)
    TeamReconciler(
        "teams",
        ReconcilerArgs(
            namespace=scope.gateway_ns,
            image=scope.versions.images["reconciler"],
            gateway_url=gateway.litellm.in_cluster_url,
            master_key_secret=("litellm", "master-key"),
            teams=teams,
            system_taint=SYSTEM_TAINT,
            key_values=team_key_values(teams, gateway.team_keys.keys if gateway.team_keys else {}),
            after=(gateway.litellm,),
        ),
        opts=scope.kopts,
    )


def web_ui(intent: StackIntent, plat: Platform, scope: Scope, keys: ServingKeys, gateway: Gateway) -> None:
    """Open WebUI when `ui.enabled`, chatting through the gateway with its own key."""
    if not intent.config.ui.enabled:
        return
    assert keys.webui_secret is not None, "ServingKeys makes the Open WebUI secret when the UI is on"
    assert gateway.team_keys is not None, "key_grants gives Open WebUI its own key when the UI is on"
    OpenWebUi(
        "webui",
        WebUiArgs(
            namespace=scope.gateway_ns,
            image=scope.versions.images["open-webui"],
            gateway_url=gateway.litellm.in_cluster_url,
            api_key=gateway.team_keys.keys[WEBUI_KEY],
            secret_key=keys.webui_secret,
            storage_class=plat.storage.ebs_storage_class,
            system_taint=SYSTEM_TAINT,
            allow_signup=intent.config.ui.allowSignup,
            after=(*scope.ns_ready, *plat.system_ready, *plat.storage.ready),  # the add-on outlives the claim
        ),
        opts=scope.kopts,
    )
