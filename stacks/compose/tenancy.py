"""Where keys go after Pulumi generates them: never into a stack output.

Every team stack must read the platform stack's outputs, so an output holding keys would be readable by
whoever can deploy any team. The outputs carry only where a key lives:
- platform stack: one Secrets Manager secret per gateway team (its keys as JSON), readable by that
  team's roles from `cluster.teamAccess` and by the deploying identity; the gateway's admin key in a
  secret readable by `cluster.adminRoleArns` and the deploying identity (components/access.py);
- team stack (no AWS resources): a Kubernetes Secret in the team's gateway namespace, where only the
  team's own roles (and cluster admins) have access; the admin key stays in the gateway's Secret.
"""

from __future__ import annotations

import functools
import json

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from components.access import ScopedSecret, ScopedSecretArgs
from components.litellm import SECRET_MASTER_KEY, SECRET_NAME
from components.serving_secrets import KeysSecret, KeysSecretArgs
from components.team_keys import TeamKeys
from stacks.config import StackIntent

TEAM_KEYS_SECRET = "litellm-team-keys"  # a team stack's keys, in its gateway namespace
ADMIN_KEY_OUTPUT = "gatewayAdminKey"
TEAM_KEYS_OUTPUT = "teamKeySecrets"


def delivered_teams(intent: StackIntent) -> tuple[str, ...]:
    """The gateway teams whose keys are handed out (Open WebUI's key stays in the cluster)."""
    return tuple(t for t in intent.config.gateway.teams if intent.config.gateway.teams[t].keys)


def team_readers(intent: StackIntent, team: str) -> tuple[str, ...]:
    """The IAM roles of `cluster.teamAccess.<team>`: none when the team has no cluster access (then
    only the deploying identity reads it and hands the keys over)."""
    access = intent.config.cluster.teamAccess.get(team)
    return tuple(access.principalArns) if access is not None else ()


def deployer_arn() -> pulumi.Output[str]:
    """The IAM role (or user) running `pulumi up`: an assumed-role session's issuer is its role."""
    caller = aws.get_caller_identity_output()
    return aws.iam.get_session_context_output(arn=caller.arn).issuer_arn


def _team_json(team: str, by_team: dict) -> str:
    return json.dumps(by_team.get(team, {}), sort_keys=True)


def platform_secrets(
    intent: StackIntent, kms_key_arn: pulumi.Input[str], master_key: pulumi.Output[str], team_keys: TeamKeys | None
) -> dict:
    deployer = deployer_arn()
    admin = ScopedSecret(
        "gateway-admin-key",
        ScopedSecretArgs(
            cluster_name=intent.cluster_name,
            purpose="gateway-admin-key",
            value=master_key,
            kms_key_arn=kms_key_arn,
            readers=tuple(intent.config.cluster.adminRoleArns),
            deployer_arn=deployer,
        ),
    )
    teams: dict[str, pulumi.Output[str]] = {}
    by_team = team_keys.by_team if team_keys is not None else pulumi.Output.from_input({})
    for team in delivered_teams(intent) if team_keys is not None else ():
        teams[team] = ScopedSecret(
            f"team-{team}-keys",
            ScopedSecretArgs(
                cluster_name=intent.cluster_name,
                purpose=f"team-{team}-keys",
                value=by_team.apply(functools.partial(_team_json, team)),
                kms_key_arn=kms_key_arn,
                readers=team_readers(intent, team),
                deployer_arn=deployer,
            ),
        ).arn
    return {
        ADMIN_KEY_OUTPUT: {"secretsManagerArn": admin.arn},
        TEAM_KEYS_OUTPUT: {t: {"secretsManagerArn": arn} for t, arn in teams.items()},
    }


def team_stack_secrets(
    intent: StackIntent, gateway_ns: str, team_keys: TeamKeys | None, after: tuple[pulumi.Resource, ...], opts
) -> dict:
    teams = delivered_teams(intent) if team_keys is not None else ()
    if teams and team_keys is not None:
        values = team_keys.by_team.apply(lambda t: {f"{team}.json": json.dumps(t[team]) for team in teams})
        KeysSecret("team-keys-delivery", KeysSecretArgs(gateway_ns, TEAM_KEYS_SECRET, values, after), opts=opts)
    where = f"{gateway_ns}/{TEAM_KEYS_SECRET}"
    return {
        ADMIN_KEY_OUTPUT: {"kubernetesSecret": f"{gateway_ns}/{SECRET_NAME}", "key": SECRET_MASTER_KEY},
        TEAM_KEYS_OUTPUT: {t: {"kubernetesSecret": where, "key": f"{t}.json"} for t in teams},
    }


def deliver(
    intent: StackIntent,
    kms_key_arn: pulumi.Input[str] | None,
    gateway_ns: str,
    master_key: pulumi.Output[str],
    team_keys: TeamKeys | None,
    after: tuple[pulumi.Resource, ...],
    opts: ResourceOptions,
) -> dict:
    """The stack outputs that say where the admin key and each team's keys are (no key material)."""
    if intent.is_team_stack or kms_key_arn is None:
        return team_stack_secrets(intent, gateway_ns, team_keys, after, opts)
    return platform_secrets(intent, kms_key_arn, master_key, team_keys)
