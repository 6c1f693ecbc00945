"""The AWS part of an offline plan as Terraform JSON, so checkov (which has no Pulumi framework) can
scan it with `--framework terraform_json`.

Input: `resources.json` from `python -m stacks.plan STACK --out DIR`. Each `aws:*` resource becomes the
Terraform resource the same provider schema backs (pulumi-aws is generated from the Terraform AWS
provider): type `aws:ec2/flowLog:FlowLog` -> `aws_flow_log`, inputs camelCase -> snake_case, nested
objects -> blocks. `eks:index:Cluster` (a pulumi-eks component) becomes the `aws_eks_cluster` it
creates, with its `vpc_config` and `encryption_config` blocks.

Checkov's graph checks follow references (flow log -> VPC, EIP -> NAT gateway, default SG -> VPC), so a
mock ID or ARN that another resource handed over becomes `${aws_x.name.attr}`. Which string is which
resource's ID/ARN is what the plan's mocks returned for it (`stacks.offline.runtime.Mocks.new_resource`, the
same function), so a value is never guessed from its shape.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from pulumi.runtime import mocks as pmocks

from stacks.offline.runtime import Mocks

# pulumi-aws module/type -> Terraform resource type, where the generic rule below does not give it.
TYPE_OVERRIDES = {
    "aws:rds/instance:Instance": "aws_db_instance",
    "aws:rds/subnetGroup:SubnetGroup": "aws_db_subnet_group",
    "aws:rds/parameterGroup:ParameterGroup": "aws_db_parameter_group",
    "eks:index:Cluster": "aws_eks_cluster",
}
# Input keys whose value is a free-form map (keys are data, not schema fields: never snake_cased).
MAP_KEYS = {"tags", "tagsAll", "labels", "variables", "environment", "parameters", "dimensions"}
# Pulumi input names that differ from the Terraform block they back (a list input, a repeated block).
KEY_RENAMES = {("aws_db_parameter_group", "parameters"): "parameter"}
# Resources other resources take by name, and the input keys that take them so.
BY_NAME = {"aws:rds/parameterGroup:ParameterGroup": ("parameter_group_name",)}
# Output attributes other resources take as inputs (the mock returns each of them).
HANDLE_ATTRS = ("id", "arn", "keyId", "url")
# A value two resources share (an EIP and the NAT gateway both named `nat-a` get the ID `nat-a-id`):
# the input key tells which one is meant.
KEY_HINTS = {"allocation_id": "aws_eip"}
# Resources that attach one thing to another: nothing takes their ID or ARN as an input, and their mock
# ARN repeats their target's (a queue policy named like its queue).
LEAF_SUFFIXES = ("_policy", "_attachment", "_association", "_target", "_alias", "_access_entry")


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def tf_type(pulumi_type: str) -> str | None:
    """`aws:ec2/flowLog:FlowLog` -> `aws_flow_log`; `aws:iam/role:Role` -> `aws_iam_role`; else None."""
    if pulumi_type in TYPE_OVERRIDES:
        return TYPE_OVERRIDES[pulumi_type]
    if not pulumi_type.startswith("aws:") or pulumi_type.startswith("aws:index/"):
        return None
    module, rest = pulumi_type.removeprefix("aws:").split("/", 1)
    cls = rest.split(":", 1)[1]
    return ("aws_" if module == "ec2" else f"aws_{module}_") + snake(cls)


def region_of(resources: list[dict]) -> str:
    """The region the plan ran in, read off the ARNs the mocks minted (`arn:aws:svc:REGION:acct:…`)."""
    found = Counter(re.findall(r"arn:aws:[a-z0-9-]+:([a-z]{2}(?:-[a-z]+)+-\d):", json.dumps(resources)))
    return found.most_common(1)[0][0] if found else "us-east-1"


class _Handles:
    """mock value -> [(tf address, attribute)] for every string a resource's outputs hand to others."""

    def __init__(self, resources: list[dict], addr: dict[str, str], region: str):
        self.by_value: dict[str, list[tuple[str, str]]] = {}
        self.name_keys: dict[str, tuple[str, ...]] = {}  # addr -> input keys that take it by name
        self.by_urn: dict[str, str] = {}
        mocks = Mocks(region)
        for r in resources:
            a = addr.get(r["urn"])
            if a is None:
                continue
            self.by_urn[r["urn"]] = a
            if r["type"] == "eks:index:Cluster":
                self._add(r["inputs"].get("name") or r["name"], a, "name")
                self.name_keys[a] = ("cluster_name",)
                continue
            if a.split(".")[0].endswith(LEAF_SUFFIXES):
                continue
            _, out = mocks.new_resource(pmocks.MockResourceArgs(typ=r["type"], name=r["name"], inputs=r["inputs"]))
            for attr in HANDLE_ATTRS:
                # minted by the mock, not an input echoed back (an event target's `arn` is the queue's)
                if isinstance(out.get(attr), str) and out[attr] != r["inputs"].get(attr):
                    self._add(out[attr], a, snake(attr) if attr != "keyId" else "key_id")
            if r["type"] in BY_NAME:
                self._add(out.get("name"), a, "name")
                self.name_keys[a] = BY_NAME[r["type"]]
            if r["type"] in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
                self._add(out.get("name"), a, "name")  # attachments and profiles take the role by name
                self.name_keys[a] = ("role", "roles", "iam_instance_profile")

    def _add(self, value: Any, addr: str, attr: str) -> None:
        if isinstance(value, str) and value:
            self.by_value.setdefault(value, []).append((addr, attr))

    def ref(self, value: str, key: str, owner: str) -> str | None:
        """`${type.name.attr}` for a value another resource produced, None for a literal."""
        if value in self.by_urn:  # a resource passed as an input (e.g. the EKS service role)
            return f"${{{self.by_urn[value]}.arn}}"
        hits = [
            (a, attr)
            for a, attr in self.by_value.get(value, [])
            if a != owner and (attr != "name" or key in self.name_keys.get(a, ()))
        ]
        if len(hits) > 1:
            hint = KEY_HINTS.get(key)
            # else the resource type's last word names it: `nat_gateway_id` -> aws_nat_gateway, not aws_eip
            hits = [
                h
                for h in hits
                if (h[0].split(".")[0] == hint if hint else h[0].split(".")[0].rsplit("_", 1)[1] in key.split("_"))
            ] or hits
        if len(hits) > 1:
            raise ValueError(
                f"{owner}.{key} = {value!r} is an output of several resources: {hits} — add a KEY_HINTS entry"
            )
        return f"${{{hits[0][0]}.{hits[0][1]}}}" if hits else None


