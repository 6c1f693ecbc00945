"""TeamReconciler: after each deploy, a Job brings LiteLLM's teams and virtual keys (database path)
in line with the stack config by calling the gateway's management API in-cluster.

The script (`reconcile.py`, standard library only) and the desired state (JSON, no secrets) ship in a
ConfigMap; key values in a Secret; the master key from the gateway's Secret by env. No value is
interpolated into a shell: the container runs `python <script>`. The Job's name carries a hash of
the desired state, the script and the image, so a config change creates a new Job (and Pulumi waits
for it to complete: a failed reconcile fails `pulumi up`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import (
    GATEWAY_PORT,
    GATEWAY_SELECTOR,
    ImagePin,
    checkov_skips,
    container_security,
    image_skips,
    pod_security,
    tolerate,
)

# The in-pod script ships as a file; the program never imports it.
SCRIPT = Path(__file__).resolve().parent.parent / "incluster" / "reconciler" / "reconcile.py"
SELECTOR = {"app.kubernetes.io/name": "litellm-reconciler"}
CODE_DIR = "/opt/reconciler"
KEYS_DIR = "/etc/reconciler-keys"
KEYS_SECRET = "litellm-team-keys"
DEADLINE_S = 300  # the whole Job: a few dozen HTTP calls against an in-cluster gateway
BACKOFF = 2
CHECKOV_SKIPS = {
    "CKV_K8S_35": "the reconciler reads the LiteLLM master key from env only",
    "CKV_K8S_11": "a short Job; CPU requests are set",
}

__all__ = [
    "DesiredTeam",
    "ReconcilerArgs",
    "TeamReconciler",
    "desired_json",
    "job_name",
    "key_alias",
    "render_reconciler_job",
]


@dataclass(frozen=True)
class DesiredTeam:
    """One team as the stack config declares it (the reconciler's whole input, with key values aside)."""

    name: str
    models: tuple[str, ...]
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    max_budget: float | None = None
    budget_duration: str | None = None
    keys: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "models": list(self.models),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "maxParallel": self.max_parallel,
            "maxBudget": self.max_budget,
            "budgetDuration": self.budget_duration,
            "keys": [key_alias(self.name, k) for k in self.keys],
        }


def key_alias(team: str, key: str) -> str:
    """`<team>/<key>`: '/' is in LiteLLM's key-alias alphabet and in no DNS-1123 name, so it is unambiguous."""
    return f"{team}/{key}"


def desired_json(teams: list[DesiredTeam] | tuple[DesiredTeam, ...]) -> str:
    """The ConfigMap payload: stable (sorted) so its hash names the Job."""
    return json.dumps({"teams": [t.to_json() for t in sorted(teams, key=lambda t: t.name)]}, sort_keys=True)


@dataclass(frozen=True)
class ReconcilerArgs:
    namespace: str
    image: ImagePin
    gateway_url: str  # the gateway Service in-cluster (service_host() and GATEWAY_PORT)
    master_key_secret: tuple[str, str]  # (Secret name, key) of the gateway's master key
    teams: tuple[DesiredTeam, ...]
    system_taint: str
    key_values: pulumi.Input[dict[str, str]] | None = None  # {"<team>/<key>": "sk-..."} (secret)
    after: tuple[pulumi.Resource, ...] = ()


def job_name(desired: str, script: str, image_ref: str) -> str:
    digest = hashlib.sha256("\0".join((desired, script, image_ref)).encode()).hexdigest()[:10]
    return f"litellm-reconcile-{digest}"


