"""Accelerator drivers: the NVIDIA GPU operator and the AWS Neuron chart (device plugin + scheduler)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi import ResourceOptions

from components.types import ACCELERATOR_RESOURCE, SYSTEM_TAINT, ChartPin, tolerate

# The scheduler name Neuron pods set; the chart's custom scheduler is named from the same constant.
NEURON_SCHEDULER_NAME = "neuron-scheduler"


# Controllers run on the system node group, whose only taint is this key (components.cluster).
SYSTEM_TOLERATION = {"key": SYSTEM_TAINT, "operator": "Exists"}


def gpu_operator_values() -> dict:
    """EKS AL2023 NVIDIA AMIs ship the driver and container toolkit: the operator must not.
    Every node is tainted (system or accelerator), so the operator and NFD controllers must tolerate
    the system nodes' taint or the release never becomes ready; the DaemonSets tolerate the GPU taint."""
    tol = [tolerate(ACCELERATOR_RESOURCE["nvidia"])]
    return {
        "operator": {"tolerations": [SYSTEM_TOLERATION]},
        "driver": {"enabled": False},
        "toolkit": {"enabled": False},
        # The chart default, pinned here so a chart bump cannot flip it silently. Unverified with the
        # AMI's own toolkit: if `nvidia-smi` fails in a GPU pod, set this to False.
        "cdi": {"enabled": True},
        "devicePlugin": {"enabled": True},
        "dcgmExporter": {"enabled": True},
        "gfd": {"enabled": True},
        "daemonsets": {"tolerations": tol},
        "node-feature-discovery": {
            "worker": {"tolerations": tol},
            "master": {"tolerations": [SYSTEM_TOLERATION]},
            "gc": {"tolerations": [SYSTEM_TOLERATION]},
        },
    }


def neuron_values() -> dict:
    tol = [tolerate(ACCELERATOR_RESOURCE["neuron"]), SYSTEM_TOLERATION]
    return {
        "devicePlugin": {"tolerations": tol},
        # The scheduler extension and the custom scheduler run on the system nodes.
        # nodeSelector {} explicitly: chart 1.0/1.1 defaulted it to the control-plane label, which no
        # EKS node has (the extension would stay Pending and the release time out).
        "scheduler": {
            "enabled": True,
            "nodeSelector": {},
            "tolerations": [SYSTEM_TOLERATION],
            "customScheduler": {
                "enabled": True,
                "fullnameOverride": NEURON_SCHEDULER_NAME,
                "tolerations": [SYSTEM_TOLERATION],
            },
        },
        "npd": {"enabled": True},
    }


@dataclass(frozen=True)
class DriverArgs:
    chart: ChartPin
    after: tuple[pulumi.Resource, ...] = ()


GPU_OPERATOR_NAMESPACE = "gpu-operator"  # also where the operator runs its DCGM exporter


class GpuOperator(pulumi.ComponentResource):
    def __init__(self, name: str, args: DriverArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:accelerators:GpuOperator", name, None, opts)
        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": GPU_OPERATOR_NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "privileged"}},
            opts=ResourceOptions(parent=self),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="gpu-operator",
            chart=args.chart.chart,
            version=args.chart.version,
            repository_opts={"repo": args.chart.repo},
            namespace=GPU_OPERATOR_NAMESPACE,
            values=gpu_operator_values(),
            opts=ResourceOptions(parent=self, depends_on=[ns, *args.after]),
        )
        self.register_outputs({})


class NeuronDriver(pulumi.ComponentResource):
    scheduler_name: str = NEURON_SCHEDULER_NAME

    def __init__(self, name: str, args: DriverArgs, opts: ResourceOptions | None = None):
        super().__init__("llm-serving:accelerators:NeuronDriver", name, None, opts)
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="neuron",
            chart=f"{args.chart.repo}/{args.chart.chart}",
            version=args.chart.version,
            namespace="kube-system",
            values=neuron_values(),
            opts=ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.register_outputs({})
