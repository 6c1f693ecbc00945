"""Run the Pulumi program under `pulumi.runtime.set_mocks` and record what it registers.

Used by the plan CLI and the tests, so both see exactly the same thing. No Pulumi CLI, no network.
What makes it reliable: a fresh event loop, root stack and mocks per run;
preview=False so every `apply` runs; remote components (eks.Cluster) get the outputs the program
reads, including `eksCluster` as a real resource reference; a timeout so a broken await fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import settings as psettings

SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
SIG_KEY = "4dabf18193072939515e22adb298388d"
ACCOUNT = "123456789012"


@dataclass
class Registered:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict
    # What the engine waits for before creating this resource: explicit depends_on plus every
    # resource whose outputs feed an input. The SDK sends exactly that union as `dependencies`
    # (pulumi/runtime/resource.py prepare_resource); `property_dependencies` says which input brought which.
    dependencies: tuple[str, ...] = ()
    protect: bool = False  # the `protect` resource option (not an input; not in resources.json)
    property_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The provider resource (URN) it is created through: the engine waits for that too (deploy-time model).
    providers: tuple[str, ...] = ()


@dataclass
class Recording:
    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    logs: list[tuple[str, str]] = field(default_factory=list)  # (severity, message) the program logged
    secret_outputs: frozenset[str] = frozenset()  # stack outputs Pulumi stores encrypted

    def by_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str, name: str) -> Registered:
        hits = [r for r in self.resources if r.type == typ and r.name == name]
        if len(hits) != 1:
            raise KeyError(f"{len(hits)} resources of type {typ} named {name}")
        return hits[0]


def _fake_id(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:17]


class _Monitor(pmocks.MockMonitor):
    """The SDK's mock monitor, remembering parents and inputs in registration order."""

    def __init__(self, mocks: Mocks):
        super().__init__(mocks)
        self.recording = Recording()
        mocks.monitor = self

    def RegisterResource(self, request):
        # A resource passed as an input (e.g. a Role into eks.Cluster) arrives as a reference; the SDK
        # monitor would rehydrate it on this thread's loop ("attached to a different loop"). The mock
        # needs only its URN, so references become URN strings before anything deserializes them.
        request = _without_resource_refs(request)
        resp = super().RegisterResource(request)
        inputs = json.loads(
            json.dumps(
                _plain(pulumi.runtime.rpc.deserialize_properties(request.object, keep_unknowns=True)), default=str
            )
        )
        self.recording.resources.append(
            Registered(
                urn=resp.urn,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                custom=bool(request.custom),
                inputs=inputs,
                dependencies=tuple(sorted(request.dependencies)),
                protect=bool(request.protect),
                property_dependencies={
                    k: tuple(sorted(v.urns)) for k, v in sorted(request.propertyDependencies.items())
                },
                providers=_provider_urns(request),
            )
        )
        return resp


def _provider_urns(request) -> tuple[str, ...]:
    """Provider references are `<urn>::<id>`: a custom resource names one, a component a map of them."""
    refs = [request.provider, *request.providers.values()]
    return tuple(sorted({r.rsplit("::", 1)[0] for r in refs if r}))


def _without_resource_refs(request):
    found = [False]

    def walk(v):
        if isinstance(v, dict):
            if v.get(SIG_KEY) == RESOURCE_SIG:
                found[0] = True
                return v.get("urn", "")
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    plain = walk(json_format.MessageToDict(request.object))
    if not found[0]:
        return request
    copy = type(request)()
    copy.CopyFrom(request)
    obj = struct_pb2.Struct()
    obj.update(plain)
    copy.object.CopyFrom(obj)
    return copy


