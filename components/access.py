"""Cluster access for teams: EKS access entries scoped to a team's namespaces, never cluster-wide.
And secrets a team (or the admins) alone may read: Secrets Manager, resource policy, KMS grants.

Each team role gets a STANDARD access entry and one access policy association: AmazonEKSEditPolicy
(or AmazonEKSViewPolicy) with `accessScope {type: namespace, namespaces: <the team's namespaces>}`.
The platform stack creates them (whoever can create access entries can grant cluster admin, so a
team's own stack must not hold that right).
"""

from __future__ import annotations

import hashlib
import json
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


# ---- secrets a team (or the admins) alone may read ------------------------------------------------

# How long a deleted secret can be restored (Secrets Manager allows 7-30 days).
SECRET_RECOVERY_DAYS = 7
# Secrets Manager decrypts a secret version with this encryption context key set to the secret's ARN.
SECRET_ARN_CONTEXT = "SecretARN"
READ_ACTIONS = ("secretsmanager:GetSecretValue",)
# What would let a principal change who may read, or swap the value: only the deployer may.
CHANGE_ACTIONS = (
    "secretsmanager:DeleteResourcePolicy",
    "secretsmanager:PutResourcePolicy",
    "secretsmanager:PutSecretValue",
    "secretsmanager:RotateSecret",
    "secretsmanager:UpdateSecret",
)


@dataclass(frozen=True)
class ScopedSecretArgs:
    """A Secrets Manager secret only `readers` (IAM role ARNs) and the deploying identity may read."""

    cluster_name: pulumi.Input[str]
    purpose: str  # part of the secret's name and description, e.g. "team-search-keys"
    value: pulumi.Input[str]  # the secret string (kept secret in state)
    kms_key_arn: pulumi.Input[str]  # the platform's data CMK
    readers: tuple[str, ...]
    deployer_arn: pulumi.Input[str]  # who runs `pulumi up` (an IAM role or user ARN): refresh reads the value


def render_secret_policy(readers: tuple[str, ...], deployer_arn: str) -> dict:
    """Allow the readers; deny reading to every other principal of the account, even one whose own
    IAM policy allows `secretsmanager:*` on every secret (an explicit deny wins), and deny changing
    this policy or the value to all but the deployer (else such a principal could rewrite the policy,
    then read)."""
    allowed = sorted({*readers, deployer_arn})
    statements: list[dict] = [
        {
            "Sid": "OnlyNamedReaders",
            "Effect": "Deny",
            "Principal": "*",
            "Action": list(READ_ACTIONS),
            "Resource": "*",
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": allowed}},
        },
        {
            "Sid": "OnlyTheDeployerChangesIt",
            "Effect": "Deny",
            "Principal": "*",
            "Action": list(CHANGE_ACTIONS),
            "Resource": "*",
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [deployer_arn]}},
        },
    ]
    if readers:
        statements.append(
            {
                "Sid": "NamedReaders",
                "Effect": "Allow",
                "Principal": {"AWS": sorted(readers)},
                "Action": [*READ_ACTIONS, "secretsmanager:DescribeSecret"],
                "Resource": "*",
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


class ScopedSecret(pulumi.ComponentResource):
    """The secret, its value, its resource policy, and a KMS grant per reader that lets it decrypt
    this secret alone (the grant is constrained to the secret's ARN in the encryption context)."""

    arn: pulumi.Output[str]

    def __init__(self, name: str, args: ScopedSecretArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:ScopedSecret", name, None, opts)
        child = ResourceOptions(parent=self)
        secret = aws.secretsmanager.Secret(
            f"{name}-secret",
            # A prefix: a deleted secret keeps its name for the recovery window.
            name_prefix=pulumi.Output.concat(args.cluster_name, f"-{args.purpose}-"),
            description=pulumi.Output.concat(args.purpose, " of ", args.cluster_name),
            kms_key_id=args.kms_key_arn,
            recovery_window_in_days=SECRET_RECOVERY_DAYS,
            opts=child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-value", secret_id=secret.id, secret_string=pulumi.Output.secret(args.value), opts=child
        )
        aws.secretsmanager.SecretPolicy(
            f"{name}-policy",
            secret_arn=secret.arn,
            policy=pulumi.Output.from_input(args.deployer_arn).apply(
                lambda d: json.dumps(render_secret_policy(args.readers, d))
            ),
            block_public_policy=True,
            opts=child,
        )
        for arn in args.readers:
            aws.kms.Grant(
                f"{name}-{role_key(arn)}",
                key_id=args.kms_key_arn,
                grantee_principal=arn,
                operations=["Decrypt"],
                constraints=[
                    aws.kms.GrantConstraintArgs(
                        encryption_context_subset=secret.arn.apply(lambda a: {SECRET_ARN_CONTEXT: a})
                    )
                ],
                opts=child,
            )
        self.arn = secret.arn
        self.register_outputs({"arn": secret.arn})