def _convert(value: Any, key: str, owner: str, handles: _Handles) -> Any:
    if isinstance(value, dict):
        if key in MAP_KEYS:
            return value
        return [{snake(k): _convert(v, snake(k), owner, handles) for k, v in value.items()}]  # a block
    if isinstance(value, list):
        out = [_convert(v, key, owner, handles) for v in value]
        # A list of blocks stays a list of block objects (not a list of one-element lists).
        return [o[0] if isinstance(v, dict) and key not in MAP_KEYS else o for v, o in zip(value, out, strict=True)]
    if isinstance(value, str):
        return handles.ref(value, key, owner) or value
    return value


def _eks_cluster(inputs: dict) -> dict:
    """The `aws_eks_cluster` that pulumi-eks's Cluster component creates from these inputs."""
    vpc = {
        "subnet_ids": [
            *inputs.get("privateSubnetIds", []),
            *inputs.get("publicSubnetIds", []),
            *inputs.get("subnetIds", []),
        ],
        "endpoint_private_access": inputs.get("endpointPrivateAccess", False),
        "endpoint_public_access": inputs.get("endpointPublicAccess", True),
    }
    if "publicAccessCidrs" in inputs:
        vpc["public_access_cidrs"] = inputs["publicAccessCidrs"]
    out: dict[str, Any] = {
        "name": inputs.get("name"),
        "version": inputs.get("version"),
        "role_arn": inputs.get("serviceRole"),
        "vpc_config": vpc,
        "enabled_cluster_log_types": inputs.get("enabledClusterLogTypes", []),
        "tags": inputs.get("tags", {}),
    }
    if inputs.get("encryptionConfigKeyArn"):
        out["encryption_config"] = {"provider": {"key_arn": inputs["encryptionConfigKeyArn"]}, "resources": ["secrets"]}
    if inputs.get("authenticationMode"):
        out["access_config"] = {"authentication_mode": inputs["authenticationMode"]}
    return out


def _cluster_sg_refs(body: dict, cluster: str | None, handles: _Handles) -> None:
    """Security groups pulumi-eks creates (not in the plan as resources) refer to the cluster's SG."""
    if cluster is None:
        return
    owned = set(handles.by_value)

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str) and v.startswith("sg-") and v not in owned:
            return f"${{{cluster}.vpc_config[0].cluster_security_group_id}}"
        return v

    for typ, items in body.items():
        for name, attrs in items.items():
            body[typ][name] = walk(attrs)


def translate(resources: list[dict]) -> dict:
    """`resources.json` entries -> a Terraform JSON document (`{"resource": {type: {name: attrs}}}`)."""
    addr: dict[str, str] = {}
    for r in resources:
        t = tf_type(r["type"])
        if t is not None and (r.get("custom", True) or r["type"] == "eks:index:Cluster"):
            a = f"{t}.{r['name']}"
            if a in addr.values():
                raise ValueError(f"two resources translate to {a}")
            addr[r["urn"]] = a
    handles = _Handles(resources, addr, region_of(resources))
    body: dict[str, dict[str, dict]] = {}
    cluster = None
    for r in resources:
        a = addr.get(r["urn"])
        if a is None:
            continue
        t, name = a.split(".", 1)
        inputs = _eks_cluster(r["inputs"]) if t == "aws_eks_cluster" else r["inputs"]
        if t == "aws_eks_cluster":
            cluster = a
        attrs = {}
        for k, v in inputs.items():
            sk = snake(k)
            conv = _convert(v, k if k in MAP_KEYS else sk, a, handles)
            attrs[KEY_RENAMES.get((t, sk), sk)] = conv
        body.setdefault(t, {})[name] = attrs
    _cluster_sg_refs(body, cluster, handles)
    return {"resource": body}


def write(directory: Path, doc: dict) -> None:
    """One `<type>.tf.json` per resource type (one Terraform module: the directory). checkov names a
    terraform_json finding `resource.<name>` without its type; the file name carries it."""
    directory.mkdir(parents=True, exist_ok=True)
    for typ, items in doc["resource"].items():
        (directory / f"{typ}.tf.json").write_text(json.dumps({"resource": {typ: items}}, indent=1, sort_keys=True))


def address(finding: dict) -> str:
    """`aws_type.name` of a checkov finding on files written by `write`."""
    typ = Path(finding["file_path"]).name.removesuffix(".tf.json")
    name = (
        finding["resource"].split(".", 1)[1]
        if finding["resource"].startswith(("resource.", f"{typ}."))
        else finding["resource"]
    )
    return f"{typ}.{name}"
