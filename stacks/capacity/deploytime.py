"""Modelled `pulumi up` time: the critical path through what the program registers.

The engine creates a resource once everything it waits for is done: its dependencies (explicit
`depends_on` plus the resources whose outputs feed its inputs), its parent (a child's registration waits
for the parent's URN, which a local component gets at once and a custom resource only when created) and
its provider (a Kubernetes object waits for the provider, which waits for the cluster's kubeconfig).
With unlimited parallelism the run takes as long as the longest chain of creates. Each create takes the
catalog's duration for its type (stacks/catalog/durations.yaml, every row with its source); local
components take 0 s. URNs the recording does not hold (e.g. the `eksCluster` child of the remote
eks.Cluster, or default providers) add no time: their owner is waited for anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from stacks import catalog

SKIP_AWAIT = "pulumi.com/skipAwait"


class Node(Protocol):
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict
    dependencies: tuple[str, ...]
    providers: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    name: str
    type: str
    seconds: float
    finish: float


@dataclass(frozen=True)
class DeployTime:
    seconds: float
    path: tuple[Step, ...]  # first create to last, zero-time steps left out

    def as_dict(self) -> dict:
        return {
            "seconds": round(self.seconds),
            "path": [{"name": s.name, "type": s.type, "seconds": round(s.seconds)} for s in self.path],
        }


def variant(node: Node) -> str | None:
    """What refines a type's duration: chart for Helm releases, spec.type for Services, Multi-AZ for RDS."""
    i = node.inputs or {}
    if node.type == "kubernetes:helm.sh/v3:Release":
        return str(i.get("chart", "")).rsplit("/", 1)[-1] or None
    if node.type == "kubernetes:core/v1:Service":
        return (i.get("spec") or {}).get("type")
    if node.type == "aws:rds/instance:Instance":
        return "multiAz" if i.get("multiAz") else None
    return None


def skips_await(node: Node) -> bool:
    annotations = ((node.inputs or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(SKIP_AWAIT, "")).lower() == "true"


def job_deadline(node: Node) -> float | None:
    """A Job's own spec.activeDeadlineSeconds: it completes or fails by then, whatever the await allows."""
    if node.type != "kubernetes:batch/v1:Job":
        return None
    deadline = ((node.inputs or {}).get("spec") or {}).get("activeDeadlineSeconds")
    return float(deadline) if isinstance(deadline, int | float) and not isinstance(deadline, bool) else None


def duration(node: Node, table: catalog.Durations | None = None) -> catalog.Duration:
    table = table or catalog.durations()
    hit = _duration(node, table)
    deadline = job_deadline(node)
    if deadline is not None and deadline < hit.seconds:
        return catalog.Duration(seconds=deadline, source="the Job's own spec.activeDeadlineSeconds")
    return hit


def _duration(node: Node, table: catalog.Durations) -> catalog.Duration:
    if node.type.startswith("kubernetes:") and node.custom and skips_await(node):
        return table.lookup("kubernetes:skipAwait") or table.default
    v = variant(node)
    for key in ([f"{node.type}|{v}"] if v else []) + [node.type]:
        hit = table.lookup(key)
        if hit is not None:
            return hit
    if not node.custom:
        return table.component  # a local component (remote ones have their own row)
    if node.type.startswith("kubernetes:"):
        return table.lookup("kubernetes:default") or table.default
    return table.default


def waits_for(node: Node) -> set[str]:
    out = set(node.dependencies) | set(getattr(node, "providers", ()) or ())
    if node.parent:
        out.add(node.parent)
    return out


def critical_path(nodes: Iterable[Node], table: catalog.Durations | None = None) -> DeployTime:
    """Earliest finish of every node with unlimited parallelism; the longest chain, named."""
    by_urn = {n.urn: n for n in nodes}
    finish, before = earliest_finish(by_urn, table)
    if not finish:
        return DeployTime(0.0, ())
    end = max(sorted(finish), key=lambda u: finish[u])
    chain: list[Step] = []
    cur: str | None = end
    while cur is not None:
        n = by_urn[cur]
        secs = duration(n, table).seconds
        if secs > 0:
            chain.append(Step(name=n.name, type=n.type, seconds=secs, finish=finish[cur]))
        cur = before[cur]
    return DeployTime(seconds=finish[end], path=tuple(reversed(chain)))


def earliest_finish(
    by_urn: dict[str, Node], table: catalog.Durations | None
) -> tuple[dict[str, float], dict[str, str | None]]:
    """(urn -> earliest finish, urn -> the dependency it waited for last, None for a root)."""
    finish: dict[str, float] = {}
    before: dict[str, str | None] = {}

    def visit(urn: str, trail: frozenset[str]) -> float:
        if urn in finish:
            return finish[urn]
        if urn in trail:
            raise ValueError(f"dependency cycle through {urn}")
        node = by_urn[urn]
        start, prev = 0.0, None
        for dep in sorted(waits_for(node) & by_urn.keys()):
            f = visit(dep, trail | {urn})
            if f > start:
                start, prev = f, dep
        finish[urn] = start + duration(node, table).seconds
        before[urn] = prev
        return finish[urn]

    for urn in sorted(by_urn):
        visit(urn, frozenset())
    return finish, before
