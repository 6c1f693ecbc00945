"""EKS control plane (pulumi-eks), the system node group for controllers, and the EKS add-ons."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
from pulumi import ResourceOptions

from components.types import SYSTEM_TAINT, ClusterHandle, NetworkHandle, SystemNodesHandle

LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
SYSTEM_LABEL = ("llm-serving/node-role", "system")


def trust_policy(service: str, *, tag_session: bool = False) -> str:
    actions = ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}]})


def pod_identity_trust() -> str:
    """EKS Pod Identity: the agent assumes the role for a (namespace, service account) association."""
    return trust_policy("pods.eks.amazonaws.com", tag_session=True)


def kms_key_policy(account_id: str) -> str:
    """Key administration by the account (IAM decides who); no wildcard principal."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "AccountAdministers", "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "kms:*", "Resource": "*"}]})


# ---- control plane ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    kubernetes_version: str
    network: NetworkHandle
    account_id: pulumi.Input[str]
    admin_role_arns: tuple[str, ...] = ()
    endpoint_public_access: bool = False
    public_access_cidrs: tuple[str, ...] = ()
    log_retention_days: int = 90


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:Cluster", name, None, opts)
        child = ResourceOptions(parent=self)
        c = args.cluster_name
        key = aws.kms.Key(f"{name}-secrets-key", description=f"EKS secrets envelope encryption for {c}",
                          enable_key_rotation=True, deletion_window_in_days=30,
                          policy=pulumi.Output.from_input(args.account_id).apply(kms_key_policy), opts=child)
        aws.kms.Alias(f"{name}-secrets-key", name=f"alias/{c}-eks-secrets", target_key_id=key.key_id, opts=child)
        # Our own cluster role, so the envelope-encryption key can be granted to it explicitly (EKS
        # creates a grant on the key with this role when the cluster is created).
        role = aws.iam.Role(f"{name}-service-role", assume_role_policy=trust_policy("eks.amazonaws.com"), opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-service-role", role=role.name,
                                     policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy", opts=child)
        kms_grant = aws.iam.RolePolicy(f"{name}-service-role-kms", role=role.id, policy=key.arn.apply(
            lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Resource": arn,
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey", "kms:CreateGrant"]}]})),
            opts=child)
        # EKS writes control-plane logs here; creating it first sets the retention (EKS would keep forever).
        logs = aws.cloudwatch.LogGroup(f"{name}-control-plane-logs", name=f"/aws/eks/{c}/cluster",
                                       retention_in_days=args.log_retention_days, opts=child)
        entries = {
            f"admin-{i}": eks.AccessEntryArgs(
                principal_arn=arn, type=eks.AccessEntryType.STANDARD,
                access_policies={"cluster-admin": eks.AccessPolicyAssociationArgs(
                    policy_arn="arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"))})
            for i, arn in enumerate(args.admin_role_arns)
        }
        self.cluster = eks.Cluster(
            f"{name}-eks",
            name=c,
            version=args.kubernetes_version,
            vpc_id=args.network.vpc_id,
            private_subnet_ids=args.network.private_subnet_ids,
            public_subnet_ids=args.network.public_subnet_ids,
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=entries or None,
            skip_default_node_group=True,
            # Nodes use the EKS-managed cluster security group; pulumi-eks's extra groups are for
            # self-managed node groups we do not have.
            skip_default_security_groups=True,
            create_instance_role=False,
            create_oidc_provider=False,  # Pod Identity instead of IRSA
            node_associate_public_ip_address=False,
            endpoint_private_access=True,
            endpoint_public_access=args.endpoint_public_access,
            public_access_cidrs=list(args.public_access_cidrs) or None,
            enabled_cluster_log_types=LOG_TYPES,
            encryption_config_key_arn=key.arn,
            service_role=role,
            vpc_cni_options=eks.VpcCniOptionsArgs(enable_network_policy=True),
            # Added as aws.eks.Addon after the system node group (nothing could schedule them before).
            coredns_addon_options=eks.CoreDnsAddonOptionsArgs(enabled=False),
            kube_proxy_addon_options=eks.KubeProxyAddonOptionsArgs(enabled=False),
            tags={"karpenter.sh/discovery": c},
            opts=ResourceOptions(parent=self, depends_on=[logs, kms_grant]),
        )
        ec = self.cluster.eks_cluster
        self.name = ec.name
        self.kubeconfig = pulumi.Output.secret(self.cluster.kubeconfig_json)
        self.handle = ClusterHandle(
            name=ec.name, arn=ec.arn, endpoint=ec.endpoint,
            security_group_id=ec.vpc_config.cluster_security_group_id,
            kubeconfig=self.kubeconfig,
        )
        self.register_outputs({"name": self.name, "kubeconfig": self.kubeconfig})


# ---- system node group ------------------------------------------------------------------------

WORKER_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
)