def _plain(v: Any) -> Any:
    """Inputs as JSON, secrets masked (resource references are already URNs: _without_resource_refs)."""
    if isinstance(v, dict):
        if v.get(SIG_KEY) == SECRET_SIG:
            inner = v.get("value")
            if isinstance(inner, dict):  # keep the shape (a Secret's keys), mask every value
                return dict.fromkeys(inner, "[secret]")
            return "[secret]"
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# Resource types whose mocked ids carry AWS's prefix, so the plan shows ids of the shape AWS returns.
ID_PREFIXES = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:efs/fileSystem:FileSystem": "fs-",
}


class Mocks(pmocks.Mocks):
    """Outputs = inputs plus what real providers compute and the program reads."""

    monitor: _Monitor

    def __init__(self, region: str = "us-east-1"):
        self.region = region

    def new_resource(self, args: pmocks.MockResourceArgs):
        name, typ, inp = args.name, args.typ, dict(args.inputs)
        rid = f"{name}-id"
        arn = f"arn:aws:{typ.split(':')[1].split('/')[0]}:{self.region}:{ACCOUNT}:{name}"
        out = {"arn": arn, "id": rid, **inp}
        if typ in ID_PREFIXES:
            out["id"] = rid = ID_PREFIXES[typ] + _fake_id(name)
        if typ.startswith("kubernetes:"):
            out.update(self._kubernetes(name, typ, inp, out))
        elif (computed := self._computed().get(typ)) is not None:
            out.update(computed(name, inp, out))
        return rid, out

    def _computed(self) -> dict[str, Callable[[str, dict, dict], dict]]:
        """Resource type -> the outputs its provider computes (given name, inputs, outputs so far)."""
        region = self.region
        return {
            "aws:iam/role:Role": lambda name, inp, out: {
                "arn": f"arn:aws:iam::{ACCOUNT}:role/{inp.get('name', name)}",
                "name": out.get("name", name),
            },
            "aws:iam/instanceProfile:InstanceProfile": lambda name, inp, out: {"name": out.get("name", name)},
            "aws:sqs/queue:Queue": lambda name, inp, out: {
                "name": out.get("name", name),
                "url": f"https://sqs.{region}.amazonaws.com/{ACCOUNT}/{out.get('name', name)}",
            },
            "aws:kms/key:Key": lambda name, inp, out: {"keyId": _fake_id(name)},
            "aws:rds/instance:Instance": lambda name, inp, out: {
                "address": f"{name}.abc.{region}.rds.amazonaws.com",
                "port": 5432,
                "endpoint": f"{name}.abc.{region}.rds.amazonaws.com:5432",
            },
            "aws:elasticache/replicationGroup:ReplicationGroup": lambda name, inp, out: {
                "primaryEndpointAddress": f"master.{inp.get('replicationGroupId', name)}.abc.use1.cache.amazonaws.com"
            },
            "aws:ec2/launchTemplate:LaunchTemplate": lambda name, inp, out: {"latestVersion": 1},
            "eks:index:Cluster": lambda name, inp, out: self._eks_cluster(name, inp),
            "pulumi:pulumi:StackReference": lambda name, inp, out: {
                "outputs": self.platform_stack_outputs(inp.get("name", "")),
                "secretOutputNames": ["kubeconfig"],
            },
            "random:index/randomPassword:RandomPassword": lambda name, inp, out: {"result": "mock-" + _fake_id(name)},
            "random:index/randomId:RandomId": lambda name, inp, out: {
                "hex": _fake_id(name)[: 2 * int(inp["byteLength"])]
            },
        }

    def _kubernetes(self, name: str, typ: str, inp: dict, out: dict) -> dict:
        """Every object gets a name; a LoadBalancer Service gets its load balancer's hostname."""
        meta = dict(out.get("metadata") or {})
        meta.setdefault("name", name)
        extra: dict = {"metadata": meta}
        if typ == "kubernetes:core/v1:Service" and (inp.get("spec") or {}).get("type") == "LoadBalancer":
            extra["status"] = {"loadBalancer": {"ingress": [{"hostname": f"{name}.elb.{self.region}.amazonaws.com"}]}}
        return extra

    def platform_stack_outputs(self, stack_name: str) -> dict:
        """What a platform stack exports (stacks/compose/platform.Platform.shared), as a team stack reads it."""
        cname = "llm-" + stack_name.rsplit("/", 1)[-1]
        return {
            "kubeconfig": json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": [], "users": []}),
            "platform": {
                "clusterName": cname,
                "vpcId": "vpc-platform",
                "vpcCidr": "10.0.0.0/16",
                "privateSubnetIds": ["subnet-a", "subnet-b", "subnet-c"],
                "nodeSecurityGroupId": "sg-eksclustersg",
                "efsStorageClass": "efs",
                "ebsStorageClass": "gp3",
                "efsFileSystemId": "fs-platform",
                "neuronScheduler": None,
                "pools": {"gpu": "nvidia"},
            },
        }

    def _eks_cluster(self, name: str, inp: dict) -> dict:
        cname = inp.get("name") or name
        endpoint = f"https://{_fake_id(cname).upper()}.gr7.{self.region}.eks.amazonaws.com"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": cname, "cluster": {"server": endpoint, "certificate-authority-data": "TU9DSw=="}}],
            "contexts": [{"name": cname, "context": {"cluster": cname, "user": "aws"}}],
            "current-context": cname,
            "users": [
                {
                    "name": "aws",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", cname],
                        }
                    },
                }
            ],
        }
        # eksCluster must be a resource reference (a dict here makes later awaits hang).
        urn = (
            f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}"
            f"::eks:index:Cluster$aws:eks/cluster:Cluster::{cname}-eksCluster"
        )
        state = {
            "name": cname,
            "arn": f"arn:aws:eks:{self.region}:{ACCOUNT}:cluster/{cname}",
            "endpoint": endpoint,
            "version": inp.get("version"),
            "certificateAuthority": {"data": "TU9DSw=="},
            "vpcConfig": {"clusterSecurityGroupId": "sg-eksclustersg"},
        }
        self.monitor.resources[urn] = pmocks.MockMonitor.ResourceRegistration(urn, cname, state)
        return {
            "kubeconfig": kubeconfig,
            "kubeconfigJson": json.dumps(kubeconfig),
            "clusterSecurityGroupId": "sg-eksclustersg",
            "nodeSecurityGroupId": "sg-eksnodesg",
            "oidcProviderArn": f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.{self.region}.amazonaws.com/id/MOCK",
            "oidcProviderUrl": f"oidc.eks.{self.region}.amazonaws.com/id/MOCK",
            "oidcIssuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/MOCK",
            "eksCluster": {SIG_KEY: RESOURCE_SIG, "urn": urn, "id": cname, "packageVersion": ""},
        }

    def call(self, args: pmocks.MockCallArgs):
        tok = args.token
        if tok == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return self._availability_zones(args.args)
        if tok == "aws:ec2/getSubnet:getSubnet":
            # The zone is the id's last hex digit mod 6 (a-f), so tests can pick ids in one zone.
            sid = args.args.get("id") or "subnet-0"
            zone = f"{self.region}{'abcdef'[int(sid[-1], 16) % 6]}"
            return {"id": sid, "availabilityZone": zone, "vpcId": "vpc-mock", "cidrBlock": "10.42.0.0/19"}
        if tok == "aws:ec2/getVpc:getVpc":
            vid = args.args.get("id") or "vpc-mock"
            return {
                "id": vid,
                "cidrBlock": EXISTING_VPC_CIDR,
                "state": "available",
                "arn": f"arn:aws:ec2:{self.region}:{ACCOUNT}:vpc/{vid}",
            }
        if tok == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/deployer", "userId": "AIDMOCK"}
        if tok == "aws:iam/getSessionContext:getSessionContext":  # the caller is an IAM user: its own ARN
            return {"arn": args.args["arn"], "issuerArn": args.args["arn"]}
        if tok == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}
        if tok == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region}
        # An unknown data source must fail loudly, not answer {} (add a branch above for it).
        raise NotImplementedError(f"Mocks.call: no mock for {tok} — add what the real provider returns")

    def _availability_zones(self, a: dict) -> dict:
        """Like EC2 DescribeAvailabilityZones in an account opted into a Local Zone, where zone b is
        the zone id EKS cannot use: the Local Zone sorts first and az3 is among a-c, so a program that
        drops the zone-type filter or the exclusion gets them (as AWS would give them)."""
        zones = [(f"{self.region}-bos-1a", "use1-bos1-az1", "local-zone")]
        ids = ["az6", "az3", "az1", "az2", "az4", "az5"]
        zones += [(f"{self.region}{z}", f"use1-{i}", "availability-zone") for z, i in zip("abcdef", ids, strict=False)]
        for f in a.get("filters") or []:
            if f.get("name") == "zone-type":
                zones = [z for z in zones if z[2] in f.get("values", [])]
        excluded = set(a.get("excludeZoneIds") or [])
        zones = [z for z in zones if z[1] not in excluded]
        return {"names": [z[0] for z in zones], "zoneIds": [z[1] for z in zones], "state": "available"}


