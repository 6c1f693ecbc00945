"""EKS control plane (pulumi-eks), the system node group for controllers, and the EKS add-ons."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
from pulumi import ResourceOptions

from components.types import (
    EKS_TAINT_EFFECT,
    SYSTEM_TAINT,
    WORKER_NODE_POLICIES,
    ClusterHandle,
    NetworkHandle,
    SystemNodesHandle,
    allow_policy,
    pod_identity_trust,
    taint,
    tolerate,
    trust_policy,
)

LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
SYSTEM_LABEL = ("llm-serving/node-role", "system")


def kms_key_policy(account_id: str) -> str:
    """Key administration by the account (IAM decides who); no wildcard principal."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministers",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    )


def logs_key_policy(*, account_id: str, region: str, partition: str, log_group_names: tuple[str, ...]) -> str:
    """The account administers the key; CloudWatch Logs in this region may use it only for these log
    groups (the encryption context CloudWatch sends is the log group ARN)."""
    arns = [f"arn:{partition}:logs:{region}:{account_id}:log-group:{n}" for n in log_group_names]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministers",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "CloudWatchLogsUse",
                    "Effect": "Allow",
                    "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                    "Action": [
                        "kms:Encrypt*",
                        "kms:Decrypt*",
                        "kms:ReEncrypt*",
                        "kms:GenerateDataKey*",
                        "kms:Describe*",
                    ],
                    "Resource": "*",
                    "Condition": {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": arns}},
                },
            ],
        }
    )


def control_plane_log_group(cluster_name: str) -> str:
    """EKS writes control-plane logs to exactly this name; we create it first (retention, CMK)."""
    return f"/aws/eks/{cluster_name}/cluster"


def kubeconfig_with_profile(kubeconfig: Any, profile: str) -> str:
    """The kubeconfig with AWS_PROFILE set on every `aws eks get-token` exec user, so the token comes
    from the same credentials as the stack's `aws:profile`."""
    doc = json.loads(kubeconfig) if isinstance(kubeconfig, str) else dict(kubeconfig)
    for user in doc.get("users") or []:
        ex = (user.get("user") or {}).get("exec")
        if ex is not None:
            env = [e for e in ex.get("env") or [] if e.get("name") != "AWS_PROFILE"]
            ex["env"] = [*env, {"name": "AWS_PROFILE", "value": profile}]
    return json.dumps(doc)


@dataclass(frozen=True)
class PlatformKeysArgs:
    cluster_name: str
    account_id: pulumi.Input[str]
    region: str
    log_group_names: tuple[str, ...]  # every log group the logs key may encrypt
    partition: str = "aws"


class PlatformKeys(pulumi.ComponentResource):
    """Customer-managed KMS keys: one for CloudWatch log groups, one for data at rest (EFS)."""

    logs_key_arn: pulumi.Output[str]
    data_key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: PlatformKeysArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:PlatformKeys", name, None, opts)
        child = ResourceOptions(parent=self)
        c = args.cluster_name
        logs = aws.kms.Key(
            f"{name}-logs",
            description=f"CloudWatch log groups of {c}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
            policy=pulumi.Output.from_input(args.account_id).apply(
                lambda a: logs_key_policy(
                    account_id=a, region=args.region, partition=args.partition, log_group_names=args.log_group_names
                )
            ),
        )
        aws.kms.Alias(f"{name}-logs", name=f"alias/{c}-logs", target_key_id=logs.key_id, opts=child)
        data = aws.kms.Key(
            f"{name}-data",
            description=f"Data at rest (EFS model cache) of {c}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(args.account_id).apply(kms_key_policy),
            opts=child,
        )
        aws.kms.Alias(f"{name}-data", name=f"alias/{c}-data", target_key_id=data.key_id, opts=child)
        self.logs_key_arn = logs.arn
        self.data_key_arn = data.arn
        self.register_outputs({"logs_key_arn": logs.arn, "data_key_arn": data.arn})


