"""The relations tier's NetworkPolicy evaluator against an independent one: network-config-analyzer.

For every stack, the plan's Namespaces, workloads, Services and NetworkPolicies (plus stand-ins for
the two pods outside the plan that the policies name: CoreDNS and the Prometheus scraper) go to
`nca --connectivity`; for every pair of workloads and every port the destination listens on, NCA's
verdict must equal `relations.PolicyEvaluator.admitted`.

NCA runs from its own venv (.e2e/nca, built by scripts/setup-e2e.sh from requirements/nca.lock: it
pins a PyYAML the program's lock does not); LLM_SERVING_NCA names another `nca` executable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from stacks.yamlio import dump_yaml
from tests.conftest import STACK_FILES
from tests.support import relations as R
from tests.support.shared import ROOT, missing

PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")
# NCA's endpoint names: namespace/name[Kind]; IP ranges have no brackets.
ENDPOINT = re.compile(r"^([\w.-]+)/([\w.-]+)\[(\w+)\]$")
LINE = re.compile(r"^(\S+) => (\S+) : (.+)$")


def nca() -> Path:
    exe = Path(os.environ.get("LLM_SERVING_NCA") or ROOT / ".e2e" / "nca" / "bin" / "nca")
    if not exe.exists():
        missing(f"{exe} not found", "run scripts/setup-e2e.sh (builds .e2e/nca) or set LLM_SERVING_NCA")
    return exe


# ---- NCA's input --------------------------------------------------------------------------------------------


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def deployment(ns: str, name: str, labels: dict, ports: tuple[tuple[int, str | None, str], ...]) -> dict:
    container = {"name": name, "image": "stand-in", "ports": [p(port, pname, proto) for port, pname, proto in ports]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def p(port: int, name: str | None, protocol: str) -> dict:
    return {"containerPort": port, "protocol": protocol, **({"name": name} if name else {})}


def scraper_namespace(r: R.Rendered) -> str:
    """Where Prometheus runs: its chart's namespace, else where the stack puts its rules."""
    ns = next((d.get("namespace") for d in r.helm.values() if "prometheus" in str(d.get("chart"))), None)
    return ns or next((R.namespace_of(o) for o in r.kind("PrometheusRule")), "monitoring")


def with_stand_ins(r: R.Rendered) -> R.Rendered:
    """The plan plus CoreDNS (as relations.KUBE_DNS describes it) and a Prometheus pod: both sides
    see the same objects."""
    dns, prom_ns = R.KUBE_DNS, scraper_namespace(r)
    assert dns.namespace is not None
    objects = list(r.objects)
    have = {R.name_of(o) for o in r.kind("Namespace")}
    objects += [namespace(ns) for ns in sorted({dns.namespace, prom_ns} - have)]
    objects.append(deployment(dns.namespace, dns.name, dns.labels, dns.ports))
    objects.append(deployment(prom_ns, "prometheus", {"app.kubernetes.io/name": "prometheus"}, ()))
    return R.Rendered(r.name, objects, r.resources, r.helm)


KINDS = ("Namespace", "Service", "NetworkPolicy", "Pod", *R.POD_OWNERS)


def normalized(obj: dict) -> dict:
    """What NCA's parser refuses but the API server accepts, rewritten to the same meaning: NCA takes
    policyTypes only as [Ingress], [Egress] or [Ingress, Egress], in that order."""
    if obj["kind"] == "NetworkPolicy" and obj.get("spec", {}).get("policyTypes"):
        spec = {**obj["spec"], "policyTypes": sorted(obj["spec"]["policyTypes"], key=["Ingress", "Egress"].index)}
        return {**obj, "spec": spec}
    return obj


