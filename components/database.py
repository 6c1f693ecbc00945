"""GatewayDatabase: Amazon RDS Postgres for LiteLLM's virtual keys, teams, budgets and spend.

Encrypted with the platform CMK, private subnets, Multi-AZ, 7-day backups, deletion protection that
follows `protectData`, TLS forced by the server and verified by the client (`sslmode=verify-full`
against the RDS CA bundle the gateway mounts), credentials kept in AWS Secrets Manager (CMK).

Credentials: the password is a Pulumi-generated secret (ServingKeys) written to a Secrets Manager
secret the program owns, in the RDS secret layout (`engine/host/port/dbname/username/password`).
Not the RDS-managed master secret (`manageMasterUserPassword`): RDS rotates that one every 7 days
by default, and without a secret syncer in the cluster (External Secrets / Secrets Store CSI are not
installed) the gateway's copy would go stale a week after `pulumi up`. The trade-off: the password
lives in Pulumi state, encrypted as a Pulumi secret, and in one Kubernetes Secret (`litellm`,
key `database-url`, KMS envelope-encrypted by EKS); no plaintext in a plan, a manifest or a log.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random
from pulumi import ResourceOptions

from components.types import tcp_ingress_from, trust_policy

DB_NAME = "litellm"
DB_USER = "litellm"
DB_PORT = 5432
BACKUP_DAYS = 7
SECRET_RECOVERY_DAYS = 7
# The CA RDS signs the server certificate with (its default since 2024, valid to 2061); pinned so
# the instance and the bundle the client trusts cannot drift apart.
CA_CERT_IDENTIFIER = "rds-ca-rsa2048-g1"


@dataclass(frozen=True)
class DatabaseArgs:
    cluster_name: str
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    client_security_group_id: pulumi.Input[str]
    engine_version: str
    instance_class: str
    allocated_storage_gib: int
    multi_az: bool
    password: pulumi.Input[str]
    # Where the gateway pod finds the RDS CA bundle (the client side of verify-full).
    ca_bundle_path: str
    # CMK for storage, Performance Insights and the Secrets Manager secret; None keeps AWS keys.
    kms_key_arn: pulumi.Input[str] | None = None
    # The exported Postgres log: its group's retention, and the CMK whose policy names the group
    # (postgres_log_group); None keeps CloudWatch's own encryption (team stacks have no logs key).
    log_retention_days: int = 365
    logs_key_arn: pulumi.Input[str] | None = None


# Postgres logging (the parameter group): schema changes always, any statement slower than this.
# Not `all`/`mod`: LiteLLM's writes carry hashed virtual keys and spend rows on every request.
LOG_STATEMENT = "ddl"
SLOW_STATEMENT_MS = 1000
# The final snapshot's name suffix: 4 random bytes (8 hex digits), new whenever the instance is created
# again. The final snapshot is kept on destroy, so a fixed name would make the next destroy of a rebuilt
# database fail with DBSnapshotAlreadyExists.
SNAPSHOT_SUFFIX_BYTES = 4
MONITORING_INTERVAL_S = 60  # enhanced monitoring (OS metrics), seconds
MONITORING_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"


def db_identifier(cluster_name: str) -> str:
    return f"{cluster_name}-litellm"


def postgres_log_group(cluster_name: str) -> str:
    """Where RDS exports the `postgresql` log (/aws/rds/instance/<identifier>/<log type>). Made by the
    program before the instance: RDS would create it itself, kept forever and without the CMK."""
    return f"/aws/rds/instance/{db_identifier(cluster_name)}/postgresql"


def db_parameters(engine_version: str) -> tuple[str, list[dict]]:
    """(parameter group family, parameters): `postgres16` for engine version 16 or 16.x."""
    family = f"postgres{engine_version.split('.')[0]}"
    return family, [
        {"name": "log_statement", "value": LOG_STATEMENT},
        {"name": "log_min_duration_statement", "value": str(SLOW_STATEMENT_MS)},
        # Refuse unencrypted client connections (the gateway connects with TLS; checkov CKV2_AWS_69).
        {"name": "rds.force_ssl", "value": "1"},
    ]


def monitoring_trust() -> str:
    return trust_policy("monitoring.rds.amazonaws.com")


def database_url(host: str, password: str, ca_bundle_path: str) -> str:
    """libpq spelling, which LiteLLM 1.106.12 translates for Prisma at start-up
    (proxy/db/db_url_settings.translate_libpq_ssl_params): verify-full + sslrootcert become
    `sslmode=require&sslcert=<the one root of the bundle that verifies this host>&sslaccept=strict`."""
    query = urllib.parse.urlencode({"sslmode": "verify-full", "sslrootcert": ca_bundle_path})
    user, pw = urllib.parse.quote(DB_USER, safe=""), urllib.parse.quote(password, safe="")
    return f"postgresql://{user}:{pw}@{host}:{DB_PORT}/{DB_NAME}?{query}"


def secret_document(host: str, password: str) -> str:
    """The Secrets Manager value, in the layout RDS and its rotation functions use."""
    return json.dumps(
        {
            "engine": "postgres",
            "host": host,
            "port": DB_PORT,
            "dbname": DB_NAME,
            "username": DB_USER,
            "password": password,
        },
        sort_keys=True,
    )


class GatewayDatabase(pulumi.ComponentResource):
    """Postgres for LiteLLM virtual keys, teams and budgets: encrypted, private, protected."""

    url: pulumi.Output[str]
    secret_arn: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:access:GatewayDatabase", name, None, opts)
        child = ResourceOptions(parent=self)
        protect = bool(opts and opts.protect)
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description="Postgres from EKS nodes only",
            ingress=[tcp_ingress_from(DB_PORT, args.client_security_group_id, "Postgres from EKS nodes (LiteLLM)")],
            tags={"Name": f"{args.cluster_name}-litellm-db"},
            opts=child,
        )
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, opts=child)
        family, parameters = db_parameters(args.engine_version)
        params = aws.rds.ParameterGroup(
            f"{name}-params",
            name=f"{args.cluster_name}-litellm",
            family=family,
            parameters=parameters,
            description=f"LiteLLM Postgres of {args.cluster_name}: DDL and slow-query logs",
            opts=child,
        )
        monitoring = aws.iam.Role(f"{name}-monitoring", assume_role_policy=monitoring_trust(), opts=child)
        monitoring_policy = aws.iam.RolePolicyAttachment(
            f"{name}-monitoring", role=monitoring.name, policy_arn=MONITORING_POLICY, opts=child
        )
        logs = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=postgres_log_group(args.cluster_name),
            retention_in_days=args.log_retention_days,
            kms_key_id=args.logs_key_arn,
            opts=child,
        )
        placement = {"db_subnet_group_name": subnets.name, "vpc_security_group_ids": [sg.id]}
        suffix = self._snapshot_suffix(name, args, protect)
        db = self._postgres(
            name,
            args,
            placement,
            params,
            monitoring,
            suffix.hex,
            ResourceOptions(parent=self, protect=protect, depends_on=[monitoring_policy, logs]),
        )
        self.secret_arn = self._credentials(name, args, db, protect)
        self.url = pulumi.Output.secret(
            pulumi.Output.all(db.address, args.password).apply(lambda a: database_url(a[0], a[1], args.ca_bundle_path))
        )
        self.register_outputs({"secret_arn": self.secret_arn})

    @staticmethod
    def _postgres(
        name: str,
        args: DatabaseArgs,
        placement: dict,
        params: aws.rds.ParameterGroup,
        monitoring: aws.iam.Role,
        snapshot_suffix: pulumi.Output[str],
        opts: ResourceOptions,
    ) -> aws.rds.Instance:
        """The instance: encrypted (the platform CMK when given), private, backed up, monitored."""
        cmk = (
            {}
            if args.kms_key_arn is None
            else {"kms_key_id": args.kms_key_arn, "performance_insights_kms_key_id": args.kms_key_arn}
        )
        return aws.rds.Instance(
            f"{name}-postgres",
            identifier=db_identifier(args.cluster_name),
            engine="postgres",
            engine_version=args.engine_version,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage_gib,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=DB_NAME,
            username=DB_USER,
            password=args.password,
            ca_cert_identifier=CA_CERT_IDENTIFIER,
            publicly_accessible=False,
            multi_az=args.multi_az,
            deletion_protection=bool(opts.protect),
            backup_retention_period=BACKUP_DAYS,
            copy_tags_to_snapshot=True,
            skip_final_snapshot=False,
            final_snapshot_identifier=snapshot_suffix.apply(lambda h: f"{args.cluster_name}-litellm-final-{h}"),
            auto_minor_version_upgrade=True,
            iam_database_authentication_enabled=True,
            performance_insights_enabled=True,
            enabled_cloudwatch_logs_exports=["postgresql"],
            parameter_group_name=params.name,
            monitoring_interval=MONITORING_INTERVAL_S,
            monitoring_role_arn=monitoring.arn,
            **placement,
            **cmk,
            opts=opts,
        )

    def _snapshot_suffix(self, name: str, args: DatabaseArgs, protect: bool) -> random.RandomId:
        """Keyed on the inputs that replace the instance, so it changes exactly when a new instance is
        created (a fresh stack, or a replacement), never on an in-place update."""
        return random.RandomId(
            f"{name}-snapshot-suffix",
            byte_length=SNAPSHOT_SUFFIX_BYTES,
            keepers={
                "identifier": f"{args.cluster_name}-litellm",
                "dbName": DB_NAME,
                "username": DB_USER,
                **({} if args.kms_key_arn is None else {"kmsKeyArn": args.kms_key_arn}),
            },
            opts=ResourceOptions(parent=self, protect=protect),
        )

    def _credentials(self, name: str, args: DatabaseArgs, db: aws.rds.Instance, protect: bool) -> pulumi.Output[str]:
        """The credentials in Secrets Manager (RDS secret layout); the secret's ARN."""
        secret = aws.secretsmanager.Secret(
            f"{name}-credentials",
            # A prefix, not a fixed name: a deleted secret keeps its name for the recovery window,
            # and a stack torn down and rebuilt within it would fail on a fixed one.
            name_prefix=f"{args.cluster_name}-litellm-database-",
            description=f"LiteLLM Postgres credentials of {args.cluster_name} (RDS secret layout)",
            kms_key_id=args.kms_key_arn,
            recovery_window_in_days=SECRET_RECOVERY_DAYS,
            opts=ResourceOptions(parent=self, protect=protect),
        )
        credentials: pulumi.Input[str] = pulumi.Output.all(db.address, args.password).apply(
            lambda a: secret_document(a[0], a[1])
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-credentials",
            secret_id=secret.id,
            secret_string=pulumi.Output.secret(credentials),
            opts=ResourceOptions(parent=self),
        )
        return secret.arn