# ---- control plane ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    kubernetes_version: str
    network: NetworkHandle
    account_id: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]  # CMK for the control-plane log group (PlatformKeys)
    admin_role_arns: tuple[str, ...] = ()
    endpoint_public_access: bool = True
    public_access_cidrs: tuple[str, ...] = ()  # empty: EKS's default (open, IAM-authenticated)
    log_retention_days: int = 365
    # `aws:profile` of the stack: the kubeconfig's `aws eks get-token` must use the same credentials.
    aws_profile: str | None = None


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:Cluster", name, None, opts)
        child = ResourceOptions(parent=self)
        c = args.cluster_name
        key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"EKS secrets envelope encryption for {c}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(args.account_id).apply(kms_key_policy),
            opts=child,
        )
        aws.kms.Alias(f"{name}-secrets-key", name=f"alias/{c}-eks-secrets", target_key_id=key.key_id, opts=child)
        role, role_ready = self._service_role(name, key, child)
        # EKS writes control-plane logs here; creating it first sets the retention (EKS would keep forever).
        logs = aws.cloudwatch.LogGroup(
            f"{name}-control-plane-logs",
            name=control_plane_log_group(c),
            retention_in_days=args.log_retention_days,
            kms_key_id=args.logs_key_arn,
            opts=child,
        )
        # The cluster role's policy is attached before create and detached only after delete.
        self.cluster = self._eks(name, args, key, role, ResourceOptions(parent=self, depends_on=[logs, *role_ready]))
        ec = self.cluster.eks_cluster
        self.name = ec.name
        kubeconfig = self.cluster.kubeconfig_json
        profile = args.aws_profile
        if profile:
            kubeconfig = kubeconfig.apply(lambda k: kubeconfig_with_profile(k, profile))
        self.kubeconfig = pulumi.Output.secret(kubeconfig)
        self.networking = NetworkingAddons(f"{name}-net", ec.name, opts=ResourceOptions(parent=self))
        self.handle = ClusterHandle(
            name=ec.name,
            arn=ec.arn,
            endpoint=ec.endpoint,
            security_group_id=ec.vpc_config.cluster_security_group_id,
            kubeconfig=self.kubeconfig,
        )
        self.register_outputs({"name": self.name, "kubeconfig": self.kubeconfig})

    @staticmethod
    def _service_role(
        name: str, key: aws.kms.Key, child: ResourceOptions
    ) -> tuple[aws.iam.Role, tuple[pulumi.Resource, ...]]:
        """Our own cluster role, so the envelope-encryption key can be granted to it explicitly (EKS
        creates a grant on the key with this role when the cluster is created); with what the cluster
        must wait for (the managed policy and the key grant)."""
        role = aws.iam.Role(f"{name}-service-role", assume_role_policy=trust_policy("eks.amazonaws.com"), opts=child)
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-service-role",
            role=role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=child,
        )
        kms_grant = aws.iam.RolePolicy(
            f"{name}-service-role-kms",
            role=role.id,
            policy=key.arn.apply(
                lambda arn: allow_policy(
                    arn, ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey", "kms:CreateGrant"]
                )
            ),
            opts=child,
        )
        return role, (kms_grant, cluster_policy)

    @staticmethod
    def _eks(name: str, args: ClusterArgs, key: aws.kms.Key, role: aws.iam.Role, opts: ResourceOptions) -> eks.Cluster:
        c = args.cluster_name
        return eks.Cluster(
            f"{name}-eks",
            name=c,
            version=args.kubernetes_version,
            vpc_id=args.network.vpc_id,
            private_subnet_ids=args.network.private_subnet_ids,
            public_subnet_ids=args.network.public_subnet_ids,
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=admin_access_entries(args.admin_role_arns) or None,
            skip_default_node_group=True,
            # Nodes use the EKS-managed cluster security group; pulumi-eks's extra groups are for
            # self-managed node groups we do not have.
            skip_default_security_groups=True,
            create_instance_role=False,
            create_oidc_provider=False,  # Pod Identity instead of IRSA
            node_associate_public_ip_address=False,
            endpoint_private_access=True,
            endpoint_public_access=args.endpoint_public_access,
            public_access_cidrs=list(args.public_access_cidrs) or None,  # None: EKS default 0.0.0.0/0
            enabled_cluster_log_types=LOG_TYPES,
            encryption_config_key_arn=key.arn,
            service_role=role,
            # The vpc-cni add-on is ours (NetworkingAddons): pulumi-eks's cannot take a Pod Identity association.
            use_default_vpc_cni=True,
            # STANDARD: never slide into extended support (6x the control-plane price). The price of
            # that: at the version's end of standard support EKS upgrades the control plane to the
            # next minor on its own, and this program's `version` then asks for a downgrade EKS
            # refuses. Bump `kubernetes` in stacks/catalog/versions.yaml before that date.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            provider_credential_opts=eks.KubeconfigOptionsArgs(profile_name=args.aws_profile)
            if args.aws_profile
            else None,
            # Added as aws.eks.Addon after the system node group (nothing could schedule them before).
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(enabled=False),
            tags={"karpenter.sh/discovery": c},
            opts=opts,
        )


