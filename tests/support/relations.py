"""Relations between rendered objects, resolved the way their consumers resolve them.

Pure functions over one plan's `--out` directory (manifests/, resources.json, helm/): no Pulumi, no
code under test. Each check returns a list of `Problem`s; an empty list means the relation holds.
The expectations (which roles may call which, which secret is which, health paths) are tables the
tests write by hand; this module only knows how Kubernetes, kubelet, the scheduler and the
consumers of a URL resolve one object against another:

* label selectors (matchLabels + matchExpressions; `{}` selects all),
* NetworkPolicy admission (policyTypes and their defaults, isolation only by policies that select
  the pod, empty `from`/`to`/`ports` = all, namespaceSelector against namespace labels including
  `kubernetes.io/metadata.name`, ipBlock with `except`, ports by number, range or container-port name),
* taints and tolerations (key, operator Exists/Equal, value, effect; NoSchedule and NoExecute block),
* Service selector -> pods, targetPort (number or name) -> containerPort,
* in-cluster DNS names `<svc>.<ns>.svc.cluster.local` -> Service -> port.

Pods get addresses inside the VPC CIDR when policies are evaluated: with the VPC CNI on EKS, pod IPs
are VPC addresses, so an ipBlock of the VPC CIDR matches them as well as load balancers and nodes.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from stacks.yamlio import load_yaml

POD_OWNERS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
# Taint effects that keep a pod off a node (PreferNoSchedule is a preference, not a rule).
HARD_EFFECTS = ("NoSchedule", "NoExecute")
# The EKS NodeGroup API spells taint effects as an enum; the kubelet applies them as these.
EKS_TAINT_EFFECT = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
ACCELERATOR_RESOURCES = ("nvidia.com/gpu", "aws.amazon.com/neuron")


@dataclass(frozen=True)
class Problem:
    check: str
    subject: str
    what: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.subject}: {self.what}"


def excepted(p: Problem, exceptions: Iterable[tuple[str, str, str]]) -> tuple[str, str, str] | None:
    """The exception entry (check, subject pattern, what pattern) that covers `p`, if any."""
    for e in exceptions:
        if e[0] == p.check and fnmatch.fnmatchcase(p.subject, e[1]) and fnmatch.fnmatchcase(p.what, e[2]):
            return e
    return None


# ---- loading ---------------------------------------------------------------------------------------


@dataclass
class Rendered:
    """One stack's plan output."""

    name: str
    objects: list[dict]
    resources: list[dict] = field(default_factory=list)
    helm: dict[str, dict] = field(default_factory=dict)

    def kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def aws(self, typ: str) -> list[dict]:
        """Inputs of every registered resource of a Pulumi type."""
        return [r["inputs"] for r in self.resources if r["type"] == typ]


def _yaml(f: Path):
    return load_yaml(f.read_text())  # libyaml: the plan's files are many


def load(out: Path, name: str = "") -> Rendered:
    objects = [_yaml(f) for f in sorted((out / "manifests").glob("*.yaml"))]
    resources = json.loads((out / "resources.json").read_text()) if (out / "resources.json").exists() else []
    helm = {f.stem: _yaml(f) for f in sorted((out / "helm").glob("*.yaml"))}
    return Rendered(name=name or out.name, objects=objects, resources=resources, helm=helm)


def namespace_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("namespace", "default")


