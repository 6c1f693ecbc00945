"""The planner's view of a stack as plain data: summary.json rows and the plan table."""

from __future__ import annotations

from stacks.capacity import gateway_sizing, spot, startup
from stacks.config import StackIntent


def model_rows(intent: StackIntent) -> list[dict]:
    rows = []
    for name, m in intent.models.items():
        s = m.sizing
        lo, hi = m.hourly_usd
        rows.append(
            {
                "name": name,
                "hfId": m.hf_id,
                "accelerator": m.kind,
                "instanceType": s.instance.name,
                "replicas": {"min": m.replicas_min, "max": m.replicas_max},
                "tensorParallel": s.tensor_parallel,
                "maxModelLen": s.max_model_len,
                "maxNumSeqs": s.max_num_seqs,
                "weightsGiBPerDevice": round(s.weights_gib_per_device, 2),
                "kvBytesPerToken": s.kv_bytes_per_token,
                "kvGiBPerDevice": round(s.kv_gib_per_device, 2),
                "kvTokens": s.kv_tokens,
                "maxConcurrency": round(s.max_concurrency, 1),
                "fits": s.fits,
                "warnings": list(m.warnings),
                "hourlyUsd": {"min": lo, "max": hi},
                "autoscaling": scaling_row(intent, m),
                "startup": startup.summary(m),
                "spotHourlyUsd": spot.row(m, intent.pools[m.pool].spec.capacityTypes),
            }
        )
    return rows


def scaling_row(intent: StackIntent, m) -> dict | None:
    """What the model's ScaledObject does (None: autoscaling off, the model runs replicas.min)."""
    if not intent.config.autoscaling.enabled:
        return None
    from stacks.capacity import scaling

    spec = scaling.scaling_spec(intent.config, m)
    t = scaling.model_targets(intent.config, m)
    return {
        "targetRunning": t.running,
        "targetWaiting": t.waiting,
        "scaleUpWindowSeconds": spec.scale_up_window_s,
        "scaleDownWindowSeconds": spec.scale_down_window_s,
        "fallbackReplicas": spec.fallback_replicas,
        "scaleToZero": spec.min_replicas == 0,
        "coldStartSeconds": scaling.startup_budget(m),
        "floors": [
            {"timezone": f.timezone, "start": f.start, "end": f.end, "replicas": f.replicas} for f in spec.floors
        ],
    }


def pool_rows(intent: StackIntent) -> list[dict]:
    out = []
    for name, p in intent.pools.items():
        users = sorted(m.name for m in intent.models.values() if m.pool == name)
        out.append(
            {
                "name": name,
                "accelerator": p.spec.accelerator,
                "families": list(p.families),
                "capacityTypes": list(p.spec.capacityTypes),
                "models": users,
            }
        )
    return out


def team_models(intent: StackIntent) -> dict[str, frozenset[str]]:
    """Which models each team may call (the showback input). A team stack's models are its own; on a
    platform stack, `gateway.teams` (name -> `allowedModels`, model keys, validated); no teams -> {}."""
    cfg = intent.config
    if cfg.team is not None:
        return {cfg.team.name: frozenset(intent.models)}
    return {team: frozenset(t.allowedModels) for team, t in cfg.gateway.teams.items()}


def summary(intent: StackIntent, resource_count: int, resources: list | None = None) -> dict:
    """`hourlyUsd` stays the accelerator nodes' $/h (the planner's); with the recorded `resources`, the doc
    also has `deployTime` (modelled `pulumi up`, critical path) and `stackHourlyUsd` (the whole stack)."""
    lo, hi = intent.hourly_usd
    doc = {
        "stack": intent.stack,
        "resourceCount": resource_count,
        "hourlyUsd": {"min": lo, "max": hi},
        "pools": pool_rows(intent),
        "models": model_rows(intent),
    }
    from stacks.capacity import costs

    doc["costByTeam"] = costs.cost_by_team({n: m.hourly_usd for n, m in intent.models.items()}, team_models(intent))
    if sized := gateway_sizing.size(intent.config):
        doc["gatewaySizing"] = sized.as_dict()
    if resources is not None:
        from stacks.capacity import costs, deploytime

        doc["deployTime"] = deploytime.critical_path(resources).as_dict()
        doc["stackHourlyUsd"] = costs.stack_cost(
            resources, {n: m.replicas_max for n, m in intent.models.items()}
        ).as_dict()
    return doc