def admin_access_entries(admin_role_arns: tuple[str, ...]) -> dict[str, eks.AccessEntryArgs]:
    """Cluster-admin access for each admin role."""
    return {
        f"admin-{i}": eks.AccessEntryArgs(
            principal_arn=arn,
            type=eks.AccessEntryType.STANDARD,
            access_policies={
                "cluster-admin": eks.AccessPolicyAssociationArgs(
                    policy_arn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                )
            },
        )
        for i, arn in enumerate(admin_role_arns)
    }


class NetworkingAddons(pulumi.ComponentResource):
    """Pod Identity agent, then the VPC CNI with its own identity, both BEFORE any node exists: a new
    node gets pod IPs (aws-node, credentials from the agent) before CoreDNS or anything else runs."""

    def __init__(self, name: str, cluster_name: pulumi.Input[str], opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:NetworkingAddons", name, None, opts)
        child = ResourceOptions(parent=self)
        self.pod_identity_agent = aws.eks.Addon(
            f"{name}-eks-pod-identity-agent",
            cluster_name=cluster_name,
            addon_name="eks-pod-identity-agent",
            # Every node is tainted (system or accelerator); aws-node on each of them needs the agent.
            configuration_values=json.dumps({"tolerations": [{"operator": "Exists"}]}),
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=child,
        )
        role = aws.iam.Role(f"{name}-aws-node", assume_role_policy=pod_identity_trust(), opts=child)
        cni_policy = aws.iam.RolePolicyAttachment(f"{name}-aws-node", role=role.name, policy_arn=CNI_POLICY, opts=child)
        self.vpc_cni = aws.eks.Addon(
            f"{name}-vpc-cni",
            cluster_name=cluster_name,
            addon_name="vpc-cni",
            configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
            pod_identity_associations=[{"role_arn": role.arn, "service_account": "aws-node"}],
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=ResourceOptions(parent=self, depends_on=[self.pod_identity_agent, cni_policy]),
        )
        self.ready = (self.pod_identity_agent, self.vpc_cni)
        self.register_outputs({})


# ---- system node group ------------------------------------------------------------------------

# The ENI permissions live on the aws-node service account (NetworkingAddons), not on node roles.
CNI_POLICY = "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
WORKER_POLICIES = WORKER_NODE_POLICIES


@dataclass(frozen=True)
class SystemNodesArgs:
    cluster: ClusterHandle
    subnet_ids: pulumi.Input[list[str]]
    instance_types: tuple[str, ...]
    min_size: int = 2
    desired_size: int = 2
    max_size: int = 4
    disk_gib: int = 50
    after: tuple[pulumi.Resource, ...] = ()  # the networking add-ons (pod IPs before the first node)


def launch_template_metadata() -> dict:
    """IMDSv2 only, hop limit 1: pods cannot reach the node's instance credentials."""
    return {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1}


class SystemNodes(pulumi.ComponentResource):
    def __init__(self, name: str, args: SystemNodesArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:SystemNodes", name, None, opts)
        child = ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-role", assume_role_policy=trust_policy("ec2.amazonaws.com"), opts=child)
        attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-{p.rsplit('/', 1)[1]}", role=role.name, policy_arn=p, opts=child)
            for p in WORKER_POLICIES
        ]
        lt = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            metadata_options=launch_template_metadata(),
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {
                        "volume_size": args.disk_gib,
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            vpc_security_group_ids=[args.cluster.security_group_id],
            tag_specifications=[{"resource_type": "instance", "tags": {"Name": f"{name}-system"}}],
            opts=child,
        )
        k, v = SYSTEM_LABEL
        self.node_group = aws.eks.NodeGroup(
            f"{name}-ng",
            cluster_name=args.cluster.name,
            node_role_arn=role.arn,
            subnet_ids=args.subnet_ids,
            ami_type="AL2023_x86_64_STANDARD",
            capacity_type="ON_DEMAND",
            instance_types=list(args.instance_types),
            scaling_config={"min_size": args.min_size, "desired_size": args.desired_size, "max_size": args.max_size},
            update_config={"max_unavailable": 1},
            launch_template={"id": lt.id, "version": lt.latest_version.apply(str)},
            labels={k: v},
            # The same taint the system pods tolerate (types.taint), in the EKS API's spelling.
            taints=[{**taint(SYSTEM_TAINT), "effect": EKS_TAINT_EFFECT[taint(SYSTEM_TAINT)["effect"]]}],
            # Policies attached before the nodes join and detached only after they are gone.
            opts=ResourceOptions(
                parent=self, ignore_changes=["scalingConfig.desiredSize"], depends_on=[*attachments, *args.after]
            ),
        )
        self.handle = SystemNodesHandle(node_group=self.node_group, label_key=k, label_value=v, taint_key=SYSTEM_TAINT)
        self.register_outputs({"node_group": self.node_group.node_group_name})


# ---- add-ons ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddonsArgs:
    cluster: ClusterHandle
    system_nodes: SystemNodesHandle
    pod_identity_agent: pulumi.Resource  # NetworkingAddons: CSI drivers get their roles through it
    # Add-on versions: unset = the EKS default for the cluster's Kubernetes version (pinned there).
    versions: dict[str, str] = field(default_factory=dict)
    # The resource metrics API (kubectl top, CPU HPAs): the EKS community add-on, on the system nodes.
    metrics_server: bool = False


def system_tolerations_config() -> str:
    return json.dumps({"tolerations": [tolerate(SYSTEM_TAINT)]})


class ClusterAddons(pulumi.ComponentResource):
    """CoreDNS, kube-proxy, EBS/EFS CSI (Pod Identity roles), node monitoring agent."""

    def __init__(self, name: str, args: AddonsArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:ClusterAddons", name, None, opts)
        after_nodes = [args.system_nodes.node_group]
        self.addons: dict[str, aws.eks.Addon] = {}

        def addon(addon_name: str, *, depends=(), **kw) -> aws.eks.Addon:
            a = aws.eks.Addon(
                f"{name}-{addon_name}",
                cluster_name=args.cluster.name,
                addon_name=addon_name,
                addon_version=args.versions.get(addon_name),
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="OVERWRITE",
                # Nothing schedules before the system node group exists.
                opts=ResourceOptions(parent=self, depends_on=[*after_nodes, *depends]),
                **kw,
            )
            self.addons[addon_name] = a
            return a

        addon("kube-proxy")
        addon("coredns", configuration_values=system_tolerations_config())
        pod_identity = args.pod_identity_agent
        for driver, policy in (
            ("aws-ebs-csi-driver", "service-role/AmazonEBSCSIDriverPolicy"),
            ("aws-efs-csi-driver", "service-role/AmazonEFSCSIDriverPolicy"),
        ):
            role = aws.iam.Role(
                f"{name}-{driver}", assume_role_policy=pod_identity_trust(), opts=ResourceOptions(parent=self)
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-{driver}",
                role=role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                opts=ResourceOptions(parent=self),
            )
            sa = "ebs-csi-controller-sa" if "ebs" in driver else "efs-csi-controller-sa"
            addon(
                driver,
                depends=[pod_identity],
                pod_identity_associations=[{"role_arn": role.arn, "service_account": sa}],
            )
        addon("eks-node-monitoring-agent")
        if args.metrics_server:
            # No published configuration schema for this community add-on could be read offline; the
            # add-on is the upstream chart, whose values take `tolerations`. Confirm once with
            # `aws eks describe-addon-configuration --addon-name metrics-server --addon-version <v>`.
            addon("metrics-server", configuration_values=system_tolerations_config())
        self.coredns = self.addons["coredns"]
        self.register_outputs({})
