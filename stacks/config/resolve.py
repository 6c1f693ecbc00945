"""Cross-checks and resolution: a validated `StackConfig` becomes a `StackIntent` (pools, models with
their architecture, instance, tensor parallelism and sizing), or a `ConfigError` listing every problem."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

from components.drivers import GPU_OPERATOR_NAMESPACE
from components.karpenter import CONTROLLER_ROLE_PREFIX as KARPENTER_CONTROLLER_ROLE
from components.karpenter import NAMESPACE as KARPENTER_NAMESPACE
from components.keda import KEDA_NAMESPACE
from components.model_cache import SERVICE_ACCOUNT
from components.types import (
    GATEWAY_NS,
    IAM_NAME_MAX,
    MODELS_NS,
    AcceleratorKind,
    InstanceType,
    ModelArch,
    global_name,
)
from stacks import catalog
from stacks.capacity import planner
from stacks.config import vllm_flags, weights
from stacks.config.errors import PROJECT, ConfigError, key
from stacks.config.schema import (
    ACM_CERTIFICATE_ARN,
    CLUSTER_NAME_MAX,
    DEFAULT_MAX_MODEL_LEN,
    DEFAULT_MAX_NUM_SEQS,
    DEFAULT_POOLS,
    MODEL_NAME_MAX,
    REVISION_SHA,
    SUPPORTED_KUBERNETES,
    WEBUI_KEY,
    ModelConfig,
    NodePoolConfig,
    StackConfig,
    TeamConfig,
    dns_problem,
    team_namespaces,
)

# ---- resolved intent (what the stack layer consumes) -----------------------------------------


def _default_families(kind: AcceleratorKind) -> list[str]:
    families = DEFAULT_POOLS[kind][1].families
    assert families is not None, "every default pool in DEFAULT_POOLS lists its families"
    return families


@dataclass(frozen=True)
class ResolvedPool:
    name: str
    spec: NodePoolConfig
    instances: tuple[InstanceType, ...]

    @property
    def families(self) -> list[str]:
        assert self.spec.families is not None, "resolution fills in the families of every pool"
        return self.spec.families


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    served_name: str
    hf_id: str
    revision: str | None
    arch: ModelArch
    kind: Literal["nvidia", "neuron"]
    pool: str
    sizing: planner.Sizing
    quantization: str | None
    kv_cache_dtype: str
    tool_parser: str | None
    reasoning_parser: str | None
    replicas_min: int
    replicas_max: int
    extra_args: tuple[str, ...]
    request_timeout_seconds: int
    warnings: tuple[str, ...]
    trust_remote_code: bool = False

    @property
    def hourly_usd(self) -> tuple[float, float]:
        return planner.hourly_usd(self.sizing.instance, self.replicas_min, self.replicas_max)


@dataclass(frozen=True)
class StackIntent:
    stack: str
    region: str
    cluster_name: str
    kubernetes_version: str
    config: StackConfig
    pools: dict[str, ResolvedPool]
    models: dict[str, ResolvedModel]
    warnings: tuple[str, ...] = ()  # stack-level (per-model ones are on ResolvedModel)

    @property
    def hourly_usd(self) -> tuple[float, float]:
        lo = sum(m.hourly_usd[0] for m in self.models.values())
        hi = sum(m.hourly_usd[1] for m in self.models.values())
        return round(lo, 4), round(hi, 4)

    @property
    def is_team_stack(self) -> bool:
        return self.config.platformStack is not None


# ---- cross-checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ask:
    """One model's request as the sizing checks see it: its config, architecture, named instance (if any),
    pool and the extraArgs flags in use, with the values derived from them."""

    path: tuple
    m: ModelConfig
    arch: ModelArch
    inst: InstanceType | None
    pool: ResolvedPool
    used: tuple[vllm_flags.Used, ...]

    @property
    def kind(self) -> AcceleratorKind:
        return self.pool.spec.accelerator

    @property
    def max_len(self) -> int:
        return self.m.maxModelLen or min(self.arch.max_positions, DEFAULT_MAX_MODEL_LEN)

    @property
    def seqs(self) -> int:
        return self.m.maxNumSeqs or DEFAULT_MAX_NUM_SEQS

    @property
    def quant(self) -> str | None:
        return self.m.quantization if self.m.quantization is not None else self.arch.quantization

    @property
    def revision(self) -> str | None:
        return self.m.revision or self.arch.revision

    @property
    def kw(self) -> dict:
        """The planner's sizing options."""
        m = self.m
        return {
            "batched_tokens": m.maxNumBatchedTokens,
            "utilization": m.gpuMemoryUtilization,
            "kv_cache_dtype": m.kvCacheDtype,
            "quantization": self.quant,
        }


def resolve_config(cfg: StackConfig, *, stack: str, region: str) -> StackIntent:
    """The cross-checks over a schema-valid config; ConfigError with every problem found."""
    return _Resolver(cfg, stack, region).run()