def name_of(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")


# ---- workloads ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    kind: str
    namespace: str
    name: str
    labels: dict
    pod: dict
    owner: dict

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    def containers(self, init: bool = True) -> list[dict]:
        return list(self.pod.get("containers") or []) + (list(self.pod.get("initContainers") or []) if init else [])

    def ports(self) -> list[tuple[int, str | None, str]]:
        """(containerPort, name, protocol) of every serving container."""
        return [
            (p["containerPort"], p.get("name"), p.get("protocol", "TCP"))
            for c in self.containers(init=False)
            for p in c.get("ports") or []
        ]


def workloads(r: Rendered) -> list[Workload]:
    out = []
    for o in r.objects:
        if o.get("kind") == "Pod":
            out.append(
                Workload(
                    "Pod",
                    namespace_of(o),
                    name_of(o),
                    (o.get("metadata") or {}).get("labels") or {},
                    o.get("spec") or {},
                    o,
                )
            )
        elif o.get("kind") in POD_OWNERS:
            tpl = (o.get("spec") or {}).get("template") or {}
            out.append(
                Workload(
                    o["kind"],
                    namespace_of(o),
                    name_of(o),
                    (tpl.get("metadata") or {}).get("labels") or {},
                    tpl.get("spec") or {},
                    o,
                )
            )
    return out


# ---- label selectors -------------------------------------------------------------------------------


def selects(selector: dict | None, labels: dict) -> bool:
    """metav1.LabelSelector: None selects nothing, {} selects everything; terms are ANDed."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def map_selects(selector: dict | None, labels: dict) -> bool:
    """A plain map selector (Service.spec.selector): every pair present; empty selects nothing here."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---- NetworkPolicy evaluation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A traffic source or destination: a pod (namespace set) or something outside the cluster."""

    name: str
    namespace: str | None
    labels: dict = field(default_factory=dict, hash=False, compare=False)
    ip: str | None = None
    ports: tuple[tuple[int, str | None, str], ...] = ()  # what it listens on: (port, name, protocol)


def policy_types(spec: dict) -> list[str]:
    """Kubernetes default: Ingress always, Egress when the policy has an egress section."""
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress"] + (["Egress"] if "egress" in spec else [])


class PolicyEvaluator:
    """Would a connection src -> dst:port/protocol be admitted by these NetworkPolicies?"""

    def __init__(self, policies: list[dict], namespace_labels: dict[str, dict]):
        self.policies = policies
        self.ns_labels = namespace_labels

    @classmethod
    def of(cls, r: Rendered) -> PolicyEvaluator:
        labels = {name_of(n): dict((n.get("metadata") or {}).get("labels") or {}) for n in r.kind("Namespace")}
        return cls(r.kind("NetworkPolicy"), labels)

    def namespace_labels(self, ns: str) -> dict:
        # The API server sets kubernetes.io/metadata.name on every namespace.
        return {**self.ns_labels.get(ns, {}), "kubernetes.io/metadata.name": ns}

    def _applicable(self, ep: Endpoint, direction: str) -> list[dict]:
        if ep.namespace is None:
            return []
        return [
            p
            for p in self.policies
            if namespace_of(p) == ep.namespace
            and selects((p.get("spec") or {}).get("podSelector", {}), ep.labels)
            and direction in policy_types(p.get("spec") or {})
        ]

    def admitted(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        return self._side(src, dst, port, protocol, "Egress") and self._side(dst, src, port, protocol, "Ingress")

    def _side(self, isolated: Endpoint, peer: Endpoint, port: int, protocol: str, direction: str) -> bool:
        pols = self._applicable(isolated, direction)
        if not pols:
            return True  # not isolated in this direction
        rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        dst = peer if direction == "Egress" else isolated  # named ports resolve on the destination pod
        for p in pols:
            for rule in (p.get("spec") or {}).get(rules_key) or []:
                if self._ports_match(rule.get("ports"), dst, port, protocol) and self._peers_match(
                    rule.get(peers_key), peer, namespace_of(p)
                ):
                    return True
        return False

    @staticmethod
    def _ports_match(ports: list | None, dst: Endpoint, port: int, protocol: str) -> bool:
        if not ports:
            return True
        for pp in ports:
            if pp.get("protocol", "TCP") != protocol:
                continue
            want = pp.get("port")
            if want is None:
                return True
            if isinstance(want, int):
                if want <= port <= pp.get("endPort", want):
                    return True
            elif any(n == want and p == port and proto == protocol for p, n, proto in dst.ports):
                return True
        return False

    def _peers_match(self, peers: list | None, peer: Endpoint, policy_ns: str) -> bool:
        if not peers:
            return True
        return any(self._peer_matches(pe, peer, policy_ns) for pe in peers)

    def _peer_matches(self, pe: dict, peer: Endpoint, policy_ns: str) -> bool:
        if "ipBlock" in pe:
            if peer.ip is None:
                return False
            ip = ipaddress.ip_address(peer.ip)
            blk = pe["ipBlock"]
            return ip in ipaddress.ip_network(blk["cidr"]) and not any(
                ip in ipaddress.ip_network(x) for x in blk.get("except") or []
            )
        if peer.namespace is None:
            return False  # selectors match pods only
        ns_sel = pe.get("namespaceSelector")
        if ns_sel is None:
            if peer.namespace != policy_ns:
                return False
        elif not selects(ns_sel, self.namespace_labels(peer.namespace)):
            return False
        pod_sel = pe.get("podSelector")
        return pod_sel is None or selects(pod_sel, peer.labels)


# ---- Services, PDBs, Deployment selectors -----------------------------------------------------------


def _port_declared(w: Workload, target: Any, protocol: str = "TCP") -> bool:
    return any(
        (p == target if isinstance(target, int) else n == target) and proto == protocol for p, n, proto in w.ports()
    )


def max_replicas(r: Rendered, w: Workload) -> int:
    """The most replicas a workload runs: its own count, or the max of an HPA / KEDA ScaledObject
    that targets it by name (the Deployment then omits spec.replicas)."""
    top = (w.owner.get("spec") or {}).get("replicas", 1)
    for kind, most in (("HorizontalPodAutoscaler", "maxReplicas"), ("ScaledObject", "maxReplicaCount")):
        for o in r.kind(kind):
            spec = o.get("spec") or {}
            ref = spec.get("scaleTargetRef") or {}
            if namespace_of(o) == w.namespace and ref.get("kind", "Deployment") == w.kind and ref.get("name") == w.name:
                top = max(top, spec.get(most, 0))
    return top


def check_selectors(r: Rendered) -> list[Problem]:
    """Each Service and PDB selects the pods of exactly one workload in its namespace; each Service
    port targets a port those pods declare; each Deployment selects its own template; each
    topology spread constraint counts the pod's own replicas."""
    out: list[Problem] = []
    ws = workloads(r)
    for svc in r.kind("Service"):
        ns, spec = namespace_of(svc), svc.get("spec") or {}
        subject = f"Service/{ns}/{name_of(svc)}"
        hit = [w for w in ws if w.namespace == ns and map_selects(spec.get("selector"), w.labels)]
        if len(hit) != 1:
            out.append(Problem("selectors", subject, f"selects {len(hit)} workloads {[w.name for w in hit]}, not 1"))
            continue
        for p in spec.get("ports") or []:
            target = p.get("targetPort", p["port"])
            if not _port_declared(hit[0], target, p.get("protocol", "TCP")):
                out.append(
                    Problem(
                        "selectors",
                        subject,
                        f"port {p['port']} targets {target!r}, not a containerPort of {hit[0].name}",
                    )
                )
    for pdb in r.kind("PodDisruptionBudget"):
        ns = namespace_of(pdb)
        sel = (pdb.get("spec") or {}).get("selector")
        hit = [w for w in ws if w.namespace == ns and sel and selects(sel, w.labels)]
        if len(hit) != 1:
            out.append(
                Problem(
                    "selectors",
                    f"PodDisruptionBudget/{ns}/{name_of(pdb)}",
                    f"selects {len(hit)} workloads {[w.name for w in hit]}, not 1",
                )
            )
        elif max_replicas(r, hit[0]) < 2:
            out.append(
                Problem(
                    "selectors",
                    f"PodDisruptionBudget/{ns}/{name_of(pdb)}",
                    f"guards {hit[0].name}, which has fewer than 2 replicas",
                )
            )
    for w in ws:
        if w.kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            sel = (w.owner.get("spec") or {}).get("selector")
            if not sel or not selects(sel, w.labels):
                out.append(Problem("selectors", w.id, "spec.selector does not select its own pod template"))
            others = [
                o
                for o in ws
                if o is not w and o.namespace == w.namespace and o.kind != "Job" and sel and selects(sel, o.labels)
            ]
            if others:
                out.append(Problem("selectors", w.id, f"spec.selector also selects {[o.name for o in others]}"))
        for t in w.pod.get("topologySpreadConstraints") or []:
            if not selects(t.get("labelSelector"), w.labels):
                out.append(Problem("selectors", w.id, "topologySpreadConstraint does not count its own pods"))
    return out


def check_load_balancers(r: Rendered, *, internal: bool) -> list[Problem]:
    """A LoadBalancer Service is internal (legacy in-tree or AWS LB controller annotation) iff asked."""
    out = []
    for svc in r.kind("Service"):
        if (svc.get("spec") or {}).get("type") != "LoadBalancer":
            continue
        ann = (svc.get("metadata") or {}).get("annotations") or {}
        is_internal = (
            ann.get("service.beta.kubernetes.io/aws-load-balancer-internal") == "true"
            or ann.get("service.beta.kubernetes.io/aws-load-balancer-scheme") == "internal"
        )
        if is_internal != internal:
            out.append(
                Problem(
                    "load-balancers",
                    f"Service/{namespace_of(svc)}/{name_of(svc)}",
                    f"internal={is_internal}, the stack asks internal={internal}",
                )
            )
    return out


# ---- probes ---------------------------------------------------------------------------------------


def check_probes(r: Rendered, health_paths: dict[str, set[str]]) -> list[Problem]:
    """Every httpGet probe targets a port its container declares and a path the server answers
    (`health_paths`: container name -> paths its image serves)."""
    out = []
    for w in workloads(r):
        for c in w.containers(init=False):
            declared = {(p["containerPort"], p.get("name")) for p in c.get("ports") or []}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                get = (c.get(kind) or {}).get("httpGet")
                if not get:
                    continue
                subject = f"{w.id}/{c['name']}"
                port = get.get("port")
                if not any(port in (p, n) for p, n in declared):
                    out.append(Problem("probes", subject, f"{kind} port {port!r} is not a declared containerPort"))
                known = health_paths.get(c["name"])
                if known is None:
                    out.append(Problem("probes", subject, "no known health paths for this container"))
                elif get.get("path") not in known:
                    out.append(Problem("probes", subject, f"{kind} path {get.get('path')!r} not in {sorted(known)}"))
    return out


# ---- call paths --------------------------------------------------------------------------------------

# CoreDNS as EKS runs it: not rendered by the stack, but every pod's DNS egress must reach it.
KUBE_DNS = Endpoint(
    "kube-dns",
    "kube-system",
    {"k8s-app": "kube-dns"},
    None,
    ((53, "dns", "UDP"), (53, "dns-tcp", "TCP"), (9153, "metrics", "TCP")),
)
INTERNET_IP = "203.0.113.10"  # TEST-NET-3: any public address (the Hugging Face Hub is behind a CDN)
EXTERNAL_PORTS = ((443, None, "TCP"), (5432, None, "TCP"))


def vpc_cidr(r: Rendered) -> str | None:
    vpcs = r.aws("aws:ec2/vpc:Vpc")
    return vpcs[0]["cidrBlock"] if vpcs else None


def pod_endpoints(r: Rendered, role_of: Callable[[Workload], str | None], cidr: str) -> list[Endpoint]:
    """One endpoint per workload, with a pod IP from the VPC (the VPC CNI gives pods VPC addresses)."""
    net = ipaddress.ip_network(cidr)
    out = []
    for i, w in enumerate(workloads(r)):
        out.append(
            Endpoint(
                role_of(w) or f"unknown:{w.id}",
                w.namespace,
                w.labels,
                str(net.network_address + 1000 + i),
                tuple(w.ports()),
            )
        )
    return out


def admitted_paths(
    ev: PolicyEvaluator, endpoints: list[Endpoint], own: Callable[[Endpoint], bool] = lambda e: True
) -> set[tuple[str, str, int, str]]:
    """(src, dst, port, protocol) for every pair of endpoints, one of them `own`, and every port the
    destination listens on."""
    out = set()
    for s in endpoints:
        for d in endpoints:
            if s is d or not (own(s) or own(d)):
                continue
            for port, _, proto in d.ports:
                if ev.admitted(s, d, port, proto):
                    out.add((s.name, d.name, port, proto))
    return out


def check_call_paths(
    r: Rendered,
    *,
    role_of: Callable[[Workload], str | None],
    cidr: str,
    expected: set[tuple[str, str, int, str]],
    extra: Iterable[Endpoint] = (),
) -> list[Problem]:
    """Every expected path is admitted and no other is: over all pods of the stack, CoreDNS, a VPC
    client and an internet host, on every port each destination listens on."""
    ev = PolicyEvaluator.of(r)
    net = ipaddress.ip_network(cidr)
    pods = pod_endpoints(r, role_of, cidr)
    ends = [
        *pods,
        KUBE_DNS,
        *extra,
        Endpoint("vpc", None, {}, str(net.broadcast_address - 10), EXTERNAL_PORTS),
        Endpoint("internet", None, {}, INTERNET_IP, EXTERNAL_PORTS),
    ]
    out = [Problem("call-paths", e.name, "workload has no role") for e in pods if e.name.startswith("unknown:")]
    mine = {id(e) for e in pods}  # paths between other parties are not this stack's policies' business
    got = admitted_paths(ev, ends, lambda e: id(e) in mine)
    present = {e.name for e in ends}
    want = {p for p in expected if p[0] in present and p[1] in present}
    for s, d, port, proto in sorted(want - got):
        out.append(Problem("call-paths", f"{s} -> {d}", f"{port}/{proto} is not admitted"))
    for s, d, port, proto in sorted(got - want):
        out.append(Problem("call-paths", f"{s} -> {d}", f"{port}/{proto} is admitted but not relied on"))
    return out


def check_policy_ports(r: Rendered, extra_pods: Iterable[Endpoint] = (KUBE_DNS,)) -> list[Problem]:
    """Each port a policy admits is one some pod it admits traffic to listens on: ingress ports on
    the pods the policy selects, egress ports on the pods its peers select (egress to addresses
    outside the cluster cannot be checked here). Policies that select no pod admit nothing."""
    ev = PolicyEvaluator.of(r)
    pods = [Endpoint(w.id, w.namespace, w.labels, None, tuple(w.ports())) for w in workloads(r)] + list(extra_pods)
    out = []
    for pol in r.kind("NetworkPolicy"):
        ns, spec = namespace_of(pol), pol.get("spec") or {}
        subject = f"NetworkPolicy/{ns}/{name_of(pol)}"
        selected = [p for p in pods if p.namespace == ns and selects(spec.get("podSelector", {}), p.labels)]
        if not selected:
            continue
        for rule in spec.get("ingress") or []:
            for pp in rule.get("ports") or []:
                if not any(_listens(p, pp) for p in selected):
                    out.append(
                        Problem(
                            "policy-ports",
                            subject,
                            f"ingress port {pp.get('port')!r}/"
                            f"{pp.get('protocol', 'TCP')}: no selected pod listens on it",
                        )
                    )
        for rule in spec.get("egress") or []:
            peers = [pe for pe in rule.get("to") or [] if "ipBlock" not in pe]
            if not peers:
                continue
            targets = [p for p in pods if any(ev._peer_matches(pe, p, ns) for pe in peers)]
            if not targets:
                out.append(Problem("policy-ports", subject, "egress peer selects no pod"))
                continue
            for pp in rule.get("ports") or []:
                if not any(_listens(p, pp) for p in targets):
                    out.append(
                        Problem(
                            "policy-ports",
                            subject,
                            f"egress port {pp.get('port')!r}/{pp.get('protocol', 'TCP')}: no peer pod listens on it",
                        )
                    )
    return out


def _listens(ep: Endpoint, pp: dict) -> bool:
    proto, want = pp.get("protocol", "TCP"), pp.get("port")
    for port, name, p in ep.ports:
        if p != proto:
            continue
        if want is None or (isinstance(want, int) and want <= port <= pp.get("endPort", want)) or want == name:
            return True
    return False


def scrape_targets(r: Rendered) -> list[tuple[Workload, int, str]]:
    """(pod, port, protocol) each ServiceMonitor / PodMonitor asks a scraper to reach."""
    ws = workloads(r)
    out = []
    for sm in r.kind("ServiceMonitor"):
        spec = sm.get("spec") or {}
        names = (spec.get("namespaceSelector") or {}).get("matchNames") or [namespace_of(sm)]
        any_ns = (spec.get("namespaceSelector") or {}).get("any", False)
        for svc in r.kind("Service"):
            svc_labels = (svc.get("metadata") or {}).get("labels") or {}
            if not (any_ns or namespace_of(svc) in names) or not selects(spec.get("selector"), svc_labels):
                continue
            pods = [
                w
                for w in ws
                if w.namespace == namespace_of(svc) and map_selects((svc.get("spec") or {}).get("selector"), w.labels)
            ]
            for ep in spec.get("endpoints") or []:
                for sp in (svc.get("spec") or {}).get("ports") or []:
                    if ep.get("port") not in (None, sp.get("name")) and ep.get("targetPort") is None:
                        continue
                    target = ep.get("targetPort", sp.get("targetPort", sp["port"]))
                    for w in pods:
                        for port, name, proto in w.ports():
                            if target in (port, name):
                                out.append((w, port, proto))
    for pm in r.kind("PodMonitor"):
        spec = pm.get("spec") or {}
        names = (spec.get("namespaceSelector") or {}).get("matchNames") or [namespace_of(pm)]
        for w in ws:
            if w.namespace in names and selects(spec.get("selector"), w.labels):
                for ep in spec.get("podMetricsEndpoints") or []:
                    for port, name, proto in w.ports():
                        if ep.get("port") in (name, port) or ep.get("portNumber") == port:
                            out.append((w, port, proto))
    return out


# ---- placement: nodeSelector / affinity / tolerations against node groups and pools --------------------


@dataclass(frozen=True)
class Capacity:
    """Nodes something can be scheduled on: the EKS system node group or one Karpenter NodePool."""

    name: str
    labels: dict
    taints: tuple
    label_values: Callable[[str], Callable[[str], bool] | None]
    resources: frozenset = frozenset()  # extended resources its nodes offer


def capacities(r: Rendered) -> list[Capacity]:
    out = []
    for ng in r.aws("aws:eks/nodeGroup:NodeGroup"):
        labels = dict(ng.get("labels") or {})
        taints = tuple(
            {"key": t["key"], "value": t.get("value"), "effect": EKS_TAINT_EFFECT.get(t["effect"], t["effect"])}
            for t in ng.get("taints") or []
        )
        types = set(ng.get("instanceTypes") or [])
        arch = "arm64" if "ARM" in (ng.get("amiType") or "") else "amd64"

        def values(key, labels=labels, types=types, arch=arch):
            if key in labels:
                return lambda v, want=labels[key]: v == want
            if key == "node.kubernetes.io/instance-type":
                return lambda v: v in types
            if key == "kubernetes.io/arch":
                return lambda v: v == arch
            if key == "kubernetes.io/os":
                return lambda v: v == "linux"
            return None

        out.append(Capacity(f"nodegroup/{ng.get('nodeGroupName') or 'system'}", labels, taints, values))
    for np in r.kind("NodePool"):
        tpl = (np.get("spec") or {}).get("template") or {}
        labels = {**((tpl.get("metadata") or {}).get("labels") or {}), "karpenter.sh/nodepool": name_of(np)}
        taints = tuple((tpl.get("spec") or {}).get("taints") or [])
        reqs = {q["key"]: q for q in (tpl.get("spec") or {}).get("requirements") or []}
        limits = set((np.get("spec") or {}).get("limits") or {})

        def values(key, labels=labels, reqs=reqs):
            if key in labels:
                return lambda v, want=labels[key]: v == want
            if key in reqs and reqs[key]["operator"] == "In":
                return lambda v, vals=tuple(reqs[key]["values"]): v in vals
            if key == "node.kubernetes.io/instance-type":
                fam = reqs.get("karpenter.k8s.aws/instance-family")
                return lambda v: fam is None or v.split(".")[0] in fam.get("values", [])
            return None

        out.append(
            Capacity(
                f"nodepool/{name_of(np)}",
                labels,
                taints,
                values,
                frozenset(k for k in limits if k in ACCELERATOR_RESOURCES),
            )
        )
    return out


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    for t in tolerations or []:
        op = t.get("operator", "Equal")
        if t.get("key") and t["key"] != taint["key"]:
            continue
        if not t.get("key") and op != "Exists":
            continue
        if op == "Equal" and t.get("value", "") != (taint.get("value") or ""):
            continue
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        return True
    return False


def _lands(c: Capacity, node_selector: dict, affinity: dict) -> bool:
    for k, v in (node_selector or {}).items():
        ok = c.label_values(k)
        if ok is None or not ok(v):
            return False
    terms = (
        ((affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    ).get("nodeSelectorTerms")
    if terms:

        def term_ok(term):
            for e in term.get("matchExpressions") or []:
                ok = c.label_values(e["key"])
                op, vals = e["operator"], e.get("values") or []
                if op == "In" and (ok is None or not any(ok(v) for v in vals)):
                    return False
                if op == "Exists" and ok is None:
                    return False
                if op == "DoesNotExist" and ok is not None:
                    return False
                if op == "NotIn" and ok is not None and all(ok(v) for v in vals) and len(vals) == 1:
                    return False
            return True

        if not any(term_ok(t) for t in terms):
            return False
    return True


@dataclass(frozen=True)
class Placement:
    """A pod's scheduling constraints; `everywhere` means a DaemonSet meant for every node of the
    capacities that offer `resource`."""

    subject: str
    node_selector: dict
    affinity: dict
    tolerations: list
    resources: frozenset = frozenset()
    everywhere: str | None = None


def workload_placements(r: Rendered) -> list[Placement]:
    out = []
    for w in workloads(r):
        res = frozenset(
            k
            for c in w.containers()
            for k in ((c.get("resources") or {}).get("limits") or {})
            if k in ACCELERATOR_RESOURCES
        )
        out.append(
            Placement(
                w.id, w.pod.get("nodeSelector") or {}, w.pod.get("affinity") or {}, w.pod.get("tolerations") or [], res
            )
        )
    return out


def _dig(d: dict, path: str) -> Any:
    for part in path.split(".") if path else []:
        d = (d or {}).get(part)
    return d


def helm_placements(r: Rendered, table: dict[str, list[tuple[str, str | None]]]) -> list[Placement]:
    """Pods of Helm releases: `table[release] = [(values path of a pod section, None or the extended
    resource whose nodes a DaemonSet must cover)]`; the section's `nodeSelector`, `affinity` and
    `tolerations` are what the chart puts on the pod."""
    out = []
    for release, doc in r.helm.items():
        for path, daemon_for in table.get(release, []):
            sec = _dig(doc.get("values") or {}, path) or {}
            out.append(
                Placement(
                    f"helm/{release}/{path or '.'}",
                    sec.get("nodeSelector") or {},
                    sec.get("affinity") or {},
                    sec.get("tolerations") or [],
                    everywhere=daemon_for,
                )
            )
    return out


def check_placement(placements: list[Placement], caps: list[Capacity]) -> list[Problem]:
    """Each pod lands on some capacity whose every hard taint it tolerates (effect included) and
    that offers the accelerators it requests; a device-plugin DaemonSet tolerates every pool of its kind."""
    out = []
    for p in placements:
        if p.everywhere:
            pools = [c for c in caps if p.everywhere in c.resources]
            for c in pools:
                bad = [t for t in c.taints if t["effect"] in HARD_EFFECTS and not tolerates(p.tolerations, t)]
                if bad or not _lands(c, p.node_selector, p.affinity):
                    out.append(Problem("placement", p.subject, f"misses {c.name} (untolerated {bad})"))
            continue
        cands = [c for c in caps if _lands(c, p.node_selector, p.affinity) and p.resources <= c.resources]
        if not cands:
            out.append(
                Problem(
                    "placement",
                    p.subject,
                    f"no node group or pool matches {p.node_selector} with {sorted(p.resources)}",
                )
            )
            continue
        ok = [c for c in cands if all(tolerates(p.tolerations, t) for t in c.taints if t["effect"] in HARD_EFFECTS)]
        if not ok:
            out.append(
                Problem(
                    "placement",
                    p.subject,
                    "tolerates no matching capacity: "
                    + "; ".join(f"{c.name} taints {[(t['key'], t['effect']) for t in c.taints]}" for c in cands),
                )
            )
    return out


# ---- node classes ------------------------------------------------------------------------------------


def check_node_classes(r: Rendered, given_private_subnets: tuple[str, ...] = ()) -> list[Problem]:
    """NodePool -> EC2NodeClass by name; EC2NodeClass subnets -> the private subnets (never a public
    one): tag terms match the stack's subnets, id terms the private subnets an existing VPC was given
    as (`given_private_subnets`); its instance profile is one the stack creates."""
    out = []
    classes = {name_of(c): c for c in r.kind("EC2NodeClass")}
    for np in r.kind("NodePool"):
        ref = (((np.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeClassRef") or {}
        if ref.get("name") not in classes or ref.get("kind") != "EC2NodeClass":
            out.append(Problem("node-classes", f"NodePool/{name_of(np)}", f"nodeClassRef {ref} names no EC2NodeClass"))
    subnets = r.aws("aws:ec2/subnet:Subnet")
    profiles = {p.get("name") for p in r.aws("aws:iam/instanceProfile:InstanceProfile")}
    for name, c in classes.items():
        spec = c.get("spec") or {}
        terms = spec.get("subnetSelectorTerms") or []
        ids = [t["id"] for t in terms if "id" in t]
        if ids:
            unknown = [i for i in ids if i not in given_private_subnets]
            if unknown or len(ids) < 2:
                out.append(
                    Problem(
                        "node-classes",
                        f"EC2NodeClass/{name}",
                        f"subnet ids {ids}: {unknown or 'fewer than 2'} not the given private subnets",
                    )
                )
            terms = [t for t in terms if "id" not in t]
        for term in terms:
            want = (term.get("tags") or {}).items()
            hit = [s for s in subnets if all((s.get("tags") or {}).get(k) == v for k, v in want)]
            public = [
                s for s in hit if "kubernetes.io/role/elb" in (s.get("tags") or {}) or s.get("mapPublicIpOnLaunch")
            ]
            if len(hit) < 2 or public:
                out.append(
                    Problem(
                        "node-classes",
                        f"EC2NodeClass/{name}",
                        f"subnet selector {term} matches {len(hit)} subnets ({len(public)} public)",
                    )
                )
        if spec.get("instanceProfile") not in profiles:
            out.append(
                Problem(
                    "node-classes",
                    f"EC2NodeClass/{name}",
                    f"instanceProfile {spec.get('instanceProfile')!r} is not created by the stack",
                )
            )
    return out


# ---- URLs in rendered config ---------------------------------------------------------------------------

CLUSTER_DOMAIN = "svc.cluster.local"


def resolve_service(r: Rendered, host: str, caller_ns: str) -> dict | None:
    """In-cluster DNS: <svc>, <svc>.<ns>, <svc>.<ns>.svc, <svc>.<ns>.svc.cluster.local."""
    parts = host.split(".")
    if (host.endswith("." + CLUSTER_DOMAIN) and len(parts) == 5) or (host.endswith(".svc") and len(parts) == 3):
        svc, ns = parts[0], parts[1]
    elif len(parts) == 2:
        svc, ns = parts
    elif len(parts) == 1:
        svc, ns = host, caller_ns
    else:
        return None
    hits = [s for s in r.kind("Service") if name_of(s) == svc and namespace_of(s) == ns]
    return hits[0] if hits else None


def trace_url(
    r: Rendered, url: str, caller: Workload, ev: PolicyEvaluator, cidr: str
) -> tuple[list[str], list[Workload]]:
    """(problems, backend workloads) for a URL a workload calls: scheme/port/Service/pods/policy."""
    u = urlsplit(url)
    probs = []
    if u.scheme not in ("http", "https") or not u.hostname:
        return [f"{url!r} is not an http(s) URL"], []
    svc = resolve_service(r, u.hostname, caller.namespace)
    if svc is None:
        return [f"{url!r}: host {u.hostname!r} is no Service of the stack"], []
    port = u.port or (443 if u.scheme == "https" else 80)
    sport = [p for p in (svc.get("spec") or {}).get("ports") or [] if p["port"] == port]
    if not sport:
        return [f"{url!r}: Service {name_of(svc)} has no port {port}"], []
    sp = sport[0]
    proto_name = sp.get("appProtocol") or sp.get("name")
    if proto_name != u.scheme:
        probs.append(f"{url!r}: scheme {u.scheme} but Service port {port} speaks {proto_name!r}")
    backends = [
        w
        for w in workloads(r)
        if w.namespace == namespace_of(svc) and map_selects((svc.get("spec") or {}).get("selector"), w.labels)
    ]
    if not backends:
        probs.append(f"{url!r}: Service {name_of(svc)} selects no pods")
    target = sp.get("targetPort", port)
    net = ipaddress.ip_network(cidr)
    src = Endpoint(caller.id, caller.namespace, caller.labels, str(net.network_address + 7))
    for b in backends:
        cport = [p for p, n, proto in b.ports() if target in (p, n) and proto == sp.get("protocol", "TCP")]
        if not cport:
            probs.append(f"{url!r}: {b.name} declares no port {target!r}")
            continue
        dst = Endpoint(b.id, b.namespace, b.labels, str(net.network_address + 8), tuple(b.ports()))
        if not ev.admitted(src, dst, cport[0], sp.get("protocol", "TCP")):
            probs.append(f"{url!r}: NetworkPolicies do not admit {caller.name} -> {b.name}:{cport[0]}")
    return probs, backends


def _flag_values(args: list[str], flag: str) -> list[str]:
    """The values after `flag` up to the next `--option` (argparse nargs='+')."""
    if flag not in args:
        return []
    rest = args[args.index(flag) + 1 :]
    return rest[: next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))]


def discovered_workers(r: Rendered, w: Workload, ev: PolicyEvaluator, cidr: str) -> tuple[list[str], list[Workload]]:
    """A vllm-router that discovers its workers by pod selector (`--service-discovery`): (problems,
    the pods it would route to). The selector must pick pods in the namespace it watches that declare
    the port it dials, and the policies must admit router -> each of them. Not a router: ([], [w])."""
    args = [str(a) for c in w.containers(init=False) for a in (c.get("args") or [])]
    if "--service-discovery" not in args:
        return [], [w]
    pairs = [a.split("=", 1) for a in _flag_values(args, "--selector")]
    selector = {p[0]: p[1] for p in pairs}
    ns = (_flag_values(args, "--service-discovery-namespace") or [None])[0]
    port = int((_flag_values(args, "--service-discovery-port") or ["80"])[0])
    if not selector or ns is None:
        return [f"{w.name}: pod discovery needs --selector and --service-discovery-namespace"], []
    workers = [x for x in workloads(r) if x.namespace == ns and x is not w and map_selects(selector, x.labels)]
    if not workers:
        return [f"{w.name}: --selector {selector} selects no pods in {ns}"], []
    net = ipaddress.ip_network(cidr)
    src = Endpoint(w.id, w.namespace, w.labels, str(net.network_address + 9))
    probs = []
    for x in workers:
        if port not in [p for p, _, proto in x.ports() if proto == "TCP"]:
            probs.append(f"{w.name}: worker {x.name} declares no port {port}")
            continue
        dst = Endpoint(x.id, x.namespace, x.labels, str(net.network_address + 10), tuple(x.ports()))
        if not ev.admitted(src, dst, port, "TCP"):
            probs.append(f"NetworkPolicies do not admit {w.name} -> {x.name}:{port}")
    return probs, workers


def _served_names(w: Workload) -> set[str]:
    names = set()
    for c in w.containers(init=False):
        args = [str(a) for a in (c.get("args") or [])]
        if "--served-model-name" in args:
            names.add(args[args.index("--served-model-name") + 1])
    return names


def litellm_configs(r: Rendered) -> list[tuple[dict, str, dict]]:
    """(ConfigMap, key, parsed LiteLLM config) for every ConfigMap entry holding a model_list."""
    out = []
    for cm in r.kind("ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            try:
                doc = load_yaml(text)
            except yaml.YAMLError:
                continue
            if isinstance(doc, dict) and "model_list" in doc:
                out.append((cm, key, doc))
    return out


def check_urls(
    r: Rendered, cidr: str, *, base_url_env: Iterable[str] = ("OPENAI_API_BASE_URL",), base_path: str = "/v1"
) -> list[Problem]:
    """Every `api_base` in a LiteLLM config and every base-URL env var resolves to a Service of the
    stack, a port of it, pods behind it that listen there, and a policy path from the caller.
    LiteLLM routes `hosted_vllm/<name>` to a backend that serves exactly that name."""
    out = []
    ev = PolicyEvaluator.of(r)
    ws = workloads(r)
    base_env = set(base_url_env)
    for cm, key, doc in litellm_configs(r):
        subject = f"ConfigMap/{namespace_of(cm)}/{name_of(cm)}"
        readers = [
            w
            for w in ws
            if w.namespace == namespace_of(cm)
            and any((v.get("configMap") or {}).get("name") == name_of(cm) for v in w.pod.get("volumes") or [])
        ]
        if not readers:
            out.append(Problem("urls", subject, "no workload mounts this config"))
        for w in readers:
            out += [Problem("urls", subject, p) for p in _config_path_problems(w, name_of(cm), key)]
        for entry in doc.get("model_list") or []:
            params = entry.get("litellm_params") or {}
            url = params.get("api_base")
            if url is None:
                out.append(Problem("urls", subject, f"route {entry.get('model_name')!r} has no api_base"))
                continue
            if urlsplit(url).path.rstrip("/") != base_path:
                out.append(Problem("urls", subject, f"{url!r}: path is not {base_path}"))
            for w in readers:
                probs, backends = trace_url(r, url, w, ev, cidr)
                out += [Problem("urls", subject, p) for p in probs]
                behind = [discovered_workers(r, b, ev, cidr) for b in backends]
                out += [Problem("urls", subject, p) for probs_b, _ in behind for p in probs_b]
                backends = [x for _, xs in behind for x in xs]
                model = str(params.get("model", ""))
                if model.startswith("hosted_vllm/"):
                    served = model.split("/", 1)[1]
                    for b in backends:
                        if _served_names(b) != {served}:
                            out.append(
                                Problem(
                                    "urls",
                                    subject,
                                    f"route {model!r} reaches {b.name}, which serves {sorted(_served_names(b))}",
                                )
                            )
    for w in ws:
        for c in w.containers():
            for e in c.get("env") or []:
                if e.get("name") in base_env and "value" in e:
                    if urlsplit(e["value"]).path.rstrip("/") != base_path:
                        out.append(Problem("urls", f"{w.id}/{c['name']}", f"{e['name']}: path is not {base_path}"))
                    probs, _ = trace_url(r, e["value"], w, ev, cidr)
                    out += [Problem("urls", f"{w.id}/{c['name']}", f"{e['name']}: {p}") for p in probs]
    return out


def _config_path_problems(w: Workload, cm_name: str, key: str) -> list[str]:
    """A `--config FILE` argument names the file the ConfigMap volume puts there."""
    vols = {v["name"] for v in w.pod.get("volumes") or [] if (v.get("configMap") or {}).get("name") == cm_name}
    out = []
    for c in w.containers(init=False):
        args = [str(a) for a in (c.get("args") or [])]
        if "--config" not in args:
            continue
        path = args[args.index("--config") + 1]
        files = {
            f"{m['mountPath'].rstrip('/')}/{key}"
            for m in c.get("volumeMounts") or []
            if m["name"] in vols and not m.get("subPath")
        }
        files |= {m["mountPath"] for m in c.get("volumeMounts") or [] if m["name"] in vols and m.get("subPath") == key}
        if path not in files:
            out.append(f"{w.name}: --config {path} is not where the ConfigMap puts {key} ({sorted(files)})")
    return out


# ---- secrets --------------------------------------------------------------------------------------------


def secret_refs(w: Workload) -> list[tuple[str, str | None, bool]]:
    """(secret name, key or None for all keys, optional) for every way a pod reads a Secret."""
    out = []
    for c in w.containers():
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                out.append((ref["name"], ref["key"], bool(ref.get("optional"))))
        for ef in c.get("envFrom") or []:
            if ef.get("secretRef"):
                out.append((ef["secretRef"]["name"], None, bool(ef["secretRef"].get("optional"))))
    for v in w.pod.get("volumes") or []:
        if v.get("secret"):
            out.append((v["secret"]["secretName"], None, bool(v["secret"].get("optional"))))
        for src in (v.get("projected") or {}).get("sources") or []:
            if src.get("secret"):
                out.append((src["secret"]["name"], None, bool(src["secret"].get("optional"))))
    return out


def check_secrets(
    r: Rendered,
    *,
    material: dict[tuple[str, str], str],
    allowed: dict[str, set[str]],
    needs: dict[str, set[str]],
    role_of: Callable[[Workload], str | None],
    gated_jobs: set[str],
    hf_material: str = "hf-token",
) -> list[Problem]:
    """Every Secret a pod reads exists with that key; each secret material (`material`: (Secret name,
    key) -> what it is) reaches only the roles `allowed` to hold it, every role gets what it `needs`,
    and the HF token reaches exactly the cache Jobs of gated models (`gated_jobs`, by Job name)."""
    out = []
    secrets = {
        (namespace_of(s), name_of(s)): set((s.get("stringData") or {}) | (s.get("data") or {}))
        for s in r.kind("Secret")
    }
    for w in workloads(r):
        role = role_of(w) or w.id
        held = set()
        for name, key, optional in secret_refs(w):
            keys = secrets.get((w.namespace, name))
            if keys is None or (key is not None and key not in keys):
                if not optional:
                    out.append(Problem("secrets", w.id, f"reads Secret {name}/{key}, which the stack does not create"))
                continue
            for k in [key] if key else sorted(keys):
                what = material.get((name, k))
                if what is None:
                    out.append(Problem("secrets", w.id, f"reads unclassified secret {name}/{k}"))
                    continue
                held.add(what)
                if role not in allowed.get(what, set()):
                    out.append(Problem("secrets", w.id, f"role {role} holds {what}"))
        for what in sorted(needs.get(role, set()) - held):
            out.append(Problem("secrets", w.id, f"role {role} needs {what} and does not get it"))
        if w.kind == "Job" and hf_material in allowed and (hf_material in held) != (w.name in gated_jobs):
            out.append(
                Problem(
                    "secrets",
                    w.id,
                    f"{hf_material} {'held' if hf_material in held else 'missing'}; "
                    f"gated model: {w.name in gated_jobs}",
                )
            )
    return out


# ---- pod security and volumes ------------------------------------------------------------------------------


def check_security(r: Rendered) -> list[Problem]:
    """Pod Security "restricted" plus the read-only root filesystem, for every container; each pod
    runs as its own ServiceAccount (one the stack creates), mounts what it declares and reads each
    claim through one volume."""
    out = []
    accounts = {(namespace_of(a), name_of(a)) for a in r.kind("ServiceAccount")}
    for w in workloads(r):
        pod = w.pod
        psc = pod.get("securityContext") or {}
        if pod.get("automountServiceAccountToken") is not False:
            out.append(Problem("security", f"{w.id}", "automountServiceAccountToken is not false"))
        sa = pod.get("serviceAccountName") or "default"
        if (w.namespace, sa) not in accounts:
            out.append(Problem("security", w.id, f"serviceAccountName {sa}: not a ServiceAccount of the stack"))
        for k in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(k):
                out.append(Problem("security", w.id, f"{k} is set"))
        vols = {v["name"]: v for v in pod.get("volumes") or []}
        for v in vols.values():
            if "hostPath" in v:
                out.append(Problem("security", w.id, f"hostPath volume {v['name']}"))
        claims: dict[str, list[str]] = {}
        for v in vols.values():
            if v.get("persistentVolumeClaim"):
                claims.setdefault(v["persistentVolumeClaim"]["claimName"], []).append(v["name"])
        for claim, names in claims.items():
            if len(names) > 1:
                out.append(Problem("volumes", w.id, f"claim {claim} in {len(names)} volumes {sorted(names)}"))
        for c in w.containers():
            subject = f"{w.id}/{c['name']}"
            sc = c.get("securityContext") or {}

            def eff(key, sc=sc, psc=psc):
                return sc.get(key, psc.get(key))

            if eff("runAsNonRoot") is not True:
                out.append(Problem("security", subject, "runAsNonRoot"))
            if eff("runAsUser") == 0:
                out.append(Problem("security", subject, "runAsUser 0"))
            if (eff("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
                out.append(Problem("security", subject, "seccompProfile"))
            if sc.get("allowPrivilegeEscalation") is not False:
                out.append(Problem("security", subject, "allowPrivilegeEscalation"))
            if sc.get("privileged"):
                out.append(Problem("security", subject, "privileged"))
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
                out.append(Problem("security", subject, "capabilities"))
            if sc.get("readOnlyRootFilesystem") is not True:
                out.append(Problem("security", subject, "readOnlyRootFilesystem"))
            for m in c.get("volumeMounts") or []:
                if m["name"] not in vols:
                    out.append(Problem("volumes", subject, f"mounts undeclared volume {m['name']}"))
    return out


# ---- quotas -------------------------------------------------------------------------------------------------


def _quantity(v: Any) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    v = str(v)
    for u, f in units.items():
        if v.endswith(u):
            return float(v[: -len(u)]) * f
    return float(v)


def check_quotas(r: Rendered) -> list[Problem]:
    """What the workloads of a namespace request at their deployed replica counts fits its
    ResourceQuota (`requests.<resource>`; a Job counts one pod)."""
    out = []
    for q in r.kind("ResourceQuota"):
        ns = namespace_of(q)
        for key, hard in (((q.get("spec") or {}).get("hard")) or {}).items():
            if not key.startswith("requests."):
                continue
            res = key.removeprefix("requests.")
            used = 0.0
            for w in workloads(r):
                if w.namespace != ns:
                    continue
                reps = 1 if w.kind in ("Job", "Pod") else (w.owner.get("spec") or {}).get("replicas", 1)
                per_pod = sum(
                    _quantity(
                        (
                            (c.get("resources") or {}).get("requests") or (c.get("resources") or {}).get("limits") or {}
                        ).get(res, 0)
                    )
                    for c in w.containers(init=False)
                )
                used += reps * per_pod
            if used > _quantity(hard):
                out.append(
                    Problem("quotas", f"ResourceQuota/{ns}/{name_of(q)}", f"{key}: workloads request {used:g} > {hard}")
                )
    return out


# ---- storage: EFS access point identity against the pods that use it ---------------------------------------


def check_storage_identity(r: Rendered, classes: Iterable[dict]) -> list[Problem]:
    """A pod writing to an EFS access-point volume runs as the access point's uid; a pod reading it
    has the uid or gid (directoryPerms give the group read access). `classes`: StorageClasses,
    from this stack or the platform stack it attaches to."""
    out = []
    efs = {
        name_of(c): c.get("parameters") or {}
        for c in classes
        if c.get("provisioner") == "efs.csi.aws.com" and (c.get("parameters") or {}).get("provisioningMode") == "efs-ap"
    }
    pvcs = {
        (namespace_of(p), name_of(p)): (p.get("spec") or {}).get("storageClassName")
        for p in r.kind("PersistentVolumeClaim")
    }
    for w in workloads(r):
        psc = w.pod.get("securityContext") or {}
        vols = {v["name"]: (v.get("persistentVolumeClaim") or {}).get("claimName") for v in w.pod.get("volumes") or []}
        for c in w.containers():
            sc = c.get("securityContext") or {}
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            gids = {
                sc.get("runAsGroup", psc.get("runAsGroup")),
                psc.get("fsGroup"),
                *(psc.get("supplementalGroups") or []),
            }
            for m in c.get("volumeMounts") or []:
                cls = pvcs.get((w.namespace, vols.get(m["name"])))
                if cls not in efs:
                    continue
                ap = efs[cls]
                ok = (
                    str(uid) == str(ap.get("uid"))
                    if not m.get("readOnly")
                    else str(uid) == str(ap.get("uid")) or str(ap.get("gid")) in {str(g) for g in gids if g is not None}
                )
                if not ok:
                    verb = "reads" if m.get("readOnly") else "writes"
                    out.append(
                        Problem(
                            "storage",
                            f"{w.id}/{c['name']}",
                            f"{verb} EFS class {cls} (uid {ap.get('uid')}, gid {ap.get('gid')}) as uid {uid}",
                        )
                    )
    return out


def job_hf_id(w: Workload) -> str | None:
    """The repository a cache Job downloads: its HF_ID variable (the script reads "$HF_ID", never a
    value written into the script), or `hf download <repo>` in a script that names it literally."""
    for c in w.containers():
        for e in c.get("env") or []:
            if e.get("name") == "HF_ID" and "value" in e:
                return e["value"]
        cmd = c.get("command") or []
        script = cmd[-1] if cmd else ""
        for part in script.split(";"):
            toks = shlex.split(part)
            if toks[:2] == ["hf", "download"] and len(toks) > 2 and not toks[2].startswith("-"):
                return toks[2]
    return None