# What aws.ec2.get_vpc returns for an existing VPC (deliberately not the default 10.0.0.0/16).
EXISTING_VPC_CIDR = "10.42.0.0/16"


class _RecordingHandler(logging.Handler):
    def __init__(self, recording: Recording):
        super().__init__(logging.INFO)
        self.recording = recording

    def emit(self, record: logging.LogRecord) -> None:
        self.recording.logs.append((record.levelname.lower(), record.getMessage()))


def _engine_logger(recording: Recording) -> logging.Logger:
    """A logger of its own per run that keeps what the program logged through the mock engine."""
    log = logging.getLogger(f"llm-serving.harness.{id(recording)}")
    log.propagate = False
    log.handlers[:] = [_RecordingHandler(recording)]
    log.setLevel(logging.INFO)
    return log


class HarnessTimeout(Exception):
    pass


def run(
    program: Callable[[], Any],
    *,
    config: dict[str, str],
    secret_keys: Sequence[str] = (),
    project: str = "llm-serving",
    stack: str = "dev",
    region: str = "us-east-1",
    timeout: float = 60.0,
) -> Recording:
    """Run `program` under fresh mocks; return every registered resource and the stack outputs."""
    result: dict[str, Any] = {}

    def target():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            psettings.ROOT.set(None)
            mocks = Mocks(region)
            monitor = _Monitor(mocks)
            # The program's pulumi.log messages (e.g. stack warnings) go to the recording, not to stderr:
            # the plan prints the same warnings in its table.
            pmocks.set_mocks(
                mocks,
                project=project,
                stack=stack,
                preview=False,
                monitor=monitor,
                logger=_engine_logger(monitor.recording),
            )
            pulumi.runtime.set_all_config(dict(config), list(secret_keys))
            root = psettings.get_root_resource()
            from pulumi.runtime.stack import run_pulumi_func
            from pulumi.runtime.sync_await import _sync_await

            _sync_await(run_pulumi_func(program))
            outs, secret = {}, set()
            for k, v in (getattr(root, "outputs", None) or {}).items():
                o = pulumi.Output.from_input(v) if v is not None else None
                outs[k] = _sync_await(o.future(with_unknowns=False)) if o is not None else None
                if o is not None and _sync_await(o.is_secret()):
                    secret.add(k)
            result["rec"] = monitor.recording
            result["rec"].outputs = outs
            result["rec"].secret_outputs = frozenset(secret)
        except BaseException as e:
            result["err"] = e
        finally:
            loop.close()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise HarnessTimeout(f"program did not finish under mocks within {timeout:.0f}s (a broken await?)")
    if "err" in result:
        raise result["err"]
    return result["rec"]
