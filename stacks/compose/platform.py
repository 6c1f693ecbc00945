"""Platform composition: network, cluster, system nodes, add-ons, Karpenter, pools, storage, drivers."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.access import TeamAccess, TeamAccessArgs
from components.billing import BillingBudget, BudgetArgs
from components.cluster import (
    AddonsArgs,
    Cluster,
    ClusterAddons,
    ClusterArgs,
    PlatformKeys,
    PlatformKeysArgs,
    SystemNodes,
    SystemNodesArgs,
    control_plane_log_group,
)
from components.database import postgres_log_group
from components.drivers import NEURON_SCHEDULER_NAME, DriverArgs, GpuOperator, NeuronDriver
from components.karpenter import Karpenter, KarpenterArgs, KarpenterIam, KarpenterIamArgs
from components.keda import Keda, KedaArgs
from components.network import Network, NetworkArgs, flow_log_group
from components.nodepool import KarpenterNodeClass, KarpenterNodePool, NodeClassArgs, NodePoolArgs
from components.storage import Storage, StorageArgs
from components.types import ClusterHandle, NetworkHandle, NodeClassSpec, PoolSpec, StorageHandle, SystemNodesHandle
from stacks import catalog
from stacks.config import EKS_UNSUPPORTED_ZONE_IDS, ExistingVpc, StackIntent, VpcConfig
from stacks.config.schema import team_namespaces

# Root volume for accelerator nodes. Instances with local NVMe (g5/g6/g6e/p4d/p5/trn1) keep
# containerd and kubelet on the instance-store RAID0 (instanceStorePolicy), so the root volume holds
# only the OS there. inf2 has no instance store: images (the Neuron DLC is ~10 GB compressed, ~2.5x
# unpacked) land on this volume, so it stays large; gp3 baseline IOPS/throughput (no extra charge).
# Model weights live on EFS.
ACCEL_ROOT_GIB = 200
ACCEL_ROOT_IOPS = 3000
ACCEL_ROOT_THROUGHPUT = 125


@dataclass
class Platform:
    cluster_name: pulumi.Input[str]
    k8s: k8s.Provider
    kubeconfig: pulumi.Output
    storage: StorageHandle
    vpc_id: pulumi.Input[str]
    vpc_cidr: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    node_security_group_id: pulumi.Input[str]
    neuron_scheduler: str | None
    pools: dict[str, PoolSpec]
    # What workloads on accelerator nodes must wait for (the node pools and device plugins).
    ready: tuple[pulumi.Resource, ...]
    # What workloads on the system nodes must wait for (the node group, CoreDNS); empty on team stacks.
    system_ready: tuple[pulumi.Resource, ...] = ()
    # The platform's data-at-rest CMK (EFS, the gateway database); None on team stacks.
    data_key_arn: pulumi.Input[str] | None = None
    # The platform's CloudWatch Logs CMK (its policy names each log group); None on team stacks.
    logs_key_arn: pulumi.Input[str] | None = None
    # Where controllers run (label + taint); None on team stacks.
    system_nodes: SystemNodesHandle | None = None
    # The KEDA release (ScaledObject CRD) when autoscaling is on; None otherwise and on team stacks.
    keda: pulumi.Resource | None = None

    def shared(self) -> dict:
        """What team stacks read from this platform stack (exported as `platform`)."""
        return {
            "clusterName": self.cluster_name,
            "vpcId": self.vpc_id,
            "vpcCidr": self.vpc_cidr,
            "privateSubnetIds": self.private_subnet_ids,
            "nodeSecurityGroupId": self.node_security_group_id,
            "efsStorageClass": self.storage.efs_storage_class,
            "ebsStorageClass": self.storage.ebs_storage_class,
            "efsFileSystemId": self.storage.efs_file_system_id,
            "neuronScheduler": self.neuron_scheduler,
            "pools": {n: p.kind for n, p in self.pools.items()},
        }


def attach(intent: StackIntent) -> Platform:
    """A team stack: the platform stack's cluster, read through a StackReference. Creates nothing."""
    ref = pulumi.StackReference("platform", stack_name=intent.config.platformStack)
    shared = ref.require_output("platform")
    kubeconfig = ref.require_output("kubeconfig")
    provider = k8s.Provider("k8s", kubeconfig=kubeconfig, enable_server_side_apply=True)
    storage = StorageHandle(
        efs_storage_class=shared.apply(lambda s: s["efsStorageClass"]),
        ebs_storage_class=shared.apply(lambda s: s["ebsStorageClass"]),
        efs_file_system_id=shared.apply(lambda s: s["efsFileSystemId"]),
    )
    pools = {n: pool_spec(intent, n) for n in intent.pools}
    return Platform(
        cluster_name=shared.apply(lambda s: s["clusterName"]),
        k8s=provider,
        kubeconfig=kubeconfig,
        storage=storage,
        vpc_id=shared.apply(lambda s: s["vpcId"]),
        vpc_cidr=shared.apply(lambda s: s["vpcCidr"]),
        private_subnet_ids=shared.apply(lambda s: s["privateSubnetIds"]),
        node_security_group_id=shared.apply(lambda s: s["nodeSecurityGroupId"]),
        neuron_scheduler=NEURON_SCHEDULER_NAME if any(p.kind == "neuron" for p in pools.values()) else None,
        pools=pools,
        ready=(),
    )


