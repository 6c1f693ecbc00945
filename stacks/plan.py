"""Offline plan: `python -m stacks.plan STACK [--config FILE] [--out DIR] [--bench RESULT.json]`.

Validates the stack config, runs the whole program (__main__.py) under Pulumi mocks, prints what
would be deployed, and with --out writes resources.json, manifests/, helm/ and summary.json.
Exit 0 on success, 2 on invalid config (one `error: <key path>: …` line per problem).
--bench puts a `stacks.bench --json` result beside the plan (stacks/measure/compare.py): each model's
measured knee and $ per 1M output tokens next to its planned max concurrency, a warning line where they
differ by more than 20 %; exit 2 with one line for an unreadable result or a model not in the stack.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import sys
import tempfile
from pathlib import Path
from typing import Any

import pulumi

from stacks.measure import compare
from stacks.yamlio import dump_yaml, load_yaml

ROOT = Path(__file__).resolve().parent.parent


def pulumi_config(stack_file: Path) -> tuple[dict[str, str], list[str]]:
    """The config map `pulumi up` would hand the program: Pulumi.yaml defaults + the stack file.
    Objects travel as JSON strings; secure values are not decryptable offline (placeholders)."""
    project = load_yaml((ROOT / "Pulumi.yaml").read_text()) or {}
    out: dict[str, str] = {}
    secret: list[str] = []
    for k, decl in (project.get("config") or {}).items():
        if isinstance(decl, dict) and "default" in decl:
            full = k if ":" in k else f"{project['name']}:{k}"
            out[full] = _enc(decl["default"])
    from stacks.config import read_stack_document

    stack_doc = read_stack_document(stack_file)  # strict reader: ConfigError, never a traceback
    for k, v in (stack_doc.get("config") or {}).items():
        if isinstance(v, dict) and set(v) == {"secure"}:
            out[k] = "[offline-secret]"
            secret.append(k)
        else:
            out[k] = _enc(v)
    return out, secret


def _enc(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _int_floats(v: Any) -> Any:
    """Protobuf carries every number as a double; write 2 rather than 2.0 where that is what was meant."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {k: _int_floats(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_int_floats(x) for x in v]
    return v


def run_program(stack: str, stack_file: Path, timeout: float = 60.0):
    """(intent, recording) for a stack file; raises ConfigError on invalid config."""
    from stacks import config as cfgmod
    from stacks.offline import runtime

    intent = cfgmod.load_file(stack_file, stack=stack)  # validate before anything is registered
    conf, secret = pulumi_config(stack_file)
    program = lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__pulumi_main__")  # noqa: E731
    rec = runtime.run(program, config=conf, secret_keys=secret, stack=stack, region=intent.region, timeout=timeout)
    return intent, rec


def k8s_objects(rec) -> list[tuple[str, dict]]:
    out = []
    for r in rec.resources:
        if not r.type.startswith("kubernetes:") or r.type.startswith("kubernetes:helm") or not r.custom:
            continue
        if r.type.startswith("pulumi:providers"):
            continue
        _, gv_kind = r.type.split(":", 1)
        group_version, kind = gv_kind.rsplit(":", 1)
        inputs = _int_floats(dict(r.inputs))
        if "apiVersion" not in inputs:
            gv = group_version.replace("core/", "")
            inputs = {"apiVersion": gv, "kind": kind, **inputs}
        out.append((r.name, inputs))
    return out