def render_reconciler_job(args: ReconcilerArgs, *, config_map: str, keys_secret: str | None) -> dict:
    """The Job spec: restricted pod, no shell, no service-account token, code and desired state
    read-only, key values read-only, master key by env."""
    if args.image.user is None:
        raise ValueError(f"{args.image.ref}: the catalog row needs `user:`")
    uid = args.image.user
    env = [
        {"name": "LITELLM_URL", "value": args.gateway_url},
        {
            "name": "LITELLM_MASTER_KEY",
            "valueFrom": {"secretKeyRef": {"name": args.master_key_secret[0], "key": args.master_key_secret[1]}},
        },
        {"name": "RECONCILE_DESIRED", "value": f"{CODE_DIR}/desired.json"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
    ]
    mounts = [{"name": "code", "mountPath": CODE_DIR, "readOnly": True}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict] = [
        {"name": "code", "configMap": {"name": config_map}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
    ]
    if keys_secret is not None:
        env.append({"name": "RECONCILE_KEYS", "value": f"{KEYS_DIR}/keys.json"})
        mounts.append({"name": "keys", "mountPath": KEYS_DIR, "readOnly": True})
        volumes.append({"name": "keys", "secret": {"secretName": keys_secret}})
    return {
        "backoffLimit": BACKOFF,
        "activeDeadlineSeconds": DEADLINE_S,
        "template": {
            "metadata": {"labels": SELECTOR},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "serviceAccountName": "litellm-reconciler",
                "securityContext": pod_security(uid),
                "tolerations": [tolerate(args.system_taint)],
                "containers": [
                    {
                        "name": "reconcile",
                        "image": args.image.ref,
                        "command": ["python", f"{CODE_DIR}/reconcile.py"],
                        "env": env,
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
                        "securityContext": container_security(uid, read_only_root=True),
                        "volumeMounts": mounts,
                    }
                ],
                "volumes": volumes,
            },
        },
    }


def render_policies() -> dict[str, dict]:
    """The two paths the Job needs in the default-deny gateway namespace (DNS is already allowed)."""
    port = [{"protocol": "TCP", "port": GATEWAY_PORT}]
    return {
        "reconciler-to-gateway": {
            "podSelector": {"matchLabels": SELECTOR},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": GATEWAY_SELECTOR}}], "ports": port}],
        },
        "gateway-from-reconciler": {
            "podSelector": {"matchLabels": GATEWAY_SELECTOR},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": SELECTOR}}], "ports": port}],
        },
    }


class TeamReconciler(pulumi.ComponentResource):
    def __init__(self, name: str, args: ReconcilerArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:TeamReconciler", name, None, opts)
        after = list(args.after)
        ns = args.namespace
        child = ResourceOptions(parent=self, depends_on=after)
        desired, script = desired_json(args.teams), SCRIPT.read_text(encoding="utf-8")
        jname = job_name(desired, script, args.image.ref)
        cm = k8s.core.v1.ConfigMap(
            f"{name}-code",
            metadata={"name": jname, "namespace": ns},
            data={"reconcile.py": script, "desired.json": desired},
            opts=child,
        )
        keys = self._keys_secret(name, args, child)
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={"name": "litellm-reconciler", "namespace": ns},
            automount_service_account_token=False,
            opts=child,
        )
        policies = [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{pname}", metadata={"name": pname, "namespace": ns}, spec=spec, opts=child
            )
            for pname, spec in render_policies().items()
        ]
        k8s.batch.v1.Job(
            f"{name}-job",
            metadata={
                "name": jname,
                "namespace": ns,
                "labels": SELECTOR,
                "annotations": {
                    # a failed reconcile is re-run by the next `pulumi up` (not awaited forever)
                    "pulumi.com/replaceUnready": "true",
                    **checkov_skips({**CHECKOV_SKIPS, **image_skips(args.image.ref)}),
                },
            },
            spec=job_spec(args, jname, keys is not None),
            opts=ResourceOptions(
                parent=self,
                depends_on=[cm, sa, *policies, *([keys] if keys else []), *after],
                delete_before_replace=True,
            ),
        )
        self.job_name = jname
        self.register_outputs({})

    @staticmethod
    def _keys_secret(name: str, args: ReconcilerArgs, child: ResourceOptions) -> k8s.core.v1.Secret | None:
        """The team key values the Job registers (a Secret), when there are any."""
        if args.key_values is None:
            return None
        key_document: pulumi.Input[str] = pulumi.Output.from_input(args.key_values).apply(
            lambda v: json.dumps(v, sort_keys=True)
        )
        return k8s.core.v1.Secret(
            f"{name}-keys",
            metadata={"name": KEYS_SECRET, "namespace": args.namespace},
            type="Opaque",
            string_data={
                "keys.json": pulumi.Output.secret(key_document),
            },
            opts=child,
        )


def job_spec(args: ReconcilerArgs, config_map: str, with_keys: bool) -> dict:
    """The Job spec; with keys, its pod template carries the digest of their values."""
    spec = render_reconciler_job(args, config_map=config_map, keys_secret=KEYS_SECRET if with_keys else None)
    if with_keys:
        # A rotated key value alone changes no name: the pod template's hash annotation changes,
        # the template is immutable, so the Job is replaced (deleted first, same name).
        # Unsecret on purpose: a secret anywhere in the spec hides the whole Job from review, and
        # the digest of random keys tells nothing (LiteLLM itself stores each key's sha256).
        spec["template"]["metadata"]["annotations"] = {
            "llm-serving/keys-sha256": pulumi.Output.unsecret(
                pulumi.Output.from_input(args.key_values).apply(
                    lambda v: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()
                )
            )
        }
    return spec