def table(summary_doc: dict, stack_warnings: tuple[str, ...] = ()) -> str:
    head = [
        "model",
        "accel",
        "instance",
        "replicas",
        "TP",
        "ctx",
        "seqs",
        "weights GiB/dev",
        "KV GiB/dev",
        "KV tokens",
        "max conc",
        "fits",
    ]
    rows = []
    for m in summary_doc["models"]:
        rows.append(
            [
                m["name"],
                m["accelerator"],
                m["instanceType"],
                f"{m['replicas']['min']}-{m['replicas']['max']}",
                str(m["tensorParallel"]),
                str(m["maxModelLen"]),
                str(m["maxNumSeqs"]),
                f"{m['weightsGiBPerDevice']:.2f}",
                f"{m['kvGiBPerDevice']:.2f}",
                str(m["kvTokens"]),
                f"{m['maxConcurrency']:.1f}",
                "yes" if m["fits"] else "NO",
            ]
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()  # noqa: E731
    lines = [f"stack {summary_doc['stack']}", "", fmt(head), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows] or ["(no models)"]
    for w in stack_warnings:
        lines.append(f"warning: {w}")
    for m in summary_doc["models"]:
        for w in m["warnings"]:
            lines.append(f"warning: {m['name']}: {w}")
    lines += scaling_lines(summary_doc["models"]) + startup.lines(summary_doc["models"])
    lines.append("")
    for p in summary_doc["pools"]:
        lines.append(
            f"pool {p['name']}: {p['accelerator']} [{', '.join(p['families'])}] "
            f"{'/'.join(p['capacityTypes'])} -> {', '.join(p['models']) or '(no models)'}"
        )
    h = summary_doc["hourlyUsd"]
    lines.append(
        f"accelerator nodes: ${h['min']:.2f}-${h['max']:.2f}/h on-demand (us-east-1 prices; "
        f"platform nodes, NAT, EFS, RDS not included)"
    )
    lines += spot.lines(summary_doc["models"]) + team_lines(summary_doc.get("costByTeam"))
    lines += gateway_sizing.lines(summary_doc.get("gatewaySizing"))
    lines += deploy_lines(summary_doc.get("deployTime")) + cost_lines(summary_doc.get("stackHourlyUsd"))
    lines.append(f"resources: {summary_doc['resourceCount']}")
    return "\n".join(lines) + "\n"


def scaling_lines(models: list[dict]) -> list[str]:
    out = []
    for m in models:
        a, r, h = m.get("autoscaling"), m["replicas"], m["hourlyUsd"]
        if a is None:
            continue
        line = (
            f"autoscaling {m['name']}: {r['min']}-{r['max']} replicas on {a['targetRunning']} running / "
            f"{a['targetWaiting']} waiting requests per replica; scale-down after {a['scaleDownWindowSeconds']}s; "
            f"${h['min']:.2f}/h at min, ${h['max']:.2f}/h at max"
        )
        floors = [f"{f['replicas']} from '{f['start']}' to '{f['end']}' {f['timezone']}" for f in a["floors"]]
        if floors:
            line += "; floors: " + ", ".join(floors)
        out.append(line)
        if a["scaleToZero"]:
            out.append(
                f"autoscaling {m['name']}: scales to zero — the first request after idle waits a cold start "
                f"of up to {a['coldStartSeconds']}s (node launch + model load) and may fail meanwhile"
            )
    return out


def team_lines(by_team: dict | None) -> list[str]:
    """Showback: one line per team (only when the stack has teams)."""
    from stacks.capacity.costs import SHOWBACK_RULE, UNASSIGNED

    if not by_team or set(by_team) == {UNASSIGNED}:
        return []
    width = max(len(t) for t in by_team)
    out = [f"accelerator $/h by team ({SHOWBACK_RULE}):"]
    for team, row in by_team.items():
        shares = ", ".join(f"{m}" if s == 1 else f"{m} x{s:g}" for m, s in row["models"].items())
        out.append(f"  {team.ljust(width)}  ${row['min']:.2f}-${row['max']:.2f}  {shares}")
    return out


def _mmss(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}m{s % 60:02d}s"


def deploy_lines(dt: dict | None) -> list[str]:
    if not dt:
        return []
    path = " -> ".join(f"{s['name']} {_mmss(s['seconds'])}" for s in dt["path"])
    return [
        f"modelled pulumi up: {_mmss(dt['seconds'])} (critical path: {path}; durations: stacks/catalog/durations.yaml)"
    ]


def cost_lines(cost: dict | None) -> list[str]:
    if not cost:
        return []
    rows = [[i["name"], str(i["count"]), f"${i['min']:.4f}", f"${i['max']:.4f}", i["note"]] for i in cost["items"]]
    rows.append(["total", "", f"${cost['min']:.4f}", f"${cost['max']:.4f}", ""])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    from stacks.capacity.costs import NOT_INCLUDED

    out = ["whole stack $/h (us-east-1 on-demand, min-max; prices: stacks/catalog/prices.yaml):"]
    for r in rows:
        out.append(
            (
                "  "
                + "  ".join(c.rjust(w) if k else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths, strict=False)))
                + (f"  {r[4]}" if r[4] else "")
            ).rstrip()
        )
    out.append(f"  {NOT_INCLUDED}")
    return out
