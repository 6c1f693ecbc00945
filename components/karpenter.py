"""Karpenter: AWS plane (IAM, interruption queue, access entry) and Kubernetes plane (Helm releases).

The controller policies are the upstream getting-started policy set for Karpenter 1.x, kept as data
(karpenter_controller_policies.json) so tests and the offline plan see every statement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from string import Template

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
    global_name,
    pod_identity_trust,
    policy_document,
    tolerate,
    trust_policy,
)

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "karpenter"
NODE_POLICIES = WORKER_NODE_POLICIES
# IAM names are account-global: each gets the cluster name and region (components.types.global_name).
NODE_ROLE_PREFIX = "KarpenterNodeRole"
NODE_PROFILE_PREFIX = "KarpenterNodeInstanceProfile"
CONTROLLER_ROLE_PREFIX = "KarpenterControllerRole"
# (source, detail-type) of the EventBridge rules that feed the interruption queue.
INTERRUPTION_EVENTS = (
    ("health", "aws.health", "AWS Health Event"),
    ("spot-interruption", "aws.ec2", "EC2 Spot Instance Interruption Warning"),
    ("rebalance", "aws.ec2", "EC2 Instance Rebalance Recommendation"),
    ("state-change", "aws.ec2", "EC2 Instance State-change Notification"),
    ("capacity-reservation", "aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning"),
)


# The upstream controller policy set as data: six IAM documents, by name, with `${...}` placeholders.
CONTROLLER_POLICIES = Path(__file__).resolve().with_name("karpenter_controller_policies.json")
# Their names (the file's top-level keys carry no placeholder): one inline role policy each.
CONTROLLER_POLICY_NAMES = tuple(json.loads(CONTROLLER_POLICIES.read_text(encoding="utf-8")))


def controller_policies(
    *, partition: str, region: str, account: str, cluster: str, node_role_arn: str, queue_arn: str
) -> dict[str, dict]:
    """The six controller policies, by name, as IAM policy documents. Each value is JSON-escaped
    into the file's text; a placeholder without a value raises rather than reaching IAM."""
    values = {
        "partition": partition,
        "region": region,
        "account": account,
        "cluster": cluster,
        "node_role_arn": node_role_arn,
        "queue_arn": queue_arn,
    }
    escaped = {k: json.dumps(v)[1:-1] for k, v in values.items()}
    return json.loads(Template(CONTROLLER_POLICIES.read_text(encoding="utf-8")).substitute(escaped))


def queue_policy(queue_arn: str) -> dict:
    return policy_document(
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
        node_role, profile, access = self._node_role(name, args, child)
        queue = self._interruption_queue(name, args.cluster_name, child)
        controller, policies = self._controller_role(name, args, node_role, queue, child)
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

    @staticmethod
    def _node_role(
        name: str, args: KarpenterIamArgs, child: ResourceOptions
    ) -> tuple[aws.iam.Role, aws.iam.InstanceProfile, aws.eks.AccessEntry]:
        """The role Karpenter's nodes run as, its instance profile, and its access entry."""
        c = args.cluster_name
        trust_ec2 = trust_policy("ec2.amazonaws.com")
        node_role = aws.iam.Role(
            f"{name}-node-role",
            name=global_name(NODE_ROLE_PREFIX, c, args.region),
            assume_role_policy=trust_ec2,
            opts=child,
        )
        for pol in NODE_POLICIES:
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{pol.rsplit('/', 1)[1]}", role=node_role.name, policy_arn=pol, opts=child
            )
        profile = aws.iam.InstanceProfile(
            f"{name}-node-profile",
            name=global_name(NODE_PROFILE_PREFIX, c, args.region),
            role=node_role.name,
            opts=child,
        )
        # Without an EC2_LINUX access entry, Karpenter's nodes never join an API-mode cluster.
        access = aws.eks.AccessEntry(
            f"{name}-node-access",
            cluster_name=args.cluster.name,
            principal_arn=node_role.arn,
            type="EC2_LINUX",
            opts=child,
        )
        return node_role, profile, access

    @staticmethod
    def _interruption_queue(name: str, cluster_name: str, child: ResourceOptions) -> aws.sqs.Queue:
        """The SQS queue the EventBridge interruption rules feed, and the controller drains."""
        queue = aws.sqs.Queue(
            f"{name}-interruption",
            name=cluster_name,
            message_retention_seconds=300,
            sqs_managed_sse_enabled=True,
            opts=child,
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
        return queue

    @staticmethod
    def _controller_role(
        name: str, args: KarpenterIamArgs, node_role: aws.iam.Role, queue: aws.sqs.Queue, child: ResourceOptions
    ) -> tuple[aws.iam.Role, list[aws.iam.RolePolicy]]:
        """The controller's role (Pod Identity) with one inline policy per upstream document."""
        controller = aws.iam.Role(
            f"{name}-controller",
            name=global_name(CONTROLLER_ROLE_PREFIX, args.cluster_name, args.region),
            assume_role_policy=pod_identity_trust(),
            opts=child,
        )
        docs = pulumi.Output.all(node_role.arn, queue.arn, args.account_id).apply(
            lambda a: controller_policies(
                partition=args.partition,
                region=args.region,
                account=a[2],
                cluster=args.cluster_name,
                node_role_arn=a[0],
                queue_arn=a[1],
            )
        )

        def policy_json(n: str) -> pulumi.Output[str]:
            return docs.apply(lambda d: json.dumps(d[n]))

        policies = [
            aws.iam.RolePolicy(
                f"{name}-{pname}",
                name=f"KarpenterController{pname}Policy",
                role=controller.id,
                policy=policy_json(pname),
                opts=child,
            )
            for pname in CONTROLLER_POLICY_NAMES
        ]
        return controller, policies


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