@dataclass(frozen=True)
class SystemNodesArgs:
    cluster: ClusterHandle
    subnet_ids: pulumi.Input[list[str]]
    instance_types: tuple[str, ...]
    min_size: int = 2
    desired_size: int = 2
    max_size: int = 4
    disk_gib: int = 50


def launch_template_metadata() -> dict:
    """IMDSv2 only, hop limit 1: pods cannot reach the node's instance credentials."""
    return {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1}


class SystemNodes(pulumi.ComponentResource):
    def __init__(self, name: str, args: SystemNodesArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:SystemNodes", name, None, opts)
        child = ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-role", assume_role_policy=trust_policy("ec2.amazonaws.com"), opts=child)
        for p in WORKER_POLICIES:
            aws.iam.RolePolicyAttachment(f"{name}-{p.rsplit('/', 1)[1]}", role=role.name, policy_arn=p, opts=child)
        lt = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            metadata_options=launch_template_metadata(),
            block_device_mappings=[{"device_name": "/dev/xvda", "ebs": {
                "volume_size": args.disk_gib, "volume_type": "gp3", "encrypted": "true",
                "delete_on_termination": "true"}}],
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
            taints=[{"key": SYSTEM_TAINT, "value": "true", "effect": "NO_SCHEDULE"}],
            opts=ResourceOptions(parent=self, ignore_changes=["scalingConfig.desiredSize"]),
        )
        self.handle = SystemNodesHandle(node_group=self.node_group, role_arn=role.arn, label_key=k,
                                        label_value=v, taint_key=SYSTEM_TAINT)
        self.register_outputs({"node_group": self.node_group.node_group_name})


# ---- add-ons ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddonsArgs:
    cluster: ClusterHandle
    system_nodes: SystemNodesHandle
    # Add-on versions: unset = the EKS default for the cluster's Kubernetes version (pinned there).
    versions: dict[str, str] = field(default_factory=dict)


def system_tolerations_config() -> str:
    return json.dumps({"tolerations": [{"key": SYSTEM_TAINT, "operator": "Exists", "effect": "NoSchedule"}]})


class ClusterAddons(pulumi.ComponentResource):
    """CoreDNS, kube-proxy, Pod Identity agent, EBS/EFS CSI (Pod Identity roles), node monitoring agent."""

    def __init__(self, name: str, args: AddonsArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:ClusterAddons", name, None, opts)
        after_nodes = [args.system_nodes.node_group]
        self.addons: dict[str, aws.eks.Addon] = {}

        def addon(addon_name: str, *, depends=(), **kw) -> aws.eks.Addon:
            a = aws.eks.Addon(
                f"{name}-{addon_name}", cluster_name=args.cluster.name, addon_name=addon_name,
                addon_version=args.versions.get(addon_name),
                resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                # Nothing schedules before the system node group exists.
                opts=ResourceOptions(parent=self, depends_on=[*after_nodes, *depends]), **kw)
            self.addons[addon_name] = a
            return a

        addon("kube-proxy")
        addon("coredns", configuration_values=system_tolerations_config())
        pod_identity = addon("eks-pod-identity-agent")
        for driver, policy in (("aws-ebs-csi-driver", "service-role/AmazonEBSCSIDriverPolicy"),
                               ("aws-efs-csi-driver", "service-role/AmazonEFSCSIDriverPolicy")):
            role = aws.iam.Role(f"{name}-{driver}", assume_role_policy=pod_identity_trust(),
                                opts=ResourceOptions(parent=self))
            aws.iam.RolePolicyAttachment(f"{name}-{driver}", role=role.name,
                                         policy_arn=f"arn:aws:iam::aws:policy/{policy}",
                                         opts=ResourceOptions(parent=self))
            sa = "ebs-csi-controller-sa" if "ebs" in driver else "efs-csi-controller-sa"
            addon(driver, depends=[pod_identity],
                  pod_identity_associations=[{"role_arn": role.arn, "service_account": sa}])
        addon("eks-node-monitoring-agent")
        self.pod_identity_agent = pod_identity
        self.register_outputs({})