def pool_spec(intent: StackIntent, name: str) -> PoolSpec:
    p = intent.pools[name]
    s = p.spec
    return PoolSpec(
        name=name,
        kind=s.accelerator,
        families=tuple(p.families),
        capacity_types=tuple(s.capacityTypes),
        node_class=s.accelerator,
        cpu_limit=s.maxCpu,
        memory_limit_gib=s.maxMemoryGiB,
        accelerator_limit=s.maxAccelerators,
        consolidate_after=s.consolidateAfter,
        expire_after=s.expireAfter,
        termination_grace_period=s.terminationGracePeriod,
        disruption_budget_nodes=s.disruptionBudgetNodes,
        labels=tuple(sorted(s.labels.items())),
        weight=s.weight,
    )


def availability_zones(vpc: VpcConfig) -> tuple[str, ...]:
    """The stack's zones, or the first azCount regular AZs EKS supports. Without the filters a Local
    Zone (`us-east-1-bos-1a` sorts first) or an EKS-unsupported zone id (`use1-az3`) can be picked,
    and CreateCluster or the subnets fail."""
    if vpc.availabilityZones:
        return tuple(vpc.availabilityZones)
    zones = aws.get_availability_zones(
        state="available",
        exclude_zone_ids=list(EKS_UNSUPPORTED_ZONE_IDS),
        filters=[aws.GetAvailabilityZonesFilterArgs(name="zone-type", values=["availability-zone"])],
    )
    return tuple(sorted(zones.names)[: vpc.azCount])


def one_subnet_per_zone(subnet_ids: list[str], zones: list[str]) -> list[str]:
    """EFS takes one mount target per AZ: two given private subnets in one AZ would fail mid-`up`."""
    seen: dict[str, str] = {}
    for subnet, zone in zip(subnet_ids, zones, strict=False):
        if zone in seen:
            raise pulumi.RunError(
                f"llm-serving:cluster.vpc.existing.privateSubnetIds: {seen[zone]} and {subnet} are both in {zone} "
                f"— list one private subnet per availability zone (EFS allows one mount target per AZ)"
            )
        seen[zone] = subnet
    return list(subnet_ids)


