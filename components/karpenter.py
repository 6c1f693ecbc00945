"""Karpenter: AWS plane (IAM, interruption queue, access entry) and Kubernetes plane (Helm releases).

The controller policies are the upstream getting-started policy set for Karpenter 1.x, written as
data (`controller_policies`) so tests and the offline plan see every statement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import (
    WORKER_NODE_POLICIES,
    ChartPin,
    ClusterHandle,
    CrdsHandle,
    KarpenterIamHandle,
    SystemNodesHandle,
    pod_identity_trust,
    policy_document,
    tolerate,
    trust_policy,
)

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"
NODE_POLICIES = WORKER_NODE_POLICIES
# (source, detail-type) of the EventBridge rules that feed the interruption queue.
INTERRUPTION_EVENTS = (
    ("health", "aws.health", "AWS Health Event"),
    ("spot-interruption", "aws.ec2", "EC2 Spot Instance Interruption Warning"),
    ("rebalance", "aws.ec2", "EC2 Instance Rebalance Recommendation"),
    ("state-change", "aws.ec2", "EC2 Instance State-change Notification"),
    ("capacity-reservation", "aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning"),
)


_doc = policy_document


def controller_policies(
    *, partition: str, region: str, account: str, cluster: str, node_role_arn: str, queue_arn: str
) -> dict[str, dict]:
    """The six controller policies, by name, as IAM policy documents."""
    p, r, a, c = partition, region, account, cluster
    ec2 = f"arn:{p}:ec2:{r}"
    owned = {f"aws:ResourceTag/kubernetes.io/cluster/{c}": "owned"}
    req_owned = {f"aws:RequestTag/kubernetes.io/cluster/{c}": "owned", "aws:RequestTag/eks:eks-cluster-name": c}
    created = [
        f"{ec2}:*:{t}/*"
        for t in ("fleet", "instance", "volume", "network-interface", "launch-template", "spot-instances-request")
    ]
    cluster_arn = f"arn:{p}:eks:{r}:{a}:cluster/{c}"
    profile = f"arn:{p}:iam::{a}:instance-profile/*"
    return {
        "NodeLifecycle": _doc(
            {
                "Sid": "AllowScopedEC2InstanceAccessActions",
                "Effect": "Allow",
                "Resource": [
                    f"{ec2}::image/*",
                    f"{ec2}::snapshot/*",
                    f"{ec2}:*:security-group/*",
                    f"{ec2}:*:subnet/*",
                    f"{ec2}:*:capacity-reservation/*",
                    f"{ec2}:*:placement-group/*",
                ],
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
            },
            {
                "Sid": "AllowScopedEC2LaunchTemplateAccessActions",
                "Effect": "Allow",
                "Resource": f"{ec2}:*:launch-template/*",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}},
            },
            {
                "Sid": "AllowScopedEC2InstanceActionsWithTags",
                "Effect": "Allow",
                "Resource": created,
                "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
                "Condition": {"StringEquals": req_owned, "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}},
            },
            {
                "Sid": "AllowScopedResourceCreationTagging",
                "Effect": "Allow",
                "Resource": created,
                "Action": "ec2:CreateTags",
                "Condition": {
                    "StringEquals": {
                        **req_owned,
                        "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                    },
                    "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
                },
            },
            {
                "Sid": "AllowScopedResourceTagging",
                "Effect": "Allow",
                "Resource": f"{ec2}:*:instance/*",
                "Action": "ec2:CreateTags",
                "Condition": {
                    "StringEquals": owned,
                    "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                    "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": c},
                    "ForAllValues:StringEquals": {
                        "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                    },
                },
            },
            {
                "Sid": "AllowScopedDeletion",
                "Effect": "Allow",
                "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
                "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
                "Condition": {"StringEquals": owned, "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}},
            },
        ),
        "IAMIntegration": _doc(
            {
                "Sid": "AllowPassingInstanceRole",
                "Effect": "Allow",
                "Resource": node_role_arn,
                "Action": "iam:PassRole",
                "Condition": {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com"]}},
            },
            {
                "Sid": "AllowScopedInstanceProfileCreationActions",
                "Effect": "Allow",
                "Resource": profile,
                "Action": ["iam:CreateInstanceProfile"],
                "Condition": {
                    "StringEquals": {**req_owned, "aws:RequestTag/topology.kubernetes.io/region": r},
                    "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileTagActions",
                "Effect": "Allow",
                "Resource": profile,
                "Action": ["iam:TagInstanceProfile"],
                "Condition": {
                    "StringEquals": {
                        **owned,
                        "aws:ResourceTag/topology.kubernetes.io/region": r,
                        **req_owned,
                        "aws:RequestTag/topology.kubernetes.io/region": r,
                    },
                    "StringLike": {
                        "aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*",
                        "aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*",
                    },
                },
            },
            {
                "Sid": "AllowScopedInstanceProfileActions",
                "Effect": "Allow",
                "Resource": profile,
                "Action": [
                    "iam:AddRoleToInstanceProfile",
                    "iam:RemoveRoleFromInstanceProfile",
                    "iam:DeleteInstanceProfile",
                ],
                "Condition": {
                    "StringEquals": {**owned, "aws:ResourceTag/topology.kubernetes.io/region": r},
                    "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"},
                },
            },
            {
                "Sid": "AllowInstanceProfileReadActions",
                "Effect": "Allow",
                "Resource": profile,
                "Action": "iam:GetInstanceProfile",
            },
            {
                "Sid": "AllowUnscopedInstanceProfileListAction",
                "Effect": "Allow",
                "Resource": "*",
                "Action": "iam:ListInstanceProfiles",
            },
        ),
        "EKSIntegration": _doc(
            {
                "Sid": "AllowAPIServerEndpointDiscovery",
                "Effect": "Allow",
                "Resource": cluster_arn,
                "Action": "eks:DescribeCluster",
            }
        ),
        "Interruption": _doc(
            {
                "Sid": "AllowInterruptionQueueActions",
                "Effect": "Allow",
                "Resource": queue_arn,
                "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
            }
        ),
        "ZonalShift": _doc(
            {
                "Sid": "AllowZonalShiftReadActions",
                "Effect": "Allow",
                "Resource": "*",
                "Action": "arc-zonal-shift:GetManagedResource",
                "Condition": {"StringEquals": {"arc-zonal-shift:ResourceIdentifier": cluster_arn}},
            }
        ),
        "ResourceDiscovery": _doc(
            {
                "Sid": "AllowRegionalReadActions",
                "Effect": "Allow",
                "Resource": "*",
                "Action": [
                    "ec2:DescribeCapacityReservations",
                    "ec2:DescribeImages",
                    "ec2:DescribeInstances",
                    "ec2:DescribeInstanceStatus",
                    "ec2:DescribeInstanceTypeOfferings",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplates",
                    "ec2:DescribePlacementGroups",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSpotPriceHistory",
                    "ec2:DescribeSubnets",
                ],
                "Condition": {"StringEquals": {"aws:RequestedRegion": r}},
            },
            {
                "Sid": "AllowSSMReadActions",
                "Effect": "Allow",
                "Resource": f"arn:{p}:ssm:{r}::parameter/aws/service/*",
                "Action": "ssm:GetParameter",
            },
            {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Resource": "*", "Action": "pricing:GetProducts"},
        ),
    }


def queue_policy(queue_arn: str) -> dict:
    return _doc(
        {
            "Sid": "EC2InterruptionPolicy",
            "Effect": "Allow",
            "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
        },
        {
            "Sid": "DenyHTTP",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sqs:*",
            "Resource": queue_arn,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    )


@dataclass(frozen=True)
class KarpenterIamArgs:
    cluster: ClusterHandle
    cluster_name: str
    account_id: pulumi.Input[str]
    region: str
    partition: str = "aws"


class KarpenterIam(pulumi.ComponentResource):
    """Node role + instance profile + EC2_LINUX access entry; controller role (Pod Identity) with the
    upstream policies; SQS interruption queue with its policy and the five EventBridge rules."""

    def __init__(self, name: str, args: KarpenterIamArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:accelerators:KarpenterIam", name, None, opts)
        child = ResourceOptions(parent=self)
        c = args.cluster_name
        trust_ec2 = trust_policy("ec2.amazonaws.com")
        node_role = aws.iam.Role(
            f"{name}-node-role", name=f"KarpenterNodeRole-{c}", assume_role_policy=trust_ec2, opts=child
        )
        for pol in NODE_POLICIES:
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{pol.rsplit('/', 1)[1]}", role=node_role.name, policy_arn=pol, opts=child
            )
        profile = aws.iam.InstanceProfile(
            f"{name}-node-profile", name=f"KarpenterNodeInstanceProfile-{c}", role=node_role.name, opts=child
        )
        # Without an EC2_LINUX access entry, Karpenter's nodes never join an API-mode cluster.
        access = aws.eks.AccessEntry(
            f"{name}-node-access",
            cluster_name=args.cluster.name,
            principal_arn=node_role.arn,
            type="EC2_LINUX",
            opts=child,
        )

        queue = aws.sqs.Queue(
            f"{name}-interruption", name=c, message_retention_seconds=300, sqs_managed_sse_enabled=True, opts=child
        )
        aws.sqs.QueuePolicy(
            f"{name}-interruption",
            queue_url=queue.url,
            policy=queue.arn.apply(lambda arn: json.dumps(queue_policy(arn))),
            opts=child,
        )
        for rule_name, source, detail in INTERRUPTION_EVENTS:
            rule = aws.cloudwatch.EventRule(
                f"{name}-{rule_name}",
                event_pattern=json.dumps({"source": [source], "detail-type": [detail]}),
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{rule_name}",
                rule=rule.name,
                target_id="KarpenterInterruptionQueueTarget",
                arn=queue.arn,
                opts=child,
            )

        controller = aws.iam.Role(
            f"{name}-controller",
            name=f"KarpenterControllerRole-{c}",
            assume_role_policy=pod_identity_trust(),
            opts=child,
        )
        docs = pulumi.Output.all(node_role.arn, queue.arn, args.account_id).apply(
            lambda a: controller_policies(
                partition=args.partition,
                region=args.region,
                account=a[2],
                cluster=c,
                node_role_arn=a[0],
                queue_arn=a[1],
            )
        )
        policies = []
        for pname in (
            "NodeLifecycle",
            "IAMIntegration",
            "EKSIntegration",
            "Interruption",
            "ZonalShift",
            "ResourceDiscovery",
        ):

            def policy_json(d: dict, n: str = pname) -> str:
                return json.dumps(d[n])

            policies.append(
                aws.iam.RolePolicy(
                    f"{name}-{pname}",
                    name=f"KarpenterController{pname}Policy",
                    role=controller.id,
                    policy=docs.apply(policy_json),
                    opts=child,
                )
            )
        assoc = aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity",
            cluster_name=args.cluster.name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role_arn=controller.arn,
            opts=child,
        )
        self.node_role_name = node_role.name
        self.instance_profile_name = profile.name
        self.queue_name = queue.name
        self.handle = KarpenterIamHandle(
            node_role_name=node_role.name,
            controller_role_arn=controller.arn,
            interruption_queue_name=queue.name,
            ready=(access, assoc, *policies),
        )
        self.register_outputs({"node_role_name": self.node_role_name, "queue_name": self.queue_name})


def karpenter_values(*, cluster_name: str, queue_name: str, system: SystemNodesHandle) -> dict:
    return {
        "replicas": 2,
        "settings": {
            "clusterName": cluster_name,
            "interruptionQueue": queue_name,
            "featureGates": {"nodeRepair": True},
        },
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        # On the system node group, never on nodes Karpenter itself manages.
        "nodeSelector": {system.label_key: system.label_value},
        "tolerations": [tolerate(system.taint_key)],
        "podDisruptionBudget": {"name": "karpenter", "maxUnavailable": 1},
        "controller": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
    }


@dataclass(frozen=True)
class KarpenterArgs:
    cluster_name: str
    iam: KarpenterIamHandle
    system_nodes: SystemNodesHandle
    crd_chart: ChartPin
    chart: ChartPin
    after: tuple[pulumi.Resource, ...] = ()  # the Pod Identity agent and CoreDNS add-ons


class Karpenter(pulumi.ComponentResource):
    """`karpenter-crd` then `karpenter` (CRDs skipped), controller on the system node group."""

    def __init__(self, name: str, args: KarpenterArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:accelerators:Karpenter", name, None, opts)
        crds = k8s.helm.v3.Release(
            f"{name}-crd",
            name="karpenter-crd",
            chart=f"{args.crd_chart.repo}/{args.crd_chart.chart}",
            version=args.crd_chart.version,
            namespace=NAMESPACE,
            opts=ResourceOptions(parent=self),
        )
        values = pulumi.Output.from_input(args.iam.interruption_queue_name).apply(
            lambda q: karpenter_values(cluster_name=args.cluster_name, queue_name=q, system=args.system_nodes)
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-controller",
            name="karpenter",
            chart=f"{args.chart.repo}/{args.chart.chart}",
            version=args.chart.version,
            namespace=NAMESPACE,
            skip_crds=True,
            values=values,
            # The controller runs on the system nodes and needs its IAM, access entry and Pod Identity.
            opts=ResourceOptions(
                parent=self, depends_on=[crds, args.system_nodes.node_group, *args.iam.ready, *args.after]
            ),
        )
        self.crds = CrdsHandle(release=self.release)
        self.register_outputs({"release": self.release.name})
