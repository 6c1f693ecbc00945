"""Storage: gp3 EBS StorageClass (default) and an EFS file system with an `efs-ap` StorageClass.

The EFS file system holds the shared model cache and Neuron compiled artifacts. With `protect`
(the stack's `cluster.protectData`, default true) `pulumi destroy` stops on it until it is
unprotected on purpose.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import VLLM_UID, ClusterHandle, NetworkHandle, StorageHandle

EBS_CLASS = "gp3"
EFS_CLASS = "efs"


def render_gp3_class() -> dict:
    return {
        "metadata": {"name": EBS_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "ebs.csi.aws.com",
        "parameters": {"type": "gp3", "encrypted": "true", "fsType": "ext4"},
        "volume_binding_mode": "WaitForFirstConsumer",
        "allow_volume_expansion": True,
        "reclaim_policy": "Delete",
    }


def render_efs_parameters(file_system_id: str) -> dict:
    # The access points own their directories as the UID model servers and the cache Job run as.
    return {
        "provisioningMode": "efs-ap",
        "fileSystemId": file_system_id,
        "directoryPerms": "750",
        "uid": str(VLLM_UID),
        "gid": str(VLLM_UID),
        "basePath": "/llm-serving",
    }


def efs_lifecycle_policies() -> list[dict]:
    """Cold weights move to Infrequent Access after 30 days and come back to Standard on their first
    read, so a model that is served again is not read at IA latency and per-GB charges forever."""
    return [{"transition_to_ia": "AFTER_30_DAYS"}, {"transition_to_primary_storage_class": "AFTER_1_ACCESS"}]


@dataclass(frozen=True)
class StorageArgs:
    cluster: ClusterHandle
    network: NetworkHandle
    # One mount target per private subnet (one subnet per AZ: EFS allows one mount target per AZ),
    # keyed by these stable names: the AZ names, or subnet-<index> for an existing VPC.
    mount_target_keys: tuple[str, ...]
    cluster_name: str
    kms_key_arn: pulumi.Input[str]  # customer-managed key for EFS encryption at rest
    protect: bool = True
    after: tuple[pulumi.Resource, ...] = ()  # the CSI driver add-ons


class Storage(pulumi.ComponentResource):
    def __init__(self, name: str, args: StorageArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:platform:Storage", name, None, opts)
        gp3 = k8s.storage.v1.StorageClass(
            f"{name}-gp3", **render_gp3_class(), opts=ResourceOptions(parent=self, depends_on=list(args.after))
        )
        fs, mounts = self._efs(name, args)
        efs_class = k8s.storage.v1.StorageClass(
            f"{name}-efs-class",
            metadata={"name": EFS_CLASS},
            provisioner="efs.csi.aws.com",
            parameters=fs.id.apply(render_efs_parameters),
            reclaim_policy="Retain",
            volume_binding_mode="Immediate",
            opts=ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.file_system_id = fs.id
        # PVCs on these classes wait for the classes and for NFS to be reachable in every AZ.
        self.handle = StorageHandle(
            efs_storage_class=EFS_CLASS,
            ebs_storage_class=EBS_CLASS,
            efs_file_system_id=fs.id,
            ready=(efs_class, gp3, *mounts),
        )
        self.register_outputs({"file_system_id": fs.id})

    def _efs(self, name: str, args: StorageArgs) -> tuple[aws.efs.FileSystem, list[aws.efs.MountTarget]]:
        """The encrypted file system, reachable over NFS from the nodes, one mount target per AZ."""
        child = ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(
            f"{name}-efs-sg",
            vpc_id=args.network.vpc_id,
            description="NFS from EKS nodes to EFS",
            ingress=[
                {
                    "protocol": "tcp",
                    "from_port": 2049,
                    "to_port": 2049,
                    "security_groups": [args.cluster.security_group_id],
                    "description": "NFS from nodes",
                }
            ],
            tags={"Name": f"{args.cluster_name}-efs"},
            opts=child,
        )
        fs = aws.efs.FileSystem(
            f"{name}-efs",
            encrypted=True,
            kms_key_id=args.kms_key_arn,
            throughput_mode="elastic",
            performance_mode="generalPurpose",
            lifecycle_policies=efs_lifecycle_policies(),
            tags={"Name": f"{args.cluster_name}-model-cache"},
            opts=ResourceOptions(parent=self, protect=args.protect),
        )
        subnets = pulumi.Output.from_input(args.network.private_subnet_ids)
        mounts = [
            aws.efs.MountTarget(
                f"{name}-efs-{k}",
                file_system_id=fs.id,
                subnet_id=subnets.apply(operator.itemgetter(i)),
                security_groups=[sg.id],
                opts=child,
            )
            for i, k in enumerate(args.mount_target_keys)
        ]
        return fs, mounts