def existing_network(ex: ExistingVpc) -> NetworkHandle:
    """A VPC the stack does not own: its CIDR (NetworkPolicy ipBlocks) and its subnets' zones are
    looked up, never assumed; everything that uses the subnets waits for the zone check."""
    found = aws.ec2.get_vpc_output(id=ex.vpcId)
    ids = list(ex.privateSubnetIds)
    zones = pulumi.Output.all(*[aws.ec2.get_subnet_output(id=s).availability_zone for s in ids])
    return NetworkHandle(
        vpc_id=ex.vpcId,
        private_subnet_ids=zones.apply(lambda z: one_subnet_per_zone(ids, z)),
        public_subnet_ids=list(ex.publicSubnetIds),
        vpc_cidr=found.cidr_block,
    )


def team_access(intent: StackIntent, ch: ClusterHandle) -> None:
    """Each team's roles: edit (or view) in the team stack's namespaces only (components/access.py)."""
    for team, t in intent.config.cluster.teamAccess.items():
        TeamAccess(
            f"access-{team}",
            TeamAccessArgs(
                cluster_name=ch.name,
                team=team,
                principal_arns=tuple(t.principalArns),
                namespaces=team_namespaces(team),
                access=t.access,
            ),
        )


@dataclass(frozen=True)
class Footing:
    """What every platform step shares: the cluster name, the account, pinned versions, the KMS keys."""

    cluster_name: str
    region: str
    account: pulumi.Output[str]
    versions: catalog.Versions
    keys: PlatformKeys


@dataclass(frozen=True)
class Subnets:
    """The VPC the cluster lives in, EFS's mount target keys, and the subnets node classes pin
    (empty: Karpenter discovers the stack's own tagged subnets)."""

    net: NetworkHandle
    mount_keys: tuple[str, ...]
    node_subnets: tuple[str, ...]


@dataclass(frozen=True)
class Accelerators:
    """The node pools and device plugins accelerator workloads wait for; the Neuron scheduler's name."""

    ready: tuple[pulumi.Resource, ...]
    neuron_scheduler: str | None


def build(intent: StackIntent) -> Platform:
    """The platform in deploy order: keys, network, cluster, system nodes, add-ons, Karpenter,
    storage, node pools, KEDA, accelerator drivers."""
    if intent.is_team_stack:
        return attach(intent)
    for w in intent.warnings:
        pulumi.log.warn(w)
    base = footing(intent)
    subnets = network(intent, base)
    cluster = eks_cluster(intent, base, subnets.net)
    team_access(intent, cluster.handle)
    system = system_nodes(intent, cluster, subnets.net)
    addons = ClusterAddons(
        "addons",
        AddonsArgs(
            cluster=cluster.handle,
            system_nodes=system,
            pod_identity_agent=cluster.networking.pod_identity_agent,
            metrics_server=intent.config.autoscaling.enabled,
        ),
    )
    provider = k8s.Provider("k8s", kubeconfig=cluster.kubeconfig, enable_server_side_apply=True)
    kopts = ResourceOptions(providers={"kubernetes": provider})
    kiam, karpenter = karpenter_controller(base, cluster, system, addons, kopts)
    storage = efs_and_ebs(intent, base, cluster.handle, subnets, addons, kopts)
    pools = {n: pool_spec(intent, n) for n in intent.pools}
    pool_ready = node_pools(base, pools, subnets, kiam, karpenter, kopts)
    keda = keda_release(intent, base, system, addons, kopts)
    accel = accelerator_drivers(base, pools, system, kopts)
    return Platform(
        cluster_name=base.cluster_name,
        k8s=provider,
        kubeconfig=cluster.kubeconfig,
        storage=storage.handle,
        vpc_id=subnets.net.vpc_id,
        vpc_cidr=subnets.net.vpc_cidr,
        private_subnet_ids=subnets.net.private_subnet_ids,
        node_security_group_id=cluster.handle.security_group_id,
        neuron_scheduler=accel.neuron_scheduler,
        pools=pools,
        ready=(*pool_ready, *accel.ready),
        system_ready=(system.node_group, addons.coredns),
        data_key_arn=base.keys.data_key_arn,
        logs_key_arn=base.keys.logs_key_arn,
        system_nodes=system,
        keda=keda,
    )


