"""Every PromQL expression the plan ships parses (promql-parser, a port of Prometheus' own parser).

Where: PrometheusRule rules (`expr`), KEDA ScaledObject prometheus triggers (`query`), Grafana
dashboards in ConfigMaps (panel targets' `expr`, and the series selector of each template variable's
`label_values(...)`), and any other `expr`/`query` in manifests or Helm values. A sweep for
PromQL-looking strings anywhere in the plan keeps that list complete.

Grafana's variables are substituted as Grafana does before it sends a query: `$__rate_interval`
becomes a duration, a multi-value variable with "All" selected becomes its custom all value (`.*`), a
selection of several values becomes `(v1|v2)` with each value's regex metacharacters escaped for a
PromQL double-quoted string. Both the "All" and a two-value selection are parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import promql_parser
import pytest

from stacks.capacity import queries, scaling
from stacks.yamlio import load_yaml
from tests.conftest import STACK_FILES

# Grafana's built-in interval variables; `$__rate_interval` is at least four scrape intervals (15 s
# here), so one minute is what a default dashboard sees.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "3h", "__range_s": "10800"}
# A selection with the characters that need escaping (`.` and `-` in served names).
SELECTION = ("qwen3-0.6b", "llama-3.1-8b")
VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")
# An aggregation or range function opening, or a bare `up{`: what a PromQL string looks like.
LOOKS_LIKE_PROMQL = re.compile(
    r"\b(sum|avg|min|max|count|rate|irate|increase|histogram_quantile)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(|\bup\{"
)


def regex_escaped(value: str) -> str:
    """A value as Grafana's Prometheus data source puts it in a regex: backslashes doubled for the
    regex and again for the PromQL string; each metacharacter behind an escaped backslash."""
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"([$^*{}\[\]+?.()|])", r"\\\\\1", value)


def interpolate(expr: str, variables: dict[str, dict], select_all: bool) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        var = variables.get(name)
        assert var is not None, f"${name} is neither a Grafana built-in nor a variable of the dashboard: {expr}"
        if select_all and var.get("includeAll"):
            return var.get("allValue") or "(" + "|".join(map(regex_escaped, SELECTION)) + ")"
        return "(" + "|".join(map(regex_escaped, SELECTION)) + ")"

    return VAR.sub(one, expr)


def dashboard_queries(dash: dict) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for each target and variable of a dashboard, under both selections."""
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", []) if v.get("type") == "query"}
    for select_all in (True, False):
        sel = "all" if select_all else "two"
        for p in dash.get("panels", []):
            for t in p.get("targets", []):
                yield f"{dash['uid']}/{p['title']}/{t['refId']}[{sel}]", interpolate(t["expr"], variables, select_all)
        for v in variables.values():
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = LABEL_VALUES.match(q)
            assert m, f"{dash['uid']}: variable {v['name']}: {q!r} is not label_values(selector, label)"
            # Grafana sends the selector as match[] to /api/v1/series: it must parse as PromQL.
            yield f"{dash['uid']}/${v['name']}[{sel}]", interpolate(m.group(1), variables, select_all)


def is_dashboard(text: str) -> dict | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and "panels" in doc else None