def write_inputs(r: R.Rendered, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for i, o in enumerate(o for o in r.objects if o.get("kind") in KINDS):
        (into / f"{i:03d}-{o['kind'].lower()}.yaml").write_text(dump_yaml(normalized(o)))


# ---- NCA's output ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cube:
    """Protocols and destination ports NCA allows between two endpoints (None: all)."""

    protocols: frozenset[str] | None
    ports: tuple[tuple[int, int], ...] | None

    def admits(self, port: int, protocol: str) -> bool:
        proto_ok = self.protocols is None or protocol in self.protocols
        return proto_ok and (self.ports is None or any(lo <= port <= hi for lo, hi in self.ports))


def cubes(text: str) -> list[Cube]:
    """`All connections`, or `{protocols:TCP, UDP,dst_ports:53,8000-8080},{...}`."""
    if text == "All connections":
        return [Cube(None, None)]
    out = []
    for body in re.findall(r"\{([^}]*)\}", text):
        fields = dict(item.split(":", 1) for item in re.split(r",(?=[a-z_]+:)", body))
        assert set(fields) <= {"protocols", "dst_ports"}, f"unexpected NCA connection: {text}"
        protos = fields.get("protocols")
        assert protos is None or "all but" not in protos, f"unexpected NCA protocols: {text}"
        ports = fields.get("dst_ports")
        out.append(
            Cube(
                None if protos in (None, "*") else frozenset(x.strip() for x in protos.split(",")),
                None if ports is None else tuple(span(x) for x in ports.split(",")),
            )
        )
    assert out, f"unparsed NCA connection: {text}"
    return out


def span(s: str) -> tuple[int, int]:
    lo, _, hi = s.partition("-")
    return int(lo), int(hi or lo)


def connectivity(text: str) -> dict[tuple[str, str], list[Cube]]:
    """(src, dst) -> what NCA allows, for workload endpoints (IP ranges are left out)."""
    out: dict[tuple[str, str], list[Cube]] = {}
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m and ENDPOINT.match(m.group(1)) and ENDPOINT.match(m.group(2)):
            out.setdefault((m.group(1), m.group(2)), []).extend(cubes(m.group(3)))
    return out


def run_nca(exe: Path, inputs: Path) -> dict[tuple[str, str], list[Cube]]:
    d = str(inputs)
    args = [str(exe), "--connectivity", d, "--pod_list", d, "--ns_list", d, "-o", "txt_no_fw_rules"]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Error" not in res.stdout + res.stderr, res.stdout + res.stderr
    return connectivity(res.stdout)


# ---- the comparison -----------------------------------------------------------------------------------------


def endpoints(r: R.Rendered, cidr: str | None) -> list[R.Endpoint]:
    """Every workload, named as NCA names it; with a pod IP from `cidr` when given (the relations
    tier's model: the VPC CNI gives pods VPC addresses), else none (NCA's: pods are no ipBlock)."""
    net = ipaddress.ip_network(cidr) if cidr else None
    return [
        R.Endpoint(
            f"{w.namespace}/{w.name}[{w.kind}]",
            w.namespace,
            w.labels,
            str(net.network_address + 1000 + i) if net else None,
            tuple(w.ports()),
        )
        for i, w in enumerate(R.workloads(r))
    ]


def verdicts(r: R.Rendered, nca_says: dict, cidr: str | None) -> list[tuple[str, str, int, str, bool, bool]]:
    """(src, dst, port, protocol, relations' verdict, NCA's) for every ordered pair of workloads and
    every port the destination listens on."""
    ev = R.PolicyEvaluator.of(r)
    ends = endpoints(r, cidr)
    return [
        (s.name, d.name, port, proto, ev.admitted(s, d, port, proto), admits(nca_says, s.name, d.name, port, proto))
        for s in ends
        for d in ends
        if s is not d
        for port, _, proto in d.ports
    ]


def admits(nca_says: dict, src: str, dst: str, port: int, protocol: str) -> bool:
    return any(c.admits(port, protocol) for c in nca_says.get((src, dst), []))


def disagreements(r: R.Rendered, nca_says: dict, cidr: str | None) -> set[str]:
    return {
        f"{s} -> {d} {port}/{proto}: relations {ours}, NCA {theirs}"
        for s, d, port, proto, ours, theirs in verdicts(r, nca_says, cidr)
        if ours != theirs
    }


_runs: dict[str, tuple[R.Rendered, dict]] = {}


def analysed(plan_of, stack_file: Path, tmp: Path) -> tuple[R.Rendered, dict]:
    """The stack with its stand-ins, and NCA's connectivity for it (once per session)."""
    if stack_file.name not in _runs:
        exe = nca()
        _, _, out = plan_of(stack_file)
        r = with_stand_ins(R.load(out))
        write_inputs(r, tmp)
        _runs[stack_file.name] = (r, run_nca(exe, tmp))
    return _runs[stack_file.name]


DEV = next(f for f in STACK_FILES if f.name == "Pulumi.dev.yaml")


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_nca_and_the_relations_evaluator_agree(plan_of, stack_file, tmp_path):
    """Same model on both sides (pods are matched by selectors only): the same verdict everywhere."""
    r, nca_says = analysed(plan_of, stack_file, tmp_path)
    found = verdicts(r, nca_says, None)
    assert any(v[4] for v in found) and not all(v[4] for v in found)  # some admitted, some not
    bad = disagreements(r, nca_says, None)
    assert not bad, "\n".join(sorted(bad))


def test_they_differ_only_where_a_pod_ip_falls_in_an_ipblock(plan_of, tmp_path):
    """With pod IPs from the VPC, the relations tier also admits pods whose egress is open (CoreDNS,
    Prometheus) to the front door's port, which admits the VPC CIDR by ipBlock. Kubernetes matches
    an ipBlock against pod IPs too (its own NetworkPolicy conformance tests allow a pod by its /32);
    NCA keeps pods and ipBlocks apart, so it does not. The relations tier is right here."""
    r, nca_says = analysed(plan_of, DEV, tmp_path)
    frontdoor = "gateway/gateway-frontdoor[Deployment] 4080/TCP: relations True, NCA False"
    assert disagreements(r, nca_says, R.vpc_cidr(r)) == {
        f"kube-system/kube-dns[Deployment] -> {frontdoor}",
        f"monitoring/prometheus[Deployment] -> {frontdoor}",
    }


def test_a_policy_only_one_side_sees_is_a_disagreement(plan_of, tmp_path):
    """Negative control: NCA without the policy that admits the gateway to vLLM."""
    r, _ = analysed(plan_of, DEV, tmp_path / "full")
    dropped = [o for o in r.objects if not (o.get("kind") == "NetworkPolicy" and R.name_of(o) == "vllm-from-gateway")]
    assert len(dropped) == len(r.objects) - 1
    write_inputs(R.Rendered(r.name, dropped, r.resources, r.helm), tmp_path / "less")
    nca_says = run_nca(nca(), tmp_path / "less")
    assert disagreements(r, nca_says, None) == {
        "gateway/litellm[Deployment] -> models/qwen3-0-6b[Deployment] 8000/TCP: relations True, NCA False"
    }


def test_the_policytypes_order_nca_refuses_is_rewritten(plan_of, tmp_path):
    """Control for `normalized`: the API server takes policyTypes in any order, NCA only one; the
    plan writes [Egress, Ingress] once (ui-to-gateway), which NCA refuses as written."""
    r, _ = analysed(plan_of, DEV, tmp_path / "full")
    pol = next(o for o in r.kind("NetworkPolicy") if o["spec"].get("policyTypes") == ["Egress", "Ingress"])
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "policy.yaml").write_text(dump_yaml(pol))
    d = str(tmp_path / "raw")
    res = subprocess.run([str(nca()), "--connectivity", d], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "policyTypes" in res.stdout + res.stderr, res.stdout + res.stderr
    assert normalized(pol)["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_nca_connections_are_read_as_written():
    assert cubes("All connections") == [Cube(None, None)]
    got = cubes("{protocols:TCP, UDP,dst_ports:53,8000-8080},{protocols:SCTP}")
    assert got == [Cube(frozenset({"TCP", "UDP"}), ((53, 53), (8000, 8080))), Cube(frozenset({"SCTP"}), None)]
    assert got[0].admits(8080, "UDP") and not got[0].admits(8081, "TCP") and not got[0].admits(53, "SCTP")
    line = "gateway/litellm[Deployment] => models/x[Deployment] : {protocols:TCP,dst_ports:8000}"
    assert connectivity(f"{line}\n10.0.0.0-10.0.255.255 => gateway/litellm[Deployment] : All connections") == {
        ("gateway/litellm[Deployment]", "models/x[Deployment]"): [Cube(frozenset({"TCP"}), ((8000, 8000),))]
    }
    with pytest.raises(AssertionError):
        cubes("{protocols:TCP,methods:GET}")  # HTTP-level rules: not a NetworkPolicy verdict