def footing(intent: StackIntent) -> Footing:
    """The platform KMS keys (their policies name the log groups they encrypt) and the optional budget."""
    cfg = intent.config
    c = intent.cluster_name
    account = aws.get_caller_identity_output().account_id
    existing = cfg.cluster.vpc.existing is not None
    log_groups: tuple[str, ...] = (control_plane_log_group(c),) + (() if existing else (flow_log_group(c),))
    log_groups += (postgres_log_group(c),) if cfg.gateway.database.enabled else ()
    keys = PlatformKeys(
        "keys", PlatformKeysArgs(cluster_name=c, account_id=account, region=intent.region, log_group_names=log_groups)
    )
    if cfg.cluster.budget is not None:
        BillingBudget(
            "billing",
            BudgetArgs(
                cluster_name=c,
                region=intent.region,
                monthly_usd=cfg.cluster.budget.monthlyUsd,
                emails=tuple(cfg.cluster.budget.emails),
            ),
        )
    return Footing(cluster_name=c, region=intent.region, account=account, versions=catalog.versions(), keys=keys)


def network(intent: StackIntent, base: Footing) -> Subnets:
    """The given VPC (looked up), or a new one across the stack's zones."""
    vpc_cfg = intent.config.cluster.vpc
    if vpc_cfg.existing is not None:
        mount_keys = tuple(f"subnet-{i}" for i in range(len(vpc_cfg.existing.privateSubnetIds)))
        return Subnets(existing_network(vpc_cfg.existing), mount_keys, tuple(vpc_cfg.existing.privateSubnetIds))
    azs = availability_zones(vpc_cfg)
    net = Network(
        "network",
        NetworkArgs(
            cluster_name=base.cluster_name,
            cidr=vpc_cfg.cidr,
            availability_zones=azs,
            logs_key_arn=base.keys.logs_key_arn,
            region=base.region,
            flow_log_retention_days=intent.config.cluster.logRetentionDays,
        ),
    ).handle
    return Subnets(net, azs, ())


def eks_cluster(intent: StackIntent, base: Footing, net: NetworkHandle) -> Cluster:
    cfg = intent.config.cluster
    return Cluster(
        "cluster",
        ClusterArgs(
            cluster_name=base.cluster_name,
            kubernetes_version=intent.kubernetes_version,
            network=net,
            account_id=base.account,
            logs_key_arn=base.keys.logs_key_arn,
            admin_role_arns=tuple(cfg.adminRoleArns),
            endpoint_public_access=cfg.endpointPublicAccess,
            public_access_cidrs=tuple(cfg.publicAccessCidrs),
            log_retention_days=cfg.logRetentionDays,
            aws_profile=pulumi.Config("aws").get("profile"),
        ),
    )


def system_nodes(intent: StackIntent, cluster: Cluster, net: NetworkHandle) -> SystemNodesHandle:
    """The managed node group controllers and the gateway run on (labelled and tainted)."""
    sn = intent.config.cluster.systemNodes
    return SystemNodes(
        "system",
        SystemNodesArgs(
            cluster=cluster.handle,
            subnet_ids=net.private_subnet_ids,
            instance_types=tuple(sn.instanceTypes),
            min_size=sn.minSize,
            desired_size=sn.desiredSize,
            max_size=sn.maxSize,
            disk_gib=sn.diskGiB,
            after=cluster.networking.ready,
        ),
    ).handle


def karpenter_controller(
    base: Footing, cluster: Cluster, system: SystemNodesHandle, addons: ClusterAddons, kopts: ResourceOptions
) -> tuple[KarpenterIam, Karpenter]:
    c = base.cluster_name
    kiam = KarpenterIam(
        "karpenter-iam",
        KarpenterIamArgs(cluster=cluster.handle, cluster_name=c, account_id=base.account, region=base.region),
    )
    # Karpenter resolves the API server and STS through CoreDNS: it starts after it.
    karpenter = Karpenter(
        "karpenter",
        KarpenterArgs(
            cluster_name=c,
            iam=kiam.handle,
            system_nodes=system,
            crd_chart=base.versions.chart("karpenter-crd"),
            chart=base.versions.chart("karpenter"),
            after=(cluster.networking.pod_identity_agent, addons.coredns),
        ),
        opts=kopts,
    )
    return kiam, karpenter