def shipped(doc: dict, where: str) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every expression in one manifest or Helm values document."""
    if doc.get("kind") == "ScaledObject":
        for t in doc["spec"]["triggers"]:
            if t["type"] == "prometheus":
                yield f"{where}/{t.get('name')}", t["metadata"]["query"]
        return
    for dash in dashboards_in(doc):
        yield from ((f"{where}/{w}", e) for w, e in dashboard_queries(dash))
    yield from ((f"{where}/{w}", e) for w, e in keyed(doc, ""))


def keyed(node, path: str) -> Iterator[tuple[str, str]]:
    """Every string under an `expr` key (rules, anywhere) outside dashboards."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield f"{path}.{k}", v
            else:
                yield from keyed(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from keyed(v, f"{path}[{i}]")


def strings(node) -> Iterator[str]:
    if isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        dash = is_dashboard(node)
        yield from strings(dash) if dash else [node]


def documents(out: Path) -> Iterator[tuple[str, dict]]:
    for f in sorted((out / "manifests").glob("*.yaml")):
        yield f.stem, load_yaml(f.read_text())
    for f in sorted((out / "helm").glob("*.yaml")):
        yield f"helm/{f.stem}", load_yaml(f.read_text())["values"]


def problem(expr: str) -> str | None:
    """Why `expr` is not a query Prometheus would run, or None."""
    try:
        tree = promql_parser.parse(expr)
    except ValueError as e:
        return str(e)
    if isinstance(tree, promql_parser.MatrixSelector | promql_parser.SubqueryExpr | promql_parser.StringLiteral):
        return "a range vector or string: neither a graph, an alert nor a scaling metric"
    # Placeholders inside a label value parse (they are strings): look for them here.
    if re.search(r"<\w+_ns>", expr):
        return "a namespace placeholder was left in"
    if VAR.search(expr):
        return "a template variable was left in"
    return None


def collected(out: Path) -> list[tuple[str, str]]:
    return [(f"{name}{w}", e) for name, doc in documents(out) for w, e in shipped(doc, "")]


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_every_shipped_expression_parses(plan_of, stack_file):
    _, _, out = plan_of(stack_file)
    found = collected(out)
    bad = [f"{w}: {p}\n    {e}" for w, e in found if (p := problem(e))]
    assert not bad, "\n".join(bad)
    # Every rule set, scaler and dashboard contributes: a collector that finds nothing in one is broken.
    sources = {name for name, doc in documents(out) if doc.get("kind") in ("PrometheusRule", "ScaledObject")}
    sources |= {name for name, doc in documents(out) if dashboards_in(doc)}
    assert sources <= {w.split("/")[0].split(".")[0] for w, _ in found}, sources
    # Completeness: no PromQL-looking string in the plan escaped the collectors above.
    assert not strays([doc for _, doc in documents(out)]), strays([doc for _, doc in documents(out)])


def strays(docs: list[dict]) -> set[str]:
    """PromQL-looking strings in `docs` that the collectors do not parse."""
    raw = {e for doc in docs for _, e in shipped(doc, "")}
    raw |= {t["expr"] for doc in docs for d in dashboards_in(doc) for p in d["panels"] for t in p["targets"]}
    return {s for doc in docs for s in strings(doc) if LOOKS_LIKE_PROMQL.search(s) and s not in raw}


def test_the_collector_finds_every_expression_of_dev(plan_of):
    """Counted by hand from stacks/capacity/queries.py and Pulumi.dev.yaml (one model, KEDA on two
    triggers): dashboards count targets plus variables, each under two selections."""
    _, _, out = plan_of(next(f for f in STACK_FILES if f.name == "Pulumi.dev.yaml"))
    per_doc: dict[str, int] = {}
    for w, _ in collected(out):
        key = w.split("/")[0].split(".")[0]
        per_doc[key] = per_doc.get(key, 0) + 1
    assert per_doc == {
        "configmap-monitoring-dashboard-llm-model-serving": 2 * (22 + 1),
        "configmap-monitoring-dashboard-llm-gateway": 2 * 14,
        "configmap-monitoring-dashboard-llm-autoscaling": 2 * (7 + 2),
        "configmap-monitoring-dashboard-llm-accelerators": 2 * 5,
        "prometheusrule-monitoring-llm-serving": 6 + 1,  # six per model, one for the gateway
        "scaledobject-models-qwen3-0-6b": 2,
    }


def dashboards_in(doc: dict) -> list[dict]:
    if doc.get("kind") != "ConfigMap":
        return []
    return [d for text in (doc.get("data") or {}).values() if (d := is_dashboard(text))]


# ---- the query sources, directly -------------------------------------------------------------------------


def test_every_query_in_the_list_parses_for_dashboards_and_alerts():
    variables = {
        name: {"name": name, "includeAll": True, "allValue": ".*"} for d in queries.DASHBOARDS for name in d.variables
    }
    target = queries.ModelTarget("qwen3-0.6b", "qwen3-0-6b", 2, 2.0, 600, "models/vllm-qwen3-0-6b")
    bad = []
    for q in queries.QUERIES:
        grafana = q.expr.replace(queries.MODELS_NS, "models").replace(queries.GATEWAY_NS, "gateway")
        for expr in (
            interpolate(grafana, variables, True),
            interpolate(grafana, variables, False),
            queries.for_model(q.expr, target, "models").replace(queries.GATEWAY_NS, "gateway"),
        ):
            if p := problem(expr):
                bad.append(f"{q.key}: {p}\n    {expr}")
    for metric, _ in queries.VARIABLES.values():
        if p := problem(metric.replace(queries.MODELS_NS, "models")):
            bad.append(f"variable selector {metric}: {p}")
    assert not bad, "\n".join(bad)
    assert len(queries.QUERIES) >= 30  # the list itself, not an empty import


def test_every_scaling_query_parses():
    for name in ("qwen3-0.6b", "meta-llama/Llama-3.1-8B-Instruct"):
        for q in (scaling.running_query(name, "m"), scaling.waiting_query(name, "m"), scaling.wake_query(name, "g")):
            assert problem(q) is None, q


# ---- negative controls -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "sum by (model_name) (rate(vllm:request_success_total[1m])",  # unclosed parenthesis
        "rate(vllm:request_success_total[$__rate_interval])",  # a Grafana variable left in
        'sum(vllm:num_requests_running{model_name=~"qwen3\\-0.6b"})',  # `\-` is no PromQL string escape
        'sum(vllm:num_requests_running{model_name=~"(a|b"})',  # not a regex
        "rate(vllm:request_success_total[1m])[5m]",  # a range vector
        'up{namespace="<models_ns>"}',  # placeholder left in: parses, still wrong
        'max(vllm:kv_cache_usage_perc{model_name=~"$model"}) > 0.9',  # an alert Grafana never interpolates
        "quantile_over(0.9, up)",  # no such function
    ],
)
def test_a_broken_expression_is_reported(expr):
    assert problem(expr) is not None