def write_outputs(out: Path, intent, rec) -> dict:
    from stacks.report import summary

    out.mkdir(parents=True, exist_ok=True)
    resources = [r for r in rec.resources if r.type != "pulumi:pulumi:Stack"]
    resources.sort(key=lambda r: r.urn)
    (out / "resources.json").write_text(
        json.dumps(
            [
                {
                    "urn": r.urn,
                    "type": r.type,
                    "name": r.name,
                    "parent": r.parent,
                    "custom": r.custom,
                    "inputs": _int_floats(r.inputs),
                    "dependencies": list(r.dependencies),
                }
                for r in resources
            ],
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    man = out / "manifests"
    man.mkdir(exist_ok=True)
    for old in man.glob("*.yaml"):
        old.unlink()
    for name, obj in sorted(k8s_objects(rec), key=lambda x: x[0]):
        ns = (obj.get("metadata") or {}).get("namespace", "_cluster")
        fname = f"{obj['kind']}-{ns}-{(obj.get('metadata') or {}).get('name', name)}.yaml".lower()
        (man / fname).write_text(dump_yaml(obj, sort_keys=True))
    helm = out / "helm"
    helm.mkdir(exist_ok=True)
    for old in helm.glob("*.yaml"):
        old.unlink()
    for r in sorted(rec.by_type("kubernetes:helm.sh/v3:Release"), key=lambda r: r.urn):
        i = _int_floats(r.inputs)
        repo = (i.get("repositoryOpts") or {}).get("repo")
        chart = i["chart"]
        if repo is None and chart.startswith("oci://"):
            repo, chart = chart.rsplit("/", 1)
        doc = {
            "chart": chart,
            "repo": repo,
            "version": i.get("version"),
            "namespace": i.get("namespace"),
            "values": i.get("values") or {},
        }
        (helm / f"{i.get('name', r.name)}.yaml").write_text(dump_yaml(doc, sort_keys=True))
    doc = summary(intent, len(resources), resources)
    (out / "summary.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return doc


# Pulumi stack names: letters, digits, '-', '_', '.' (and org/project/ prefixes, not used offline).
STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _out_problem(out: Path) -> str | None:
    """Why --out cannot be written, checked before anything runs (so a bad --out writes nothing)."""
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"error: {out}: {probe} is a file, not a directory — pass a directory for --out"
    try:  # ask the filesystem itself (mode bits say nothing for root, read-only mounts or /proc)
        os.rmdir(tempfile.mkdtemp(prefix=".plan-write-check-", dir=probe))
    except OSError as e:
        return f"error: {out}: {probe} is not writable ({e.strerror or e}) — pass a directory you can write to"
    return None


def bench_lines(path: Path | None, intent) -> list[str]:
    """`--bench`: each benchmarked model's measured knee beside its planned max concurrency (the model
    found by its key or its served name); compare.BadResult for a file or model that does not fit."""
    if path is None:
        return []
    planned = {}
    for key, m in intent.models.items():
        p = compare.Planned(key, m.sizing.max_concurrency, max(1, m.replicas_min))
        planned[key] = planned[m.served_name] = p
    return compare.compare(compare.read_results(path), planned)


def _arg_problem(a: argparse.Namespace, stack_file: Path) -> str | None:
    """The one-line refusal for a bad stack name, a missing stack file or an unusable --out."""
    if not STACK_NAME.match(a.stack):
        return f"error: {a.stack!r}: not a stack name — use letters, digits, '-', '_', '.'"
    if a.config is None and not stack_file.exists():
        known = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
        return (
            f"error: {stack_file}: no such stack file (stacks here: {', '.join(known) or 'none'}) — "
            f"create it or pass --config FILE"
        )
    if a.out is not None and (why := _out_problem(a.out)):
        return why
    return None


class _Refused(Exception):
    """Lines (each `error: ...`) the CLI prints before it exits 2."""


def _planned(a: argparse.Namespace, stack_file: Path) -> tuple:
    from stacks.capacity import system_fit
    from stacks.config import ConfigError

    try:
        intent, rec = run_program(a.stack, stack_file)
    except ConfigError as e:
        raise _Refused([f"error: {p}" for p in e.problems]) from None
    except pulumi.RunError as e:  # the program's own config check (stacks.config.load) under the mocks
        lines = [ln for ln in str(e).splitlines() if ln.strip() and ln != "invalid stack config:"]
        raise _Refused([ln if ln.startswith("error: ") else f"error: {ln}" for ln in lines]) from None
    try:
        measured = bench_lines(a.bench, intent)
    except compare.BadResult as e:
        raise _Refused([f"error: {e}"]) from None
    resources = [r for r in rec.resources if r.type != "pulumi:pulumi:Stack"]
    if fit_problems := system_fit.problems_of(resources):  # needs the rendered objects, so after the program
        raise _Refused([f"error: {p}" for p in fit_problems])
    return intent, rec, resources, measured


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stacks.plan", description=__doc__.splitlines()[0])
    ap.add_argument("stack")
    ap.add_argument("--config", type=Path, help="a Pulumi.<stack>.yaml-format file (default: Pulumi.STACK.yaml)")
    ap.add_argument("--out", type=Path, help="write resources.json, manifests/, helm/, summary.json here")
    ap.add_argument("--bench", type=Path, help="a `stacks.bench --json` result: measured knee beside the plan")
    a = ap.parse_args(argv)
    stack_file = a.config or ROOT / f"Pulumi.{a.stack}.yaml"
    if why := _arg_problem(a, stack_file):
        print(why, file=sys.stderr)
        return 2

    from stacks.report import summary, table

    try:
        intent, rec, resources, measured = _planned(a, stack_file)
    except _Refused as e:
        print("\n".join(e.args[0]), file=sys.stderr)
        return 2
    try:
        doc = write_outputs(a.out, intent, rec) if a.out else summary(intent, len(resources), resources)
    except OSError as e:
        print(f"error: {a.out}: cannot write ({e.strerror or e}) — pass a directory you can write to", file=sys.stderr)
        return 2
    sys.stdout.write(table(doc, intent.warnings) + "".join(f"{ln}\n" for ln in measured))
    return 0


if __name__ == "__main__":
    rc = main()
    # Leave without the interpreter's teardown: freeing the SDK's thousands of classes costs about as much
    # CPU as the program itself, and nothing is left to clean up (every file written is closed).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