def efs_and_ebs(
    intent: StackIntent,
    base: Footing,
    ch: ClusterHandle,
    subnets: Subnets,
    addons: ClusterAddons,
    kopts: ResourceOptions,
) -> Storage:
    csi = (addons.addons["aws-ebs-csi-driver"], addons.addons["aws-efs-csi-driver"])
    return Storage(
        "storage",
        StorageArgs(
            cluster=ch,
            network=subnets.net,
            mount_target_keys=subnets.mount_keys,
            cluster_name=base.cluster_name,
            kms_key_arn=base.keys.data_key_arn,
            protect=intent.config.cluster.protectData,
            after=csi,
        ),
        opts=kopts,
    )


def node_pools(
    base: Footing,
    pools: dict[str, PoolSpec],
    subnets: Subnets,
    kiam: KarpenterIam,
    karpenter: Karpenter,
    kopts: ResourceOptions,
) -> list[pulumi.Resource]:
    """One EC2NodeClass per accelerator kind, one NodePool per configured pool."""
    classes = {}
    for kind in sorted({p.kind for p in pools.values()}):
        classes[kind] = KarpenterNodeClass(
            f"nodeclass-{kind}",
            NodeClassArgs(
                spec=NodeClassSpec(
                    name=kind,
                    kind=kind,
                    ami_alias=base.versions.ami_alias,
                    root_volume_gib=ACCEL_ROOT_GIB,
                    root_volume_throughput=ACCEL_ROOT_THROUGHPUT,
                    root_volume_iops=ACCEL_ROOT_IOPS,
                    instance_store_raid0=True,
                    subnet_ids=subnets.node_subnets,
                ),
                cluster_name=base.cluster_name,
                instance_profile=kiam.instance_profile_name,
                crds=karpenter.crds,
            ),
            opts=kopts,
        )
    return [
        KarpenterNodePool(
            f"pool-{name}",
            NodePoolArgs(spec=spec, crds=karpenter.crds, node_class=classes[spec.kind].resource),
            opts=kopts,
        ).resource
        for name, spec in pools.items()
    ]


def keda_release(
    intent: StackIntent, base: Footing, system: SystemNodesHandle, addons: ClusterAddons, kopts: ResourceOptions
) -> pulumi.Resource | None:
    """KEDA (the ScaledObject CRD) when autoscaling is on."""
    if not intent.config.autoscaling.enabled:
        return None
    return Keda(
        "keda",
        KedaArgs(
            chart=base.versions.chart("keda"),
            system_taint=system.taint_key,
            node_selector={system.label_key: system.label_value},
            after=(system.node_group, addons.coredns),
        ),
        opts=kopts,
    ).release


def accelerator_drivers(
    base: Footing, pools: dict[str, PoolSpec], system: SystemNodesHandle, kopts: ResourceOptions
) -> Accelerators:
    """The GPU operator and the Neuron driver, each only when a pool needs it."""
    kinds = {p.kind for p in pools.values()}
    ready: list[pulumi.Resource] = []
    neuron_scheduler = None
    if "nvidia" in kinds:
        args = DriverArgs(chart=base.versions.chart("gpu-operator"), after=(system.node_group,))
        ready.append(GpuOperator("gpu-operator", args, opts=kopts).release)
    if "neuron" in kinds:
        args = DriverArgs(chart=base.versions.chart("neuron"), after=(system.node_group,))
        ready.append(NeuronDriver("neuron", args, opts=kopts).release)
        neuron_scheduler = NEURON_SCHEDULER_NAME
    return Accelerators(tuple(ready), neuron_scheduler)