def test_a_query_in_an_unknown_place_is_not_missed():
    rule = {"kind": "PrometheusRule", "spec": {"groups": [{"rules": [{"expr": "sum(up)"}]}]}}
    assert strays([rule]) == set()  # control: a known place
    adapter = {"rules": {"custom": [{"metricsQuery": "sum(rate(x[1m])) by (pod)"}]}}
    assert strays([rule, adapter]) == {"sum(rate(x[1m])) by (pod)"}


def test_grafana_interpolation_is_what_prometheus_accepts():
    variables = {"model": {"name": "model", "includeAll": True, "allValue": ".*"}}
    expr = 'sum(rate(x{model_name=~"$model"}[$__rate_interval]))'
    assert interpolate(expr, variables, True) == 'sum(rate(x{model_name=~".*"}[1m]))'
    # `.` is a metacharacter (`-` is not outside a class): a backslash for the regex, doubled for
    # the PromQL string (written out by hand).
    two = r'sum(rate(x{model_name=~"(qwen3-0\\.6b|llama-3\\.1-8b)"}[1m]))'
    assert interpolate(expr, variables, False) == two
    assert problem(two) is None
    # The string Prometheus matches against: the parser's own rendering unescapes one level.
    assert r'"(qwen3-0\.6b|llama-3\.1-8b)"' in str(promql_parser.parse(two))


# ---- every query of the stack's own servers is scoped to the stack's namespaces --------------------------

# Node-level series: the nodes (and their accelerators and Karpenter's pools) are shared by every stack
# on the cluster, so these views are cluster-wide on purpose and carry no namespace of ours.
CLUSTER_WIDE_METRICS = re.compile(r"karpenter_\w+|DCGM_\w+|neuroncore_\w+|neuron_runtime_\w+")


def unscoped(expr: str, namespaces: set[str]) -> list[str]:
    """The series selectors of `expr` without an exact `namespace="<one of ours>"` matcher."""
    bad: list[str] = []

    def visit(node) -> None:
        if not isinstance(node, promql_parser.VectorSelector):
            return
        if node.name and CLUSTER_WIDE_METRICS.fullmatch(node.name):
            return
        ns = [m for m in node.matchers.matchers if m.name == "namespace"]
        if not any(m.op == promql_parser.MatchOp.Equal and m.value in namespaces for m in ns):
            bad.append(str(node))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return bad


def own_namespaces(stack_file: Path) -> set[str]:
    """The stack's (models, gateway) namespaces, written out: shared names, or team-prefixed ones."""
    config = load_yaml(stack_file.read_text())["config"]
    team = (config.get("llm-serving:team") or {}).get("name")
    return {f"{team}-models", f"{team}-gateway"} if team else {"models", "gateway"}


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_every_shipped_query_names_the_stacks_namespace(plan_of, stack_file):
    """KEDA triggers, alerts and dashboards read only the stack's own series: a second stack serving the
    same model name (a team beside the platform) must not scale or alert on this one's load."""
    _, _, out = plan_of(stack_file)
    found = collected(out)
    bad = [f"{w}: {s}" for w, e in found for s in unscoped(e, own_namespaces(stack_file))]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "expr",
    [
        'sum(vllm:num_requests_running{model_name="m"})',  # no namespace
        'sum(vllm:num_requests_running{namespace=~".*", model_name="m"})',  # a regex that takes all
        'sum(vllm:num_requests_running{namespace="other-models", model_name="m"})',  # someone else's
        'sum(vllm:num_requests_running{namespace!="models"})',  # a negative matcher
        'sum(rate(x{namespace="models"}[5m])) / sum(rate(y[5m]))',  # one side of a ratio unscoped
        '(count(up{namespace="gateway"} unless up offset 10m) or vector(0))',  # inside `unless … offset`
    ],
)
def test_an_unscoped_query_is_reported(expr):
    assert unscoped(expr, {"models", "gateway"})


def test_a_scoped_query_and_a_node_level_one_pass():
    assert unscoped('sum(a{namespace="models"}) / sum(b{namespace="gateway", x="y"})', {"models", "gateway"}) == []
    assert unscoped("avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)", {"models", "gateway"}) == []