class _Resolver:
    def __init__(self, cfg: StackConfig, stack: str, region: str):
        self.cfg, self.stack, self.region = cfg, stack, region
        self.problems: list[str] = []
        self.instances = catalog.instances()
        self.presets = catalog.models()

    def err(self, path: tuple, what: str, fix: str) -> None:
        self.problems.append(f"{key(*path)}: {what} — {fix}")

    def run(self) -> StackIntent:
        cfg = self.cfg
        versions = catalog.versions()
        cluster_name = cfg.cluster.name or _dns_safe(f"llm-{self.stack}")
        pools = self._declared_pools()
        models: dict[str, ResolvedModel] = {}
        for name, m in cfg.models.items():
            r = self._model(name, m, pools)
            if r is not None:
                models[name] = r
        self._duplicates(models)
        self._reserved_names()
        self._capacity(models, pools)
        self._kubernetes_version(versions.kubernetes)
        self._derived_name_lengths(cluster_name)
        self._stack_kind()
        self._team_stack_scope()
        self._inert_targets(models)
        if cfg.platformStack is not None and not re.fullmatch(r"[\w.-]+/[\w.-]+/[\w.-]+", cfg.platformStack, re.ASCII):
            self.err(
                ("platformStack",),
                f"{cfg.platformStack!r} is not a fully qualified stack name",
                "write it as <organization>/llm-serving/<stack>"
                " (self-managed backends: organization/llm-serving/<stack>)",
            )
        self._observability(models)
        self._object_names()
        from stacks.capacity import gateway_sizing, scaling, spot

        for path, what, fix in scaling.problems(cfg) + gateway_sizing.problems(cfg):
            self.err(path, what, fix)
        for path, what, fix in spot.problems(cfg, models, pools):
            self.err(path, what, fix)
        warnings = self._cluster_checks() + self._teams() + self._unpriced()
        self._gateway_exposure()
        self._team_access()
        if self.problems:
            raise ConfigError(self.problems)
        # Only pools some model uses, or the config names explicitly, exist.
        used = {m.pool for m in models.values()}
        pools = {n: p for n, p in pools.items() if n in used or n in cfg.nodePools}
        return StackIntent(
            stack=self.stack,
            region=self.region,
            cluster_name=cluster_name,
            kubernetes_version=cfg.cluster.kubernetesVersion or versions.kubernetes,
            config=cfg,
            pools=dict(sorted(pools.items())),
            models=models,
            warnings=tuple(warnings),
        )

    def _stack_kind(self) -> None:
        """A team stack names both its team and its platform stack; half of that is the platform's
        own objects (namespaces `models`, `gateway`) claimed by a second stack."""
        cfg = self.cfg
        if cfg.team is not None and cfg.platformStack is None:
            self.err(
                ("team",),
                "a team stack needs the platform stack it attaches to",
                "set llm-serving:platformStack to organization/llm-serving/<platform stack>",
            )
        if cfg.platformStack is not None and cfg.team is None:
            self.err(
                ("platformStack",),
                "a stack that attaches to a platform stack is a team stack and needs team: (without it, it "
                "would render the platform's own namespaces and gateway)",
                "add llm-serving:team: {name: <team>}, or remove platformStack on the platform stack",
            )

    def _team_stack_scope(self) -> None:
        """A team stack creates Kubernetes objects in its own namespaces only: no AWS resources (the
        gateway database is RDS, a secret, a security group and a role) and no cluster settings, which
        the platform stack owns and a team stack would silently ignore."""
        if self.cfg.platformStack is None:
            return
        if self.cfg.gateway.database.enabled:
            self.err(
                ("gateway", "database", "enabled"),
                "a team stack creates no AWS resources, and the gateway database is RDS with its secret, "
                "security group and role",
                "remove gateway.database from the team stack (budgets need the platform's gateway)",
            )
        # budget and teamAccess have their own, more specific lines (_cluster_checks, _team_access)
        ignored = sorted(self.cfg.cluster.model_fields_set - {"budget", "teamAccess"})
        if ignored:
            self.err(
                ("cluster",),
                f"{', '.join(ignored)} {'is a platform setting' if len(ignored) == 1 else 'are platform settings'}; "
                "a team stack uses the platform stack's cluster and would ignore them",
                "set them on the platform stack and remove cluster: from the team stack",
            )

    def _inert_targets(self, models: dict[str, ResolvedModel]) -> None:
        """A running-requests target above what a replica can run never triggers a scale-up."""
        if not self.cfg.autoscaling.enabled:
            return
        for name, m in models.items():
            target = self.cfg.models[name].replicas.targetRunning
            seqs = m.sizing.max_num_seqs
            if target is not None and target > seqs:
                self.err(
                    ("models", name, "replicas", "targetRunning"),
                    f"{target} running requests per replica never happens: a replica runs at most "
                    f"maxNumSeqs {seqs} at once, so the autoscaler would never add one",
                    f"use at most {seqs} (or raise maxNumSeqs)",
                )

    def _object_names(self) -> None:
        """Two Kubernetes objects of one kind, namespace and name: the second fails at `up` (AlreadyExists)
        and the plan keeps one. Model keys name a model's own objects; the fixed names are the program's."""
        fixed = {SERVICE_ACCOUNT: "the model cache's ServiceAccount"}
        for name in self.cfg.models:
            if name in fixed:
                self.err(
                    ("models", name),
                    f"the model name {name!r} is taken by {fixed[name]} in the models namespace",
                    "rename the model; set servedName: to keep the name clients use",
                )
        team = self.cfg.team
        created = {MODELS_NS, GATEWAY_NS, KEDA_NAMESPACE, GPU_OPERATOR_NAMESPACE, KARPENTER_NAMESPACE}
        if team is not None:
            created |= set(team_namespaces(team.name))
        # A team's namespaces (its roles edit them) and Kubernetes' own: never where the scraper's
        # configuration and its credentials live.
        for t in self.cfg.cluster.teamAccess:
            created |= set(team_namespaces(t))
        created |= {"default", "kube-system", "kube-public", "kube-node-lease"}
        ns = self.cfg.observability.namespace
        if self.cfg.observability.enabled and ns in created:
            self.err(
                ("observability", "namespace"),
                f"{ns!r} is a namespace the program creates or owns for serving, not a monitoring namespace",
                "use monitoring (the default) or your Prometheus's own namespace",
            )

    def _observability(self, models: dict[str, ResolvedModel]) -> None:
        o = self.cfg.observability
        if o.prometheusUrl is not None and not o.enabled:
            self.err(
                ("observability", "prometheusUrl"),
                "is set but observability.enabled is false, so nothing would use it",
                "set observability.enabled: true, or remove prometheusUrl",
            )
        for name in o.ttftP95SecondsByModel:
            if name not in self.cfg.models:
                self.err(
                    ("observability", "ttftP95SecondsByModel", name),
                    f"no model named {name!r} in this stack",
                    f"use one of the models' keys: {', '.join(sorted(self.cfg.models)) or '(none)'}",
                )

    def _cluster_checks(self) -> list[str]:
        """Endpoint reachability (review D2) and VPC/AZ choices; returns stack-level warnings."""
        c = self.cfg.cluster
        warnings: list[str] = []
        if c.deployFromVpc and c.vpc.existing is None:
            self.err(
                ("cluster", "deployFromVpc"),
                "only an existing VPC can hold the machine that runs `pulumi up` "
                "(this program creates the VPC during that same run)",
                "set cluster.vpc.existing, or drop deployFromVpc and keep endpointPublicAccess: true",
            )
        if not c.endpointPublicAccess and not c.deployFromVpc:
            self.err(
                ("cluster", "endpointPublicAccess"),
                "a private-only API endpoint is unreachable from the machine "
                "running `pulumi up`, so every Kubernetes object would time out",
                "keep endpointPublicAccess: true with publicAccessCidrs, or deploy from inside an existing VPC "
                "(cluster.vpc.existing + cluster.deployFromVpc: true)",
            )
        if self.cfg.platformStack is None and c.endpointPublicAccess and not c.publicAccessCidrs:
            warnings.append(
                f"{key('cluster', 'publicAccessCidrs')}: the public API endpoint is open to the whole "
                "internet (IAM-authenticated) — set it to your office/VPN/CI CIDRs, e.g. [203.0.113.7/32]"
            )
        if not c.endpointPublicAccess and c.publicAccessCidrs:
            self.err(
                ("cluster", "publicAccessCidrs"),
                "has no effect with endpointPublicAccess: false",
                "remove publicAccessCidrs or turn the public endpoint on",
            )
        zones = c.vpc.availabilityZones or []
        foreign = [z for z in zones if not re.fullmatch(re.escape(self.region) + r"[a-z]", z)]
        if foreign:
            self.err(
                ("cluster", "vpc", "availabilityZones"),
                f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not availability zones of {self.region}",
                f"use zone names like {self.region}a (Local/Wavelength Zones cannot host EKS subnets)",
            )
        if zones and c.vpc.existing is not None:
            self.err(
                ("cluster", "vpc", "availabilityZones"),
                "the zones of an existing VPC are its subnets' zones",
                "remove availabilityZones, or drop vpc.existing",
            )
        if c.budget is not None and self.cfg.platformStack is not None:
            self.err(
                ("cluster", "budget"),
                "a team stack creates no AWS resources, so no budget either",
                "set cluster.budget on the platform stack",
            )
        return warnings

    def _gateway_exposure(self) -> None:
        """TLS certificate in this region; an internet-facing gateway only with TLS and source ranges."""
        g = self.cfg.gateway
        if g.tls is not None:
            cert = ACM_CERTIFICATE_ARN.fullmatch(g.tls.certificateArn)
            cert_region = cert.group(2) if cert else None
            if cert_region != self.region:
                self.err(
                    ("gateway", "tls", "certificateArn"),
                    f"the certificate is in {cert_region}, the stack in {self.region}; a load balancer "
                    "uses certificates of its own region only",
                    f"request or import the certificate in ACM in {self.region} and use that ARN",
                )
        existing = self.cfg.cluster.vpc.existing
        if not g.internalLoadBalancer and existing is not None and not existing.publicSubnetIds:
            self.err(
                ("cluster", "vpc", "existing", "publicSubnetIds"),
                "an internet-facing gateway in an existing VPC needs its public subnets named (the load "
                "balancer goes there, not into whichever subnets the controller's tag rules find)",
                "list one public subnet per AZ (routed to an internet gateway), "
                "or keep gateway.internalLoadBalancer: true",
            )
        if not g.internalLoadBalancer:
            unset = {"gateway.tls.certificateArn": g.tls is None, "gateway.sourceRanges": not g.sourceRanges}
            missing = [k for k, is_unset in unset.items() if is_unset]
            if missing:
                self.err(
                    ("gateway", "internalLoadBalancer"),
                    f"an internet-facing gateway needs TLS and source ranges; {' and '.join(missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} not set",
                    f"set gateway.tls.certificateArn (an ACM certificate in {self.region}) and "
                    "gateway.sourceRanges (your clients' CIDRs), or keep internalLoadBalancer: true",
                )

    def _team_access(self) -> None:
        """Team access entries: on the platform stack; one access entry per role per cluster."""
        c = self.cfg.cluster
        if c.teamAccess and self.cfg.platformStack is not None:
            self.err(
                ("cluster", "teamAccess"),
                "a team stack cannot grant cluster access (it would grant itself whatever it liked)",
                "list the team's roles under cluster.teamAccess on the platform stack",
            )
        seen: dict[str, str] = dict.fromkeys(c.adminRoleArns, "cluster.adminRoleArns")
        for team, t in c.teamAccess.items():
            for arn in t.principalArns:
                if arn in seen:
                    self.err(
                        ("cluster", "teamAccess", team, "principalArns"),
                        f"{arn} is also in {seen[arn]}; EKS allows one access entry per role and cluster",
                        "give each role to one team (or keep it admin only)",
                    )
                seen.setdefault(arn, f"cluster.teamAccess.{team}")

    def _declared_pools(self) -> dict[str, ResolvedPool]:
        pools: dict[str, ResolvedPool] = {}
        for name, p in self.cfg.nodePools.items():
            path = ("nodePools", name)
            problem = dns_problem(name, "pool name")
            if problem:
                self.err(path, *problem)
                continue
            fams = p.families or _default_families(p.accelerator)
            known = catalog.families(p.accelerator)
            bad = [f for f in fams if f not in known]
            if bad:
                other = [f for f in bad if f in catalog.families()]
                why = (
                    f"{', '.join(other)} {'is' if len(other) == 1 else 'are'} not {p.accelerator} families"
                    if other
                    else f"unknown instance families {', '.join(bad)}"
                )
                self.err(path + ("families",), why, f"use {p.accelerator} families: {', '.join(known)}")
                continue
            insts = tuple(i for i in self.instances.values() if i.family in fams)
            pools[name] = ResolvedPool(name, p.model_copy(update={"families": list(fams)}), insts)
        return pools

    def _pool_for(self, name: str, m: ModelConfig, kind: AcceleratorKind | None, pools: dict[str, ResolvedPool]):
        path = ("models", name)
        if m.pool is not None:
            if m.pool not in pools:
                self.err(
                    path + ("pool",),
                    f"no node pool named {m.pool!r}",
                    f"define llm-serving:nodePools.{m.pool} or use one of: {', '.join(pools) or '(none defined)'}",
                )
                return None
            p = pools[m.pool]
            if kind is not None and p.spec.accelerator != kind:
                self.err(
                    path + ("pool",),
                    f"pool {m.pool!r} is {p.spec.accelerator}-only but the model needs {kind}",
                    f"choose a {kind} pool or a {p.spec.accelerator} instance type",
                )
                return None
            return p
        if kind is None:
            # With pools of only one accelerator kind declared, that is the kind meant.
            declared = {p.spec.accelerator for n, p in pools.items() if n in self.cfg.nodePools}
            kind = declared.pop() if len(declared) == 1 else "nvidia"
        same = [p for p in pools.values() if p.spec.accelerator == kind]
        if len(same) == 1:
            return same[0]
        if len(same) > 1:
            self.err(
                path + ("pool",),
                f"several {kind} pools ({', '.join(p.name for p in same)})",
                "set pool: to the one this model runs on",
            )
            return None
        dname, dspec = DEFAULT_POOLS[kind]
        dfams = _default_families(kind)
        if dname in pools and pools[dname].spec.accelerator != kind:
            # The default name is taken by a pool of the other kind: never place the model there.
            self.err(
                path + ("pool",),
                f"the model needs {kind} and no {kind} pool is defined; the default "
                f"{kind} pool would be named {dname!r}, which is the {pools[dname].spec.accelerator} pool",
                f"define a pool with accelerator: {kind} in llm-serving:nodePools (and set pool: to it), "
                f"or rename nodePools.{dname}",
            )
            return None
        insts = tuple(i for i in self.instances.values() if i.family in dfams)
        pools.setdefault(dname, ResolvedPool(dname, dspec, insts))
        return pools[dname]

    def _arch(self, name: str, m: ModelConfig) -> ModelArch | None:
        path = ("models", name)
        if m.preset is not None:
            if m.preset not in self.presets:
                close = difflib.get_close_matches(m.preset, list(self.presets), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"presets: {', '.join(sorted(self.presets))}"
                self.err(path + ("preset",), f"unknown preset {m.preset!r}", hint)
                return None
            arch = self.presets[m.preset]
            if m.hfId and m.hfId != arch.hf_id and m.architecture is None:
                self.err(
                    path + ("hfId",),
                    f"{m.hfId} overrides preset {m.preset} ({arch.hf_id}) without facts",
                    "drop hfId, or give architecture: facts for the other checkpoint",
                )
                return None
            return arch
        if m.hfId is None:
            self.err(
                path,
                "neither preset nor hfId",
                f"set preset: (one of {', '.join(sorted(self.presets))}) or hfId: with architecture:",
            )
            return None
        for a in self.presets.values():
            if a.hf_id == m.hfId and m.architecture is None:
                return a
        if m.architecture is None:
            self.err(
                path + ("architecture",),
                f"{m.hfId} is not in the catalog, so its size is unknown",
                "add architecture: {params, layers, hidden, intermediate, heads, kvHeads, headDim, vocab, maxPositions}"
                " from its config.json",
            )
            return None
        facts = m.architecture
        return catalog.model_arch(m.hfId, facts, quantization=facts.quantization)

    def _model_name(self, name: str) -> None:
        path = ("models", name)
        problem = dns_problem(name, "model name")
        if problem:
            self.err(path, *problem)
            return
        if len(name) > MODEL_NAME_MAX:
            self.err(
                path,
                f"model name {name!r} is {len(name)} characters; its cache Job cache-{name} must fit 63",
                f"use at most {MODEL_NAME_MAX} characters",
            )
        if name in ("default", "kubernetes"):
            # Each model gets a ServiceAccount and a Service of its name; every namespace already has
            # the ServiceAccount `default`, and a Service `kubernetes` shadows the API server's variables.
            self.err(
                path,
                f"the model name {name!r} is taken in every namespace (ServiceAccount default, Service kubernetes)",
                "rename the model; set servedName: to keep the name clients use",
            )
        if name == "vllm" or name.startswith("vllm-"):
            # The Service is named after the model; Kubernetes injects <SERVICE>_PORT/_SERVICE_HOST
            # variables into every pod of the namespace, and vLLM reads VLLM_* (VLLM_PORT breaks it).
            self.err(
                path,
                f"a model named {name!r} makes Kubernetes inject VLLM_* variables (e.g. VLLM_PORT) "
                "into every vLLM pod, and vLLM refuses to start",
                "rename the model (e.g. qwen3-8b); set servedName: to keep the name clients use",
            )

    def _extra_args(self, name: str, m: ModelConfig, kind: AcceleratorKind) -> list[vllm_flags.Used]:
        path = ("models", name, "extraArgs")
        used, problems = vllm_flags.check(list(m.extraArgs), kind, trust_remote_code=m.trustRemoteCode)
        for what, fix in problems:
            self.err(path, what, fix)
        return used

    def _model(self, name: str, m: ModelConfig, pools: dict[str, ResolvedPool]) -> ResolvedModel | None:
        """Field checks, architecture, instance and pool first (every problem reported), then sizing."""
        n0 = len(self.problems)
        self._check_fields(name, m)
        arch = self._arch(name, m)
        inst = self._instance(name, m)
        kind = self._kind(name, m, inst)
        pool = self._pool_for(name, m, kind, pools)
        used = self._extra_args(name, m, pool.spec.accelerator if pool else (kind or "nvidia"))
        if arch is None or pool is None or len(self.problems) > n0:
            return None
        ask = _Ask(("models", name), m, arch, inst, pool, tuple(used))
        for sub, what, fix in weights.problems(m, ask.revision, ask.kind, self.cfg.platformStack is not None):
            self.err(ask.path + sub, what, fix)
        if len(self.problems) > n0:
            return None
        sizing = self._size(ask)
        if sizing is None:
            return None
        return self._resolved(name, ask, sizing)

    def _check_fields(self, name: str, m: ModelConfig) -> None:
        """Checks of the model's own fields that need no catalog: its name, replicas, remote code."""
        path = ("models", name)
        self._model_name(name)
        if m.replicas.min > m.replicas.max:
            self.err(path + ("replicas",), f"min {m.replicas.min} > max {m.replicas.max}", "make min ≤ max")
        if m.trustRemoteCode and not (m.revision and REVISION_SHA.fullmatch(m.revision)):
            self.err(
                path + ("trustRemoteCode",),
                "remote code runs in the server, so it must be pinned",
                "set revision: to the 40-hex commit sha you reviewed",
            )

    def _instance(self, name: str, m: ModelConfig) -> InstanceType | None:
        """The catalog instance the model names, if any."""
        if m.instanceType is None:
            return None
        inst = self.instances.get(m.instanceType)
        if inst is None:
            close = difflib.get_close_matches(m.instanceType, list(self.instances), n=1)
            hint = f"did you mean {close[0]}?" if close else "see stacks/catalog/instances.yaml"
            self.err(("models", name, "instanceType"), f"unknown instance type {m.instanceType!r}", hint)
        return inst

    def _kind(self, name: str, m: ModelConfig, inst: InstanceType | None) -> AcceleratorKind | None:
        """The accelerator kind asked for, by `accelerator:` or by the instance type."""
        if inst is not None and m.accelerator is not None and inst.kind != m.accelerator:
            self.err(
                ("models", name, "instanceType"),
                f"{inst.name} is a {inst.kind} instance but accelerator is {m.accelerator}",
                f"pick a {m.accelerator} instance type or change accelerator",
            )
        return m.accelerator or (inst.kind if inst else None)

    def _size(self, a: _Ask) -> planner.Sizing | None:
        """The instance and TP the model runs on, or None after reporting why it cannot run."""
        self._gated(a)
        if not (self._in_pool(a) and self._context_ok(a) and self._engine_ok(a) and self._tp_ok(a)):
            return None
        candidates = [a.inst] if a.inst is not None else list(a.pool.instances)
        sizing = planner.choose(a.arch, candidates, a.max_len, a.seqs, tp=a.m.tensorParallel, **a.kw)
        if sizing is None:
            self._explain_no_fit(a, candidates)
            return None
        if not self._batching_ok(a.path, a.m, sizing, a.kind, list(a.used)):
            return None
        return sizing

    def _gated(self, a: _Ask) -> None:
        if a.arch.gated and self.cfg.hfToken is None:
            self.err(
                a.path + ("preset" if a.m.preset else "hfId",),
                f"{a.arch.hf_id} is gated on Hugging Face and no token is configured",
                f"accept its licence on the Hub, then `pulumi config set --secret {PROJECT}:hfToken hf_…`",
            )

    def _in_pool(self, a: _Ask) -> bool:
        inst, pool = a.inst, a.pool
        if inst is not None and inst.family not in pool.families:
            self.err(
                a.path + ("instanceType",),
                f"{inst.name} is not allowed by pool {pool.name!r} (families {', '.join(pool.families)})",
                f"add {inst.family} to llm-serving:nodePools.{pool.name}.families or pick an allowed type",
            )
            return False
        return True

    def _context_ok(self, a: _Ask) -> bool:
        if a.max_len > a.arch.max_positions:
            self.err(
                a.path + ("maxModelLen",),
                f"{a.max_len} exceeds the model's {a.arch.max_positions} positions",
                f"set maxModelLen ≤ {a.arch.max_positions}",
            )
            return False
        return True

    def _engine_ok(self, a: _Ask) -> bool:
        """Neuron serves bf16/fp16 checkpoints with an auto KV cache; GPU quantization must be servable."""
        m, quant = a.m, a.quant
        if a.kind == "neuron" and (m.kvCacheDtype != "auto" or quant):
            settings = m.kvCacheDtype != "auto" or m.quantization
            what = (
                "quantization / kvCacheDtype are GPU settings here"
                if settings
                else f"{a.arch.hf_id} is a {quant} checkpoint; the Neuron image serves bf16/fp16 checkpoints"
            )
            self.err(
                a.path,
                what,
                "remove them for Neuron models"
                if settings
                else "use the bf16 preset of this model on Neuron, or an nvidia pool",
            )
            return False
        return self._quantization_ok(a.path, a.arch, m.quantization)

    def _tp_ok(self, a: _Ask) -> bool:
        """An asked tensorParallel divides the heads and fits the instance (or some instance of the pool)."""
        tp, arch = a.m.tensorParallel, a.arch
        if tp is None:
            return True
        if a.inst is not None:
            why = planner.tp_problem(arch, a.inst, tp)
            if why:
                self.err(a.path + ("tensorParallel",), why, f"use one of {planner.valid_tps(arch, a.inst)}")
                return False
            return True
        if not any(planner.tp_problem(arch, c, tp) is None for c in a.pool.instances):
            self.err(
                a.path + ("tensorParallel",),
                f"no instance in pool {a.pool.name!r} can run TP {tp} ({arch.heads} heads)",
                "choose a TP that divides the heads and fits an instance",
            )
            return False
        return True

    def _explain_no_fit(self, a: _Ask, candidates: list[InstanceType]) -> None:
        """One problem line: what does not fit where, and every way out the planner finds."""
        m, arch, inst, pool = a.m, a.arch, a.inst, a.pool
        ctx, where = planner.best_context(arch, candidates, a.seqs, **a.kw)
        where_all = planner.choose(arch, list(pool.instances), a.max_len, a.seqs, **a.kw)
        fix = []
        if ctx:
            fix.append(f"maxModelLen: {ctx} fits on {where}")
        if where_all is not None and inst is not None:
            fix.append(
                f"instanceType: {where_all.instance.name} (TP {where_all.tensor_parallel}) fits {a.max_len} tokens"
            )
        if not fix:
            fix.append(f"no instance in pool {pool.name!r} fits it: add larger families or quantize")
        target = (("instanceType",) if inst is not None else ()) or (("maxModelLen",))
        if inst is not None:
            host = self._host_memory_shortfall(a, inst)
            if host:
                fix.insert(0, host)
        self.err(
            a.path + target,
            f"{arch.hf_id} does not fit ({a.max_len}-token context, "
            f"{'TP ' + str(m.tensorParallel) + ' on ' if m.tensorParallel else ''}"
            f"{inst.name if inst else 'pool ' + pool.name})",
            "; or ".join(fix),
        )

    def _host_memory_shortfall(self, a: _Ask, inst: InstanceType) -> str | None:
        tps = [a.m.tensorParallel] if a.m.tensorParallel else planner.valid_tps(a.arch, inst)
        s0 = planner.size(a.arch, inst, max(tps), a.max_len, a.seqs, **a.kw)
        if s0.host_memory_ok:
            return None
        return (
            f"{inst.name} leaves the pod {s0.host_memory_gib:.0f} GiB of host memory, "
            f"loading needs ~{s0.host_memory_needed_gib:.0f} GiB"
        )

    def _warnings(self, a: _Ask, sizing: planner.Sizing) -> list[str]:
        """What runs but not as asked: a concurrency shortfall, an unpinned revision."""
        warnings = list(sizing.warnings)  # the planner's own: a fit inside its error band
        if not sizing.meets_concurrency:
            hints = planner.fix_hints(a.arch, sizing, list(a.pool.instances), **a.kw)
            warnings.append(
                f"max concurrency {sizing.max_concurrency:.1f} < maxNumSeqs {a.seqs} "
                f"(KV budget {sizing.kv_gib_per_device:.2f} GiB/device); fix: " + "; or ".join(hints)
            )
        if a.revision is None:
            warnings.append("revision not pinned: set revision: <commit sha> so every replica loads the same weights")
        return warnings

    def _parsers(self, a: _Ask) -> tuple[str | None, str | None]:
        """(tool parser, reasoning parser): on by default when the catalog knows one, refused when it does not."""
        m, arch = a.m, a.arch
        tools = m.tools if m.tools is not None else arch.tool_parser is not None
        reasoning = m.reasoning if m.reasoning is not None else arch.reasoning_parser is not None
        if tools and arch.tool_parser is None:
            self.err(a.path + ("tools",), f"no tool parser is known for {arch.hf_id}", "set tools: false")
        if reasoning and arch.reasoning_parser is None:
            self.err(a.path + ("reasoning",), f"no reasoning parser is known for {arch.hf_id}", "set reasoning: false")
        return (arch.tool_parser if tools else None), (arch.reasoning_parser if reasoning else None)

    def _resolved(self, name: str, a: _Ask, sizing: planner.Sizing) -> ResolvedModel:
        m, arch = a.m, a.arch
        warnings = self._warnings(a, sizing)
        tool_parser, reasoning_parser = self._parsers(a)
        return ResolvedModel(
            name=name,
            served_name=m.servedName or name,
            hf_id=m.hfId or arch.hf_id,
            revision=a.revision,
            arch=arch,
            kind=a.kind,
            pool=a.pool.name,
            sizing=sizing,
            quantization=a.quant,
            kv_cache_dtype=m.kvCacheDtype,
            tool_parser=tool_parser,
            reasoning_parser=reasoning_parser,
            replicas_min=m.replicas.min,
            replicas_max=m.replicas.max,
            extra_args=tuple(m.extraArgs),
            request_timeout_seconds=m.requestTimeoutSeconds,
            warnings=tuple(warnings),
            trust_remote_code=m.trustRemoteCode,
        )

    def _quantization_ok(self, path: tuple, arch: ModelArch, asked: str | None) -> bool:
        """vLLM reads AWQ/GPTQ weights from a checkpoint quantized that way; it cannot produce them from
        bf16 (fp8 it can, online). A quantized checkpoint is served with its own method."""
        have = arch.quantization
        if asked is None or asked == have:
            return True
        if have is not None:
            self.err(
                path + ("quantization",),
                f"{arch.hf_id} is a {have} checkpoint; vLLM cannot serve it as {asked}",
                f"remove quantization: (it is {have} already), or use another checkpoint",
            )
            return False
        if asked in ("awq", "gptq"):
            self.err(
                path + ("quantization",),
                f"{asked} needs a checkpoint quantized with {asked}; {arch.hf_id} is {arch.dtype}",
                f"use an {asked} checkpoint (hfId: + architecture: with quantization: {asked}), "
                "or quantization: fp8 (vLLM quantizes bf16 weights to fp8 on load)",
            )
            return False
        return True

    def _batching_ok(
        self, path: tuple, m: ModelConfig, s: planner.Sizing, kind: AcceleratorKind, used: list[vllm_flags.Used]
    ) -> bool:
        """vLLM 0.32 SchedulerConfig.verify_max_model_len: refuses to start when the batched tokens are
        below max-num-seqs, or below max-model-len with chunked prefill off."""
        if kind == "neuron":
            return True
        target = path + (("maxNumBatchedTokens",) if m.maxNumBatchedTokens else ("maxNumSeqs",))
        if s.max_num_batched_tokens < s.max_num_seqs:
            self.err(
                target,
                f"max-num-batched-tokens {s.max_num_batched_tokens} < maxNumSeqs {s.max_num_seqs}; "
                "vLLM refuses to start",
                f"set maxNumBatchedTokens ≥ {s.max_num_seqs}, or lower maxNumSeqs",
            )
            return False
        if vllm_flags.chunked_prefill_disabled(used) and s.max_num_batched_tokens < s.max_model_len:
            self.err(
                target,
                f"with chunked prefill off, max-num-batched-tokens {s.max_num_batched_tokens} < "
                f"maxModelLen {s.max_model_len}; vLLM refuses to start",
                f"set maxNumBatchedTokens ≥ {s.max_model_len}, or keep chunked prefill on",
            )
            return False
        return True

    def _capacity(self, models: dict[str, ResolvedModel], pools: dict[str, ResolvedPool]) -> None:
        per_pool: dict[str, list[ResolvedModel]] = {}
        for m in models.values():
            per_pool.setdefault(m.pool, []).append(m)
        for pname, ms in per_pool.items():
            self._pool_limits(pname, pools[pname].spec, ms)
        if self.cfg.team is not None:
            self._team_quota(self.cfg.team, list(models.values()))

    def _pool_limits(self, pname: str, spec: NodePoolConfig, ms: list[ResolvedModel]) -> None:
        """Replicas at their maximum must fit the NodePool limits; Karpenter counts whole nodes' capacity."""
        need = {"maxAccelerators": 0, "maxCpu": 0, "maxMemoryGiB": 0}
        for m in ms:
            inst = m.sizing.instance
            per_node = max(1, inst.devices // planner.accelerator_devices(inst, m.sizing.tensor_parallel))
            nodes = -(-m.replicas_max // per_node)
            need["maxAccelerators"] += nodes * inst.devices
            need["maxCpu"] += nodes * inst.vcpu
            need["maxMemoryGiB"] += nodes * inst.memory_mib // 1024
        units = {"maxAccelerators": "accelerators", "maxCpu": "vCPUs", "maxMemoryGiB": "GiB"}
        for field, want in need.items():
            have = getattr(spec, field)
            if want > have:
                path = (
                    ("nodePools", pname, field) if pname in self.cfg.nodePools else ("models", ms[0].name, "replicas")
                )
                self.err(
                    path,
                    f"the models on pool {pname!r} ({', '.join(m.name for m in ms)}) at replicas.max need "
                    f"nodes with {want} {units[field]}, over the pool limit {have}",
                    f"raise nodePools.{pname}.{field} to {want} or lower replicas.max",
                )

    def _team_quota(self, team: TeamConfig, ms: list[ResolvedModel]) -> None:
        """The team's ResourceQuota counts requests, per resource (nvidia.com/gpu, aws.amazon.com/neuron)."""
        per_kind: dict[str, list[tuple[int, str, int]]] = {}
        for m in ms:
            devices = planner.accelerator_devices(m.sizing.instance, m.sizing.tensor_parallel)
            per_kind.setdefault(m.kind, []).append((m.replicas_max * devices, m.name, devices))
        for uses in per_kind.values():
            asked = sum(u for u, _, _ in uses)
            if asked > team.maxAccelerators:
                # Named at the largest user's replicas.max: the autoscaler would stop there, unseen.
                top, name, devices = max(uses)
                self.err(
                    ("models", name, "replicas", "max"),
                    f"the team's models at replicas.max request {asked} accelerators "
                    f"({name}: {top // devices} x {devices}), "
                    f"over the quota team.maxAccelerators {team.maxAccelerators}",
                    f"lower replicas.max, or raise team.maxAccelerators to {asked}",
                )

    def _teams(self) -> list[str]:
        """gateway.teams against the rest of the stack; returns warnings."""
        g, models, seen = self.cfg.gateway, sorted(self.cfg.models), {}
        if self.cfg.ui.enabled:
            seen[WEBUI_KEY] = "the Open WebUI (ui.enabled)"
        for name, t in g.teams.items():
            path = ("gateway", "teams", name)
            for m in t.allowedModels:
                if m not in self.cfg.models:
                    self.err(
                        (*path, "allowedModels"),
                        f"{m!r} is not a model of this stack",
                        f"use model keys of llm-serving:models: {', '.join(models) or '(none defined)'}",
                    )
            for k in t.keys:
                if k in seen:
                    self.err(
                        (*path, "keys"),
                        f"key name {k!r} is also used by {seen[k]}",
                        "give every key of the stack its own name",
                    )
                seen.setdefault(k, f"team {name!r}")
            budget = "maxBudget" if t.maxBudget is not None else "budgetDuration" if t.budgetDuration else None
            if budget and not g.database.enabled:
                self.err(
                    (*path, budget),
                    "a budget needs the gateway database (LiteLLM tracks spend there)",
                    "set gateway.database.enabled: true, or remove maxBudget and budgetDuration",
                )
            if t.budgetDuration and t.maxBudget is None:
                self.err((*path, "budgetDuration"), "a budget period without maxBudget", "set maxBudget (USD)")
        if self.cfg.platformStack is not None and any(t.limited for t in g.teams.values()):
            return [
                f"{key('gateway', 'teams')}: a team stack has no shared Redis, so each of the "
                f"{g.replicas} gateway replicas counts rpm/tpm/parallel limits on its own — "
                "expect up to that many times the limit"
            ]
        return []

    def _derived_name_lengths(self, cluster_name: str) -> None:
        role = global_name(KARPENTER_CONTROLLER_ROLE, cluster_name, self.region)
        limit = min(CLUSTER_NAME_MAX, IAM_NAME_MAX - (len(role) - len(cluster_name)))
        if len(cluster_name) > limit:
            given = self.cfg.cluster.name is not None
            self.err(
                ("cluster", "name"),
                f"cluster name {cluster_name!r} ({'given' if given else 'llm-<stack>'}) is "
                f"{len(cluster_name)} characters; IAM role {role} must fit {IAM_NAME_MAX}",
                f"set cluster.name to at most {limit} characters",
            )

    def _kubernetes_version(self, pinned: str) -> None:
        v = self.cfg.cluster.kubernetesVersion
        if v is not None and v not in SUPPORTED_KUBERNETES(pinned):
            self.err(
                ("cluster", "kubernetesVersion"),
                f"{v!r} is not a supported Kubernetes version",
                f"use {' or '.join(SUPPORTED_KUBERNETES(pinned))} (charts, AMI alias and Karpenter are pinned "
                "for it), or leave it unset",
            )

    def _unpriced(self) -> list[str]:
        """Valid types the price table lacks: the plan runs and shows them unpriced."""
        prices, out = catalog.prices(), []
        first = self.cfg.cluster.systemNodes.instanceTypes[0]  # the one the cost estimate prices
        if prices.instance_usd(first) is None:
            out.append(
                f"{key('cluster', 'systemNodes', 'instanceTypes')}: {first} has no price in "
                "stacks/catalog/prices.yaml — the plan's cost leaves the system nodes out; add its price there"
            )
        db = self.cfg.gateway.database
        if db.enabled and prices.rds_usd(db.instanceClass, db.multiAz) is None:
            out.append(
                f"{key('gateway', 'database', 'instanceClass')}: {db.instanceClass} has no price in "
                "stacks/catalog/prices.yaml — the plan's cost counts its storage only; add its price there"
            )
        return out

    def _reserved_names(self) -> None:
        """Names LiteLLM reads as something else: a served name `all-proxy-models` in a team's
        allowed models gives that team every model; a team `litellm-dashboard` is vouched for by the
        admin UI's tokens and skips the database."""
        reserved = catalog.litellm_reserved()
        for name, m in self.cfg.models.items():
            served = m.servedName or name
            where = reserved.model_name(served)
            if where:
                field = ("models", name, "servedName") if m.servedName else ("models", name)
                self.err(
                    field,
                    f"{served!r} is a name LiteLLM {reserved.release} treats specially ({where.split(' (')[0]})",
                    "choose another name (set servedName: to the name clients use)",
                )
        for team in self.cfg.gateway.teams:
            where = reserved.team_id(team)
            if where:
                self.err(
                    ("gateway", "teams", team),
                    f"team name {team!r} is a team id LiteLLM or this program uses itself ({where.split(' (')[0]})",
                    "choose another team name",
                )
        if self.cfg.ui.enabled and not self.cfg.models:
            self.err(
                ("ui", "enabled"),
                "the UI's gateway key would list no models, which LiteLLM reads as every model",
                "add models to this stack, or set ui.enabled: false",
            )

    def _duplicates(self, models: dict[str, ResolvedModel]) -> None:
        seen: dict[str, str] = {}
        for name, m in self.cfg.models.items():
            served = m.servedName or name
            if served in seen:
                self.err(
                    ("models", name, "servedName"),
                    f"served name {served!r} is also used by model {seen[served]!r}",
                    "give each model a distinct servedName",
                )
            seen.setdefault(served, name)


def _dns_safe(s: str) -> str:
    s = re.sub(r"[^a-z0-9-]", "-", s.lower()).strip("-")
    return s[:63] or "llm"
