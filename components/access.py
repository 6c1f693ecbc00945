"""Cluster access for teams: EKS access entries scoped to a team's namespaces, never cluster-wide.

Each team role gets a STANDARD access entry and one access policy association: AmazonEKSEditPolicy
(or AmazonEKSViewPolicy) with `accessScope {type: namespace, namespaces: <the team's namespaces>}`.
The platform stack creates them (whoever can create access entries can grant cluster admin, so a
team's own stack must not hold that right).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

# EKS access policies (arn:aws:eks::aws:cluster-access-policy/<name>). Teams get edit or view, each
# only in the team's namespaces; cluster admin stays with cluster.adminRoleArns.
ACCESS_POLICIES = {
    "edit": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy",
    "view": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy",
}


@dataclass(frozen=True)
class TeamAccessArgs:
    cluster_name: pulumi.Input[str]
    team: str
    principal_arns: tuple[str, ...]
    namespaces: tuple[str, ...]
    access: str = "edit"  # a key of ACCESS_POLICIES
    after: tuple[pulumi.Resource, ...] = ()


def role_key(arn: str) -> str:
    """A stable resource-name part for a role: its name plus a short hash of the whole ARN (the same
    role name can exist under two paths or accounts)."""
    return f"{arn.rsplit('/', 1)[1].lower()[:40]}-{hashlib.sha256(arn.encode()).hexdigest()[:6]}"


def render_access_scope(namespaces: tuple[str, ...]) -> dict:
    return {"type": "namespace", "namespaces": list(namespaces)}


class TeamAccess(pulumi.ComponentResource):
    def __init__(self, name: str, args: TeamAccessArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:TeamAccess", name, None, opts)
        if not args.namespaces:
            raise ValueError(f"team {args.team}: access needs at least one namespace (never cluster scope)")
        for arn in args.principal_arns:
            key = role_key(arn)
            entry = aws.eks.AccessEntry(
                f"{name}-{key}",
                cluster_name=args.cluster_name,
                principal_arn=arn,
                type="STANDARD",
                tags={"llm-serving/team": args.team},
                opts=ResourceOptions(parent=self, depends_on=list(args.after)),
            )
            aws.eks.AccessPolicyAssociation(
                f"{name}-{key}-{args.access}",
                cluster_name=args.cluster_name,
                principal_arn=entry.principal_arn,
                policy_arn=ACCESS_POLICIES[args.access],
                access_scope=render_access_scope(args.namespaces),
                opts=ResourceOptions(parent=self),
            )
        self.register_outputs({})
